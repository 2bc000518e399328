package task

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/writer"
)

// Task is one source → destination sync. Create it with New, run it with Run.
type Task struct {
	cfg Config
	log *slog.Logger
	st  state
	// full counts the snapshot phase's progress.
	full snapshot.Progress

	// rep and wr are set once Run has opened them; read under mu by Status.
	mu  sync.Mutex
	rep *replica.Replica
	wr  *writer.Writer

	// lastWritten and lastSeen are stream offsets at transaction boundaries, set by the apply
	// loop (lastWritten before lastSeen) and read by the ack reporter; applied() combines
	// them with the writer's acknowledgements.
	lastWritten atomic.Int64
	lastSeen    atomic.Int64
	started     time.Time
}

// New validates cfg and returns a task ready to Run.
func New(cfg Config) (*Task, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Task{cfg: cfg, log: cfg.Logger.With("task", cfg.Name), started: time.Now()}, nil
}

// Name is the task's identity.
func (t *Task) Name() string { return t.cfg.Name }

// Status returns a snapshot of the task's progress.
func (t *Task) Status() Status {
	s := &t.st
	s.mu.Lock()
	replID, errText := s.replID, s.err
	ops := s.rate.sample(time.Now(), s.commands.Load())
	s.mu.Unlock()
	st := Status{
		Task: t.cfg.Name, Phase: Phase(s.phase.Load()), Error: errText, ReplID: replID,
		SourceOffset: s.sourceOffset.Load(), AppliedOffset: s.appliedOffset.Load(),
		SnapshotOffset: s.snapshotOffset.Load(), LagBytes: t.lagBytes(),
		LagSeconds: time.Duration(s.latencyNanos.Load()).Seconds(), LagEstimated: s.latencyEst.Load(),
		FullKeys: t.full.Keys.Load(), FullBytes: t.full.Bytes.Load(), FullTotalBytes: s.fullTotal.Load(),
		BigKeys: t.full.BigKeys.Load(), Commands: s.commands.Load(), OpsPerSecond: ops,
		Filtered: s.filtered.Load(), StartedAt: t.started,
	}
	t.mu.Lock()
	if t.wr != nil {
		ws := t.wr.Stats()
		if len(ws.Errors) > 0 {
			st.ReplyErrors = ws.Errors
		}
	}
	t.mu.Unlock()
	return st
}

func (t *Task) lagBytes() int64 {
	if lag := t.st.sourceOffset.Load() - t.st.appliedOffset.Load(); lag > 0 && Phase(t.st.phase.Load()) == PhaseIncremental {
		return lag
	}
	return 0
}

// Run runs the task until it finishes (full mode), fails, or ctx is cancelled. A cancelled
// context is a clean stop: Run stops reading, drains what is in flight and returns nil.
func (t *Task) Run(ctx context.Context) (err error) {
	if t.cfg.Registerer != nil {
		m := newMetrics(t)
		if err := m.register(t.cfg.Registerer); err != nil {
			return fmt.Errorf("task %s: register metrics: %w", t.cfg.Name, err)
		}
		defer m.unregister(t.cfg.Registerer)
	}
	defer func() {
		if err != nil {
			t.st.setPhase(PhaseFailed)
			t.st.mu.Lock()
			t.st.err = err.Error()
			t.st.mu.Unlock()
			return
		}
		t.st.setPhase(PhaseStopped)
	}()
	t.st.setPhase(PhaseConnecting)
	t.log.Info("task starting", "source", t.cfg.Source.Redacted(), "target", t.cfg.Target.Redacted(), "mode", string(t.cfg.Mode))

	if err := t.checkDestination(ctx); err != nil {
		return err
	}
	wr, err := writer.Open(ctx, writer.Options{
		Target:       t.cfg.Target,
		IgnoreErrors: t.cfg.Existing == ExistingOverwrite,
		Logger:       t.log,
	})
	if err != nil {
		return fmt.Errorf("open destination %s: %w", t.cfg.Target.Addr, err)
	}
	defer wr.Close()
	rep, err := replica.Open(ctx, replica.Options{
		Source:  t.cfg.Source,
		DataDir: t.cfg.DataDir,
		Logger:  t.log,
	}, replica.Position{})
	if err != nil {
		return fmt.Errorf("attach to source %s as a replica: %w", t.cfg.Source.Addr, err)
	}
	defer rep.Close()
	t.mu.Lock()
	t.rep, t.wr = rep, wr
	t.mu.Unlock()

	start := rep.Start()
	t.st.mu.Lock()
	t.st.replID = start.ReplID
	t.st.mu.Unlock()
	t.st.snapshotOffset.Store(start.Offset)
	t.st.sourceOffset.Store(start.Offset)
	t.lastWritten.Store(0) // nothing handed to the writer yet
	t.lastSeen.Store(start.Offset)

	if rep.FullSync() {
		t.st.setPhase(PhaseFull)
		t.log.Info("full sync", "replid", start.ReplID, "offset", start.Offset)
		if err := t.applySnapshot(ctx, rep, wr, t.cfg.Mode == ModeIncr); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	t.st.appliedOffset.Store(start.Offset)
	rep.SetApplied(start.Offset)
	if t.cfg.Mode == ModeFull {
		t.log.Info("full sync done", "keys", t.full.Keys.Load(), "offset", start.Offset)
		return nil
	}

	t.st.setPhase(PhaseIncremental)
	t.log.Info("incremental sync", "offset", start.Offset)
	return t.applyStream(ctx, rep, wr)
}

// checkDestination refuses to write into destination DBs that already hold keys when the
// task runs with --existing block. Ferry's own keys do not count.
func (t *Task) checkDestination(ctx context.Context) error {
	if t.cfg.Existing != ExistingBlock || t.cfg.Mode == ModeIncr {
		return nil
	}
	return snapshot.CheckEmpty(ctx, t.cfg.Target, KeyPrefix)
}

// applyStream forwards the live command stream until ctx ends or something fails.
func (t *Task) applyStream(ctx context.Context, rep *replica.Replica, wr *writer.Writer) error {
	hbCtx, stopHeartbeat := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); t.heartbeat(hbCtx) }()
	go func() { defer wg.Done(); t.reportApplied(hbCtx, rep, wr) }()
	defer func() { stopHeartbeat(); wg.Wait() }()

	hbKey := []byte(t.cfg.heartbeatKey())
	inMulti := false
	for {
		cmd, err := rep.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return t.drain(wr, rep)
			}
			return fmt.Errorf("read the source's replication stream: %w", err)
		}
		t.st.sourceOffset.Store(rep.Received())
		forward := true
		switch cmd.Class {
		case replica.ClassControl:
			forward = false
		case replica.ClassPublish:
			forward = t.cfg.ForwardPublish
		case replica.ClassMulti:
			inMulti = true
		case replica.ClassExec:
			inMulti = false
		case replica.ClassData:
			if len(cmd.Args) > 1 && bytes.HasPrefix(cmd.Args[1], []byte(KeyPrefix)) {
				// Ferry's own keys: the heartbeat arriving back, or its expiry.
				forward = false
				if bytes.Equal(cmd.Args[1], hbKey) && cmd.Name == "set" && len(cmd.Args) > 2 {
					t.observeHeartbeat(cmd.Args[2])
				}
			}
		}
		// Inside MULTI an offset is not a position a replica can stop at: only EXEC's is.
		boundary := !inMulti
		if forward {
			off := int64(0)
			if boundary {
				off = cmd.Offset
			}
			if err := wr.Write(ctx, writer.Command{DB: commandDB(cmd), Args: cmd.Args, Offset: off}); err != nil {
				if ctx.Err() != nil {
					return t.drain(wr, rep)
				}
				return fmt.Errorf("apply %s at source offset %d: %w", cmd.Name, cmd.Offset, err)
			}
			if boundary {
				t.lastWritten.Store(off)
			}
			t.st.commands.Add(1)
		} else {
			t.st.filtered.Add(1)
		}
		if boundary {
			t.lastSeen.Store(cmd.Offset)
		}
	}
}

// commandDB is the DB a command applies in; -1 for commands that act on the whole server.
func commandDB(cmd *replica.Command) int {
	switch cmd.Name {
	case "flushall", "function", "script", "swapdb":
		return -1
	}
	return cmd.DB
}

// drain is the clean stop: wait (bounded) for what is in flight, ack it, report the position.
func (t *Task) drain(wr *writer.Writer, rep *replica.Replica) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := wr.Flush(ctx); err != nil {
		return fmt.Errorf("stop: drain the destination window: %w", err)
	}
	applied := t.applied(wr)
	rep.SetApplied(applied)
	t.st.appliedOffset.Store(applied)
	t.log.Info("stopped", "replid", t.Status().ReplID, "applied_offset", applied)
	return nil
}

// applied is the last stream offset whose effect the destination has: what the writer has
// acknowledged, or, when everything written is acknowledged, the last offset seen (the
// commands after it were filtered and need nothing from the destination).
//
// The loads are ordered against the loop's stores (lastWritten, then lastSeen): a lastSeen
// read first is covered by any lastWritten read after it, so when the writer has acked that
// lastWritten, every forwarded command up to lastSeen is applied.
func (t *Task) applied(wr *writer.Writer) int64 {
	seen := t.lastSeen.Load()
	written := t.lastWritten.Load()
	if a := wr.Applied(); a < written {
		return a
	}
	return seen
}

// reportApplied tells the replica (for REPLCONF ACK) and the status what has been applied.
func (t *Task) reportApplied(ctx context.Context, rep *replica.Replica, wr *writer.Writer) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a := t.applied(wr)
		rep.SetApplied(a)
		t.st.appliedOffset.Store(a)
		t.st.sourceOffset.Store(rep.Received())
	}
}
