package verify

import (
	"context"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// TestLiveSync is the live-sync acceptance scenario with a native replica standing in for
// Ferry (a replica is what Ferry emulates, and it too acknowledges only what it applied):
// under continuous write load verify reports nothing, with and without the fence, and it
// still finds differences injected into the replica.
func TestLiveSync(t *testing.T) {
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	ctx := testCtx(t)
	wl := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 11, Keys: 2000, TTL: true, Prefix: "wl:"})
	if err := wl.Fill(ctx, src, 4000); err != nil {
		t.Fatal(err)
	}
	// Keys the load never touches, to inject differences into.
	sw := writerFor(t, src, 0)
	sw.do("HSET", "static:h", "a", "1", "b", "2")
	sw.do("RPUSH", "static:l", "x", "y", "z")
	dst.ReplicaOf(t, src)

	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan error, 1)
	go func() {
		_, err := wl.Run(loadCtx, src, 3000)
		loadDone <- err
	}()
	defer func() {
		stopLoad()
		if err := <-loadDone; err != nil {
			t.Errorf("load: %v", err)
		}
	}()
	// Let the load get going before comparing.
	time.Sleep(300 * time.Millisecond)

	o := opts(src.Addr(), dst.Addr())
	o.Rounds, o.Interval = 3, 200*time.Millisecond
	t.Run("fenced", func(t *testing.T) {
		o := o
		o.Fence = FenceOptions{Auto: true}
		res := run(t, o)
		if !res.Clean() {
			t.Errorf("false alarms under load: %v", res.Remaining)
		}
		for _, r := range res.Rounds {
			if r.Fence == nil || !r.Fence.Reached || len(r.Fence.Replicas) != 1 {
				t.Errorf("round %d fence %+v", r.N, r.Fence)
			}
		}
		t.Logf("round 1 compared %d keys, %d in flight", res.Rounds[0].Keys, res.Rounds[0].Diffs)
	})
	t.Run("unfenced", func(t *testing.T) {
		res := run(t, o)
		if !res.Clean() {
			t.Errorf("false alarms under load: %v", res.Remaining)
		}
	})
	t.Run("injected", func(t *testing.T) {
		dst.Do(t, "CONFIG", "SET", "replica-read-only", "no")
		dw := writerFor(t, dst, 0)
		dw.do("HSET", "static:h", "b", "changed")
		dw.do("LSET", "static:l", 1, "changed")
		dw.do("SET", "injected:extra", "1")
		o := o
		o.Fence = FenceOptions{Replicas: []string{dst.Addr()}}
		res := run(t, o)
		want := map[string]Class{"static:h": ClassValue, "static:l": ClassValue, "injected:extra": ClassExtra}
		if len(res.Remaining) != len(want) {
			t.Errorf("got %d differences, want %d: %v", len(res.Remaining), len(want), res.Remaining)
		}
		for _, d := range res.Remaining {
			if want[d.Key] != d.Class {
				t.Errorf("unexpected %v", d)
			}
		}
	})
}

// TestFenceErrors: a fence with no replica, or naming a replica that is not there, fails
// clearly instead of comparing unfenced.
func TestFenceErrors(t *testing.T) {
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	o := opts(src.Addr(), dst.Addr())
	o.Fence = FenceOptions{Auto: true}
	if _, err := Run(testCtx(t), o); err == nil {
		t.Fatal("auto fence without a replica: no error")
	} else {
		t.Log(err)
	}
	dst.ReplicaOf(t, src)
	o.Fence = FenceOptions{Replicas: []string{"127.0.0.1:1"}}
	if _, err := Run(testCtx(t), o); err == nil {
		t.Fatal("fence on an absent replica: no error")
	} else {
		t.Log(err)
	}
}

// TestExpiredMeanwhile: a key reported missing in round 1 that expires before round 2 is
// not a difference; neither is a key about to expire (within the TTL tolerance).
func TestExpiredMeanwhile(t *testing.T) {
	src, dst := pairWith(t, func(w *dbWriter) { w.do("SET", "stays", "1") })
	sw := writerFor(t, src, 0)
	sw.do("SET", "short", "x", "PX", 700)
	sw.do("SET", "expiring", "x", "PX", 5000)
	o := opts(src.Addr(), dst.Addr())
	o.TTLTolerance = 100 * time.Millisecond
	o.Rounds, o.Interval = 2, time.Second
	res := run(t, o)
	if len(res.Rounds) != 2 || res.Rounds[0].Diffs != 2 || len(res.Remaining) != 1 || res.Remaining[0].Key != "expiring" {
		t.Fatalf("rounds %+v, remaining %v; want 2 missing keys in round 1, then only 'expiring'", res.Rounds, res.Remaining)
	}
	// With a tolerance longer than its TTL, the expiring key is not a difference either.
	o.TTLTolerance = 10 * time.Second
	if res := run(t, o); !res.Clean() {
		t.Errorf("remaining %v", res.Remaining)
	}
	if n := dst.Do(t, "DBSIZE").Int; n != 1 {
		t.Errorf("destination has %d keys, want 1", n)
	}
}

// TestInFlightFlag: a key that keeps changing on the source while it is re-checked is
// still reported, but flagged as possibly in flight; a stable one is not flagged.
func TestInFlightFlag(t *testing.T) {
	src, dst := pairWith(t, func(w *dbWriter) {
		w.do("SET", "hot", 0)
		w.do("SET", "cold", "a")
	})
	dw := writerFor(t, dst, 0)
	dw.do("SET", "hot", -1)
	dw.do("SET", "cold", "b")
	ctx, stop := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() {
		c, err := src.Dial(ctx)
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		for ctx.Err() == nil {
			if _, err := c.Do(ctx, "SET", "hot", time.Now().UnixNano()); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	o := opts(src.Addr(), dst.Addr())
	res := run(t, o)
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, d := range res.Remaining {
		got[d.Key] = d.InFlight
	}
	if len(got) != 2 || !got["hot"] || got["cold"] {
		t.Errorf("in flight flags %v, want hot flagged and cold not", got)
	}
	if res.Rounds[1].InFlight != 1 {
		t.Errorf("round 2 counted %d in flight, want 1", res.Rounds[1].InFlight)
	}
}
