package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServerStartRestartKeepsSavedData(t *testing.T) {
	start := time.Now()
	s := StartServer(t, "--maxmemory", "64mb")
	t.Logf("server ready in %v", time.Since(start))
	if v := s.Version(t); !strings.Contains(v, ".") {
		t.Errorf("Version() = %q", v)
	}
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

func TestServerDiesWithTestBinary(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux only")
	}
	requireServerBinary(t)
	start := time.Now()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envOrphanHelper+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var pid int
	var dir string
	for _, line := range strings.Split(string(out), "\n") {
		if _, err := fmt.Sscanf(line, "pid=%d dir=%s", &pid, &dir); err == nil {
			break
		}
	}
	if dir != "" {
		defer os.RemoveAll(dir)
	}
	if pid == 0 {
		t.Fatalf("helper printed no pid:\n%s", out)
	}
	t.Logf("helper ran in %v; waiting for redis-server pid %d to die", time.Since(start), pid)
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("redis-server pid %d outlived its test process", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("gone after %v", time.Since(start))
}

// fakeTB records Skip and Fatal instead of stopping the test.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestMissingServerSkipsLocallyAndFailsOnCI(t *testing.T) {
	t.Setenv(envServerPath, filepath.Join(t.TempDir(), "no-redis-server"))
	t.Setenv("CI", "")
	f := &fakeTB{TB: t}
	requireServerBinary(f)
	if !strings.Contains(f.skipped, installHint) || f.failed != "" {
		t.Errorf("without CI: skipped %q, failed %q", f.skipped, f.failed)
	}
	t.Setenv("CI", "true")
	f = &fakeTB{TB: t}
	requireServerBinary(f)
	if !strings.Contains(f.failed, "redis-server not found; CI must install it (apt-get install -y redis-server)") {
		t.Errorf("on CI: skipped %q, failed %q", f.skipped, f.failed)
	}
}

// alive reports whether process pid exists and is not a zombie (an orphan is reaped by init,
// which may take a while; a zombie runs no code and holds no port).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
