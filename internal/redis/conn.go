// Package redis is a small Redis client on package resp: URL parsing, TLS, login,
// request/reply with Do, and pipelining with Send/Flush/Receive. Ferry uses it for
// everything but its hot pipelined paths, which use resp directly, and the replica
// takes over a Conn (NetConn, Reader) after the handshake.
package redis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/internal/resp"
)

// autoFlush is how many bytes Send buffers before writing them out, bounding the memory a
// long pipeline holds.
const autoFlush = 64 << 10

// maxRetainedWrite is the largest write buffer kept between commands.
const maxRetainedWrite = 1 << 20

// Conn is one connection to a Redis server. It is not safe for concurrent use. After any
// I/O or protocol error the connection is closed and every later call returns that error:
// where a reply stopped in the stream is unknown, so it cannot be reused.
type Conn struct {
	addr      string
	nc        net.Conn
	rd        *resp.Reader
	wbuf      []byte
	pending   int // commands sent (or buffered) whose replies were not received
	ioTimeout time.Duration
	err       error // set when the connection is unusable
}

// hinted is an error with a message written for the operator; it unwraps to the cause
// so callers can still test it with errors.Is / errors.As.
type hinted struct {
	msg string
	err error
}

func (e *hinted) Error() string { return e.msg }
func (e *hinted) Unwrap() error { return e.err }

// Dial connects to opts.Addr (with TLS when opts.TLS is set) and logs in: AUTH when a
// password or user is set, SELECT when DB is not 0, CLIENT SETNAME when ClientName is
// set, then PING, all in one round trip. The whole of it is bounded by ctx and
// opts.DialTimeout. Errors are one line naming the address, the cause and what to check.
func Dial(ctx context.Context, opts Options) (*Conn, error) {
	opts = opts.withDefaults()
	if opts.Addr == "" {
		return nil, errors.New("connect: no address (give host:port or redis://host:port)")
	}
	ctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()

	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", opts.Addr)
	if err != nil {
		return nil, dialError(ctx, opts, err)
	}
	if opts.TLS != nil {
		cfg := opts.TLS.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(opts.Addr)
			cfg.ServerName = host
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, tlsError(ctx, opts, err)
		}
		nc = tc
	}
	c := &Conn{
		addr:      opts.Addr,
		nc:        nc,
		rd:        resp.NewReader(nc, resp.ReaderOptions{}),
		ioTimeout: opts.IOTimeout,
	}
	if err := c.login(ctx, opts); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func dialError(ctx context.Context, opts Options, err error) error {
	var dnsErr *net.DNSError
	hint := ""
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = "connection refused (is the server running and reachable?)"
	case ctx.Err() == context.DeadlineExceeded || errors.Is(err, context.DeadlineExceeded):
		hint = fmt.Sprintf("no answer within %s (check the address, the port and any firewall)", opts.DialTimeout)
	case errors.Is(err, context.Canceled):
		hint = "canceled"
	case errors.As(err, &dnsErr):
		hint = fmt.Sprintf("cannot resolve host %q: %s (check the host name)", dnsErr.Name, dnsErr.Err)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		hint = "host unreachable (check the address and the network route)"
	default:
		hint = err.Error()
	}
	return &hinted{msg: fmt.Sprintf("connect %s: %s", opts.Addr, hint), err: err}
}

func tlsError(ctx context.Context, opts Options, err error) error {
	var (
		recErr  tls.RecordHeaderError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		inval   x509.CertificateInvalidError
	)
	hint := err.Error()
	switch {
	case errors.As(err, &recErr):
		hint = "the server did not answer with TLS (is TLS enabled on this port? use redis:// for a plain connection)"
	case errors.As(err, &unknown):
		hint = err.Error() + " (the server's certificate is not signed by a trusted CA; configure its CA)"
	case errors.As(err, &host):
		hint = err.Error() + " (the certificate does not name this host; connect by a name it lists)"
	case errors.As(err, &inval):
		hint = err.Error() + " (check the server's certificate)"
	case ctx.Err() != nil:
		hint = fmt.Sprintf("%v (is TLS enabled on this port?)", ctx.Err())
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		hint = "connection closed during the handshake (is TLS enabled on this port? does the server require a client certificate?)"
	}
	return &hinted{msg: fmt.Sprintf("tls handshake with %s: %s", opts.Addr, hint), err: err}
}

// login sends the handshake commands in one pipeline and checks their replies in order.
func (c *Conn) login(ctx context.Context, opts Options) error {
	type step struct {
		name string
		args []any
	}
	var steps []step
	if opts.Password != "" || opts.Username != "" {
		args := []any{"AUTH", opts.Password}
		if opts.Username != "" {
			args = []any{"AUTH", opts.Username, opts.Password}
		}
		steps = append(steps, step{"AUTH", args})
	}
	if opts.DB != 0 {
		steps = append(steps, step{"SELECT", []any{"SELECT", opts.DB}})
	}
	if opts.ClientName != "" {
		steps = append(steps, step{"SETNAME", []any{"CLIENT", "SETNAME", opts.ClientName}})
	}
	steps = append(steps, step{"PING", []any{"PING"}})

	stop := c.arm(ctx, 0)
	defer stop()
	for _, s := range steps {
		if err := c.Send(s.args...); err != nil {
			return err
		}
	}
	if err := c.flush(); err != nil {
		return c.broken(ctx, "login", err, "if the server uses TLS, use rediss://")
	}
	var first error
	for _, s := range steps {
		v, err := c.receive()
		if err != nil {
			if first != nil {
				return first
			}
			return c.broken(ctx, "login", err, "if the server uses TLS, use rediss://")
		}
		e, _ := v.Err().(*resp.Error)
		if e == nil || first != nil {
			continue
		}
		switch s.name {
		case "AUTH":
			first = authError(opts, e)
		case "SELECT":
			first = selectError(opts, e)
		case "SETNAME":
			// Cosmetic: an old server without CLIENT SETNAME, or a user not allowed
			// to run it, must not stop the connection.
			if e.IsNoAuth() {
				first = noAuthError(opts, e)
			}
		case "PING":
			// Only NOAUTH matters here: a loading or busy server still accepts the
			// connection, and the caller's next command will say so.
			if e.IsNoAuth() {
				first = noAuthError(opts, e)
			}
		}
	}
	return first
}

func authError(opts Options, e *resp.Error) error {
	who := fmt.Sprintf("auth to %s", opts.Addr)
	if opts.Username != "" {
		who += fmt.Sprintf(" as user %q", opts.Username)
	}
	hint := "check the user name and password"
	switch {
	case e.IsWrongPass() && opts.Username == "":
		hint = "check the password"
	case strings.Contains(e.Msg, "without any password configured"):
		hint = "the server has no password set; remove it from the URL"
	case strings.Contains(e.Msg, "wrong number of arguments"):
		hint = "the server predates ACL users (Redis < 6); leave the user name out of the URL"
	case strings.Contains(e.Msg, "invalid password"):
		hint = "check the password"
	}
	return &hinted{msg: fmt.Sprintf("%s: %s (%s)", who, e.Msg, hint), err: e}
}

func noAuthError(opts Options, e *resp.Error) error {
	return &hinted{
		msg: fmt.Sprintf("connect %s: %s (server requires a password; add it to the URL: redis://[user]:password@%s)", opts.Addr, e.Msg, opts.Addr),
		err: e,
	}
}

func selectError(opts Options, e *resp.Error) error {
	hint := "check the database number in the URL"
	switch {
	case e.IsNoAuth():
		return noAuthError(opts, e)
	case strings.Contains(e.Msg, "out of range"):
		hint = "the server has fewer databases; check the /db part of the URL"
	case strings.Contains(e.Msg, "cluster mode"):
		hint = "a cluster has only database 0; drop /db from the URL"
	}
	return &hinted{msg: fmt.Sprintf("select db %d on %s: %s (%s)", opts.DB, opts.Addr, e.Msg, hint), err: e}
}

// Addr returns the server address the connection was dialed to.
func (c *Conn) Addr() string { return c.addr }

// NetConn returns the underlying connection, for a caller taking over the protocol (the
// replica after its handshake). No deadline is left set on it between calls. Bytes the
// Reader has buffered are not in it any more: keep reading through Reader.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Reader returns the connection's RESP reader, which may hold buffered bytes.
func (c *Conn) Reader() *resp.Reader { return c.rd }

var errClosed = errors.New("redis: connection closed")

// Close closes the connection. It is safe to call more than once.
func (c *Conn) Close() error {
	if c.err == errClosed {
		return nil
	}
	wasBroken := c.err != nil
	c.err = errClosed
	err := c.nc.Close()
	if wasBroken {
		return nil // already closed when it broke
	}
	return err
}

// arm sets the connection deadline for one operation: the context's deadline, or timeout
// (IOTimeout when 0) from now when it has none; and makes cancellation of ctx interrupt
// blocked I/O. The returned stop must be called when the operation ends; it waits for a
// cancellation in flight so a stale deadline can never hit a later operation.
func (c *Conn) arm(ctx context.Context, timeout time.Duration) (stop func()) {
	if timeout == 0 {
		timeout = c.ioTimeout
	}
	var deadline time.Time
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	} else if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	_ = c.nc.SetDeadline(deadline)
	if ctx.Done() == nil {
		return c.clearDeadline
	}
	done := make(chan struct{})
	stopFn := context.AfterFunc(ctx, func() {
		defer close(done)
		_ = c.nc.SetDeadline(time.Unix(1, 0))
	})
	return func() {
		if !stopFn() {
			<-done
		}
		c.clearDeadline()
	}
}

// clearDeadline leaves no deadline behind an operation, so a caller that takes over
// NetConn or Reader (the replica) does not inherit a timeout it never set.
func (c *Conn) clearDeadline() { _ = c.nc.SetDeadline(time.Time{}) }

// broken records a failed I/O, closes the connection and returns the error to report.
func (c *Conn) broken(ctx context.Context, what string, err error, tip string) error {
	cause := err.Error()
	// The connection deadline and the context's fire at the same instant; whichever is
	// noticed first, a passed context deadline is the cause.
	if d, ok := ctx.Deadline(); ok && ctx.Err() == nil && !time.Now().Before(d) {
		<-ctx.Done()
	}
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
		cause = err.Error()
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		cause = "connection closed by the server"
		if tip == "" {
			tip = "check the server log: a timeout, maxclients or a kill may have dropped it"
		}
	case errors.Is(err, errClosed):
		return err
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			cause = "no reply in time (i/o timeout)"
			if tip == "" {
				tip = "the server may be overloaded or blocked; the timeout is IOTimeout or the context deadline"
			}
		}
	}
	msg := fmt.Sprintf("%s on %s: %s", what, c.addr, cause)
	if tip != "" {
		msg += " (" + tip + ")"
	}
	e := &hinted{msg: msg, err: err}
	if c.err == nil {
		c.err = e
		_ = c.nc.Close()
	}
	return e
}

// Do sends one command and reads its reply. args are strings, []byte, Secret, integers,
// floats or bools. An error reply is returned both as the Value and as a *resp.Error;
// the connection stays usable. ctx's deadline (or IOTimeout) bounds the round trip and
// cancelling ctx interrupts it, which breaks the connection.
func (c *Conn) Do(ctx context.Context, args ...any) (resp.Value, error) {
	if c.err != nil {
		return resp.Value{}, c.err
	}
	name := commandName(args)
	if c.pending > 0 {
		return resp.Value{}, fmt.Errorf("%s on %s: %d pipelined replies are still to be received; call Receive first", name, c.addr, c.pending)
	}
	if err := ctx.Err(); err != nil {
		return resp.Value{}, fmt.Errorf("%s on %s: %w", name, c.addr, err)
	}
	if err := c.Send(args...); err != nil {
		return resp.Value{}, err
	}
	stop := c.arm(ctx, 0)
	err := c.flush()
	var v resp.Value
	for err == nil {
		// RESP3 push messages (client tracking invalidations, say) may arrive before
		// the reply; they are not the reply, and Do has no one to give them to.
		if v, err = c.receive(); err == nil && v.Kind != resp.KindPush {
			break
		}
	}
	stop()
	if err != nil {
		return resp.Value{}, c.broken(ctx, name, err, "")
	}
	if e := v.Err(); e != nil {
		return v, e
	}
	return v, nil
}

// Send buffers one command for a pipeline; it writes only once 64 KiB are buffered.
// Flush writes the rest, and Receive reads the replies in order.
func (c *Conn) Send(args ...any) error {
	if c.err != nil {
		return c.err
	}
	if len(args) == 0 {
		return errors.New("redis: command without arguments")
	}
	buf := resp.AppendArrayHeader(c.wbuf, len(args))
	for i, a := range args {
		var err error
		if buf, err = appendArg(buf, a); err != nil {
			// c.wbuf still ends before the partial command, which is dropped.
			return fmt.Errorf("%s on %s: argument %d: %w", commandName(args), c.addr, i+1, err)
		}
	}
	c.wbuf = buf
	c.pending++
	if len(c.wbuf) >= autoFlush {
		return c.Flush()
	}
	return nil
}

// Flush writes the buffered commands, bounded by IOTimeout.
func (c *Conn) Flush() error {
	if c.err != nil {
		return c.err
	}
	if len(c.wbuf) == 0 {
		return nil
	}
	c.setDeadline()
	err := c.flush()
	c.clearDeadline()
	if err != nil {
		return c.broken(context.Background(), "write", err, "")
	}
	return nil
}

func (c *Conn) flush() error {
	_, err := c.nc.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	if cap(c.wbuf) > maxRetainedWrite {
		c.wbuf = nil // one huge command must not pin its buffer for the connection's life
	}
	return err
}

// Receive reads the next message: the next pipelined reply, or a RESP3 push (which is
// not counted as a reply), flushing buffered commands first. With no command pending it
// waits for whatever the server sends (pub/sub messages, say). Each read is bounded by
// IOTimeout. An error reply comes back as both the Value and a *resp.Error.
func (c *Conn) Receive() (resp.Value, error) {
	if c.err != nil {
		return resp.Value{}, c.err
	}
	if err := c.Flush(); err != nil {
		return resp.Value{}, err
	}
	c.setDeadline()
	v, err := c.receive()
	c.clearDeadline()
	if err != nil {
		return resp.Value{}, c.broken(context.Background(), "receive", err, "")
	}
	if e := v.Err(); e != nil {
		return v, e
	}
	return v, nil
}

func (c *Conn) receive() (resp.Value, error) {
	v, err := c.rd.ReadValue()
	if err == nil && v.Kind != resp.KindPush && c.pending > 0 {
		c.pending--
	}
	return v, err
}

func (c *Conn) setDeadline() {
	var d time.Time
	if c.ioTimeout > 0 {
		d = time.Now().Add(c.ioTimeout)
	}
	_ = c.nc.SetDeadline(d)
}

// Info runs INFO with the given sections and returns its "key:value" fields.
func (c *Conn) Info(ctx context.Context, sections ...string) (map[string]string, error) {
	args := make([]any, 0, 1+len(sections))
	args = append(args, "INFO")
	for _, s := range sections {
		args = append(args, s)
	}
	v, err := c.Do(ctx, args...)
	if err != nil {
		return nil, err
	}
	return ParseInfo(v.Text()), nil
}

// ParseInfo parses INFO output: "key:value" lines; blank lines and "# Section" headers are
// skipped.
func ParseInfo(s string) map[string]string {
	m := make(map[string]string)
	for line := range strings.Lines(s) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// commandName is the first argument, for messages; the others may be secret (AUTH) or
// huge, so they are never shown.
func commandName(args []any) string {
	if len(args) == 0 {
		return "command"
	}
	var s string
	switch a := args[0].(type) {
	case string:
		s = a
	case []byte:
		s = string(a)
	default:
		return "command"
	}
	if len(s) > 32 {
		s = s[:32]
	}
	return strings.ToUpper(s)
}

// appendArg encodes one argument as a bulk string.
func appendArg(dst []byte, a any) ([]byte, error) {
	var tmp [32]byte
	switch v := a.(type) {
	case string:
		return resp.AppendBulkString(dst, v), nil
	case []byte:
		return resp.AppendBulk(dst, v), nil
	case Secret:
		return resp.AppendBulkString(dst, v.Reveal()), nil
	case int:
		return resp.AppendInt(dst, int64(v)), nil
	case int64:
		return resp.AppendInt(dst, v), nil
	case int32:
		return resp.AppendInt(dst, int64(v)), nil
	case int16:
		return resp.AppendInt(dst, int64(v)), nil
	case int8:
		return resp.AppendInt(dst, int64(v)), nil
	case uint:
		return resp.AppendBulk(dst, strconv.AppendUint(tmp[:0], uint64(v), 10)), nil
	case uint64:
		return resp.AppendBulk(dst, strconv.AppendUint(tmp[:0], v, 10)), nil
	case uint32:
		return resp.AppendInt(dst, int64(v)), nil
	case uint16:
		return resp.AppendInt(dst, int64(v)), nil
	case float64:
		return appendFloat(dst, v, 64)
	case float32:
		return appendFloat(dst, float64(v), 32)
	case bool:
		if v {
			return resp.AppendBulkString(dst, "1"), nil
		}
		return resp.AppendBulkString(dst, "0"), nil
	case nil:
		return dst, errors.New("nil is not a valid argument")
	}
	return dst, fmt.Errorf("unsupported type %T (use string, []byte, an integer, a float or bool)", a)
}

// appendFloat writes a float the way Redis parses it (strtod): the shortest decimal that
// round-trips, without an exponent, and "inf"/"-inf" for infinities. NaN is refused, as
// Redis refuses it.
func appendFloat(dst []byte, f float64, bits int) ([]byte, error) {
	switch {
	case math.IsNaN(f):
		return dst, errors.New("NaN is not a valid argument")
	case math.IsInf(f, 1):
		return resp.AppendBulkString(dst, "inf"), nil
	case math.IsInf(f, -1):
		return resp.AppendBulkString(dst, "-inf"), nil
	}
	var tmp [32]byte
	return resp.AppendBulk(dst, strconv.AppendFloat(tmp[:0], f, 'f', -1, bits)), nil
}
