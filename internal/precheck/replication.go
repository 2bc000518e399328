package precheck

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// minBacklogCoverage is the disconnection the source's backlog should cover at the
	// measured write rate: a shorter break forces a full resync.
	minBacklogCoverage = 60 * time.Second
	// backlogAdviceCoverage is what the advice sizes the backlog for.
	backlogAdviceCoverage = 300 * time.Second
	// minReplTimeout is the repl-timeout below which the source may drop Ferry during a
	// stall.
	minReplTimeout = 600 * time.Second
	// assumedSyncRate is the speed, in bytes per second, at which a full sync (fork, RDB,
	// transfer) is assumed to move the source's data when estimating how long writes
	// queue in the replica output buffer meanwhile. Conservative for a LAN.
	assumedSyncRate = 50 << 20
)

// writeRate is a source master's measured write rate.
type writeRate struct {
	bytesPerSec float64
	how         string // how it was measured
	err         error
}

// rateOnce measures every source master's write rate once, for the backlog and output
// buffer checks that both need it.
type rateOnce struct {
	once  sync.Once
	rates map[string]writeRate
}

func (ro *rateOnce) get(ctx context.Context, r *runner) map[string]writeRate {
	ro.once.Do(func() {
		ro.rates = make(map[string]writeRate, len(r.src.nodes))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, n := range r.src.nodes {
			wg.Go(func() {
				w := r.measureRate(ctx, n)
				mu.Lock()
				ro.rates[n.addr] = w
				mu.Unlock()
			})
		}
		wg.Wait()
	})
	return ro.rates
}

// measureRate samples master_repl_offset twice, RateSample apart: the bytes the master
// added to its replication stream, exactly what a backlog and a replica buffer must hold.
// The offset only moves once the master has a backlog (it creates one when the first
// replica attaches); before that, instantaneous_input_kbps is the best estimate, an
// upper bound since it counts reads too.
func (r *runner) measureRate(ctx context.Context, n *node) writeRate {
	c, err := r.src.dial(ctx, n.addr)
	if err != nil {
		return writeRate{err: err}
	}
	defer c.Close()
	first, err := c.Info(ctx, "replication")
	if err != nil {
		return writeRate{err: err}
	}
	if first["repl_backlog_active"] != "1" {
		stats, err := c.Info(ctx, "stats")
		if err != nil {
			return writeRate{err: err}
		}
		kbps, err := strconv.ParseFloat(stats["instantaneous_input_kbps"], 64)
		if err != nil {
			return writeRate{err: fmt.Errorf("INFO stats on %s: no instantaneous_input_kbps", n.addr)}
		}
		return writeRate{bytesPerSec: kbps * 1024, how: "instantaneous_input_kbps, reads included: without a backlog the writes alone cannot be measured"}
	}
	o1, _ := infoInt(first, "master_repl_offset")
	t1 := time.Now()
	timer := time.NewTimer(r.cfg.RateSample)
	select {
	case <-ctx.Done():
		timer.Stop()
		return writeRate{err: ctx.Err()}
	case <-timer.C:
	}
	second, err := c.Info(ctx, "replication")
	if err != nil {
		return writeRate{err: err}
	}
	o2, _ := infoInt(second, "master_repl_offset")
	dt := time.Since(t1).Seconds()
	return writeRate{bytesPerSec: float64(o2-o1) / dt, how: fmt.Sprintf("master_repl_offset over %.1f s", dt)}
}

// backlog checks how long a disconnection the source's replication backlog covers at
// its current write rate.
func (r *runner) backlog(ctx context.Context, ro *rateOnce) Check {
	rates := ro.get(ctx, r)
	var parts, advice []string
	result := Pass
	for _, n := range r.src.nodes {
		who := r.src.nodeLabel(n)
		w := rates[n.addr]
		if n.info == nil || w.err != nil {
			err := n.err
			if err == nil {
				err = w.err
			}
			parts = append(parts, fmt.Sprintf("%scould not measure: %v", who, err))
			result = max(result, Warn)
			continue
		}
		size, _ := infoInt(n.info, "repl_backlog_size")
		active := n.info["repl_backlog_active"] == "1"
		desc := fmt.Sprintf("%srepl-backlog-size %s", who, formatBytes(size))
		if !active {
			desc += " (created when a replica attaches)"
		}
		desc += fmt.Sprintf("; writes %s/s (%s)", formatBytes(int64(w.bytesPerSec)), w.how)
		if w.bytesPerSec < 1 {
			parts = append(parts, desc+" → idle now: covers any disconnection at this rate")
			continue
		}
		covers := time.Duration(float64(size) / w.bytesPerSec * float64(time.Second))
		desc += fmt.Sprintf(" → covers %s of disconnection", formatDuration(covers))
		parts = append(parts, desc)
		if covers < minBacklogCoverage {
			result = max(result, Warn)
			want := roundUpMiB(int64(math.Ceil(w.bytesPerSec * backlogAdviceCoverage.Seconds())))
			advice = append(advice, fmt.Sprintf("raise repl-backlog-size on %s to cover %s at this rate: CONFIG SET repl-backlog-size %d (%s; more for peaks)", n.addr, formatDuration(backlogAdviceCoverage), want, formatBytes(want)))
		}
	}
	found := strings.Join(parts, "; ")
	if result == Warn && len(advice) > 0 {
		found += fmt.Sprintf("; below %s, a short network break or a Ferry restart forces a full resync", formatDuration(minBacklogCoverage))
	}
	return Check{Result: result, Found: found, Advice: strings.Join(advice, "; ")}
}

// nodeLabel prefixes per-master findings on a cluster.
func (s *side) nodeLabel(n *node) string {
	if !s.cluster {
		return ""
	}
	return n.addr + ": "
}

// replTimeout checks the source's repl-timeout.
func (r *runner) replTimeout(ctx context.Context) Check {
	c, err := r.src.dialSeed(ctx)
	if err != nil {
		return Check{Result: Warn, Found: "could not check: " + err.Error()}
	}
	defer c.Close()
	v, err := configGet(ctx, c, "repl-timeout")
	if err != nil {
		ch := skipf("not checked: %v", err)
		ch.Advice = noPermAdvice(r.src, err, "config|get")
		return ch
	}
	secs, err := strconv.Atoi(v)
	if err != nil {
		return Check{Result: Warn, Found: fmt.Sprintf("could not check: repl-timeout %q is not a number", v)}
	}
	d := time.Duration(secs) * time.Second
	if d < minReplTimeout {
		return Check{
			Result: Warn,
			Found:  fmt.Sprintf("repl-timeout %s (below %s): the source drops a replica it cannot send to, or hears no ACK from, for that long; a stall on Ferry's side (spool disk, network) of that length restarts the full sync", formatDuration(d), formatDuration(minReplTimeout)),
			Advice: fmt.Sprintf("CONFIG SET repl-timeout %d on the source (and in its config file)", int(minReplTimeout.Seconds())),
		}
	}
	return Check{Result: Pass, Found: fmt.Sprintf("repl-timeout %s", formatDuration(d))}
}

// bufferLimit is one class of client-output-buffer-limit.
type bufferLimit struct {
	hard, soft  int64
	softSeconds int
}

// parseOutputBufferLimit reads the replica class from CONFIG GET
// client-output-buffer-limit ("normal 0 0 0 slave 268435456 67108864 60 pubsub ...").
// Redis 5+ also accepts "replica" as the class name.
func parseOutputBufferLimit(s string) (bufferLimit, error) {
	f := strings.Fields(s)
	if len(f)%4 != 0 {
		return bufferLimit{}, fmt.Errorf("client-output-buffer-limit %q: want groups of class hard soft seconds", s)
	}
	for i := 0; i < len(f); i += 4 {
		if f[i] != "slave" && f[i] != "replica" {
			continue
		}
		hard, err1 := parseSize(f[i+1])
		soft, err2 := parseSize(f[i+2])
		secs, err3 := strconv.Atoi(f[i+3])
		if err1 != nil || err2 != nil || err3 != nil || hard < 0 || soft < 0 || secs < 0 {
			return bufferLimit{}, fmt.Errorf("client-output-buffer-limit %q: bad replica limits", s)
		}
		return bufferLimit{hard: hard, soft: soft, softSeconds: secs}, nil
	}
	return bufferLimit{}, fmt.Errorf("client-output-buffer-limit %q: no replica class", s)
}

// outputBufferRisk estimates whether the writes that queue for Ferry during a full sync
// of data bytes exceed the replica buffer limits: the sync is assumed to take
// data/assumedSyncRate + 1 s, while writes arrive at rate bytes per second.
func outputBufferRisk(lim bufferLimit, data int64, rate float64) (queued int64, dur time.Duration, over string) {
	dur = time.Duration((float64(data)/assumedSyncRate + 1) * float64(time.Second))
	queued = int64(rate * dur.Seconds())
	switch {
	case lim.hard > 0 && queued > lim.hard:
		over = fmt.Sprintf("above the hard limit %s", formatBytes(lim.hard))
	case lim.soft > 0 && rate > 0:
		// The buffer passes the soft limit at soft/rate and must not stay above it for
		// softSeconds.
		above := dur.Seconds() - float64(lim.soft)/rate
		if above > float64(lim.softSeconds) {
			over = fmt.Sprintf("above the soft limit %s for %.0f s (allowed %d s)", formatBytes(lim.soft), above, lim.softSeconds)
		}
	}
	return queued, dur, over
}

// outputBuffer checks the source's replica output buffer limits against the writes that
// queue while a full sync runs: over them, the source drops Ferry and the full sync
// starts again, forever.
func (r *runner) outputBuffer(ctx context.Context, ro *rateOnce) Check {
	rates := ro.get(ctx, r)
	var parts, advice []string
	result := Pass
	for _, n := range r.src.nodes {
		who := r.src.nodeLabel(n)
		w := rates[n.addr]
		if n.info == nil || w.err != nil {
			parts = append(parts, fmt.Sprintf("%scould not measure the write rate", who))
			result = max(result, Warn)
			continue
		}
		c, err := r.src.dial(ctx, n.addr)
		if err != nil {
			parts = append(parts, fmt.Sprintf("%scould not check: %v", who, err))
			result = max(result, Warn)
			continue
		}
		v, err := configGet(ctx, c, "client-output-buffer-limit")
		c.Close()
		if err != nil {
			ch := skipf("not checked: %v", err)
			ch.Advice = noPermAdvice(r.src, err, "config|get")
			return ch
		}
		lim, err := parseOutputBufferLimit(v)
		if err != nil {
			parts = append(parts, who+err.Error())
			result = max(result, Warn)
			continue
		}
		data := dataSize(n.info)
		queued, dur, over := outputBufferRisk(lim, data, w.bytesPerSec)
		desc := fmt.Sprintf("%sreplica limits hard %s, soft %s for %d s; a full sync of ≈ %s takes ≈ %s (at an assumed %s/s) while ≈ %s of writes queue (%s/s)",
			who, limitText(lim.hard), limitText(lim.soft), lim.softSeconds, formatBytes(data), formatDuration(dur),
			formatBytes(assumedSyncRate), formatBytes(queued), formatBytes(int64(w.bytesPerSec)))
		if over == "" {
			parts = append(parts, desc+": within the limits")
			continue
		}
		result = max(result, Warn)
		parts = append(parts, desc+": "+over+"; the source would drop Ferry mid-sync and the full sync would start over, again and again")
		want := roundUpMiB(2 * queued)
		advice = append(advice, fmt.Sprintf("raise the replica limits on %s: CONFIG SET client-output-buffer-limit \"replica %d %d %d\" (or \"replica 0 0 0\" for none)", n.addr, want, want, lim.softSeconds))
	}
	return Check{Result: result, Found: strings.Join(parts, "; "), Advice: strings.Join(advice, "; ")}
}

func limitText(n int64) string {
	if n == 0 {
		return "none"
	}
	return formatBytes(n)
}
