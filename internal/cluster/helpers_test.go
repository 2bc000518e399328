package cluster

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/writer"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// openRouter opens a Router on c, closed when the test ends.
func openRouter(t testing.TB, c *testutil.Cluster, mod func(*Options)) *Router {
	t.Helper()
	opts := Options{
		Target: redis.Options{Addr: c.Masters()[0].Addr()},
		Logger: testLogger(t),
	}
	opts.Writer.Logger = opts.Logger
	if mod != nil {
		mod(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// openWriter opens a plain writer on s, closed when the test ends.
func openWriter(t testing.TB, s *testutil.Server) *writer.Writer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := writer.Open(ctx, writer.Options{Target: redis.Options{Addr: s.Addr()}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// applier is what the differential tests write to: a Router or a plain Writer.
type applier interface {
	Write(ctx context.Context, cmd writer.Command) error
	Flush(ctx context.Context) error
}

func cmdOf(off int64, line string) writer.Command {
	c := writer.Command{Offset: off}
	for _, f := range strings.Fields(line) {
		c.Args = append(c.Args, []byte(f))
	}
	return c
}

func flushCtx(t testing.TB, a applier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// stream is a replica of a standalone source whose command stream is applied to a
// Router, the way a sync task does: data commands forwarded with their DB, offsets only
// at transaction boundaries.
type stream struct {
	t       testing.TB
	rep     *replica.Replica
	cancel  context.CancelFunc
	done    chan error
	seen    atomic.Int64 // offset of the last command read
	written atomic.Int64 // offset of the last command handed to the applier (or skipped)
}

// follow attaches to src (which must be empty: its snapshot is not applied) and starts
// applying its stream to a.
func follow(t testing.TB, src *testutil.Server, a applier) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := replica.Open(ctx, replica.Options{Source: redis.Options{Addr: src.Addr()}, DataDir: t.TempDir()}, replica.Position{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rep.Close() })
	if rep.FullSync() {
		if _, err := io.Copy(io.Discard, rep.RDB()); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, stop := context.WithCancel(context.Background())
	s := &stream{t: t, rep: rep, cancel: stop, done: make(chan error, 1)}
	s.seen.Store(rep.Start().Offset)
	s.written.Store(rep.Start().Offset)
	go func() { s.done <- s.run(runCtx, a) }()
	t.Cleanup(func() { s.stop() })
	return s
}

func (s *stream) run(ctx context.Context, a applier) error {
	inMulti := false
	for {
		cmd, err := s.rep.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		forward := false
		switch cmd.Class {
		case replica.ClassMulti:
			inMulti, forward = true, true
		case replica.ClassExec:
			inMulti, forward = false, true
		case replica.ClassData:
			forward = true
		}
		// Stored before the write: Applied may never pass what has been read.
		s.seen.Store(cmd.Offset)
		if forward {
			off := int64(0)
			if !inMulti {
				off = cmd.Offset
			}
			db := cmd.DB
			switch cmd.Name {
			case "flushall", "function", "script":
				db = -1
			}
			if err := a.Write(ctx, writer.Command{DB: db, Args: cmd.Args, Offset: off}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		}
		s.written.Store(cmd.Offset)
	}
}

// catchUp waits until the stream has been read up to the source's current offset.
func (s *stream) catchUp(src *testutil.Server) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	info, err := src.Info(ctx, "replication")
	if err != nil {
		s.t.Fatal(err)
	}
	want := info["master_repl_offset"]
	for {
		if got := s.written.Load(); strings.TrimSpace(want) != "" && got >= atoi(want) {
			return
		}
		select {
		case err := <-s.done:
			s.t.Fatalf("the stream stopped: %v", err)
		case <-ctx.Done():
			s.t.Fatalf("the stream did not reach offset %s (at %d)", want, s.written.Load())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// stop ends the apply loop and reports its error.
func (s *stream) stop() {
	s.t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if err := <-s.done; err != nil {
		s.t.Errorf("stream: %v", err)
	}
}

func atoi(s string) int64 {
	var n int64
	for _, c := range strings.TrimSpace(s) {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	return n
}
