package verify

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/testutil"
)

const testTimeout = 60 * time.Second

func testCtx(t testing.TB) context.Context {
	d := testTimeout
	if _, ok := t.(*testing.B); ok {
		d = 20 * time.Minute // benchmarks load and compare millions of keys
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dbWriter sends commands to one db of a deployment, routed by the key in args[1].
type dbWriter struct {
	t     testing.TB
	d     testutil.Deployment
	db    int
	conns map[*testutil.Server]*redis.Conn
	// prefix renames the key of every command (args[1], and on's key wherever it is an
	// argument): the writer then writes as a sync with --db-map db:prefix=P would.
	prefix string
}

func writerFor(t testing.TB, d testutil.Deployment, db int) *dbWriter {
	w := &dbWriter{t: t, d: d, db: db, conns: map[*testutil.Server]*redis.Conn{}}
	t.Cleanup(func() {
		for _, c := range w.conns {
			c.Close()
		}
	})
	return w
}

func (w *dbWriter) conn(s *testutil.Server) *redis.Conn {
	w.t.Helper()
	if c := w.conns[s]; c != nil {
		return c
	}
	c, err := redis.Dial(testCtx(w.t), redis.Options{Addr: s.Addr(), DB: w.db})
	if err != nil {
		w.t.Fatal(err)
	}
	w.conns[s] = c
	return c
}

// do runs a command on the master of its key (args[1]) and fails the test on any error.
func (w *dbWriter) do(args ...any) resp.Value {
	w.t.Helper()
	v, err := w.try(args...)
	if err != nil {
		w.t.Fatalf("%v: %v", args, err)
	}
	return v
}

func (w *dbWriter) try(args ...any) (resp.Value, error) {
	key := ""
	if len(args) > 1 {
		key = fmt.Sprint(args[1])
		if b, ok := args[1].([]byte); ok {
			key = string(b)
		}
		if w.prefix != "" {
			key = w.prefix + key
			args = slices.Clone(args)
			args[1] = key
		}
	}
	return w.conn(w.d.MasterForKey(key)).Do(testCtx(w.t), args...)
}

// on runs a command whose key is not args[1] (XGROUP, XREADGROUP) on key's master.
func (w *dbWriter) on(key string, args ...any) resp.Value {
	w.t.Helper()
	if w.prefix != "" {
		args = slices.Clone(args)
		for i, a := range args {
			if a == any(key) {
				args[i] = w.prefix + key
			}
		}
		key = w.prefix + key
	}
	v, err := w.conn(w.d.MasterForKey(key)).Do(testCtx(w.t), args...)
	if err != nil {
		w.t.Fatalf("%v: %v", args, err)
	}
	return v
}

// copyDB copies every key of db sdb of src into db ddb of dst (DUMP, PTTL, RESTORE
// REPLACE): the "sync" of tests whose destination cannot be a native replica (a cluster,
// another db number).
func copyDB(t testing.TB, src testutil.Deployment, sdb int, dst testutil.Deployment, ddb int) int {
	t.Helper()
	return copyDBAs(t, src, sdb, dst, ddb, "")
}

// copyDBAs is copyDB with every key renamed prefix+key on the destination.
func copyDBAs(t testing.TB, src testutil.Deployment, sdb int, dst testutil.Deployment, ddb int, prefix string) int {
	t.Helper()
	ctx := testCtx(t)
	out := writerFor(t, dst, ddb)
	out.prefix = prefix
	n := 0
	for _, m := range src.Masters() {
		c, err := redis.Dial(ctx, redis.Options{Addr: m.Addr(), DB: sdb})
		if err != nil {
			t.Fatal(err)
		}
		cursor := "0"
		for {
			v, err := c.Do(ctx, "SCAN", cursor, "COUNT", 500)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range v.Elems[1].Elems {
				dump, err := c.Do(ctx, "DUMP", k.Str)
				if err != nil {
					t.Fatal(err)
				}
				pttl, err := c.Do(ctx, "PTTL", k.Str)
				if err != nil {
					t.Fatal(err)
				}
				if dump.Null {
					continue
				}
				out.do("RESTORE", k.Str, max(pttl.Int, 0), dump.Str, "REPLACE")
				n++
			}
			cursor = string(v.Elems[0].Str)
			if cursor == "0" {
				break
			}
		}
		c.Close()
	}
	return n
}

// fixture writes the keys the seeded-difference tests change, plus some that must stay
// equal: small and big values of every type (big ones take the element-by-element path),
// streams with consumer groups and pending entries, and TTLs.
func fixture(t testing.TB, d testutil.Deployment, db int) {
	t.Helper()
	w := writerFor(t, d, db)
	in := time.Now().Add(time.Hour).UnixMilli()
	for i := range 50 {
		w.do("SET", fmt.Sprintf("str:%d", i), fmt.Sprintf("value-%d", i))
	}
	for _, k := range []string{"miss", "ty", "ttl-missing", "ttl-hour", "ttl-same"} {
		w.do("SET", k, "v-"+k)
	}
	for _, k := range []string{"ttl-missing", "ttl-hour", "ttl-same"} {
		w.do("PEXPIREAT", k, in)
	}
	for i := range 20 {
		w.do("HSET", "h", fmt.Sprintf("f%d", i), fmt.Sprintf("v%d", i))
		w.do("RPUSH", "l", fmt.Sprintf("e%d", i))
		w.do("SADD", "set", fmt.Sprintf("m%d", i))
		w.do("ZADD", "z", float64(i)+0.5, fmt.Sprintf("m%d", i))
		w.do("XADD", "s", fmt.Sprintf("1-%d", i+1), "f", fmt.Sprintf("v%d", i), "n", i)
		w.do("XADD", "s2", fmt.Sprintf("2-%d", i+1), "f", fmt.Sprintf("v%d", i))
	}
	w.on("s", "XGROUP", "CREATE", "s", "g", "1-5", "ENTRIESREAD", 5)
	w.on("s2", "XGROUP", "CREATE", "s2", "g2", "0")
	w.on("s2", "XREADGROUP", "GROUP", "g2", "alice", "COUNT", 3, "STREAMS", "s2", ">")
	w.on("s2", "XREADGROUP", "GROUP", "g2", "bob", "COUNT", 2, "STREAMS", "s2", ">")
	w.do("XACK", "s2", "g2", "2-1")
	// A medium value (compared by digest where DEBUG is allowed) and big ones (past the
	// digest and whole-value thresholds: element by element).
	args := []any{"HSET", "mid:h"}
	for i := range 1000 {
		args = append(args, fmt.Sprintf("field-%d", i), fmt.Sprintf("value-%d", i))
	}
	w.do(args...)
	args = []any{"HSET", "big:h"}
	for i := range 5000 {
		args = append(args, fmt.Sprintf("field-%d", i), fmt.Sprintf("value-%d", i))
	}
	w.do(args...)
	args = []any{"RPUSH", "big:l"}
	for i := range 3000 {
		args = append(args, fmt.Sprintf("e%d", i))
	}
	w.do(args...)
	args = []any{"ZADD", "big:z"}
	for i := range 5000 {
		args = append(args, i, fmt.Sprintf("m%d", i))
	}
	w.do(args...)
	args = []any{"SADD", "big:set"}
	for i := range 5000 {
		args = append(args, fmt.Sprintf("m%d", i))
	}
	w.do(args...)
	w.do("SET", "big:str", strings.Repeat("abcdefghij", 500_000)) // 5 MB
	for i := range 1200 {
		w.do("XADD", "big:s", fmt.Sprintf("3-%d", i+1), "f", i)
	}
}

// seeded are the differences seedDiffs makes: key → class, and a word its detail must name.
var seeded = map[string]struct {
	class  Class
	detail string
}{
	"miss":        {ClassMissing, "absent on destination"},
	"extra:1":     {ClassExtra, "absent on source"},
	"h":           {ClassValue, `field "f7"`},
	"l":           {ClassValue, "element 3"},
	"ty":          {ClassType, "string on source, set on destination"},
	"ttl-missing": {ClassTTL, "no TTL on destination"},
	"ttl-hour":    {ClassTTL, "apart by 1h0m0s"},
	"s":           {ClassValue, "entry 1-7 differs"},
	"big:h":       {ClassValue, `field "field-4321"`},
	"mid:h":       {ClassValue, `field "field-500"`},
}

// seedDiffs changes the destination's copy of the fixture: one difference of each class.
func seedDiffs(t testing.TB, d testutil.Deployment, db int) {
	t.Helper()
	seedDiffsWith(t, writerFor(t, d, db))
}

// seedDiffsWith is seedDiffs through w (a writer with a key prefix, say).
func seedDiffsWith(t testing.TB, w *dbWriter) {
	t.Helper()
	w.do("DEL", "miss")
	w.do("SET", "extra:1", "x")
	w.do("HSET", "h", "f7", "changed")
	w.do("LSET", "l", 3, "changed")
	w.do("DEL", "ty")
	w.do("SADD", "ty", "a")
	w.do("PERSIST", "ttl-missing")
	pttl := w.do("PTTL", "ttl-hour").Int
	w.do("PEXPIRE", "ttl-hour", pttl+time.Hour.Milliseconds())
	w.do("HSET", "big:h", "field-4321", "changed")
	w.do("HSET", "mid:h", "field-500", "changed")
	// A changed stream entry: entries cannot be edited, so rebuild the stream with the same
	// IDs, group and last ID, one entry's value changed.
	w.do("DEL", "s")
	for i := range 20 {
		v := fmt.Sprintf("v%d", i)
		if i == 6 {
			v = "changed"
		}
		w.do("XADD", "s", fmt.Sprintf("1-%d", i+1), "f", v, "n", i)
	}
	w.on("s", "XGROUP", "CREATE", "s", "g", "1-5", "ENTRIESREAD", 5)
}

// checkSeeded asserts that diffs are exactly the seeded ones, with the right classes and
// details.
func checkSeeded(t testing.TB, diffs []Diff, db int) {
	t.Helper()
	got := map[string]Diff{}
	for _, d := range diffs {
		if d.DB != db {
			t.Errorf("unexpected difference in db %d: %v", d.DB, d)
			continue
		}
		got[d.Key] = d
	}
	for k, want := range seeded {
		d, ok := got[k]
		if !ok {
			t.Errorf("seeded difference %q (%s) not reported", k, want.class)
			continue
		}
		if k == "ttl-hour" && d.TargetPTTL-d.SourcePTTL < (time.Hour-time.Second).Milliseconds() {
			t.Errorf("ttl-hour: PTTLs %d and %d are not an hour apart", d.SourcePTTL, d.TargetPTTL)
		}
		if d.Class != want.class || !strings.Contains(d.Detail, want.detail) {
			t.Errorf("key %q: got %s (%s), want %s naming %q", k, d.Class, d.Detail, want.class, want.detail)
		}
		delete(got, k)
	}
	for _, d := range got {
		t.Errorf("reported a difference that was not seeded: %v", d)
	}
}

// testLogger writes the run's log to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func opts(src, dst string) Options {
	return Options{
		Source:   redis.Options{Addr: src},
		Target:   redis.Options{Addr: dst},
		Rounds:   2,
		Interval: 10 * time.Millisecond,
	}
}

func run(t testing.TB, o Options) *Result {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	res, err := Run(testCtx(t), o)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return res
}
