package command_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/testutil"
)

// liveTable starts a real redis-server and returns its command table and a connection.
func liveTable(t *testing.T) (*command.Table, *redis.Conn) {
	t.Helper()
	s := testutil.StartServer(t)
	c := s.Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tab, err := command.Load(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if !tab.KeySpecs() {
		t.Fatalf("server %s has no key specs (Redis 7 or later is required)", s.Version(t))
	}
	return tab, c
}

func strArgs(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}

func positions(keys []command.Key) []int {
	p := make([]int, len(keys))
	for i, k := range keys {
		p[i] = k.Pos
	}
	return p
}

// serverKeys asks the server for the keys of args (COMMAND GETKEYSANDFLAGS) and returns
// their names, or ok=false when the server finds the arguments invalid or keyless.
func serverKeys(ctx context.Context, t *testing.T, c *redis.Conn, args [][]byte) (names []string, flags [][]string, ok bool) {
	t.Helper()
	q := []any{"COMMAND", "GETKEYSANDFLAGS"}
	for _, a := range args {
		q = append(q, a)
	}
	v, err := c.Do(ctx, q...)
	if err != nil {
		if _, isReply := err.(*resp.Error); isReply {
			return nil, nil, false
		}
		t.Fatalf("COMMAND GETKEYSANDFLAGS %q: %v", args, err)
	}
	for _, e := range v.Elems {
		names = append(names, string(e.Elems[0].Str))
		var f []string
		for _, x := range e.Elems[1].Elems {
			f = append(f, strings.ToLower(x.Text()))
		}
		flags = append(flags, f)
	}
	return names, flags, true
}

// curated are examples for every kind of key spec, written by hand with the positions a
// reader of the Redis docs expects. Each is also checked against the server.
var curated = []struct {
	args string
	keys []int
}{
	{"SET k v", []int{1}},
	{"SET k v EX 10 GET", []int{1}},
	{"GETSET k v", []int{1}},
	{"APPEND k v", []int{1}},
	{"INCRBY k 5", []int{1}},
	{"SETRANGE k 0 v", []int{1}},
	{"GETDEL k", []int{1}},
	{"GETEX k PERSIST", []int{1}},
	{"DEL a b c", []int{1, 2, 3}},
	{"UNLINK a b", []int{1, 2}},
	{"TOUCH a", []int{1}},
	{"EXISTS a b", []int{1, 2}},
	{"MSET a 1 b 2 c 3", []int{1, 3, 5}},
	{"MSETNX a 1 b 2", []int{1, 3}},
	{"RENAME a b", []int{1, 2}},
	{"RENAMENX a b", []int{1, 2}},
	{"COPY a b", []int{1, 2}},
	{"COPY a b DB 1 REPLACE", []int{1, 2}},
	{"MOVE a 1", []int{1}},
	{"EXPIRE k 10 NX", []int{1}},
	{"PEXPIREAT k 1700000000000", []int{1}},
	{"PERSIST k", []int{1}},
	{"RESTORE k 0 payload REPLACE ABSTTL", []int{1}},
	{"SMOVE a b m", []int{1, 2}},
	{"SADD s m1 m2", []int{1}},
	{"SUNIONSTORE d a b c", []int{1, 2, 3, 4}},
	{"SINTERSTORE d a", []int{1, 2}},
	{"SDIFFSTORE d a b", []int{1, 2, 3}},
	{"LMOVE a b LEFT RIGHT", []int{1, 2}},
	{"BLMOVE a b LEFT RIGHT 0", []int{1, 2}},
	{"RPOPLPUSH a b", []int{1, 2}},
	{"BRPOPLPUSH a b 0", []int{1, 2}},
	{"LMPOP 2 a b LEFT COUNT 2", []int{2, 3}},
	{"BLMPOP 0 2 a b LEFT", []int{3, 4}},
	{"BLPOP a b 0", []int{1, 2}},
	{"ZUNIONSTORE d 2 a b WEIGHTS 1 2", []int{1, 3, 4}},
	{"ZINTERSTORE d 1 a AGGREGATE MAX", []int{1, 3}},
	{"ZDIFFSTORE d 2 a b", []int{1, 3, 4}},
	{"ZRANGESTORE d s 0 -1", []int{1, 2}},
	{"ZMPOP 2 a b MIN", []int{2, 3}},
	{"BZMPOP 0 1 a MAX COUNT 3", []int{3}},
	{"BZPOPMIN a b 0", []int{1, 2}},
	{"ZADD z 1 m", []int{1}},
	{"BITOP AND d a b c", []int{2, 3, 4, 5}},
	{"BITOP NOT d a", []int{2, 3}},
	{"PFMERGE d a b", []int{1, 2, 3}},
	{"PFADD h a b", []int{1}},
	{"PFCOUNT a b", []int{1, 2}},
	{"GEOSEARCHSTORE d s FROMLONLAT 0 0 BYRADIUS 1 km", []int{1, 2}},
	{"GEORADIUS s 0 0 1 km STORE d", []int{1, 7}},
	{"GEORADIUS s 0 0 1 km STOREDIST d", []int{1, 7}},
	{"GEORADIUSBYMEMBER s m 1 km STORE d", []int{1, 6}},
	{"SORT s", []int{1}},
	{"SORT s LIMIT 0 1 STORE d", []int{1, 6}},
	{"SORT s BY nosort STORE d", []int{1, 5}},
	{"SORT_RO s", []int{1}},
	{"EVAL script 2 a b x y", []int{3, 4}},
	{"EVALSHA sha 1 a x", []int{3}},
	{"EVAL script 0 x", nil},
	{"FCALL fn 2 a b x", []int{3, 4}},
	{"FCALL fn 0", nil},
	{"XADD s * f v", []int{1}},
	{"XREAD COUNT 1 STREAMS a b 0 0", []int{4, 5}},
	{"XREADGROUP GROUP g c STREAMS a 0", []int{5}},
	{"XGROUP CREATE s g $ MKSTREAM", []int{2}},
	{"XGROUP SETID s g 0", []int{2}},
	{"XAUTOCLAIM s g c 0 0", []int{1}},
	{"MIGRATE host 6379 k 0 1000", []int{3}},
	{"MIGRATE host 6379 \"\" 0 1000 KEYS a b", []int{7, 8}},
	{"OBJECT ENCODING k", []int{2}},
	{"MEMORY USAGE k", []int{2}},
	{"FLUSHALL", nil},
	{"FUNCTION LOAD code", nil},
	{"SCRIPT FLUSH", nil},
	{"PUBLISH ch m", nil},
	{"LCS a b", []int{1, 2}},
	{"SINTERCARD 2 a b LIMIT 1", []int{2, 3}},
}

// splitCmd splits a command line on spaces; "" is an empty argument.
func splitCmd(s string) [][]byte {
	var out [][]byte
	for _, f := range strings.Fields(s) {
		if f == `""` {
			f = ""
		}
		out = append(out, []byte(f))
	}
	return out
}

func TestCuratedKeys(t *testing.T) {
	tab, c := liveTable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range curated {
		args := splitCmd(tc.args)
		keys, err := tab.Keys(ctx, c, args, nil)
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		if got := positions(keys); !slices.Equal(got, tc.keys) && !(len(got) == 0 && len(tc.keys) == 0) {
			t.Errorf("%s: key positions %v, want %v", tc.args, got, tc.keys)
		}
		names, _, ok := serverKeys(ctx, t, c, args)
		if !ok {
			names = nil // the server finds no keys (EVAL … 0)
		}
		var want []string
		for _, p := range tc.keys {
			want = append(want, string(args[p]))
		}
		if !slices.Equal(names, want) {
			t.Errorf("%s: the server names keys %q, the curated positions %q", tc.args, names, want)
		}
	}
}

// ---- examples generated from COMMAND DOCS ----

// argDoc is one argument of a COMMAND DOCS reply.
type argDoc struct {
	name, typ, token               string
	optional, multiple, multiToken bool
	sub                            []argDoc
}

// docs maps "name" and "name|sub" to their arguments.
func parseDocs(t *testing.T, v resp.Value) map[string][]argDoc {
	t.Helper()
	out := map[string][]argDoc{}
	var walk func(name string, body resp.Value)
	walk = func(name string, body resp.Value) {
		f := pairs(body)
		out[name] = parseArgDocs(f["arguments"])
		if subs, ok := f["subcommands"]; ok {
			for i := 0; i+1 < len(subs.Elems); i += 2 {
				walk(strings.ToLower(subs.Elems[i].Text()), subs.Elems[i+1])
			}
		}
	}
	for i := 0; i+1 < len(v.Elems); i += 2 {
		walk(strings.ToLower(v.Elems[i].Text()), v.Elems[i+1])
	}
	return out
}

func pairs(v resp.Value) map[string]resp.Value {
	m := map[string]resp.Value{}
	for i := 0; i+1 < len(v.Elems); i += 2 {
		m[strings.ToLower(v.Elems[i].Text())] = v.Elems[i+1]
	}
	return m
}

func parseArgDocs(v resp.Value) []argDoc {
	var out []argDoc
	for _, e := range v.Elems {
		f := pairs(e)
		a := argDoc{name: f["name"].Text(), typ: f["type"].Text(), token: f["token"].Text()}
		for _, fl := range f["flags"].Elems {
			switch fl.Text() {
			case "optional":
				a.optional = true
			case "multiple":
				a.multiple = true
			case "multiple_token":
				a.multiToken = true
			}
		}
		a.sub = parseArgDocs(f["arguments"])
		out = append(out, a)
	}
	return out
}

// exampleGen builds invocations from argument docs. variant 0 leaves optional arguments
// out; 1 puts them all in with the first choice of each one-of; 2 the last choice and two
// repetitions of everything that repeats.
type exampleGen struct {
	variant int
	keys    int
}

func (g *exampleGen) reps(a argDoc) int {
	if a.multiple && g.variant == 2 {
		return 2
	}
	return 1
}

func (g *exampleGen) args(docs []argDoc) []string {
	var out []string
	for i := 0; i < len(docs); i++ {
		a := docs[i]
		if a.optional && g.variant == 0 {
			continue
		}
		// numkeys-style counts: the count of the repeated argument that follows.
		if a.typ == "integer" && a.name == "numkeys" && i+1 < len(docs) && docs[i+1].multiple {
			if a.token != "" {
				out = append(out, a.token)
			}
			out = append(out, strconv.Itoa(g.reps(docs[i+1])))
			continue
		}
		n := g.reps(a)
		for r := range n {
			if a.token != "" && (r == 0 || a.multiToken) {
				out = append(out, a.token)
			}
			out = append(out, g.value(a)...)
		}
	}
	return out
}

func (g *exampleGen) value(a argDoc) []string {
	switch a.typ {
	case "key":
		g.keys++
		return []string{fmt.Sprintf("key%d", g.keys)}
	case "pure-token":
		return nil // the token is the whole argument
	case "integer":
		return []string{"1"}
	case "double":
		return []string{"1.5"}
	case "unix-time":
		return []string{"1700000000"}
	case "pattern":
		return []string{"pat*"}
	case "oneof":
		if len(a.sub) == 0 {
			return nil
		}
		pick := a.sub[0]
		if g.variant == 2 {
			pick = a.sub[len(a.sub)-1]
		}
		var out []string
		if pick.token != "" {
			out = append(out, pick.token)
		}
		return append(out, g.value(pick)...)
	case "block":
		// A block's own repetitions (XREAD's STREAMS keys and ids) must match, which the
		// shared variant does.
		return g.args(a.sub)
	}
	return []string{"str"}
}

// TestKeysAgreeWithServer checks the key positions of every write command against the
// server's own COMMAND GETKEYSANDFLAGS, on examples generated from COMMAND DOCS (three
// variants each) plus the curated ones. Every write command that can have keys must be
// covered by at least one example the server accepts.
func TestKeysAgreeWithServer(t *testing.T) {
	tab, c := liveTable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	v, err := c.Do(ctx, "COMMAND", "DOCS")
	if err != nil {
		t.Fatal(err)
	}
	docs := parseDocs(t, v)

	type example struct {
		cmd  string // table name
		args [][]byte
	}
	var examples []example
	for _, tc := range curated {
		args := splitCmd(tc.args)
		name := strings.ToLower(string(args[0]))
		if cmd := tab.Lookup(args); cmd != nil {
			name = cmd.Name
		}
		examples = append(examples, example{name, args})
	}
	for _, name := range tab.Names() {
		cmd := tab.Command(name)
		if cmd.Sub != nil {
			continue // a container; its subcommands are listed on their own
		}
		ad, ok := docs[name]
		if !ok {
			t.Errorf("%s: no COMMAND DOCS entry", name)
			continue
		}
		prefix := strings.Split(name, "|")
		for variant := range 3 {
			g := exampleGen{variant: variant}
			args := slices.Clone(prefix)
			args = append(args, g.args(ad)...)
			examples = append(examples, example{name, strArgs(args...)})
		}
	}

	covered := map[string]bool{}
	viaServer := map[string]bool{}
	checked := 0
	for _, ex := range examples {
		cmd := tab.Lookup(ex.args)
		if cmd == nil {
			t.Errorf("%q: the table does not know it", ex.args)
			continue
		}
		names, flags, ok := serverKeys(ctx, t, c, ex.args)
		if !ok {
			continue // the server rejects the example (or finds no keys): nothing to compare
		}
		checked++
		keys, specOK := cmd.KeysFromSpecs(ex.args, nil)
		if !specOK {
			viaServer[ex.cmd] = true
			// Only the server can say: Keys must ask it and map the names back.
			if keys, err = tab.Keys(ctx, c, ex.args, nil); err != nil {
				t.Errorf("%q: %v", ex.args, err)
				continue
			}
		}
		var got []string
		for _, k := range keys {
			got = append(got, string(ex.args[k.Pos]))
		}
		if !slices.Equal(got, names) {
			t.Errorf("%q: keys %q (positions %v, from specs %v), the server says %q", ex.args, got, positions(keys), specOK, names)
			continue
		}
		// A key the table calls read-only must be one the server flags RO.
		for i, k := range keys {
			if k.Flags.ReadOnly() && !slices.Contains(flags[i], "ro") {
				t.Errorf("%q: key %q is read-only by the table, the server's flags are %v", ex.args, got[i], flags[i])
			}
		}
		covered[ex.cmd] = true
	}
	var missing []string
	writes := 0
	for _, name := range tab.Names() {
		cmd := tab.Command(name)
		if cmd.Sub != nil || cmd.Flags&command.FlagWrite == 0 || !cmd.HasKeys() {
			continue
		}
		writes++
		if !covered[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Errorf("write commands with keys that no accepted example covers: %v", missing)
	}
	t.Logf("%d examples, %d accepted and checked; %d write commands with keys, %d covered; via COMMAND GETKEYS: %v",
		len(examples), checked, writes, writes-len(missing), slices.Sorted(mapKeys(viaServer)))
	if checked < 300 {
		t.Errorf("only %d examples were checked; the generator has broken", checked)
	}
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
