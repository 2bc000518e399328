package verify

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// Benchmarks with big datasets; `make test` does not run them. Run one at a time:
//
//	go test ./internal/verify -run '^$' -bench BigHash -benchtime 1x
//	go test ./internal/verify -run '^$' -bench ValueMixed -benchtime 1x
//
// FERRY_VERIFY_BENCH_KEYS sets the dataset of BenchmarkValueMixed (default 1,000,000 keys),
// FERRY_VERIFY_BENCH_BATCH its batch size.

// BenchmarkBigHashMemory compares a 1,000,000-field hash that differs in one field and
// reports the process's peak RSS during the comparison (VmHWM, reset just before it): the
// element-by-element path must find the field without holding the hash.
func BenchmarkBigHashMemory(b *testing.B) {
	const fields = 1_000_000
	src := testutil.StartServer(b)
	dst := testutil.StartServer(b)
	fillPipelined(b, src, func(send func(args ...any), i int) {
		if i < fields/1000 {
			args := make([]any, 0, 2+2000)
			args = append(args, "HSET", "big")
			for j := i * 1000; j < (i+1)*1000; j++ {
				args = append(args, "field:"+strconv.Itoa(j), "value-"+strconv.Itoa(j))
			}
			send(args...)
		}
	}, fields/1000)
	dst.ReplicaOf(b, src)
	dst.Do(b, "REPLICAOF", "NO", "ONE")
	dst.Do(b, "HSET", "big", "field:765432", "changed")
	for _, noDigest := range []bool{false, true} {
		b.Run(fmt.Sprintf("digest=%v", !noDigest), func(b *testing.B) {
			o := opts(src.Addr(), dst.Addr())
			o.NoDigest = noDigest
			o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			for b.Loop() {
				resetPeakRSS(b)
				start := time.Now()
				res := run(b, o)
				elapsed := time.Since(start)
				peak := peakRSS(b)
				if len(res.Remaining) != 1 || res.Remaining[0].Class != ClassValue || !bytes.Contains([]byte(res.Remaining[0].Detail), []byte(`"field:765432"`)) {
					b.Fatalf("remaining %v", res.Remaining)
				}
				b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MB")
				b.ReportMetric(elapsed.Seconds(), "s/compare")
				if peak > 100<<20 {
					b.Errorf("peak RSS %d MB, over 100 MB", peak>>20)
				}
				b.Logf("detail: %s; peak RSS %.1f MB; %v", res.Remaining[0].Detail, float64(peak)/(1<<20), elapsed)
			}
		})
	}
}

// BenchmarkValueMixed compares a dataset of mixed small keys (strings, hashes, lists, sets,
// zsets, streams, with TTLs on some) in value mode and reports keys/s.
func BenchmarkValueMixed(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("FERRY_VERIFY_BENCH_KEYS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	src := testutil.StartServer(b)
	dst := testutil.StartServer(b)
	start := time.Now()
	fillPipelined(b, src, func(send func(args ...any), i int) {
		k := "k:" + strconv.Itoa(i)
		switch i % 6 {
		case 0:
			send("SET", k, "value-"+strconv.Itoa(i))
		case 1:
			send("HSET", k, "a", i, "b", "bee", "c", "sea")
		case 2:
			send("RPUSH", k, "x", "y", i)
		case 3:
			send("SADD", k, "m1", "m2", i)
		case 4:
			send("ZADD", k, 1, "a", 2.5, "b", i, "c")
		case 5:
			send("XADD", k, "*", "f", i)
		}
		if i%10 == 0 {
			send("EXPIRE", k, 7200)
		}
	}, n)
	dst.ReplicaOf(b, src)
	dst.Do(b, "REPLICAOF", "NO", "ONE")
	b.Logf("%d keys loaded and copied in %v", n, time.Since(start).Round(time.Millisecond))
	batch := DefaultBatchSize
	if s := os.Getenv("FERRY_VERIFY_BENCH_BATCH"); s != "" {
		batch, _ = strconv.Atoi(s)
	}
	for _, tc := range []struct {
		noDigest bool
		maxOps   int
	}{{false, 0}, {true, 0}} {
		b.Run(fmt.Sprintf("digest=%v/max-ops=%d", !tc.noDigest, tc.maxOps), func(b *testing.B) {
			o := opts(src.Addr(), dst.Addr())
			o.NoDigest, o.MaxOps, o.BatchSize = tc.noDigest, tc.maxOps, batch
			o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			for b.Loop() {
				resetPeakRSS(b)
				t0 := time.Now()
				res := run(b, o)
				d := time.Since(t0)
				if !res.Clean() || res.Rounds[0].Keys != int64(n) {
					b.Fatalf("compared %d keys, remaining %v", res.Rounds[0].Keys, res.Remaining)
				}
				b.ReportMetric(float64(n)/d.Seconds(), "keys/s")
				b.ReportMetric(float64(peakRSS(b))/(1<<20), "peak-RSS-MB")
				b.Logf("%d keys both ways in %v: %.0f keys/s (max-ops %d, digest %v, parallel %d, batch %d)",
					n, d.Round(time.Millisecond), float64(n)/d.Seconds(), tc.maxOps, !tc.noDigest, DefaultParallel, batch)
			}
		})
	}
}

// BenchmarkMaxOps shows --max-ops holding the command rate: 20,000 keys at 40,000 ops/s per
// side.
func BenchmarkMaxOps(b *testing.B) {
	const n = 20_000
	src := testutil.StartServer(b)
	dst := testutil.StartServer(b)
	fillPipelined(b, src, func(send func(args ...any), i int) { send("SET", "k:"+strconv.Itoa(i), i) }, n)
	dst.ReplicaOf(b, src)
	dst.Do(b, "REPLICAOF", "NO", "ONE")
	o := opts(src.Addr(), dst.Addr())
	o.MaxOps = 40_000
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	for b.Loop() {
		before := commandsProcessed(b, src)
		t0 := time.Now()
		res := run(b, o)
		d := time.Since(t0)
		ops := commandsProcessed(b, src) - before
		if !res.Clean() {
			b.Fatalf("remaining %v", res.Remaining)
		}
		rate := float64(ops) / d.Seconds()
		b.ReportMetric(rate, "src-ops/s")
		b.ReportMetric(float64(n)/d.Seconds(), "keys/s")
		if rate > 1.1*float64(o.MaxOps) {
			b.Errorf("source saw %.0f ops/s with --max-ops %d", rate, o.MaxOps)
		}
	}
}

func commandsProcessed(b *testing.B, s *testutil.Server) int64 {
	info, err := s.Info(testCtx(b), "stats")
	if err != nil {
		b.Fatal(err)
	}
	n, _ := strconv.ParseInt(info["total_commands_processed"], 10, 64)
	return n
}

// fillPipelined calls gen for i in [0, n) and sends what it produces to s, pipelined.
func fillPipelined(b *testing.B, s *testutil.Server, gen func(send func(args ...any), i int), n int) {
	b.Helper()
	ctx := testCtx(b)
	c, err := redis.Dial(ctx, redis.Options{Addr: s.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	pending := 0
	drain := func() {
		for ; pending > 0; pending-- {
			if _, err := c.Receive(); err != nil {
				b.Fatal(err)
			}
		}
	}
	send := func(args ...any) {
		if err := c.Send(args...); err != nil {
			b.Fatal(err)
		}
		pending++
	}
	for i := range n {
		gen(send, i)
		if pending >= 2000 {
			drain()
		}
	}
	drain()
}

// resetPeakRSS resets the kernel's peak-RSS mark of this process (Linux: "5" to
// /proc/self/clear_refs), so VmHWM covers only what follows.
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Skipf("cannot reset the peak RSS (%v); Linux only", err)
	}
}

// peakRSS reads VmHWM from /proc/self/status, in bytes.
func peakRSS(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmHWM:")); ok {
			kb, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte("kB")))), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}
