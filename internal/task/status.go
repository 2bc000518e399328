package task

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Phase is where a task is in its lifecycle:
// created → connecting → full → incremental → stopped | failed (full-only tasks stop after
// full). A lost connection goes back to connecting, and from there to incremental, or to
// full when the source cannot continue (or a full sync resumes).
type Phase int32

const (
	PhaseCreated Phase = iota
	PhaseConnecting
	PhaseFull
	PhaseIncremental
	PhaseStopped
	PhaseFailed
)

var phaseNames = [...]string{"created", "connecting", "full", "incremental", "stopped", "failed"}

func (p Phase) String() string {
	if int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return "unknown"
}

// MarshalText renders the phase by name in JSON.
func (p Phase) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a phase by name, for clients of the status endpoint.
func (p *Phase) UnmarshalText(b []byte) error {
	for i, n := range phaseNames {
		if n == string(b) {
			*p = Phase(i)
			return nil
		}
	}
	return fmt.Errorf("unknown task phase %q", b)
}

// Status is a snapshot of a task for humans, the status endpoint and tests.
type Status struct {
	Task  string `json:"task"`
	Phase Phase  `json:"phase"`
	Error string `json:"error,omitempty"`
	// ReplID and the offsets are the source's replication stream.
	ReplID         string `json:"replid,omitempty"`
	SourceOffset   int64  `json:"source_offset"`   // last byte received from the source
	AppliedOffset  int64  `json:"applied_offset"`  // last byte whose effect the destination acknowledged
	SnapshotOffset int64  `json:"snapshot_offset"` // where the snapshot sits in the stream
	// CheckpointOffset is the offset of the last checkpoint the destination acknowledged:
	// where a restart resumes.
	CheckpointOffset int64    `json:"checkpoint_offset"`
	Delivery         Delivery `json:"delivery"`
	// Path is how the current session started: "partial" (PSYNC from the checkpoint),
	// "spool" (an interrupted full sync resumed from the local copy of its snapshot) or
	// "full". The counters below count every session's.
	Path         string `json:"path,omitempty"`
	PartialSyncs int64  `json:"partial_syncs"`
	SpoolResumes int64  `json:"spool_resumes"`
	FullSyncs    int64  `json:"full_syncs"`
	// Throttled says why the task is held back right now ("throttled: max-ops 5000"), or
	// is empty.
	Throttled string `json:"throttled,omitempty"`
	// FullFiltered counts snapshot keys the filter did not select.
	FullFiltered int64 `json:"full_filtered"`
	// Flushes counts the clean-ups of the task's earlier data before a full resync.
	Flushes int64 `json:"flushes"`
	// Retries counts sessions started again after a lost connection.
	Retries  int64 `json:"retries"`
	LagBytes int64 `json:"lag_bytes"`
	// LagSeconds is the heartbeat latency; LagEstimated says it is derived from offsets
	// because the heartbeat could not be written to the source.
	LagSeconds   float64 `json:"lag_seconds"`
	LagEstimated bool    `json:"lag_estimated"`
	// Full phase.
	FullKeys       int64 `json:"full_keys"`
	FullBytes      int64 `json:"full_bytes"`
	FullTotalBytes int64 `json:"full_total_bytes,omitempty"` // the RDB's size when the source said it
	BigKeys        int64 `json:"big_keys"`
	// Incremental phase.
	Commands     int64            `json:"commands"`
	OpsPerSecond float64          `json:"ops_per_second"`
	Filtered     int64            `json:"filtered"`
	Batches      int64            `json:"batches"` // checkpoints written in the incremental phase
	ReplyErrors  map[string]int64 `json:"reply_errors,omitempty"`
	StartedAt    time.Time        `json:"started_at"`
}

// state is the task's live, concurrently updated status.
type state struct {
	phase          atomic.Int32
	sourceOffset   atomic.Int64
	appliedOffset  atomic.Int64
	snapshotOffset atomic.Int64
	fullTotal      atomic.Int64
	commands       atomic.Int64
	filtered       atomic.Int64
	latencyNanos   atomic.Int64
	latencyEst     atomic.Bool

	checkpointOffset atomic.Int64
	batches          atomic.Int64
	paths            [numPaths]atomic.Int64
	flushes          atomic.Int64
	retries          atomic.Int64

	mu     sync.Mutex
	replID string
	path   string
	err    string
	rate   rateMeter
	// appliedRate measures applied stream bytes per second, for the offset-based lag
	// estimate when the heartbeat cannot be written.
	appliedRate rateMeter
}

func (s *state) setPhase(p Phase) { s.phase.Store(int32(p)) }

// rateMeter turns a monotonically increasing counter into a per-second rate over the last
// sampling window. It is sampled by whoever reads the status, at most once per window.
type rateMeter struct {
	at    time.Time
	count int64
	rate  float64
}

func (m *rateMeter) sample(now time.Time, count int64) float64 {
	if m.at.IsZero() {
		m.at, m.count = now, count
		return 0
	}
	if dt := now.Sub(m.at); dt >= time.Second {
		m.rate = float64(count-m.count) / dt.Seconds()
		m.at, m.count = now, count
	}
	return m.rate
}

// metrics are the task's Prometheus collectors. They read the live state when scraped,
// so the hot path only updates atomics.
type metrics struct {
	collectors []prometheus.Collector
}

func newMetrics(t *Task) *metrics {
	labels := prometheus.Labels{"task": t.cfg.Name}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "ferry", Name: name, Help: help, ConstLabels: labels}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "ferry", Name: name, Help: help, ConstLabels: labels}, f)
	}
	s := &t.st
	m := &metrics{collectors: []prometheus.Collector{
		gauge("phase", "Task phase: 0 created, 1 connecting, 2 full, 3 incremental, 4 stopped, 5 failed.", func() float64 { return float64(s.phase.Load()) }),
		gauge("source_offset_bytes", "Last replication offset received from the source.", func() float64 { return float64(s.sourceOffset.Load()) }),
		gauge("applied_offset_bytes", "Last replication offset applied and acknowledged by the destination.", func() float64 { return float64(s.appliedOffset.Load()) }),
		gauge("lag_bytes", "Bytes received from the source and not yet applied.", func() float64 { return float64(t.lagBytes()) }),
		gauge("lag_seconds", "Heartbeat latency from the source write to the destination apply (an estimate when ferry_lag_estimated is 1).", func() float64 { return time.Duration(s.latencyNanos.Load()).Seconds() }),
		gauge("lag_estimated", "1 when lag_seconds is estimated from offsets because the heartbeat cannot be written.", func() float64 {
			if s.latencyEst.Load() {
				return 1
			}
			return 0
		}),
		counter("full_keys_total", "Snapshot keys applied.", func() float64 { return float64(t.full.Keys.Load()) }),
		counter("full_bytes_total", "Snapshot bytes read.", func() float64 { return float64(t.full.Bytes.Load()) }),
		counter("full_big_keys_total", "Snapshot keys written through the chunked command path.", func() float64 { return float64(t.full.BigKeys.Load()) }),
		counter("commands_total", "Stream commands forwarded to the destination.", func() float64 { return float64(s.commands.Load()) }),
		counter("filtered_total", "Stream commands not forwarded (control, Ferry's own keys, PUBLISH when not forwarded).", func() float64 { return float64(s.filtered.Load()) }),
		gauge("checkpoint_offset_bytes", "Offset of the last checkpoint the destination acknowledged: where a restart resumes.", func() float64 { return float64(s.checkpointOffset.Load()) }),
		counter("checkpoints_total", "Checkpoints written in the incremental phase (one per batch in exactly-once delivery).", func() float64 { return float64(s.batches.Load()) }),
		counter("full_resync_flushes_total", "Times the task deleted its earlier data on the destination before a full resync.", func() float64 { return float64(s.flushes.Load()) }),
		counter("retries_total", "Sessions started again after a lost connection or a crash of the destination.", func() float64 { return float64(s.retries.Load()) }),
	}}
	for p, name := range pathNames {
		m.collectors = append(m.collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "ferry", Name: "sync_path_total",
			Help:        "Sessions by how they started: partial (PSYNC from the checkpoint), spool (full sync resumed from the local snapshot copy), full.",
			ConstLabels: prometheus.Labels{"task": t.cfg.Name, "path": name},
		}, func() float64 { return float64(s.paths[p].Load()) }))
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

// StatusHandler serves the task's status as JSON.
func StatusHandler(t *Task) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(t.Status())
	})
}
