package task

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/writer"
)

// idleCheckpointInterval: when only filtered commands (PINGs, heartbeats) advance the
// position, a checkpoint-only write records it at most this often, so that a source that
// is idle for hours does not leave the checkpoint so far behind that its backlog no
// longer covers it.
const idleCheckpointInterval = time.Second

// streamApplier applies the live stream of one session. In exactly-once delivery the
// commands go out in batches, MULTI … SET ferry:ckpt:<task> "<replid> <offset> <db>" EXEC:
// the destination holds a batch's data exactly when it holds its checkpoint. A batch
// closes only between source transactions — a replica's position never points inside
// MULTI — so a source transaction always lies within one batch, and its own MULTI/EXEC
// are dropped (they do not nest). In at-least-once delivery commands are forwarded as
// they come and the checkpoint follows them as a plain SET.
type streamApplier struct {
	t       *Task
	rep     *replica.Replica
	wr      destination
	exactly bool
	replID  string

	inMulti bool             // inside a source transaction: not a position
	pos     replica.Position // after the last command at a transaction boundary
	ckptOff int64            // offset of the last checkpoint written
	ckptAt  time.Time        // when
	batch   batch

	ckptArgs, markerArgs [][]byte
}

// batch is what was forwarded since the last checkpoint.
type batch struct {
	open  bool // exactly-once: MULTI sent
	cmds  int
	bytes int // argument bytes
	start time.Time
	own   bool // a command that may delete Ferry's keys (FLUSHALL, FLUSHDB, SWAPDB)
	// barrier: a whole-dataset command on a cluster, after which the router waits until
	// the checkpoint is past the batch (see cluster.Checkpoints); the batch closes at the
	// next boundary, so that as little as possible follows it in the same batch.
	barrier bool
}

// applyStream forwards the live command stream until ctx ends (a clean stop) or something
// fails; sctx is the session's context, which also ends when the writer stops.
func (t *Task) applyStream(ctx, sctx context.Context, rep *replica.Replica, wr destination, start replica.Position) error {
	hbCtx, stopHeartbeat := context.WithCancel(sctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); t.heartbeat(hbCtx) }()
	go func() { defer wg.Done(); t.reportApplied(hbCtx, rep, wr) }()
	defer func() { stopHeartbeat(); wg.Wait() }()

	a := &streamApplier{
		t: t, rep: rep, wr: wr,
		exactly: t.delivery() == DeliveryExactlyOnce,
		replID:  start.ReplID,
		pos:     start,
		ckptOff: start.Offset,
		ckptAt:  time.Now(),
	}
	m := checkpoint.Marker{Existing: checkpoint.ExistingOverwrite}
	if t.owned {
		m.Existing = checkpoint.ExistingBlock
	}
	a.ckptArgs = [][]byte{[]byte("SET"), []byte(t.keys.Checkpoint), nil}
	a.markerArgs = [][]byte{[]byte("SET"), []byte(t.keys.Marker), []byte(m.String())}

	hbKey := []byte(t.cfg.heartbeatKey())
	for {
		if err := a.maybeCheckpoint(sctx); err != nil {
			if ctx.Err() != nil {
				return a.drain()
			}
			return t.sessionError(ctx, sctx, wr, err)
		}
		cmd, err := rep.Next(sctx)
		if err != nil {
			if ctx.Err() != nil {
				return a.drain()
			}
			if sctx.Err() != nil {
				return t.sessionError(ctx, sctx, wr, err)
			}
			var le *replica.LinkError
			if errors.As(err, &le) {
				// What arrived before the link broke is whole commands: commit it, so
				// that the next session asks the source for no more than it must (a
				// source restarted from its RDB has nothing before its save).
				if serr := a.settle(sctx); serr != nil {
					t.log.Debug("could not commit the stream read before the link broke", "err", serr)
				}
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
			a.inMulti = true
			forward = !a.exactly
		case replica.ClassExec:
			a.inMulti = false
			forward = !a.exactly
		case replica.ClassData:
			if len(cmd.Args) > 1 && bytes.HasPrefix(cmd.Args[1], []byte(KeyPrefix)) {
				// Ferry's own keys: the heartbeat arriving back, or its expiry.
				forward = false
				if bytes.Equal(cmd.Args[1], hbKey) && cmd.Name == "set" && len(cmd.Args) > 2 {
					t.observeHeartbeat(cmd.Args[2])
				}
			}
		}
		if forward && cmd.Class == replica.ClassData && t.cfg.Shard != nil {
			var err error
			if forward, err = a.shardCommand(sctx, cmd); err != nil {
				if ctx.Err() != nil {
					return a.drain()
				}
				return t.sessionError(ctx, sctx, wr, fmt.Errorf("apply %s at source offset %d: %w", cmd.Name, cmd.Offset, err))
			}
		}
		// The filter decides data commands: kept (in their mapped DB), dropped, rewritten
		// (a multi-key command reduced to its selected keys, FLUSHALL per selected DB…), or
		// refused when the selection cannot represent their effect.
		var decision filter.Decision
		decided := forward && cmd.Class == replica.ClassData && t.cfg.Filter != nil
		if decided {
			decision = t.cfg.Filter.Command(cmd.DB, cmd.Name, cmd.Args, nil)
			switch decision.Verdict {
			case filter.Drop:
				forward = false
			case filter.Refuse:
				return fmt.Errorf("the filter cannot apply %s at source offset %d: %w", cmd.Name, cmd.Offset, decision.Err)
			}
		}
		// Inside MULTI an offset is not a position a replica can stop at: only EXEC's is.
		boundary := !a.inMulti
		if forward {
			var err error
			switch {
			case decided && decision.Verdict == filter.Rewrite:
				for i, c := range decision.Cmds {
					last := i == len(decision.Cmds)-1
					if err = a.forward(sctx, cmd, c.DB, c.Args, boundary && last); err != nil {
						break
					}
				}
			case decided:
				err = a.forward(sctx, cmd, decision.DB, cmd.Args, boundary)
			default:
				err = a.forward(sctx, cmd, t.streamDB(cmd), cmd.Args, boundary)
			}
			if err == nil {
				err = t.incrLimit.Wait(sctx, 1, argBytes(cmd.Args))
			}
			if err != nil {
				if ctx.Err() != nil {
					return a.drain()
				}
				return t.sessionError(ctx, sctx, wr, fmt.Errorf("apply %s at source offset %d: %w", cmd.Name, cmd.Offset, err))
			}
			t.st.commands.Add(1)
		} else {
			t.st.filtered.Add(1)
		}
		if boundary {
			a.pos = replica.Position{ReplID: a.replID, Offset: cmd.Offset, DB: cmd.DB}
			if !a.exactly || !a.batch.open {
				// Nothing of this position waits in an open batch.
				t.lastSeen.Store(cmd.Offset)
			}
		}
	}
}

// argBytes is the size of a command's arguments, for throttling and batch bounds.
func argBytes(args [][]byte) int64 {
	n := 0
	for _, arg := range args {
		n += len(arg)
	}
	return int64(n)
}

// forward writes one command of the stream, cmd or what the filter made of it (args, in
// destination DB db).
func (a *streamApplier) forward(ctx context.Context, cmd *replica.Command, db int, args [][]byte, boundary bool) error {
	b := &a.batch
	if !b.open && b.cmds == 0 {
		b.start = time.Now()
	}
	if a.exactly && !b.open {
		if err := a.wr.Write(ctx, writer.Command{DB: -1, Args: multiArgs}); err != nil {
			return err
		}
		b.open = true
	}
	off := int64(0)
	if !a.exactly && boundary {
		off = cmd.Offset
	}
	if err := a.wr.Write(ctx, writer.Command{DB: db, Args: args, Offset: off, Source: cmd.Offset}); err != nil {
		return err
	}
	if off > 0 {
		a.t.lastWritten.Store(off)
	}
	b.cmds++
	b.bytes += int(argBytes(args))
	switch cmd.Name {
	case "flushall", "flushdb", "swapdb":
		b.own = true
	}
	if a.t.cluster {
		switch cmd.Name {
		case "flushall", "flushdb", "function", "script":
			b.barrier = true
		}
	}
	return nil
}

var (
	multiArgs = [][]byte{[]byte("MULTI")}
	execArgs  = [][]byte{[]byte("EXEC")}
)

// maybeCheckpoint closes the batch when it is full, old, or the stream has run dry, and
// records an idle position now and then. Only between source transactions.
func (a *streamApplier) maybeCheckpoint(ctx context.Context) error {
	if a.inMulti {
		return nil
	}
	cfg := &a.t.cfg
	b := &a.batch
	if b.cmds > 0 {
		if b.cmds >= cfg.BatchCommands || b.bytes >= cfg.BatchBytes || !a.rep.Pending() ||
			b.barrier || time.Since(b.start) >= cfg.BatchDelay {
			return a.commit(ctx)
		}
		return nil
	}
	if a.pos.Offset > a.ckptOff && time.Since(a.ckptAt) >= idleCheckpointInterval && !a.rep.Pending() {
		return a.commit(ctx)
	}
	return nil
}

// commit writes the checkpoint for the current position: closing the batch (exactly-once)
// or after the commands (at-least-once), or alone when nothing was forwarded since.
func (a *streamApplier) commit(ctx context.Context) error {
	b := &a.batch
	off := a.pos.Offset
	a.ckptArgs[2] = []byte(a.pos.String())
	// The checkpoint carries the offset when it closes the unit; inside the batch EXEC does.
	ckptOff := off
	if b.open {
		ckptOff = 0
	}
	if b.own {
		// FLUSHALL, FLUSHDB or SWAPDB on DB 0 took the marker with the data.
		if err := a.wr.Write(ctx, writer.Command{DB: checkpoint.DB, Args: a.markerArgs}); err != nil {
			return err
		}
	}
	if err := a.wr.Write(ctx, writer.Command{DB: checkpoint.DB, Args: a.ckptArgs, Offset: ckptOff}); err != nil {
		return err
	}
	if b.open {
		if err := a.wr.Write(ctx, writer.Command{DB: -1, Args: execArgs, Offset: off}); err != nil {
			return err
		}
	}
	a.t.ckpts.add(off)
	a.t.lastWritten.Store(off)
	a.t.lastSeen.Store(off)
	a.t.st.batches.Add(1)
	a.ckptOff, a.ckptAt = off, time.Now()
	*b = batch{}
	return nil
}

// drain is the clean stop: what was read is committed (settle), then the window drains.
func (a *streamApplier) drain() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := a.commitPosition(ctx)
	cancel()
	if err != nil {
		return fmt.Errorf("stop: commit the last batch: %w", err)
	}
	return a.t.drain(a.wr, a.rep)
}

// settle commits what was read and waits (briefly) for the destination to acknowledge it.
func (a *streamApplier) settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if err := a.commitPosition(ctx); err != nil {
		return err
	}
	return a.wr.Flush(ctx)
}

// settleTimeout bounds how long a session that lost its source waits for the destination
// to acknowledge the last batch.
const settleTimeout = 10 * time.Second

// commitPosition writes the checkpoint of the position reached: the open batch is
// committed when it ends between source transactions (one that stops inside a
// transaction is left open, and discarded with the connection: the source sends it again
// on resume), and a position that only filtered commands advanced is recorded too.
func (a *streamApplier) commitPosition(ctx context.Context) error {
	if a.inMulti || (a.batch.cmds == 0 && a.pos.Offset <= a.ckptOff) {
		return nil
	}
	return a.commit(ctx)
}

// commandDB is the DB a command applies in; -1 for commands that act on the whole server.
func commandDB(cmd *replica.Command) int {
	switch cmd.Name {
	case "flushall", "function", "script", "swapdb":
		return -1
	}
	return cmd.DB
}
