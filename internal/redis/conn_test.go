package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/resp"
)

func TestDoReplyTypes(t *testing.T) {
	s := startServer(t, false)
	c := dial(t, s, Options{})
	ctx := context.Background()

	check := func(name string, v resp.Value, err error, kind resp.Kind, text string) {
		t.Helper()
		if err != nil || v.Kind != kind || v.Text() != text {
			t.Fatalf("%s: kind %s text %q err %v, want kind %s text %q", name, v.Kind, v.Text(), err, kind, text)
		}
	}
	v, err := c.Do(ctx, "PING")
	check("PING", v, err, resp.KindSimpleString, "PONG")
	v, err = c.Do(ctx, "SET", "k", []byte("value\r\n\x00"))
	check("SET", v, err, resp.KindSimpleString, "OK")
	v, err = c.Do(ctx, "GET", "k")
	check("GET", v, err, resp.KindBulkString, "value\r\n\x00")
	v, err = c.Do(ctx, "GET", "missing")
	if err != nil || v.Kind != resp.KindBulkString || !v.Null {
		t.Fatalf("GET missing: %+v %v", v, err)
	}
	v, err = c.Do(ctx, "INCRBY", "n", int64(-5))
	check("INCRBY", v, err, resp.KindInteger, "-5")
	v, err = c.Do(ctx, "RPUSH", "l", "a", "b", "c")
	check("RPUSH", v, err, resp.KindInteger, "3")
	v, err = c.Do(ctx, "LRANGE", "l", 0, -1)
	if err != nil || v.Kind != resp.KindArray || len(v.Elems) != 3 || v.Elems[2].Text() != "c" {
		t.Fatalf("LRANGE: %+v %v", v, err)
	}
	v, err = c.Do(ctx, "BLPOP", "nolist", 0.01)
	if err != nil || v.Kind != resp.KindArray || !v.Null {
		t.Fatalf("BLPOP timeout: %+v %v", v, err)
	}

	// An error reply is a *resp.Error and the value; the connection stays usable.
	v, err = c.Do(ctx, "INCR", "l")
	var re *resp.Error
	if !errors.As(err, &re) || !re.IsWrongType() || v.Kind != resp.KindError {
		t.Fatalf("INCR on a list: %+v %v", v, err)
	}
	v, err = c.Do(ctx, "NOSUCHCOMMAND", "x")
	if !errors.As(err, &re) || re.Prefix() != "ERR" || !strings.Contains(re.Msg, "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
	v, err = c.Do(ctx, "ECHO", "still here")
	check("after errors", v, err, resp.KindBulkString, "still here")

	// RESP3: every type, as the server's own DEBUG PROTOCOL emits it.
	v, err = c.Do(ctx, "HELLO", "3")
	if err != nil || v.Kind != resp.KindMap {
		t.Fatalf("HELLO 3: %+v %v", v, err)
	}
	resp3 := []struct {
		arg  string
		kind resp.Kind
		text string
		n    int
	}{
		{"string", resp.KindBulkString, "Hello World", 0},
		{"integer", resp.KindInteger, "12345", 0},
		{"double", resp.KindDouble, "3.141", 0},
		{"bignum", resp.KindBigNumber, "1234567999999999999999999999999999999", 0},
		{"null", resp.KindNull, "", 0},
		{"array", resp.KindArray, "", 3},
		{"set", resp.KindSet, "", 3},
		{"map", resp.KindMap, "", 6},
		{"attrib", resp.KindBulkString, "Some real reply following the attribute", 0},
		{"verbatim", resp.KindVerbatim, "This is a verbatim\nstring", 0},
		{"true", resp.KindBoolean, "1", 0},
		{"false", resp.KindBoolean, "0", 0},
	}
	for _, tc := range resp3 {
		v, err := c.Do(ctx, "DEBUG", "PROTOCOL", tc.arg)
		if err != nil || v.Kind != tc.kind || v.Text() != tc.text || len(v.Elems) != tc.n {
			t.Fatalf("DEBUG PROTOCOL %s: kind %s text %q elems %d err %v", tc.arg, v.Kind, v.Text(), len(v.Elems), err)
		}
	}
	// A push arrives before the reply it precedes: Receive returns both, in order, and
	// counts only the reply; Do skips the push.
	must(t, c.Send("DEBUG", "PROTOCOL", "push"))
	v, err = c.Receive()
	if err != nil || v.Kind != resp.KindPush || len(v.Elems) != 2 {
		t.Fatalf("push: %+v %v", v, err)
	}
	v, err = c.Receive()
	check("reply after push", v, err, resp.KindBulkString, "Some real reply following the push reply")
	v, err = c.Do(ctx, "DEBUG", "PROTOCOL", "push")
	check("Do past a push", v, err, resp.KindBulkString, "Some real reply following the push reply")
}

func TestDoArguments(t *testing.T) {
	s := startServer(t, false)
	c := dial(t, s, Options{})
	ctx := context.Background()
	cases := []struct {
		arg  any
		want string
	}{
		{"str", "str"},
		{[]byte("bytes"), "bytes"},
		{42, "42"},
		{int64(-1 << 63), "-9223372036854775808"},
		{int32(-7), "-7"},
		{uint64(math.MaxUint64), "18446744073709551615"},
		{uint(7), "7"},
		{1.5, "1.5"},
		{float32(0.25), "0.25"},
		{1e21, "1000000000000000000000"},
		{0.1, "0.1"},
		{true, "1"},
		{false, "0"},
		{Secret("s3cret"), "s3cret"},
	}
	for _, tc := range cases {
		do(t, c, "SET", "k", tc.arg)
		if got := do(t, c, "GET", "k"); got != tc.want {
			t.Errorf("%T %v stored as %q, want %q", tc.arg, tc.arg, got, tc.want)
		}
	}
	// Redis parses the float forms back: ZADD takes the infinities and a float score.
	do(t, c, "ZADD", "z", math.Inf(-1), "lo", math.Inf(1), "hi", 2.5, "mid")
	if got := do(t, c, "ZSCORE", "z", "mid"); got != "2.5" {
		t.Fatalf("ZSCORE = %q", got)
	}
	if got := do(t, c, "ZSCORE", "z", "hi"); got != "inf" {
		t.Fatalf("ZSCORE inf = %q", got)
	}
	for _, bad := range []any{math.NaN(), nil, struct{}{}, []string{"x"}} {
		_, err := c.Do(ctx, "SET", "k", bad)
		if err == nil || !strings.Contains(err.Error(), "SET on "+s.addr+": argument 3") {
			t.Fatalf("argument %#v: err = %v", bad, err)
		}
	}
	if got := do(t, c, "GET", "k"); got != "s3cret" {
		t.Fatalf("a refused argument must not leave a partial command behind: GET = %q", got)
	}
	if _, err := c.Do(ctx); err == nil {
		t.Fatal("Do without arguments: want an error")
	}
}

func TestPipeline(t *testing.T) {
	s := startServer(t, false)
	c := dial(t, s, Options{})
	const n = 10_000
	for i := range n {
		must(t, c.Send("SET", "key:"+strconv.Itoa(i), i))
	}
	must(t, c.Flush())
	for i := range n {
		v, err := c.Receive()
		if err != nil || v.Text() != "OK" {
			t.Fatalf("reply %d: %+v %v", i, v, err)
		}
	}
	// Receive flushes what Send buffered; replies come back in order.
	for i := range n {
		must(t, c.Send("GET", "key:"+strconv.Itoa(i)))
	}
	_, err := c.Do(context.Background(), "PING")
	if err == nil || !strings.Contains(err.Error(), "10000 pipelined replies are still to be received") {
		t.Fatalf("Do with replies pending: %v", err)
	}
	for i := range n {
		v, err := c.Receive()
		if err != nil || v.Text() != strconv.Itoa(i) {
			t.Fatalf("GET %d: %q %v", i, v.Text(), err)
		}
	}
	// An error reply in a pipeline is returned in its place.
	must(t, c.Send("RPUSH", "list", "a"))
	must(t, c.Send("INCR", "list"))
	must(t, c.Send("LLEN", "list"))
	if v, err := c.Receive(); err != nil || v.Int != 1 {
		t.Fatalf("RPUSH: %+v %v", v, err)
	}
	var re *resp.Error
	if _, err := c.Receive(); !errors.As(err, &re) || !re.IsWrongType() {
		t.Fatalf("INCR list: %v", err)
	}
	if v, err := c.Receive(); err != nil || v.Int != 1 {
		t.Fatalf("LLEN: %+v %v", v, err)
	}
	if got := do(t, c, "DBSIZE"); got != strconv.Itoa(n+1) {
		t.Fatalf("DBSIZE = %s", got)
	}
}

func TestAuthRequirePass(t *testing.T) {
	const pw = "correct-horse-battery"
	s := startServer(t, false, "--requirepass", pw)
	c := dial(t, s, Options{Password: pw})
	if got := do(t, c, "ACL", "WHOAMI"); got != "default" {
		t.Fatalf("WHOAMI = %q", got)
	}

	_, err := Dial(context.Background(), Options{Addr: s.addr, Password: "wrong-pass-xyz"})
	want := "auth to " + s.addr + ": WRONGPASS invalid username-password pair or user is disabled. (check the password)"
	if err == nil || err.Error() != want {
		t.Fatalf("wrong password:\n got %v\nwant %s", err, want)
	}
	var re *resp.Error
	if !errors.As(err, &re) || !re.IsWrongPass() {
		t.Fatalf("wrong password error does not unwrap to *resp.Error: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-pass-xyz") {
		t.Fatalf("error contains the password: %v", err)
	}

	_, err = Dial(context.Background(), Options{Addr: s.addr})
	want = "connect " + s.addr + ": NOAUTH Authentication required. (server requires a password; add it to the URL: redis://[user]:password@" + s.addr + ")"
	if err == nil || err.Error() != want {
		t.Fatalf("no password:\n got %v\nwant %s", err, want)
	}
	if !errors.As(err, &re) || !re.IsNoAuth() {
		t.Fatalf("NOAUTH error does not unwrap to *resp.Error: %v", err)
	}
}

func TestAuthACLUser(t *testing.T) {
	s := startServer(t, false)
	admin := dial(t, s, Options{})
	do(t, admin, "ACL", "SETUSER", "alice", "on", ">alice-pw", "~*", "+@all")
	do(t, admin, "ACL", "SETUSER", "bob", "on", "nopass", "~*", "+@all")

	c := dial(t, s, Options{Username: "alice", Password: "alice-pw", DB: 2, ClientName: "ferry-test"})
	if got := do(t, c, "ACL", "WHOAMI"); got != "alice" {
		t.Fatalf("WHOAMI = %q", got)
	}
	if got := do(t, c, "CLIENT", "GETNAME"); got != "ferry-test" {
		t.Fatalf("GETNAME = %q", got)
	}
	if info := do(t, c, "CLIENT", "INFO"); !strings.Contains(info, " db=2 ") {
		t.Fatalf("CLIENT INFO does not show db=2: %s", info)
	}
	// A nopass user logs in with a user name alone.
	if got := do(t, dial(t, s, Options{Username: "bob"}), "ACL", "WHOAMI"); got != "bob" {
		t.Fatalf("WHOAMI = %q", got)
	}

	_, err := Dial(context.Background(), Options{Addr: s.addr, Username: "alice", Password: "not-alices-pw"})
	want := `auth to ` + s.addr + ` as user "alice": WRONGPASS invalid username-password pair or user is disabled. (check the user name and password)`
	if err == nil || err.Error() != want {
		t.Fatalf("wrong password:\n got %v\nwant %s", err, want)
	}
	if strings.Contains(err.Error(), "not-alices-pw") {
		t.Fatal("error contains the password")
	}
	// A password for a server that has none.
	_, err = Dial(context.Background(), Options{Addr: s.addr, Password: "unneeded-pw"})
	if err == nil || !strings.Contains(err.Error(), "the server has no password set; remove it from the URL") || strings.Contains(err.Error(), "unneeded-pw") {
		t.Fatalf("password without requirepass: %v", err)
	}
}

func TestSelectAndName(t *testing.T) {
	s := startServer(t, false, "--databases", "4")
	c := dial(t, s, Options{DB: 3})
	do(t, c, "SET", "in3", "x")
	if got := do(t, dial(t, s, Options{}), "EXISTS", "in3"); got != "0" {
		t.Fatalf("key written with DB 3 is in db 0")
	}
	_, err := Dial(context.Background(), Options{Addr: s.addr, DB: 9})
	want := "select db 9 on " + s.addr + ": ERR DB index is out of range (the server has fewer databases; check the /db part of the URL)"
	if err == nil || err.Error() != want {
		t.Fatalf("DB out of range:\n got %v\nwant %s", err, want)
	}
}

func TestConnectionRefused(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	_, err := Dial(context.Background(), Options{Addr: addr})
	want := "connect " + addr + ": connection refused (is the server running and reachable?)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("error does not unwrap to ECONNREFUSED: %v", err)
	}
	_, err = Dial(context.Background(), Options{})
	if err == nil || !strings.Contains(err.Error(), "no address") {
		t.Fatalf("no address: %v", err)
	}
	_, err = Dial(context.Background(), Options{Addr: "no-such-host.invalid:6379"})
	if err == nil || !strings.HasPrefix(err.Error(), "connect no-such-host.invalid:6379: cannot resolve host") {
		t.Fatalf("unknown host: %v", err)
	}
}

// silentListener accepts connections and never answers, like a hung server.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

func TestDialTimeout(t *testing.T) {
	addr := silentListener(t)
	start := time.Now()
	_, err := Dial(context.Background(), Options{Addr: addr, DialTimeout: 200 * time.Millisecond})
	if err == nil || !strings.HasPrefix(err.Error(), "login on "+addr+": context deadline exceeded") {
		t.Fatalf("err = %v", err)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error does not unwrap to DeadlineExceeded: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Dial took %v with a 200ms timeout", d)
	}
	// The caller's context bounds Dial too.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	_, err = Dial(ctx, Options{Addr: addr})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Dial: %v", err)
	}
}

func TestContextAndTimeouts(t *testing.T) {
	s := startServer(t, false)

	// Cancellation interrupts a blocked command and breaks the connection.
	c := dial(t, s, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Do(ctx, "BLPOP", "nolist", 0)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("canceled BLPOP: %v after %v", err, time.Since(start))
	}
	if err.Error() != "BLPOP on "+s.addr+": context canceled" {
		t.Fatalf("message: %q", err)
	}
	if _, err2 := c.Do(context.Background(), "PING"); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("after a broken command: %v", err2)
	}

	// A context deadline.
	c = dial(t, s, Options{})
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, "BLPOP", "nolist", 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("BLPOP past the deadline: %v", err)
	}

	// IOTimeout when the context has none.
	c = dial(t, s, Options{IOTimeout: 100 * time.Millisecond})
	_, err = c.Do(context.Background(), "BLPOP", "nolist", 0)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !strings.Contains(err.Error(), "BLPOP on "+s.addr+": no reply in time") {
		t.Fatalf("BLPOP past IOTimeout: %v", err)
	}
	// Receive is bounded by IOTimeout too.
	c = dial(t, s, Options{IOTimeout: 100 * time.Millisecond})
	must(t, c.Send("BLPOP", "nolist", 0))
	if _, err := c.Receive(); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Receive past IOTimeout: %v", err)
	}

	// A context already done: nothing is sent and the connection stays usable.
	c = dial(t, s, Options{})
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := c.Do(done, "SET", "x", "1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Do with a canceled context: %v", err)
	}
	if got := do(t, c, "EXISTS", "x"); got != "0" {
		t.Fatal("command ran although its context was canceled")
	}
	// A context canceled after the reply must not poison the next command's deadline.
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := c.Do(ctx, "PING"); err != nil {
			t.Fatal(err)
		}
		cancel()
		if _, err := c.Do(context.Background(), "PING"); err != nil {
			t.Fatalf("PING after a late cancel: %v", err)
		}
	}
}

func TestServerClosesConnection(t *testing.T) {
	s := startServer(t, false)
	c := dial(t, s, Options{ClientName: "victim"})
	admin := dial(t, s, Options{})
	do(t, admin, "CLIENT", "KILL", "USER", "default", "SKIPME", "yes")
	_, err := c.Do(context.Background(), "PING")
	if err == nil || !strings.HasPrefix(err.Error(), "PING on "+s.addr+": connection closed by the server") {
		t.Fatalf("err = %v", err)
	}
}

func TestInfoAndAccessors(t *testing.T) {
	s := startServer(t, false)
	c := dial(t, s, Options{IOTimeout: 50 * time.Millisecond})
	info, err := c.Info(context.Background(), "server", "replication")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info["redis_version"], "7.") || info["role"] != "master" || info["tcp_port"] != strconv.Itoa(s.port) {
		t.Fatalf("INFO: version %q role %q port %q", info["redis_version"], info["role"], info["tcp_port"])
	}
	if c.Addr() != s.addr {
		t.Fatalf("Addr = %q", c.Addr())
	}
	// Taking over the connection: write raw RESP to NetConn and parse with Reader. The
	// IOTimeout of the last command must not linger as a deadline on the connection.
	time.Sleep(100 * time.Millisecond)
	if _, err := c.NetConn().Write(resp.AppendCommandStrings(nil, "ECHO", "raw")); err != nil {
		t.Fatal(err)
	}
	before := c.Reader().Offset()
	v, err := c.Reader().ReadValue()
	if err != nil || v.Text() != "raw" || c.Reader().Offset()-before != int64(len("$3\r\nraw\r\n")) {
		t.Fatalf("raw read: %+v %v", v, err)
	}
	must(t, c.Close())
	must(t, c.Close())
	if _, err := c.Do(context.Background(), "PING"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Do after Close: %v", err)
	}
	if err := c.Send("PING"); err == nil {
		t.Fatal("Send after Close: want an error")
	}
}

func TestParseInfo(t *testing.T) {
	got := ParseInfo("# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=1,expires=0\r\nbad line\r\nurl:redis://x:1\r\n")
	want := map[string]string{"redis_version": "7.0.15", "db0": "keys=1,expires=0", "url": "redis://x:1"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
