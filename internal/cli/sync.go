package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/ferrysync/ferry/internal/clustersource"
	"github.com/ferrysync/ferry/internal/precheck"
	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/taskfile"
	"github.com/ferrysync/ferry/internal/throttle"
)

func newSyncCommand(g *globals) *cobra.Command {
	var (
		name, mode, existing, dataDir, statusAddr string
		delivery, onFullResync                    string
		retryTimeout, sourceTimeout               time.Duration
		forwardPublish, noProgress                bool
		skipPrecheck, acceptWarnings              bool
		taskFile                                  string
		fullMaxOps, incrMaxOps                    int64
		fullMaxBytes, incrMaxBytes                string
		bigKey                                    int64
	)
	cmd := &cobra.Command{
		Use:   "sync --source URL --target URL",
		Short: "Full + incremental sync from a source to a destination",
		Long: `Attach to the source as a replica, apply its snapshot to the destination, then apply the
live command stream until stopped (SIGINT/SIGTERM stop cleanly: reading stops, what is in
flight is drained, and the final position is reported).

Running the same command again is the same task (its identity comes from the two addresses,
or --task): it resumes from the checkpoint it keeps on the destination, with a partial
resync when the source's backlog still covers it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return nil // replaced below, once the flags exist
		},
	}
	fs := cmd.Flags()
	src := addEndpointFlags(fs, "source")
	dst := addEndpointFlags(fs, "target")
	fs.StringVar(&name, "task", "", "task name (default: derived from the source and target addresses)")
	fs.StringVar(&mode, "mode", string(task.ModeFullIncr), "full+incr (snapshot, then the live stream until stopped), full (snapshot only, then exit 0) or incr (live stream only)")
	fs.StringVar(&existing, "existing", string(task.ExistingBlock), "block (refuse when the destination DBs hold keys) or overwrite (replace what the source has, keep the rest)")
	fs.StringVar(&dataDir, "data-dir", defaultDataDir(), "directory for the replication spool")
	fs.StringVar(&statusAddr, "status-addr", "", "serve JSON status on /status and Prometheus metrics on /metrics at this address (e.g. 127.0.0.1:9121); off when empty")
	fs.BoolVar(&forwardPublish, "forward-publish", false, "forward PUBLISH/SPUBLISH from the source's stream to the destination")
	fs.Int64Var(&bigKey, "big-key-threshold", task.DefaultBigKeyThreshold, "values larger than this many bytes are written as chunked commands instead of one RESTORE")
	fs.BoolVar(&noProgress, "no-progress", false, "no progress bars on a terminal (logs instead)")
	fs.StringVar(&delivery, "delivery", string(task.DeliveryExactlyOnce), "exactly-once (each batch committed with its checkpoint in MULTI/EXEC) or at-least-once (faster; after a failure some commands are applied twice)")
	fs.StringVar(&onFullResync, "on-full-resync", "", "when a resumed task must sync from scratch: flush (delete the synced databases' keys first) or fail (default: flush when the task started with --existing block on an empty destination, fail otherwise)")
	fs.DurationVar(&retryTimeout, "retry-timeout", task.DefaultRetryTimeout, "how long lost source or destination connections are retried before the task fails")
	fs.DurationVar(&sourceTimeout, "source-timeout", task.DefaultSourceTimeout, "no data from the source for this long means its link is dead (half-open) and is reconnected")
	sel := addFilterFlags(fs)
	fs.Int64Var(&fullMaxOps, "full-max-ops", 0, "at most this many snapshot keys per second (0: unlimited; changeable at run time on the status endpoint's /throttle)")
	fs.StringVar(&fullMaxBytes, "full-max-bytes", "0", "at most this many snapshot bytes per second, e.g. 64MiB (0: unlimited)")
	fs.Int64Var(&incrMaxOps, "incr-max-ops", 0, "at most this many stream commands per second (0: unlimited; changeable at run time on the status endpoint's /throttle)")
	fs.StringVar(&incrMaxBytes, "incr-max-bytes", "0", "at most this many stream bytes per second, e.g. 8MiB (0: unlimited)")
	fs.StringVarP(&taskFile, "file", "f", "", "read the task from this YAML file (docs/task-file.md); flags given as well override it")
	fs.BoolVar(&skipPrecheck, "skip-precheck", false, "start without running the precheck (see 'ferry precheck')")
	fs.BoolVar(&acceptWarnings, "accept-warnings", false, "start even when precheck checks warn (failures still stop the sync)")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if taskFile != "" {
			tf, err := taskfile.Load(taskFile)
			if err != nil {
				return usageError{err}
			}
			if err := tf.Apply(cmd.Flags()); err != nil {
				return usageError{err}
			}
		}
		srcOpts, err := src.options()
		if err != nil {
			return err
		}
		dstOpts, err := dst.options()
		if err != nil {
			return err
		}
		m, err := task.ParseMode(mode)
		if err != nil {
			return usageErrorf("--mode: %v", err)
		}
		ex, err := task.ParseExisting(existing)
		if err != nil {
			return usageErrorf("--existing: %v", err)
		}
		dl, err := task.ParseDelivery(delivery)
		if err != nil {
			return usageErrorf("--delivery: %v", err)
		}
		fr, err := task.ParseFullResync(onFullResync)
		if err != nil {
			return usageErrorf("--on-full-resync: %v", err)
		}
		flt, err := sel.filter()
		if err != nil {
			return err
		}
		limits := throttle.Config{Full: throttle.Limits{MaxOps: fullMaxOps}, Incremental: throttle.Limits{MaxOps: incrMaxOps}}
		if limits.Full.MaxBytes, err = throttle.ParseBytes(fullMaxBytes); err != nil {
			return usageErrorf("--full-max-bytes: %v", err)
		}
		if limits.Incremental.MaxBytes, err = throttle.ParseBytes(incrMaxBytes); err != nil {
			return usageErrorf("--incr-max-bytes: %v", err)
		}
		srcOpts.ClientName, dstOpts.ClientName = "ferry", "ferry"
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg := task.Config{
			Name: name, Source: srcOpts, Target: dstOpts, Mode: m, Existing: ex,
			ForwardPublish: forwardPublish, BigKeyThreshold: bigKey,
			Delivery: dl, OnFullResync: fr, RetryTimeout: retryTimeout, SourceTimeout: sourceTimeout,
			Filter: flt, Throttle: limits,
			Logger: g.logger, Registerer: reg,
		}
		if cfg.Name == "" {
			cfg.Name = task.DefaultName(srcOpts, dstOpts)
		}
		var selDBs []int
		var selMap map[int]int
		var selPrefix map[int]string
		if flt != nil {
			selDBs, selMap, selPrefix = flt.Spec().DBs, flt.Spec().DBMap, flt.Spec().DBPrefix
			reg.MustRegister(flt.Collector(prometheus.Labels{"task": cfg.Name}))
		}
		cfg.DataDir = filepath.Join(dataDir, cfg.Name)
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
		ctx := cmd.Context()
		pcfg := precheck.Config{
			Source: srcOpts, Target: dstOpts, Existing: string(ex), BigKeyThreshold: bigKey,
			DBs: selDBs, DBMap: selMap, DBPrefix: selPrefix, Task: cfg.Name, Logger: g.logger,
		}
		// Any node of a cluster names the cluster: the sync then runs one task per
		// master. An unreachable source takes the standalone path, which reports it.
		if on, err := clustersource.Detect(ctx, srcOpts); err == nil && on {
			if flt != nil && flt.Prefixed() {
				// A shard's flush and full-resync clean-up find its keys on the destination
				// by their slot, which a prefix changes: they would delete other shards' keys.
				return usageErrorf("--db-map with a key prefix is not supported with a cluster source yet: a shard's FLUSHALL and full resync find its keys on the destination by slot, and a prefix moves them to other slots; map database 0 without a prefix")
			}
			return runClusterSync(ctx, g, cfg, pcfg, reg, clusterRunOptions{
				skipPrecheck: skipPrecheck, acceptWarnings: acceptWarnings,
				statusAddr: statusAddr, progress: !noProgress && isTerminal(os.Stderr),
			})
		}
		t, err := task.New(cfg)
		if err != nil {
			return usageErrorf("%v", err)
		}
		if !skipPrecheck {
			if err := runSyncPrecheck(ctx, g, pcfg, acceptWarnings); err != nil {
				return err
			}
		}
		if statusAddr != "" {
			stop, err := serveStatus(ctx, g.logger, statusAddr, task.StatusHandler(t), t.Limiters, reg)
			if err != nil {
				return err
			}
			defer stop()
		}
		progressDone := startProgress(ctx, g, t, !noProgress && isTerminal(os.Stderr))
		runErr := t.Run(ctx)
		progressDone()
		if runErr != nil {
			return runErr
		}
		st := t.Status()
		fmt.Fprintf(g.stdout, "task %s %s: replid %s, applied offset %d, %d snapshot keys, %d commands\n",
			st.Task, st.Phase, st.ReplID, st.AppliedOffset, st.FullKeys, st.Commands)
		return nil
	}
	return cmd
}

// runSyncPrecheck runs the precheck before a sync: failures, and warnings not accepted,
// stop it with the table on stderr; accepted warnings are logged.
func runSyncPrecheck(ctx context.Context, g *globals, cfg precheck.Config, acceptWarnings bool) error {
	rep, err := precheck.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("precheck: %w", err)
	}
	if !rep.OK(acceptWarnings) {
		if err := rep.WriteTable(g.stderr); err != nil {
			return err
		}
		return fmt.Errorf("%w (or skip the precheck with --skip-precheck)", precheckVerdict(rep, acceptWarnings))
	}
	for _, c := range rep.Checks {
		if c.Result == precheck.Warn {
			g.logger.Warn("precheck warning accepted", "side", c.Side, "check", c.Name, "found", c.Found, "advice", c.Advice)
		}
	}
	return nil
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "ferry")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "ferry")
	}
	return ".ferry"
}

// serveStatus serves /status, /metrics and /throttle until ctx ends or stop is called.
// limiters is asked on every /throttle request: a cluster source's shards exist only once
// its topology has been read.
func serveStatus(ctx context.Context, log *slog.Logger, addr string, status http.Handler, limiters func() map[string]*throttle.Limiter, reg *prometheus.Registry) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--status-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/status", status)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	// GET shows the throttle limits by phase (for a cluster source by "<shard>/<phase>");
	// PUT {"incremental":{"max_ops":5000}} changes them.
	mux.Handle("/throttle", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		throttle.Handler(limiters()).ServeHTTP(w, r)
	}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			// The sync goes on without it; say so rather than lose the endpoint silently.
			log.Error("the status endpoint stopped serving", "addr", addr, "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
	}, nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// clusterRunOptions are the sync command's flags that runClusterSync needs besides the
// task's configuration.
type clusterRunOptions struct {
	skipPrecheck, acceptWarnings bool
	statusAddr                   string
	progress                     bool // bars on a terminal; log lines otherwise
}

// runClusterSync runs a sync whose source is a Redis Cluster: one task per source master
// (package clustersource), with the status endpoint and the progress showing the shards.
func runClusterSync(ctx context.Context, g *globals, cfg task.Config, pcfg precheck.Config, reg *prometheus.Registry, o clusterRunOptions) error {
	s, err := clustersource.New(cfg)
	if err != nil {
		return usageErrorf("%v", err)
	}
	g.logger.Info("the source is a Redis Cluster: one task per master", "source", cfg.Source.Redacted(), "task", s.Name())
	if !o.skipPrecheck {
		if err := runSyncPrecheck(ctx, g, pcfg, o.acceptWarnings); err != nil {
			return err
		}
	}
	if o.statusAddr != "" {
		stop, err := serveStatus(ctx, g.logger, o.statusAddr, clustersource.StatusHandler(s), s.Limiters, reg)
		if err != nil {
			return err
		}
		defer stop()
	}
	progressDone := startClusterProgress(ctx, g, s, o.progress)
	runErr := s.Run(ctx)
	progressDone()
	if runErr != nil {
		return runErr
	}
	st := s.Status()
	for _, sh := range st.Shards {
		fmt.Fprintf(g.stdout, "shard %s (slots %s, master %s) %s: replid %s, applied offset %d, %d snapshot keys, %d commands\n",
			sh.ID, sh.Slots, sh.Master, sh.Phase, sh.ReplID, sh.AppliedOffset, sh.FullKeys, sh.Commands)
	}
	fmt.Fprintf(g.stdout, "task %s %s: %d shards, %d snapshot keys, %d commands\n",
		st.Task, st.Phase, len(st.Shards), st.FullKeys, st.Commands)
	return nil
}

// startClusterProgress shows a cluster-source sync's progress shard by shard: a line per
// shard on a terminal, a log record per shard every logInterval otherwise.
func startClusterProgress(ctx context.Context, g *globals, s *clustersource.Sync, terminal bool) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if terminal {
			clusterProgressBars(ctx, g, s)
		} else {
			clusterProgressLogs(ctx, g, s)
		}
	}()
	return func() { cancel(); <-done }
}

func clusterProgressLogs(ctx context.Context, g *globals, s *clustersource.Sync) {
	tick := time.NewTicker(logInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, sh := range s.Status().Shards {
			attrs := []any{"shard", sh.ID, "slots", sh.Slots, "master", sh.Master, "phase", sh.Phase.String()}
			switch sh.Phase {
			case task.PhaseFull:
				attrs = append(attrs, "keys", sh.FullKeys, "bytes", sh.FullBytes, "total_bytes", sh.FullTotalBytes)
			case task.PhaseIncremental:
				attrs = append(attrs, "ops_per_sec", int64(sh.OpsPerSecond), "lag_bytes", sh.LagBytes,
					"lag_ms", int64(sh.LagSeconds*1000), "lag_estimated", sh.LagEstimated, "applied_offset", sh.AppliedOffset)
			}
			g.logger.Info("progress", attrs...)
		}
	}
}

// clusterProgressBars keeps one line per shard on the terminal (the shards are known
// once the topology is read).
func clusterProgressBars(ctx context.Context, g *globals, s *clustersource.Sync) {
	p := mpb.NewWithContext(ctx, mpb.WithOutput(g.stderr), mpb.WithRefreshRate(200*time.Millisecond))
	var bars []*mpb.Bar
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			for _, b := range bars {
				b.Abort(false)
			}
			p.Wait()
			return
		case <-tick.C:
		}
		if bars != nil {
			continue
		}
		st := s.Status()
		for i := range st.Shards {
			bars = append(bars, p.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
				shards := s.Status().Shards
				if i >= len(shards) {
					return ""
				}
				return shardLine(shards[i])
			}))))
		}
	}
}

// shardLine is one shard's progress line.
func shardLine(sh clustersource.ShardStatus) string {
	head := fmt.Sprintf("shard %-7s %-12s %-11s", sh.ID, sh.Master, sh.Phase)
	switch sh.Phase {
	case task.PhaseFull:
		return head + fmt.Sprintf(" %d keys, %.1f MiB read", sh.FullKeys, float64(sh.FullBytes)/(1<<20))
	case task.PhaseIncremental:
		est := ""
		if sh.LagEstimated {
			est = " (estimated)"
		}
		return head + fmt.Sprintf(" %8.0f ops/s  lag %d bytes, %d ms%s  applied offset %d",
			sh.OpsPerSecond, sh.LagBytes, int64(sh.LagSeconds*1000), est, sh.AppliedOffset)
	}
	return head
}
