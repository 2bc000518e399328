package precheck

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// writeLoad writes about rate bytes per second to s until the test ends, in 2 KiB values
// every 10 ms. It returns once the load has run for warm, so rate gauges have seen it.
func writeLoad(t *testing.T, s *testutil.Server, rate int, warm time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := s.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		c.Close()
	})
	value := strings.Repeat("x", 2048)
	perTick := max(1, rate/100/len(value))
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for j := range perTick {
				if _, err := c.Do(ctx, "SET", "load:"+string(rune('a'+j%26)), value); err != nil {
					return
				}
			}
		}
	})
	time.Sleep(warm) // let the load run before measuring; not a poll
}

// TestBacklogAndOutputBuffer: a 16 KiB backlog under ~200 KiB/s of writes covers far
// less than a minute, which warns with the size to set; replica output buffer limits
// below what queues during a full sync warn too. With a replica attached the rate comes
// from master_repl_offset; without one, from instantaneous_input_kbps.
func TestBacklogAndOutputBuffer(t *testing.T) {
	t.Parallel()
	for _, withReplica := range []bool{true, false} {
		name := "no replica"
		if withReplica {
			name = "replica attached"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := testutil.StartServer(t, "--repl-backlog-size", "16kb")
			dst := testutil.StartServer(t)
			if withReplica {
				testutil.StartServer(t).ReplicaOf(t, src)
			}
			// Limits far below what queues even if the load runs at a quarter of its
			// rate (a busy CI machine): the check must warn either way.
			src.Do(t, "CONFIG", "SET", "client-output-buffer-limit", "replica 16384 8192 1")
			writeLoad(t, src, 200<<10, 1500*time.Millisecond)
			rep := runCheck(t, Config{Source: addr(src), Target: addr(dst), RateSample: 500 * time.Millisecond})
			how := "instantaneous_input_kbps"
			if withReplica {
				how = "master_repl_offset over"
			}
			expect(t, rep, SideSource, CheckBacklog, Warn, "repl-backlog-size 16.0 KiB", how, "of disconnection", "forces a full resync", "CONFIG SET repl-backlog-size")
			expect(t, rep, SideSource, CheckOutputBuffer, Warn, "replica limits hard 16.0 KiB, soft 8.0 KiB for 1 s", "above the hard limit 16.0 KiB", "full sync would start over", "CONFIG SET client-output-buffer-limit \"replica")
			expect(t, rep, SideSource, CheckReplTimeout, Warn, "repl-timeout 60 s (below 600 s)", "CONFIG SET repl-timeout 600")
		})
	}
}

// TestOutputBufferRisk covers the estimate on its own.
func TestOutputBufferRisk(t *testing.T) {
	cases := []struct {
		lim      bufferLimit
		data     int64
		rate     float64
		overText string
	}{
		{bufferLimit{256 << 20, 64 << 20, 60}, 1 << 30, 1 << 20, ""},                     // ~21 s × 1 MiB/s
		{bufferLimit{16 << 20, 0, 0}, 1 << 30, 1 << 20, "above the hard limit 16.0 MiB"}, // 21 MiB queued
		{bufferLimit{0, 8 << 20, 10}, 1 << 30, 1 << 20, "above the soft limit 8.0 MiB"},  // over 8 MiB for ~13 s
		{bufferLimit{0, 8 << 20, 60}, 1 << 30, 1 << 20, ""},
		{bufferLimit{0, 0, 0}, 100 << 30, 100 << 20, ""}, // no limits
		{bufferLimit{1, 1, 0}, 0, 0, ""},                 // idle
	}
	for i, c := range cases {
		_, _, over := outputBufferRisk(c.lim, c.data, c.rate)
		if c.overText == "" && over != "" || c.overText != "" && !strings.Contains(over, c.overText) {
			t.Errorf("case %d: over %q, want %q", i, over, c.overText)
		}
	}
	for _, s := range []string{"normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60", "replica 256mb 64mb 60"} {
		lim, err := parseOutputBufferLimit(s)
		if err != nil || lim != (bufferLimit{256 << 20, 64 << 20, 60}) {
			t.Errorf("parseOutputBufferLimit(%q) = %+v, %v", s, lim, err)
		}
	}
	for _, s := range []string{"normal 0 0 0", "slave 1 2", "slave x 1 1"} {
		if _, err := parseOutputBufferLimit(s); err == nil {
			t.Errorf("parseOutputBufferLimit(%q): no error", s)
		}
	}
}
