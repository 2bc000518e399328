package resp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

var fuzzOpts = ReaderOptions{MaxBulkLen: 1 << 20, MaxElements: 1 << 16}

type valueStep struct {
	v   Value
	off int64
}

// readValues parses values until an error and returns them with the offset after each.
func readValues(r *Reader) ([]valueStep, error) {
	var steps []valueStep
	for range 200 {
		v, err := r.ReadValue()
		if err != nil {
			return steps, err
		}
		steps = append(steps, valueStep{v, r.Offset()})
	}
	return steps, nil
}

// sameErr says whether two readers failed the same way.
func sameErr(a, b error) bool {
	var pa, pb *ProtocolError
	switch {
	case a == nil || b == nil:
		return a == b
	case errors.As(a, &pa):
		return errors.As(b, &pb) && *pa == *pb
	case errors.Is(a, io.ErrUnexpectedEOF):
		return errors.Is(b, io.ErrUnexpectedEOF) && a.Error() == b.Error()
	}
	return a == b
}

func seedValues(f *testing.F) {
	for _, tc := range valueCases {
		f.Add([]byte(tc.in))
	}
	for _, tc := range malformedValueCases {
		f.Add([]byte(tc.in))
	}
	f.Add([]byte(cmd("SET", "k", strings.Repeat("v", 100)) + "+OK\r\n"))
	f.Add([]byte("\n\n+FULLRESYNC abc 0\r\n"))
	f.Add([]byte("*3\r\n%1\r\n~1\r\n>1\r\n|1\r\n_\r\n#t\r\n,1e3\r\n(99\r\n!1\r\nx\r\n=5\r\ntxt:a\r\n"))
}

func FuzzReadValue(f *testing.F) {
	seedValues(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := NewReader(bytes.NewReader(data), fuzzOpts)
		small := fuzzOpts
		small.BufferSize = 64
		split := NewReader(iotest.OneByteReader(bytes.NewReader(data)), small)
		steps, err := readValues(whole)
		steps2, err2 := readValues(split)
		if len(steps) != len(steps2) || !sameErr(err, err2) {
			t.Fatalf("whole and byte-by-byte reads disagree: %d values, %v / %d values, %v", len(steps), err, len(steps2), err2)
		}
		if whole.Offset() > int64(len(data)) {
			t.Fatalf("offset %d beyond the %d-byte input", whole.Offset(), len(data))
		}
		if err == io.EOF && whole.Offset() != int64(len(data)) {
			t.Fatalf("clean EOF at offset %d of %d", whole.Offset(), len(data))
		}
		for i, s := range steps {
			if s.off != steps2[i].off || !equal(s.v, steps2[i].v) {
				t.Fatalf("value %d: %s at %d vs %s at %d", i, show(s.v), s.off, show(steps2[i].v), steps2[i].off)
			}
			enc := AppendValue(nil, s.v)
			r := NewReader(bytes.NewReader(enc), fuzzOpts)
			v, err := r.ReadValue()
			if err != nil || !equal(v, s.v) || r.Offset() != int64(len(enc)) {
				t.Fatalf("value %d %s re-encoded as %q re-reads as %s, %v", i, show(s.v), enc, show(v), err)
			}
		}
	})
}

type cmdStep struct {
	args [][]byte
	n    int64
}

func readCommands(r *Reader) ([]cmdStep, error) {
	var steps []cmdStep
	for range 200 {
		args, n, err := r.ReadCommand()
		if err != nil {
			return steps, err
		}
		c := cmdStep{n: n}
		for _, a := range args {
			c.args = append(c.args, bytes.Clone(a))
		}
		steps = append(steps, c)
	}
	return steps, nil
}

func FuzzReadCommand(f *testing.F) {
	seedValues(f)
	f.Add([]byte(cmd("MSET", "a", "1", "b", "2") + cmd("PING") + "*0\r\n"))
	f.Add([]byte(cmd("SET", "big", strings.Repeat("x", 300)) + cmd("DEL", "big")))
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := NewReader(bytes.NewReader(data), fuzzOpts)
		small := fuzzOpts
		small.BufferSize = 64
		split := NewReader(iotest.OneByteReader(bytes.NewReader(data)), small)
		steps, err := readCommands(whole)
		steps2, err2 := readCommands(split)
		if len(steps) != len(steps2) || !sameErr(err, err2) {
			t.Fatalf("whole and byte-by-byte reads disagree: %d commands, %v / %d commands, %v", len(steps), err, len(steps2), err2)
		}
		if whole.Offset() > int64(len(data)) || split.Offset() > int64(len(data)) {
			t.Fatalf("offset %d/%d beyond the %d-byte input", whole.Offset(), split.Offset(), len(data))
		}
		var total int64
		for i, s := range steps {
			total += s.n
			if s.n != steps2[i].n || len(s.args) != len(steps2[i].args) {
				t.Fatalf("command %d: n %d vs %d", i, s.n, steps2[i].n)
			}
			for j := range s.args {
				if !bytes.Equal(s.args[j], steps2[i].args[j]) {
					t.Fatalf("command %d arg %d differs", i, j)
				}
			}
			// The same bytes read as a value are an array of the same bulks (or empty).
			v, verr := NewReader(bytes.NewReader(data[total-s.n:total]), fuzzOpts).ReadValue()
			if verr != nil || (len(v.Elems) != len(s.args)) {
				t.Fatalf("command %d as a value: %s, %v", i, show(v), verr)
			}
			for j := range s.args {
				if v.Elems[j].Kind != KindBulkString || !bytes.Equal(v.Elems[j].Str, s.args[j]) {
					t.Fatalf("command %d arg %d read as value %s", i, j, show(v.Elems[j]))
				}
			}
			enc := AppendCommand(nil, s.args...)
			args, n, err := NewReader(bytes.NewReader(enc), fuzzOpts).ReadCommand()
			if err != nil || n != int64(len(enc)) || len(args) != len(s.args) {
				t.Fatalf("command %d re-encoded: %v n=%d", i, err, n)
			}
		}
		// Offset runs ahead of the commands only by what a failed command consumed.
		if whole.Offset() < total {
			t.Fatalf("offset %d behind the %d bytes of commands returned", whole.Offset(), total)
		}
		if err == io.EOF && total != int64(len(data)) {
			t.Fatalf("clean EOF with commands summing to %d of %d bytes", total, len(data))
		}
	})
}
