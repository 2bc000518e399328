package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/resp"
)

// pipe writes commands to a server over one connection without waiting for replies; a
// goroutine reads the replies and fails on the first error reply. It is the bench's
// dataset loader, deliberately independent of Ferry's writer.
type pipe struct {
	nc     net.Conn
	buf    []byte
	sent   int64
	expect atomic.Int64 // replies to read before done is closed; set by finish
	done   chan error   // the reader's result
}

const pipeFlushAt = 256 << 10

func dialPipe(addr string) (*pipe, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	p := &pipe{nc: nc, done: make(chan error, 1)}
	p.expect.Store(math.MaxInt64)
	go p.read()
	return p, nil
}

// read counts replies until the expected count is reached or a reply is an error.
func (p *pipe) read() {
	r := resp.NewReader(p.nc, resp.ReaderOptions{BufferSize: 256 << 10})
	var n int64
	for {
		v, err := r.ReadValue()
		if err != nil {
			p.done <- err
			return
		}
		n++
		if v.Kind == '-' {
			p.done <- fmt.Errorf("reply %d: %s", n, v.Str)
			return
		}
		if n == p.expect.Load() {
			p.done <- nil
			return
		}
	}
}

func (p *pipe) send(args ...[]byte) error {
	p.buf = resp.AppendCommand(p.buf, args...)
	p.sent++
	if len(p.buf) >= pipeFlushAt {
		return p.flush()
	}
	return nil
}

func (p *pipe) sendStrings(args ...string) error {
	p.buf = resp.AppendCommandStrings(p.buf, args...)
	p.sent++
	if len(p.buf) >= pipeFlushAt {
		return p.flush()
	}
	return nil
}

func (p *pipe) flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	select {
	case err := <-p.done:
		if err == nil {
			err = errors.New("unexpected end of replies")
		}
		return err
	default:
	}
	_, err := p.nc.Write(p.buf)
	p.buf = p.buf[:0]
	return err
}

// finish writes what is buffered, waits for every reply and closes the connection.
func (p *pipe) finish(ctx context.Context) error {
	defer p.nc.Close()
	// A PING last, counted before it is written: its reply is the last one, so the
	// reader cannot have passed the expected count when it is set.
	p.buf = resp.AppendCommandStrings(p.buf, "PING")
	p.sent++
	p.expect.Store(p.sent)
	if err := p.flush(); err != nil {
		return err
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
