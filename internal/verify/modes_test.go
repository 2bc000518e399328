package verify

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// pairWith starts two servers, runs fill on the source, and makes the destination a
// detached copy of it.
func pairWith(t *testing.T, fill func(w *dbWriter)) (src, dst *testutil.Server) {
	t.Helper()
	src = testutil.StartServer(t)
	dst = testutil.StartServer(t)
	fill(writerFor(t, src, 0))
	dst.ReplicaOf(t, src)
	dst.Do(t, "REPLICAOF", "NO", "ONE")
	return src, dst
}

// TestModes: outline sees key sets, types and TTLs but not values; length adds lengths;
// value sees everything.
func TestModes(t *testing.T) {
	src, dst := pairWith(t, func(w *dbWriter) {
		w.do("SET", "same-len", "abc")
		w.do("RPUSH", "longer", "a", "b")
		w.do("SET", "ttl", "x", "PX", 3_600_000)
		w.do("SET", "gone", "x")
	})
	dw := writerFor(t, dst, 0)
	dw.do("SET", "same-len", "abd")
	dw.do("RPUSH", "longer", "c")
	dw.do("PERSIST", "ttl")
	dw.do("DEL", "gone")
	for _, tc := range []struct {
		mode Mode
		want map[string]Class
	}{
		{ModeOutline, map[string]Class{"ttl": ClassTTL, "gone": ClassMissing}},
		{ModeLength, map[string]Class{"ttl": ClassTTL, "gone": ClassMissing, "longer": ClassValue}},
		{ModeValue, map[string]Class{"ttl": ClassTTL, "gone": ClassMissing, "longer": ClassValue, "same-len": ClassValue}},
	} {
		o := opts(src.Addr(), dst.Addr())
		o.Mode = tc.mode
		res := run(t, o)
		got := map[string]Class{}
		for _, d := range res.Remaining {
			got[d.Key] = d.Class
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("mode %s: got %v, want %v", tc.mode, got, tc.want)
		}
	}
}

// TestDBMapAndFilters: --db-map compares source db 2 with destination db 3; include and
// exclude patterns (prefix and glob) limit both directions.
func TestDBMapAndFilters(t *testing.T) {
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	sw := writerFor(t, src, 2)
	for _, k := range []string{"user:1", "user:2", "user:tmp:1", "order:1", "other"} {
		sw.do("SET", k, "v")
	}
	copyDB(t, src, 2, dst, 3)
	dw := writerFor(t, dst, 3)
	dw.do("SET", "user:1", "changed")
	dw.do("SET", "user:tmp:1", "changed") // excluded
	dw.do("SET", "other", "changed")      // not included
	dw.do("SET", "user:9", "extra")
	dw.do("DEL", "order:1")
	// The same keys in dst db 2 would all be extra without the map.
	writerFor(t, dst, 2).do("SET", "user:5", "in db 2")

	o := opts(src.Addr(), dst.Addr())
	o.Selection.Map = map[int]int{2: 3}
	var err error
	if o.Selection.Keys, err = NewKeyFilter([]string{"user:", "ord*"}, []string{"user:tmp:*"}); err != nil {
		t.Fatal(err)
	}
	res := run(t, o)
	want := map[string]Class{"user:1": ClassValue, "user:9": ClassExtra, "order:1": ClassMissing}
	got := map[string]Class{}
	for _, d := range res.Remaining {
		got[d.Key] = d.Class
		if d.DB != 2 || d.TargetDB != 3 {
			t.Errorf("%v: db %d → %d, want 2 → 3", d, d.DB, d.TargetDB)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// One include: it goes to the server as SCAN MATCH, same result for that prefix.
	o.Selection.Keys, _ = NewKeyFilter([]string{"user:"}, []string{"user:tmp:*"})
	res = run(t, o)
	if len(res.Remaining) != 2 {
		t.Errorf("include user: → %v, want user:1 and user:9", res.Remaining)
	}
}

// TestStreamMetadata: differences a digest does not see — consumer groups, their
// last-delivered IDs, consumers and pending entries, the stream's last ID — are found with
// and without DEBUG, and repaired.
func TestStreamMetadata(t *testing.T) {
	src, dst := pairWith(t, func(w *dbWriter) {
		for _, k := range []string{"sg", "sc", "sp", "sl", "sx"} {
			for i := range 10 {
				w.do("XADD", k, fmt.Sprintf("5-%d", i+1), "f", i)
			}
			w.on(k, "XGROUP", "CREATE", k, "g", "0")
			w.on(k, "XREADGROUP", "GROUP", "g", "c1", "COUNT", 4, "STREAMS", k, ">")
		}
	})
	dw := writerFor(t, dst, 0)
	dw.on("sg", "XGROUP", "SETID", "sg", "g", "5-8")         // last-delivered-id
	dw.on("sc", "XGROUP", "CREATECONSUMER", "sc", "g", "c2") // a consumer more
	dw.on("sp", "XACK", "sp", "g", "5-2")                    // pending entries
	dw.on("sl", "XSETID", "sl", "9-9")                       // last-generated-id
	dw.on("sx", "XGROUP", "CREATE", "sx", "other", "$")      // a group more
	want := map[string]string{
		"sg": "last-delivered-id", "sc": `consumer "c2"`, "sp": "pending", "sl": "last-generated-id", "sx": `group "other" extra on destination`,
	}
	for _, noDigest := range []bool{false, true} {
		o := opts(src.Addr(), dst.Addr())
		o.NoDigest = noDigest
		res := run(t, o)
		got := map[string]string{}
		for _, d := range res.Remaining {
			got[d.Key] = d.Detail
			if d.Class != ClassValue {
				t.Errorf("%v: class %s, want value", d, d.Class)
			}
		}
		for k, w := range want {
			if !strings.Contains(got[k], w) {
				t.Errorf("noDigest=%v: %s: detail %q, want it to name %q", noDigest, k, got[k], w)
			}
			delete(got, k)
		}
		for k, d := range got {
			t.Errorf("unexpected difference %s: %s", k, d)
		}
	}
	o := opts(src.Addr(), dst.Addr())
	o.Repair = true
	if res := run(t, o); len(res.Remaining) != 0 {
		t.Fatalf("after repair: %v", res.Remaining)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{})
}

// TestRepairCommandPath: values above the DUMP threshold are rebuilt with commands in
// windows (through a temporary key renamed over the original), every type, TTL kept.
func TestRepairCommandPath(t *testing.T) {
	in := time.Now().Add(time.Hour).UnixMilli()
	src, dst := pairWith(t, func(w *dbWriter) {
		args := []any{"HSET", "h"}
		for i := range 1500 {
			args = append(args, fmt.Sprintf("f%d", i), i)
		}
		w.do(args...)
		args = []any{"RPUSH", "l"}
		for i := range 1500 {
			args = append(args, i)
		}
		w.do(args...)
		args = []any{"SADD", "s"}
		for i := range 1500 {
			args = append(args, i)
		}
		w.do(args...)
		args = []any{"ZADD", "z"}
		for i := range 1500 {
			args = append(args, float64(i)/3, i)
		}
		w.do(args...)
		w.do("SET", "str", strings.Repeat("0123456789", 70_000))
		for i := range 1200 {
			w.do("XADD", "x", "*", "n", i)
		}
		w.on("x", "XGROUP", "CREATE", "x", "g", "0")
		w.do("XDEL", "x", w.do("XRANGE", "x", "-", "+", "COUNT", 1).Elems[0].Elems[0].Str)
		for _, k := range []string{"h", "l", "s", "z", "str", "x"} {
			w.do("PEXPIREAT", k, in)
		}
		w.do("SET", "{tag}k", "tagged")
	})
	dw := writerFor(t, dst, 0)
	dw.do("HSET", "h", "f77", "x")
	dw.do("LSET", "l", 900, "x")
	dw.do("SREM", "s", 5)
	dw.do("ZADD", "z", 99, 7)
	dw.do("SETRANGE", "str", 600_000, "x")
	dw.do("XADD", "x", "*", "extra", 1)
	dw.do("DEL", "{tag}k")

	o := opts(src.Addr(), dst.Addr())
	o.Repair = true
	v, err := open(testCtx(t), withLogger(o, t))
	if err != nil {
		t.Fatal(err)
	}
	defer v.closeWorkers()
	v.dumpMaxElems, v.dumpMaxBytes = 1000, 100_000
	res, err := v.run(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Found) != 7 || len(res.Remaining) != 0 || res.Repairs.Rewritten != 6 || res.Repairs.Restored != 1 {
		t.Fatalf("found %v\nremaining %v\nrepairs %+v", res.Found, res.Remaining, res.Repairs)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{TTLTolerance: 2 * time.Second})
	if n := dst.Do(t, "DBSIZE").Int; n != 7 {
		t.Errorf("destination has %d keys, want 7 (a temporary key left behind?)", n)
	}
}

func withLogger(o Options, t testing.TB) Options {
	o.Logger = testLogger(t)
	return withDefaults(o)
}

// TestSample: sample mode compares random keys of both sides and extrapolates.
func TestSample(t *testing.T) {
	src, dst := pairWith(t, func(w *dbWriter) {
		args := []any{"MSET"}
		for i := range 2000 {
			args = append(args, fmt.Sprintf("k%d", i), i)
		}
		w.do(args...)
	})
	dw := writerFor(t, dst, 0)
	// A tenth of the keys differ.
	for i := 0; i < 2000; i += 10 {
		dw.do("SET", fmt.Sprintf("k%d", i), "changed")
	}
	o := opts(src.Addr(), dst.Addr())
	o.Sample = 400
	res := run(t, o)
	e := res.SampleEstimate
	if e == nil || !res.Sampled {
		t.Fatal("no estimate")
	}
	if e.SourceSampled < 200 || e.SourceSampled > 400 || e.TargetSampled < 200 || e.SourceKeys != 2000 {
		t.Errorf("estimate %+v", e)
	}
	// 200 differ; a 400-key sample estimates that within a wide margin.
	if d := e.Differing(); d < 80 || d > 400 {
		t.Errorf("estimated %d differing keys, want about 200 (%+v)", d, e)
	}
	for _, d := range res.Remaining {
		if d.Class != ClassValue {
			t.Errorf("unexpected %v", d)
		}
	}
	if len(res.Remaining) == 0 {
		t.Error("sample found no difference")
	}
}
