// Package throttle limits how fast a task applies data to the destination: operations and
// bytes per second, with token buckets. Limits change while the task runs (SetLimits), and
// the limiter says in words when it is holding the task back (Reason), for status and
// metrics. A limiter with no limits costs one atomic load per call.
//
// A task keeps one Limiter per phase (full sync, incremental): snapshot keys and stream
// commands have different costs, so operators set them apart.
package throttle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits are the rates a Limiter enforces; zero means unlimited.
type Limits struct {
	MaxOps   int64 `json:"max_ops"`   // operations (snapshot keys, commands) per second
	MaxBytes int64 `json:"max_bytes"` // bytes per second
}

// Unlimited reports whether neither rate is limited.
func (l Limits) Unlimited() bool { return l.MaxOps <= 0 && l.MaxBytes <= 0 }

// Validate refuses negative limits.
func (l Limits) Validate() error {
	if l.MaxOps < 0 || l.MaxBytes < 0 {
		return fmt.Errorf("throttle limits must be zero (unlimited) or positive, not max-ops %d, max-bytes %d", l.MaxOps, l.MaxBytes)
	}
	return nil
}

func (l Limits) String() string {
	if l.Unlimited() {
		return "unlimited"
	}
	var parts []string
	if l.MaxOps > 0 {
		parts = append(parts, "max-ops "+strconv.FormatInt(l.MaxOps, 10))
	}
	if l.MaxBytes > 0 {
		parts = append(parts, "max-bytes "+FormatBytes(l.MaxBytes))
	}
	return strings.Join(parts, ", ")
}

// Config is a task's throttle: one set of limits per phase.
type Config struct {
	Full        Limits `json:"full"`
	Incremental Limits `json:"incremental"`
}

// Tuning. The burst lets a caller that was held up (scheduling, a slow reply) catch up
// without losing its share of the rate, and is what a rate change forgets.
const (
	// burstWindow: a bucket holds at most this much time's worth of tokens.
	burstWindow = 100 * time.Millisecond
	// minSleep: a wait shorter than this is not slept but carried as debt into the next
	// call, so that a caller making many small calls sleeps in ~1 ms steps instead of
	// arming a timer per operation; the long-run rate is exact either way.
	minSleep = time.Millisecond
	// reasonWindow: Reason reports a delay for this long after it, because status is
	// read at arbitrary instants and a task throttled 90 % of the time is "throttled".
	reasonWindow = time.Second
)

// Limiter is a token-bucket limiter on operations and bytes per second, safe for
// concurrent use: goroutines sharing one share its rates. Use New.
type Limiter struct {
	// unlimited mirrors limits.Unlimited() for the lock-free fast path.
	unlimited atomic.Bool

	mu     sync.Mutex
	limits Limits
	ops    bucket
	bytes  bucket
	gen    uint64        // incremented by SetLimits
	change chan struct{} // closed by SetLimits to wake the waiters, then replaced

	epoch     time.Time    // base of lastDelay (monotonic clock)
	lastDelay atomic.Int64 // nanoseconds since epoch when a delay last started or ended; 0 none
	reasonOps atomic.Bool  // the last delay was due to max-ops (else max-bytes)
	waiting   atomic.Int64
	delayed   atomic.Int64 // total nanoseconds callers were held
}

// bucket is one token bucket. tokens may go negative: a reservation larger than what is
// there is granted at once and paid for by the wait the caller is told to do (and by the
// waits of the callers after it), which keeps large requests (a big value's bytes) fair.
type bucket struct {
	rate   float64 // tokens per second; 0 unlimited
	burst  float64
	tokens float64
	last   time.Time
	// unused counts the tokens that overflowed a full bucket: capacity the callers did not
	// ask for (they were idle, or starved of CPU). It tells "the limit held the task at
	// this rate" from "the task did not go faster on its own".
	unused float64
}

func (b *bucket) set(rate int64, now time.Time) {
	b.rate = float64(rate)
	b.burst = max(1, b.rate*burstWindow.Seconds())
	// Start empty: the first second after a change runs at the new rate, not at the new
	// rate plus a burst; and debt run up under the old rate is forgiven (the waiters
	// holding it re-reserve under the new one).
	b.tokens = 0
	b.last = now
}

// reserve takes n tokens and returns how long the caller must wait for them.
func (b *bucket) reserve(n float64, now time.Time) time.Duration {
	if b.rate == 0 || n <= 0 {
		return 0
	}
	if dt := now.Sub(b.last); dt > 0 {
		t := b.tokens + dt.Seconds()*b.rate
		if t > b.burst {
			b.unused += t - b.burst
			t = b.burst
		}
		b.tokens = t
		b.last = now
	}
	b.tokens -= n
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

func (b *bucket) refund(n float64) {
	if b.rate > 0 && n > 0 {
		b.tokens = min(b.burst, b.tokens+n)
	}
}

// New returns a limiter enforcing l (negative values count as zero: unlimited).
func New(l Limits) *Limiter {
	lim := &Limiter{epoch: time.Now(), change: make(chan struct{})}
	lim.setLocked(Limits{MaxOps: max(0, l.MaxOps), MaxBytes: max(0, l.MaxBytes)}, time.Now())
	return lim
}

func (l *Limiter) setLocked(lim Limits, now time.Time) {
	l.limits = lim
	l.ops.set(lim.MaxOps, now)
	l.bytes.set(lim.MaxBytes, now)
	l.unlimited.Store(lim.Unlimited())
}

// SetLimits changes the limits at once: callers waiting under the old ones are woken and
// wait again under the new ones (or not at all when the new ones are unlimited).
func (l *Limiter) SetLimits(lim Limits) error {
	if err := lim.Validate(); err != nil {
		return err
	}
	l.mu.Lock()
	l.setLocked(lim, time.Now())
	l.gen++
	close(l.change)
	l.change = make(chan struct{})
	l.mu.Unlock()
	return nil
}

// Limits returns the limits in force.
func (l *Limiter) Limits() Limits {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limits
}

// Wait blocks until ops operations and n bytes may proceed under the limits, or until ctx
// ends (then it returns ctx.Err() and gives the reservation back). Without limits it
// returns at once.
func (l *Limiter) Wait(ctx context.Context, ops, n int64) error {
	if l.unlimited.Load() {
		return nil
	}
	for {
		l.mu.Lock()
		now := time.Now()
		wOps := l.ops.reserve(float64(ops), now)
		wBytes := l.bytes.reserve(float64(n), now)
		gen, change := l.gen, l.change
		l.mu.Unlock()
		wait := max(wOps, wBytes)
		if wait < minSleep {
			return nil
		}
		l.reasonOps.Store(wOps >= wBytes)
		l.noteDelay()
		l.waiting.Add(1)
		t := time.NewTimer(wait)
		var err error
		select {
		case <-t.C:
			l.delayed.Add(int64(wait))
		case <-change:
			t.Stop()
			err = errChanged
		case <-ctx.Done():
			t.Stop()
			err = ctx.Err()
			l.mu.Lock()
			if l.gen == gen {
				l.ops.refund(float64(ops))
				l.bytes.refund(float64(n))
			}
			l.mu.Unlock()
		}
		l.waiting.Add(-1)
		l.noteDelay()
		if err == errChanged {
			if l.unlimited.Load() {
				return nil
			}
			continue
		}
		return err
	}
}

var errChanged = errors.New("limits changed")

func (l *Limiter) noteDelay() {
	l.lastDelay.Store(max(1, int64(time.Since(l.epoch))))
}

// Throttled reports whether the limiter is holding callers back now, or did within the
// last second.
func (l *Limiter) Throttled() bool {
	if l.waiting.Load() > 0 {
		return true
	}
	last := l.lastDelay.Load()
	return last != 0 && time.Since(l.epoch)-time.Duration(last) < reasonWindow
}

// Reason says why the task is slowed down, for status ("throttled: max-ops 5000"), or ""
// when the limiter is not holding it back.
func (l *Limiter) Reason() string {
	if l.unlimited.Load() || !l.Throttled() {
		return ""
	}
	lim := l.Limits()
	switch {
	case l.reasonOps.Load() && lim.MaxOps > 0:
		return "throttled: max-ops " + strconv.FormatInt(lim.MaxOps, 10)
	case lim.MaxBytes > 0:
		return "throttled: max-bytes " + FormatBytes(lim.MaxBytes)
	case lim.MaxOps > 0:
		return "throttled: max-ops " + strconv.FormatInt(lim.MaxOps, 10)
	}
	return ""
}

// Stats are the limiter's counters, for metrics.
type Stats struct {
	Limits  Limits
	Waiting int64         // callers waiting now
	Delayed time.Duration // total time callers were held (completed waits)
	// UnusedOps and UnusedBytes are capacity the callers left unused, up to the last call:
	// when the measured rate is below the limit, they say by how much the callers, not the
	// limiter, were the reason.
	UnusedOps, UnusedBytes float64
}

// Stats reads the counters.
func (l *Limiter) Stats() Stats {
	l.mu.Lock()
	s := Stats{Limits: l.limits, UnusedOps: l.ops.unused, UnusedBytes: l.bytes.unused}
	l.mu.Unlock()
	s.Waiting, s.Delayed = l.waiting.Load(), time.Duration(l.delayed.Load())
	return s
}
