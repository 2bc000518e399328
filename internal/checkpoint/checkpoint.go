// Package checkpoint is what a sync task keeps on its destination so that it can resume
// after a crash, a broken link or a restart of either side:
//
//   - the checkpoint, "<replid> <offset> <db>": the source position whose effects the
//     destination holds. In exactly-once delivery it is written in the same MULTI/EXEC as
//     the commands it covers, so data and position can never disagree;
//   - the full-sync progress, "<replid> <offset> <keys>": the snapshot being applied and
//     how many of its keys, in RDB order, the destination has acknowledged;
//   - the task marker, "existing=<mode>": written before the task's first write, it says
//     the task has data there, and whether it owns the destination (it started on empty
//     databases with --existing block) and may therefore delete it for a clean resync.
//
// The keys live in DB 0 under Prefix, which a task never syncs and the existing-keys check
// ignores. Keeping them on the destination rather than on Ferry's disk means a worker
// holds no state another cannot pick up, and a destination restored from a backup brings
// its own, consistent, position.
package checkpoint

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
)

const (
	// Prefix is the namespace of Ferry's own keys.
	Prefix = "ferry:"
	// DB is the destination database that holds a task's keys.
	DB = 0
)

// Keys are the names of one task's keys.
type Keys struct {
	Checkpoint string // ferry:ckpt:<task>
	Full       string // ferry:full:<task>
	Marker     string // ferry:task:<task>
}

// KeysFor returns the key names of task.
func KeysFor(task string) Keys {
	return Keys{
		Checkpoint: Prefix + "ckpt:" + task,
		Full:       Prefix + "full:" + task,
		Marker:     Prefix + "task:" + task,
	}
}

// Full is the progress of a full sync: the snapshot's position in the source's stream and
// how many keys of it (in RDB order, Ferry's own keys not counted) the destination has
// acknowledged, every one before them included.
type Full struct {
	ReplID string
	Offset int64
	Keys   int64
}

// String renders f as "<replid> <offset> <keys>"; ParseFull reads it back.
func (f Full) String() string {
	return f.ReplID + " " + strconv.FormatInt(f.Offset, 10) + " " + strconv.FormatInt(f.Keys, 10)
}

// Position is the snapshot's position (DB 0: a source selects a DB before its first
// command after a snapshot).
func (f Full) Position() replica.Position {
	return replica.Position{ReplID: f.ReplID, Offset: f.Offset}
}

// ParseFull parses the "<replid> <offset> <keys>" form of Full.String.
func ParseFull(s string) (Full, error) {
	// The same shape as a position, with a key count where the DB is.
	p, err := replica.ParsePosition(s)
	if err != nil {
		return Full{}, fmt.Errorf("parse full-sync progress %q: want \"<replid> <offset> <keys>\"", s)
	}
	keys, err := strconv.ParseInt(strings.Fields(s)[2], 10, 64)
	if err != nil || keys < 0 {
		return Full{}, fmt.Errorf("parse full-sync progress %q: key count is not a non-negative integer", s)
	}
	return Full{ReplID: p.ReplID, Offset: p.Offset, Keys: keys}, nil
}

// Existing values in a Marker.
const (
	ExistingBlock     = "block"
	ExistingOverwrite = "overwrite"
)

// Marker records how a task first started on a destination.
type Marker struct {
	// Existing is the task's --existing mode at its first start: "block" means it
	// started on empty databases, so every key there (but Ferry's own) is its data.
	Existing string
}

// Owns reports whether the task owns the destination's data: it may delete it to resync
// from scratch without losing anything that is not the source's.
func (m Marker) Owns() bool { return m.Existing == ExistingBlock }

// String renders m as space-separated name=value fields.
func (m Marker) String() string { return "existing=" + m.Existing }

// ParseMarker parses Marker.String. Unknown fields are ignored, so later versions can add
// some.
func ParseMarker(s string) (Marker, error) {
	var m Marker
	for _, f := range strings.Fields(s) {
		name, value, ok := strings.Cut(f, "=")
		if !ok {
			return Marker{}, fmt.Errorf("parse task marker %q: field %q is not name=value", s, f)
		}
		if name == "existing" {
			if value != ExistingBlock && value != ExistingOverwrite {
				return Marker{}, fmt.Errorf("parse task marker %q: existing=%q is not block or overwrite", s, value)
			}
			m.Existing = value
		}
	}
	if m.Existing == "" {
		return Marker{}, fmt.Errorf("parse task marker %q: no existing= field", s)
	}
	return m, nil
}

// State is what a destination holds for a task. A zero field means the key is absent.
type State struct {
	Marker     *Marker
	Checkpoint replica.Position
	Full       *Full
}

// Load reads a task's keys from the destination through c, leaving DB selected.
func Load(ctx context.Context, c *redis.Conn, task string) (State, error) {
	k := KeysFor(task)
	if _, err := c.Do(ctx, "SELECT", DB); err != nil {
		return State{}, fmt.Errorf("read the checkpoint of task %s: select db %d: %w", task, DB, err)
	}
	v, err := c.Do(ctx, "MGET", k.Checkpoint, k.Full, k.Marker)
	if err != nil {
		return State{}, fmt.Errorf("read the checkpoint of task %s: %w", task, err)
	}
	if len(v.Elems) != 3 {
		return State{}, fmt.Errorf("read the checkpoint of task %s: MGET returned %d values for 3 keys", task, len(v.Elems))
	}
	var st State
	if e := v.Elems[0]; !e.Null {
		if st.Checkpoint, err = replica.ParsePosition(string(e.Str)); err != nil {
			return State{}, fmt.Errorf("key %s on the destination: %w (delete it to start the task over)", k.Checkpoint, err)
		}
	}
	if e := v.Elems[1]; !e.Null {
		f, err := ParseFull(string(e.Str))
		if err != nil {
			return State{}, fmt.Errorf("key %s on the destination: %w (delete it to start the full sync over)", k.Full, err)
		}
		st.Full = &f
	}
	if e := v.Elems[2]; !e.Null {
		m, err := ParseMarker(string(e.Str))
		if err != nil {
			return State{}, fmt.Errorf("key %s on the destination: %w", k.Marker, err)
		}
		st.Marker = &m
	}
	return st, nil
}
