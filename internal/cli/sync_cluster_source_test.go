package cli

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/clustersource"
	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/testutil"
)

// TestSyncClusterSource runs `ferry sync` with one node of a cluster (a replica) as
// --source, as a user would: the precheck runs (its warnings accepted), the sync runs one
// task per master, and the status endpoint and the metrics show the shards. Stopped and
// run again with the same command, it resumes: the precheck recognises the task's own
// data on the destination, and every shard continues with a partial resync.
func TestSyncClusterSource(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	dst := testutil.StartServer(t)
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 51, Cluster: true, Keys: 600})
	if err := w.Fill(ctx, src, 1500); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	args := []string{"sync", "--source", "redis://" + src.Replicas()[0].Addr(), "--target", "redis://" + dst.Addr(),
		"--task", "clu", "--data-dir", dataDir, "--log-format", "json", "--accept-warnings", "--no-progress"}

	run := func(more *testutil.Workload) clustersource.Status {
		status := freeAddr(t)
		cctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errs syncBuffer
		done := make(chan int, 1)
		go func() { done <- Main(cctx, append(args, "--status-addr", status), &out, &errs) }()
		var st clustersource.Status
		deadline := time.Now().Add(60 * time.Second)
		for {
			if err := getJSON("http://"+status+"/status", &st); err == nil && st.Phase == task.PhaseIncremental && len(st.Shards) == 3 {
				break
			}
			select {
			case code := <-done:
				t.Fatalf("ferry sync exited %d before reaching the incremental phase; stderr:\n%s", code, errs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no incremental phase within 60 s; last status %+v; stderr:\n%s", st, errs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		// Every shard's heartbeat (a key in one of its slots) comes back through its stream.
		for {
			measured := 0
			for _, sh := range st.Shards {
				if sh.LagSeconds > 0 && !sh.LagEstimated {
					measured++
				}
			}
			if measured == len(st.Shards) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not every shard measured its heartbeat latency within 60 s: %+v", st.Shards)
			}
			time.Sleep(50 * time.Millisecond)
			if err := getJSON("http://"+status+"/status", &st); err != nil {
				t.Fatal(err)
			}
		}
		if more != nil {
			if err := more.Fill(ctx, src, 500); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.Get("http://" + status + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, m := range []string{`ferry_phase{shard="s0",task="clu-s0"}`, `ferry_cluster_source_shards{task="clu"} 3`, `shard="s10922"`} {
			if !strings.Contains(string(body), m) {
				t.Errorf("/metrics lacks %s", m)
			}
		}
		// Let the stream carry what was just written, then stop.
		time.Sleep(500 * time.Millisecond)
		cancel()
		select {
		case code := <-done:
			if code != ExitOK {
				t.Fatalf("clean stop exited %d; stderr:\n%s", code, errs.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatal("ferry sync did not stop within 60 s of cancellation")
		}
		if !strings.Contains(out.String(), "3 shards") || !strings.Contains(out.String(), "shard s5461 (slots 5461-10921") {
			t.Fatalf("the final report does not show the shards: %q", out.String())
		}
		if !strings.Contains(errs.String(), "one task per master") {
			t.Fatalf("the log does not say the source is a cluster: %s", errs.String())
		}
		return st
	}

	st := run(nil)
	for _, sh := range st.Shards {
		if sh.FullSyncs != 1 || sh.Master == "" || sh.Slots == "" {
			t.Fatalf("first run, shard %+v: want one full sync, its master and slots", sh)
		}
	}
	more := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 52, Cluster: true, Keys: 200, Prefix: "more:"})
	st = run(more)
	for _, sh := range st.Shards {
		if sh.PartialSyncs != 1 || sh.FullSyncs != 0 {
			t.Fatalf("second run, shard %s: %d partial, %d full syncs; want one partial", sh.ID, sh.PartialSyncs, sh.FullSyncs)
		}
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{DBs: []int{0}, SkipPrefixes: []string{task.KeyPrefix}})
	for _, wl := range []*testutil.Workload{w, more} {
		if err := wl.VerifyExact(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}
}
