package rdb

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel causes, for errors.Is. Every error the decoder returns is an *Error wrapping
// one of these (or an I/O error from the underlying reader).
var (
	// ErrTruncated: the input ended inside a record. The file is cut short, or the
	// connection dropped mid-transfer; fetch it again.
	ErrTruncated = errors.New("truncated input (file cut short or transfer interrupted)")
	// ErrCorrupt: bytes that no Redis or Valkey writes. The file is damaged.
	ErrCorrupt = errors.New("corrupt RDB data")
	// ErrChecksum: the CRC64 trailer does not match the content.
	ErrChecksum = errors.New("RDB checksum mismatch (file damaged in storage or transit)")
	// ErrUnsupported: valid data this build cannot read: a newer format, a type or opcode
	// it does not know, or a value only its module can parse.
	ErrUnsupported = errors.New("unsupported RDB content")
	// ErrTooLarge: a length beyond the configured cap (Options.MaxElementSize) or beyond
	// the input's size.
	ErrTooLarge = errors.New("length exceeds the configured limit")
	// ErrNeedsCommands: the destination cannot take this value as a RESTORE payload; use
	// the command path.
	ErrNeedsCommands = errors.New("destination cannot RESTORE this type; use the command path")
)

// Error locates a decoding failure: where in the input, in which key, what was being
// read, and why.
type Error struct {
	Offset int64  // byte offset in the input where the failing record or field starts
	DB     int    // database of the key, when in a key
	Key    string // the key being decoded (truncated to 128 bytes), empty outside keys
	Type   int    // the value's type byte, or -1 outside values
	Flavor Flavor
	Op     string // what was being read: "header", "string length", "listpack entry"…
	Err    error  // cause; wraps one of the sentinels above
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("rdb: offset ")
	b.WriteString(strconv.FormatInt(e.Offset, 10))
	if e.Key != "" || e.Type >= 0 {
		fmt.Fprintf(&b, ", db %d", e.DB)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ", key %q", e.Key)
	}
	if e.Type >= 0 {
		fmt.Fprintf(&b, ", type %d (%s)", e.Type, TypeName(e.Flavor, Type(e.Type)))
	}
	if e.Op != "" {
		b.WriteString(": ")
		b.WriteString(e.Op)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// causef builds a cause that wraps a sentinel with detail.
func causef(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), sentinel)
}

func truncKey(k []byte) string {
	const max = 128
	if len(k) > max {
		return string(k[:max]) + "…"
	}
	return string(k)
}
