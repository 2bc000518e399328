package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/writer"
)

// tmpKey is a key of a co-located command and its temporary copy.
type tmpKey struct {
	name  []byte
	tmp   string
	write bool // some occurrence may be modified by the command: copy the result back
}

// coLocate runs a cross-slot command that cannot be split: see the package
// documentation. The command's offset is carried by the writes that put the results
// back, so Applied passes it only once they are answered. With per-slot checkpoints (and
// no flush in the batch that the floor has not passed yet) the temporary keys have the
// task's fixed names and keep the results until every slot written has its checkpoint:
// see Checkpoints.
func (r *Router) coLocate(ctx context.Context, cmd writer.Command, keys []command.Key, info *command.Command) error {
	// Nothing may be in flight for these keys (nor redirected) while they are copied.
	if err := r.flush(ctx); err != nil {
		return err
	}
	var ks []tmpKey
	pos := make(map[int]int, len(keys)) // argument index → index in ks
	for _, k := range keys {
		name := cmd.Args[k.Pos]
		j := -1
		for i := range ks {
			if bytes.Equal(ks[i].name, name) {
				j = i
				break
			}
		}
		if j < 0 {
			j = len(ks)
			ks = append(ks, tmpKey{name: name})
		}
		if !k.Flags.ReadOnly() {
			ks[j].write = true
		}
		pos[k.Pos] = j
	}
	exact := r.ck != nil && !r.ck.wiped
	var prefix string
	if r.ck != nil {
		prefix = r.ck.opts.ColocatePrefix
	} else {
		r.tmpSeq++
		prefix = r.opts.TempKeyPrefix + "{ferry-tmp-" + strconv.FormatUint(r.tmpBase+r.tmpSeq, 10) + "}:"
	}
	redo := prefix + "redo"
	tmps := make([]any, 0, len(ks)+2)
	tmps = append(tmps, "DEL")
	for j := range ks {
		ks[j].tmp = prefix + strconv.Itoa(j)
		tmps = append(tmps, ks[j].tmp)
	}
	if r.ck != nil {
		tmps = append(tmps, redo)
	}
	tslot := command.SlotString(ks[0].tmp)
	where := fmt.Sprintf("co-located %s (offset %d)", clip(cmd.Args[0]), max(cmd.Offset, cmd.Source))

	if exact {
		switch done, total := r.ck.slotsDone(ks, cmd.Source); {
		case total > 0 && done == total:
			// Replayed after a crash: every slot it writes holds it. Its temporary keys
			// may still be there.
			r.ck.skipped.Add(1)
			r.dropTemps(ctx, tslot, tmps, prefix)
			return nil
		case done > 0:
			return r.coLocateRedo(ctx, cmd, ks, tslot, redo, tmps, where, info)
		}
	}

	// 1. Read every key with its TTL, from its own node.
	batch := make([][]any, 0, 2*len(ks)+2)
	for _, k := range ks {
		payload, pttl, err := r.dump(ctx, command.Slot(k.name), k.name)
		if err != nil {
			return fmt.Errorf("cluster: %s: copy key %q: %w", where, clipKey(k.name), err)
		}
		if payload == nil {
			batch = append(batch, []any{"DEL", k.tmp})
		} else {
			batch = append(batch, []any{"RESTORE", k.tmp, pttl, payload, "REPLACE"})
		}
	}

	// 2. In one round trip on the temporary keys' node: write the copies, run the
	// command on them, read back what it may have written, and drop them (exactly-once:
	// keep them, and record which command they are the results of). The batch starts by
	// setting every copy, so running it again after a redirect is harmless.
	run := len(batch)
	args := make([]any, len(cmd.Args))
	for i, a := range cmd.Args {
		args[i] = a
		if j, ok := pos[i]; ok {
			args[i] = ks[j].tmp
		}
	}
	batch = append(batch, args)
	var written []int
	for j, k := range ks {
		if k.write {
			written = append(written, j)
			batch = append(batch, []any{"DUMP", k.tmp}, []any{"PTTL", k.tmp})
		}
	}
	if exact {
		batch = append(batch, []any{"SET", redo, redoOffset(cmd.Source)})
	} else {
		batch = append(batch, tmps)
	}
	out, err := r.call(ctx, tslot, batch...)
	if err != nil && out == nil {
		r.dropTemps(ctx, tslot, tmps, prefix)
		return fmt.Errorf("cluster: %s: %w", where, err)
	}
	for i, v := range out {
		e, _ := v.Err().(*resp.Error)
		switch {
		case e == nil:
			continue
		case i < run:
			r.dropTemps(ctx, tslot, tmps, prefix)
			return fmt.Errorf("cluster: %s: copy key %q to %s: %w", where, clipKey(ks[i].name), ks[i].tmp, e)
		case i == run && r.opts.Writer.IgnoreErrors && dataError(e):
			r.coSkipped.Add(1)
			r.log.Debug("skipping a co-located command the destination refuses (ignore-errors mode)", "cmd", clip(cmd.Args[0]), "err", e)
			if exact {
				r.dropTemps(ctx, tslot, tmps, prefix)
			}
			return nil
		case i == run:
			return fmt.Errorf("cluster: %s: the destination refused it: %w", where, e)
		case i == len(out)-1 && !exact:
			// The copies stay behind (they are named so that a human recognises them);
			// not worth failing the sync for.
			r.log.Warn("could not delete the temporary keys of a co-located command", "prefix", prefix, "err", e)
		default:
			return fmt.Errorf("cluster: %s: read back the results: %w", where, e)
		}
	}

	// 3. Put every key the command may have written back under its real name, through
	// the owner's writer, so that it is ordered before whatever comes next for that key.
	backs := make([]writer.Command, 0, len(written))
	for n, j := range written {
		backs = append(backs, writeBack(cmd, ks[j].name, out[run+1+2*n], out[run+2+2*n]))
	}
	if exact {
		if err := r.finishExact(ctx, cmd, backs, func(uint16) bool { return false }, tslot, tmps, prefix); err != nil {
			return err
		}
	} else if err := r.sendBacks(ctx, cmd, backs); err != nil {
		return err
	}
	r.mu.Lock()
	r.coLocated[info.Name]++
	r.mu.Unlock()
	return nil
}

// writeBack is the command that puts a co-located command's result for key back: RESTORE
// … REPLACE with its TTL, or DEL when the result does not exist.
func writeBack(cmd writer.Command, key []byte, payload, pttl resp.Value) writer.Command {
	back := writer.Command{DB: cmd.DB, Args: [][]byte{[]byte("DEL"), key}}
	if !payload.Null && pttl.Int != -2 {
		back.Args = [][]byte{[]byte("RESTORE"), key, []byte(strconv.FormatInt(max(pttl.Int, 0), 10)), payload.Str, []byte("REPLACE")}
	}
	return back
}

// sendBacks sends the write-backs of an at-least-once co-located command; each master's
// last one carries the command's offset, so that Applied passes it only once all are
// answered.
func (r *Router) sendBacks(ctx context.Context, cmd writer.Command, backs []writer.Command) error {
	lastOf := make(map[*node]int, len(backs))
	for i, b := range backs {
		lastOf[r.slots[command.Slot(b.Args[1])]] = i
	}
	for i, b := range backs {
		n := r.slots[command.Slot(b.Args[1])]
		if lastOf[n] == i {
			b.Offset = cmd.Offset
		}
		if err := r.send(ctx, n, b); err != nil {
			return err
		}
	}
	return nil
}

// finishExact writes the results back with the slots' checkpoints (but for the slots skip
// names), waits until they are applied, and only then drops the temporary keys that hold
// the results.
func (r *Router) finishExact(ctx context.Context, cmd writer.Command, backs []writer.Command, skip func(uint16) bool, tslot uint16, tmps []any, prefix string) error {
	if err := r.writeBackSlots(ctx, cmd.Source, backs, skip); err != nil {
		return err
	}
	if err := r.flush(ctx); err != nil {
		return err
	}
	r.dropTemps(ctx, tslot, tmps, prefix)
	return nil
}

// coLocateRedo finishes a co-located command that a crash interrupted after some of the
// slots it writes got their results and checkpoints: the results are still in its
// temporary keys (they are dropped only once every slot has them), so they are written to
// the other slots; running the command again would read keys it has already changed.
func (r *Router) coLocateRedo(ctx context.Context, cmd writer.Command, ks []tmpKey, tslot uint16, redo string, tmps []any, where string, info *command.Command) error {
	batch := [][]any{{"GET", redo}}
	var written []int
	for j, k := range ks {
		if k.write {
			written = append(written, j)
			batch = append(batch, []any{"DUMP", k.tmp}, []any{"PTTL", k.tmp})
		}
	}
	out, err := r.call(ctx, tslot, batch...)
	if err != nil {
		return fmt.Errorf("cluster: %s: read the results kept for a replay: %w", where, err)
	}
	if out[0].Null || string(out[0].Str) != redoOffset(cmd.Source) {
		return fmt.Errorf("cluster: %s: some of the slots it writes hold it and others do not, and its results are not in %s (found %q): it cannot be finished exactly; resync the task (the destination was changed behind Ferry's back?)",
			where, redo, clipKey(out[0].Str))
	}
	backs := make([]writer.Command, 0, len(written))
	for n, j := range written {
		backs = append(backs, writeBack(cmd, ks[j].name, out[1+2*n], out[2+2*n]))
	}
	held := func(slot uint16) bool { return cmd.Source <= r.ck.held[slot] }
	if err := r.finishExact(ctx, cmd, backs, held, tslot, tmps, redo); err != nil {
		return err
	}
	r.log.Info("finished a co-located command interrupted by a crash from its kept results", "cmd", clip(cmd.Args[0]), "offset", cmd.Source)
	r.mu.Lock()
	r.coLocated[info.Name]++
	r.mu.Unlock()
	return nil
}

// dropTemps deletes the temporary keys after a failure part-way, best effort.
func (r *Router) dropTemps(ctx context.Context, slot uint16, tmps []any, prefix string) {
	if _, err := r.call(ctx, slot, tmps); err != nil {
		r.log.Warn("could not delete the temporary keys of a co-located command", "prefix", prefix, "err", err)
	}
}

// dump returns key's DUMP payload and its TTL in milliseconds (0 for none), or a nil
// payload when the key does not exist.
func (r *Router) dump(ctx context.Context, slot uint16, key []byte) ([]byte, int64, error) {
	v, err := r.call(ctx, slot, []any{"DUMP", key}, []any{"PTTL", key})
	if err != nil {
		return nil, 0, err
	}
	if v[0].Null || v[1].Int == -2 {
		return nil, 0, nil
	}
	return v[0].Str, max(v[1].Int, 0), nil
}

// dataError reports whether a refusal is about the data (what IgnoreErrors skips)
// rather than the destination or the command.
func dataError(e *resp.Error) bool {
	switch e.Prefix() {
	case "WRONGTYPE", "BUSYKEY":
		return true
	case "ERR":
		m := strings.ToLower(e.Msg)
		return !strings.Contains(m, "unknown command") && !strings.Contains(m, "syntax") &&
			!strings.Contains(m, "wrong number of arguments")
	}
	return false
}

// call runs cmds, pipelined, on the control connection of slot's master and returns
// their replies. They must all concern slot, and running them again must be harmless
// when a redirect refused them: it follows -MOVED to the named node (the slot map is
// left to the writers' redirects, which keep it ordered), -ASK with ASKING, and retries
// -TRYAGAIN, -CLUSTERDOWN and -LOADING with backoff, up to RedirectTimeout. Any other
// error reply is returned (the first one), with the replies.
func (r *Router) call(ctx context.Context, slot uint16, cmds ...[]any) ([]resp.Value, error) {
	start := time.Now()
	backoff := time.Duration(0)
	addr, asking := r.slots[slot].addr, false
	for {
		out, redirect, err := r.pipeline(ctx, addr, asking, cmds)
		if redirect == nil {
			return out, err
		}
		if time.Since(start) > r.opts.RedirectTimeout {
			return out, fmt.Errorf("still redirected after %s: %w", r.opts.RedirectTimeout, redirect)
		}
		if _, to, ok := redirect.IsMoved(); ok {
			addr, asking = to, false
			continue
		}
		if _, to, ok := redirect.IsAsk(); ok {
			addr, asking = to, true
			continue
		}
		backoff = min(max(2*backoff, minRedirectBackoff), maxRedirectBackoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return out, ctx.Err()
		}
		addr, asking = r.slots[slot].addr, false
	}
}

// pipeline sends cmds (each after ASKING when asking) to addr and reads every reply. It
// returns the first redirect-like error reply separately from the first other one.
func (r *Router) pipeline(ctx context.Context, addr string, asking bool, cmds [][]any) (out []resp.Value, redirect *resp.Error, err error) {
	c, err := r.control(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	for _, cm := range cmds {
		if asking {
			if err := c.Send("ASKING"); err != nil {
				r.dropControl(addr)
				return nil, nil, err
			}
		}
		if err := c.Send(cm...); err != nil {
			r.dropControl(addr)
			return nil, nil, err
		}
	}
	out = make([]resp.Value, 0, len(cmds))
	for range cmds {
		if asking {
			if _, e := c.Receive(); e != nil && !isReply(e) {
				r.dropControl(addr)
				return nil, nil, e
			}
		}
		v, e := c.Receive()
		if e != nil {
			var re *resp.Error
			if !errors.As(e, &re) {
				r.dropControl(addr)
				return nil, nil, e
			}
			switch re.Prefix() {
			case "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "LOADING":
				if redirect == nil {
					redirect = re
				}
			default:
				if err == nil {
					err = re
				}
			}
		}
		out = append(out, v)
	}
	return out, redirect, err
}

func clipKey(k []byte) string {
	if len(k) > 100 {
		k = k[:100]
	}
	return string(k)
}
