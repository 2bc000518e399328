package testutil

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
)

// rawDial connects to addr with a deadline for the whole exchange.
func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

func TestFaultProxyPassThroughAndSlicer(t *testing.T) {
	s := StartServer(t)
	p := StartFaultProxy(t, s.Addr())
	value := strings.Repeat("v", 100000)
	s.Do(t, "SET", "k", value)

	ctx := context.Background()
	c, err := redis.Dial(ctx, redis.Options{Addr: p.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.Do(ctx, "GET", "k")
	if err != nil || string(v.Str) != value {
		t.Fatalf("GET through the proxy: %v, %d bytes", err, len(v.Str))
	}

	// Sliced into ~1 KB pieces with a delay: the reply arrives whole, in many reads.
	p.Slicer(Downstream, 1000, 200, time.Millisecond)
	raw := rawDial(t, p.Addr())
	if _, err := raw.Write([]byte("GET k\r\n")); err != nil {
		t.Fatal(err)
	}
	want := len("$100000\r\n") + len(value) + 2
	got, reads := 0, 0
	buf := make([]byte, 64<<10)
	for got < want {
		n, err := raw.Read(buf)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", got, want, err)
		}
		got += n
		reads++
	}
	if reads < 20 {
		t.Fatalf("sliced reply came in %d reads; want many small ones", reads)
	}
	p.Clear()
	if p.Accepted() != 2 || p.Cuts() != 0 {
		t.Fatalf("accepted %d, cuts %d; want 2 and 0", p.Accepted(), p.Cuts())
	}
}

func TestFaultProxyReset(t *testing.T) {
	s := StartServer(t)
	p := StartFaultProxy(t, s.Addr())
	raw := rawDial(t, p.Addr())
	if _, err := raw.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, err := raw.Read(buf); err != nil || string(buf[:n]) != "+PONG\r\n" {
		t.Fatalf("PING: %q %v", buf[:n], err)
	}
	waitFor(t, func() bool { return p.Open() == 1 })
	p.Reset()
	_, err := raw.Read(buf)
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("read after Reset: %v; want a reset connection", err)
	}
	if p.Cuts() != 1 {
		t.Fatalf("cuts %d, want 1", p.Cuts())
	}
	// New connections work.
	raw2 := rawDial(t, p.Addr())
	if _, err := raw2.Write([]byte("PING\r\n")); err != nil {
		t.Fatal(err)
	}
	if n, err := raw2.Read(buf); err != nil || string(buf[:n]) != "+PONG\r\n" {
		t.Fatalf("PING after Reset: %q %v", buf[:n], err)
	}
}

func TestFaultProxyBlackhole(t *testing.T) {
	s := StartServer(t)
	p := StartFaultProxy(t, s.Addr())
	raw := rawDial(t, p.Addr())
	p.Blackhole(Downstream)
	if _, err := raw.Write([]byte("SET bh 1\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 64)
	_, err := raw.Read(buf)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read through a blackhole: %v; want a timeout", err)
	}
	// The command went upstream: the server executed it, only the reply was lost.
	if v := s.Do(t, "GET", "bh"); string(v.Str) != "1" {
		t.Fatalf("upstream data did not pass: GET bh = %q", v.Str)
	}
	waitFor(t, func() bool { return p.Dropped(Downstream) > 0 })
	// Clear resets the connection that lost data rather than resuming a stream with a hole.
	p.Clear()
	_ = raw.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := raw.Read(buf); err == nil {
		t.Fatal("a connection that lost data to the blackhole survived Clear")
	}
	if p.Cuts() != 1 {
		t.Fatalf("cuts %d, want 1", p.Cuts())
	}
}

func TestFaultProxyLimitData(t *testing.T) {
	s := StartServer(t)
	p := StartFaultProxy(t, s.Addr())
	s.Do(t, "SET", "k", strings.Repeat("x", 1000))
	raw := rawDial(t, p.Addr())
	waitFor(t, func() bool { return p.Open() == 1 })
	p.LimitData(Downstream, 10)
	if _, err := raw.Write([]byte("GET k\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(raw)
	if !bytes.Equal(got, []byte("$1000\r\nxxx")) {
		t.Fatalf("got %q before the cut; want exactly the first 10 bytes", got)
	}
	if err == nil {
		t.Log("connection closed cleanly") // RST may surface as EOF after the data
	}
	if p.LimitArmed(Downstream) {
		t.Fatal("limit still armed after it fired")
	}
	// Disarmed: the next connection gets everything.
	raw2 := rawDial(t, p.Addr())
	if _, err := raw2.Write([]byte("GET k\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2000)
	if _, err := io.ReadFull(raw2, buf[:1009]); err != nil {
		t.Fatalf("after the limit fired: %v", err)
	}
}

func TestFaultProxyRefuse(t *testing.T) {
	s := StartServer(t)
	p := StartFaultProxy(t, s.Addr())
	p.Refuse(true)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if c, err := redis.Dial(ctx, redis.Options{Addr: p.Addr()}); err == nil {
		c.Close()
		t.Fatal("dial through a refusing proxy succeeded")
	}
	p.Refuse(false)
	c, err := redis.Dial(ctx, redis.Options{Addr: p.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A target that is down: the client's connection is reset.
	s.Stop()
	if c, err := redis.Dial(ctx, redis.Options{Addr: p.Addr()}); err == nil {
		c.Close()
		t.Fatal("dial through the proxy to a stopped server succeeded")
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
