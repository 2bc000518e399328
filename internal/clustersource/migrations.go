package clustersource

import (
	"context"
	"slices"
	"time"
)

// DefaultMigrationSettle bounds how long after the importing node has restored a key
// (RESTORE-ASKING) the exporting node deletes it: MIGRATE deletes as soon as the target's
// reply arrives, and gives up after its timeout (redis-cli --cluster reshard uses 60 s).
const DefaultMigrationSettle = 2 * time.Minute

// monitorInterval is how often the orchestrator looks at the shards to enable the fast
// path for deletions and to forget old migrations.
const monitorInterval = 200 * time.Millisecond

// Deletions and slot migrations
//
// A shard asks the source where a key lives (one round trip) for a DEL or UNLINK only when
// the key may have been moved to another shard by a slot migration (task.Shard.Moved):
//
//   - every key a shard's stream migrates in (RESTORE-ASKING) is recorded (Imported), and a
//     DEL of a key another shard recorded is checked;
//   - a DEL whose key is not recorded can only be the exporting side of a migration whose
//     RESTORE-ASKING the importing shard has not processed yet (its Barrier then reads the
//     exporting master's offset after the DEL, and waits until the DEL is applied), or of
//     one whose key the importing shard received in its snapshot. The second is ruled out
//     by the fast path's mark: a DEL is checked unless every shard has been in its
//     incremental phase, since before DefaultMigrationSettle ahead of the DEL, so that the
//     migration's RESTORE-ASKING lies in the importing shard's stream. A shard starting a
//     session (which may be a full sync) turns the fast path off first, and waits until
//     the other shards have applied what they forwarded under it.
//
// Recorded keys are forgotten once every shard has applied what its master had written
// DefaultMigrationSettle after the record: the exporting DEL is then behind them.

// migrations is the record of keys migrated between shards, and the fast path's state.
type migrations struct {
	keys  map[string]map[string]int // key → ids of the shards that imported it → entries in log
	log   []migEntry                // in the order recorded
	cut   *migCut                   // the next batch of entries to forget
	fast  bool                      // the fast path is on
	marks map[*shardRun]int64       // its marks: DELs at or below are checked
	// allIncr is since when every shard has applied its stream (zero: not now).
	allIncr time.Time
}

type migEntry struct {
	key string
	id  string
	at  time.Time
}

// migCut forgets the entries recorded up to before once every shard has applied its
// stream up to offsets.
type migCut struct {
	before  time.Time
	offsets map[*shardRun]int64
}

// imported is the shard's task.Shard.Imported.
func (s *Sync) imported(r *shardRun, key []byte) {
	s.migMu.Lock()
	defer s.migMu.Unlock()
	m := &s.mig
	if m.keys == nil {
		m.keys = make(map[string]map[string]int)
	}
	k := string(key)
	if m.keys[k] == nil {
		m.keys[k] = make(map[string]int, 1)
	}
	m.keys[k][r.id]++
	m.log = append(m.log, migEntry{key: k, id: r.id, at: time.Now()})
}

// moved is the shard's task.Shard.Moved.
func (s *Sync) moved(r *shardRun, key []byte, offset int64) bool {
	s.migMu.Lock()
	defer s.migMu.Unlock()
	m := &s.mig
	if !m.fast || offset <= m.marks[r] {
		s.checkedDeletes.Add(1)
		return true
	}
	for id := range m.keys[string(key)] {
		if id != r.id {
			s.checkedDeletes.Add(1)
			return true
		}
	}
	s.fastDeletes.Add(1)
	return false
}

// fastPath reports whether the fast path for deletions is on.
func (s *Sync) fastPath() bool {
	s.migMu.Lock()
	defer s.migMu.Unlock()
	return s.mig.fast
}

// sessionStarts is called when shard r starts a session (which may be a full sync, whose
// snapshot may hold keys other shards delete): the fast path goes off, and what the
// other shards forwarded under it is applied before r attaches.
func (s *Sync) sessionStarts(ctx context.Context, r *shardRun) error {
	s.migMu.Lock()
	was := s.mig.fast
	s.mig.fast, s.mig.allIncr = false, time.Time{}
	s.migMu.Unlock()
	if !was {
		return nil
	}
	s.log.Info("deletions are checked against the source again until every shard is incremental", "shard", r.id)
	for _, o := range s.others(r) {
		if _, ok := o.t.StreamApplied(); !ok {
			continue // between sessions: what it had forwarded and not applied is replayed
		}
		want, err := o.masterOffset(ctx)
		if err != nil {
			return err
		}
		if err := s.waitApplied(ctx, r, o, want); err != nil {
			return err
		}
	}
	return nil
}

// others are the shards but r.
func (s *Sync) others(r *shardRun) []*shardRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*shardRun, 0, len(s.shards))
	for _, o := range s.shards {
		if o != r {
			out = append(out, o)
		}
	}
	return out
}

// monitor turns the fast path on once every shard has been incremental for the settle
// time, and forgets old migrations, until ctx ends.
func (s *Sync) monitor(ctx context.Context) {
	tick := time.NewTicker(monitorInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		shards := s.shards
		s.mu.Unlock()
		applied := make(map[*shardRun]int64, len(shards))
		all := true
		for _, r := range shards {
			off, ok := r.t.StreamApplied()
			applied[r] = off
			all = all && ok
		}
		now := time.Now()
		s.migMu.Lock()
		m := &s.mig
		switch {
		case !all:
			m.allIncr = time.Time{}
		case m.allIncr.IsZero():
			m.allIncr = now
		}
		enable := !m.fast && !m.allIncr.IsZero() && now.Sub(m.allIncr) >= s.settle
		since := m.allIncr
		newCut := m.cut == nil && len(m.log) > 0 && now.Sub(m.log[0].at) >= s.settle
		cut := m.cut
		s.migMu.Unlock()

		if enable || newCut {
			offs, err := s.masterOffsets(ctx, shards)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Debug("could not read the source masters' offsets", "err", err)
				}
				continue
			}
			s.migMu.Lock()
			if enable && m.allIncr.Equal(since) {
				m.fast, m.marks = true, offs
				s.log.Info("every shard is incremental: deletions are checked against the source only for keys migrated between shards")
			}
			if newCut && m.cut == nil {
				m.cut = &migCut{before: now.Add(-s.settle), offsets: offs}
			}
			s.migMu.Unlock()
			continue
		}
		if cut != nil && all && reached(applied, cut.offsets) {
			s.forget(cut)
		}
	}
}

// reached reports whether every shard has applied up to its offset in want.
func reached(applied, want map[*shardRun]int64) bool {
	for r, off := range want {
		if applied[r] < off {
			return false
		}
	}
	return true
}

// forget drops the entries recorded up to cut.before.
func (s *Sync) forget(cut *migCut) {
	s.migMu.Lock()
	defer s.migMu.Unlock()
	m := &s.mig
	n := 0
	for n < len(m.log) && !m.log[n].at.After(cut.before) {
		e := m.log[n]
		ids := m.keys[e.key]
		if ids[e.id]--; ids[e.id] <= 0 {
			delete(ids, e.id)
		}
		if len(ids) == 0 {
			delete(m.keys, e.key)
		}
		n++
	}
	m.log = slices.Delete(m.log, 0, n)
	m.cut = nil
}

// masterOffsets reads every shard's master's replication offset.
func (s *Sync) masterOffsets(ctx context.Context, shards []*shardRun) (map[*shardRun]int64, error) {
	out := make(map[*shardRun]int64, len(shards))
	for _, r := range shards {
		off, err := r.masterOffset(ctx)
		if err != nil {
			return nil, err
		}
		out[r] = off
	}
	return out, nil
}
