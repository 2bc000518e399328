package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// TestVerifyDuringSync runs `ferry verify --mode value` against a pair that `ferry sync` keeps
// in sync under continuous writes: it must report no difference (no false alarm), and must
// still find differences written straight into the destination.
func TestVerifyDuringSync(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 11, DBs: []int{0, 2}, TTL: true, Keys: 1500})
	if err := fill.Fill(ctx, src, 10000); err != nil {
		t.Fatal(err)
	}

	syncCtx, stopSync := context.WithCancel(ctx)
	var syncOut, syncErr syncBuffer
	syncDone := make(chan int, 1)
	go func() {
		syncDone <- Main(syncCtx, []string{"sync", "--source", "redis://" + src.Addr(), "--target", "redis://" + dst.Addr(),
			"--data-dir", t.TempDir(), "--no-progress", "--log-level", "warn", "--accept-warnings"}, &syncOut, &syncErr)
	}()
	defer func() {
		stopSync()
		select {
		case <-syncDone:
		case <-time.After(30 * time.Second):
			t.Error("ferry sync did not stop")
		}
	}()
	if err := testutil.WaitReplicasCaughtUp(ctx, src); err != nil {
		t.Fatalf("%v; sync stderr:\n%s", err, syncErr.String())
	}

	load := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 12, DBs: []int{0, 2}, Keys: 300, Prefix: "live:"})
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := load.Run(loadCtx, src, 2000); err != nil {
			t.Errorf("load: %v", err)
		}
	}()
	defer func() { stopLoad(); wg.Wait() }()

	verifyArgs := func(report string) []string {
		return []string{"verify", "--source", "redis://" + src.Addr(), "--target", "redis://" + dst.Addr(),
			"--mode", "value", "--fence-replica", "auto", "--rounds", "3", "--interval", "200ms", "--report", report, "--no-progress"}
	}
	clean := filepath.Join(t.TempDir(), "clean.json")
	if code, out, errs := run(t, verifyArgs(clean)...); code != ExitOK {
		t.Fatalf("verify during a live sync reported differences (exit %d):\n%s\n%s", code, out, errs)
	}

	// Differences written behind the sync's back, on keys the load does not touch.
	var hashKey string
	v := dst.Do(t, "SCAN", 0, "MATCH", "hash:*", "COUNT", 1000)
	if len(v.Elems) == 2 && len(v.Elems[1].Elems) > 0 {
		hashKey = string(v.Elems[1].Elems[0].Str)
	} else {
		t.Fatal("no hash key found on the destination to change")
	}
	dst.Do(t, "HSET", hashKey, "injected-field", "x")
	dst.Do(t, "SET", "injected:extra", "x")

	dirty := filepath.Join(t.TempDir(), "dirty.json")
	code, out, errs := run(t, verifyArgs(dirty)...)
	if code != ExitFailure {
		t.Fatalf("verify missed differences injected into the destination (exit %d):\n%s\n%s", code, out, errs)
	}
	b, err := os.ReadFile(dirty)
	if err != nil {
		t.Fatal(err)
	}
	var diffs []struct {
		DB    int    `json:"db"`
		Key   string `json:"key"`
		Class string `json:"class"`
	}
	if err := json.Unmarshal(b, &diffs); err != nil {
		t.Fatalf("report: %v\n%s", err, b)
	}
	found := map[string]string{}
	for _, d := range diffs {
		found[d.Key] = d.Class
	}
	if found[hashKey] != "value" || found["injected:extra"] != "extra" || len(diffs) != 2 {
		t.Fatalf("want exactly %s (value) and injected:extra (extra), got %+v", hashKey, diffs)
	}
}
