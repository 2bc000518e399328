package resp

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing/iotest"
)

// equal compares values treating a nil and an empty Str or Elems alike: the wire cannot
// tell them apart.
func equal(a, b Value) bool {
	if a.Kind != b.Kind || a.Int != b.Int || a.Null != b.Null || !bytes.Equal(a.Str, b.Str) || len(a.Elems) != len(b.Elems) {
		return false
	}
	for i := range a.Elems {
		if !equal(a.Elems[i], b.Elems[i]) {
			return false
		}
	}
	return true
}

func show(v Value) string {
	var b strings.Builder
	var walk func(v Value)
	walk = func(v Value) {
		fmt.Fprintf(&b, "%s", v.Kind)
		switch {
		case v.Null:
			b.WriteString("null")
		case v.Elems != nil:
			b.WriteString("[")
			for i, e := range v.Elems {
				if i > 0 {
					b.WriteString(" ")
				}
				walk(e)
			}
			b.WriteString("]")
		case v.Kind == KindInteger || v.Kind == KindBoolean:
			fmt.Fprintf(&b, "%d", v.Int)
		default:
			fmt.Fprintf(&b, "%q", v.Str)
		}
	}
	walk(v)
	return b.String()
}

// readerVariants returns readers over in that deliver it whole, one byte per Read, and
// through the smallest buffer, so boundary handling is exercised on every input.
func readerVariants(in string) map[string]*Reader {
	return map[string]*Reader{
		"whole":   NewReader(strings.NewReader(in), ReaderOptions{}),
		"onebyte": NewReader(iotest.OneByteReader(strings.NewReader(in)), ReaderOptions{}),
		"buf64":   NewReader(iotest.HalfReader(strings.NewReader(in)), ReaderOptions{BufferSize: 64}),
	}
}

// errAfter yields data, then err once, then the rest: a deadline that fires mid-stream.
type errAfter struct {
	first, rest []byte
	err         error
	fired       bool
}

func (e *errAfter) Read(p []byte) (int, error) {
	if len(e.first) > 0 {
		n := copy(p, e.first)
		e.first = e.first[n:]
		return n, nil
	}
	if !e.fired {
		e.fired = true
		return 0, e.err
	}
	if len(e.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, e.rest)
	e.rest = e.rest[n:]
	return n, nil
}
