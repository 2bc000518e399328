package task

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// load is a workload running against the source in the background.
type load struct {
	w      *testutil.Workload
	cancel context.CancelFunc
	done   chan struct{}
	ops    int
	err    error
}

// startLoad runs w against src at opsPerSec until stop.
func startLoad(w *testutil.Workload, src *testutil.Server, opsPerSec int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{w: w, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.ops, l.err = w.Run(ctx, src, opsPerSec)
	}()
	return l
}

// stop ends the load and fails the test if it failed.
func (l *load) stop(tb testing.TB) int {
	tb.Helper()
	l.cancel()
	<-l.done
	if l.err != nil {
		tb.Fatalf("load: %v", l.err)
	}
	return l.ops
}

// verifySynced waits until Ferry has acknowledged everything written to src, then checks
// that dst holds the same keys and values and, for every workload, exactly its counters
// and append-only lists (no lost and no duplicated write).
func verifySynced(tb testing.TB, src, dst *testutil.Server, ws ...*testutil.Workload) {
	tb.Helper()
	ctx := context.Background()
	waitAcked(tb, src)
	testutil.RequireSameData(tb, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
	for _, w := range ws {
		if err := w.VerifyExact(ctx, dst); err != nil {
			tb.Fatal(err)
		}
	}
}

// waitAcked waits until a replica of src has acknowledged src's replication offset as it
// is now. Unlike testutil.WaitReplicasCaughtUp it does not need the offsets to be equal
// at one moment, which a ferry process writing its heartbeat every second (its ACKs as
// regular) may never show; its heartbeats are not data, so this is enough.
func waitAcked(tb testing.TB, src *testutil.Server) {
	tb.Helper()
	ctx := context.Background()
	st, err := testutil.Replication(ctx, src)
	if err != nil {
		tb.Fatal(err)
	}
	want := st.MasterOffset
	var last testutil.ReplicationState
	waitUntil(tb, 60*time.Second, "ferry to acknowledge the source's offset", func() bool {
		last, err = testutil.Replication(ctx, src)
		if err != nil {
			tb.Fatal(err)
		}
		for _, r := range last.Replicas {
			if r.State == "online" && r.Offset >= want {
				return true
			}
		}
		return false
	})
}

// stat reads one INFO field of s as an integer.
func stat(tb testing.TB, s *testutil.Server, section, field string) int64 {
	tb.Helper()
	info, err := s.Info(context.Background(), section)
	if err != nil {
		// Once more: a Sentinel closes the clients of a server it reconfigures.
		info, err = s.Info(context.Background(), section)
	}
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.ParseInt(info[field], 10, 64)
	if err != nil {
		tb.Fatalf("INFO %s %s = %q: %v", section, field, info[field], err)
	}
	return n
}

// waitUntil polls cond every 10 ms for up to d (test setup and observation only).
func waitUntil(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStatus waits until the running task's status satisfies cond, failing fast when
// the task fails.
func waitStatus(tb testing.TB, r *running, d time.Duration, what string, cond func(Status) bool) Status {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		st := r.t.Status()
		if cond(st) {
			return st
		}
		if st.Phase == PhaseFailed {
			tb.Fatalf("task failed while waiting for %s: %s", what, st.Error)
		}
		select {
		case <-r.done:
			tb.Fatalf("task ended (%v) while waiting for %s; status %+v", r.err, what, r.t.Status())
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s; status %+v", d, what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// resumeConfig is a task config with a fixed name and data directory, so that a second
// task with it is the same task resumed.
func resumeConfig(tb testing.TB, src, dst string) Config {
	return Config{
		Name:   "resume-test",
		Source: redis.Options{Addr: src, DialTimeout: 2 * time.Second, IOTimeout: 2 * time.Second},
		Target: redis.Options{Addr: dst},
		// One heartbeat an hour: the tests wait for the source's master_repl_offset to be
		// acknowledged exactly, which a heartbeat every second would keep moving.
		HeartbeatInterval: time.Hour,
		DataDir:           tb.TempDir(),
		Logger:            testLogger(tb),
	}
}

// sourceArgs make a source fit for link-fault tests: a PING every second (so a short
// SourceTimeout only fires on a dead link) and a backlog that covers every gap.
var sourceArgs = []string{"--repl-ping-replica-period", "1", "--repl-backlog-size", "64mb"}

// newWorkloads returns the tests' fill and live workloads: every type and command family,
// including the exact-accounting counters and append-only lists, in three DBs.
func newWorkloads(seed int64) (fill, live *testutil.Workload) {
	dbs := []int{0, 2, 5}
	fill = testutil.NewWorkload(testutil.WorkloadOptions{Seed: seed, DBs: dbs, TTL: true, Keys: 3000})
	live = testutil.NewWorkload(testutil.WorkloadOptions{Seed: seed + 1, DBs: dbs, TTL: true, Keys: 500, Prefix: "live:"})
	return fill, live
}

// setPipelined writes n keys "<prefix><i mod span>" with value(i) to s, a thousand commands
// per round trip: a backlog or a dataset made faster than any load could.
func setPipelined(tb testing.TB, s *testutil.Server, n, span int, prefix string, value func(i int) any) {
	tb.Helper()
	c := s.Conn(tb)
	for i := 0; i < n; i++ {
		if err := c.Send("SET", prefix+strconv.Itoa(i%span), value(i)); err != nil {
			tb.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 {
			if err := c.Flush(); err != nil {
				tb.Fatal(err)
			}
			for j := i - i%1000; j <= i; j++ {
				if _, err := c.Receive(); err != nil {
					tb.Fatal(err)
				}
			}
		}
	}
}
