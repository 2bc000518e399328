package crc

import (
	"bufio"
	"bytes"
	"encoding/binary"
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

// startRedis runs a real redis-server for the test, listening only on a unix
// socket in a temporary directory (no TCP port to race other tests for), and
// returns the socket path. It waits for the server's own readiness log line
// rather than polling. The server is stopped in t.Cleanup.
func startRedis(t *testing.T, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
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

// respConn is a minimal hand-written RESP2 client, enough for these tests;
// it does not depend on internal/redis.
type respConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialRedis(t *testing.T, sock string) *respConn {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatalf("dial redis at %s: %v", sock, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &respConn{c: c, r: bufio.NewReader(c)}
}

func appendCommand(dst []byte, args ...[]byte) []byte {
	dst = fmt.Appendf(dst, "*%d\r\n", len(args))
	for _, a := range args {
		dst = fmt.Appendf(dst, "$%d\r\n", len(a))
		dst = append(dst, a...)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

// do sends one command and returns the reply: a bulk string's bytes, a simple
// string's text, or an integer's decimal text. Error replies fail the test.
func (rc *respConn) do(t *testing.T, args ...string) []byte {
	t.Helper()
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	if _, err := rc.c.Write(appendCommand(nil, bs...)); err != nil {
		t.Fatalf("write %q: %v", args[0], err)
	}
	return rc.reply(t)
}

func (rc *respConn) reply(t *testing.T) []byte {
	t.Helper()
	line, err := rc.r.ReadSlice('\n')
	if err != nil || len(line) < 3 {
		t.Fatalf("read reply: %q, %v", line, err)
	}
	body := string(line[1 : len(line)-2])
	switch line[0] {
	case '+', ':':
		return []byte(body)
	case '-':
		t.Fatalf("error reply: %s", body)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < 0 || n > 64<<20 {
			t.Fatalf("bulk length %q: %v", body, err)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			t.Fatalf("read bulk of %d bytes: %v", n, err)
		}
		return buf[:n]
	}
	t.Fatalf("unexpected reply type %q", line)
	return nil
}

// TestCRC64MatchesDumpPayloads checks CRC64 against the real thing: every DUMP
// payload ends with the CRC64 of all bytes before it, little-endian.
func TestCRC64MatchesDumpPayloads(t *testing.T) {
	rc := dialRedis(t, startRedis(t))
	rc.do(t, "SET", "int", "12345")
	rc.do(t, "SET", "short", "hello")
	rc.do(t, "SET", "long", strings.Repeat("0123456789abcdef", 300)+"xyz") // LZF-compressed
	rc.do(t, "SET", "random", string(benchInput(777)))
	rc.do(t, "RPUSH", "list", "a", "b", "c")
	rc.do(t, "HSET", "hash", "f1", "v1", "f2", "v2")
	rc.do(t, "SADD", "set", "1", "2", "3", "x")
	rc.do(t, "ZADD", "zset", "1.5", "m1", "2", "m2")
	for _, key := range []string{"int", "short", "long", "random", "list", "hash", "set", "zset"} {
		payload := rc.do(t, "DUMP", key)
		if len(payload) < 10 {
			t.Fatalf("DUMP %s: payload too short: %q", key, payload)
		}
		body, trailer := payload[:len(payload)-8], payload[len(payload)-8:]
		want := binary.LittleEndian.Uint64(trailer)
		if got := CRC64(0, body); got != want {
			t.Errorf("DUMP %s (%d bytes): CRC64 = %#016x, server wrote %#016x", key, len(payload), got, want)
		}
	}
}
