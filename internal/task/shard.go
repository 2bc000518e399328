package task

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
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
type Shard struct {
	// ID names the shard in logs and in the status (e.g. "0-5460").
	ID string
	// Slots says whether a hash slot belongs to the shard.
	Slots func(slot uint16) bool
	// Resolve returns the node to attach to now: the master serving the shard's slots.
	Resolve func(ctx context.Context) (redis.Options, error)
	// Owned: the orchestrator found the destination empty (--existing block) and the task
	// owns the data it writes, so a full resync may delete the shard's keys.
	Owned bool
	// HeartbeatKey is a key under KeyPrefix whose slot the shard serves.
	HeartbeatKey string
}

// errShardNotImplemented marks the hooks of shard tasks not implemented yet.
var errShardNotImplemented = errors.New("not implemented yet for cluster sources")

// resolveShardSource is resolveSource for a shard task.
func (t *Task) resolveShardSource(ctx context.Context) (redis.Options, error) {
	return t.cfg.Shard.Resolve(ctx)
}

// flushShard is flushDestination for a shard task: it deletes the destination keys in
// the shard's slots (and the task's positions), nothing else.
func (t *Task) flushShard(ctx context.Context, ctrl *redis.Conn, why string) error {
	return fmt.Errorf("delete shard %s's earlier data for a full resync (%s): %w", t.cfg.Shard.ID, why, errShardNotImplemented)
}

// shardCommand handles, for a shard task, the stream commands whose effect reaches beyond
// the shard on a shared destination. It returns whether cmd is still to be forwarded
// as it is.
func (a *streamApplier) shardCommand(ctx context.Context, cmd *replica.Command) (forward bool, err error) {
	return true, nil
}
