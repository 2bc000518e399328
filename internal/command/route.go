package command

import (
	"context"
	"slices"
)

// Kind says how a command reaches a Redis Cluster.
type Kind uint8

const (
	// Keyless: the command has no keys; any one master can run it.
	Keyless Kind = iota
	// AllMasters: the command acts on a node's whole dataset (FLUSHALL, FUNCTION LOAD,
	// SCRIPT LOAD…) and must run on every master.
	AllMasters
	// OneSlot: every key is in one slot; the command goes to that slot's master.
	OneSlot
	// Split: the keys are in several slots and the command is separable (DEL, UNLINK,
	// TOUCH, MSET, a succeeded MSETNX): it becomes one command per slot (see SplitBySlot).
	Split
	// CoLocate: the keys are in several slots and the command is not separable (RENAME,
	// SMOVE, SUNIONSTORE, BITOP, COPY…): its keys must be brought into one slot to run it.
	CoLocate
)

func (k Kind) String() string {
	switch k {
	case Keyless:
		return "keyless"
	case AllMasters:
		return "all-masters"
	case OneSlot:
		return "one-slot"
	case Split:
		return "split"
	case CoLocate:
		return "co-locate"
	}
	return "unknown"
}

// Route is how one command reaches a cluster.
type Route struct {
	Kind Kind
	Slot uint16   // OneSlot: the slot; Split and CoLocate: the slot of the first key
	Keys []Key    // the key arguments, in the order the server lists them
	Cmd  *Command // the command (or subcommand) from the table
}

// Separable commands are those whose effect on each key depends only on that key and
// its own arguments, so running them per slot is the same as running them whole. Redis 7
// says so with the request_policy:multi_shard tip; these names cover older servers.
// EXISTS and MGET are separable too but never reach a replication stream. MSETNX is here
// because the stream carries only MSETNX that succeeded (a failed one changes nothing
// and is not propagated): every key was set, so its parts run as MSET.
var separableNames = map[string]bool{"del": true, "unlink": true, "touch": true, "mset": true, "msetnx": true, "exists": true}

// wholeDatasetNames are the commands that act on a node's whole dataset, for servers
// without request_policy tips (before 7.0), and SCRIPT LOAD and FLUSH, which have the
// tip but not the write flag. Containers are listed as "name|sub".
var wholeDatasetNames = map[string]bool{
	"flushall": true, "flushdb": true,
	"script|load": true, "script|flush": true,
	"function|load": true, "function|delete": true, "function|flush": true, "function|restore": true,
}

// Route classifies args for a cluster: it finds the keys (Keys, with d for COMMAND
// GETKEYS where needed), their slots, and whether a cross-slot command can be split.
// keys is scratch for the key list (Route.Keys aliases it).
func (t *Table) Route(ctx context.Context, d Doer, args [][]byte, keys []Key) (Route, error) {
	c := t.Lookup(args)
	if c == nil {
		return Route{}, t.unknown(args)
	}
	r := Route{Cmd: c}
	// PING and DBSIZE have the all_shards tip too; only writes change every node.
	if (c.Flags&FlagWrite != 0 && (c.Policy == PolicyAllShards || c.Policy == PolicyAllNodes)) || wholeDatasetNames[c.Name] {
		r.Kind = AllMasters
		return r, nil
	}
	var err error
	if k, ok := c.KeysFromSpecs(args, keys[:0]); ok {
		r.Keys = k
	} else if d == nil {
		return r, ErrNeedServer
	} else if r.Keys, err = GetKeys(ctx, d, args, keys[:0], t.specs); err != nil {
		return r, err
	}
	if len(r.Keys) == 0 {
		r.Kind = Keyless
		return r, nil
	}
	r.Slot = Slot(args[r.Keys[0].Pos])
	r.Kind = OneSlot
	for _, k := range r.Keys[1:] {
		if Slot(args[k.Pos]) != r.Slot {
			r.Kind = CoLocate
			if c.splittable(args, r.Keys) {
				r.Kind = Split
			}
			break
		}
	}
	return r, nil
}

// splittable reports whether c is separable and args have the layout splitting relies
// on: the name, then one unit per key (the key and KeyStep-1 arguments of its own, as
// MSET's key value pairs) to the end, found by one range key spec (or the legacy range).
func (c *Command) splittable(args [][]byte, keys []Key) bool {
	if c.Policy != PolicyMultiShard && !separableNames[c.Name] {
		return false
	}
	step := c.Step
	if c.Specs != nil {
		n := 0
		for _, s := range c.Specs {
			if s.Flags&KeyNotKey != 0 {
				continue
			}
			n++
			if s.Begin.Kind != SearchIndex || s.Find.Kind != SearchRange {
				return false
			}
			step = s.Find.KeyStep
		}
		if n != 1 {
			return false
		}
	}
	if step < 1 || keys[0].Pos != 1 || (len(args)-1) != len(keys)*step {
		return false
	}
	for i, k := range keys {
		if k.Pos != 1+i*step {
			return false
		}
	}
	return true
}

// SplitBySlot calls fn once per slot of a Split route with that slot's part of the command:
// the name (MSETNX becomes MSET) and the units of its keys, in their original order.
// Parts come in slot order. parts is scratch; the args fn receives alias it and args,
// and are valid only during the call.
func SplitBySlot(r Route, args [][]byte, parts [][]byte, fn func(slot uint16, part [][]byte) error) error {
	if len(r.Keys) == 0 {
		return nil
	}
	step := len(args) - 1
	if len(r.Keys) > 1 {
		step = r.Keys[1].Pos - r.Keys[0].Pos
	}
	name := args[0]
	if r.Cmd != nil && r.Cmd.Name == "msetnx" {
		name = msetName
	}
	type unit struct {
		slot uint16
		pos  int
	}
	units := make([]unit, len(r.Keys))
	for i, k := range r.Keys {
		units[i] = unit{Slot(args[k.Pos]), k.Pos}
	}
	// Stable: within a slot the units keep their order (DEL k k, MSET k 1 k 2).
	slices.SortStableFunc(units, func(a, b unit) int { return int(a.slot) - int(b.slot) })
	for i := 0; i < len(units); {
		slot := units[i].slot
		parts = append(parts[:0], name)
		for ; i < len(units) && units[i].slot == slot; i++ {
			parts = append(parts, args[units[i].pos:units[i].pos+step]...)
		}
		if err := fn(slot, parts); err != nil {
			return err
		}
	}
	return nil
}

var msetName = []byte("MSET")
