package testutil

import (
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// Direction is one way through a FaultProxy.
type Direction int

const (
	// Downstream is server → client: replies, and a source's RDB and replication stream.
	Downstream Direction = iota
	// Upstream is client → server: commands, and a replica's REPLCONF ACKs.
	Upstream
)

func (d Direction) String() string {
	if d == Upstream {
		return "upstream"
	}
	return "downstream"
}

// proxyChunk is how much one read from either side asks for.
const proxyChunk = 32 << 10

// FaultProxy is an in-process TCP proxy in front of one server that injects the faults
// toxiproxy's toxics do, for tests that break links on purpose: reset (RST every
// connection), blackhole (data dropped, connections left open: half-open as far as either
// end can tell), slicer (data cut into small pieces with delays), limit_data (a connection
// cut after exactly n more bytes), and refusing new connections. Faults apply per direction
// where that matters.
//
// A connection that lost data to a blackhole is never healed: its stream has a hole, so
// Clear resets it (toxiproxy's timeout toxic closes such connections too).
//
// StartFaultProxy closes it when the test ends; its methods are safe for concurrent use.
type FaultProxy struct {
	ln        net.Listener
	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu        sync.Mutex
	target    string
	conns     map[*proxyConn]struct{}
	blackhole [2]bool
	slicer    [2]sliceFault
	limit     [2]limitFault
	refuse    bool
	accepted  int
	cuts      int
	dropped   [2]int64
	rng       *rand.Rand
}

type sliceFault struct {
	avg, variation int
	delay          time.Duration
}

// limitFault is one armed limit_data: gen tells connections that it is a new one, so each
// counts its bytes from the moment it was armed.
type limitFault struct {
	armed bool
	gen   int
	n     int64
}

// proxyConn is one client connection and its connection to the target.
type proxyConn struct {
	client, server net.Conn
	closeOnce      sync.Once
	done           chan struct{}
	// Under FaultProxy.mu:
	tainted  bool     // lost data to a blackhole
	limitGen [2]int   // the limit generation counted below
	sent     [2]int64 // bytes forwarded in each direction since limitGen was armed
}

// StartFaultProxy listens on a free loopback port and forwards every connection to target.
func StartFaultProxy(tb testing.TB, target string) *FaultProxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("fault proxy: %v", err)
	}
	p := &FaultProxy{
		ln:     ln,
		closed: make(chan struct{}),
		target: target,
		conns:  make(map[*proxyConn]struct{}),
		rng:    rand.New(rand.NewPCG(1, 2)),
	}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port, to give the client instead of the target's.
func (p *FaultProxy) Addr() string { return p.ln.Addr().String() }

// SetTarget makes new connections go to addr (open ones keep their server).
func (p *FaultProxy) SetTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// Accepted is the number of client connections accepted so far.
func (p *FaultProxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Cuts is the number of connections the proxy has broken (Reset, LimitData, Clear after a
// blackhole).
func (p *FaultProxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Dropped is the number of bytes a blackhole has swallowed in direction d.
func (p *FaultProxy) Dropped(d Direction) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped[d]
}

// Open is the number of connections currently proxied.
func (p *FaultProxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Reset breaks every open connection with a TCP RST on both sides (toxiproxy's
// reset_peer). New connections are proxied as usual.
func (p *FaultProxy) Reset() {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.cuts += len(conns)
	p.mu.Unlock()
	for _, c := range conns {
		c.reset()
	}
}

// Blackhole drops all data in direction d, on open and new connections, until Clear. The
// connections stay open: neither end sees an error, only silence.
func (p *FaultProxy) Blackhole(d Direction) {
	p.mu.Lock()
	p.blackhole[d] = true
	p.mu.Unlock()
}

// Slicer cuts the data in direction d into pieces of avg±variation bytes and waits delay
// before each (toxiproxy's slicer), until Clear. avg <= 0 turns it off.
func (p *FaultProxy) Slicer(d Direction, avg, variation int, delay time.Duration) {
	p.mu.Lock()
	p.slicer[d] = sliceFault{avg: avg, variation: variation, delay: delay}
	p.mu.Unlock()
}

// LimitData cuts the first connection that forwards n more bytes in direction d, counted
// from this call, right after its n-th byte (toxiproxy's limit_data, once): the bytes
// before the cut arrive, then both sides see the connection reset. It then disarms itself,
// so a client that reconnects is not cut again at the same point.
func (p *FaultProxy) LimitData(d Direction, n int64) {
	p.mu.Lock()
	p.limit[d] = limitFault{armed: true, gen: p.limit[d].gen + 1, n: n}
	p.mu.Unlock()
}

// LimitArmed reports whether a LimitData in direction d has not fired yet.
func (p *FaultProxy) LimitArmed(d Direction) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit[d].armed
}

// Refuse makes the proxy close new connections as soon as they are accepted (a server that
// is down), or stops doing so.
func (p *FaultProxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
}

// Clear removes every fault. Connections that lost data to a blackhole are reset.
func (p *FaultProxy) Clear() {
	p.mu.Lock()
	p.blackhole = [2]bool{}
	p.slicer = [2]sliceFault{}
	for d := range p.limit {
		p.limit[d].armed = false
	}
	p.refuse = false
	var tainted []*proxyConn
	for c := range p.conns {
		if c.tainted {
			tainted = append(tainted, c)
		}
	}
	p.cuts += len(tainted)
	p.mu.Unlock()
	for _, c := range tainted {
		c.reset()
	}
}

// Close stops accepting, breaks every connection and waits for the proxy's goroutines.
func (p *FaultProxy) Close() {
	p.closeOnce.Do(func() {
		close(p.closed)
		_ = p.ln.Close()
		p.mu.Lock()
		conns := make([]*proxyConn, 0, len(p.conns))
		for c := range p.conns {
			conns = append(conns, c)
		}
		p.mu.Unlock()
		for _, c := range conns {
			c.close()
		}
	})
	p.wg.Wait()
}

func (p *FaultProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.accepted++
		refuse, target := p.refuse, p.target
		p.mu.Unlock()
		if refuse {
			resetConn(client)
			continue
		}
		server, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil {
			// The target is down: the client sees its connection reset, as it would
			// see a refusal without the proxy.
			resetConn(client)
			continue
		}
		c := &proxyConn{client: client, server: server, done: make(chan struct{})}
		p.mu.Lock()
		select {
		case <-p.closed:
			p.mu.Unlock()
			c.close()
			return
		default:
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve pumps both directions until either side ends, then closes both.
func (p *FaultProxy) serve(c *proxyConn) {
	defer p.wg.Done()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(c, Upstream, c.client, c.server) }()
	go func() { defer wg.Done(); p.pump(c, Downstream, c.server, c.client) }()
	wg.Wait()
	c.close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// pump copies src to dst through the faults of direction d. When src ends, the other
// direction is ended too: Redis clients and servers never half-close.
func (p *FaultProxy) pump(c *proxyConn, d Direction, src, dst net.Conn) {
	defer c.close()
	buf := make([]byte, proxyChunk)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.forward(c, d, buf[:n], dst) {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forward applies the faults to one chunk and writes what gets through. It reports false
// when the connection is finished.
func (p *FaultProxy) forward(c *proxyConn, d Direction, b []byte, dst net.Conn) bool {
	p.mu.Lock()
	if p.blackhole[d] {
		c.tainted = true
		p.dropped[d] += int64(len(b))
		p.mu.Unlock()
		return true
	}
	cut := false
	if l := &p.limit[d]; l.armed {
		if c.limitGen[d] != l.gen {
			c.limitGen[d], c.sent[d] = l.gen, 0
		}
		if left := l.n - c.sent[d]; int64(len(b)) >= left {
			b = b[:max(left, 0)]
			cut = true
			l.armed = false
			p.cuts++
		}
	}
	c.sent[d] += int64(len(b))
	sl := p.slicer[d]
	var sizes []int
	if sl.avg > 0 {
		for rest := len(b); rest > 0; {
			n := sl.avg
			if sl.variation > 0 {
				n += p.rng.IntN(2*sl.variation+1) - sl.variation
			}
			n = min(max(n, 1), rest)
			sizes = append(sizes, n)
			rest -= n
		}
	}
	p.mu.Unlock()

	if sizes == nil {
		if _, err := dst.Write(b); err != nil {
			return false
		}
	} else {
		for _, n := range sizes {
			if sl.delay > 0 {
				t := time.NewTimer(sl.delay)
				select {
				case <-t.C:
				case <-c.done:
					t.Stop()
					return false
				}
			}
			if _, err := dst.Write(b[:n]); err != nil {
				return false
			}
			b = b[n:]
		}
	}
	if cut {
		c.reset()
		return false
	}
	return true
}

// reset closes both sides with an RST instead of a FIN.
func (c *proxyConn) reset() {
	c.closeOnce.Do(func() {
		close(c.done)
		resetConn(c.client)
		resetConn(c.server)
	})
}

func (c *proxyConn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		_ = c.client.Close()
		_ = c.server.Close()
	})
}

// resetConn closes a TCP connection with linger 0, which makes the kernel send RST.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
