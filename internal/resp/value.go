// Package resp reads and writes the Redis serialization protocol, RESP2 and RESP3.
//
// The Reader is built for the replication stream: it counts exactly how many bytes every
// element consumed (a replica's offset is a byte count), ReadCommand does not allocate in
// steady state, and every length field is checked against a cap before anything is
// allocated for it, so a hostile or corrupt peer cannot make it reserve memory that the
// input does not back. The encoders are append-style (AppendCommand and friends) so the
// hot paths can reuse their buffers.
package resp

import (
	"fmt"
	"strconv"
)

// Kind is the RESP type byte that starts an element.
type Kind byte

// The RESP2 and RESP3 types, named as in the RESP3 specification.
const (
	KindSimpleString Kind = '+' // RESP2 simple string
	KindError        Kind = '-' // RESP2 simple error
	KindInteger      Kind = ':' // RESP2 integer
	KindBulkString   Kind = '$' // RESP2 bulk string; $-1 is the RESP2 null bulk
	KindArray        Kind = '*' // RESP2 array; *-1 is the RESP2 null array
	KindNull         Kind = '_' // RESP3 null
	KindBoolean      Kind = '#' // RESP3 boolean (#t / #f), stored in Value.Int as 1 / 0
	KindDouble       Kind = ',' // RESP3 double, its text kept in Value.Str
	KindBigNumber    Kind = '(' // RESP3 big number, its decimal text kept in Value.Str
	KindBlobError    Kind = '!' // RESP3 bulk error
	KindVerbatim     Kind = '=' // RESP3 verbatim string; Value.Str holds "fmt:text"
	KindMap          Kind = '%' // RESP3 map; Value.Elems holds key, value, key, value...
	KindSet          Kind = '~' // RESP3 set
	KindAttribute    Kind = '|' // RESP3 attribute; read and dropped by ReadValue
	KindPush         Kind = '>' // RESP3 push (out-of-band data)
)

// String returns the type byte as a one-character string, or its code when not printable.
func (k Kind) String() string {
	if k >= 0x21 && k < 0x7f {
		return string(rune(k))
	}
	return fmt.Sprintf("0x%02x", byte(k))
}

// Value is one parsed RESP element. Values returned by Reader.ReadValue own their memory.
type Value struct {
	Kind  Kind
	Str   []byte  // simple string, error text, bulk/verbatim payload, double/big-number text
	Int   int64   // integer; bool as 0/1
	Elems []Value // array, set, push; a map as alternating key, value
	Null  bool    // $-1, *-1 or RESP3 '_'
}

// Err returns the value as a *Error when it is an error reply ('-' or '!'), otherwise nil.
func (v Value) Err() error {
	if v.Kind == KindError || v.Kind == KindBlobError {
		return &Error{Msg: string(v.Str)}
	}
	return nil
}

// Text returns the value as a string the way a client would display it: the text of
// strings, errors, doubles and big numbers, the decimal form of integers and booleans,
// and the text after the "fmt:" prefix of a verbatim string. Aggregates and nulls give "".
func (v Value) Text() string {
	switch v.Kind {
	case KindInteger, KindBoolean:
		return strconv.FormatInt(v.Int, 10)
	case KindVerbatim:
		if len(v.Str) >= 4 && v.Str[3] == ':' {
			return string(v.Str[4:])
		}
		return string(v.Str)
	case KindArray, KindSet, KindPush, KindMap, KindNull, KindAttribute:
		return ""
	}
	return string(v.Str)
}

// ProtocolError reports malformed input: what was wrong and the absolute byte offset
// (counted from the first byte the Reader consumed) where it was found.
type ProtocolError struct {
	Offset int64
	Msg    string
}

func (e *ProtocolError) Error() string {
	return "resp: " + e.Msg + " at byte " + strconv.FormatInt(e.Offset, 10)
}
