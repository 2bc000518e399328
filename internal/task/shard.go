package task

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/resp"
)

// Shard narrows a task to one master of a Redis Cluster source. A cluster source is synced
// by one task per source master, each with its own name (so its own checkpoint, spool and
// writer connections) and its own replication stream; they share the destination. What a
// shard task must do differently from a task over a standalone source:
//
//   - attach to whichever node serves the shard's slots now (Resolve), so a failover of
//     the source master is followed with PSYNC2;
//   - delete only its own slots' keys where a standalone source's task would empty whole
//     databases (a full resync, a FLUSHALL or FLUSHDB in its stream): the other shards'
//     keys on the destination are not its to delete;
//   - write its heartbeat to a key the shard's master serves;
//   - leave the destination's existing-keys check and marker to the orchestrator, which
//     runs it once for all shards before any shard writes.
//
// # Commands whose effect reaches beyond the shard
//
// The shards' streams reach the destination independently, so commands that act on more
// than the shard's own keys are rewritten (shardCommand):
//
//   - FLUSHALL and FLUSHDB become "delete this shard's keys": the batch before them is
//     committed and acknowledged, then the destination keys in the shard's slots that no
//     other source node holds are deleted (on a cluster, the shard's per-slot checkpoints
//     first), and the position past the command is committed before anything newer is
//     written; the command itself is not forwarded. A crash in between replays the
//     command, and the deletion finds nothing newer to delete.
//   - FUNCTION LOAD and FUNCTION RESTORE … APPEND get REPLACE: every master of the source
//     sends its own copy of a library. FUNCTION DELETE is applied (under Exclusive, after
//     what precedes it) only when the destination still has the library.
//   - A slot migration (MIGRATE) shows as RESTORE-ASKING in the importing shard's stream
//     and as DEL in the exporting shard's. RESTORE-ASKING is applied as RESTORE … REPLACE
//     after Barrier (the exporting shard's earlier writes to the key land first); a DEL or
//     UNLINK drops each key that another source node holds now (asked with EXISTS on the
//     shard's master, following its -ASK or -MOVED; only for the keys Moved names when it
//     is set), so the migrated key survives on the destination. Before a migrated key
//     waits in Barrier, what precedes it is committed and acknowledged.
//
// # Remaining races
//
//   - A key migrated away and then deleted and re-created on its new node within the
//     time between the exporting shard's check (EXISTS) and its DEL reaching the
//     destination is deleted there (milliseconds; the importing shard's next write to the
//     key restores it).
//   - A migration while a shard is in its full sync: the shards' snapshots are taken at
//     different moments, and a snapshot key of the exporting shard written after the
//     importing shard's later writes to it overwrites them until the key is written again.
//     Reshard after every shard has reached the incremental phase.
//   - Barrier does not wait for shards that wait in a barrier themselves (keys migrating
//     both ways at once), which would otherwise deadlock: their writes after their own
//     waiting point may land after the restore.
//   - FUNCTION FLUSH, and FLUSHALL inside a transaction or script, act on the whole
//     destination: the first is forwarded as it is (libraries are per node on the source
//     but shared on the destination), the second stops the task with an explanation.
type Shard struct {
	// ID names the shard in logs and in the status (e.g. "s0").
	ID string
	// Slots says whether a hash slot belongs to the shard (the orchestrator keeps it
	// current as the source is resharded).
	Slots func(slot uint16) bool
	// Resolve returns the node to attach to now: the master serving the shard's slots.
	Resolve func(ctx context.Context) (redis.Options, error)
	// Owned: the orchestrator found the destination empty (--existing block) and the task
	// owns the data it writes, so a full resync may delete the shard's keys.
	Owned bool
	// HeartbeatKey is a key under KeyPrefix whose slot the shard serves.
	HeartbeatKey string
	// Barrier, when set, is called before a key migrated into the shard (RESTORE-ASKING)
	// is applied. It returns once every other shard of the source has applied what its
	// master had written when Barrier was called: the exporting shard's writes to the key
	// before the migration are among them, so they cannot land after the key's new
	// history.
	Barrier func(ctx context.Context) error
	// Imported, when set, records a key migrated into the shard; it is called before
	// Barrier.
	Imported func(key []byte)
	// Moved, when set, says whether the key of a DEL or UNLINK at stream offset offset may
	// be one a slot migration moved to another shard: only then is the source asked where
	// the key lives. nil: the source is asked about every key.
	Moved func(key []byte, offset int64) bool
	// Exclusive is shared by the shards of one source and held while a shard applies a
	// command whose effect depends on what the destination holds (FUNCTION DELETE), so
	// that two shards do not both decide to apply it. nil: a lock of the shard's own.
	Exclusive *sync.Mutex

	// The shard task's own state: connections to the source for key lookups, counters.
	mu    sync.Mutex
	own   sync.Mutex // Exclusive when none is given
	probe *sourceProbe
	stats shardCounters
}

// ShardStats counts what a shard task did differently from a standalone source's task.
type ShardStats struct {
	// KeysChecked: keys of DEL/UNLINK commands looked up on the source.
	KeysChecked int64 `json:"keys_checked"`
	// KeptMigrated: keys of DEL/UNLINK not deleted on the destination, because another
	// source node holds them now (a slot migration moved them).
	KeptMigrated int64 `json:"kept_migrated"`
	// Migrated: RESTORE-ASKING commands (keys migrated into the shard) applied.
	Migrated int64 `json:"migrated"`
	// Flushes and FlushedKeys: FLUSHALL/FLUSHDB (and full-resync clean-ups) applied as
	// deletions of the shard's keys, and the keys they deleted.
	Flushes     int64 `json:"flushes"`
	FlushedKeys int64 `json:"flushed_keys"`
	// FunctionDeletesSkipped: FUNCTION DELETE of a library the destination no longer had
	// (another shard deleted it first, or a replay after a crash).
	FunctionDeletesSkipped int64 `json:"function_deletes_skipped"`
}

type shardCounters struct {
	keysChecked, keptMigrated, migrated, flushes, flushedKeys, fnSkipped atomic.Int64
}

// Stats returns the shard's counters.
func (s *Shard) Stats() ShardStats {
	c := &s.stats
	return ShardStats{
		KeysChecked: c.keysChecked.Load(), KeptMigrated: c.keptMigrated.Load(), Migrated: c.migrated.Load(),
		Flushes: c.flushes.Load(), FlushedKeys: c.flushedKeys.Load(), FunctionDeletesSkipped: c.fnSkipped.Load(),
	}
}

// Close releases the connections the shard's task opened to the source for key lookups.
// Call it once the task's Run has returned.
func (s *Shard) Close() {
	s.mu.Lock()
	p := s.probe
	s.probe = nil
	s.mu.Unlock()
	if p != nil {
		p.close()
	}
}

func (s *Shard) exclusive() *sync.Mutex {
	if s.Exclusive != nil {
		return s.Exclusive
	}
	return &s.own
}

// StreamApplied returns the stream offset whose effects the destination holds now, while
// the task applies its stream; ok is false during a full sync and between sessions. The
// orchestrator of a cluster source waits on it (Shard.Barrier).
func (t *Task) StreamApplied() (offset int64, ok bool) {
	t.mu.Lock()
	wr := t.wr
	t.mu.Unlock()
	if wr == nil || !t.incremental.Load() || Phase(t.st.phase.Load()) != PhaseIncremental {
		return 0, false
	}
	return t.applied(wr), true
}

// resolveShardSource is resolveSource for a shard task.
func (t *Task) resolveShardSource(ctx context.Context) (redis.Options, error) {
	return t.cfg.Shard.Resolve(ctx)
}

// flushShard is flushDestination for a shard task: it deletes the task's positions, then
// the destination keys in the shard's slots that no other source node holds, nothing else.
func (t *Task) flushShard(ctx context.Context, ctrl *redis.Conn, why string) error {
	sh := t.cfg.Shard
	fail := func(err error) error {
		return fmt.Errorf("delete shard %s's earlier data on destination %s for a full resync: %w", sh.ID, t.cfg.Target.Addr, err)
	}
	// Positions first: a crash half-way leads here again.
	if _, err := ctrl.Do(ctx, "DEL", t.keys.Checkpoint, t.keys.Full); err != nil {
		return fail(err)
	}
	n, err := t.deleteShardKeys(ctx)
	if err != nil {
		return fail(err)
	}
	m := checkpoint.Marker{Existing: checkpoint.ExistingOverwrite}
	if t.owned {
		m.Existing = checkpoint.ExistingBlock
	}
	if _, err := ctrl.Do(ctx, "SET", t.keys.Marker, m.String()); err != nil {
		return fail(err)
	}
	t.st.flushes.Add(1)
	t.log.Warn("deleted the shard's earlier data on the destination for a clean full resync",
		"reason", why, "keys", n)
	return nil
}

// deleteShardPositionsCluster deletes, on a cluster destination, the shard task's
// per-slot checkpoints (on the master of each slot) and the temporary keys its co-located
// commands may have left (all in the slot of the task's own keys).
func (t *Task) deleteShardPositionsCluster(ctx context.Context) error {
	sk, err := t.slotKeys()
	if err != nil {
		return err
	}
	o := t.cfg.Target
	o.DB = 0
	seed, err := redis.Dial(ctx, o)
	if err != nil {
		return err
	}
	topo, err := cluster.Fetch(ctx, seed, o.TLS != nil)
	seed.Close()
	if err != nil {
		return err
	}
	for _, s := range topo.Shards {
		mo := o
		mo.Addr = s.Master.Addr
		c, err := redis.Dial(ctx, mo)
		if err != nil {
			return fmt.Errorf("connect to destination master %s: %w", mo.Addr, err)
		}
		err = delSlotKeys(c, sk, s.Slots)
		c.Close()
		if err != nil {
			return fmt.Errorf("delete the per-slot checkpoints on destination master %s: %w", mo.Addr, err)
		}
	}
	keySlot := command.SlotString(t.keys.Checkpoint)
	m, ok := topo.Master(keySlot)
	if !ok {
		return fmt.Errorf("no master serves slot %d of the task's keys", keySlot)
	}
	mo := o
	mo.Addr = m.Addr
	c, err := redis.Dial(ctx, mo)
	if err != nil {
		return fmt.Errorf("connect to destination master %s: %w", mo.Addr, err)
	}
	defer c.Close()
	v, err := c.Do(ctx, "CLUSTER", "GETKEYSINSLOT", keySlot, shardScanCount)
	if err != nil {
		return err
	}
	colo := []byte(t.colocatePrefix())
	for _, k := range v.Elems {
		if bytes.HasPrefix(k.Str, colo) {
			if _, err := c.Do(ctx, "UNLINK", k.Str); err != nil {
				return err
			}
		}
	}
	return nil
}

// delSlotKeys deletes the per-slot checkpoints of the slots in rs, pipelined.
func delSlotKeys(c *redis.Conn, sk checkpoint.SlotKeys, rs []cluster.SlotRange) error {
	n := 0
	flush := func() error {
		for ; n > 0; n-- {
			if _, err := c.Receive(); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range rs {
		for slot := int(r.First); slot <= int(r.Last); slot++ {
			if err := c.Send("DEL", sk.Key(uint16(slot))); err != nil {
				return err
			}
			if n++; n == shardScanCount {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// shardCommand handles, for a shard task, the stream commands whose effect reaches beyond
// the shard on a shared destination (see Shard). It returns whether cmd is still to be
// forwarded; it may rewrite cmd.Name and cmd.Args.
func (a *streamApplier) shardCommand(ctx context.Context, cmd *replica.Command) (forward bool, err error) {
	switch cmd.Name {
	case "del", "unlink":
		return a.shardDelete(ctx, cmd)
	case "restore-asking":
		return a.shardMigrated(ctx, cmd)
	case "flushall", "flushdb":
		return a.shardFlush(ctx, cmd)
	case "function":
		return a.shardFunction(ctx, cmd)
	}
	return true, nil
}

// shardDelete drops, from a DEL or UNLINK, the keys another source node holds now: the
// exporting side of a slot migration deletes the keys it moved, and those must live on at
// the destination, where the importing shard wrote them.
func (a *streamApplier) shardDelete(ctx context.Context, cmd *replica.Command) (bool, error) {
	if len(cmd.Args) < 2 {
		return true, nil
	}
	sh := a.t.cfg.Shard
	keys := cmd.Args[1:]
	ask := keys
	var idx []int // positions in keys of ask's keys, when not all are asked about
	if sh.Moved != nil {
		ask = nil
		for i, k := range keys {
			if sh.Moved(k, cmd.Offset) {
				ask = append(ask, k)
				idx = append(idx, i)
			}
		}
		if len(ask) == 0 {
			return true, nil
		}
	}
	found, err := a.t.shardProbe().elsewhere(ctx, ask)
	if err != nil {
		return false, fmt.Errorf("ask the source whether the deleted keys (%q…) moved to another shard: %w", ask[0], err)
	}
	sh.stats.keysChecked.Add(int64(len(ask)))
	elsewhere := found
	if idx != nil {
		elsewhere = make([]bool, len(keys))
		for j, i := range idx {
			elsewhere[i] = found[j]
		}
	}
	kept := 0
	for _, e := range elsewhere {
		if e {
			kept++
		}
	}
	if kept == 0 {
		return true, nil
	}
	sh.stats.keptMigrated.Add(int64(kept))
	if kept == len(keys) {
		return false, nil
	}
	args := make([][]byte, 0, len(cmd.Args)-kept)
	args = append(args, cmd.Args[0])
	for i, k := range keys {
		if !elsewhere[i] {
			args = append(args, k)
		}
	}
	cmd.Args = args
	return true, nil
}

// shardMigrated applies RESTORE-ASKING (a key migrating into the shard) as RESTORE …
// REPLACE, once the other shards have applied what preceded the migration.
func (a *streamApplier) shardMigrated(ctx context.Context, cmd *replica.Command) (bool, error) {
	sh := a.t.cfg.Shard
	if !a.inMulti {
		// Everything before the key is applied before the shard waits: a shard waiting in
		// a barrier is not waited for by the others' (that would deadlock two shards
		// importing from each other), so what it processed must already be there.
		if err := a.commitPosition(ctx); err != nil {
			return false, err
		}
		if err := a.wr.Flush(ctx); err != nil {
			return false, err
		}
	}
	if sh.Imported != nil && len(cmd.Args) > 1 {
		sh.Imported(cmd.Args[1])
	}
	if sh.Barrier != nil {
		if err := sh.Barrier(ctx); err != nil {
			return false, fmt.Errorf("wait for the other shards before applying the key migrated into shard %s: %w", sh.ID, err)
		}
	}
	args := make([][]byte, 0, len(cmd.Args)+1)
	args = append(args, []byte("RESTORE"))
	args = append(args, cmd.Args[1:]...)
	replace := false
	for _, o := range cmd.Args[min(4, len(cmd.Args)):] {
		if bytes.EqualFold(o, []byte("replace")) {
			replace = true
		}
	}
	if !replace {
		// The destination may hold the key already: the exporting shard wrote it there.
		args = append(args, []byte("REPLACE"))
	}
	cmd.Name, cmd.Args = "restore", args
	sh.stats.migrated.Add(1)
	return true, nil
}

// shardFlush applies FLUSHALL or FLUSHDB as a deletion of the shard's keys, after
// everything before it is committed and acknowledged; the command itself is not forwarded.
// The position after it is committed right after the deletion: a crash in between replays
// the command, and the deletion again finds nothing the shard wrote after it.
func (a *streamApplier) shardFlush(ctx context.Context, cmd *replica.Command) (bool, error) {
	t := a.t
	sh := t.cfg.Shard
	if f := t.cfg.Filter; f != nil {
		if _, ok := f.KeepDB(cmd.DB); !ok || !f.KeepCommand(cmd.Name) {
			return true, nil // the filter drops it
		}
	}
	if a.inMulti {
		return false, fmt.Errorf("%s inside a transaction or script on source shard %s: its keys cannot be deleted on the shared destination at that point of the transaction; run it outside MULTI/EXEC and scripts, or exclude it with --exclude-commands %s and empty the destination yourself",
			cmd.Name, sh.ID, cmd.Name)
	}
	if err := a.commitPosition(ctx); err != nil {
		return false, err
	}
	if err := a.wr.Flush(ctx); err != nil {
		return false, err
	}
	n, err := t.deleteShardKeys(ctx)
	if err != nil {
		return false, fmt.Errorf("delete shard %s's keys on destination %s for %s: %w", sh.ID, t.cfg.Target.Addr, cmd.Name, err)
	}
	// The position past the command is committed before anything newer is written: a
	// replay must never repeat the deletion after a later write has committed (on a
	// cluster, a later slot's transaction would be skipped by its checkpoint and its keys
	// stay deleted).
	a.pos = replica.Position{ReplID: a.replID, Offset: cmd.Offset, DB: cmd.DB}
	if err := a.commit(ctx); err != nil {
		return false, err
	}
	if err := a.wr.Flush(ctx); err != nil {
		return false, err
	}
	t.log.Info("the source shard was flushed: deleted its keys on the destination", "command", cmd.Name,
		"offset", cmd.Offset, "keys", n)
	return false, nil
}

// shardFunction makes the FUNCTION commands of several shards' streams idempotent on the
// one destination.
func (a *streamApplier) shardFunction(ctx context.Context, cmd *replica.Command) (bool, error) {
	if len(cmd.Args) < 2 {
		return true, nil
	}
	sub := cmd.Args[1]
	switch {
	case bytes.EqualFold(sub, []byte("load")):
		// FUNCTION LOAD [REPLACE] code
		if len(cmd.Args) == 3 {
			cmd.Args = [][]byte{cmd.Args[0], cmd.Args[1], []byte("REPLACE"), cmd.Args[2]}
		}
	case bytes.EqualFold(sub, []byte("restore")):
		// FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]
		switch {
		case len(cmd.Args) == 3:
			cmd.Args = [][]byte{cmd.Args[0], cmd.Args[1], cmd.Args[2], []byte("REPLACE")}
		case len(cmd.Args) == 4 && bytes.EqualFold(cmd.Args[3], []byte("append")):
			cmd.Args = [][]byte{cmd.Args[0], cmd.Args[1], cmd.Args[2], []byte("REPLACE")}
		}
	case bytes.EqualFold(sub, []byte("delete")) && len(cmd.Args) == 3:
		return a.shardFunctionDelete(ctx, cmd)
	}
	return true, nil
}

// shardFunctionDelete applies FUNCTION DELETE only when the destination still has the
// library: another shard's stream deletes the same library, and a replay after a crash
// repeats it. Under Exclusive, after everything before it is acknowledged, it checks and
// deletes on its own connection; the command itself is not forwarded.
func (a *streamApplier) shardFunctionDelete(ctx context.Context, cmd *replica.Command) (bool, error) {
	t := a.t
	sh := t.cfg.Shard
	lib := string(cmd.Args[2])
	if a.inMulti {
		return false, fmt.Errorf("FUNCTION DELETE %q inside a transaction on source shard %s: cannot be made idempotent across the shards there; run it outside MULTI/EXEC", lib, sh.ID)
	}
	mu := sh.exclusive()
	mu.Lock()
	defer mu.Unlock()
	if err := a.commitPosition(ctx); err != nil {
		return false, err
	}
	if err := a.wr.Flush(ctx); err != nil {
		return false, err
	}
	addrs := []string{t.cfg.Target.Addr}
	if t.cluster {
		var err error
		if addrs, err = cluster.MasterAddrs(ctx, t.cfg.Target); err != nil {
			return false, err
		}
	}
	deleted := false
	for _, addr := range addrs {
		o := t.cfg.Target
		o.Addr, o.DB = addr, 0
		c, err := redis.Dial(ctx, o)
		if err != nil {
			return false, fmt.Errorf("FUNCTION DELETE %q: connect to destination %s: %w", lib, addr, err)
		}
		_, err = c.Do(ctx, "FUNCTION", "DELETE", lib)
		c.Close()
		var re *resp.Error
		switch {
		case err == nil:
			deleted = true
		case errors.As(err, &re) && bytes.Contains(bytes.ToLower([]byte(re.Msg)), []byte("library not found")):
		default:
			return false, fmt.Errorf("FUNCTION DELETE %q on destination %s: %w", lib, addr, err)
		}
	}
	if !deleted {
		sh.stats.fnSkipped.Add(1)
	}
	return false, nil
}

// deleteShardKeys deletes the destination keys in the shard's slots (Ferry's own
// excepted) that no other source node holds now, in the database source database 0 maps
// to; it returns how many it deleted. Keys another node holds are those a slot migration
// moved there: the other shard's stream keeps them. On a cluster destination the shard's
// per-slot checkpoints go first: a replay from the task's checkpoint, which repeats the
// deletion, must then re-apply everything after it instead of skipping what a slot held.
func (t *Task) deleteShardKeys(ctx context.Context) (int64, error) {
	sh := t.cfg.Shard
	db := 0
	if f := t.cfg.Filter; f != nil {
		d, ok := f.KeepDB(0)
		if !ok {
			return 0, nil
		}
		db = d
	}
	var n int64
	var err error
	if t.cluster {
		if err := t.deleteShardPositionsCluster(ctx); err != nil {
			return 0, err
		}
		n, err = t.deleteShardKeysCluster(ctx)
	} else {
		n, err = t.deleteShardKeysStandalone(ctx, db)
	}
	sh.stats.flushes.Add(1)
	sh.stats.flushedKeys.Add(n)
	return n, err
}

// shardScanCount is the COUNT of the SCANs and the batch of keys looked up and deleted
// together.
const shardScanCount = 1000

// deleteShardKeysStandalone scans database db of a standalone destination.
func (t *Task) deleteShardKeysStandalone(ctx context.Context, db int) (int64, error) {
	sh := t.cfg.Shard
	o := t.cfg.Target
	o.DB = db
	c, err := redis.Dial(ctx, o)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var n int64
	cursor := "0"
	prefix := []byte(KeyPrefix)
	for {
		v, err := c.Do(ctx, "SCAN", cursor, "COUNT", shardScanCount)
		if err != nil {
			return n, err
		}
		if len(v.Elems) != 2 {
			return n, errors.New("SCAN: unexpected reply")
		}
		cursor = v.Elems[0].Text()
		var cand [][]byte
		for _, k := range v.Elems[1].Elems {
			if !bytes.HasPrefix(k.Str, prefix) && sh.Slots(command.Slot(k.Str)) {
				cand = append(cand, k.Str)
			}
		}
		d, _, err := t.unlinkUnlessElsewhere(ctx, c, cand)
		n += d
		if err != nil {
			return n, err
		}
		if cursor == "0" {
			return n, nil
		}
	}
}

// deleteShardKeysCluster deletes slot by slot on the masters of a cluster destination:
// COUNTKEYSINSLOT for every slot of the shard a master serves, then GETKEYSINSLOT and
// UNLINK (one slot at a time, as a cluster requires) where there are keys.
func (t *Task) deleteShardKeysCluster(ctx context.Context) (int64, error) {
	sh := t.cfg.Shard
	o := t.cfg.Target
	o.DB = 0
	seed, err := redis.Dial(ctx, o)
	if err != nil {
		return 0, err
	}
	topo, err := cluster.Fetch(ctx, seed, o.TLS != nil)
	seed.Close()
	if err != nil {
		return 0, err
	}
	var n int64
	for _, s := range topo.Shards {
		var slots []uint16
		for _, r := range s.Slots {
			for slot := int(r.First); slot <= int(r.Last); slot++ {
				if sh.Slots(uint16(slot)) {
					slots = append(slots, uint16(slot))
				}
			}
		}
		if len(slots) == 0 {
			continue
		}
		mo := o
		mo.Addr = s.Master.Addr
		c, err := redis.Dial(ctx, mo)
		if err != nil {
			return n, fmt.Errorf("connect to destination master %s: %w", mo.Addr, err)
		}
		d, err := t.deleteSlots(ctx, c, slots)
		c.Close()
		n += d
		if err != nil {
			return n, fmt.Errorf("destination master %s: %w", mo.Addr, err)
		}
	}
	return n, nil
}

// deleteSlots deletes the keys of slots on one cluster master.
func (t *Task) deleteSlots(ctx context.Context, c *redis.Conn, slots []uint16) (int64, error) {
	counts := make([]int64, len(slots))
	for start := 0; start < len(slots); start += shardScanCount {
		part := slots[start:min(start+shardScanCount, len(slots))]
		for _, s := range part {
			if err := c.Send("CLUSTER", "COUNTKEYSINSLOT", s); err != nil {
				return 0, err
			}
		}
		for i := range part {
			v, err := c.Receive()
			if err != nil {
				return 0, fmt.Errorf("CLUSTER COUNTKEYSINSLOT %d: %w", part[i], err)
			}
			counts[start+i] = v.Int
		}
	}
	var n int64
	prefix := []byte(KeyPrefix)
	for i, slot := range slots {
		if counts[i] == 0 {
			continue
		}
		// Kept keys (Ferry's, those another source node holds) stay in the slot, so each
		// round asks for as many as the last round kept plus a batch; a round that returns
		// fewer keys than it asked for has seen the whole slot.
		kept := 0
		for {
			want := kept + shardScanCount
			v, err := c.Do(ctx, "CLUSTER", "GETKEYSINSLOT", slot, want)
			if err != nil {
				return n, fmt.Errorf("CLUSTER GETKEYSINSLOT %d: %w", slot, err)
			}
			var cand [][]byte
			for _, k := range v.Elems {
				if !bytes.HasPrefix(k.Str, prefix) {
					cand = append(cand, k.Str)
				}
			}
			d, tried, err := t.unlinkUnlessElsewhere(ctx, c, cand)
			n += d
			if err != nil {
				return n, err
			}
			kept = len(v.Elems) - tried
			if len(v.Elems) < want {
				break
			}
		}
	}
	return n, nil
}

// unlinkUnlessElsewhere deletes the keys (all on the connection's node, and on a cluster
// all of one slot) that no other source node holds. It returns how many the node deleted
// and how many it was asked to.
func (t *Task) unlinkUnlessElsewhere(ctx context.Context, c *redis.Conn, keys [][]byte) (deleted int64, tried int, err error) {
	if len(keys) == 0 {
		return 0, 0, nil
	}
	elsewhere, err := t.shardProbe().elsewhere(ctx, keys)
	if err != nil {
		return 0, 0, fmt.Errorf("ask the source which keys moved to another shard: %w", err)
	}
	args := []any{"UNLINK"}
	for i, k := range keys {
		if !elsewhere[i] {
			args = append(args, k)
		}
	}
	if len(args) == 1 {
		return 0, 0, nil
	}
	v, err := c.Do(ctx, args...)
	if err != nil {
		return 0, 0, err
	}
	return v.Int, len(args) - 1, nil
}

// shardProbe returns the task's connections for asking the source about keys, pointed at
// the master the current session attached to.
func (t *Task) shardProbe() *sourceProbe {
	sh := t.cfg.Shard
	t.mu.Lock()
	src := t.source
	t.mu.Unlock()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.probe == nil {
		sh.probe = &sourceProbe{conns: make(map[string]*redis.Conn)}
	}
	sh.probe.retarget(src)
	return sh.probe
}

// sourceProbe asks a cluster source where keys live. Used by one goroutine at a time (the
// session's), so it needs no lock of its own.
type sourceProbe struct {
	opts  redis.Options // the shard's master: address and credentials
	conns map[string]*redis.Conn
}

// maxProbeHops bounds how many redirections a key lookup follows (an ASK, then a MOVED
// while the migration finishes, …).
const maxProbeHops = 5

// probeRetry is the pause before asking again when the source answers TRYAGAIN or
// CLUSTERDOWN (a slot in the middle of changing hands); probeRetries bounds the attempts.
const (
	probeRetry   = 50 * time.Millisecond
	probeRetries = 200
)

func (p *sourceProbe) retarget(master redis.Options) {
	p.opts = master
	p.opts.DB = 0
}

func (p *sourceProbe) conn(ctx context.Context, addr string) (*redis.Conn, error) {
	if c := p.conns[addr]; c != nil {
		return c, nil
	}
	o := p.opts
	o.Addr = addr
	c, err := redis.Dial(ctx, o)
	if err != nil {
		return nil, err
	}
	p.conns[addr] = c
	return c, nil
}

func (p *sourceProbe) drop(addr string) {
	if c := p.conns[addr]; c != nil {
		c.Close()
		delete(p.conns, addr)
	}
}

func (p *sourceProbe) close() {
	for addr := range p.conns {
		p.drop(addr)
	}
}

// lookup is one key being located.
type lookup struct {
	i      int
	addr   string
	asking bool
}

// elsewhere reports for each key whether a source node other than the shard's own holds
// it now. It asks the shard's master (EXISTS): a slot it serves answers there (the key is
// the shard's, or nobody's); a slot it is migrating away answers -ASK for keys already
// moved, and a slot it no longer serves -MOVED; those are asked again where the reply
// points (with ASKING after -ASK).
func (p *sourceProbe) elsewhere(ctx context.Context, keys [][]byte) ([]bool, error) {
	out := make([]bool, len(keys))
	own := map[string]bool{p.opts.Addr: true}
	roleChecked := false
	todo := make([]lookup, len(keys))
	for i := range keys {
		todo[i] = lookup{i: i, addr: p.opts.Addr}
	}
	retries := 0
	for hop := 0; len(todo) > 0; hop++ {
		if hop > maxProbeHops+retries {
			return nil, fmt.Errorf("key %q: still redirected after %d hops (the slot keeps changing hands)", keys[todo[0].i], maxProbeHops)
		}
		var next []lookup
		retry := false
		byAddr := make(map[string][]lookup)
		var order []string
		for _, l := range todo {
			if byAddr[l.addr] == nil {
				order = append(order, l.addr)
			}
			byAddr[l.addr] = append(byAddr[l.addr], l)
		}
		for _, addr := range order {
			ls := byAddr[addr]
			replies, err := p.exists(ctx, addr, keys, ls)
			if err != nil {
				return nil, err
			}
			for j, r := range replies {
				l := ls[j]
				var re *resp.Error
				switch {
				case r.err == nil:
					out[l.i] = r.v.Int > 0 && !own[addr]
				case errors.As(r.err, &re):
					_, to, isAsk := re.IsAsk()
					_, moved, isMoved := re.IsMoved()
					switch {
					case isAsk:
						next = append(next, lookup{i: l.i, addr: to, asking: true})
					case isMoved:
						if own[addr] && !roleChecked {
							// The shard's master may have been demoted by a failover: its own
							// promoted replica is then not "another node".
							roleChecked = true
							if m, ok := p.masterOf(ctx, addr); ok {
								own[m] = true
							}
						}
						next = append(next, lookup{i: l.i, addr: moved})
					case re.IsTryAgain() || re.IsClusterDown():
						next = append(next, l)
						retry = true
					default:
						return nil, fmt.Errorf("EXISTS %q on source %s: %w", keys[l.i], addr, re)
					}
				default:
					return nil, r.err
				}
			}
		}
		if retry {
			if retries++; retries > probeRetries {
				return nil, fmt.Errorf("the source keeps answering TRYAGAIN/CLUSTERDOWN for key %q", keys[next[0].i])
			}
			t := time.NewTimer(probeRetry)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
		}
		todo = next
	}
	return out, nil
}

type probeReply struct {
	v   resp.Value
	err error
}

// exists sends [ASKING] EXISTS key for each lookup to addr, pipelined.
func (p *sourceProbe) exists(ctx context.Context, addr string, keys [][]byte, ls []lookup) ([]probeReply, error) {
	c, err := p.conn(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("connect to source node %s: %w", addr, err)
	}
	for _, l := range ls {
		if l.asking {
			if err := c.Send("ASKING"); err != nil {
				p.drop(addr)
				return nil, err
			}
		}
		if err := c.Send("EXISTS", keys[l.i]); err != nil {
			p.drop(addr)
			return nil, err
		}
	}
	out := make([]probeReply, len(ls))
	for i, l := range ls {
		if l.asking {
			if _, err := c.Receive(); err != nil {
				if !isReplyError(err) {
					p.drop(addr)
					return nil, fmt.Errorf("ASKING on source node %s: %w", addr, err)
				}
			}
		}
		v, err := c.Receive()
		if err != nil && !isReplyError(err) {
			p.drop(addr)
			return nil, fmt.Errorf("EXISTS on source node %s: %w", addr, err)
		}
		out[i] = probeReply{v: v, err: err}
	}
	return out, nil
}

// masterOf returns the master of the node at addr when that node is a replica (ROLE).
func (p *sourceProbe) masterOf(ctx context.Context, addr string) (string, bool) {
	c, err := p.conn(ctx, addr)
	if err != nil {
		return "", false
	}
	v, err := c.Do(ctx, "ROLE")
	if err != nil {
		if !isReplyError(err) {
			p.drop(addr)
		}
		return "", false
	}
	if len(v.Elems) < 3 || v.Elems[0].Text() != "slave" {
		return "", false
	}
	return net.JoinHostPort(v.Elems[1].Text(), strconv.FormatInt(v.Elems[2].Int, 10)), true
}
