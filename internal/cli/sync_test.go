package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/testutil"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a running command.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestSyncCommandStatusAndHeartbeat runs `ferry sync` as a user would, with the status
// endpoint on, and checks the live status, the heartbeat latency and the metrics, then a
// clean stop by cancellation (SIGINT in the binary).
func TestSyncCommandStatusAndHeartbeat(t *testing.T) {
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	src.Do(t, "SET", "a", "1")
	status := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errs syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"sync", "--source", "redis://" + src.Addr(), "--target", "redis://" + dst.Addr(),
			"--data-dir", t.TempDir(), "--status-addr", status, "--log-format", "json", "--accept-warnings"}, &out, &errs)
	}()

	type statusDoc struct {
		Phase        string  `json:"phase"`
		LagSeconds   float64 `json:"lag_seconds"`
		LagEstimated bool    `json:"lag_estimated"`
		Commands     int64   `json:"commands"`
		FullKeys     int64   `json:"full_keys"`
	}
	var st statusDoc
	deadline := time.Now().Add(30 * time.Second)
	heartbeatSeen := false
	for time.Now().Before(deadline) {
		src.Do(t, "INCR", "counter")
		if err := getJSON("http://"+status+"/status", &st); err == nil && st.Phase == "incremental" {
			// A heartbeat that came back through the stream shows as a latency above 0.
			if v := src.Do(t, "EXISTS", "ferry:hb:"+taskNameFor(src.Addr(), dst.Addr())); v.Int == 1 && st.LagSeconds > 0 {
				heartbeatSeen = true
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !heartbeatSeen {
		t.Fatalf("no heartbeat latency within 30 s; last status %+v; stderr:\n%s", st, errs.String())
	}
	if st.LagEstimated || st.LagSeconds > 5 || st.FullKeys < 1 {
		t.Fatalf("status after the heartbeat: %+v; want a measured latency under 5 s and the snapshot applied", st)
	}
	if dst.Do(t, "EXISTS", "ferry:hb:"+taskNameFor(src.Addr(), dst.Addr())).Int != 0 {
		t.Fatal("the heartbeat key reached the destination")
	}

	resp, err := http.Get("http://" + status + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"ferry_phase", "ferry_applied_offset_bytes", "ferry_lag_seconds", "ferry_commands_total", "ferry_full_keys_total", "ferry_writer_"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("clean stop exited %d; stderr:\n%s", code, errs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("ferry sync did not stop within 30 s of cancellation")
	}
	if !strings.Contains(out.String(), "applied offset") {
		t.Fatalf("the final position is not reported on stop: %q", out.String())
	}
	if s, d := src.Do(t, "GET", "counter"), dst.Do(t, "GET", "counter"); string(s.Str) != string(d.Str) {
		t.Fatalf("counter: source %s, destination %s", s.Str, d.Str)
	}
}

// TestSyncCommandErrors: failures exit 1 with one line on stderr; bad flags exit 2.
func TestSyncCommandErrors(t *testing.T) {
	dst := testutil.StartServer(t)
	code, _, errs := run(t, "sync", "--source", "redis://127.0.0.1:1", "--target", "redis://"+dst.Addr(), "--data-dir", t.TempDir(), "--mode", "full")
	if code != ExitFailure || !strings.Contains(errs, "127.0.0.1:1") || !strings.Contains(errs, "refused") {
		t.Fatalf("unreachable source: code %d, stderr %q", code, errs)
	}
	code, _, errs = run(t, "sync", "--source", "redis://u:topsecret@127.0.0.1:1", "--target", "redis://"+dst.Addr(), "--data-dir", t.TempDir())
	if strings.Contains(errs, "topsecret") {
		t.Fatalf("the password appears on stderr: %q", errs)
	}
	_ = code
	for _, args := range [][]string{
		{"sync", "--target", "redis://" + dst.Addr()},
		{"sync", "--source", "redis://x:1", "--target", "redis://" + dst.Addr(), "--mode", "sometimes"},
		{"sync", "--source", "redis://x:1", "--target", "redis://" + dst.Addr(), "--existing", "merge"},
		{"sync", "--source", "ftp://x:1", "--target", "redis://" + dst.Addr()},
	} {
		if code, _, errs := run(t, args...); code != ExitUsage {
			t.Errorf("ferry %s: code %d (want %d), stderr %q", strings.Join(args, " "), code, ExitUsage, errs)
		}
	}
}

// taskNameFor is the task name `ferry sync` derives for two plain addresses.
func taskNameFor(src, dst string) string {
	return task.DefaultName(redis.Options{Addr: src}, redis.Options{Addr: dst})
}

// TestSyncRunsPrecheck: a sync starts with the precheck; a warning (Redis's default
// repl-timeout of 60 s) stops it with the table and the way forward, --accept-warnings goes
// ahead, and a failing check stops it even then.
func TestSyncRunsPrecheck(t *testing.T) {
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	src.Do(t, "SET", "k", "v")
	base := []string{"sync", "--source", "redis://" + src.Addr(), "--target", "redis://" + dst.Addr(), "--data-dir", t.TempDir(), "--mode", "full", "--no-progress"}
	code, _, errs := run(t, base...)
	if code != ExitFailure || !strings.Contains(errs, "repl-timeout") || !strings.Contains(errs, "--accept-warnings") {
		t.Fatalf("a warning should stop the sync with the table and advice: code %d, stderr %q", code, errs)
	}
	if dst.Do(t, "DBSIZE").Int != 0 {
		t.Fatal("the sync wrote to the destination although the precheck stopped it")
	}
	if code, _, errs := run(t, append(base, "--accept-warnings")...); code != ExitOK {
		t.Fatalf("--accept-warnings: code %d, stderr %q", code, errs)
	}
	if v := dst.Do(t, "GET", "k"); string(v.Str) != "v" {
		t.Fatalf("after the accepted sync k=%q", v.Str)
	}
	// Now the destination holds keys of another origin: the existing-keys check fails.
	dst2 := testutil.StartServer(t)
	dst2.Do(t, "SET", "foreign", "x")
	args := []string{"sync", "--source", "redis://" + src.Addr(), "--target", "redis://" + dst2.Addr(), "--data-dir", t.TempDir(), "--mode", "full", "--no-progress", "--accept-warnings"}
	if code, _, errs := run(t, args...); code != ExitFailure || !strings.Contains(errs, "FAIL") {
		t.Fatalf("a failing check should stop the sync even with --accept-warnings: code %d, stderr %q", code, errs)
	}
}

// TestSyncTaskFile: `ferry sync -f task.yaml` behaves as the equivalent flags, and a typo in
// the file is a usage error naming its line.
func TestSyncTaskFile(t *testing.T) {
	src := testutil.StartServer(t)
	src.Do(t, "SET", "k", "v")
	src.Do(t, "RPUSH", "l", "a", "b")
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	byFlags := testutil.StartServer(t)
	byFile := testutil.StartServer(t)
	if code, _, errs := run(t, "sync", "--source", "redis://"+src.Addr(), "--target", "redis://"+byFlags.Addr(),
		"--mode", "full", "--existing", "block", "--data-dir", filepath.Join(dir, "a"), "--task", "by-flags", "--skip-precheck", "--no-progress"); code != ExitOK {
		t.Fatalf("flags: code %d, %s", code, errs)
	}
	file := write("task.yaml", "name: by-file\nsource:\n  url: redis://"+src.Addr()+"\ntarget:\n  url: redis://"+byFile.Addr()+
		"\nmode: full\nexisting: block\ndata_dir: "+filepath.Join(dir, "b")+"\n")
	if code, _, errs := run(t, "sync", "-f", file, "--skip-precheck", "--no-progress"); code != ExitOK {
		t.Fatalf("task file: code %d, %s", code, errs)
	}
	// Each task keeps its own ferry: keys (checkpoints, named after the task); the data must
	// be the same, and the same as the source's.
	if n := byFile.Do(t, "EXISTS", "k", "l").Int; n != 2 {
		t.Fatalf("the task file's sync wrote %d of the 2 keys", n)
	}
	testutil.RequireSameData(t, byFlags, byFile, testutil.CompareOptions{SkipPrefixes: []string{task.KeyPrefix}})
	testutil.RequireSameData(t, src, byFile, testutil.CompareOptions{SkipPrefixes: []string{task.KeyPrefix}})
	// --existing block holds for the file as for the flags: a second run into a non-empty
	// destination that another task wrote is refused.
	if code, _, errs := run(t, "sync", "-f", file, "--skip-precheck", "--no-progress", "--task", "other"); code != ExitFailure || !strings.Contains(errs, "not empty") {
		t.Fatalf("task file with --existing block into a used destination: code %d, %s", code, errs)
	}

	typo := write("typo.yaml", "name: x\nsource:\n  url: redis://"+src.Addr()+"\ntarget:\n  url: redis://"+byFile.Addr()+"\nmdoe: full\n")
	code, _, errs := run(t, "sync", "-f", typo)
	if code != ExitUsage || !strings.Contains(errs, "line 6") || !strings.Contains(errs, "mode") {
		t.Fatalf("typo: code %d (want %d), stderr %q (want it to name line 6 and suggest mode)", code, ExitUsage, errs)
	}
}

// TestSyncResumeRunsPrecheck: running the same sync again resumes the task, and the
// precheck's existing-keys check recognises the task's own data instead of refusing it.
func TestSyncResumeRunsPrecheck(t *testing.T) {
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	src.Do(t, "SET", "k", "v1")
	args := []string{"sync", "--source", "redis://" + src.Addr(), "--target", "redis://" + dst.Addr(), "--data-dir", t.TempDir(), "--mode", "full", "--no-progress", "--accept-warnings"}
	if code, _, errs := run(t, args...); code != ExitOK {
		t.Fatalf("first run: code %d, stderr %q", code, errs)
	}
	src.Do(t, "SET", "k", "v2")
	src.Do(t, "SET", "k2", "new")
	if code, _, errs := run(t, args...); code != ExitOK {
		t.Fatalf("second run of the same task: code %d, stderr %q", code, errs)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{task.KeyPrefix}})
}
