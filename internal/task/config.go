// Package task runs one sync task: it wires the source replica, the snapshot decoder, the
// filters and the destination writer, and owns the task's lifecycle, heartbeat and status.
// The CLI runs one task in the foreground; the service will run many with the same code.
package task

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/snapshot"
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

// Defaults for Config fields left zero.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultBigKeyThreshold   = snapshot.DefaultBigKeyThreshold
	// KeyPrefix is the namespace of Ferry's own keys (heartbeats on the source,
	// checkpoints on the destination). Keys under it are never synced.
	KeyPrefix = "ferry:"
)

// Config describes one task.
type Config struct {
	// Name identifies the task; running the same command again is the same task. Empty:
	// derived from the source and target addresses (DefaultName).
	Name   string
	Source redis.Options
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
	Logger            *slog.Logger
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// heartbeatKey is the key the task writes on the source every HeartbeatInterval.
func (c Config) heartbeatKey() string { return KeyPrefix + "hb:" + c.Name }
