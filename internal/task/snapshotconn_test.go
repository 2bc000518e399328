package task

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/throttle"
)

// snapshotClients returns the ids of the destination's clients whose name starts with
// prefix, by name.
func snapshotClients(tb testing.TB, dst *testutil.Server, prefix string) map[string]int64 {
	tb.Helper()
	v, err := dst.Conn(tb).Do(context.Background(), "CLIENT", "LIST", "TYPE", "normal")
	if err != nil {
		tb.Fatal(err)
	}
	ids := map[string]int64{}
	for _, c := range listedClients(string(v.Str), func(name string) bool { return strings.HasPrefix(name, prefix) }) {
		ids[c.name] = c.id
	}
	return ids
}

// TestSnapshotConnectionKilled: one of the snapshot's extra destination connections is
// closed by the server in the middle of the load (CLIENT KILL). It reconnects and resends
// what was not answered, the other connections are left alone, and the sync ends identical.
func TestSnapshotConnectionKilled(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)

	// 20,000 keys at 8,000 keys/s: a load of about 2.5 s to kill a connection in.
	const keys = 20000
	setPipelined(t, src, keys, keys, "k:", func(i int) any { return strings.Repeat("v", 1+i%200) })
	cfg := testConfig(t, src, dst)
	cfg.Throttle = throttle.Config{Full: throttle.Limits{MaxOps: 8000}}
	r := startTask(t, cfg)
	prefix := r.t.cfg.writerName() + "/snapshot-"

	// Wait for the load to be under way on every connection.
	var before map[string]int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := r.t.Status()
		before = snapshotClients(t, dst, prefix)
		if st.Phase == PhaseFull && st.FullKeys > 2000 && len(before) >= 2 {
			break
		}
		if st.Phase > PhaseFull || time.Now().After(deadline) {
			t.Fatalf("the load did not get under way on several connections: phase %s, %d keys, connections %v", st.Phase, st.FullKeys, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	victim := prefix + "2"
	id, ok := before[victim]
	if !ok {
		t.Fatalf("no connection %s among %v", victim, before)
	}
	if _, err := dst.Conn(t).Do(ctx, "CLIENT", "KILL", "ID", id); err != nil {
		t.Fatal(err)
	}
	loadedAtKill := r.t.Status().FullKeys

	// The killed connection comes back under its own name, and the others are not closed
	// while it does: a reconnect closes only its own predecessor.
	for {
		now := snapshotClients(t, dst, prefix)
		if nid, ok := now[victim]; ok && nid != id {
			for name, oid := range before {
				if name != victim && now[name] != oid {
					t.Fatalf("%s was closed (id %d, now %d) when %s reconnected", name, oid, now[name], victim)
				}
			}
			t.Logf("%s reconnected as id %d; the other connections kept theirs: %v", victim, nid, now)
			break
		}
		if st := r.t.Status(); st.Phase != PhaseFull {
			t.Fatalf("the load ended (phase %s, %d keys) before %s was seen reconnecting", st.Phase, st.FullKeys, victim)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if loadedAtKill >= keys {
		t.Fatalf("the load had ended (%d keys) when the connection was killed: the test proves nothing", loadedAtKill)
	}
	waitPhase(t, r, PhaseIncremental)
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := r.t.Status().FullSyncs; n != 1 {
		t.Fatalf("%d full syncs: the killed snapshot connection made the session start again instead of reconnecting on its own", n)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{KeyPrefix}})
	t.Logf("killed %s (id %d) at %d of %d keys; the load went on and converged", victim, id, loadedAtKill, keys)
}
