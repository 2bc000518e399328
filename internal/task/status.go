package task

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/writer"
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
	// SnapshotConns are the snapshot's extra destination connections while a full sync
	// into a standalone destination has them open (the session's writer, connection 1,
	// is not listed). SnapshotConnTotals sums every one the task has opened, closed ones
	// included. Neither is folded into the fields above, whose meaning they do not share:
	// full_keys already counts the keys of every connection, commands counts the stream
	// (which these connections never carry) and reply_errors the session writer's.
	SnapshotConns      []ConnStatus `json:"snapshot_conns,omitempty"`
	SnapshotConnTotals *ConnTotals  `json:"snapshot_conn_totals,omitempty"`
}

// ConnStatus is one of the snapshot's extra destination connections (Task.openSnapshotConn):
// its writer's counters since it was opened.
type ConnStatus struct {
	// Connection is the loader's number for it, 2 … snapshot.DefaultConnections; Name is
	// its client name on the destination (CLIENT LIST).
	Connection    int    `json:"connection"`
	Name          string `json:"name"`
	Commands      int64  `json:"commands"`        // RESTOREs accepted (injected SELECTs not included)
	Bytes         int64  `json:"bytes"`           // their encoded bytes
	Replies       int64  `json:"replies"`         // commands answered without error
	Skipped       int64  `json:"skipped"`         // refused and skipped (--existing overwrite)
	InFlight      int    `json:"in_flight"`       // queued and not yet answered
	InFlightBytes int    `json:"in_flight_bytes"` // their encoded bytes
	Retries       int64  `json:"retries"`         // resends after a retryable failure
	Reconnects    int64  `json:"reconnects"`      // connections dialed after the first
	// Errors are error replies and connection failures by reason (writer.Reason…).
	Errors map[string]int64 `json:"errors,omitempty"`
	// Error is why the connection stopped, when it failed before the load closed it.
	Error string `json:"error,omitempty"`
}

// ConnTotals sums the counters of the snapshot connections the task has opened.
type ConnTotals struct {
	Opened     int64            `json:"opened"` // connections opened (not reconnects)
	Commands   int64            `json:"commands"`
	Bytes      int64            `json:"bytes"`
	Replies    int64            `json:"replies"`
	Skipped    int64            `json:"skipped"`
	Retries    int64            `json:"retries"`
	Reconnects int64            `json:"reconnects"`
	Errors     map[string]int64 `json:"errors,omitempty"`
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

	snap snapConns
}

// snapConns tracks the snapshot's extra connections: the open ones, which the status and
// the metrics read, and the counters of the closed ones by connection number, so that the
// totals outlive them. Nothing here is on the write path: the writers' own counters are
// read (writer.Stats) only when someone asks.
type snapConns struct {
	// mu is taken before a writer's lock (Stats); no writer calls back into this.
	mu     sync.Mutex
	open   []openConn
	closed map[int]*connCounts // by connection number
	opened int64
}

type openConn struct {
	i    int
	name string
	w    *writer.Writer
}

// connCounts are the counters of writer.Stats that add up over a connection's lifetimes.
type connCounts struct {
	commands, bytes, replies, skipped, retries, reconnects int64
	errors                                                 map[string]int64
}

func (c *connCounts) add(s writer.Stats) {
	c.commands += s.Commands
	c.bytes += s.Bytes
	c.replies += s.Replies
	c.skipped += s.Skipped
	c.retries += s.Retries
	c.reconnects += s.Reconnects
	for reason, n := range s.Errors {
		if c.errors == nil {
			c.errors = make(map[string]int64)
		}
		c.errors[reason] += n
	}
}

func (c *connCounts) addCounts(o *connCounts) {
	c.add(writer.Stats{Commands: o.commands, Bytes: o.bytes, Replies: o.replies, Skipped: o.skipped,
		Retries: o.retries, Reconnects: o.reconnects, Errors: o.errors})
}

// add records connection i (client name name) as open.
func (s *snapConns) add(i int, name string, w *writer.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open = append(s.open, openConn{i: i, name: name, w: w})
	s.opened++
}

// retire moves the open connections' final counters to the closed ones'. The loader has
// closed the writers when its Load returns, which is when this is called.
func (s *snapConns) retire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.open {
		if s.closed == nil {
			s.closed = make(map[int]*connCounts)
		}
		cc := s.closed[c.i]
		if cc == nil {
			cc = &connCounts{}
			s.closed[c.i] = cc
		}
		cc.add(c.w.Stats())
	}
	s.open = nil
}

// read returns the open connections' status and every connection number's counters over
// the task's life (closed and open lifetimes together), consistently: a connection being
// retired is counted once.
func (s *snapConns) read() (open []ConnStatus, life map[int]*connCounts, opened int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	life = make(map[int]*connCounts, len(s.closed)+len(s.open))
	at := func(i int) *connCounts {
		c := life[i]
		if c == nil {
			c = &connCounts{}
			life[i] = c
		}
		return c
	}
	for i, c := range s.closed {
		at(i).addCounts(c)
	}
	for _, c := range s.open {
		st := c.w.Stats()
		at(c.i).add(st)
		cs := ConnStatus{
			Connection: c.i, Name: c.name, Commands: st.Commands, Bytes: st.Bytes,
			Replies: st.Replies, Skipped: st.Skipped, InFlight: st.InFlight,
			InFlightBytes: st.InFlightBytes, Retries: st.Retries, Reconnects: st.Reconnects,
		}
		if len(st.Errors) > 0 {
			cs.Errors = st.Errors
		}
		if err := c.w.Err(); err != nil && !errors.Is(err, writer.ErrClosed) {
			cs.Error = err.Error()
		}
		open = append(open, cs)
	}
	return open, life, s.opened
}

// status fills the status's snapshot-connection fields.
func (s *snapConns) status(st *Status) {
	open, life, opened := s.read()
	st.SnapshotConns = open
	if opened == 0 {
		return
	}
	var sum connCounts
	for _, c := range life {
		sum.addCounts(c)
	}
	st.SnapshotConnTotals = &ConnTotals{
		Opened: opened, Commands: sum.commands, Bytes: sum.bytes, Replies: sum.replies,
		Skipped: sum.skipped, Retries: sum.retries, Reconnects: sum.reconnects, Errors: sum.errors,
	}
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
	m.collectors = append(m.collectors, newSnapConnCollector(&s.snap, labels))
	for p, name := range pathNames {
		m.collectors = append(m.collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "ferry", Name: "sync_path_total",
			Help:        "Sessions by how they started: partial (PSYNC from the checkpoint), spool (full sync resumed from the local snapshot copy), full.",
			ConstLabels: prometheus.Labels{"task": t.cfg.Name, "path": name},
		}, func() float64 { return float64(s.paths[p].Load()) }))
	}
	return m
}

// snapConnCollector exposes the snapshot's extra connections, one series per connection
// number (connection="2" …; the session's writer has its own ferry_writer_* series). The
// counters run over the task's life, closed connections included; the in-flight gauges
// exist only while their connection is open.
type snapConnCollector struct {
	s                                                  *snapConns
	open                                               *prometheus.Desc
	commands, bytes, replies, skipped, errors, retries *prometheus.Desc
	reconnects, inFlight, inFlightBytes                *prometheus.Desc
}

func newSnapConnCollector(s *snapConns, labels prometheus.Labels) *snapConnCollector {
	d := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("ferry_snapshot_writer_"+name, help, append([]string{"connection"}, variable...), labels)
	}
	return &snapConnCollector{
		s:             s,
		open:          prometheus.NewDesc("ferry_snapshot_connections", "Extra destination connections the snapshot load has open now (the session's writer not included).", nil, labels),
		commands:      d("commands_total", "Commands accepted by a snapshot connection."),
		bytes:         d("bytes_total", "Encoded bytes of the commands accepted by a snapshot connection."),
		replies:       d("replies_ok_total", "Commands a snapshot connection had answered without error."),
		skipped:       d("skipped_total", "Commands refused by the destination and skipped (ignore-errors mode) on a snapshot connection."),
		errors:        d("errors_total", "Error replies and connection failures on a snapshot connection, by reason.", "reason"),
		retries:       d("retries_total", "Retryable failures after which a snapshot connection resent its unanswered commands."),
		reconnects:    d("reconnects_total", "Connections a snapshot connection dialed after its first."),
		inFlight:      d("in_flight_commands", "Commands queued on an open snapshot connection and not yet answered."),
		inFlightBytes: d("in_flight_bytes", "Encoded bytes of the commands queued on an open snapshot connection and not yet answered."),
	}
}

func (c *snapConnCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.open, c.commands, c.bytes, c.replies, c.skipped,
		c.errors, c.retries, c.reconnects, c.inFlight, c.inFlightBytes} {
		ch <- d
	}
}

func (c *snapConnCollector) Collect(ch chan<- prometheus.Metric) {
	open, life, _ := c.s.read()
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(len(open)))
	for i, n := range life {
		conn := strconv.Itoa(i)
		counter := func(d *prometheus.Desc, v int64, reason ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{conn}, reason...)...)
		}
		counter(c.commands, n.commands)
		counter(c.bytes, n.bytes)
		counter(c.replies, n.replies)
		counter(c.skipped, n.skipped)
		counter(c.retries, n.retries)
		counter(c.reconnects, n.reconnects)
		for reason, v := range n.errors {
			counter(c.errors, v, reason)
		}
	}
	for _, o := range open {
		conn := strconv.Itoa(o.Connection)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(o.InFlight), conn)
		ch <- prometheus.MustNewConstMetric(c.inFlightBytes, prometheus.GaugeValue, float64(o.InFlightBytes), conn)
	}
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
