package task

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

func clusterConfig(tb testing.TB, src *testutil.Server, dst *testutil.Cluster) Config {
	return Config{
		Source:            redis.Options{Addr: src.Addr()},
		Target:            redis.Options{Addr: dst.Addrs()[0]},
		HeartbeatInterval: time.Hour, // see testConfig
		DataDir:           tb.TempDir(),
		Logger:            testLogger(tb),
	}
}

// TestSyncIntoCluster syncs a standalone source into a 3-master cluster, full+incr, with a
// load of every type (multi-key commands, transactions and scripts across slots included)
// running while the snapshot is applied and after: the cluster must end with the same
// keys and values, and every counter and append-only list exact. It runs exactly-once,
// with per-slot checkpoints next to the data. Run again, it resumes with a partial resync
// from its checkpoint on the cluster.
func TestSyncIntoCluster(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 21, TTL: true, Large: true, Keys: 2000})
	if err := fill.Fill(ctx, src, 8000); err != nil {
		t.Fatal(err)
	}
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 22, TTL: true, Keys: 400, Prefix: "live:"})
	l := startLoad(live, src, 1500)

	r := startTask(t, clusterConfig(t, src, dst))
	waitPhase(t, r, PhaseIncremental)
	before := r.t.Status().Commands
	waitStatus(t, r, 30*time.Second, "stream commands after the full phase", func(st Status) bool {
		return st.Commands > before+500
	})
	ops := l.stop(t)
	waitAcked(t, src)
	st := r.t.Status()
	if err := r.stop(t); err != nil {
		t.Fatalf("clean stop returned %v", err)
	}
	if st.Delivery != DeliveryExactlyOnce {
		t.Fatalf("status delivery %q on a cluster destination, want %q", st.Delivery, DeliveryExactlyOnce)
	}
	if st.FullKeys == 0 || st.Commands == 0 {
		t.Fatalf("expected both phases to carry data: %d snapshot keys, %d stream commands", st.FullKeys, st.Commands)
	}
	t.Logf("%d snapshot keys, %d stream commands (%d load ops)", st.FullKeys, st.Commands, ops)
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
	for _, w := range []*testutil.Workload{fill, live} {
		if err := w.VerifyExact(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range dst.Masters() {
		if n := m.Do(t, "DBSIZE").Int; n == 0 {
			t.Fatalf("master %s holds no keys", m.Addr())
		}
	}
	// The task's own keys share one hash tag, so one node holds all of them.
	if v := dst.Do(t, "GET", "ferry:ckpt:{"+r.t.Name()+"}"); v.Null {
		t.Fatal("no checkpoint under the task's hash tag on the cluster")
	}
	// Each master holds per-slot checkpoints, each in the slot it names.
	for _, m := range dst.Masters() {
		keys := m.Do(t, "KEYS", "ferry:sckpt:"+r.t.Name()+":*").Elems
		if len(keys) == 0 {
			t.Fatalf("master %s holds no per-slot checkpoint", m.Addr())
		}
		for _, k := range keys[:min(len(keys), 50)] {
			if got := dst.MasterForKey(string(k.Str)); got != m {
				t.Fatalf("per-slot checkpoint %s is on %s, but its slot is served by %s", k.Str, m.Addr(), got.Addr())
			}
		}
	}

	// Started again, the task resumes from its checkpoint on the cluster (partial resync)
	// and carries what the source wrote meanwhile.
	more := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 23, Keys: 200, Prefix: "more:"})
	if err := more.Fill(ctx, src, 1000); err != nil {
		t.Fatal(err)
	}
	r = startTask(t, clusterConfig(t, src, dst))
	waitPhase(t, r, PhaseIncremental)
	waitAcked(t, src)
	st = r.t.Status()
	if err := r.stop(t); err != nil {
		t.Fatalf("clean stop returned %v", err)
	}
	if st.PartialSyncs != 1 || st.FullSyncs != 0 {
		t.Fatalf("the restarted task took %d partial and %d full syncs, want one partial", st.PartialSyncs, st.FullSyncs)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
	for _, w := range []*testutil.Workload{fill, live, more} {
		if err := w.VerifyExact(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSyncIntoClusterDBs: a source with keys in four databases goes into a cluster (which
// has only database 0) only under a mapping that sends every database to 0. Without one
// the task is refused before anything is written, and the error names the databases and
// the --db-map that would do; with --db-map 1:0,2:0,3:0 --db-merge (the four key spaces
// are disjoint here) the cluster ends with every key of every database.
func TestSyncIntoClusterDBs(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	dbs := []int{0, 1, 2, 3}
	for _, db := range dbs {
		w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: int64(30 + db), DBs: []int{db}, Keys: 300,
			Prefix: fmt.Sprintf("d%d:", db), Skip: []string{"function", "crossdb"}})
		if err := w.Fill(ctx, src, 1000); err != nil {
			t.Fatal(err)
		}
	}

	tk, err := New(clusterConfig(t, src, dst))
	if err != nil {
		t.Fatal(err)
	}
	err = tk.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "1, 2, 3") || !strings.Contains(err.Error(), "--db-map 0:0,1:0,2:0,3:0 --db-merge") {
		t.Fatalf("a 4-database source into a cluster without a mapping: %v; want a refusal naming databases 1, 2, 3 and the --db-map", err)
	}
	for _, m := range dst.Masters() {
		if n := m.Do(t, "DBSIZE").Int; n != 0 {
			t.Fatalf("master %s holds %d keys after the refusal; nothing may be written", m.Addr(), n)
		}
	}

	cfg := clusterConfig(t, src, dst)
	cfg.Filter = filter.MustNew(filter.Spec{DBMap: map[int]int{1: 0, 2: 0, 3: 0}, AllowDBMerge: true})
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 39, DBs: []int{2}, Keys: 200, Prefix: "live2:",
		Skip: []string{"function", "crossdb"}})
	l := startLoad(live, src, 1000)
	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	time.Sleep(time.Second) // the load goes on in the incremental phase
	l.stop(t)
	waitAcked(t, src)
	if err := r.stop(t); err != nil {
		t.Fatalf("clean stop returned %v", err)
	}
	requireMergedIntoCluster(t, src, dbs, dst)
}

// requireMergedIntoCluster checks that the cluster holds exactly the keys of the source's databases
// dbs, merged into database 0: the same count, and per key the same value (DEBUG
// DIGEST-VALUE) and the same presence of a TTL.
func requireMergedIntoCluster(tb testing.TB, src *testutil.Server, dbs []int, dst *testutil.Cluster) {
	tb.Helper()
	ctx := context.Background()
	c := src.Conn(tb)
	var want int64
	for _, db := range dbs {
		if _, err := c.Do(ctx, "SELECT", db); err != nil {
			tb.Fatal(err)
		}
		cursor := "0"
		for {
			v, err := c.Do(ctx, "SCAN", cursor, "COUNT", 1000)
			if err != nil {
				tb.Fatal(err)
			}
			cursor = string(v.Elems[0].Str)
			for _, k := range v.Elems[1].Elems {
				key := string(k.Str)
				if strings.HasPrefix(key, KeyPrefix) {
					continue
				}
				want++
				sd, err := c.Do(ctx, "DEBUG", "DIGEST-VALUE", key)
				if err != nil {
					tb.Fatal(err)
				}
				// Not dst.Call: it routes by the first argument, here DIGEST-VALUE.
				dd, err := dst.MasterForKey(key).Call(ctx, "DEBUG", "DIGEST-VALUE", key)
				if err != nil {
					tb.Fatal(err)
				}
				if fmt.Sprint(sd) != fmt.Sprint(dd) {
					tb.Fatalf("db %d key %q: value differs on the cluster: source %v, cluster %v", db, key, sd, dd)
				}
				st, err := c.Do(ctx, "PTTL", key)
				if err != nil {
					tb.Fatal(err)
				}
				dt, err := dst.Call(ctx, "PTTL", key)
				if err != nil {
					tb.Fatal(err)
				}
				if (st.Int > 0) != (dt.Int > 0) || dt.Int == -2 {
					tb.Fatalf("db %d key %q: PTTL %d on the source, %d on the cluster", db, key, st.Int, dt.Int)
				}
			}
			if cursor == "0" {
				break
			}
		}
	}
	var got int64
	for _, m := range dst.Masters() {
		n := m.Do(tb, "DBSIZE").Int
		own := m.Do(tb, "EVAL", `local n = 0
			local cur = "0"
			repeat
				local r = redis.call("SCAN", cur, "MATCH", ARGV[1], "COUNT", 1000)
				cur = r[1]
				n = n + #r[2]
			until cur == "0"
			return n`, 0, KeyPrefix+"*").Int
		got += n - own
	}
	if got != want {
		tb.Fatalf("the cluster holds %d keys, the source's databases %v hold %d", got, dbs, want)
	}
}
