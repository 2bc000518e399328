package task

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/writer"
)

// Exactly-once delivery into a Redis Cluster.
//
// A cluster refuses a transaction across slots, so the unit that commits with its position
// is the slot: every batch of the stream is applied as one MULTI … SET
// ferry:sckpt:<task>:{<tag>} … EXEC per slot it touches (cluster.Checkpoints has the
// details). The task's checkpoint, ferry:ckpt:{<task>}, becomes a floor that every slot has
// reached, which the router writes once all masters have acknowledged it. A session
// resumes from the floor and reads every slot's checkpoint (resumeSlots); the router skips
// what each slot holds already.
//
// What a crash, a lost connection or a topology change between two sessions can do:
//
//   - Ferry killed, a writer's connection lost (Reconcile stops the session: a master's
//     writer cannot tell which of its per-slot transactions ran; the next session knows
//     from the slots' checkpoints), the source link lost: the next session replays from the
//     floor and skips per slot. Exact.
//   - Slots resharded or masters failed over in between: each slot's checkpoint moved or
//     failed over with its data, so the skip decision stays exact. A failover that loses
//     acknowledged writes (a replica that was behind) takes the slot's checkpoint back with
//     them too, and the replay re-applies them, except when the floor itself lives on a
//     master that kept writes others lost: then the commands between the lost slot's
//     checkpoint and the floor are not replayed (the floor is read as the truth). Run the
//     destination's masters with replicas that acknowledge writes (WAIT, or
//     min-replicas-to-write) to rule that out.
//   - The source switched history (failover of the source) between the floor and a slot's
//     checkpoint: the slot holds writes the source may no longer have; when the source's
//     replid2/second_repl_offset do not cover them the session takes the full-resync path.

// errClusterReconnect stops a master's writer that reconnected in the incremental phase of
// an exactly-once sync: the session starts over from the floor.
var errClusterReconnect = errors.New("a destination master's connection broke while applying the stream; which of its per-slot transactions ran is known only from their checkpoints, so the session resumes from the task's checkpoint")

// errHistoryDiverged: per-slot checkpoints above the floor were written under a replication
// history the source no longer continues; the next session takes the full-resync path.
var errHistoryDiverged = errors.New("the destination holds writes of a replication history the source no longer has")

// slotKeys names the task's per-slot checkpoints.
func (t *Task) slotKeys() (checkpoint.SlotKeys, error) {
	return checkpoint.NewSlotKeys(t.cfg.Name)
}

// colocatePrefix names the temporary keys of the task's co-located commands in
// exactly-once delivery (one hash tag: the task's own keys' slot).
func (t *Task) colocatePrefix() string {
	return KeyPrefix + "colo:" + t.ckptName() + ":"
}

// clusterCheckpoints configures the router's per-slot checkpoints.
func (t *Task) clusterCheckpoints() (*cluster.Checkpoints, error) {
	sk, err := t.slotKeys()
	if err != nil {
		return nil, fmt.Errorf("task %s: %w", t.cfg.Name, err)
	}
	return &cluster.Checkpoints{
		SlotKey:        sk.Key,
		Key:            t.keys.Checkpoint,
		Marker:         t.keys.Marker,
		MarkerValue:    t.marker().String(),
		ColocatePrefix: t.colocatePrefix(),
	}, nil
}

// marker is the task's marker value.
func (t *Task) marker() checkpoint.Marker {
	m := checkpoint.Marker{Existing: checkpoint.ExistingOverwrite}
	if t.owned {
		m.Existing = checkpoint.ExistingBlock
	}
	return m
}

// fenceCluster closes the task's earlier writer connections on every master (fence): a
// connection of a killed process may still hold per-slot transactions, which must not run
// after the slots' checkpoints are read.
func (t *Task) fenceCluster(ctx context.Context) error {
	addrs, err := cluster.MasterAddrs(ctx, t.cfg.Target)
	if err != nil {
		return err
	}
	for _, addr := range addrs {
		o := t.cfg.Target
		o.Addr, o.DB = addr, 0
		c, err := redis.Dial(ctx, o)
		if err != nil {
			return fmt.Errorf("connect to destination master %s: %w", addr, err)
		}
		err = t.fence(ctx, c)
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// resumeSlots tells the router where the stream starts and, when the session resumed from
// the floor (path partial), which slots hold more of it: the per-slot checkpoints above the
// floor that belong to the history the source continues. saved is what the session read
// (the floor), start where the source continues.
func (t *Task) resumeSlots(ctx context.Context, r *cluster.Router, saved checkpoint.State, start replica.Position, path int) error {
	if path != pathPartial {
		// The full sync (or its resume) wrote the floor at the snapshot: nothing of the
		// stream after it is on the destination, and older slot checkpoints are below it.
		r.Resume(start.ReplID, start.String(), start.Offset, nil)
		return nil
	}
	floor := saved.Checkpoint
	vals, err := r.ReadSlotCheckpoints(ctx)
	if err != nil {
		return fmt.Errorf("read the per-slot checkpoints on destination %s: %w", t.cfg.Target.Addr, err)
	}
	sk, err := t.slotKeys()
	if err != nil {
		return err
	}
	var held []int64
	var above, stale int
	var top int64
	var unsure []int // slots whose checkpoint is of the floor's history, which the source left
	for slot, v := range vals {
		if v == "" {
			continue
		}
		p, err := checkpoint.ParseSlotPosition(v)
		if err != nil {
			return fmt.Errorf("key %s on destination %s: %w (delete it and resync the task)", sk.Key(uint16(slot)), t.cfg.Target.Addr, err)
		}
		switch {
		case p.Offset <= floor.Offset:
			stale++
			continue
		case p.ReplID == start.ReplID:
		case p.ReplID == floor.ReplID:
			unsure = append(unsure, slot)
		default:
			// Another history (before a full resync): nothing of it is above the floor.
			stale++
			continue
		}
		if held == nil {
			held = make([]int64, checkpoint.SlotCount)
		}
		held[slot] = p.Offset
		above++
		top = max(top, p.Offset)
	}
	if len(unsure) > 0 {
		if err := t.checkSourceHistory(ctx, floor, held, unsure); err != nil {
			return err
		}
	}
	if above > 0 {
		t.log.Info("per-slot checkpoints above the task's checkpoint: the replay skips what those slots hold",
			"slots", above, "highest", top, "checkpoint", floor.Offset, "older", stale)
	}
	r.Resume(start.ReplID, floor.String(), floor.Offset, held)
	return nil
}

// checkSourceHistory checks that the source, which continues the stream under a new
// replication ID, still has the writes that the slots in unsure hold (their checkpoints are
// of the floor's replication ID): its previous ID must be the floor's and its switch offset
// (second_repl_offset) at or past them. Otherwise the destination holds writes the source
// lost in a failover, which no replay can undo: the next session resyncs in full.
func (t *Task) checkSourceHistory(ctx context.Context, floor replica.Position, held []int64, unsure []int) error {
	var need int64
	for _, s := range unsure {
		need = max(need, held[s])
	}
	src, err := t.resolveSource(ctx)
	if err != nil {
		return err
	}
	c, err := redis.Dial(ctx, src)
	if err != nil {
		return fmt.Errorf("connect to source %s: %w", src.Addr, err)
	}
	defer c.Close()
	info, err := c.Info(ctx, "replication")
	if err != nil {
		return fmt.Errorf("source %s: INFO replication: %w", src.Addr, err)
	}
	switchOff, _ := strconv.ParseInt(info["second_repl_offset"], 10, 64)
	if info["master_replid2"] == floor.ReplID && switchOff >= need {
		return nil
	}
	t.forceFull = fmt.Sprintf("the destination holds writes up to offset %d of replication history %s, but source %s continues it only up to offset %d (a failover of the source lost them)",
		need, floor.ReplID, src.Addr, switchOff)
	t.log.Warn("per-slot checkpoints are past what the source kept of their history; the next session resyncs in full",
		"replid", floor.ReplID, "offset", need, "source_replid2", info["master_replid2"], "second_repl_offset", switchOff)
	return fmt.Errorf("%w: %s", errHistoryDiverged, t.forceFull)
}

// reconcileCluster is the masters' writers' Options.Reconcile. In the incremental phase of
// an exactly-once sync a reconnected writer cannot tell which of its per-slot transactions
// the master executed (one key per slot, not one per connection), so it stops and the
// session resumes from the floor, skipping per slot (errClusterReconnect). In at-least-once
// delivery it resends everything unanswered (-1). In the full phase RESTORE … REPLACE is
// resent, except a big key's chunks, which restart the full sync from its progress.
func (t *Task) reconcileCluster(ctx context.Context, c *redis.Conn, applied int64) (int64, error) {
	if t.incremental.Load() {
		if t.cfg.Delivery == DeliveryExactlyOnce {
			return 0, fmt.Errorf("%w: %w", writer.ErrStop, errClusterReconnect)
		}
		return -1, nil
	}
	if t.full.BigKeys.Load() > 0 {
		return 0, fmt.Errorf("%w: %w; resuming the full sync from its checkpoint", writer.ErrStop, errBigKeyResend)
	}
	return -1, nil
}

// flushCluster is flushDestination on a cluster: the task's positions first (so a crash
// half-way leads here again), then on every master every key but Ferry's own, and of
// those the task's per-slot checkpoints and co-location keys, then the marker again.
func (t *Task) flushCluster(ctx context.Context, ctrl *redis.Conn, why string) error {
	fail := func(err error) error {
		return fmt.Errorf("delete the task's earlier data on destination %s for a full resync: %w", t.cfg.Target.Addr, err)
	}
	if _, err := ctrl.Do(ctx, "DEL", t.keys.Checkpoint, t.keys.Full); err != nil {
		return fail(err)
	}
	sk, err := t.slotKeys()
	if err != nil {
		return fail(err)
	}
	own, slots, colo := []byte(KeyPrefix), []byte(sk.Prefix()), []byte(t.colocatePrefix())
	deleted, err := cluster.UnlinkAll(ctx, t.cfg.Target, func(key []byte) bool {
		return bytes.HasPrefix(key, own) && !bytes.HasPrefix(key, slots) && !bytes.HasPrefix(key, colo)
	})
	if err != nil {
		return fail(err)
	}
	if _, err := ctrl.Do(ctx, "SET", t.keys.Marker, t.marker().String()); err != nil {
		return fail(err)
	}
	t.st.flushes.Add(1)
	t.log.Warn("deleted the task's earlier data on the destination for a clean full resync",
		"reason", why, "keys", deleted, "cluster", true)
	return nil
}
