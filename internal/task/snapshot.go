package task

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/writer"
)

// fullSync applies the snapshot the source is sending. The RDB is copied to the data
// directory as fast as it arrives and the loader reads the copy, so that a crash after
// the transfer resumes from the copy (resumeFullSync) instead of asking the source for a
// new snapshot. In incremental-only mode the snapshot is read and discarded.
func (t *Task) fullSync(ctx context.Context, ctrl *redis.Conn, rep *replica.Replica, wr destination, start replica.Position, copies *copyHolder) error {
	t.log.Info("full sync", "replid", start.ReplID, "offset", start.Offset)
	if err := removeSnapshots(t.cfg.DataDir); err != nil {
		return err
	}
	if t.cfg.Mode == ModeIncr {
		return t.loadSnapshot(ctx, ctrl, wr, start, rep.RDB(), 0, 0, rep.RDBSize)
	}
	c, err := startCopy(rep.RDB(), snapshotPath(t.cfg.DataDir, start.ReplID, start.Offset))
	if err != nil {
		return err
	}
	copies.c = c
	return t.loadSnapshot(ctx, ctrl, wr, start, c.reader(ctx), 0, 0, rep.RDBSize)
}

// resumeFullSync finishes an interrupted full sync from the local copy of its RDB: the
// first full.Keys keys are on the destination already, the rest follow. The source has
// answered +CONTINUE from the snapshot's offset, so its stream follows the snapshot.
func (t *Task) resumeFullSync(ctx context.Context, ctrl *redis.Conn, wr destination, start replica.Position, full *checkpoint.Full, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("resume the full sync from %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("resume the full sync from %s: %w", path, err)
	}
	t.log.Info("resuming the full sync from the local copy of the snapshot", "file", path,
		"bytes", fi.Size(), "keys_done", full.Keys)
	size := fi.Size()
	return t.loadSnapshot(ctx, ctrl, wr, start, f, size, full.Keys, func() int64 { return size })
}

// loadSnapshot applies an RDB from src after skipping its first skip keys, records the
// progress on the destination every FullCheckpointInterval, and when the destination has
// acknowledged everything, replaces the progress with the checkpoint at the snapshot's
// position. size is src's length when known (0 otherwise); total reports the RDB's size
// for the status while it may still be unknown.
func (t *Task) loadSnapshot(ctx context.Context, ctrl *redis.Conn, wr destination, start replica.Position, src io.Reader, size, skip int64, total func() int64) error {
	discard := t.cfg.Mode == ModeIncr
	target, err := snapshot.DestinationTarget(ctx, t.cfg.Target)
	if err != nil {
		return err
	}
	dec := rdb.NewDecoder(src, rdb.Options{Size: size})
	if skip > 0 {
		if err := skipKeys(dec, skip, t.cfg.Filter); err != nil {
			return err
		}
		t.full.Keys.Store(skip)
		t.full.Bytes.Store(dec.Offset())
	}
	loader := &snapshot.Loader{
		Writer: wr, Target: target, BigKeyThreshold: t.cfg.BigKeyThreshold,
		SkipPrefix: KeyPrefix, Discard: discard, Logger: t.log, Progress: &t.full,
		Filter: t.cfg.Filter, Throttle: t.fullLimit,
	}
	if _, standalone := wr.(*writer.Writer); standalone && !discard {
		// A cluster router already writes to every master at once; a standalone
		// destination gets more connections for the snapshot's RESTOREs.
		if err := t.fenceSnapshotConns(ctx, ctrl); err != nil {
			return err
		}
		loader.Connections = snapshot.DefaultConnections
		loader.OpenExtra = t.openSnapshotConn
	}
	// The transfer's size may only become known at its end (diskless); keep the status's
	// total current while loading. The progress checkpoints run alongside.
	stop := make(chan struct{})
	var done []chan struct{}
	spawn := func(f func()) {
		ch := make(chan struct{})
		done = append(done, ch)
		go func() { defer close(ch); f() }()
	}
	spawn(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if n := total(); n > 0 {
				t.st.fullTotal.Store(n)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	if !discard {
		spawn(func() { t.fullCheckpoints(ctx, loader, start, stop) })
	}
	err = loader.Load(ctx, dec)
	// Load has closed the connections it opened: the status keeps only their totals.
	t.st.snap.retire()
	close(stop)
	for _, ch := range done {
		<-ch
	}
	if err != nil {
		return err
	}
	// The decoder stops at the checksum; the replica wants its RDB reader drained to
	// io.EOF before the stream starts. Anything left there is not part of the file.
	extra, err := io.Copy(io.Discard, src)
	if err != nil {
		return fmt.Errorf("finish reading the snapshot: %w", err)
	}
	if extra += int64(len(dec.Buffered())); extra > 0 {
		return fmt.Errorf("the snapshot has %d unexpected bytes after its checksum (corrupt transfer?)", extra)
	}
	return t.finishFull(ctx, ctrl, start)
}

// skipKeys advances dec past the first n keys that a Loader counts (Ferry's own and those
// the filter does not select are not written, so not counted), and everything before them.
func skipKeys(dec *rdb.Decoder, n int64, f *filter.Filter) error {
	prefix := []byte(KeyPrefix)
	for skipped := int64(0); skipped < n; {
		e, err := dec.Next()
		if err == io.EOF {
			return fmt.Errorf("resume the full sync: the local snapshot has %d keys, fewer than the %d already applied (corrupt copy?)", skipped, n)
		}
		if err != nil {
			return fmt.Errorf("resume the full sync: skip the applied keys: %w", err)
		}
		if e.Record != rdb.RecordKey || bytes.HasPrefix(e.Key, prefix) {
			continue
		}
		if f != nil {
			if _, ok := f.KeepDB(e.DB); !ok || !f.KeepType(e.Kind()) || !f.KeepKey(e.Key) {
				continue
			}
		}
		skipped++
	}
	return nil
}

// firstFullCheckpoint is how often fullCheckpoints looks for progress before it has
// recorded any.
const firstFullCheckpoint = 10 * time.Millisecond

// fullCheckpoints records every FullCheckpointInterval how many snapshot keys the
// destination has acknowledged: it reads the count of keys handed to the loader, waits
// until every connection of the loader has everything queued so far acknowledged, and
// stores the count. It returns when stop is closed.
func (t *Task) fullCheckpoints(parent context.Context, wr interface{ Flush(context.Context) error }, start replica.Position, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	// Until the first record, progress is looked at often: a fast load (several
	// connections) may be far along after one interval, and a crash before the first
	// record redoes the whole snapshot, with a new one from the source.
	first := min(t.cfg.FullCheckpointInterval, firstFullCheckpoint)
	tick := time.NewTimer(first)
	defer tick.Stop()
	start0 := t.full.Keys.Load()
	last := start0
	var own *redis.Conn
	defer func() {
		if own != nil {
			own.Close()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if last == start0 {
			tick.Reset(first)
		} else {
			tick.Reset(t.cfg.FullCheckpointInterval)
		}
		n := t.full.Keys.Load()
		if n == last {
			continue
		}
		// The loader counts a key once it is queued on its connection; a key counted
		// in n may sit on any of them, so all are flushed.
		if err := wr.Flush(ctx); err != nil {
			return // stopped, or the loader sees the failure too
		}
		// Progress goes over a connection of its own: a write cut short (by stop, or a
		// session ending) then breaks only that connection, never ctrl, which the end of
		// the full sync needs next.
		if own == nil {
			c, err := t.dialControl(ctx)
			if err != nil {
				if ctx.Err() == nil {
					t.log.Warn("could not connect to record the full sync's progress; a restart would redo more of it", "err", err)
				}
				return
			}
			own = c
		}
		f := checkpoint.Full{ReplID: start.ReplID, Offset: start.Offset, Keys: n}
		if _, err := own.Do(ctx, "SET", t.keys.Full, f.String()); err != nil {
			var re *resp.Error
			if t.cluster && errors.As(err, &re) && (re.Prefix() == "MOVED" || re.Prefix() == "ASK") {
				// The slot of the task's keys moved (a failover or a reshard of its
				// master): the next record dials the master that serves it now.
				own.Close()
				own = nil
				continue
			}
			if ctx.Err() == nil {
				t.log.Warn("could not record the full sync's progress; a restart would redo more of it", "err", err)
			}
			return
		}
		last = n
	}
}

// finishFull records that the snapshot is applied: the checkpoint at its position, and
// no more full-sync progress, in one transaction; then the local copy goes.
func (t *Task) finishFull(ctx context.Context, ctrl *redis.Conn, start replica.Position) error {
	cmds := [][]any{{"MULTI"}, {"DEL", t.keys.Full}}
	if t.cfg.Mode != ModeFull {
		cmds = append(cmds, []any{"SET", t.keys.Checkpoint, start.String()})
	}
	cmds = append(cmds, []any{"EXEC"})
	for _, c := range cmds {
		if _, err := ctrl.Do(ctx, c...); err != nil {
			return fmt.Errorf("record the end of the full sync on destination %s: %w", t.cfg.Target.Addr, err)
		}
	}
	return removeSnapshots(t.cfg.DataDir)
}

// Local copies of snapshots: snapshot-<replid>-<offset>.rdb, with ".part" while they are
// being received.
func snapshotPath(dir, replID string, offset int64) string {
	return filepath.Join(dir, fmt.Sprintf("snapshot-%s-%d.rdb", replID, offset))
}

// findSnapshot returns the complete local copy of the snapshot full was applying.
func findSnapshot(dir string, full checkpoint.Full) (string, bool) {
	p := snapshotPath(dir, full.ReplID, full.Offset)
	fi, err := os.Stat(p)
	return p, err == nil && fi.Mode().IsRegular()
}

func removeSnapshots(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "snapshot-*.rdb*"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove the old snapshot copy %s: %w", f, err)
		}
	}
	return nil
}

// The snapshot's extra connections (standalone destinations). Each has a client name of its
// own, the writer name with "/snapshot-<i>" (a task name cannot hold '/'), for two
// reasons. After a lost connection, a writer must close its old connection before it
// resends (fence): that connection may still hold commands the destination has not
// executed, which would otherwise run later, even after the stream has changed those
// keys. A name per connection lets each close only its own old connection; under the
// one writer name, each reconnect would close every other connection of the task, which
// would reconnect and close the others in turn. And the task's writer's own fence
// (exact writer name) leaves the snapshot connections alone, so it cannot break them.

// snapshotConnName is the client name of the snapshot connection number i (2, 3, …).
func (t *Task) snapshotConnName(i int) string {
	return fmt.Sprintf("%s/snapshot-%d", t.cfg.writerName(), i)
}

// openSnapshotConn is the loader's OpenExtra: connection i, configured like the session's
// writer, with a share of the byte window so the connections together hold what one
// writer would (the session's writer keeps its own: the loader sends big keys' commands
// through it alone).
func (t *Task) openSnapshotConn(ctx context.Context, i int) (*writer.Writer, error) {
	target := t.cfg.Target
	target.ClientName = t.snapshotConnName(i)
	w, err := writer.Open(ctx, writer.Options{
		Target:           target,
		IgnoreErrors:     t.cfg.Existing == ExistingOverwrite,
		RetryTimeout:     t.cfg.RetryTimeout,
		MaxInFlightBytes: writer.DefaultMaxInFlightBytes / snapshot.DefaultConnections,
		Logger:           t.log.With("connection", i),
		// It carries only RESTORE … REPLACE of snapshot values (never a big key's
		// commands, see snapshot.Loader.Connections): resending what was not answered is
		// harmless once its old connection is closed.
		Reconcile: func(ctx context.Context, c *redis.Conn, _ int64) (int64, error) {
			if err := t.killClients(ctx, c, func(name string) bool { return name == target.ClientName }); err != nil {
				return 0, err
			}
			return -1, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("open destination connection %s: %w", target.ClientName, err)
	}
	// Shown in the status and metrics until the load that opened it returns (retire).
	t.st.snap.add(i, target.ClientName, w)
	return w, nil
}

// fenceSnapshotConns closes the snapshot connections an earlier session or process may have
// left (fence closes only those with the writer name itself): at the start of every session,
// and again before a load opens new ones. A connection of a killed process may still hold
// RESTOREs of an older snapshot.
func (t *Task) fenceSnapshotConns(ctx context.Context, ctrl *redis.Conn) error {
	prefix := t.cfg.writerName() + "/snapshot-"
	return t.killClients(ctx, ctrl, func(name string) bool { return strings.HasPrefix(name, prefix) })
}

// killClients closes the destination's clients whose name match selects, other than c.
// Without CLIENT permission it does nothing (the session's fence has already warned).
func (t *Task) killClients(ctx context.Context, c *redis.Conn, match func(name string) bool) error {
	self, err := c.Do(ctx, "CLIENT", "ID")
	if err != nil {
		if isReplyError(err) {
			return nil
		}
		return fmt.Errorf("close the task's earlier snapshot connections on destination %s: %w", t.cfg.Target.Addr, err)
	}
	list, err := c.Do(ctx, "CLIENT", "LIST", "TYPE", "normal")
	if err != nil {
		if isReplyError(err) {
			return nil
		}
		return fmt.Errorf("close the task's earlier snapshot connections on destination %s: %w", t.cfg.Target.Addr, err)
	}
	for _, cl := range listedClients(string(list.Str), match) {
		if cl.id == self.Int {
			continue
		}
		// "No such client": it went away by itself meanwhile.
		if _, err := c.Do(ctx, "CLIENT", "KILL", "ID", cl.id); err != nil && !isReplyError(err) {
			return fmt.Errorf("close the task's earlier snapshot connection %s on destination %s: %w", cl.name, t.cfg.Target.Addr, err)
		}
		t.log.Info("closed an earlier snapshot connection on the destination", "name", cl.name, "id", cl.id)
	}
	return nil
}
