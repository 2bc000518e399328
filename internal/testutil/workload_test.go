package testutil

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// opsText renders generated operations for comparison.
func opsText(ops []*op) string {
	var b strings.Builder
	for _, o := range ops {
		fmt.Fprintf(&b, "%d>%d %s %q\n", o.db, o.endDB, o.route, o.cmds)
	}
	return b.String()
}

func TestWorkloadIsDeterministic(t *testing.T) {
	opts := WorkloadOptions{Seed: 3, DBs: []int{0, 2}, TTL: true, Large: true}
	a, b := NewWorkload(opts), NewWorkload(opts)
	// The epoch is wall-clock; pin it so EXPIREAT arguments match too.
	b.epoch = a.epoch
	x, y := opsText(a.generate(5000)), opsText(b.generate(5000))
	if x != y {
		t.Fatal("two workloads with the same seed generated different commands")
	}
	// Generation continues deterministically in later calls.
	if opsText(a.generate(100)) != opsText(b.generate(100)) {
		t.Fatal("the second batch differs")
	}
	opts.Seed = 4
	if c := NewWorkload(opts); opsText(c.generate(5000)) == x {
		t.Fatal("a different seed generated the same commands")
	}
}

func TestWorkloadOptionsShapeCommands(t *testing.T) {
	w := NewWorkload(WorkloadOptions{Seed: 1, Cluster: true, Skip: []string{"stream", "script"}, Prefix: "p:"})
	ops := w.generate(20000)
	for _, o := range ops {
		for _, cmd := range o.cmds {
			switch {
			case strings.HasPrefix(cmd[0], "X"):
				t.Fatalf("skipped family stream generated %q", cmd)
			case cmd[0] == "EVAL" || cmd[0] == "EVALSHA":
				t.Fatalf("skipped family script generated %q", cmd)
			case cmd[0] == "SELECT" || cmd[0] == "MOVE" || (cmd[0] == "COPY" && len(cmd) > 4 && cmd[3] == "DB"):
				t.Fatalf("cluster workload on DB 0 generated %q", cmd)
			}
		}
		if !strings.HasPrefix(o.route, "p:") {
			t.Fatalf("key %q without the prefix", o.route)
		}
		// In cluster mode every key of an op shares the route key's slot.
		if slot, ok := opSlot(o); !ok {
			t.Fatalf("cluster op spans slots (route %q, slot %d): %q", o.route, slot, o.cmds)
		}
	}
	if w.Stats()["XADD"] != 0 || w.Stats()["FCALL"] == 0 || w.Stats()["MULTI"] == 0 {
		t.Errorf("unexpected stats %v", w.Stats())
	}

	// Without Cluster some multi-key commands span slots: Ferry must split or co-locate them.
	w = NewWorkload(WorkloadOptions{Seed: 1, DBs: []int{0, 1}})
	cross, crossdb := 0, 0
	for _, o := range w.generate(20000) {
		if _, ok := opSlot(o); !ok {
			cross++
		}
		if o.family == "crossdb" || o.endDB != o.db {
			crossdb++
		}
	}
	if cross == 0 || crossdb == 0 {
		t.Errorf("standalone workload: %d cross-slot ops, %d cross-db ops; want some of each", cross, crossdb)
	}
}

// opSlot returns the route key's slot and whether every key-like argument of the op shares it.
// Key-like: an argument naming one of the workload's key kinds.
func opSlot(o *op) (uint16, bool) {
	slot := slotOf(o.route)
	for _, cmd := range o.cmds {
		for _, a := range cmd[1:] {
			if looksLikeKey(a) && slotOf(a) != slot {
				return slot, false
			}
		}
	}
	return slot, true
}

func looksLikeKey(s string) bool {
	for _, k := range kindNames {
		if strings.Contains(s, k+":") {
			return true
		}
	}
	return false
}

func TestWorkloadEncodingsAndTypes(t *testing.T) {
	s := StartServer(t)
	w := NewWorkload(WorkloadOptions{Seed: 11, Large: true, Keys: 500})
	ctx := context.Background()
	start := time.Now()
	if err := w.Fill(ctx, s, 50000); err != nil {
		t.Fatal(err)
	}
	t.Logf("Fill of 50000 operations in %v; refused: %v", time.Since(start), w.Refused())
	if err := w.VerifyExact(ctx, s); err != nil {
		t.Fatal(err)
	}

	seen := make(map[string]bool)
	c := s.Conn(t)
	cursor := "0"
	for {
		v, err := c.Do(ctx, "SCAN", cursor, "COUNT", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range v.Elems[1].Elems {
			typ, err := c.Do(ctx, "TYPE", k.Str)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := c.Do(ctx, "OBJECT", "ENCODING", k.Str)
			if err != nil {
				t.Fatal(err)
			}
			seen[typ.Text()+"/"+enc.Text()] = true
			if strings.Contains(string(k.Str), "hll:") {
				e, err := c.Do(ctx, "PFDEBUG", "ENCODING", k.Str)
				if err != nil {
					t.Fatal(err)
				}
				seen["hll/"+e.Text()] = true
			}
		}
		if cursor = v.Elems[0].Text(); cursor == "0" {
			break
		}
	}
	for _, want := range []string{
		"string/int", "string/embstr", "string/raw", "list/quicklist",
		"set/intset", "set/hashtable", "zset/listpack", "zset/skiplist",
		"hash/listpack", "hash/hashtable", "stream/stream", "hll/sparse", "hll/dense",
	} {
		if !seen[want] {
			t.Errorf("no key with type/encoding %s; seen %v", want, seen)
		}
	}
	// Consumer groups with pending entries exist, so stream sync is tested for real.
	pending, groups := 0, 0
	cursor = "0"
	for {
		v, err := c.Do(ctx, "SCAN", cursor, "TYPE", "stream", "COUNT", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range v.Elems[1].Elems {
			gs, err := c.Do(ctx, "XINFO", "GROUPS", k.Str)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range gs.Elems {
				groups++
				pending += int(replyMap(g)["pending"].Int)
			}
		}
		if cursor = v.Elems[0].Text(); cursor == "0" {
			break
		}
	}
	if groups == 0 || pending == 0 {
		t.Errorf("%d consumer groups with %d pending entries; want some of each", groups, pending)
	}
	t.Logf("%d consumer groups, %d pending entries", groups, pending)
	if fns := s.Do(t, "FUNCTION", "LIST").Elems; len(fns) != 1 {
		t.Errorf("FUNCTION LIST has %d libraries, want the workload's", len(fns))
	}
}

func TestWorkloadRefusesClusterWithoutClusterOption(t *testing.T) {
	w := NewWorkload(WorkloadOptions{})
	if _, err := w.newRunner(context.Background(), &Cluster{}); err == nil || !strings.Contains(err.Error(), "WorkloadOptions.Cluster") {
		t.Errorf("err = %v", err)
	}
	w = NewWorkload(WorkloadOptions{DBs: []int{0, 20}})
	s := &Server{}
	if _, err := w.newRunner(context.Background(), s); err == nil || !strings.Contains(err.Error(), "no db 20") {
		t.Errorf("err = %v", err)
	}
}

func TestCheckLog(t *testing.T) {
	k := DBKey{0, "alog:1"}
	list := func(ns ...string) respList { return mkList(ns...) }
	for _, tc := range []struct {
		name        string
		got         respList
		acked       []int64
		doubt       []int64
		wantProblem []string
	}{
		{"exact", list("1", "2", "5"), []int64{1, 2, 5}, nil, nil},
		{"doubt applied", list("1", "2", "5"), []int64{1, 2}, []int64{5}, nil},
		{"doubt not applied", list("1", "2"), []int64{1, 2}, []int64{5}, nil},
		{"lost", list("1", "5"), []int64{1, 2, 5}, nil, []string{"1 acknowledged elements lost (of 3), first [2]"}},
		{"duplicated", list("1", "2", "2", "5"), []int64{1, 2, 5}, nil, []string{"element 2 appears more than once"}},
		{"reordered", list("2", "1"), []int64{1, 2}, nil, []string{"element 1 after 2, acknowledged in the other order: writes reordered"}},
		{"retried after a later push", list("1", "3", "2"), []int64{1, 3, 2}, nil, nil},
		{"foreign", list("1", "9"), []int64{1}, nil, []string{"element 9 was never written"}},
		{"garbage", list("x"), nil, nil, []string{`element "x" is not one the workload wrote`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problems := checkLog(k, tc.got.v, tc.acked, tc.doubt)
			if len(problems) != len(tc.wantProblem) {
				t.Fatalf("problems %q, want %q", problems, tc.wantProblem)
			}
			for i, p := range problems {
				if !strings.Contains(p, tc.wantProblem[i]) || !strings.Contains(p, `"alog:1"`) {
					t.Errorf("problem %q does not say %q about the key", p, tc.wantProblem[i])
				}
			}
		})
	}
}

func TestStatName(t *testing.T) {
	for in, want := range map[string]string{"XGROUP CREATE k g 0": "XGROUP CREATE", "SET k v": "SET", "FUNCTION": "FUNCTION"} {
		if got := statName(strings.Fields(in)); got != want {
			t.Errorf("statName(%q) = %q", in, got)
		}
	}
	if !reflect.DeepEqual(unionKeys(map[DBKey]int{{1, "b"}: 1, {0, "z"}: 1}, map[DBKey]int{{0, "a"}: 1, {1, "b"}: 2}),
		[]DBKey{{0, "a"}, {0, "z"}, {1, "b"}}) {
		t.Error("unionKeys is not the sorted union")
	}
}

// BenchmarkWorkloadFill measures pipelined workload throughput into one server.
func BenchmarkWorkloadFill(b *testing.B) {
	s := StartServer(b)
	w := NewWorkload(WorkloadOptions{Seed: 1, DBs: []int{0, 1}, TTL: true, Large: true})
	b.ResetTimer()
	for range b.N {
		if err := w.Fill(b.Context(), s, 50000); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(50000*b.N)/b.Elapsed().Seconds(), "ops/s")
}
