// Package replica attaches Ferry to a source Redis as a replica: the handshake, PSYNC,
// the RDB transfer (sized or diskless), the command stream with exact offsets, and the
// REPLCONF ACKs that tell the source what the destination has applied.
//
// One goroutine reads the socket as fast as the network allows into a spool (memory,
// then files under DataDir), so a slow destination never fills the source's replica
// output buffer; another sends the ACKs. The caller reads the RDB and then the commands
// from the spool at its own pace:
//
//	r, err := replica.Open(ctx, opts, from)
//	if r.FullSync() {
//		decode(r.RDB())              // read to io.EOF, apply, then:
//		r.SetApplied(r.Start().Offset)
//	}
//	for {
//		cmd, err := r.Next(ctx)      // apply cmd, then, on a transaction boundary:
//		r.SetApplied(cmd.Offset)
//	}
package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

// Defaults for Options.
const (
	DefaultSpoolMemory   = 64 << 20
	DefaultAckInterval   = time.Second
	DefaultSourceTimeout = 60 * time.Second
	// DefaultClientName is set with CLIENT SETNAME on the replication connection, so the
	// source's CLIENT LIST shows what the replica is.
	DefaultClientName = "ferry-replica"
)

// After a full sync, up to startAcks ACKs are sent startAckInterval apart until the
// stream starts (see ackLoop).
const (
	startAcks        = 20
	startAckInterval = 50 * time.Millisecond
	// ackFollowInterval bounds how long an advance of the applied offset waits for its ACK.
	ackFollowInterval = 100 * time.Millisecond
)

// readChunk is how much one socket read asks for; it is above the resp.Reader's buffer,
// so the reads bypass that buffer.
const readChunk = 256 << 10

// Options configures a replica.
type Options struct {
	// Source says how to reach and log in to the source. Its DB is ignored (a replica
	// receives every DB); an empty ClientName becomes DefaultClientName.
	Source redis.Options
	// ListeningPort is announced with REPLCONF listening-port, shown in the source's
	// INFO replication. 0 announces the local port of the connection.
	ListeningPort int
	// DataDir is where the spool spills what does not fit in memory; required. Each
	// replica makes its own directory in it and removes it on Close.
	DataDir string
	// SpoolMemory is how many received bytes are held in memory before spilling to disk.
	// Default DefaultSpoolMemory (64 MiB).
	SpoolMemory int64
	// AckInterval is the period of the unprompted REPLCONF ACK. Default 1 s.
	AckInterval time.Duration
	// SourceTimeout: no byte from the source for this long means the link is dead (a
	// source sends a PING every 10 s, and newlines every second while it forks).
	// Default 60 s, Redis's repl-timeout.
	SourceTimeout time.Duration
	// Logger receives the replica's logs; nil discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.DataDir == "" {
		return o, errors.New("replica: no data directory for the spool (set DataDir)")
	}
	if o.SpoolMemory <= 0 {
		o.SpoolMemory = DefaultSpoolMemory
	}
	if o.AckInterval <= 0 {
		o.AckInterval = DefaultAckInterval
	}
	if o.SourceTimeout <= 0 {
		o.SourceTimeout = DefaultSourceTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Source.DB = 0
	if o.Source.ClientName == "" {
		o.Source.ClientName = DefaultClientName
	}
	return o, nil
}

// Command is one command of the replication stream.
type Command struct {
	Name   string   // lower-case command name ("set", "multi", "function", ...)
	Args   [][]byte // Args[0] is the name as received; valid until the next Next call
	DB     int      // the DB selected when the command runs (for SELECT, the new one)
	Offset int64    // the offset of the command's last byte: once applied, the position is Offset
	Class  Class
}

// link is the byte transport after the handshake: a network connection in production,
// a crafted stream in tests.
type link struct {
	addr string
	src  io.Reader // everything the source sends after PSYNC
	w    io.Writer // ACKs
	nc   net.Conn  // for deadlines; nil when src and w are not a network connection
	// interrupt unblocks the reader and the writer from any goroutine (closing the
	// socket); closer releases the rest once they have stopped. Either may be nil.
	interrupt func()
	closer    io.Closer
}

// Replica is one replication link to a source. RDB and Next are for one goroutine;
// SetApplied, Received, Stats and Close may be called from any.
type Replica struct {
	opts  Options
	log   *slog.Logger
	link  link
	table *commandTable
	from  Position

	fr    *framer
	sp    *spool
	full  bool
	start Position

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Socket side, written by the reading goroutine.
	streamBytes atomic.Int64 // stream bytes received
	rdbBytes    atomic.Int64 // RDB bytes received
	rdbSize     atomic.Int64 // see RDBSize
	rdbStart    time.Time
	rdbDone     chan struct{} // closed when the RDB is completely received
	firstErr    error         // an error that came with the last bytes of the PSYNC answer

	// ACK side.
	applied    atomic.Int64
	getackWant atomic.Int64 // a GETACK waits for an ACK of at least this offset; -1 none
	ackNow     chan struct{}
	writeMu    sync.Mutex
	ackErr     atomic.Pointer[error]

	// Parser side, owned by the goroutine calling RDB and Next.
	rdbEOF bool
	rd     *resp.Reader
	stream streamSource
	db     int
	err    error // sticky error of Next

	closeOnce sync.Once
	closeErr  error
}

// Open connects to the source, performs the replica handshake and PSYNC, and returns
// once the source has answered: +FULLRESYNC (FullSync, then read RDB) or +CONTINUE (read
// Next). A zero from asks for a full sync ("PSYNC ? -1"); otherwise PSYNC asks for the
// byte after from.Offset. ctx bounds the handshake only; the link lives until Close.
//
// A source that cannot serve a replica yet gives a *NotReadyError (errors.Is
// ErrNotReady): retry later. Other errors say what is wrong and what to change.
func Open(ctx context.Context, opts Options, from Position) (*Replica, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	log := opts.Logger.With("addr", opts.Source.Addr)
	conn, err := redis.Dial(ctx, opts.Source)
	if err != nil {
		return nil, fmt.Errorf("replicate from source: %w", err)
	}
	table, err := handshake(ctx, conn, opts, log)
	if err != nil {
		conn.Close()
		return nil, err
	}
	replID, offset := "?", "-1"
	if !from.IsZero() {
		replID, offset = from.ReplID, strconv.FormatInt(from.Offset+1, 10)
	}
	nc := conn.NetConn()
	_ = nc.SetWriteDeadline(writeDeadline(ctx, opts.SourceTimeout))
	if _, err := nc.Write(resp.AppendCommandStrings(nil, "PSYNC", replID, offset)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send PSYNC to source %s: %w", opts.Source.Addr, err)
	}
	r := newReplica(opts, from, table, link{
		addr: opts.Source.Addr,
		src:  conn.Reader(),
		w:    nc,
		nc:   nc,
		// net.Conn.Close may race with reads and writes; redis.Conn.Close may not.
		interrupt: func() { nc.Close() },
		closer:    conn,
	})
	if err := r.begin(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func writeDeadline(ctx context.Context, timeout time.Duration) time.Time {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	return d
}

// handshake announces Ferry as a replica and learns the source's write commands. AUTH
// and the first PING were done by redis.Dial.
func handshake(ctx context.Context, conn *redis.Conn, opts Options, log *slog.Logger) (*commandTable, error) {
	addr := opts.Source.Addr
	table := newCommandTable()
	// COMMAND tells which commands write, module commands included. Without it (an old
	// source, or a user without +command) the static table is the whole truth.
	v, err := conn.Do(ctx, "COMMAND")
	var re *resp.Error
	switch {
	case err == nil:
		n := table.learn(v)
		log.Debug("learnt the source's commands", "commands", n, "beyond_builtin", table.fromSource)
	case errors.As(err, &re):
		log.Info("source does not answer COMMAND; using the built-in table of replicated commands", "reply", re.Msg)
	default:
		return nil, fmt.Errorf("replica handshake with source %s: %w", addr, err)
	}

	port := opts.ListeningPort
	if port == 0 {
		if a, ok := conn.NetConn().LocalAddr().(*net.TCPAddr); ok {
			port = a.Port
		}
	}
	for _, args := range [][]any{
		{"REPLCONF", "listening-port", port},
		// eof: Ferry reads diskless RDBs ($EOF:<mark>); psync2: it understands
		// +CONTINUE <new replid>.
		{"REPLCONF", "capa", "eof", "capa", "psync2"},
	} {
		_, err := conn.Do(ctx, args...)
		switch {
		case err == nil:
		case errors.As(err, &re) && (re.IsNoPerm() || re.IsNoAuth()):
			return nil, permissionError(opts, "REPLCONF", re)
		case errors.As(err, &re):
			// Like Redis's own replica: an old source that does not know an option
			// still replicates.
			log.Info("source refused a REPLCONF option; continuing", "option", args[1], "reply", re.Msg)
		default:
			return nil, fmt.Errorf("replica handshake with source %s: %w", addr, err)
		}
	}
	return table, nil
}

func permissionError(opts Options, cmd string, e *resp.Error) error {
	user := opts.Source.Username
	if user == "" {
		user = "default"
	}
	return &hintError{
		msg: fmt.Sprintf("source %s: the user %q may not run %s (%s): a replica needs PSYNC, REPLCONF and PING; grant them with ACL SETUSER %s +psync +replconf +ping",
			opts.Source.Addr, user, cmd, e.Msg, user),
		err: e,
	}
}

func newReplica(opts Options, from Position, table *commandTable, l link) *Replica {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Replica{
		opts:    opts,
		log:     opts.Logger.With("addr", l.addr),
		link:    l,
		table:   table,
		from:    from,
		fr:      newFramer(true),
		sp:      newSpool(opts.DataDir, opts.SpoolMemory),
		ctx:     ctx,
		cancel:  cancel,
		rdbDone: make(chan struct{}),
		ackNow:  make(chan struct{}, 1),
	}
	r.getackWant.Store(-1)
	r.rdbSize.Store(-1)
	r.stream.sp = r.sp
	return r
}

// begin reads the answer to PSYNC and starts the reading and ACK goroutines.
func (r *Replica) begin(ctx context.Context) error {
	r.rdbStart = time.Now() // the RDB may already end within the answer's read
	if err := r.readAnswer(ctx); err != nil {
		return err
	}
	a := r.fr.answer
	r.full = a.full
	if a.full {
		r.start = Position{ReplID: a.replID, Offset: a.offset, DB: 0}
		// Nothing is applied yet: until the caller says the snapshot is, the ACKs carry 0.
		r.applied.Store(0)
		if !r.from.IsZero() {
			// Every resume path is logged: the source's backlog did not cover the
			// position (or it never had this replication ID).
			r.log.Warn("source refused to continue from the position: full sync", "position", r.from.String(), "replid", a.replID, "offset", a.offset)
		} else {
			r.log.Info("full sync from source", "replid", a.replID, "offset", a.offset)
		}
	} else {
		r.start = r.from
		if a.replID != "" && a.replID != r.from.ReplID {
			r.log.Info("source continues under a new replication ID", "old_replid", r.from.ReplID, "replid", a.replID)
			r.start.ReplID = a.replID
		}
		r.applied.Store(r.from.Offset)
		// No RDB: the stream starts at the spool's first byte (some may be in it already).
		r.sp.setBoundaryAt(0)
		r.rdbEOF = true
		close(r.rdbDone)
		r.log.Info("partial sync from source", "replid", r.start.ReplID, "offset", r.start.Offset)
	}
	r.db = r.start.DB
	r.wg.Add(2)
	go r.readLoop()
	go r.ackLoop()
	return nil
}

// readAnswer feeds the framer until the source has answered PSYNC. What follows the
// answer in the same read is fed too, and lands in the spool.
func (r *Replica) readAnswer(ctx context.Context) error {
	if nc := r.link.nc; nc != nil {
		done := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			defer close(done)
			_ = nc.SetReadDeadline(time.Unix(1, 0))
		})
		defer func() {
			if !stop() {
				<-done
			}
		}()
	}
	buf := make([]byte, readChunk)
	for !r.fr.answered {
		if nc := r.link.nc; nc != nil {
			_ = nc.SetReadDeadline(writeDeadline(ctx, r.opts.SourceTimeout))
		}
		n, err := r.link.src.Read(buf)
		if n > 0 {
			if ferr := r.fr.feed(buf[:n], r); ferr != nil {
				return r.answerError(ferr)
			}
		}
		if err != nil {
			if r.fr.answered {
				r.firstErr = err // reported by readLoop, after the bytes before it
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for the answer to PSYNC from source %s: %w", r.link.addr, ctx.Err())
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("source %s did not answer PSYNC within %s (is it blocked? check its log): %w", r.link.addr, r.opts.SourceTimeout, err)
			}
			return fmt.Errorf("source %s closed the connection instead of answering PSYNC (check its log): %w", r.link.addr, err)
		}
	}
	return nil
}

func (r *Replica) answerError(err error) error {
	var re *replyError
	if !errors.As(err, &re) {
		return fmt.Errorf("source %s: %w", r.link.addr, err)
	}
	e := &resp.Error{Msg: re.Text}
	switch {
	case e.Prefix() == "NOMASTERLINK" || e.IsLoading() || e.IsBusy(),
		// Sources before Redis 4.0 said this with a plain ERR.
		strings.Contains(re.Text, "Can't SYNC while not connected with my master"):
		return &NotReadyError{Addr: r.link.addr, Reply: re.Text}
	case e.IsNoPerm() || e.IsNoAuth():
		return permissionError(r.opts, "PSYNC", e)
	case e.Prefix() == "ERR" && strings.Contains(re.Text, "unknown command"):
		return fmt.Errorf("source %s does not know PSYNC (%s): Ferry needs Redis 2.8 or later, or a service that allows replication", r.link.addr, re.Text)
	}
	return &hintError{msg: fmt.Sprintf("source %s refused PSYNC: %s", r.link.addr, re.Text), err: e}
}

// Frame sink: the reading goroutine hands the framer's output to the spool.

func (r *Replica) rdbData(p []byte) error {
	r.rdbSize.Store(r.fr.rdbSize) // -1 for diskless; the framer parsed the header by now
	r.rdbBytes.Add(int64(len(p)))
	return r.sp.write(p)
}

func (r *Replica) rdbEnd() error {
	// The size is known before the reader can see the end: whoever reads RDB() to io.EOF
	// then finds RDBSize final.
	size := r.rdbBytes.Load()
	r.rdbSize.Store(size)
	r.sp.setBoundaryAt(-1)
	close(r.rdbDone)
	r.log.Info("RDB received", "bytes", size, "diskless", r.fr.rdbSize < 0, "duration", time.Since(r.rdbStart).Round(time.Millisecond), "keepalives", r.fr.keepalives)
	return nil
}

func (r *Replica) streamData(p []byte) error {
	// Counted before the spool hands the bytes to Next: a command the consumer holds is
	// always within Received().
	r.streamBytes.Add(int64(len(p)))
	return r.sp.write(p)
}

// readLoop copies the socket into the spool until the link fails or Close.
func (r *Replica) readLoop() {
	defer r.wg.Done()
	err := r.firstErr
	if err == nil {
		err = r.copyLink()
	}
	if errors.Is(err, errSpoolClosed) || r.ctx.Err() != nil {
		r.sp.fail(ErrClosed)
		return
	}
	// Whatever stopped the copy (the link itself, a malformed stream, a full disk), the
	// link is of no further use: close it so the source frees its side at once.
	if r.link.interrupt != nil {
		r.link.interrupt()
	}
	if p := r.ackErr.Load(); p != nil {
		err = fmt.Errorf("%w (after an ACK could not be sent: %v)", err, *p)
	}
	var re *replyError
	if errors.As(err, &re) {
		err = fmt.Errorf("source %s aborted the full sync: %s (check the source log: fork or disk problems?)", r.link.addr, re.Text)
		r.sp.fail(err)
		return
	}
	r.sp.fail(r.linkError(err))
}

func (r *Replica) copyLink() error {
	buf := make([]byte, readChunk)
	for {
		if nc := r.link.nc; nc != nil {
			_ = nc.SetReadDeadline(time.Now().Add(r.opts.SourceTimeout))
		}
		n, err := r.link.src.Read(buf)
		if n > 0 {
			if ferr := r.fr.feed(buf[:n], r); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			return err
		}
	}
}

func (r *Replica) linkError(err error) error {
	var pe *replyError
	if errors.As(err, &pe) {
		return err
	}
	le := &LinkError{
		Addr:    r.link.addr,
		Offset:  r.Received(),
		Timeout: r.opts.SourceTimeout,
		Err:     err,
	}
	select {
	case <-r.rdbDone:
	default:
		le.InRDB = true
		le.RDBReceived = r.rdbBytes.Load()
	}
	return le
}

// ackLoop sends REPLCONF ACK <applied>: once as soon as the RDB is received, then every
// AckInterval, and when a REPLCONF GETACK waits for the applied offset to reach it.
//
// The first ACK matters: after a diskless transfer the source holds the command stream
// back until its replica's first ACK (repl_start_cmd_stream_on_ack in replication.c), so
// it goes out when the RDB is received, not when it is applied, or the stream would pile
// up in the source's output buffer. It carries the applied offset — 0 until the caller
// calls SetApplied(Start().Offset) — and a source takes an ACK as "at least this much":
// it keeps the highest it has seen and counts the replica for WAIT only once that reaches
// the client's write.
func (r *Replica) ackLoop() {
	defer r.wg.Done()
	select {
	case <-r.rdbDone:
	case <-r.ctx.Done():
		return
	}
	// A diskless source starts the stream on an ACK only once it has reaped its RDB
	// child, which may be after the first ACK arrives; it then waits for the next one.
	// Redis's own replicas lose up to a second there. A few quick extra ACKs, until the
	// stream flows, make it milliseconds.
	quick := 0
	if r.full {
		quick = startAcks
	}
	period := r.opts.AckInterval
	if quick > 0 {
		period = min(period, startAckInterval)
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	var buf []byte
	for {
		var err error
		sent := r.applied.Load()
		lastSent := time.Now()
		if buf, err = r.sendAck(buf[:0]); err != nil {
			if r.ctx.Err() == nil {
				r.ackErr.Store(&err)
				// The link is broken both ways; closing it ends readLoop, which
				// reports the failure after the bytes already received.
				if r.link.interrupt != nil {
					r.link.interrupt()
				}
			}
			return
		}
		if quick > 0 {
			quick--
			if quick == 0 || r.streamBytes.Load() > 0 {
				quick = 0
				tick.Reset(min(r.opts.AckInterval, ackFollowInterval))
			}
		}
	wait:
		for {
			select {
			case <-tick.C:
				// Besides the unprompted ACK every AckInterval, an advance of the applied
				// offset is acked within ackFollowInterval, so the source's view of its
				// replica (INFO, WAIT) follows the destination closely.
				if quick > 0 || r.applied.Load() != sent || time.Since(lastSent) >= r.opts.AckInterval {
					break wait
				}
			case <-r.ackNow:
				break wait
			case <-r.ctx.Done():
				return
			}
		}
	}
}

func (r *Replica) sendAck(buf []byte) ([]byte, error) {
	applied := r.applied.Load()
	buf = resp.AppendArrayHeader(buf, 3)
	buf = resp.AppendBulkString(buf, "REPLCONF")
	buf = resp.AppendBulkString(buf, "ACK")
	buf = resp.AppendBulkString(buf, strconv.FormatInt(applied, 10))
	r.writeMu.Lock()
	if nc := r.link.nc; nc != nil {
		_ = nc.SetWriteDeadline(time.Now().Add(r.opts.SourceTimeout))
	}
	_, err := r.link.w.Write(buf)
	r.writeMu.Unlock()
	if err != nil {
		return buf, fmt.Errorf("send REPLCONF ACK %d to source %s: %w", applied, r.link.addr, err)
	}
	if want := r.getackWant.Load(); want >= 0 && applied >= want {
		r.getackWant.CompareAndSwap(want, -1)
	}
	return buf, nil
}

func (r *Replica) signalAck() {
	select {
	case r.ackNow <- struct{}{}:
	default:
	}
}

// FullSync reports whether the source answered +FULLRESYNC (an RDB comes first) rather
// than +CONTINUE.
func (r *Replica) FullSync() bool { return r.full }

// Start is where the stream read by Next begins. After +FULLRESYNC: the source's
// replication ID and the snapshot's offset, DB 0 (the source sends SELECT before its
// first command). After +CONTINUE: the position Open was given, under the source's new
// replication ID if it sent one.
func (r *Replica) Start() Position { return r.start }

// RDB returns the snapshot: exactly the RDB file's bytes, then io.EOF. After +CONTINUE
// it is empty. If the link fails before the end, the error is a *LinkError. Read it to
// io.EOF before calling Next.
func (r *Replica) RDB() io.Reader { return rdbReader{r} }

type rdbReader struct{ r *Replica }

func (rr rdbReader) Read(p []byte) (int, error) {
	r := rr.r
	if r.rdbEOF {
		return 0, io.EOF
	}
	n, err := r.sp.read(r.ctx, p, true)
	if err == io.EOF {
		r.rdbEOF = true
	}
	if errors.Is(err, context.Canceled) && r.ctx.Err() != nil {
		err = ErrClosed
	}
	return n, err
}

// RDBSize is the RDB's size: from its header for a sized transfer, once complete for a
// diskless one; -1 while unknown (diskless and still arriving, header not yet received,
// or no RDB after +CONTINUE). With RDBReceived, for progress.
func (r *Replica) RDBSize() int64 { return r.rdbSize.Load() }

// RDBReceived returns how many bytes of the RDB have been received.
func (r *Replica) RDBReceived() int64 { return r.rdbBytes.Load() }

// streamSource is what the stream parser reads: the spool, interrupted by the context of
// the Next call in progress.
type streamSource struct {
	sp  *spool
	ctx context.Context
}

func (s *streamSource) Read(p []byte) (int, error) { return s.sp.read(s.ctx, p, false) }

// Next returns the next command of the stream, waiting for it if needed. Control
// commands are returned too (Class says which), because they advance the offset. Inside
// MULTI … EXEC, Offset moves with each command, but only EXEC's is a position to resume
// from: a replica does not advance its offset inside a transaction.
//
// A canceled ctx returns its error and Next may be called again. Any other error is
// final: a *LinkError (resume from the last applied position), an
// *UnknownCommandError, or a malformed stream.
func (r *Replica) Next(ctx context.Context) (*Command, error) {
	if r.err != nil {
		return nil, r.err
	}
	if r.rd == nil {
		// An RDB decoder stops after the checksum without asking for io.EOF: having
		// consumed every RDB byte is enough.
		if !r.rdbEOF && !r.sp.atBoundary() {
			return nil, errors.New("replica: Next called before the RDB was read to its end (read RDB() to io.EOF, or io.Copy it to io.Discard)")
		}
		r.rdbEOF = true
		r.stream.ctx = ctx
		r.rd = resp.NewReader(&r.stream, resp.ReaderOptions{})
	}
	r.stream.ctx = ctx
	for {
		before := r.rd.Offset()
		b, err := r.rd.PeekByte()
		if err != nil {
			return nil, r.streamError(ctx, err)
		}
		if b == '\n' {
			// Not sent by Redis in the stream, but harmless: counted, as Redis counts
			// every byte it reads from its master.
			if _, err := r.rd.SkipNewlines(); err != nil {
				return nil, r.streamError(ctx, err)
			}
			continue
		}
		args, _, err := r.rd.ReadCommand()
		if err != nil {
			return nil, r.streamError(ctx, err)
		}
		if len(args) == 0 {
			continue // "*0\r\n": Redis ignores it too
		}
		offset := r.start.Offset + r.rd.Offset()
		name, class, ok := r.table.lookup(args[0])
		if !ok {
			r.err = &UnknownCommandError{Name: string(args[0]), Offset: offset}
			return nil, r.err
		}
		switch name {
		case "select":
			db, err := parseDB(args)
			if err != nil {
				r.err = fmt.Errorf("replication stream at offset %d: %w", offset, err)
				return nil, r.err
			}
			r.db = db
		case "replconf":
			if len(args) >= 2 && bytes.EqualFold(args[1], []byte("getack")) {
				// Redis answers with the offset before the GETACK itself.
				r.requestAck(r.start.Offset + before)
			}
		}
		return &Command{Name: name, Args: args, DB: r.db, Offset: offset, Class: class}, nil
	}
}

func parseDB(args [][]byte) (int, error) {
	if len(args) != 2 {
		return 0, fmt.Errorf("SELECT with %d arguments", len(args)-1)
	}
	db, err := strconv.Atoi(string(args[1]))
	if err != nil || db < 0 {
		return 0, fmt.Errorf("SELECT %q: not a DB number", args[1])
	}
	return db, nil
}

func (r *Replica) streamError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// The Reader is intact when a read fails before a command's first byte was
		// consumed; if not, its sticky error comes back on the next call.
		return ctx.Err()
	}
	var le *LinkError
	switch {
	case errors.As(err, &le):
		r.err = le
	case errors.Is(err, errSpoolClosed):
		r.err = ErrClosed
	default:
		r.err = fmt.Errorf("parse the replication stream from source %s after offset %d: %w", r.link.addr, r.start.Offset+r.rd.Offset(), err)
	}
	return r.err
}

func (r *Replica) requestAck(want int64) {
	r.getackWant.Store(want)
	r.signalAck()
}

// SetApplied records that the destination has applied the stream up to offset. It is
// the only value sent in REPLCONF ACK: the source's WAIT counts Ferry as a replica, so
// Ferry never acks what it has merely received.
//
// Call it with Start().Offset once the whole RDB is applied (until then a full sync
// acks 0, which a source reads as "nothing yet" and which still starts a diskless
// source's stream), then with a Command's Offset once it and everything before it are
// applied — on transaction boundaries: after EXEC, never inside MULTI, as a Redis replica
// does. Control commands (PING, REPLCONF, SELECT) need nothing applied, so their Offset
// may be set as soon as what precedes them is. After +CONTINUE the starting value is
// the position Open was given.
//
// Lower values than before are ignored; values beyond Received are capped to it. Safe
// for concurrent use.
func (r *Replica) SetApplied(offset int64) {
	offset = min(offset, r.Received())
	for {
		cur := r.applied.Load()
		if offset <= cur || r.applied.CompareAndSwap(cur, offset) {
			break
		}
	}
	if r.getackWant.Load() >= 0 {
		r.signalAck()
	}
}

// Pending reports whether bytes of the stream are received and not yet parsed, so that
// Next returns without waiting for the network (unless they end inside a command). For
// the goroutine calling Next: a consumer batching commands closes its batch when the
// stream runs dry instead of waiting for more.
func (r *Replica) Pending() bool {
	if r.rd != nil && r.rd.Buffered() > 0 {
		return true
	}
	return r.sp.unread() > 0
}

// Applied returns the offset last given to SetApplied (or the starting one).
func (r *Replica) Applied() int64 { return r.applied.Load() }

// Received returns the offset of the last stream byte received from the source (for lag
// in bytes). During a full sync's RDB transfer it is Start().Offset.
func (r *Replica) Received() int64 { return r.start.Offset + r.streamBytes.Load() }

// Stats describes the spool between the socket and the parser.
func (r *Replica) Stats() SpoolStats { return r.sp.stats() }

// Close ends the link, stops the goroutines and deletes the spool. Reads in progress
// return ErrClosed. It is safe to call more than once.
func (r *Replica) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		if r.link.interrupt != nil {
			r.link.interrupt()
		}
		r.wg.Wait()
		if r.link.closer != nil {
			r.link.closer.Close()
		}
		r.closeErr = r.sp.close()
	})
	return r.closeErr
}
