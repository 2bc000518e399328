package cluster

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/testutil"
)

// TestRouterWorkload syncs a standalone source running the workload generator with
// cross-slot multi-key commands, transactions, scripts and functions (Cluster: false)
// into a 3-master cluster through the Router, and checks the cluster holds exactly the
// source's data and every acknowledged counter and list element.
func TestRouterWorkload(t *testing.T) {
	src := testutil.StartServer(t)
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	r := openRouter(t, c, nil)
	st := follow(t, src, r)

	wl := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 6, Keys: 1500, TTL: true, Large: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := wl.Fill(ctx, src, 15000); err != nil {
		t.Fatal(err)
	}
	st.catchUp(src)
	st.stop()
	flushCtx(t, r)

	testutil.RequireSameData(t, src, c, testutil.CompareOptions{TTLTolerance: 10 * time.Second})
	if err := wl.VerifyExact(ctx, c); err != nil {
		t.Fatal(err)
	}
	s := r.Stats()
	t.Logf("commands %d, split %d (%d parts), co-located %v, broadcast %d, txns %d (split %d, unwrapped %d)",
		s.Commands, s.Split, s.SplitParts, s.CoLocated, s.Broadcast, s.Transactions, s.TxnSplit, s.TxnUnwrapped)
	if s.Split == 0 || len(s.CoLocated) < 5 || s.TxnSplit == 0 || s.Broadcast == 0 {
		t.Errorf("the workload did not exercise the cross-slot paths: %+v", s)
	}
	if a := r.Applied(); a < st.rep.Start().Offset || a == 0 {
		t.Errorf("Applied %d", a)
	}
}

// watchApplied samples r.Applied while the test runs and fails it if the position goes
// back or passes what the stream has delivered.
func watchApplied(t *testing.T, r *Router, st *stream) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := int64(0)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			a := r.Applied() // before seen: Applied may only trail what was read
			seen := st.seen.Load()
			if a < last {
				t.Errorf("Applied went back from %d to %d", last, a)
				return
			}
			if a > seen {
				t.Errorf("Applied %d is past the stream's %d", a, seen)
				return
			}
			last = a
		}
	}()
	return func() { close(done); wg.Wait() }
}

// reshard moves slots from one master to another while writes go on, the way
// redis-cli --cluster reshard does: IMPORTING/MIGRATING, MIGRATE of the keys in
// batches, then SETSLOT NODE on both and the other masters. midway, when set, runs
// once while the first slot is still migrating with all its keys already moved.
func reshard(t *testing.T, c *testutil.Cluster, from, to *testutil.Server, slots []int, midway func(slot int)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	fromID, toID := c.NodeID(from), c.NodeID(to)
	src, dst := from.Conn(t), to.Conn(t)
	must := func(v any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("reshard: %v", err)
		}
	}
	for _, slot := range slots {
		must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID))
		must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID))
		for {
			v, err := src.Do(ctx, "CLUSTER", "GETKEYSINSLOT", slot, 20)
			must(v, err)
			if len(v.Elems) == 0 {
				break
			}
			args := []any{"MIGRATE", "127.0.0.1", to.Port(), "", 0, 10000, "REPLACE", "KEYS"}
			for _, k := range v.Elems {
				args = append(args, k.Str)
			}
			must(src.Do(ctx, args...))
		}
		if midway != nil {
			midway(slot)
			midway = nil
		}
		must(dst.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID))
		must(src.Do(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID))
	}
	for _, m := range c.Masters() {
		if m != from && m != to {
			for _, slot := range slots {
				must(m.Call(ctx, "CLUSTER", "SETSLOT", slot, "NODE", toID))
			}
		}
	}
}

// TestRouterReshard moves about 1000 slots between masters while the workload runs:
// the router follows MOVED and ASK and the cluster ends equal to the source.
func TestRouterReshard(t *testing.T) {
	src := testutil.StartServer(t)
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	r := openRouter(t, c, nil)
	st := follow(t, src, r)
	// Hash-tagged multi-key commands only: this test is about redirects.
	wl := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 7, Keys: 3000, Cluster: true})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := wl.Fill(ctx, src, 3000); err != nil {
		t.Fatal(err)
	}
	st.catchUp(src)

	runCtx, stopRun := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, runErr = wl.Run(runCtx, src, 4000)
	}()
	defer watchApplied(t, r, st)()
	from, to := c.Masters()[0], c.Masters()[1]
	ranges := c.SlotRanges(from)
	var slots []int
	for s := ranges[0][0]; s <= ranges[0][1] && len(slots) < 1000; s++ {
		slots = append(slots, s)
	}
	time.Sleep(200 * time.Millisecond) // writes are flowing
	reshard(t, c, from, to, slots, func(slot int) {
		// A write to a key of the migrating slot that its owner no longer has is
		// answered with ASK: write one at the source and wait for the router to follow.
		key := ""
		for i := 0; key == ""; i++ {
			if k := "askprobe" + itoa(i); int(command.SlotString(k)) == slot {
				key = k
			}
		}
		src.Do(t, "SET", key, "asked")
		deadline := time.Now().Add(20 * time.Second)
		for r.Stats().Redirects["ask"] == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("no ASK followed for %s in migrating slot %d", key, slot)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	time.Sleep(200 * time.Millisecond)
	stopRun()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	st.catchUp(src)
	st.stop()
	flushCtx(t, r)
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if c.MasterForSlot(slots[0]) != to {
		t.Fatalf("slot %d did not move", slots[0])
	}
	testutil.RequireSameData(t, src, c, testutil.CompareOptions{})
	if err := wl.VerifyExact(ctx, c); err != nil {
		t.Fatal(err)
	}
	s := r.Stats()
	t.Logf("redirects %v in %d episodes, %d topology refreshes", s.Redirects, s.Episodes, s.Refreshes)
	if s.Redirects["moved"] == 0 {
		t.Errorf("no MOVED was followed: %v", s.Redirects)
	}
	if s.Redirects["ask"] == 0 {
		t.Errorf("no ASK was followed: %v", s.Redirects)
	}
	for _, slot := range slots[:10] {
		if n := r.slots[slot]; n.addr != to.Addr() {
			t.Errorf("the router sends slot %d to %s", slot, n.addr)
		}
	}
}

// TestRouterFailover fails a master over to its replica while writes go on: the
// router's writes to the old master are answered with MOVED, and nothing is lost.
func TestRouterFailover(t *testing.T) {
	src := testutil.StartServer(t)
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	r := openRouter(t, c, nil)
	st := follow(t, src, r)
	wl := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 8, Keys: 1000})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := wl.Fill(ctx, src, 2000); err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, runErr = wl.Run(runCtx, src, 3000)
	}()
	defer watchApplied(t, r, st)()
	time.Sleep(300 * time.Millisecond)
	old := c.Masters()[0]
	promoted := c.Failover(t, old)
	time.Sleep(300 * time.Millisecond)
	stopRun()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	st.catchUp(src)
	st.stop()
	flushCtx(t, r)
	testutil.RequireSameData(t, src, c, testutil.CompareOptions{})
	if err := wl.VerifyExact(ctx, c); err != nil {
		t.Fatal(err)
	}
	s := r.Stats()
	t.Logf("redirects %v in %d episodes", s.Redirects, s.Episodes)
	if s.Redirects["moved"] == 0 {
		t.Errorf("no MOVED followed across the failover: %v", s.Redirects)
	}
	key := ""
	for i := 0; key == ""; i++ {
		if k := "probe" + itoa(i); c.MasterForKey(k) == promoted {
			key = k
		}
	}
	if n := r.slots[command.SlotString(key)]; n.addr != promoted.Addr() {
		t.Errorf("the router sends %s's slots to %s, want the promoted %s", old, n.addr, promoted)
	}
}
