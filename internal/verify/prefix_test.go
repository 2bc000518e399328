package verify

import (
	"slices"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

func TestSelectionPrefix(t *testing.T) {
	toZero := map[int]int{0: 0, 1: 0, 2: 0, 3: 0}
	four := map[int]string{0: "db0:", 1: "db1:", 2: "db2:", 3: "db3:"}
	tests := []struct {
		name    string
		sel     Selection
		want    []int
		wantErr string
	}{
		{"four prefixes into 0", Selection{Map: toZero, Prefix: four}, []int{0, 1, 2, 3}, ""},
		{"prefixes imply dbs", Selection{Prefix: map[int]string{4: "x:"}}, []int{4}, ""},
		{"within dbs", Selection{DBs: []int{1, 2}, Map: map[int]int{1: 0, 2: 0}, Prefix: map[int]string{1: "a:", 2: "b:"}}, []int{1, 2}, ""},
		{"prefix outside dbs", Selection{DBs: []int{1}, Prefix: map[int]string{2: "b:"}}, nil, "which --dbs does not select"},
		{"one without a prefix", Selection{DBs: []int{0, 1}, Map: map[int]int{1: 0}, Prefix: map[int]string{1: "db1:"}}, nil, `key prefixes ("" and "db1:")`},
		{"one prefix begins with another", Selection{Map: map[int]int{1: 0, 2: 0}, Prefix: map[int]string{1: "a:", 2: "a:b:"}}, nil, "do not tell their keys apart"},
		{"empty prefix", Selection{Prefix: map[int]string{1: ""}}, nil, "empty key prefix"},
	}
	for _, tt := range tests {
		got, err := tt.sel.Resolve(nil)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error = %v, want containing %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("%s: Resolve = %v, %v; want %v", tt.name, got, err, tt.want)
		}
	}
	s := Selection{Map: toZero, Prefix: four}
	if s.DestKey(2, "k") != "db2:k" || s.DestKey(7, "k") != "k" || !s.Explicit() || s.Shared([]int{0, 1, 2, 3}, 0) != 4 {
		t.Errorf("DestKey %q %q, Explicit %v, Shared %d", s.DestKey(2, "k"), s.DestKey(7, "k"), s.Explicit(), s.Shared([]int{0, 1, 2, 3}, 0))
	}
	m, p, err := ParseDBMapping("1:prefix=db1:,2:3")
	if err != nil || m[1] != 0 || m[2] != 3 || p[1] != "db1:" || len(p) != 1 {
		t.Errorf("ParseDBMapping = %v %v %v", m, p, err)
	}
	if _, err := ParseDBMap("1:prefix=db1:"); err == nil {
		t.Error("ParseDBMap dropped a prefix without a word")
	}
}

// TestPrefixMapping: two source databases with the same key names (the fixture in each)
// live in one destination database under the prefixes db1: and db2:, next to a key outside
// both. Verify with the mapping finds them equal; the seeded differences, made under db2:,
// come back as db 2's with their destination names, and nothing of db 1; repair fixes them
// under the prefix; sampling and an include pattern (matched on the source's names) work
// through the prefix too.
func TestPrefixMapping(t *testing.T) {
	src, dst := testutil.StartServer(t), testutil.StartServer(t)
	for _, db := range []int{1, 2} {
		fixture(t, src, db)
		if n := copyDBAs(t, src, db, dst, 0, map[int]string{1: "db1:", 2: "db2:"}[db]); n == 0 {
			t.Fatal("nothing copied")
		}
	}
	dst.Do(t, "SET", "outside", "belongs to no source database")

	o := opts(src.Addr(), dst.Addr())
	var err error
	if o.Selection.Map, o.Selection.Prefix, err = ParseDBMapping("1:prefix=db1:,2:prefix=db2:"); err != nil {
		t.Fatal(err)
	}
	res := run(t, o)
	if len(res.Remaining) != 0 {
		t.Fatalf("an exact prefixed copy differs: %v", res.Remaining)
	}
	if r := res.Rounds[0]; r.Keys == 0 || r.Extra != r.Keys {
		t.Fatalf("round 1 compared %d source keys and checked %d destination keys; want the same, non-zero", r.Keys, r.Extra)
	}

	w := writerFor(t, dst, 0)
	w.prefix = "db2:"
	seedDiffsWith(t, w)
	res = run(t, o)
	checkSeeded(t, res.Remaining, 2)
	for _, d := range res.Remaining {
		if d.TargetDB != 0 || d.TargetKey != "db2:"+d.Key {
			t.Errorf("%v: target db %d key %q, want db 0 key %q", d, d.TargetDB, d.TargetKey, "db2:"+d.Key)
		}
	}
	var sum strings.Builder
	if err := res.WriteSummary(&sum); err != nil || !strings.Contains(sum.String(), `"miss" (destination "db2:miss")`) {
		t.Errorf("the summary does not name the destination key: %v\n%s", err, sum.String())
	}

	// An include pattern names the source's keys; SCAN MATCH on the destination puts the
	// prefix in front.
	oi := o
	oi.Selection.Keys, _ = NewKeyFilter([]string{"ttl-"}, nil)
	res = run(t, oi)
	for _, d := range res.Remaining {
		if !strings.HasPrefix(d.Key, "ttl-") {
			t.Errorf("include ttl-: reported %v", d)
		}
	}
	if len(res.Remaining) != 2 {
		t.Errorf("include ttl-: %d differences, want ttl-missing and ttl-hour: %v", len(res.Remaining), res.Remaining)
	}

	// Sampling draws destination keys of each prefix and names them as the source does.
	os := o
	os.Sample = 60
	res = run(t, os)
	if res.SampleEstimate == nil || res.SampleEstimate.TargetSampled == 0 || res.SampleEstimate.SourceSampled == 0 {
		t.Fatalf("sample: %+v", res.SampleEstimate)
	}
	for _, d := range res.Remaining {
		if _, ok := seeded[d.Key]; !ok || d.DB != 2 {
			t.Errorf("sample reported %v, which was not seeded", d)
		}
	}

	or := o
	or.Repair, or.RepairExtra = true, true
	res = run(t, or)
	checkSeeded(t, res.Found, 2)
	if len(res.Remaining) != 0 || res.Repairs.Failed != 0 {
		t.Fatalf("after repair: %v, repairs %+v", res.Remaining, res.Repairs)
	}
	if dst.Do(t, "EXISTS", "db2:extra:1").Int != 0 || dst.Do(t, "EXISTS", "extra:1").Int != 0 || dst.Do(t, "GET", "outside").Null {
		t.Error("repair-extra deleted the wrong key")
	}
	// Big values repaired with commands land under the prefix too.
	for _, k := range []string{"big:h", "mid:h"} {
		if dst.Do(t, "EXISTS", "db2:"+k).Int != 1 || dst.Do(t, "EXISTS", k).Int != 0 {
			t.Errorf("%s not repaired under db2:", k)
		}
	}
}
