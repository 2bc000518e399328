package filter

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/testutil"
)

func TestParseDBMapping(t *testing.T) {
	cases := []struct {
		in     string
		dbs    map[int]int
		prefix map[int]string
		err    string
	}{
		{in: "1:prefix=db1:", dbs: map[int]int{1: 0}, prefix: map[int]string{1: "db1:"}},
		{in: "1:prefix=db1:,2:prefix=db2:", dbs: map[int]int{1: 0, 2: 0}, prefix: map[int]string{1: "db1:", 2: "db2:"}},
		{in: " 1 : prefix=a:b:c , 0:0", dbs: map[int]int{0: 0, 1: 0}, prefix: map[int]string{1: "a:b:c"}},
		{in: "1:3:prefix=x:", dbs: map[int]int{1: 3}, prefix: map[int]string{1: "x:"}},
		{in: "1:3: prefix=x", dbs: map[int]int{1: 3}, prefix: map[int]string{1: "x"}},
		{in: "0:1,3:3", dbs: map[int]int{0: 1, 3: 3}},
		{in: "1:prefix=prefix=", dbs: map[int]int{1: 0}, prefix: map[int]string{1: "prefix="}},
		{in: "1:prefix=a*b[c]", dbs: map[int]int{1: 0}, prefix: map[int]string{1: "a*b[c]"}}, // glob characters are bytes here
		{in: "", dbs: nil},
		{in: "1:prefix=", err: "empty prefix"},
		{in: "1:2:prefix=", err: "empty prefix"},
		{in: "1:2:foo", err: "only :prefix=P may follow"},
		{in: "1:prefix=a,1:0", err: "mapped twice"},
		{in: "1:prefix=a,b", err: "not source:destination"},
		{in: "1:pre=a", err: "not a database number"},
		{in: "256:prefix=a", err: "out of range"},
		{in: "1:256:prefix=a", err: "out of range"},
	}
	for _, c := range cases {
		dbs, prefix, err := ParseDBMapping(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseDBMapping(%q) error %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !maps.Equal(dbs, c.dbs) || !maps.Equal(prefix, c.prefix) {
			t.Errorf("ParseDBMapping(%q) = %v %v, %v; want %v %v", c.in, dbs, prefix, err, c.dbs, c.prefix)
			continue
		}
		// The text form round-trips.
		back := FormatDBMapping(dbs, prefix)
		dbs2, prefix2, err := ParseDBMapping(back)
		if err != nil || !maps.Equal(dbs2, dbs) || !maps.Equal(prefix2, prefix) {
			t.Errorf("FormatDBMapping(ParseDBMapping(%q)) = %q, which parses to %v %v, %v", c.in, back, dbs2, prefix2, err)
		}
	}
	if got := FormatDBMapping(map[int]int{3: 0, 1: 0, 2: 5}, map[int]string{1: "db1:", 2: "x:"}); got != "1:prefix=db1:,2:5:prefix=x:,3:0" {
		t.Errorf("FormatDBMapping = %q", got)
	}
	// A caller that cannot carry prefixes is told so instead of losing them.
	if _, err := ParseDBMap("0:0,1:prefix=db1:"); err == nil || !strings.Contains(err.Error(), "key prefix") {
		t.Errorf("ParseDBMap with a prefix: %v; want a refusal naming the prefix", err)
	}
	sp, err := ParseSpec(Strings{DBMap: "0:prefix=db0:,1:prefix=db1:"})
	if err != nil || sp.DBMap[1] != 0 || sp.DBPrefix[1] != "db1:" || sp.DBPrefix[0] != "db0:" {
		t.Errorf("ParseSpec = %+v, %v", sp, err)
	}
}

func TestNewPrefixRules(t *testing.T) {
	four := []int{0, 1, 2, 3}
	toZero := map[int]int{0: 0, 1: 0, 2: 0, 3: 0}
	pre := func(kv ...string) map[int]string {
		m := map[int]string{}
		for i, p := range kv {
			if p != "" {
				m[i] = p
			}
		}
		return m
	}
	cases := []struct {
		name string
		spec Spec
		err  string
	}{
		{"four prefixes into 0", Spec{DBs: four, DBMap: toZero, DBPrefix: pre("db0:", "db1:", "db2:", "db3:")}, ""},
		{"without --dbs the others keep their numbers", Spec{DBMap: map[int]int{0: 0, 1: 0}, DBPrefix: pre("db0:", "db1:")}, ""},
		{"one prefixed db alone", Spec{DBs: []int{1}, DBMap: map[int]int{1: 0}, DBPrefix: pre("", "db1:")}, ""},
		{"prefixes in different databases may overlap", Spec{DBs: []int{1, 2}, DBPrefix: pre("", "a:", "a:")}, ""},
		{"db 0 unprefixed next to db 1 prefixed", Spec{DBMap: map[int]int{1: 0}, DBPrefix: pre("", "db1:")}, "source db 0 would land in destination db 0 without a key prefix, next to source db 1"},
		{"unprefixed after prefixed", Spec{DBs: []int{1, 2}, DBMap: map[int]int{1: 0, 2: 0}, DBPrefix: pre("", "db1:")}, "source db 2 would land in destination db 0 without a key prefix"},
		{"one prefix begins with another", Spec{DBs: four, DBMap: toZero, DBPrefix: pre("db0:", "a:", "a:b:", "db3:")}, `key "b:k" of db 1 and key "k" of db 2 would both be "a:b:k"`},
		{"the same prefix twice", Spec{DBs: []int{1, 2}, DBMap: map[int]int{1: 0, 2: 0}, DBPrefix: pre("", "x:", "x:")}, "one of which begins with the other"},
		{"merge allows it", Spec{DBs: []int{1, 2}, DBMap: map[int]int{1: 0, 2: 0}, DBPrefix: pre("", "x:", "x:"), AllowDBMerge: true}, ""},
		{"merge allows an unprefixed one", Spec{DBs: []int{0, 1}, DBMap: map[int]int{1: 0}, DBPrefix: pre("", "db1:"), AllowDBMerge: true}, ""},
		{"prefix of an unselected db", Spec{DBs: []int{1}, DBPrefix: pre("", "", "x:")}, "--dbs does not select it"},
		{"brace", Spec{DBs: []int{1}, DBPrefix: pre("", "{x}:")}, "hash tags"},
		{"comma", Spec{DBs: []int{1}, DBPrefix: pre("", "a,b")}, "comma"},
		{"empty", Spec{DBs: []int{1}, DBPrefix: map[int]string{1: ""}}, "empty prefix"},
		{"inside Ferry's key space", Spec{DBs: []int{1}, DBPrefix: pre("", checkpoint.Prefix+"x:")}, "Ferry's own key space"},
		{"a beginning of Ferry's key space", Spec{DBs: []int{1}, DBPrefix: pre("", "fer")}, "Ferry's own key space"},
		{"out of range", Spec{DBs: []int{1}, DBPrefix: map[int]string{300: "x"}}, "0-255"},
	}
	for _, c := range cases {
		f, err := New(c.spec)
		if c.err == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			} else if f.Identity() || !f.Prefixed() {
				t.Errorf("%s: Identity %v Prefixed %v", c.name, f.Identity(), f.Prefixed())
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v; want an error containing %q", c.name, err, c.err)
		}
	}
	// The filter's own-key space is Ferry's.
	if ownPrefix != checkpoint.Prefix {
		t.Errorf("ownPrefix %q, checkpoint.Prefix %q", ownPrefix, checkpoint.Prefix)
	}
	// A prefix on database 0 that keeps its number is still not the identity.
	if f := MustNew(Spec{DBPrefix: map[int]string{0: "p:"}}); f.Identity() {
		t.Error("a prefix alone reads as the identity")
	}
}

// fourIntoZero is the acceptance mapping: --db-map 0:prefix=db0:,...,3:prefix=db3:.
func fourIntoZero(t *testing.T, more ...string) *Filter {
	t.Helper()
	s := Strings{DBs: "0-3", DBMap: "0:prefix=db0:,1:prefix=db1:,2:prefix=db2:,3:prefix=db3:"}
	if len(more) > 0 {
		s.Exclude = more
	}
	sp, err := ParseSpec(s)
	if err != nil {
		t.Fatal(err)
	}
	return MustNew(sp)
}

func TestCommandPrefix(t *testing.T) {
	f := fourIntoZero(t)
	checkDecisions(t, "prefix", f, []decisionCase{
		{db: 1, cmd: "SET a 1", verdict: Rewrite, cmds: []string{"0:SET db1:a 1"}},
		{db: 0, cmd: "set a 1 EX 10", verdict: Rewrite, cmds: []string{"0:set db0:a 1 EX 10"}},
		{db: 5, cmd: "SET a 1", verdict: Drop, reason: ReasonDB},
		{db: 2, cmd: "MSET a 1 b 2", verdict: Rewrite, cmds: []string{"0:MSET db2:a 1 db2:b 2"}},
		{db: 2, cmd: "DEL a b a", verdict: Rewrite, cmds: []string{"0:DEL db2:a db2:b db2:a"}},
		{db: 3, cmd: "RENAME a b", verdict: Rewrite, cmds: []string{"0:RENAME db3:a db3:b"}},
		{db: 3, cmd: "LMOVE a b LEFT RIGHT", verdict: Rewrite, cmds: []string{"0:LMOVE db3:a db3:b LEFT RIGHT"}},
		{db: 1, cmd: "ZUNIONSTORE d 2 a b WEIGHTS 1 2", verdict: Rewrite, cmds: []string{"0:ZUNIONSTORE db1:d 2 db1:a db1:b WEIGHTS 1 2"}},
		{db: 1, cmd: "LMPOP 2 a b LEFT COUNT 2", verdict: Rewrite, cmds: []string{"0:LMPOP 2 db1:a db1:b LEFT COUNT 2"}},
		{db: 1, cmd: "BITOP AND d a b", verdict: Rewrite, cmds: []string{"0:BITOP AND db1:d db1:a db1:b"}},
		{db: 1, cmd: "XADD s * f v", verdict: Rewrite, cmds: []string{"0:XADD db1:s * f v"}},
		{db: 1, cmd: "XGROUP CREATE s g $", verdict: Rewrite, cmds: []string{"0:XGROUP CREATE db1:s g $"}},
		{db: 1, cmd: "XCLAIM s g c 0 1-1", verdict: Rewrite, cmds: []string{"0:XCLAIM db1:s g c 0 1-1"}},
		{db: 1, cmd: "GEORADIUS k 1 2 3 km STORE out STOREDIST d", verdict: Rewrite, cmds: []string{"0:GEORADIUS db1:k 1 2 3 km STORE db1:out STOREDIST db1:d"}},
		{db: 1, cmd: "RESTORE k 0 payload REPLACE", verdict: Rewrite, cmds: []string{"0:RESTORE db1:k 0 payload REPLACE"}},
		{db: 1, cmd: "PEXPIREAT k 123", verdict: Rewrite, cmds: []string{"0:PEXPIREAT db1:k 123"}},
		// Scripts (sources that replicate them whole): KEYS renamed, ARGV as is.
		{db: 1, cmd: "EVAL code 2 a b a", verdict: Rewrite, cmds: []string{"0:EVAL code 2 db1:a db1:b a"}},
		{db: 1, cmd: "EVALSHA sha 0 a", verdict: Keep, dst: 0},
		{db: 1, cmd: "FCALL fn 1 a b", verdict: Rewrite, cmds: []string{"0:FCALL fn 1 db1:a b"}},
		// SORT's patterns name keys: they get the prefix; "#" and patterns without '*' do not.
		{db: 1, cmd: "SORT l BY w_* GET # GET h_*->f STORE out", verdict: Rewrite, cmds: []string{"0:SORT db1:l BY db1:w_* GET # GET db1:h_*->f STORE db1:out"}},
		{db: 1, cmd: "SORT l BY nosort LIMIT 0 2 STORE out", verdict: Rewrite, cmds: []string{"0:SORT db1:l BY nosort LIMIT 0 2 STORE db1:out"}},
		{db: 1, cmd: "SORT l BY store STORE by", verdict: Rewrite, cmds: []string{"0:SORT db1:l BY store STORE db1:by"}},
		// What the table does not know cannot be renamed.
		{db: 1, cmd: "JSON.SET k $ 1", verdict: Refuse, reason: ReasonCrossDB},
		// Databases.
		{db: 1, cmd: "FLUSHDB", verdict: Refuse, reason: ReasonCrossDB},
		{db: 1, cmd: "FLUSHALL", verdict: Rewrite, cmds: []string{"0:FLUSHDB"}},
		{db: 0, cmd: "SWAPDB 1 2", verdict: Refuse, reason: ReasonCrossDB},
		{db: 1, cmd: "MOVE a 2", verdict: Rewrite, cmds: []string{"0:RENAME db1:a db2:a"}},
		{db: 1, cmd: "MOVE a 1", verdict: Drop, reason: ReasonDB},
		{db: 1, cmd: "MOVE a 7", verdict: Rewrite, reason: ReasonDB, cmds: []string{"0:DEL db1:a"}},
		{db: 7, cmd: "MOVE a 1", verdict: Refuse, reason: ReasonCrossDB},
		{db: 1, cmd: "COPY a b", verdict: Rewrite, cmds: []string{"0:COPY db1:a db1:b"}},
		{db: 1, cmd: "COPY a b DB 2 REPLACE", verdict: Rewrite, cmds: []string{"0:COPY db1:a db2:b REPLACE"}},
		{db: 1, cmd: "COPY a a db 3", verdict: Rewrite, cmds: []string{"0:COPY db1:a db3:a"}},
		{db: 1, cmd: "COPY a a DB 1", verdict: Drop, reason: ReasonDB},
		{db: 1, cmd: "COPY a b DB 9", verdict: Drop, reason: ReasonDB},
		// Structure and server-wide commands are untouched.
		{db: 1, cmd: "MULTI", verdict: Keep, dst: AllDBs},
		{db: 1, cmd: "SELECT 1", verdict: Keep, dst: AllDBs},
		{db: 1, cmd: "PUBLISH ch a", verdict: Keep, dst: AllDBs},
		{db: 1, cmd: "FUNCTION LOAD code", verdict: Keep, dst: AllDBs},
	})
	n := f.Counts()
	if n.Renamed == 0 || n.Refused != 4 {
		t.Errorf("counters: %+v", n)
	}

	// Key patterns match the source's names, before the prefix.
	fx := fourIntoZero(t, "tmp:*")
	checkDecisions(t, "prefix and exclude", fx, []decisionCase{
		{db: 2, cmd: "SET tmp:a 1", verdict: Drop, reason: ReasonExcluded},
		{db: 2, cmd: "DEL a tmp:x b", verdict: Rewrite, reason: ReasonExcluded, cmds: []string{"0:DEL db2:a db2:b"}},
		{db: 2, cmd: "MSET a 1 b 2", verdict: Rewrite, cmds: []string{"0:MSET db2:a 1 db2:b 2"}},
		{db: 2, cmd: "RENAME tmp:a a", verdict: Rewrite, cmds: []string{"0:RENAME db2:tmp:a db2:a"}},
		{db: 2, cmd: "RENAME tmp:a tmp:b", verdict: Drop, reason: ReasonExcluded},
		{db: 2, cmd: "MOVE tmp:a 1", verdict: Drop, reason: ReasonExcluded},
		{db: 2, cmd: "SET db2:tmp:a 1", verdict: Rewrite, cmds: []string{"0:SET db2:db2:tmp:a 1"}},
	})
	if fx.KeepKey([]byte("db2:tmp:x")) != true || fx.KeepKey([]byte("tmp:x")) {
		t.Error("KeepKey does not match source names")
	}

	// N:M:prefix=P on a standalone destination.
	fs := MustNew(Spec{DBs: []int{1, 2, 3}, DBPrefix: map[int]string{1: "x:", 2: "x:", 3: "y:"}})
	checkDecisions(t, "prefix in place", fs, []decisionCase{
		{db: 1, cmd: "SET a 1", verdict: Rewrite, cmds: []string{"1:SET x:a 1"}},
		{db: 1, cmd: "FLUSHDB", verdict: Keep, dst: 1}, // alone in its database
		{db: 1, cmd: "MOVE a 2", verdict: Rewrite, cmds: []string{"1:MOVE x:a 2"}},
		{db: 1, cmd: "MOVE a 3", verdict: Refuse, reason: ReasonCrossDB},
		{db: 0, cmd: "SWAPDB 1 2", verdict: Keep, dst: AllDBs},
		{db: 0, cmd: "SWAPDB 1 3", verdict: Refuse, reason: ReasonCrossDB},
		{db: 1, cmd: "COPY a b DB 3", verdict: Rewrite, cmds: []string{"1:COPY x:a y:b DB 3"}},
		{db: 2, cmd: "FLUSHALL", verdict: Rewrite, cmds: []string{"1:FLUSHDB", "2:FLUSHDB", "3:FLUSHDB"}},
	})

	// A prefix holding '*' cannot stand in front of a SORT pattern.
	fstar := MustNew(Spec{DBs: []int{1}, DBPrefix: map[int]string{1: "a*:"}})
	checkDecisions(t, "star prefix", fstar, []decisionCase{
		{db: 1, cmd: "SORT l BY w_* STORE o", verdict: Refuse, reason: ReasonCrossDB},
		{db: 1, cmd: "SORT l STORE o", verdict: Rewrite, cmds: []string{"1:SORT a*:l STORE a*:o"}},
	})
}

// TestCommandPrefixRefusalsExplain: each refusal names the command, the key or database,
// and what to do.
func TestCommandPrefixRefusalsExplain(t *testing.T) {
	f := fourIntoZero(t)
	for _, c := range []struct {
		db   int
		cmd  string
		want []string
	}{
		{1, "FLUSHDB", []string{"FLUSHDB", "db1:", "--exclude-commands flushdb", "db1:*"}},
		{0, "SWAPDB 1 2", []string{"SWAPDB 1 2", "--db-merge or key prefixes"}},
		{1, "JSON.SET k $ 1", []string{"JSON.SET", "db1:", "without a prefix"}},
	} {
		a := args(c.cmd)
		d := f.Command(c.db, string(a[0]), a, nil)
		if d.Verdict != Refuse || d.Err == nil {
			t.Errorf("%q: %s", c.cmd, d.Verdict)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(d.Err.Error(), w) {
				t.Errorf("%q: %v; want it to say %q", c.cmd, d.Err, w)
			}
		}
	}
}

// TestCommandPrefixAliasing: renaming never writes into the caller's arguments.
func TestCommandPrefixAliasing(t *testing.T) {
	f := fourIntoZero(t)
	a := args("MSET a 1 b 2")
	keep := make([][]byte, len(a))
	for i := range a {
		keep[i] = bytes.Clone(a[i])
	}
	d := f.Command(1, "MSET", a, nil)
	d.Cmds[0].Args[1][0] = 'X' // the renamed key is new memory
	for i := range a {
		if !bytes.Equal(a[i], keep[i]) {
			t.Fatalf("argument %d changed to %q", i, a[i])
		}
	}
}

func TestRenameKeys(t *testing.T) {
	f := fourIntoZero(t)
	for _, c := range []struct{ in, want string }{
		{"DEL k", "DEL db1:k"},
		{"SET k v", "SET db1:k v"},
		{"APPEND k v", "APPEND db1:k v"},
		{"RPUSH k a b", "RPUSH db1:k a b"},
		{"SADD k a", "SADD db1:k a"},
		{"ZADD k 1 a", "ZADD db1:k 1 a"},
		{"HSET k f v", "HSET db1:k f v"},
		{"HPEXPIREAT k 99 FIELDS 1 f", "HPEXPIREAT db1:k 99 FIELDS 1 f"},
		{"XADD k 1-1 f v", "XADD db1:k 1-1 f v"},
		{"XSETID k 1-1 ENTRIESADDED 1 MAXDELETEDID 0-0", "XSETID db1:k 1-1 ENTRIESADDED 1 MAXDELETEDID 0-0"},
		{"XGROUP CREATE k g 0-0 ENTRIESREAD 1", "XGROUP CREATE db1:k g 0-0 ENTRIESREAD 1"},
		{"XGROUP CREATECONSUMER k g c", "XGROUP CREATECONSUMER db1:k g c"},
		{"XGROUP DESTROY k g", "XGROUP DESTROY db1:k g"},
		{"XCLAIM k g c 0 1-1 TIME 5 RETRYCOUNT 1 FORCE JUSTID LASTID 1-1", "XCLAIM db1:k g c 0 1-1 TIME 5 RETRYCOUNT 1 FORCE JUSTID LASTID 1-1"},
		{"PEXPIREAT k 5", "PEXPIREAT db1:k 5"},
	} {
		got, err := f.RenameKeys(1, args(c.in))
		if err != nil || string(bytes.Join(got, []byte(" "))) != c.want {
			t.Errorf("RenameKeys(%q) = %q, %v; want %q", c.in, bytes.Join(got, []byte(" ")), err, c.want)
		}
	}
	if _, err := f.RenameKeys(1, args("JSON.SET k $ 1")); err == nil {
		t.Error("RenameKeys renamed a command it does not know")
	}
	plain := MustNew(Spec{DBs: []int{1}})
	in := args("SET k v")
	if got, err := plain.RenameKeys(1, in); err != nil || &got[0] != &in[0] {
		t.Error("RenameKeys without a prefix copied the command")
	}
	if db, ok := f.SnapshotKey(2, []byte("k"), 0); !ok || db != 0 || string(f.KeyPrefix(2)) != "db2:" {
		t.Errorf("SnapshotKey(2) = %d %v, prefix %q", db, ok, f.KeyPrefix(2))
	}
	if f.Counts().RenamedKeys != 1 {
		t.Errorf("renamed snapshot keys: %d", f.Counts().RenamedKeys)
	}
}

// TestPrefixOnRealServers applies commands to a source with four databases and, through
// the prefix mapping, to database 0 of a destination, the way a task applies a stream;
// then every source key K of db N must be the destination's dbN:K, by DEBUG DIGEST-VALUE
// and TTL presence, and the destination must hold nothing else. The mix has the same key
// names in every database, and the commands the mapping rewrites beyond renaming: MOVE
// between prefixed databases (a RENAME), COPY ... DB, SORT with BY and GET patterns and
// STORE, scripts with KEYS, FLUSHALL.
func TestPrefixOnRealServers(t *testing.T) {
	src, dst := testutil.StartServer(t), testutil.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	f := fourIntoZero(t)
	a := &applier{t: t, ctx: ctx, f: f, src: src.Conn(t), dst: dst.Conn(t)}
	must := func(db int, line ...string) {
		t.Helper()
		if !a.run(db, line...) {
			t.Fatalf("db %d %q: refused by the source or the filter", db, line)
		}
	}
	fill := func(tag string) {
		for db := 0; db < 4; db++ {
			v := fmt.Sprintf("%s-%d", tag, db)
			must(db, "MSET", "a", v, "b", v, "w_1", "3", "w_2", "1", "w_3", "2")
			must(db, "RPUSH", "l", "1", "2", "3")
			must(db, "HSET", "h_1", "f", v+"-1", "g", "x")
			must(db, "HSET", "h_2", "f", v+"-2")
			must(db, "SADD", "s", v, "m")
			must(db, "ZADD", "z", "1", v)
			must(db, "SET", "ttl", v, "EX", "1000")
			must(db, "XADD", "st", "5-1", "f", v) // the stream carries the ID the source chose
		}
	}
	fill("one")
	for db := 0; db < 4; db++ {
		must(db, "SORT", "l", "BY", "w_*", "GET", "#", "GET", "h_*->f", "STORE", "sorted")
		must(db, "SORT", "l", "BY", "nosort", "GET", "w_*", "STORE", "weights")
		must(db, "EVAL", "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])", "2", "a", "cnt", "from-script")
		must(db, "RENAME", "b", "b2")
		must(db, "ZUNIONSTORE", "zu", "2", "z", "s", "WEIGHTS", "1", "2")
	}
	must(1, "SET", "only1", "x")
	must(1, "MOVE", "only1", "2")                       // RENAME db1:only1 db2:only1
	must(2, "COPY", "l", "lc", "DB", "3")               // COPY db2:l db3:lc
	must(3, "COPY", "h_1", "h_1", "DB", "0", "REPLACE") // onto an existing key
	must(0, "MOVE", "ttl", "9")                         // leaves the selection: DEL db0:ttl
	if a.run(1, "FLUSHDB") || a.run(0, "SWAPDB", "1", "2") {
		t.Fatal("a command the mapping cannot represent was not refused")
	}

	// A seeded random mix over the same names in every database.
	rng := rand.New(rand.NewPCG(7, 1))
	key := func() string { return fmt.Sprintf("k%d", rng.IntN(8)) }
	for i := 0; i < 1200; i++ {
		db := rng.IntN(4)
		switch rng.IntN(10) {
		case 0, 1:
			a.run(db, "SET", key(), fmt.Sprint(i))
		case 2:
			a.run(db, "DEL", key(), key())
		case 3:
			a.run(db, "MSET", key(), fmt.Sprint(i), key(), fmt.Sprint(i))
		case 4:
			a.run(db, "RPUSH", "list:"+key(), fmt.Sprint(i))
		case 5:
			a.run(db, "PEXPIRE", key(), "1000000")
		case 6:
			a.run(db, "RENAME", key(), key())
		case 7:
			a.run(db, "MOVE", key(), fmt.Sprint(rng.IntN(4)))
		case 8:
			a.run(db, "COPY", key(), key(), "DB", fmt.Sprint(rng.IntN(4)), "REPLACE")
		case 9:
			a.run(db, "SUNIONSTORE", "set:"+key(), "set:"+key(), "set:"+key())
			a.run(db, "SADD", "set:"+key(), fmt.Sprint(i))
		}
	}
	requirePrefixed(ctx, t, f, src, dst, 4)

	must(2, "FLUSHALL") // FLUSHDB 0 on the destination: every source database is empty
	fill("two")
	requirePrefixed(ctx, t, f, src, dst, 4)
	t.Logf("%d commands applied, %d dropped, %d refused; counters %+v", a.applied, a.dropp, len(a.refused), f.Counts())
}

// requirePrefixed checks that destination db 0 holds exactly KeyPrefix(N)+K for every key
// K of source dbs 0..n-1, with the same value digest and TTL presence.
func requirePrefixed(ctx context.Context, t *testing.T, f *Filter, src, dst *testutil.Server, n int) {
	t.Helper()
	want := map[string]keyValue{}
	sc, dc := src.Conn(t), dst.Conn(t)
	for db := 0; db < n; db++ {
		for k, v := range dbContents(ctx, t, sc, db) {
			want[string(f.KeyPrefix(db))+k] = v
		}
	}
	got := dbContents(ctx, t, dc, 0)
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("destination lacks %q", k)
		case g != v:
			t.Errorf("destination %q differs from the source (ttl %v vs %v)", k, g.hasTTL, v.hasTTL)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("destination holds %q, which no source key maps to", k)
		}
	}
	if len(want) < 40 {
		t.Fatalf("only %d keys compared", len(want))
	}
}

// FuzzParseDBMapping: whatever parses formats back to the same mapping, and a mapping
// that parses either compiles or says why not.
func FuzzParseDBMapping(f *testing.F) {
	for _, s := range []string{"1:prefix=db1:", "0:prefix=a,1:prefix=b", "1:3:prefix=x:", "0:1,3:3", " 2 : prefix= y ",
		"1:prefix=", "1:2:prefix=a:b:c", "1:prefix=fer", "1:prefix={t}", "0:0,1:0", "9:9:9", ":", ",,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dbs, prefixes, err := ParseDBMapping(s)
		if err != nil {
			return
		}
		back := FormatDBMapping(dbs, prefixes)
		dbs2, prefixes2, err := ParseDBMapping(back)
		if err != nil || !maps.Equal(dbs, dbs2) || !maps.Equal(prefixes, prefixes2) {
			t.Fatalf("%q → %v %v → %q → %v %v, %v", s, dbs, prefixes, back, dbs2, prefixes2, err)
		}
		for src, p := range prefixes {
			if p == "" || strings.Contains(p, ",") {
				t.Fatalf("%q: source %d has prefix %q", s, src, p)
			}
		}
		if _, err := New(Spec{DBMap: dbs, DBPrefix: prefixes, AllowDBMerge: true}); err != nil && !strings.Contains(err.Error(), "prefix") {
			t.Fatalf("%q: %v", s, err)
		}
	})
}

// FuzzCommandPrefix: under the four-database mapping, every key of everything forwarded
// from a selected database carries one of the prefixes, and nothing panics.
func FuzzCommandPrefix(f *testing.F) {
	for _, c := range []string{"SET a 1", "DEL a tmp:x b", "MSET a 1 b", "MOVE a 3", "MOVE a x", "COPY a b DB 3 REPLACE",
		"COPY a b DB", "SWAPDB 1 3", "FLUSHALL ASYNC", "ZUNIONSTORE d 99 a", "EVAL s -1 a", "SORT a BY w_* GET # STORE",
		"SORT a LIMIT 1", "GEORADIUS g 1 2 3 km STORE", "RESTORE k 0 \x00", "mod.cmd a", "XGROUP CREATE", "LMPOP 2 a"} {
		f.Add(1, c)
	}
	flt := MustNew(Spec{DBs: []int{0, 1, 2, 3}, DBMap: map[int]int{0: 0, 1: 0, 2: 0, 3: 0},
		DBPrefix: map[int]string{0: "db0:", 1: "db1:", 2: "db2:", 3: "db3:"}, Exclude: []Pattern{MustParsePattern("tmp:*")}})
	f.Fuzz(func(t *testing.T, db int, line string) {
		a := args(line)
		if len(a) == 0 {
			return
		}
		db = (db%6 + 6) % 6 // the stream runs data commands in a database
		d := flt.Command(db, string(a[0]), a, nil)
		var out []Cmd
		switch d.Verdict {
		case Keep:
			out = []Cmd{{DB: d.DB, Args: a}}
		case Rewrite:
			out = d.Cmds
		}
		for _, c := range out {
			if c.DB != 0 && c.DB != AllDBs {
				t.Fatalf("%q from db %d forwarded into db %d", line, db, c.DB)
			}
			idx, ok := KeyIndices(string(c.Args[0]), c.Args)
			if !ok {
				t.Fatalf("%q from db %d forwarded as %q, whose keys are unknown", line, db, c.Args)
			}
			for _, i := range idx {
				if i < len(c.Args) && !bytes.HasPrefix(c.Args[i], []byte("db")) {
					t.Fatalf("%q from db %d forwarded as %q: key %q has no prefix", line, db, c.Args, c.Args[i])
				}
			}
		}
	})
}

// BenchmarkCommandPrefix: the cost of renaming a stream command's keys (one allocation for
// the arguments, one for the renamed keys).
func BenchmarkCommandPrefix(b *testing.B) {
	f := MustNew(Spec{DBs: []int{0, 1}, DBMap: map[int]int{0: 0, 1: 0}, DBPrefix: map[int]string{0: "db0:", 1: "db1:"}})
	set := args("SET user:1234:profile some-value")
	mset := args("MSET user:1 a user:2 b user:3 c")
	b.ReportAllocs()
	b.Run("set", func(b *testing.B) {
		for b.Loop() {
			f.Command(1, "set", set, nil)
		}
	})
	b.Run("mset", func(b *testing.B) {
		for b.Loop() {
			f.Command(1, "mset", mset, nil)
		}
	})
}
