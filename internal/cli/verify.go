package cli

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/verify"
)

func newVerifyCommand(g *globals) *cobra.Command {
	var (
		dbs, dbMap, mode, fence, reportPath, auditPath string
		include, exclude                               []string
		sample, rounds, maxOps, parallel, batch        int
		maxDiffs                                       int
		ttlTol, interval, fenceTimeout                 time.Duration
		repair, repairExtra, noDigest, noProgress      bool
	)
	cmd := &cobra.Command{
		Use:   "verify --source URL --target URL",
		Short: "Compare a source and a destination key by key, in both directions",
		Long: `Compare the selected databases of the source and the destination: keys missing on the
destination, extra keys on the destination, type, value and TTL differences.

Modes: outline (key sets, types, TTLs), length (plus collection lengths), value (full
values, big collections in windows, streams with their consumer groups), sample (value
mode on --sample random keys, with an estimate for the whole dataset).

Differences are looked at again over --rounds, --interval apart, so keys that were in
flight during a live sync drop out. With --fence-replica (auto, or the ip:port the source's
INFO replication shows for the sync) each round first waits until the sync has applied
everything the source had when the round started, which makes the comparison exact. A key
that still differs while its source kept changing during the round is reported, marked
in_flight: it may be a write not yet applied; verify it again when writes pause.

--repair rewrites differing keys from the source (DUMP/RESTORE, or commands for big
values); extra keys are deleted only with --repair-extra. --audit-log records every action.

Ferry's own keys (ferry:…, a sync's heartbeat and checkpoints) are never compared.

Exit status: 0 when no difference remains, 1 when some do (or verify failed), 2 for a
usage error.`,
		Example: `  ferry verify --source redis://src:6379 --target redis://dst:6379
  ferry verify --source redis://src:6379 --target redis://cluster-node:7000 --dbs 0 --mode length
  ferry verify --source redis://src:6379 --target redis://dst:6379 --db-map 0:1,3:3 --include 'user:*' --exclude tmp:
  ferry verify --source redis://src:6379 --target redis://dst:6379 --fence-replica auto --rounds 5 --report diff.json
  ferry verify --source redis://src:6379 --target redis://dst:6379 --repair --audit-log repair.jsonl`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	src := addEndpointFlags(fs, "source")
	dst := addEndpointFlags(fs, "target")
	fs.StringVar(&dbs, "dbs", "", "source databases to compare, e.g. 0,3,5-9 (default: every database holding keys, or the URL's /db)")
	fs.StringVar(&dbMap, "db-map", "", "source:destination database pairs, e.g. 0:1,3:3 (unmapped databases keep their number); N:prefix=P as ferry sync's: database N's key K is P<K> in database 0")
	fs.StringArrayVar(&include, "include", nil, "compare only keys matching this prefix or glob (* ? [ ] \\ make it a glob); repeatable")
	fs.StringArrayVar(&exclude, "exclude", nil, "leave out keys matching this prefix or glob; repeatable")
	fs.StringVar(&mode, "mode", "value", "outline, length, value or sample")
	fs.IntVar(&sample, "sample", 0, fmt.Sprintf("compare about this many random keys in each direction (default %d with --mode sample)", verify.DefaultSample))
	fs.DurationVar(&ttlTol, "ttl-tolerance", verify.DefaultTTLTolerance, "TTLs further apart than this differ")
	fs.IntVar(&rounds, "rounds", verify.DefaultRounds, "comparison rounds; each after the first re-checks the previous round's differences")
	fs.DurationVar(&interval, "interval", verify.DefaultInterval, "pause between rounds")
	fs.StringVar(&fence, "fence-replica", "", "wait each round for the sync's replica to pass the source offset: auto (the only replica) or ip:port[,ip:port…] as INFO replication lists it")
	fs.DurationVar(&fenceTimeout, "fence-timeout", verify.DefaultFenceTimeout, "longest wait for the fence per round; after it the round runs unfenced")
	fs.IntVar(&maxOps, "max-ops", 0, "at most this many commands per second to each side (0: no limit)")
	fs.IntVar(&parallel, "parallel", verify.DefaultParallel, "parallel workers (split by database, cluster shard and direction)")
	fs.IntVar(&batch, "batch", verify.DefaultBatchSize, "keys compared per pipelined round trip")
	fs.IntVar(&maxDiffs, "max-diffs", verify.DefaultMaxDiffs, "differences kept and re-checked; more are only counted")
	fs.BoolVar(&noDigest, "no-digest", false, "never use DEBUG DIGEST-VALUE, even where the servers allow it")
	fs.StringVar(&reportPath, "report", "", "write the differing keys to this file as a JSON array")
	fs.BoolVar(&repair, "repair", false, "rewrite differing keys on the destination from the source")
	fs.BoolVar(&repairExtra, "repair-extra", false, "with --repair, also delete keys the source does not have")
	fs.StringVar(&auditPath, "audit-log", "", "with --repair, append every action to this file as JSON lines")
	fs.BoolVar(&noProgress, "no-progress", false, "no progress bars on a terminal")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		srcOpts, err := src.options()
		if err != nil {
			return err
		}
		dstOpts, err := dst.options()
		if err != nil {
			return err
		}
		o := verify.Options{
			Source: srcOpts, Target: dstOpts, TTLTolerance: ttlTol, Rounds: rounds, Interval: interval,
			MaxOps: maxOps, Parallel: parallel, BatchSize: batch, MaxDiffs: maxDiffs, NoDigest: noDigest,
			Repair: repair, RepairExtra: repairExtra, Logger: g.logger,
		}
		if err := verifySelection(&o, dbs, dbMap, include, exclude); err != nil {
			return err
		}
		var sampled bool
		if o.Mode, sampled, err = verify.ParseMode(mode); err != nil {
			return usageErrorf("%v", err)
		}
		switch {
		case sample < 0:
			return usageErrorf("--sample %d: want a positive number of keys", sample)
		case sample > 0:
			o.Sample = sample
		case sampled:
			o.Sample = verify.DefaultSample
		}
		if o.Fence, err = verify.ParseFence(fence); err != nil {
			return usageErrorf("%v", err)
		}
		o.Fence.Timeout = fenceTimeout
		for _, c := range []struct {
			bad bool
			msg string
		}{
			{rounds < 1, "--rounds must be at least 1"},
			{maxOps < 0, "--max-ops must not be negative"},
			{parallel < 1, "--parallel must be at least 1"},
			{batch < 1, "--batch must be at least 1"},
			{maxDiffs < 1, "--max-diffs must be at least 1"},
			{ttlTol < 0, "--ttl-tolerance must not be negative"},
			{repairExtra && !repair, "--repair-extra deletes extra keys as part of --repair; add --repair"},
			{auditPath != "" && !repair, "--audit-log records repair actions; add --repair"},
		} {
			if c.bad {
				return usageErrorf("%s", c.msg)
			}
		}
		if auditPath != "" {
			f, err := os.OpenFile(auditPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return fmt.Errorf("--audit-log: %w", err)
			}
			defer f.Close()
			o.Audit = f
		}
		var bars *verifyBars
		if !noProgress && isTerminal(os.Stderr) {
			bars = newVerifyBars(g)
			o.Progress = bars
		}
		res, runErr := verify.Run(cmd.Context(), o)
		if bars != nil {
			bars.wait()
		}
		if runErr != nil {
			if errors.Is(runErr, verify.ErrConfig) {
				return usageErrorf("%v", runErr)
			}
			if res == nil {
				return runErr
			}
		}
		if err := res.WriteSummary(g.stdout); err != nil {
			return err
		}
		if reportPath != "" {
			if err := writeVerifyReport(reportPath, res); err != nil {
				return err
			}
		}
		if runErr != nil {
			return runErr
		}
		if !res.Clean() {
			n := len(res.Remaining) + int(res.Overflow)
			return fmt.Errorf("%d keys differ between source and destination", n)
		}
		return nil
	}
	return cmd
}

// verifySelection fills in the databases and key filters. Databases come from --dbs and
// --db-map, or from the URLs' /db (source /2 and target /3 compare db 2 with db 3), not
// both.
func verifySelection(o *verify.Options, dbs, dbMap string, include, exclude []string) error {
	var err error
	if o.Selection.DBs, err = verify.ParseDBList(dbs); err != nil {
		return usageErrorf("--dbs: %v", err)
	}
	if o.Selection.Map, o.Selection.Prefix, err = verify.ParseDBMapping(dbMap); err != nil {
		return usageErrorf("--db-map: %v", err)
	}
	if o.Source.DB != 0 || o.Target.DB != 0 {
		if o.Selection.Explicit() {
			return usageErrorf("give the databases either in the URLs (/db) or with --dbs/--db-map, not both")
		}
		o.Selection.DBs = []int{o.Source.DB}
		o.Selection.Map = map[int]int{o.Source.DB: o.Target.DB}
		o.Source.DB, o.Target.DB = 0, 0
	}
	// Ferry's own keys (the heartbeat on the source, checkpoints on the destination) are
	// never part of the data, so they are never a difference.
	exclude = append(exclude[:len(exclude):len(exclude)], task.KeyPrefix)
	if o.Selection.Keys, err = verify.NewKeyFilter(include, exclude); err != nil {
		return usageErrorf("%v", err)
	}
	return nil
}

// writeVerifyReport writes the differing keys as a JSON array: with --repair, the keys found
// with what was done to each; otherwise the keys that still differ.
func writeVerifyReport(path string, res *verify.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	diffs := res.Remaining
	if len(res.Found) > len(diffs) || (len(res.Found) > 0 && res.Found[0].Repaired != nil) {
		diffs = res.Found
	}
	if err := verify.WriteReport(f, diffs); err != nil {
		f.Close()
		return fmt.Errorf("--report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--report %s: %w", path, err)
	}
	return nil
}

// verifyBars shows one progress bar per round on a terminal. Add is called from verify's
// workers, so the current bar is guarded.
type verifyBars struct {
	p   *mpb.Progress
	mu  sync.Mutex
	bar *mpb.Bar
}

func newVerifyBars(g *globals) *verifyBars {
	return &verifyBars{p: mpb.New(mpb.WithOutput(g.stderr), mpb.WithAutoRefresh(), mpb.WithRefreshRate(200*time.Millisecond))}
}

func (b *verifyBars) Round(n int, what string, total int64) {
	name := fmt.Sprintf("round %d (%s) ", n, what)
	if n == 0 {
		name = what + " "
	}
	// Created without a total so that it does not complete by itself: the total is an
	// estimate, and Done completes the bar wherever the count ends.
	bar := b.p.New(0, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Name(name), decor.CountersNoUnit("%d / %d keys ")),
		mpb.AppendDecorators(decor.AverageSpeed(0, "%.0f keys/s "), decor.AverageETA(decor.ET_STYLE_MMSS)))
	bar.SetTotal(total, false)
	b.mu.Lock()
	b.bar = bar
	b.mu.Unlock()
}

func (b *verifyBars) Add(n int) {
	b.mu.Lock()
	bar := b.bar
	b.mu.Unlock()
	if bar != nil {
		bar.IncrBy(n)
	}
}

// Done completes the bar at its count: the total was an estimate (DBSIZE counts keys the
// filters leave out).
func (b *verifyBars) Done() {
	b.mu.Lock()
	bar := b.bar
	b.bar = nil
	b.mu.Unlock()
	if bar != nil {
		bar.SetTotal(-1, true)
	}
}

func (b *verifyBars) wait() {
	b.Done()
	b.p.Wait()
}
