package verify

import (
	"context"
	"sync"
	"time"
)

// limiter is a token bucket of commands per second, shared by every worker talking to one
// side, so --max-ops bounds the load verify puts on each server as a whole. A caller takes
// its tokens up front and sleeps off any debt, so waits are computed, never polled, and
// callers are served in arrival order.
type limiter struct {
	rate  float64 // tokens per second
	burst float64 // most tokens that can accumulate while idle

	mu     sync.Mutex
	tokens float64
	last   time.Time
}

// newLimiter returns a limiter of opsPerSec, or nil (no limit) when opsPerSec <= 0. The
// burst is a tenth of a second's worth, at least one pipeline's worth of small batches.
func newLimiter(opsPerSec int) *limiter {
	if opsPerSec <= 0 {
		return nil
	}
	burst := max(float64(opsPerSec)/10, 1)
	return &limiter{rate: float64(opsPerSec), burst: burst, tokens: burst, last: time.Now()}
}

// wait takes n tokens, sleeping until they are paid for or ctx ends.
func (l *limiter) wait(ctx context.Context, n int) error {
	if l == nil {
		return ctx.Err()
	}
	l.mu.Lock()
	now := time.Now()
	l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	l.last = now
	l.tokens -= float64(n)
	debt := -l.tokens
	l.mu.Unlock()
	if debt <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(time.Duration(debt / l.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
