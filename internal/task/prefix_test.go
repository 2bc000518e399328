package task

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/verify"
)

// prefixMapping is the acceptance mapping: each of four source databases into the
// cluster's database 0 under its own key prefix.
const prefixMapping = "0:prefix=db0:,1:prefix=db1:,2:prefix=db2:,3:prefix=db3:"

// TestSyncIntoClusterPrefix is the key-prefix acceptance test: a standalone source whose
// four databases hold the same key names goes into a 3-master cluster. Without a mapping
// the task is refused before any write, with the prefix mapping as the first advice. With
// --db-map 0:prefix=db0:,…,3:prefix=db3: and a load in every database during the full
// phase and after (multi-key commands, transactions, scripts, MOVE and COPY … DB between
// the databases; big values through the command path), every source key K of database N
// is the cluster's dbN:K by DEBUG DIGEST-VALUE and TTL presence, the cluster holds nothing
// else but Ferry's keys, and `ferry verify` with the same mapping finds no difference, then
// exactly one injected one.
func TestSyncIntoClusterPrefix(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	dbs := []int{0, 1, 2, 3}
	// One workload over the four databases writes the same names in each.
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 61, DBs: dbs, TTL: true, Large: true, Keys: 300})
	if err := fill.Fill(ctx, src, 3000); err != nil {
		t.Fatal(err)
	}

	tk, err := New(clusterConfig(t, src, dst))
	if err != nil {
		t.Fatal(err)
	}
	err = tk.Run(ctx)
	advice := "--db-map " + prefixMapping
	if err == nil || !strings.Contains(err.Error(), advice) || strings.Index(err.Error(), advice) > strings.Index(err.Error(), "--db-merge") {
		t.Fatalf("a 4-database source into a cluster without a mapping: %v; want a refusal suggesting %s first", err, advice)
	}
	for _, m := range dst.Masters() {
		if n := m.Do(t, "DBSIZE").Int; n != 0 {
			t.Fatalf("master %s holds %d keys after the refusal; nothing may be written", m.Addr(), n)
		}
	}

	spec, err := filter.ParseSpec(filter.Strings{DBMap: prefixMapping})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clusterConfig(t, src, dst)
	if cfg.Filter, err = filter.New(spec); err != nil {
		t.Fatal(err)
	}
	cfg.BigKeyThreshold = 2048 // the Large values go through the command path, renamed too
	live := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 62, DBs: dbs, TTL: true, Keys: 200, Prefix: "live:"})
	l := startLoad(live, src, 800) // during the full phase
	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	before := r.t.Status().Commands
	// A multi-key command across slots, a transaction and a script in non-zero databases,
	// and a key moved between two of them (a RENAME between prefixes on the cluster).
	c := src.Conn(t)
	for _, cmd := range [][]any{
		{"SELECT", 2}, {"MSET", "x:a", "1", "x:b", "2", "x:c", "3"},
		{"SELECT", 3}, {"MULTI"}, {"INCR", "x:a"}, {"RPUSH", "x:l", "1", "2"}, {"SADD", "x:s", "m"}, {"EXEC"},
		{"SELECT", 1}, {"EVAL", "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('LPUSH', KEYS[2], ARGV[1])", 2, "x:a", "x:l", "v"},
		{"SET", "x:moved", "from db 1"}, {"MOVE", "x:moved", 2},
	} {
		if _, err := c.Do(ctx, cmd...); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	waitStatus(t, r, 30*time.Second, "stream commands after the full phase", func(st Status) bool {
		return st.Commands > before+1200
	})
	ops := l.stop(t)
	waitAcked(t, src)
	st := r.t.Status()
	if err := r.stop(t); err != nil {
		t.Fatalf("clean stop returned %v", err)
	}
	if st.FullKeys == 0 || st.BigKeys == 0 || st.Commands == 0 {
		t.Fatalf("want snapshot keys (%d), some through the command path (%d), and stream commands (%d)", st.FullKeys, st.BigKeys, st.Commands)
	}
	if ls := live.Stats(); ls["MOVE"]+ls["COPY"] == 0 || cfg.Filter.Counts().Rewritten < 2 {
		t.Fatalf("the load moved or copied no key between databases (%v), or none arrived rewritten (%+v)", ls, cfg.Filter.Counts())
	}
	n := requirePrefixedInCluster(t, src, dbs, dst)
	if v, err := dst.Call(ctx, "GET", "db2:x:moved"); err != nil || string(v.Str) != "from db 1" {
		t.Fatalf("db2:x:moved = %v, %v; the MOVE between prefixed databases did not arrive as a rename", v, err)
	}
	t.Logf("%d keys in 4 databases as dbN:K on the cluster: %d snapshot keys (%d as commands), %d stream commands (%d load ops); filter %+v",
		n, st.FullKeys, st.BigKeys, st.Commands, ops, cfg.Filter.Counts())

	// ferry verify with the same mapping: nothing differs; then one changed value does.
	o := verify.Options{Source: redis.Options{Addr: src.Addr()}, Target: redis.Options{Addr: dst.Addrs()[0]}, Rounds: 1, Logger: testLogger(t)}
	if o.Selection.Map, o.Selection.Prefix, err = verify.ParseDBMapping(prefixMapping); err != nil {
		t.Fatal(err)
	}
	if o.Selection.Keys, err = verify.NewKeyFilter(nil, []string{KeyPrefix}); err != nil {
		t.Fatal(err)
	}
	res, err := verify.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Remaining) != 0 || res.Rounds[0].Keys != int64(n) || res.Rounds[0].Extra != int64(n) {
		t.Fatalf("verify with the mapping: %d differences (%v), %d source keys and %d destination keys compared; want none, and %d each",
			len(res.Remaining), res.Remaining, res.Rounds[0].Keys, res.Rounds[0].Extra, n)
	}
	if _, err := dst.Call(ctx, "SET", "db2:x:b", "changed on the destination"); err != nil {
		t.Fatal(err)
	}
	if res, err = verify.Run(ctx, o); err != nil {
		t.Fatal(err)
	}
	if len(res.Remaining) != 1 {
		t.Fatalf("verify after one injected difference: %v", res.Remaining)
	}
	if d := res.Remaining[0]; d.DB != 2 || d.Key != "x:b" || d.TargetKey != "db2:x:b" || d.Class != verify.ClassValue {
		t.Fatalf("verify reported %v; want db 2 key x:b (destination db2:x:b), value", d)
	}
}

// requirePrefixedInCluster checks that the cluster holds, for every key K of the source's
// databases dbs (Ferry's aside), the key dbN:K with the same value (DEBUG DIGEST-VALUE) and
// the same presence of a TTL, and no other key but Ferry's. It returns the number of keys.
func requirePrefixedInCluster(tb testing.TB, src *testutil.Server, dbs []int, dst *testutil.Cluster) int {
	tb.Helper()
	ctx := context.Background()
	c := src.Conn(tb)
	want := 0
	for _, db := range dbs {
		if _, err := c.Do(ctx, "SELECT", db); err != nil {
			tb.Fatal(err)
		}
		keys, err := c.Do(ctx, "KEYS", "*")
		if err != nil {
			tb.Fatal(err)
		}
		for _, k := range keys.Elems {
			key := string(k.Str)
			if strings.HasPrefix(key, KeyPrefix) {
				continue
			}
			want++
			name := fmt.Sprintf("db%d:%s", db, key)
			m := dst.MasterForKey(name)
			sd, err := c.Do(ctx, "DEBUG", "DIGEST-VALUE", key)
			if err != nil {
				tb.Fatal(err)
			}
			dd, err := m.Call(ctx, "DEBUG", "DIGEST-VALUE", name)
			if err != nil {
				tb.Fatal(err)
			}
			if fmt.Sprint(sd) != fmt.Sprint(dd) {
				tb.Fatalf("db %d key %q: the cluster's %q differs: source %v, cluster %v", db, key, name, sd, dd)
			}
			st, err := c.Do(ctx, "PTTL", key)
			if err != nil {
				tb.Fatal(err)
			}
			dt, err := m.Call(ctx, "PTTL", name)
			if err != nil {
				tb.Fatal(err)
			}
			if (st.Int > 0) != (dt.Int > 0) || dt.Int == -2 {
				tb.Fatalf("db %d key %q: PTTL %d on the source, %d for %q on the cluster", db, key, st.Int, dt.Int, name)
			}
		}
	}
	got := 0
	for _, m := range dst.Masters() {
		keys, err := m.Call(ctx, "KEYS", "*")
		if err != nil {
			tb.Fatal(err)
		}
		for _, k := range keys.Elems {
			key := string(k.Str)
			switch {
			case strings.HasPrefix(key, KeyPrefix):
			case len(key) > 4 && strings.HasPrefix(key, "db") && key[3] == ':' && key[2] >= '0' && key[2] <= '3':
				got++
			default:
				tb.Fatalf("master %s holds %q, which no source key maps to", m.Addr(), key)
			}
		}
	}
	if got != want {
		tb.Fatalf("the cluster holds %d prefixed keys, the source's databases %v hold %d", got, dbs, want)
	}
	if want == 0 {
		tb.Fatal("no keys compared")
	}
	return want
}
