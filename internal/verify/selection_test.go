package verify

import (
	"slices"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/filter"
)

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
	if pre.Include[0].Kind() != filter.Glob {
		t.Error("a pattern with * must be a glob")
	}
	lit, _ := NewKeyFilter([]string{"plain:"}, nil)
	if lit.ScanMatch() != "plain:*" || lit.Include[0].Kind() != filter.Prefix {
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
