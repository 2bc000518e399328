package verify

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
)

// Fence defaults.
const (
	// DefaultFenceTimeout is how long a round waits for the replica to pass the fence
	// before it compares anyway (and says so).
	DefaultFenceTimeout = 30 * time.Second
	// fencePoll is how often INFO replication is re-read while waiting. A replica
	// acknowledges once a second, so polling faster gains little.
	fencePoll = 20 * time.Millisecond
)

// FenceOptions make rounds exact during a live sync. At the start of a round verify reads
// each source master's master_repl_offset and waits until the replica doing the sync (Ferry,
// which acknowledges only what the destination has applied, or a native replica) has
// acknowledged at least that offset. Everything written to the source before the round
// started is then on the destination, so a key that still differs was not merely in flight.
type FenceOptions struct {
	// Replicas are the replicas to wait for, as the source lists them in INFO replication
	// (ip:port, the port being the one the replica announced). On a cluster source, list
	// one per master; any match counts.
	Replicas []string
	// Auto picks, on each source master, the replica when exactly one is connected.
	Auto bool
	// Timeout bounds the wait per round; default DefaultFenceTimeout.
	Timeout time.Duration
}

// Enabled reports whether rounds are fenced.
func (f FenceOptions) Enabled() bool { return f.Auto || len(f.Replicas) > 0 }

// ParseFence parses --fence-replica: "" (off), "auto", or a comma-separated list of
// ip:port.
func ParseFence(s string) (FenceOptions, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "off", "none":
		return FenceOptions{}, nil
	case "auto":
		return FenceOptions{Auto: true}, nil
	}
	var f FenceOptions
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		host, port, err := net.SplitHostPort(part)
		if err != nil || host == "" {
			return FenceOptions{}, fmt.Errorf("--fence-replica %q: want auto or ip:port[,ip:port…] as INFO replication lists the replica", part)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return FenceOptions{}, fmt.Errorf("--fence-replica %q: bad port", part)
		}
		f.Replicas = append(f.Replicas, net.JoinHostPort(host, port))
	}
	return f, nil
}

// replicaInfo is one "slaveN:" line of INFO replication.
type replicaInfo struct {
	addr   string // ip:port
	state  string
	offset int64 // acknowledged offset
}

// parseReplication reads master_repl_offset and the replica lines of INFO replication.
func parseReplication(info map[string]string) (int64, []replicaInfo, error) {
	off, err := strconv.ParseInt(info["master_repl_offset"], 10, 64)
	if err != nil {
		return 0, nil, fmt.Errorf("INFO replication: master_repl_offset %q is not a number", info["master_repl_offset"])
	}
	var out []replicaInfo
	for i := 0; ; i++ {
		line, ok := info["slave"+strconv.Itoa(i)]
		if !ok {
			break
		}
		var r replicaInfo
		var ip, port string
		for kv := range strings.SplitSeq(line, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			case "state":
				r.state = v
			case "offset":
				if r.offset, err = strconv.ParseInt(v, 10, 64); err != nil {
					return 0, nil, fmt.Errorf("INFO replication slave%d: offset %q is not a number", i, v)
				}
			}
		}
		r.addr = net.JoinHostPort(ip, port)
		out = append(out, r)
	}
	return off, out, nil
}

// fence waits, per source master, for the sync's replica to acknowledge the source offset
// read at the start of the round.
type fence struct {
	opts   FenceOptions
	src    *endpoint
	log    *slog.Logger
	chosen map[string]string // master → replica picked by Auto, kept for every round
}

func newFence(opts FenceOptions, src *endpoint, log *slog.Logger) *fence {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultFenceTimeout
	}
	return &fence{opts: opts, src: src, log: log, chosen: map[string]string{}}
}

// FenceResult says how a round's fence went.
type FenceResult struct {
	// Replicas are the replicas waited for, one per source master.
	Replicas []string `json:"replicas,omitempty"`
	// Offsets are the source offsets read at the start of the round, per master.
	Offsets []int64 `json:"offsets,omitempty"`
	// Reached is true when every replica acknowledged its offset in time.
	Reached bool `json:"reached"`
	// Waited is how long it took.
	Waited time.Duration `json:"waited"`
}

// wait reads every master's offset first (the round's starting point), then waits for the
// replicas. An error is a problem the operator must fix (no replica, several with Auto);
// a timeout is not an error: the round runs unfenced and the result says so.
func (f *fence) wait(ctx context.Context) (FenceResult, error) {
	start := time.Now()
	var res FenceResult
	masters := f.src.masters()
	conns := make([]*redis.Conn, len(masters))
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i, m := range masters {
		o := f.src.nodeOptions(m)
		o.DB = 0
		c, err := redis.Dial(ctx, o)
		if err != nil {
			return res, fmt.Errorf("fence: source: %w", err)
		}
		conns[i] = c
		info, err := c.Info(ctx, "replication")
		if err != nil {
			return res, fmt.Errorf("fence: source %s: INFO replication: %w", m, err)
		}
		off, reps, err := parseReplication(info)
		if err != nil {
			return res, fmt.Errorf("fence: source %s: %w", m, err)
		}
		rep, err := f.pick(m, reps)
		if err != nil {
			return res, err
		}
		res.Replicas = append(res.Replicas, rep)
		res.Offsets = append(res.Offsets, off)
	}
	deadline := time.NewTimer(f.opts.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(fencePoll)
	defer tick.Stop()
	for i, m := range masters {
		for {
			info, err := conns[i].Info(ctx, "replication")
			if err != nil {
				return res, fmt.Errorf("fence: source %s: INFO replication: %w", m, err)
			}
			_, reps, err := parseReplication(info)
			if err != nil {
				return res, fmt.Errorf("fence: source %s: %w", m, err)
			}
			acked := int64(-1)
			for _, r := range reps {
				if r.addr == res.Replicas[i] {
					acked = r.offset
				}
			}
			if acked >= res.Offsets[i] {
				break
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-deadline.C:
				res.Waited = time.Since(start)
				f.log.Warn("fence not reached in time; comparing without it (differences may be keys in flight)",
					"master", m, "replica", res.Replicas[i], "offset", res.Offsets[i], "acked", acked, "timeout", f.opts.Timeout)
				return res, nil
			case <-tick.C:
			}
		}
	}
	res.Reached = true
	res.Waited = time.Since(start)
	return res, nil
}

// pick chooses the replica to wait for on master.
func (f *fence) pick(master string, reps []replicaInfo) (string, error) {
	addrs := make([]string, len(reps))
	for i, r := range reps {
		addrs[i] = r.addr
	}
	if len(f.opts.Replicas) > 0 {
		for _, r := range reps {
			if slices.Contains(f.opts.Replicas, r.addr) {
				return r.addr, nil
			}
		}
		return "", fmt.Errorf("fence: source %s lists replicas %v, none of them %v (give the ip:port INFO replication shows for the sync)", master, addrs, f.opts.Replicas)
	}
	if prev, ok := f.chosen[master]; ok {
		return prev, nil
	}
	switch len(reps) {
	case 1:
		f.chosen[master] = reps[0].addr
		f.log.Info("fence: waiting for the only replica of the source", "master", master, "replica", reps[0].addr)
		return reps[0].addr, nil
	case 0:
		return "", fmt.Errorf("fence: source %s has no replica connected; is the sync running? (or leave out --fence-replica)", master)
	}
	return "", fmt.Errorf("fence: source %s has %d replicas %v; name the sync's with --fence-replica ip:port", master, len(reps), addrs)
}
