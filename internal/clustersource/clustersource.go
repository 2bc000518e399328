// Package clustersource syncs a Redis Cluster source: one task.Task per source master (a
// shard), run concurrently into one destination (standalone, or a cluster).
//
// Sync reads the source's topology from any of its nodes (CLUSTER SHARDS, or CLUSTER
// SLOTS before 7.0) and gives every master a shard task with:
//
//   - a name derived from the task's, "<task>-s<first slot>", recorded on the destination
//     (ferry:shards:<task>) at the first start, so that the name, and with it the shard's
//     checkpoint, spool directory and writer connections, outlives failovers and restarts;
//   - a Resolve that re-reads the topology (from any node known) and returns the master
//     serving the shard now: the node it followed before while it is still a master, else
//     the master of the shard its old node now replicates (a failover, which PSYNC2
//     continues), else the master serving most of its slots;
//   - a heartbeat key whose hash tag lands in one of the shard's slots;
//   - Owned from one existing-keys check of the destination, run before any shard starts
//     (and skipped when the layout is already there: a resume);
//   - a Barrier that orders keys migrated between shards (see task.Shard).
//
// One failing shard stops the others (cleanly) and fails the sync, naming the shard; a
// cancelled context stops every shard cleanly.
//
// # Restarts after a reshard
//
// A restart matches the recorded shard names to the masters of the source as it is now:
// first by replication history (a shard's checkpoint replid is a master's master_replid
// or master_replid2: the same node, or its promoted replica), then by the slot in the
// name. A master that no recorded shard matches (one added to the source meanwhile) gets
// a new shard, which starts with a full sync of its keys; a recorded shard whose master
// is gone (removed from the source) is not run: its keys were migrated to the remaining
// masters, whose streams carried them (RESTORE-ASKING) while the task ran, or whose
// snapshots carry them. Keys such a vanished master deleted while Ferry was stopped stay
// on the destination.
package clustersource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/throttle"
)

// maxTaskName is the longest task name a cluster source accepts: its shard tasks add
// "-s16383" to it, and task names are at most 64 characters.
const maxTaskName = 64 - len("-s16383")

// topologyDialTimeout bounds connecting to one source node to read the topology, so a
// dead node costs little before the next is tried.
const topologyDialTimeout = 3 * time.Second

// Detect reports whether the server at opts is a Redis Cluster node (INFO cluster reports
// cluster_enabled:1).
func Detect(ctx context.Context, opts redis.Options) (bool, error) {
	opts.DB = 0
	c, err := redis.Dial(ctx, opts)
	if err != nil {
		return false, fmt.Errorf("connect to source %s: %w", opts.Addr, err)
	}
	defer c.Close()
	info, err := c.Info(ctx, "cluster")
	if err != nil {
		return false, fmt.Errorf("source %s: INFO cluster: %w", opts.Addr, err)
	}
	return info["cluster_enabled"] == "1", nil
}

// Sync is one sync from a cluster source. Create it with New, run it with Run.
type Sync struct {
	cfg     task.Config
	log     *slog.Logger
	started time.Time
	// exclusive is the shards' task.Shard.Exclusive.
	exclusive sync.Mutex

	mu     sync.Mutex
	shards []*shardRun // set by Run before any shard starts
	nodes  []string    // every source node seen, for reading the topology again
	phase  task.Phase
	err    string

	skippedBarriers atomic.Int64

	// settle is DefaultMigrationSettle (tests shorten it); mig the migrations between
	// shards and the fast path for deletions (migrations.go), under migMu.
	settle                      time.Duration
	migMu                       sync.Mutex
	mig                         migrations
	checkedDeletes, fastDeletes atomic.Int64
}

// New validates cfg, a task's configuration whose Source is any node of the cluster, and
// returns a Sync ready to Run. cfg.Name (default task.DefaultName) names the whole sync;
// the shard tasks are named after it. Throttle limits are for the whole sync and are
// divided evenly between the shards.
func New(cfg task.Config) (*Sync, error) {
	if cfg.Shard != nil {
		return nil, errors.New("cluster source: the configuration must not name a shard; Sync makes one per master")
	}
	if cfg.Sentinel.Addr != "" {
		return nil, errors.New("cluster source: a Sentinel cannot be combined with a cluster source (a cluster fails over by itself)")
	}
	if cfg.Name == "" {
		cfg.Name = task.DefaultName(cfg.Source, cfg.Target)
	}
	if len(cfg.Name) > maxTaskName {
		return nil, fmt.Errorf("task name %q: a cluster source's task name may have at most %d characters (its shard tasks add -s<slot>)", cfg.Name, maxTaskName)
	}
	if cfg.DataDir == "" {
		return nil, fmt.Errorf("task %s: a data directory is required for the replication spool", cfg.Name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Sync{cfg: cfg, log: cfg.Logger.With("task", cfg.Name), started: time.Now(), phase: task.PhaseCreated,
		settle: DefaultMigrationSettle}, nil
}

// Name is the sync's task name.
func (s *Sync) Name() string { return s.cfg.Name }

// shardRun is one shard: its task and what the orchestrator knows of its master.
type shardRun struct {
	s      *Sync
	id     string // "s<anchor>", the shard label in logs and metrics
	name   string // the shard task's name
	anchor uint16 // the slot in the name

	mu     sync.Mutex
	nodeID string // the master followed
	addr   string
	// slots are the slots the master serves now; ever those it served at any time in
	// this run (what Shard.Slots answers: deleting the shard's keys spares those another
	// node holds, so a wider set is safe).
	slots atomic.Pointer[slotSet]
	ever  atomic.Pointer[slotSet]

	t     *task.Task
	shard *task.Shard
	// waiting: the shard's stream is held in a barrier.
	waiting atomic.Bool
	// infoConn reads the master's offset for the other shards' barriers.
	infoMu   sync.Mutex
	infoConn *redis.Conn
}

// Run runs every shard until the sync ends: all shards finished (full mode), one failed
// (the others are stopped and its error is returned, naming it), or ctx was cancelled (a
// clean stop of every shard; nil).
func (s *Sync) Run(ctx context.Context) (err error) {
	s.setPhase(task.PhaseConnecting, "")
	defer func() {
		if err != nil {
			s.setPhase(task.PhaseFailed, err.Error())
			return
		}
		s.setPhase(task.PhaseStopped, "")
	}()
	if err := s.prepare(ctx); err != nil {
		return fmt.Errorf("task %s: %w", s.cfg.Name, err)
	}
	if s.cfg.Registerer != nil {
		m := newMetrics(s)
		if err := m.register(s.cfg.Registerer); err != nil {
			return fmt.Errorf("task %s: register metrics: %w", s.cfg.Name, err)
		}
		defer m.unregister(s.cfg.Registerer)
	}
	s.mu.Lock()
	shards := slices.Clone(s.shards)
	s.mu.Unlock()

	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	mctx, stopMonitor := context.WithCancel(rctx)
	monitorDone := make(chan struct{})
	go func() { defer close(monitorDone); s.monitor(mctx) }()
	var wg sync.WaitGroup
	for _, r := range shards {
		wg.Go(func() {
			err := r.t.Run(rctx)
			r.shard.Close()
			if err != nil {
				r.mu.Lock()
				addr := r.addr
				r.mu.Unlock()
				cancel(fmt.Errorf("shard %s (slots %s, source master %s): %w", r.id, r.slots.Load(), addr, err))
			}
		})
	}
	wg.Wait()
	stopMonitor()
	<-monitorDone
	for _, r := range shards {
		r.infoMu.Lock()
		r.closeInfo()
		r.infoMu.Unlock()
	}
	if cause := context.Cause(rctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return nil
}

func (s *Sync) setPhase(p task.Phase, err string) {
	s.mu.Lock()
	s.phase, s.err = p, err
	s.mu.Unlock()
}

// prepare reads the topology, names the shards (from the destination's layout on a
// resume), runs the existing-keys check on a first start, and creates the shard tasks.
func (s *Sync) prepare(ctx context.Context) error {
	topo, err := s.topology(ctx, s.cfg.Source.Addr)
	if err != nil {
		return err
	}
	if n := topo.Covered(); n != command.SlotCount {
		return fmt.Errorf("source cluster: masters serve %d of %d slots: fix the cluster (redis-cli --cluster fix) or wait for a failover to finish", n, command.SlotCount)
	}
	dst, err := openDestination(ctx, s.cfg.Target)
	if err != nil {
		return err
	}
	lay, found, err := dst.loadLayout(ctx, s.cfg.Name)
	if err != nil {
		return err
	}
	var names []string // per topo.Shards
	if !found {
		lay.existing = checkpoint.ExistingOverwrite
		if s.cfg.Existing != task.ExistingOverwrite && s.cfg.Mode != task.ModeIncr {
			if err := dst.checkEmpty(ctx); err != nil {
				return err
			}
			lay.existing = checkpoint.ExistingBlock
		}
		for _, sh := range topo.Shards {
			names = append(names, s.shardName(sh.Slots[0].First, nil))
		}
		lay.shards = names
		if err := dst.saveLayout(ctx, s.cfg.Name, lay); err != nil {
			return err
		}
	} else {
		var added bool
		if names, added, err = s.match(ctx, dst, topo, lay); err != nil {
			return err
		}
		if added {
			lay.shards = append(lay.shards, newNames(lay.shards, names)...)
			if err := dst.saveLayout(ctx, s.cfg.Name, lay); err != nil {
				return err
			}
		}
		s.log.Info("resuming a cluster-source task: shards from the destination's layout", "layout", lay.String())
	}
	owned := lay.existing == checkpoint.ExistingBlock

	var runs []*shardRun
	for i, sh := range topo.Shards {
		r, err := s.newShard(names[i], sh, owned, len(topo.Shards))
		if err != nil {
			return err
		}
		runs = append(runs, r)
		s.log.Info("cluster source shard", "shard", r.id, "shard_task", r.name, "master", sh.Master.Addr,
			"slots", r.slots.Load().String())
	}
	s.mu.Lock()
	s.shards = runs
	s.mu.Unlock()
	return nil
}

// shardName names a shard after its first slot, unique among taken.
func (s *Sync) shardName(first uint16, taken []string) string {
	name := s.cfg.Name + "-s" + strconv.Itoa(int(first))
	for i := 2; slices.Contains(taken, name); i++ {
		name = s.cfg.Name + "-s" + strconv.Itoa(int(first)) + "-" + strconv.Itoa(i)
	}
	return name
}

func newNames(old, names []string) []string {
	var out []string
	for _, n := range names {
		if !slices.Contains(old, n) {
			out = append(out, n)
		}
	}
	return out
}

// anchorOf reads the slot from a shard task's name.
func (s *Sync) anchorOf(name string) (uint16, bool) {
	rest, ok := strings.CutPrefix(name, s.cfg.Name+"-s")
	if !ok {
		return 0, false
	}
	rest, _, _ = strings.Cut(rest, "-")
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || n >= command.SlotCount {
		return 0, false
	}
	return uint16(n), true
}

// match assigns the recorded shard names to the masters of topo: by replication history
// (the shard's checkpoint replid is the master's replid or replid2), then by the slot in
// the name. Masters left without a name get a new one (added).
func (s *Sync) match(ctx context.Context, dst *destination, topo *cluster.Topology, lay layout) (names []string, added bool, err error) {
	names = make([]string, len(topo.Shards))
	type ids struct{ replid, replid2 string }
	masters := make([]ids, len(topo.Shards))
	for i, sh := range topo.Shards {
		o := s.cfg.Source
		o.Addr, o.DB = sh.Master.Addr, 0
		c, err := redis.Dial(ctx, o)
		if err != nil {
			return nil, false, fmt.Errorf("connect to source master %s: %w", o.Addr, err)
		}
		info, err := c.Info(ctx, "replication")
		c.Close()
		if err != nil {
			return nil, false, fmt.Errorf("source master %s: INFO replication: %w", o.Addr, err)
		}
		masters[i] = ids{info["master_replid"], info["master_replid2"]}
	}
	assigned := make(map[string]bool)
	for _, name := range lay.shards {
		st, err := dst.checkpointOf(ctx, name)
		if err != nil {
			return nil, false, err
		}
		id := st.Checkpoint.ReplID
		if id == "" && st.Full != nil {
			id = st.Full.ReplID
		}
		if id == "" {
			continue
		}
		for i, m := range masters {
			if names[i] == "" && (m.replid == id || m.replid2 == id) {
				names[i], assigned[name] = name, true
				break
			}
		}
	}
	for _, name := range lay.shards {
		if assigned[name] {
			continue
		}
		anchor, ok := s.anchorOf(name)
		if !ok {
			continue
		}
		for i, sh := range topo.Shards {
			if names[i] == "" && slotsOf(sh.Slots).has(anchor) {
				names[i], assigned[name] = name, true
				break
			}
		}
	}
	for i, sh := range topo.Shards {
		if names[i] == "" {
			names[i] = s.shardName(sh.Slots[0].First, append(slices.Clone(lay.shards), names...))
			added = true
			s.log.Warn("a source master matches no shard of the task's earlier runs (added to the source meanwhile?); it starts as a new shard with a full sync of its keys",
				"master", sh.Master.Addr, "shard_task", names[i])
		}
	}
	for _, name := range lay.shards {
		if !assigned[name] {
			s.log.Warn("a shard of the task's earlier runs matches no source master now (removed from the source meanwhile?); it is not run: its keys were migrated to the remaining masters",
				"shard_task", name)
		}
	}
	return names, added, nil
}

// newShard creates a shard's task.
func (s *Sync) newShard(name string, sh cluster.Shard, owned bool, n int) (*shardRun, error) {
	anchor, ok := s.anchorOf(name)
	if !ok {
		anchor = sh.Slots[0].First
	}
	r := &shardRun{s: s, id: "s" + strconv.Itoa(int(anchor)), name: name, anchor: anchor,
		nodeID: sh.Master.ID, addr: sh.Master.Addr}
	cur := slotsOf(sh.Slots)
	r.slots.Store(cur)
	r.ever.Store(cur)
	first, _ := cur.first()

	cfg := s.cfg
	cfg.Name = name
	cfg.Source.Addr, cfg.Source.DB = sh.Master.Addr, 0
	cfg.DataDir = filepath.Join(s.cfg.DataDir, name)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("shard %s: data directory: %w", r.id, err)
	}
	cfg.Logger = s.cfg.Logger.With("shard", r.id)
	if s.cfg.Registerer != nil {
		cfg.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"shard": r.id}, s.cfg.Registerer)
	}
	cfg.Throttle = throttle.Config{Full: split(s.cfg.Throttle.Full, n), Incremental: split(s.cfg.Throttle.Incremental, n)}
	r.shard = &task.Shard{
		ID:    r.id,
		Slots: func(slot uint16) bool { return r.ever.Load().has(slot) },
		Resolve: func(ctx context.Context) (redis.Options, error) {
			if err := s.sessionStarts(ctx, r); err != nil {
				return redis.Options{}, err
			}
			return r.resolve(ctx)
		},
		Owned:        owned,
		HeartbeatKey: task.KeyPrefix + "hb:{" + tagFor(first) + "}:" + name,
		Barrier:      func(ctx context.Context) error { return s.barrier(ctx, r) },
		Imported:     func(key []byte) { s.imported(r, key) },
		Moved:        func(key []byte, offset int64) bool { return s.moved(r, key, offset) },
		Exclusive:    &s.exclusive,
	}
	cfg.Shard = r.shard
	t, err := task.New(cfg)
	if err != nil {
		return nil, err
	}
	r.t = t
	return r, nil
}

// split divides a limit between n shards, rounding up so that none is unlimited by it.
func split(l throttle.Limits, n int) throttle.Limits {
	div := func(v int64) int64 {
		if v <= 0 {
			return v
		}
		return (v + int64(n) - 1) / int64(n)
	}
	return throttle.Limits{MaxOps: div(l.MaxOps), MaxBytes: div(l.MaxBytes)}
}

// topology reads the source's slot map from the first node that answers: prefer, then
// every node seen before, then the configured source.
func (s *Sync) topology(ctx context.Context, prefer string) (*cluster.Topology, error) {
	s.mu.Lock()
	addrs := append([]string{prefer}, s.nodes...)
	s.mu.Unlock()
	addrs = append(addrs, s.cfg.Source.Addr)
	var errs []error
	tried := make(map[string]bool)
	for _, addr := range addrs {
		if addr == "" || tried[addr] {
			continue
		}
		tried[addr] = true
		o := s.cfg.Source
		o.Addr, o.DB = addr, 0
		o.DialTimeout = topologyDialTimeout
		c, err := redis.Dial(ctx, o)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		topo, err := cluster.Fetch(ctx, c, o.TLS != nil)
		c.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("source node %s: %w", addr, err))
			continue
		}
		if len(topo.Shards) == 0 {
			errs = append(errs, fmt.Errorf("source node %s: no master serves slots", addr))
			continue
		}
		var seen []string
		for _, sh := range topo.Shards {
			seen = append(seen, sh.Master.Addr)
			for _, n := range sh.Replicas {
				seen = append(seen, n.Addr)
			}
		}
		s.mu.Lock()
		for _, a := range seen {
			if !slices.Contains(s.nodes, a) {
				s.nodes = append(s.nodes, a)
			}
		}
		s.mu.Unlock()
		return topo, nil
	}
	return nil, fmt.Errorf("read the source cluster's topology: no node answered: %w", errors.Join(errs...))
}

// resolve is the shard's task.Shard.Resolve: the master serving the shard now.
func (r *shardRun) resolve(ctx context.Context) (redis.Options, error) {
	r.mu.Lock()
	prev, prevID := r.addr, r.nodeID
	r.mu.Unlock()
	topo, err := r.s.topology(ctx, prev)
	if err != nil {
		return redis.Options{}, fmt.Errorf("shard %s: %w", r.id, err)
	}
	sh, how, ok := r.pick(topo, prevID)
	if !ok {
		return redis.Options{}, fmt.Errorf("shard %s: no master of the source serves any of its slots (%s)", r.id, r.slots.Load())
	}
	cur := slotsOf(sh.Slots)
	r.slots.Store(cur)
	r.ever.Store(r.ever.Load().union(cur))
	r.mu.Lock()
	r.nodeID, r.addr = sh.Master.ID, sh.Master.Addr
	r.mu.Unlock()
	if sh.Master.Addr != prev {
		r.s.log.Info("shard follows a new source master", "shard", r.id, "from", prev, "to", sh.Master.Addr,
			"how", how, "slots", cur.String())
	}
	o := r.s.cfg.Source
	o.Addr, o.DB = sh.Master.Addr, 0
	return o, nil
}

// pick finds the shard's master in topo: the node followed so far while it is a master;
// else the master of the shard that node now belongs to (it was failed over and
// replicates its promoted replica); else the master serving most of the shard's slots.
func (r *shardRun) pick(topo *cluster.Topology, prevID string) (cluster.Shard, string, bool) {
	for _, sh := range topo.Shards {
		if prevID != "" && sh.Master.ID == prevID {
			return sh, "same node", true
		}
	}
	for _, sh := range topo.Shards {
		for _, n := range sh.Replicas {
			if prevID != "" && n.ID == prevID {
				return sh, "failover: the old master replicates it", true
			}
		}
	}
	cur := r.slots.Load()
	best, bestN := -1, 0
	for i, sh := range topo.Shards {
		if n := slotsOf(sh.Slots).overlap(cur); n > bestN {
			best, bestN = i, n
		}
	}
	if best < 0 {
		return cluster.Shard{}, "", false
	}
	return topo.Shards[best], "serves most of the shard's slots", true
}

// Limiters are the shards' throttles, by "<shard>/<phase>", for changing the limits while
// the sync runs (throttle.Handler serves them).
func (s *Sync) Limiters() map[string]*throttle.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*throttle.Limiter)
	for _, r := range s.shards {
		for phase, l := range r.t.Limiters() {
			out[r.id+"/"+phase] = l
		}
	}
	return out
}
