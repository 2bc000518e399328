// Command bench measures Ferry against the simplest ideal clients on the same machine in
// the same run: it starts redis-server processes, loads reproducible datasets, runs
// `ferry sync` as a child process (its CPU and peak RSS come from the kernel's
// accounting of the child), and prints Markdown tables of medians with min and max.
//
//	go run ./bench                         # every dataset and scenario, 3 runs, scale 1
//	go run ./bench -scale 0.25 -runs 3     # a quicker run
//	go run ./bench -dataset a -scenario full
//
// Datasets (at scale 1): a = 2 M strings of 100 B; b = 50 k each of hashes, lists, sets
// and zsets with 50 elements plus 1 k streams; c = 4 keys of 1 M elements (-big-elems).
// For every dataset, each run measures Ferry's full sync, a pipelined RESTORE replay of
// the very payloads Ferry sends (the ceiling for any RESTORE-based sync), a native
// REPLICAOF full sync of the same source and, for strings, redis-benchmark SET -P 64, and
// the same into a 3-master cluster (Ferry, and the replay split by slot owner);
// ratios are taken within a run, because the machine is shared and absolute numbers
// drift. The incremental scenario runs redis-benchmark against the source while Ferry
// applies the stream, and samples Ferry's /status for the heartbeat latency.
//
// See docs/performance.md for the results and what limits each figure.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type bench struct {
	root           string // temporary directory: servers, spool, replay files
	self           string // this program, re-run as the replay child
	ferry          string
	redisServer    string
	redisBenchmark string
	syncFlags      []string // extra `ferry sync` flags this build understands
	restoreConns   bool     // this build's `ferry rdb restore` has --connections
	tasks          int      // Ferry tasks started, for unique names
	runs           int
	rows           map[string]bool // full-sync scenarios to run (rowNames)
	keep           bool            // keep the temporary directory and the files in it
	scale          float64
	seed           uint64
	log            func(format string, args ...any)
}

func main() {
	var (
		replayFile = flag.String("replay", "", "internal: replay this file of RESTORE commands (child mode)")
		replayAddr = flag.String("addr", "", "internal: replay destination host:port")
		replayN    = flag.String("n", "", "internal: number of replies to expect per file")
		loadConns  = flag.Int("conns", 4, "internal: the loader's destination connections")
		loadSync   = flag.String("loadsync", "", "internal: full sync from this source with Ferry's replica and loader (child mode)")
		sinkAddr   = flag.String("sink", "", "internal: take a full sync from this source and discard it (child mode)")

		datasets  = flag.String("dataset", "a,b,c", "datasets to run: a (strings), b (collections), c (big keys)")
		scenarios = flag.String("scenario", "full,cluster,incr,rss4x", "scenarios: full (standalone → standalone), cluster (→ 3-master cluster), incr (incremental under load), rss4x (Ferry's peak RSS on 4× dataset a)")
		rows      = flag.String("rows", "ferry,precheck,sync4,ideal,replay,replay4,native,file,file1,sink,benchmark", "full-sync rows: ferry (sync --skip-precheck), precheck (sync with its precheck), ferry1p (sync --skip-precheck with GOMAXPROCS=1), sync4 (Ferry's replica and loader over 4 connections, without the task's copy of the RDB to disk), ideal (source RDB transfer alongside the RESTORE replay), replay and replay4 (RESTORE replay over 1 and 4 connections), native (REPLICAOF), file (ferry rdb restore), file1 (ferry rdb restore --connections 1), sink (source RDB transfer only), benchmark (redis-benchmark SET)")
		runs      = flag.Int("runs", 3, "runs per figure (the median, min and max are reported)")
		scale     = flag.Float64("scale", 1, "dataset size factor (0.25 for a quick run)")
		bigElems  = flag.Int64("big-elems", 1_000_000, "elements per big key in dataset c (10000000 for the 10 M variant); not scaled")
		incrDur   = flag.Duration("incr-duration", 60*time.Second, "how long the incremental scenario loads the source per run")
		ferryBin  = flag.String("ferry", "", "ferry binary (default: built from this checkout into the temporary directory)")
		server    = flag.String("redis-server", "redis-server", "redis-server binary")
		rbench    = flag.String("redis-benchmark", "redis-benchmark", "redis-benchmark binary")
		keep      = flag.Bool("keep", false, "keep the temporary directory (servers' logs, RDB, replay files)")
		seed      = flag.Uint64("seed", 1, "dataset generator seed")
		serve     = flag.Bool("serve", false, "load the first -dataset into a source, start an empty destination, print their URLs and wait for Ctrl-C (to profile ferry by hand)")
	)
	flag.Parse()
	if *loadSync != "" {
		dir, err := os.MkdirTemp("", "ferry-bench-sync-")
		if err == nil {
			err = syncMain(*loadSync, *replayAddr, *loadConns, dir)
			os.RemoveAll(dir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadsync:", err)
			os.Exit(1)
		}
		return
	}
	if *sinkAddr != "" {
		if err := sinkMain(*sinkAddr); err != nil {
			fmt.Fprintln(os.Stderr, "sink:", err)
			os.Exit(1)
		}
		return
	}
	if *replayFile != "" {
		if err := replayMain(*replayFile, *replayAddr, *replayN); err != nil {
			fmt.Fprintln(os.Stderr, "replay:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{keep: *keep, rows: split(*rows), runs: max(*runs, 1), scale: *scale, seed: *seed, log: func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+f+"\n", a...)
	}}
	if err := b.setup(*ferryBin, *server, *rbench); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if !*keep {
		defer os.RemoveAll(b.root)
	} else {
		b.log("keeping %s", b.root)
	}
	var err error
	if *serve {
		err = b.serve(ctx, strings.Split(*datasets, ",")[0], *bigElems)
	} else {
		err = b.main(ctx, split(*datasets), split(*scenarios), *bigElems, *incrDur)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		if !*keep {
			os.RemoveAll(b.root)
		}
		os.Exit(1)
	}
}

func split(s string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}

func (b *bench) setup(ferryBin, server, rbench string) error {
	var err error
	if b.root, err = os.MkdirTemp("", "ferry-bench-"); err != nil {
		return err
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.redisServer, err = exec.LookPath(server); err != nil {
		return err
	}
	if b.redisBenchmark, err = exec.LookPath(rbench); err != nil {
		return err
	}
	if ferryBin != "" {
		if b.ferry, err = filepath.Abs(ferryBin); err != nil {
			return err
		}
		return b.probeFerry()
	}
	b.ferry = filepath.Join(b.root, "ferry")
	b.log("building ferry")
	out, err := exec.Command("go", "build", "-o", b.ferry, "github.com/ferrysync/ferry/cmd/ferry").CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/ferry: %v\n%s", err, out)
	}
	return b.probeFerry()
}

// probeFerry looks at `ferry sync --help`: when sync runs a precheck, warnings about the
// bench's throwaway servers must not stop it (the precheck itself stays in the timing).
func (b *bench) probeFerry() error {
	out, err := exec.Command(b.ferry, "sync", "--help").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s sync --help: %v\n%s", b.ferry, err, out)
	}
	if strings.Contains(string(out), "--accept-warnings") {
		b.syncFlags = append(b.syncFlags, "--accept-warnings")
	}
	out, err = exec.Command(b.ferry, "rdb", "restore", "--help").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s rdb restore --help: %v\n%s", b.ferry, err, out)
	}
	b.restoreConns = strings.Contains(string(out), "--connections")
	return nil
}

func (b *bench) main(ctx context.Context, datasets, scenarios map[string]bool, bigElems int64, incrDur time.Duration) error {
	fmt.Printf("# Ferry bench — %s, %d runs, scale %g, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), b.runs, b.scale, machine())
	fmt.Println("Each cell: median [min – max] over the runs. Ratios are computed within each run (same machine state), then summarised.")
	fmt.Println()
	var rssA float64
	for _, d := range b.datasets(bigElems) {
		if !datasets[d.name] || !scenarios["full"] {
			continue
		}
		res, err := b.fullDataset(ctx, d, scenarios["cluster"])
		if err != nil {
			return fmt.Errorf("dataset %s: %w", d.name, err)
		}
		if d.name == "a" {
			rssA = res.median()
		}
	}
	if scenarios["rss4x"] && datasets["a"] {
		if err := b.rss4x(ctx, rssA); err != nil {
			return fmt.Errorf("4× dataset a: %w", err)
		}
	}
	if scenarios["incr"] {
		if err := b.incremental(ctx, incrDur); err != nil {
			return fmt.Errorf("incremental: %w", err)
		}
	}
	return nil
}

// serve prepares one dataset and keeps its servers up until ctx ends: for profiling a
// ferry build by hand against the bench's own servers and data (`perf record`, …). The
// destination is emptied with FLUSHALL between attempts by whoever uses it.
func (b *bench) serve(ctx context.Context, name string, bigElems int64) error {
	for _, d := range b.datasets(bigElems) {
		if d.name != name {
			continue
		}
		p, err := b.prepare(ctx, d)
		if err != nil {
			return err
		}
		defer p.close(b.keep)
		fmt.Printf("source %s\ndestination %s\nrdb %s\nreplay %s\nkeys %d\n", p.src.url(), p.dst.url(), p.rdb, p.replay.one, p.keys)
		<-ctx.Done()
		return nil
	}
	return fmt.Errorf("no dataset %q", name)
}

func (b *bench) datasets(bigElems int64) []dataset {
	return []dataset{
		stringsDataset("a", scaled(2_000_000, b.scale), 100),
		collectionsDataset(scaled(50_000, b.scale), 50, scaled(1000, b.scale)),
		bigKeysDataset(bigElems),
	}
}

func machine() string {
	host, _ := os.Hostname()
	cpus := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		n := strings.Count(string(b), "\nprocessor")
		if strings.HasPrefix(string(b), "processor") {
			n++
		}
		cpus = fmt.Sprint(n)
	}
	return fmt.Sprintf("%s, %s CPUs (shared)", host, cpus)
}

// prepared is a dataset loaded into a source, with its RDB and replay file.
type prepared struct {
	src, dst *server
	keys     int64
	rdbBytes int64
	rdb      string // the source's RDB, from SAVE
	replay   *replaySet
}

func (b *bench) prepare(ctx context.Context, d dataset) (*prepared, error) {
	src, err := startServer(ctx, b.root, b.redisServer, "src-"+d.name)
	if err != nil {
		return nil, err
	}
	dst, err := startServer(ctx, b.root, b.redisServer, "dst-"+d.name)
	if err != nil {
		src.stop()
		return nil, err
	}
	p := &prepared{src: src, dst: dst}
	fail := func(err error) (*prepared, error) { p.close(b.keep); return nil, err }
	b.log("dataset %s: loading %s", d.name, d.desc)
	t := time.Now()
	if err := load(ctx, src, d, b.seed); err != nil {
		return fail(err)
	}
	if p.keys, err = src.dbsize(ctx); err != nil {
		return fail(err)
	}
	b.log("dataset %s: %d keys loaded in %.1fs; SAVE", d.name, p.keys, time.Since(t).Seconds())
	if _, err := src.do(ctx, "SAVE"); err != nil {
		return fail(err)
	}
	p.rdb = filepath.Join(b.root, "dump-"+d.name+".rdb")
	if err := os.Rename(filepath.Join(src.dir, "dump.rdb"), p.rdb); err != nil {
		return fail(err)
	}
	p.rdbBytes = fileSize(p.rdb)
	target, err := destinationTarget(ctx, dst)
	if err != nil {
		return fail(err)
	}
	if p.replay, err = buildReplay(p.rdb, filepath.Join(b.root, "replay-"+d.name), replayConns, target); err != nil {
		return fail(err)
	}
	b.log("dataset %s: RDB %.1f MB, replay file %.1f MB", d.name, mb(p.rdbBytes), mb(fileSize(p.replay.one)))
	return p, nil
}

func (p *prepared) close(keepFiles bool) {
	p.src.stop()
	p.dst.stop()
	if keepFiles {
		return
	}
	if p.replay != nil {
		p.replay.remove()
	}
	_ = os.Remove(p.rdb)
}

func mb(n int64) float64 { return float64(n) / 1e6 }
