package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

// server is one redis-server process the bench started; it is stopped by stop.
type server struct {
	name string
	port int
	dir  string
	cmd  *exec.Cmd
	conn *redis.Conn // control connection: INFO, FLUSHALL, REPLICAOF…
}

func (s *server) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }
func (s *server) url() string  { return "redis://" + s.addr() }

// startServer runs redis-server on a free loopback port with its files in a directory of
// root. Persistence is off (the bench makes its own RDB with SAVE); the source starts a
// diskless transfer at once (no 5 s wait for more replicas), and a replica loads a
// diskless transfer straight into its empty dataset — the fastest native full sync.
func startServer(ctx context.Context, root, bin, name string, extra ...string) (*server, error) {
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args := []string{
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--logfile", "redis.log",
			"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
			"--repl-diskless-load", "on-empty-db", "--enable-debug-command", "local",
			"--client-output-buffer-limit", "replica 0 0 0",
			"--repl-backlog-size", "256mb", "--repl-timeout", "600",
		}
		args = append(args, extra...)
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("start %s: %w", bin, err)
		}
		s := &server{name: name, port: port, dir: dir, cmd: cmd}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		err = s.waitUp(ctx, exited)
		if err == nil {
			return s, nil
		}
		_ = cmd.Process.Kill()
		<-exited
		if attempt >= 3 {
			return nil, fmt.Errorf("start redis-server %s (see %s): %w", name, filepath.Join(dir, "redis.log"), err)
		}
	}
}

func (s *server) waitUp(ctx context.Context, exited <-chan error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := redis.Dial(ctx, redis.Options{Addr: s.addr(), DialTimeout: time.Second, IOTimeout: 10 * time.Minute})
		if err == nil {
			if _, err = c.Do(ctx, "PING"); err == nil {
				s.conn = c
				return nil
			}
			_ = c.Close()
		}
		select {
		case e := <-exited:
			return fmt.Errorf("exited: %v", e)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("not answering PING after 10s")
		}
	}
}

func (s *server) stop() {
	if s.conn != nil {
		_ = s.conn.Close()
	}
	_ = s.cmd.Process.Kill()
	_, _ = s.cmd.Process.Wait()
}

// do runs one command on the control connection.
func (s *server) do(ctx context.Context, args ...any) (resp.Value, error) {
	v, err := s.conn.Do(ctx, args...)
	if err != nil {
		return v, fmt.Errorf("%s: %v: %w", s.name, args[0], err)
	}
	return v, nil
}

func (s *server) info(ctx context.Context, section string) (map[string]string, error) {
	return s.conn.Info(ctx, section)
}

// cpu returns the server's CPU seconds (user + system, main thread and children).
// sourceCPU is a server's CPU seconds including its finished children (the fork that
// writes an RDB for a replica), once no child is running: Redis adds a child's time to
// used_cpu_*_children when it reaps it, which is when rdb_bgsave_in_progress drops to 0.
func (s *server) sourceCPU(ctx context.Context) (float64, error) {
	for start := time.Now(); ; {
		p, err := s.info(ctx, "persistence")
		if err != nil {
			return 0, err
		}
		if p["rdb_bgsave_in_progress"] == "0" {
			break
		}
		if time.Since(start) > time.Minute {
			return 0, fmt.Errorf("%s: the RDB child still runs a minute after the sync", s.name)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	m, err := s.info(ctx, "cpu")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, k := range []string{"used_cpu_user", "used_cpu_sys", "used_cpu_user_children", "used_cpu_sys_children"} {
		v, _ := strconv.ParseFloat(m[k], 64)
		sum += v
	}
	return sum, nil
}

func (s *server) cpu(ctx context.Context) (float64, error) {
	m, err := s.info(ctx, "cpu")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, k := range []string{"used_cpu_user", "used_cpu_sys"} {
		v, _ := strconv.ParseFloat(m[k], 64)
		sum += v
	}
	return sum, nil
}

func (s *server) dbsize(ctx context.Context) (int64, error) {
	v, err := s.do(ctx, "DBSIZE")
	return v.Int, err
}

// digest is DEBUG DIGEST: equal digests mean equal datasets (values and TTLs).
func (s *server) digest(ctx context.Context) (string, error) {
	v, err := s.do(ctx, "DEBUG", "DIGEST")
	return string(v.Str), err
}

// flush empties the server and waits for the memory to be given back, so the next
// measurement starts from the same state.
func (s *server) flush(ctx context.Context) error {
	if _, err := s.do(ctx, "FLUSHALL", "SYNC"); err != nil {
		return err
	}
	_, err := s.do(ctx, "MEMORY", "PURGE")
	return err
}

// deletePrefix deletes the keys of DB 0 that start with prefix.
func (s *server) deletePrefix(ctx context.Context, prefix string) error {
	cursor := "0"
	for {
		v, err := s.do(ctx, "SCAN", cursor, "MATCH", prefix+"*", "COUNT", 10000)
		if err != nil {
			return err
		}
		if len(v.Elems) != 2 {
			return fmt.Errorf("%s: SCAN: unexpected reply", s.name)
		}
		for _, k := range v.Elems[1].Elems {
			if _, err := s.do(ctx, "DEL", k.Str); err != nil {
				return err
			}
		}
		if cursor = string(v.Elems[0].Str); cursor == "0" {
			return nil
		}
	}
}

// freePort asks the kernel for a free loopback port. Another process may take it before
// the server binds it; startServer then retries.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// intField reads an integer INFO field.
func intField(m map[string]string, k string) int64 {
	v, _ := strconv.ParseInt(strings.TrimSpace(m[k]), 10, 64)
	return v
}
