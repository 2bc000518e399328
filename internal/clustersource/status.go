package clustersource

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/task"
)

// Status is a snapshot of a cluster-source sync: each shard's task status, and totals.
type Status struct {
	Task  string     `json:"task"`
	Phase task.Phase `json:"phase"`
	Error string     `json:"error,omitempty"`
	// Source is "cluster": a client of the status endpoint tells the two documents apart
	// by it.
	Source string        `json:"source"`
	Shards []ShardStatus `json:"shards"`
	// Totals over the shards: sums, and for LagSeconds the largest.
	FullKeys        int64   `json:"full_keys"`
	Commands        int64   `json:"commands"`
	OpsPerSecond    float64 `json:"ops_per_second"`
	LagBytes        int64   `json:"lag_bytes"`
	LagSeconds      float64 `json:"lag_seconds"`
	PartialSyncs    int64   `json:"partial_syncs"`
	SpoolResumes    int64   `json:"spool_resumes"`
	FullSyncs       int64   `json:"full_syncs"`
	Flushes         int64   `json:"flushes"`
	Retries         int64   `json:"retries"`
	SkippedBarriers int64   `json:"skipped_barriers"`
	// FastDeletes: the fast path for deletions is on (a DEL or UNLINK asks the source
	// where its key lives only when another shard imported the key). DeletesChecked and
	// DeletesFast count the keys each way.
	FastDeletes    bool      `json:"fast_deletes"`
	DeletesChecked int64     `json:"deletes_checked"`
	DeletesFast    int64     `json:"deletes_fast"`
	StartedAt      time.Time `json:"started_at"`
}

// ShardStatus is one shard: which slots, which master, its task's status, and what it did
// for the cluster (migrated keys, flushes).
type ShardStatus struct {
	ID     string `json:"id"`
	Slots  string `json:"slots"`
	Master string `json:"master"`
	task.Status
	Cluster task.ShardStats `json:"cluster"`
}

// Status returns a snapshot of the sync. Before Run has read the topology it lists no
// shard.
func (s *Sync) Status() Status {
	s.mu.Lock()
	st := Status{Task: s.cfg.Name, Phase: s.phase, Error: s.err, Source: "cluster", StartedAt: s.started}
	shards := s.shards
	s.mu.Unlock()
	st.SkippedBarriers = s.skippedBarriers.Load()
	st.FastDeletes = s.fastPath()
	st.DeletesChecked, st.DeletesFast = s.checkedDeletes.Load(), s.fastDeletes.Load()
	if len(shards) == 0 {
		return st
	}
	phases := make([]task.Phase, 0, len(shards))
	for _, r := range shards {
		r.mu.Lock()
		addr := r.addr
		r.mu.Unlock()
		ts := r.t.Status()
		st.Shards = append(st.Shards, ShardStatus{ID: r.id, Slots: r.slots.Load().String(), Master: addr,
			Status: ts, Cluster: r.shard.Stats()})
		phases = append(phases, ts.Phase)
		st.FullKeys += ts.FullKeys
		st.Commands += ts.Commands
		st.OpsPerSecond += ts.OpsPerSecond
		st.LagBytes += ts.LagBytes
		st.LagSeconds = max(st.LagSeconds, ts.LagSeconds)
		st.PartialSyncs += ts.PartialSyncs
		st.SpoolResumes += ts.SpoolResumes
		st.FullSyncs += ts.FullSyncs
		st.Flushes += ts.Flushes
		st.Retries += ts.Retries
	}
	if st.Phase != task.PhaseFailed && st.Phase != task.PhaseStopped {
		st.Phase = aggregatePhase(phases)
	}
	return st
}

// aggregatePhase is the sync's phase from its shards': failed when one failed, then the
// least advanced of the others (a sync is incremental only when every shard is).
func aggregatePhase(ps []task.Phase) task.Phase {
	order := []task.Phase{task.PhaseFailed, task.PhaseCreated, task.PhaseConnecting, task.PhaseFull, task.PhaseIncremental, task.PhaseStopped}
	for _, want := range order {
		for _, p := range ps {
			if p == want {
				return want
			}
		}
	}
	return task.PhaseCreated
}

// StatusHandler serves the sync's status as JSON.
func StatusHandler(s *Sync) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Status())
	})
}

// metrics are the orchestrator's own series, per shard; the shard tasks register theirs
// (with a "shard" label) themselves.
type metrics struct {
	collectors []prometheus.Collector
}

func newMetrics(s *Sync) *metrics {
	m := &metrics{}
	s.mu.Lock()
	shards := s.shards
	s.mu.Unlock()
	m.collectors = append(m.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "ferry", Name: "cluster_source_shards", Help: "Shards (source masters) of a cluster source, one task each.",
		ConstLabels: prometheus.Labels{"task": s.cfg.Name},
	}, func() float64 { return float64(len(shards)) }))
	m.collectors = append(m.collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "ferry", Name: "cluster_source_skipped_barriers_total",
		Help:        "Barriers for a migrated key that did not wait for a shard held in a barrier itself (keys migrating both ways at once).",
		ConstLabels: prometheus.Labels{"task": s.cfg.Name},
	}, func() float64 { return float64(s.skippedBarriers.Load()) }))
	for _, r := range shards {
		labels := prometheus.Labels{"task": s.cfg.Name, "shard": r.id}
		counter := func(name, help string, f func(task.ShardStats) int64) {
			m.collectors = append(m.collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
				Namespace: "ferry", Name: name, Help: help, ConstLabels: labels,
			}, func() float64 { return float64(f(r.shard.Stats())) }))
		}
		counter("cluster_source_keys_checked_total", "Keys of DEL/UNLINK looked up on the source (did a slot migration move them?).",
			func(s task.ShardStats) int64 { return s.KeysChecked })
		counter("cluster_source_kept_migrated_total", "Keys of DEL/UNLINK not deleted on the destination because another source node holds them (moved by a slot migration).",
			func(s task.ShardStats) int64 { return s.KeptMigrated })
		counter("cluster_source_migrated_total", "Keys migrated into the shard (RESTORE-ASKING) applied as RESTORE … REPLACE.",
			func(s task.ShardStats) int64 { return s.Migrated })
		counter("cluster_source_flushes_total", "FLUSHALL/FLUSHDB and full-resync clean-ups applied as deletions of the shard's keys.",
			func(s task.ShardStats) int64 { return s.Flushes })
		counter("cluster_source_flushed_keys_total", "Keys those deletions removed from the destination.",
			func(s task.ShardStats) int64 { return s.FlushedKeys })
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range m.collectors {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func (m *metrics) unregister(r prometheus.Registerer) {
	for _, c := range m.collectors {
		r.Unregister(c)
	}
}
