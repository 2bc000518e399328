package task

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// writeBacklog writes n small commands to the source, pipelined: SET, INCR, RPUSH and HSET
// over 10,000 keys in two DBs, the mix of a typical cache and counter workload.
func writeBacklog(tb testing.TB, src *testutil.Server, n int) {
	tb.Helper()
	ctx := context.Background()
	c := src.Conn(tb)
	const chunk = 5000
	for done := 0; done < n; {
		k := min(chunk, n-done)
		for i := range k {
			j := done + i
			key := fmt.Sprintf("k:%d", j%10000)
			var err error
			switch j % 5 {
			case 0:
				err = c.Send("SET", "s"+key, j)
			case 1:
				err = c.Send("INCR", "c"+key)
			case 2:
				err = c.Send("RPUSH", "l"+key, j)
			case 3:
				err = c.Send("HSET", "h"+key, j%7, j)
			case 4:
				err = c.Send("SELECT", 1-(j/5)%2) // alternate DBs now and then
			}
			if err != nil {
				tb.Fatal(err)
			}
		}
		if err := c.Flush(); err != nil {
			tb.Fatal(err)
		}
		for range k {
			if _, err := c.Receive(); err != nil {
				tb.Fatal(err)
			}
		}
		done += k
	}
	if _, err := c.Do(ctx, "SELECT", 0); err != nil {
		tb.Fatal(err)
	}
}

// catchUp starts a stopped task that is behind the source, measures how long it takes to
// apply everything up to the source's current offset (the incremental phase's throughput
// with a backlog, free of the source's own speed), and stops it again.
func catchUp(t *testing.T, src, dst *testutil.Server, cfg Config) catchUpResult {
	t.Helper()
	target := stat(t, src, "replication", "master_repl_offset")
	dstCPU := cpuSeconds(t, dst)
	selfCPU := processCPU(t)
	start := time.Now()
	r := startTask(t, cfg)
	st := waitStatus(t, r, 10*time.Minute, "the backlog applied", func(s Status) bool {
		return s.Phase == PhaseIncremental && s.AppliedOffset >= target
	})
	took := time.Since(start)
	res := catchUpResult{
		applied:  st.Commands,
		batches:  st.Batches,
		rate:     float64(st.Commands) / took.Seconds(),
		dstCPU:   cpuSeconds(t, dst) - dstCPU,
		ferryCPU: processCPU(t) - selfCPU,
	}
	if st.Path != "partial" {
		t.Fatalf("the catch-up run took path %q; want partial", st.Path)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	return res
}

type catchUpResult struct {
	applied, batches int64
	rate             float64 // commands applied per second
	dstCPU, ferryCPU float64 // CPU seconds of the destination and of this process
}

// cpuSeconds is the CPU time a server has used (INFO cpu, user + system).
func cpuSeconds(tb testing.TB, s *testutil.Server) float64 {
	tb.Helper()
	info, err := s.Info(context.Background(), "cpu")
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, f := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, err := strconv.ParseFloat(info[f], 64)
		if err != nil {
			tb.Fatalf("INFO cpu %s: %v", f, err)
		}
		sum += v
	}
	return sum
}

// processCPU is the CPU time this process has used.
func processCPU(tb testing.TB) float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// TestDeliveryModes applies the same backlog in both delivery modes and checks both end
// identical to the source. With FERRY_LONG_TESTS=1 it measures the incremental phase's
// throughput of each, alternating modes over several rounds on the same servers, and logs
// what the exactly-once batches cost.
func TestDeliveryModes(t *testing.T) {
	n, rounds := 20000, 1
	if os.Getenv("FERRY_LONG_TESTS") == "1" {
		n, rounds = 500000, 5
	}
	src := testutil.StartServer(t, "--repl-backlog-size", "1gb")
	modes := []Delivery{DeliveryExactlyOnce, DeliveryAtLeastOnce}
	dsts := map[Delivery]*testutil.Server{}
	cfgs := map[Delivery]Config{}
	for _, mode := range modes {
		dsts[mode] = testutil.StartServer(t)
		cfg := resumeConfig(t, src.Addr(), dsts[mode].Addr())
		cfg.Name = "delivery-" + strings.ReplaceAll(string(mode), "-", "")
		cfg.Delivery = mode
		cfgs[mode] = cfg
	}
	// Both tasks synced, then stopped: each round both catch up with the same backlog.
	for _, mode := range modes {
		r := startTask(t, cfgs[mode])
		waitPhase(t, r, PhaseIncremental)
		if err := r.stop(t); err != nil {
			t.Fatal(err)
		}
	}
	rates := map[Delivery][]float64{}
	dstCPU := map[Delivery][]float64{}
	ferryCPU := map[Delivery][]float64{}
	for round := range rounds {
		writeBacklog(t, src, n)
		order := modes
		if round%2 == 1 {
			order = []Delivery{modes[1], modes[0]} // neither always runs first
		}
		for _, mode := range order {
			dst, cfg := dsts[mode], cfgs[mode]
			r := catchUp(t, src, dst, cfg)
			rates[mode] = append(rates[mode], r.rate)
			dstCPU[mode] = append(dstCPU[mode], 1e6*r.dstCPU/float64(r.applied))
			ferryCPU[mode] = append(ferryCPU[mode], 1e6*r.ferryCPU/float64(r.applied))
			t.Logf("round %d, %s: %d commands applied at %.0f/s, %d checkpoints; CPU per command: destination %.2f µs, ferry %.2f µs",
				round+1, mode, r.applied, r.rate, r.batches, 1e6*r.dstCPU/float64(r.applied), 1e6*r.ferryCPU/float64(r.applied))
			testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
		}
	}
	if rounds > 1 {
		eo, alo := DeliveryExactlyOnce, DeliveryAtLeastOnce
		t.Logf("median of %d rounds of %d source commands: "+
			"throughput exactly-once %.0f/s, at-least-once %.0f/s (exactly-once %+.1f %%); "+
			"destination CPU per command %.2f µs vs %.2f µs (%+.1f %%); ferry CPU per command %.2f µs vs %.2f µs (%+.1f %%)",
			rounds, n, median(rates[eo]), median(rates[alo]), pct(median(rates[eo]), median(rates[alo])),
			median(dstCPU[eo]), median(dstCPU[alo]), pct(median(dstCPU[eo]), median(dstCPU[alo])),
			median(ferryCPU[eo]), median(ferryCPU[alo]), pct(median(ferryCPU[eo]), median(ferryCPU[alo])))
	}
}

// pct is how much a differs from b, in percent of b.
func pct(a, b float64) float64 { return 100 * (a - b) / b }

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}
