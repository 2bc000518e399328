package filter

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/rdb"
)

func args(s string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(s) {
		out = append(out, []byte(f))
	}
	return out
}

func cmdString(c Cmd) string {
	parts := make([]string, len(c.Args))
	for i, a := range c.Args {
		parts[i] = string(a)
	}
	return fmt.Sprintf("%d:%s", c.DB, strings.Join(parts, " "))
}

type decisionCase struct {
	db      int
	cmd     string
	verdict Verdict
	reason  Reason
	dst     int      // Keep
	cmds    []string // Rewrite, each "db:ARGS"
}

func checkDecisions(t *testing.T, name string, f *Filter, cases []decisionCase) {
	t.Helper()
	for _, c := range cases {
		a := args(c.cmd)
		d := f.Command(c.db, string(a[0]), a, nil)
		where := fmt.Sprintf("%s: db %d %q", name, c.db, c.cmd)
		if d.Verdict != c.verdict || d.Reason != c.reason {
			t.Errorf("%s: %s (%s, err %v), want %s (%s)", where, d.Verdict, d.Reason, d.Err, c.verdict, c.reason)
			continue
		}
		switch d.Verdict {
		case Keep:
			if d.DB != c.dst {
				t.Errorf("%s: kept in db %d, want %d", where, d.DB, c.dst)
			}
		case Rewrite:
			var got []string
			for _, cmd := range d.Cmds {
				got = append(got, cmdString(cmd))
			}
			if !slices.Equal(got, c.cmds) {
				t.Errorf("%s: rewritten to %q, want %q", where, got, c.cmds)
			}
		case Refuse:
			if d.Err == nil {
				t.Errorf("%s: refused without a reason", where)
			}
		}
	}
}

// TestCommandAcceptanceSelection: the selection, --dbs 1,3 --db-map 3:0
// --exclude 'tmp:*', on every kind of command a stream carries.
func TestCommandAcceptanceSelection(t *testing.T) {
	f := MustNew(Spec{DBs: []int{1, 3}, DBMap: map[int]int{3: 0}, Exclude: []Pattern{MustParsePattern("tmp:*")}})
	checkDecisions(t, "acceptance", f, []decisionCase{
		{db: 1, cmd: "SET a 1", verdict: Keep, dst: 1},
		{db: 3, cmd: "set a 1", verdict: Keep, dst: 0},
		{db: 2, cmd: "SET a 1", verdict: Drop, reason: ReasonDB},
		{db: 1, cmd: "SET tmp:x 1", verdict: Drop, reason: ReasonExcluded},
		{db: 1, cmd: "DEL a tmp:x b", verdict: Rewrite, reason: ReasonExcluded, cmds: []string{"1:DEL a b"}},
		{db: 1, cmd: "UNLINK tmp:a tmp:b", verdict: Drop, reason: ReasonExcluded},
		{db: 1, cmd: "DEL a b", verdict: Keep, dst: 1},
		{db: 3, cmd: "MSET a 1 tmp:b 2 c 3", verdict: Rewrite, reason: ReasonExcluded, cmds: []string{"0:MSET a 1 c 3"}},
		{db: 3, cmd: "MSETNX tmp:a 1 b 2", verdict: Rewrite, reason: ReasonExcluded, cmds: []string{"0:MSETNX b 2"}},
		{db: 1, cmd: "RENAME tmp:a a", verdict: Keep, dst: 1}, // not every key excluded
		{db: 1, cmd: "RENAME tmp:a tmp:b", verdict: Drop, reason: ReasonExcluded},
		{db: 1, cmd: "LMOVE tmp:l l LEFT RIGHT", verdict: Keep, dst: 1},
		{db: 1, cmd: "ZUNIONSTORE tmp:d 2 tmp:a tmp:b", verdict: Drop, reason: ReasonExcluded},
		{db: 1, cmd: "ZUNIONSTORE d 2 tmp:a tmp:b WEIGHTS 1 2", verdict: Keep, dst: 1},
		{db: 1, cmd: "XGROUP CREATE tmp:s g $", verdict: Drop, reason: ReasonExcluded},
		{db: 1, cmd: "EVAL return 2 tmp:a tmp:b", verdict: Drop, reason: ReasonExcluded},
		{db: 1, cmd: "EVAL return 2 tmp:a b", verdict: Keep, dst: 1},
		{db: 1, cmd: "SORT tmp:a BY store STORE tmp:x", verdict: Drop, reason: ReasonExcluded},
		{db: 1, cmd: "SORT tmp:a BY store STORE x", verdict: Keep, dst: 1},
		// Cross-database commands.
		{db: 1, cmd: "MOVE a 3", verdict: Rewrite, cmds: []string{"1:MOVE a 0"}},
		{db: 3, cmd: "MOVE a 1", verdict: Keep, dst: 0},
		{db: 1, cmd: "MOVE a 2", verdict: Rewrite, reason: ReasonDB, cmds: []string{"1:DEL a"}},
		{db: 2, cmd: "MOVE a 1", verdict: Refuse, reason: ReasonCrossDB},
		{db: 2, cmd: "MOVE a 4", verdict: Drop, reason: ReasonDB},
		{db: 2, cmd: "MOVE tmp:a 1", verdict: Drop, reason: ReasonExcluded},
		{db: 1, cmd: "COPY a b DB 3", verdict: Rewrite, cmds: []string{"1:COPY a b DB 0"}},
		{db: 1, cmd: "COPY a b db 3 REPLACE", verdict: Rewrite, cmds: []string{"1:COPY a b db 0 REPLACE"}},
		{db: 3, cmd: "COPY a b DB 1", verdict: Keep, dst: 0},
		{db: 1, cmd: "COPY a b DB 2", verdict: Drop, reason: ReasonDB},
		{db: 2, cmd: "COPY a b DB 1", verdict: Refuse, reason: ReasonCrossDB},
		{db: 2, cmd: "COPY a b", verdict: Drop, reason: ReasonDB},
		{db: 3, cmd: "COPY a b", verdict: Keep, dst: 0},
		{db: 1, cmd: "COPY tmp:a tmp:b DB 3", verdict: Drop, reason: ReasonExcluded},
		{db: 0, cmd: "FLUSHALL", verdict: Rewrite, cmds: []string{"0:FLUSHDB", "1:FLUSHDB"}},
		{db: 5, cmd: "flushall ASYNC", verdict: Rewrite, cmds: []string{"0:FLUSHDB ASYNC", "1:FLUSHDB ASYNC"}},
		{db: 2, cmd: "FLUSHDB", verdict: Drop, reason: ReasonDB},
		{db: 3, cmd: "FLUSHDB", verdict: Keep, dst: 0},
		{db: 0, cmd: "SWAPDB 1 3", verdict: Rewrite, cmds: []string{"-1:SWAPDB 1 0"}},
		{db: 0, cmd: "SWAPDB 1 2", verdict: Refuse, reason: ReasonCrossDB},
		{db: 0, cmd: "SWAPDB 2 4", verdict: Drop, reason: ReasonDB},
		// Stream structure and server-wide commands.
		{db: 2, cmd: "MULTI", verdict: Keep, dst: AllDBs},
		{db: 2, cmd: "exec", verdict: Keep, dst: AllDBs},
		{db: 2, cmd: "SELECT 2", verdict: Keep, dst: AllDBs},
		{db: 2, cmd: "PUBLISH ch msg", verdict: Keep, dst: AllDBs},
		{db: 2, cmd: "FUNCTION LOAD code", verdict: Keep, dst: AllDBs},
		{db: 2, cmd: "SCRIPT FLUSH", verdict: Keep, dst: AllDBs},
	})
}

func TestCommandIncludeRule(t *testing.T) {
	f := MustNew(Spec{Include: []Pattern{MustParsePattern("user:")}, Exclude: []Pattern{MustParsePattern("user:tmp:")}})
	checkDecisions(t, "include", f, []decisionCase{
		{db: 0, cmd: "SET user:1 x", verdict: Keep},
		{db: 0, cmd: "SET other x", verdict: Drop, reason: ReasonNotIncluded},
		{db: 0, cmd: "SET user:tmp:1 x", verdict: Drop, reason: ReasonExcluded},
		// Not separable: kept when any key is included, dropped only when all are excluded.
		{db: 0, cmd: "RENAME user:tmp:a other:b", verdict: Keep},
		{db: 0, cmd: "RENAME other:a user:b", verdict: Keep},
		{db: 0, cmd: "RENAME other:a other:b", verdict: Drop, reason: ReasonNotIncluded},
		{db: 0, cmd: "RENAME user:tmp:a user:tmp:b", verdict: Drop, reason: ReasonExcluded},
		{db: 0, cmd: "SUNIONSTORE user:d other:a user:tmp:b", verdict: Keep},
		// Separable: each key on its own.
		{db: 0, cmd: "DEL other user:tmp:1", verdict: Drop, reason: ReasonNotIncluded},
		{db: 0, cmd: "DEL other user:1 user:tmp:1", verdict: Rewrite, reason: ReasonNotIncluded, cmds: []string{"0:DEL user:1"}},
		{db: 0, cmd: "TOUCH user:1 user:2", verdict: Keep},
		{db: 0, cmd: "FLUSHALL", verdict: Keep, dst: AllDBs}, // key patterns do not narrow FLUSHALL
		{db: 0, cmd: "FLUSHDB", verdict: Keep},
		{db: 0, cmd: "PING", verdict: Keep, dst: AllDBs},
	})
}

func TestCommandTypes(t *testing.T) {
	f := MustNew(Spec{Types: []string{"hash", "module"}})
	payload := func(typ byte) string { return string([]byte{typ}) + "payload" }
	checkDecisions(t, "types", f, []decisionCase{
		{db: 0, cmd: "HSET h f v", verdict: Keep},
		{db: 0, cmd: "SET s 1", verdict: Drop, reason: ReasonType},
		{db: 0, cmd: "PFADD hll a", verdict: Drop, reason: ReasonType},
		{db: 0, cmd: "GEOADD g 1 2 m", verdict: Drop, reason: ReasonType},
		{db: 0, cmd: "XADD s * f v", verdict: Drop, reason: ReasonType},
		{db: 0, cmd: "DEL s", verdict: Keep},       // generic: its key's type is unknown here
		{db: 0, cmd: "EXPIRE s 10", verdict: Keep}, // generic
		{db: 0, cmd: "RESTORE k 0 " + payload(0), verdict: Drop, reason: ReasonType},
		{db: 0, cmd: "RESTORE k 0 " + payload(16), verdict: Keep},
		{db: 0, cmd: "JSON.SET k $ {}", verdict: Keep}, // module
	})
	g := MustNew(Spec{Types: []string{"string"}})
	checkDecisions(t, "types", g, []decisionCase{
		{db: 0, cmd: "JSON.SET k $ {}", verdict: Drop, reason: ReasonType},
		{db: 0, cmd: "SETBIT b 7 1", verdict: Keep},
	})
	if !f.KeepType(rdb.KindHash) || f.KeepType(rdb.KindString) || f.KeepType(rdb.KindUnknown) {
		t.Error("KeepType disagrees with --types hash,module")
	}
	if !MustNew(Spec{}).KeepType(rdb.KindUnknown) {
		t.Error("with every type selected, KindUnknown is not kept")
	}
}

func TestCommandExcluded(t *testing.T) {
	f := MustNew(Spec{ExcludeCommands: []string{"FLUSHALL", "publish", "json.set"}})
	checkDecisions(t, "exclude-commands", f, []decisionCase{
		{db: 0, cmd: "FLUSHALL", verdict: Drop, reason: ReasonCommand},
		{db: 0, cmd: "flushall ASYNC", verdict: Drop, reason: ReasonCommand},
		{db: 0, cmd: "PUBLISH c m", verdict: Drop, reason: ReasonCommand},
		{db: 0, cmd: "Json.Set k $ 1", verdict: Drop, reason: ReasonCommand},
		{db: 0, cmd: "FLUSHDB", verdict: Keep},
		{db: 0, cmd: "MULTI", verdict: Keep, dst: AllDBs},
	})
	if f.KeepCommand("FlushAll") || !f.KeepCommand("set") {
		t.Error("KeepCommand disagrees with --exclude-commands")
	}
}

func TestCommandMapsAndMerges(t *testing.T) {
	swap := MustNew(Spec{DBMap: map[int]int{0: 1, 1: 0}})
	checkDecisions(t, "swap", swap, []decisionCase{
		{db: 0, cmd: "SET a 1", verdict: Keep, dst: 1},
		{db: 7, cmd: "SET a 1", verdict: Keep, dst: 7},
		{db: 0, cmd: "FLUSHALL", verdict: Keep, dst: AllDBs}, // every destination db receives a source
		{db: 0, cmd: "SWAPDB 0 5", verdict: Rewrite, cmds: []string{"-1:SWAPDB 1 5"}},
		{db: 0, cmd: "MOVE k 1", verdict: Rewrite, cmds: []string{"1:MOVE k 0"}},
	})
	merge := MustNew(Spec{DBs: []int{0, 3}, DBMap: map[int]int{3: 0}, AllowDBMerge: true})
	checkDecisions(t, "merge", merge, []decisionCase{
		{db: 3, cmd: "SET a 1", verdict: Keep, dst: 0},
		{db: 3, cmd: "FLUSHDB", verdict: Refuse, reason: ReasonCrossDB},
		{db: 0, cmd: "FLUSHALL", verdict: Rewrite, cmds: []string{"0:FLUSHDB"}},
		{db: 0, cmd: "MOVE a 3", verdict: Drop, reason: ReasonDB},
		{db: 0, cmd: "COPY a a DB 3", verdict: Drop, reason: ReasonDB},
		{db: 0, cmd: "COPY a b DB 3 REPLACE", verdict: Rewrite, cmds: []string{"0:COPY a b REPLACE"}},
		{db: 0, cmd: "SWAPDB 0 3", verdict: Refuse, reason: ReasonCrossDB},
	})
	all := MustNew(Spec{})
	checkDecisions(t, "identity", all, []decisionCase{
		{db: 300, cmd: "SET a 1", verdict: Keep, dst: 300},
		{db: 0, cmd: "SWAPDB 0 1", verdict: Keep, dst: AllDBs},
		{db: 0, cmd: "MOVE a 1", verdict: Keep, dst: 0},
		{db: 0, cmd: "FLUSHALL", verdict: Keep, dst: AllDBs},
		{db: 0, cmd: "SOME.MODULE k", verdict: Keep},
	})
}

// TestCommandKeyPositions: positions from the caller (COMMAND INFO) take precedence; an
// unknown command without them is refused when key patterns are set.
func TestCommandKeyPositions(t *testing.T) {
	f := MustNew(Spec{Exclude: []Pattern{MustParsePattern("tmp:")}})
	a := args("MOD.WRITE opt tmp:k")
	if d := f.Command(0, "mod.write", a, nil); d.Verdict != Refuse || !strings.Contains(d.Err.Error(), "key positions are unknown") {
		t.Errorf("unknown command without positions: %s %v", d.Verdict, d.Err)
	}
	if d := f.Command(0, "mod.write", a, []int{2}); d.Verdict != Drop || d.Reason != ReasonExcluded {
		t.Errorf("unknown command with positions: %s %s", d.Verdict, d.Reason)
	}
	if d := f.Command(0, "mod.write", a, []int{}); d.Verdict != Keep {
		t.Errorf("keyless command: %s", d.Verdict)
	}
	// Out-of-range positions are ignored rather than trusted.
	if d := f.Command(0, "mod.write", a, []int{-1, 0, 9}); d.Verdict != Keep {
		t.Errorf("out-of-range positions: %s", d.Verdict)
	}
	// Positions given for a separable command split by them.
	d := f.Command(0, "del", args("DEL x tmp:y z"), []int{1, 2, 3})
	if d.Verdict != Rewrite || cmdString(d.Cmds[0]) != "0:DEL x z" {
		t.Errorf("DEL with positions: %s %v", d.Verdict, d.Cmds)
	}
}

func TestKeyIndices(t *testing.T) {
	cases := []struct {
		cmd  string
		want []int
		ok   bool
	}{
		{"SET k v", []int{1}, true},
		{"get k", []int{1}, true},
		{"MSET a 1 b 2", []int{1, 3}, true},
		{"DEL a b c", []int{1, 2, 3}, true},
		{"RENAME a b", []int{1, 2}, true},
		{"BLPOP a b 0", []int{1, 2}, true},
		{"BITOP AND d a b", []int{2, 3, 4}, true},
		{"ZUNIONSTORE d 2 a b WEIGHTS 1 2", []int{1, 3, 4}, true},
		{"ZUNIONSTORE d 9 a b", []int{1, 3, 4}, true}, // a count past the end is clamped
		{"ZUNIONSTORE d x a", []int{1}, true},
		{"LMPOP 2 a b LEFT", []int{2, 3}, true},
		{"BLMPOP 0 2 a b LEFT", []int{3, 4}, true},
		{"EVAL s 2 a b x", []int{3, 4}, true},
		{"FCALL f 0 x", nil, true},
		{"SORT k BY store GET store LIMIT 0 1 STORE d", []int{1, 10}, true},
		{"SORT k", []int{1}, true},
		{"GEORADIUS g 1 2 3 km COUNT 5 STORE s STOREDIST d", []int{1, 9, 11}, true},
		{"GEORADIUSBYMEMBER g m 3 km STORE s", []int{1, 6}, true},
		{"XREAD COUNT 2 STREAMS a b 0 0", []int{4, 5}, true},
		{"XREADGROUP GROUP streams c STREAMS a 0", []int{5}, true},
		{"XGROUP CREATE s g $", []int{2}, true},
		{"XGROUP HELP", nil, true},
		{"FLUSHALL", nil, true},
		{"MULTI", nil, true},
		{"NOSUCH k", nil, false},
		{"SET", nil, true},
	}
	for _, c := range cases {
		a := args(c.cmd)
		got, ok := KeyIndices(string(a[0]), a)
		if ok != c.ok || !slices.Equal(got, c.want) {
			t.Errorf("KeyIndices(%q) = %v, %v; want %v, %v", c.cmd, got, ok, c.want, c.ok)
		}
	}
	if k := CommandKind("HSET", nil); k != rdb.KindHash {
		t.Errorf("CommandKind(HSET) = %s", k)
	}
	if k := CommandKind("ft.search", nil); k != rdb.KindModule {
		t.Errorf("CommandKind(ft.search) = %s", k)
	}
	if k := CommandKind("RENAME", nil); k != rdb.KindUnknown {
		t.Errorf("CommandKind(RENAME) = %s", k)
	}
}

func TestSnapshotKeyAndCounts(t *testing.T) {
	f := MustNew(Spec{DBs: []int{1, 3}, DBMap: map[int]int{3: 0}, Exclude: []Pattern{MustParsePattern("tmp:*")}, Types: []string{"string", "hash"}})
	for _, c := range []struct {
		db   int
		key  string
		kind rdb.Kind
		dst  int
		ok   bool
	}{
		{1, "a", rdb.KindString, 1, true},
		{3, "a", rdb.KindHash, 0, true},
		{2, "a", rdb.KindString, 0, false},
		{1, "tmp:a", rdb.KindString, 0, false},
		{1, "l", rdb.KindList, 0, false},
		{2, "tmp:b", rdb.KindList, 0, false}, // counted once, under its first reason (db)
	} {
		if dst, ok := f.SnapshotKey(c.db, []byte(c.key), c.kind); ok != c.ok || dst != c.dst {
			t.Errorf("SnapshotKey(%d, %q, %s) = %d, %v; want %d, %v", c.db, c.key, c.kind, dst, ok, c.dst, c.ok)
		}
	}
	f.Command(1, "del", args("DEL a tmp:1 tmp:2"), nil)
	f.Command(1, "set", args("SET tmp:1 x"), nil)
	f.Command(2, "set", args("SET a x"), nil)
	f.Command(2, "move", args("MOVE a 1"), nil)
	n := f.Counts()
	want := Counts{Rewritten: 1, Refused: 1}
	want.Keys[ReasonDB], want.Keys[ReasonExcluded], want.Keys[ReasonType] = 2, 1, 1
	want.Commands[ReasonExcluded], want.Commands[ReasonDB] = 1, 1
	want.SplitKeys[ReasonExcluded] = 2
	if n != want {
		t.Errorf("Counts = %+v\nwant     %+v", n, want)
	}
	if n.TotalKeys() != 4 || n.TotalCommands() != 2 {
		t.Errorf("totals: %d keys, %d commands", n.TotalKeys(), n.TotalCommands())
	}
}

// TestNoAllocations: the hot paths (keep and drop of snapshot keys and stream commands,
// pattern matching of every kind) do not allocate.
func TestNoAllocations(t *testing.T) {
	f := MustNew(Spec{
		DBs: []int{1, 3}, DBMap: map[int]int{3: 0},
		Include:         []Pattern{MustParsePattern("user:"), MustParsePattern("g:order:*:item"), MustParsePattern(`re:^s[0-9]+$`)},
		Exclude:         []Pattern{MustParsePattern("*:tmp"), MustParsePattern("g:user:[0-9]?x")},
		Types:           []string{"string", "hash"},
		ExcludeCommands: []string{"flushall"},
	})
	set := args("SET user:1 v")
	setUpper := args("SET user:1 v")
	del := args("DEL user:1 order:7:item s12")
	rename := args("RENAME user:1 other")
	zunion := args("ZUNIONSTORE user:d 2 a b")
	key := []byte("order:123:item")
	rekey := []byte("s42")
	var sink int
	for name, fn := range map[string]func(){
		"keep":          func() { sink += int(f.Command(1, "set", set, nil).Verdict) },
		"upper case":    func() { sink += int(f.Command(3, "SET", setUpper, nil).Verdict) },
		"drop db":       func() { sink += int(f.Command(2, "set", set, nil).Verdict) },
		"separable":     func() { sink += int(f.Command(1, "del", del, nil).Verdict) },
		"not separable": func() { sink += int(f.Command(1, "rename", rename, nil).Verdict) },
		"drop type":     func() { sink += int(f.Command(1, "zunionstore", zunion, nil).Verdict) },
		"given keys":    func() { sink += int(f.Command(1, "set", set, []int{1}).Verdict) },
		"snapshot key": func() {
			if _, ok := f.SnapshotKey(1, key, rdb.KindString); ok {
				sink++
			}
		},
		"KeepKey": func() {
			if f.KeepKey(rekey) {
				sink++
			}
		},
	} {
		if n := testing.AllocsPerRun(200, fn); n != 0 {
			t.Errorf("%s: %.1f allocations per call", name, n)
		}
	}
	buf := make([]int, 0, 8)
	mset := args("MSET a 1 b 2")
	if n := testing.AllocsPerRun(200, func() { buf, _ = AppendKeyIndices(buf[:0], "MSET", mset) }); n != 0 {
		t.Errorf("AppendKeyIndices: %.1f allocations per call", n)
	}
	_ = sink
}

func BenchmarkCommand(b *testing.B) {
	f := MustNew(Spec{DBs: []int{1, 3}, DBMap: map[int]int{3: 0}, Exclude: []Pattern{MustParsePattern("tmp:*"), MustParsePattern("g:cache:*:v[0-9]")}})
	set := args("SET user:1234:profile some-value")
	del := args("DEL user:1 user:2 user:3")
	b.ReportAllocs()
	b.Run("set", func(b *testing.B) {
		for b.Loop() {
			f.Command(1, "set", set, nil)
		}
	})
	b.Run("del", func(b *testing.B) {
		for b.Loop() {
			f.Command(1, "del", del, nil)
		}
	})
}

func BenchmarkPattern(b *testing.B) {
	key := []byte("session:2024:user:123456789:data")
	for _, p := range []string{"session:", "g:session:*", "g:*:user:*:data", "g:s[a-z]ssion:*:data", `re:^session:\d+:`} {
		pat := MustParsePattern(p)
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				pat.Match(key)
			}
		})
	}
}

// FuzzCommand: any command, with any key positions, is decided without panicking; a
// rewrite never invents keys, and a kept or rewritten command lands in a selected
// destination database.
func FuzzCommand(f *testing.F) {
	for _, c := range []string{"SET a 1", "DEL a tmp:x b", "MSET a 1 tmp:b", "MOVE a 3", "MOVE a x", "COPY a b DB 3 REPLACE",
		"COPY a b DB", "SWAPDB 1 3", "SWAPDB 1", "FLUSHALL ASYNC", "ZUNIONSTORE d 99 a", "EVAL s -1 a", "SORT a STORE",
		"XREAD STREAMS", "GEORADIUS g 1 2 3 km STORE", "RESTORE k 0 \x00", "mod.cmd tmp:a"} {
		f.Add(1, c, []byte{1, 2})
		f.Add(2, c, []byte(nil))
	}
	flt := MustNew(Spec{DBs: []int{1, 3}, DBMap: map[int]int{3: 0}, Exclude: []Pattern{MustParsePattern("tmp:*")}, Include: []Pattern{MustParsePattern("re:^[a-z]")}})
	f.Fuzz(func(t *testing.T, db int, line string, idx []byte) {
		a := args(line)
		if len(a) == 0 {
			return
		}
		var keyIdx []int
		if idx != nil {
			keyIdx = []int{}
			for _, b := range idx {
				keyIdx = append(keyIdx, int(int8(b)))
			}
		}
		d := flt.Command(db%300, string(a[0]), a, keyIdx)
		switch d.Verdict {
		case Keep:
			if d.DB != AllDBs && d.DB != 0 && d.DB != 1 {
				t.Fatalf("%q kept in db %d", line, d.DB)
			}
		case Rewrite:
			if len(d.Cmds) == 0 {
				t.Fatalf("%q rewritten to nothing", line)
			}
			for _, c := range d.Cmds {
				if c.DB != AllDBs && c.DB != 0 && c.DB != 1 {
					t.Fatalf("%q rewritten into db %d", line, c.DB)
				}
				if len(c.Args) == 0 {
					t.Fatalf("%q rewritten to an empty command", line)
				}
			}
		case Refuse:
			if d.Err == nil {
				t.Fatalf("%q refused without a reason", line)
			}
		}
	})
}
