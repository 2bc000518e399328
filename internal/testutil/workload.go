package testutil

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

const (
	// DefaultWorkloadKeys is WorkloadOptions.Keys when zero.
	DefaultWorkloadKeys = 1000
	// DefaultMaxValueSize is WorkloadOptions.MaxValueSize when zero, in bytes.
	DefaultMaxValueSize = 32
	// groupSize is how many keys of one type share a group; odd groups carry a hash tag
	// ("{g3}"), so multi-key commands in cluster mode pick their keys within one of them.
	groupSize = 8
	// minPerKind keeps at least one tagged group per type, whatever Keys says.
	minPerKind = 2 * groupSize
	// fillBatch is how many operations Fill pipelines per round trip.
	fillBatch = 1000
	// runTick is how often Run sends the operations that have become due.
	runTick = 10 * time.Millisecond
	// maxRunBatch caps one of Run's batches (when the rate is high or unlimited).
	maxRunBatch = 2000
	// workloadIOTimeout bounds every round trip of the workload's connections.
	workloadIOTimeout = 30 * time.Second
	// retryLimit bounds how long operations redirected by a cluster (MOVED, TRYAGAIN,
	// CLUSTERDOWN: none of them applied) are retried, e.g. across a failover.
	retryLimit = 30 * time.Second
	// maxExactProblems is how many problems VerifyExact names.
	maxExactProblems = 20
	// recentIDs is how many stream IDs per key the generator remembers for XDEL/XACK/XCLAIM.
	recentIDs = 16
)

// WorkloadOptions configures NewWorkload. The zero value is a usable small workload on DB 0.
type WorkloadOptions struct {
	// Seed makes the command sequence reproducible: the same seed and the same calls give the
	// same commands.
	Seed int64
	// DBs are the databases written; default [0]. A cluster has only DB 0.
	DBs []int
	// Keys is the key space per database (approximate: it is split evenly between the value
	// types, at least 16 keys each); default DefaultWorkloadKeys.
	Keys int
	// TTL makes some writes set expiry times, of 10 to 60 minutes so that nothing expires
	// during a test (EXPIRE, PEXPIRE, EXPIREAT, SETEX, SET EX, GETEX, PERSIST).
	TTL bool
	// Cluster restricts multi-key commands, transactions and scripts to keys sharing a hash tag,
	// as a cluster requires. Without it about half of them use keys in different slots.
	Cluster bool
	// Large grows some collections (and strings) past the small-encoding thresholds (listpack,
	// intset, embstr; several quicklist and stream nodes; dense HyperLogLogs), so that both
	// encodings of every type appear.
	Large bool
	// MaxValueSize bounds random values, in bytes; default DefaultMaxValueSize.
	MaxValueSize int
	// Prefix starts every key name, so that several workloads can share a deployment.
	Prefix string
	// Skip leaves out families of operations: "string", "list", "set", "zset", "hash",
	// "stream", "hll", "bitmap", "geo", "keyspace", "multikey", "multi", "script", "function",
	// "crossdb", "counter", "alog" (the last two are the exact-accounting keys).
	Skip []string
}

// DBKey names a key in a database.
type DBKey struct {
	DB  int
	Key string
}

// Workload generates a deterministic, seeded mix of writes on every Redis type, and keeps exact
// accounting of two key families whose final values it can predict: counters ("cnt:<n>",
// incremented by INCR and INCRBY, also inside MULTI, EVAL and FCALL) and append-only lists
// ("alog:<n>", RPUSH of unique increasing integers). VerifyExact checks a deployment against
// that accounting and names lost and duplicated writes.
//
// One Fill or Run at a time; use several workloads with different Prefix for concurrent load.
type Workload struct {
	// runMu makes Fill and Run take turns: they share the generator and its connections' state.
	runMu sync.Mutex
	// mu guards everything below; it is held only briefly, so that the accessors (Counters,
	// Redirected...) answer while a Run is going on.
	mu   sync.Mutex
	opts WorkloadOptions
	rng  *rand.Rand
	// epoch is the base of EXPIREAT times: fixed at creation, so the commands do not depend on
	// when they are generated.
	epoch    time.Time
	perKind  int
	families []family
	weights  int
	seq      int64 // the last unique value handed out (alog elements, stream IDs)

	streamGroups map[DBKey]bool     // streams the generator believes have consumer groups
	streamIDs    map[DBKey][]string // recent IDs added to each stream
	stats        map[string]int     // commands generated, by name
	refused      map[string]int     // allowed error replies, by op family and error code

	counters     map[DBKey]int64   // acknowledged counter values
	counterDoubt map[DBKey]int64   // increments whose outcome is unknown (connection lost)
	logs         map[DBKey][]int64 // acknowledged alog elements, in order
	logDoubt     map[DBKey][]int64 // alog elements whose outcome is unknown
	inDoubt      int               // operations whose outcome is unknown
	redirected   int               // operations sent again after MOVED, TRYAGAIN or CLUSTERDOWN
}

// kind is the value type a key name is reserved for, so that no command ever meets a key of
// the wrong type (WRONGTYPE would make the expected state unknowable).
type kind uint8

const (
	kStr kind = iota
	kInt
	kFlt
	kList
	kSet
	kISet
	kZSet
	kHash
	kStream
	kHLL
	kBits
	kGeo
	kCnt
	kAlog
	numKinds
)

// kindNames are the type parts of key names: "str:12", "{g1}hash:9".
var kindNames = [numKinds]string{"str", "int", "flt", "list", "set", "iset", "zset", "hash", "strm", "hll", "bits", "geo", "cnt", "alog"}

// plainKinds are the kinds that key-space operations (DEL, RENAME, EXPIRE, MOVE...) may touch:
// everything but the exact-accounting keys.
var plainKinds = []kind{kStr, kInt, kFlt, kList, kSet, kISet, kZSet, kHash, kStream, kHLL, kBits, kGeo}

// effect is an exact-accounting change made by an operation when it succeeds.
type effect struct {
	key  DBKey
	incr int64 // counter increment; zero for a push
	push int64 // alog element
}

// op is one unit of work sent to one master: a single command, or several that belong together
// (MULTI ... EXEC, RPUSH + LTRIM).
type op struct {
	family string
	db     int // database the op starts in
	endDB  int // database the connection is left in (SELECT inside MULTI changes it)
	route  string
	cmds   [][]string
	// allow lists the error replies (by prefix) that are a legitimate outcome, e.g. LSET on a
	// missing key: the op then simply did nothing.
	allow   []string
	effects []effect
	// movedTo is the address a cluster redirected the op to (MOVED): where it is retried.
	movedTo string
}

type family struct {
	name   string
	weight int
	gen    func(w *Workload, db int) *op
}

// NewWorkload returns a workload generator; nothing is sent until Fill or Run.
func NewWorkload(opts WorkloadOptions) *Workload {
	if len(opts.DBs) == 0 {
		opts.DBs = []int{0}
	}
	if opts.Keys <= 0 {
		opts.Keys = DefaultWorkloadKeys
	}
	if opts.MaxValueSize <= 0 {
		opts.MaxValueSize = DefaultMaxValueSize
	}
	w := &Workload{
		opts:         opts,
		rng:          rand.New(rand.NewPCG(uint64(opts.Seed), 0x6665727279)),
		epoch:        time.Now(),
		perKind:      max(opts.Keys/int(numKinds), minPerKind),
		streamGroups: make(map[DBKey]bool),
		streamIDs:    make(map[DBKey][]string),
		stats:        make(map[string]int),
		refused:      make(map[string]int),
		counters:     make(map[DBKey]int64),
		counterDoubt: make(map[DBKey]int64),
		logs:         make(map[DBKey][]int64),
		logDoubt:     make(map[DBKey][]int64),
	}
	for _, f := range allFamilies() {
		if slices.Contains(opts.Skip, f.name) {
			continue
		}
		if f.name == "crossdb" && (opts.Cluster || len(opts.DBs) < 2) {
			continue
		}
		w.families = append(w.families, f)
		w.weights += f.weight
	}
	return w
}

// Stats returns how many commands of each name the workload has generated so far.
func (w *Workload) Stats() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.stats))
	for k, v := range w.stats {
		out[k] = v
	}
	return out
}

// Refused returns how many operations were answered with an error they allow (and so did
// nothing), by family and error code, e.g. "stream NOGROUP".
func (w *Workload) Refused() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.refused))
	for k, v := range w.refused {
		out[k] = v
	}
	return out
}

// Counters returns the acknowledged value of every counter the workload has incremented.
func (w *Workload) Counters() map[DBKey]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[DBKey]int64, len(w.counters))
	for k, v := range w.counters {
		out[k] = v
	}
	return out
}

// Logs returns the acknowledged elements of every append-only list, in order.
func (w *Workload) Logs() map[DBKey][]int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[DBKey][]int64, len(w.logs))
	for k, v := range w.logs {
		out[k] = slices.Clone(v)
	}
	return out
}

// Redirected is the number of times an operation was sent again because a cluster answered
// MOVED, TRYAGAIN or CLUSTERDOWN (it had not been applied), e.g. across a failover.
func (w *Workload) Redirected() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.redirected
}

// InDoubt is the number of operations whose outcome is unknown: they were sent, and the
// connection broke before their reply arrived. VerifyExact accepts them applied or not.
func (w *Workload) InDoubt() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inDoubt
}

// Fill sends n operations to d, pipelined, and waits for all replies. An error reply that the
// operation did not allow for fails Fill (after the batch's other replies are read).
func (w *Workload) Fill(ctx context.Context, d Deployment, n int) error {
	w.runMu.Lock()
	defer w.runMu.Unlock()
	r, err := w.newRunner(ctx, d)
	if err != nil {
		return err
	}
	defer r.close()
	for done := 0; done < n; {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("workload fill: %d of %d operations sent: %w", done, n, err)
		}
		k := min(fillBatch, n-done)
		if err := r.exec(ctx, w.generate(k)); err != nil {
			return fmt.Errorf("workload fill: %w", err)
		}
		done += k
	}
	return nil
}

// Run sends operations to d at opsPerSec (as fast as it can when opsPerSec <= 0) until ctx is
// done, and returns how many it sent. The batch in flight when ctx ends is completed, so that
// every operation's outcome is known; ctx ending is not an error.
func (w *Workload) Run(ctx context.Context, d Deployment, opsPerSec int) (int, error) {
	w.runMu.Lock()
	defer w.runMu.Unlock()
	// The connections outlive ctx so that the last batch can finish.
	ioCtx := context.WithoutCancel(ctx)
	r, err := w.newRunner(ioCtx, d)
	if err != nil {
		return 0, err
	}
	defer r.close()
	start := time.Now()
	t := time.NewTicker(runTick)
	defer t.Stop()
	done := 0
	for {
		select {
		case <-ctx.Done():
			return done, nil
		case <-t.C:
		}
		due := maxRunBatch
		if opsPerSec > 0 {
			due = int(time.Since(start).Seconds()*float64(opsPerSec)) - done
			due = min(due, maxRunBatch)
		}
		if due <= 0 {
			continue
		}
		if err := r.exec(ioCtx, w.generate(due)); err != nil {
			return done, fmt.Errorf("workload run: %w", err)
		}
		done += due
	}
}

// generate produces the next n operations.
func (w *Workload) generate(n int) []*op {
	w.mu.Lock()
	defer w.mu.Unlock()
	ops := make([]*op, 0, n)
	for range n {
		db := w.opts.DBs[w.rng.IntN(len(w.opts.DBs))]
		x := w.rng.IntN(w.weights)
		for _, f := range w.families {
			if x < f.weight {
				o := f.gen(w, db)
				o.family = f.name
				if o.endDB == -1 {
					o.endDB = o.db
				}
				for _, c := range o.cmds {
					w.stats[statName(c)]++
				}
				ops = append(ops, o)
				break
			}
			x -= f.weight
		}
	}
	return ops
}

// statName is the command name, with the subcommand for container commands.
func statName(cmd []string) string {
	switch cmd[0] {
	case "XGROUP", "FUNCTION", "SCRIPT", "OBJECT":
		if len(cmd) > 1 {
			return cmd[0] + " " + cmd[1]
		}
	}
	return cmd[0]
}

// newOp starts an op in db routed by key.
func newOp(db int, route string, cmds ...[]string) *op {
	return &op{db: db, endDB: -1, route: route, cmds: cmds}
}

// ---- key names ----

// key names the j-th key of kind k. Keys of odd groups carry the group's hash tag.
func (w *Workload) key(k kind, j int) string {
	g := j / groupSize
	if g%2 == 1 {
		return w.opts.Prefix + "{g" + strconv.Itoa(g) + "}" + kindNames[k] + ":" + strconv.Itoa(j)
	}
	return w.opts.Prefix + kindNames[k] + ":" + strconv.Itoa(j)
}

// pick returns a random key index of any group.
func (w *Workload) pick() int { return w.rng.IntN(w.perKind) }

// pickSmall returns a random key index that is not a big key: big keys only ever grow (up to
// their bound), so that they are big whenever a test looks, and key-space and multi-key
// operations (which delete, overwrite and move keys) leave them alone.
func (w *Workload) pickSmall() int {
	for {
		if j := w.pick(); !w.isBig(j) {
			return j
		}
	}
}

// tagGroup returns a random tagged group.
func (w *Workload) tagGroup() int {
	n := w.perKind / groupSize // complete groups; perKind >= 2*groupSize so there is a tagged one
	g := 2*w.rng.IntN(n/2) + 1
	return g
}

// inGroup returns a random key index in group g.
func (w *Workload) inGroup(g int) int { return g*groupSize + w.rng.IntN(groupSize) }

// keyPicker returns a function choosing keys for one multi-key operation: all in one tagged
// group in cluster mode (and half the time otherwise), anywhere otherwise.
func (w *Workload) keyPicker() func(k kind) string {
	if w.opts.Cluster || w.rng.IntN(2) == 0 {
		g := w.tagGroup()
		return func(k kind) string {
			for {
				if j := w.inGroup(g); !w.isBig(j) {
					return w.key(k, j)
				}
			}
		}
	}
	return func(k kind) string { return w.key(k, w.pickSmall()) }
}

// isBig reports whether key index j is one of the keys grown past small encodings: two in 32,
// one of them in an untagged group and one in a tagged group.
func (w *Workload) isBig(j int) bool { return w.opts.Large && (j%32 == 4 || j%32 == 12) }

// ---- values ----

const alpha = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// value returns a random value in the spirit of Redis's own test suite: integers of every
// encoding width, printable, binary and compressible strings, sometimes empty.
func (w *Workload) value() string {
	max := w.opts.MaxValueSize
	switch w.rng.IntN(8) {
	case 0:
		return strconv.Itoa(w.rng.IntN(1000))
	case 1:
		return strconv.FormatInt(w.rng.Int64N(4_000_000_000)-2_000_000_000, 10)
	case 2:
		return strconv.FormatInt(w.rng.Int64N(2_000_000_000_000)-1_000_000_000_000, 10)
	case 3:
		b := make([]byte, w.rng.IntN(max+1))
		for i := range b {
			b[i] = byte(w.rng.IntN(256))
		}
		return string(b)
	case 4:
		return strings.Repeat(string(alpha[w.rng.IntN(len(alpha))]), w.rng.IntN(max+1))
	default:
		b := make([]byte, w.rng.IntN(max+1))
		for i := range b {
			b[i] = alpha[w.rng.IntN(len(alpha))]
		}
		return string(b)
	}
}

// bigValue is a compressible string of a few hundred to a few thousand bytes: not an embstr,
// and LZF-compressed in an RDB.
func (w *Workload) bigValue() string {
	unit := w.value() + "-"
	n := 200 + w.rng.IntN(1800)
	return strings.Repeat(unit, n/len(unit)+1)[:n]
}

// member returns one of universe members of a string collection.
func (w *Workload) member(universe int) string {
	n := w.rng.IntN(universe)
	if n%7 == 3 {
		// Some binary members, deterministic per n so that SREM can find them again.
		return "m\x00\r\n" + strconv.Itoa(n)
	}
	return "m" + strconv.Itoa(n)
}

// intMember returns one of universe integer members: sets of them are intsets, of 16, 32 and
// 64-bit widths.
func (w *Workload) intMember(universe int) string {
	n := int64(w.rng.IntN(universe))
	switch n % 5 {
	case 1:
		return strconv.FormatInt(-n*40_000, 10) // 32-bit
	case 2:
		return strconv.FormatInt(n*3_000_000_000, 10) // 64-bit
	}
	return strconv.FormatInt(n, 10)
}

// score returns a finite zset score, or sometimes an infinite one.
func (w *Workload) score() string {
	switch w.rng.IntN(10) {
	case 0:
		return "+inf"
	case 1:
		return "-inf"
	case 2:
		return strconv.Itoa(w.rng.IntN(100))
	}
	return strconv.FormatFloat(w.rng.NormFloat64()*1000, 'g', -1, 64)
}

// incrFloat returns an INCRBYFLOAT/ZINCRBY/HINCRBYFLOAT increment: finite, so no NaN.
func (w *Workload) incrFloat() string {
	return strconv.FormatFloat(float64(w.rng.IntN(2001)-1000)/8, 'g', -1, 64)
}

// ttlSeconds is an expiry of 10 to 60 minutes.
func (w *Workload) ttlSeconds() int { return 600 + w.rng.IntN(3000) }

// nextSeq hands out the next unique increasing integer.
func (w *Workload) nextSeq() int64 {
	w.seq++
	return w.seq
}

// ---- scripts ----

// evalScript has several effects, one of them on a counter and one on an append-only list.
const evalScript = `redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCRBY', KEYS[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[4])
if tonumber(ARGV[5]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
return redis.call('HLEN', KEYS[1])`

// evalSHA is the SHA1 EVALSHA names evalScript by.
func evalSHA() string {
	sum := sha1.Sum([]byte(evalScript))
	return hex.EncodeToString(sum[:])
}

// functionLibrary is loaded once per master; FCALL then applies several effects.
const (
	functionLibraryName = "ferrywl"
	functionLibrary     = `#!lua name=ferrywl
redis.register_function('ferrywl_bump', function(keys, args)
  redis.call('ZINCRBY', keys[1], args[1], args[2])
  redis.call('INCR', keys[2])
  return redis.call('RPUSH', keys[3], args[3])
end)
redis.register_function('ferrywl_tag', function(keys, args)
  redis.call('SADD', keys[1], args[1])
  return redis.call('HINCRBY', keys[2], 'c0', 1)
end)`
)

// ---- execution ----

// runner sends operations to the masters of a deployment over pipelined connections.
type runner struct {
	w     *Workload
	d     Deployment
	conns map[*Server]*wconn
}

type wconn struct {
	s       *Server
	c       *redis.Conn
	db      int
	pending []*op
	// broken is set when the connection failed; its unanswered operations are in doubt.
	broken error
}

func (w *Workload) newRunner(ctx context.Context, d Deployment) (*runner, error) {
	if _, ok := d.(*Cluster); ok && !w.opts.Cluster {
		return nil, errors.New("workload: the deployment is a cluster; set WorkloadOptions.Cluster so multi-key commands use hash tags")
	}
	for _, db := range w.opts.DBs {
		if !hasDB(d, db) {
			return nil, fmt.Errorf("workload: the deployment has no db %d (it has %v)", db, d.DBs())
		}
	}
	r := &runner{w: w, d: d, conns: make(map[*Server]*wconn)}
	if err := r.setup(ctx); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// setup loads the function library and the EVALSHA script on every master, once.
func (r *runner) setup(ctx context.Context) error {
	for _, m := range r.d.Masters() {
		c, err := r.conn(ctx, m)
		if err != nil {
			return err
		}
		if !slices.Contains(r.w.opts.Skip, "function") {
			v, err := c.c.Do(ctx, "FUNCTION", "LIST", "LIBRARYNAME", functionLibraryName)
			if err != nil {
				return fmt.Errorf("workload setup on %s: FUNCTION LIST: %w", m.Addr(), err)
			}
			if len(v.Elems) == 0 {
				if _, err := c.c.Do(ctx, "FUNCTION", "LOAD", functionLibrary); err != nil {
					return fmt.Errorf("workload setup on %s: FUNCTION LOAD: %w", m.Addr(), err)
				}
			}
		}
		if !slices.Contains(r.w.opts.Skip, "script") {
			if _, err := c.c.Do(ctx, "SCRIPT", "LOAD", evalScript); err != nil {
				return fmt.Errorf("workload setup on %s: SCRIPT LOAD: %w", m.Addr(), err)
			}
		}
	}
	return nil
}

func (r *runner) conn(ctx context.Context, s *Server) (*wconn, error) {
	if c := r.conns[s]; c != nil && c.broken == nil {
		return c, nil
	}
	c, err := redis.Dial(ctx, redis.Options{Addr: s.Addr(), IOTimeout: workloadIOTimeout})
	if err != nil {
		return nil, fmt.Errorf("workload: dial %s: %w", s.Addr(), err)
	}
	wc := &wconn{s: s, c: c}
	r.conns[s] = wc
	return wc, nil
}

func (r *runner) close() {
	for _, c := range r.conns {
		c.c.Close()
	}
}

// router returns a key → master function fixed for one batch, so that all operations on a key
// in the batch go to the same master even if a failover updates the cluster meanwhile
// (otherwise a redirected retry could land after a newer write to the same key).
func (r *runner) router() func(string) *Server {
	if c, ok := r.d.(*Cluster); ok {
		return c.snapshotRouter()
	}
	return r.d.MasterForKey
}

// exec sends ops and reads every reply. Operations redirected by the cluster are retried in
// their original order; a connection failure leaves the operations it did not answer in doubt
// and is returned; unexpected error replies are returned after the whole batch is read.
func (r *runner) exec(ctx context.Context, ops []*op) error {
	route := r.router()
	deadline := time.Now().Add(retryLimit)
	backoff := 10 * time.Millisecond
	for {
		retry, err := r.round(ctx, ops, func(o *op) *Server {
			// Follow a MOVED even before the harness's map knows about the change (a failover
			// the cluster did on its own). Ops on one key share a slot, hence a target: their
			// order is kept.
			if o.movedTo != "" {
				if s := r.serverAt(o.movedTo); s != nil {
					return s
				}
			}
			return route(o.route)
		})
		if err != nil || len(retry) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d operations still redirected after %v, first %s", len(retry), retryLimit, formatCmd(retry[0].cmds[0]))
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 200*time.Millisecond)
		ops = retry
		route = r.router()
	}
}

// serverAt finds the deployment's node listening on addr.
func (r *runner) serverAt(addr string) *Server {
	nodes := r.d.Masters()
	if c, ok := r.d.(*Cluster); ok {
		nodes = c.Nodes()
	}
	for _, s := range nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// round sends ops once and returns the ones to retry.
func (r *runner) round(ctx context.Context, ops []*op, route func(*op) *Server) ([]*op, error) {
	var used []*wconn
	var firstErr error
	for _, o := range ops {
		c, err := r.conn(ctx, route(o))
		if err != nil {
			firstErr = err
			break
		}
		if len(c.pending) == 0 {
			used = append(used, c)
		}
		if c.db != o.db {
			sel := newOp(o.db, "", []string{"SELECT", strconv.Itoa(o.db)})
			sel.endDB = o.db
			if err := c.send(sel); err != nil {
				firstErr = err
				break
			}
		}
		if err := c.send(o); err != nil {
			firstErr = err
			break
		}
		c.db = o.endDB
	}
	var retry []*op
	var unexpected []string
	for _, c := range used {
		if err := c.c.Flush(); err != nil && c.broken == nil {
			c.broken = fmt.Errorf("flush to %s: %w", c.s.Addr(), err)
		}
		for _, o := range c.pending {
			if c.broken != nil {
				r.w.record(o, outcomeInDoubt, "")
				continue
			}
			outcome, detail, err := c.receive(o)
			if err != nil {
				c.broken = fmt.Errorf("%s: %s: %w", c.s.Addr(), formatCmd(o.cmds[0]), err)
				outcome = outcomeInDoubt
			}
			switch outcome {
			case outcomeRetry, outcomeResend:
				retry = append(retry, o)
			case outcomeUnexpected:
				unexpected = append(unexpected, detail)
			}
			r.w.record(o, outcome, detail)
		}
		c.pending = c.pending[:0]
		if c.broken != nil && firstErr == nil {
			firstErr = c.broken
		}
	}
	if firstErr != nil {
		// Operations never sent: neither applied nor in doubt.
		return nil, firstErr
	}
	if len(unexpected) > 0 {
		return nil, fmt.Errorf("%d unexpected error replies, first: %s", len(unexpected), unexpected[0])
	}
	return retry, nil
}

func (c *wconn) send(o *op) error {
	// Pending before it is written: if the write fails part-way, the op is in doubt.
	c.pending = append(c.pending, o)
	for _, cmd := range o.cmds {
		args := make([]any, len(cmd))
		for i, a := range cmd {
			args[i] = a
		}
		if err := c.c.Send(args...); err != nil {
			c.broken = fmt.Errorf("send to %s: %w", c.s.Addr(), err)
			return c.broken
		}
	}
	return nil
}

type outcome int

const (
	outcomeApplied    outcome = iota // done (or, for an allowed error, legitimately did nothing)
	outcomeRetry                     // redirected by the cluster: not applied, send again
	outcomeUnexpected                // an error reply the op does not allow
	outcomeRefused                   // an error reply the op allows: it did nothing
	outcomeInDoubt                   // no reply: the connection broke
	outcomeResend                    // not applied, and rewritten to be sent again (EVALSHA → EVAL)
)

// record accounts for the outcome of an op.
func (w *Workload) record(o *op, outcome outcome, detail string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch outcome {
	case outcomeApplied:
		w.apply(o)
	case outcomeInDoubt:
		w.doubt(o)
	case outcomeRetry:
		w.redirected++
	case outcomeRefused:
		w.refused[o.family+" "+detail]++
	}
}

// receive reads the replies of o's commands and classifies the outcome. An allowed error
// reply means the op did nothing (its effects are not counted).
func (c *wconn) receive(o *op) (outcome, string, error) {
	var replyErrs []*resp.Error
	for _, cmd := range o.cmds {
		v, err := c.c.Receive()
		var re *resp.Error
		switch {
		case errors.As(err, &re):
			replyErrs = append(replyErrs, re)
		case err != nil:
			return 0, "", err
		case v.Err() != nil:
			errors.As(v.Err(), &re)
			replyErrs = append(replyErrs, re)
		case cmd[0] == "EXEC":
			if v.Null {
				replyErrs = append(replyErrs, &resp.Error{Msg: "EXECABORT transaction discarded (null EXEC)"})
			}
			for _, e := range v.Elems {
				if e.Err() != nil {
					errors.As(e.Err(), &re)
					replyErrs = append(replyErrs, re)
				}
			}
		}
	}
	if len(replyErrs) == 0 {
		return outcomeApplied, "", nil
	}
	if len(replyErrs) == 1 && replyErrs[0].IsNoScript() && o.cmds[0][0] == "EVALSHA" {
		// The script cache is not replicated: a promoted replica, or a restarted server, does
		// not have it. Do what clients do: send the script itself.
		o.cmds[0][0], o.cmds[0][1] = "EVAL", evalScript
		return outcomeResend, "", nil
	}
	for _, re := range replyErrs {
		_, addr, moved := re.IsMoved()
		if moved || re.IsTryAgain() || re.IsClusterDown() {
			// Nothing of the op ran (a transaction is aborted as a whole): send it again.
			o.movedTo = addr
			return outcomeRetry, "", nil
		}
	}
	for _, re := range replyErrs {
		allowed := false
		for _, a := range o.allow {
			if strings.HasPrefix(re.Msg, a) {
				allowed = true
			}
		}
		if !allowed {
			return outcomeUnexpected, fmt.Sprintf("%s on %s db %d: %s -> %s", o.family, c.s.Addr(), o.db, formatCmd(o.cmds[0]), re.Msg), nil
		}
	}
	// Allowed errors: the op did nothing. Its effects, if any, were not applied.
	o.effects = nil
	return outcomeRefused, replyErrs[0].Prefix(), nil
}

// apply records the effects of an acknowledged op.
func (w *Workload) apply(o *op) {
	for _, e := range o.effects {
		if e.incr != 0 {
			w.counters[e.key] += e.incr
		} else {
			w.logs[e.key] = append(w.logs[e.key], e.push)
		}
	}
}

// doubt records the effects of an op whose reply never came.
func (w *Workload) doubt(o *op) {
	if len(o.effects) == 0 {
		return
	}
	w.inDoubt++
	for _, e := range o.effects {
		if e.incr != 0 {
			w.counterDoubt[e.key] += e.incr
		} else {
			w.logDoubt[e.key] = append(w.logDoubt[e.key], e.push)
		}
	}
}

// formatCmd renders a generated command for messages.
func formatCmd(cmd []string) string {
	args := make([]any, len(cmd))
	for i, a := range cmd {
		args[i] = a
	}
	return formatArgs(args)
}

// ---- exact verification ----

// VerifyExact checks that d holds exactly the acknowledged counter values and append-only lists
// (operations in doubt may or may not have been applied, once). It names every lost write
// (a counter too low, an acknowledged element missing) and duplicated write (a counter too
// high, an element twice), up to 20 of them. Call it once the writes have stopped (Run has
// returned) and d has caught up.
func (w *Workload) VerifyExact(ctx context.Context, d Deployment) error {
	ctx, cancel := withDefaultTimeout(ctx, compareTimeout)
	defer cancel()

	// A snapshot: the accounting is compared after the I/O, without holding the lock during it.
	w.mu.Lock()
	counters, counterDoubt := maps.Clone(w.counters), maps.Clone(w.counterDoubt)
	logs, logDoubt := cloneLogs(w.logs), cloneLogs(w.logDoubt)
	w.mu.Unlock()
	counterKeys := unionKeys(counters, counterDoubt)
	logKeys := unionKeys(logs, logDoubt)
	cs := newConnSet()
	defer cs.close()
	gets, err := fetchAll(ctx, cs, d, counterKeys, "GET")
	if err != nil {
		return fmt.Errorf("verify exact: %w", err)
	}
	lists, err := fetchAll(ctx, cs, d, logKeys, "LRANGE")
	if err != nil {
		return fmt.Errorf("verify exact: %w", err)
	}

	var problems []string
	for i, k := range counterKeys {
		want, doubt := counters[k], counterDoubt[k]
		v := gets[i]
		var got int64
		if !v.Null {
			if got, err = strconv.ParseInt(string(v.Str), 10, 64); err != nil {
				problems = append(problems, fmt.Sprintf("db %d %q: not a counter: %q", k.DB, k.Key, v.Str))
				continue
			}
		}
		switch {
		case got < want:
			problems = append(problems, fmt.Sprintf("db %d %q = %d, want %d: %d acknowledged increments lost", k.DB, k.Key, got, want, want-got))
		case got > want+doubt:
			problems = append(problems, fmt.Sprintf("db %d %q = %d, want %d (+%d in doubt): %d increments duplicated", k.DB, k.Key, got, want, doubt, got-want-doubt))
		}
	}
	for i, k := range logKeys {
		problems = append(problems, checkLog(k, lists[i], logs[k], logDoubt[k])...)
	}
	if len(problems) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "verify exact: %d problems", len(problems))
	for i, p := range problems {
		if i == maxExactProblems {
			fmt.Fprintf(&b, "\n  ... and %d more", len(problems)-maxExactProblems)
			break
		}
		b.WriteString("\n  ")
		b.WriteString(p)
	}
	return errors.New(b.String())
}

// checkLog compares an append-only list with its acknowledged and in-doubt elements.
func checkLog(k DBKey, v resp.Value, acked, doubt []int64) []string {
	var problems []string
	where := fmt.Sprintf("db %d %q", k.DB, k.Key)
	got := make([]int64, 0, len(v.Elems))
	for _, e := range v.Elems {
		n, err := strconv.ParseInt(string(e.Str), 10, 64)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: element %q is not one the workload wrote", where, e.Str))
			continue
		}
		got = append(got, n)
	}
	// Acknowledged elements must appear in the order they were acknowledged, which is the
	// order the source applied them: usually increasing, but an RPUSH refused for a moment
	// (CLUSTERDOWN during a failover) and retried lands after later pushes that went through.
	ackPos := make(map[int64]int, len(acked))
	for i, n := range acked {
		ackPos[n] = i
	}
	count := make(map[int64]int, len(got))
	lastPos, lastN := -1, int64(0)
	for _, n := range got {
		count[n]++
		if count[n] == 2 {
			problems = append(problems, fmt.Sprintf("%s: element %d appears more than once: duplicated write", where, n))
			continue
		}
		if p, ok := ackPos[n]; ok {
			if p < lastPos {
				problems = append(problems, fmt.Sprintf("%s: element %d after %d, acknowledged in the other order: writes reordered", where, n, lastN))
			}
			lastPos, lastN = p, n
		}
	}
	var lost []int64
	for _, n := range acked {
		if count[n] == 0 {
			lost = append(lost, n)
		}
	}
	if len(lost) > 0 {
		problems = append(problems, fmt.Sprintf("%s: %d acknowledged elements lost (of %d), first %v", where, len(lost), len(acked), lost[:min(5, len(lost))]))
	}
	known := make(map[int64]bool, len(acked)+len(doubt))
	for _, n := range acked {
		known[n] = true
	}
	for _, n := range doubt {
		known[n] = true
	}
	for _, n := range got {
		if !known[n] {
			problems = append(problems, fmt.Sprintf("%s: element %d was never written to this key", where, n))
		}
	}
	return problems
}

func cloneLogs(m map[DBKey][]int64) map[DBKey][]int64 {
	out := make(map[DBKey][]int64, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

func unionKeys[V any](a, b map[DBKey]V) []DBKey {
	keys := make([]DBKey, 0, len(a)+len(b))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(x, y DBKey) int {
		if x.DB != y.DB {
			return x.DB - y.DB
		}
		return strings.Compare(x.Key, y.Key)
	})
	return keys
}

// fetchAll reads every key with GET or LRANGE 0 -1, pipelined per master and database.
func fetchAll(ctx context.Context, cs *connSet, d Deployment, keys []DBKey, cmd string) ([]resp.Value, error) {
	out := make([]resp.Value, len(keys))
	type group struct {
		s   *Server
		db  int
		idx []int
	}
	groups := make(map[[2]any]*group)
	var order []*group
	for i, k := range keys {
		s := d.MasterForKey(k.Key)
		id := [2]any{s, k.DB}
		g := groups[id]
		if g == nil {
			g = &group{s: s, db: k.DB}
			groups[id] = g
			order = append(order, g)
		}
		g.idx = append(g.idx, i)
	}
	for _, g := range order {
		dc, err := cs.get(ctx, g.s, g.db)
		if err != nil {
			return nil, err
		}
		for start := 0; start < len(g.idx); start += DefaultCompareBatch {
			part := g.idx[start:min(start+DefaultCompareBatch, len(g.idx))]
			for _, i := range part {
				var err error
				if cmd == "GET" {
					err = dc.c.Send("GET", keys[i].Key)
				} else {
					err = dc.c.Send("LRANGE", keys[i].Key, "0", "-1")
				}
				if err != nil {
					return nil, fmt.Errorf("%s: %w", g.s.Addr(), err)
				}
			}
			if err := dc.c.Flush(); err != nil {
				return nil, fmt.Errorf("%s: %w", g.s.Addr(), err)
			}
			for _, i := range part {
				v, err := dc.c.Receive()
				if err != nil {
					return nil, fmt.Errorf("%s: %s %q in db %d: %w", g.s.Addr(), cmd, keys[i].Key, g.db, err)
				}
				out[i] = v
			}
		}
	}
	return out, nil
}
