package verify

import (
	"errors"
	"fmt"
	"testing"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// TestClusterBothWays runs the acceptance scenario with a cluster on each side in turn:
// standalone → cluster (seeded differences, repair, digest-equal afterwards) and
// cluster → standalone; then the cluster rules and MOVED following on the same cluster.
func TestClusterBothWays(t *testing.T) {
	cl := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	srv := testutil.StartServer(t)

	t.Run("standalone to cluster", func(t *testing.T) {
		fixture(t, srv, 0)
		if n := copyDB(t, srv, 0, cl, 0); n == 0 {
			t.Fatal("nothing copied")
		}
		seedDiffs(t, cl, 0)
		o := opts(srv.Addr(), cl.Masters()[1].Addr()) // any node will do as the seed
		res := run(t, o)
		checkSeeded(t, res.Remaining, 0)
		if res.Rounds[0].Keys == 0 || res.Rounds[0].Extra == 0 {
			t.Errorf("round 1: %+v", res.Rounds[0])
		}

		o.Repair, o.RepairExtra = true, true
		// Low thresholds send the big keys down the command path, whose temporary keys
		// must land in the key's slot.
		v, err := open(testCtx(t), withLogger(o, t))
		if err != nil {
			t.Fatal(err)
		}
		defer v.closeWorkers()
		v.dumpMaxElems = 1000
		res, err = v.run(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		checkSeeded(t, res.Found, 0)
		if res.Repairs.Rewritten != 1 || res.Repairs.Failed != 0 {
			t.Errorf("repairs %+v, want big:h rewritten with commands", res.Repairs)
		}
		if len(res.Remaining) != 0 {
			t.Fatalf("remaining after repair: %v", res.Remaining)
		}
		testutil.RequireSameData(t, srv, cl, testutil.CompareOptions{DBs: []int{0}})
	})

	t.Run("cluster to standalone", func(t *testing.T) {
		// The cluster now holds the fixture; make the server a copy of it, then seed.
		srv.Do(t, "FLUSHALL")
		copyDB(t, cl, 0, srv, 0)
		seedDiffs(t, srv, 0)
		o := opts(cl.Masters()[0].Addr(), srv.Addr())
		o.NoDigest = true
		res := run(t, o)
		checkSeeded(t, res.Remaining, 0)
	})
	t.Run("db rules", func(t *testing.T) { clusterDBRules(t, cl) })
	t.Run("follow MOVED", func(t *testing.T) { followMoved(t, cl) })
}

// clusterDBRules: a cluster has only db 0; asking for more is a configuration error that
// says how to map.
func clusterDBRules(t *testing.T, cl *testutil.Cluster) {
	srv := testutil.StartServer(t)
	o := opts(srv.Addr(), cl.Masters()[0].Addr())
	o.Selection.DBs = []int{0, 2}
	o.Selection.Map = map[int]int{0: 0}
	_, err := Run(testCtx(t), o)
	if err == nil || !errors.Is(err, ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
	t.Log(err)
	o.Selection = Selection{Map: map[int]int{2: 0}}
	o.Selection.Keys, _ = NewKeyFilter([]string{"dbrule:"}, nil)
	writerFor(t, srv, 2).do("SET", "dbrule:k", "v")
	res := run(t, o)
	if len(res.Remaining) != 1 || res.Remaining[0].Class != ClassMissing || res.Remaining[0].DB != 2 || res.Remaining[0].TargetDB != 0 {
		t.Fatalf("remaining %v", res.Remaining)
	}
}

// followMoved: with a stale slot map every command still reaches its key's master (by
// following MOVED once), and the map heals.
func followMoved(t *testing.T, cl *testutil.Cluster) {
	ctx := testCtx(t)
	for i := range 30 {
		cl.Do(t, "SET", fmt.Sprintf("k%d", i), i)
	}
	ep, err := openEndpoint(ctx, "destination", redis.Options{Addr: cl.Masters()[0].Addr()}, 0, false, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !ep.cluster || len(ep.masters()) != 3 || !ep.digest {
		t.Fatalf("endpoint: cluster %v masters %v digest %v", ep.cluster, ep.masters(), ep.digest)
	}
	// Pretend every slot lives on the first master.
	ep.mu.Lock()
	for i := range ep.slots {
		ep.slots[i] = 0
	}
	ep.mu.Unlock()
	s := newSession(ep)
	defer s.close()
	b := &batch{s: s}
	for i := range 30 {
		k := fmt.Sprintf("k%d", i)
		b.add(k, "GET", k)
	}
	if err := exec(ctx, b); err != nil {
		t.Fatal(err)
	}
	for i, c := range b.calls {
		if c.err != nil || c.v.Text() != fmt.Sprint(i) {
			t.Errorf("GET k%d = %q, %v", i, c.v.Text(), c.err)
		}
	}
	moved := 0
	for i := range 30 {
		k := fmt.Sprintf("k%d", i)
		if ep.route(k) != cl.MasterForKey(k).Addr() {
			t.Errorf("slot map not healed for %s: %s, want %s", k, ep.route(k), cl.MasterForKey(k).Addr())
		}
		if cl.MasterForKey(k) != cl.Masters()[0] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no key lives outside the first master: the test proves nothing")
	}
}
