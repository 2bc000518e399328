package clustersource

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/testutil"
)

// sourceArgs: a PING every second on the replication links and a backlog that covers
// every gap of the tests.
var sourceArgs = []string{"--repl-ping-replica-period", "1", "--repl-backlog-size", "32mb"}

func testLogger(tb testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// startSource starts a 3-master cluster with a replica per master.
func startSource(tb testing.TB) *testutil.Cluster {
	return testutil.StartCluster(tb, testutil.ClusterOptions{Masters: 3, ReplicasPerMaster: 1, Args: sourceArgs})
}

// testConfig is a sync from any node of src (the last one started: a replica when it has
// replicas, to show that any node will do) into target.
func testConfig(tb testing.TB, src *testutil.Cluster, target string) task.Config {
	nodes := src.Nodes()
	return task.Config{
		Name:   "cs",
		Source: redis.Options{Addr: nodes[len(nodes)-1].Addr()},
		Target: redis.Options{Addr: target},
		// The tests wait for the masters' offsets to be applied; a heartbeat every second
		// would keep moving them.
		HeartbeatInterval: time.Hour,
		DataDir:           tb.TempDir(),
		Logger:            testLogger(tb),
	}
}

// running is a Sync running in the background.
type running struct {
	s      *Sync
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// testSettle replaces DefaultMigrationSettle in the tests that run a Sync in process, so
// that the fast path for deletions is on within a second of every shard being incremental
// (a test's MIGRATE deletes within milliseconds of the restore).
const testSettle = 300 * time.Millisecond

func startSync(tb testing.TB, cfg task.Config) *running {
	tb.Helper()
	return startSyncSettle(tb, cfg, testSettle)
}

// startSyncSettle runs a Sync with settle as its migration settle time.
func startSyncSettle(tb testing.TB, cfg task.Config, settle time.Duration) *running {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	s.settle = settle
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = s.Run(ctx); close(r.done) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(60 * time.Second):
		}
	})
	return r
}

// stop stops the sync cleanly and returns what Run returned.
func (r *running) stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		tb.Fatal("the sync did not stop within 60 s")
	}
	return r.err
}

// waitStatus waits until the sync's status satisfies cond, failing fast when it fails.
func waitStatus(tb testing.TB, r *running, d time.Duration, what string, cond func(Status) bool) Status {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		st := r.s.Status()
		if cond(st) {
			return st
		}
		if st.Phase == task.PhaseFailed {
			tb.Fatalf("sync failed while waiting for %s: %s", what, st.Error)
		}
		select {
		case <-r.done:
			tb.Fatalf("sync ended (%v) while waiting for %s", r.err, what)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s; status %s", d, what, describe(st))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func describe(st Status) string {
	s := "phase " + st.Phase.String() + " error " + st.Error
	for _, sh := range st.Shards {
		s += "; " + sh.ID + " " + sh.Phase.String() + " applied " + strconv.FormatInt(sh.AppliedOffset, 10) + " " + sh.Error
	}
	return s
}

// incremental: every shard applies its stream.
func incremental(st Status) bool {
	return st.Phase == task.PhaseIncremental && len(st.Shards) > 0
}

// waitCaughtUp waits until every shard has applied its master's replication offset as
// it is now.
func waitCaughtUp(tb testing.TB, r *running) {
	tb.Helper()
	waitShardsCaughtUp(tb, r.s.Status(), func(what string, cond func(Status) bool) {
		waitStatus(tb, r, 60*time.Second, what, cond)
	})
}

// waitShardsCaughtUp waits, through wait, until every shard of st has applied its
// master's replication offset as it is now: the same check for a Sync in process and
// for a ferry process.
func waitShardsCaughtUp(tb testing.TB, st Status, wait func(what string, cond func(Status) bool)) {
	tb.Helper()
	ctx := context.Background()
	for i, sh := range st.Shards {
		c, err := redis.Dial(ctx, redis.Options{Addr: sh.Master})
		if err != nil {
			tb.Fatal(err)
		}
		info, err := c.Info(ctx, "replication")
		c.Close()
		if err != nil {
			tb.Fatal(err)
		}
		want, _ := strconv.ParseInt(info["master_repl_offset"], 10, 64)
		wait("shard "+sh.ID+" to apply offset "+strconv.FormatInt(want, 10), func(s Status) bool {
			return len(s.Shards) > i && s.Shards[i].AppliedOffset >= want
		})
	}
}

// load is a workload running against a deployment in the background.
type load struct {
	cancel context.CancelFunc
	done   chan struct{}
	ops    int
	err    error
}

func startLoad(w *testutil.Workload, d testutil.Deployment, opsPerSec int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.ops, l.err = w.Run(ctx, d, opsPerSec)
	}()
	return l
}

func (l *load) stop(tb testing.TB) int {
	tb.Helper()
	l.cancel()
	<-l.done
	if l.err != nil {
		tb.Fatalf("load: %v", l.err)
	}
	return l.ops
}

// requireSynced compares src and dst key by key (DEBUG DIGEST-VALUE, TTL presence) and
// checks every workload's counters and append-only lists on dst.
func requireSynced(tb testing.TB, src, dst testutil.Deployment, ws ...*testutil.Workload) {
	tb.Helper()
	testutil.RequireSameData(tb, src, dst, testutil.CompareOptions{DBs: []int{0}, SkipPrefixes: []string{task.KeyPrefix}})
	for _, w := range ws {
		if err := w.VerifyExact(context.Background(), dst); err != nil {
			tb.Fatal(err)
		}
	}
}
