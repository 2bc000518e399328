package task

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/throttle"
	"github.com/ferrysync/ferry/internal/writer"
)

// Backoff between sessions after a lost connection.
const (
	minRetryBackoff = 50 * time.Millisecond
	maxRetryBackoff = 2 * time.Second
)

// Task is one source → destination sync. Create it with New, run it with Run.
//
// Run is a loop of sessions. A session reads the task's checkpoint from the destination,
// attaches to the source from there (PSYNC), and applies what comes until something
// breaks; the next session starts over from the checkpoint, so a lost link, a restart of
// either side or a crash of Ferry itself all take the same path. See resume.go for how a
// session picks its starting point and stream.go for the checkpoint batches.
type Task struct {
	cfg  Config
	log  *slog.Logger
	keys checkpoint.Keys
	st   state
	// full counts the snapshot phase's progress.
	full snapshot.Progress
	// fullLimit and incrLimit throttle the two phases (unlimited unless configured).
	fullLimit, incrLimit *throttle.Limiter

	// rep and wr are the current session's, source the master it attached to (which
	// Sentinel may change between sessions); read under mu.
	mu     sync.Mutex
	rep    *replica.Replica
	wr     destination
	source redis.Options

	// Set once, by Run, before the first session.
	cluster bool // the destination is a Redis Cluster (see cluster.go)
	owned   bool // the task started on an empty destination: its data is all there is
	// fresh: the destination holds nothing of this task yet, so a full sync needs no
	// cleanup first. Cleared when the first full sync starts writing.
	fresh bool
	// attached: a session has reached the source once. Failures before that are
	// configuration errors and fail fast; after it, lost connections are retried.
	attached bool
	// fenceWarn logs once that the destination user may not close clients.
	fenceWarn sync.Once
	// forceFull, when set, says why the next session must take the full-resync path
	// although the destination has a checkpoint (cluster_eo.go: checkSourceHistory).
	forceFull string
	// slotSkipped counts the stream commands that sessions did not apply because their
	// slot's checkpoint said the slot held them (exactly-once into a cluster).
	slotSkipped atomic.Int64

	// incremental is true while the current session applies the stream (Reconcile's
	// rules differ in the full phase).
	incremental atomic.Bool
	// ckpts tracks the checkpoints handed to the writer, to tell what the destination
	// must hold once the writer has acknowledged up to an offset.
	ckpts ckptLog

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
	for _, l := range []throttle.Limits{cfg.Throttle.Full, cfg.Throttle.Incremental} {
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("task %s: throttle: %w", cfg.Name, err)
		}
	}
	return &Task{
		cfg:       cfg,
		log:       cfg.Logger.With("task", cfg.Name),
		keys:      checkpoint.KeysFor(cfg.Name),
		source:    cfg.Source,
		started:   time.Now(),
		fullLimit: throttle.New(cfg.Throttle.Full),
		incrLimit: throttle.New(cfg.Throttle.Incremental),
	}, nil
}

// Limiters are the task's throttles by phase ("full", "incremental"), for changing the
// limits while it runs (throttle.Handler serves them).
func (t *Task) Limiters() map[string]*throttle.Limiter {
	return map[string]*throttle.Limiter{"full": t.fullLimit, "incremental": t.incrLimit}
}

// throttleReason says why the task is slowed down right now, or "".
func (t *Task) throttleReason() string {
	l := t.incrLimit
	if Phase(t.st.phase.Load()) == PhaseFull {
		l = t.fullLimit
	}
	return l.Reason()
}

// Name is the task's identity.
func (t *Task) Name() string { return t.cfg.Name }

// Status returns a snapshot of the task's progress.
func (t *Task) Status() Status {
	s := &t.st
	s.mu.Lock()
	replID, errText, path := s.replID, s.err, s.path
	ops := s.rate.sample(time.Now(), s.commands.Load())
	s.mu.Unlock()
	st := Status{
		Task: t.cfg.Name, Phase: Phase(s.phase.Load()), Error: errText, ReplID: replID,
		Delivery: t.delivery(), Path: path,
		SourceOffset: s.sourceOffset.Load(), AppliedOffset: s.appliedOffset.Load(),
		CheckpointOffset: s.checkpointOffset.Load(),
		SnapshotOffset:   s.snapshotOffset.Load(), LagBytes: t.lagBytes(),
		LagSeconds: time.Duration(s.latencyNanos.Load()).Seconds(), LagEstimated: s.latencyEst.Load(),
		FullKeys: t.full.Keys.Load(), FullBytes: t.full.Bytes.Load(), FullTotalBytes: s.fullTotal.Load(),
		BigKeys: t.full.BigKeys.Load(), Commands: s.commands.Load(), OpsPerSecond: ops,
		Filtered: s.filtered.Load(), Batches: s.batches.Load(),
		PartialSyncs: s.paths[pathPartial].Load(), SpoolResumes: s.paths[pathSpool].Load(),
		FullSyncs: s.paths[pathFull].Load(), Flushes: s.flushes.Load(), Retries: s.retries.Load(),
		StartedAt: t.started, Throttled: t.throttleReason(), FullFiltered: t.full.Filtered.Load(),
	}
	t.mu.Lock()
	if t.wr != nil {
		if errs := replyErrors(t.wr); len(errs) > 0 {
			st.ReplyErrors = errs
		}
	}
	t.mu.Unlock()
	s.snap.status(&st)
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
//
// Running a task again (the same Config.Name on the same destination) resumes it from
// its checkpoint: the destination's existing-keys check recognises the task's own data.
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
	source := []any{"source", t.cfg.Source.Redacted()}
	if t.cfg.Sentinel.Addr != "" {
		source = []any{"sentinel", t.cfg.Sentinel.Redacted(), "master", t.cfg.SentinelMaster}
	}
	t.log.Info("task starting", append(source, "target", t.cfg.Target.Redacted(),
		"mode", string(t.cfg.Mode), "delivery", string(t.cfg.Delivery))...)

	// A process killed mid-sync leaves its replication spool behind.
	if n, err := replica.RemoveStaleSpools(t.cfg.DataDir); err != nil {
		return fmt.Errorf("task %s: %w", t.cfg.Name, err)
	} else if n > 0 {
		t.log.Info("removed replication spools left by a previous run", "count", n)
	}
	if err := t.prepareCluster(ctx); err != nil {
		return err
	}
	if err := t.claimDestination(ctx); err != nil {
		return err
	}
	return t.supervise(ctx)
}

// supervise runs sessions until one ends the task: a clean stop, a finished full-only
// sync, an error retrying cannot fix, or RetryTimeout of failures without progress.
func (t *Task) supervise(ctx context.Context) error {
	var failingSince time.Time
	var backoff time.Duration
	for {
		before := t.progress()
		err := t.session(ctx)
		if ctx.Err() != nil || err == nil {
			return nil
		}
		if !t.retryable(err) {
			return err
		}
		now := time.Now()
		if failingSince.IsZero() || t.progress() != before {
			failingSince, backoff = now, 0
		}
		if down := now.Sub(failingSince); down >= t.cfg.RetryTimeout {
			return fmt.Errorf("task %s: gave up after retrying for %s (retry timeout %s): %w",
				t.cfg.Name, down.Round(time.Second), t.cfg.RetryTimeout, err)
		}
		backoff = min(max(backoff*2, minRetryBackoff), maxRetryBackoff)
		t.st.retries.Add(1)
		t.st.setPhase(PhaseConnecting)
		t.log.Warn("sync interrupted; resuming from the checkpoint", "err", err, "retry_in", backoff,
			"down", now.Sub(failingSince).Round(time.Millisecond))
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// progress changes whenever a session applies something.
func (t *Task) progress() int64 {
	return t.st.commands.Load() + t.full.Keys.Load() + t.st.batches.Load()
}

// session is one attachment to the source: from the destination's checkpoint to the
// first failure (or the end of the task).
func (t *Task) session(ctx context.Context) error {
	ctrl, err := t.dialControl(ctx)
	if err != nil {
		return err
	}
	defer ctrl.Close()
	// Connections of an earlier run (or session) may still hold batches the destination
	// has not executed; close them before reading what it holds.
	if t.cluster {
		err = t.fenceCluster(ctx)
	} else if err = t.fence(ctx, ctrl); err == nil {
		// The snapshot's extra connections too, before anything is flushed or read: one
		// left by a killed process may still hold RESTOREs of its snapshot, which would
		// otherwise run after a clean resync's flush (the load closes them again before
		// opening its own, for a session that failed mid-load).
		err = t.fenceSnapshotConns(ctx, ctrl)
	}
	if err != nil {
		return err
	}
	saved, err := checkpoint.Load(ctx, ctrl, t.ckptName())
	if err != nil {
		return err
	}
	from, path, spoolFile := t.resumePoint(saved)

	wtarget := t.cfg.Target
	wtarget.ClientName = t.cfg.writerName()
	wr, err := t.openDestination(ctx, writer.Options{
		Target:       wtarget,
		IgnoreErrors: t.cfg.Existing == ExistingOverwrite,
		RetryTimeout: t.cfg.RetryTimeout,
		Reconcile:    t.reconcile,
		Logger:       t.log,
		// The writer's own series (commands, bytes, errors by reason, retries, in flight);
		// Close unregisters them, so each session's writer takes over the names.
		Registerer: t.cfg.Registerer,
	})
	if err != nil {
		return fmt.Errorf("open destination %s: %w", t.cfg.Target.Addr, err)
	}
	defer wr.Close()
	router, slotMode := wr.(*cluster.Router)
	slotMode = slotMode && t.cfg.Delivery == DeliveryExactlyOnce
	if slotMode {
		defer func() { t.slotSkipped.Add(router.Stats().SlotSkipped) }()
	}
	source, err := t.resolveSource(ctx)
	if err != nil {
		return err
	}
	rep, err := replica.Open(ctx, replica.Options{
		Source:        source,
		DataDir:       t.cfg.DataDir,
		SourceTimeout: t.cfg.SourceTimeout,
		Logger:        t.log,
	}, from)
	if err != nil {
		return fmt.Errorf("attach to source %s as a replica: %w", source.Addr, err)
	}
	var copies copyHolder
	defer func() {
		rep.Close()
		copies.close()
	}()
	t.attached = true
	t.mu.Lock()
	t.rep, t.wr, t.source = rep, wr, source
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		t.rep, t.wr = nil, nil
		t.mu.Unlock()
	}()

	// A writer that stops (its retries exhausted, or Reconcile found the destination
	// rewound) ends the session even while the source is idle.
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-wr.Done():
			cancel(errWriterStopped)
		case <-sctx.Done():
		}
	}()

	start := rep.Start()
	t.st.mu.Lock()
	t.st.replID = start.ReplID
	t.st.mu.Unlock()
	t.st.snapshotOffset.Store(start.Offset)
	t.st.sourceOffset.Store(start.Offset)
	t.lastWritten.Store(0) // nothing handed to the writer yet
	t.lastSeen.Store(start.Offset)
	t.ckpts.reset(0)
	t.incremental.Store(false)

	switch {
	case rep.FullSync():
		if err := t.prepareFullSync(ctx, ctrl, saved, from); err != nil {
			return err
		}
		t.tookPath(pathFull, from, start)
		t.st.setPhase(PhaseFull)
		if err := t.fullSync(sctx, ctrl, rep, wr, start, &copies); err != nil {
			return t.sessionError(ctx, sctx, wr, err)
		}
	case path == pathSpool:
		t.tookPath(pathSpool, from, start)
		t.st.setPhase(PhaseFull)
		if err := t.resumeFullSync(sctx, ctrl, wr, start, saved.Full, spoolFile); err != nil {
			return t.sessionError(ctx, sctx, wr, err)
		}
	default:
		t.tookPath(pathPartial, from, start)
	}
	t.st.appliedOffset.Store(start.Offset)
	rep.SetApplied(start.Offset)
	if t.cfg.Mode == ModeFull {
		t.log.Info("full sync done", "keys", t.full.Keys.Load(), "offset", start.Offset)
		return nil
	}

	if slotMode {
		took := path
		if rep.FullSync() {
			took = pathFull
		}
		if err := t.resumeSlots(sctx, router, saved, start, took); err != nil {
			return t.sessionError(ctx, sctx, wr, err)
		}
	}
	// The destination's checkpoint is at the start now: the one read (partial) or the
	// one written when the snapshot was complete.
	t.ckpts.reset(start.Offset)
	t.st.checkpointOffset.Store(start.Offset)
	t.incremental.Store(true)
	t.st.setPhase(PhaseIncremental)
	t.log.Info("incremental sync", "replid", start.ReplID, "offset", start.Offset, "db", start.DB)
	return t.applyStream(ctx, sctx, rep, wr, start)
}

// errWriterStopped cancels a session's context when its writer stops.
var errWriterStopped = errors.New("the destination writer stopped")

// sessionError turns a failure of the session into what it is: nothing (a clean stop),
// the writer's own error (the writer stopped and took the session with it), or err.
func (t *Task) sessionError(ctx, sctx context.Context, wr destination, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	if context.Cause(sctx) == errWriterStopped {
		if werr := wr.Err(); werr != nil {
			return fmt.Errorf("apply to destination %s: %w", t.cfg.Target.Addr, werr)
		}
	}
	return err
}

// dialControl connects to the destination for the task's own keys, in their DB.
func (t *Task) dialControl(ctx context.Context) (*redis.Conn, error) {
	if t.cluster {
		return t.dialClusterControl(ctx)
	}
	o := t.cfg.Target
	o.DB = checkpoint.DB
	c, err := redis.Dial(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connect to destination %s: %w", t.cfg.Target.Addr, err)
	}
	return c, nil
}

// drain is the clean stop: wait (bounded) for what is in flight, ack it, report the position.
func (t *Task) drain(wr destination, rep *replica.Replica) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := wr.Flush(ctx); err != nil {
		return fmt.Errorf("stop: drain the destination window: %w", err)
	}
	applied := t.applied(wr)
	rep.SetApplied(applied)
	t.st.appliedOffset.Store(applied)
	t.st.checkpointOffset.Store(t.ckpts.durable(wr.Applied()))
	t.log.Info("stopped", "replid", t.Status().ReplID, "applied_offset", applied,
		"checkpoint", t.st.checkpointOffset.Load())
	return nil
}

// applied is the last stream offset whose effect the destination has: what the writer has
// acknowledged, or, when everything written is acknowledged, the last offset seen (the
// commands after it were filtered and need nothing from the destination).
//
// The loads are ordered against the loop's stores (lastWritten, then lastSeen): a lastSeen
// read first is covered by any lastWritten read after it, so when the writer has acked that
// lastWritten, every forwarded command up to lastSeen is applied.
func (t *Task) applied(wr destination) int64 {
	seen := t.lastSeen.Load()
	written := t.lastWritten.Load()
	if a := wr.Applied(); a < written {
		return a
	}
	return seen
}

// reportApplied tells the replica (for REPLCONF ACK) and the status what has been applied.
func (t *Task) reportApplied(ctx context.Context, rep *replica.Replica, wr destination) {
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
		t.st.checkpointOffset.Store(t.ckpts.durable(wr.Applied()))
	}
}
