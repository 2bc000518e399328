package resp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestAppendEncoders(t *testing.T) {
	cases := []struct{ got, want string }{
		{string(AppendCommand(nil, []byte("SET"), []byte("k"), []byte(""))), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"},
		{string(AppendCommandStrings([]byte("x"), "PING")), "x*1\r\n$4\r\nPING\r\n"},
		{string(AppendCommand(nil)), "*0\r\n"},
		{string(AppendArrayHeader(nil, 12)), "*12\r\n"},
		{string(AppendBulk(nil, []byte("a\r\nb"))), "$4\r\na\r\nb\r\n"},
		{string(AppendBulkString(nil, "")), "$0\r\n\r\n"},
		{string(AppendInt(nil, -1234567890123)), "$14\r\n-1234567890123\r\n"},
		{string(AppendInt(nil, 0)), "$1\r\n0\r\n"},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// Every value read from the table re-encodes to the bytes it came from (attributes aside).
func TestAppendValueRoundTrip(t *testing.T) {
	for _, tc := range valueCases {
		enc := AppendValue(nil, tc.want)
		if !strings.HasPrefix(tc.in, "|") && !strings.Contains(tc.in, "|") && string(enc) != tc.in {
			t.Errorf("%s: AppendValue = %q, want %q", tc.name, enc, tc.in)
		}
		v, err := NewReader(bytes.NewReader(enc), ReaderOptions{}).ReadValue()
		if err != nil || !equal(v, tc.want) {
			t.Errorf("%s: re-read %s, %v", tc.name, show(v), err)
		}
	}
	odd := []struct {
		v    Value
		want string
	}{
		{Value{}, "_\r\n"},
		{Value{Kind: KindSet, Null: true}, "_\r\n"},
		{Value{Kind: KindVerbatim, Null: true}, "_\r\n"},
		{Value{Kind: KindMap, Elems: []Value{simple("k")}}, "%0\r\n"},
		{Value{Kind: KindBoolean, Int: 5}, "#t\r\n"},
	}
	for _, tc := range odd {
		if got := string(AppendValue(nil, tc.v)); got != tc.want {
			t.Errorf("AppendValue(%s) = %q, want %q", show(tc.v), got, tc.want)
		}
	}
}

type countingWriter struct {
	bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

func TestWriter(t *testing.T) {
	var out countingWriter
	w := NewWriter(&out, 64)
	big := bytes.Repeat([]byte("B"), 100)
	if err := w.WriteCommand([]byte("SET"), []byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if w.Buffered() != len(cmd("SET", "k", "v")) || out.Len() != 0 {
		t.Fatalf("Buffered = %d, written %d", w.Buffered(), out.Len())
	}
	if err := w.WriteCommand([]byte("SET"), []byte("big"), big); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteCommandStrings("PING"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(cmd("ECHO", "raw"))); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := cmd("SET", "k", "v") + cmd("SET", "big", string(big)) + cmd("PING") + cmd("ECHO", "raw")
	if out.String() != want || w.Buffered() != 0 {
		t.Fatalf("wrote %q, want %q", out.String(), want)
	}
	// The big argument went through unbuffered: header flush, argument, rest.
	if out.writes != 3 {
		t.Fatalf("%d writes, want 3", out.writes)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, io.ErrClosedPipe
	}
	f.n--
	return len(p), nil
}

func TestWriterErrorSticks(t *testing.T) {
	w := NewWriter(&failWriter{}, 16)
	err := w.WriteCommandStrings("SET", "key", "value")
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("err = %v", err)
	}
	if err := w.WriteCommand([]byte("PING")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("second write: %v", err)
	}
	w.Reset(io.Discard)
	if err := w.WriteCommand([]byte("PING")); err != nil || w.Flush() != nil {
		t.Fatalf("after Reset: %v", err)
	}
}

func TestWriterNoAllocs(t *testing.T) {
	w := NewWriter(io.Discard, 0)
	key, val := []byte("key:000001"), bytes.Repeat([]byte("v"), 100)
	set := []byte("SET")
	allocs := testing.AllocsPerRun(1000, func() {
		if err := w.WriteCommand(set, key, val); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per WriteCommand", allocs)
	}
	buf := make([]byte, 0, 1024)
	allocs = testing.AllocsPerRun(1000, func() {
		buf = AppendCommand(buf[:0], set, key, val)
		buf = AppendInt(buf, 42)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per AppendCommand", allocs)
	}
}

func TestError(t *testing.T) {
	cases := []struct {
		msg    string
		prefix string
		check  func(*Error) bool
	}{
		{"ERR unknown command 'FOO'", "ERR", nil},
		{"LOADING Redis is loading the dataset in memory", "LOADING", (*Error).IsLoading},
		{"BUSY Redis is busy running a script.", "BUSY", (*Error).IsBusy},
		{"BUSYKEY Target key name already exists.", "BUSYKEY", (*Error).IsBusyKey},
		{"TRYAGAIN Multiple keys request during rehashing of slot", "TRYAGAIN", (*Error).IsTryAgain},
		{"CLUSTERDOWN The cluster is down", "CLUSTERDOWN", (*Error).IsClusterDown},
		{"OOM command not allowed when used memory > 'maxmemory'.", "OOM", (*Error).IsOOM},
		{"NOPERM User x has no permissions to run the 'set' command", "NOPERM", (*Error).IsNoPerm},
		{"READONLY You can't write against a read only replica.", "READONLY", (*Error).IsReadOnly},
		{"WRONGTYPE Operation against a key holding the wrong kind of value", "WRONGTYPE", (*Error).IsWrongType},
		{"NOSCRIPT No matching script. Please use EVAL.", "NOSCRIPT", (*Error).IsNoScript},
		{"NOAUTH Authentication required.", "NOAUTH", (*Error).IsNoAuth},
		{"WRONGPASS invalid username-password pair or user is disabled.", "WRONGPASS", (*Error).IsWrongPass},
		{"CROSSSLOT Keys in request don't hash to the same slot", "CROSSSLOT", (*Error).IsCrossSlot},
		{"EXECABORT Transaction discarded because of previous errors.", "EXECABORT", (*Error).IsExecAbort},
		{"NOPREFIX", "NOPREFIX", nil},
	}
	all := []func(*Error) bool{(*Error).IsLoading, (*Error).IsBusy, (*Error).IsBusyKey, (*Error).IsTryAgain,
		(*Error).IsClusterDown, (*Error).IsOOM, (*Error).IsNoPerm, (*Error).IsReadOnly, (*Error).IsWrongType,
		(*Error).IsNoScript, (*Error).IsNoAuth, (*Error).IsWrongPass, (*Error).IsCrossSlot, (*Error).IsExecAbort}
	for _, tc := range cases {
		e := &Error{Msg: tc.msg}
		if e.Error() != tc.msg || e.Prefix() != tc.prefix {
			t.Errorf("%q: Error() %q Prefix() %q", tc.msg, e.Error(), e.Prefix())
		}
		hits := 0
		for _, f := range all {
			if f(e) {
				hits++
			}
		}
		want := 0
		if tc.check != nil {
			want = 1
			if !tc.check(e) {
				t.Errorf("%q: its predicate is false", tc.msg)
			}
		}
		if hits != want {
			t.Errorf("%q: %d predicates true, want %d", tc.msg, hits, want)
		}
		if _, _, ok := e.IsMoved(); ok {
			t.Errorf("%q: IsMoved", tc.msg)
		}
	}
	redirects := []struct {
		msg        string
		moved, ask bool
		slot       int
		addr       string
	}{
		{"MOVED 3999 127.0.0.1:6381", true, false, 3999, "127.0.0.1:6381"},
		{"ASK 16383 [::1]:7000", false, true, 16383, "[::1]:7000"},
		{"MOVED 16384 127.0.0.1:6381", false, false, 0, ""},
		{"MOVED x 127.0.0.1:6381", false, false, 0, ""},
		{"MOVED 1", false, false, 0, ""},
		{"MOVED 1 a b", false, false, 0, ""},
		{"ASKING 1 a", false, false, 0, ""},
	}
	for _, tc := range redirects {
		e := &Error{Msg: tc.msg}
		slot, addr, ok := e.IsMoved()
		if ok != tc.moved || (ok && (slot != tc.slot || addr != tc.addr)) {
			t.Errorf("%q: IsMoved = %d %q %v", tc.msg, slot, addr, ok)
		}
		slot, addr, ok = e.IsAsk()
		if ok != tc.ask || (ok && (slot != tc.slot || addr != tc.addr)) {
			t.Errorf("%q: IsAsk = %d %q %v", tc.msg, slot, addr, ok)
		}
	}
}

func TestWriterBufferStaysBounded(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out, 64)
	before := cap(w.buf)
	args := make([][]byte, 100)
	for i := range args {
		args[i] = bytes.Repeat([]byte{'a' + byte(i%26)}, 50)
	}
	if err := w.WriteCommand(args...); err != nil || w.Flush() != nil {
		t.Fatal(err)
	}
	if cap(w.buf) != before {
		t.Fatalf("buffer grew from %d to %d", before, cap(w.buf))
	}
	if out.String() != string(AppendCommand(nil, args...)) {
		t.Fatal("output differs from AppendCommand")
	}
}
