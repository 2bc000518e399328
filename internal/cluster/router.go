// Package cluster applies a sync's ordered command stream to a Redis Cluster.
//
// A Router owns one writer.Writer per master and offers the same surface as a single
// Writer (Write, Flush, Applied, Stats, Close). Each command goes to the master of its
// keys' slot, found from the destination's own key specs (internal/command); per-node
// order is the stream's order, and commands for one slot are always on one node's
// connection at a time, so per-key order holds.
//
// # Commands that do not fit one slot
//
//   - Whole-dataset commands (FLUSHALL, FLUSHDB, FUNCTION LOAD/DELETE/FLUSH/RESTORE,
//     SCRIPT LOAD/FLUSH) go to every master, after everything before them is applied
//     and the topology re-read.
//   - Separable multi-key commands (DEL, UNLINK, TOUCH, MSET, a succeeded MSETNX) are
//     split into one command per slot.
//   - Other cross-slot commands (RENAME, SMOVE, LMOVE, SUNIONSTORE, BITOP, PFMERGE,
//     COPY, ZUNIONSTORE, GEOSEARCHSTORE, SORT … STORE, EVAL on keys of several slots…)
//     are co-located: once everything in flight is applied, each key is DUMPed into a
//     temporary key {ferry-tmp-<n>}:<i> (one hash tag, so one slot and one node) with its
//     TTL, the command runs there on the temporary names, every key it may have written
//     is copied back under its real name (RESTORE … REPLACE with its TTL, or DEL when the
//     result does not exist) and the temporary keys are deleted. Exact for any command,
//     at the cost of a few round trips, paid only by these rare commands.
//   - A source transaction whose commands span slots is applied as one MULTI/EXEC per
//     slot (a cluster refuses a transaction across slots even on one node); one holding
//     a command that must be co-located or sent to every master is applied command by
//     command. Stats counts both.
//
// # Exactly-once
//
// With Options.Checkpoints the router takes the sync's exactly-once batches (MULTI …
// SET <checkpoint> … EXEC) and applies each as one transaction per slot, with that slot's
// own checkpoint key, ferry:sckpt:<task>:{<tag>}, which lives in the slot and so moves and
// fails over with its data; the task's checkpoint becomes a floor written once every
// master has acknowledged it, and a new session skips per slot what the slots hold (see
// Checkpoints). Without it, commands are applied as they come and a resend after a lost
// connection may apply one twice (at-least-once).
//
// # Redirects
//
// The writers hand -MOVED and -ASK replies back to the router (writer.Options.Redirect).
// The router then waits until every writer has answered everything it was given, so that
// nothing sent earlier for the same slot is still on its way, re-reads the topology after
// a MOVED, and sends the redirected commands, in their order, to their new node (after
// ASKING for -ASK) before anything newer. -TRYAGAIN and -CLUSTERDOWN are retried by the
// writers with backoff.
//
// # Known limits
//
// With Checkpoints, a master's writer that must reconnect (a lost connection, or a retried
// -TRYAGAIN, -CLUSTERDOWN or -LOADING, which the writer answers by reconnecting) is stopped
// by the task's Reconcile, and the session starts over from the floor: a slot migration
// that splits a slot's keys between two masters while a transaction touches it costs a
// session restart, not a duplicate.
// A master that dies without a failover its writer can follow (the address stops
// answering and nothing answers MOVED) holds its unanswered commands until the writer's
// RetryTimeout. Functions and scripts are loaded on the masters that exist when the
// command arrives; a master added later does not get them. Co-location copies whole
// values through the router, so a multi-gigabyte key costs that much memory once.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/writer"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultRedirectTimeout is Options.RedirectTimeout when zero: how long commands may keep
// being redirected (a slot migration or failover that does not settle) before the router
// gives up.
const DefaultRedirectTimeout = 5 * time.Minute

// Options configures a Router.
type Options struct {
	// Target says how to log in to every node (user, password, TLS, timeouts); its Addr is
	// the first node asked for the topology. DB must be 0: a cluster has no other.
	Target redis.Options
	// Seeds are more node addresses, asked in turn when Target.Addr does not answer.
	Seeds []string
	// Writer is the template of every master's writer (window, RetryTimeout,
	// IgnoreErrors, Logger, Registerer: each writer's metrics carry its address). Its
	// Target and Redirect are set by the router.
	Writer writer.Options
	// Table gives key positions; nil loads it from the first node that answers, with
	// COMMAND.
	Table *command.Table
	// RedirectTimeout bounds one episode of redirects that keep coming. Default
	// DefaultRedirectTimeout.
	RedirectTimeout time.Duration
	// TempKeyPrefix is put before the temporary keys of co-location,
	// "<prefix>{ferry-tmp-<n>}:<i>", e.g. the task's own-key prefix so that a reverse
	// task ignores them. Default "".
	TempKeyPrefix string
	// Logger receives topology changes and redirect episodes; nothing per command.
	// Default slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the router's metrics (ferry_cluster_*); Close
	// unregisters them. The writers' metrics go to Writer.Registerer.
	Registerer prometheus.Registerer
	// Checkpoints, when set, makes the router apply exactly-once batches with per-slot
	// checkpoints (see Checkpoints and the package documentation). Default nil: commands
	// and source transactions are applied as they come (at-least-once).
	Checkpoints *Checkpoints
}

// Stats are the router's counters since Open.
type Stats struct {
	Commands     int64            // commands accepted by Write, MULTI and EXEC included
	Split        int64            // cross-slot commands split per slot
	SplitParts   int64            // the per-slot commands they became
	CoLocated    map[string]int64 // cross-slot commands co-located, by lower-case name
	CoSkipped    int64            // co-located commands the destination refused, skipped under IgnoreErrors
	Broadcast    int64            // whole-dataset commands sent to every master
	Transactions int64            // source transactions (MULTI … EXEC)
	TxnSplit     int64            // of them, applied as one transaction per slot
	TxnUnwrapped int64            // of them, applied command by command
	// Redirects by kind: "moved" and "ask" count the commands (a transaction counts
	// once) the router sent again elsewhere; "tryagain" and "clusterdown" the retries of
	// the writers.
	Redirects map[string]int64
	Episodes  int64                   // redirect episodes (everything flushed, then re-sent)
	Refreshes int64                   // topology reads after the first
	Nodes     map[string]writer.Stats // by address: every node the router has a writer for
	// With Checkpoints: commands (or per-slot parts) not applied because their slot's
	// checkpoint says the slot holds them already, and the per-slot transactions written.
	SlotSkipped, SlotTxns int64
}

// node is a master the router writes to.
type node struct {
	addr string
	w    *writer.Writer
}

// pending is a redirect not yet re-sent.
type pending struct {
	from *node
	rd   writer.Redirected
}

// Router applies commands to a Redis Cluster. Write and Flush are serialised and may be
// called from different goroutines (order between them is the caller's); Close follows
// them; Applied, Stats, Err and Done may be called from any.
type Router struct {
	opts    Options
	log     *slog.Logger
	table   *command.Table
	metrics *collector

	// producer serialises Write and Flush, which may come from two goroutines (a full
	// sync's progress checkpoints flush while the loader writes): a Flush that settles
	// redirects re-reads the topology and re-sends commands, which must not interleave
	// with a Write routing by the old map. A Flush therefore holds up Write until the
	// destination has answered everything.
	producer sync.Mutex
	// Producer state: touched only under producer.
	slots   [command.SlotCount]*node
	ctls    map[string]*redis.Conn // control connections (topology, GETKEYS, co-location)
	inTxn   bool
	txn     []writer.Command
	keys    []command.Key
	parts   [][]byte
	tmpBase uint64
	tmpSeq  uint64
	ck      *slotState // per-slot checkpoints (Options.Checkpoints), or nil

	mu        sync.Mutex // guards nodes and coLocated
	nodes     map[string]*node
	coLocated map[string]int64

	commands, split, splitParts, coSkipped, broadcast  atomic.Int64
	txns, txnSplit, txnUnwrapped, moved, ask, episodes atomic.Int64
	refreshes                                          atomic.Int64
	maxWritten                                         atomic.Int64
	topoMasters                                        atomic.Int64 // masters in the last topology applied
	applied                                            atomic.Int64 // the highest Applied answered

	// Redirects handed over by the writers, not yet re-sent. While an episode lasts
	// (from the first redirect until everything re-sent is answered) Applied stays at
	// or below floor: the writers' Applied moved past the redirected commands.
	redirMu  sync.Mutex
	redirs   []pending
	episode  bool
	floor    int64
	redirect atomic.Bool // redirs is not empty

	errMu    sync.Mutex
	err      error
	done     chan struct{}
	watchers sync.WaitGroup
	closed   atomic.Bool
}

// Open reads the cluster's topology from Target.Addr (or a seed), loads the command
// table unless given, and connects a writer to every master. ctx bounds the setup.
func Open(ctx context.Context, opts Options) (*Router, error) {
	if opts.RedirectTimeout <= 0 {
		opts.RedirectTimeout = DefaultRedirectTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Target.DB != 0 {
		return nil, fmt.Errorf("cluster: database %d requested, but a cluster has only database 0", opts.Target.DB)
	}
	r := &Router{
		opts:      opts,
		log:       opts.Logger,
		table:     opts.Table,
		ctls:      make(map[string]*redis.Conn),
		nodes:     make(map[string]*node),
		coLocated: make(map[string]int64),
		done:      make(chan struct{}),
		tmpBase:   rand.Uint64() >> 16, // room for the counter, digits stay short
	}
	if opts.Checkpoints != nil {
		ck, err := newSlotState(*opts.Checkpoints)
		if err != nil {
			return nil, err
		}
		r.ck = ck
	}
	ok := false
	defer func() {
		if !ok {
			_ = r.Close()
		}
	}()
	seeds := append([]string{opts.Target.Addr}, opts.Seeds...)
	var topo *Topology
	var lastErr error
	for _, addr := range seeds {
		c, err := r.control(ctx, addr)
		if err != nil {
			lastErr = err
			continue
		}
		if topo, err = Fetch(ctx, c, r.tls()); err != nil {
			lastErr = fmt.Errorf("%s: %w", addr, err)
			r.dropControl(addr)
			continue
		}
		if r.table == nil {
			if r.table, err = command.Load(ctx, c); err != nil {
				return nil, fmt.Errorf("cluster: %s: %w", addr, err)
			}
		}
		break
	}
	if topo == nil {
		return nil, fmt.Errorf("cluster: no seed node answered with a topology (%v): check the address and that it is a cluster node", lastErr)
	}
	if n := topo.Covered(); n != command.SlotCount {
		return nil, fmt.Errorf("cluster: the masters serve %d of %d slots: fix the cluster (redis-cli --cluster fix) before syncing to it", n, command.SlotCount)
	}
	if err := r.applyTopology(ctx, topo); err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		r.metrics = newCollector(r)
		if err := opts.Registerer.Register(r.metrics); err != nil {
			r.metrics = nil
			return nil, fmt.Errorf("cluster: register metrics: %w", err)
		}
	}
	r.log.Info("cluster destination", "masters", len(topo.Shards), "seed", opts.Target.Addr)
	ok = true
	return r, nil
}

func (r *Router) tls() bool { return r.opts.Target.TLS != nil }

// applyTopology points every slot a master serves at that master's writer, connecting
// writers to new masters. Slots the topology leaves unserved keep their old node.
func (r *Router) applyTopology(ctx context.Context, t *Topology) error {
	r.topoMasters.Store(int64(len(t.Shards)))
	for _, sh := range t.Shards {
		n, err := r.nodeAt(ctx, sh.Master.Addr)
		if err != nil {
			return err
		}
		for _, rg := range sh.Slots {
			for s := int(rg.First); s <= int(rg.Last); s++ {
				r.slots[s] = n
			}
		}
	}
	return nil
}

// minNodeWindow is the least byte window a master's writer gets (see nodeWindow): below
// a few MiB a pipeline of big commands (a big key's 4096-element HSETs) stalls on round
// trips.
const minNodeWindow = 4 << 20

// nodeWindow shares the writer template's byte window (writer.DefaultMaxInFlightBytes
// when unset) among the masters, so that the router holds about what one writer into a
// standalone server would, however many masters there are: each window is memory the
// destination has not acknowledged yet (with big keys, 3 × 32 MiB of them took Ferry's
// peak RSS to 117 MB). A master's single thread does not need more in flight than one
// server's.
func nodeWindow(template int, masters int64) int {
	if template <= 0 {
		template = writer.DefaultMaxInFlightBytes
	}
	if masters <= 1 {
		return template
	}
	return max(template/int(masters), min(template, minNodeWindow))
}

// nodeAt returns the writer of the node at addr, connecting one if needed.
func (r *Router) nodeAt(ctx context.Context, addr string) (*node, error) {
	r.mu.Lock()
	n := r.nodes[addr]
	r.mu.Unlock()
	if n != nil {
		return n, nil
	}
	n = &node{addr: addr}
	wo := r.opts.Writer
	wo.Target = r.opts.Target
	wo.Target.Addr = addr
	wo.Target.DB = 0
	if wo.Logger == nil {
		wo.Logger = r.log
	}
	wo.Redirect = func(rd writer.Redirected) { r.onRedirect(n, rd) }
	wo.MaxInFlightBytes = nodeWindow(wo.MaxInFlightBytes, r.topoMasters.Load())
	w, err := writer.Open(ctx, wo)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to node %s: %w", addr, err)
	}
	n.w = w
	r.mu.Lock()
	r.nodes[addr] = n
	r.mu.Unlock()
	r.watchers.Add(1)
	go func() {
		defer r.watchers.Done()
		<-w.Done()
		if err := w.Err(); !errors.Is(err, writer.ErrClosed) {
			r.fail(fmt.Errorf("cluster: node %s: %w", addr, err))
		}
	}()
	r.log.Debug("connected to cluster node", "addr", addr)
	return n, nil
}

// onRedirect is the writers' Redirect hook: it runs on a writer's reader goroutine with
// that writer's lock held, so it only records.
func (r *Router) onRedirect(from *node, rd writer.Redirected) {
	r.redirMu.Lock()
	defer r.redirMu.Unlock()
	if !r.episode || rd.Applied < r.floor {
		r.floor = rd.Applied
	}
	r.episode = true
	r.redirs = append(r.redirs, pending{from, rd})
	r.redirect.Store(true)
}

// fail records the router's first fatal error.
func (r *Router) fail(err error) {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	if r.err != nil || r.closed.Load() {
		return
	}
	r.err = err
	close(r.done)
}

// Err returns why the router stopped, or nil while it runs.
func (r *Router) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

// Done is closed when the router fails; Err says why.
func (r *Router) Done() <-chan struct{} { return r.done }

// Write applies cmd: routed by the slot of its keys, split, co-located or sent to every
// master (see the package documentation). Commands between MULTI and EXEC are held and
// applied at EXEC. Args are copied; the caller may reuse them after Write returns.
func (r *Router) Write(ctx context.Context, cmd writer.Command) error {
	r.producer.Lock()
	defer r.producer.Unlock()
	return r.write(ctx, cmd)
}

// write is Write under the producer lock.
func (r *Router) write(ctx context.Context, cmd writer.Command) error {
	if err := r.Err(); err != nil {
		return err
	}
	if len(cmd.Args) == 0 {
		return errors.New("cluster: command without arguments")
	}
	if cmd.DB > 0 {
		return fmt.Errorf("cluster: %s at offset %d is for database %d, but a cluster has only database 0: "+
			"map the source's databases onto 0 (e.g. with a key prefix per database)", clip(cmd.Args[0]), cmd.Offset, cmd.DB)
	}
	if r.redirect.Load() {
		if err := r.settle(ctx); err != nil {
			return err
		}
	}
	r.commands.Add(1)
	name := cmd.Args[0]
	var err error
	switch {
	case r.ck != nil && r.ck.own(cmd):
		err = r.batchWrite(ctx, cmd)
	case equalFold(name, "MULTI"):
		if r.inTxn {
			return fmt.Errorf("cluster: MULTI inside a transaction (offset %d)", cmd.Offset)
		}
		r.inTxn, r.txn = true, r.txn[:0]
		return nil
	case equalFold(name, "DISCARD") && r.inTxn:
		r.inTxn = false
		return nil
	case equalFold(name, "EXEC"):
		if !r.inTxn {
			return fmt.Errorf("cluster: EXEC without MULTI (offset %d)", cmd.Offset)
		}
		r.inTxn = false
		err = r.applyTxn(ctx, cmd)
	case r.inTxn:
		r.txn = append(r.txn, cloneCommand(cmd))
		return nil
	default:
		err = r.dispatch(ctx, cmd)
	}
	if err != nil {
		return err
	}
	if cmd.Offset > r.maxWritten.Load() {
		r.maxWritten.Store(cmd.Offset)
	}
	return nil
}

// dispatch applies one command outside a transaction.
func (r *Router) dispatch(ctx context.Context, cmd writer.Command) error {
	rt, err := r.table.Route(ctx, getKeys{r}, cmd.Args, r.keys[:0])
	if err != nil {
		return fmt.Errorf("cluster: route %s (offset %d): %w", clip(cmd.Args[0]), cmd.Offset, err)
	}
	r.keys = rt.Keys[:0]
	switch rt.Kind {
	case command.OneSlot:
		return r.send(ctx, r.slots[rt.Slot], cmd)
	case command.Keyless:
		return r.send(ctx, r.slots[0], cmd)
	case command.AllMasters:
		return r.toAllMasters(ctx, cmd)
	case command.Split:
		r.split.Add(1)
		// Each master's last part carries the offset (see applyTxn), so the parts are
		// collected first.
		var parts []writer.Command
		err := command.SplitBySlot(rt, cmd.Args, r.parts[:0], func(slot uint16, part [][]byte) error {
			r.splitParts.Add(1)
			parts = append(parts, cloneCommand(writer.Command{DB: cmd.DB, Args: part}))
			return nil
		})
		if err != nil {
			return err
		}
		lastOf := make(map[*node]int, len(parts))
		for i, p := range parts {
			lastOf[r.slots[command.Slot(p.Args[1])]] = i
		}
		for i, p := range parts {
			n := r.slots[command.Slot(p.Args[1])]
			if lastOf[n] == i {
				p.Offset = cmd.Offset
			}
			if err := r.send(ctx, n, p); err != nil {
				return err
			}
		}
		return nil
	case command.CoLocate:
		return r.coLocate(ctx, cmd, slices.Clone(rt.Keys), rt.Cmd)
	}
	return fmt.Errorf("cluster: route %s: unknown kind %s", clip(cmd.Args[0]), rt.Kind)
}

func (r *Router) send(ctx context.Context, n *node, cmd writer.Command) error {
	if err := n.w.Write(ctx, cmd); err != nil {
		return fmt.Errorf("cluster: node %s: %w", n.addr, err)
	}
	return nil
}

// toAllMasters sends a whole-dataset command to every master, once everything before it
// is applied (a redirected write must not land after a FLUSHALL that followed it) and
// the topology is fresh (a master that became a replica would refuse it).
func (r *Router) toAllMasters(ctx context.Context, cmd writer.Command) error {
	if err := r.flush(ctx); err != nil {
		return err
	}
	if err := r.refresh(ctx); err != nil {
		r.log.Warn("could not re-read the cluster topology before a whole-dataset command; using the known one",
			"cmd", clip(cmd.Args[0]), "err", err)
	}
	r.broadcast.Add(1)
	// A resend after a lost connection may apply it twice.
	cmd.Args = replayableArgs(cmd.Args)
	for _, n := range r.masters() {
		if err := r.send(ctx, n, cmd); err != nil {
			return err
		}
	}
	return nil
}

// masters returns the nodes that serve slots, in slot order.
func (r *Router) masters() []*node {
	var out []*node
	var last *node
	for _, n := range r.slots {
		if n != last && n != nil && !slices.Contains(out, n) {
			out = append(out, n)
		}
		last = n
	}
	return out
}

// Flush waits until everything written is applied: every writer has answered all it
// was given, and every redirected command has been applied where it belongs.
func (r *Router) Flush(ctx context.Context) error {
	r.producer.Lock()
	defer r.producer.Unlock()
	return r.flush(ctx)
}

// flush is Flush under the producer lock.
func (r *Router) flush(ctx context.Context) error {
	if err := r.Err(); err != nil {
		return err
	}
	if err := r.settle(ctx); err != nil {
		return err
	}
	if r.ck == nil {
		return nil
	}
	// Everything is applied: the floor can follow, and is applied before Flush returns.
	if sent, err := r.writeFloor(ctx); err != nil || !sent {
		return err
	}
	return r.settle(ctx)
}

// flushWriters waits until every writer has answered everything it was given.
func (r *Router) flushWriters(ctx context.Context) error {
	r.mu.Lock()
	nodes := slices.Collect(maps.Values(r.nodes))
	r.mu.Unlock()
	for _, n := range nodes {
		if err := n.w.Flush(ctx); err != nil {
			return fmt.Errorf("cluster: node %s: %w", n.addr, err)
		}
	}
	return nil
}

// Applied returns the highest source offset such that every command written with an
// offset up to it is applied, wherever it went: the lowest Applied of the writers that
// still have commands in flight, kept below the commands of a redirect episode.
func (r *Router) Applied() int64 {
	// Order matters: the writers are read before the floor, because a writer's Applied
	// moves past a redirected command only after the hook has recorded it.
	a := r.maxWritten.Load()
	r.mu.Lock()
	nodes := slices.Collect(maps.Values(r.nodes))
	r.mu.Unlock()
	for _, n := range nodes {
		if n.w.Stats().InFlight > 0 {
			a = min(a, n.w.Applied())
		}
	}
	r.redirMu.Lock()
	if r.episode {
		a = min(a, r.floor)
	}
	r.redirMu.Unlock()
	// a is a true lower bound, but a looser one than an earlier answer can be (the floor
	// of an episode is the redirecting node's position, older than what other nodes have
	// applied since). An earlier answer stays true: a command it covered was answered
	// then, and a redirected command is always newer than any answer given while it was
	// in flight. So the highest answer is kept, and Applied never goes back.
	for {
		prev := r.applied.Load()
		if a <= prev {
			return prev
		}
		if r.applied.CompareAndSwap(prev, a) {
			return a
		}
	}
}

// NodeApplied returns each node's writer's Applied, by address.
func (r *Router) NodeApplied() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.nodes))
	for addr, n := range r.nodes {
		out[addr] = n.w.Applied()
	}
	return out
}

// Stats returns a snapshot of the router's counters and its writers'.
func (r *Router) Stats() Stats {
	s := Stats{
		Commands:     r.commands.Load(),
		Split:        r.split.Load(),
		SplitParts:   r.splitParts.Load(),
		CoSkipped:    r.coSkipped.Load(),
		Broadcast:    r.broadcast.Load(),
		Transactions: r.txns.Load(),
		TxnSplit:     r.txnSplit.Load(),
		TxnUnwrapped: r.txnUnwrapped.Load(),
		Episodes:     r.episodes.Load(),
		Refreshes:    r.refreshes.Load(),
		Redirects:    map[string]int64{"moved": r.moved.Load(), "ask": r.ask.Load()},
		Nodes:        map[string]writer.Stats{},
	}
	if r.ck != nil {
		s.SlotSkipped, s.SlotTxns = r.ck.skipped.Load(), r.ck.txns.Load()
	}
	r.mu.Lock()
	s.CoLocated = maps.Clone(r.coLocated)
	nodes := slices.Collect(maps.Values(r.nodes))
	r.mu.Unlock()
	for _, n := range nodes {
		ws := n.w.Stats()
		s.Nodes[n.addr] = ws
		s.Redirects["tryagain"] += ws.Errors[writer.ReasonTryAgain]
		s.Redirects["clusterdown"] += ws.Errors[writer.ReasonClusterDown]
	}
	return s
}

// Close stops every writer (without waiting for replies) and closes the control
// connections. It returns the router's fatal error if it had failed.
func (r *Router) Close() error {
	if r.closed.Swap(true) {
		return r.Err()
	}
	if r.metrics != nil {
		r.opts.Registerer.Unregister(r.metrics)
	}
	r.mu.Lock()
	nodes := slices.Collect(maps.Values(r.nodes))
	r.mu.Unlock()
	for _, n := range nodes {
		_ = n.w.Close()
	}
	r.watchers.Wait()
	for addr := range r.ctls {
		r.dropControl(addr)
	}
	return r.Err()
}

// control returns the control connection to addr, dialing it if needed: a plain
// connection for the topology, COMMAND GETKEYS and co-location, which need replies.
func (r *Router) control(ctx context.Context, addr string) (*redis.Conn, error) {
	if c := r.ctls[addr]; c != nil {
		return c, nil
	}
	o := r.opts.Target
	o.Addr, o.DB = addr, 0
	c, err := redis.Dial(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("cluster: control connection to %s: %w", addr, err)
	}
	r.ctls[addr] = c
	return c, nil
}

func (r *Router) dropControl(addr string) {
	if c := r.ctls[addr]; c != nil {
		_ = c.Close()
		delete(r.ctls, addr)
	}
}

// getKeys runs COMMAND GETKEYS on a master's control connection, for the commands whose
// key positions only the server knows.
type getKeys struct{ r *Router }

func (g getKeys) Do(ctx context.Context, args ...any) (resp.Value, error) {
	addr := g.r.slots[0].addr
	c, err := g.r.control(ctx, addr)
	if err != nil {
		return resp.Value{}, err
	}
	v, err := c.Do(ctx, args...)
	if err != nil && !isReply(err) {
		g.r.dropControl(addr)
	}
	return v, err
}

func isReply(err error) bool {
	var e *resp.Error
	return errors.As(err, &e)
}

func cloneCommand(c writer.Command) writer.Command {
	n := 0
	for _, a := range c.Args {
		n += len(a)
	}
	buf := make([]byte, 0, n)
	args := make([][]byte, len(c.Args))
	for i, a := range c.Args {
		buf = append(buf, a...)
		args[i] = buf[len(buf)-len(a) : len(buf) : len(buf)]
	}
	c.Args = args
	return c
}

// equalFold compares a command name with an upper-case ASCII name, ignoring case.
func equalFold(b []byte, upper string) bool {
	if len(b) != len(upper) {
		return false
	}
	for i := range len(b) {
		if b[i]&^0x20 != upper[i] {
			return false
		}
	}
	return true
}

func clip(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
