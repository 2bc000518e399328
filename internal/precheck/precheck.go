// Package precheck looks at a source and a destination before a sync and says, check by
// check, what will work, what is risky and what will fail, each with what was found and
// what to do about it: connectivity, TLS and login; the ACL permissions Ferry needs on
// each side; engines, versions and RDB formats; destination memory and eviction; keys
// already in the destination; the source's backlog, timeouts and replica buffer limits
// against its write rate; heartbeat permission; cluster slot coverage and database
// mapping; modules; and big keys.
//
// Nothing is written to either side: permissions are probed by queueing commands in a
// MULTI that is discarded, or with ACL DRYRUN (see acl.go). Independent checks run
// concurrently, each with its own timeout, so a healthy pair takes about a second (the
// write-rate sample is the slowest part).
package precheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
)

// Defaults for Config.
const (
	// DefaultBigKeyThreshold is the in-memory size above which a value is written as
	// commands in chunks instead of one RESTORE. 8 MiB keeps a RESTORE well below every
	// server's proto-max-bulk-len (512 MiB by default) and bounds the memory a single
	// value holds in flight.
	DefaultBigKeyThreshold = 8 << 20
	// DefaultNamespace prefixes Ferry's own keys (checkpoints, heartbeats).
	DefaultNamespace = "ferry"
	// DefaultTask names the task when Config.Task is empty.
	DefaultTask = "default"
	// DefaultDialTimeout bounds connecting to a server, TLS and login included. Short, so
	// an unreachable host fails its check in seconds.
	DefaultDialTimeout = 3 * time.Second
	// DefaultCheckTimeout bounds each check.
	DefaultCheckTimeout = 4 * time.Second
	// DefaultRateSample is the interval over which the source's write rate is measured.
	DefaultRateSample = time.Second
	// DefaultSampleKeys is how many source keys the big-key check looks at.
	DefaultSampleKeys = 1000
)

// Existing-key policies (Config.Existing).
const (
	ExistingBlock     = "block"     // keys in the destination DBs stop the sync
	ExistingOverwrite = "overwrite" // same-named keys are replaced; others stay
)

// MaxDB is the highest database number Ferry accepts.
const MaxDB = 255

// Config says what to check.
type Config struct {
	// Source and Target say how to reach the two sides; for a cluster, any node. Their
	// DB field is ignored: DBs and DBMap choose the databases.
	Source, Target redis.Options
	// DBs are the source databases to sync; nil means all.
	DBs []int
	// DBMap maps a source database to a destination database; unmapped databases keep
	// their number.
	DBMap map[int]int
	// DBPrefix renames the keys of a source database with a prefix (--db-map N:prefix=P):
	// databases sharing a destination database under distinct prefixes do not collide.
	DBPrefix map[int]string
	// Existing is ExistingBlock (default) or ExistingOverwrite.
	Existing string
	// BigKeyThreshold is in bytes; default DefaultBigKeyThreshold.
	BigKeyThreshold int64
	// Task names the task; its heartbeat key is <Namespace>:hb:<Task> and its checkpoint
	// <Namespace>:ckpt:<Task>. Default DefaultTask.
	Task string
	// Namespace prefixes Ferry's keys; default DefaultNamespace.
	Namespace string
	// DialTimeout bounds each connection attempt; default DefaultDialTimeout.
	DialTimeout time.Duration
	// CheckTimeout bounds each check; default DefaultCheckTimeout.
	CheckTimeout time.Duration
	// RateSample is how long the source's write rate is measured; default
	// DefaultRateSample.
	RateSample time.Duration
	// SampleKeys is how many keys the big-key check samples; default DefaultSampleKeys.
	SampleKeys int
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Source.Addr == "" || c.Target.Addr == "" {
		return c, errors.New("precheck: both a source and a target address are needed")
	}
	switch c.Existing {
	case "":
		c.Existing = ExistingBlock
	case ExistingBlock, ExistingOverwrite:
	default:
		return c, fmt.Errorf("precheck: existing-key policy %q: want %q or %q", c.Existing, ExistingBlock, ExistingOverwrite)
	}
	for _, db := range c.DBs {
		if db < 0 || db > MaxDB {
			return c, fmt.Errorf("precheck: database %d: want 0 to %d", db, MaxDB)
		}
	}
	for from, to := range c.DBMap {
		if from < 0 || from > MaxDB || to < 0 || to > MaxDB {
			return c, fmt.Errorf("precheck: database mapping %d:%d: want databases 0 to %d", from, to, MaxDB)
		}
	}
	if c.DBs != nil {
		c.DBs = slices.Clone(c.DBs)
		slices.Sort(c.DBs)
		c.DBs = slices.Compact(c.DBs)
	}
	if c.BigKeyThreshold <= 0 {
		c.BigKeyThreshold = DefaultBigKeyThreshold
	}
	if c.Task == "" {
		c.Task = DefaultTask
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = DefaultCheckTimeout
	}
	if c.RateSample <= 0 {
		c.RateSample = DefaultRateSample
	}
	if c.SampleKeys <= 0 {
		c.SampleKeys = DefaultSampleKeys
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// targetDB is where source database db lands.
func (c Config) targetDB(db int) int {
	if to, ok := c.DBMap[db]; ok {
		return to
	}
	return db
}

// distinctPrefixes: every one of the source databases dbs renames its keys with a prefix of
// its own, so they can share a destination database (the filter refuses prefixes of which
// one begins another).
func (c Config) distinctPrefixes(dbs []int) bool {
	seen := make(map[string]bool, len(dbs))
	for _, db := range dbs {
		p, ok := c.DBPrefix[db]
		if !ok || seen[p] {
			return false
		}
		seen[p] = true
	}
	return true
}

func (c Config) heartbeatKey() string  { return c.Namespace + ":hb:" + c.Task }
func (c Config) checkpointKey() string { return c.Namespace + ":ckpt:" + c.Task }

// markerKey is the key a task writes on the destination before its first write; it says
// the data there is the task's own (internal/checkpoint's Keys.Marker).
func (c Config) markerKey() string { return c.Namespace + ":task:" + c.Task }

// Result is a check's outcome, ordered from best to worst.
type Result uint8

const (
	// Pass: nothing to do.
	Pass Result = iota
	// Skip: not checked, because what it needs is unavailable (the side is unreachable,
	// or the user may not run the command that would tell). Does not stop a sync.
	Skip
	// Warn: the sync can run but something may go wrong or differ; stops a sync unless
	// warnings are accepted.
	Warn
	// Fail: the sync would fail or lose data.
	Fail
)

var resultNames = [...]string{"pass", "skip", "warn", "fail"}

func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return fmt.Sprintf("Result(%d)", r)
}

// MarshalText writes the result's name.
func (r Result) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a result's name.
func (r *Result) UnmarshalText(b []byte) error {
	for i, n := range resultNames {
		if string(b) == n {
			*r = Result(i)
			return nil
		}
	}
	return fmt.Errorf("precheck result %q: want pass, skip, warn or fail", b)
}

// Sides a check is about.
const (
	SideSource = "source"
	SideTarget = "target"
	SideBoth   = "both"
)

// Names of the checks, stable for scripts and tests.
const (
	CheckConnect      = "connect"
	CheckACL          = "acl"
	CheckHeartbeat    = "heartbeat"
	CheckVersions     = "versions"
	CheckMemory       = "memory"
	CheckEviction     = "eviction"
	CheckExistingKeys = "existing keys"
	CheckDatabases    = "databases"
	CheckBacklog      = "backlog"
	CheckReplTimeout  = "repl-timeout"
	CheckOutputBuffer = "output buffer"
	CheckCluster      = "cluster"
	CheckModules      = "modules"
	CheckBigKeys      = "big keys"
)

// Check is the outcome of one check.
type Check struct {
	Side   string `json:"side"` // SideSource, SideTarget or SideBoth
	Name   string `json:"name"`
	Result Result `json:"result"`
	// Found says what was found, with the numbers.
	Found string `json:"found"`
	// Advice says what to do; empty when there is nothing to do.
	Advice    string `json:"advice,omitempty"`
	ElapsedMS int64  `json:"elapsed_ms"`
}

// Report is the outcome of a precheck.
type Report struct {
	Source    string    `json:"source"` // redacted URLs
	Target    string    `json:"target"`
	Task      string    `json:"task"`
	Started   time.Time `json:"started"`
	ElapsedMS int64     `json:"elapsed_ms"`
	Result    Result    `json:"result"` // Worst()
	Checks    []Check   `json:"checks"`
}

// Worst returns the worst result of all checks (Pass for none).
func (r *Report) Worst() Result {
	w := Pass
	for _, c := range r.Checks {
		w = max(w, c.Result)
	}
	return w
}

// OK reports whether a sync may start: no check failed, and no check warned unless
// acceptWarnings.
func (r *Report) OK(acceptWarnings bool) bool {
	switch r.Worst() {
	case Fail:
		return false
	case Warn:
		return acceptWarnings
	}
	return true
}

// Count returns how many checks had result res.
func (r *Report) Count(res Result) int {
	n := 0
	for _, c := range r.Checks {
		if c.Result == res {
			n++
		}
	}
	return n
}

// Find returns the check named name on side.
func (r *Report) Find(side, name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Side == side && c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Run runs every check and returns the report. Problems found are in the report; the
// error is only for an invalid Config or a cancelled ctx.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	bigKeyDefault := cfg.BigKeyThreshold <= 0
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	r := &runner{cfg: cfg, bigKeyDefault: bigKeyDefault}
	r.src = newSide(SideSource, cfg.Source, cfg)
	r.tgt = newSide(SideTarget, cfg.Target, cfg)

	// Both sides are connected (and their INFO read) first: almost every check needs it,
	// and an unreachable side turns its checks into skips.
	var wg sync.WaitGroup
	wg.Go(func() { r.src.connect(ctx) })
	wg.Go(func() { r.tgt.connect(ctx) })
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("precheck: %w", err)
	}

	defs := r.checks()
	checks := make([]Check, len(defs))
	for i, d := range defs {
		checks[i] = Check{Side: d.side, Name: d.name}
		if why := r.unavailable(d.needs); why != "" {
			checks[i].Result = Skip
			checks[i].Found = "skipped: " + why
			continue
		}
		wg.Go(func() {
			t0 := time.Now()
			cctx, cancel := context.WithTimeout(ctx, d.timeout(cfg))
			defer cancel()
			out := d.run(cctx)
			out.Side, out.Name = d.side, d.name
			out.ElapsedMS = time.Since(t0).Milliseconds()
			checks[i] = out
			cfg.Logger.Debug("precheck", "side", d.side, "check", d.name, "result", out.Result, "elapsed", time.Since(t0))
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("precheck: %w", err)
	}
	rep := &Report{
		Source:  cfg.Source.String(),
		Target:  cfg.Target.String(),
		Task:    cfg.Task,
		Started: start,
		Checks:  append([]Check{r.src.connectCheck(), r.tgt.connectCheck()}, checks...),
	}
	rep.Result = rep.Worst()
	rep.ElapsedMS = time.Since(start).Milliseconds()
	return rep, nil
}

// needs says which sides a check must reach.
type needs uint8

const (
	needSource needs = 1 << iota
	needTarget
	needBoth = needSource | needTarget
)

type checkDef struct {
	side, name string
	needs      needs
	// extra is added to the check timeout for checks that wait on purpose (the
	// write-rate sample).
	extra time.Duration
	run   func(ctx context.Context) Check
}

func (d checkDef) timeout(cfg Config) time.Duration { return cfg.CheckTimeout + d.extra }

// runner holds one precheck's state.
type runner struct {
	cfg      Config
	src, tgt *side
	// bigKeyDefault is set when the big-key threshold was not given.
	bigKeyDefault bool
}

func (r *runner) unavailable(n needs) string {
	if n&needSource != 0 && r.src.err != nil {
		return r.src.unreachable()
	}
	if n&needTarget != 0 && r.tgt.err != nil {
		return r.tgt.unreachable()
	}
	return ""
}

// checks lists every check after connect, in report order.
func (r *runner) checks() []checkDef {
	rate := &rateOnce{}
	return []checkDef{
		{SideSource, CheckACL, needSource, 0, r.sourceACL},
		{SideTarget, CheckACL, needTarget, 0, r.targetACL},
		{SideSource, CheckHeartbeat, needSource, 0, r.heartbeat},
		{SideBoth, CheckVersions, needBoth, 0, r.versions},
		{SideSource, CheckCluster, needSource, 0, func(ctx context.Context) Check { return r.clusterCheck(ctx, r.src) }},
		{SideTarget, CheckCluster, needTarget, 0, func(ctx context.Context) Check { return r.clusterCheck(ctx, r.tgt) }},
		{SideBoth, CheckDatabases, needBoth, 0, r.databases},
		{SideTarget, CheckExistingKeys, needTarget, 0, r.existingKeys},
		{SideTarget, CheckMemory, needBoth, 0, r.memory},
		{SideTarget, CheckEviction, needTarget, 0, r.eviction},
		{SideSource, CheckBacklog, needSource, r.cfg.RateSample, func(ctx context.Context) Check { return r.backlog(ctx, rate) }},
		{SideSource, CheckReplTimeout, needSource, 0, r.replTimeout},
		{SideSource, CheckOutputBuffer, needSource, r.cfg.RateSample, func(ctx context.Context) Check { return r.outputBuffer(ctx, rate) }},
		{SideBoth, CheckModules, needBoth, 0, r.modules},
		{SideBoth, CheckCommands, needBoth, 0, r.commands},
		{SideSource, CheckBigKeys, needSource, 0, r.bigKeys},
	}
}

// skipf is a Skip result: the check could not look.
func skipf(format string, args ...any) Check {
	return Check{Result: Skip, Found: fmt.Sprintf(format, args...)}
}
