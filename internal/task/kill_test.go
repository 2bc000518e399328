package task

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// ferryArgs are the arguments of one task's `ferry sync`, the same for every run: running
// the same command again is resuming.
func ferryArgs(src, dst *testutil.Server, dataDir string, extra ...string) []string {
	return ferryArgsAddr(src.Addr(), dst.Addr(), dataDir, extra...)
}

func ferryArgsAddr(src, dst, dataDir string, extra ...string) []string {
	return append([]string{
		"--source", "redis://" + src, "--target", "redis://" + dst,
		"--task", "killed", "--data-dir", dataDir, "--skip-precheck",
		// An orphan (the test binary died) gives up soon.
		"--retry-timeout", "30s",
	}, extra...)
}

// TestKill9ListAppend is the Jepsen-style check: a load RPUSHes unique integers and INCRs
// counters on the source (and writes every other type) while ferry is killed with SIGKILL
// ten times at random points, five during the full phase and five during the incremental
// phase, and started again with the same command. At the end the destination's lists and
// counters equal the source's exactly (nothing lost, nothing applied twice), every key
// compares equal, and every restart after an incremental-phase kill was a partial resync.
func TestKill9ListAppend(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartServer(t)
	fill, live := newWorkloads(70)
	if err := fill.Fill(ctx, src, 10000); err != nil {
		t.Fatal(err)
	}
	// Bulk, and a destination link of ~6 MB/s, so that the full phase lasts a couple of
	// seconds and kills land inside it.
	src.Do(t, "DEBUG", "POPULATE", 100000, "pop", 32)
	total := int64(0)
	for _, db := range []int{0, 2, 5} {
		c := src.Conn(t)
		if _, err := c.Do(ctx, "SELECT", db); err != nil {
			t.Fatal(err)
		}
		v, err := c.Do(ctx, "DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		total += v.Int
	}
	proxy := testutil.StartFaultProxy(t, dst.Addr())
	proxy.Slicer(testutil.Upstream, 32<<10, 0, 5*time.Millisecond)
	seed := testutil.KillSeed(t)
	t.Logf("kill points from seed %d (replay with FERRY_KILL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	l := startLoad(live, src, 1500)
	args := ferryArgsAddr(src.Addr(), proxy.Addr(), t.TempDir())
	partial0 := stat(t, src, "stats", "sync_partial_ok")

	paths := map[string]int{}
	fullKills, incrKills, incrPartials := 0, 0, 0
	lastKillIncr := false
	for fullKills+incrKills < 10 {
		p := startFerry(t, args...)
		rec := p.WaitRecord(t, 60*time.Second, "sync path")
		path, _ := rec["path"].(string)
		paths[path]++
		if lastKillIncr && path == "partial" {
			incrPartials++
		}
		switch {
		case fullKills == 0:
			// Early: during the transfer, or the first keys.
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		case fullKills < 5 && path != "partial":
			// Later and later in the full phase, which a resume from the snapshot's
			// copy continues: 20-30 %, 40-50 %, 60-70 %, 80-90 % of the keys.
			at := total * int64(20*fullKills+rng.IntN(10)) / 100
			p.WaitStatus(t, 60*time.Second, "the full phase's progress", func(s Status) bool {
				return s.FullKeys >= at || s.Phase == PhaseIncremental
			})
		default:
			p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
			time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond)
		}
		st, _ := p.Status()
		p.Kill()
		lastKillIncr = st.Phase == PhaseIncremental
		if lastKillIncr {
			incrKills++
		} else {
			fullKills++
		}
		t.Logf("kill %d: path %s, killed in phase %s (%d snapshot keys, %d commands)",
			fullKills+incrKills, path, st.Phase, st.FullKeys, st.Commands)
	}
	p := startFerry(t, args...)
	rec := p.WaitRecord(t, 60*time.Second, "sync path")
	paths[rec["path"].(string)]++
	if lastKillIncr && rec["path"] == "partial" {
		incrPartials++
	}
	p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
	time.Sleep(500 * time.Millisecond)
	ops := l.stop(t)
	verifySynced(t, src, dst, fill, live)
	partial := stat(t, src, "stats", "sync_partial_ok") - partial0
	t.Logf("%d kills in the full phase, %d in the incremental phase; paths %v; source partial resyncs %d; %d load ops",
		fullKills, incrKills, paths, partial, ops)
	if fullKills != 5 || paths["spool"] == 0 {
		t.Fatalf("%d kills in the full phase, paths %v; want 5 and a resume from the snapshot's copy", fullKills, paths)
	}
	if incrPartials != incrKills {
		t.Fatalf("%d of %d restarts after an incremental-phase kill were partial resyncs; want all", incrPartials, incrKills)
	}
	if partial < int64(incrKills) {
		t.Fatalf("source sync_partial_ok grew by %d; want at least %d", partial, incrKills)
	}
	p.Stop(t)
}

// TestKill9TinyBacklog: with a backlog of 16 KB, ferry killed while the source keeps
// writing cannot continue: the source answers +FULLRESYNC. The task owns the destination,
// so it deletes its earlier data first; the destination ends identical, with no key the
// source deleted meanwhile and no list element twice.
func TestKill9TinyBacklog(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, "--repl-backlog-size", "16kb")
	dst := testutil.StartServer(t)
	fill, live := newWorkloads(80)
	if err := fill.Fill(ctx, src, 10000); err != nil {
		t.Fatal(err)
	}
	args := ferryArgs(src, dst, t.TempDir())
	p := startFerry(t, args...)
	p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
	l := startLoad(live, src, 3000)
	time.Sleep(500 * time.Millisecond)
	p.Kill()
	// Far more than 16 KB of writes while ferry is down, deletions among them.
	off := stat(t, src, "replication", "master_repl_offset")
	waitUntil(t, 30*time.Second, "64 KB of writes", func() bool {
		return stat(t, src, "replication", "master_repl_offset") > off+64<<10
	})
	for i := range 200 {
		src.Do(t, "DEL", "gone:"+strconv.Itoa(i)) // keys the load never wrote: no-ops
	}
	fullSyncs := stat(t, src, "stats", "sync_full")
	partialErr := stat(t, src, "stats", "sync_partial_err")

	p = startFerry(t, args...)
	rec := p.WaitRecord(t, 60*time.Second, "sync path")
	if rec["path"] != "full" {
		t.Fatalf("restart with the backlog gone took path %v; want full", rec["path"])
	}
	st := p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
	if st.Flushes != 1 {
		t.Fatalf("%d clean-ups of the earlier data; want 1", st.Flushes)
	}
	if p.Count("deleted the task's earlier data") != 1 {
		t.Fatalf("the clean-up was not logged; log:\n%s", p.Log())
	}
	time.Sleep(300 * time.Millisecond)
	l.stop(t)
	verifySynced(t, src, dst, fill, live)
	if got := stat(t, src, "stats", "sync_full"); got != fullSyncs+1 {
		t.Fatalf("source sync_full %d → %d; want one full sync", fullSyncs, got)
	}
	if got := stat(t, src, "stats", "sync_partial_err"); got != partialErr+1 {
		t.Fatalf("source sync_partial_err %d → %d; want the refused PSYNC counted", partialErr, got)
	}
	p.Stop(t)
}

// TestKill9FullResume: a full sync killed at 60 % resumes from the local copy of the RDB at
// the last acknowledged key. The source's backlog covers the snapshot's offset, so it
// answers the PSYNC from there with +CONTINUE: no new BGSAVE (rdb_saves and sync_full
// unchanged). 100k keys here; FERRY_LONG_TESTS=1 runs the 1-million-key version.
func TestKill9FullResume(t *testing.T) {
	keys := 100000
	if os.Getenv("FERRY_LONG_TESTS") == "1" {
		keys = 1000000
	}
	testFullResume(t, keys)
}

func testFullResume(t *testing.T, keys int) {
	ctx := context.Background()
	// Disk-based replication, so a new snapshot would show as a BGSAVE.
	src := testutil.StartServer(t, "--repl-diskless-sync", "no", "--repl-backlog-size", "64mb")
	dst := testutil.StartServer(t)
	src.Do(t, "DEBUG", "POPULATE", keys, "pop", 64)
	fill, live := newWorkloads(90)
	if err := fill.Fill(ctx, src, 5000); err != nil {
		t.Fatal(err)
	}
	total := src.Do(t, "DBSIZE").Int
	for _, db := range []int{2, 5} {
		c := src.Conn(t)
		if _, err := c.Do(ctx, "SELECT", db); err != nil {
			t.Fatal(err)
		}
		v, err := c.Do(ctx, "DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		total += v.Int
	}
	if keys < 1000000 {
		// A small snapshot loads in a fraction of a second; through a proxy that passes
		// ~6 MB/s to the destination it takes a few, so that checkpoints of its progress
		// are written before the kill, as they are in a long sync.
		proxy := testutil.StartFaultProxy(t, dst.Addr())
		proxy.Slicer(testutil.Upstream, 32<<10, 0, 5*time.Millisecond)
		args := ferryArgsAddr(src.Addr(), proxy.Addr(), t.TempDir())
		runFullResume(t, src, dst, args, total, fill, live)
		return
	}
	runFullResume(t, src, dst, ferryArgs(src, dst, t.TempDir()), total, fill, live)
}

func runFullResume(t *testing.T, src, dst *testutil.Server, args []string, total int64, fill, live *testutil.Workload) {
	start := time.Now()
	p := startFerry(t, args...)
	at := total * 6 / 10
	st := p.WaitStatus(t, 10*time.Minute, "60 % of the snapshot applied", func(s Status) bool { return s.FullKeys >= at })
	p.Kill()
	killedAt := time.Since(start)
	saves := stat(t, src, "persistence", "rdb_saves")
	fulls := stat(t, src, "stats", "sync_full")
	partial := stat(t, src, "stats", "sync_partial_ok")
	// The source writes on while ferry is down.
	l := startLoad(live, src, 2000)
	time.Sleep(300 * time.Millisecond)

	restart := time.Now()
	p = startFerry(t, args...)
	rec := p.WaitRecord(t, time.Minute, "sync path")
	if rec["path"] != "spool" {
		t.Fatalf("restart after a kill at %d of %d keys took path %v; want spool; log:\n%s", st.FullKeys, total, rec["path"], p.Log())
	}
	resumedAt := p.WaitRecord(t, time.Minute, "resuming the full sync from the local copy")
	p.WaitStatus(t, 10*time.Minute, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
	resumeTook := time.Since(restart)
	time.Sleep(300 * time.Millisecond)
	l.stop(t)
	verifySynced(t, src, dst, fill, live)
	if got := stat(t, src, "persistence", "rdb_saves"); got != saves {
		t.Fatalf("source rdb_saves %d → %d: the resume asked for a new snapshot", saves, got)
	}
	if got := stat(t, src, "stats", "sync_full"); got != fulls {
		t.Fatalf("source sync_full %d → %d: the resume asked for a new snapshot", fulls, got)
	}
	if got := stat(t, src, "stats", "sync_partial_ok"); got != partial+1 {
		t.Fatalf("source sync_partial_ok %d → %d; want the PSYNC from the snapshot's offset accepted", partial, got)
	}
	t.Logf("%d keys: killed after %s at %d keys (%.0f %%); the resume skipped %v keys and reached the incremental phase in %s",
		total, killedAt.Round(time.Millisecond), st.FullKeys, 100*float64(st.FullKeys)/float64(total),
		resumedAt["keys_done"], resumeTook.Round(time.Millisecond))
	p.Stop(t)
}
