package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/writer"
)

// syncMain is the sync child (bench -loadsync SRC -addr DST -conns N): what `ferry sync
// --mode full` does — attach to the source as a replica, stream its RDB through Ferry's
// snapshot loader — but over N destination connections.
func syncMain(src, addr string, conns int, dataDir string) error {
	ctx := context.Background()
	start := time.Now()
	opts := redis.Options{Addr: addr}
	target, err := snapshot.DestinationTarget(ctx, opts)
	if err != nil {
		return err
	}
	open := openWriter(opts, conns)
	w, err := open(ctx)
	if err != nil {
		return err
	}
	defer w.Close()
	rep, err := replica.Open(ctx, replica.Options{Source: redis.Options{Addr: src}, DataDir: dataDir}, replica.Position{})
	if err != nil {
		return err
	}
	defer rep.Close()
	if !rep.FullSync() {
		return errors.New("the source did not send a snapshot")
	}
	l := &snapshot.Loader{Writer: w, Target: target, Connections: conns, Open: open}
	if err := l.Load(ctx, rdb.NewDecoder(rep.RDB(), rdb.Options{})); err != nil {
		return err
	}
	fmt.Printf("%d %.6f\n", l.Progress.Keys.Load(), time.Since(start).Seconds())
	return nil
}

// openWriter opens writers with the default window shared by conns connections, so that
// memory stays what one connection would use.
func openWriter(opts redis.Options, conns int) func(context.Context) (*writer.Writer, error) {
	return func(ctx context.Context) (*writer.Writer, error) {
		return writer.Open(ctx, writer.Options{Target: opts, MaxInFlightBytes: writer.DefaultMaxInFlightBytes / max(conns, 1)})
	}
}
