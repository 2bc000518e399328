package verify

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

func TestParseDBList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{"", nil, ""},
		{"  ", nil, ""},
		{"0", []int{0}, ""},
		{"0,3,5-9", []int{0, 3, 5, 6, 7, 8, 9}, ""},
		{" 3 , 1 ,2-2", []int{1, 2, 3}, ""},
		{"5-6,6,0", []int{0, 5, 6}, ""},
		{"65535", []int{65535}, ""},
		{"65536", nil, "out of range"},
		{"0-99999999999999999999", nil, "out of range"},
		{"9-5", nil, "runs backwards"},
		{"1,,2", nil, "empty item"},
		{"a", nil, "not a database number"},
		{"-1", nil, "not a database number"},
		{"1-", nil, "not a database number"},
		{"+1", nil, "not a database number"},
		{"1-2-3", nil, "not a database number"},
	}
	for _, tt := range tests {
		got, err := ParseDBList(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDBList(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseDBList(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseDBMap(t *testing.T) {
	tests := []struct {
		in      string
		want    map[int]int
		wantErr string
	}{
		{"", nil, ""},
		{"0:1", map[int]int{0: 1}, ""},
		{"0:1, 3:3", map[int]int{0: 1, 3: 3}, ""},
		{"0:1,0:2", nil, "mapped twice"},
		{"0", nil, "not source:destination"},
		{"0:", nil, "not a database number"},
		{"x:1", nil, "not a database number"},
		{"1:70000", nil, "out of range"},
	}
	for _, tt := range tests {
		got, err := ParseDBMap(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseDBMap(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("ParseDBMap(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestSelectionResolve(t *testing.T) {
	tests := []struct {
		name       string
		sel        Selection
		discovered []int
		want       []int
		wantErr    string
	}{
		{"discovered", Selection{}, []int{3, 0, 3}, []int{0, 3}, ""},
		{"explicit dbs win", Selection{DBs: []int{1, 2}}, []int{0}, []int{1, 2}, ""},
		{"map implies dbs", Selection{Map: map[int]int{4: 0, 2: 1}}, []int{7}, []int{2, 4}, ""},
		{"map within dbs", Selection{DBs: []int{0, 3}, Map: map[int]int{0: 1}}, nil, []int{0, 3}, ""},
		{"map outside dbs", Selection{DBs: []int{0}, Map: map[int]int{3: 1}}, nil, nil, "which --dbs does not select"},
		{"two into one", Selection{DBs: []int{0, 1}, Map: map[int]int{0: 1}}, nil, nil, "both map to destination db 1"},
		{"swap is fine", Selection{Map: map[int]int{0: 1, 1: 0}}, nil, []int{0, 1}, ""},
	}
	for _, tt := range tests {
		got, err := tt.sel.Resolve(tt.discovered)
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
	s := Selection{Map: map[int]int{0: 1, 1: 0}}
	if s.Target(0) != 1 || s.Target(1) != 0 || s.Target(5) != 5 {
		t.Errorf("Target: got %d %d %d", s.Target(0), s.Target(1), s.Target(5))
	}
	if src, ok := s.Source([]int{0, 1, 5}, 0); !ok || src != 1 {
		t.Errorf("Source(0) = %d %v, want 1", src, ok)
	}
	if _, ok := s.Source([]int{0, 1}, 7); ok {
		t.Error("Source(7) found a db")
	}
}

func TestKeyFilter(t *testing.T) {
	f, err := NewKeyFilter([]string{"user:", "order:*:open"}, []string{"user:tmp", "*:secret"})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{
		"user:1":           true,
		"user:tmp1":        false,
		"user:1:secret":    false,
		"order:7:open":     true,
		"order:7:closed":   false,
		"session:1":        false,
		"":                 false,
		"user:":            true,
		"xuser:1":          false,
		"order:a:b:c:open": true,
	} {
		if got := f.Match(key); got != want {
			t.Errorf("Match(%q) = %v, want %v", key, got, want)
		}
	}
	if f.ScanMatch() != "" {
		t.Errorf("ScanMatch with two includes = %q, want none", f.ScanMatch())
	}
	one, _ := NewKeyFilter([]string{"a*b[1]"}, nil)
	if one.ScanMatch() != "a*b[1]" {
		t.Errorf("glob ScanMatch = %q", one.ScanMatch())
	}
	pre, _ := NewKeyFilter([]string{"we[ird*"}, nil)
	if !pre.Include[0].glob {
		t.Error("a pattern with * must be a glob")
	}
	lit, _ := NewKeyFilter([]string{"plain:"}, nil)
	if lit.ScanMatch() != "plain:*" || lit.Include[0].glob {
		t.Errorf("prefix ScanMatch = %q", lit.ScanMatch())
	}
	if _, err := NewKeyFilter([]string{""}, nil); err == nil {
		t.Error("empty include accepted")
	}
	if _, err := NewKeyFilter(nil, []string{""}); err == nil {
		t.Error("empty exclude accepted")
	}
	var all KeyFilter
	if !all.Match("anything") || !all.Match("") {
		t.Error("zero KeyFilter must select every key")
	}
}

// globCases are patterns and keys checked against globMatch and, in TestGlobMatchesRedis,
// against a real server's SCAN MATCH.
var globCases = struct {
	patterns []string
	keys     []string
}{
	patterns: []string{
		"*", "a*", "*a", "a*b", "a?c", "[abc]x", "[^abc]x", "[a-c]x", "[c-a]x", "a\\*b", "a\\",
		"[", "[^", "[ab", "a[", "[\\]]", "[a-]", "**a**", "?", "??", "*?*", "h*llo", "h[ae]llo",
		"\\", "[]a]", "a*b*c*d", "user:*:name", "x[\\", "[^]", "*\\*", "[-a]",
	},
	keys: []string{
		"", "a", "b", "ab", "abc", "axc", "ax", "bx", "dx", "a*b", "axb", "a\\", "]", "-", "[",
		"aaa", "hello", "hallo", "hllo", "user:1:name", "user::name", "aXbXcXd", "x\\", "*", "a]",
		"^x", "\\", "ba",
	},
}

func TestGlobMatchTable(t *testing.T) {
	tests := []struct {
		pattern, key string
		want         bool
	}{
		{"*", "", true},   // a lone "*" is every key, as KEYS and SCAN special-case it
		{"**", "", false}, // Redis quirk: stringmatchlen never matches an empty string
		{"*", "x", true},
		{"a*", "a", true},
		{"a*b", "ab", true},
		{"a*b", "axxb", true},
		{"a*b", "axxbc", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"[abc]x", "bx", true},
		{"[^abc]x", "bx", false},
		{"[^abc]x", "dx", true},
		{"[c-a]x", "bx", true},
		{"a\\*b", "a*b", true},
		{"a\\*b", "axb", false},
		{"[", "[", false},
		{"[ab", "a", true},
		{"[ab", "b", true},
		{"[ab", "ab", false},
		{"[\\]]", "]", true},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"**a**", "bab", true},
		{"a*b*c*d", "aXbXcXd", true},
	}
	for _, tt := range tests {
		if got := globMatch(tt.pattern, tt.key); got != tt.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", tt.pattern, tt.key, got, tt.want)
		}
	}
	// A pathological pattern must finish quickly (skipLongerMatches).
	start := time.Now()
	globMatch(strings.Repeat("*a", 50)+"b", strings.Repeat("a", 5000))
	if d := time.Since(start); d > time.Second {
		t.Errorf("pathological glob took %v", d)
	}
}

// TestGlobMatchesRedis checks globMatch against the server's own matcher: SCAN MATCH over a
// database holding every test key.
func TestGlobMatchesRedis(t *testing.T) {
	s := testutil.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := s.Conn(t)
	for _, k := range globCases.keys {
		if _, err := c.Do(ctx, "SET", k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range globCases.patterns {
		v, err := c.Do(ctx, "KEYS", p)
		if err != nil {
			t.Fatal(err)
		}
		var server []string
		for _, e := range v.Elems {
			server = append(server, string(e.Str))
		}
		var ours []string
		for _, k := range globCases.keys {
			if globMatch(p, k) {
				ours = append(ours, k)
			}
		}
		slices.Sort(server)
		slices.Sort(ours)
		if !slices.Equal(server, ours) {
			t.Errorf("pattern %q: redis matches %q, globMatch %q", p, server, ours)
		}
		// The prefix form sent as SCAN MATCH must select exactly the prefix's keys.
		pre := Pattern{text: p}
		v, err = c.Do(ctx, "KEYS", pre.scanMatch())
		if err != nil {
			t.Fatal(err)
		}
		server = server[:0]
		for _, e := range v.Elems {
			server = append(server, string(e.Str))
		}
		ours = ours[:0]
		for _, k := range globCases.keys {
			if pre.Match(k) {
				ours = append(ours, k)
			}
		}
		slices.Sort(server)
		slices.Sort(ours)
		if !slices.Equal(server, ours) {
			t.Errorf("prefix %q as %q: redis matches %q, prefix match %q", p, pre.scanMatch(), server, ours)
		}
	}
}

func FuzzGlobMatch(f *testing.F) {
	for _, p := range globCases.patterns {
		for _, k := range globCases.keys[:6] {
			f.Add(p, k)
		}
	}
	f.Fuzz(func(t *testing.T, pattern, key string) {
		if len(pattern) > 64 {
			pattern = pattern[:64]
		}
		_ = globMatch(pattern, key) // must not panic
		// An escaped literal matches itself and only itself among small edits.
		if key != "" {
			if !globMatch(escapeGlob(key), key) {
				t.Fatalf("escapeGlob(%q) does not match itself", key)
			}
			if globMatch(escapeGlob(key), key+"x") {
				t.Fatalf("escapeGlob(%q) matches a longer key", key)
			}
			if !globMatch(escapeGlob(key)+"*", key+"tail") {
				t.Fatalf("prefix glob of %q does not match a longer key", key)
			}
		}
		// A trailing '*' never un-matches a non-empty key (unless it would be escaped or
		// swallowed by a class).
		if key != "" && !strings.ContainsAny(pattern, "[\\") && globMatch(pattern, key) && !globMatch(pattern+"*", key) {
			t.Fatalf("%q matches %q but %q does not", pattern, key, pattern+"*")
		}
	})
}

func FuzzParseDBList(f *testing.F) {
	for _, s := range []string{"0,3,5-9", "1-", "65535", "9-5", " 1 , 2 ", "0-65535"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dbs, err := ParseDBList(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(dbs) || len(slices.Compact(slices.Clone(dbs))) != len(dbs) {
			t.Fatalf("ParseDBList(%q) = %v: not ascending and unique", s, dbs)
		}
		for _, db := range dbs {
			if db < 0 || db > MaxDB {
				t.Fatalf("ParseDBList(%q) gave %d", s, db)
			}
		}
	})
}

func FuzzParseDBMap(f *testing.F) {
	for _, s := range []string{"0:1,3:3", "0:1,0:2", "x", "1:2, 2:1"} {
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
	})
}
