package task

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/testutil"
)

// outgrowBacklog writes more than a 16 KB backlog holds.
func outgrowBacklog(tb testing.TB, src *testutil.Server) {
	tb.Helper()
	for i := range 300 {
		src.Do(tb, "SET", "big:"+string(rune('a'+i%26)), strings.Repeat("x", 200))
	}
}

// syncThenStop runs the task until it is in the incremental phase and caught up, then
// stops it cleanly.
func syncThenStop(tb testing.TB, src *testutil.Server, cfg Config) {
	tb.Helper()
	r := startTask(tb, cfg)
	waitPhase(tb, r, PhaseIncremental)
	waitAcked(tb, src)
	if err := r.stop(tb); err != nil {
		tb.Fatal(err)
	}
}

// TestFullResyncPolicy: when the source cannot continue, a task that does not own the
// destination (it started with --existing overwrite on a non-empty one) stops rather than
// delete keys that may not be its own, unless told to flush; one that owns it flushes by
// default and stops when told to fail. Incremental-only tasks cannot resync at all.
func TestFullResyncPolicy(t *testing.T) {
	ctx := context.Background()
	run := func(t *testing.T, cfg Config) error {
		tk, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- tk.Run(rctx) }()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case err := <-done:
				return err
			case <-deadline:
				t.Fatalf("task neither failed nor reached the incremental phase: %+v", tk.Status())
			case <-time.After(10 * time.Millisecond):
			}
			if st := tk.Status(); st.Phase == PhaseIncremental {
				if st.FullSyncs != 1 {
					t.Fatalf("path %s, %d full syncs; want the full resync", st.Path, st.FullSyncs)
				}
				cancel()
				return <-done
			}
		}
	}

	t.Run("not owned", func(t *testing.T) {
		src := testutil.StartServer(t, "--repl-backlog-size", "16kb")
		dst := testutil.StartServer(t)
		dst.Do(t, "SET", "foreign", "kept until flushed")
		src.Do(t, "SET", "a", "1")
		cfg := resumeConfig(t, src.Addr(), dst.Addr())
		cfg.Existing = ExistingOverwrite
		syncThenStop(t, src, cfg)
		outgrowBacklog(t, src)
		src.Do(t, "DEL", "a")

		err := run(t, cfg)
		if err == nil || !strings.Contains(err.Error(), "--on-full-resync flush") || !strings.Contains(err.Error(), "cannot continue") {
			t.Fatalf("default policy on a destination the task does not own: %v; want a refusal naming --on-full-resync flush", err)
		}
		if v := dst.Do(t, "GET", "foreign"); v.Null || dst.Do(t, "EXISTS", "a").Int != 1 {
			t.Fatal("the refusal deleted keys")
		}
		cfg.OnFullResync = FullResyncFlush
		if err := run(t, cfg); err != nil {
			t.Fatal(err)
		}
		testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
	})

	t.Run("owned", func(t *testing.T) {
		src := testutil.StartServer(t, "--repl-backlog-size", "16kb")
		dst := testutil.StartServer(t)
		src.Do(t, "SET", "a", "1")
		cfg := resumeConfig(t, src.Addr(), dst.Addr())
		syncThenStop(t, src, cfg)
		outgrowBacklog(t, src)
		src.Do(t, "DEL", "a")
		cfg.OnFullResync = FullResyncFail
		if err := run(t, cfg); err == nil || !strings.Contains(err.Error(), "--on-full-resync fail forbids") {
			t.Fatalf("owned task with --on-full-resync fail: %v; want a refusal", err)
		}
		cfg.OnFullResync = FullResyncAuto
		if err := run(t, cfg); err != nil {
			t.Fatal(err)
		}
		testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
		if dst.Do(t, "EXISTS", "a").Int != 0 {
			t.Fatal("a key deleted on the source while the task was away survived the resync")
		}
	})

	t.Run("incremental only", func(t *testing.T) {
		src := testutil.StartServer(t, "--repl-backlog-size", "16kb")
		dst := testutil.StartServer(t)
		cfg := resumeConfig(t, src.Addr(), dst.Addr())
		cfg.Mode = ModeIncr
		syncThenStop(t, src, cfg)
		outgrowBacklog(t, src)
		if err := run(t, cfg); err == nil || !strings.Contains(err.Error(), "incremental-only") {
			t.Fatalf("incremental-only task past its backlog: %v; want a failure", err)
		}
	})
}

// TestWholeDBCommandsKeepTaskKeys: FLUSHALL and SWAPDB in the stream delete or move the
// task's checkpoint and marker with the data on the destination; the batch that carries
// them writes both again, so the task still resumes, and still owns the destination.
func TestWholeDBCommandsKeepTaskKeys(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t, sourceArgs...)
	dst := testutil.StartServer(t)
	src.Do(t, "SET", "a", "1")
	cfg := resumeConfig(t, src.Addr(), dst.Addr())
	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	c := src.Conn(t)
	for _, args := range [][]any{{"FLUSHALL"}, {"SET", "b", "2"}, {"SWAPDB", 0, 3}, {"SET", "c", "3"}} {
		if _, err := c.Do(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	waitAcked(t, src)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	keys := checkpoint.KeysFor(cfg.Name)
	if v := dst.Do(t, "GET", keys.Marker); string(v.Str) != "existing=block" {
		t.Fatalf("marker after FLUSHALL and SWAPDB: %q", v.Str)
	}
	if v := dst.Do(t, "GET", keys.Checkpoint); v.Null {
		t.Fatal("no checkpoint after FLUSHALL and SWAPDB")
	}
	if _, err := c.Do(ctx, "SET", "d", "4"); err != nil {
		t.Fatal(err)
	}
	r = startTask(t, cfg)
	st := waitStatus(t, r, 30*time.Second, "the incremental phase", func(s Status) bool { return s.Phase == PhaseIncremental })
	if st.Path != "partial" {
		t.Fatalf("resume after FLUSHALL: path %q; want partial", st.Path)
	}
	waitAcked(t, src)
	// DB 3 holds what SWAPDB moved from DB 0: the old checkpoint key and b; skip Ferry's.
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}
