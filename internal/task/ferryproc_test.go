package task

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

// ferryBin is the ferry binary built once for the tests that kill it with SIGKILL; dir is
// removed by TestMain.
var ferryBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// ferryBinary builds ./cmd/ferry (once per test binary) and returns its path.
func ferryBinary(tb testing.TB) string {
	tb.Helper()
	ferryBin.once.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			ferryBin.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "ferry-task-test-")
		if err != nil {
			ferryBin.err = err
			return
		}
		ferryBin.dir = dir
		bin := filepath.Join(dir, "ferry")
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

// ferryProc is one `ferry sync` process. Its JSON log lines are parsed as they come.
type ferryProc struct {
	cmd        *exec.Cmd
	statusAddr string
	done       chan struct{} // closed when the process has exited and its log is read
	exitErr    error

	mu      sync.Mutex
	records []map[string]any
	changed chan struct{}
}

// startFerry runs `ferry --log-format json sync <args> --status-addr <free port>`.
func startFerry(tb testing.TB, args ...string) *ferryProc {
	tb.Helper()
	addr := freeAddr(tb)
	full := append([]string{"--log-format", "json", "sync", "--status-addr", addr, "--no-progress"}, args...)
	cmd := exec.Command(ferryBinary(tb), full...)
	cmd.SysProcAttr = childProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	p := &ferryProc{cmd: cmd, statusAddr: addr, done: make(chan struct{}), changed: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				rec = map[string]any{"msg": "(not json) " + sc.Text()}
			}
			if testing.Verbose() {
				fmt.Fprintf(os.Stderr, "ferry[%d]: %s\n", cmd.Process.Pid, sc.Text())
			}
			p.mu.Lock()
			p.records = append(p.records, rec)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(p.kill)
	return p
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// kill sends SIGKILL and waits for the process to be gone: a crash.
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

// waitRecord waits for a log record with message msg and returns it.
func (p *ferryProc) waitRecord(tb testing.TB, d time.Duration, msg string) map[string]any {
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
			if m, _ := r["msg"].(string); strings.HasPrefix(m, msg) {
				return r
			}
		}
		select {
		case <-changed:
		case <-p.done:
			tb.Fatalf("ferry exited (%v) before logging %q; log:\n%s", p.exitErr, msg, p.log())
		case <-deadline.C:
			tb.Fatalf("ferry did not log %q within %s; log:\n%s", msg, d, p.log())
		}
	}
}

// count is how many records have a message starting with msg.
func (p *ferryProc) count(msg string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.records {
		if m, _ := r["msg"].(string); strings.HasPrefix(m, msg) {
			n++
		}
	}
	return n
}

// log renders the records for failure messages (the last 40).
func (p *ferryProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	recs := p.records[max(0, len(p.records)-40):]
	var b strings.Builder
	for _, r := range recs {
		j, _ := json.Marshal(r)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

// status reads the process's /status endpoint; ok is false while it does not answer.
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

// waitStatus polls the status endpoint every 5 ms until cond holds.
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
			tb.Fatalf("timed out after %s waiting for %s; status %+v; log:\n%s", d, what, st, p.log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
