package clustersource

import (
	"context"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/testutil"
)

// TestClusterToStandalone syncs a 3-master cluster (with replicas; the sync is given a
// replica as its source) into one standalone server, database 0, with a load of every
// type a cluster allows (multi-key commands within a hash tag, transactions, scripts and
// functions on one slot) running during the full phase and after. The destination must
// end with the same keys, values and TTL presence, and every counter and append-only list
// exact; every shard took a full sync and nothing else.
func TestClusterToStandalone(t *testing.T) {
	ctx := context.Background()
	src := startSource(t)
	dst := testutil.StartServer(t)
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 11, Cluster: true, TTL: true, Keys: 1500})
	if err := fill.Fill(ctx, src, 4000); err != nil {
		t.Fatal(err)
	}
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 12, Cluster: true, TTL: true, Keys: 300, Prefix: "live:"})
	l := startLoad(live, src, 800)

	r := startSync(t, testConfig(t, src, dst.Addr()))
	waitStatus(t, r, 60*time.Second, "every shard incremental", incremental)
	before := r.s.Status().Commands
	waitStatus(t, r, 30*time.Second, "stream commands after the full phase", func(st Status) bool {
		return st.Commands > before+300
	})
	ops := l.stop(t)
	waitCaughtUp(t, r)
	st := r.s.Status()
	if err := r.stop(t); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	if len(st.Shards) != 3 {
		t.Fatalf("%d shards, want 3: %s", len(st.Shards), describe(st))
	}
	for _, sh := range st.Shards {
		if sh.FullSyncs != 1 || sh.PartialSyncs != 0 || sh.FullKeys == 0 || sh.Commands == 0 {
			t.Fatalf("shard %s: %d full, %d partial syncs, %d snapshot keys, %d commands; want one full sync carrying data in both phases",
				sh.ID, sh.FullSyncs, sh.PartialSyncs, sh.FullKeys, sh.Commands)
		}
		if sh.Delivery != task.DeliveryExactlyOnce {
			t.Fatalf("shard %s delivery %s into a standalone destination", sh.ID, sh.Delivery)
		}
	}
	t.Logf("%d snapshot keys, %d stream commands (%d load ops)", st.FullKeys, st.Commands, ops)
	requireSynced(t, src, dst, fill, live)
	if r.s.Status().Phase != task.PhaseStopped {
		t.Fatalf("phase after a clean stop: %s", r.s.Status().Phase)
	}
}

// TestClusterToClusterFailover syncs a 3-master cluster into another 3-master cluster
// under load (during the full phase and after), and fails one source master over
// (CLUSTER FAILOVER on its replica) during the incremental phase: its shard must follow
// the promoted replica with a partial resync (PSYNC2 continues the old master's history;
// the promoted node did no full sync), and the destination end identical, counters and
// lists exact.
func TestClusterToClusterFailover(t *testing.T) {
	ctx := context.Background()
	src := startSource(t)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 21, Cluster: true, TTL: true, Keys: 1500})
	if err := fill.Fill(ctx, src, 4000); err != nil {
		t.Fatal(err)
	}
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 22, Cluster: true, TTL: true, Keys: 300, Prefix: "live:"})
	l := startLoad(live, src, 800)

	r := startSync(t, testConfig(t, src, dst.Addrs()[0]))
	waitStatus(t, r, 60*time.Second, "every shard incremental", incremental)
	before := r.s.Status().Commands
	waitStatus(t, r, 30*time.Second, "stream commands after the full phase", func(st Status) bool {
		return st.Commands > before+300
	})

	old := src.Masters()[1]
	promoted := src.Failover(t, old)
	var shard string
	for _, sh := range r.s.Status().Shards {
		if sh.Master == old.Addr() {
			shard = sh.ID
		}
	}
	st := waitStatus(t, r, 30*time.Second, "the shard to follow the promoted replica", func(st Status) bool {
		for _, sh := range st.Shards {
			if sh.Master == promoted.Addr() && sh.Phase == task.PhaseIncremental && sh.PartialSyncs >= 1 {
				shard = sh.ID
				return true
			}
		}
		return false
	})
	before = st.Commands
	waitStatus(t, r, 30*time.Second, "stream commands after the failover", func(st Status) bool {
		return st.Commands > before+300
	})
	ops := l.stop(t)
	waitCaughtUp(t, r)
	st = r.s.Status()
	if err := r.stop(t); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	for _, sh := range st.Shards {
		if sh.FullSyncs != 1 {
			t.Fatalf("shard %s took %d full syncs; want only the first (%s)", sh.ID, sh.FullSyncs, describe(st))
		}
		if sh.ID == shard && sh.PartialSyncs < 1 {
			t.Fatalf("shard %s followed the failover without a partial resync", sh.ID)
		}
	}
	info, err := promoted.Info(ctx, "stats")
	if err != nil {
		t.Fatal(err)
	}
	if info["sync_full"] != "0" || info["sync_partial_ok"] == "0" {
		t.Fatalf("promoted replica %s: sync_full %s, sync_partial_ok %s; want partial resyncs only",
			promoted.Addr(), info["sync_full"], info["sync_partial_ok"])
	}
	t.Logf("%d snapshot keys, %d stream commands (%d load ops); shard %s followed %s → %s", st.FullKeys, st.Commands, ops, shard, old.Addr(), promoted.Addr())
	requireSynced(t, src, dst, fill, live)
}
