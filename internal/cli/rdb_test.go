package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// runFerry runs the binary and returns its output and peak RSS in bytes.
//
// The peak RSS is the child's own high-water mark (VmHWM in /proc/<pid>/status), polled
// while it runs. getrusage's ru_maxrss would not do: Linux carries the high-water mark of
// the memory a process had before exec into it, and a child of this test process starts
// as (a vfork of) the test process, so ru_maxrss reports the test binary's RSS whenever it
// is the larger — 107–121 MB after the package's other tests under -race.
func runFerry(t *testing.T, bin string, args ...string) (string, int64) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("ferry %s: %v", strings.Join(args, " "), err)
	}
	var peak atomic.Int64
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb := vmHWM(status); kb*1024 > peak.Load() {
				peak.Store(kb * 1024)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	close(stop)
	<-polled
	if err != nil {
		t.Fatalf("ferry %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	if runtime.GOOS != "linux" || peak.Load() == 0 {
		return out.String(), -1
	}
	return out.String(), peak.Load()
}

// vmHWM reads the VmHWM line (kB) of a /proc/<pid>/status file; 0 when it cannot.
func vmHWM(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}

// TestRDBRestoreRoundTrip fills a real server with every type in small and large encodings
// plus big keys (a 1-million-member zset, a 1-million-field hash, a 100 MB string, a stream
// with groups and pending entries), SAVEs it, and restores the file with `ferry rdb restore`
// into fresh servers, once through RESTORE payloads and once forced through the command
// path. Redis's DEBUG DIGEST (which covers every key, value and absolute expiry) must match,
// and the command path must stay in bounded memory.
func TestRDBRestoreRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the round trip writes ~150 MB of data")
	}
	ctx := context.Background()
	// A build without the race detector, so that the memory measured is Ferry's, not the
	// instrumentation's. This package has no TestMain to remove it at the end.
	bin := testutil.FerryBinary(t)
	t.Cleanup(testutil.RemoveFerryBinary)
	src := testutil.StartServer(t)
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 7, DBs: []int{0, 1, 3}, TTL: true, Large: true, Keys: 3000})
	if err := w.Fill(ctx, src, 30000); err != nil {
		t.Fatal(err)
	}
	// Big keys, built server-side so the test does not spend its time on the wire.
	src.Do(t, "EVAL", `for i = 1, 1000000, 1000 do
		local a = {}
		for j = i, i + 999 do a[#a+1] = j * 1.5; a[#a+1] = 'member:' .. j end
		redis.call('ZADD', KEYS[1], unpack(a))
	end
	return 1`, 1, "big:zset")
	src.Do(t, "EVAL", `for i = 1, 1000000, 1000 do
		local a = {}
		for j = i, i + 999 do a[#a+1] = 'field:' .. j; a[#a+1] = 'value:' .. j end
		redis.call('HSET', KEYS[1], unpack(a))
	end
	return 1`, 1, "big:hash")
	chunk := make([]byte, 1<<20)
	c := src.Conn(t)
	for i := 0; i < 100; i++ {
		if _, err := rand.Read(chunk); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Do(ctx, "APPEND", "big:string", chunk); err != nil {
			t.Fatal(err)
		}
	}
	src.Do(t, "PEXPIRE", "big:string", 3600_000)
	for i := 0; i < 300; i++ {
		src.Do(t, "XADD", "big:stream", "*", "n", i, "payload", strings.Repeat("x", i%50))
	}
	src.Do(t, "XGROUP", "CREATE", "big:stream", "g1", "0")
	src.Do(t, "XGROUP", "CREATE", "big:stream", "g2", "$")
	src.Do(t, "XREADGROUP", "GROUP", "g1", "alice", "COUNT", 100, "STREAMS", "big:stream", ">")
	src.Do(t, "XREADGROUP", "GROUP", "g1", "bob", "COUNT", 50, "STREAMS", "big:stream", ">")
	src.Do(t, "SAVE")
	want := testutil.Digest(t, src)
	file := filepath.Join(src.Dir(), "dump.rdb")
	if fi, err := os.Stat(file); err != nil || fi.Size() < 100<<20 {
		t.Fatalf("expected a dump of more than 100 MB at %s: %v", file, err)
	}

	// Inspect sees the big keys.
	out, _ := runFerry(t, bin, "rdb", "inspect", "--json", file)
	var rep struct {
		Keys int64 `json:"keys"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Keys < 1000 {
		t.Fatalf("rdb inspect --json: %v, keys %d", err, rep.Keys)
	}

	for _, path := range []struct {
		name  string
		extra []string
	}{
		{"restore payloads", nil},
		{"command path", []string{"--force-commands"}},
	} {
		t.Run(path.name, func(t *testing.T) {
			dst := testutil.StartServer(t)
			start := time.Now()
			out, rss := runFerry(t, bin, append([]string{"rdb", "restore", file, "--target", "redis://" + dst.Addr(), "--no-progress"}, path.extra...)...)
			t.Logf("%s: %s in %s, peak RSS %.1f MB", path.name, strings.TrimSpace(out), time.Since(start).Round(time.Millisecond), float64(rss)/(1<<20))
			if got := testutil.Digest(t, dst); got != want {
				t.Fatalf("DEBUG DIGEST after restore through %s: %s, want %s", path.name, got, want)
			}
			// The command path streams big keys in chunks: memory must not follow their size.
			if path.extra != nil && rss > 100<<20 {
				t.Fatalf("peak RSS %.1f MB restoring through the command path; want under 100 MB", float64(rss)/(1<<20))
			}
		})
	}
}

// TestRDBRestoreConnections restores one file over one and over four destination
// connections, with small keys as RESTOREs and a few big ones as commands (a low
// --big-key-threshold), and checks DEBUG DIGEST against the source; a connection count
// out of range is a usage error.
func TestRDBRestoreConnections(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 3, DBs: []int{0, 2}, TTL: true, Large: true, Keys: 1000})
	if err := w.Fill(ctx, src, 5000); err != nil {
		t.Fatal(err)
	}
	src.Do(t, "SAVE")
	want := testutil.Digest(t, src)
	file := filepath.Join(src.Dir(), "dump.rdb")
	for _, conns := range []string{"1", "4"} {
		dst := testutil.StartServer(t)
		code, out, errs := run(t, "rdb", "restore", file, "--target", "redis://"+dst.Addr(), "--no-progress",
			"--connections", conns, "--big-key-threshold", "2000")
		if code != ExitOK {
			t.Fatalf("--connections %s: exit %d: %s%s", conns, code, out, errs)
		}
		if !strings.Contains(out, "as commands") || strings.Contains(out, "(0 as commands") {
			t.Fatalf("--connections %s: want some keys through the command path: %s", conns, out)
		}
		if got := testutil.Digest(t, dst); got != want {
			t.Fatalf("--connections %s: DEBUG DIGEST %s, want %s", conns, got, want)
		}
	}
	code, _, errs := run(t, "rdb", "restore", file, "--target", "redis://127.0.0.1:1", "--connections", "0")
	if code != ExitUsage || !strings.Contains(errs, "--connections") {
		t.Fatalf("--connections 0: exit %d, stderr %q; want a usage error", code, errs)
	}
}
