package task

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// running is a task started in the background by a test.
type running struct {
	t      *Task
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned err
	err    error
}

// stop cancels the task (a clean stop) and returns what Run returned.
func (r *running) stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(60 * time.Second):
		tb.Fatal("task did not stop within 60 s of its context ending")
		return nil
	}
}

func testLogger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

func testConfig(tb testing.TB, src, dst *testutil.Server) Config {
	return Config{
		Source: redis.Options{Addr: src.Addr()},
		Target: redis.Options{Addr: dst.Addr()},
		// One heartbeat an hour: the tests wait for the source's master_repl_offset to be
		// acknowledged exactly, which a heartbeat every second would keep moving.
		HeartbeatInterval: time.Hour,
		DataDir:           tb.TempDir(),
		Logger:            testLogger(tb),
	}
}

func startTask(tb testing.TB, cfg Config) *running {
	tb.Helper()
	tk, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{t: tk, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = tk.Run(ctx); close(r.done) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(60 * time.Second):
		}
	})
	return r
}

// waitPhase waits until the task reaches phase p (or fails).
func waitPhase(tb testing.TB, r *running, p Phase) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		st := r.t.Status()
		if st.Phase == p {
			return
		}
		if st.Phase == PhaseFailed {
			tb.Fatalf("task failed while waiting for phase %s: %s", p, st.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("task did not reach phase %s within 60 s; status %+v", p, r.t.Status())
}

// dropOwnKeys deletes Ferry's keys (the heartbeat on the source, the checkpoint and marker
// on the destination) so DEBUG DIGEST compares only data.
func dropOwnKeys(tb testing.TB, s *testutil.Server, dbs ...int) {
	tb.Helper()
	for _, db := range dbs {
		c := s.Conn(tb)
		if _, err := c.Do(context.Background(), "SELECT", db); err != nil {
			tb.Fatal(err)
		}
		v, err := c.Do(context.Background(), "KEYS", KeyPrefix+"*")
		if err != nil {
			tb.Fatal(err)
		}
		for _, k := range v.Elems {
			if _, err := c.Do(context.Background(), "DEL", k.Str); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// TestSyncWorkload is the main acceptance test of `ferry sync`: every type in 4 DBs with
// TTLs, a load running during the full phase and after it, in disk and diskless mode. The
// oracle is Redis itself: per-key DEBUG DIGEST-VALUE and TTL presence, DEBUG DIGEST, and the
// workload's exact counters and append-only lists.
func TestSyncWorkload(t *testing.T) {
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"disk", []string{"--repl-diskless-sync", "no"}},
		{"diskless", []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			ctx := context.Background()
			src := testutil.StartServer(t, mode.args...)
			dst := testutil.StartServer(t)
			dbs := []int{0, 1, 2, 5}
			fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 1, DBs: dbs, TTL: true, Large: true, Keys: 2000})
			if err := fill.Fill(ctx, src, 20000); err != nil {
				t.Fatal(err)
			}
			load := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 2, DBs: dbs, TTL: true, Keys: 500, Prefix: "live:"})
			loadCtx, stopLoad := context.WithCancel(ctx)
			var loadErr error
			var loadOps int
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				loadOps, loadErr = load.Run(loadCtx, src, 3000)
			}()

			r := startTask(t, testConfig(t, src, dst))
			waitPhase(t, r, PhaseIncremental)
			time.Sleep(2 * time.Second) // load keeps running in the incremental phase
			stopLoad()
			wg.Wait()
			if loadErr != nil {
				t.Fatal(loadErr)
			}
			if err := testutil.WaitReplicasCaughtUp(ctx, src); err != nil {
				t.Fatal(err)
			}
			st := r.t.Status()
			if err := r.stop(t); err != nil {
				t.Fatalf("clean stop returned %v", err)
			}
			if st.FullKeys == 0 || st.Commands == 0 {
				t.Fatalf("expected both phases to carry data: %d snapshot keys, %d stream commands", st.FullKeys, st.Commands)
			}
			t.Logf("%d snapshot keys, %d stream commands (%d load ops)", st.FullKeys, st.Commands, loadOps)

			testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
			for _, w := range []*testutil.Workload{fill, load} {
				if err := w.VerifyExact(ctx, dst); err != nil {
					t.Fatal(err)
				}
			}
			dropOwnKeys(t, src, 0)
			dropOwnKeys(t, dst, 0)
			if s, d := testutil.Digest(t, src), testutil.Digest(t, dst); s != d {
				t.Fatalf("DEBUG DIGEST differs: source %s, destination %s", s, d)
			}
		})
	}
}

// TestSyncSpecialCommands covers the commands that act on whole DBs, scripts, functions,
// transactions and streams with consumer groups, all arriving through the stream.
func TestSyncSpecialCommands(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
	dst := testutil.StartServer(t)
	src.Do(t, "SET", "before", "snapshot")
	src.Do(t, "FUNCTION", "LOAD", "#!lua name=snap\nredis.register_function('snapget', function(keys, args) return redis.call('GET', keys[1]) end)")
	r := startTask(t, testConfig(t, src, dst))
	waitPhase(t, r, PhaseIncremental)

	c := src.Conn(t)
	do := func(args ...any) {
		t.Helper()
		if _, err := c.Do(ctx, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	do("SELECT", 1)
	do("SET", "one", "1")
	do("RPUSH", "list", "a", "b", "c")
	do("SELECT", 2)
	do("SET", "two", "2")
	do("FLUSHDB") // flushes db 2 only
	do("SET", "after-flush", "x")
	do("SWAPDB", 1, 2)
	do("SELECT", 0)
	do("SET", "moveme", "v")
	do("MOVE", "moveme", 3)
	do("EVAL", "redis.call('SET', KEYS[1], ARGV[1]); redis.call('INCRBY', KEYS[2], 5); redis.call('RPUSH', KEYS[3], 'x', 'y'); return 1", 3, "ev:s", "ev:n", "ev:l", "val")
	do("FUNCTION", "LOAD", "#!lua name=lib\nredis.register_function('incr2', function(keys, args) redis.call('INCR', keys[1]); return redis.call('INCR', keys[1]) end)")
	do("FCALL", "incr2", 1, "fc:n")
	do("MULTI")
	do("SET", "tx:a", "1")
	do("INCR", "tx:b")
	do("LPUSH", "tx:c", "z")
	do("EXEC")
	do("XADD", "stream", "1-1", "f", "v1")
	do("XADD", "stream", "2-1", "f", "v2")
	do("XADD", "stream", "3-1", "f", "v3")
	do("XGROUP", "CREATE", "stream", "grp", "0")
	do("XREADGROUP", "GROUP", "grp", "alice", "COUNT", 2, "STREAMS", "stream", ">")
	do("XACK", "stream", "grp", "1-1")
	do("XDEL", "stream", "3-1")
	do("SET", "ttl", "v", "EX", 3600)
	do("SETEX", "gone", 1, "v")
	time.Sleep(1200 * time.Millisecond) // "gone" expires on the source: its DEL travels the stream

	if err := testutil.WaitReplicasCaughtUp(ctx, src); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
	for _, fn := range []string{"snap", "lib"} {
		v := dst.Do(t, "FUNCTION", "LIST", "LIBRARYNAME", fn)
		if len(v.Elems) != 1 {
			t.Fatalf("function library %s missing on the destination: %v", fn, v)
		}
	}
	if v := dst.Do(t, "FCALL", "incr2", 1, "fc:n"); v.Int != 4 {
		t.Fatalf("FCALL on the destination after sync: got %d, want 4", v.Int)
	}
	dropOwnKeys(t, src, 0)
	dropOwnKeys(t, dst, 0)
	dst.Do(t, "DECRBY", "fc:n", 2)
	if s, d := testutil.Digest(t, src), testutil.Digest(t, dst); s != d {
		t.Fatalf("DEBUG DIGEST differs: source %s, destination %s", s, d)
	}
}

// TestSyncExistingBlock: a non-empty destination is refused before anything is written,
// naming the DBs and key counts; overwrite proceeds.
func TestSyncExistingBlock(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	src.Do(t, "SET", "k", "from-source")
	dst.Do(t, "SET", "k", "old")
	c := dst.Conn(t)
	c.Do(ctx, "SELECT", 4)
	c.Do(ctx, "SET", "other", "x")
	c.Do(ctx, "SET", "other2", "x")

	cfg := testConfig(t, src, dst)
	cfg.Mode = ModeFull
	tk, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = tk.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "db0 has 1 keys") || !strings.Contains(err.Error(), "db4 has 2 keys") || !strings.Contains(err.Error(), "--existing overwrite") {
		t.Fatalf("want a refusal naming db0 (1 key) and db4 (2 keys) and the way out, got %v", err)
	}
	if v := dst.Do(t, "GET", "k"); string(v.Str) != "old" {
		t.Fatalf("blocked task wrote to the destination: k=%q", v.Str)
	}
	if v, _ := src.Info(ctx, "replication"); v["connected_slaves"] != "0" {
		t.Fatalf("blocked task attached to the source anyway: %v replicas", v["connected_slaves"])
	}

	cfg.Existing = ExistingOverwrite
	tk, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Run(ctx); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	if v := dst.Do(t, "GET", "k"); string(v.Str) != "from-source" {
		t.Fatalf("overwrite did not replace k: %q", v.Str)
	}
	if v := c; v != nil {
		if n, _ := c.Do(ctx, "DBSIZE"); n.Int != 2 {
			t.Fatalf("overwrite touched keys the source does not have: db4 has %d keys", n.Int)
		}
	}
}

// TestSyncDestinationOOM: a destination out of memory stops the task with advice, and the
// applied position never claims what the destination refused.
func TestSyncDestinationOOM(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t, "--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
	src.Do(t, "DEBUG", "POPULATE", 50000, "big", 100)
	cfg := testConfig(t, src, dst)
	cfg.Mode = ModeFull
	tk, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = tk.Run(ctx)
	if err == nil {
		t.Fatal("sync into a 2 MB destination succeeded; want an out-of-memory failure")
	}
	msg := err.Error()
	if !strings.Contains(msg, "out of memory") || !strings.Contains(msg, "maxmemory") {
		t.Fatalf("OOM error does not say what happened and what to do: %v", err)
	}
	st := tk.Status()
	if st.Phase != PhaseFailed || st.AppliedOffset != 0 {
		t.Fatalf("after OOM: phase %s, applied offset %d; want failed with nothing reported as applied", st.Phase, st.AppliedOffset)
	}
}

// TestSyncConnectionErrors: wrong password, missing ACL permission and an unreachable host
// fail fast with one clear line and no password in it.
func TestSyncConnectionErrors(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	src.Do(t, "ACL", "SETUSER", "nopsync", "on", ">s3cret-pw", "~*", "+@all", "-psync", "-sync")
	cases := []struct {
		name   string
		source redis.Options
		want   []string
	}{
		{"wrong password", redis.Options{Addr: src.Addr(), Username: "nopsync", Password: "wrong-pw"}, []string{"WRONGPASS", "password"}},
		{"missing ACL", redis.Options{Addr: src.Addr(), Username: "nopsync", Password: "s3cret-pw"}, []string{"psync"}},
		{"unreachable", redis.Options{Addr: "127.0.0.1:1", DialTimeout: 2 * time.Second}, []string{"127.0.0.1:1", "refused"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, src, dst)
			cfg.Source = c.source
			tk, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			err = tk.Run(rctx)
			if err == nil {
				t.Fatal("task succeeded; want a failure")
			}
			msg := err.Error()
			for _, w := range c.want {
				if !strings.Contains(strings.ToLower(msg), strings.ToLower(w)) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, "wrong-pw") || strings.Contains(msg, "s3cret") {
				t.Errorf("error leaks a password: %q", msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("failing took %s; want fast", d)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("failure came from the test's timeout, not the cause: %v", err)
			}
			t.Logf("error: %s", msg)
		})
	}
}
