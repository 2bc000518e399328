package redis

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
)

// redacted is what a Secret prints as.
const redacted = "[redacted]"

// Secret is a password or other credential. Every way of printing, logging or encoding it
// shows "[redacted]" (an empty Secret shows as empty, so "no password" stays visible);
// only Reveal gives the text, and only code that sends it to a server should call it.
// Decoding from JSON or YAML works as for any string.
type Secret string

// Reveal returns the secret text.
func (s Secret) Reveal() string { return string(s) }

func (s Secret) shown() string {
	if s == "" {
		return ""
	}
	return redacted
}

// String redacts.
func (s Secret) String() string { return s.shown() }

// GoString redacts (%#v).
func (s Secret) GoString() string { return "redis.Secret(" + strconv.Quote(s.shown()) + ")" }

// Format redacts for every verb and flag, so no fmt path (%v %s %q %x %+v %#v) reaches
// the text.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, s.GoString())
	case verb == 'q':
		_, _ = io.WriteString(f, strconv.Quote(s.shown()))
	default:
		_, _ = io.WriteString(f, s.shown())
	}
}

// MarshalJSON redacts.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.shown())), nil }

// MarshalText redacts (YAML, encoding/xml, map keys in JSON).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.shown()), nil }

// LogValue redacts in log/slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.shown()) }
