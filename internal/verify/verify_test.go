package verify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// syncedPair starts a source with the fixture in dbs 0 and 1 (and a workload for variety),
// and a destination that copied it as a native replica and was then detached: a pair a
// sync left identical.
func syncedPair(t *testing.T) (src, dst *testutil.Server) {
	t.Helper()
	src = testutil.StartServer(t)
	dst = testutil.StartServer(t)
	for _, db := range []int{0, 1, 5} {
		fixture(t, src, db)
	}
	wl := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 7, DBs: []int{0, 1}, Keys: 400, TTL: true, Large: true, Prefix: "wl:"})
	if err := wl.Fill(testCtx(t), src, 3000); err != nil {
		t.Fatal(err)
	}
	dst.ReplicaOf(t, src)
	dst.Do(t, "REPLICAOF", "NO", "ONE")
	return src, dst
}

// TestSeededDifferencesStandalone is the acceptance scenario on standalone servers: every
// seeded difference is reported with its class and nothing else is, in both the digest and
// the element-by-element path; the report and audit log are JSON as documented; --repair
// fixes everything in the selected dbs and leaves the unselected one alone.
func TestSeededDifferencesStandalone(t *testing.T) {
	src, dst := syncedPair(t)
	seedDiffs(t, dst, 1)
	// A difference in db 5, which is not selected, must not be reported or repaired.
	writerFor(t, dst, 5).do("SET", "unselected", "x")
	writerFor(t, dst, 5).do("DEL", "miss")

	o := opts(src.Addr(), dst.Addr())
	o.Selection.DBs = []int{0, 1}
	for _, noDigest := range []bool{true, false} {
		o.NoDigest = noDigest
		res := run(t, o)
		checkSeeded(t, res.Remaining, 1)
		for _, d := range res.Remaining {
			t.Logf("noDigest=%v: %v", noDigest, d)
		}
		if res.Clean() {
			t.Error("Clean with differences")
		}
		c := res.Counts()
		if c[ClassMissing] != 1 || c[ClassExtra] != 1 || c[ClassType] != 1 || c[ClassValue] != 5 || c[ClassTTL] != 2 {
			t.Errorf("counts %v", c)
		}
		r1 := res.Rounds[0]
		if r1.Keys == 0 || r1.Extra == 0 {
			t.Errorf("round 1 compared %d keys and checked %d: want both > 0", r1.Keys, r1.Extra)
		}
		// Each path saw values: whole (small), digest (medium, where DEBUG is used),
		// element by element (big ones, and medium ones without a digest or whose
		// digests differ).
		if r1.Whole == 0 || (r1.Digest == 0) != noDigest || r1.Elements < 2 {
			t.Errorf("noDigest=%v: values whole %d, digest %d, elements %d", noDigest, r1.Whole, r1.Digest, r1.Elements)
		}
		t.Logf("noDigest=%v: values whole %d, digest %d, elements %d", noDigest, r1.Whole, r1.Digest, r1.Elements)
	}

	var report, audit bytes.Buffer
	o.Repair, o.RepairExtra, o.Audit = true, true, &audit
	res := run(t, o)
	checkSeeded(t, res.Found, 1)
	if len(res.Remaining) != 0 {
		t.Fatalf("differences remain after repair: %v", res.Remaining)
	}
	if res.Repairs.Restored != 7 || res.Repairs.Deleted != 1 || res.Repairs.TTLFixed != 2 || res.Repairs.Failed != 0 {
		t.Errorf("repair stats %+v", res.Repairs)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{DBs: []int{0, 1}, TTLTolerance: 2e9})
	// db 5 was not touched.
	if v := writerFor(t, dst, 5).do("EXISTS", "unselected", "miss"); v.Int != 1 {
		t.Errorf("db 5 changed: EXISTS unselected miss = %d, want 1", v.Int)
	}

	if err := WriteReport(&report, res.Found); err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(report.Bytes(), &objs); err != nil {
		t.Fatalf("report is not a JSON array: %v\n%s", err, report.String())
	}
	if len(objs) != len(seeded) {
		t.Errorf("report has %d objects, want %d", len(objs), len(seeded))
	}
	for _, o := range objs {
		for _, f := range []string{"db", "key", "class", "detail", "repair", "repaired"} {
			if _, ok := o[f]; !ok {
				t.Errorf("report object lacks %q: %v", f, o)
			}
		}
		if o["repaired"] != true {
			t.Errorf("report object not repaired: %v", o)
		}
	}
	lines := 0
	sc := bufio.NewScanner(&audit)
	for sc.Scan() {
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if e.Result != "ok" || e.Key == "" || e.Action == "" {
			t.Errorf("audit entry %+v", e)
		}
		lines++
	}
	if lines != len(seeded) {
		t.Errorf("audit log has %d lines, want %d", lines, len(seeded))
	}

	// Verifying again finds nothing.
	o.Repair, o.Audit = false, nil
	if res := run(t, o); !res.Clean() {
		t.Errorf("after repair: %v", res.Remaining)
	}
}

// TestRepairWithoutExtra: extra keys are only reported without --repair-extra, and a TTL
// difference is fixed with PEXPIRE/PERSIST alone.
func TestRepairWithoutExtra(t *testing.T) {
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	fixture(t, src, 0)
	dst.ReplicaOf(t, src)
	dst.Do(t, "REPLICAOF", "NO", "ONE")
	w := writerFor(t, dst, 0)
	w.do("SET", "extra:1", "x")
	w.do("PERSIST", "ttl-missing")
	var audit bytes.Buffer
	o := opts(src.Addr(), dst.Addr())
	o.Repair, o.Audit = true, &audit
	res := run(t, o)
	if len(res.Remaining) != 1 || res.Remaining[0].Key != "extra:1" || res.Remaining[0].Class != ClassExtra {
		t.Fatalf("remaining %v, want only the extra key", res.Remaining)
	}
	if res.Repairs.TTLFixed != 1 || res.Repairs.Skipped != 1 {
		t.Errorf("repair stats %+v", res.Repairs)
	}
	if !strings.Contains(audit.String(), `"action":"skip"`) || !strings.Contains(audit.String(), `"action":"pexpire"`) {
		t.Errorf("audit log:\n%s", audit.String())
	}
	if w.do("EXISTS", "extra:1").Int != 1 {
		t.Error("extra key deleted without --repair-extra")
	}
}
