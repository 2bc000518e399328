package filter

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/testutil"
)

// applier runs commands on a source server and, through the filter, on a destination, the
// way a task applies a replication stream: a command that fails or changes nothing on the
// source is not in the stream; a command the filter refuses is not run on the source either (the task would
// stop there), so the two sides stay comparable.
type applier struct {
	t              *testing.T
	ctx            context.Context
	f              *Filter
	src, dst       *redis.Conn
	srcDB, dstDB   int
	applied, dropp int
	refused        []string
}

func (a *applier) selectDB(c *redis.Conn, cur *int, db int) {
	if db < 0 || *cur == db {
		return
	}
	if _, err := c.Do(a.ctx, "SELECT", db); err != nil {
		a.t.Fatalf("SELECT %d: %v", db, err)
	}
	*cur = db
}

func toAny(args [][]byte) []any {
	out := make([]any, len(args))
	for i, a := range args {
		out[i] = a
	}
	return out
}

// run sends one command in source db and returns whether the source accepted it.
func (a *applier) run(db int, line ...string) bool {
	a.t.Helper()
	cmd := make([][]byte, len(line))
	for i, s := range line {
		cmd[i] = []byte(s)
	}
	d := a.f.Command(db, line[0], cmd, nil)
	if d.Verdict == Refuse {
		a.refused = append(a.refused, strings.Join(line, " "))
		return false
	}
	a.selectDB(a.src, &a.srcDB, db)
	reply, err := a.src.Do(a.ctx, toAny(cmd)...)
	if err != nil {
		var re *resp.Error
		if errors.As(err, &re) {
			return false // not in a replication stream
		}
		a.t.Fatalf("source: %q: %v", line, err)
	}
	if noop[strings.ToLower(line[0])] && reply.Kind == resp.Kind(':') && reply.Int == 0 {
		return false // changed nothing, so the source does not propagate it
	}
	var out []Cmd
	switch d.Verdict {
	case Keep:
		out = []Cmd{{DB: d.DB, Args: cmd}}
	case Rewrite:
		out = d.Cmds
	case Drop:
		a.dropp++
		return true
	}
	for _, c := range out {
		a.selectDB(a.dst, &a.dstDB, c.DB)
		if _, err := a.dst.Do(a.ctx, toAny(c.Args)...); err != nil {
			a.t.Fatalf("destination db %d: %q (from %q in db %d, %s): %v", c.DB, c.Args, line, db, d.Verdict, err)
		}
	}
	a.applied++
	return true
}

// noop are the commands whose integer reply 0 means they changed nothing (MOVE onto an
// existing key, COPY without REPLACE onto one...): the source leaves them out of its stream.
var noop = map[string]bool{"move": true, "copy": true, "msetnx": true, "renamenx": true}

type keyValue struct {
	digest string
	hasTTL bool
}

// dbContents reads every key of one database: its value digest and whether it has a TTL.
func dbContents(ctx context.Context, t *testing.T, c *redis.Conn, db int) map[string]keyValue {
	t.Helper()
	if _, err := c.Do(ctx, "SELECT", db); err != nil {
		t.Fatal(err)
	}
	out := map[string]keyValue{}
	v, err := c.Do(ctx, "KEYS", "*")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range v.Elems {
		// DEBUG DIGEST-VALUE, not DUMP: a set's or hash's DUMP follows its hash table's order,
		// which differs between servers (random hash seeds); the digest does not.
		d, err := c.Do(ctx, "DEBUG", "DIGEST-VALUE", k.Str)
		if err != nil {
			t.Fatal(err)
		}
		ttl, err := c.Do(ctx, "PTTL", k.Str)
		if err != nil {
			t.Fatal(err)
		}
		out[string(k.Str)] = keyValue{digest: string(d.Elems[0].Str), hasTTL: ttl.Int > 0}
	}
	return out
}

// TestSelectionOnRealServers is the filter acceptance at the filter's level: a
// workload on six databases, selected with --dbs 1,3 --db-map 3:0 --exclude 'tmp:*', leaves
// exactly the selected keys, mapped, on the destination, and nothing else (a foreign key
// in an untouched destination database survives the source's FLUSHALL). The workload runs
// every command the filter treats specially (split DEL/MSET, MOVE, COPY ... DB, SWAPDB,
// FLUSHDB, FLUSHALL) and a seeded random mix.
func TestSelectionOnRealServers(t *testing.T) {
	src, dst := testutil.StartServer(t), testutil.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	f := MustNew(Spec{DBs: []int{1, 3}, DBMap: map[int]int{3: 0}, Exclude: []Pattern{MustParsePattern("tmp:*")}})
	a := &applier{t: t, ctx: ctx, f: f, src: src.Conn(t), dst: dst.Conn(t)}
	dst.Do(t, "SELECT", 7)
	fc := dst.Conn(t)
	if _, err := fc.Do(ctx, "SELECT", 7); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.Do(ctx, "SET", "foreign", "not from the source"); err != nil {
		t.Fatal(err)
	}

	fill := func(tag string) {
		for db := 0; db < 6; db++ {
			v := fmt.Sprintf("%s-db%d", tag, db)
			a.run(db, "MSET", "a", v, "b", v, "c", v, "tmp:a", v, "tmp:b", v)
			a.run(db, "RPUSH", "l", v, "x", "y")
			a.run(db, "HSET", "h", "f", v)
			a.run(db, "SADD", "s", v, "m")
			a.run(db, "ZADD", "z", "1", v)
			a.run(db, "SET", "ttl", v, "EX", "1000")
		}
	}
	fill("one")
	must := func(db int, line ...string) {
		t.Helper()
		if !a.run(db, line...) {
			t.Fatalf("db %d %q: refused by the source or the filter", db, line)
		}
	}
	must(1, "DEL", "a", "tmp:a")                      // split
	must(3, "MSET", "x", "1", "tmp:x", "2", "y", "3") // split
	must(3, "MSETNX", "n1", "1", "tmp:n", "2")        // split, succeeded on the source
	must(1, "RENAME", "b", "b2")
	must(1, "RENAME", "tmp:b", "tmp:b2") // dropped
	must(3, "DEL", "c")
	must(1, "MOVE", "c", "3") // MOVE c 0 on the destination
	must(4, "DEL", "h", "z")
	must(3, "MOVE", "h", "4") // leaves the selection: DEL h
	must(0, "MOVE", "z", "4") // outside the selection
	must(1, "COPY", "l", "l2", "DB", "3")
	must(3, "COPY", "s", "s9", "DB", "5") // copy out of the selection
	must(5, "FLUSHDB")
	must(0, "SWAPDB", "1", "3")
	must(0, "SWAPDB", "2", "4")
	if a.run(2, "MOVE", "a", "1") || a.run(0, "SWAPDB", "1", "2") || a.run(4, "COPY", "b", "b", "DB", "3") {
		t.Fatal("a command crossing into the selection was not refused")
	}
	must(0, "FLUSHALL")
	fill("two")

	// A seeded random mix over both key classes (renames stay within a class: across the
	// boundary the destination cannot follow, as docs/filters.md says).
	rng := rand.New(rand.NewPCG(42, 1))
	key := func(class string) string { return fmt.Sprintf("%sk%d", class, rng.IntN(8)) }
	cls := func() string { return []string{"", "tmp:"}[rng.IntN(2)] }
	for i := 0; i < 1500; i++ {
		db := rng.IntN(6)
		c := cls()
		switch rng.IntN(12) {
		case 0, 1:
			a.run(db, "SET", key(c), fmt.Sprint(i))
		case 2:
			a.run(db, "DEL", key(""), key("tmp:"), key(c))
		case 3:
			a.run(db, "MSET", key(""), fmt.Sprint(i), key("tmp:"), fmt.Sprint(i))
		case 4:
			a.run(db, "RPUSH", "list:"+key(c), fmt.Sprint(i))
		case 5:
			a.run(db, "INCR", "cnt:"+key(c))
		case 6:
			a.run(db, "EXPIRE", key(c), "1000")
		case 7:
			a.run(db, "RENAME", key(c), key(c))
		case 8:
			a.run(db, "MOVE", key(c), fmt.Sprint(rng.IntN(6)))
		case 9:
			a.run(db, "COPY", key(c), key(c), "DB", fmt.Sprint(rng.IntN(6)), "REPLACE")
		case 10:
			a.run(db, "UNLINK", key(c), key(c))
		case 11:
			a.run(db, "HSET", "hash:"+key(c), "f", fmt.Sprint(i))
		}
	}
	t.Logf("%d commands applied, %d dropped, %d refused", a.applied, a.dropp, len(a.refused))
	if a.dropp == 0 || len(a.refused) < 3 {
		t.Fatalf("the workload did not exercise the filter: %d dropped, %d refused", a.dropp, len(a.refused))
	}

	sc, dc := src.Conn(t), dst.Conn(t)
	want := make(map[int]map[string]keyValue)
	for db := 0; db < 6; db++ {
		for k, v := range dbContents(ctx, t, sc, db) {
			d, ok := f.KeepDB(db)
			if !ok || !f.KeepKey([]byte(k)) {
				continue
			}
			if want[d] == nil {
				want[d] = map[string]keyValue{}
			}
			want[d][k] = v
		}
	}
	want[7] = map[string]keyValue{"foreign": {}}
	checked := 0
	for db := 0; db < 16; db++ {
		got := dbContents(ctx, t, dc, db)
		for k, v := range want[db] {
			g, ok := got[k]
			switch {
			case !ok:
				t.Errorf("destination db %d lacks %q", db, k)
			case db != 7 && (g.digest != v.digest || g.hasTTL != v.hasTTL):
				t.Errorf("destination db %d %q differs from the source (ttl %v vs %v)", db, k, g.hasTTL, v.hasTTL)
			}
			checked++
		}
		for k := range got {
			if _, ok := want[db][k]; !ok {
				t.Errorf("destination db %d holds %q, which the selection does not copy there", db, k)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("only %d keys compared", checked)
	}
	n := f.Counts()
	if n.Commands[ReasonDB] == 0 || n.Commands[ReasonExcluded] == 0 || n.SplitKeys[ReasonExcluded] == 0 || n.Rewritten == 0 || n.Refused != uint64(len(a.refused)) {
		t.Errorf("counters do not reflect the workload: %+v", n)
	}
}
