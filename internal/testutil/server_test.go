package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServerStartRestartKeepsSavedData(t *testing.T) {
	start := time.Now()
	s := StartServer(t, "--maxmemory", "64mb")
	t.Logf("server ready in %v", time.Since(start))
	if got := string(s.Do(t, "CONFIG", "GET", "maxmemory").Elems[1].Str); got != "67108864" {
		t.Errorf("extra argument not applied: maxmemory %s", got)
	}
	if got := string(s.Do(t, "CONFIG", "GET", "save").Elems[1].Str); got != "" {
		t.Errorf("save = %q, want no save points", got)
	}
	if !strings.HasPrefix(s.Dir(), os.TempDir()) && !strings.Contains(s.Dir(), t.Name()) {
		t.Errorf("dir %s is not a test temp dir", s.Dir())
	}
	port := s.Port()

	s.Do(t, "SET", "saved", "1")
	s.Do(t, "SAVE")
	s.Do(t, "SET", "unsaved", "1")
	s.Kill()
	if s.Running() {
		t.Fatal("server still running after Kill")
	}
	s.Restart(t)
	if s.Port() != port {
		t.Errorf("port changed across restart: %d → %d", port, s.Port())
	}
	if v := s.Do(t, "GET", "saved"); string(v.Str) != "1" {
		t.Errorf("saved key lost across Kill+Restart: %+v", v)
	}
	if v := s.Do(t, "GET", "unsaved"); !v.Null {
		t.Errorf("key written after SAVE survived a kill: %+v", v)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "dump.rdb")); err != nil {
		t.Errorf("no RDB in the server dir: %v", err)
	}

	s.Stop()
	if s.Running() {
		t.Fatal("server still running after Stop")
	}
	s.Stop() // idempotent
	s.Restart(t, "--databases", "4")
	if got := len(s.DBs()); got != 4 {
		t.Errorf("DBs() after restart with --databases 4: %d", got)
	}
	if log := s.Log(); !strings.Contains(log, "Ready to accept connections") {
		t.Errorf("log tail does not show the server starting:\n%s", log)
	}
}

func TestServerBadArgumentFailsWithLog(t *testing.T) {
	path := requireServerBinary(t)
	s := newServer(t, path, false, []string{"--no-such-option", "1"})
	if err := s.launch(false); err != nil {
		t.Fatal(err)
	}
	err := s.finishStart(t.Context(), false)
	if err == nil {
		t.Fatal("a server with a bad option started")
	}
	if !strings.Contains(s.Log(), "no-such-option") {
		t.Errorf("log does not name the bad option:\n%s", s.Log())
	}
}

func TestTailLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb", 5, "a\nb\n"},
	} {
		if got := tailLines(tc.in, tc.n); got != tc.want {
			t.Errorf("tailLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
