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
