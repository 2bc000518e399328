package redis

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// This private helper exists because internal/testutil depends on this package.

const redisServer = "/usr/bin/redis-server"

// server is a redis-server process owned by one test.
type server struct {
	addr string
	port int
}

// readyWriter collects the server's log and signals when it is ready to accept
// connections, so the test waits for the event instead of polling.
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{}
	once  sync.Once
}

func (w *readyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if bytes.Contains(w.buf.Bytes(), []byte("Ready to accept connections")) {
		w.once.Do(func() { close(w.ready) })
	}
	return len(p), nil
}

func (w *readyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer runs redis-server on a free loopback port with extra config arguments.
// With tls set, the port is a TLS port and plain TCP is off.
func startServer(t *testing.T, tls bool, args ...string) *server {
	t.Helper()
	var lastLog string
	for range 3 { // a free port can be taken between finding and binding it
		port := freePort(t)
		argv := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", t.TempDir(), "--enable-debug-command", "yes"}
		if tls {
			argv = append(argv, "--port", "0", "--tls-port", strconv.Itoa(port))
		} else {
			argv = append(argv, "--port", strconv.Itoa(port))
		}
		argv = append(argv, args...)
		log := &readyWriter{ready: make(chan struct{})}
		cmd := exec.Command(redisServer, argv...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", redisServer, err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-log.ready:
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})
			return &server{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), port: port}
		case <-exited:
			lastLog = log.String()
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Fatalf("redis-server did not start in 10s:\n%s", log.String())
		}
	}
	t.Fatalf("redis-server failed to start:\n%s", lastLog)
	return nil
}

// dial connects to s with opts (Addr filled in) and closes the connection at cleanup.
func dial(t *testing.T, s *server, opts Options) *Conn {
	t.Helper()
	opts.Addr = s.addr
	c, err := Dial(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func do(t *testing.T, c *Conn, args ...any) string {
	t.Helper()
	v, err := c.Do(context.Background(), args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return v.Text()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
