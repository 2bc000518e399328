package cluster

import (
	"context"
	"fmt"
	"slices"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/writer"
)

var (
	multiArgs = [][]byte{[]byte("MULTI")}
	execArgs  = [][]byte{[]byte("EXEC")}
)

// txnGroup is the part of a source transaction that falls in one slot.
type txnGroup struct {
	slot uint16
	cmds []writer.Command
}

// applyTxn applies the transaction held since MULTI; exec is its EXEC, whose offset is
// the transaction's position. In one slot it stays one transaction. Across slots it
// becomes one transaction per slot, because a cluster refuses a transaction whose keys
// are in several slots, even on one node; the source's atomicity across slots is lost,
// which a sync can afford (nothing reads the destination mid-way that the sync
// promises anything to), while each key still sees the transaction's effect whole. A
// transaction holding a command that must be co-located or sent to every master is
// applied command by command.
func (r *Router) applyTxn(ctx context.Context, exec writer.Command) error {
	r.txns.Add(1)
	var groups []txnGroup
	var keyless []writer.Command
	add := func(slot uint16, c writer.Command) {
		for i := range groups {
			if groups[i].slot == slot {
				groups[i].cmds = append(groups[i].cmds, c)
				return
			}
		}
		groups = append(groups, txnGroup{slot: slot, cmds: []writer.Command{c}})
	}
	unwrap := false
	for _, c := range r.txn {
		rt, err := r.table.Route(ctx, getKeys{r}, c.Args, r.keys[:0])
		if err != nil {
			return fmt.Errorf("cluster: route %s in a transaction (offset %d): %w", clip(c.Args[0]), exec.Offset, err)
		}
		r.keys = rt.Keys[:0]
		switch rt.Kind {
		case command.OneSlot:
			add(rt.Slot, c)
		case command.Keyless:
			keyless = append(keyless, c)
		case command.Split:
			r.split.Add(1)
			err := command.SplitBySlot(rt, c.Args, r.parts[:0], func(slot uint16, part [][]byte) error {
				r.splitParts.Add(1)
				add(slot, writer.Command{DB: c.DB, Args: slices.Clone(part), Offset: c.Offset})
				return nil
			})
			if err != nil {
				return err
			}
		default:
			unwrap = true
		}
	}
	if unwrap {
		r.txnUnwrapped.Add(1)
		for i, c := range r.txn {
			if i == len(r.txn)-1 {
				c.Offset = exec.Offset
			}
			if err := r.dispatch(ctx, c); err != nil {
				return err
			}
		}
		return nil
	}
	if len(groups) == 0 {
		if len(keyless) == 0 {
			return nil // MULTI EXEC with nothing in between: nothing to apply
		}
		groups = []txnGroup{{slot: 0}}
	}
	// Keyless commands (rare in a transaction) join the first slot's transaction.
	groups[0].cmds = append(keyless, groups[0].cmds...)
	if len(groups) > 1 {
		r.txnSplit.Add(1)
	}
	// Each master's last transaction carries the offset: a master's Applied passes it as
	// soon as the transaction carrying it is answered, so an earlier one would let Applied
	// claim the transactions still in flight behind it.
	lastOf := make(map[*node]int, len(groups))
	for i, g := range groups {
		lastOf[r.slots[g.slot]] = i
	}
	for i, g := range groups {
		n := r.slots[g.slot]
		if err := r.send(ctx, n, writer.Command{DB: exec.DB, Args: multiArgs}); err != nil {
			return err
		}
		for _, c := range g.cmds {
			if err := r.send(ctx, n, c); err != nil {
				return err
			}
		}
		end := writer.Command{DB: exec.DB, Args: execArgs}
		if lastOf[n] == i {
			end.Offset = exec.Offset
		}
		if err := r.send(ctx, n, end); err != nil {
			return err
		}
	}
	return nil
}
