package cluster

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/writer"
	"github.com/prometheus/client_golang/prometheus"
)

// crossSlot is a script of commands on keys in different slots: every kind the router
// splits, co-locates or sends everywhere, with TTLs to carry along, and transactions.
var crossSlot = []string{
	"SET s1 hello", "SET s2 world", "EXPIRE s2 1000",
	"MSET m1 1 m2 2 m3 3 {t}a 4 {t}b 5",
	"MSETNX n1 x n2 y n3 z",
	"DEL m1 m3 nosuch",
	"UNLINK {t}a n3",
	"TOUCH s1 s2 m2",
	"RENAME s1 r1",
	"RENAME s2 r2", // keeps its TTL
	"SET s3 v", "RENAMENX s3 r1", "RENAMENX s3 r3",
	"SADD set1 a b c d", "SADD set2 c d e", "SADD set3 d e f", "EXPIRE set3 2000",
	"SMOVE set1 set2 a", "SMOVE set1 setnew b",
	"SUNIONSTORE su set1 set2 set3", "SINTERSTORE si set2 set3", "SDIFFSTORE sd set2 set3",
	"SINTERSTORE set1 set1 set2",  // the destination is also a source
	"SDIFFSTORE sempty set3 set3", // an empty result deletes the destination
	"SET sempty was-here", "SDIFFSTORE sempty set3 set3",
	"RPUSH l1 a b c d", "RPUSH l2 x",
	"LMOVE l1 l2 LEFT RIGHT", "RPOPLPUSH l1 l2", "RPOPLPUSH l1 l1", "BLMOVE l2 l3 RIGHT LEFT 0",
	"RPOPLPUSH l1 lnew", "RPOPLPUSH l1 lnew", // l1 runs dry: deleted
	"ZADD z1 1 a 2 b 3 c", "ZADD z2 5 b 6 d",
	"ZUNIONSTORE zu 2 z1 z2 WEIGHTS 1 2", "ZINTERSTORE zi 2 z1 z2 AGGREGATE MAX", "ZDIFFSTORE zd 2 z1 z2",
	"ZRANGESTORE zr z1 0 1",
	"SETBIT b1 3 1", "SETBIT b2 9 1", "BITOP OR bo b1 b2", "BITOP NOT bn b1",
	"PFADD h1 a b c", "PFADD h2 c d", "PFMERGE hm h1 h2", "PFMERGE h1 h2",
	"SET c1 copied", "EXPIRE c1 3000", "COPY c1 c2", "COPY c1 c2 REPLACE", "COPY c1 c3",
	"GEOADD g1 13.36 38.11 palermo 15.08 37.50 catania", "GEOSEARCHSTORE gs g1 FROMLONLAT 15 37 BYRADIUS 200 km ASC",
	"GEORADIUS g1 15 37 200 km STORE gr", "GEORADIUS g1 15 37 200 km STOREDIST grd",
	"RPUSH so 3 1 2", "SORT so STORE sorted", "SORT so DESC LIMIT 0 2 STORE sorted2",
	"EVAL return_1 0", // keyless: any master
	"MULTI", "SET t1 a", "INCR t2", "RPUSH t3 x", "SET {t}c y", "EXEC",
	"MULTI", "SET {t}d a", "SET {t}e b", "EXEC",
	"MULTI", "SET u1 a", "RENAME u1 u2", "DEL m2 n1", "EXEC", // holds a co-located command
	"MULTI", "DEL r1 r3", "MSET k1 1 k2 2", "EXEC",
	"MULTI", "EXEC",
	"SET {ferry-tmp-1}:0 not-a-temp-of-ours",
}

func TestRouterCrossSlot(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	standalone := testutil.StartServer(t)
	reg := prometheus.NewRegistry()
	r := openRouter(t, c, func(o *Options) { o.Registerer = reg; o.Writer.Registerer = reg })
	w := openWriter(t, standalone)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, line := range crossSlot {
		// An underscore stands for a space inside an argument (the Lua script).
		cmd := cmdOf(int64(i+1)*100, line)
		for j, a := range cmd.Args {
			cmd.Args[j] = []byte(strings.ReplaceAll(string(a), "_", " "))
		}
		if err := w.Write(ctx, cmd); err != nil {
			t.Fatalf("standalone: %s: %v", line, err)
		}
		if err := r.Write(ctx, cmd); err != nil {
			t.Fatalf("cluster: %s: %v", line, err)
		}
	}
	flushCtx(t, w)
	flushCtx(t, r)
	testutil.RequireSameData(t, standalone, c, testutil.CompareOptions{TTLTolerance: 5 * time.Second})
	if got, want := r.Applied(), int64(len(crossSlot))*100; got != want {
		t.Errorf("Applied %d, want %d", got, want)
	}
	s := r.Stats()
	t.Logf("stats: split %d (%d parts), co-located %v, txns %d (split %d, unwrapped %d)",
		s.Split, s.SplitParts, s.CoLocated, s.Transactions, s.TxnSplit, s.TxnUnwrapped)
	for _, name := range []string{"rename", "renamenx", "smove", "sunionstore", "sinterstore", "sdiffstore", "lmove",
		"rpoplpush", "blmove", "zunionstore", "zinterstore", "zdiffstore", "zrangestore", "bitop", "pfmerge", "copy",
		"geosearchstore", "georadius", "sort"} {
		if s.CoLocated[name] == 0 {
			t.Errorf("%s was not co-located", name)
		}
	}
	if s.Split < 5 || s.TxnSplit < 2 || s.TxnUnwrapped != 1 || s.Transactions != 5 {
		t.Errorf("stats %+v", s)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			for _, l := range m.GetLabel() {
				if l.GetName() == "cmd" || l.GetName() == "how" {
					seen[f.GetName()+"/"+l.GetValue()] = v
				}
			}
			seen[f.GetName()] += v
		}
	}
	if seen["ferry_cluster_colocated_total/rename"] != 3 || seen["ferry_cluster_transactions_total/per_slot"] != 2 ||
		seen["ferry_cluster_applied_offset"] != float64(len(crossSlot))*100 || seen["ferry_writer_commands_total"] == 0 {
		t.Errorf("metrics: %v", seen)
	}

	// Why transactions are split per slot rather than per node: a cluster refuses a
	// transaction over two slots of one node.
	m := c.Masters()[0]
	var same []string
	for i := 0; len(same) < 2; i++ {
		if k := "x" + itoa(i); c.MasterForKey(k) == m && (len(same) == 0 || command.SlotString(k) != command.SlotString(same[0])) {
			same = append(same, k)
		}
	}
	conn := m.Conn(t)
	for _, args := range [][]any{{"MULTI"}, {"SET", same[0], "1"}, {"SET", same[1], "1"}} {
		if _, err := conn.Do(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Do(ctx, "EXEC"); err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Errorf("a transaction over two slots of one node: %v, want CROSSSLOT", err)
	}
	if err := r.Write(ctx, writer.Command{DB: 1, Args: [][]byte{[]byte("SET"), []byte("k"), []byte("v")}}); err == nil {
		t.Error("a command for database 1 was accepted")
	}

	// No temporary key is left behind.
	for _, m := range c.Masters() {
		v := m.Do(t, "KEYS", "*ferry-tmp-*")
		for _, k := range v.Elems {
			if string(k.Str) != "{ferry-tmp-1}:0" {
				t.Errorf("%s holds temporary key %q", m, k.Str)
			}
		}
	}
}

// TestRouterBroadcast: FLUSHALL and FUNCTION LOAD reach every master, so FCALL works on
// keys in every master's slots afterwards.
func TestRouterBroadcast(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	r := openRouter(t, c, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var keys []string
	for _, m := range c.Masters() {
		for i := 0; len(keys) < 3*len(c.Masters()); i++ {
			k := "fk" + itoa(i)
			if c.MasterForKey(k) == m && !contains(keys, k) {
				keys = append(keys, k)
				break
			}
		}
	}
	off := int64(0)
	write := func(line string, db int) {
		t.Helper()
		off += 10
		cmd := cmdOf(off, line)
		cmd.DB = db
		if err := r.Write(ctx, cmd); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	}
	for _, k := range keys {
		write("SET "+k+" before", 0)
	}
	write("FLUSHALL", -1)
	lib := "#!lua name=ferrytest\nredis.register_function('bump', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)"
	off += 10
	load := cmdOf(off, "FUNCTION LOAD")
	load.DB = -1
	load.Args = append(load.Args, []byte(lib))
	if err := r.Write(ctx, load); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		write("FCALL bump 1 "+k+" 5", 0)
	}
	flushCtx(t, r)
	for _, m := range c.Masters() {
		if v := m.Do(t, "FUNCTION", "LIST", "LIBRARYNAME", "ferrytest"); len(v.Elems) != 1 {
			t.Errorf("%s: the library is not loaded", m)
		}
		if v := m.Do(t, "DBSIZE"); v.Int != 1 {
			t.Errorf("%s holds %d keys, want 1 (FLUSHALL, then one FCALL per master)", m, v.Int)
		}
	}
	for _, k := range keys {
		if v := c.Do(t, "GET", k); string(v.Str) != "5" {
			t.Errorf("%s = %q, want 5", k, v.Str)
		}
	}
	if s := r.Stats(); s.Broadcast != 2 {
		t.Errorf("broadcasts %d", s.Broadcast)
	}
}

// TestRouterAsk: a key already moved to the importing node of a migrating slot is
// written there with ASKING; the rest of the slot stays on its owner.
func TestRouterAsk(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 2})
	a, b := c.Masters()[0], c.Masters()[1]
	r := openRouter(t, c, nil)
	// Two keys of one slot: one will have moved, the other not yet.
	moved, stays := "{ask}0", "{ask}1"
	if c.MasterForKey(moved) != a {
		a, b = b, a
	}
	slot := command.SlotString(moved)
	a.Do(t, "SET", moved, "old")
	a.Do(t, "SET", stays, "here")
	b.Do(t, "CLUSTER", "SETSLOT", slot, "IMPORTING", c.NodeID(a))
	a.Do(t, "CLUSTER", "SETSLOT", slot, "MIGRATING", c.NodeID(b))
	a.Do(t, "MIGRATE", "127.0.0.1", b.Port(), "", 0, 5000, "KEYS", moved)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, line := range []string{"APPEND " + moved + " +new", "APPEND " + stays + " +too", "MULTI", "APPEND " + moved + " +txn", "EXEC"} {
		if err := r.Write(ctx, cmdOf(int64(i+1), line)); err != nil {
			t.Fatal(err)
		}
	}
	flushCtx(t, r)
	conn := b.Conn(t) // the importing node serves the key only after ASKING
	_, _ = conn.Do(ctx, "ASKING")
	if v, err := conn.Do(ctx, "GET", moved); err != nil || string(v.Str) != "old+new+txn" {
		t.Errorf("%s on the importing node: %q %v", moved, v.Str, err)
	}
	if v := a.Do(t, "GET", stays); string(v.Str) != "here+too" {
		t.Errorf("%s on its owner: %q", stays, v.Str)
	}
	if s := r.Stats(); s.Redirects["ask"] != 2 {
		t.Errorf("redirects %v, want 2 ask", s.Redirects)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestCoLocateRefused: a co-located command the destination refuses is fatal, or
// skipped and counted under IgnoreErrors; either way no temporary key stays behind and
// no key is written back.
func TestCoLocateRefused(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c.Do(t, "SET", "a", "a string")
	c.Do(t, "SADD", "b", "m")
	c.Do(t, "SET", "c", "untouched")
	refused := cmdOf(10, "SUNIONSTORE c a b")

	strict := openRouter(t, c, nil)
	err := strict.Write(ctx, refused)
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || !strings.Contains(err.Error(), "co-located SUNIONSTORE") {
		t.Errorf("strict: %v", err)
	}
	lenient := openRouter(t, c, func(o *Options) { o.Writer.IgnoreErrors = true })
	if err := lenient.Write(ctx, refused); err != nil {
		t.Fatal(err)
	}
	flushCtx(t, lenient)
	if s := lenient.Stats(); s.CoSkipped != 1 || len(s.CoLocated) != 0 {
		t.Errorf("lenient stats: skipped %d, co-located %v", s.CoSkipped, s.CoLocated)
	}
	if v := c.Do(t, "GET", "c"); string(v.Str) != "untouched" {
		t.Errorf("c = %q", v.Str)
	}
	for _, m := range c.Masters() {
		if v := m.Do(t, "KEYS", "*ferry-tmp-*"); len(v.Elems) != 0 {
			t.Errorf("%s holds temporary keys %v", m, v.Elems)
		}
	}
}
