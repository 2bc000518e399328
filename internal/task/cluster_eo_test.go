package task

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/testutil"
)

// verifyClusterSynced waits until Ferry has acknowledged everything written to src, then
// checks that the cluster holds the same keys and values and, for every workload, exactly
// its counters and append-only lists.
func verifyClusterSynced(tb testing.TB, src *testutil.Server, dst *testutil.Cluster, ws ...*testutil.Workload) {
	tb.Helper()
	waitAcked(tb, src)
	testutil.RequireSameData(tb, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
	for _, w := range ws {
		if err := w.VerifyExact(context.Background(), dst); err != nil {
			tb.Fatal(err)
		}
	}
}

// killWriters closes, on master m, the connections of the writer of task name (a lost
// destination connection in the middle of the stream). It returns how many it closed.
func killWriters(tb testing.TB, m *testutil.Server, name string) int {
	tb.Helper()
	list := string(m.Do(tb, "CLIENT", "LIST", "TYPE", "normal").Str)
	n := 0
	for _, id := range clientsNamed(list, "ferry-writer-"+name) {
		if _, err := m.Call(context.Background(), "CLIENT", "KILL", "ID", id); err == nil {
			n++
		}
	}
	return n
}

// slotCheckpoints reads every per-slot checkpoint of task on the cluster, by slot.
func slotCheckpoints(tb testing.TB, dst *testutil.Cluster, task string) map[uint16]checkpoint.SlotPosition {
	tb.Helper()
	sk, err := checkpoint.NewSlotKeys(task)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[uint16]checkpoint.SlotPosition{}
	for _, m := range dst.Masters() {
		for _, k := range m.Do(tb, "KEYS", sk.Prefix()+"*").Elems {
			v := m.Do(tb, "GET", k.Str)
			p, err := checkpoint.ParseSlotPosition(string(v.Str))
			if err != nil {
				tb.Fatal(err)
			}
			tag := strings.TrimSuffix(strings.TrimPrefix(string(k.Str), sk.Prefix()), "}")
			slot := -1
			for s := range checkpoint.SlotCount {
				if checkpoint.SlotTag(uint16(s)) == tag {
					slot = s
					break
				}
			}
			if slot < 0 {
				tb.Fatalf("per-slot checkpoint %s names no slot", k.Str)
			}
			out[uint16(slot)] = p
		}
	}
	return out
}

// floorOffset reads the task's checkpoint on the cluster.
func floorOffset(tb testing.TB, dst *testutil.Cluster, task string) replicaOffset {
	tb.Helper()
	v := dst.Do(tb, "GET", "ferry:ckpt:{"+task+"}")
	f := strings.Fields(string(v.Str))
	if len(f) != 3 {
		tb.Fatalf("checkpoint of %s: %q", task, v.Str)
	}
	off, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return replicaOffset{replID: f[0], off: off}
}

type replicaOffset struct {
	replID string
	off    int64
}

// skippedInLog sums the "skipped" of p's records that say a replay passed the per-slot
// checkpoints.
func skippedInLog(p *ferryProc) int64 {
	var n int64
	for _, r := range p.Records("replayed past the per-slot checkpoints") {
		if v, ok := r["skipped"].(float64); ok {
			n += int64(v)
		}
	}
	return n
}

// TestClusterKill9ExactlyOnce: a standalone source into a 3-master cluster, exactly-once,
// with the workload (counters, append-only lists, cross-slot commands, transactions,
// scripts) running during the full phase and after. Ferry is killed with SIGKILL several
// times in the incremental phase and started again; in one run the writer connections on
// one master are closed under it (CLIENT KILL). At the end every key compares equal and
// every counter and list is exact; every restart was a partial resync, the lost
// connection restarted the session from the checkpoint, and at least one replay skipped
// commands its slots already held.
func TestClusterKill9ExactlyOnce(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 91, TTL: true, Keys: 1500})
	if err := fill.Fill(ctx, src, 5000); err != nil {
		t.Fatal(err)
	}
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 92, TTL: true, Keys: 400, Prefix: "live:"})
	l := startLoad(live, src, 1500)
	seed := testutil.KillSeed(t)
	t.Logf("kill points from seed %d (replay with FERRY_KILL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 9))
	args := ferryArgsAddr(src.Addr(), dst.Addrs()[0], t.TempDir())
	partial0 := stat(t, src, "stats", "sync_partial_ok")

	const kills = 4
	var skipped int64
	paths := map[string]int{}
	resumed := 0
	for i := 0; i <= kills; i++ {
		p := startFerry(t, args...)
		rec := p.WaitRecord(t, 60*time.Second, "sync path")
		paths[rec["path"].(string)]++
		p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
		if i == 1 {
			// A lost destination connection: the session starts over from the checkpoint
			// in the same process.
			time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
			before := p.Count("sync path")
			m := dst.Masters()[rng.IntN(3)]
			if killWriters(t, m, "killed") == 0 {
				t.Fatalf("no writer connection of the task on %s", m.Addr())
			}
			rec := p.WaitRecord(t, 30*time.Second, "sync interrupted; resuming from the checkpoint")
			// The writer's reconnect ends the session (per-slot checkpoints cannot tell
			// which of its transactions ran); the router's control connections carry the
			// same client name, so a co-location under way may lose its connection first.
			if e, _ := rec["err"].(string); !strings.Contains(e, "per-slot") && !strings.Contains(e, "connection closed by the server") {
				t.Fatalf("the session ended with %q; want the per-slot reconnect or the killed connection", e)
			}
			waitUntil(t, 30*time.Second, "a new session", func() bool { return p.Count("sync path") > before })
			resumed++
			p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
		}
		if i == kills {
			time.Sleep(500 * time.Millisecond)
			l.stop(t)
			verifyClusterSynced(t, src, dst, fill, live)
			skipped += skippedInLog(p)
			p.Stop(t)
			break
		}
		time.Sleep(time.Duration(200+rng.IntN(600)) * time.Millisecond)
		p.Kill()
		skipped += skippedInLog(p)
	}
	partial := stat(t, src, "stats", "sync_partial_ok") - partial0
	t.Logf("paths %v; source partial resyncs %d; commands skipped by per-slot checkpoints %d", paths, partial, skipped)
	if paths["partial"] != kills || paths["full"] != 1 {
		t.Fatalf("paths %v; want one full sync and %d partial resyncs", paths, kills)
	}
	if partial < kills+int64(resumed) {
		t.Fatalf("source sync_partial_ok grew by %d; want at least %d", partial, kills+resumed)
	}
	if skipped == 0 {
		t.Fatal("no replay skipped a command by its slot's checkpoint: the fault path did not run")
	}
}

// reshardSlots moves slots from one master to another with their keys, the way
// redis-cli --cluster reshard does (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE everywhere).
func reshardSlots(tb testing.TB, c *testutil.Cluster, from, to *testutil.Server, slots []int) {
	tb.Helper()
	fromID, toID := c.NodeID(from), c.NodeID(to)
	for _, slot := range slots {
		to.Do(tb, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
		from.Do(tb, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
		for {
			keys := from.Do(tb, "CLUSTER", "GETKEYSINSLOT", slot, 100).Elems
			if len(keys) == 0 {
				break
			}
			args := []any{"MIGRATE", "127.0.0.1", to.Port(), "", 0, 10000, "REPLACE", "KEYS"}
			for _, k := range keys {
				args = append(args, k.Str)
			}
			from.Do(tb, args...)
		}
		to.Do(tb, "CLUSTER", "SETSLOT", slot, "NODE", toID)
		from.Do(tb, "CLUSTER", "SETSLOT", slot, "NODE", toID)
	}
	for _, m := range c.Masters() {
		if m != from && m != to {
			for _, slot := range slots {
				m.Do(tb, "CLUSTER", "SETSLOT", slot, "NODE", toID)
			}
		}
	}
	if err := c.Refresh(context.Background()); err != nil {
		tb.Fatal(err)
	}
}

// TestClusterReshardBetweenRuns: Ferry is killed while per-slot checkpoints are ahead of
// the task's checkpoint, then slots move between masters with their keys (those slots'
// checkpoints among them) before it starts again. The replay finds each slot's
// checkpoint on its new master and skips exactly what the slot holds: the cluster ends
// identical, counters and lists exact.
func TestClusterReshardBetweenRuns(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 93, Keys: 1000})
	if err := fill.Fill(ctx, src, 3000); err != nil {
		t.Fatal(err)
	}
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 94, Keys: 300, Prefix: "live:"})
	l := startLoad(live, src, 2000)
	args := ferryArgsAddr(src.Addr(), dst.Addrs()[0], t.TempDir())

	// Kill until some slots hold more than the task's checkpoint (a kill right after the
	// checkpoint caught up leaves none).
	var ahead []int
	for attempt := 0; len(ahead) == 0; attempt++ {
		if attempt == 10 {
			t.Fatal("no kill left a per-slot checkpoint ahead of the task's checkpoint")
		}
		p := startFerry(t, args...)
		p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
		time.Sleep(300 * time.Millisecond)
		p.Kill()
		floor := floorOffset(t, dst, "killed")
		for slot, pos := range slotCheckpoints(t, dst, "killed") {
			if pos.Offset > floor.off {
				ahead = append(ahead, int(slot))
			}
		}
	}
	// Move the slots that are ahead and a range of others from their master to the next.
	masters := dst.Masters()
	plan := make([][]int, len(masters))
	for i, m := range masters {
		for _, s := range ahead {
			if dst.MasterForSlot(s) == m {
				plan[i] = append(plan[i], s)
			}
		}
		r := dst.SlotRanges(m)[0]
		for s := r[0]; s < r[0]+50; s++ {
			if !slices.Contains(plan[i], s) {
				plan[i] = append(plan[i], s)
			}
		}
	}
	moved := 0
	for i, m := range masters {
		reshardSlots(t, dst, m, masters[(i+1)%len(masters)], plan[i])
		moved += len(plan[i])
	}
	t.Logf("moved %d slots, %d of them with a checkpoint ahead of the task's", moved, len(ahead))

	p := startFerry(t, args...)
	if rec := p.WaitRecord(t, 60*time.Second, "sync path"); rec["path"] != "partial" {
		t.Fatalf("restart after the reshard took path %v; want partial", rec["path"])
	}
	p.WaitRecord(t, 60*time.Second, "replayed past the per-slot checkpoints")
	time.Sleep(500 * time.Millisecond)
	l.stop(t)
	verifyClusterSynced(t, src, dst, fill, live)
	if skippedInLog(p) == 0 {
		t.Fatal("the replay skipped nothing although slots held more than the task's checkpoint")
	}
	p.Stop(t)
}

// TestClusterFullResync: with a 16 KB backlog, Ferry killed while the source keeps writing
// cannot continue: the source answers +FULLRESYNC. The task owns the cluster, so it first
// deletes on every master what it wrote (keys the source deleted meanwhile included) and
// its per-slot checkpoints, then syncs again: the cluster ends identical, with no key the
// source no longer has and no list element twice.
func TestClusterFullResync(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, "--repl-backlog-size", "16kb")
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 95, Keys: 1000})
	if err := fill.Fill(ctx, src, 4000); err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		src.Do(t, "SET", "gone:"+strconv.Itoa(i), i)
	}
	args := ferryArgsAddr(src.Addr(), dst.Addrs()[0], t.TempDir())
	p := startFerry(t, args...)
	p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 96, Keys: 300, Prefix: "live:"})
	l := startLoad(live, src, 3000)
	time.Sleep(500 * time.Millisecond)
	waitUntil(t, 30*time.Second, "the gone: keys on the cluster", func() bool {
		v, err := dst.Call(ctx, "EXISTS", "gone:299")
		return err == nil && v.Int == 1
	})
	p.Kill()
	before := len(slotCheckpoints(t, dst, "killed"))
	off := stat(t, src, "replication", "master_repl_offset")
	waitUntil(t, 30*time.Second, "64 KB of writes", func() bool {
		return stat(t, src, "replication", "master_repl_offset") > off+64<<10
	})
	for i := range 300 {
		src.Do(t, "DEL", "gone:"+strconv.Itoa(i))
	}

	p = startFerry(t, args...)
	rec := p.WaitRecord(t, 60*time.Second, "sync path")
	if rec["path"] != "full" {
		t.Fatalf("restart with the backlog gone took path %v; want full", rec["path"])
	}
	snapshot := int64(rec["offset"].(float64))
	st := p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
	if st.Flushes != 1 || p.Count("deleted the task's earlier data") != 1 {
		t.Fatalf("%d clean-ups of the earlier data; want 1; log:\n%s", st.Flushes, p.Log())
	}
	time.Sleep(300 * time.Millisecond)
	l.stop(t)
	verifyClusterSynced(t, src, dst, fill, live)
	// The per-slot checkpoints of the first history went with the data: those left are
	// the new sync's.
	after := slotCheckpoints(t, dst, "killed")
	for slot, pos := range after {
		if pos.Offset < snapshot {
			t.Fatalf("slot %d keeps a checkpoint at offset %d, before the resync's snapshot at %d", slot, pos.Offset, snapshot)
		}
	}
	t.Logf("%d per-slot checkpoints before the resync, %d after", before, len(after))
	if before == 0 {
		t.Fatal("no per-slot checkpoint before the resync")
	}
	p.Stop(t)
}

// TestClusterWholeDatasetCommands: FLUSHALL, FUNCTION LOAD and FUNCTION DELETE in the
// stream of an exactly-once sync into a cluster, across two runs of the task. Every master is flushed, the task's checkpoint and marker
// survive the flushes, the library is on every master (FCALL works in every slot range),
// and the data ends identical with exact counters.
func TestClusterWholeDatasetCommands(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	cfg := clusterConfig(t, src, dst)
	cfg.Name = "wholedata"
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 97, Keys: 300, Skip: []string{"function"}})
	if err := w.Fill(ctx, src, 1000); err != nil {
		t.Fatal(err)
	}
	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	for i := range 100 {
		src.Do(t, "INCR", "pre:"+strconv.Itoa(i%7))
	}
	src.Do(t, "FLUSHALL")
	const lib = "#!lua name=eolib\nredis.register_function('eobump', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)"
	src.Do(t, "FUNCTION", "LOAD", lib)
	w2 := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 98, Keys: 300, Prefix: "post:", Skip: []string{"function"}})
	if err := w2.Fill(ctx, src, 1000); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, 30)
	for i := 0; len(keys) < 30; i++ {
		keys = append(keys, "fc:"+strconv.Itoa(i))
	}
	for _, k := range keys {
		src.Do(t, "FCALL", "eobump", 1, k, 3)
	}
	waitAcked(t, src)
	for _, k := range keys {
		if v, err := dst.Call(ctx, "GET", k); err != nil || string(v.Str) != "3" {
			t.Fatalf("FCALL on %s: the cluster holds %q (%v), want 3", k, v.Str, err)
		}
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	for _, m := range dst.Masters() {
		if v := m.Do(t, "FUNCTION", "LIST", "LIBRARYNAME", "eolib"); len(v.Elems) != 1 {
			t.Fatalf("master %s does not have the library", m.Addr())
		}
	}
	if v := dst.Do(t, "GET", "ferry:task:{wholedata}"); v.Null {
		t.Fatal("the task's marker did not survive the FLUSHALL")
	}
	src.Do(t, "FUNCTION", "DELETE", "eolib")
	src.Do(t, "FLUSHALL")
	w3 := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 99, Keys: 300, Prefix: "again:", Skip: []string{"function"}})
	if err := w3.Fill(ctx, src, 1000); err != nil {
		t.Fatal(err)
	}
	r = startTask(t, cfg)
	st := waitStatus(t, r, 30*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
	if st.Path != "partial" {
		t.Fatalf("the restarted task took path %q; want partial", st.Path)
	}
	verifyClusterSynced(t, src, dst, w3)
	for _, m := range dst.Masters() {
		if v := m.Do(t, "FUNCTION", "LIST", "LIBRARYNAME", "eolib"); len(v.Elems) != 0 {
			t.Fatalf("master %s still has the deleted library", m.Addr())
		}
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// writeClusterBacklog writes n small commands to the source's DB 0, pipelined: SET, INCR,
// RPUSH and HSET over 10,000 keys (a cluster has only DB 0).
func writeClusterBacklog(tb testing.TB, src *testutil.Server, n int) {
	tb.Helper()
	c := src.Conn(tb)
	const chunk = 5000
	for done := 0; done < n; {
		k := min(chunk, n-done)
		for i := range k {
			j := done + i
			key := "k:" + strconv.Itoa(j%10000)
			var err error
			switch j % 4 {
			case 0:
				err = c.Send("SET", "s"+key, j)
			case 1:
				err = c.Send("INCR", "c"+key)
			case 2:
				err = c.Send("RPUSH", "l"+key, j)
			case 3:
				err = c.Send("HSET", "h"+key, j%7, j)
			}
			if err != nil {
				tb.Fatal(err)
			}
		}
		if err := c.Flush(); err != nil {
			tb.Fatal(err)
		}
		for range k {
			if _, err := c.Receive(); err != nil {
				tb.Fatal(err)
			}
		}
		done += k
	}
}

// TestClusterDeliveryModes applies the same backlog into two 3-master clusters, one task
// exactly-once and one at-least-once, and checks both end identical to the source. With
// FERRY_LONG_TESTS=1 it measures the incremental phase's throughput of each over several
// rounds on the same servers (alternating which runs first):
//
//	FERRY_LONG_TESTS=1 go test -run TestClusterDeliveryModes -v ./internal/task
func TestClusterDeliveryModes(t *testing.T) {
	n, rounds := 20000, 1
	if os.Getenv("FERRY_LONG_TESTS") == "1" {
		n, rounds = 300000, 5
	}
	src := testutil.StartServer(t, "--repl-backlog-size", "1gb")
	modes := []Delivery{DeliveryExactlyOnce, DeliveryAtLeastOnce}
	if m := os.Getenv("FERRY_DELIVERY_ONLY"); m != "" {
		modes = []Delivery{Delivery(m)}
	}
	dsts := map[Delivery]*testutil.Cluster{}
	cfgs := map[Delivery]Config{}
	for _, mode := range modes {
		dsts[mode] = testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
		cfg := clusterConfig(t, src, dsts[mode])
		cfg.Name = "cdelivery-" + strings.ReplaceAll(string(mode), "-", "")
		cfg.Delivery = mode
		cfgs[mode] = cfg
	}
	for _, mode := range modes {
		r := startTask(t, cfgs[mode])
		waitPhase(t, r, PhaseIncremental)
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
	}
	rates := map[Delivery][]float64{}
	cpu := map[Delivery][]float64{} // the masters' CPU per command, µs
	clusterCPU := func(c *testutil.Cluster) float64 {
		var sum float64
		for _, m := range c.Masters() {
			sum += cpuSeconds(t, m)
		}
		return sum
	}
	for round := range rounds {
		writeClusterBacklog(t, src, n)
		order := modes
		if round%2 == 1 && len(modes) == 2 {
			order = []Delivery{modes[1], modes[0]}
		}
		for _, mode := range order {
			target := stat(t, src, "replication", "master_repl_offset")
			cpu0 := clusterCPU(dsts[mode])
			start := time.Now()
			r := startTask(t, cfgs[mode])
			st := waitStatus(t, r, 10*time.Minute, "the backlog applied", func(s Status) bool {
				return s.Phase == PhaseIncremental && s.AppliedOffset >= target
			})
			took := time.Since(start)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			rate := float64(st.Commands) / took.Seconds()
			perCmd := 1e6 * (clusterCPU(dsts[mode]) - cpu0) / float64(st.Commands)
			rates[mode] = append(rates[mode], rate)
			cpu[mode] = append(cpu[mode], perCmd)
			t.Logf("round %d, %s: %d commands applied at %.0f/s (%d batches); the masters' CPU %.2f µs per command",
				round+1, mode, st.Commands, rate, st.Batches, perCmd)
			testutil.RequireSameData(t, src, dsts[mode], testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
		}
	}
	if len(modes) < 2 {
		return
	}
	eo, alo := median(rates[DeliveryExactlyOnce]), median(rates[DeliveryAtLeastOnce])
	ceo, calo := median(cpu[DeliveryExactlyOnce]), median(cpu[DeliveryAtLeastOnce])
	t.Logf("median of %d rounds of %d commands into a 3-master cluster: exactly-once %.0f/s, at-least-once %.0f/s (exactly-once %+.1f %%); the masters' CPU per command %.2f µs vs %.2f µs (%+.1f %%)",
		rounds, n, eo, alo, pct(eo, alo), ceo, calo, pct(ceo, calo))
}

// TestClusterReshardLive moves slots between masters, with their keys, while an
// exactly-once sync writes to them: per-slot transactions are redirected (MOVED, ASK) or
// refused for a while (TRYAGAIN while a slot's keys are split between the two masters),
// and whichever session restarts resumes from the checkpoint. The cluster ends identical.
func TestClusterReshardLive(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 101, Keys: 2000})
	if err := fill.Fill(ctx, src, 4000); err != nil {
		t.Fatal(err)
	}
	r := startTask(t, clusterConfig(t, src, dst))
	waitPhase(t, r, PhaseIncremental)
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 102, Keys: 2000, Prefix: "live:"})
	l := startLoad(live, src, 3000)
	time.Sleep(300 * time.Millisecond)
	ms := dst.Masters()
	rg := dst.SlotRanges(ms[0])[0]
	var slots []int
	for s := rg[0]; s < rg[0]+300; s++ {
		slots = append(slots, s)
	}
	reshardSlots(t, dst, ms[0], ms[1], slots)
	time.Sleep(300 * time.Millisecond)
	l.stop(t)
	verifyClusterSynced(t, src, dst, fill, live)
	st := r.t.Status()
	r.t.mu.Lock()
	rs := r.t.wr.(*cluster.Router).Stats()
	r.t.mu.Unlock()
	t.Logf("moved %d slots while syncing: redirects %v, %d per-slot transactions in the last session, %d session restarts, %d commands skipped by slot checkpoints",
		len(slots), rs.Redirects, rs.SlotTxns, st.Retries, r.t.slotSkipped.Load())
	if rs.Redirects["moved"]+rs.Redirects["ask"] == 0 && st.Retries == 0 {
		t.Fatal("no write was redirected and no session restarted: the reshard did not meet the sync")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestClusterFailoverLive fails a destination master over to its replica (CLUSTER
// FAILOVER) while an exactly-once sync writes to it: its per-slot transactions are
// answered MOVED and sent to the promoted replica, which has the slots' checkpoints with
// their data. The cluster ends identical.
func TestClusterFailoverLive(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 103, Keys: 1000})
	if err := fill.Fill(ctx, src, 3000); err != nil {
		t.Fatal(err)
	}
	r := startTask(t, clusterConfig(t, src, dst))
	waitPhase(t, r, PhaseIncremental)
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 104, Keys: 1000, Prefix: "live:"})
	l := startLoad(live, src, 3000)
	time.Sleep(300 * time.Millisecond)
	promoted := dst.Failover(t, dst.Masters()[0])
	time.Sleep(500 * time.Millisecond)
	l.stop(t)
	verifyClusterSynced(t, src, dst, fill, live)
	st := r.t.Status()
	r.t.mu.Lock()
	rs := r.t.wr.(*cluster.Router).Stats()
	r.t.mu.Unlock()
	t.Logf("failover to %s while syncing: redirects %v, %d session restarts, %d commands skipped by slot checkpoints",
		promoted.Addr(), rs.Redirects, st.Retries, r.t.slotSkipped.Load())
	if rs.Redirects["moved"] == 0 && st.Retries == 0 {
		t.Fatal("no write was redirected and no session restarted: the failover did not meet the sync")
	}
	if n := len(promoted.Do(t, "KEYS", "ferry:sckpt:*").Elems); n == 0 {
		t.Fatal("the promoted master holds no per-slot checkpoint")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
