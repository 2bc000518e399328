package task

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/writer"
)

// How a session started: the resume paths, logged and counted so that tests and operators
// can tell which one ran.
const (
	// pathPartial: PSYNC from the checkpoint, answered +CONTINUE.
	pathPartial = iota
	// pathSpool: a full sync interrupted after its RDB was received resumes from the
	// local copy at the last acknowledged key, with PSYNC from the snapshot's offset.
	pathSpool
	// pathFull: a full sync (first start, or the source could not continue).
	pathFull
	numPaths
)

var pathNames = [numPaths]string{"partial", "spool", "full"}

// Errors that end a session and make the next one resume from the checkpoint.
var (
	// errRewound: the destination holds less than it acknowledged (it restarted without
	// persisting everything, or was restored from an older backup).
	errRewound = errors.New("the destination lost writes it had acknowledged")
	// errBigKeyResend: the destination connection broke while a big key was being
	// written as commands; resending those could duplicate elements.
	errBigKeyResend = errors.New("the destination connection broke while a big key was being written as commands")
)

// claimDestination runs before the first session. On a destination that holds nothing of
// the task it applies the existing-keys check and writes the task marker, which says from
// then on that the data there is the task's (and whether the task owns the destination). On
// one that holds the marker it is a resume: the check would only find the task's own data.
func (t *Task) claimDestination(ctx context.Context) error {
	c, err := t.dialControl(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	saved, err := checkpoint.Load(ctx, c, t.ckptName())
	if err != nil {
		return err
	}
	if saved.Marker != nil {
		t.owned = saved.Marker.Owns()
		attrs := []any{"owner", t.owned}
		if !saved.Checkpoint.IsZero() {
			attrs = append(attrs, "checkpoint", saved.Checkpoint.String())
		}
		if saved.Full != nil {
			attrs = append(attrs, "full_sync", saved.Full.String())
		}
		t.log.Info("resuming the task: the destination holds its data", attrs...)
		return nil
	}
	m := checkpoint.Marker{Existing: checkpoint.ExistingOverwrite}
	if !saved.Checkpoint.IsZero() || saved.Full != nil {
		// Positions without a marker (it was deleted): the task's data is there, but
		// whether it owns the destination is unknown, so it does not.
		t.log.Warn("the destination has this task's checkpoint but not its marker; resuming without owning the destination", "key", t.keys.Marker)
	} else if t.cfg.Shard != nil {
		// The orchestrator checked the destination once for every shard.
		if t.cfg.Shard.Owned {
			m.Existing = checkpoint.ExistingBlock
		}
		t.fresh = true
	} else {
		if err := t.checkDestination(ctx); err != nil {
			return err
		}
		if t.cfg.Existing == ExistingBlock && t.cfg.Mode != ModeIncr {
			m.Existing = checkpoint.ExistingBlock
		}
		t.fresh = true
	}
	if _, err := c.Do(ctx, "SET", t.keys.Marker, m.String()); err != nil {
		return fmt.Errorf("write the task marker %s on destination %s: %w", t.keys.Marker, t.cfg.Target.Addr, err)
	}
	t.owned = m.Owns()
	return nil
}

// checkDestination refuses to write into destination DBs that already hold keys when the
// task runs with --existing block. Ferry's own keys do not count.
func (t *Task) checkDestination(ctx context.Context) error {
	if t.cfg.Existing != ExistingBlock || t.cfg.Mode == ModeIncr {
		return nil
	}
	if t.cluster {
		return t.checkClusterEmpty(ctx)
	}
	return snapshot.CheckEmpty(ctx, t.cfg.Target, KeyPrefix)
}

// resumePoint chooses where a session asks the source to start: the checkpoint, else an
// interrupted full sync whose RDB is still on local disk, else nothing (a full sync).
func (t *Task) resumePoint(saved checkpoint.State) (from replica.Position, path int, spoolFile string) {
	if t.forceFull != "" {
		return replica.Position{}, pathFull, ""
	}
	if t.cfg.Mode != ModeFull && !saved.Checkpoint.IsZero() {
		return saved.Checkpoint, pathPartial, ""
	}
	if saved.Full != nil && t.cfg.Mode != ModeIncr {
		if f, ok := findSnapshot(t.cfg.DataDir, *saved.Full); ok {
			return saved.Full.Position(), pathSpool, f
		}
		t.log.Info("an interrupted full sync has no complete local copy of its snapshot; starting a new full sync",
			"full_sync", saved.Full.String(), "data_dir", t.cfg.DataDir)
	}
	return replica.Position{}, pathFull, ""
}

// tookPath logs and counts how a session started.
func (t *Task) tookPath(path int, from, start replica.Position) {
	t.st.paths[path].Add(1)
	t.st.mu.Lock()
	t.st.path = pathNames[path]
	t.st.mu.Unlock()
	attrs := []any{"path", pathNames[path], "replid", start.ReplID, "offset", start.Offset}
	if !from.IsZero() {
		attrs = append(attrs, "requested", from.String())
	}
	if path == pathFull && !from.IsZero() {
		t.log.Warn("sync path: the source could not continue from the saved position; full resync", attrs...)
		return
	}
	t.log.Info("sync path", attrs...)
}

// resolveSource returns the source to attach to: Config.Source, or with a Sentinel, the
// master it names now.
func (t *Task) resolveSource(ctx context.Context) (redis.Options, error) {
	if t.cfg.Shard != nil {
		return t.resolveShardSource(ctx)
	}
	src := t.cfg.Source
	if t.cfg.Sentinel.Addr == "" {
		return src, nil
	}
	c, err := redis.Dial(ctx, t.cfg.Sentinel)
	if err != nil {
		return src, fmt.Errorf("ask Sentinel %s for master %q: %w", t.cfg.Sentinel.Addr, t.cfg.SentinelMaster, err)
	}
	defer c.Close()
	v, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", t.cfg.SentinelMaster)
	if err != nil {
		return src, fmt.Errorf("ask Sentinel %s for master %q: %w", t.cfg.Sentinel.Addr, t.cfg.SentinelMaster, err)
	}
	if v.Null || len(v.Elems) != 2 {
		// Not retried: a name Sentinel does not know is a configuration error.
		return src, fmt.Errorf("the Sentinel at %s does not know a master named %q (check SENTINEL MASTERS there)", t.cfg.Sentinel.Addr, t.cfg.SentinelMaster)
	}
	src.Addr = net.JoinHostPort(string(v.Elems[0].Str), string(v.Elems[1].Str))
	t.mu.Lock()
	changed := src.Addr != t.source.Addr
	t.mu.Unlock()
	if changed {
		t.log.Info("Sentinel names the source master", "sentinel", t.cfg.Sentinel.Addr, "master", t.cfg.SentinelMaster, "addr", src.Addr)
	}
	return src, nil
}

// prepareFullSync makes the destination ready for a full sync: nothing to do on a fresh
// task; otherwise the task's earlier data must go first (or the task stops, by policy),
// because a snapshot does not delete the keys the source dropped meanwhile.
func (t *Task) prepareFullSync(ctx context.Context, ctrl *redis.Conn, saved checkpoint.State, from replica.Position) error {
	t.full.Keys.Store(0)
	t.full.BigKeys.Store(0)
	t.full.Bytes.Store(0)
	t.full.Functions.Store(0)
	t.full.Skipped.Store(0)
	if t.fresh {
		t.fresh = false
		return nil
	}
	why := "the earlier full sync did not finish"
	if t.forceFull != "" {
		why, t.forceFull = t.forceFull, ""
	} else if !from.IsZero() {
		t.mu.Lock()
		addr := t.source.Addr
		t.mu.Unlock()
		why = fmt.Sprintf("source %s cannot continue from %s (its backlog no longer covers it, or it has another history)", addr, from)
	}
	if t.cfg.Mode == ModeIncr {
		if !saved.Checkpoint.IsZero() {
			return fmt.Errorf("task %s: %s, and in incremental-only mode the changes in between cannot be recovered: resync with --mode full+incr", t.cfg.Name, why)
		}
		return nil
	}
	policy := t.cfg.OnFullResync
	if policy == FullResyncAuto {
		policy = FullResyncFail
		if t.owned {
			policy = FullResyncFlush
		}
	}
	if policy == FullResyncFail {
		hint := "the destination was not empty when the task started (--existing overwrite), so deleting would also delete keys the source never had"
		if t.owned {
			hint = "--on-full-resync fail forbids deleting them"
		}
		return fmt.Errorf("task %s: %s, and the destination holds this task's earlier data: a clean full resync must delete it first (%s); pass --on-full-resync flush to delete the keys of the synced databases and resync",
			t.cfg.Name, why, hint)
	}
	return t.flushDestination(ctx, ctrl, why)
}

// flushDestination deletes the task's earlier data: its positions first (so a crash
// half-way still leads here again), then every key of every database but Ferry's own.
func (t *Task) flushDestination(ctx context.Context, ctrl *redis.Conn, why string) error {
	fail := func(err error) error {
		return fmt.Errorf("delete the task's earlier data on destination %s for a full resync: %w", t.cfg.Target.Addr, err)
	}
	if t.cfg.Shard != nil {
		return t.flushShard(ctx, ctrl, why)
	}
	if t.cluster {
		return t.flushCluster(ctx, ctrl, why)
	}
	if _, err := ctrl.Do(ctx, "DEL", t.keys.Checkpoint, t.keys.Full); err != nil {
		return fail(err)
	}
	info, err := ctrl.Info(ctx, "keyspace")
	if err != nil {
		return fail(err)
	}
	var deleted int64
	var dbs []int
	for name := range info {
		db, err := strconv.Atoi(strings.TrimPrefix(name, "db"))
		if err != nil || !strings.HasPrefix(name, "db") {
			continue
		}
		dbs = append(dbs, db)
		if _, err := ctrl.Do(ctx, "SELECT", db); err != nil {
			return fail(err)
		}
		if db != checkpoint.DB {
			// Only the checkpoint DB holds Ferry's keys: the others go whole.
			n, err := ctrl.Do(ctx, "DBSIZE")
			if err != nil {
				return fail(err)
			}
			if _, err := ctrl.Do(ctx, "FLUSHDB", "ASYNC"); err != nil {
				return fail(err)
			}
			deleted += n.Int
			continue
		}
		n, err := unlinkAllBut(ctx, ctrl, KeyPrefix)
		deleted += n
		if err != nil {
			return fail(err)
		}
	}
	if _, err := ctrl.Do(ctx, "SELECT", checkpoint.DB); err != nil {
		return fail(err)
	}
	// The marker survives (it has Ferry's prefix), but the task may be resyncing a
	// destination that lost everything, marker included.
	m := checkpoint.Marker{Existing: checkpoint.ExistingOverwrite}
	if t.owned {
		m.Existing = checkpoint.ExistingBlock
	}
	if _, err := ctrl.Do(ctx, "SET", t.keys.Marker, m.String()); err != nil {
		return fail(err)
	}
	t.st.flushes.Add(1)
	t.log.Warn("deleted the task's earlier data on the destination for a clean full resync",
		"reason", why, "keys", deleted, "dbs", fmt.Sprint(dbs))
	return nil
}

// unlinkAllBut deletes every key of the selected DB that does not start with keep.
func unlinkAllBut(ctx context.Context, c *redis.Conn, keep string) (int64, error) {
	var n int64
	cursor := "0"
	for {
		v, err := c.Do(ctx, "SCAN", cursor, "COUNT", 1000)
		if err != nil {
			return n, err
		}
		if len(v.Elems) != 2 {
			return n, errors.New("SCAN: unexpected reply")
		}
		cursor = string(v.Elems[0].Str)
		args := []any{"UNLINK"}
		for _, k := range v.Elems[1].Elems {
			if !strings.HasPrefix(string(k.Str), keep) {
				args = append(args, k.Str)
			}
		}
		if len(args) > 1 {
			if _, err := c.Do(ctx, args...); err != nil {
				return n, err
			}
			n += int64(len(args) - 1)
		}
		if cursor == "0" {
			return n, nil
		}
	}
}

// fence closes the destination connections that carry the task's writer name, other than
// c itself. A connection of a killed process, or one the writer gave up on, may still
// hold commands the destination has received and not executed; a client that is closed
// loses them, so once it is gone the checkpoint says exactly what was applied and cannot
// change behind the reader's back. Without CLIENT permission the fence is skipped, with a
// warning: batches could then apply after the checkpoint was read.
func (t *Task) fence(ctx context.Context, c *redis.Conn) error {
	self, err := c.Do(ctx, "CLIENT", "ID")
	if err == nil {
		var v resp.Value
		v, err = c.Do(ctx, "CLIENT", "LIST", "TYPE", "normal")
		if err == nil {
			killed := 0
			for _, id := range clientsNamed(string(v.Str), t.cfg.writerName()) {
				if id == self.Int {
					continue
				}
				// "No such client": it went away by itself meanwhile.
				if _, err := c.Do(ctx, "CLIENT", "KILL", "ID", id); err != nil && !isReplyError(err) {
					return fmt.Errorf("close the task's earlier connections on destination %s: %w", t.cfg.Target.Addr, err)
				}
				killed++
			}
			if killed > 0 {
				t.log.Info("closed the task's earlier connections on the destination before reading its checkpoint", "connections", killed)
			}
			return nil
		}
	}
	if isReplyError(err) {
		t.fenceWarn.Do(func() {
			t.log.Warn("cannot list and close the destination's clients (CLIENT LIST/KILL); after a crash or a lost connection a batch may be applied twice: grant +client to the destination user",
				"err", err)
		})
		return nil
	}
	return fmt.Errorf("close the task's earlier connections on destination %s: %w", t.cfg.Target.Addr, err)
}

// listedClient is one client of a CLIENT LIST reply.
type listedClient struct {
	id   int64
	name string
}

// listedClients returns the clients of a CLIENT LIST reply whose name match selects
// (clients without a name are never selected).
func listedClients(list string, match func(name string) bool) []listedClient {
	var out []listedClient
	for _, line := range strings.Split(list, "\n") {
		c := listedClient{id: -1}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "id":
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					c.id = n
				}
			case "name":
				c.name = v
			}
		}
		if c.id >= 0 && c.name != "" && match(c.name) {
			out = append(out, c)
		}
	}
	return out
}

// clientsNamed returns the ids of the clients named name in a CLIENT LIST reply.
func clientsNamed(list, name string) []int64 {
	var ids []int64
	for _, c := range listedClients(list, func(n string) bool { return n == name }) {
		ids = append(ids, c.id)
	}
	return ids
}

func isReplyError(err error) bool {
	var re *resp.Error
	return errors.As(err, &re)
}

// reconcile is the writer's Options.Reconcile: after a destination connection was lost,
// it tells the writer how far the destination got, from the checkpoint committed with the
// data, so that nothing is resent twice.
func (t *Task) reconcile(ctx context.Context, c *redis.Conn, applied int64) (int64, error) {
	if err := t.fence(ctx, c); err != nil {
		return 0, err
	}
	if !t.incremental.Load() {
		// Snapshot commands carry no offsets and resending RESTORE … REPLACE is
		// harmless; a big key's RPUSH/SADD/… chunks are not.
		if t.full.BigKeys.Load() > 0 {
			return 0, fmt.Errorf("%w: %w; resuming the full sync from its checkpoint", writer.ErrStop, errBigKeyResend)
		}
		return -1, nil
	}
	saved, err := checkpoint.Load(ctx, c, t.ckptName())
	if err != nil {
		return 0, err
	}
	want := t.ckpts.durable(applied)
	if saved.Checkpoint.IsZero() || saved.Checkpoint.Offset < want {
		return 0, fmt.Errorf("%w: %w: its checkpoint %s is at offset %d, behind the acknowledged %d (restarted without persistence, or restored from a backup?); resuming from its checkpoint",
			writer.ErrStop, errRewound, t.keys.Checkpoint, saved.Checkpoint.Offset, want)
	}
	return saved.Checkpoint.Offset, nil
}

// retryable says whether a session's failure is one that another session may get past.
func (t *Task) retryable(err error) bool {
	var le *replica.LinkError
	switch {
	case errors.As(err, &le), errors.Is(err, replica.ErrNotReady), errors.Is(err, errRewound), errors.Is(err, errBigKeyResend),
		errors.Is(err, errClusterReconnect), errors.Is(err, errHistoryDiverged):
		return true
	case !t.attached:
		// Before the first attachment a failure is the configuration's: fail fast.
		return false
	}
	var ae *writer.ApplyError
	if errors.As(err, &ae) {
		// Refused by the destination, or its retries (RetryTimeout) exhausted.
		return false
	}
	var re *resp.Error
	if errors.As(err, &re) {
		switch re.Prefix() {
		case "MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN":
			// A cluster destination's topology changed under the session's control
			// connection (a failover or a reshard of the slot of the task's own keys): the
			// next session dials the master that serves it now.
			return t.cluster
		}
		return re.IsLoading() || re.IsBusy() || re.Prefix() == "MASTERDOWN"
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// ckptLog remembers the offsets of the checkpoints handed to the writer, so that once the
// writer has acknowledged up to an offset the task knows which checkpoint the destination
// must hold (in at-least-once delivery commands after a checkpoint may be acknowledged
// too). Bounded by the writer's window.
type ckptLog struct {
	mu      sync.Mutex
	pending []int64 // ascending, not yet acknowledged
	floor   int64   // the highest acknowledged
}

// reset forgets the pending checkpoints: the destination holds floor.
func (l *ckptLog) reset(floor int64) {
	l.mu.Lock()
	l.pending, l.floor = l.pending[:0], floor
	l.mu.Unlock()
}

func (l *ckptLog) add(off int64) {
	l.mu.Lock()
	l.pending = append(l.pending, off)
	l.mu.Unlock()
}

// durable returns the highest checkpoint offset at most applied.
func (l *ckptLog) durable(applied int64) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for i < len(l.pending) && l.pending[i] <= applied {
		l.floor = l.pending[i]
		i++
	}
	if i > 0 {
		l.pending = append(l.pending[:0], l.pending[i:]...)
	}
	return l.floor
}
