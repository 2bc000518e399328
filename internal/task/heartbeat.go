package task

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

// heartbeatTTL keeps a heartbeat key alive a while after the task stops, then lets it go.
const heartbeatTTL = time.Minute

// heartbeat writes SET ferry:hb:<task> <unix-ms> PX <ttl> to the source every interval.
// When it comes back through the stream, now − value is the end-to-end latency. Without
// write permission on the source it falls back to an offset-based estimate, once, loudly.
func (t *Task) heartbeat(ctx context.Context) {
	key := t.cfg.heartbeatKey()
	var conn *redis.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	tick := time.NewTicker(t.cfg.HeartbeatInterval)
	defer tick.Stop()
	warned := false
	for {
		if conn == nil {
			t.mu.Lock()
			source := t.source
			t.mu.Unlock()
			c, err := redis.Dial(ctx, source)
			if err == nil {
				conn = c
			} else if ctx.Err() != nil {
				return
			}
		}
		if conn != nil {
			now := time.Now().UnixMilli()
			_, err := conn.Do(ctx, "SET", key, now, "PX", heartbeatTTL.Milliseconds())
			var re *resp.Error
			switch {
			case err == nil:
				t.st.latencyEst.Store(false)
			case errors.As(err, &re):
				// NOPERM, READONLY (a replica as source), OOM: no heartbeat possible. On a
				// cluster source's shard, MOVED: the key's slot was migrated away since
				// the task started; the next run picks a key in a slot the shard serves.
				t.st.latencyEst.Store(true)
				if !warned {
					warned = true
					msg := "cannot write the heartbeat key on the source; lag in seconds is estimated from offsets"
					if _, _, moved := re.IsMoved(); moved {
						msg = "the heartbeat key's slot moved to another shard of the source; lag in seconds is estimated from offsets until the task restarts"
					}
					t.log.Warn(msg, "key", key, "error", err)
				}
			default:
				if ctx.Err() != nil {
					return
				}
				conn.Close()
				conn = nil
			}
		}
		if t.st.latencyEst.Load() {
			t.estimateLatency()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// observeHeartbeat records the latency of a heartbeat value seen in the stream.
func (t *Task) observeHeartbeat(value []byte) {
	ms, err := strconv.ParseInt(string(value), 10, 64)
	if err != nil {
		return
	}
	lat := time.Since(time.UnixMilli(ms))
	if lat < 0 {
		lat = 0
	}
	t.st.latencyNanos.Store(int64(lat))
}

// estimateLatency derives the lag in time from the lag in bytes and the recent rate at
// which the destination applies the stream's bytes.
func (t *Task) estimateLatency() {
	lag := t.lagBytes()
	// The rate at which the destination applies stream bytes, sampled here (once per
	// heartbeat interval) so it does not depend on anyone reading the status.
	t.st.mu.Lock()
	rate := t.st.appliedRate.sample(time.Now(), t.st.appliedOffset.Load())
	t.st.mu.Unlock()
	if lag == 0 {
		t.st.latencyNanos.Store(0)
		return
	}
	if rate <= 0 {
		return
	}
	secs := float64(lag) / rate
	t.st.latencyNanos.Store(int64(secs * float64(time.Second)))
}
