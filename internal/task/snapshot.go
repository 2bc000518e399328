package task

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/snapshot"
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
		spawn(func() { t.fullCheckpoints(ctx, wr, start, stop) })
	}
	err = loader.Load(ctx, dec)
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

// fullCheckpoints records every FullCheckpointInterval how many snapshot keys the
// destination has acknowledged: it reads the count of keys handed to the writer, waits
// until the writer has everything queued so far acknowledged, and stores the count. It
// returns when stop is closed.
func (t *Task) fullCheckpoints(parent context.Context, wr destination, start replica.Position, stop <-chan struct{}) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick := time.NewTicker(t.cfg.FullCheckpointInterval)
	defer tick.Stop()
	last := t.full.Keys.Load()
	var own *redis.Conn
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := t.full.Keys.Load()
		if n == last {
			continue
		}
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
			defer own.Close()
		}
		f := checkpoint.Full{ReplID: start.ReplID, Offset: start.Offset, Keys: n}
		if _, err := own.Do(ctx, "SET", t.keys.Full, f.String()); err != nil {
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
