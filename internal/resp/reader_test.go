package resp

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

func bulk(s string) Value          { return Value{Kind: KindBulkString, Str: []byte(s)} }
func simple(s string) Value        { return Value{Kind: KindSimpleString, Str: []byte(s)} }
func integer(n int64) Value        { return Value{Kind: KindInteger, Int: n} }
func arr(e ...Value) Value         { return Value{Kind: KindArray, Elems: e} }
func agg(k Kind, e ...Value) Value { return Value{Kind: k, Elems: e} }

var valueCases = []struct {
	name string
	in   string
	want Value
}{
	{"simple", "+OK\r\n", simple("OK")},
	{"simple empty", "+\r\n", simple("")},
	{"error", "-ERR unknown command 'x'\r\n", Value{Kind: KindError, Str: []byte("ERR unknown command 'x'")}},
	{"integer", ":1000\r\n", integer(1000)},
	{"integer negative", ":-42\r\n", integer(-42)},
	{"integer max", ":9223372036854775807\r\n", integer(1<<63 - 1)},
	{"integer min", ":-9223372036854775808\r\n", integer(-1 << 63)},
	{"bulk", "$5\r\nhello\r\n", bulk("hello")},
	{"bulk empty", "$0\r\n\r\n", bulk("")},
	{"bulk binary", "$4\r\n\r\n\x00\xff\r\n", bulk("\r\n\x00\xff")},
	{"bulk null", "$-1\r\n", Value{Kind: KindBulkString, Null: true}},
	{"array", "*2\r\n$3\r\nfoo\r\n:7\r\n", arr(bulk("foo"), integer(7))},
	{"array empty", "*0\r\n", arr()},
	{"array null", "*-1\r\n", Value{Kind: KindArray, Null: true}},
	{"array nested", "*2\r\n*1\r\n+a\r\n*0\r\n", arr(arr(simple("a")), arr())},
	{"null", "_\r\n", Value{Kind: KindNull, Null: true}},
	{"bool true", "#t\r\n", Value{Kind: KindBoolean, Int: 1}},
	{"bool false", "#f\r\n", Value{Kind: KindBoolean, Int: 0}},
	{"double", ",3.14\r\n", Value{Kind: KindDouble, Str: []byte("3.14")}},
	{"double exp", ",1.5e-10\r\n", Value{Kind: KindDouble, Str: []byte("1.5e-10")}},
	{"double inf", ",-inf\r\n", Value{Kind: KindDouble, Str: []byte("-inf")}},
	{"double nan", ",nan\r\n", Value{Kind: KindDouble, Str: []byte("nan")}},
	{"big number", "(3492890328409238509324850943850943825024385\r\n", Value{Kind: KindBigNumber, Str: []byte("3492890328409238509324850943850943825024385")}},
	{"big number negative", "(-1\r\n", Value{Kind: KindBigNumber, Str: []byte("-1")}},
	{"blob error", "!21\r\nSYNTAX invalid syntax\r\n", Value{Kind: KindBlobError, Str: []byte("SYNTAX invalid syntax")}},
	{"verbatim", "=15\r\ntxt:Some string\r\n", Value{Kind: KindVerbatim, Str: []byte("txt:Some string")}},
	{"map", "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n", agg(KindMap, simple("first"), integer(1), simple("second"), integer(2))},
	{"set", "~3\r\n+a\r\n+b\r\n+c\r\n", agg(KindSet, simple("a"), simple("b"), simple("c"))},
	{"push", ">3\r\n+message\r\n+ch\r\n$2\r\nhi\r\n", agg(KindPush, simple("message"), simple("ch"), bulk("hi"))},
	{"attribute dropped", "|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n*1\r\n:2039123\r\n", arr(integer(2039123))},
	{"attribute inside array", "*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n", arr(integer(1), integer(2))},
	{"attributes chained", "|0\r\n|0\r\n+x\r\n", simple("x")},
	{"map empty", "%0\r\n", agg(KindMap)},
}

func TestReadValueTypes(t *testing.T) {
	for _, tc := range valueCases {
		t.Run(tc.name, func(t *testing.T) {
			// Each element twice, so Offset is checked at an element boundary mid-stream.
			in := tc.in + tc.in
			for variant, r := range readerVariants(in) {
				for i := 1; i <= 2; i++ {
					v, err := r.ReadValue()
					if err != nil {
						t.Fatalf("%s: element %d: %v", variant, i, err)
					}
					if !equal(v, tc.want) {
						t.Fatalf("%s: element %d = %s, want %s", variant, i, show(v), show(tc.want))
					}
					if got, want := r.Offset(), int64(i*len(tc.in)); got != want {
						t.Fatalf("%s: Offset after element %d = %d, want %d", variant, i, got, want)
					}
				}
				if _, err := r.ReadValue(); err != io.EOF {
					t.Fatalf("%s: at the end: err = %v, want io.EOF", variant, err)
				}
			}
		})
	}
}

func TestReadValueOwnsMemory(t *testing.T) {
	r := NewReader(strings.NewReader("$5\r\nhello\r\n+world\r\n"), ReaderOptions{})
	a, _ := r.ReadValue()
	b, _ := r.ReadValue()
	if string(a.Str) != "hello" || string(b.Str) != "world" {
		t.Fatalf("values changed after a later read: %q %q", a.Str, b.Str)
	}
}

var malformedValueCases = []struct {
	name   string
	in     string
	msg    string // substring of the ProtocolError message
	offset int64
}{
	{"unknown type", "+OK\r\n?x\r\n", `invalid type byte '?'`, 5},
	{"LF only", "+OK\n", "line terminated by LF without CR", 3},
	{"integer text", ":12a\r\n", `invalid integer "12a"`, 1},
	{"integer empty", ":\r\n", `invalid integer ""`, 1},
	{"integer overflow", ":9223372036854775808\r\n", `invalid integer`, 1},
	{"integer too many digits", ":00000000000000000001\r\n", `invalid integer`, 1},
	{"bulk length text", "$x1\r\n", `invalid bulk length "x1"`, 1},
	{"bulk length -2", "$-2\r\n", `invalid bulk length "-2"`, 1},
	{"bulk no CRLF", "$3\r\nabcd\r\n", "bulk payload not followed by CRLF", 7},
	{"bulk length line too long", "$" + strings.Repeat("1", 40) + "\r\n", "line longer than", 0},
	{"nested bulk length", "*2\r\n:1\r\n$abc\r\n", `invalid bulk length "abc"`, 9},
	{"array length", "*1x\r\n", `invalid array length "1x"`, 1},
	{"map null", "%-1\r\n", `invalid map length "-1"`, 1},
	{"set null", "~-1\r\n", `invalid set length "-1"`, 1},
	{"null with body", "_x\r\n", `invalid null "x"`, 1},
	{"bool", "#x\r\n", `invalid boolean "x"`, 1},
	{"bool long", "#tt\r\n", `invalid boolean "tt"`, 1},
	{"double", ",1.2.3\r\n", `invalid double "1.2.3"`, 1},
	{"double empty", ",\r\n", `invalid double ""`, 1},
	{"double hex", ",0x1p3\r\n", `invalid double`, 1},
	{"big number", "(12a\r\n", `invalid big number "12a"`, 1},
	{"verbatim short", "=3\r\ntxt\r\n", "shorter than its format prefix", 1},
	{"verbatim colon", "=5\r\ntxt-a\r\n", "without ':'", 7},
	{"blob error null", "!-1\r\n", `invalid bulk error length "-1"`, 1},
	{"in array", "*3\r\n:1\r\n:2\r\n:x\r\n", `invalid integer "x"`, 13},
}

func TestReadValueMalformed(t *testing.T) {
	for _, tc := range malformedValueCases {
		t.Run(tc.name, func(t *testing.T) {
			for variant, r := range readerVariants(tc.in) {
				var err error
				for err == nil {
					_, err = r.ReadValue()
				}
				var pe *ProtocolError
				if !errors.As(err, &pe) {
					t.Fatalf("%s: err = %v, want *ProtocolError", variant, err)
				}
				if !strings.Contains(pe.Msg, tc.msg) || pe.Offset != tc.offset {
					t.Fatalf("%s: err = %q (offset %d), want %q at %d", variant, err, pe.Offset, tc.msg, tc.offset)
				}
				// The stream position is lost: the error sticks.
				if _, err2 := r.ReadValue(); err2 != err {
					t.Fatalf("%s: next call err = %v, want the same error", variant, err2)
				}
			}
		})
	}
}

func TestProtocolErrorText(t *testing.T) {
	r := NewReader(strings.NewReader("*1\r\n$3\r\nfoo\r\n*1\r\n$x1\r\n"), ReaderOptions{})
	if _, _, err := r.ReadCommand(); err != nil {
		t.Fatal(err)
	}
	_, _, err := r.ReadCommand()
	if got, want := err.Error(), `resp: invalid bulk length "x1" at byte 18`; got != want {
		t.Fatalf("error = %q, want %q", got, want)
	}
}

func TestUnexpectedEOF(t *testing.T) {
	cases := []struct {
		in  string
		end int64
	}{
		{"+OK", 3},
		{"+OK\r", 4},
		{"$5\r\nhel", 7},
		{"$5\r\nhello", 9},
		{"$5\r\nhello\r", 10},
		{"*2\r\n:1\r\n", 8},
		{"*2\r\n:1\r\n$3", 10},
		{"%1\r\n+k\r\n", 8},
		{"|1\r\n+k\r\n+v\r\n", 12},
	}
	for _, tc := range cases {
		for variant, r := range readerVariants(tc.in) {
			_, err := r.ReadValue()
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%q %s: err = %v, want io.ErrUnexpectedEOF", tc.in, variant, err)
			}
			if want := "at byte " + itoa(tc.end); !strings.Contains(err.Error(), want) {
				t.Fatalf("%q %s: err = %q, want it to say %q", tc.in, variant, err, want)
			}
		}
	}
}

func itoa(n int64) string {
	return string(AppendValue(nil, integer(n))[1 : len(AppendValue(nil, integer(n)))-2])
}

func TestLimits(t *testing.T) {
	opts := ReaderOptions{MaxBulkLen: 10, MaxElements: 3, MaxDepth: 2, MaxLineLen: 8}
	cases := []struct {
		in, msg string
		ok      bool
	}{
		{"$10\r\n0123456789\r\n", "", true},
		{"$11\r\n01234567890\r\n", "bulk length 11 exceeds the limit of 10 bytes", false},
		{"!11\r\n", "bulk error length 11 exceeds", false},
		{"*3\r\n:1\r\n:2\r\n:3\r\n", "", true},
		{"*4\r\n", "array length 4 exceeds the limit of 3", false},
		{"%4\r\n", "map length 4 exceeds the limit of 3", false},
		{"*1\r\n*1\r\n:1\r\n", "", true},
		{"*1\r\n*1\r\n*0\r\n", "aggregates nested deeper than 2", false},
		{"+1234567\r\n", "", true},
		{"+12345678\r\n", "line longer than 8 bytes", false},
	}
	for _, tc := range cases {
		r := NewReader(strings.NewReader(tc.in), opts)
		_, err := r.ReadValue()
		if tc.ok {
			if err != nil || r.Offset() != int64(len(tc.in)) {
				t.Fatalf("%q: err = %v, offset %d", tc.in, err, r.Offset())
			}
			continue
		}
		var pe *ProtocolError
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, tc.msg) {
			t.Fatalf("%q: err = %v, want %q", tc.in, err, tc.msg)
		}
	}
	r := NewReader(strings.NewReader("*4\r\n"), opts)
	if _, _, err := r.ReadCommand(); err == nil || !strings.Contains(err.Error(), "command of 4 arguments exceeds the limit of 3") {
		t.Fatalf("ReadCommand over MaxElements: err = %v", err)
	}
	r = NewReader(strings.NewReader("*1\r\n$11\r\n"), opts)
	if _, _, err := r.ReadCommand(); err == nil || !strings.Contains(err.Error(), "bulk length 11 exceeds the limit of 10 bytes at byte 5") {
		t.Fatalf("ReadCommand over MaxBulkLen: err = %v", err)
	}
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A declared length is a claim, not a fact: memory must follow the bytes that arrive.
func TestHugeDeclaredLengthsDoNotAllocate(t *testing.T) {
	const limit = 1 << 20
	cases := []struct {
		name string
		in   string
		cmd  bool
	}{
		{"bulk", "$536870000\r\n0123456789", false},
		{"verbatim", "=536870000\r\ntxt:456789", false},
		{"array", "*16000000\r\n:1\r\n:2\r\n", false},
		{"map", "%16000000\r\n:1\r\n:2\r\n", false},
		{"command argument", "*1\r\n$536870000\r\n0123456789", true},
		{"command arguments", "*16000000\r\n$1\r\na\r\n", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() {
				r := NewReader(strings.NewReader(tc.in), ReaderOptions{})
				if tc.cmd {
					_, _, err = r.ReadCommand()
				} else {
					_, err = r.ReadValue()
				}
			})
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err = %v, want unexpected EOF", err)
			}
			if n > limit {
				t.Fatalf("allocated %d bytes for %d bytes of input", n, len(tc.in))
			}
		})
	}
}

func TestLargeBulkValue(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB, grown in steps
	in := string(AppendBulk(nil, payload)) + "+after\r\n"
	for variant, r := range readerVariants(in) {
		if variant == "onebyte" {
			continue // 4.8 M single-byte reads is slow and covered by smaller cases
		}
		v, err := r.ReadValue()
		if err != nil || !bytes.Equal(v.Str, payload) {
			t.Fatalf("%s: err = %v, len %d", variant, err, len(v.Str))
		}
		if cap(v.Str) > 2*len(payload) {
			t.Fatalf("%s: payload of %d bytes kept a %d-byte buffer", variant, len(payload), cap(v.Str))
		}
		if v, err := r.ReadValue(); err != nil || string(v.Str) != "after" || r.Offset() != int64(len(in)) {
			t.Fatalf("%s: after the bulk: %v %v offset %d", variant, show(v), err, r.Offset())
		}
	}
}

func TestLongLines(t *testing.T) {
	long := strings.Repeat("x", 200)
	in := "+" + long + "\r\n-" + long + "\r\n"
	r := NewReader(iotest.HalfReader(strings.NewReader(in+long+"\r\n"+long+"\n")), ReaderOptions{BufferSize: 64})
	if v, err := r.ReadValue(); err != nil || string(v.Str) != long {
		t.Fatalf("simple string: %v %v", show(v), err)
	}
	if v, err := r.ReadValue(); err != nil || string(v.Str) != long || v.Kind != KindError {
		t.Fatalf("error: %v %v", show(v), err)
	}
	if r.Offset() != int64(len(in)) {
		t.Fatalf("offset %d, want %d", r.Offset(), len(in))
	}
	for i, want := range []int64{int64(len(in) + 202), int64(len(in) + 202 + 201)} {
		line, err := r.ReadLine()
		if err != nil || string(line) != long || r.Offset() != want {
			t.Fatalf("ReadLine %d: %q %v offset %d want %d", i, line, err, r.Offset(), want)
		}
	}
	r = NewReader(strings.NewReader("+"+long+"\n"), ReaderOptions{BufferSize: 64})
	if _, err := r.ReadValue(); err == nil || !strings.Contains(err.Error(), "LF without CR at byte 201") {
		t.Fatalf("long line with bare LF: %v", err)
	}
}

func TestReadLineSkipNewlinesPeekRead(t *testing.T) {
	// What a replica sees: the FULLRESYNC reply, keepalive newlines while the master
	// forks, the RDB length and the payload, then the command stream.
	rdb := strings.Repeat("R", 100)
	in := "+FULLRESYNC 8371b4fb1155b71f4a04d3e1bc3e18c4a990aeeb 0\r\n\n\n\n$100\r\n" + rdb + "*1\r\n$4\r\nPING\r\n"
	for variant, r := range readerVariants(in) {
		line, err := r.ReadLine()
		if err != nil || string(line) != "+FULLRESYNC 8371b4fb1155b71f4a04d3e1bc3e18c4a990aeeb 0" || r.Offset() != 56 {
			t.Fatalf("%s: ReadLine = %q, %v, offset %d", variant, line, err, r.Offset())
		}
		skipped := 0
		for {
			c, err := r.PeekByte()
			if err != nil {
				t.Fatalf("%s: PeekByte: %v", variant, err)
			}
			if c != '\n' {
				if c != '$' {
					t.Fatalf("%s: PeekByte = %q, want '$'", variant, c)
				}
				break
			}
			n, err := r.SkipNewlines()
			if err != nil {
				t.Fatal(err)
			}
			skipped += n
		}
		if skipped != 3 || r.Offset() != 59 {
			t.Fatalf("%s: skipped %d newlines, offset %d", variant, skipped, r.Offset())
		}
		if line, err = r.ReadLine(); err != nil || string(line) != "$100" {
			t.Fatalf("%s: length line %q %v", variant, line, err)
		}
		got, err := io.ReadAll(io.LimitReader(r, 100))
		if err != nil || string(got) != rdb || r.Offset() != 59+6+100 {
			t.Fatalf("%s: payload %d bytes, %v, offset %d", variant, len(got), err, r.Offset())
		}
		args, n, err := r.ReadCommand()
		if err != nil || len(args) != 1 || string(args[0]) != "PING" || n != 14 || r.Offset() != int64(len(in)) {
			t.Fatalf("%s: command %q n=%d %v offset %d", variant, args, n, err, r.Offset())
		}
		if _, err := r.PeekByte(); err != io.EOF {
			t.Fatalf("%s: PeekByte at the end: %v", variant, err)
		}
		if n, err := r.SkipNewlines(); n != 0 || err != io.EOF {
			t.Fatalf("%s: SkipNewlines at the end: %d %v", variant, n, err)
		}
	}
}

func TestReadLargeBypassesBuffer(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 1000)
	r := NewReader(bytes.NewReader(append([]byte("+x\r\n"), data...)), ReaderOptions{BufferSize: 64})
	if _, err := r.ReadValue(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, data) || r.Offset() != 1004 {
		t.Fatalf("read %d bytes, %v, offset %d", len(got), err, r.Offset())
	}
}

// A deadline that fires before any byte of an element was consumed leaves the Reader
// usable; the same call succeeds when data arrives.
func TestRetryAfterTimeoutAtBoundary(t *testing.T) {
	cmd := "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
	for cut := 0; cut < len(cmd); cut++ {
		src := &errAfter{first: []byte(cmd[:cut]), rest: []byte(cmd[cut:] + cmd), err: os.ErrDeadlineExceeded}
		r := NewReader(src, ReaderOptions{})
		_, _, err := r.ReadCommand()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("cut %d: err = %v, want the deadline error", cut, err)
		}
		for i := range 2 {
			args, n, err := r.ReadCommand()
			if err != nil || len(args) != 2 || string(args[1]) != "k" || n != int64(len(cmd)) {
				t.Fatalf("cut %d, retry %d: %q n=%d %v", cut, i, args, n, err)
			}
		}
	}
	src := &errAfter{rest: []byte("+OK\r\n"), err: os.ErrDeadlineExceeded}
	r := NewReader(src, ReaderOptions{})
	if _, err := r.ReadValue(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if v, err := r.ReadValue(); err != nil || string(v.Str) != "OK" {
		t.Fatalf("retry: %v %v", show(v), err)
	}
}

// Once part of an element was consumed, an error sticks.
func TestErrorSticksAfterPartialElement(t *testing.T) {
	src := &errAfter{first: []byte("*2\r\n:1\r\n"), rest: []byte(":2\r\n"), err: os.ErrDeadlineExceeded}
	r := NewReader(src, ReaderOptions{})
	_, err := r.ReadValue()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if _, err2 := r.ReadValue(); err2 != err {
		t.Fatalf("second call: %v, want the first error", err2)
	}
}

func TestReset(t *testing.T) {
	r := NewReader(strings.NewReader("?"), ReaderOptions{})
	if _, err := r.ReadValue(); err == nil {
		t.Fatal("want an error")
	}
	r.Reset(strings.NewReader(":1\r\n"))
	if v, err := r.ReadValue(); err != nil || v.Int != 1 || r.Offset() != 4 {
		t.Fatalf("after Reset: %v %v %d", show(v), err, r.Offset())
	}
}

func TestValueHelpers(t *testing.T) {
	if err := (Value{Kind: KindError, Str: []byte("ERR x")}).Err(); err == nil || err.Error() != "ERR x" {
		t.Fatalf("Err() = %v", err)
	}
	if err := (Value{Kind: KindBlobError, Str: []byte("SYNTAX y")}).Err(); err == nil || err.(*Error).Prefix() != "SYNTAX" {
		t.Fatalf("Err() = %v", err)
	}
	if err := bulk("x").Err(); err != nil {
		t.Fatalf("bulk Err() = %v", err)
	}
	texts := map[string]Value{
		"hi":  {Kind: KindVerbatim, Str: []byte("txt:hi")},
		"12":  integer(12),
		"1":   {Kind: KindBoolean, Int: 1},
		"1.5": {Kind: KindDouble, Str: []byte("1.5")},
		"":    arr(bulk("x")),
	}
	for want, v := range texts {
		if got := v.Text(); got != want {
			t.Fatalf("%s.Text() = %q, want %q", show(v), got, want)
		}
	}
	if KindMap.String() != "%" || Kind(0).String() != "0x00" {
		t.Fatalf("Kind.String: %q %q", KindMap.String(), Kind(0).String())
	}
}
