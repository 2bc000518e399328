package task

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/throttle"
	"github.com/ferrysync/ferry/internal/writer"
)

// sessionWriterCommands is the session writer's Stats().Commands (connection 1 of the load).
func sessionWriterCommands(tb testing.TB, tk *Task) int64 {
	tb.Helper()
	tk.mu.Lock()
	defer tk.mu.Unlock()
	w, ok := tk.wr.(*writer.Writer)
	if !ok {
		tb.Fatalf("the session's destination is %T, not a standalone writer", tk.wr)
	}
	return w.Stats().Commands
}

// snapshotSeries gathers reg and returns the value of every ferry_snapshot_* sample by
// "name{connection}" (the connection label empty for ferry_snapshot_connections), failing
// when any name, label or value of any family carries secret.
func snapshotSeries(tb testing.TB, reg *prometheus.Registry, task, secret string) map[string]float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetName(), secret) || strings.Contains(l.GetValue(), secret) {
					tb.Fatalf("%s carries the destination's password in label %s=%q", mf.GetName(), l.GetName(), l.GetValue())
				}
				labels[l.GetName()] = l.GetValue()
			}
			if !strings.HasPrefix(mf.GetName(), "ferry_snapshot_") {
				continue
			}
			if labels["task"] != task {
				tb.Fatalf("%s has task=%q, want %q", mf.GetName(), labels["task"], task)
			}
			key := mf.GetName() + "{" + labels["connection"] + "}"
			if r, ok := labels["reason"]; ok {
				key = mf.GetName() + "{" + labels["connection"] + "," + r + "}"
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[key] += v
		}
	}
	return out
}

// TestSnapshotConnectionStatus: during a throttled full load the status and the metrics show
// the snapshot's three extra connections, their command counts growing and adding up,
// with the session writer's, to the keys loaded; a CLIENT KILL of one shows as its
// reconnect; after the load they leave the live list and their totals remain. No password
// appears in the status or the metrics.
func TestSnapshotConnectionStatus(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	// The task logs in as a user with a password, so a leak of it would show.
	const password = "s3cret-status-pw"
	if _, err := dst.Conn(t).Do(ctx, "ACL", "SETUSER", "ferry", "on", ">"+password, "~*", "&*", "+@all"); err != nil {
		t.Fatal(err)
	}

	// 20,000 keys at 8,000 keys/s: a load of about 2.5 s to watch.
	const keys = 20000
	setPipelined(t, src, keys, keys, "k:", func(i int) any { return strings.Repeat("v", 1+i%200) })
	cfg := testConfig(t, src, dst)
	cfg.Target.Username, cfg.Target.Password = "ferry", password
	cfg.Throttle = throttle.Config{Full: throttle.Limits{MaxOps: 8000}}
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	r := startTask(t, cfg)
	name := r.t.Name()
	prefix := r.t.cfg.writerName() + "/snapshot-"

	inFull := func(what string) func(Status) bool {
		return func(st Status) bool {
			if st.Phase > PhaseFull {
				t.Fatalf("the load ended (phase %s, %d keys) before %s", st.Phase, st.FullKeys, what)
			}
			return false
		}
	}
	all := func(st Status, cond func(ConnStatus) bool) bool {
		if len(st.SnapshotConns) != 3 {
			return false
		}
		for _, c := range st.SnapshotConns {
			if !cond(c) {
				return false
			}
		}
		return true
	}
	what := "the 3 snapshot connections carrying keys"
	first := waitStatus(t, r, 30*time.Second, what, func(st Status) bool {
		return inFull(what)(st) || st.Phase == PhaseFull && all(st, func(c ConnStatus) bool { return c.Commands > 0 })
	})
	for k, c := range first.SnapshotConns {
		if want := k + 2; c.Connection != want || c.Name != prefix+strconv.Itoa(want) {
			t.Fatalf("snapshot connection %d is %d %q, want %d %q", k, c.Connection, c.Name, want, prefix+strconv.Itoa(want))
		}
		if c.Reconnects != 0 || c.Error != "" {
			t.Fatalf("connection %s reconnected or failed before anything happened to it: %+v", c.Name, c)
		}
	}
	if first.SnapshotConnTotals == nil || first.SnapshotConnTotals.Opened != 3 {
		t.Fatalf("totals while loading: %+v, want 3 opened", first.SnapshotConnTotals)
	}

	// Every connection's count grows, and with the session writer's they account for the
	// keys loaded: the loader counts a key just after handing it to its connection, and
	// nothing else goes through them during this load (no big keys, no functions).
	what = "every connection's count to grow"
	grown := waitStatus(t, r, 10*time.Second, what, func(st Status) bool {
		return inFull(what)(st) || all(st, func(c ConnStatus) bool {
			return c.Commands > first.SnapshotConns[c.Connection-2].Commands
		})
	})
	var extra int64
	for _, c := range grown.SnapshotConns {
		extra += c.Commands
	}
	own := sessionWriterCommands(t, r.t)
	after := r.t.full.Keys.Load()
	if sum := extra + own; sum < grown.FullKeys || sum > after+1 {
		t.Fatalf("connections 2-4 have %d commands and the session writer %d: %d, outside the %d..%d keys loaded meanwhile",
			extra, own, sum, grown.FullKeys, after+1)
	}
	t.Logf("at %d keys: session writer %d, snapshot connections %d (%v)", grown.FullKeys, own, extra, grown.SnapshotConns)

	series := snapshotSeries(t, reg, name, password)
	if series["ferry_snapshot_connections{}"] != 3 {
		t.Fatalf("ferry_snapshot_connections = %v while loading, want 3 (%v)", series["ferry_snapshot_connections{}"], series)
	}
	for i := 2; i <= 4; i++ {
		for _, m := range []string{"ferry_snapshot_writer_commands_total", "ferry_snapshot_writer_in_flight_commands", "ferry_snapshot_writer_reconnects_total"} {
			if _, ok := series[m+"{"+strconv.Itoa(i)+"}"]; !ok {
				t.Fatalf("no %s for connection %d while loading: %v", m, i, series)
			}
		}
		if series["ferry_snapshot_writer_commands_total{"+strconv.Itoa(i)+"}"] <= 0 {
			t.Fatalf("ferry_snapshot_writer_commands_total for connection %d is 0 while loading: %v", i, series)
		}
	}
	rec := httptest.NewRecorder()
	StatusHandler(r.t).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	body := rec.Body.String()
	if strings.Contains(body, password) {
		t.Fatalf("the status carries the destination's password: %s", body)
	}
	var decoded struct {
		SnapshotConns []ConnStatus `json:"snapshot_conns"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &decoded); err != nil || len(decoded.SnapshotConns) != 3 {
		t.Fatalf("the status endpoint's snapshot_conns: %v, %v in %s", decoded.SnapshotConns, err, body)
	}

	// Kill connection 3: its reconnect shows on it alone.
	victim := prefix + "3"
	id, ok := snapshotClients(t, dst, prefix)[victim]
	if !ok {
		t.Fatalf("no client %s on the destination", victim)
	}
	if _, err := dst.Conn(t).Do(ctx, "CLIENT", "KILL", "ID", id); err != nil {
		t.Fatal(err)
	}
	what = "the killed connection's reconnect in its status"
	killed := waitStatus(t, r, 20*time.Second, what, func(st Status) bool {
		return inFull(what)(st) || len(st.SnapshotConns) == 3 && st.SnapshotConns[1].Reconnects >= 1
	})
	for _, c := range killed.SnapshotConns {
		switch {
		case c.Connection == 3 && c.Errors[writer.ReasonConnection] < 1:
			t.Fatalf("the killed connection reconnected without counting a connection error: %+v", c)
		case c.Connection != 3 && c.Reconnects != 0:
			t.Fatalf("connection %s reconnected too when %s was killed: %+v", c.Name, victim, c)
		}
	}
	t.Logf("after the kill: %+v", killed.SnapshotConns[1])

	// After the load: gone from the live list and the live gauges, totals kept.
	waitPhase(t, r, PhaseIncremental)
	done := r.t.Status()
	if len(done.SnapshotConns) != 0 {
		t.Fatalf("snapshot connections still listed after the load: %+v", done.SnapshotConns)
	}
	tot := done.SnapshotConnTotals
	if tot == nil || tot.Opened != 3 || tot.Reconnects < 1 || tot.Errors[writer.ReasonConnection] < 1 {
		t.Fatalf("totals after the load: %+v, want 3 opened and the reconnect", tot)
	}
	var seen int64
	for _, c := range killed.SnapshotConns {
		seen += c.Commands
	}
	if tot.Commands < seen || tot.Commands >= keys {
		t.Fatalf("totals after the load have %d commands: fewer than the %d seen before, or all %d keys (the session writer carried none?)", tot.Commands, seen, keys)
	}
	// The session writer carried the other keys (and, since, only its stream checkpoints).
	if own := sessionWriterCommands(t, r.t); tot.Commands+own < keys || tot.Commands+own > keys+100 {
		t.Fatalf("snapshot connections %d + session writer %d commands, want the %d keys (and a few checkpoints)", tot.Commands, own, keys)
	}
	series = snapshotSeries(t, reg, name, password)
	if v, ok := series["ferry_snapshot_connections{}"]; !ok || v != 0 {
		t.Fatalf("ferry_snapshot_connections = %v (present %v) after the load, want 0", v, ok)
	}
	var total float64
	for i := 2; i <= 4; i++ {
		conn := strconv.Itoa(i)
		if _, ok := series["ferry_snapshot_writer_in_flight_commands{"+conn+"}"]; ok {
			t.Fatalf("an in-flight gauge for closed connection %d: %v", i, series)
		}
		total += series["ferry_snapshot_writer_commands_total{"+conn+"}"]
	}
	if int64(total) != tot.Commands {
		t.Fatalf("the metrics count %v commands on the closed connections, the status %d", total, tot.Commands)
	}
	if series["ferry_snapshot_writer_reconnects_total{3}"] < 1 || series["ferry_snapshot_writer_errors_total{3,"+writer.ReasonConnection+"}"] < 1 {
		t.Fatalf("the metrics lost connection 3's reconnect: %v", series)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
	t.Logf("totals after the load: %+v", *tot)
}
