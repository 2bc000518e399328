package task

import (
	"context"
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// TestSessionFencesSnapshotConns: a session closes the snapshot connections an earlier
// process left on the destination (ferry-writer-<task>/snapshot-<i>) before it reads or
// flushes anything — also when it resumes with a partial resync and loads no snapshot — and
// leaves other clients alone.
func TestSessionFencesSnapshotConns(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	cfg := testConfig(t, src, dst)

	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	if _, err := src.Conn(t).Do(ctx, "SET", "k", "v1"); err != nil {
		t.Fatal(err)
	}
	waitAcked(t, src)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	// What a killed process's snapshot connection looks like, and a bystander.
	stale, other := dst.Conn(t), dst.Conn(t)
	if _, err := stale.Do(ctx, "CLIENT", "SETNAME", r.t.cfg.writerName()+"/snapshot-3"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Do(ctx, "CLIENT", "SETNAME", "someone-else"); err != nil {
		t.Fatal(err)
	}

	r = startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	st := r.t.Status()
	if st.Path != "partial" || st.FullSyncs != 0 {
		t.Fatalf("the restart took path %q with %d full syncs; want a partial resync (no snapshot load, whose own fence would hide the session's)", st.Path, st.FullSyncs)
	}
	if _, err := stale.Do(ctx, "PING"); err == nil {
		t.Fatal("the earlier snapshot connection is still open after the session started")
	}
	if _, err := other.Do(ctx, "PING"); err != nil {
		t.Fatalf("a client that is not the task's was closed: %v", err)
	}
	if _, err := src.Conn(t).Do(ctx, "SET", "k", "v2"); err != nil {
		t.Fatal(err)
	}
	waitAcked(t, src)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
}
