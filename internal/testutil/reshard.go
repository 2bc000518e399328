package testutil

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

const (
	// DefaultReshardBatch is ReshardOptions.Batch when zero: keys per CLUSTER GETKEYSINSLOT and
	// MIGRATE round trip.
	DefaultReshardBatch = 100
	// DefaultReshardTimeout is ReshardOptions.Timeout when zero. Moving 1000 slots takes
	// about a second on an idle machine; the margin is for a loaded 2-core one.
	DefaultReshardTimeout = 2 * time.Minute
	// migrateTimeout is MIGRATE's own timeout argument, in milliseconds.
	migrateTimeout = 10000
)

// ReshardOptions configures Reshard and MoveSlots. The zero value is usable.
type ReshardOptions struct {
	// Batch is the number of keys moved per MIGRATE; default DefaultReshardBatch.
	Batch int
	// Midway, when set, is called once, for the first slot, while that slot is still
	// migrating and every key it had is already on the importing node: a write to a key of
	// that slot the old owner does not hold is then answered with -ASK. Use it to make sure a
	// client under test follows an ASK (write such a key and wait until it did). An error
	// stops the reshard, with the slot left migrating.
	Midway func(ctx context.Context, slot int) error
	// Timeout bounds Reshard (not MoveSlots, which takes a context); default
	// DefaultReshardTimeout.
	Timeout time.Duration
}

// Reshard moves n slots from master from to master to while the cluster stays in use, the way
// `redis-cli --cluster reshard` does (see MoveSlots), then waits until every node agrees on
// the new slot map. It moves the highest n slots from serves, and returns them. The harness's
// map (MasterForKey, SlotRanges, Masters) follows slot by slot. Any failure fails the test;
// from a goroutine other than the test's, use MoveSlots.
func (c *Cluster) Reshard(tb testing.TB, from, to *Server, n int, opts ReshardOptions) []int {
	tb.Helper()
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultReshardTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	slots, err := c.LastSlots(from, n)
	if err != nil {
		tb.Fatalf("reshard: %v", err)
	}
	if err := c.MoveSlots(ctx, from, to, slots, opts); err != nil {
		tb.Fatalf("reshard: %v", err)
	}
	return slots
}

// LastSlots returns the highest n slots master serves, in increasing order, or an error
// when it serves fewer.
func (c *Cluster) LastSlots(master *Server, n int) ([]int, error) {
	ranges := c.SlotRanges(master)
	var slots []int
	for i := len(ranges) - 1; i >= 0 && len(slots) < n; i-- {
		for s := ranges[i][1]; s >= ranges[i][0] && len(slots) < n; s-- {
			slots = append(slots, s)
		}
	}
	if len(slots) < n {
		return nil, fmt.Errorf("%s serves %d slots, fewer than the %d asked for", master, len(slots), n)
	}
	slices.Sort(slots)
	return slots, nil
}

// MoveSlots moves slots from master from to master to, one slot at a time, as
// `redis-cli --cluster reshard` does, so clients writing meanwhile meet real redirections:
// CLUSTER SETSLOT <slot> IMPORTING on to and MIGRATING on from (a key from no longer holds is
// now answered with -ASK, a multi-key command over moved and unmoved keys with -TRYAGAIN),
// the slot's keys moved with MIGRATE … REPLACE KEYS in batches until from holds none, then
// CLUSTER SETSLOT <slot> NODE on to, on from and on every other master (from then on the
// slot's old owner answers -MOVED). The harness's map follows each slot as it lands. Once
// every slot has moved, MoveSlots waits until every node reports the same map, as the harness
// expects it. Safe to call from any goroutine; an error leaves the slot at hand migrating.
func (c *Cluster) MoveSlots(ctx context.Context, from, to *Server, slots []int, opts ReshardOptions) error {
	if opts.Batch <= 0 {
		opts.Batch = DefaultReshardBatch
	}
	if from == to {
		return fmt.Errorf("move slots: source and destination are the same master %s", from)
	}
	masters := c.Masters()
	if !slices.Contains(masters, from) || !slices.Contains(masters, to) {
		return fmt.Errorf("move slots from %s to %s: both must be masters of this cluster", from, to)
	}
	for _, s := range slots {
		if s < 0 || s >= command.SlotCount {
			return fmt.Errorf("move slots: slot %d out of range", s)
		}
		if owner := c.MasterForSlot(s); owner != from {
			return fmt.Errorf("move slot %d: it is served by %s, not %s", s, owner, from)
		}
	}
	// Own connections: the servers' shared ones are the tests', and a slow MIGRATE must not
	// hold them.
	conns := make(map[*Server]*redis.Conn, len(masters))
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	for _, m := range masters {
		cn, err := m.Dial(ctx)
		if err != nil {
			return fmt.Errorf("move slots: %w", err)
		}
		conns[m] = cn
	}
	src, dst := conns[from], conns[to]
	fromID, toID := c.NodeID(from), c.NodeID(to)
	do := func(cn *redis.Conn, s *Server, args ...any) (resp.Value, error) {
		v, err := cn.Do(ctx, args...)
		if err != nil {
			return v, fmt.Errorf("%s: %s: %w", s.Addr(), formatArgs(args), err)
		}
		return v, nil
	}
	midway := opts.Midway
	for _, slot := range slots {
		// IMPORTING first, as redis-cli does: once from answers ASK, to must accept ASKING.
		if _, err := do(dst, to, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID); err != nil {
			return err
		}
		if _, err := do(src, from, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID); err != nil {
			return err
		}
		if err := migrateSlot(ctx, src, from, to, slot, opts.Batch); err != nil {
			return err
		}
		if midway != nil {
			if err := midway(ctx, slot); err != nil {
				return fmt.Errorf("move slot %d: midway: %w", slot, err)
			}
			midway = nil
			// Clients may have written keys of the slot on to (after ASKING) meanwhile, and
			// none on from, which holds no key of it: nothing more to move.
			if err := migrateSlot(ctx, src, from, to, slot, opts.Batch); err != nil {
				return err
			}
		}
		// The new owner first: it bumps its config epoch, so its claim wins over what the
		// others still gossip. Then the old owner, which from now on answers MOVED.
		if _, err := do(dst, to, "CLUSTER", "SETSLOT", slot, "NODE", toID); err != nil {
			return err
		}
		if _, err := do(src, from, "CLUSTER", "SETSLOT", slot, "NODE", toID); err != nil {
			return err
		}
		for _, m := range masters {
			if m == from || m == to {
				continue
			}
			if _, err := do(conns[m], m, "CLUSTER", "SETSLOT", slot, "NODE", toID); err != nil {
				return err
			}
		}
		c.assignSlot(slot, to)
	}
	if err := c.poll(ctx, "cluster converged after moving slots", c.converged); err != nil {
		return fmt.Errorf("move %d slots from %s to %s: %w", len(slots), from, to, err)
	}
	return nil
}

// migrateSlot moves every key of slot held by from to to, batch by batch, until from holds
// none. Keys deleted between the listing and the MIGRATE make it answer NOKEY, which is fine.
func migrateSlot(ctx context.Context, src *redis.Conn, from, to *Server, slot, batch int) error {
	for {
		v, err := src.Do(ctx, "CLUSTER", "GETKEYSINSLOT", slot, batch)
		if err != nil {
			return fmt.Errorf("%s: CLUSTER GETKEYSINSLOT %d: %w", from.Addr(), slot, err)
		}
		if len(v.Elems) == 0 {
			return nil
		}
		args := []any{"MIGRATE", "127.0.0.1", to.Port(), "", 0, migrateTimeout, "REPLACE", "KEYS"}
		for _, k := range v.Elems {
			args = append(args, k.Str)
		}
		if _, err := src.Do(ctx, args...); err != nil {
			return fmt.Errorf("%s: MIGRATE %d keys of slot %d to %s: %w", from.Addr(), len(v.Elems), slot, to.Addr(), err)
		}
	}
}

// assignSlot records in the harness's map that to now serves slot: the shards' ranges are
// rebuilt from the owner table (merged, ascending, as CLUSTER NODES lists them, which
// converged compares) and the shards kept in slot order, as Masters promises.
func (c *Cluster) assignSlot(slot int, to *Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	byMaster := make([]*Server, command.SlotCount)
	for s := range command.SlotCount {
		byMaster[s] = c.shards[c.owner[s]].master
	}
	byMaster[slot] = to
	for _, sh := range c.shards {
		sh.ranges = nil
	}
	shardOf := make(map[*Server]*shard, len(c.shards))
	for _, sh := range c.shards {
		shardOf[sh.master] = sh
	}
	for s := 0; s < command.SlotCount; {
		e := s
		for e+1 < command.SlotCount && byMaster[e+1] == byMaster[s] {
			e++
		}
		sh := shardOf[byMaster[s]]
		sh.ranges = append(sh.ranges, [2]int{s, e})
		s = e + 1
	}
	// A master left without slots stays a shard of the harness (its replicas still follow
	// it); it sorts last.
	slices.SortStableFunc(c.shards, func(a, b *shard) int {
		return firstSlot(a) - firstSlot(b)
	})
	for i, sh := range c.shards {
		for _, r := range sh.ranges {
			for s := r[0]; s <= r[1]; s++ {
				c.owner[s] = uint8(i)
			}
		}
	}
}

func firstSlot(sh *shard) int {
	if len(sh.ranges) == 0 {
		return command.SlotCount
	}
	return sh.ranges[0][0]
}
