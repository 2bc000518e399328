package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// loopReader serves data over and over, like an endless replication stream.
type loopReader struct {
	data []byte
	pos  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.data[l.pos:])
		n += c
		l.pos = (l.pos + c) % len(l.data)
	}
	return n, nil
}

func cmd(args ...string) string { return string(AppendCommandStrings(nil, args...)) }

func TestReadCommand(t *testing.T) {
	big := strings.Repeat("v", 1000)
	many := []string{"MSET"}
	for i := range 60 {
		many = append(many, fmt.Sprintf("key:%03d", i), fmt.Sprintf("value:%03d", i))
	}
	cmds := [][]string{
		{"SET", "k", "hello"},
		{"PING"},
		{"SET", "bin\r\n\x00", ""},
		{"SET", "big", big},
		{"RPUSH", "l", "a", big, "b", big, "c"},
		many,
		{"SELECT", "0"},
	}
	var in strings.Builder
	for _, c := range cmds {
		in.WriteString(cmd(c...))
	}
	in.WriteString("*0\r\n*-1\r\n")
	for variant, r := range readerVariants(in.String()) {
		off := int64(0)
		for i, want := range cmds {
			args, n, err := r.ReadCommand()
			if err != nil {
				t.Fatalf("%s: command %d: %v", variant, i, err)
			}
			if len(args) != len(want) {
				t.Fatalf("%s: command %d has %d args, want %d", variant, i, len(args), len(want))
			}
			for j := range args {
				if string(args[j]) != want[j] {
					t.Fatalf("%s: command %d arg %d = %.40q, want %.40q", variant, i, j, args[j], want[j])
				}
				if cap(args[j]) != len(args[j]) {
					t.Fatalf("%s: command %d arg %d: cap %d > len %d lets an append clobber the next argument", variant, i, j, cap(args[j]), len(args[j]))
				}
			}
			off += int64(len(cmd(want...)))
			if n != int64(len(cmd(want...))) || r.Offset() != off {
				t.Fatalf("%s: command %d: n = %d, offset %d, want %d and %d", variant, i, n, r.Offset(), len(cmd(want...)), off)
			}
		}
		for _, empty := range []string{"*0", "*-1"} {
			args, n, err := r.ReadCommand()
			if err != nil || len(args) != 0 || n != int64(len(empty)+2) {
				t.Fatalf("%s: %s: %q n=%d %v", variant, empty, args, n, err)
			}
		}
		if _, _, err := r.ReadCommand(); err != io.EOF {
			t.Fatalf("%s: at the end: %v", variant, err)
		}
		if r.Offset() != int64(in.Len()) {
			t.Fatalf("%s: final offset %d, want %d", variant, r.Offset(), in.Len())
		}
	}
}

func TestReadCommandMalformed(t *testing.T) {
	cases := []struct {
		name, in, msg string
		offset        int64
	}{
		{"not an array", "+OK\r\n", `expected '*' to start a command, got '+'`, 0},
		{"keepalive newline", "\n*1\r\n$4\r\nPING\r\n", `expected '*' to start a command, got '\n'`, 0},
		{"inline", "PING\r\n", `expected '*' to start a command, got 'P'`, 0},
		{"second command", cmd("PING") + ":1\r\n", `expected '*' to start a command, got ':'`, 14},
		{"not a bulk", "*2\r\n$3\r\nGET\r\n:1\r\n", `expected '$' to start argument 2, got ':'`, 13},
		{"array length", "*x\r\n", `invalid array length "x"`, 1},
		{"array length -2", "*-2\r\n", `invalid array length "-2"`, 1},
		{"bulk length", "*1\r\n$-1\r\n", `invalid bulk length "-1"`, 5},
		{"bulk length empty", "*1\r\n$\r\n", `invalid bulk length ""`, 5},
		{"bulk without CRLF", "*1\r\n$2\r\nabc\r\n", "bulk payload not followed by CRLF", 10},
		{"big bulk without CRLF", "*1\r\n$100\r\n" + strings.Repeat("a", 101) + "\r\n", "bulk payload not followed by CRLF", 110},
		{"LF only", "*1\n", "line terminated by LF without CR", 2},
		{"length line too long", "*1" + strings.Repeat("0", 40), "length line longer than 32 bytes", 0},
		{"bulk length line too long", "*1\r\n$" + strings.Repeat("0", 40), "length line longer than 32 bytes", 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for variant, r := range readerVariants(tc.in) {
				var err error
				for err == nil {
					_, _, err = r.ReadCommand()
				}
				var pe *ProtocolError
				if !errors.As(err, &pe) || !strings.Contains(pe.Msg, tc.msg) || pe.Offset != tc.offset {
					t.Fatalf("%s: err = %v, want %q at byte %d", variant, err, tc.msg, tc.offset)
				}
				if _, _, err2 := r.ReadCommand(); err2 != err {
					t.Fatalf("%s: error did not stick: %v", variant, err2)
				}
			}
		})
	}
}

func TestReadCommandUnexpectedEOF(t *testing.T) {
	full := cmd("SET", "key", strings.Repeat("x", 200))
	for cut := 1; cut < len(full); cut++ {
		for variant, r := range readerVariants(full[:cut]) {
			_, _, err := r.ReadCommand()
			if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), fmt.Sprintf("at byte %d", cut)) {
				t.Fatalf("cut %d %s: err = %v", cut, variant, err)
			}
			if r.Offset() > int64(cut) {
				t.Fatalf("cut %d %s: offset %d beyond the input", cut, variant, r.Offset())
			}
		}
	}
}

// A command longer than the buffer whose arguments are each smaller than it, and one
// argument larger than it: both assembled in the arena, reused across calls.
func TestReadCommandNoAllocs(t *testing.T) {
	cases := map[string][]string{
		"small":         {"SET", "key:000001", "value"},
		"16KiB value":   {"SET", "key:000001", strings.Repeat("v", 16<<10)},
		"beyond buffer": {"RPUSH", "l", strings.Repeat("a", 50_000), strings.Repeat("b", 50_000), "c"},
		"1MiB value":    {"SET", "k", strings.Repeat("h", 1<<20)},
		"8MiB value":    {"SET", "k", strings.Repeat("h", 8<<20)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := NewReader(&loopReader{data: []byte(cmd(c...))}, ReaderOptions{})
			for range 3 { // warm up buffers
				if _, _, err := r.ReadCommand(); err != nil {
					t.Fatal(err)
				}
			}
			allocs := testing.AllocsPerRun(100, func() {
				args, _, err := r.ReadCommand()
				if err != nil || len(args) != len(c) || len(args[len(c)-1]) != len(c[len(c)-1]) {
					t.Fatalf("%q %v", args, err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per ReadCommand, want 0", allocs)
			}
		})
	}
}

// ReadCommand and ReadValue must agree on what a command is and how long it is.
func TestReadCommandMatchesReadValue(t *testing.T) {
	in := cmd("SET", "a", strings.Repeat("z", 70_000)) + cmd("DEL", "a", "b")
	rc := NewReader(strings.NewReader(in), ReaderOptions{})
	rv := NewReader(strings.NewReader(in), ReaderOptions{})
	for {
		args, n, err := rc.ReadCommand()
		v, verr := rv.ReadValue()
		if err == io.EOF && verr == io.EOF {
			return
		}
		if err != nil || verr != nil {
			t.Fatalf("%v / %v", err, verr)
		}
		if len(v.Elems) != len(args) || rv.Offset() != rc.Offset() || n <= 0 {
			t.Fatalf("disagree: %d args vs %d elems, offsets %d vs %d", len(args), len(v.Elems), rc.Offset(), rv.Offset())
		}
		for i := range args {
			if !bytes.Equal(args[i], v.Elems[i].Str) {
				t.Fatalf("arg %d differs", i)
			}
		}
	}
}

// After a huge command, the arena is released once small commands have come for a while.
func TestReadCommandReleasesHugeArena(t *testing.T) {
	in := cmd("SET", "k", strings.Repeat("h", 8<<20))
	for range releaseAfter + 1 {
		in += cmd("PING")
	}
	r := NewReader(strings.NewReader(in), ReaderOptions{})
	if _, _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	if cap(r.arena) < 8<<20 {
		t.Fatalf("arena cap %d after an 8 MiB argument", cap(r.arena))
	}
	for range releaseAfter + 1 {
		if _, _, err := r.ReadCommand(); err != nil {
			t.Fatal(err)
		}
	}
	if cap(r.arena) > retainedScratch {
		t.Fatalf("arena of %d bytes kept after %d small commands", cap(r.arena), releaseAfter+1)
	}
}
