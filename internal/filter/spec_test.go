package filter

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParseDBs(t *testing.T) {
	cases := []struct {
		in   string
		want []int
		err  string
	}{
		{in: "", want: nil},
		{in: "  ", want: nil},
		{in: "0", want: []int{0}},
		{in: "0,3,5-9", want: []int{0, 3, 5, 6, 7, 8, 9}},
		{in: " 1 , 2 ", want: []int{1, 2}},
		{in: "3,1,1-2", want: []int{1, 2, 3}},
		{in: "255", want: []int{255}},
		{in: "5-5", want: []int{5}},
		{in: "9-5", err: "runs backwards"},
		{in: "256", err: "out of range"},
		{in: "0-256", err: "out of range"},
		{in: "-1", err: "not a database number"},
		{in: "a", err: "not a database number"},
		{in: "1,,2", err: "empty item"},
		{in: "1-2-3", err: "not a database number"},
		{in: "+1", err: "not a database number"},
		{in: "99999999999999999999", err: "out of range"},
	}
	for _, c := range cases {
		got, err := ParseDBs(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseDBs(%q) error %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ParseDBs(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	all, err := ParseDBs("0-255")
	if err != nil || len(all) != 256 {
		t.Errorf("ParseDBs(0-255) = %d dbs, %v", len(all), err)
	}
	if got := FormatDBs([]int{9, 0, 3, 5, 6, 7, 8, 3}); got != "0,3,5-9" {
		t.Errorf("FormatDBs = %q", got)
	}
}

func TestParseDBMap(t *testing.T) {
	cases := []struct {
		in   string
		want map[int]int
		err  string
	}{
		{in: "", want: nil},
		{in: "0:1,3:3", want: map[int]int{0: 1, 3: 3}},
		{in: " 3 : 0 ", want: map[int]int{3: 0}},
		{in: "0:1,1:0", want: map[int]int{0: 1, 1: 0}},
		{in: "0:1,0:2", err: "mapped twice"},
		{in: "0-1", err: "not source:destination"},
		{in: "0:256", err: "out of range"},
		{in: "x:1", err: "not a database number"},
		{in: "1:", err: "not a database number"},
		{in: "1:2,", err: "not source:destination"},
	}
	for _, c := range cases {
		got, err := ParseDBMap(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseDBMap(%q) error %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, c.want) {
			t.Errorf("ParseDBMap(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	if got := FormatDBMap(map[int]int{3: 0, 0: 1}); got != "0:1,3:0" {
		t.Errorf("FormatDBMap = %q", got)
	}
}

func TestParseTypesAndCommands(t *testing.T) {
	ty, err := ParseTypes(" String , hash,ZSET ")
	if err != nil || !slices.Equal(ty, []string{"string", "hash", "zset"}) {
		t.Errorf("ParseTypes = %v, %v", ty, err)
	}
	if _, err := ParseTypes("string,bitmap"); err == nil || !strings.Contains(err.Error(), "bitmap") {
		t.Errorf("ParseTypes(bitmap) error %v", err)
	}
	cmds, err := ParseCommands("FLUSHALL, flushdb")
	if err != nil || !slices.Equal(cmds, []string{"flushall", "flushdb"}) {
		t.Errorf("ParseCommands = %v, %v", cmds, err)
	}
	for _, bad := range []string{"multi", "EXEC", "select", "xgroup|destroy"} {
		if _, err := ParseCommands(bad); err == nil {
			t.Errorf("ParseCommands(%q) accepted", bad)
		}
	}
}

func TestParseSpec(t *testing.T) {
	sp, err := ParseSpec(Strings{DBs: "1,3", DBMap: "3:0", Exclude: []string{"tmp:*", "re:^a{1,3}$"}, Types: "string", ExcludeCommands: "flushall"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sp.DBs, []int{1, 3}) || sp.DBMap[3] != 0 || len(sp.Exclude) != 2 || sp.Exclude[1].Kind() != Regex {
		t.Errorf("ParseSpec = %+v", sp)
	}
	for _, c := range []struct {
		s    Strings
		flag string
	}{
		{Strings{DBs: "x"}, "--dbs"},
		{Strings{DBMap: "1"}, "--db-map"},
		{Strings{Include: []string{""}}, "--include"},
		{Strings{Exclude: []string{"re:("}}, "--exclude"},
		{Strings{Types: "blob"}, "--types"},
		{Strings{ExcludeCommands: "exec"}, "--exclude-commands"},
	} {
		if _, err := ParseSpec(c.s); err == nil || !strings.HasPrefix(err.Error(), c.flag+":") {
			t.Errorf("ParseSpec(%+v) error %v, want one naming %s", c.s, err, c.flag)
		}
	}
}

func TestNewValidates(t *testing.T) {
	cases := []struct {
		name string
		spec Spec
		err  string
	}{
		{"acceptance selection", Spec{DBs: []int{1, 3}, DBMap: map[int]int{3: 0}}, ""},
		{"swap", Spec{DBMap: map[int]int{0: 1, 1: 0}}, ""},
		{"map source not selected", Spec{DBs: []int{1, 3}, DBMap: map[int]int{5: 1}}, "does not select"},
		{"two sources into one", Spec{DBs: []int{1, 3}, DBMap: map[int]int{3: 1}}, "source dbs 1 and 3 would both land in destination db 1"},
		{"every db plus a map onto a used number", Spec{DBMap: map[int]int{3: 0}}, "without --dbs every database is copied"},
		{"merge allowed", Spec{DBMap: map[int]int{3: 0}, AllowDBMerge: true}, ""},
		{"empty selection", Spec{DBs: []int{}}, "selects no database"},
		{"db out of range", Spec{DBs: []int{300}}, "out of range"},
		{"map out of range", Spec{DBMap: map[int]int{1: 300}}, "databases are 0-255"},
		{"bad type", Spec{Types: []string{"blob"}}, "not a type"},
		{"control command", Spec{ExcludeCommands: []string{"MULTI"}}, "cannot be excluded"},
	}
	for _, c := range cases {
		_, err := New(c.spec)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.err)
		}
	}
}

func TestKeepDB(t *testing.T) {
	f := MustNew(Spec{DBs: []int{1, 3}, DBMap: map[int]int{3: 0}})
	for _, c := range []struct {
		db, dst int
		ok      bool
	}{{0, 0, false}, {1, 1, true}, {2, 0, false}, {3, 0, true}, {255, 0, false}, {256, 0, false}, {AllDBs, AllDBs, true}} {
		if dst, ok := f.KeepDB(c.db); ok != c.ok || (ok && dst != c.dst) {
			t.Errorf("KeepDB(%d) = %d, %v; want %d, %v", c.db, dst, ok, c.dst, c.ok)
		}
	}
	if got := f.SourceDBs(); !slices.Equal(got, []int{1, 3}) {
		t.Errorf("SourceDBs = %v", got)
	}
	all := MustNew(Spec{})
	if dst, ok := all.KeepDB(1000); !ok || dst != 1000 {
		t.Errorf("every-db filter: KeepDB(1000) = %d, %v", dst, ok)
	}
	if !all.Identity() || f.Identity() {
		t.Errorf("Identity: empty spec %v, selection %v", all.Identity(), f.Identity())
	}
}

func FuzzParseDBs(f *testing.F) {
	for _, s := range []string{"", "0,3,5-9", "0-255", "9-5", " 1 , 2 ", "1,,2", "-", "0-", "256"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dbs, err := ParseDBs(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(dbs) || len(slices.Compact(slices.Clone(dbs))) != len(dbs) {
			t.Fatalf("ParseDBs(%q) = %v: not ascending and unique", s, dbs)
		}
		for _, db := range dbs {
			if db < 0 || db > MaxDB {
				t.Fatalf("ParseDBs(%q) gave db %d", s, db)
			}
		}
		again, err := ParseDBs(FormatDBs(dbs))
		if err != nil || !slices.Equal(again, dbs) {
			t.Fatalf("round trip of %v through %q: %v, %v", dbs, FormatDBs(dbs), again, err)
		}
	})
}

func FuzzParseDBMap(f *testing.F) {
	for _, s := range []string{"", "0:1,3:3", "0:1,0:2", "1:", ":1", "0:1,", "255:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseDBMap(s)
		if err != nil {
			return
		}
		for a, b := range m {
			if a < 0 || a > MaxDB || b < 0 || b > MaxDB {
				t.Fatalf("ParseDBMap(%q) gave %d:%d", s, a, b)
			}
		}
		again, err := ParseDBMap(FormatDBMap(m))
		if err != nil || !maps.Equal(again, m) {
			t.Fatalf("round trip of %v: %v, %v", m, again, err)
		}
	})
}
