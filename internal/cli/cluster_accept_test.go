package cli

// Acceptance of issue 6 for a standalone source and a 3-master cluster destination, through
// `ferry sync` as a user runs it (flags, precheck, status endpoint, metrics): whole-dataset
// commands and functions, a reshard and a failover of the destination under load, and the
// full-sync throughput against a standalone destination (a benchmark).

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/testutil"
)

// syncRun is a `ferry sync` running in the background with its status endpoint on.
type syncRun struct {
	t      *testing.T
	status string // host:port of /status and /metrics
	cancel context.CancelFunc
	done   chan int
	code   int
	exited bool
	out    syncBuffer
	errs   syncBuffer
}

// startSync runs `ferry sync` from src to target (any node of a cluster, or a server) with
// the status endpoint on a free port; extra flags are appended. It is stopped when the test
// ends if the test has not stopped it.
func startSync(t *testing.T, src *testutil.Server, target string, extra ...string) *syncRun {
	t.Helper()
	r := &syncRun{t: t, status: freeAddr(t), done: make(chan int, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	args := append([]string{"sync", "--source", "redis://" + src.Addr(), "--target", "redis://" + target,
		"--data-dir", t.TempDir(), "--status-addr", r.status, "--no-progress", "--accept-warnings"}, extra...)
	go func() { r.done <- Main(ctx, args, &r.out, &r.errs) }()
	t.Cleanup(func() {
		if !r.exited {
			cancel()
			select {
			case <-r.done:
			case <-time.After(30 * time.Second):
				t.Errorf("ferry sync did not stop within 30 s of cancellation")
			}
		}
	})
	return r
}

// fail stops the test with the command's stderr, which holds its log.
func (r *syncRun) fail(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf(format+"\nferry sync stderr:\n%s", append(args, tail(r.errs.String(), 60))...)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exitedEarly reports, without blocking, whether the command has exited.
func (r *syncRun) exitedEarly() bool {
	if r.exited {
		return true
	}
	select {
	case r.code = <-r.done:
		r.exited = true
		return true
	default:
		return false
	}
}

// getStatus reads /status.
func (r *syncRun) getStatus() (task.Status, error) {
	var st task.Status
	err := getJSON("http://"+r.status+"/status", &st)
	return st, err
}

// waitStatus polls /status until ok says yes, and fails the test after timeout or when the
// command exits meanwhile.
func (r *syncRun) waitStatus(what string, timeout time.Duration, ok func(task.Status) bool) task.Status {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var st task.Status
	var err error
	for {
		if r.exitedEarly() {
			r.fail("ferry sync exited with code %d while waiting for %s", r.code, what)
		}
		st, err = r.getStatus()
		if err == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			r.fail("waiting for %s: not within %v; last status %+v (error %v)", what, timeout, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metrics scrapes /metrics into series → value, keyed by the exposition text's series name
// with its labels as written, e.g. `ferry_cluster_redirects_total{kind="moved"}`.
func (r *syncRun) metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + r.status + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics line %q: %w", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// metric returns the sum of the series named name whose labels contain every one of labels
// (each written as in the exposition text, e.g. `kind="moved"`).
func metric(m map[string]float64, name string, labels ...string) float64 {
	sum := 0.0
	for series, v := range m {
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		all := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				all = false
			}
		}
		if all {
			sum += v
		}
	}
	return sum
}

// mustMetrics scrapes /metrics or fails the test.
func (r *syncRun) mustMetrics() map[string]float64 {
	r.t.Helper()
	m, err := r.metrics()
	if err != nil {
		r.fail("scrape: %v", err)
	}
	return m
}

// slowFull is the snapshot rate (keys per second) the tests start with, so that what they
// do "during the full phase" surely happens in it, whatever the machine's load; they lift
// it with unthrottleFull once done.
const slowFull = "200"

// unthrottleFull lifts the full phase's limit at run time (PUT /throttle), so that the rest
// of the snapshot goes at full speed.
func (r *syncRun) unthrottleFull() {
	r.t.Helper()
	req, err := http.NewRequest(http.MethodPut, "http://"+r.status+"/throttle", strings.NewReader(`{"full": {"max_ops": 0}}`))
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.fail("PUT /throttle: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		r.fail("PUT /throttle: %s", resp.Status)
	}
}

// stop cancels the command (SIGINT in the binary) and requires a clean exit.
func (r *syncRun) stop() {
	r.t.Helper()
	r.cancel()
	if !r.exited {
		select {
		case r.code = <-r.done:
			r.exited = true
		case <-time.After(30 * time.Second):
			r.fail("ferry sync did not stop within 30 s of cancellation")
		}
	}
	if r.code != ExitOK {
		r.fail("ferry sync exited with code %d", r.code)
	}
}

// waitAckedBy waits until a replica of src (Ferry) has acknowledged src's replication offset
// as it is now, and returns that offset: Ferry acknowledges only what the destination has
// applied, so everything written to src before the call is then on the destination.
func waitAckedBy(r *syncRun, src *testutil.Server) int64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := testutil.Replication(ctx, src)
	if err != nil {
		r.t.Fatal(err)
	}
	want := st.MasterOffset
	for {
		if r.exitedEarly() {
			r.fail("ferry sync exited with code %d before acknowledging offset %d", r.code, want)
		}
		last, err := testutil.Replication(ctx, src)
		if err != nil {
			r.fail("waiting for offset %d to be acknowledged: %v", want, err)
		}
		for _, rep := range last.Replicas {
			if rep.State == "online" && rep.Offset >= want {
				return want
			}
		}
		select {
		case <-ctx.Done():
			r.fail("ferry did not acknowledge the source's offset %d within 60 s: %+v", want, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// bgLoad is a workload running against the source in the background.
type bgLoad struct {
	cancel context.CancelFunc
	done   chan struct{}
	ops    int
	err    error
}

func startBGLoad(w *testutil.Workload, src *testutil.Server, opsPerSec int) *bgLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &bgLoad{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		l.ops, l.err = w.Run(ctx, src, opsPerSec)
	}()
	return l
}

func (l *bgLoad) stop(t *testing.T) int {
	t.Helper()
	l.cancel()
	<-l.done
	if l.err != nil {
		t.Fatalf("load on the source: %v", l.err)
	}
	return l.ops
}

// keysOn returns n key names with prefix whose slots master serves.
func keysOn(c *testutil.Cluster, master *testutil.Server, prefix string, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if k := prefix + strconv.Itoa(i); c.MasterForKey(k) == master {
			out = append(out, k)
		}
	}
	return out
}

// dataKeys lists the keys of master that are not Ferry's own.
func dataKeys(t *testing.T, master *testutil.Server) []string {
	t.Helper()
	var out []string
	for _, k := range master.Do(t, "KEYS", "*").Elems {
		if !strings.HasPrefix(string(k.Str), task.KeyPrefix) {
			out = append(out, string(k.Str))
		}
	}
	return out
}

// libraries returns FUNCTION LIST WITHCODE of s as library name → code.
func libraries(t *testing.T, s *testutil.Server) map[string]string {
	t.Helper()
	out := make(map[string]string)
	for _, lib := range s.Do(t, "FUNCTION", "LIST", "WITHCODE").Elems {
		var name, code string
		for i := 0; i+1 < len(lib.Elems); i += 2 {
			switch string(lib.Elems[i].Str) {
			case "library_name":
				name = string(lib.Elems[i+1].Str)
			case "library_code":
				code = string(lib.Elems[i+1].Str)
			}
		}
		out[name] = code
	}
	return out
}

// skipOwn leaves Ferry's own keys (checkpoint, progress, heartbeat, co-location temporaries)
// out of comparisons.
var skipOwn = testutil.CompareOptions{SkipPrefixes: []string{task.KeyPrefix}}

// Function libraries for TestSyncClusterFlushAndFunctions: one in the snapshot, one loaded
// during the full phase, one in the incremental phase. Each has a writing function over any
// number of keys and a read-only one, which proves on each destination master that the
// library is there and callable.
const (
	libSnap = "#!lua name=accsnap\n" +
		"redis.register_function('accsnap_set', function(keys, args) for _, k in ipairs(keys) do redis.call('SET', k, args[1]) end return #keys end)\n" +
		"redis.register_function{function_name='accsnap_peek', callback=function(keys) return redis.call('EXISTS', keys[1]) end, flags={'no-writes'}}"
	libFull = "#!lua name=accfull\n" +
		"redis.register_function('accfull_add', function(keys, args) for i, k in ipairs(keys) do redis.call('HINCRBY', k, 'n', args[1]); redis.call('SADD', k .. ':members', i) end return #keys end)\n" +
		"redis.register_function{function_name='accfull_peek', callback=function(keys) return redis.call('EXISTS', keys[1]) end, flags={'no-writes'}}"
	libIncr = "#!lua name=accincr\n" +
		"redis.register_function('accincr_push', function(keys, args) for i, k in ipairs(keys) do redis.call('RPUSH', k, args[1], i); redis.call('ZADD', k .. ':z', i, args[1]) end return #keys end)\n" +
		"redis.register_function{function_name='accincr_peek', callback=function(keys) return redis.call('EXISTS', keys[1]) end, flags={'no-writes'}}"
)

// TestSyncClusterFlushAndFunctions: FLUSHALL and FUNCTION LOAD on the source reach every
// master of a cluster destination, both while Ferry applies the snapshot (the full phase is
// throttled so that the commands land in it) and in the incremental phase. After each
// FLUSHALL no master holds any key of before; every master has exactly the source's libraries
// (the snapshot's included) and can call them; FCALLs writing keys on every master, one key
// per call and all masters' keys in one call, replicate identically (per-key DEBUG
// DIGEST-VALUE and TTL presence), and so does a workload (scripts, functions, transactions,
// cross-slot commands) run after the second FLUSHALL, exactly.
func TestSyncClusterFlushAndFunctions(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	masters := dst.Masters()

	src.Do(t, "FUNCTION", "LOAD", libSnap)
	pre := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 61, TTL: true, Keys: 1500, Prefix: "pre:"})
	if err := pre.Fill(ctx, src, 4000); err != nil {
		t.Fatal(err)
	}
	snapKeys := src.Do(t, "DBSIZE").Int

	r := startSync(t, src, dst.Addrs()[0], "--full-max-ops", slowFull)
	r.waitStatus("the full phase applying keys", 30*time.Second, func(st task.Status) bool {
		return st.Phase == task.PhaseFull && st.FullKeys > 0
	})
	src.Do(t, "FLUSHALL")
	src.Do(t, "FUNCTION", "LOAD", libFull)
	var fullKeys []string // keys on every master, written after the flush
	for _, m := range masters {
		fullKeys = append(fullKeys, keysOn(dst, m, "full:", 3)...)
	}
	for _, k := range fullKeys {
		src.Do(t, "FCALL", "accfull_add", 1, k, 7)
	}
	src.Do(t, fcall("accfull_add", fullKeys, 3)...)
	st, err := r.getStatus()
	if err != nil {
		r.fail("status: %v", err)
	}
	if st.Phase != task.PhaseFull || st.FullKeys >= snapKeys {
		r.fail("the FLUSHALL and FUNCTION LOAD were meant to come during the full phase, but the status then was %s with %d of %d snapshot keys applied",
			st.Phase, st.FullKeys, snapKeys)
	}
	t.Logf("FLUSHALL and FUNCTION LOAD sent in the full phase, %d of %d snapshot keys applied", st.FullKeys, snapKeys)
	r.unthrottleFull()

	r.waitStatus("the incremental phase", 60*time.Second, func(st task.Status) bool { return st.Phase == task.PhaseIncremental })
	waitAckedBy(r, src)
	for _, m := range masters {
		for _, k := range dataKeys(t, m) {
			if strings.HasPrefix(k, "pre:") {
				r.fail("%s still holds snapshot key %q after the FLUSHALL sent during the full phase", m, k)
			}
		}
	}
	testutil.RequireSameData(t, src, dst, skipOwn)
	requireLibraries(t, src, dst, "accsnap", "accfull")

	// Incremental phase: every master holds keys, then FLUSHALL empties them all.
	mid := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 62, TTL: true, Keys: 800, Prefix: "mid:"})
	if err := mid.Fill(ctx, src, 2000); err != nil {
		t.Fatal(err)
	}
	waitAckedBy(r, src)
	for _, m := range masters {
		if len(dataKeys(t, m)) == 0 {
			r.fail("%s holds no key before the incremental FLUSHALL: the test would prove nothing", m)
		}
	}
	src.Do(t, "FLUSHALL")
	waitAckedBy(r, src)
	for _, m := range masters {
		if keys := dataKeys(t, m); len(keys) != 0 {
			r.fail("%s holds %d keys after the incremental FLUSHALL, e.g. %q", m, len(keys), keys[0])
		}
	}
	src.Do(t, "FUNCTION", "LOAD", libIncr)
	var incrKeys []string
	for _, m := range masters {
		incrKeys = append(incrKeys, keysOn(dst, m, "incr:", 3)...)
	}
	for i, k := range incrKeys {
		src.Do(t, "FCALL", "accincr_push", 1, k, "one-"+strconv.Itoa(i))
		src.Do(t, "FCALL", "accsnap_set", 1, k+":s", "snap-"+strconv.Itoa(i))
	}
	src.Do(t, fcall("accincr_push", incrKeys, "all")...)
	post := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 63, TTL: true, Keys: 800, Prefix: "post:"})
	l := startBGLoad(post, src, 1500)
	time.Sleep(1500 * time.Millisecond)
	ops := l.stop(t)
	waitAckedBy(r, src)
	m := r.mustMetrics()
	r.stop()

	t.Logf("%d workload ops after the second FLUSHALL; router: %v broadcasts, %v commands, %v split, %v per-slot transactions",
		ops, metric(m, "ferry_cluster_broadcast_total"), metric(m, "ferry_cluster_commands_total"),
		metric(m, "ferry_cluster_split_total"), metric(m, "ferry_cluster_transactions_total", `how="per_slot"`))
	// Two FLUSHALLs and two FUNCTION LOADs at least (the workload's own library load, when
	// it came through the stream, is a third).
	if b := metric(m, "ferry_cluster_broadcast_total"); b < 4 {
		t.Errorf("ferry_cluster_broadcast_total = %v, want at least 4 (2 FLUSHALL, 2 FUNCTION LOAD)", b)
	}
	for _, k := range incrKeys {
		if n := dst.MasterForKey(k).Do(t, "LLEN", k).Int; n != 4 {
			t.Errorf("%s on %s: LLEN %d, want 4 (two elements from the FCALL for the key, two from the one for all keys)", k, dst.MasterForKey(k), n)
		}
	}
	testutil.RequireSameData(t, src, dst, skipOwn)
	if err := post.VerifyExact(ctx, dst); err != nil {
		t.Fatal(err)
	}
	requireLibraries(t, src, dst, "accsnap", "accfull", "accincr")
}

// fcall builds FCALL fn with keys and args.
func fcall(fn string, keys []string, args ...any) []any {
	out := []any{"FCALL", fn, len(keys)}
	for _, k := range keys {
		out = append(out, k)
	}
	return append(out, args...)
}

// requireLibraries checks that every master of dst has exactly the source's function
// libraries, code included, that want are among them, and that each of want's read-only
// functions runs on every master, for a key that master serves.
func requireLibraries(t *testing.T, src *testutil.Server, dst *testutil.Cluster, want ...string) {
	t.Helper()
	libs := libraries(t, src)
	for _, name := range want {
		if _, ok := libs[name]; !ok {
			t.Fatalf("the source has no library %q: %v", name, slices.Collect(mapKeys(libs)))
		}
	}
	for _, m := range dst.Masters() {
		got := libraries(t, m)
		if len(got) != len(libs) {
			t.Fatalf("%s has libraries %v, the source %v", m, slices.Sorted(mapKeys(got)), slices.Sorted(mapKeys(libs)))
		}
		for name, code := range libs {
			if got[name] != code {
				t.Fatalf("%s: library %q differs from the source's (%d bytes of code there, %d here)", m, name, len(code), len(got[name]))
			}
		}
		key := keysOn(dst, m, "peek:", 1)[0]
		for _, name := range want {
			if _, err := m.Call(context.Background(), "FCALL_RO", name+"_peek", 1, key); err != nil {
				t.Fatalf("%s: FCALL_RO %s_peek: %v", m, name, err)
			}
		}
	}
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// crossSlotCommands are the non-separable multi-key commands the issue names; the workload
// generates them over keys of different slots about half the time.
var crossSlotCommands = []string{"RENAME", "SMOVE", "LMOVE", "SUNIONSTORE", "ZUNIONSTORE", "PFMERGE", "COPY"}

// requireMix checks that the workloads generated the full mix: the cross-slot commands,
// splittable multi-key commands, transactions, scripts and functions.
func requireMix(t *testing.T, ws ...*testutil.Workload) {
	t.Helper()
	total := map[string]int{}
	for _, w := range ws {
		for name, n := range w.Stats() {
			total[name] += n
		}
	}
	for _, name := range append([]string{"MSET", "DEL", "MULTI", "FCALL"}, crossSlotCommands...) {
		if total[name] == 0 {
			t.Errorf("the workload generated no %s: %v", name, total)
		}
	}
	if total["EVAL"]+total["EVALSHA"] == 0 {
		t.Errorf("the workload generated no script: %v", total)
	}
}

// requireCrossSlotHandled checks, from the router's metrics, that commands over several
// slots were split, co-located and applied as per-slot transactions.
func requireCrossSlotHandled(t *testing.T, m map[string]float64) {
	t.Helper()
	if metric(m, "ferry_cluster_split_total") == 0 {
		t.Errorf("no command was split per slot")
	}
	// In exactly-once delivery (the default) the source's transactions lie inside the
	// task's batches, which the router applies as one transaction per slot with that slot's
	// checkpoint; in at-least-once delivery they are split per slot themselves.
	if metric(m, "ferry_cluster_transactions_total", `how="per_slot"`) == 0 && metric(m, "ferry_cluster_slot_transactions_total") == 0 {
		t.Errorf("no transaction was applied per slot")
	}
	co := map[string]float64{}
	for _, name := range crossSlotCommands {
		co[name] = metric(m, "ferry_cluster_colocated_total", `cmd="`+strings.ToLower(name)+`"`)
	}
	t.Logf("co-located: %v", co)
	sum := 0.0
	for _, v := range co {
		sum += v
	}
	if sum == 0 {
		t.Errorf("no cross-slot command was co-located: %v", co)
	}
}

// TestSyncClusterReshard reshards the destination while `ferry sync` applies a workload of
// every type running on the source (cross-slot multi-key commands, transactions, scripts
// and functions included; during the full phase and after): 500 slots between the two
// masters that do not hold Ferry's own keys while the snapshot is applied, then 1000 slots,
// the own keys' slot among them, away from the master holding them in the incremental
// phase. Ferry must have followed MOVED (slots that moved) and ASK (a key of a slot held
// migrating), as its metrics say; the cluster ends identical to the source (per-key DEBUG
// DIGEST-VALUE and TTL presence), with every counter and append-only list exact, and the
// checkpoint on its new owner at least at the offset acknowledged before the stop.
func TestSyncClusterReshard(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 71, TTL: true, Large: true, Keys: 2000})
	if err := fill.Fill(ctx, src, 5000); err != nil {
		t.Fatal(err)
	}
	snapKeys := src.Do(t, "DBSIZE").Int
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 72, TTL: true, Keys: 1500, Prefix: "live:"})
	l := startBGLoad(live, src, 1500)
	// Throttled so that the first reshard lands in the full phase.
	r := startSync(t, src, dst.Addrs()[0], "--full-max-ops", slowFull)
	st := r.waitStatus("the full phase applying keys", 30*time.Second, func(st task.Status) bool {
		return st.Phase == task.PhaseFull && st.FullKeys > 0
	})
	ownSlot := int(command.SlotString(ownKey(st.Task)))
	own := dst.MasterForSlot(ownSlot)
	var others []*testutil.Server
	for _, m := range dst.Masters() {
		if m != own {
			others = append(others, m)
		}
	}

	// Full phase: 500 slots between the two masters that do not hold Ferry's own keys,
	// while the snapshot's RESTOREs and chunked writes go to them.
	start := time.Now()
	movedFull := dst.Reshard(t, others[0], others[1], 500, testutil.ReshardOptions{})
	tookFull := time.Since(start)
	st, err := r.getStatus()
	if err != nil {
		r.fail("status: %v", err)
	}
	if st.Phase != task.PhaseFull || st.FullKeys >= snapKeys {
		r.fail("the first reshard was meant to happen in the full phase; the status after it: %s, %d of %d snapshot keys", st.Phase, st.FullKeys, snapKeys)
	}
	r.unthrottleFull()
	m := r.mustMetrics()
	t.Logf("full phase: moved %d slots from %s to %s in %v (%d of %d snapshot keys applied); so far %v MOVED, %v ASK",
		len(movedFull), others[0], others[1], tookFull, st.FullKeys, snapKeys,
		metric(m, "ferry_cluster_redirects_total", `kind="moved"`), metric(m, "ferry_cluster_redirects_total", `kind="ask"`))

	// Incremental phase: 1000 slots away from the master holding Ferry's own keys, their
	// slot among them, the first of them held migrating until Ferry has followed an ASK.
	r.waitStatus("the incremental phase", 60*time.Second, func(st task.Status) bool { return st.Phase == task.PhaseIncremental })
	m = r.mustMetrics()
	t.Logf("at the start of the incremental phase: %v MOVED, %v ASK", metric(m, "ferry_cluster_redirects_total", `kind="moved"`), metric(m, "ferry_cluster_redirects_total", `kind="ask"`))
	st = r.waitStatus("stream commands applied", 30*time.Second, func(st task.Status) bool { return st.Commands > 1000 })
	from, to := own, others[0]
	slots, err := dst.LastSlots(from, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(slots, ownSlot) {
		slots = append(slots[1:], ownSlot)
		slices.Sort(slots)
	}
	var probe string
	rctx, cancel := context.WithTimeout(ctx, testutil.DefaultReshardTimeout)
	defer cancel()
	start = time.Now()
	// The first slot is held migrating until Ferry has followed an ASK, with the load
	// paused and Ferry caught up. In exactly-once delivery a slot's share of a batch that
	// creates a key is a transaction with the slot's checkpoint; during the slot's migration
	// the nodes answer it TRYAGAIN (some of its keys moved, some not) until the migration
	// ends, so a live write to the held slot would stall the stream for as long as the hook
	// holds it. (A real reshard finishes each slot in milliseconds and the TRYAGAIN resolves.)
	// The other 999 slots then move under load.
	paused := l.stop(t)
	waitAckedBy(r, src)
	err = dst.MoveSlots(rctx, from, to, slots[:1], testutil.ReshardOptions{
		Midway: func(ctx context.Context, slot int) error {
			// A new key of the migrating slot: from no longer holds anything of it and
			// answers ASK, which Ferry must follow to to.
			for i := 0; probe == ""; i++ {
				if k := "askprobe:" + strconv.Itoa(i); int(command.SlotString(k)) == slot {
					probe = k
				}
			}
			if _, err := src.Call(ctx, "SET", probe, "asked"); err != nil {
				return err
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				m, err := r.metrics()
				if err != nil {
					return err
				}
				if metric(m, "ferry_cluster_redirects_total", `kind="ask"`) > 0 {
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("ferry followed no ASK within 20 s of writing %s in migrating slot %d", probe, slot)
				}
				time.Sleep(10 * time.Millisecond)
			}
		},
	})
	if err != nil {
		r.fail("reshard in the incremental phase, the held slot: %v", err)
	}
	l = startBGLoad(live, src, 1500)
	if err := dst.MoveSlots(rctx, from, to, slots[1:], testutil.ReshardOptions{}); err != nil {
		r.fail("reshard in the incremental phase: %v", err)
	}
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond) // writes to the moved slots' old owner meet MOVED
	ops := paused + l.stop(t)
	acked := waitAckedBy(r, src)
	m = r.mustMetrics()
	end, err := r.getStatus()
	if err != nil {
		r.fail("status: %v", err)
	}
	r.stop()

	movedN, askN := metric(m, "ferry_cluster_redirects_total", `kind="moved"`), metric(m, "ferry_cluster_redirects_total", `kind="ask"`)
	t.Logf("incremental phase: moved %d slots from %s to %s in %v; %d source ops in all (%d stream commands before the second reshard); ferry followed %v MOVED, %v ASK in %v episodes, %v topology refreshes; %d retries",
		len(slots), from, to, took, ops, st.Commands, movedN, askN, metric(m, "ferry_cluster_redirect_episodes_total"), metric(m, "ferry_cluster_topology_refreshes_total"), end.Retries)
	if movedN == 0 || askN == 0 {
		t.Errorf("redirects followed: %v MOVED, %v ASK; want both", movedN, askN)
	}
	if dst.MasterForKey(probe) != to {
		t.Errorf("the probe key %s is not in a moved slot", probe)
	}
	if v := to.Do(t, "GET", probe); string(v.Str) != "asked" {
		t.Errorf("%s on the new owner %s: %q", probe, to, v.Str)
	}
	// Ferry's checkpoint moved with its slot and kept advancing there: a restart resumes
	// from where the clean stop left off.
	ck := to.Do(t, "GET", ownKey(end.Task))
	if f := strings.Fields(string(ck.Str)); len(f) < 2 {
		t.Errorf("checkpoint %s on %s: %q", ownKey(end.Task), to, ck.Str)
	} else if off, err := strconv.ParseInt(f[1], 10, 64); err != nil || off < acked {
		t.Errorf("checkpoint %s on %s after the clean stop: %q, want an offset of at least %d (acknowledged before the stop)", ownKey(end.Task), to, ck.Str, acked)
	}
	requireMix(t, fill, live)
	requireCrossSlotHandled(t, m)
	testutil.RequireSameData(t, src, dst, skipOwn)
	for _, w := range []*testutil.Workload{fill, live} {
		if err := w.VerifyExact(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSyncClusterFailover fails a destination master over to its replica (CLUSTER FAILOVER)
// while `ferry sync` applies the snapshot, and another one in the incremental phase, with a
// workload of every type on the source throughout. Ferry must have followed the MOVED the
// demoted masters answer, and the cluster ends identical to the source, every counter and
// append-only list exact.
func TestSyncClusterFailover(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 81, TTL: true, Large: true, Keys: 2000})
	if err := fill.Fill(ctx, src, 5000); err != nil {
		t.Fatal(err)
	}
	snapKeys := src.Do(t, "DBSIZE").Int
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 82, TTL: true, Keys: 1500, Prefix: "live:"})
	l := startBGLoad(live, src, 1500)
	// Throttled so that the failover lands in the full phase.
	r := startSync(t, src, dst.Addrs()[0], "--full-max-ops", slowFull)

	st := r.waitStatus("the full phase applying keys", 30*time.Second, func(st task.Status) bool {
		return st.Phase == task.PhaseFull && st.FullKeys > 0
	})
	// The master holding Ferry's own keys (checkpoint, full-sync progress, marker, all under
	// the task's hash tag): the one whose failover asks the most of the task.
	first := dst.MasterForKey(ownKey(st.Task))
	start := time.Now()
	promoted1 := dst.Failover(t, first)
	tookFull := time.Since(start)
	st, err := r.getStatus()
	if err != nil {
		r.fail("status: %v", err)
	}
	if st.Phase != task.PhaseFull || st.FullKeys >= snapKeys {
		r.fail("the first failover was meant to happen during the full phase; the status after it: %s, %d of %d snapshot keys", st.Phase, st.FullKeys, snapKeys)
	}
	r.unthrottleFull()
	m := r.mustMetrics()
	t.Logf("failover of %s to %s in the full phase took %v (%d of %d snapshot keys applied); MOVED so far %v",
		first, promoted1, tookFull, st.FullKeys, snapKeys, metric(m, "ferry_cluster_redirects_total", `kind="moved"`))

	r.waitStatus("the incremental phase", 60*time.Second, func(st task.Status) bool { return st.Phase == task.PhaseIncremental })
	before := r.waitStatus("stream commands applied", 30*time.Second, func(st task.Status) bool { return st.Commands > 500 }).Commands
	// The master holding Ferry's own keys now (after the first failover, the promoted
	// replica, which then hands them back to the master it replaced).
	second := dst.MasterForKey(ownKey(st.Task))
	start = time.Now()
	promoted2 := dst.Failover(t, second)
	tookIncr := time.Since(start)
	r.waitStatus("stream commands after the second failover", 30*time.Second, func(st task.Status) bool { return st.Commands > before+500 })
	ops := l.stop(t)
	waitAckedBy(r, src)
	m = r.mustMetrics()
	end, err := r.getStatus()
	if err != nil {
		r.fail("status: %v", err)
	}
	r.stop()

	movedN := metric(m, "ferry_cluster_redirects_total", `kind="moved"`)
	t.Logf("failover of %s to %s in the incremental phase took %v; %d source ops; ferry followed %v MOVED, %v TRYAGAIN, %v CLUSTERDOWN in %v episodes; %d retries, sessions: %d full, %d partial",
		second, promoted2, tookIncr, ops, movedN, metric(m, "ferry_cluster_redirects_total", `kind="tryagain"`),
		metric(m, "ferry_cluster_redirects_total", `kind="clusterdown"`), metric(m, "ferry_cluster_redirect_episodes_total"),
		end.Retries, end.FullSyncs, end.PartialSyncs)
	if movedN == 0 {
		t.Errorf("ferry followed no MOVED across two failovers")
	}
	if slices.Contains(dst.Masters(), second) || !slices.Contains(dst.Masters(), promoted2) {
		t.Errorf("after the failover of %s to %s the masters are %v", second, promoted2, dst.Masters())
	}
	requireMix(t, fill, live)
	testutil.RequireSameData(t, src, dst, skipOwn)
	for _, w := range []*testutil.Workload{fill, live} {
		if err := w.VerifyExact(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSyncClusterFullFailoverOwnKeys is the smallest case of TestSyncClusterFailover's
// first failover: `ferry sync --mode full` of plain strings, no load, and the master holding
// Ferry's own keys (under the task's hash tag) fails over to its replica while the snapshot
// is applied. The sync must end cleanly with every key on the cluster.
func TestSyncClusterFullFailoverOwnKeys(t *testing.T) {
	src := testutil.StartServer(t)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	src.Do(t, "DEBUG", "POPULATE", 3000, "k", 10)
	r := startSync(t, src, dst.Addrs()[0], "--mode", "full", "--full-max-ops", slowFull)
	st := r.waitStatus("the full phase applying keys", 30*time.Second, func(st task.Status) bool {
		return st.Phase == task.PhaseFull && st.FullKeys > 0
	})
	owner := dst.MasterForKey(ownKey(st.Task))
	promoted := dst.Failover(t, owner)
	if st, err := r.getStatus(); err != nil || st.Phase != task.PhaseFull {
		r.fail("the failover was meant to happen in the full phase; status after it: %+v (%v)", st, err)
	}
	t.Logf("failed %s (holding %s) over to %s in the full phase", owner, ownKey(st.Task), promoted)
	r.unthrottleFull()
	select {
	case r.code = <-r.done:
		r.exited = true
	case <-time.After(60 * time.Second):
		r.fail("ferry sync --mode full did not finish within 60 s")
	}
	if r.code != ExitOK {
		r.fail("ferry sync --mode full exited with code %d after a failover of the master holding its own keys", r.code)
	}
	testutil.RequireSameData(t, src, dst, skipOwn)
}

// ownKey is the name of the checkpoint key of task on a cluster destination: the task's
// name in a hash tag, which every one of Ferry's own keys of the task shares.
func ownKey(taskName string) string { return task.KeyPrefix + "ckpt:{" + taskName + "}" }

// BenchmarkSyncFullCluster measures `ferry sync --mode full` of one source of about 200,000
// keys (DEBUG POPULATE strings and every type from the workload) into one standalone server
// and into a 3-master cluster of the same machine, in the same run, and checks after the
// last iteration of each that the destination holds the source's data:
//
//	go test -run '^$' -bench SyncFullCluster -benchtime 3x ./internal/cli
func BenchmarkSyncFullCluster(b *testing.B) {
	ctx := context.Background()
	src := testutil.StartServer(b)
	src.Do(b, "DEBUG", "POPULATE", 190000, "pop", 100)
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 91, Large: true, TTL: true, Keys: 5000})
	if err := w.Fill(ctx, src, 20000); err != nil {
		b.Fatal(err)
	}
	keys := src.Do(b, "DBSIZE").Int
	run := func(b *testing.B, dst testutil.Deployment, target string) {
		var total time.Duration
		b.ResetTimer() // not the destination's start
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			for _, m := range dst.Masters() {
				m.Do(b, "FLUSHALL")
			}
			var out, errs syncBuffer
			args := []string{"sync", "--source", "redis://" + src.Addr(), "--target", "redis://" + target, "--mode", "full",
				"--data-dir", b.TempDir(), "--skip-precheck", "--no-progress"}
			b.StartTimer()
			start := time.Now()
			code := Main(ctx, args, &out, &errs)
			el := time.Since(start)
			b.StopTimer()
			if code != ExitOK {
				b.Fatalf("ferry sync --mode full exited %d:\n%s", code, tail(errs.String(), 40))
			}
			total += el
		}
		b.ReportMetric(float64(keys)*float64(b.N)/total.Seconds(), "keys/s")
		b.ReportMetric(total.Seconds()/float64(b.N), "s/sync")
		b.ReportMetric(float64(keys), "keys")
		testutil.RequireSameData(b, src, dst, skipOwn)
	}
	b.Logf("source: %d keys", keys)
	b.Run("standalone", func(b *testing.B) {
		dst := testutil.StartServer(b)
		run(b, dst, dst.Addr())
	})
	b.Run("cluster3", func(b *testing.B) {
		dst := testutil.StartCluster(b, testutil.ClusterOptions{Masters: 3})
		run(b, dst, dst.Addrs()[0])
	})
}
