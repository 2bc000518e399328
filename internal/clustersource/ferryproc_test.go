package clustersource

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ferryBin is the ferry binary, built once per test binary for the tests that kill it;
// TestMain removes dir.
var ferryBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func ferryBinary(tb testing.TB) string {
	tb.Helper()
	ferryBin.once.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			ferryBin.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		if ferryBin.dir, err = os.MkdirTemp("", "ferry-clustersource-test-"); err != nil {
			ferryBin.err = err
			return
		}
		bin := filepath.Join(ferryBin.dir, "ferry")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/ferry")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			ferryBin.err = fmt.Errorf("go build ./cmd/ferry: %w\n%s", err, out)
			return
		}
		ferryBin.path = bin
	})
	if ferryBin.err != nil {
		tb.Fatal(ferryBin.err)
	}
	return ferryBin.path
}

// ferryProc is one `ferry sync` process; its JSON log is kept for failure messages.
type ferryProc struct {
	cmd        *exec.Cmd
	statusAddr string
	done       chan struct{}
	exitErr    error

	mu      sync.Mutex
	records []string
}

// startFerry runs `ferry --log-format json sync --status-addr <free port> --no-progress <args>`.
func startFerry(tb testing.TB, args ...string) *ferryProc {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	full := append([]string{"--log-format", "json", "sync", "--status-addr", addr, "--no-progress"}, args...)
	cmd := exec.Command(ferryBinary(tb), full...)
	cmd.SysProcAttr = childProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p := &ferryProc{cmd: cmd, statusAddr: addr, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "ferry[%d]: %s\n", cmd.Process.Pid, sc.Text())
			}
			p.mu.Lock()
			p.records = append(p.records, sc.Text())
			p.mu.Unlock()
		}
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL and waits until the process is gone: a crash.
func (p *ferryProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM (a clean stop) and waits.
func (p *ferryProc) stop(tb testing.TB) {
	tb.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		tb.Fatal("ferry did not stop within 60 s of SIGTERM")
	}
	if p.exitErr != nil {
		tb.Fatalf("ferry exited with %v; log:\n%s", p.exitErr, p.log())
	}
}

// log is the last 40 log lines.
func (p *ferryProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.records[max(0, len(p.records)-40):], "\n")
}

// status reads the process's /status; ok is false while it does not answer.
func (p *ferryProc) status() (Status, bool) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + p.statusAddr + "/status")
	if err != nil {
		return Status{}, false
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, false
	}
	return st, true
}

// waitStatus polls the status endpoint until cond holds.
func (p *ferryProc) waitStatus(tb testing.TB, d time.Duration, what string, cond func(Status) bool) Status {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		if st, ok := p.status(); ok && cond(st) {
			return st
		}
		select {
		case <-p.done:
			tb.Fatalf("ferry exited (%v) while waiting for %s; log:\n%s", p.exitErr, what, p.log())
		default:
		}
		if time.Now().After(deadline) {
			st, _ := p.status()
			tb.Fatalf("timed out after %s waiting for %s; status %s; log:\n%s", d, what, describe(st), p.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
