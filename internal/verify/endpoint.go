package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

// clientName is what verify's connections call themselves in CLIENT LIST.
const clientName = "ferry-verify"

// endpoint is one side of the comparison: a standalone server or a cluster, with the slot
// map that routes a key to its master. It is shared by all workers; each worker talks to it
// through its own session (a Conn is not safe for concurrent use).
//
// This is deliberately a small cluster client: discover the masters with CLUSTER SLOTS,
// route by slot, follow a MOVED or ASK once. The sync writer needs far more (ordered
// per-node streams, failover), which belongs in its own package.
type endpoint struct {
	name    string // "source" or "destination", for messages
	opts    redis.Options
	cluster bool
	limit   *limiter
	// digest is whether DEBUG DIGEST-VALUE works on every master: a cheap equality test
	// that managed services refuse.
	digest bool
	// noMulti is set once a server rejects SMISMEMBER or ZMSCORE (Redis < 6.2); lookups
	// then go one member per command.
	noMulti atomic.Bool

	mu    sync.RWMutex
	nodes []string                 // master addresses; for a standalone server, just opts.Addr
	slots [command.SlotCount]int32 // slot → index into nodes (cluster only)
}

// openEndpoint connects to the seed address, finds out whether it is a cluster (and its
// masters), and probes DEBUG DIGEST-VALUE.
func openEndpoint(ctx context.Context, name string, opts redis.Options, maxOps int, noDigest bool, log *slog.Logger) (*endpoint, error) {
	opts.ClientName = clientName
	e := &endpoint{name: name, opts: opts, limit: newLimiter(maxOps)}
	c, err := redis.Dial(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer c.Close()
	info, err := c.Info(ctx, "cluster")
	if err != nil {
		return nil, fmt.Errorf("%s %s: INFO cluster: %w", name, opts.Addr, err)
	}
	e.cluster = info["cluster_enabled"] == "1"
	if e.cluster {
		if opts.DB != 0 {
			return nil, fmt.Errorf("%s %s is a cluster, which has only db 0: drop /%d from the URL", name, opts.Addr, opts.DB)
		}
		if err := e.loadSlots(ctx, c); err != nil {
			return nil, err
		}
	} else {
		e.nodes = []string{opts.Addr}
	}
	e.digest = !noDigest
	for _, addr := range e.masters() {
		if !e.digest {
			break
		}
		nc := c
		if addr != opts.Addr {
			if nc, err = redis.Dial(ctx, e.nodeOptions(addr)); err != nil {
				return nil, fmt.Errorf("%s node %s: %w", name, addr, err)
			}
		}
		_, derr := nc.Do(ctx, "DEBUG", "DIGEST-VALUE", "ferry:verify:probe")
		if nc != c {
			nc.Close()
		}
		var re *resp.Error
		if derr != nil && !errors.As(derr, &re) {
			return nil, fmt.Errorf("%s node %s: %w", name, addr, derr)
		}
		if derr != nil {
			log.Info("DEBUG DIGEST-VALUE unavailable; comparing values element by element", "side", name, "addr", addr, "reply", re.Msg)
			e.digest = false
		}
	}
	return e, nil
}

// loadSlots reads CLUSTER SLOTS: [[start, end, [ip, port, id…], replica…]…].
func (e *endpoint) loadSlots(ctx context.Context, c *redis.Conn) error {
	v, err := c.Do(ctx, "CLUSTER", "SLOTS")
	if err != nil {
		return fmt.Errorf("%s %s: CLUSTER SLOTS: %w", e.name, e.opts.Addr, err)
	}
	seedHost, _, _ := net.SplitHostPort(e.opts.Addr)
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.slots {
		e.slots[i] = -1
	}
	e.nodes = nil
	index := map[string]int32{}
	covered := 0
	for _, r := range v.Elems {
		if len(r.Elems) < 3 || len(r.Elems[2].Elems) < 2 {
			return fmt.Errorf("%s %s: CLUSTER SLOTS: malformed entry", e.name, e.opts.Addr)
		}
		lo, hi := r.Elems[0].Int, r.Elems[1].Int
		if lo < 0 || hi >= command.SlotCount || lo > hi {
			return fmt.Errorf("%s %s: CLUSTER SLOTS: bad range %d-%d", e.name, e.opts.Addr, lo, hi)
		}
		host := string(r.Elems[2].Elems[0].Str)
		if host == "" || host == "?" {
			// An unknown endpoint means "the address you reached me on".
			host = seedHost
		}
		addr := net.JoinHostPort(host, strconv.FormatInt(r.Elems[2].Elems[1].Int, 10))
		idx, ok := index[addr]
		if !ok {
			idx = int32(len(e.nodes))
			index[addr] = idx
			e.nodes = append(e.nodes, addr)
		}
		for s := lo; s <= hi; s++ {
			e.slots[s] = idx
		}
		covered += int(hi - lo + 1)
	}
	if len(e.nodes) == 0 {
		return fmt.Errorf("%s %s: the cluster serves no slots (is it set up?)", e.name, e.opts.Addr)
	}
	if covered < command.SlotCount {
		return fmt.Errorf("%s %s: the cluster serves %d of %d slots; verify needs every slot served (check CLUSTER INFO)", e.name, e.opts.Addr, covered, command.SlotCount)
	}
	return nil
}

// masters returns the addresses of the masters (one for a standalone server).
func (e *endpoint) masters() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return append([]string(nil), e.nodes...)
}

// route returns the address of the master serving key.
func (e *endpoint) route(key string) string {
	if !e.cluster {
		return e.opts.Addr
	}
	slot := command.SlotString(key)
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.nodes[e.slots[slot]]
}

// moved records that slot now lives at addr (a MOVED reply), so the next key of that slot
// goes there directly.
func (e *endpoint) moved(slot int, addr string) {
	if !e.cluster || slot < 0 || slot >= command.SlotCount {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, n := range e.nodes {
		if n == addr {
			e.slots[slot] = int32(i)
			return
		}
	}
	e.nodes = append(e.nodes, addr)
	e.slots[slot] = int32(len(e.nodes) - 1)
}

// nodeOptions returns the options to reach addr, a node discovered from the seed. A TLS
// server name that merely repeats the seed's host is dropped, so that each node's
// certificate is checked against that node's own host.
func (e *endpoint) nodeOptions(addr string) redis.Options {
	o := e.opts
	if addr == o.Addr {
		return o
	}
	o.Addr = addr
	if o.TLS != nil {
		seedHost, _, _ := net.SplitHostPort(e.opts.Addr)
		if o.TLS.ServerName == seedHost {
			o.TLS = o.TLS.Clone()
			o.TLS.ServerName = ""
		}
	}
	return o
}

// connKey names one connection of a session: a node and a database.
type connKey struct {
	addr string
	db   int
}

// session is one worker's connections to an endpoint, dialled lazily per node and
// database. Not safe for concurrent use.
type session struct {
	ep    *endpoint
	conns map[connKey]*redis.Conn
}

func newSession(ep *endpoint) *session {
	return &session{ep: ep, conns: make(map[connKey]*redis.Conn)}
}

// conn returns the connection to addr with db selected, dialling it when needed.
func (s *session) conn(ctx context.Context, addr string, db int) (*redis.Conn, error) {
	k := connKey{addr, db}
	if c := s.conns[k]; c != nil {
		return c, nil
	}
	o := s.ep.nodeOptions(addr)
	o.DB = db
	c, err := redis.Dial(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.ep.name, err)
	}
	s.conns[k] = c
	return c, nil
}

// drop closes and forgets a connection after an I/O error, so the next call dials afresh.
func (s *session) drop(addr string, db int) {
	k := connKey{addr, db}
	if c := s.conns[k]; c != nil {
		c.Close()
		delete(s.conns, k)
	}
}

func (s *session) close() {
	for k, c := range s.conns {
		c.Close()
		delete(s.conns, k)
	}
}

// call is one command of a batch and, after exec, its reply.
type call struct {
	key  string // routes the command in a cluster
	node string // when set, the command goes to this node instead (SCAN, RANDOMKEY)
	args []any
	v    resp.Value
	err  error // the server's error reply, if any (*resp.Error)
}

// batch is a list of commands for one side and database, pipelined by exec.
type batch struct {
	s     *session
	db    int
	calls []call
}

func (b *batch) add(key string, args ...any) int {
	b.calls = append(b.calls, call{key: key, args: args})
	return len(b.calls) - 1
}

func (b *batch) reset() { b.calls = b.calls[:0] }

// exec sends every batch's commands pipelined, one pipeline per node, all nodes of both
// sides in flight at once, then reads the replies. A MOVED or ASK reply is followed once,
// for that command alone. Error replies land in call.err; the returned error is a broken
// connection or a cancelled context.
func exec(ctx context.Context, batches ...*batch) error {
	type pipe struct {
		s    *session
		addr string
		db   int
		c    *redis.Conn
		idx  []*call
	}
	var pipes []*pipe
	find := map[struct {
		s *session
		k connKey
	}]*pipe{}
	for _, b := range batches {
		if len(b.calls) == 0 {
			continue
		}
		if err := b.s.ep.limit.wait(ctx, len(b.calls)); err != nil {
			return err
		}
		for i := range b.calls {
			cl := &b.calls[i]
			cl.v, cl.err = resp.Value{}, nil
			addr := cl.node
			if addr == "" {
				addr = b.s.ep.route(cl.key)
			}
			k := struct {
				s *session
				k connKey
			}{b.s, connKey{addr, b.db}}
			p := find[k]
			if p == nil {
				c, err := b.s.conn(ctx, addr, b.db)
				if err != nil {
					return err
				}
				p = &pipe{s: b.s, addr: addr, db: b.db, c: c}
				find[k] = p
				pipes = append(pipes, p)
			}
			p.idx = append(p.idx, cl)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, p := range pipes {
		for _, cl := range p.idx {
			if err := p.c.Send(cl.args...); err != nil {
				p.s.drop(p.addr, p.db)
				return fmt.Errorf("%s %s: %w", p.s.ep.name, p.addr, err)
			}
		}
		if err := p.c.Flush(); err != nil {
			p.s.drop(p.addr, p.db)
			return fmt.Errorf("%s %s: %w", p.s.ep.name, p.addr, err)
		}
	}
	type redirected struct {
		s  *session
		db int
		cl *call
	}
	var redirect []redirected
	for _, p := range pipes {
		for _, cl := range p.idx {
			v, err := p.c.Receive()
			var re *resp.Error
			if err != nil && !errors.As(err, &re) {
				p.s.drop(p.addr, p.db)
				return fmt.Errorf("%s %s: %w", p.s.ep.name, p.addr, err)
			}
			cl.v, cl.err = v, err
			if re != nil && p.s.ep.cluster && cl.node == "" {
				_, _, moved := re.IsMoved()
				_, _, ask := re.IsAsk()
				if moved || ask {
					redirect = append(redirect, redirected{p.s, p.db, cl})
				}
			}
		}
	}
	for _, r := range redirect {
		if err := follow(ctx, r.s, r.db, r.cl); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// follow re-sends one command to the node a MOVED or ASK reply named, once.
func follow(ctx context.Context, s *session, db int, cl *call) error {
	re := cl.err.(*resp.Error)
	slot, addr, moved := re.IsMoved()
	ask := false
	if !moved {
		_, addr, ask = re.IsAsk()
	}
	c, err := s.conn(ctx, addr, db)
	if err != nil {
		return err
	}
	if moved {
		s.ep.moved(slot, addr)
	}
	if ask {
		if _, err := c.Do(ctx, "ASKING"); err != nil {
			var re *resp.Error
			if !errors.As(err, &re) {
				s.drop(addr, db)
				return fmt.Errorf("%s %s: ASKING: %w", s.ep.name, addr, err)
			}
		}
	}
	if err := s.ep.limit.wait(ctx, 1); err != nil {
		return err
	}
	v, err := c.Do(ctx, cl.args...)
	var rerr *resp.Error
	if err != nil && !errors.As(err, &rerr) {
		s.drop(addr, db)
		return fmt.Errorf("%s %s: %w", s.ep.name, addr, err)
	}
	cl.v, cl.err = v, err
	return nil
}

// do runs one command on a node (not routed by key) and returns its reply; error replies
// are errors here.
func (s *session) do(ctx context.Context, addr string, db int, args ...any) (resp.Value, error) {
	c, err := s.conn(ctx, addr, db)
	if err != nil {
		return resp.Value{}, err
	}
	if err := s.ep.limit.wait(ctx, 1); err != nil {
		return resp.Value{}, err
	}
	v, err := c.Do(ctx, args...)
	if err != nil {
		var re *resp.Error
		if !errors.As(err, &re) {
			s.drop(addr, db)
		}
		return v, fmt.Errorf("%s %s (db %d): %w", s.ep.name, addr, db, err)
	}
	return v, nil
}
