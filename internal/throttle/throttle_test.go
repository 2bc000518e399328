package throttle

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// The rate tests run one at a time: they measure wall-clock rates, and callers competing
// for the CPU inside one test binary fall behind a limit through no fault of the limiter.
//
// Rates are judged with the limiter's own account of unused capacity: a caller that does
// not get the CPU (a loaded machine, the race detector) leaves capacity unused and runs
// below the limit; the limiter is at fault only if calls plus unused capacity fall short.
// On an idle machine unused capacity is ~0 and the measured rate itself is within 10 %.

// sample is the time a Wait returned and the limiter's unused capacity then.
type sample struct {
	at                time.Duration
	unusedOps, unused float64 // ops; and ops or bytes, whichever the test limits
}

// run calls Wait(ops, n) in a loop until d has passed.
func run(t *testing.T, l *Limiter, d time.Duration, ops, n int64) []sample {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	var out []sample
	for {
		if err := l.Wait(ctx, ops, n); err != nil {
			t.Fatal(err)
		}
		e := time.Since(start)
		if e >= d {
			return out
		}
		st := l.Stats()
		out = append(out, sample{at: e, unusedOps: st.UnusedOps, unused: st.UnusedOps + st.UnusedBytes/float64(max(n, 1))})
	}
}

// checkRate judges the calls that returned in [from, to): at most the limit + 10 %, and at
// least the limit - 10 % once the capacity the caller left unused is counted.
func checkRate(t *testing.T, what string, s []sample, from, to time.Duration, limit float64) {
	t.Helper()
	n, unusedFrom, unusedTo := 0, 0.0, 0.0
	for _, x := range s {
		if x.at < from {
			unusedFrom = x.unused
		}
		if x.at < to {
			unusedTo = x.unused
		}
		if x.at >= from && x.at < to {
			n++
		}
	}
	secs := (to - from).Seconds()
	judge(t, what, float64(n)/secs, (unusedTo-unusedFrom)/secs, limit)
}

func judge(t *testing.T, what string, rate, spare, limit float64) {
	t.Helper()
	t.Logf("%s: %.0f/s (limit %.0f/s, %+.1f%%; capacity left unused by the caller %.0f/s)", what, rate, limit, (rate-limit)/limit*100, spare)
	if rate > limit*1.10 {
		t.Errorf("%s: %.0f/s exceeds the limit %.0f/s by more than 10%%", what, rate, limit)
	}
	if rate+spare < limit*0.90 {
		t.Errorf("%s: %.0f/s with %.0f/s unused: the limiter held the caller more than 10%% below %.0f/s", what, rate, spare, limit)
	}
}

// TestOpsRate: at --max-ops 5000 the measured rate over 3 s stays within 10 % of the limit
// (the acceptance criterion), one operation per call as the apply loop makes them.
func TestOpsRate(t *testing.T) {
	l := New(Limits{MaxOps: 5000})
	s := run(t, l, 3*time.Second, 1, 0)
	checkRate(t, "ops over 3 s", s, 0, 3*time.Second, 5000)
	if r := l.Reason(); r != "throttled: max-ops 5000" {
		t.Errorf("Reason = %q while throttled", r)
	}
}

// TestBytesRate: --max-bytes with values of uneven size, some larger than a burst.
func TestBytesRate(t *testing.T) {
	const limit = 4 << 20
	l := New(Limits{MaxBytes: limit})
	ctx := context.Background()
	start := time.Now()
	var total int64
	sizes := []int64{100, 64 << 10, 7, 900 << 10, 3000}
	for i := 0; time.Since(start) < 2*time.Second; i++ {
		n := sizes[i%len(sizes)]
		if err := l.Wait(ctx, 1, n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	secs := time.Since(start).Seconds()
	judge(t, "bytes over 2 s", float64(total)/secs, l.Stats().UnusedBytes/secs, limit)
	if r := l.Reason(); r != "throttled: max-bytes 4MiB" {
		t.Errorf("Reason = %q while throttled by bytes", r)
	}
}

// TestBothLimits: the tighter limit wins, and the reason names it.
func TestBothLimits(t *testing.T) {
	l := New(Limits{MaxOps: 100000, MaxBytes: 1 << 20}) // 1 KiB ops: bytes bind at 1024 ops/s
	s := run(t, l, time.Second, 1, 1024)
	n := float64(len(s))
	judge(t, "ops under a byte limit", n, l.Stats().UnusedBytes/1024, 1024)
	if r := l.Reason(); r != "throttled: max-bytes 1MiB" {
		t.Errorf("Reason = %q", r)
	}
}

// TestUnusedCapacity: a caller that stalls (here on purpose) runs below the limit, and
// the limiter accounts for the capacity it left unused, so that the shortfall is not
// mistaken for the limiter's.
func TestUnusedCapacity(t *testing.T) {
	l := New(Limits{MaxOps: 1000})
	ctx := context.Background()
	start := time.Now()
	n, last := 0, time.Duration(0)
	for last < 2*time.Second {
		if n > 0 && n%300 == 0 {
			<-time.After(300 * time.Millisecond) // a stall longer than the burst
		}
		if err := l.Wait(ctx, 1, 0); err != nil {
			t.Fatal(err)
		}
		n++
		last = time.Since(start)
	}
	// Unused capacity is counted when the next call comes: the window ends at the last one.
	secs := last.Seconds()
	rate, spare := float64(n)/secs, l.Stats().UnusedOps/secs
	judge(t, "a stalling caller", rate, spare, 1000)
	if spare < 100 || rate > 900 {
		t.Errorf("the stalls left %.0f/s unused at %.0f/s: the accounting missed them", spare, rate)
	}
}

// TestSetLimitsTakesEffect: lowering and raising the limit mid-way shows in the measured
// rate within a second of the change, as the acceptance asks.
func TestSetLimitsTakesEffect(t *testing.T) {
	l := New(Limits{MaxOps: 5000})
	start := time.Now()
	// The changes are timed by timers, which a loaded machine fires late: windows are
	// measured from when each change really happened.
	var (
		wg               sync.WaitGroup
		lowered, raised  time.Duration
		errLow, errRaise error
	)
	wg.Add(2)
	time.AfterFunc(time.Second, func() {
		defer wg.Done()
		errLow = l.SetLimits(Limits{MaxOps: 1000})
		lowered = time.Since(start)
	})
	time.AfterFunc(2500*time.Millisecond, func() {
		defer wg.Done()
		errRaise = l.SetLimits(Limits{MaxOps: 8000})
		raised = time.Since(start)
	})
	s := run(t, l, 3700*time.Millisecond, 1, 0)
	wg.Wait()
	if err := errors.Join(errLow, errRaise); err != nil {
		t.Fatal(err)
	}
	// Timestamps in s are relative to run's own start, a hair after ours: microseconds.
	checkRate(t, "before the change", s, 0, lowered, 5000)
	checkRate(t, "the second after lowering", s, lowered, lowered+time.Second, 1000)
	checkRate(t, "the second after raising", s, raised, raised+time.Second, 8000)
	if got := l.Limits(); got.MaxOps != 8000 {
		t.Errorf("Limits = %+v", got)
	}
}

// TestSetLimitsWakesWaiter: a caller in a long wait (a big value under a small byte limit)
// is released as soon as the limit is lifted, and re-timed when it is changed.
func TestSetLimitsWakesWaiter(t *testing.T) {
	t.Parallel()
	l := New(Limits{MaxBytes: 1000})
	done := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		_ = l.Wait(context.Background(), 1, 10000) // 10 s at the old limit
		done <- time.Since(start)
	}()
	time.AfterFunc(100*time.Millisecond, func() { _ = l.SetLimits(Limits{MaxBytes: 50000}) }) // now 0.2 s
	select {
	case d := <-done:
		if d > time.Second {
			t.Errorf("the waiter took %v after the limit was raised", d)
		}
		t.Logf("released after %v", d.Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not released by a raised limit")
	}
	// Lifting every limit releases a waiter at once.
	if err := l.SetLimits(Limits{MaxOps: 1}); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = l.Wait(context.Background(), 50, 0)
		done <- time.Since(start)
	}()
	time.AfterFunc(50*time.Millisecond, func() { _ = l.SetLimits(Limits{}) })
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("the waiter was not released when the limits were lifted")
	}
}

// TestCancel: a waiter returns ctx's error promptly, and its reservation is given back.
func TestCancel(t *testing.T) {
	t.Parallel()
	l := New(Limits{MaxOps: 10})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := l.Wait(ctx, 100, 0) // 10 s worth
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("cancelled Wait returned after %v", d)
	}
	// Given back: one more op waits about 0.1 s, not the 10 s the cancelled one reserved.
	start = time.Now()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if err := l.Wait(ctx2, 1, 0); err != nil {
		t.Fatalf("Wait after a cancelled reservation: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the cancelled reservation was not given back: next op waited %v", d)
	}
}

// TestUnlimited: no limits means no waiting, no allocation, and no reason.
func TestUnlimited(t *testing.T) {
	l := New(Limits{})
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() { _ = l.Wait(ctx, 1, 1<<30) }); n != 0 {
		t.Errorf("unlimited Wait allocates %.1f times", n)
	}
	start := time.Now()
	for range 1_000_000 {
		_ = l.Wait(ctx, 1, 1<<20)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a million unlimited Waits took %v", d)
	}
	if l.Reason() != "" || l.Throttled() {
		t.Errorf("unlimited limiter reports %q", l.Reason())
	}
	if err := l.SetLimits(Limits{MaxOps: -1}); err == nil {
		t.Error("negative limit accepted")
	}
}

// TestReasonClears: the reason is shown while throttling and for a second after, then not.
func TestReasonClears(t *testing.T) {
	l := New(Limits{MaxOps: 50000})
	run(t, l, 200*time.Millisecond, 1, 0)
	if r := l.Reason(); r != "throttled: max-ops 50000" {
		t.Errorf("Reason = %q just after throttling", r)
	}
	<-time.After(reasonWindow + 100*time.Millisecond)
	if r := l.Reason(); r != "" {
		t.Errorf("Reason = %q a second after the last delay", r)
	}
	s := l.Stats()
	if s.Delayed <= 0 || s.Waiting != 0 || s.Limits.MaxOps != 50000 {
		t.Errorf("Stats = %+v", s)
	}
}

// TestConcurrentCallers share the rate.
func TestConcurrentCallers(t *testing.T) {
	l := New(Limits{MaxOps: 4000})
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := len(run(t, l, 1500*time.Millisecond, 1, 0))
			mu.Lock()
			total += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	judge(t, "4 callers together", float64(total)/secs, l.Stats().UnusedOps/secs, 4000)
}

func TestParseBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  string
	}{
		{"0", 0, ""},
		{"1048576", 1 << 20, ""},
		{"64MiB", 64 << 20, ""},
		{"64mib", 64 << 20, ""},
		{" 10 MB ", 10e6, ""},
		{"1.5GiB", 3 << 29, ""},
		{"512B", 512, ""},
		{"2KB", 2000, ""},
		{"1TiB", 1 << 40, ""},
		{"", 0, "want a number"},
		{"MB", 0, "want a number"},
		{"-1", 0, "want a number"},
		{"1.5", 0, "want a number"},
		{"1e6", 0, "want a number"},
		{"10 potatoes", 0, "want a number"},
		{"nanMB", 0, "want a number"},
		{"infGB", 0, "too large"},
		{"9999999999TiB", 0, "too large"},
	} {
		got, err := ParseBytes(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseBytes(%q) = %d, %v; want an error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, n := range []int64{0, 1, 1000, 1024, 1 << 20, 3 << 29, 1<<40 + 1} {
		if got, err := ParseBytes(FormatBytes(n)); err != nil || got != n {
			t.Errorf("FormatBytes(%d) = %q reads back as %d, %v", n, FormatBytes(n), got, err)
		}
	}
	if s := (Limits{MaxOps: 5000, MaxBytes: 1 << 20}).String(); s != "max-ops 5000, max-bytes 1MiB" {
		t.Errorf("Limits.String = %q", s)
	}
}

func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"0", "64MiB", "1.5GB", "-1", "nanMB", "1e6", " 7 kib"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseBytes(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseBytes(%q) = %d", s, n)
		}
		if back, err := ParseBytes(FormatBytes(n)); err != nil || back != n {
			t.Fatalf("FormatBytes(%d) = %q reads back as %d, %v", n, FormatBytes(n), back, err)
		}
	})
}

func BenchmarkWaitUnlimited(b *testing.B) {
	l := New(Limits{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Wait(ctx, 1, 100)
	}
}

func BenchmarkWaitLimitedFast(b *testing.B) {
	l := New(Limits{MaxOps: 1 << 40}) // limited, never binding: the bookkeeping cost
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = l.Wait(ctx, 1, 100)
	}
}
