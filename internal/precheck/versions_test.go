package precheck

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/testutil"
)

func ver(engine, v string) serverVersion {
	info := map[string]string{"redis_version": v}
	if engine == engineValkey {
		info = map[string]string{"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": v}
	}
	return parseServerVersion(info)
}

// TestRDBVersion is the server version → RDB version table (see rdbVersion for sources).
func TestRDBVersion(t *testing.T) {
	cases := []struct {
		engine, version string
		want            int
	}{
		{engineRedis, "2.4.17", 5},
		{engineRedis, "2.6.17", 6},
		{engineRedis, "2.8.24", 6},
		{engineRedis, "3.0.7", 6},
		{engineRedis, "3.2.12", 7},
		{engineRedis, "4.0.14", 8},
		{engineRedis, "5.0.14", 9},
		{engineRedis, "6.0.20", 9},
		{engineRedis, "6.2.14", 9},
		{engineRedis, "7.0.15", 10},
		{engineRedis, "7.2.5", 11},
		{engineRedis, "7.4.1", 12},
		{engineRedis, "8.0.2", 12},
		{engineRedis, "8.2.1", 12},
		{engineRedis, "8.4.0", 12},
		{engineRedis, "8.6.0", 13},
		{engineRedis, "255.255.255", 13}, // unstable builds
		{engineValkey, "7.2.8", 11},
		{engineValkey, "8.0.2", 11},
		{engineValkey, "8.1.1", 11},
		{engineValkey, "9.0.0", 80},
	}
	for _, c := range cases {
		v := ver(c.engine, c.version)
		if got := rdbVersion(v); got != c.want {
			t.Errorf("rdbVersion(%s) = %d, want %d", v, got, c.want)
		}
	}
	if v := parseServerVersion(map[string]string{"redis_version": "7.2.4", "server_name": "keydb", "keydb_version": "6.3.4"}); rdbVersion(v) != 0 || v.String() != "keydb 6.3.4" {
		t.Errorf("unknown engine: %s → RDB %d", v, rdbVersion(v))
	}
}

// TestVersionFindings: which pairs take RESTORE payloads as they are, which go partly
// through the command path, and what cannot be carried over.
func TestVersionFindings(t *testing.T) {
	cases := []struct {
		src, tgt  serverVersion
		subexpiry int64
		want      Result
		texts     []string
	}{
		{ver(engineRedis, "7.0.15"), ver(engineRedis, "7.0.15"), 0, Pass, []string{"RDB 10", "accepted as they are"}},
		{ver(engineRedis, "6.2.14"), ver(engineRedis, "7.2.5"), 0, Pass, []string{"Redis 6.2.14 (RDB 9) → Redis 7.2.5 (RDB 11)", "accepted as they are"}},
		{ver(engineRedis, "7.2.5"), ver(engineValkey, "8.0.2"), 0, Pass, []string{"accepted as they are"}},
		{ver(engineValkey, "8.1.1"), ver(engineRedis, "7.4.1"), 0, Pass, []string{"accepted as they are"}},
		{ver(engineRedis, "7.0.15"), ver(engineRedis, "6.2.14"), 0, Warn, []string{"rewritten as commands", "functions", "entries-read"}},
		{ver(engineRedis, "7.4.1"), ver(engineValkey, "8.0.2"), 12, Warn, []string{"(RDB 12) → Valkey 8.0.2 (RDB 11)", "rewritten as commands", "12 keys have hash fields with their own TTL"}},
		{ver(engineRedis, "7.4.1"), ver(engineValkey, "8.0.2"), 0, Pass, []string{"no hash fields with TTLs now"}},
		{ver(engineRedis, "8.0.2"), ver(engineRedis, "7.2.5"), -1, Warn, []string{"hash-field TTLs (HEXPIRE and friends), if the source uses them"}},
		{ver(engineRedis, "8.0.2"), ver(engineValkey, "9.0.0"), 3, Pass, []string{"(RDB 80, VALKEY080)", "rewritten as commands"}},
		{ver(engineValkey, "9.0.0"), ver(engineRedis, "8.0.2"), 0, Pass, []string{"rewritten as commands"}},
		{ver(engineRedis, "5.0.14"), ver(engineRedis, "4.0.14"), 0, Warn, []string{"streams", "ABSTTL"}},
		{ver(engineRedis, "7.0.15"), parseServerVersion(map[string]string{"redis_version": "7.2.4", "server_name": "keydb"}), 0, Warn, []string{"does not know this engine's formats"}},
	}
	for _, c := range cases {
		got := versionFindings(c.src, c.tgt, c.subexpiry)
		if got.Result != c.want {
			t.Errorf("%s → %s: %s (%q), want %s", c.src, c.tgt, got.Result, got.Found, c.want)
		}
		for _, s := range c.texts {
			if !strings.Contains(got.Found+" "+got.Advice, s) {
				t.Errorf("%s → %s: %q does not contain %q", c.src, c.tgt, got.Found, s)
			}
		}
	}
}

// TestModules: a module on the source missing on the target fails, an older one warns.
// The servers here have no modules, so the comparison is tested on parsed MODULE LIST
// replies, and the real servers' empty lists pass.
func TestModules(t *testing.T) {
	reply := resp.Value{Kind: resp.KindArray, Elems: []resp.Value{
		{Kind: resp.KindArray, Elems: []resp.Value{bulk("name"), bulk("search"), bulk("ver"), {Kind: resp.KindInteger, Int: 20810}, bulk("path"), bulk("/x.so"), bulk("args"), {Kind: resp.KindArray}}},
		{Kind: resp.KindArray, Elems: []resp.Value{bulk("name"), bulk("ReJSON"), bulk("ver"), {Kind: resp.KindInteger, Int: 20606}}},
	}}
	src := parseModuleList(reply)
	if len(src) != 2 || src[0] != (module{"search", 20810}) || src[1] != (module{"ReJSON", 20606}) {
		t.Fatalf("parseModuleList = %+v", src)
	}
	cases := []struct {
		tgt   []module
		want  Result
		texts []string
	}{
		{nil, Fail, []string{"not on the target: ReJSON (version 20606), search (version 20810)", "MODULE LOAD"}},
		{[]module{{"search", 20810}}, Fail, []string{"on both sides: search 20810", "not on the target: ReJSON"}},
		{[]module{{"search", 20810}, {"rejson", 20400}}, Warn, []string{"ReJSON 20400 on the target < 20606 on the source", "upgrade"}},
		{[]module{{"search", 20900}, {"ReJSON", 20606}}, Pass, []string{"on both sides"}},
	}
	for _, c := range cases {
		got := compareModules(src, c.tgt)
		if got.Result != c.want {
			t.Errorf("target %v: %s (%q), want %s", c.tgt, got.Result, got.Found, c.want)
		}
		for _, s := range c.texts {
			if !strings.Contains(got.Found+" "+got.Advice, s) {
				t.Errorf("target %v: %q does not contain %q", c.tgt, got.Found+" "+got.Advice, s)
			}
		}
	}

	s := testutil.StartServer(t)
	d := testutil.StartServer(t)
	rep := runCheck(t, Config{Source: addr(s), Target: addr(d), RateSample: fastRate})
	expect(t, rep, SideBoth, CheckModules, Pass, "no modules loaded on the source")
	expect(t, rep, SideBoth, CheckVersions, Pass, "Redis 7.0.15 (RDB 10) → Redis 7.0.15 (RDB 10)")
}

func bulk(s string) resp.Value { return resp.Value{Kind: resp.KindBulkString, Str: []byte(s)} }

// TestReportOutput: the table marks warnings and failures, puts advice under its check,
// and sums up; the JSON carries results as words and round-trips.
func TestReportOutput(t *testing.T) {
	rep := &Report{
		Source: "redis://a:6379", Target: "redis://b:6379", Task: "t", ElapsedMS: 1234,
		Checks: []Check{
			{Side: SideSource, Name: CheckConnect, Result: Pass, Found: "ok"},
			{Side: SideTarget, Name: CheckMemory, Result: Fail, Found: strings.Repeat("word ", 40), Advice: "raise maxmemory"},
			{Side: SideTarget, Name: CheckEviction, Result: Warn, Found: "evicts", Advice: "set noeviction"},
			{Side: SideBoth, Name: CheckModules, Result: Skip, Found: "not checked"},
		},
	}
	rep.Result = rep.Worst()
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{"SIDE    CHECK", "target  memory    FAIL    word", "→ raise maxmemory", "target  eviction  WARN", "both    modules   skip", "4 checks in 1.2 s: 1 pass, 1 skip, 1 warn, 1 fail → FAIL"} {
		if !strings.Contains(out, s) {
			t.Errorf("table does not contain %q:\n%s", s, out)
		}
	}
	for _, line := range strings.Split(out, "\n") {
		if len([]rune(line)) > tableWidth+4 {
			t.Errorf("line longer than %d: %q", tableWidth, line)
		}
	}
	if rep.OK(true) || rep.Worst() != Fail {
		t.Errorf("a failed report is OK")
	}
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"result": "fail"`) || !strings.Contains(b.String(), `"result": "skip"`) {
		t.Errorf("JSON results are not words:\n%s", b.String())
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Result != Fail || len(back.Checks) != 4 || back.Checks[2].Result != Warn || back.Checks[1].Advice != "raise maxmemory" {
		t.Errorf("round trip: %+v", back)
	}
	warnOnly := &Report{Checks: []Check{{Result: Pass}, {Result: Warn}, {Result: Skip}}}
	if warnOnly.OK(false) || !warnOnly.OK(true) {
		t.Errorf("warnings: OK(false)=%v OK(true)=%v", warnOnly.OK(false), warnOnly.OK(true))
	}
	if !(&Report{Checks: []Check{{Result: Skip}}}).OK(false) {
		t.Error("a skipped check blocks the sync")
	}
}
