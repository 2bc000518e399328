package verify

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Class says how a key differs between source and destination.
type Class string

// The classes of difference, seen from the source: "missing" is on the source and not on the
// destination.
const (
	ClassMissing Class = "missing" // on the source, not on the destination
	ClassExtra   Class = "extra"   // on the destination, not on the source
	ClassType    Class = "type"    // on both, of different types
	ClassValue   Class = "value"   // same type, different value (or length)
	ClassTTL     Class = "ttl"     // same value; TTL present on one side only, or beyond the tolerance
)

// Classes lists the classes in the order summaries show them.
var Classes = []Class{ClassMissing, ClassExtra, ClassType, ClassValue, ClassTTL}

// Describe is the class as the summary names it.
func (c Class) Describe() string {
	switch c {
	case ClassMissing:
		return "missing on destination"
	case ClassExtra:
		return "extra on destination"
	case ClassType:
		return "type differs"
	case ClassValue:
		return "value differs"
	case ClassTTL:
		return "TTL differs"
	}
	return string(c)
}

// Diff is one key that differs. It is also one object of the JSON report.
type Diff struct {
	DB       int    `json:"db"`        // source database
	TargetDB int    `json:"target_db"` // destination database (differs from DB under --db-map)
	Key      string `json:"key"`       // as the source names it
	// TargetKey is the destination's name of the key when it differs from Key: under the
	// source database's key prefix (--db-map N:prefix=P).
	TargetKey string `json:"target_key,omitempty"`
	// KeyBase64 holds the exact key bytes when the key is not valid UTF-8, which JSON
	// cannot carry as a string (Key then has replacement characters).
	KeyBase64  string `json:"key_base64,omitempty"`
	Class      Class  `json:"class"`
	Detail     string `json:"detail"`
	SourceType string `json:"source_type"`         // "none" when absent
	TargetType string `json:"target_type"`         // "none" when absent
	SourcePTTL int64  `json:"source_pttl_ms"`      // -1 no TTL, -2 absent
	TargetPTTL int64  `json:"target_pttl_ms"`      // -1 no TTL, -2 absent
	Repair     string `json:"repair,omitempty"`    // with --repair: what was done
	Repaired   *bool  `json:"repaired,omitempty"`  // with --repair: whether the final round found it equal
	Round      int    `json:"last_round,omitzero"` // the last round that saw the difference
	// InFlight says the key changed on the source while it was re-checked: the difference
	// may be a write not yet applied rather than a lost one. It still counts.
	InFlight bool `json:"in_flight,omitempty"`
}

func (d Diff) id() diffID { return diffID{d.DB, d.Key} }

// diffID identifies a key across rounds.
type diffID struct {
	db  int
	key string
}

// MarshalJSON adds key_base64 for keys that are not valid UTF-8.
func (d Diff) MarshalJSON() ([]byte, error) {
	type plain Diff
	p := plain(d)
	if !utf8.ValidString(d.Key) {
		p.KeyBase64 = base64.StdEncoding.EncodeToString([]byte(d.Key))
	}
	return json.Marshal(p)
}

// String renders a difference for a log or a test failure.
func (d Diff) String() string {
	if d.TargetKey != "" {
		return fmt.Sprintf("db %d key %s (destination %s): %s (%s)", d.DB, quoteKey(d.Key), quoteKey(d.TargetKey), d.Class, d.Detail)
	}
	return fmt.Sprintf("db %d key %s: %s (%s)", d.DB, quoteKey(d.Key), d.Class, d.Detail)
}

func sortDiffs(ds []Diff) {
	slices.SortFunc(ds, func(a, b Diff) int {
		if a.DB != b.DB {
			return a.DB - b.DB
		}
		return strings.Compare(a.Key, b.Key)
	})
}

// WriteReport writes diffs as a JSON array, one object per key.
func WriteReport(w io.Writer, diffs []Diff) error {
	if diffs == nil {
		diffs = []Diff{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(diffs)
}

// quoteKey renders a key (or field) for a message: quoted, and shortened when long.
func quoteKey(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

// formatTTL renders a PTTL reply for a message.
func formatTTL(pttl int64) string {
	switch {
	case pttl == -1:
		return "no TTL"
	case pttl < 0:
		return "absent"
	}
	return "TTL " + roundDuration(time.Duration(pttl)*time.Millisecond).String()
}

// roundDuration drops the milliseconds of durations of a minute or more: two PTTLs read a
// few milliseconds apart should not print as "59m59.998s".
func roundDuration(d time.Duration) time.Duration {
	if d >= time.Minute || d <= -time.Minute {
		return d.Round(time.Second)
	}
	return d
}

// maxDetailItems is how many differing elements a detail names before it stops looking.
const maxDetailItems = 10

// details collects the named differences inside one value, up to maxDetailItems.
type details struct {
	items     []string
	truncated bool
}

func (d *details) add(format string, args ...any) {
	if len(d.items) >= maxDetailItems {
		d.truncated = true
		return
	}
	d.items = append(d.items, fmt.Sprintf(format, args...))
}

func (d *details) full() bool { return len(d.items) >= maxDetailItems }

func (d *details) empty() bool { return len(d.items) == 0 }

func (d *details) String() string {
	s := strings.Join(d.items, "; ")
	if d.truncated || d.full() {
		s += "; …"
	}
	return s
}
