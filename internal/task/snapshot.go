package task

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/writer"
)

// applySnapshot reads the source's RDB from rep and, unless discard is set (incremental-only
// mode), writes every key to the destination through the snapshot loader.
func (t *Task) applySnapshot(ctx context.Context, rep *replica.Replica, wr *writer.Writer, discard bool) error {
	target, err := snapshot.DestinationTarget(ctx, t.cfg.Target)
	if err != nil {
		return err
	}
	src := rep.RDB()
	loader := &snapshot.Loader{
		Writer: wr, Target: target, BigKeyThreshold: t.cfg.BigKeyThreshold,
		SkipPrefix: KeyPrefix, Discard: discard, Logger: t.log, Progress: &t.full,
	}
	// The transfer's size may only become known at its end (diskless); keep the status's
	// total current while loading.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if size := rep.RDBSize(); size > 0 {
				t.st.fullTotal.Store(size)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	dec := rdb.NewDecoder(src, rdb.Options{})
	err = loader.Load(ctx, dec)
	close(stop)
	<-done
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
	return nil
}
