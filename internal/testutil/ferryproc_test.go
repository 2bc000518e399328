package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// harnessStatus is the part of ferry's /status the harness test reads (testutil cannot
// import task.Status).
type harnessStatus struct {
	Task  string `json:"task"`
	Phase string `json:"phase"`
	Path  string `json:"path"`
}

// TestFerryProc runs the real binary through the harness: a sync that reaches the
// incremental phase and stops cleanly, one killed with SIGKILL, one whose WaitStatus times
// out, and one that exits with a usage error while a test waits on it.
func TestFerryProc(t *testing.T) {
	bin := FerryBinary(t)
	if again := FerryBinary(t); again != bin {
		t.Fatalf("second FerryBinary %s, first %s: want one build per test process", again, bin)
	}
	// Registered first, so it runs after every process's own clean-up has killed it.
	t.Cleanup(func() {
		RemoveFerryBinary()
		if _, err := os.Stat(bin); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after RemoveFerryBinary, stat %s: %v; want it gone", bin, err)
		}
	})
	src := StartServer(t)
	dst := StartServer(t)
	for i := range 50 {
		src.Do(t, "SET", fmt.Sprintf("k:%d", i), i)
	}
	args := []string{"--source", "redis://" + src.Addr(), "--target", "redis://" + dst.Addr(),
		"--task", "harness", "--data-dir", t.TempDir(), "--skip-precheck", "--retry-timeout", "30s"}

	t.Run("stop", func(t *testing.T) {
		p := StartFerrySync[harnessStatus](t, args...)
		rec := p.WaitRecord(t, 60*time.Second, "sync path")
		if rec["path"] != "full" {
			t.Fatalf("first run logged path %v; want full", rec["path"])
		}
		st := p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s harnessStatus) bool { return s.Phase == "incremental" })
		if st.Task != "harness" || st.Path != "full" {
			t.Fatalf("status %+v; want task harness, path full", st)
		}
		if got := dst.Do(t, "GET", "k:49"); string(got.Str) != "49" {
			t.Fatalf("destination k:49 = %q after the full phase; want 49", got.Str)
		}
		if n := p.Count("sync path"); n != 1 {
			t.Fatalf("Count(sync path) = %d; want 1", n)
		}
		if recs := p.Records("sync path"); len(recs) != 1 || recs[0]["path"] != "full" {
			t.Fatalf("Records(sync path) = %v; want the one full-path record", recs)
		}
		if !strings.Contains(p.Log(), `"msg":"sync path"`) {
			t.Fatalf("Log() lacks the sync path line:\n%s", p.Log())
		}
		p.Stop(t)
		if _, ok := p.Status(); ok {
			t.Fatal("/status still answers after Stop")
		}
	})

	t.Run("kill", func(t *testing.T) {
		p := StartFerrySync[harnessStatus](t, args...)
		p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s harnessStatus) bool { return s.Phase == "incremental" })
		p.Kill()
		var exit *exec.ExitError
		if !errors.As(p.exitErr, &exit) || exit.Exited() {
			t.Fatalf("after Kill the process ended with %v; want death by a signal", p.exitErr)
		}
		if _, ok := p.Status(); ok {
			t.Fatal("/status still answers after Kill")
		}
		p.Kill() // the test's clean-up kills again: that must not block or panic
	})

	t.Run("describe", func(t *testing.T) {
		// A WaitStatus that times out renders the status with %+v, or with Describe.
		p := StartFerrySync[harnessStatus](t, args...)
		p.WaitStatus(t, 60*time.Second, "the incremental phase", func(s harnessStatus) bool { return s.Phase == "incremental" })
		never := func(harnessStatus) bool { return false }
		msg := fatalOf(t, func(tb testing.TB) { p.WaitStatus(tb, 50*time.Millisecond, "never", never) })
		if !strings.Contains(msg, "timed out after 50ms waiting for never; status {Task:harness Phase:incremental") {
			t.Fatalf("timeout message %q; want the status printed with %%+v", msg)
		}
		p.Describe = func(s harnessStatus) string { return "phase=" + s.Phase }
		msg = fatalOf(t, func(tb testing.TB) { p.WaitStatus(tb, 50*time.Millisecond, "never", never) })
		if !strings.Contains(msg, "waiting for never; status phase=incremental; log:") {
			t.Fatalf("timeout message %q; want the status through Describe", msg)
		}
		p.Stop(t)
	})

	t.Run("exit while waiting", func(t *testing.T) {
		// No --source: ferry prints a usage error (not JSON) and exits 2.
		p := StartFerrySync[harnessStatus](t, "--target", "redis://"+dst.Addr())
		msg := fatalOf(t, func(tb testing.TB) { p.WaitRecord(tb, 60*time.Second, "sync path") })
		if !strings.Contains(msg, "ferry exited (exit status 2) before logging \"sync path\"") || !strings.Contains(msg, "--source is required") {
			t.Fatalf("WaitRecord on an exited ferry failed with %q; want the exit and the log", msg)
		}
		if n := p.Count("(not json) ferry: --source is required"); n != 1 {
			t.Fatalf("%d records of the plain-text usage error; want 1; log:\n%s", n, p.Log())
		}
		msg = fatalOf(t, func(tb testing.TB) {
			p.WaitStatus(tb, time.Second, "nothing", func(harnessStatus) bool { return true })
		})
		if !strings.Contains(msg, "ferry exited (exit status 2) while waiting for nothing") {
			t.Fatalf("WaitStatus on an exited ferry failed with %q", msg)
		}
	})
}

func TestKillSeed(t *testing.T) {
	t.Setenv("FERRY_KILL_SEED", "12345")
	if got := KillSeed(t); got != 12345 {
		t.Fatalf("KillSeed with FERRY_KILL_SEED=12345 = %d", got)
	}
	t.Setenv("FERRY_KILL_SEED", "")
	a := KillSeed(t)
	time.Sleep(time.Millisecond)
	if b := KillSeed(t); a == 0 || a == b {
		t.Fatalf("KillSeed from the clock gave %d then %d a millisecond later; want distinct non-zero seeds", a, b)
	}
	t.Setenv("FERRY_KILL_SEED", "x")
	if msg := fatalOf(t, func(tb testing.TB) { KillSeed(tb) }); !strings.Contains(msg, "FERRY_KILL_SEED") {
		t.Fatalf("a bad FERRY_KILL_SEED failed with %q; want it named", msg)
	}
}

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on FreeAddr's %s: %v", addr, err)
	}
	l.Close()
}

// fatalTB records the first Fatal/Fatalf of a helper under test and ends its goroutine,
// as testing.T does, without failing the real test.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

// fatalOf runs fn in a goroutine with a fatalTB and returns what it failed with; the test
// fails when fn returns without failing.
func fatalOf(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	f := &fatalTB{TB: t}
	done := make(chan bool)
	go func() {
		returned := false
		defer func() { done <- returned }()
		fn(f)
		returned = true
	}()
	if <-done {
		t.Fatal("the helper returned; want it to fail the test")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.msg
}
