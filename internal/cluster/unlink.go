package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
)

// unlinkScanCount is SCAN's COUNT when UnlinkAll walks a master's keys.
const unlinkScanCount = 1000

// UnlinkAll deletes every key of the cluster that keep does not select: on every master
// serving slots (read from the node at opts), SCAN walks its keys and the others are
// UNLINKed, one UNLINK per slot (a cluster refuses a multi-key command across slots),
// pipelined. It returns how many keys it deleted. Keys written meanwhile may survive; the
// caller deletes what it must before anything else writes.
func UnlinkAll(ctx context.Context, opts redis.Options, keep func(key []byte) bool) (int64, error) {
	addrs, err := MasterAddrs(ctx, opts)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, addr := range addrs {
		o := opts
		o.Addr, o.DB = addr, 0
		n, err := unlinkNode(ctx, o, keep)
		total += n
		if err != nil {
			return total, fmt.Errorf("cluster master %s: %w", addr, err)
		}
	}
	return total, nil
}

// unlinkNode is UnlinkAll on one master.
func unlinkNode(ctx context.Context, o redis.Options, keep func([]byte) bool) (int64, error) {
	c, err := redis.Dial(ctx, o)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var n int64
	cursor := "0"
	for {
		v, err := c.Do(ctx, "SCAN", cursor, "COUNT", unlinkScanCount)
		if err != nil {
			return n, err
		}
		if len(v.Elems) != 2 {
			return n, errors.New("SCAN: unexpected reply")
		}
		cursor = string(v.Elems[0].Str)
		bySlot := map[uint16][]any{}
		for _, k := range v.Elems[1].Elems {
			if keep(k.Str) {
				continue
			}
			s := command.Slot(k.Str)
			if bySlot[s] == nil {
				bySlot[s] = []any{"UNLINK"}
			}
			bySlot[s] = append(bySlot[s], k.Str)
		}
		slots := make([]uint16, 0, len(bySlot))
		for s := range bySlot {
			slots = append(slots, s)
		}
		slices.Sort(slots)
		for _, s := range slots {
			if err := c.Send(bySlot[s]...); err != nil {
				return n, err
			}
		}
		for _, s := range slots {
			d, err := c.Receive()
			if err != nil {
				// The connection, with any replies left on it, is closed on return.
				return n, fmt.Errorf("UNLINK %d keys of slot %d: %w", len(bySlot[s])-1, s, err)
			}
			n += d.Int
		}
		if cursor == "0" {
			return n, nil
		}
	}
}
