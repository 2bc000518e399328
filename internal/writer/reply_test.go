package writer

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ferrysync/ferry/internal/resp"
)

func readAll(t *testing.T, in string, oneByte bool) ([]reply, error) {
	t.Helper()
	var rd io.Reader = strings.NewReader(in)
	if oneByte {
		rd = iotest.OneByteReader(rd)
	}
	rr := newReplyReader(rd)
	var out []reply
	for {
		var rep reply
		start := rr.off
		if err := rr.read(&rep); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) && start == int64(len(in)) {
				return out, nil // clean end between replies
			}
			return out, err
		}
		rep.elemErrs = append([]elemErr(nil), rep.elemErrs...)
		out = append(out, rep)
	}
}

func TestReplyReader(t *testing.T) {
	long := strings.Repeat("e", 3*replyBufferSize)
	tests := []struct {
		name string
		in   string
		want string // one line per reply: "ok", "err:<text>", "null", "array n [i:err...]"
	}{
		{"simple", "+OK\r\n+QUEUED\r\n", "ok|ok"},
		{"integer", ":1\r\n:-42\r\n", "ok|ok"},
		{"bulk", "$5\r\nhello\r\n$0\r\n\r\n", "ok|ok"},
		{"null bulk", "$-1\r\n", "null"},
		{"null array", "*-1\r\n", "null"},
		{"resp3 null", "_\r\n", "null"},
		{"error", "-ERR unknown command 'X'\r\n", "err:ERR unknown command 'X'"},
		{"blob error", "!21\r\nSYNTAX invalid syntax\r\n", "err:SYNTAX invalid syntax"},
		{"exec array", "*3\r\n+OK\r\n-WRONGTYPE Operation\r\n:2\r\n", "array 3 [1:WRONGTYPE Operation]"},
		{"nested", "*2\r\n*2\r\n-ERR deep\r\n$1\r\nx\r\n%1\r\n+k\r\n,1.5\r\n", "array 2 []"},
		{"resp3 scalars", "#t\r\n,3.14\r\n(123456789012345678901234567890\r\n=7\r\ntxt:abc\r\n", "ok|ok|ok|ok"},
		{"set and map", "~2\r\n+a\r\n+b\r\n%1\r\n+k\r\n:1\r\n", "ok|ok"},
		{"push skipped", ">2\r\n+message\r\n+x\r\n+OK\r\n", "ok"},
		{"attribute", "|1\r\n+ttl\r\n:3\r\n+OK\r\n", "ok"},
		{"long error", "-" + long + "\r\n+OK\r\n", "err:" + long[:maxErrorText] + "|ok"},
		{"long simple", "+" + long + "\r\n:1\r\n", "ok|ok"},
		{"big bulk", "$" + "200000" + "\r\n" + strings.Repeat("b", 200000) + "\r\n+OK\r\n", "ok|ok"},
		{"empty exec", "*0\r\n", "array 0 []"},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			got, err := readAll(t, tt.in, oneByte)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if s := describeReplies(got); s != tt.want {
				t.Errorf("%s (one byte %v):\n got %.200s\nwant %.200s", tt.name, oneByte, s, tt.want)
			}
		}
	}
}

func describeReplies(reps []reply) string {
	var parts []string
	for _, r := range reps {
		switch {
		case r.err != nil:
			parts = append(parts, "err:"+r.err.Msg)
		case r.null:
			parts = append(parts, "null")
		case r.array:
			var b strings.Builder
			b.WriteString("array ")
			b.WriteString(itoa(r.n))
			b.WriteString(" [")
			for i, e := range r.elemErrs {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(itoa(e.i) + ":" + e.err.Msg)
			}
			b.WriteByte(']')
			parts = append(parts, b.String())
		default:
			parts = append(parts, "ok")
		}
	}
	return strings.Join(parts, "|")
}

func itoa(n int64) string { return string(appendUint(nil, uint64(n))) }

func TestReplyReaderRejects(t *testing.T) {
	bad := []string{
		"?x\r\n",
		"+OK\n",
		"\r\n",
		":12a\r\n",
		":\r\n",
		"$-2\r\n",
		"$3\r\nabcd\r\n",
		"*-2\r\n",
		"~-1\r\n",
		"#x\r\n",
		"_x\r\n",
		"!-1\r\n",
		":99999999999999999999\r\n",
		strings.Repeat("*1\r\n", maxReplyDepth+2) + "+OK\r\n",
	}
	for _, in := range bad {
		_, err := readAll(t, in, false)
		var pe *resp.ProtocolError
		if !errors.As(err, &pe) {
			t.Errorf("%q: err = %v, want a protocol error", in, err)
		}
	}
	for _, in := range []string{"+OK", "$5\r\nab", "*2\r\n+OK\r\n", "-ERR"} {
		_, err := readAll(t, in, false)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: err = %v, want unexpected EOF", in, err)
		}
	}
}

// TestReplyReaderNoAllocs: the common replies cost no allocation.
func TestReplyReaderNoAllocs(t *testing.T) {
	in := []byte(strings.Repeat("+OK\r\n:12\r\n$3\r\nabc\r\n+QUEUED\r\n*2\r\n+OK\r\n:1\r\n", 100))
	br := bytes.NewReader(in)
	rr := newReplyReader(br)
	var rep reply
	allocs := testing.AllocsPerRun(50, func() {
		br.Reset(in)
		rr.reset(br)
		for range 500 {
			if err := rr.read(&rep); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per 500 replies", allocs)
	}
}

// FuzzReplyReader checks the reply reader against resp.Reader: whatever resp parses as a
// reply, the reply reader must parse too, consuming the same bytes and finding the same
// errors. It must never panic on anything.
func FuzzReplyReader(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-ERR x\r\n", ":1\r\n", "$3\r\nabc\r\n", "$-1\r\n", "*-1\r\n",
		"*3\r\n+OK\r\n-WRONGTYPE x\r\n:2\r\n", "!3\r\nERR\r\n", "_\r\n", "#f\r\n", ",1e3\r\n",
		"(12\r\n", "=5\r\ntxt:a\r\n", "%1\r\n+a\r\n:1\r\n", "~1\r\n+a\r\n", "|1\r\n+a\r\n+b\r\n+OK\r\n",
		"*2\r\n*1\r\n-ERR nested\r\n!2\r\nNO\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ref := resp.NewReader(bytes.NewReader(in), resp.ReaderOptions{})
		v, refErr := ref.ReadValue()

		rr := newReplyReader(bytes.NewReader(in))
		var rep reply
		err := rr.read(&rep)
		if refErr != nil || v.Kind == resp.KindPush {
			return // the reply reader may be more lenient, and skips pushes
		}
		if err != nil {
			t.Fatalf("resp reads %q as %v, the reply reader fails: %v", in, v.Kind, err)
		}
		if rr.off != ref.Offset() {
			t.Fatalf("%q: consumed %d bytes, resp %d", in, rr.off, ref.Offset())
		}
		if e := v.Err(); (e != nil) != (rep.err != nil) {
			t.Fatalf("%q: error %v, resp %v", in, rep.err, e)
		} else if e != nil && !strings.HasPrefix(e.Error(), rep.err.Msg) {
			t.Fatalf("%q: error text %q, resp %q", in, rep.err.Msg, e)
		}
		if v.Null != rep.null {
			t.Fatalf("%q: null %v, resp %v", in, rep.null, v.Null)
		}
		if v.Kind == resp.KindArray && !v.Null {
			if !rep.array || rep.n != int64(len(v.Elems)) {
				t.Fatalf("%q: array %v n %d, resp %d elements", in, rep.array, rep.n, len(v.Elems))
			}
			var want []int64
			for i, e := range v.Elems {
				if e.Err() != nil {
					want = append(want, int64(i))
				}
			}
			if len(want) != len(rep.elemErrs) {
				t.Fatalf("%q: %d error elements, resp %d", in, len(rep.elemErrs), len(want))
			}
			for i := range want {
				if want[i] != rep.elemErrs[i].i {
					t.Fatalf("%q: error element %d, resp %d", in, rep.elemErrs[i].i, want[i])
				}
			}
		}
	})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		msg    string
		class  class
		reason string
	}{
		{"LOADING Redis is loading the dataset in memory", classRetry, ReasonLoading},
		{"BUSY Redis is busy running a script.", classRetry, ReasonBusy},
		{"TRYAGAIN Multiple keys request during rehashing of slot", classRetry, ReasonTryAgain},
		{"MASTERDOWN Link with MASTER is down", classRetry, ReasonMasterDown},
		{"OOM command not allowed when used memory > 'maxmemory'.", classFatal, ReasonOOM},
		{"NOPERM this user has no permissions to run the 'set' command", classFatal, ReasonNoPerm},
		{"READONLY You can't write against a read only replica.", classFatal, ReasonReadOnly},
		{"WRONGTYPE Operation against a key holding the wrong kind of value", classData, ReasonWrongType},
		{"BUSYKEY Target key name already exists.", classData, ReasonBusyKey},
		{"NOSCRIPT No matching script.", classFatal, ReasonNoScript},
		{"ERR unknown command 'FOO', with args beginning with: 'x' ", classFatal, ReasonUnknownCommand},
		{"ERR unknown subcommand 'X'. Try CONFIG HELP.", classFatal, ReasonUnknownCommand},
		{"ERR wrong number of arguments for 'set' command", classFatal, ReasonBadArguments},
		{"ERR syntax error", classFatal, ReasonBadArguments},
		{"ERR DB index is out of range", classFatal, ReasonDBRange},
		{"ERR DUMP payload version or checksum are wrong", classData, ReasonPayload},
		{"ERR value is not an integer or out of range", classData, ReasonValue},
		{"ERR no such key", classData, ReasonValue},
		{"MOVED 3999 127.0.0.1:6381", classFatal, ReasonCluster},
		{"MISCONF Redis is configured to save RDB snapshots", classFatal, ReasonMisconf},
		{"NOAUTH Authentication required.", classFatal, ReasonAuth},
		{"EXECABORT Transaction discarded because of previous errors.", classFatal, ReasonExecAbort},
		{"EXECABORT Transaction discarded because of: BUSY Redis is busy running a script.", classRetry, ReasonBusy},
		{"EXECABORT Transaction discarded because of: OOM command not allowed", classFatal, ReasonOOM},
		{"WEIRD something new", classFatal, ReasonOther},
	}
	for _, tt := range tests {
		c, r := classify(&resp.Error{Msg: tt.msg})
		if c != tt.class || r != tt.reason {
			t.Errorf("%q: class %d reason %s, want %d %s", tt.msg, c, r, tt.class, tt.reason)
		}
	}
	if got := sanitize("ERR unknown command 'FOO', with args beginning with: 'secret' "); got != "ERR unknown command 'FOO'" {
		t.Errorf("sanitize = %q", got)
	}
}

func TestEncoding(t *testing.T) {
	cases := [][][]byte{
		{[]byte("PING")},
		{[]byte("SET"), []byte("k"), []byte("")},
		{[]byte("SET"), bytes.Repeat([]byte("k"), 1000), bytes.Repeat([]byte("v"), 123456)},
		{[]byte("DEL"), []byte("a\r\nb"), []byte("c"), []byte("d"), []byte("e"), []byte("f"), []byte("g"), []byte("h"), []byte("i"), []byte("j")},
	}
	for _, args := range cases {
		enc := resp.AppendCommand(nil, args...)
		if n := encodedLen(args); n != len(enc) {
			t.Errorf("encodedLen(%d args) = %d, encoding is %d bytes", len(args), n, len(enc))
		}
		name, key := nameAndKey(enc)
		if !bytes.Equal(name, args[0]) {
			t.Errorf("name = %q", name)
		}
		if len(args) > 1 && !bytes.Equal(key, args[1]) {
			t.Errorf("key = %q", key)
		}
	}
	for _, db := range []int{0, 9, 10, 15, 123456} {
		enc := resp.AppendCommand(nil, selectName, appendUint(nil, uint64(db)))
		if selectLen(db) != len(enc) {
			t.Errorf("selectLen(%d) = %d, want %d", db, selectLen(db), len(enc))
		}
	}
	if name, key := nameAndKey([]byte("garbage")); name != nil || key != nil {
		t.Errorf("nameAndKey(garbage) = %q %q", name, key)
	}
	for _, s := range []string{"MULTI", "multi", "MuLtI"} {
		if !equalFold([]byte(s), "MULTI") {
			t.Errorf("equalFold(%q)", s)
		}
	}
	if equalFold([]byte("MULT1"), "MULTI") || equalFold([]byte("EXE"), "EXEC") || equalFold([]byte("m\x15lti"), "MULTI") {
		t.Error("equalFold matched a different name")
	}
}
