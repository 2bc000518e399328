package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/writer"
)

// Checkpoints configures a Router for exactly-once delivery (Options.Checkpoints).
//
// # Batches and per-slot checkpoints
//
// The sync writes its stream in batches, MULTI … commands … SET <Key> <position> EXEC, as it
// does into a standalone server, each command carrying its stream offset in
// writer.Command.Source. A cluster refuses a transaction whose keys span slots, so the
// router applies a batch as one transaction per slot it touches, on that slot's master:
//
//	MULTI  <the slot's commands, in stream order>  SET <SlotKey(slot)> "<replid> <offset>"  EXEC
//
// The slot's checkpoint commits with the slot's data. It lives in the slot itself, so a
// resharding moves it with the data (MIGRATE moves every key of the slot) and a failover
// keeps it with the data (one transaction replicates whole). The transactions of a batch are
// pipelined on every master at once; nothing waits for them.
//
// # The task's checkpoint is a floor
//
// Key, the task's own checkpoint, is not written in any batch: the router writes it itself
// (SET Key <position>) with the position of the newest batch that every master has
// acknowledged (Applied), so it is a position every slot has reached. A session resumes the
// source's stream from it, reads every slot's checkpoint (ReadSlotCheckpoints) and hands the
// router those above it (Resume): a command for slot s whose offset is at most what slot s
// holds is skipped. Between the floor and the end of the replay every command is applied
// exactly once per slot, whatever was executed before the crash.
//
// # Commands that cannot join a slot's transaction
//
//   - Split commands (DEL, MSET… across slots) go per slot into the slots' transactions.
//     Keyless commands join slot 0's.
//   - Co-located commands close the transactions of what came before them, then run as usual
//     on temporary copies; the results go back in one transaction per slot written, with
//     that slot's checkpoint. The temporary keys have fixed names (ColocatePrefix) and keep
//     the results until every slot has its checkpoint, so a crash in between is finished
//     from them, on the slots that miss them, instead of running the command again on keys
//     it has already changed.
//   - Whole-dataset commands (FLUSHALL, FLUSHDB, FUNCTION …, SCRIPT …) close what came
//     before them, are applied on every master synchronously, and the floor is written past
//     the batch that holds them (synchronously too) before anything newer is applied. A
//     crash in between replays the command: FUNCTION LOAD becomes FUNCTION LOAD REPLACE and
//     FUNCTION RESTORE's default APPEND becomes REPLACE (the same effect on a destination
//     that equals the source), FUNCTION DELETE of a library that is already gone counts as
//     done, the others are idempotent. FLUSHALL and FLUSHDB delete every checkpoint too: on
//     the master of Key they run in one transaction with SET Key <floor> and SET Marker
//     MarkerValue, and until the floor is past them no slot checkpoint is written (a replay
//     from before the flush flushes again, and must then re-apply everything after it).
//
// # Lost connections
//
// A master's writer that reconnects cannot tell which of its per-slot transactions ran from
// one key; the caller's writer.Options.Reconcile is expected to stop it (writer.ErrStop)
// so that a new session resumes from the floor with the per-slot checkpoints.
type Checkpoints struct {
	// SlotKey names slot's checkpoint; the key must hash to slot
	// (checkpoint.SlotKeys.Key).
	SlotKey func(slot uint16) string
	// Key is the task's checkpoint, the floor: "SET Key <position>" in a batch gives the
	// batch's position ("<replid> <offset> <db>"); outside one, a position that only
	// commands not forwarded have advanced.
	Key string
	// Marker and MarkerValue are the task's marker key and value, written again with every
	// FLUSHALL or FLUSHDB. Default "": none.
	Marker, MarkerValue string
	// ColocatePrefix names the temporary keys of co-located commands: "<prefix><i>" and
	// "<prefix>redo". It must hold a hash tag, so that they share one slot, and be the same
	// in every session of a task.
	ColocatePrefix string
}

// slotPosition is one batch's end: its offset and the position string of Key.
type slotPosition struct {
	off int64
	val []byte
}

// slotGroup is the part of the open batch that falls in one slot.
type slotGroup struct {
	slot  uint16
	cmds  []writer.Command
	blind bool // every command is a blind write (see blindWrite)
}

// slotState is the router's exactly-once state; its fields belong to the producer
// goroutine except the counters.
type slotState struct {
	opts    Checkpoints
	key     []byte       // opts.Key
	keySlot uint16       // its slot: where the floor, the marker and co-location live
	names   [][]byte     // slot → SlotKey(slot), filled on first use
	skipped atomic.Int64 // commands (or parts) skipped: their slot holds them
	txns    atomic.Int64 // per-slot transactions written

	// From Resume.
	replID   string
	held     []int64 // slot → offset the slot holds; nil for none
	heldMax  int64
	caughtUp bool // a command past heldMax has been seen (logged once)

	// The floor: the position written last, and batch ends waiting for their acks.
	floorOff  int64
	floorVal  []byte
	positions []slotPosition

	// The open batch.
	open    bool
	groups  []slotGroup
	index   []int32 // slot → 1 + index in groups; 0 for none
	last    []bool  // scratch: groups[i] is its node's last
	prev    int64   // Source of the batch's last command so far
	pos     []byte  // the batch's position, from its SET of Key
	barrier bool    // a whole-dataset command: the floor follows at EXEC, synchronously
	wiped   bool    // FLUSHALL or FLUSHDB: no slot checkpoint until the floor passes it
	buf     []byte  // the batch's argument bytes
	argv    [][]byte
}

func newSlotState(o Checkpoints) (*slotState, error) {
	if o.SlotKey == nil || o.Key == "" {
		return nil, errors.New("cluster: Checkpoints needs SlotKey and Key")
	}
	tag := command.SlotString(o.ColocatePrefix + "0")
	if o.ColocatePrefix == "" || tag != command.SlotString(o.ColocatePrefix+"redo") {
		return nil, fmt.Errorf("cluster: Checkpoints.ColocatePrefix %q must hold a hash tag", o.ColocatePrefix)
	}
	for _, s := range []uint16{0, 1, command.SlotCount - 1} {
		if got := command.SlotString(o.SlotKey(s)); got != s {
			return nil, fmt.Errorf("cluster: Checkpoints.SlotKey(%d) = %q hashes to slot %d", s, o.SlotKey(s), got)
		}
	}
	return &slotState{
		opts:    o,
		key:     []byte(o.Key),
		keySlot: command.SlotString(o.Key),
		names:   make([][]byte, command.SlotCount),
		index:   make([]int32, command.SlotCount),
	}, nil
}

// own reports whether the exactly-once path takes cmd: the batch's MULTI, everything until
// its EXEC, and a position written alone.
func (s *slotState) own(cmd writer.Command) bool {
	return s.open || equalFold(cmd.Args[0], "MULTI") || s.isPosition(cmd)
}

func (s *slotState) isPosition(cmd writer.Command) bool {
	return len(cmd.Args) == 3 && equalFold(cmd.Args[0], "SET") && bytes.Equal(cmd.Args[1], s.key)
}

func (s *slotState) slotKey(slot uint16) []byte {
	if s.names[slot] == nil {
		s.names[slot] = []byte(s.opts.SlotKey(slot))
	}
	return s.names[slot]
}

// Resume tells the router where the stream it is about to be given starts, before the
// first batch: replID, the source's replication ID, which the slot checkpoints are
// written under; floor and floorOff, the task's checkpoint as the destination holds it
// (written again with a FLUSHALL); held, from ReadSlotCheckpoints, the offset up to which
// each slot already holds the stream (nil: none): a command for slot s at a stream offset
// (Command.Source) of at most held[s] is skipped. Only with Options.Checkpoints.
func (r *Router) Resume(replID, floor string, floorOff int64, held []int64) {
	s := r.ck
	s.replID = replID
	s.floorVal, s.floorOff = []byte(floor), floorOff
	s.positions = s.positions[:0]
	s.held, s.heldMax, s.caughtUp = nil, 0, false
	if len(held) == command.SlotCount {
		s.held = held
		for _, o := range held {
			s.heldMax = max(s.heldMax, o)
		}
	}
}

// ReadSlotCheckpoints returns the value of every slot's checkpoint (Checkpoints.SlotKey),
// "" where there is none, read with one pipelined GET per slot on the master serving it
// (following MOVED and ASK for a slot being migrated). Only with Options.Checkpoints.
func (r *Router) ReadSlotCheckpoints(ctx context.Context) ([]string, error) {
	out := make([]string, command.SlotCount)
	var redirected []uint16
	for _, n := range r.masters() {
		var slots []uint16
		for s := range command.SlotCount {
			if r.slots[s] == n {
				slots = append(slots, uint16(s))
			}
		}
		// In chunks: a pipeline's replies wait in the socket while the rest is sent.
		const chunk = 1024
		for i := 0; i < len(slots); i += chunk {
			part := slots[i:min(i+chunk, len(slots))]
			cmds := make([][]any, len(part))
			for j, s := range part {
				cmds[j] = []any{"GET", r.ck.slotKey(s)}
			}
			vals, err := r.pipelineAll(ctx, n.addr, cmds)
			if err != nil {
				return nil, fmt.Errorf("cluster: read the per-slot checkpoints on %s: %w", n.addr, err)
			}
			for j, v := range vals {
				switch e, _ := v.Err().(*resp.Error); {
				case e == nil:
					if !v.Null {
						out[part[j]] = string(v.Str)
					}
				case slices.Contains([]string{"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "LOADING"}, e.Prefix()):
					// Asked again, one by one, where call follows or waits out the reply.
					redirected = append(redirected, part[j])
				default:
					return nil, fmt.Errorf("cluster: read the per-slot checkpoint of slot %d on %s: %w", part[j], n.addr, e)
				}
			}
		}
	}
	for _, s := range redirected {
		v, err := r.call(ctx, s, []any{"GET", r.ck.slotKey(s)})
		if err != nil {
			return nil, fmt.Errorf("cluster: read the per-slot checkpoint of slot %d: %w", s, err)
		}
		if !v[0].Null {
			out[s] = string(v[0].Str)
		}
	}
	return out, nil
}

// pipelineAll sends cmds to addr's control connection and returns every reply, error
// replies included as values.
func (r *Router) pipelineAll(ctx context.Context, addr string, cmds [][]any) ([]resp.Value, error) {
	c, err := r.control(ctx, addr)
	if err != nil {
		return nil, err
	}
	for _, cm := range cmds {
		if err := c.Send(cm...); err != nil {
			r.dropControl(addr)
			return nil, err
		}
	}
	out := make([]resp.Value, 0, len(cmds))
	for range cmds {
		v, err := c.Receive()
		if err != nil && !isReply(err) {
			r.dropControl(addr)
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// batchWrite is Write for the commands the exactly-once path owns (slotState.own).
func (r *Router) batchWrite(ctx context.Context, cmd writer.Command) error {
	s := r.ck
	switch name := cmd.Args[0]; {
	case equalFold(name, "MULTI"):
		if s.open {
			return fmt.Errorf("cluster: MULTI inside a batch (offset %d): source transactions are not forwarded in exactly-once delivery", cmd.Source)
		}
		s.open = true
		return nil
	case equalFold(name, "EXEC"):
		return r.endBatch(ctx, cmd)
	case equalFold(name, "DISCARD"):
		return fmt.Errorf("cluster: DISCARD inside a batch (offset %d)", cmd.Source)
	case s.isPosition(cmd):
		if s.open {
			s.pos = append(s.pos[:0], cmd.Args[2]...)
			return nil
		}
		// A position that only commands not forwarded have advanced: the floor, once
		// everything before it is applied.
		s.positions = append(s.positions, slotPosition{cmd.Offset, bytes.Clone(cmd.Args[2])})
		r.noteWritten(cmd.Offset)
		_, err := r.writeFloor(ctx)
		return err
	}
	return r.batchCommand(ctx, cmd)
}

func (r *Router) noteWritten(off int64) {
	if off > r.maxWritten.Load() {
		r.maxWritten.Store(off)
	}
}

// batchCommand routes one command of the open batch.
func (r *Router) batchCommand(ctx context.Context, cmd writer.Command) error {
	s := r.ck
	if s.held != nil && !s.caughtUp && cmd.Source > s.heldMax {
		s.caughtUp = true
		r.log.Info("replayed past the per-slot checkpoints", "skipped", s.skipped.Load(), "offset", s.heldMax)
	}
	rt, err := r.table.Route(ctx, getKeys{r}, cmd.Args, r.keys[:0])
	if err != nil {
		return fmt.Errorf("cluster: route %s (offset %d): %w", clip(cmd.Args[0]), cmd.Source, err)
	}
	r.keys = rt.Keys[:0]
	switch rt.Kind {
	case command.OneSlot:
		s.hold(rt.Slot, cmd)
	case command.Keyless:
		// Slot 0's transaction (and checkpoint) carries it: any slot would do.
		s.hold(0, cmd)
	case command.Split:
		r.split.Add(1)
		err = command.SplitBySlot(rt, cmd.Args, r.parts[:0], func(slot uint16, part [][]byte) error {
			r.splitParts.Add(1)
			s.hold(slot, writer.Command{DB: cmd.DB, Args: part, Source: cmd.Source})
			return nil
		})
	case command.AllMasters:
		if err = r.emitGroups(ctx, s.prev, 0); err == nil {
			err = r.broadcastInBatch(ctx, cmd)
		}
	case command.CoLocate:
		if err = r.emitGroups(ctx, s.prev, 0); err == nil {
			err = r.coLocate(ctx, cmd, append([]command.Key(nil), rt.Keys...), rt.Cmd)
		}
	default:
		err = fmt.Errorf("cluster: route %s: unknown kind %s", clip(cmd.Args[0]), rt.Kind)
	}
	if cmd.Source > 0 {
		s.prev = cmd.Source
	}
	return err
}

// hold adds cmd to its slot's group, unless the slot holds it already. Commands without a
// stream offset (the task's own: its marker) are never skipped.
func (s *slotState) hold(slot uint16, cmd writer.Command) {
	if s.held != nil && cmd.Source > 0 && cmd.Source <= s.held[slot] {
		s.skipped.Add(1)
		return
	}
	i := s.index[slot]
	if i == 0 {
		if len(s.groups) < cap(s.groups) {
			s.groups = s.groups[:len(s.groups)+1]
			g := &s.groups[len(s.groups)-1]
			g.slot, g.cmds, g.blind = slot, g.cmds[:0], true
		} else {
			s.groups = append(s.groups, slotGroup{slot: slot, blind: true})
		}
		i = int32(len(s.groups))
		s.index[slot] = i
	}
	g := &s.groups[i-1]
	g.blind = g.blind && blindWrite(cmd.Args)
	g.cmds = append(g.cmds, writer.Command{DB: cmd.DB, Args: s.copyArgs(cmd.Args), Source: cmd.Source})
}

// blindWrite reports whether args set a key's whole state (value and expiry) whatever it
// was, or delete it — SET without NX, XX, GET, KEEPTTL or a relative expiry, DEL, UNLINK,
// RESTORE … REPLACE with ABSTTL or no TTL — or only set or drop the expiry of a key that
// exists (PEXPIREAT key ms, PERSIST key: the forms a replication stream carries).
//
// A slot's group of such commands alone needs no transaction and no checkpoint: after a
// crash the replay applies again those that ran after the slot's checkpoint, and applying
// a run of them twice leaves what applying it once left. Each key ends as its last full
// write says, followed by the expiry changes after it (with no full write, the key exists
// or not as before, with the last expiry change), and none of them can fail on a key of
// another type. Whatever else the slot receives after them carries its checkpoint, so by the
// time a command of another kind runs in the replay, every blind write before it has run
// again and the slot is as it was.
func blindWrite(args [][]byte) bool {
	switch {
	case equalFold(args[0], "PEXPIREAT"):
		return len(args) == 3
	case equalFold(args[0], "PERSIST"):
		return len(args) == 2
	case equalFold(args[0], "DEL"), equalFold(args[0], "UNLINK"):
		return len(args) >= 2
	case equalFold(args[0], "SET"):
		if len(args) < 3 {
			return false
		}
		for i := 3; i < len(args); i++ {
			if (!equalFold(args[i], "PXAT") && !equalFold(args[i], "EXAT")) || i+1 == len(args) {
				return false
			}
			i++ // the time
		}
		return true
	case equalFold(args[0], "RESTORE"):
		if len(args) < 4 {
			return false
		}
		replace, abs := false, len(args[2]) == 1 && args[2][0] == '0'
		for i := 4; i < len(args); i++ {
			switch {
			case equalFold(args[i], "REPLACE"):
				replace = true
			case equalFold(args[i], "ABSTTL"):
				abs = true
			case equalFold(args[i], "IDLETIME"), equalFold(args[i], "FREQ"):
				i++
			default:
				return false
			}
		}
		return replace && abs
	}
	return false
}

// copyArgs copies args into the batch's buffers, which are reused once the batch is sent
// (the writers copy what they are given).
func (s *slotState) copyArgs(args [][]byte) [][]byte {
	start := len(s.argv)
	for _, a := range args {
		b := len(s.buf)
		s.buf = append(s.buf, a...)
		s.argv = append(s.argv, s.buf[b:len(s.buf):len(s.buf)])
	}
	return s.argv[start:len(s.argv):len(s.argv)]
}

var setName = []byte("SET")

// emitGroups sends the groups held so far, one transaction per slot, with the slot's
// checkpoint at offset at (none while a flush is not behind the floor). off, when not 0,
// is carried by each master's last transaction, so that Applied passes it only once all of
// them are answered.
func (r *Router) emitGroups(ctx context.Context, at, off int64) error {
	s := r.ck
	if len(s.groups) == 0 {
		return nil
	}
	var val []byte
	if !s.wiped {
		if s.replID == "" {
			return errors.New("cluster: per-slot checkpoints: Resume was not called before the first batch")
		}
		val = []byte(checkpoint.SlotPosition{ReplID: s.replID, Offset: at}.String())
	}
	s.last = s.last[:0]
	for range s.groups {
		s.last = append(s.last, false)
	}
	if off > 0 {
		var seen []*node
		for i := len(s.groups) - 1; i >= 0; i-- {
			if n := r.slots[s.groups[i].slot]; !slices.Contains(seen, n) {
				seen = append(seen, n)
				s.last[i] = true
			}
		}
	}
	for i := range s.groups {
		g := &s.groups[i]
		n := r.slots[g.slot]
		s.index[g.slot] = 0
		if g.blind && val != nil {
			for j, c := range g.cmds {
				if s.last[i] && j == len(g.cmds)-1 {
					c.Offset = off
				}
				if err := r.send(ctx, n, c); err != nil {
					return err
				}
			}
			continue
		}
		if err := r.send(ctx, n, writer.Command{DB: -1, Args: multiArgs}); err != nil {
			return err
		}
		for _, c := range g.cmds {
			if err := r.send(ctx, n, c); err != nil {
				return err
			}
		}
		if val != nil {
			if err := r.send(ctx, n, writer.Command{DB: 0, Args: [][]byte{setName, s.slotKey(g.slot), val}}); err != nil {
				return err
			}
		}
		exec := writer.Command{DB: -1, Args: execArgs}
		if s.last[i] {
			exec.Offset = off
		}
		if err := r.send(ctx, n, exec); err != nil {
			return err
		}
		s.txns.Add(1)
	}
	s.groups = s.groups[:0]
	return nil
}

// endBatch applies the open batch at its EXEC, whose offset is the batch's position.
func (r *Router) endBatch(ctx context.Context, exec writer.Command) error {
	s := r.ck
	if !s.open {
		return fmt.Errorf("cluster: EXEC without MULTI (offset %d)", exec.Offset)
	}
	if err := r.emitGroups(ctx, exec.Offset, exec.Offset); err != nil {
		return err
	}
	s.open = false
	if exec.Offset > 0 && len(s.pos) > 0 {
		s.positions = append(s.positions, slotPosition{exec.Offset, bytes.Clone(s.pos)})
	}
	s.pos = s.pos[:0]
	s.buf, s.argv = s.buf[:0], s.argv[:0]
	if cap(s.buf) > maxRetainedBatch {
		s.buf = nil
	}
	barrier := s.barrier
	s.barrier, s.wiped, s.prev = false, false, 0
	r.noteWritten(exec.Offset)
	if barrier {
		// The floor passes the whole-dataset command before anything newer is applied
		// (Flush writes it and waits for it).
		return r.flush(ctx)
	}
	_, err := r.writeFloor(ctx)
	return err
}

// maxRetainedBatch bounds the argument buffer kept between batches.
const maxRetainedBatch = 8 << 20

// writeFloor writes the task's checkpoint with the newest batch position every master has
// acknowledged, if it is newer than the one written; it does not wait for the reply.
func (r *Router) writeFloor(ctx context.Context) (bool, error) {
	s := r.ck
	if len(s.positions) == 0 {
		return false, nil
	}
	a := r.Applied()
	i := -1
	for j, p := range s.positions {
		if p.off > a {
			break
		}
		i = j
	}
	if i < 0 {
		return false, nil
	}
	p := s.positions[i]
	s.positions = append(s.positions[:0], s.positions[i+1:]...)
	if p.off <= s.floorOff {
		return false, nil
	}
	if err := r.send(ctx, r.slots[s.keySlot], writer.Command{DB: 0, Args: [][]byte{setName, s.key, p.val}}); err != nil {
		return false, err
	}
	s.floorOff, s.floorVal = p.off, p.val
	return true, nil
}

// broadcastInBatch applies a whole-dataset command of a batch on every master, after
// everything before it, and waits for it (see Checkpoints).
func (r *Router) broadcastInBatch(ctx context.Context, cmd writer.Command) error {
	s := r.ck
	if err := r.flush(ctx); err != nil {
		return err
	}
	name := cmd.Args[0]
	wipe := equalFold(name, "FLUSHALL") || equalFold(name, "FLUSHDB")
	args := make([]any, 0, len(cmd.Args)+1)
	for _, a := range replayableArgs(cmd.Args) {
		args = append(args, a)
	}
	r.broadcast.Add(1)
	start := time.Now()
	backoff := time.Duration(0)
	for {
		if err := r.refresh(ctx); err != nil {
			r.log.Warn("could not re-read the cluster topology before a whole-dataset command; using the known one",
				"cmd", clip(name), "err", err)
		}
		redirect, err := r.broadcastOnce(ctx, args, wipe, cmd.Source)
		if err != nil {
			return err
		}
		if redirect == nil {
			break
		}
		// Every part is idempotent (see replayableArgs): the whole round runs again.
		if time.Since(start) > r.opts.RedirectTimeout {
			return fmt.Errorf("cluster: %s (offset %d) still refused after %s: %w", clip(name), cmd.Source, r.opts.RedirectTimeout, redirect)
		}
		backoff = min(max(2*backoff, minRedirectBackoff), maxRedirectBackoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	s.barrier = true
	if wipe {
		s.wiped = true
	}
	return nil
}

// broadcastOnce runs args on every master; on the master of the task's keys a flush runs
// in one transaction with the floor and the marker, which it would delete.
func (r *Router) broadcastOnce(ctx context.Context, args []any, wipe bool, off int64) (*resp.Error, error) {
	s := r.ck
	home := r.slots[s.keySlot]
	for _, n := range r.masters() {
		cmds := [][]any{args}
		if wipe && n == home {
			cmds = [][]any{{"MULTI"}, args}
			if len(s.floorVal) > 0 {
				cmds = append(cmds, []any{"SET", s.key, s.floorVal})
			}
			if s.opts.Marker != "" {
				cmds = append(cmds, []any{"SET", s.opts.Marker, s.opts.MarkerValue})
			}
			cmds = append(cmds, []any{"EXEC"})
		}
		out, redirect, err := r.pipeline(ctx, n.addr, false, cmds)
		if redirect != nil {
			return redirect, nil
		}
		if err == nil && len(cmds) > 1 {
			// The transaction's own replies.
			for _, e := range out[len(out)-1].Elems {
				if err = e.Err(); err != nil {
					break
				}
			}
		}
		if err != nil {
			var e *resp.Error
			if errors.As(err, &e) && alreadyDone(args, e) {
				r.log.Debug("whole-dataset command found already applied (replayed after a crash)", "cmd", args[0], "node", n.addr, "err", e)
				continue
			}
			return nil, fmt.Errorf("cluster: %v (offset %d) on %s: %w", args[0], off, n.addr, err)
		}
	}
	return nil, nil
}

// alreadyDone reports whether e, the reply to a replayed whole-dataset command, says that
// its effect is there already: FUNCTION DELETE of a library that is gone.
func alreadyDone(args []any, e *resp.Error) bool {
	if len(args) < 2 {
		return false
	}
	a, _ := args[0].([]byte)
	b, _ := args[1].([]byte)
	return equalFold(a, "FUNCTION") && equalFold(b, "DELETE") && strings.Contains(strings.ToLower(e.Msg), "library not found")
}

// replayableArgs returns a whole-dataset command in a form that applying twice does what
// applying once does, where the original is not: FUNCTION LOAD gets REPLACE, and FUNCTION
// RESTORE's default policy APPEND becomes REPLACE. On a destination that equals the source
// both have the same effect as the original the first time (the source accepted it, so the
// library did not exist there, nor here).
func replayableArgs(args [][]byte) [][]byte {
	if len(args) < 3 || !equalFold(args[0], "FUNCTION") {
		return args
	}
	switch {
	case equalFold(args[1], "LOAD"):
		if equalFold(args[2], "REPLACE") {
			return args
		}
		out := make([][]byte, 0, len(args)+1)
		out = append(out, args[:2]...)
		out = append(out, replaceArg)
		return append(out, args[2:]...)
	case equalFold(args[1], "RESTORE"):
		if len(args) == 3 {
			return append(append([][]byte(nil), args...), replaceArg)
		}
		if len(args) == 4 && equalFold(args[3], "APPEND") {
			out := append([][]byte(nil), args[:3]...)
			return append(out, replaceArg)
		}
	}
	return args
}

var replaceArg = []byte("REPLACE")

// slotsDone counts, of the slots the co-located command at offset off writes (the slots of
// the keys ks marks written), how many already hold it.
func (s *slotState) slotsDone(ks []tmpKey, off int64) (done, total int) {
	var seen []uint16
	for _, k := range ks {
		if !k.write {
			continue
		}
		slot := command.Slot(k.name)
		if containsSlot(seen, slot) {
			continue
		}
		seen = append(seen, slot)
		total++
		if s.held != nil && off > 0 && off <= s.held[slot] {
			done++
		}
	}
	return done, total
}

func containsSlot(list []uint16, s uint16) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// writeBackSlots puts the results of a co-located command at offset off back under the
// real names, one transaction per slot with that slot's checkpoint, skipping the slots
// skip says hold them already. backs holds the RESTORE or DEL of each key written.
func (r *Router) writeBackSlots(ctx context.Context, off int64, backs []writer.Command, skip func(slot uint16) bool) error {
	s := r.ck
	val := []byte(checkpoint.SlotPosition{ReplID: s.replID, Offset: off}.String())
	var slots []uint16
	for _, b := range backs {
		if slot := command.Slot(b.Args[1]); !containsSlot(slots, slot) && !skip(slot) {
			slots = append(slots, slot)
		}
	}
	for _, slot := range slots {
		n := r.slots[slot]
		if err := r.send(ctx, n, writer.Command{DB: -1, Args: multiArgs}); err != nil {
			return err
		}
		for _, b := range backs {
			if command.Slot(b.Args[1]) == slot {
				if err := r.send(ctx, n, b); err != nil {
					return err
				}
			}
		}
		if err := r.send(ctx, n, writer.Command{DB: 0, Args: [][]byte{setName, s.slotKey(slot), val}}); err != nil {
			return err
		}
		if err := r.send(ctx, n, writer.Command{DB: -1, Args: execArgs}); err != nil {
			return err
		}
		s.txns.Add(1)
	}
	return nil
}

// redoOffset is the value of the co-location redo key for the command at off.
func redoOffset(off int64) string { return strconv.FormatInt(off, 10) }
