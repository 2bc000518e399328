package command

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startRedis runs a real redis-server for the test in dir, listening only on a
// unix socket (no TCP port, and in cluster mode no bus port, to race other
// tests for), and returns the socket path. It waits for the server's own
// readiness log line rather than polling. The server is stopped in t.Cleanup.
func startRedis(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	sock := filepath.Join(dir, "redis.sock")
	args := append([]string{
		"--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir,
	}, extra...)
	cmd := exec.Command("/usr/bin/redis-server", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("redis-server stdout: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server (is it installed at /usr/bin/redis-server?): %v", err)
	}
	ready := make(chan struct{})
	drained := make(chan struct{})
	var logTail bytes.Buffer // only read after drained is closed
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if logTail.Len() < 64<<10 {
				logTail.Write(sc.Bytes())
				logTail.WriteByte('\n')
			}
			if !signalled && strings.Contains(strings.ToLower(sc.Text()), "ready to accept connections") {
				signalled = true
				close(ready)
			}
		}
		// Keep draining until EOF so the server never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, out)
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		<-drained
		_ = cmd.Wait()
	}
	select {
	case <-ready:
	case <-drained:
		_ = cmd.Wait()
		t.Fatalf("redis-server exited before becoming ready:\n%s", logTail.String())
	case <-time.After(10 * time.Second):
		stop()
		t.Fatalf("redis-server not ready after 10s:\n%s", logTail.String())
	}
	t.Cleanup(stop)
	return sock
}

// clusterKeySlots asks the server for CLUSTER KEYSLOT of every key in one
// pipeline, with RESP written and read by hand so the test does not depend on
// internal/redis.
func clusterKeySlots(t *testing.T, sock string, keys []string) []uint16 {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("dial redis at %s: %v", sock, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))

	var req []byte
	for _, k := range keys {
		req = fmt.Appendf(req, "*3\r\n$7\r\nCLUSTER\r\n$7\r\nKEYSLOT\r\n$%d\r\n%s\r\n", len(k), k)
	}
	// Replies are a few bytes each, so writing the whole pipeline before
	// reading cannot fill the server's output buffer and deadlock.
	if _, err := c.Write(req); err != nil {
		t.Fatalf("write %d CLUSTER KEYSLOT commands: %v", len(keys), err)
	}
	r := bufio.NewReader(c)
	slots := make([]uint16, len(keys))
	for i, k := range keys {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reply %d (key %q): %v", i, k, err)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if !strings.HasPrefix(line, ":") {
			t.Fatalf("CLUSTER KEYSLOT %q: unexpected reply %q", k, line)
		}
		n, err := strconv.ParseUint(line[1:], 10, 16)
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: reply %q: %v", k, line, err)
		}
		slots[i] = uint16(n)
	}
	return slots
}
