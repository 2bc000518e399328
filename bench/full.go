package main

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/rdb"
)

func destinationTarget(ctx context.Context, s *server) (rdb.Target, error) {
	info, err := s.info(ctx, "server")
	if err != nil {
		return rdb.Target{}, err
	}
	name, version := info["server_name"], info["redis_version"]
	if name == "valkey" && info["valkey_version"] != "" {
		version = info["valkey_version"]
	}
	return rdb.TargetFor(name, version), nil
}

// scenario names, in the order the table lists them.
const (
	scFerry   = "Ferry full sync"
	scFerryPC = "Ferry full sync with its precheck"
	scReplay  = "pipelined RESTORE replay (same payloads)"
	scReplay4 = "pipelined RESTORE replay, 4 connections"
	scNative  = "native REPLICAOF full sync"
	scBench   = "redis-benchmark SET -P 64"
	scCluster = "Ferry full sync → 3-master cluster"
	scReplayC = "pipelined RESTORE replay → 3-master cluster (a connection per master)"
	scFerry1P = "Ferry full sync, GOMAXPROCS=1"
	scFile    = "Ferry from the RDB file (ferry rdb restore)"
	scFile1   = "Ferry from the RDB file, 1 connection (--connections 1)"
	scSync4   = "Ferry's replica + loader, 4 connections, no copy to disk"
	scIdeal   = "ideal sync: source RDB transfer ∥ RESTORE replay"
	scRDB     = "source RDB transfer only (replica that discards it)"
)

// rowNames are the -rows names of the scenarios.
var rowNames = map[string]string{
	scFerry: "ferry", scFerryPC: "precheck", scFerry1P: "ferry1p", scReplay: "replay", scReplay4: "replay4", scNative: "native",
	scFile: "file", scFile1: "file1", scSync4: "sync4", scIdeal: "ideal",
	scCluster: "cluster", scReplayC: "cluster", scRDB: "sink", scBench: "benchmark",
}

// sourceRows are the scenarios that take a snapshot from the source: the table reports the
// source's CPU for them (its RDB child's included).
var sourceRows = map[string]bool{scFerry: true, scFerryPC: true, scFerry1P: true, scSync4: true, scIdeal: true,
	scNative: true, scRDB: true, scCluster: true}

// figures collects each scenario's measures over the runs.
type figures struct {
	wall, cpu, rss, destCPU, srcCPU map[string]series
	ratio                           map[string]series   // Ferry's wall / the scenario's, per run
	failed                          map[string][]string // the errors of failed runs
}

func (f *figures) median() float64 { return f.rss[scFerry].median() }

func newFigures() *figures {
	return &figures{wall: map[string]series{}, cpu: map[string]series{}, rss: map[string]series{},
		destCPU: map[string]series{}, srcCPU: map[string]series{}, ratio: map[string]series{}, failed: map[string][]string{}}
}

func (f *figures) add(sc string, m measure) {
	f.wall[sc] = append(f.wall[sc], m.wall)
	f.cpu[sc] = append(f.cpu[sc], m.cpu)
	f.rss[sc] = append(f.rss[sc], m.rssMB)
	f.destCPU[sc] = append(f.destCPU[sc], m.destCPU)
	f.srcCPU[sc] = append(f.srcCPU[sc], m.srcCPU)
}

// fullDataset runs the full-sync scenarios of one dataset and prints its table.
func (b *bench) fullDataset(ctx context.Context, d dataset, toCluster bool) (*figures, error) {
	p, err := b.prepare(ctx, d)
	if err != nil {
		return nil, err
	}
	defer p.close(b.keep)
	var scs []string
	for _, sc := range []string{scReplay, scFerry, scFerryPC, scFerry1P, scSync4, scIdeal, scNative, scFile, scFile1, scRDB, scReplay4, scBench} {
		if b.rows[rowNames[sc]] && (sc != scBench || d.strings) && (sc != scFile1 || b.restoreConns) {
			scs = append(scs, sc)
		}
	}
	var cl *cluster
	if toCluster {
		if cl, err = startCluster(ctx, b.root, b.redisServer, "cluster-"+d.name); err != nil {
			return nil, fmt.Errorf("destination cluster: %w", err)
		}
		defer cl.stop()
		scs = append(scs, scCluster, scReplayC)
	}
	if len(scs) == 0 {
		return nil, fmt.Errorf("no scenario row selected (-rows)")
	}
	f := newFigures()
	for run := range b.runs {
		walls := map[string]float64{}
		cpus := map[string]float64{} // source + destination + client CPU seconds
		// Rotate the order so that no scenario always runs first (warm caches, a
		// neighbour's load that comes and goes).
		for i := range scs {
			sc := scs[(i+run)%len(scs)]
			if err := p.dst.flush(ctx); err != nil {
				return nil, err
			}
			if cl != nil {
				if err := cl.flush(ctx); err != nil {
					return nil, err
				}
			}
			var m measure
			var src0 float64
			if sourceRows[sc] {
				if src0, err = p.src.sourceCPU(ctx); err != nil {
					return nil, err
				}
			}
			var check func() error // checks the data after the run
			switch sc {
			case scCluster:
				m, err = b.runFerryCluster(ctx, p.src, cl)
				check = func() error { return cl.sameKeys(ctx, p.src) }
			case scReplayC:
				m, err = b.runReplayCluster(ctx, cl, p.replay)
				check = func() error { return cl.sameKeys(ctx, p.src) }
			case scFerry:
				m, err = b.runFerryFull(ctx, p.src, p.dst)
				// The full digest once per dataset; the key count every run.
				check = func() error { return sameData(ctx, p.src, p.dst, run == 0) }
			case scFerryPC:
				m, err = b.runFerryFull(ctx, p.src, p.dst, withPrecheck)
				check = func() error { return sameData(ctx, p.src, p.dst, false) }
			case scFerry1P:
				m, err = b.runFerryFull(ctx, p.src, p.dst, "GOMAXPROCS=1")
				check = func() error { return sameData(ctx, p.src, p.dst, false) }
			case scReplay:
				m, err = b.runReplay(ctx, p.dst, p.replay, false)
				check = func() error { return sameData(ctx, p.src, p.dst, run == 0) }
			case scReplay4:
				m, err = b.runReplay(ctx, p.dst, p.replay, true)
				check = func() error { return sameData(ctx, p.src, p.dst, false) }
			case scNative:
				m, err = b.runNative(ctx, p.src, p.dst)
			case scFile:
				m, err = b.runFerryFile(ctx, p.rdb, p.dst)
				check = func() error { return sameData(ctx, p.src, p.dst, false) }
			case scFile1:
				m, err = b.runFerryFile(ctx, p.rdb, p.dst, "--connections", "1")
				check = func() error { return sameData(ctx, p.src, p.dst, false) }
			case scSync4:
				m, err = b.runLoadSync(ctx, p.src, p.dst, replayConns)
				check = func() error { return sameData(ctx, p.src, p.dst, run == 0) }
			case scIdeal:
				m, err = b.runIdeal(ctx, p.src, p.dst, p.replay)
			case scRDB:
				m, err = b.runRDBOnly(ctx, p.src)
			case scBench:
				m, err = b.runBenchmarkSet(ctx, p.dst, d.keys, d.valueSize)
			}
			// The source's CPU before the checks: DEBUG DIGEST is heavy on the source.
			if err == nil && sourceRows[sc] {
				var src1 float64
				if src1, err = p.src.sourceCPU(ctx); err == nil {
					m.srcCPU = src1 - src0
				}
			}
			if err == nil && check != nil {
				err = check()
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				// One failed run does not void the others; the table says how many failed.
				b.log("dataset %s run %d: %s FAILED: %v", d.name, run+1, sc, err)
				f.failed[sc] = append(f.failed[sc], firstLine(err.Error()))
				continue
			}
			b.log("dataset %s run %d: %-42s %7.2fs  cpu %6.2fs  rss %6.1f MB  dest cpu %6.2fs  source cpu %6.2fs", d.name, run+1, sc, m.wall, m.cpu, m.rssMB, m.destCPU, m.srcCPU)
			walls[sc] = m.wall
			if sourceRows[sc] && sc != scRDB && sc != scNative && sc != scCluster {
				cpus[sc] = m.srcCPU + m.destCPU + m.cpu
			}
			f.add(sc, m)
		}
		for _, r := range ratios(scs) {
			if walls[r.num] > 0 && walls[r.den] > 0 {
				f.ratio[r.label] = append(f.ratio[r.label], walls[r.num]/walls[r.den])
			}
		}
		// The CPU floor: what the processes of a sync needed, spread over every core of
		// the machine with nothing else running, against the replay's time.
		for _, sc := range []string{scIdeal, scFerry, scFerry1P} {
			if cpus[sc] > 0 && walls[scReplay] > 0 {
				label := cpuFloorLabel(sc)
				f.ratio[label] = append(f.ratio[label], cpus[sc]/float64(runtime.NumCPU())/walls[scReplay])
			}
		}
	}
	if err := p.dst.flush(ctx); err != nil {
		return nil, err
	}
	b.printFull(d, p, scs, f)
	return f, nil
}

func (b *bench) printFull(d dataset, p *prepared, scs []string, f *figures) {
	fmt.Printf("## Dataset %s — %s\n\n", d.name, d.desc)
	fmt.Printf("%s keys, RDB %.1f MB, %d runs. Full sync into a standalone server unless the row says a cluster (%d masters, no replicas).\n\n", thousands(p.keys), mb(p.rdbBytes), b.runs, clusterMasters)
	fmt.Println("| scenario | wall s | keys/s | MB/s (RDB) | client CPU s | client peak RSS MB | destination CPU s | source CPU s |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	var notes []string
	order := scs
	if slices.Contains(scs, scFerry) {
		order = append([]string{scFerry}, without(scs, scFerry)...)
	}
	for _, sc := range order {
		var kps, mbps series
		if n := len(f.failed[sc]); n > 0 {
			notes = append(notes, fmt.Sprintf("- %s: %d of %d runs failed: %s", sc, n, b.runs, f.failed[sc][0]))
		}
		if len(f.wall[sc]) == 0 {
			fmt.Printf("| %s | failed | | | | | | |\n", sc)
			continue
		}
		for _, w := range f.wall[sc] {
			kps = append(kps, float64(p.keys)/w)
			mbps = append(mbps, mb(p.rdbBytes)/w)
		}
		if sc == scBench {
			kps = nil
			for _, w := range f.wall[sc] {
				kps = append(kps, float64(d.keys)/w) // SETs per second
			}
			mbps = series{}
		}
		kprec := 0
		if p.keys < 1000 {
			kprec = 2 // big keys: a few keys in seconds
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", sc, f.wall[sc].format(2), kps.format(kprec), mbps.format(1),
			f.cpu[sc].format(2), f.rss[sc].format(1), f.destCPU[sc].format(2), f.srcCPU[sc].format(2))
	}
	if len(notes) > 0 {
		fmt.Println()
		fmt.Println(strings.Join(notes, "\n"))
	}
	fmt.Println()
	fmt.Println("| wall-time ratio (within each run) | median [min – max] |")
	fmt.Println("|---|---|")
	for _, r := range ratios(scs) {
		fmt.Printf("| %s | %s |\n", r.label, f.ratio[r.label].format(3))
	}
	for _, sc := range []string{scIdeal, scFerry, scFerry1P} {
		if label := cpuFloorLabel(sc); len(f.ratio[label]) > 0 {
			fmt.Printf("| %s | %s |\n", label, f.ratio[label].format(3))
		}
	}
	fmt.Println()
}

// cpuFloorLabel names the CPU floor of a scenario: (source + destination + client CPU
// seconds) / the machine's cores, over the replay's wall time. A run cannot take less
// time than that on this machine, whatever overlaps with what.
func cpuFloorLabel(sc string) string {
	return fmt.Sprintf("CPU floor of %s: (source + destination + client CPU) / %d cores / RESTORE replay", sc, runtime.NumCPU())
}

type ratio struct{ label, num, den string }

// ratios lists the comparisons the table reports, for the scenarios that ran.
func ratios(scs []string) []ratio {
	all := []ratio{
		{"Ferry full sync / RESTORE replay", scFerry, scReplay},
		{"ideal sync / RESTORE replay", scIdeal, scReplay},
		{"Ferry full sync with its precheck / RESTORE replay", scFerryPC, scReplay},
		{"source RDB transfer only / RESTORE replay", scRDB, scReplay},
		{"Ferry full sync, GOMAXPROCS=1 / RESTORE replay", scFerry1P, scReplay},
		{"Ferry full sync, GOMAXPROCS=1 / ideal sync", scFerry1P, scIdeal},
		{"Ferry full sync / RESTORE replay, 4 connections", scFerry, scReplay4},
		{"Ferry full sync / ideal sync (RDB transfer ∥ replay)", scFerry, scIdeal},
		{"Ferry's replica + loader, 4 connections / RESTORE replay", scSync4, scReplay},
		{"Ferry's replica + loader, 4 connections / ideal sync", scSync4, scIdeal},
		{"Ferry full sync / native REPLICAOF", scFerry, scNative},
		{"Ferry full sync / redis-benchmark SET", scFerry, scBench},
		{"Ferry full sync / source RDB transfer only", scFerry, scRDB},
		{"Ferry from the RDB file / RESTORE replay", scFile, scReplay},
		{"Ferry from the RDB file, 1 connection / RESTORE replay", scFile1, scReplay},
		{"Ferry from the RDB file / RESTORE replay, 4 connections", scFile, scReplay4},
		{"Ferry → cluster / Ferry → standalone", scCluster, scFerry},
		{"Ferry → cluster / RESTORE replay → cluster", scCluster, scReplayC},
		{"RESTORE replay → cluster / RESTORE replay → standalone", scReplayC, scReplay},
		{"RESTORE replay, 4 connections / 1 connection", scReplay4, scReplay},
	}
	var out []ratio
	for _, r := range all {
		if slices.Contains(scs, r.num) && slices.Contains(scs, r.den) {
			out = append(out, r)
		}
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func without(s []string, x string) []string {
	var out []string
	for _, v := range s {
		if v != x {
			out = append(out, v)
		}
	}
	return out
}

// rss4x: Ferry's peak RSS on dataset a at 4× the scale, against dataset a's: the full
// phase streams, so memory must not follow the dataset's size.
func (b *bench) rss4x(ctx context.Context, rssA float64) error {
	d := stringsDataset("a", scaled(8_000_000, b.scale), 100)
	d.desc += " (4× dataset a)"
	src, err := startServer(ctx, b.root, b.redisServer, "src-a4")
	if err != nil {
		return err
	}
	defer src.stop()
	dst, err := startServer(ctx, b.root, b.redisServer, "dst-a4")
	if err != nil {
		return err
	}
	defer dst.stop()
	b.log("4× dataset a: loading %s", d.desc)
	if err := load(ctx, src, d, b.seed); err != nil {
		return err
	}
	m, err := b.runFerryFull(ctx, src, dst)
	if err != nil {
		return err
	}
	if err := sameData(ctx, src, dst, false); err != nil {
		return err
	}
	keys, _ := src.dbsize(ctx)
	b.log("4× dataset a: %.2fs, rss %.1f MB", m.wall, m.rssMB)
	fmt.Printf("## Peak RSS against dataset size\n\n")
	fmt.Println("| dataset | keys | Ferry wall s | Ferry peak RSS MB |")
	fmt.Println("|---|---|---|---|")
	if rssA > 0 {
		fmt.Printf("| a | %s | (above) | %s |\n", thousands(scaled(2_000_000, b.scale)), num(rssA, 1))
	}
	fmt.Printf("| 4× a | %s | %s | %s |\n\n", thousands(keys), num(m.wall, 2), num(m.rssMB, 1))
	return nil
}

// incremental runs the incremental scenario b.runs times on a fresh pair of servers.
func (b *bench) incremental(ctx context.Context, dur time.Duration) error {
	src, err := startServer(ctx, b.root, b.redisServer, "src-incr")
	if err != nil {
		return err
	}
	defer src.stop()
	dst, err := startServer(ctx, b.root, b.redisServer, "dst-incr")
	if err != nil {
		return err
	}
	defer dst.stop()
	var srcOps, ferryOps, opsRatio, bytesRatio, latP50, latP99, lagP50, lagP99, catchUp, cpu, rss, destCPU series
	for run := range b.runs {
		for _, s := range []*server{src, dst} {
			if err := s.flush(ctx); err != nil {
				return err
			}
		}
		r, err := b.runIncr(ctx, src, dst, dur)
		if err != nil {
			return fmt.Errorf("run %d: %w", run+1, err)
		}
		b.log("incremental run %d: source %.0f ops/s, ferry %.0f ops/s (%.3f), latency p50 %.0f ms p99 %.0f ms, catch-up %.2fs",
			run+1, r.srcOps, r.ferryOps, r.opsRatio, r.latP50, r.latP99, r.catchUp)
		srcOps = append(srcOps, r.srcOps)
		ferryOps = append(ferryOps, r.ferryOps)
		opsRatio = append(opsRatio, r.opsRatio)
		bytesRatio = append(bytesRatio, r.bytesRatio)
		latP50 = append(latP50, r.latP50)
		latP99 = append(latP99, r.latP99)
		lagP50 = append(lagP50, r.lagP50)
		lagP99 = append(lagP99, r.lagP99)
		catchUp = append(catchUp, r.catchUp)
		cpu = append(cpu, r.ferryCPU)
		rss = append(rss, r.rssMB)
		destCPU = append(destCPU, r.destCPU)
	}
	fmt.Printf("## Incremental under load\n\n")
	fmt.Printf("`redis-benchmark -t set,lpush,hset,incr -P 16 -c 20 -r 100000 -l` on the source for %s per run, %d runs; Ferry's /status sampled every 200 ms.\n\n", dur, b.runs)
	fmt.Println("| figure | median [min – max] |")
	fmt.Println("|---|---|")
	rows := []struct {
		name string
		s    series
		prec int
	}{
		{"source write rate, ops/s", srcOps, 0},
		{"Ferry applied, ops/s", ferryOps, 0},
		{"applied / source writes (ops, same window)", opsRatio, 3},
		{"applied / source writes (stream bytes)", bytesRatio, 3},
		{"heartbeat latency p50, ms", latP50, 0},
		{"heartbeat latency p99, ms", latP99, 0},
		{"lag p50, bytes", lagP50, 0},
		{"lag p99, bytes", lagP99, 0},
		{"catch-up after the load stops, s", catchUp, 2},
		{"Ferry CPU s (whole run)", cpu, 2},
		{"Ferry peak RSS MB", rss, 1},
		{"destination CPU s (load window + catch-up)", destCPU, 2},
	}
	for _, r := range rows {
		fmt.Printf("| %s | %s |\n", r.name, r.s.format(r.prec))
	}
	fmt.Println()
	return nil
}
