package testutil

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

const (
	// startTimeout bounds how long a server may take to answer PING (including loading its RDB).
	// Generous because CI machines are slow and shared; a healthy start takes ~10 ms.
	startTimeout = 30 * time.Second
	// stopTimeout is how long Stop waits for a graceful exit before it escalates to SIGKILL.
	stopTimeout = 10 * time.Second
	// commandTimeout bounds every command the harness sends on behalf of a test.
	commandTimeout = 30 * time.Second
	// bindAttempts is how often a start is retried with new ports when another process took the
	// free port between our probe and redis-server's bind.
	bindAttempts = 8
	// LogTailLines is how many lines of a server's log Log returns and failed tests print.
	LogTailLines = 40
	// envServerPath names an alternative redis-server (or valkey-server) binary.
	envServerPath = "FERRY_REDIS_SERVER"
)

// installHint is what a developer without redis-server is told to run.
const installHint = "apt-get install -y redis-server"

// RedisServerPath returns the redis-server binary the harness runs: $FERRY_REDIS_SERVER when set,
// else redis-server from $PATH, else /usr/bin or /usr/local/bin.
func RedisServerPath() (string, error) {
	if p := os.Getenv(envServerPath); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s=%s: %w", envServerPath, p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("redis-server not found in $%s, $PATH, /usr/bin or /usr/local/bin", envServerPath)
}

// requireServerBinary returns the redis-server path, or skips the test when there is none. On CI
// (when $CI is set) a missing server fails the test instead: CI must not pass by skipping.
func requireServerBinary(tb testing.TB) string {
	tb.Helper()
	p, err := RedisServerPath()
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("redis-server not found; CI must install it (%s): %v", installHint, err)
	}
	tb.Skipf("redis-server not found; install it to run this test (%s) or set $%s: %v", installHint, envServerPath, err)
	return ""
}

// Server is one redis-server process started by StartServer. Its methods are safe for concurrent
// use, but those taking a testing.TB must be called from the test's own goroutine (they may
// call FailNow); from other goroutines use Call and Dial.
type Server struct {
	path    string
	dir     string
	logPath string
	// stdioPath collects stdout and stderr: a bad config line is reported there, not in the log.
	stdioPath string
	// cluster nodes also need a free port for the cluster bus.
	cluster bool
	// args are the caller's arguments, appended after the harness's so that they override.
	args []string

	mu      sync.Mutex // guards port, busPort, proc
	port    int
	busPort int
	proc    *process

	// connMu serialises Call on the shared connection; it is separate from mu so that a slow
	// command does not hold up Addr, Kill and the rest.
	connMu sync.Mutex
	conn   *redis.Conn // dialled lazily
}

// process is one run of redis-server. done is closed when it has exited and been reaped.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the exit status; read only after done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// StartServer starts redis-server on a free loopback port in a fresh t.TempDir(), waits until it
// answers PING (and has finished loading), and stops it when the test ends. args are extra
// redis-server arguments ("--maxmemory", "10mb", ...) that override the harness defaults:
//
//	--save '' --appendonly no --enable-debug-command yes --bind 127.0.0.1 --daemonize no
//	--logfile <dir>/redis.log --repl-diskless-sync-delay 0
//
// (the last so a replica, Ferry included, gets its snapshot at once instead of after 5 s). Do not
// pass --port or --dir: the harness owns them. Requires Redis 7.0 or later.
func StartServer(tb testing.TB, args ...string) *Server {
	tb.Helper()
	s := newServer(tb, requireServerBinary(tb), false, args)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.launch(false); err != nil {
		tb.Fatalf("start redis-server: %v", err)
	}
	if err := s.finishStart(ctx, false); err != nil {
		tb.Fatalf("start redis-server: %v\n%s", err, s.Log())
	}
	return s
}

// newServer prepares a Server in a fresh temporary directory and registers its cleanup: the
// process is killed when the test ends, after the log tail has been printed if the test failed.
func newServer(tb testing.TB, path string, cluster bool, args []string) *Server {
	tb.Helper()
	dir := tb.TempDir()
	s := &Server{
		path:      path,
		dir:       dir,
		logPath:   filepath.Join(dir, "redis.log"),
		stdioPath: filepath.Join(dir, "stdio.log"),
		cluster:   cluster,
		args:      append([]string(nil), args...),
	}
	// Cleanups run last-registered first, and TempDir registered its removal before this, so
	// the log is still there to print.
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("redis-server %s (dir %s), last lines of its log:\n%s", s.Addr(), s.dir, s.Log())
		}
		s.Kill()
	})
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port()))
}

// Port is the server's TCP port. It stays the same across Restart.
func (s *Server) Port() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.port
}

// Dir is the server's working directory (RDB files, nodes.conf, logs).
func (s *Server) Dir() string { return s.dir }

// String names the server in messages.
func (s *Server) String() string { return "redis-server " + s.Addr() }

// Pid is the process id of the running server, or 0 when it is not running.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Running reports whether the server process is alive.
func (s *Server) Running() bool { return s.Pid() != 0 }

// freePort asks the kernel for a free loopback port. Another process may take it before
// redis-server binds it; launch and finishStart retry with a new one when that happens.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// launch starts the process without waiting for it to be ready. With keepPort it reuses the
// current port (Restart); otherwise it picks new free ports.
func (s *Server) launch(keepPort bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return fmt.Errorf("%s is already running (pid %d)", s.addrLocked(), s.proc.cmd.Process.Pid)
	}
	if !keepPort || s.port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		s.port = p
		if s.cluster {
			for {
				bp, err := freePort()
				if err != nil {
					return err
				}
				if bp != p {
					s.busPort = bp
					break
				}
			}
		}
	}
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--enable-debug-command", "yes",
		"--daemonize", "no",
		"--logfile", s.logPath,
		"--repl-diskless-sync-delay", "0",
	}
	if s.cluster {
		args = append(args, "--cluster-port", strconv.Itoa(s.busPort))
	}
	args = append(args, s.args...)

	stdio, err := os.OpenFile(s.stdioPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.stdioPath, err)
	}
	defer stdio.Close() // the child has its own copy
	cmd := exec.Command(s.path, args...)
	cmd.Dir = s.dir
	// An *os.File (not a buffer) so exec starts no copying goroutines.
	cmd.Stdout = stdio
	cmd.Stderr = stdio
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.path, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p
	return nil
}

// errPortTaken means redis-server could not bind its port: retry with another one.
var errPortTaken = errors.New("port already in use")

// finishStart waits until the launched process is ready. When it died because its port was
// taken, it is launched again on new ports (or, with keepPort, the same port after a pause).
func (s *Server) finishStart(ctx context.Context, keepPort bool) error {
	for attempt := 1; ; attempt++ {
		err := s.waitReady(ctx)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errPortTaken) || attempt >= bindAttempts {
			return err
		}
		if keepPort {
			// Restart needs this very port; whoever holds it may let go soon.
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
		if err := s.launch(keepPort); err != nil {
			return err
		}
	}
}

// waitReady polls the server with a raw PING until it answers +PONG. A server that is still
// loading its dataset answers -LOADING and is not ready yet.
func (s *Server) waitReady(ctx context.Context) error {
	s.mu.Lock()
	p, addr := s.proc, s.addrLocked()
	s.mu.Unlock()
	if p == nil {
		return fmt.Errorf("%s was never started", addr)
	}
	delay := time.Millisecond
	var last error
	for {
		reply, err := rawPing(ctx, addr)
		if err == nil && reply == "+PONG" {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("PING answered %q", reply)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s not ready after %v (last: %v): %w", addr, startTimeout, last, ctx.Err())
		case <-p.done:
			t.Stop()
			if s.logContains("Address already in use") {
				return fmt.Errorf("%s: %w", addr, errPortTaken)
			}
			return fmt.Errorf("%s exited during startup (%v); see its log", addr, p.err)
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// rawPing sends PING on a fresh connection and returns the reply line. It does not use
// internal/redis on purpose: starting servers must not depend on the client under test.
func rawPing(ctx context.Context, addr string) (string, error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return "", err
	}
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func (s *Server) addrLocked() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// logContains reports whether the server's log or stdio output mentions text.
func (s *Server) logContains(text string) bool {
	for _, p := range []string{s.logPath, s.stdioPath} {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(text)) {
			return true
		}
	}
	return false
}

// Log returns the last LogTailLines lines of the server's log, and anything it printed to
// stdout/stderr (configuration errors go there), for failure messages.
func (s *Server) Log() string {
	var b strings.Builder
	if out, err := os.ReadFile(s.stdioPath); err == nil && len(bytes.TrimSpace(out)) > 0 {
		b.WriteString("stdout/stderr:\n")
		b.WriteString(tailLines(string(out), LogTailLines))
		b.WriteString("log:\n")
	}
	out, err := os.ReadFile(s.logPath)
	if err != nil {
		fmt.Fprintf(&b, "(no log: %v)\n", err)
		return b.String()
	}
	b.WriteString(tailLines(string(out), LogTailLines))
	return b.String()
}

// tailLines returns the last n lines of text, each ending in a newline.
func tailLines(text string, n int) string {
	text = strings.TrimRight(text, "\n")
	if text == "" {
		return ""
	}
	lines := strings.Split(text, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// Dial opens a new connection to the server. The caller closes it.
func (s *Server) Dial(ctx context.Context) (*redis.Conn, error) {
	c, err := redis.Dial(ctx, redis.Options{Addr: s.Addr()})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.Addr(), err)
	}
	return c, nil
}

// Conn opens a new connection to the server that is closed when the test ends.
func (s *Server) Conn(tb testing.TB) *redis.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	c, err := s.Dial(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Call sends one command on the server's shared connection (dialled on first use, and again
// after a connection error) and returns the reply; an error reply is returned as *resp.Error.
// Unlike Do it may be used from any goroutine.
func (s *Server) Call(ctx context.Context, args ...any) (resp.Value, error) {
	addr := s.Addr()
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn == nil {
		c, err := redis.Dial(ctx, redis.Options{Addr: addr})
		if err != nil {
			return resp.Value{}, fmt.Errorf("dial %s: %w", addr, err)
		}
		s.conn = c
	}
	v, err := s.conn.Do(ctx, args...)
	if err != nil {
		if !isReplyError(err) {
			// The connection may be broken or out of step: start afresh next time.
			s.conn.Close()
			s.conn = nil
		}
		return v, fmt.Errorf("%s: %s: %w", addr, formatArgs(args), err)
	}
	return v, nil
}

// Do sends one command and returns its reply; any error, an error reply included, fails the test.
func (s *Server) Do(tb testing.TB, args ...any) resp.Value {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	v, err := s.Call(ctx, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// Info returns the fields of INFO <section> ("replication", "keyspace", ... or "" for the default
// sections).
func (s *Server) Info(ctx context.Context, section string) (map[string]string, error) {
	args := []any{"INFO"}
	if section != "" {
		args = append(args, section)
	}
	v, err := s.Call(ctx, args...)
	if err != nil {
		return nil, err
	}
	return redis.ParseInfo(string(v.Str)), nil
}

// Version returns the server's version (INFO server redis_version), e.g. "7.0.15", for tests
// that depend on a feature of a later release.
func (s *Server) Version(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	info, err := s.Info(ctx, "server")
	if err != nil {
		tb.Fatal(err)
	}
	return info["redis_version"]
}

// dropConn closes the shared connection; the next Call dials again.
func (s *Server) dropConn() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// Stop shuts the server down without saving (SHUTDOWN NOSAVE NOW, so it neither writes an RDB
// nor waits for lagging replicas) and waits for it to exit, escalating to SIGTERM and then
// SIGKILL if it does not. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	defer s.dropConn()
	s.mu.Lock()
	p, addr := s.proc, s.addrLocked()
	s.mu.Unlock()
	if p == nil || p.exited() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// NOW is Redis 7; an older server rejects it with a syntax error and gets the plain form.
	if reply, err := rawCommand(ctx, addr, "SHUTDOWN NOSAVE NOW"); err == nil && strings.HasPrefix(reply, "-") {
		_, _ = rawCommand(ctx, addr, "SHUTDOWN NOSAVE")
	}
	if waitExit(p, stopTimeout) {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if waitExit(p, stopTimeout) {
		return
	}
	s.Kill()
}

// Kill sends SIGKILL and waits for the process to be gone: a crash, as far as Redis can tell.
func (s *Server) Kill() {
	// Dropped after the kill: a command blocked on the shared connection then fails at once.
	defer s.dropConn()
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Restart starts the server again on the same port and in the same directory, so an RDB it
// saved (SAVE, BGSAVE, or a configured save point) is loaded, and waits until it is ready,
// loading included. A running server is stopped first (without saving). extraArgs are added to
// the server's arguments for this and later starts.
func (s *Server) Restart(tb testing.TB, extraArgs ...string) {
	tb.Helper()
	s.Stop()
	s.mu.Lock()
	s.args = append(s.args, extraArgs...)
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.launch(true); err != nil {
		tb.Fatalf("restart %s: %v", s, err)
	}
	if err := s.finishStart(ctx, true); err != nil {
		tb.Fatalf("restart %s: %v\n%s", s, err, s.Log())
	}
}

// waitExit waits up to d for the process to exit.
func waitExit(p *process, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// rawCommand sends one inline command and returns the first reply line ("" when the server
// closed the connection, as SHUTDOWN does).
func rawCommand(ctx context.Context, addr, inline string) (string, error) {
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return "", err
		}
	}
	if _, err := io.WriteString(c, inline+"\r\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if errors.Is(err, io.EOF) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// isReplyError reports whether err is the server's error reply rather than a broken connection.
func isReplyError(err error) bool {
	var re *resp.Error
	return errors.As(err, &re)
}

// formatArgs renders a command for messages, shortening long arguments.
func formatArgs(args []any) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if i >= 8 {
			fmt.Fprintf(&b, "... (%d arguments)", len(args))
			break
		}
		var s string
		switch v := a.(type) {
		case []byte:
			s = string(v)
		case string:
			s = v
		default:
			s = fmt.Sprint(v)
		}
		if len(s) > 64 {
			s = s[:64] + "..."
		}
		b.WriteString(strconv.Quote(s))
	}
	return b.String()
}
