package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open starts a Writer on s that is closed when the test ends.
func open(t testing.TB, s *testutil.Server, mod func(*Options)) *Writer {
	t.Helper()
	opts := Options{
		Target: redis.Options{Addr: s.Addr()},
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

func cmd(db int, off int64, args ...string) Command {
	c := Command{DB: db, Offset: off}
	for _, a := range args {
		c.Args = append(c.Args, []byte(a))
	}
	return c
}

func write(t testing.TB, w *Writer, c Command) {
	t.Helper()
	if err := w.Write(context.Background(), c); err != nil {
		t.Fatalf("write %s: %v", c.Args[0], err)
	}
}

func flush(t testing.TB, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// dbDo runs a command in database db on a fresh connection.
func dbDo(t testing.TB, s *testutil.Server, db int, args ...any) resp.Value {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := redis.Dial(ctx, redis.Options{Addr: s.Addr(), DB: db})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.Do(ctx, args...)
	if err != nil {
		t.Fatalf("%v in db %d: %v", args, db, err)
	}
	return v
}

// workload returns the i-th command of a deterministic mix of types, mostly not idempotent,
// so that a command applied twice or out of order changes the digest.
func workload(i int) []string {
	n := strconv.Itoa(i)
	switch i % 8 {
	case 0:
		return []string{"SET", "str:" + n, "value-" + n}
	case 1:
		return []string{"HSET", "hash:" + strconv.Itoa(i%97), "f" + n, n}
	case 2:
		return []string{"RPUSH", "list:" + strconv.Itoa(i%31), n}
	case 3:
		return []string{"INCR", "counter:" + strconv.Itoa(i%13)}
	case 4:
		return []string{"SADD", "set:" + strconv.Itoa(i%53), n}
	case 5:
		return []string{"ZADD", "zset:" + strconv.Itoa(i%41), n, "m" + n}
	case 6:
		return []string{"APPEND", "app:" + strconv.Itoa(i%7), n + ","}
	default:
		if (i/8)%2 == 0 {
			return []string{"DEL", "str:" + strconv.Itoa(i-7)}
		}
		return []string{"LPOP", "list:" + strconv.Itoa(i%31)}
	}
}

// TestPipelineMatchesPlainClient sends 100k commands through the writer and the same
// commands through redis.Conn to a second server: both datasets must be identical.
func TestPipelineMatchesPlainClient(t *testing.T) {
	const n = 100_000
	dst := testutil.StartServer(t)
	ref := testutil.StartServer(t)
	w := open(t, dst, nil)
	for i := range n {
		write(t, w, cmd(0, int64(i+1), workload(i)...))
	}
	flush(t, w)

	rc := ref.Conn(t)
	for i := range n {
		args := workload(i)
		anys := make([]any, len(args))
		for j, a := range args {
			anys[j] = a
		}
		if err := rc.Send(anys...); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 {
			for range (i % 1000) + 1 {
				if _, err := rc.Receive(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	if got, want := dst.Do(t, "DBSIZE").Int, ref.Do(t, "DBSIZE").Int; got != want || got == 0 {
		t.Fatalf("DBSIZE = %d, reference %d", got, want)
	}
	if got, want := testutil.Digest(t, dst), testutil.Digest(t, ref); got != want {
		t.Fatalf("DEBUG DIGEST = %s, reference %s", got, want)
	}
	if got := string(dst.Do(t, "GET", "str:99992").Str); got != "value-99992" {
		t.Fatalf("GET str:99992 = %q", got)
	}
	if got := w.Applied(); got != n {
		t.Fatalf("Applied = %d, want %d", got, n)
	}
	st := w.Stats()
	if st.Commands != n || st.Replies != n || st.InFlight != 0 || st.InFlightBytes != 0 || st.Selects != 0 {
		t.Fatalf("stats = %+v", st)
	}
	if len(st.Errors) != 0 || st.Reconnects != 0 {
		t.Fatalf("errors %v, reconnects %d", st.Errors, st.Reconnects)
	}
}

// TestSelectInjection writes to several databases and checks that every command landed in
// its own, that SELECT is injected only on a change, and that a reconnect re-selects.
func TestSelectInjection(t *testing.T) {
	dst := testutil.StartServer(t)
	w := open(t, dst, func(o *Options) { o.Target.DB = 3 })
	dbs := []int{3, 3, 0, 7, 7, -1, 7, 1, 15, 0}
	for i, db := range dbs {
		args := []string{"RPUSH", "where", strconv.Itoa(i)}
		if db < 0 {
			args = []string{"PING"}
		}
		write(t, w, cmd(db, int64(i+1), args...))
	}
	flush(t, w)
	want := map[int]string{3: "0,1", 0: "2,9", 7: "3,4,6", 1: "7", 15: "8"}
	for db, list := range want {
		v := dbDo(t, dst, db, "LRANGE", "where", 0, -1)
		var got []string
		for _, e := range v.Elems {
			got = append(got, string(e.Str))
		}
		if strings.Join(got, ",") != list {
			t.Errorf("db %d: where = %v, want %s", db, got, list)
		}
	}
	if st := w.Stats(); st.Selects != 5 || st.Commands != int64(len(dbs)) {
		t.Fatalf("selects = %d (want 5), commands = %d", st.Selects, st.Commands)
	}

	// The connection is in db 0 now. Kill it: the writer must come back in db 0, not in
	// Target.DB, although the next command carries no reason to SELECT.
	dst.Do(t, "CLIENT", "KILL", "TYPE", "normal")
	write(t, w, cmd(0, 100, "SET", "after-kill", "x"))
	flush(t, w)
	if got := dbDo(t, dst, 0, "EXISTS", "after-kill").Int; got != 1 {
		t.Fatalf("after-kill not in db 0 (the reconnect did not re-select)")
	}
	if st := w.Stats(); st.Reconnects == 0 {
		t.Fatalf("no reconnect after CLIENT KILL: %+v", st)
	}
}

// TestOOMIsFatal fills a destination with a 1 MB limit: the writer must stop with an error
// that names the command, key, database, offset and the fix, and Applied must stay at the
// last command the destination accepted.
func TestOOMIsFatal(t *testing.T) {
	dst := testutil.StartServer(t, "--maxmemory", "1mb", "--maxmemory-policy", "noeviction")
	w := open(t, dst, nil)
	value := strings.Repeat("v", 10_000)
	var err error
	for i := 1; i <= 1000 && err == nil; i++ {
		err = w.Write(context.Background(), cmd(0, int64(i), "SET", "key:"+strconv.Itoa(i), value))
	}
	if err == nil {
		err = w.Flush(context.Background())
	}
	t.Log(err)
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Reason != ReasonOOM {
		t.Fatalf("err = %v, want an OOM ApplyError", err)
	}
	keys := dst.Do(t, "DBSIZE").Int
	if keys == 0 || keys >= 1000 {
		t.Fatalf("DBSIZE = %d; the test needs the limit to be hit part way", keys)
	}
	// Keys are written in offset order and only SETs: the destination holds exactly 1..keys.
	wantMsg := fmt.Sprintf(`destination out of memory while applying SET "key:%d" (db 0, offset %d): raise maxmemory`, keys+1, keys+1)
	if !strings.Contains(err.Error(), wantMsg) || !strings.Contains(err.Error(), "OOM command not allowed") {
		t.Fatalf("error text:\n%s\nwant it to contain:\n%s", err, wantMsg)
	}
	if strings.Contains(err.Error(), value[:50]) {
		t.Fatalf("error text contains the value: %s", err)
	}
	if got := w.Applied(); got != keys {
		t.Fatalf("Applied = %d, want %d (the last accepted offset)", got, keys)
	}
	var re *resp.Error
	if !errors.As(err, &re) || !re.IsOOM() {
		t.Fatalf("the reply is not reachable with errors.As: %v", err)
	}
	if err := w.Write(context.Background(), cmd(0, 5000, "SET", "late", "x")); !errors.Is(err, ae) {
		t.Fatalf("Write after the failure = %v, want the failure", err)
	}
	if st := w.Stats(); st.Errors[ReasonOOM] != 1 || st.Replies != keys {
		t.Fatalf("stats = %+v", st)
	}
	if err := w.Close(); !errors.Is(err, ae) {
		t.Fatalf("Close = %v, want the failure", err)
	}
}

// TestReconnectAfterClientKill kills the writer's connection repeatedly while it streams:
// every command must arrive (they are idempotent SETs) and the reconnects must be counted.
func TestReconnectAfterClientKill(t *testing.T) {
	const n = 30_000
	dst := testutil.StartServer(t)
	w := open(t, dst, nil)
	for i := range n {
		write(t, w, cmd(0, int64(i+1), "SET", "k:"+strconv.Itoa(i), strconv.Itoa(i)))
		if i%7000 == 3000 {
			dst.Do(t, "CLIENT", "KILL", "TYPE", "normal")
		}
	}
	flush(t, w)
	if got := dst.Do(t, "DBSIZE").Int; got != n {
		t.Fatalf("DBSIZE = %d, want %d", got, n)
	}
	for _, i := range []int{0, 3000, 3001, 17777, n - 1} {
		if got := string(dst.Do(t, "GET", "k:"+strconv.Itoa(i)).Str); got != strconv.Itoa(i) {
			t.Fatalf("k:%d = %q", i, got)
		}
	}
	st := w.Stats()
	if st.Reconnects == 0 || st.Errors[ReasonConnection] == 0 || st.Retries == 0 {
		t.Fatalf("the kills were not noticed: %+v", st)
	}
	if w.Applied() != n {
		t.Fatalf("Applied = %d", w.Applied())
	}
}

// TestServerRestart restarts the destination (with an fsync'ed AOF, so what it
// acknowledged survives) in the middle of the stream.
func TestServerRestart(t *testing.T) {
	const n = 10_000
	dst := testutil.StartServer(t, "--appendonly", "yes", "--appendfsync", "always")
	w := open(t, dst, nil)
	for i := range n {
		write(t, w, cmd(0, int64(i+1), "SET", "k:"+strconv.Itoa(i), strconv.Itoa(i)))
		if i == n/2 {
			dst.Restart(t)
		}
	}
	flush(t, w)
	if got := dst.Do(t, "DBSIZE").Int; got != n {
		t.Fatalf("DBSIZE = %d, want %d", got, n)
	}
	if st := w.Stats(); st.Reconnects == 0 {
		t.Fatalf("no reconnect: %+v", st)
	}
}

// TestRetryTimeout: a destination that stays down makes the writer give up after
// RetryTimeout with an error that says so.
func TestRetryTimeout(t *testing.T) {
	dst := testutil.StartServer(t)
	w := open(t, dst, func(o *Options) { o.RetryTimeout = 400 * time.Millisecond })
	write(t, w, cmd(0, 1, "SET", "a", "1"))
	flush(t, w)
	dst.Kill()
	write(t, w, cmd(0, 2, "SET", "b", "1"))
	start := time.Now()
	err := w.Flush(context.Background())
	t.Log(err)
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Reason != ReasonConnection || !strings.Contains(err.Error(), "gave up") ||
		!strings.Contains(err.Error(), "RetryTimeout 400ms") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("gave up after %s", d)
	}
	if w.Applied() != 1 {
		t.Fatalf("Applied = %d", w.Applied())
	}
	if st := w.Stats(); st.InFlight != 1 || st.Retries == 0 {
		t.Fatalf("stats = %+v", st)
	}
}

// TestReconnectAuthFails: a reconnect that the destination refuses to log in is fatal at
// once, not retried for hours, and the error says what to check.
func TestReconnectAuthFails(t *testing.T) {
	dst := testutil.StartServer(t)
	w := open(t, dst, nil)
	write(t, w, cmd(0, 1, "SET", "a", "1"))
	flush(t, w)
	dst.Do(t, "CONFIG", "SET", "requirepass", "s3cret")
	dst.Do(t, "CLIENT", "KILL", "TYPE", "normal")
	write(t, w, cmd(0, 2, "SET", "b", "1"))
	err := w.Flush(context.Background())
	var ae *ApplyError
	t.Log(err)
	if !errors.As(err, &ae) || ae.Reason != ReasonAuth || !strings.Contains(err.Error(), "refused the login") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the password leaked: %v", err)
	}
	if w.Applied() != 1 {
		t.Fatalf("Applied = %d", w.Applied())
	}
}

// waitFor polls cond every few milliseconds, for test setup only.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLoadingIsRetried makes the destination reload its dataset slowly (DEBUG RELOAD with
// key-load-delay): commands meet -LOADING and must be retried until they succeed.
func TestLoadingIsRetried(t *testing.T) {
	dst := testutil.StartServer(t)
	dst.Do(t, "DEBUG", "POPULATE", "2000", "pop")
	dst.Do(t, "CONFIG", "SET", "key-load-delay", "400") // µs per key: ~0.8 s of loading
	dst.Do(t, "CONFIG", "SET", "loading-process-events-interval-bytes", "1024")
	w := open(t, dst, nil)

	reload := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := dst.Call(ctx, "DEBUG", "RELOAD")
		reload <- err
	}()
	waitFor(t, "the destination to load", func() bool {
		c, err := redis.Dial(context.Background(), redis.Options{Addr: dst.Addr()})
		if err != nil {
			return false
		}
		defer c.Close()
		v, err := c.Do(context.Background(), "INFO", "persistence")
		return err == nil && strings.Contains(string(v.Str), "loading:1")
	})
	for i := range 500 {
		write(t, w, cmd(0, int64(i+1), "SET", "k:"+strconv.Itoa(i), "v"))
	}
	flush(t, w)
	if err := <-reload; err != nil {
		t.Fatal(err)
	}
	if got := dst.Do(t, "DBSIZE").Int; got != 2500 {
		t.Fatalf("DBSIZE = %d, want 2500", got)
	}
	if st := w.Stats(); st.Errors[ReasonLoading] == 0 {
		t.Fatalf("no -LOADING was met: %+v", st)
	}
}

// TestBusyIsRetried runs a Lua busy loop on the destination: commands meet -BUSY and must
// be retried until the script is killed.
func TestBusyIsRetried(t *testing.T) {
	dst := testutil.StartServer(t, "--busy-reply-threshold", "100")
	w := open(t, dst, nil)
	script := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := redis.Dial(ctx, redis.Options{Addr: dst.Addr()})
		if err != nil {
			script <- err
			return
		}
		defer c.Close()
		_, err = c.Do(ctx, "EVAL", "while true do end", "0")
		script <- err
	}()
	waitFor(t, "the destination to be busy", func() bool {
		_, err := dst.Call(context.Background(), "PING")
		var re *resp.Error
		return errors.As(err, &re) && re.IsBusy()
	})
	for i := range 500 {
		write(t, w, cmd(0, int64(i+1), "SET", "k:"+strconv.Itoa(i), "v"))
	}
	waitFor(t, "a -BUSY reply", func() bool { return w.Stats().Errors[ReasonBusy] > 0 })
	dst.Do(t, "SCRIPT", "KILL")
	if err := <-script; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("the script ended with %v, want it killed", err)
	}
	flush(t, w)
	if got := dst.Do(t, "DBSIZE").Int; got != 500 {
		t.Fatalf("DBSIZE = %d, want 500", got)
	}
}

// TestStalledConnection blocks the destination (DEBUG SLEEP) longer than twice IOTimeout:
// the writer must give up on the silent connection, reconnect and resend.
func TestStalledConnection(t *testing.T) {
	dst := testutil.StartServer(t)
	w := open(t, dst, func(o *Options) { o.Target.IOTimeout = 150 * time.Millisecond })
	sleep := make(chan error, 1)
	go func() {
		_, err := dst.Call(context.Background(), "DEBUG", "SLEEP", "1")
		sleep <- err
	}()
	waitFor(t, "the destination to sleep", func() bool {
		// A connection answered by neither PING nor anything else: the sleep is on.
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		c, err := redis.Dial(ctx, redis.Options{Addr: dst.Addr()})
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	for i := range 100 {
		write(t, w, cmd(0, int64(i+1), "SET", "k:"+strconv.Itoa(i), "v"))
	}
	flush(t, w)
	if err := <-sleep; err != nil {
		t.Fatal(err)
	}
	if got := dst.Do(t, "DBSIZE").Int; got != 100 {
		t.Fatalf("DBSIZE = %d", got)
	}
	if st := w.Stats(); st.Errors[ReasonConnection] == 0 || st.Reconnects == 0 {
		t.Fatalf("the stall was not detected: %+v", st)
	}
}

// TestWrongType: fatal by default, skipped and counted under IgnoreErrors.
func TestWrongType(t *testing.T) {
	t.Run("fatal", func(t *testing.T) {
		dst := testutil.StartServer(t)
		dst.Do(t, "SET", "taken", "string")
		w := open(t, dst, nil)
		write(t, w, cmd(0, 10, "SET", "a", "1"))
		write(t, w, cmd(0, 11, "LPUSH", "taken", "secret-value"))
		write(t, w, cmd(0, 12, "SET", "b", "1"))
		err := w.Flush(context.Background())
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Reason != ReasonWrongType || ae.Key != "taken" || ae.Offset != 11 {
			t.Fatalf("err = %#v", err)
		}
		if !strings.Contains(err.Error(), `the destination diverged from the source at key "taken"`) ||
			strings.Contains(err.Error(), "secret-value") {
			t.Fatalf("error text: %s", err)
		}
		if w.Applied() != 10 {
			t.Fatalf("Applied = %d, want 10", w.Applied())
		}
	})
	t.Run("ignored", func(t *testing.T) {
		dst := testutil.StartServer(t)
		dst.Do(t, "SET", "taken", "string")
		w := open(t, dst, func(o *Options) { o.IgnoreErrors = true })
		write(t, w, cmd(0, 10, "SET", "a", "1"))
		write(t, w, cmd(0, 11, "LPUSH", "taken", "x"))
		write(t, w, cmd(0, 12, "INCR", "taken"))
		write(t, w, cmd(0, 13, "SET", "b", "1"))
		flush(t, w)
		st := w.Stats()
		if st.Skipped != 2 || st.Errors[ReasonWrongType] != 1 || st.Errors[ReasonValue] != 1 || st.Replies != 2 {
			t.Fatalf("stats = %+v", st)
		}
		if w.Applied() != 13 || dst.Do(t, "EXISTS", "b").Int != 1 {
			t.Fatalf("Applied = %d, b missing?", w.Applied())
		}
	})
	t.Run("not-ignorable", func(t *testing.T) {
		dst := testutil.StartServer(t)
		w := open(t, dst, func(o *Options) { o.IgnoreErrors = true })
		write(t, w, cmd(0, 1, "NOSUCHCOMMAND", "k", "v"))
		err := w.Flush(context.Background())
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Reason != ReasonUnknownCommand ||
			!strings.Contains(err.Error(), `the destination does not know NOSUCHCOMMAND "k"`) ||
			strings.Contains(err.Error(), "'v'") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestTransactions passes source transactions through.
func TestTransactions(t *testing.T) {
	t.Run("applied", func(t *testing.T) {
		dst := testutil.StartServer(t)
		w := open(t, dst, nil)
		write(t, w, cmd(0, 1, "SET", "before", "1"))
		write(t, w, cmd(2, 2, "MULTI"))
		write(t, w, cmd(2, 3, "SET", "a", "1"))
		write(t, w, cmd(2, 4, "INCR", "a"))
		write(t, w, cmd(5, 5, "SET", "b", "2")) // a SELECT inside the transaction
		write(t, w, cmd(5, 6, "EXEC"))
		write(t, w, cmd(5, 7, "SET", "after", "1"))
		flush(t, w)
		if got := string(dbDo(t, dst, 2, "GET", "a").Str); got != "2" {
			t.Fatalf("a = %q", got)
		}
		if got := string(dbDo(t, dst, 5, "GET", "b").Str); got != "2" {
			t.Fatalf("b = %q", got)
		}
		if w.Applied() != 7 || w.Stats().Replies != 7 {
			t.Fatalf("Applied = %d, stats %+v", w.Applied(), w.Stats())
		}
	})
	t.Run("error-inside-exec", func(t *testing.T) {
		for _, ignore := range []bool{false, true} {
			dst := testutil.StartServer(t)
			dst.Do(t, "SET", "str", "x")
			w := open(t, dst, func(o *Options) { o.IgnoreErrors = ignore })
			write(t, w, cmd(0, 1, "MULTI"))
			write(t, w, cmd(0, 2, "SET", "a", "1"))
			write(t, w, cmd(0, 3, "LPUSH", "str", "y"))
			write(t, w, cmd(0, 4, "SET", "b", "1"))
			write(t, w, cmd(0, 5, "EXEC"))
			err := w.Flush(context.Background())
			if !ignore {
				var ae *ApplyError
				if !errors.As(err, &ae) || ae.Reason != ReasonWrongType || ae.Offset != 3 || ae.Cmd != "LPUSH" ||
					!strings.Contains(err.Error(), "inside a transaction") {
					t.Fatalf("err = %v", err)
				}
				if w.Applied() != 0 {
					t.Fatalf("Applied = %d, want 0", w.Applied())
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if st := w.Stats(); st.Skipped != 1 || st.Replies != 4 || w.Applied() != 5 {
				t.Fatalf("stats = %+v, applied %d", st, w.Applied())
			}
		}
	})
	t.Run("execabort", func(t *testing.T) {
		dst := testutil.StartServer(t)
		w := open(t, dst, nil)
		write(t, w, cmd(0, 1, "MULTI"))
		write(t, w, cmd(0, 2, "SET", "a", "1"))
		write(t, w, cmd(0, 3, "SET", "b")) // wrong number of arguments: refused when queued
		write(t, w, cmd(0, 4, "EXEC"))
		err := w.Flush(context.Background())
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Reason != ReasonBadArguments || ae.Cmd != "SET" || ae.Key != "b" ||
			ae.Offset != 3 || !strings.Contains(err.Error(), "the whole transaction was discarded") {
			t.Fatalf("err = %v", err)
		}
		if dst.Do(t, "EXISTS", "a").Int != 0 {
			t.Fatal("a was applied from a discarded transaction")
		}
	})
	t.Run("exec-rejected-busy", func(t *testing.T) {
		// MULTI and SET are queued, then a script makes the destination busy and EXEC is
		// rejected ("EXECABORT … because of: BUSY"): retried as a unit until it succeeds.
		dst := testutil.StartServer(t, "--busy-reply-threshold", "50")
		w := open(t, dst, nil)
		write(t, w, cmd(0, 1, "MULTI"))
		write(t, w, cmd(0, 2, "INCR", "n"))
		flush(t, w) // returns once the queued command is acknowledged
		if st := w.Stats(); st.InFlight != 2 || w.Applied() != 0 {
			t.Fatalf("mid-transaction: stats %+v, applied %d", st, w.Applied())
		}
		script := make(chan error, 1)
		go func() {
			_, err := dst.Call(context.Background(), "EVAL", "while true do end", "0")
			script <- err
		}()
		c := dst.Conn(t)
		waitFor(t, "the destination to be busy", func() bool {
			_, err := c.Do(context.Background(), "PING")
			return err != nil
		})
		write(t, w, cmd(0, 3, "EXEC"))
		waitFor(t, "a -BUSY reply", func() bool { return w.Stats().Errors[ReasonBusy] > 0 })
		if _, err := c.Do(context.Background(), "SCRIPT", "KILL"); err != nil {
			t.Fatal(err)
		}
		<-script
		flush(t, w)
		if got := string(dst.Do(t, "GET", "n").Str); got != "1" || w.Applied() != 3 {
			t.Fatalf("n = %q (want 1), applied %d", got, w.Applied())
		}
	})
	t.Run("larger-than-window", func(t *testing.T) {
		dst := testutil.StartServer(t)
		w := open(t, dst, func(o *Options) { o.MaxInFlight = 8; o.MaxInFlightBytes = 1024 })
		write(t, w, cmd(0, 1, "SET", "x", "1"))
		write(t, w, cmd(0, 2, "MULTI"))
		for i := range 200 {
			write(t, w, cmd(0, int64(3+i), "RPUSH", "l", strconv.Itoa(i)))
		}
		write(t, w, cmd(0, 203, "EXEC"))
		write(t, w, cmd(0, 204, "SET", "y", "1"))
		flush(t, w)
		if got := dst.Do(t, "LLEN", "l").Int; got != 200 {
			t.Fatalf("LLEN = %d", got)
		}
		if w.Applied() != 204 {
			t.Fatalf("Applied = %d", w.Applied())
		}
	})
	t.Run("resent-as-a-unit", func(t *testing.T) {
		// A -BUSY inside MULTI makes EXEC abort; the writer must resend from MULTI.
		dst := testutil.StartServer(t, "--busy-reply-threshold", "50")
		w := open(t, dst, nil)
		script := make(chan error, 1)
		go func() {
			_, err := dst.Call(context.Background(), "EVAL", "while true do end", "0")
			script <- err
		}()
		c := dst.Conn(t)
		waitFor(t, "the destination to be busy", func() bool {
			_, err := c.Do(context.Background(), "PING")
			return err != nil
		})
		write(t, w, cmd(0, 1, "MULTI"))
		write(t, w, cmd(0, 2, "INCR", "n"))
		write(t, w, cmd(0, 3, "EXEC"))
		waitFor(t, "a -BUSY reply", func() bool { return w.Stats().Errors[ReasonBusy] > 0 })
		if _, err := c.Do(context.Background(), "SCRIPT", "KILL"); err != nil {
			t.Fatal(err)
		}
		<-script
		flush(t, w)
		if got := string(dst.Do(t, "GET", "n").Str); got != "1" {
			t.Fatalf("n = %q, want 1", got)
		}
	})
}

// TestWriteBlocksAndCancels fills the window while the destination holds writes (CLIENT
// PAUSE): Write must block, return when its ctx ends, and the stream must then complete.
func TestWriteBlocksAndCancels(t *testing.T) {
	dst := testutil.StartServer(t)
	w := open(t, dst, func(o *Options) { o.MaxInFlight = 4 })
	dst.Do(t, "CLIENT", "PAUSE", "1000", "WRITE")
	for i := range 4 {
		write(t, w, cmd(0, int64(i+1), "SET", "k"+strconv.Itoa(i), "v"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := w.Write(ctx, cmd(0, 5, "SET", "k4", "v"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Write on a full window = %v, want the context's error", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("Write returned after %s without blocking", d)
	}
	if st := w.Stats(); st.InFlight != 4 || st.Commands != 4 {
		t.Fatalf("stats = %+v", st)
	}
	write(t, w, cmd(0, 5, "SET", "k4", "v")) // blocks until the pause ends
	flush(t, w)
	if got := dst.Do(t, "DBSIZE").Int; got != 5 {
		t.Fatalf("DBSIZE = %d", got)
	}
}

// TestCloseUnblocks: Close wakes a blocked Write, and everything is stopped afterwards.
func TestCloseUnblocks(t *testing.T) {
	dst := testutil.StartServer(t)
	w := open(t, dst, func(o *Options) { o.MaxInFlight = 2 })
	dst.Do(t, "CLIENT", "PAUSE", "2000", "WRITE")
	write(t, w, cmd(0, 1, "SET", "a", "1"))
	write(t, w, cmd(0, 2, "SET", "b", "1"))
	res := make(chan error, 1)
	go func() { res <- w.Write(context.Background(), cmd(0, 3, "SET", "c", "1")) }()
	time.Sleep(50 * time.Millisecond) // let it block
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-res; !errors.Is(err, ErrClosed) {
		t.Fatalf("blocked Write = %v, want ErrClosed", err)
	}
	if err := w.Flush(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Flush after Close = %v", err)
	}
	dst.Do(t, "CLIENT", "UNPAUSE")
}

// TestLargeCommand sends a command larger than the byte window and the chunk size.
func TestLargeCommand(t *testing.T) {
	dst := testutil.StartServer(t)
	w := open(t, dst, func(o *Options) { o.MaxInFlightBytes = 64 << 10 })
	big := strings.Repeat("x", 3<<20)
	for i := range 3 {
		write(t, w, cmd(0, int64(2*i+1), "SET", "small"+strconv.Itoa(i), "v"))
		write(t, w, cmd(0, int64(2*i+2), "SET", "big"+strconv.Itoa(i), big))
	}
	flush(t, w)
	if got := dst.Do(t, "STRLEN", "big2").Int; got != int64(len(big)) {
		t.Fatalf("STRLEN = %d", got)
	}
	if w.Applied() != 6 {
		t.Fatalf("Applied = %d", w.Applied())
	}
}

// TestNoPermAndReadOnly checks two more fatal errors and their advice.
func TestNoPermAndReadOnly(t *testing.T) {
	t.Run("noperm", func(t *testing.T) {
		dst := testutil.StartServer(t)
		dst.Do(t, "ACL", "SETUSER", "syncer", "on", ">pw", "~*", "+@all", "-hset")
		w := open(t, dst, func(o *Options) { o.Target.Username, o.Target.Password = "syncer", "pw" })
		write(t, w, cmd(0, 1, "SET", "a", "1"))
		write(t, w, cmd(0, 2, "HSET", "h", "f", "v"))
		err := w.Flush(context.Background())
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Reason != ReasonNoPerm ||
			!strings.Contains(err.Error(), `lacks permission for HSET "h" (db 0, offset 2): grant it with ACL SETUSER syncer +hset`) {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), "pw") {
			t.Fatalf("the password leaked: %v", err)
		}
	})
	t.Run("readonly", func(t *testing.T) {
		master := testutil.StartServer(t)
		replica := testutil.StartServer(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port()))
		w := open(t, replica, nil)
		write(t, w, cmd(0, 1, "SET", "a", "1"))
		err := w.Flush(context.Background())
		if !strings.Contains(err.Error(), "read-only replica") || !strings.Contains(err.Error(), "point --target at its master") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("db-range", func(t *testing.T) {
		dst := testutil.StartServer(t, "--databases", "4")
		w := open(t, dst, nil)
		write(t, w, cmd(9, 1, "SET", "a", "1"))
		err := w.Flush(context.Background())
		var ae *ApplyError
		if !errors.As(err, &ae) || ae.Reason != ReasonDBRange || ae.DB != 9 || ae.Offset != 1 {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestMetrics registers the writer's metrics and reads them back.
func TestMetrics(t *testing.T) {
	dst := testutil.StartServer(t)
	reg := prometheus.NewRegistry()
	w := open(t, dst, func(o *Options) { o.Registerer = reg; o.IgnoreErrors = true })
	dst.Do(t, "SET", "s", "x")
	write(t, w, cmd(1, 1, "SET", "a", "1"))
	write(t, w, cmd(0, 2, "LPUSH", "s", "1"))
	flush(t, w)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					name += "{" + l.GetValue() + "}"
				}
				if l.GetName() == "addr" && l.GetValue() != dst.Addr() {
					t.Errorf("addr label = %q", l.GetValue())
				}
			}
			if c := m.GetCounter(); c != nil {
				got[name] = c.GetValue()
			} else {
				got[name] = m.GetGauge().GetValue()
			}
		}
	}
	want := map[string]float64{
		"ferry_writer_commands_total":          2,
		"ferry_writer_replies_ok_total":        1,
		"ferry_writer_skipped_total":           1,
		"ferry_writer_selects_total":           2,
		"ferry_writer_errors_total{wrongtype}": 1,
		"ferry_writer_applied_offset":          2,
		"ferry_writer_in_flight_commands":      0,
		"ferry_writer_reconnects_total":        0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Fatalf("metrics still registered after Close: %d families", len(mfs))
	}
}

// TestConcurrentWriters checks that Write, Flush and Stats may be called concurrently
// (under -race) and every command arrives.
func TestConcurrentWriters(t *testing.T) {
	dst := testutil.StartServer(t)
	w := open(t, dst, func(o *Options) { o.MaxInFlight = 64 })
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				if err := w.Write(context.Background(), cmd(g, 0, "SET", "k"+strconv.Itoa(i), "v")); err != nil {
					t.Error(err)
					return
				}
				if i%500 == 0 {
					_ = w.Stats()
					_ = w.Flush(context.Background())
				}
			}
		}()
	}
	wg.Wait()
	flush(t, w)
	for g := range 4 {
		if got := dbDo(t, dst, g, "DBSIZE").Int; got != 2000 {
			t.Fatalf("db %d: DBSIZE = %d", g, got)
		}
	}
}
