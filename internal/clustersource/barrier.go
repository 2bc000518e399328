package clustersource

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
)

// barrierPoll is how often a barrier looks at the other shards' applied offsets. A barrier
// holds only a key migrated between shards (rare), never the stream's ordinary commands.
const barrierPoll = 2 * time.Millisecond

// barrierNotice is how long a barrier waits before it says so in the log.
const barrierNotice = 5 * time.Second

// barrier is task.Shard.Barrier for self: it reads every other shard's master's
// replication offset now and waits until that shard's task has applied its stream that
// far. A key arriving in self's stream by RESTORE-ASKING was migrated before this call, so
// the exporting shard's writes to it before the migration are then on the destination,
// and the key's later history (self's stream) lands after them.
//
// A shard that is itself held in a barrier is skipped: two shards importing from each
// other at once would otherwise wait for each other for ever (the remaining race, see
// task.Shard).
func (s *Sync) barrier(ctx context.Context, self *shardRun) error {
	self.waiting.Store(true)
	defer self.waiting.Store(false)
	s.mu.Lock()
	others := make([]*shardRun, 0, len(s.shards))
	for _, r := range s.shards {
		if r != self {
			others = append(others, r)
		}
	}
	s.mu.Unlock()
	for _, r := range others {
		if r.waiting.Load() {
			s.skippedBarriers.Add(1)
			continue
		}
		want, err := r.masterOffset(ctx)
		if err != nil {
			return err
		}
		if err := s.waitApplied(ctx, self, r, want); err != nil {
			return err
		}
	}
	return nil
}

// waitApplied waits until r's task has applied its stream up to offset want.
func (s *Sync) waitApplied(ctx context.Context, self, r *shardRun, want int64) error {
	tick := time.NewTicker(barrierPoll)
	defer tick.Stop()
	start := time.Now()
	noticed := false
	for {
		if off, ok := r.t.StreamApplied(); ok && off >= want {
			return nil
		}
		if r.waiting.Load() {
			s.skippedBarriers.Add(1)
			return nil
		}
		if !noticed && time.Since(start) > barrierNotice {
			noticed = true
			off, _ := r.t.StreamApplied()
			s.log.Info("a key migrated into a shard waits until another shard has applied what preceded the migration",
				"shard", self.id, "waits_for", r.id, "offset", want, "applied", off, "phase", r.t.Status().Phase.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// masterOffset reads master_repl_offset on the shard's master (resolving it again when
// the node followed so far is no longer a master). The connection is kept for the next
// barrier: a migration moves keys by the hundred.
func (r *shardRun) masterOffset(ctx context.Context) (int64, error) {
	r.infoMu.Lock()
	defer r.infoMu.Unlock()
	for attempt := 0; ; attempt++ {
		r.mu.Lock()
		addr := r.addr
		r.mu.Unlock()
		info, err := r.info(ctx, addr)
		if err == nil && info["role"] == "master" {
			off, perr := strconv.ParseInt(info["master_repl_offset"], 10, 64)
			if perr != nil {
				return 0, fmt.Errorf("source master %s: master_repl_offset %q: %w", addr, info["master_repl_offset"], perr)
			}
			return off, nil
		}
		if attempt > 0 {
			if err == nil {
				err = fmt.Errorf("role:%s", info["role"])
			}
			return 0, fmt.Errorf("read the replication offset of shard %s's master %s: %w", r.id, addr, err)
		}
		if _, rerr := r.resolve(ctx); rerr != nil {
			return 0, rerr
		}
	}
}

// info runs INFO replication on addr over the kept connection (under infoMu).
func (r *shardRun) info(ctx context.Context, addr string) (map[string]string, error) {
	if r.infoConn != nil && r.infoConn.Addr() != addr {
		r.closeInfo()
	}
	if r.infoConn == nil {
		o := r.s.cfg.Source
		o.Addr, o.DB = addr, 0
		o.DialTimeout = topologyDialTimeout
		c, err := redis.Dial(ctx, o)
		if err != nil {
			return nil, err
		}
		r.infoConn = c
	}
	info, err := r.infoConn.Info(ctx, "replication")
	if err != nil {
		r.closeInfo()
	}
	return info, err
}

func (r *shardRun) closeInfo() {
	if r.infoConn != nil {
		r.infoConn.Close()
		r.infoConn = nil
	}
}
