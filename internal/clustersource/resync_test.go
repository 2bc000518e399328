package clustersource

import (
	"context"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/testutil"
)

// TestShardFullResync: a shard that lost its checkpoint must sync from scratch. Its task
// owns the destination, so it first deletes its own keys there — those of its slots, not
// the other shards' — and then loads its master's snapshot; keys the source deleted while
// the task was stopped must not survive, and the other shards resume with partial
// resyncs. Into a standalone server and into a cluster (where the shard's per-slot
// checkpoints go too).
func TestShardFullResync(t *testing.T) {
	for _, kind := range []string{"standalone", "cluster"} {
		t.Run(kind, func(t *testing.T) {
			ctx := context.Background()
			src := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3, Args: sourceArgs})
			var dst testutil.Deployment
			var target string
			own := "cs-s0"
			if kind == "cluster" {
				c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
				dst, target, own = c, c.Addrs()[0], "{cs-s0}"
			} else {
				s := testutil.StartServer(t)
				dst, target = s, s.Addr()
			}
			w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 71, Cluster: true, TTL: true, Keys: 1000})
			if err := w.Fill(ctx, src, 2500); err != nil {
				t.Fatal(err)
			}
			// Keys in every shard that the source deletes while the task is stopped.
			var gone []string
			for slot := 0; slot < command.SlotCount; slot += 500 {
				k := "gone:{" + tagFor(uint16(slot)) + "}"
				src.Do(t, "SET", k, slot)
				gone = append(gone, k)
			}
			cfg := testConfig(t, src, target)
			r := startSync(t, cfg)
			waitStatus(t, r, 60*time.Second, "every shard incremental", incremental)
			waitCaughtUp(t, r)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			for _, k := range gone {
				src.Do(t, "DEL", k)
			}
			m := dst.MasterForKey(checkpoint.KeysFor(own).Checkpoint)
			if n := m.Do(t, "DEL", checkpoint.KeysFor(own).Checkpoint).Int; n != 1 {
				t.Fatalf("shard s0 had no checkpoint %s to lose", checkpoint.KeysFor(own).Checkpoint)
			}

			r = startSync(t, cfg)
			waitStatus(t, r, 60*time.Second, "every shard incremental again", incremental)
			waitCaughtUp(t, r)
			st := r.s.Status()
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			for _, sh := range st.Shards {
				switch {
				case sh.ID == "s0" && (sh.FullSyncs != 1 || sh.Flushes != 1 || sh.Cluster.FlushedKeys == 0):
					t.Fatalf("shard s0: %d full syncs, %d clean-ups deleting %d keys; want one full resync after deleting its keys",
						sh.FullSyncs, sh.Flushes, sh.Cluster.FlushedKeys)
				case sh.ID != "s0" && (sh.PartialSyncs != 1 || sh.Flushes != 0):
					t.Fatalf("shard %s: %d partial syncs, %d clean-ups; want a partial resync and nothing deleted", sh.ID, sh.PartialSyncs, sh.Flushes)
				}
			}
			requireSynced(t, src, dst, w)
			for _, k := range gone {
				if n := dst.MasterForKey(k).Do(t, "EXISTS", k).Int; n != 0 {
					t.Fatalf("%s, deleted on the source, survived on the destination", k)
				}
			}
			t.Logf("shard s0 deleted %d keys of its slots before its full resync (%d keys on the destination)",
				st.Shards[0].Cluster.FlushedKeys, dbsize(t, dst))
		})
	}
}

func dbsize(tb testing.TB, d testutil.Deployment) int64 {
	var n int64
	for _, m := range d.Masters() {
		n += m.Do(tb, "DBSIZE").Int
	}
	return n
}
