package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

func TestParseMode(t *testing.T) {
	for in, want := range map[string]struct {
		m      Mode
		sample bool
	}{
		"outline": {ModeOutline, false}, "LENGTH": {ModeLength, false}, "value": {ModeValue, false},
		"": {ModeValue, false}, "sample": {ModeValue, true},
	} {
		m, s, err := ParseMode(in)
		if err != nil || m != want.m || s != want.sample {
			t.Errorf("ParseMode(%q) = %v %v %v", in, m, s, err)
		}
	}
	if _, _, err := ParseMode("digest"); err == nil {
		t.Error("ParseMode accepted digest")
	}
	if ModeOutline.String() != "outline" || Mode(9).String() != "mode(9)" {
		t.Error("Mode.String")
	}
}

func TestParseFence(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "{[] false 0s}",
		"off":                          "{[] false 0s}",
		"auto":                         "{[] true 0s}",
		"10.0.0.1:6380":                "{[10.0.0.1:6380] false 0s}",
		" 10.0.0.1:6380 , [::1]:7000 ": "{[10.0.0.1:6380 [::1]:7000] false 0s}",
	} {
		f, err := ParseFence(in)
		if err != nil || fmt.Sprint(f) != want {
			t.Errorf("ParseFence(%q) = %v, %v; want %s", in, f, err, want)
		}
	}
	for _, bad := range []string{"host", "1.2.3.4:0", "1.2.3.4:x", ":6379", "a:1,"} {
		if _, err := ParseFence(bad); err == nil {
			t.Errorf("ParseFence(%q) accepted", bad)
		}
	}
}

func TestParseReplication(t *testing.T) {
	info := redis.ParseInfo("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n" +
		"slave0:ip=127.0.0.1,port=6380,state=online,offset=1234,lag=0\r\n" +
		"slave1:ip=::1,port=7000,state=wait_bgsave,offset=0,lag=1\r\n" +
		"master_repl_offset:1300\r\n")
	off, reps, err := parseReplication(info)
	if err != nil || off != 1300 || len(reps) != 2 {
		t.Fatalf("parseReplication = %d %v %v", off, reps, err)
	}
	if reps[0] != (replicaInfo{addr: "127.0.0.1:6380", state: "online", offset: 1234}) || reps[1].addr != "[::1]:7000" {
		t.Errorf("replicas %+v", reps)
	}
	if _, _, err := parseReplication(map[string]string{"master_repl_offset": "x"}); err == nil {
		t.Error("bad offset accepted")
	}
	if _, _, err := parseReplication(map[string]string{"master_repl_offset": "1", "slave0": "ip=a,port=1,offset=z"}); err == nil {
		t.Error("bad replica offset accepted")
	}
}

func FuzzParseReplication(f *testing.F) {
	f.Add("100", "ip=127.0.0.1,port=6380,state=online,offset=1234,lag=0")
	f.Add("-1", "ip=,port=,offset=")
	f.Fuzz(func(t *testing.T, off, line string) {
		_, reps, err := parseReplication(map[string]string{"master_repl_offset": off, "slave0": line})
		if err == nil && len(reps) != 1 {
			t.Fatalf("%d replicas from one line", len(reps))
		}
	})
}

func TestLimiter(t *testing.T) {
	if newLimiter(0) != nil {
		t.Fatal("0 ops/s must mean no limiter")
	}
	var none *limiter
	if err := none.wait(context.Background(), 1000); err != nil {
		t.Fatal(err)
	}
	l := newLimiter(1000)
	start := time.Now()
	for range 30 {
		if err := l.wait(context.Background(), 10); err != nil {
			t.Fatal(err)
		}
	}
	// 300 tokens at 1000/s with a burst of 100: about 200 ms.
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("300 ops at 1000/s took %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.wait(ctx, 10_000); err == nil {
		t.Error("wait ignored a cancelled context")
	}
}

func TestTTLDifference(t *testing.T) {
	for _, tc := range []struct {
		src, dst int64
		want     string
	}{
		{-1, -1, ""},
		{5000, 5500, ""},
		{5000, 8000, "apart by 3s"},
		{5000, -1, "no TTL on destination"},
		{-1, 5000, "no TTL on source"},
		{3_600_000, 7_200_000, "TTL 1h0m0s on source, TTL 2h0m0s on destination (apart by 1h0m0s)"},
	} {
		got := ttlDifference(tc.src, tc.dst, 2000)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("ttlDifference(%d, %d) = %q, want %q", tc.src, tc.dst, got, tc.want)
		}
	}
}

func entries(ids ...string) []resp.Value {
	var out []resp.Value
	for _, id := range ids {
		val := "v"
		if i := strings.IndexByte(id, '='); i >= 0 {
			id, val = id[:i], id[i+1:]
		}
		out = append(out, resp.Value{Kind: resp.KindArray, Elems: []resp.Value{
			{Kind: resp.KindBulkString, Str: []byte(id)},
			{Kind: resp.KindArray, Elems: []resp.Value{{Kind: resp.KindBulkString, Str: []byte("f")}, {Kind: resp.KindBulkString, Str: []byte(val)}}},
		}})
	}
	return out
}

func TestDiffEntries(t *testing.T) {
	for _, tc := range []struct {
		src, dst []string
		bound    string
		want     string
	}{
		{[]string{"1-1", "1-2"}, []string{"1-1", "1-2"}, "", ""},
		{[]string{"1-1", "1-2=x"}, []string{"1-1", "1-2"}, "", "entry 1-2 differs"},
		{[]string{"1-1", "1-3"}, []string{"1-1", "1-2", "1-3"}, "", "entry 1-2 extra on destination"},
		{[]string{"1-1", "1-2", "1-3"}, []string{"1-1", "1-3"}, "", "entry 1-2 missing on destination"},
		{[]string{"1-1", "2-0"}, []string{"1-1", "1-9"}, "1-9", "entry 1-9 extra on destination"}, // 2-0 is past the bound
		{[]string{"1-1", "10-1"}, []string{"1-1", "9-1"}, "", "entry 9-1 extra on destination; entry 10-1 missing on destination"},
	} {
		var det details
		diffEntries(&det, entries(tc.src...), entries(tc.dst...), tc.bound)
		if got := det.String(); got != tc.want {
			t.Errorf("%v vs %v (bound %q): %q, want %q", tc.src, tc.dst, tc.bound, got, tc.want)
		}
	}
}

func TestDiffPairsAndDetails(t *testing.T) {
	p := func(kv ...string) []pair {
		var out []pair
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, pair{k: []byte(kv[i]), v: []byte(kv[i+1]), has: true})
		}
		return out
	}
	var det details
	diffPairs(&det, "member", p("a", "1", "b", "2.0", "c", "3"), p("a", "1.0", "b", "2", "d", "4"), true, true)
	if got := det.String(); got != `member "c" missing on destination; member "d" extra on destination` {
		t.Errorf("zset diff: %q", got)
	}
	det = details{}
	diffPairs(&det, "field", p("a", "1"), p("a", "1.0"), true, false)
	if !strings.Contains(det.String(), `field "a": "1" on source, "1.0" on destination`) {
		t.Errorf("hash diff: %q", det.String())
	}
	det = details{}
	for i := range 20 {
		det.add("x%d", i)
	}
	if len(det.items) != maxDetailItems || !strings.HasSuffix(det.String(), "; …") {
		t.Errorf("details cap: %d items, %q", len(det.items), det.String())
	}
	if !sameValue([]byte("inf"), []byte("+inf"), true) || sameValue([]byte("1"), []byte("2"), true) {
		t.Error("sameValue scores")
	}
}

func TestDiffJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteReport(&buf, nil); err != nil || strings.TrimSpace(buf.String()) != "[]" {
		t.Fatalf("empty report %q %v", buf.String(), err)
	}
	buf.Reset()
	bad := "k\xff\x00"
	if err := WriteReport(&buf, []Diff{{DB: 1, TargetDB: 2, Key: bad, Class: ClassValue, Detail: "d"}}); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got[0]["key_base64"] != "a/8A" || got[0]["db"] != 1.0 || got[0]["target_db"] != 2.0 || got[0]["class"] != "value" {
		t.Errorf("report object %v", got[0])
	}
	if _, ok := got[0]["repaired"]; ok {
		t.Error("repaired present without repair")
	}
}

func TestWriteSummary(t *testing.T) {
	yes := true
	r := &Result{
		Mode: ModeValue, SourceDBs: []int{0, 3},
		Rounds: []RoundStats{
			{N: 1, Kind: "full", Keys: 1000, Extra: 990, Diffs: 3, Elapse: time.Second, Fence: &FenceResult{Replicas: []string{"10.0.0.9:6380"}, Offsets: []int64{42}, Reached: true}},
			{N: 2, Kind: "recheck", Keys: 3, Diffs: 2, Elapse: time.Millisecond, Fence: &FenceResult{Replicas: []string{"10.0.0.9:6380"}}},
			{N: 3, Kind: "confirm", Keys: 2, Diffs: 2},
		},
		Repairs: RepairStats{Restored: 1, Failed: 1},
	}
	r.Remaining = []Diff{
		{DB: 0, TargetDB: 0, Key: "a", Class: ClassMissing, Detail: "string on source, absent on destination"},
		{DB: 3, TargetDB: 4, Key: "b", Class: ClassValue, Detail: `field "f" …`, InFlight: true, Repaired: &yes},
	}
	r.Found = r.Remaining
	var b bytes.Buffer
	if err := r.WriteSummary(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"verify: mode value, source dbs 0,3",
		"round 1 (full): 1000 source keys compared, 990 destination keys checked, 3 differ (1s, 1990 keys/s; fenced on 10.0.0.9:6380 at offsets [42]",
		"round 2 (recheck): 3 keys re-checked, 2 differ (1ms; fence NOT reached",
		"repair: 1 restored, 0 rewritten with commands, 0 TTLs fixed, 0 deleted, 0 skipped, 1 failed",
		"result: 2 keys differ",
		"missing on destination   1",
		"value differs            1",
		"1 of them changed on the source",
		`db 3→4 "b": value (changing on the source): field "f" …`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	clean := &Result{Mode: ModeOutline, SourceDBs: []int{0}, Sampled: true, SampleEstimate: &Estimate{SourceKeys: 100, SourceSampled: 10}}
	if err := clean.WriteSummary(&b); err != nil || !strings.Contains(b.String(), "result: no differences") || !strings.Contains(b.String(), "sample: 10 of 100 source keys") {
		t.Errorf("clean summary %q %v", b.String(), err)
	}
}

func TestNodeOptionsTLS(t *testing.T) {
	seed, err := redis.ParseURL("rediss://user:pw@node1.example:7000")
	if err != nil {
		t.Fatal(err)
	}
	e := &endpoint{opts: seed}
	if o := e.nodeOptions("node1.example:7000"); o.TLS.ServerName != "node1.example" {
		t.Errorf("seed keeps its server name, got %q", o.TLS.ServerName)
	}
	o := e.nodeOptions("10.0.0.2:7001")
	if o.TLS.ServerName != "" || o.Addr != "10.0.0.2:7001" || o.Password.Reveal() != "pw" || o.Username != "user" {
		t.Errorf("node options %+v (server name %q)", o, o.TLS.ServerName)
	}
	if e.opts.TLS.ServerName != "node1.example" {
		t.Error("nodeOptions changed the seed's TLS config")
	}
	seed.TLS.ServerName = "cluster.example" // given explicitly: kept for every node
	e = &endpoint{opts: seed}
	if o := e.nodeOptions("10.0.0.2:7001"); o.TLS.ServerName != "cluster.example" {
		t.Errorf("explicit server name dropped: %q", o.TLS.ServerName)
	}
}
