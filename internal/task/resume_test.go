package task

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/writer"
)

// TestResumeAfterStop: a stopped task started again continues with a partial resync from
// its checkpoint while the source kept writing, and applies every write once.
func TestResumeAfterStop(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartServer(t)
	fill, live := newWorkloads(10)
	if err := fill.Fill(ctx, src, 10000); err != nil {
		t.Fatal(err)
	}
	cfg := resumeConfig(t, src.Addr(), dst.Addr())
	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	l := startLoad(live, src, 2000)
	time.Sleep(500 * time.Millisecond)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the source writes on while the task is away
	partial := stat(t, src, "stats", "sync_partial_ok")
	full := stat(t, src, "stats", "sync_full")

	r = startTask(t, cfg)
	st := waitStatus(t, r, 30*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
	if st.PartialSyncs != 1 || st.FullSyncs != 0 || st.Path != "partial" {
		t.Fatalf("resumed task: %d partial, %d full syncs, path %q; want one partial", st.PartialSyncs, st.FullSyncs, st.Path)
	}
	time.Sleep(300 * time.Millisecond)
	l.stop(t)
	verifySynced(t, src, dst, fill, live)
	if got := stat(t, src, "stats", "sync_partial_ok"); got != partial+1 {
		t.Fatalf("source sync_partial_ok %d → %d; want one partial resync", partial, got)
	}
	if got := stat(t, src, "stats", "sync_full"); got != full {
		t.Fatalf("source sync_full %d → %d; want no full sync", full, got)
	}
	if st := r.t.Status(); st.Batches == 0 || st.CheckpointOffset == 0 {
		t.Fatalf("no checkpoints: %+v", st)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// bigTransaction runs one MULTI of n RPUSH and n INCR in DB 2 of the source.
func bigTransaction(tb testing.TB, src *testutil.Server, n int) {
	tb.Helper()
	ctx := context.Background()
	c := src.Conn(tb)
	if _, err := c.Do(ctx, "SELECT", 2); err != nil {
		tb.Fatal(err)
	}
	if err := c.Send("MULTI"); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if err := c.Send("RPUSH", "tx:list", i); err != nil {
			tb.Fatal(err)
		}
		if err := c.Send("INCR", "tx:count"); err != nil {
			tb.Fatal(err)
		}
	}
	if err := c.Send("EXEC"); err != nil {
		tb.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		tb.Fatal(err)
	}
	for range 2*n + 2 {
		if _, err := c.Receive(); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestSourceLinkFaults breaks the source link while a load runs, in each way it can break:
// the source kills its replica (CLIENT KILL TYPE replica), the network resets the
// connection, drops everything (half-open: only the read deadline notices), delivers in
// slivers, or cuts it in the middle of a transaction. After each fault the task resumes
// with a partial resync (the source's sync_partial_ok counts it), and the destination's
// keys, counters and lists equal the source's exactly.
func TestSourceLinkFaults(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartServer(t)
	proxy := testutil.StartFaultProxy(t, src.Addr())
	fill, live := newWorkloads(20)
	if err := fill.Fill(ctx, src, 10000); err != nil {
		t.Fatal(err)
	}
	cfg := resumeConfig(t, proxy.Addr(), dst.Addr())
	// Three PING periods of the source (sourceArgs): only a dead link is silent that long.
	cfg.SourceTimeout = 3 * time.Second
	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	verifySynced(t, src, dst, fill)

	faults := []struct {
		name   string
		inject func(t *testing.T)
	}{
		{"client kill type replica", func(t *testing.T) { src.Do(t, "CLIENT", "KILL", "TYPE", "replica") }},
		{"reset", func(t *testing.T) { proxy.Reset() }},
		{"blackhole", func(t *testing.T) {
			proxy.Blackhole(testutil.Downstream)
			// Longer than SourceTimeout: the task gives the link up and tries again
			// into the blackhole, until it is gone.
			time.Sleep(4 * time.Second)
			proxy.Clear()
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			before := r.t.Status()
			partial := stat(t, src, "stats", "sync_partial_ok")
			l := startLoad(live, src, 2000)
			time.Sleep(300 * time.Millisecond)
			f.inject(t)
			st := waitStatus(t, r, 30*time.Second, "a partial resync", func(s Status) bool {
				return s.PartialSyncs > before.PartialSyncs && s.Phase == PhaseIncremental
			})
			time.Sleep(300 * time.Millisecond)
			l.stop(t)
			verifySynced(t, src, dst, fill, live)
			if st.FullSyncs != before.FullSyncs || st.Retries <= before.Retries {
				t.Fatalf("after %s: full syncs %d → %d, retries %d → %d; want a retry and no full sync",
					f.name, before.FullSyncs, st.FullSyncs, before.Retries, st.Retries)
			}
			if got := stat(t, src, "stats", "sync_partial_ok"); got <= partial {
				t.Fatalf("source sync_partial_ok stayed at %d", got)
			}
		})
	}

	t.Run("slicer", func(t *testing.T) {
		before := r.t.Status()
		// Slivers of 1 to 63 bytes: commands and their lengths split everywhere.
		proxy.Slicer(testutil.Downstream, 32, 31, 20*time.Microsecond)
		l := startLoad(live, src, 1000)
		time.Sleep(time.Second)
		l.stop(t)
		bigTransaction(t, src, 200)
		verifySynced(t, src, dst, fill, live)
		proxy.Clear()
		if st := r.t.Status(); st.Retries != before.Retries {
			t.Fatalf("a sliced stream made the task reconnect (%d → %d retries)", before.Retries, st.Retries)
		}
	})

	t.Run("limit_data mid-transaction", func(t *testing.T) {
		before := r.t.Status()
		partial := stat(t, src, "stats", "sync_partial_ok")
		list0 := dst.Do(t, "EVAL", "redis.call('SELECT', 2) return redis.call('LLEN', 'tx:list')", 0).Int
		// 2000 RPUSH + 2000 INCR in one transaction, about 90 KB of stream: cut 30 KB in.
		proxy.LimitData(testutil.Downstream, 30000)
		bigTransaction(t, src, 2000)
		st := waitStatus(t, r, 30*time.Second, "a partial resync", func(s Status) bool {
			return s.PartialSyncs > before.PartialSyncs && s.Phase == PhaseIncremental
		})
		if proxy.LimitArmed(testutil.Downstream) {
			t.Fatal("the limit did not fire")
		}
		verifySynced(t, src, dst, fill, live)
		if got := dst.Do(t, "EVAL", "redis.call('SELECT', 2) return redis.call('LLEN', 'tx:list')", 0).Int; got != list0+2000 {
			t.Fatalf("the cut transaction's list grew by %d elements on the destination; want 2000", got-list0)
		}
		if got := stat(t, src, "stats", "sync_partial_ok"); got <= partial || st.FullSyncs != before.FullSyncs {
			t.Fatalf("after the cut: sync_partial_ok %d → %d, full syncs %d → %d", partial, got, before.FullSyncs, st.FullSyncs)
		}
	})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestSourceCutMidRDB: the link breaks in the middle of the snapshot's transfer, while the
// loader is already writing the first keys. The snapshot cannot be resumed (its copy is
// incomplete), so the task deletes what it wrote (it owns the destination) and syncs
// again in full; no key of the abandoned attempt survives.
func TestSourceCutMidRDB(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartServer(t)
	proxy := testutil.StartFaultProxy(t, src.Addr())
	fill, live := newWorkloads(30)
	if err := fill.Fill(ctx, src, 10000); err != nil {
		t.Fatal(err)
	}
	src.Do(t, "DEBUG", "POPULATE", 30000, "pop", 100) // about 3.5 MB of RDB
	l := startLoad(live, src, 1000)
	proxy.LimitData(testutil.Downstream, 1<<20)
	cfg := resumeConfig(t, proxy.Addr(), dst.Addr())
	cfg.SourceTimeout = 3 * time.Second
	r := startTask(t, cfg)
	st := waitStatus(t, r, 60*time.Second, "the incremental phase after a second full sync", func(s Status) bool {
		return s.Phase == PhaseIncremental && s.FullSyncs == 2
	})
	time.Sleep(300 * time.Millisecond)
	l.stop(t)
	verifySynced(t, src, dst, fill, live)
	if st.Flushes != 1 || st.Retries == 0 {
		t.Fatalf("after a cut mid-RDB: %d flushes, %d retries; want the earlier data deleted once", st.Flushes, st.Retries)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// writerReconciled returns how often the current session's writer reconnected, plus the
// commands it found applied and did not resend.
func writerReconciled(r *running) int64 {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	w, ok := r.t.wr.(*writer.Writer)
	if !ok {
		return 0
	}
	return w.Stats().Reconciled + w.Stats().Reconnects
}

// TestDestinationRestart restarts the destination under load. With an fsync-always AOF
// it comes back with everything it acknowledged: the writer reconnects, reads the
// checkpoint and resends only what is not there. Without persistence, from an older RDB,
// it comes back rewound: the task notices (the checkpoint is behind what was
// acknowledged) and resumes from the destination's checkpoint with a partial resync.
func TestDestinationRestart(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		rewinds bool
	}{
		{"aof", []string{"--appendonly", "yes", "--appendfsync", "always"}, false},
		{"older rdb", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			src := testutil.StartServer(t, sourceArgs...)
			dst := testutil.StartServer(t, c.args...)
			fill, live := newWorkloads(40)
			if err := fill.Fill(ctx, src, 10000); err != nil {
				t.Fatal(err)
			}
			cfg := resumeConfig(t, src.Addr(), dst.Addr())
			r := startTask(t, cfg)
			waitPhase(t, r, PhaseIncremental)
			l := startLoad(live, src, 2000)
			time.Sleep(500 * time.Millisecond)
			if c.rewinds {
				dst.Do(t, "SAVE")
				time.Sleep(500 * time.Millisecond) // acknowledged after the save: lost
			}
			before := r.t.Status()
			dst.Restart(t)
			if c.rewinds {
				waitStatus(t, r, 30*time.Second, "a partial resync from the destination's older checkpoint", func(s Status) bool {
					return s.PartialSyncs > before.PartialSyncs && s.Phase == PhaseIncremental
				})
			} else {
				time.Sleep(time.Second)
			}
			l.stop(t)
			verifySynced(t, src, dst, fill, live)
			st := r.t.Status()
			if c.rewinds && st.Retries == before.Retries {
				t.Fatal("the rewound destination went unnoticed")
			}
			if !c.rewinds && (st.Retries != before.Retries || writerReconciled(r) == 0) {
				t.Fatalf("AOF destination: %d → %d retries, writer reconnects+reconciled %d; want the writer to reconnect by itself",
					before.Retries, st.Retries, writerReconciled(r))
			}
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSourceRestart: the source shuts down saving its RDB (which keeps its replication ID
// and offset) and starts again; the task reconnects and continues with PSYNC.
func TestSourceRestart(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartServer(t)
	fill, live := newWorkloads(50)
	if err := fill.Fill(ctx, src, 10000); err != nil {
		t.Fatal(err)
	}
	cfg := resumeConfig(t, src.Addr(), dst.Addr())
	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	l := startLoad(live, src, 2000)
	time.Sleep(500 * time.Millisecond)
	l.stop(t)
	// The RDB holds the offset at the shutdown: what the task has not received by then
	// is in no backlog after the restart.
	if err := testutil.WaitReplicasCaughtUp(ctx, src); err != nil {
		t.Fatal(err)
	}
	before := r.t.Status()
	replID := before.ReplID
	// SHUTDOWN SAVE: the reply never comes, the connection just closes.
	_, _ = src.Call(ctx, "SHUTDOWN", "SAVE")
	waitUntil(t, 15*time.Second, "the source to exit", func() bool { return !src.Running() })
	src.Restart(t)
	l = startLoad(live, src, 2000)
	st := waitStatus(t, r, 30*time.Second, "the task to resume", func(s Status) bool {
		return s.Retries > before.Retries && s.Phase == PhaseIncremental && s.PartialSyncs+s.FullSyncs > before.PartialSyncs+before.FullSyncs
	})
	time.Sleep(500 * time.Millisecond)
	l.stop(t)
	verifySynced(t, src, dst, fill, live)
	partial := stat(t, src, "stats", "sync_partial_ok")
	t.Logf("after the source restart: path %s, replid %s → %s, source sync_partial_ok %d, sync_full %d",
		st.Path, replID, r.t.Status().ReplID, partial, stat(t, src, "stats", "sync_full"))
	if st.FullSyncs != before.FullSyncs || partial != 1 {
		t.Fatalf("after the source restart: %d → %d full syncs, source sync_partial_ok %d; want a partial resync",
			before.FullSyncs, st.FullSyncs, partial)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestFailover: the source's replica is promoted (FAILOVER). The task follows through
// the demoted master, and, re-pointed at the new master under the same name, continues
// there with a partial resync (PSYNC2: the new master knows the old replication ID).
func TestFailover(t *testing.T) {
	ctx := context.Background()
	m := testutil.StartServer(t, sourceArgs...)
	rep := testutil.StartServer(t, sourceArgs...)
	rep.ReplicaOf(t, m)
	dst := testutil.StartServer(t)
	fill, live := newWorkloads(60)
	if err := fill.Fill(ctx, m, 10000); err != nil {
		t.Fatal(err)
	}
	cfg := resumeConfig(t, m.Addr(), dst.Addr())
	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	l := startLoad(live, m, 2000)
	time.Sleep(500 * time.Millisecond)
	l.stop(t)
	verifySynced(t, m, dst, fill, live)

	m.Do(t, "FAILOVER", "TO", "127.0.0.1", rep.Port(), "TIMEOUT", 10000)
	waitUntil(t, 20*time.Second, "the replica's promotion", func() bool {
		info, err := rep.Info(ctx, "replication")
		return err == nil && info["role"] == "master"
	})
	if err := testutil.WaitSynced(ctx, m); err != nil {
		t.Fatal(err)
	}
	l = startLoad(live, rep, 2000)
	time.Sleep(500 * time.Millisecond)
	l.stop(t)
	// The task still reads from the old master, now a replica passing the new master's
	// stream on.
	verifySynced(t, rep, dst, fill, live)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	partial := stat(t, rep, "stats", "sync_partial_ok")
	cfg.Source.Addr = rep.Addr()
	r = startTask(t, cfg)
	st := waitStatus(t, r, 30*time.Second, "the incremental phase on the new master", func(s Status) bool { return s.Phase == PhaseIncremental })
	if st.Path != "partial" {
		t.Fatalf("re-pointed at the promoted replica: path %q; want partial", st.Path)
	}
	l = startLoad(live, rep, 2000)
	time.Sleep(500 * time.Millisecond)
	l.stop(t)
	verifySynced(t, rep, dst, fill, live)
	if got := stat(t, rep, "stats", "sync_partial_ok"); got != partial+1 {
		t.Fatalf("new master sync_partial_ok %d → %d; want one partial resync", partial, got)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

// TestAckNeverExceedsApplied: while the destination is frozen (SIGSTOP), writes to the
// source are received by Ferry but not applied, and WAIT on the source does not count
// Ferry; once the destination runs again, it does.
func TestAckNeverExceedsApplied(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	r := startTask(t, resumeConfig(t, src.Addr(), dst.Addr()))
	waitPhase(t, r, PhaseIncremental)
	c := src.Conn(t)
	if _, err := c.Do(ctx, "SET", "before", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Do(ctx, "WAIT", 1, 5000); err != nil || v.Int != 1 {
		t.Fatalf("WAIT before the pause: %v %v; want 1", v.Int, err)
	}
	pid := dst.Pid()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	for i := range 100 {
		if _, err := c.Do(ctx, "RPUSH", "during", i); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := c.Do(ctx, "WAIT", 1, 2000); err != nil || v.Int != 0 {
		t.Fatalf("WAIT while the destination is frozen: %d replicas, %v; want 0 (Ferry must not ack what it has not applied)", v.Int, err)
	}
	st, err := testutil.Replication(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Replicas) != 1 || st.Replicas[0].Offset >= st.MasterOffset {
		t.Fatalf("Ferry acknowledged %v of master offset %d while the destination was frozen", st.Replicas, st.MasterOffset)
	}
	if rs := r.t.Status(); rs.SourceOffset < st.MasterOffset {
		t.Fatalf("Ferry has received up to %d of %d: the test did not test anything", rs.SourceOffset, st.MasterOffset)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	if v, err := c.Do(ctx, "WAIT", 1, 10000); err != nil || v.Int != 1 {
		t.Fatalf("WAIT after the destination resumed: %d, %v; want 1", v.Int, err)
	}
	if n := dst.Do(t, "LLEN", "during").Int; n != 100 {
		t.Fatalf("destination has %d of the 100 elements", n)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
