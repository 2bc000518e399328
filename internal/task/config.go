// Package task runs one sync task: it wires the source replica, the snapshot decoder, the
// filters and the destination writer, and owns the task's lifecycle, heartbeat and status.
// The CLI runs one task in the foreground; the service will run many with the same code.
//
// # Resuming
//
// A task keeps its position on the destination (package checkpoint): in exactly-once
// delivery every batch of the stream is MULTI … SET ferry:ckpt:<task> "<replid> <offset>
// <db>" EXEC, so the data and the position commit together. Run is a loop of sessions;
// each reads that checkpoint, attaches to the source with PSYNC from it and applies what
// follows, so a crash of Ferry, a broken link and a restart of either side all resume the
// same way. The paths, logged ("sync path") and counted (ferry_sync_path_total):
//
//   - partial: the source answers +CONTINUE (a new replication ID after a failover or a
//     restart is taken over);
//   - spool: a full sync was interrupted after its RDB was copied to the data directory;
//     PSYNC from the snapshot's offset, then the copy is applied from the last key the
//     destination acknowledged (ferry:full:<task> counts them);
//   - full: nothing to resume from, or the source cannot continue. A destination holding
//     the task's earlier data is emptied first when the task owns it (ferry:task:<task>
//     says it started with --existing block on empty databases), by OnFullResync.
//
// Before reading the checkpoint a session closes the destination connections of earlier
// writers (a killed process's batches may still wait there unexecuted), and the writer's
// Reconcile reads it again after any reconnect, so a batch whose reply was lost is never
// applied twice.
package task

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/throttle"
)

// Mode says which phases a task runs.
type Mode string

const (
	// ModeFullIncr applies the snapshot, then the live stream until stopped.
	ModeFullIncr Mode = "full+incr"
	// ModeFull applies the snapshot and stops once the destination has acknowledged it.
	ModeFull Mode = "full"
	// ModeIncr applies only the live stream. The source still sends a snapshot (a replica
	// cannot learn the selected DB of a stream it joins mid-way otherwise); Ferry reads and
	// discards it without writing it.
	ModeIncr Mode = "incr"
)

// ParseMode parses a --mode value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeFullIncr, ModeFull, ModeIncr:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want full+incr, full or incr", s)
}

// Existing says what to do with keys the destination already holds.
type Existing string

const (
	// ExistingBlock refuses to start when a destination DB the task writes holds keys
	// ("precheck and block").
	ExistingBlock Existing = "block"
	// ExistingOverwrite proceeds and replaces what it meets ("ignore errors and continue").
	ExistingOverwrite Existing = "overwrite"
)

// ParseExisting parses an --existing value.
func ParseExisting(s string) (Existing, error) {
	switch e := Existing(s); e {
	case ExistingBlock, ExistingOverwrite:
		return e, nil
	}
	return "", fmt.Errorf("existing %q: want block or overwrite", s)
}

// Delivery says what a crash, a broken link or a restart may do to the commands in flight.
type Delivery string

const (
	// DeliveryExactlyOnce applies the stream in MULTI … SET ckpt … EXEC batches: the data
	// and its position commit together, so after any failure each command is applied once.
	DeliveryExactlyOnce Delivery = "exactly-once"
	// DeliveryAtLeastOnce pipelines the commands as they come and writes the checkpoint
	// after them: faster, but after a failure the commands between the checkpoint and the
	// failure are applied again (INCR, RPUSH, APPEND twice).
	DeliveryAtLeastOnce Delivery = "at-least-once"
)

// ParseDelivery parses a --delivery value.
func ParseDelivery(s string) (Delivery, error) {
	switch d := Delivery(s); d {
	case DeliveryExactlyOnce, DeliveryAtLeastOnce:
		return d, nil
	}
	return "", fmt.Errorf("delivery %q: want exactly-once or at-least-once", s)
}

// FullResync says what to do when a task that has written to the destination must sync
// from scratch (the source no longer has the stream from the task's checkpoint).
type FullResync string

const (
	// FullResyncAuto is FullResyncFlush when the task owns the destination (it started
	// on empty databases with --existing block), FullResyncFail otherwise.
	FullResyncAuto FullResync = ""
	// FullResyncFlush deletes the keys of the synced databases (Ferry's own kept), then
	// resyncs: no stale key and no duplicated list element survives.
	FullResyncFlush FullResync = "flush"
	// FullResyncFail stops the task with an explanation.
	FullResyncFail FullResync = "fail"
)

// ParseFullResync parses an --on-full-resync value; "" and "auto" mean FullResyncAuto.
func ParseFullResync(s string) (FullResync, error) {
	switch s {
	case "", "auto":
		return FullResyncAuto, nil
	case string(FullResyncFlush), string(FullResyncFail):
		return FullResync(s), nil
	}
	return "", fmt.Errorf("on-full-resync %q: want flush or fail (default: flush when the task owns the destination, fail otherwise)", s)
}

// Defaults for Config fields left zero.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultBigKeyThreshold   = snapshot.DefaultBigKeyThreshold
	// DefaultRetryTimeout is how long lost connections are retried before the task fails:
	// 12 hours, as DTS's 720 minutes, to ride out a night-long outage of either side.
	DefaultRetryTimeout = 12 * time.Hour
	// DefaultSourceTimeout is how long the source may send nothing (no data, no PING, no
	// keepalive newline) before its link counts as dead: Redis's own repl-timeout.
	DefaultSourceTimeout = replica.DefaultSourceTimeout
	// DefaultBatchCommands, DefaultBatchBytes and DefaultBatchDelay bound one checkpoint
	// batch. A batch also closes as soon as the stream runs dry, so under light load each
	// command is committed at once; the bounds matter under a backlog, where bigger
	// batches amortise MULTI/EXEC and the checkpoint write.
	DefaultBatchCommands = 1000
	DefaultBatchBytes    = 4 << 20
	DefaultBatchDelay    = 50 * time.Millisecond
	// DefaultFullCheckpointInterval is how often a full sync records how many keys the
	// destination has acknowledged, for a restart to resume from there.
	DefaultFullCheckpointInterval = 250 * time.Millisecond
	// KeyPrefix is the namespace of Ferry's own keys (heartbeats on the source,
	// checkpoints on the destination). Keys under it are never synced.
	KeyPrefix = checkpoint.Prefix
)

// Config describes one task.
type Config struct {
	// Name identifies the task; running the same command again is the same task. Empty:
	// derived from the source and target addresses (DefaultName).
	Name   string
	Source redis.Options
	// Sentinel, when its Addr is set, is asked before every session where the master
	// named SentinelMaster is (SENTINEL GET-MASTER-ADDR-BY-NAME); Source then gives the
	// credentials and TLS settings of that master, and its Addr is not used. A failover
	// that Sentinel performs is thus followed: the next session attaches to the promoted
	// node and continues with PSYNC2 when it can.
	Sentinel       redis.Options
	SentinelMaster string
	// Shard, when set, narrows the task to one master of a cluster source (see Shard).
	Shard  *Shard
	Target redis.Options
	// Mode: default ModeFullIncr.
	Mode Mode
	// Existing: default ExistingBlock.
	Existing Existing
	// DataDir holds the replication spool. Required.
	DataDir string
	// ForwardPublish forwards PUBLISH/SPUBLISH from the stream; off by default because a
	// message published on the source was already delivered to the source's subscribers.
	ForwardPublish bool
	// BigKeyThreshold: values larger than this many bytes are written as chunked commands.
	// Default DefaultBigKeyThreshold.
	BigKeyThreshold int64
	// HeartbeatInterval: how often the heartbeat key is written to the source. Default 1 s.
	HeartbeatInterval time.Duration
	// Filter selects and maps what is copied (DBs, key patterns, types, commands); nil
	// copies everything as it is. See docs/filters.md.
	Filter *filter.Filter
	// Throttle bounds the full and the incremental phase in ops and bytes per second;
	// the zero value is unlimited. Limiters() changes the limits while the task runs.
	Throttle throttle.Config
	// Delivery: default DeliveryExactlyOnce.
	Delivery Delivery
	// OnFullResync: default FullResyncAuto.
	OnFullResync FullResync
	// RetryTimeout: how long lost source or destination connections are retried, with
	// backoff, before the task fails. The clock restarts whenever data is applied.
	// Default DefaultRetryTimeout (12 h).
	RetryTimeout time.Duration
	// SourceTimeout: no byte from the source for this long means its link is dead (a
	// half-open connection). Default DefaultSourceTimeout (60 s).
	SourceTimeout time.Duration
	// BatchCommands, BatchBytes and BatchDelay bound a checkpoint batch of the stream.
	// Defaults DefaultBatchCommands, DefaultBatchBytes, DefaultBatchDelay.
	BatchCommands int
	BatchBytes    int
	BatchDelay    time.Duration
	// FullCheckpointInterval: default DefaultFullCheckpointInterval.
	FullCheckpointInterval time.Duration
	Logger                 *slog.Logger
	// Registerer receives the task's metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// DefaultName derives a stable task name from the two addresses (not the passwords), so
// the same command line names the same task.
func DefaultName(source, target redis.Options) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s|%d|%s|%d", source.Addr, source.DB, target.Addr, target.DB)))
	return "t" + hex.EncodeToString(sum[:6])
}

func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = DefaultName(c.Source, c.Target)
	}
	if !nameRE.MatchString(c.Name) {
		return c, fmt.Errorf("task name %q: use 1-64 letters, digits, '.', '_' or '-'", c.Name)
	}
	if c.Mode == "" {
		c.Mode = ModeFullIncr
	}
	if c.Sentinel.Addr != "" && c.SentinelMaster == "" {
		return c, fmt.Errorf("task %s: a Sentinel needs the name of the master to ask it about", c.Name)
	}
	if c.Existing == "" {
		c.Existing = ExistingBlock
	}
	if c.DataDir == "" {
		return c, fmt.Errorf("task %s: a data directory is required for the replication spool", c.Name)
	}
	if c.BigKeyThreshold <= 0 {
		c.BigKeyThreshold = DefaultBigKeyThreshold
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.Delivery == "" {
		c.Delivery = DeliveryExactlyOnce
	}
	if _, err := ParseDelivery(string(c.Delivery)); err != nil {
		return c, err
	}
	if _, err := ParseFullResync(string(c.OnFullResync)); err != nil {
		return c, err
	}
	if c.RetryTimeout <= 0 {
		c.RetryTimeout = DefaultRetryTimeout
	}
	if c.SourceTimeout <= 0 {
		c.SourceTimeout = DefaultSourceTimeout
	}
	if c.BatchCommands <= 0 {
		c.BatchCommands = DefaultBatchCommands
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.BatchDelay <= 0 {
		c.BatchDelay = DefaultBatchDelay
	}
	if c.FullCheckpointInterval <= 0 {
		c.FullCheckpointInterval = DefaultFullCheckpointInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// heartbeatKey is the key the task writes on the source every HeartbeatInterval.
func (c Config) heartbeatKey() string {
	if c.Shard != nil && c.Shard.HeartbeatKey != "" {
		return c.Shard.HeartbeatKey
	}
	return KeyPrefix + "hb:" + c.Name
}

// writerName is the client name of the task's writer connections on the destination:
// a resuming task finds the connections of its previous run by it, and closes them
// before reading its checkpoint (see fence).
func (c Config) writerName() string { return "ferry-writer-" + c.Name }
