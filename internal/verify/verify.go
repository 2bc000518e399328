package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/redis"
)

// Defaults of Options.
const (
	DefaultTTLTolerance = 2 * time.Second
	DefaultRounds       = 3
	DefaultInterval     = time.Second
	DefaultParallel     = 4
	DefaultBatchSize    = 256
	// DefaultMaxDiffs caps the differences kept between rounds; beyond it they are counted
	// but neither listed nor re-checked, so a destination that is empty by mistake cannot
	// make verify hold every key name in memory.
	DefaultMaxDiffs = 1_000_000
	// DefaultSample is the sample size of ModeSample when Options.Sample is not set.
	DefaultSample = 10_000
)

// Mode is how deep keys are compared.
type Mode int

// The modes, each including the one before.
const (
	ModeOutline Mode = iota + 1 // key sets, types, TTL presence (and TTLs within the tolerance)
	ModeLength                  // plus collection lengths (STRLEN, HLEN, …)
	ModeValue                   // plus full values
)

// ParseMode parses --mode: outline, length, value, or sample (value mode on a random
// sample; it returns sample=true).
func ParseMode(s string) (m Mode, sample bool, err error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "outline":
		return ModeOutline, false, nil
	case "length":
		return ModeLength, false, nil
	case "value", "":
		return ModeValue, false, nil
	case "sample":
		return ModeValue, true, nil
	}
	return 0, false, fmt.Errorf("--mode %q: want outline, length, value or sample", s)
}

func (m Mode) String() string {
	switch m {
	case ModeOutline:
		return "outline"
	case ModeLength:
		return "length"
	case ModeValue:
		return "value"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Progress receives progress reports; its methods are called from several goroutines.
type Progress interface {
	// Round says a round starts: its number, what it does, and about how many keys it will
	// compare (0 when unknown).
	Round(n int, what string, total int64)
	// Add says n more keys were compared.
	Add(n int)
	// Done says the round ended.
	Done()
}

// Options configure Run.
type Options struct {
	Source, Target redis.Options
	Selection      Selection
	// Mode is how deep to compare; default ModeValue.
	Mode Mode
	// Sample, when positive, compares about this many random keys in each direction
	// (RANDOMKEY, spread over dbs and masters by size) instead of every key, and the result
	// estimates the differences in the whole dataset.
	Sample int
	// TTLTolerance is how far apart two TTLs may be; default DefaultTTLTolerance. Keys that
	// expire within it on the only side holding them are not differences.
	TTLTolerance time.Duration
	// Rounds is the number of comparison rounds, the first included; default DefaultRounds.
	Rounds int
	// Interval is the pause between rounds; default DefaultInterval.
	Interval time.Duration
	// Fence makes rounds exact during a live sync; see FenceOptions.
	Fence FenceOptions
	// MaxOps limits the commands per second sent to each side; 0 means no limit.
	MaxOps int
	// Parallel is the number of workers (each with its own connections); default
	// DefaultParallel. Work is split by db, master and direction.
	Parallel int
	// BatchSize is the number of keys compared per pipelined round trip; default
	// DefaultBatchSize.
	BatchSize int
	// NoDigest forbids DEBUG DIGEST-VALUE even where it works.
	NoDigest bool
	// MaxDiffs caps the differences kept; default DefaultMaxDiffs.
	MaxDiffs int
	// Repair rewrites differing keys on the destination from the source; RepairExtra also
	// deletes keys the source does not have.
	Repair, RepairExtra bool
	// Audit receives one JSON line per repair action; nil: none.
	Audit io.Writer
	// Progress, when set, receives progress reports.
	Progress Progress
	// Logger receives the run's log; default slog.Default().
	Logger *slog.Logger
}

// RoundStats describe one round.
type RoundStats struct {
	N      int           `json:"round"`
	Kind   string        `json:"kind"`              // "full", "sample", "recheck", "confirm"
	Keys   int64         `json:"keys"`              // keys compared from the source side (or re-checked)
	Extra  int64         `json:"extra_checked"`     // destination keys looked up on the source
	Diffs  int           `json:"diffs"`             // differences found
	Fence  *FenceResult  `json:"fence,omitempty"`   // when fenced
	Elapse time.Duration `json:"elapsed"`           // how long it took
	Uncomp int64         `json:"uncompared"`        // keys whose values could not be compared (module types without DEBUG)
	Skip   int64         `json:"skipped,omitempty"` // keys not re-checked because MaxDiffs was reached
	// Whole, Digest and Elements count the values compared read whole, by DEBUG
	// DIGEST-VALUE, and element by element in windows (big values, and those whose digests
	// or lengths differ).
	Whole    int64 `json:"values_whole"`
	Digest   int64 `json:"values_digest"`
	Elements int64 `json:"values_elements"`
	// InFlight counts the differences whose source changed during the round (re-checks).
	InFlight int `json:"in_flight,omitempty"`
}

// Result is the outcome of Run.
type Result struct {
	Mode      Mode
	Sampled   bool
	SourceDBs []int
	Rounds    []RoundStats
	// Found are the differences as the comparison rounds left them (before any repair),
	// sorted by db and key; with Repair each says what was done and whether it held.
	Found []Diff
	// Remaining are the differences after the last round (the confirm round when
	// repairing): what the exit code depends on.
	Remaining []Diff
	// Overflow counts differences beyond MaxDiffs, not listed.
	Overflow int64
	// Repairs counts repair actions by outcome.
	Repairs RepairStats
	// SampleEstimate, in sample mode, extrapolates the differences to the whole dataset.
	SampleEstimate *Estimate
}

// Estimate extrapolates a sample.
type Estimate struct {
	SourceKeys, TargetKeys       int64 // keys in the selected dbs
	SourceSampled, TargetSampled int64
	SourceDiffs, TargetExtra     int64 // differences among the samples
}

// Differing estimates the differing keys in the whole dataset.
func (e Estimate) Differing() int64 {
	var n float64
	if e.SourceSampled > 0 {
		n += float64(e.SourceDiffs) / float64(e.SourceSampled) * float64(e.SourceKeys)
	}
	if e.TargetSampled > 0 {
		n += float64(e.TargetExtra) / float64(e.TargetSampled) * float64(e.TargetKeys)
	}
	return int64(math.Round(n))
}

// Counts returns the remaining differences per class.
func (r *Result) Counts() map[Class]int {
	m := make(map[Class]int, len(Classes))
	for _, d := range r.Remaining {
		m[d.Class]++
	}
	return m
}

// Clean reports whether no difference remains.
func (r *Result) Clean() bool { return len(r.Remaining) == 0 && r.Overflow == 0 }

// verifier is one run.
type verifier struct {
	opts     Options
	log      *slog.Logger
	src, dst *endpoint
	dbs      []int // selected source dbs
	fence    *fence

	workers []*worker

	mu       sync.Mutex
	diffs    map[diffID]Diff
	overflow int64
	round    int

	keys, extra, uncompared atomic.Int64
	// how values were compared this round
	byWhole, byDigest, byElements atomic.Int64
	// sample mode: keys in the selected dbs, and keys drawn
	est                    Estimate
	sampledSrc, sampledDst atomic.Int64
	tmpSeq                 atomic.Int64 // names repair's temporary keys
	// values above these are repaired with commands rather than DUMP/RESTORE
	dumpMaxElems, dumpMaxBytes int64
}

// ErrConfig marks errors in what was asked (a db a cluster does not have, two dbs into
// one) rather than in the run; the CLI reports them as usage errors.
var ErrConfig = errors.New("verify: invalid configuration")

// Run compares, re-checks, repairs when asked, and returns the result. An error means the
// comparison could not be completed; differences are in the Result, not an error.
func Run(ctx context.Context, opts Options) (*Result, error) {
	v, err := open(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer v.closeWorkers()
	return v.run(ctx)
}

// open connects to both sides and resolves the selection.
func open(ctx context.Context, opts Options) (*verifier, error) {
	opts = withDefaults(opts)
	v := &verifier{opts: opts, log: opts.Logger, dumpMaxElems: repairDumpMaxElems, dumpMaxBytes: repairDumpMaxBytes}
	var err error
	if v.src, err = openEndpoint(ctx, "source", opts.Source, opts.MaxOps, opts.NoDigest, v.log); err != nil {
		return nil, err
	}
	if v.dst, err = openEndpoint(ctx, "destination", opts.Target, opts.MaxOps, opts.NoDigest, v.log); err != nil {
		return nil, err
	}
	if err := v.resolveDBs(ctx); err != nil {
		return nil, err
	}
	if opts.Fence.Enabled() {
		v.fence = newFence(opts.Fence, v.src, v.log)
	}
	return v, nil
}

func (v *verifier) run(ctx context.Context) (*Result, error) {
	opts := v.opts
	res := &Result{Mode: opts.Mode, Sampled: opts.Sample > 0, SourceDBs: v.dbs}
	v.log.Info("verify started", "source", opts.Source, "destination", opts.Target, "dbs", v.dbs,
		"mode", opts.Mode, "sample", opts.Sample, "rounds", opts.Rounds, "source_cluster", v.src.cluster,
		"destination_cluster", v.dst.cluster, "digest", v.src.digest && v.dst.digest)

	// Round 1 over everything; later rounds over what still differs.
	kind := "full"
	if opts.Sample > 0 {
		kind = "sample"
	}
	st, err := v.runRound(ctx, 1, kind, nil)
	if err != nil {
		return nil, err
	}
	res.Rounds = append(res.Rounds, st)
	if opts.Sample > 0 {
		e := v.est
		e.SourceSampled, e.TargetSampled = v.sampledSrc.Load(), v.sampledDst.Load()
		for _, d := range v.diffs {
			if d.Class == ClassExtra {
				e.TargetExtra++
			} else {
				e.SourceDiffs++
			}
		}
		res.SampleEstimate = &e
	}
	for n := 2; n <= opts.Rounds && len(v.diffs) > 0; n++ {
		if err := sleep(ctx, opts.Interval); err != nil {
			return nil, err
		}
		st, err := v.runRound(ctx, n, "recheck", v.diffs)
		if err != nil {
			return nil, err
		}
		res.Rounds = append(res.Rounds, st)
	}
	res.Found = v.sorted()
	res.Overflow = v.overflow
	res.Remaining = res.Found
	if !opts.Repair || len(res.Found) == 0 {
		return res, nil
	}

	actions, stats, err := v.repair(ctx, res.Found)
	res.Repairs = stats
	if err != nil {
		return res, err
	}
	// Confirm: one more round over the repaired keys.
	prev := make(map[diffID]Diff, len(res.Found))
	for _, d := range res.Found {
		prev[d.id()] = d
	}
	st, err = v.runRound(ctx, len(res.Rounds)+1, "confirm", prev)
	if err != nil {
		return res, err
	}
	res.Rounds = append(res.Rounds, st)
	res.Remaining = v.sorted()
	res.Found = slices.Clone(res.Found)
	for i := range res.Found {
		d := &res.Found[i]
		d.Repair = actions[d.id()]
		_, still := v.diffs[d.id()]
		fixed := !still
		d.Repaired = &fixed
	}
	return res, nil
}

func withDefaults(o Options) Options {
	if o.Mode == 0 {
		o.Mode = ModeValue
	}
	if o.TTLTolerance <= 0 {
		o.TTLTolerance = DefaultTTLTolerance
	}
	if o.Rounds <= 0 {
		o.Rounds = DefaultRounds
	}
	if o.Interval < 0 {
		o.Interval = 0
	}
	if o.Parallel <= 0 {
		o.Parallel = DefaultParallel
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.MaxDiffs <= 0 {
		o.MaxDiffs = DefaultMaxDiffs
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// resolveDBs decides the source dbs and checks that both sides have them.
func (v *verifier) resolveDBs(ctx context.Context) error {
	sel := v.opts.Selection
	var discovered []int
	if !sel.Explicit() {
		srcDBs, err := keyspaceDBs(ctx, v.src)
		if err != nil {
			return err
		}
		dstDBs, err := keyspaceDBs(ctx, v.dst)
		if err != nil {
			return err
		}
		discovered = srcDBs
		for _, d := range dstDBs {
			// A destination db maps back to the source db that targets it; with no
			// mapping that is the same number.
			src := d
			for s, t := range sel.Map {
				if t == d {
					src = s
				}
			}
			discovered = append(discovered, src)
		}
		if len(discovered) == 0 {
			discovered = []int{0}
		}
	}
	dbs, err := sel.Resolve(discovered)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	for _, db := range dbs {
		if v.src.cluster && db != 0 {
			return fmt.Errorf("%w: source db %d: the source is a cluster, which has only db 0", ErrConfig, db)
		}
		if t := sel.Target(db); v.dst.cluster && t != 0 {
			return fmt.Errorf("%w: source db %d goes to destination db %d, but the destination is a cluster, which has only db 0 (map it with --db-map %d:0)", ErrConfig, db, t, db)
		}
	}
	v.dbs = dbs
	return nil
}

// keyspaceDBs lists the dbs holding keys on any master (INFO keyspace: "db3:keys=…").
func keyspaceDBs(ctx context.Context, ep *endpoint) ([]int, error) {
	s := newSession(ep)
	defer s.close()
	var out []int
	for _, m := range ep.masters() {
		v, err := s.do(ctx, m, 0, "INFO", "keyspace")
		if err != nil {
			return nil, err
		}
		for k := range redis.ParseInfo(v.Text()) {
			if n, ok := strings.CutPrefix(k, "db"); ok {
				if db, err := strconv.Atoi(n); err == nil {
					out = append(out, db)
				}
			}
		}
	}
	return out, nil
}

// job is one unit of work, run by one worker.
type job func(ctx context.Context, w *worker) error

// parallel runs jobs on up to opts.Parallel workers; the first error cancels the rest.
func (v *verifier) parallel(ctx context.Context, jobs []job) error {
	if len(jobs) == 0 {
		return nil
	}
	n := min(v.opts.Parallel, len(jobs))
	for len(v.workers) < n {
		v.workers = append(v.workers, v.newWorker())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan job)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for _, w := range v.workers[:n] {
		wg.Go(func() {
			for j := range ch {
				if err := j(ctx, w); err != nil {
					errOnce.Do(func() { firstErr = err })
					cancel()
				}
			}
		})
	}
feed:
	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// work is one batch of keys to compare: source keys, or destination keys to look up on the
// source (reverse).
type work struct {
	sdb     int
	keys    []string
	reverse bool
}

// scanner holds a producer's own connections (SCAN and RANDOMKEY run on them, apart from
// the comparing workers').
type scanner struct{ src, dst *session }

// producer generates batches of keys and hands them to emit.
type producer func(ctx context.Context, sc *scanner, emit func(work) error) error

// pipeline runs producers (up to opts.Parallel at once) that feed batches, through a
// bounded queue, to opts.Parallel comparing workers. The first error cancels everything.
func (v *verifier) pipeline(ctx context.Context, producers []producer) error {
	if len(producers) == 0 {
		return nil
	}
	n := v.opts.Parallel
	for len(v.workers) < n {
		v.workers = append(v.workers, v.newWorker())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		cancel()
	}
	// Two batches per worker in the queue: enough to keep workers busy while a producer
	// waits on SCAN, little enough to bound memory.
	queue := make(chan work, 2*n)
	emit := func(w work) error {
		select {
		case queue <- w:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var workers sync.WaitGroup
	for _, w := range v.workers[:n] {
		workers.Go(func() {
			for b := range queue {
				if ctx.Err() != nil {
					continue // drain, so no producer stays blocked
				}
				var err error
				if b.reverse {
					err = v.checkExtra(ctx, w, b.sdb, b.keys)
				} else {
					err = v.compare(ctx, w, b.sdb, b.keys)
				}
				if err != nil {
					fail(err)
				}
			}
		})
	}
	feed := make(chan producer)
	var prods sync.WaitGroup
	for range min(n, len(producers)) {
		prods.Go(func() {
			sc := &scanner{src: newSession(v.src), dst: newSession(v.dst)}
			defer sc.src.close()
			defer sc.dst.close()
			for p := range feed {
				if ctx.Err() != nil {
					continue
				}
				if err := p(ctx, sc, emit); err != nil {
					fail(err)
				}
			}
		})
	}
loop:
	for _, p := range producers {
		select {
		case feed <- p:
		case <-ctx.Done():
			break loop
		}
	}
	close(feed)
	prods.Wait()
	close(queue)
	workers.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func (v *verifier) closeWorkers() {
	for _, w := range v.workers {
		w.close()
	}
	v.workers = nil
}

// runRound runs one round: over everything when prev is nil, else over prev's keys.
func (v *verifier) runRound(ctx context.Context, n int, kind string, prev map[diffID]Diff) (RoundStats, error) {
	start := time.Now()
	st := RoundStats{N: n, Kind: kind}
	// A re-check first notes the source's state of each key, then passes the fence, then
	// compares, then looks at the source again for the keys that differ: a key whose source
	// did not change over the round and that differs after the fence is a confirmed
	// difference; one whose source changed may be in flight (Diff.InFlight).
	var before map[diffID]string
	if prev != nil {
		var err error
		if before, err = v.fingerprints(ctx, prev); err != nil {
			return st, err
		}
	}
	if v.fence != nil {
		fr, err := v.fence.wait(ctx)
		if err != nil {
			return st, err
		}
		st.Fence = &fr
	}
	v.mu.Lock()
	v.diffs = make(map[diffID]Diff)
	v.overflow = 0
	v.round = n
	v.mu.Unlock()
	v.keys.Store(0)
	v.extra.Store(0)
	v.uncompared.Store(0)
	v.byWhole.Store(0)
	v.byDigest.Store(0)
	v.byElements.Store(0)

	var (
		jobs      []job
		producers []producer
		total     int64
		err       error
	)
	switch {
	case prev != nil:
		jobs = v.recheckJobs(prev, before)
		total = int64(len(prev))
	case v.opts.Sample > 0:
		producers, total, err = v.sampleProducers(ctx)
	default:
		producers, total, err = v.scanProducers(ctx)
	}
	if err != nil {
		return st, err
	}
	if v.opts.Progress != nil {
		v.opts.Progress.Round(n, kind, total)
	}
	if prev != nil {
		err = v.parallel(ctx, jobs)
	} else {
		err = v.pipeline(ctx, producers)
	}
	if v.opts.Progress != nil {
		v.opts.Progress.Done()
	}
	if err != nil {
		return st, err
	}
	st.Keys, st.Extra, st.Uncomp = v.keys.Load(), v.extra.Load(), v.uncompared.Load()
	st.Whole, st.Digest, st.Elements = v.byWhole.Load(), v.byDigest.Load(), v.byElements.Load()
	st.Diffs = len(v.diffs)
	for _, d := range v.diffs {
		if d.InFlight {
			st.InFlight++
		}
	}
	st.Skip = v.overflow
	st.Elapse = time.Since(start)
	v.log.Info("verify round done", "round", n, "kind", kind, "keys", st.Keys, "extra_checked", st.Extra,
		"diffs", st.Diffs, "elapsed", st.Elapse.Round(time.Millisecond))
	return st, nil
}

// record keeps the differences of one batch.
func (v *verifier) record(sdb, ddb int, vs []verdict) {
	if len(vs) == 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, x := range vs {
		id := diffID{sdb, x.key}
		if _, dup := v.diffs[id]; !dup && len(v.diffs) >= v.opts.MaxDiffs {
			v.overflow++
			continue
		}
		v.diffs[id] = Diff{
			DB: sdb, TargetDB: ddb, Key: x.key, TargetKey: v.targetKey(sdb, x.key), Class: x.class, Detail: x.detail,
			SourceType: x.src.typ, TargetType: x.dst.typ, SourcePTTL: x.src.pttl, TargetPTTL: x.dst.pttl,
			Round: v.round, InFlight: x.changing,
		}
	}
}

// targetKey is Diff.TargetKey: the destination's name of a source key, when it differs.
func (v *verifier) targetKey(sdb int, key string) string {
	if dk := v.opts.Selection.DestKey(sdb, key); dk != key {
		return dk
	}
	return ""
}

func (v *verifier) sorted() []Diff {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]Diff, 0, len(v.diffs))
	for _, d := range v.diffs {
		out = append(out, d)
	}
	sortDiffs(out)
	return out
}

func (v *verifier) progress(n int) {
	if v.opts.Progress != nil && n > 0 {
		v.opts.Progress.Add(n)
	}
}

// compare compares a batch of source-side keys and records what differs.
func (v *verifier) compare(ctx context.Context, w *worker, sdb int, keys []string) error {
	ddb := v.opts.Selection.Target(sdb)
	vs, err := w.compareKeys(ctx, sdb, ddb, keys)
	if err != nil {
		return err
	}
	v.record(sdb, ddb, vs)
	v.keys.Add(int64(len(keys)))
	v.progress(len(keys))
	return nil
}

// checkExtra looks a batch of destination keys up on the source; those the source lacks
// get the full comparison (which classifies them, expiring ones included).
func (v *verifier) checkExtra(ctx context.Context, w *worker, sdb int, keys []string) error {
	ddb := v.opts.Selection.Target(sdb)
	sb, _ := w.prepare(sdb, ddb)
	for _, k := range keys {
		sb.add(k, "EXISTS", k)
	}
	if err := exec(ctx, sb); err != nil {
		return err
	}
	var absent []string
	for i, c := range sb.calls {
		if c.err != nil {
			return fmt.Errorf("source EXISTS %s (db %d): %w", quoteKey(keys[i]), sdb, c.err)
		}
		if c.v.Int == 0 {
			absent = append(absent, keys[i])
		}
	}
	if len(absent) > 0 {
		vs, err := w.compareKeys(ctx, sdb, ddb, absent)
		if err != nil {
			return err
		}
		v.record(sdb, ddb, vs)
	}
	v.extra.Add(int64(len(keys)))
	v.progress(len(keys))
	return nil
}

// scanProducers make the work of a full round: per selected db, one producer per source
// master (its keys are compared) and one per destination master (its keys are looked up
// on the source, for extra keys). Each producer SCANs and hands batches to the comparing
// workers, so even one db on one server keeps every worker busy.
func (v *verifier) scanProducers(ctx context.Context) ([]producer, int64, error) {
	var ps []producer
	var total int64
	s, d := newSession(v.src), newSession(v.dst)
	defer s.close()
	defer d.close()
	sized := map[int]bool{} // destination dbs counted: several prefixed sources share one
	for _, sdb := range v.dbs {
		ddb := v.opts.Selection.Target(sdb)
		for _, m := range v.src.masters() {
			n, err := dbSize(ctx, s, m, sdb)
			if err != nil {
				return nil, 0, err
			}
			total += n
			ps = append(ps, func(ctx context.Context, sc *scanner, emit func(work) error) error {
				return v.scan(ctx, sc.src, m, sdb, "", func(keys []string) error {
					return emit(work{sdb: sdb, keys: slices.Clone(keys)})
				})
			})
		}
		count := !sized[ddb]
		sized[ddb] = true
		prefix := v.opts.Selection.Prefix[sdb]
		for _, m := range v.dst.masters() {
			if count {
				n, err := dbSize(ctx, d, m, ddb)
				if err != nil {
					return nil, 0, err
				}
				total += n
			}
			ps = append(ps, func(ctx context.Context, sc *scanner, emit func(work) error) error {
				return v.scan(ctx, sc.dst, m, ddb, prefix, func(keys []string) error {
					return emit(work{sdb: sdb, keys: slices.Clone(keys), reverse: true})
				})
			})
		}
	}
	return ps, total, nil
}

func dbSize(ctx context.Context, s *session, addr string, db int) (int64, error) {
	r, err := s.do(ctx, addr, db, "DBSIZE")
	if err != nil {
		return 0, err
	}
	return r.Int, nil
}

// scan walks one db of one master with SCAN and hands the selected keys on in batches.
// With a prefix (a destination db shared by prefixed source dbs) only the keys beginning
// with it are walked, and they are handed on without it: as the source names them.
func (v *verifier) scan(ctx context.Context, s *session, addr string, db int, prefix string, each func([]string) error) error {
	match := v.opts.Selection.Keys.ScanMatch()
	if prefix != "" {
		if match == "" {
			match = "*"
		}
		match = filter.EscapeGlob(prefix) + match // globs are anchored: the prefix, then the pattern
	}
	size := v.opts.BatchSize
	pending := make([]string, 0, 2*size)
	cursor := "0"
	for {
		args := []any{"SCAN", cursor}
		if match != "" {
			args = append(args, "MATCH", match)
		}
		args = append(args, "COUNT", size)
		r, err := s.do(ctx, addr, db, args...)
		if err != nil {
			return fmt.Errorf("scan db %d: %w", db, err)
		}
		next, items, err := cursorText(r)
		if err != nil {
			return fmt.Errorf("%s %s SCAN db %d: %w", s.ep.name, addr, db, err)
		}
		for _, it := range items {
			k, ok := strings.CutPrefix(string(it.Str), prefix)
			if ok && v.opts.Selection.Keys.Match(k) {
				pending = append(pending, k)
			}
		}
		for len(pending) >= size || (next == "0" && len(pending) > 0) {
			n := min(size, len(pending))
			if err := each(pending[:n]); err != nil {
				return err
			}
			pending = append(pending[:0], pending[n:]...)
		}
		if next == "0" {
			return nil
		}
		cursor = next
	}
}

// byDB splits keys into batches per source db.
func (v *verifier) byDB(prev map[diffID]Diff) map[int][][]string {
	keys := map[int][]string{}
	for id := range prev {
		keys[id.db] = append(keys[id.db], id.key)
	}
	out := map[int][][]string{}
	for db, ks := range keys {
		for i := 0; i < len(ks); i += v.opts.BatchSize {
			out[db] = append(out[db], ks[i:min(i+v.opts.BatchSize, len(ks))])
		}
	}
	return out
}

// recheckJobs compares the previous round's differences again, and flags those whose
// source changed since before (see runRound).
func (v *verifier) recheckJobs(prev map[diffID]Diff, before map[diffID]string) []job {
	var jobs []job
	for sdb, chunks := range v.byDB(prev) {
		for _, chunk := range chunks {
			jobs = append(jobs, func(ctx context.Context, w *worker) error {
				ddb := v.opts.Selection.Target(sdb)
				vs, err := w.compareKeys(ctx, sdb, ddb, chunk)
				if err != nil {
					return err
				}
				if len(vs) > 0 {
					keys := make([]string, len(vs))
					for i, x := range vs {
						keys[i] = x.key
					}
					after, err := w.fingerprint(ctx, sdb, keys)
					if err != nil {
						return err
					}
					for i := range vs {
						vs[i].changing = after[i] != before[diffID{sdb, vs[i].key}]
					}
				}
				v.record(sdb, ddb, vs)
				v.keys.Add(int64(len(chunk)))
				v.progress(len(chunk))
				return nil
			})
		}
	}
	return jobs
}

// fingerprints notes the source's state of every key in prev.
func (v *verifier) fingerprints(ctx context.Context, prev map[diffID]Diff) (map[diffID]string, error) {
	out := make(map[diffID]string, len(prev))
	var mu sync.Mutex
	var jobs []job
	for sdb, chunks := range v.byDB(prev) {
		for _, chunk := range chunks {
			jobs = append(jobs, func(ctx context.Context, w *worker) error {
				fps, err := w.fingerprint(ctx, sdb, chunk)
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				for i, k := range chunk {
					out[diffID{sdb, k}] = fps[i]
				}
				return nil
			})
		}
	}
	return out, v.parallel(ctx, jobs)
}

// sampleProducers make the work of a sample round: RANDOMKEY on every master of both
// sides, as many times as its share of the keys, then the same comparison as a full round.
func (v *verifier) sampleProducers(ctx context.Context) ([]producer, int64, error) {
	type part struct {
		addr   string
		sdb    int
		db     int
		n      int64
		src    bool
		prefix string // destination keys of sdb begin with it
		shared int    // source dbs sharing the destination db (1 without prefixes)
	}
	var parts []part
	s, d := newSession(v.src), newSession(v.dst)
	defer s.close()
	defer d.close()
	var srcTotal, dstTotal int64
	for _, sdb := range v.dbs {
		ddb := v.opts.Selection.Target(sdb)
		for _, m := range v.src.masters() {
			n, err := dbSize(ctx, s, m, sdb)
			if err != nil {
				return nil, 0, err
			}
			parts = append(parts, part{m, sdb, sdb, n, true, "", 1})
			srcTotal += n
		}
		// A destination db shared by k prefixed source dbs counts once: each of them
		// owns about 1/k of it.
		shared := max(1, v.opts.Selection.Shared(v.dbs, ddb))
		for _, m := range v.dst.masters() {
			n, err := dbSize(ctx, d, m, ddb)
			if err != nil {
				return nil, 0, err
			}
			n /= int64(shared)
			parts = append(parts, part{m, sdb, ddb, n, false, v.opts.Selection.Prefix[sdb], shared})
			dstTotal += n
		}
	}
	v.est = Estimate{SourceKeys: srcTotal, TargetKeys: dstTotal}
	v.sampledSrc.Store(0)
	v.sampledDst.Store(0)
	var ps []producer
	var total int64
	for _, p := range parts {
		all := srcTotal
		if !p.src {
			all = dstTotal
		}
		if p.n == 0 || all == 0 {
			continue
		}
		want := int64(math.Ceil(float64(v.opts.Sample) * float64(p.n) / float64(all)))
		total += want
		ps = append(ps, func(ctx context.Context, sc *scanner, emit func(work) error) error {
			sess := sc.src
			if !p.src {
				sess = sc.dst
			}
			keys, err := v.randomKeys(ctx, sess, p.addr, p.db, p.prefix, p.shared, want)
			if err != nil {
				return err
			}
			if p.src {
				v.sampledSrc.Add(int64(len(keys)))
			} else {
				v.sampledDst.Add(int64(len(keys)))
			}
			for i := 0; i < len(keys); i += v.opts.BatchSize {
				if err := emit(work{sdb: p.sdb, keys: keys[i:min(i+v.opts.BatchSize, len(keys))], reverse: !p.src}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return ps, total, nil
}

// randomKeys draws up to n distinct selected keys with RANDOMKEY, pipelined. With a
// prefix only keys beginning with it count, returned without it; shared is how many
// prefixes divide the db, so that many times the draws are made.
func (v *verifier) randomKeys(ctx context.Context, s *session, addr string, db int, prefix string, shared int, n int64) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	b := &batch{s: s, db: db}
	// Duplicates and filtered-out keys are drawn again, a bounded number of times.
	for attempt := 0; attempt < 4 && int64(len(out)) < n; attempt++ {
		b.reset()
		for range min(n-int64(len(out)), int64(v.opts.BatchSize)*4) * int64(max(shared, 1)) {
			b.calls = append(b.calls, call{node: addr, args: []any{"RANDOMKEY"}})
		}
		if err := exec(ctx, b); err != nil {
			return nil, err
		}
		for _, c := range b.calls {
			if c.err != nil {
				return nil, fmt.Errorf("%s %s RANDOMKEY (db %d): %w", s.ep.name, addr, db, c.err)
			}
			if c.v.Null {
				return out, nil // empty db
			}
			k, ok := strings.CutPrefix(string(c.v.Str), prefix)
			if ok && !seen[k] && v.opts.Selection.Keys.Match(k) {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	return out, nil
}
