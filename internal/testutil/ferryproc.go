package testutil

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ferryBin is the ferry binary of this test process. It is package state because the
// build is worth doing once per test binary, not once per test; RemoveFerryBinary resets it.
var ferryBin struct {
	mu   sync.Mutex
	dir  string
	path string
	err  error
}

// FerryBinary returns the path of a ferry binary built from this module's ./cmd/ferry,
// building it on the first call of the test process. It is a plain `go build`, without
// the race detector a test binary may carry, so that what a test measures or kills is
// Ferry as shipped. The binary's temporary directory stays until RemoveFerryBinary: call
// that from TestMain (goleak.Cleanup), or register it with t.Cleanup in a package without one.
func FerryBinary(tb testing.TB) string {
	tb.Helper()
	ferryBin.mu.Lock()
	defer ferryBin.mu.Unlock()
	if ferryBin.path == "" && ferryBin.err == nil {
		ferryBin.dir, ferryBin.path, ferryBin.err = buildFerry()
	}
	if ferryBin.err != nil {
		// Kept, so that every later test fails at once instead of building again.
		tb.Fatal(ferryBin.err)
	}
	return ferryBin.path
}

// buildFerry builds ./cmd/ferry of the module the test runs in into a new temporary
// directory.
func buildFerry() (dir, bin string, err error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD (is the go command on PATH?): %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	dir, err = os.MkdirTemp("", "ferry-test-bin-")
	if err != nil {
		return "", "", fmt.Errorf("a directory for the ferry test binary: %w", err)
	}
	bin = filepath.Join(dir, "ferry")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ferry")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return dir, "", fmt.Errorf("go build ./cmd/ferry in %s: %w\n%s", root, err, out)
	}
	return dir, bin, nil
}

// RemoveFerryBinary deletes the binary FerryBinary built, if any; a later FerryBinary
// builds it again.
func RemoveFerryBinary() {
	ferryBin.mu.Lock()
	defer ferryBin.mu.Unlock()
	if ferryBin.dir != "" {
		os.RemoveAll(ferryBin.dir)
	}
	ferryBin.dir, ferryBin.path, ferryBin.err = "", "", nil
}

// FreeAddr returns a loopback address with a port that was free a moment ago (another
// process may take it before the caller binds it).
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// KillSeed returns the seed of a test's random kill points: $FERRY_KILL_SEED to replay a
// run, else the time.
func KillSeed(tb testing.TB) uint64 {
	tb.Helper()
	if s := os.Getenv("FERRY_KILL_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			tb.Fatalf("FERRY_KILL_SEED: %v", err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// FerryProc is one `ferry sync` process of the binary FerryBinary builds. Its JSON log
// lines (stderr) are parsed as they come; its /status answers decode into S, the status
// type of the package under test (task.Status, clustersource.Status), which testutil
// cannot import.
type FerryProc[S any] struct {
	// Describe renders a status in WaitStatus's timeout message; nil prints it with %+v.
	Describe func(S) string

	cmd        *exec.Cmd
	statusAddr string
	done       chan struct{} // closed once the process has exited and its log is read
	exitErr    error         // cmd.Wait's; read only after done is closed

	mu      sync.Mutex
	lines   []string         // the log as written, for failure messages
	records []map[string]any // the same lines parsed
	changed chan struct{}    // closed and replaced at every new line
}

// StartFerrySync runs `ferry --log-format json sync --status-addr <free port>
// --no-progress <args>`. The process is killed (SIGKILL) when the test ends, and dies with
// the test binary where the platform allows.
func StartFerrySync[S any](tb testing.TB, args ...string) *FerryProc[S] {
	tb.Helper()
	addr := FreeAddr(tb)
	full := append([]string{"--log-format", "json", "sync", "--status-addr", addr, "--no-progress"}, args...)
	cmd := exec.Command(FerryBinary(tb), full...)
	cmd.SysProcAttr = sysProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p := &FerryProc[S]{cmd: cmd, statusAddr: addr, done: make(chan struct{}), changed: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	go p.readLog(stderr)
	tb.Cleanup(p.Kill)
	return p
}

// readLog collects the log until the process closes stderr, then reaps the process.
func (p *FerryProc[S]) readLog(stderr io.Reader) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			rec = map[string]any{"msg": "(not json) " + line}
		}
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "ferry[%d]: %s\n", p.cmd.Process.Pid, line)
		}
		p.mu.Lock()
		p.lines = append(p.lines, line)
		p.records = append(p.records, rec)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
	p.exitErr = p.cmd.Wait()
	close(p.done)
}

// StatusAddr is the host:port of the process's status listener.
func (p *FerryProc[S]) StatusAddr() string { return p.statusAddr }

// Kill sends SIGKILL and waits until the process is gone: a crash.
func (p *FerryProc[S]) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM (a clean stop), waits, and fails the test unless ferry exited 0.
func (p *FerryProc[S]) Stop(tb testing.TB) {
	tb.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		tb.Fatal("ferry did not stop within 60 s of SIGTERM")
	}
	if p.exitErr != nil {
		tb.Fatalf("ferry exited with %v; log:\n%s", p.exitErr, p.Log())
	}
}

// WaitRecord waits up to d for a log record whose message starts with msg and returns it,
// failing the test when ferry exits first.
func (p *FerryProc[S]) WaitRecord(tb testing.TB, d time.Duration, msg string) map[string]any {
	tb.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		recs, changed := p.records[seen:], p.changed
		seen = len(p.records)
		p.mu.Unlock()
		for _, r := range recs {
			if hasMsg(r, msg) {
				return r
			}
		}
		select {
		case <-changed:
		case <-p.done:
			tb.Fatalf("ferry exited (%v) before logging %q; log:\n%s", p.exitErr, msg, p.Log())
		case <-deadline.C:
			tb.Fatalf("ferry did not log %q within %s; log:\n%s", msg, d, p.Log())
		}
	}
}

// Records returns the log records so far whose message starts with msg.
func (p *FerryProc[S]) Records(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, r := range p.records {
		if hasMsg(r, msg) {
			out = append(out, r)
		}
	}
	return out
}

// Count is how many log records so far have a message starting with msg.
func (p *FerryProc[S]) Count(msg string) int { return len(p.Records(msg)) }

func hasMsg(rec map[string]any, prefix string) bool {
	m, _ := rec["msg"].(string)
	return strings.HasPrefix(m, prefix)
}

// Log is the last 40 log lines, for failure messages.
func (p *FerryProc[S]) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(0, len(p.lines)-40):], "\n")
}

// Status reads the process's /status; ok is false while it does not answer.
func (p *FerryProc[S]) Status() (st S, ok bool) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + p.statusAddr + "/status")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		var zero S
		return zero, false
	}
	return st, true
}

// WaitStatus polls /status every 5 ms until cond holds and returns that status; it fails
// the test when ferry exits or d passes first.
func (p *FerryProc[S]) WaitStatus(tb testing.TB, d time.Duration, what string, cond func(S) bool) S {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		if st, ok := p.Status(); ok && cond(st) {
			return st
		}
		select {
		case <-p.done:
			tb.Fatalf("ferry exited (%v) while waiting for %s; log:\n%s", p.exitErr, what, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			st, _ := p.Status()
			tb.Fatalf("timed out after %s waiting for %s; status %s; log:\n%s", d, what, p.describe(st), p.Log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (p *FerryProc[S]) describe(st S) string {
	if p.Describe != nil {
		return p.Describe(st)
	}
	return fmt.Sprintf("%+v", st)
}
