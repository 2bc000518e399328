package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// measure is what one scenario run yields.
type measure struct {
	wall    float64 // seconds
	cpu     float64 // the client process's CPU seconds (user + system); NaN when none
	rssMB   float64 // its peak RSS (VmHWM) in MiB; NaN when none
	destCPU float64 // the destination server's CPU seconds during the run
	srcCPU  float64 // the source server's CPU seconds, its RDB child included; NaN when not measured
}

// child runs a process to completion and measures it: wall time, CPU from the kernel's
// accounting of the child (getrusage), and peak RSS from its own VmHWM (watchHWM). env is
// added to the child's environment.
func child(ctx context.Context, name string, args []string, stdout *bytes.Buffer, env ...string) (measure, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if stdout == nil {
		cmd.Stdout = &stderr
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return measure{}, err
	}
	hwm := watchHWM(cmd.Process.Pid)
	err := cmd.Wait()
	m := measure{wall: time.Since(start).Seconds(), rssMB: hwm(), srcCPU: nan}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			m.cpu = tv(ru.Utime) + tv(ru.Stime)
		}
	}
	if err != nil {
		return m, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, tail(stderr.String(), 3000))
	}
	return m, nil
}

// watchHWM samples the peak RSS (VmHWM) of a running process every 10 ms; the returned
// function stops sampling and gives the highest value seen, in MiB. (getrusage's maxrss
// of a child is no use here: Linux counts in it the parent's memory at the fork.) Only
// a peak within the last 10 ms of the process's life can be missed.
func watchHWM(pid int) func() float64 {
	stop := make(chan struct{})
	done := make(chan float64, 1)
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	go func() {
		var peak float64
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if b, err := os.ReadFile(path); err == nil {
				if i := bytes.Index(b, []byte("VmHWM:")); i >= 0 {
					f := strings.Fields(string(b[i+len("VmHWM:"):]))
					if len(f) > 0 {
						kb, _ := strconv.ParseFloat(f[0], 64)
						peak = max(peak, kb/1024)
					}
				}
			}
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() float64 { close(stop); return <-done }
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// cpuMeter is a destination whose CPU seconds can be read: a server or a cluster.
type cpuMeter interface {
	cpu(ctx context.Context) (float64, error)
}

// withDestCPU wraps a run with the destination's CPU accounting.
func withDestCPU(ctx context.Context, dst cpuMeter, run func() (measure, error)) (measure, error) {
	before, err := dst.cpu(ctx)
	if err != nil {
		return measure{}, err
	}
	m, err := run()
	if err != nil {
		return m, err
	}
	after, err := dst.cpu(ctx)
	m.destCPU = after - before
	return m, err
}

// withPrecheck, among runFerryFull's env, makes it run the precheck.
const withPrecheck = "precheck"

// runFerryFull: ferry sync --mode full into the (empty) destination, with env added to
// its environment. The precheck is skipped (--skip-precheck) unless env holds
// withPrecheck: it samples the source's write rate for a second once the source has a
// backlog, which says nothing about the sync's speed (it runs once per task, and
// `ferry precheck` runs it alone).
func (b *bench) runFerryFull(ctx context.Context, src, dst *server, env ...string) (measure, error) {
	args := []string{"--skip-precheck"}
	if i := slices.Index(env, withPrecheck); i >= 0 {
		env = slices.Delete(slices.Clone(env), i, i+1)
		args = b.syncFlags
	}
	return withDestCPU(ctx, dst, func() (measure, error) {
		// Each run is a new task (its own name and data directory) into an empty
		// destination, not a resumption of the previous run.
		name, dir := b.newTask()
		defer os.RemoveAll(dir)
		return child(ctx, b.ferry, append([]string{"sync", "--source", src.url(), "--target", dst.url(), "--task", name,
			"--mode", "full", "--no-progress", "--log-level", "warn", "--data-dir", dir}, args...), nil, env...)
	})
}

// runFerryCluster: ferry sync --mode full into the (empty) cluster, given one node.
func (b *bench) runFerryCluster(ctx context.Context, src *server, dst *cluster) (measure, error) {
	return withDestCPU(ctx, dst, func() (measure, error) {
		name, dir := b.newTask()
		defer os.RemoveAll(dir)
		return child(ctx, b.ferry, []string{"sync", "--source", src.url(), "--target", dst.nodes[0].url(), "--task", name,
			"--mode", "full", "--no-progress", "--log-level", "warn", "--data-dir", dir, "--skip-precheck"}, nil)
	})
}

// runReplayCluster: the RESTORE replay into the cluster, each master's keys over its own
// connection, all at once.
func (b *bench) runReplayCluster(ctx context.Context, dst *cluster, rs *replaySet) (measure, error) {
	return withDestCPU(ctx, dst, func() (measure, error) {
		start := time.Now()
		errc := make(chan error, len(dst.nodes))
		results := make([]measure, len(dst.nodes))
		for i, s := range dst.nodes {
			go func() {
				var err error
				results[i], err = child(ctx, b.self, []string{"-replay", rs.clusterParts[i], "-addr", s.addr(),
					"-n", strconv.FormatInt(rs.clusterN[i], 10)}, &bytes.Buffer{})
				errc <- err
			}()
		}
		var err error
		for range dst.nodes {
			err = errors.Join(err, <-errc)
		}
		m := measure{wall: time.Since(start).Seconds(), srcCPU: nan}
		for _, r := range results {
			m.cpu += r.cpu
			m.rssMB = max(m.rssMB, r.rssMB)
		}
		return m, err
	})
}

// newTask names a fresh Ferry task and its data directory.
func (b *bench) newTask() (name, dir string) {
	b.tasks++
	name = fmt.Sprintf("bench-%d-%d", os.Getpid(), b.tasks)
	return name, filepath.Join(b.root, "data-"+name)
}

// runFerryFile: ferry rdb restore of the source's RDB file into the (empty) destination:
// Ferry's loader alone, against the replay of the same payloads. extra are more flags.
func (b *bench) runFerryFile(ctx context.Context, file string, dst *server, extra ...string) (measure, error) {
	return withDestCPU(ctx, dst, func() (measure, error) {
		return child(ctx, b.ferry, append([]string{"rdb", "restore", file, "--target", dst.url(), "--no-progress", "--log-level", "warn"}, extra...), nil)
	})
}

// runLoadSync: the sync child, Ferry's replica and loader over conns connections.
func (b *bench) runLoadSync(ctx context.Context, src, dst *server, conns int) (measure, error) {
	return withDestCPU(ctx, dst, func() (measure, error) {
		return child(ctx, b.self, []string{"-loadsync", src.addr(), "-addr", dst.addr(), "-conns", strconv.Itoa(conns)}, nil)
	})
}

// runIdeal: the RDB sink and the RESTORE replay at the same time. No sync can beat it on
// this machine: the source must make its RDB while the destination restores the keys,
// and here both share the same cores; the clients in between do no work at all.
func (b *bench) runIdeal(ctx context.Context, src, dst *server, rs *replaySet) (measure, error) {
	return withDestCPU(ctx, dst, func() (measure, error) {
		start := time.Now()
		var sink measure
		sinkErr := make(chan error, 1)
		go func() {
			var err error
			sink, err = b.runRDBOnly(ctx, src)
			sinkErr <- err
		}()
		m, err := child(ctx, b.self, []string{"-replay", rs.one, "-addr", dst.addr(), "-n", strconv.FormatInt(rs.n, 10)}, nil)
		if err2 := <-sinkErr; err == nil {
			err = err2
		}
		m.wall = time.Since(start).Seconds()
		m.cpu += sink.cpu
		m.rssMB = max(m.rssMB, sink.rssMB)
		return m, err
	})
}

// runRDBOnly: a replica that discards the RDB (the sink child): the source's share of
// any full sync through replication, and so its floor.
func (b *bench) runRDBOnly(ctx context.Context, src *server) (measure, error) {
	var out bytes.Buffer
	m, err := child(ctx, b.self, []string{"-sink", src.addr()}, &out)
	m.destCPU = nan
	return m, err
}

// replayConns is how many connections the multi-connection replay uses, as many as
// Ferry's loader by default.
const replayConns = 4

// runReplay: the pipelined RESTORE replay child, over one connection or replayConns.
func (b *bench) runReplay(ctx context.Context, dst *server, rs *replaySet, multi bool) (measure, error) {
	files, counts := rs.one, strconv.FormatInt(rs.n, 10)
	if multi {
		var c []string
		for _, n := range rs.partN {
			c = append(c, strconv.FormatInt(n, 10))
		}
		files, counts = strings.Join(rs.parts, ","), strings.Join(c, ",")
	}
	return withDestCPU(ctx, dst, func() (measure, error) {
		var out bytes.Buffer
		m, err := child(ctx, b.self, []string{"-replay", files, "-addr", dst.addr(), "-n", counts}, &out)
		if err != nil {
			return m, err
		}
		// The replay's own clock excludes process start; use it.
		var got int64
		var secs float64
		if _, err := fmt.Sscan(out.String(), &got, &secs); err != nil {
			return m, fmt.Errorf("replay output %q: %w", out.String(), err)
		}
		m.wall = secs
		return m, nil
	})
}

// runBenchmarkSet: redis-benchmark SET -P 64 of n values of size bytes.
func (b *bench) runBenchmarkSet(ctx context.Context, dst *server, n int64, size int) (measure, error) {
	return withDestCPU(ctx, dst, func() (measure, error) {
		return child(ctx, b.redisBenchmark, []string{"-h", "127.0.0.1", "-p", strconv.Itoa(dst.port),
			"-t", "set", "-n", strconv.FormatInt(n, 10), "-r", strconv.FormatInt(n, 10),
			"-d", strconv.Itoa(size), "-P", "64", "-c", "8", "-q"}, nil)
	})
}

// runNative: REPLICAOF src on the empty destination until the link is up and loaded.
func (b *bench) runNative(ctx context.Context, src, dst *server) (measure, error) {
	m, err := withDestCPU(ctx, dst, func() (measure, error) {
		start := time.Now()
		if _, err := dst.do(ctx, "REPLICAOF", "127.0.0.1", strconv.Itoa(src.port)); err != nil {
			return measure{}, err
		}
		for {
			// INFO is served while a replica loads; polling it costs the server little.
			info, err := dst.info(ctx, "replication")
			if err != nil {
				return measure{}, err
			}
			if info["master_link_status"] == "up" && info["master_sync_in_progress"] == "0" {
				break
			}
			if time.Since(start) > 30*time.Minute {
				return measure{}, errors.New("native replica did not sync in 30 minutes")
			}
			select {
			case <-ctx.Done():
				return measure{}, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		return measure{wall: time.Since(start).Seconds(), cpu: nan, rssMB: nan}, nil
	})
	if _, err2 := dst.do(ctx, "REPLICAOF", "NO", "ONE"); err == nil {
		err = err2
	}
	return m, err
}

// status is the part of Ferry's /status the bench reads.
type status struct {
	Phase         string  `json:"phase"`
	Error         string  `json:"error"`
	SourceOffset  int64   `json:"source_offset"`
	AppliedOffset int64   `json:"applied_offset"`
	LagBytes      int64   `json:"lag_bytes"`
	LagSeconds    float64 `json:"lag_seconds"`
	LagEstimated  bool    `json:"lag_estimated"`
	Commands      int64   `json:"commands"`
}

func getStatus(ctx context.Context, addr string) (status, error) {
	var st status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return st, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return st, fmt.Errorf("/status: %s", res.Status)
	}
	return st, json.NewDecoder(res.Body).Decode(&st)
}

// incrResult is one run of the incremental scenario.
type incrResult struct {
	srcOps, ferryOps float64 // ops/s over the load window
	opsRatio         float64 // ferry applied / source writes over the window
	bytesRatio       float64 // applied offset advance / source offset advance
	latP50, latP99   float64 // heartbeat latency, ms
	lagP50, lagP99   float64 // lag bytes
	catchUp          float64 // seconds from load stop to lag 0
	ferryCPU, rssMB  float64
	destCPU          float64
	samples          int
}

// writeCalls sums the source's calls of the commands redis-benchmark sends.
func writeCalls(ctx context.Context, s *server) (int64, error) {
	m, err := s.info(ctx, "commandstats")
	if err != nil {
		return 0, err
	}
	var n int64
	for _, c := range []string{"set", "lpush", "hset", "incr"} {
		v := m["cmdstat_"+c]
		if i := strings.Index(v, "calls="); i >= 0 {
			f := v[i+len("calls="):]
			if j := strings.IndexByte(f, ','); j >= 0 {
				f = f[:j]
			}
			k, _ := strconv.ParseInt(f, 10, 64)
			n += k
		}
	}
	return n, nil
}

// runIncr: ferry full+incr, then redis-benchmark on the source for dur while the status
// endpoint is sampled; then the load stops, Ferry catches up and is stopped with SIGTERM.
func (b *bench) runIncr(ctx context.Context, src, dst *server, dur time.Duration) (incrResult, error) {
	var r incrResult
	port, err := freePort()
	if err != nil {
		return r, err
	}
	statusAddr := "127.0.0.1:" + strconv.Itoa(port)
	name, dir := b.newTask()
	defer os.RemoveAll(dir)
	cmd := exec.CommandContext(ctx, b.ferry, append([]string{"sync", "--source", src.url(), "--target", dst.url(),
		"--task", name, "--mode", "full+incr", "--no-progress", "--log-level", "warn", "--status-addr", statusAddr,
		"--data-dir", dir}, b.syncFlags...)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		return r, err
	}
	hwm := watchHWM(cmd.Process.Pid)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(err error) (incrResult, error) {
		defer hwm()
		_ = cmd.Process.Kill()
		<-exited
		return r, fmt.Errorf("%w\nferry: %s", err, tail(stderr.String(), 3000))
	}
	// Wait for the incremental phase.
	for {
		st, err := getStatus(ctx, statusAddr)
		if err == nil && st.Phase == "incremental" {
			break
		}
		if err == nil && (st.Phase == "failed" || st.Phase == "stopped") {
			return fail(fmt.Errorf("ferry %s: %s", st.Phase, st.Error))
		}
		select {
		case e := <-exited:
			hwm()
			return r, fmt.Errorf("ferry exited: %v\n%s", e, tail(stderr.String(), 3000))
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Let the first heartbeat arrive, so latency samples are real.
	time.Sleep(1500 * time.Millisecond)

	destCPU0, err := dst.cpu(ctx)
	if err != nil {
		return fail(err)
	}
	st0, err := getStatus(ctx, statusAddr)
	if err != nil {
		return fail(err)
	}
	calls0, err := writeCalls(ctx, src)
	if err != nil {
		return fail(err)
	}
	rep0, err := src.info(ctx, "replication")
	if err != nil {
		return fail(err)
	}
	load := exec.CommandContext(ctx, b.redisBenchmark, "-h", "127.0.0.1", "-p", strconv.Itoa(src.port),
		"-t", "set,lpush,hset,incr", "-P", "16", "-c", "20", "-n", "1000000", "-r", "100000", "-l", "-q")
	load.Stdout, load.Stderr = nil, nil
	t0 := time.Now()
	if err := load.Start(); err != nil {
		return fail(err)
	}
	var lat, lag []float64
	tick := time.NewTicker(200 * time.Millisecond)
	for time.Since(t0) < dur {
		<-tick.C
		st, err := getStatus(ctx, statusAddr)
		if err != nil {
			tick.Stop()
			_ = load.Process.Kill()
			_ = load.Wait()
			return fail(err)
		}
		lat = append(lat, st.LagSeconds*1000)
		lag = append(lag, float64(st.LagBytes))
	}
	tick.Stop()
	// The window ends here: read both sides before stopping the load.
	calls1, err1 := writeCalls(ctx, src)
	st1, err2 := getStatus(ctx, statusAddr)
	rep1, err3 := src.info(ctx, "replication")
	window := time.Since(t0).Seconds()
	_ = load.Process.Kill()
	_ = load.Wait()
	if err := errors.Join(err1, err2, err3); err != nil {
		return fail(err)
	}
	stopped := time.Now()
	for {
		st, err := getStatus(ctx, statusAddr)
		if err != nil {
			return fail(err)
		}
		// Caught up: everything the source had when the window closed is applied.
		if st.AppliedOffset >= intField(rep1, "master_repl_offset") {
			break
		}
		if time.Since(stopped) > 10*time.Minute {
			return fail(errors.New("ferry did not catch up in 10 minutes"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.catchUp = time.Since(stopped).Seconds()
	destCPU1, err := dst.cpu(ctx)
	if err != nil {
		return fail(err)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	err = <-exited
	r.rssMB = hwm()
	if err != nil {
		return r, fmt.Errorf("ferry: %v\n%s", err, tail(stderr.String(), 3000))
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.ferryCPU = tv(ru.Utime) + tv(ru.Stime)
	}
	srcCalls := float64(calls1 - calls0)
	applied := float64(st1.Commands - st0.Commands)
	r.srcOps = srcCalls / window
	r.ferryOps = applied / window
	r.opsRatio = applied / srcCalls
	srcBytes := float64(intField(rep1, "master_repl_offset") - intField(rep0, "master_repl_offset"))
	r.bytesRatio = float64(st1.AppliedOffset-st0.AppliedOffset) / srcBytes
	r.latP50, r.latP99 = percentile(lat, 50), percentile(lat, 99)
	r.lagP50, r.lagP99 = percentile(lag, 50), percentile(lag, 99)
	r.destCPU = destCPU1 - destCPU0
	r.samples = len(lat)
	return r, nil
}

// sameData checks the destination against the source: key counts, and DEBUG DIGEST when
// digest is set (it walks the whole dataset, so it runs once per dataset).
func sameData(ctx context.Context, src, dst *server, digest bool) error {
	// Ferry's own keys (checkpoints) are not data; drop them before comparing.
	if err := dst.deletePrefix(ctx, "ferry:"); err != nil {
		return err
	}
	a, err := src.dbsize(ctx)
	if err != nil {
		return err
	}
	b, err := dst.dbsize(ctx)
	if err != nil {
		return err
	}
	if a != b {
		return fmt.Errorf("destination has %d keys, source %d", b, a)
	}
	if !digest {
		return nil
	}
	da, err := src.digest(ctx)
	if err != nil {
		return err
	}
	db, err := dst.digest(ctx)
	if err != nil {
		return err
	}
	if da != db {
		return fmt.Errorf("DEBUG DIGEST differs: source %s, destination %s", da, db)
	}
	return nil
}

var nan = func() float64 { var z float64; return z / z }()

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
