package precheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

// clientName marks precheck connections in CLIENT LIST.
const clientName = "ferry-precheck"

// slotCount is the number of Redis Cluster hash slots.
const slotCount = 16384

// side is what the precheck knows about the source or the target after connecting.
type side struct {
	role string // SideSource or SideTarget
	opts redis.Options
	cfg  Config

	// err is why the first connection failed; nil when it worked. Checks of this side
	// are then skipped.
	err     error
	advice  string // what to do about err
	elapsed time.Duration
	tlsVer  string // "TLS 1.3" when the connection uses TLS

	info    map[string]string // the seed's INFO; nil when INFO failed
	infoErr error
	server  serverVersion
	cluster bool
	// nodes are the masters: the seed alone for a standalone server.
	nodes []*node
	// slots is the seed's CLUSTER SLOTS view (cluster only).
	slots    []slotRange
	slotsErr error
}

// node is one master of a side.
type node struct {
	addr  string
	info  map[string]string // INFO; nil when err
	err   error
	slots int // hash slots it serves (cluster only)
}

// slotRange is one entry of CLUSTER SLOTS: slots lo..hi served by master.
type slotRange struct {
	lo, hi int
	master string
}

func newSide(role string, opts redis.Options, cfg Config) *side {
	opts.DB = 0
	return &side{role: role, opts: opts, cfg: cfg}
}

// dial connects to addr with the side's credentials and TLS settings, bounded by the
// precheck's dial timeout.
func (s *side) dial(ctx context.Context, addr string) (*redis.Conn, error) {
	o := s.opts
	o.Addr = addr
	o.DB = 0
	o.DialTimeout = min(s.cfg.DialTimeout, orMax(o.DialTimeout))
	o.IOTimeout = s.cfg.CheckTimeout
	o.ClientName = clientName
	return redis.Dial(ctx, o)
}

func orMax(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Duration(1<<63 - 1)
	}
	return d
}

// dialSeed connects to the address the user gave.
func (s *side) dialSeed(ctx context.Context) (*redis.Conn, error) { return s.dial(ctx, s.opts.Addr) }

// connect makes the first connection and reads what most checks need: INFO, and for a
// cluster its masters and their INFO.
func (s *side) connect(ctx context.Context) {
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout+s.cfg.CheckTimeout)
	defer cancel()
	c, err := s.dialSeed(ctx)
	s.elapsed = time.Since(t0)
	if err != nil {
		s.err = err
		s.advice = s.connectAdvice(ctx, err)
		return
	}
	defer c.Close()
	if tc, ok := c.NetConn().(*tls.Conn); ok {
		s.tlsVer = tls.VersionName(tc.ConnectionState().Version)
	}
	s.info, s.infoErr = c.Info(ctx)
	if s.infoErr != nil {
		s.info = nil
		s.nodes = []*node{{addr: s.opts.Addr, err: s.infoErr}}
		return
	}
	s.server = parseServerVersion(s.info)
	s.cluster = s.info["cluster_enabled"] == "1"
	if !s.cluster {
		s.nodes = []*node{{addr: s.opts.Addr, info: s.info}}
		return
	}
	s.discover(ctx, c)
}

// discover reads the cluster's slot map from the seed and the INFO of every master.
func (s *side) discover(ctx context.Context, c *redis.Conn) {
	v, err := c.Do(ctx, "CLUSTER", "SLOTS")
	if err != nil {
		s.slotsErr = err
		s.nodes = []*node{{addr: s.opts.Addr, info: s.info}}
		return
	}
	host, _, _ := net.SplitHostPort(s.opts.Addr)
	s.slots, s.slotsErr = parseClusterSlots(v, host)
	if s.slotsErr != nil {
		s.nodes = []*node{{addr: s.opts.Addr, info: s.info}}
		return
	}
	byAddr := make(map[string]*node)
	for _, r := range s.slots {
		n := byAddr[r.master]
		if n == nil {
			n = &node{addr: r.master}
			byAddr[r.master] = n
			s.nodes = append(s.nodes, n)
		}
		n.slots += r.hi - r.lo + 1
	}
	var wg sync.WaitGroup
	for _, n := range s.nodes {
		if n.addr == s.opts.Addr {
			n.info = s.info
			continue
		}
		wg.Go(func() {
			nc, err := s.dial(ctx, n.addr)
			if err != nil {
				n.err = err
				return
			}
			defer nc.Close()
			n.info, n.err = nc.Info(ctx)
		})
	}
	wg.Wait()
}

// parseClusterSlots reads a CLUSTER SLOTS reply: [lo, hi, [host, port, id...], replicas...].
// An empty host means "the address you reached me on" (a node that does not know its own
// address); it becomes seedHost.
func parseClusterSlots(v resp.Value, seedHost string) ([]slotRange, error) {
	var out []slotRange
	for i, e := range v.Elems {
		if len(e.Elems) < 3 || len(e.Elems[2].Elems) < 2 {
			return nil, fmt.Errorf("CLUSTER SLOTS entry %d: want [start, end, [host, port, ...], ...]", i)
		}
		lo, hi := int(e.Elems[0].Int), int(e.Elems[1].Int)
		if lo < 0 || hi >= slotCount || lo > hi {
			return nil, fmt.Errorf("CLUSTER SLOTS entry %d: invalid slot range %d-%d", i, lo, hi)
		}
		m := e.Elems[2].Elems
		host := m[0].Text()
		if host == "" || host == "?" {
			host = seedHost
		}
		port := m[1].Int
		if m[1].Kind != resp.KindInteger {
			p, err := strconv.ParseInt(m[1].Text(), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("CLUSTER SLOTS entry %d: port %q: %w", i, m[1].Text(), err)
			}
			port = p
		}
		out = append(out, slotRange{lo: lo, hi: hi, master: net.JoinHostPort(host, strconv.FormatInt(port, 10))})
	}
	return out, nil
}

// unreachable says why the side's checks were skipped.
func (s *side) unreachable() string {
	var re *resp.Error
	if errors.As(s.err, &re) {
		return fmt.Sprintf("cannot log in to the %s (see %s connect)", s.role, s.role)
	}
	return fmt.Sprintf("%s unreachable (see %s connect)", s.role, s.role)
}

// infoOr returns the seed's INFO, or a Skip check saying why it is missing.
func (s *side) infoOr() (map[string]string, *Check) {
	if s.info != nil {
		return s.info, nil
	}
	c := skipf("not checked: INFO on the %s failed: %v", s.role, s.infoErr)
	c.Advice = noPermAdvice(s, s.infoErr, "info")
	return nil, &c
}

// connectCheck reports the first connection.
func (s *side) connectCheck() Check {
	c := Check{Side: s.role, Name: CheckConnect, ElapsedMS: s.elapsed.Milliseconds()}
	if s.err != nil {
		c.Result = Fail
		c.Found = s.err.Error()
		c.Advice = s.advice
		return c
	}
	var b strings.Builder
	if s.info != nil {
		fmt.Fprintf(&b, "%s at %s", s.server, s.opts.Addr)
	} else {
		fmt.Fprintf(&b, "%s", s.opts.Addr)
	}
	fmt.Fprintf(&b, " as user %q", s.user())
	if s.tlsVer != "" {
		fmt.Fprintf(&b, ", %s", s.tlsVer)
	} else {
		b.WriteString(", no TLS")
	}
	switch {
	case s.info == nil:
		fmt.Fprintf(&b, "; INFO failed: %v", s.infoErr)
	case s.cluster:
		fmt.Fprintf(&b, ", cluster of %d masters", len(s.nodes))
	default:
		b.WriteString(", standalone")
		if s.info["role"] == "slave" {
			b.WriteString(" replica")
		}
	}
	fmt.Fprintf(&b, ", connected in %s", formatDuration(s.elapsed))
	c.Found = b.String()
	return c
}

// user is the ACL user the side logs in as.
func (s *side) user() string {
	if s.opts.Username != "" {
		return s.opts.Username
	}
	return "default"
}

// flag is the command-line flag that names this side, for advice.
func (s *side) flag() string { return "--" + s.role }

// connectAdvice turns a failed first connection into what to do. The error itself (from
// redis.Dial) already names the address and the cause.
func (s *side) connectAdvice(ctx context.Context, err error) string {
	var (
		re      *resp.Error
		dnsErr  *net.DNSError
		recErr  tls.RecordHeaderError
		certErr *tls.CertificateVerificationError
		netErr  net.Error
	)
	switch {
	case errors.As(err, &re) && re.IsWrongPass():
		return fmt.Sprintf("check the user name (%q) and password in the %s URL: redis://user:password@host:port", s.user(), s.flag())
	case errors.As(err, &re) && re.IsNoAuth():
		return fmt.Sprintf("the server requires a password: put it in the %s URL: redis://[user]:password@%s", s.flag(), s.opts.Addr)
	case errors.As(err, &re) && strings.Contains(re.Msg, "without any password configured"):
		return fmt.Sprintf("the server has no password: remove it from the %s URL", s.flag())
	case errors.As(err, &re):
		return "the server refused the login: " + re.Msg
	case errors.As(err, &dnsErr):
		return fmt.Sprintf("check the host name in the %s URL", s.flag())
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing accepts connections at %s: check the host and port in the %s URL, that the server is running, and any firewall", s.opts.Addr, s.flag())
	case s.opts.TLS != nil && errors.As(err, &recErr):
		return fmt.Sprintf("%s does not speak TLS: use redis:// for a plain connection, or the server's tls-port with rediss://", s.opts.Addr)
	case s.opts.TLS != nil && errors.As(err, &certErr):
		return "the server's certificate was not accepted: make sure it is signed by a CA this machine trusts and names the host you connect to"
	}
	if s.opts.TLS == nil && s.speaksTLS(ctx) {
		return fmt.Sprintf("%s expects TLS: use rediss://%s in %s", s.opts.Addr, s.opts.Addr, s.flag())
	}
	if s.opts.TLS != nil && s.speaksPlainRESP(ctx) {
		// A plain server does not answer a ClientHello (it waits for the end of an
		// inline command), so this shows as a handshake timeout.
		return fmt.Sprintf("%s does not speak TLS: use redis:// for a plain connection, or the server's tls-port with rediss://", s.opts.Addr)
	}
	if s.opts.TLS != nil && !errors.As(err, &netErr) {
		return fmt.Sprintf("the TLS handshake with %s failed: check that it is the server's tls-port, whether it requires a client certificate (tls-auth-clients), and the TLS versions it allows", s.opts.Addr)
	}
	if errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		if s.opts.TLS != nil {
			return fmt.Sprintf("no TLS answer from %s within %s: check the address and firewall, and that the port is the server's tls-port (a plain port does not answer a TLS handshake)", s.opts.Addr, s.cfg.DialTimeout)
		}
		return fmt.Sprintf("no answer from %s within %s: check the address, the network route and any firewall or security group", s.opts.Addr, s.cfg.DialTimeout)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return "the server closed the connection: check its log (maxclients, protected-mode, a proxy in between)"
	}
	return fmt.Sprintf("check the %s URL and the server's log", s.flag())
}

// speaksTLS reports whether the side's address completes a TLS handshake. It is only
// asked after a plain connection failed, to tell "this port wants TLS" from other
// failures; nothing is sent but the handshake, and the certificate is not checked
// because nothing is trusted to this connection.
func (s *side) speaksTLS(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.opts.Addr)
	if err != nil {
		return false
	}
	defer nc.Close()
	tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // detection only, no data is exchanged
	return tc.HandshakeContext(ctx) == nil
}

// speaksPlainRESP reports whether the side's address answers a plain inline PING, to
// tell "this port is not TLS" from other handshake failures.
func (s *side) speaksPlainRESP(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", s.opts.Addr)
	if err != nil {
		return false
	}
	defer nc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if _, err := io.WriteString(nc, "PING\r\n"); err != nil {
		return false
	}
	var buf [64]byte
	n, err := nc.Read(buf[:])
	if err != nil || n == 0 {
		return false
	}
	// +PONG, or an error such as -NOAUTH: either way a RESP server.
	return buf[0] == '+' || buf[0] == '-'
}

// noPermAdvice returns the ACL grant for a command the user may not run, or "" when err
// is not a permission error.
func noPermAdvice(s *side, err error, aclCommand string) string {
	var re *resp.Error
	if !errors.As(err, &re) || !re.IsNoPerm() {
		return ""
	}
	return fmt.Sprintf("grant it to check this: ACL SETUSER %s +%s", s.user(), aclCommand)
}

// infoInt reads an integer INFO field; ok is false when it is missing or not a number.
func infoInt(info map[string]string, key string) (int64, bool) {
	v, found := info[key]
	if !found {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if ferr != nil {
			return 0, false
		}
		return int64(f), true
	}
	return n, true
}

// keyspace parses INFO keyspace lines ("db0:keys=1,expires=0,avg_ttl=0") into key counts
// per database, and other fields (expires, subexpiry) when asked for.
func keyspace(info map[string]string, field string) map[int]int64 {
	out := make(map[int]int64)
	for k, v := range info {
		n, ok := strings.CutPrefix(k, "db")
		if !ok {
			continue
		}
		db, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		for part := range strings.SplitSeq(v, ",") {
			name, val, _ := strings.Cut(part, "=")
			if name == field {
				if x, err := strconv.ParseInt(val, 10, 64); err == nil {
					out[db] = x
				}
			}
		}
	}
	return out
}

// configGet reads one parameter with CONFIG GET.
func configGet(ctx context.Context, c *redis.Conn, name string) (string, error) {
	v, err := c.Do(ctx, "CONFIG", "GET", name)
	if err != nil {
		return "", err
	}
	for i := 0; i+1 < len(v.Elems); i += 2 {
		if strings.EqualFold(v.Elems[i].Text(), name) {
			return v.Elems[i+1].Text(), nil
		}
	}
	return "", fmt.Errorf("CONFIG GET %s: the server does not have this parameter", name)
}
