// Package writer is the destination side of a sync: it applies an ordered stream of
// commands to one Redis server over one pipelined connection and knows, at every moment,
// up to which source offset the destination has acknowledged them.
//
// # How it works
//
// Write encodes a command into large reusable chunks of memory and records it in a ring of
// in-flight records (source offset, database, where its bytes are). A sender goroutine
// writes everything queued with one writev whenever it wakes, so batches form by
// themselves while the socket is busy; there are no timers per command. A reader goroutine
// matches replies to the ring in order. A command's bytes stay in memory until its reply
// is in, so after a retryable failure (-LOADING, -BUSY, -TRYAGAIN, -MASTERDOWN, a lost
// connection) the writer reconnects, selects the database that was current at the first
// unanswered command and resends from there, in order, backing off from 50 ms to 2 s, until
// Options.RetryTimeout. The window (commands and bytes not yet answered) is bounded; Write
// blocks while it is full.
//
// Databases: Command.DB says where a command applies; the writer injects SELECT when it
// differs from the connection's current database and consumes that SELECT's reply itself.
//
// Transactions: MULTI, the queued commands and EXEC pass through as ordinary commands.
// They are retired (and Applied advances) only when EXEC's reply arrives, and they are
// resent as a unit starting at MULTI, so a transaction is never half-resent. Errors inside
// EXEC's array are classified like any other reply; -EXECABORT reports the error of the
// queued command that caused it. The same mechanism carries checkpoint batches
// (MULTI … SET ckpt … EXEC). A transaction larger than the window is let through whole
// rather than deadlocking: its size is bounded by what the source itself accepted.
//
// Reconciling after a reconnect: a reply lost with its connection leaves the writer unsure
// whether the destination executed the command. With Options.Reconcile the caller reads
// what the destination holds (its checkpoint, committed in the same transaction as the
// data) on the new connection before anything is resent, and the writer retires, without
// resending, every unit up to that offset. That is what makes checkpoint batches
// exactly-once across destination failures.
//
// Errors: every error reply is classified (see the Reason constants). Retryable ones are
// retried as above. The others stop the writer with an *ApplyError that names the command,
// its key (at most 100 bytes), database and source offset and says what to do; argument
// values never appear in errors or logs. Under Options.IgnoreErrors, errors about the data
// (WRONGTYPE, BUSYKEY, "not an integer"…) are skipped instead, counted per reason and logged
// once per reason. Nothing is dropped without being counted.
//
// # Known limits
//
// Without Options.Reconcile, resending after a lost connection or a retryable error can
// apply a command twice when the destination executed it but its reply was lost: harmless
// for SET, RESTORE … REPLACE, DEL, wrong for INCR, RPUSH, APPEND. Exactly-once needs
// checkpoints (each batch wrapped in MULTI … SET ckpt … EXEC) and Reconcile.
//
// Every command must be answered by exactly one reply, as everything a replication stream
// carries is; SUBSCRIBE, MONITOR or CLIENT REPLY OFF would desynchronise the matching.
//
// One Writer drives one connection to one server. A cluster router is expected to own one
// Writer per master and to handle -MOVED/-ASK itself; a standalone Writer treats them as
// fatal (the destination is a cluster node).
package writer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Options.
const (
	// DefaultMaxInFlight bounds the commands queued and not yet answered. Each costs a
	// record of under 64 bytes besides its encoding; 4096 keeps a LAN link busy.
	DefaultMaxInFlight = 4096
	// DefaultMaxInFlightBytes bounds the encoded bytes of those commands.
	DefaultMaxInFlightBytes = 32 << 20
	// DefaultRetryTimeout is how long retryable failures are retried before the writer
	// gives up: long enough to ride out a destination restart that loads a big dataset.
	DefaultRetryTimeout = 12 * time.Hour

	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second

	// maxKeyInError is how much of a key an error text shows.
	maxKeyInError = 100
	// maxChunk and minChunk bound the size of the encoding chunks; a chunk is an eighth of
	// the byte window so that a handful are live at a time.
	maxChunk = 1 << 20
	minChunk = 16 << 10
)

// Options configures a Writer. The zero value of every field but Target means its default.
type Options struct {
	// Target is the destination server. Its DB is the database selected at connect time;
	// commands carry their own database (Command.DB) and the writer selects it as needed.
	// Target.IOTimeout (default redis.DefaultIOTimeout, negative for none) bounds each
	// socket write, and how long replies may stop arriving while commands are waiting
	// for them (a connection silent for 2×IOTimeout with replies owed is considered lost).
	Target redis.Options
	// MaxInFlight bounds the commands written and not yet answered, injected SELECTs
	// included. Default DefaultMaxInFlight; at least 2.
	MaxInFlight int
	// MaxInFlightBytes bounds the encoded bytes of those commands. A single larger command
	// is let through alone. Default DefaultMaxInFlightBytes.
	MaxInFlightBytes int
	// RetryTimeout is how long retryable failures (-LOADING, -BUSY, -TRYAGAIN, -MASTERDOWN,
	// connection loss) are retried, with exponential backoff from 50 ms to 2 s, before the
	// writer fails. The clock restarts whenever a command is answered. Default
	// DefaultRetryTimeout.
	RetryTimeout time.Duration
	// IgnoreErrors selects the "ignore errors and continue" conflict mode: data errors
	// (WRONGTYPE, BUSYKEY, value errors) are counted, logged once per reason and skipped
	// instead of being fatal. Errors about the destination itself (OOM, NOPERM, READONLY,
	// unknown command…) stay fatal.
	IgnoreErrors bool
	// Redirect, when set, makes the writer one connection of a cluster router: a command
	// answered with -MOVED or -ASK (for a transaction: any of its commands, or EXEC) is
	// handed to Redirect and retired without being applied, instead of stopping the
	// writer, and -CLUSTERDOWN is retried like -TRYAGAIN. Redirect runs on the writer's
	// reader goroutine with the writer's lock held, once per command or transaction, in
	// command order: it must return quickly and must not call this Writer.
	Redirect func(Redirected)
	// Logger receives connection events, retries and skipped-error reasons; nothing per
	// command. Default slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the writer's metrics (labelled with the destination
	// address); they are unregistered by Close.
	Registerer prometheus.Registerer
	// Reconcile, when set, is called on every connection dialed after a failure, before
	// anything is resent, with the writer's Applied. It returns the highest source offset
	// the destination is known to hold (read from a checkpoint committed with the data), or
	// -1 when it knows nothing. Every unanswered unit whose offset is at most that — a
	// transaction up to its EXEC, or a command outside one — is then retired as applied
	// instead of being resent. It may use c freely (the writer selects its database
	// afterwards) but must not keep it. An error wrapping ErrStop stops the writer with it;
	// any other error counts as a failed connection attempt and is retried.
	Reconcile func(ctx context.Context, c *redis.Conn, applied int64) (int64, error)
}

// ErrStop, wrapped in an error returned by Options.Reconcile, stops the writer with that
// error instead of retrying: the destination is not in a state resending can fix (it lost
// writes it had acknowledged, say).
var ErrStop = errors.New("writer: stopped by Reconcile")

func (o Options) withDefaults() Options {
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	o.MaxInFlight = max(o.MaxInFlight, 2) // room for an injected SELECT and its command
	if o.MaxInFlightBytes <= 0 {
		o.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if o.RetryTimeout <= 0 {
		o.RetryTimeout = DefaultRetryTimeout
	}
	if o.Target.IOTimeout == 0 {
		o.Target.IOTimeout = redis.DefaultIOTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Command is one command for the destination.
type Command struct {
	DB     int      // database the command applies in; -1 = any (FLUSHALL, FUNCTION …, SCRIPT …)
	Args   [][]byte // copied by Write; the caller may reuse the slices after Write returns
	Offset int64    // source replication offset after this command; 0 for snapshot commands
	// Source is the stream offset after the command even where Offset is 0 (inside a
	// batch or a source transaction), for a destination that skips what it already holds
	// (a cluster's per-slot checkpoints). The writer itself does not use it.
	Source int64
}

// Stats are the writer's counters since Open.
type Stats struct {
	Commands      int64            // commands accepted by Write (injected SELECTs not included)
	Bytes         int64            // their encoded bytes
	Selects       int64            // SELECTs injected (resends included)
	Replies       int64            // commands answered without error
	Skipped       int64            // commands whose error was skipped under IgnoreErrors
	Errors        map[string]int64 // error replies and connection failures by reason (Reason constants)
	Retries       int64            // resends after a retryable failure
	Reconnects    int64            // connections dialed after the first
	Reconciled    int64            // unanswered commands found applied by Reconcile, not resent
	InFlight      int              // commands queued and not yet answered (SELECTs included)
	InFlightBytes int              // their encoded bytes
	Applied       int64            // as Applied()
}

type recKind uint8

const (
	recPlain  recKind = iota
	recSelect         // SELECT injected by the writer (or passed in by the caller)
	recMulti          // MULTI: opens a unit that is retired and resent as a whole
	recExec           // EXEC: closes it
)

// record is one command in the window. Its encoding is c.b[start:end].
type record struct {
	c       *chunk
	start   int
	end     int
	offset  int64
	db      int     // Command.DB; for a SELECT, the database it selects
	ctxDB   int     // database selected on the connection when the command runs
	kind    recKind //
	user    bool    // written by the caller (counts in Stats.Commands/Replies)
	skipped bool    // refused and skipped under IgnoreErrors
}

// chunk is a slab of encoded commands. Records are appended to the current chunk; a
// chunk is recycled once every record in it is answered and no write is reading it.
type chunk struct {
	b    []byte
	live int  // records in b not yet retired
	big  bool // allocated for one command larger than a chunk; not recycled
}

// counters are Stats without the derived fields; guarded by Writer.mu.
type counters struct {
	commands, bytes, selects, replies, skipped, retries, reconnects, reconciled int64
}

// Writer applies commands to one destination server. Its methods are safe for concurrent
// use, but commands are applied in the order Write accepted them, so a sync feeds one
// Writer from one goroutine.
type Writer struct {
	opts      Options
	log       *slog.Logger
	chunkSize int
	maxFree   int
	metrics   *collector

	mu sync.Mutex
	// The ring: records with sequence numbers head ≤ next ≤ sent ≤ tail.
	//   [head, next)  answered on this connection, waiting for their transaction's EXEC
	//   [next, sent)  written to the connection, reply not yet read
	//   [sent, tail)  queued, not yet written
	recs                   []record
	mask                   uint64
	head, next, sent, tail uint64
	bytes                  int // encoded bytes of [head, tail)

	// Producer side.
	encDB   int    // database selected after the last queued record
	txnOpen bool   // a MULTI is queued without its EXEC
	txnSeq  uint64 // that MULTI
	cur     *chunk
	free    []*chunk
	limbo   []*chunk // retired while a write was in progress; freed when it ends
	writing bool

	// Reader side (touched by the reader goroutine, under mu).
	inTxn     bool   // MULTI answered, EXEC not yet
	txnErrSeq uint64 // first queued command refused inside the transaction
	txnErr    *resp.Error
	logged    map[string]bool // reasons already logged under IgnoreErrors

	waitCh       chan struct{} // closed when records retire, if someone waits
	err          error         // why the writer stopped; set once
	stats        counters
	errCounts    map[string]int64
	failingSince time.Time // first retryable failure since the last answered command
	applied      atomic.Int64

	kick      chan struct{} // wakes the sender; buffered 1
	done      chan struct{} // closed when the writer stops (fatal error or Close)
	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	stopped   chan struct{} // closed when the run goroutine has returned

	// draining: the sender failed and the reader takes in the last replies before the
	// connection is closed. deadlineMu orders setting it against the reader's deadlines.
	deadlineMu sync.Mutex
	draining   bool

	// Scratch of the sender and reader goroutines, reused across connections.
	iov   net.Buffers
	wbufs net.Buffers
	rr    *replyReader
	batch []reply
}

// Open connects to the destination (ctx bounds this first dial) and starts the writer's
// goroutines; Close stops them.
func Open(ctx context.Context, opts Options) (*Writer, error) {
	opts = opts.withDefaults()
	w := &Writer{
		opts:      opts,
		log:       opts.Logger.With("addr", opts.Target.Addr),
		chunkSize: min(max(opts.MaxInFlightBytes/8, minChunk), maxChunk),
		encDB:     opts.Target.DB,
		errCounts: make(map[string]int64),
		logged:    make(map[string]bool),
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		closing:   make(chan struct{}),
		stopped:   make(chan struct{}),
		batch:     make([]reply, 256),
	}
	w.maxFree = opts.MaxInFlightBytes/w.chunkSize + 2
	size := uint64(1)
	for size < uint64(opts.MaxInFlight) {
		size <<= 1
	}
	w.recs = make([]record, size)
	w.mask = size - 1

	nc, err := w.dial(ctx, opts.Target.DB, false)
	if err != nil {
		return nil, fmt.Errorf("writer: connect to the destination: %w", err)
	}
	w.rr = newReplyReader(nc)
	if opts.Registerer != nil {
		w.metrics = newCollector(w)
		if err := opts.Registerer.Register(w.metrics); err != nil {
			_ = nc.Close()
			return nil, fmt.Errorf("writer: register metrics for %s: %w", opts.Target.Addr, err)
		}
	}
	w.log.Debug("writer connected", "db", opts.Target.DB)
	go w.run(nc)
	return w, nil
}

// dial connects and logs in with db selected, and hands back the raw connection: from here
// the writer speaks the protocol itself. With reconcile (a reconnect) it first runs
// Options.Reconcile on the connection and retires what the destination already holds;
// db is then the database of the first record left to resend.
func (w *Writer) dial(ctx context.Context, db int, reconcile bool) (net.Conn, error) {
	o := w.opts.Target
	o.DB = db
	c, err := redis.Dial(ctx, o)
	if err != nil {
		return nil, err
	}
	if reconcile && w.opts.Reconcile != nil {
		if err := w.reconcile(ctx, c); err != nil {
			_ = c.Close()
			return nil, err
		}
	}
	if n := c.Reader().Buffered(); n != 0 {
		_ = c.Close()
		return nil, fmt.Errorf("connect %s: %d unexpected bytes after the login replies", o.Addr, n)
	}
	nc := c.NetConn()
	// Dial leaves its login deadline on the connection; the writer sets its own.
	if err := nc.SetDeadline(time.Time{}); err != nil {
		_ = c.Close()
		return nil, err
	}
	return nc, nil
}

// reconcile asks Options.Reconcile what the destination holds, retires it, and selects the
// database the resend starts in.
func (w *Writer) reconcile(ctx context.Context, c *redis.Conn) error {
	upto, err := w.opts.Reconcile(ctx, c, w.applied.Load())
	if err != nil {
		return err
	}
	w.mu.Lock()
	n := w.retireUpTo(upto)
	db := w.encDB
	if w.head < w.tail {
		db = w.recs[w.head&w.mask].ctxDB
	}
	w.mu.Unlock()
	if n > 0 {
		w.log.Info("the destination already holds unanswered commands; not resending them",
			"commands", n, "offset", upto)
	}
	if _, err := c.Do(ctx, "SELECT", db); err != nil {
		return fmt.Errorf("select db %d after reconciling: %w", db, err)
	}
	return nil
}

// retireUpTo retires the leading units of the window whose offset is at most upto, and
// returns how many records that was. Offsets grow along the window, so the scan stops at
// the first larger one. Called with mu held, between connections.
func (w *Writer) retireUpTo(upto int64) uint64 {
	if upto <= 0 {
		return 0
	}
	cut := w.head
	inTxn := false
	for s := w.head; s < w.tail; s++ {
		r := &w.recs[s&w.mask]
		switch r.kind {
		case recMulti:
			inTxn = true
		case recExec:
			inTxn = false
		}
		if r.offset > upto {
			break
		}
		if r.offset > 0 && !inTxn {
			cut = s + 1
		}
	}
	n := cut - w.head
	if n > 0 {
		w.stats.reconciled += int64(n)
		w.retire(cut)
		w.wake()
	}
	return n
}

// Write queues cmd. It blocks while the window is full, until there is room, ctx ends or
// the writer stops; once the writer has failed it returns the failure.
func (w *Writer) Write(ctx context.Context, cmd Command) error {
	if len(cmd.Args) == 0 {
		return errors.New("writer: command without arguments")
	}
	kind := recPlain
	switch name := cmd.Args[0]; {
	case equalFold(name, "MULTI"):
		kind = recMulti
	case equalFold(name, "EXEC"):
		kind = recExec
	case equalFold(name, "SELECT"):
		// Accepted for completeness; a sync passes databases in Command.DB instead.
		db, ok := int64(0), len(cmd.Args) == 2
		if ok {
			db, ok = resp.ParseInt(cmd.Args[1])
		}
		if !ok || db < 0 || db > 1<<31-1 {
			return fmt.Errorf("writer: SELECT needs one database number (offset %d)", cmd.Offset)
		}
		kind, cmd.DB = recSelect, int(db)
	}
	size := encodedLen(cmd.Args)
	w.mu.Lock()
	var needSelect bool
	for {
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return err
		}
		// Decided afresh after every wait: another goroutine may have switched databases.
		needSelect = kind != recSelect && cmd.DB >= 0 && cmd.DB != w.encDB
		need, selSize := 1, 0
		if needSelect {
			need, selSize = 2, selectLen(cmd.DB)
		}
		if w.fits(need, size+selSize) {
			break
		}
		if err := w.wait(ctx); err != nil {
			w.mu.Unlock()
			return err
		}
	}
	if needSelect {
		w.pushSelect(cmd.DB)
	}
	r := w.push(size, kind, cmd.Offset)
	r.c.b = resp.AppendCommand(r.c.b, cmd.Args...)
	r.db, r.user = cmd.DB, true
	if kind == recSelect {
		w.encDB = cmd.DB
	}
	switch kind {
	case recMulti:
		w.txnOpen, w.txnSeq = true, w.tail-1
	case recExec:
		w.txnOpen = false
	}
	w.stats.commands++
	w.stats.bytes += int64(size)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return nil
}

// fits reports whether need records of size bytes fit in the window. Called with mu held.
func (w *Writer) fits(need, size int) bool {
	n := int(w.tail - w.head)
	if n == 0 {
		return true // anything fits an empty window, however large
	}
	if n+need <= w.opts.MaxInFlight && w.bytes+size <= w.opts.MaxInFlightBytes {
		return true
	}
	// Nothing before the open transaction is left to retire, and the transaction retires
	// only after its EXEC, which comes after this command: let it through.
	return w.txnOpen && w.head == w.txnSeq
}

// wait releases mu until records retire, ctx ends or the writer stops; it returns with
// mu held. The channel is made only when someone blocks, so a window that never fills
// costs nothing.
func (w *Writer) wait(ctx context.Context) error {
	ch := w.waitCh
	if ch == nil {
		ch = make(chan struct{})
		w.waitCh = ch
	}
	w.mu.Unlock()
	var err error
	select {
	case <-ch:
	case <-w.done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	w.mu.Lock()
	return err
}

// wake releases everyone blocked in wait. Called with mu held.
func (w *Writer) wake() {
	if w.waitCh != nil {
		close(w.waitCh)
		w.waitCh = nil
	}
}

// push appends a record for a command of size bytes and makes room for its encoding in
// the current chunk, which the caller appends to r.c.b. Called with mu held.
func (w *Writer) push(size int, kind recKind, offset int64) *record {
	if int(w.tail-w.head) == len(w.recs) {
		w.grow()
	}
	c := w.cur
	if c == nil || cap(c.b)-len(c.b) < size {
		w.setCurrent(nil)
		if size > w.chunkSize {
			c = &chunk{b: make([]byte, 0, size), big: true}
		} else if n := len(w.free); n > 0 {
			c, w.free[n-1] = w.free[n-1], nil
			w.free = w.free[:n-1]
		} else {
			c = &chunk{b: make([]byte, 0, w.chunkSize)}
		}
		w.setCurrent(c)
	}
	r := &w.recs[w.tail&w.mask]
	*r = record{c: c, start: len(c.b), end: len(c.b) + size, offset: offset, ctxDB: w.encDB, kind: kind}
	c.live++
	w.tail++
	w.bytes += size
	return r
}

// pushSelect queues an injected SELECT db.
func (w *Writer) pushSelect(db int) {
	var tmp [24]byte
	arg := appendUint(tmp[:0], uint64(db))
	r := w.push(selectLen(db), recSelect, 0)
	r.c.b = resp.AppendCommand(r.c.b, selectName, arg)
	r.db = db
	w.encDB = db
	w.stats.selects++
}

var selectName = []byte("SELECT")

// setCurrent makes c the chunk new records go to; the previous one is released if
// nothing in it waits for a reply.
func (w *Writer) setCurrent(c *chunk) {
	old := w.cur
	w.cur = c
	if old != nil && old.live == 0 {
		w.release(old)
	}
}

// release recycles a chunk whose records are all retired. Called with mu held.
func (w *Writer) release(c *chunk) {
	if c == w.cur || c.big {
		if c.big && c != w.cur {
			c.b = nil
		}
		return
	}
	if w.writing {
		// The sender may still be reading it (the reply can overtake the return of the
		// write call); recycle it when the write ends.
		w.limbo = append(w.limbo, c)
		return
	}
	w.recycle(c)
}

func (w *Writer) recycle(c *chunk) {
	if len(w.free) >= w.maxFree {
		return
	}
	c.b = c.b[:0]
	w.free = append(w.free, c)
}

// grow doubles the ring; only a transaction larger than the window gets here.
func (w *Writer) grow() {
	size := uint64(len(w.recs)) * 2
	recs := make([]record, size)
	for s := w.head; s < w.tail; s++ {
		recs[s&(size-1)] = w.recs[s&w.mask]
	}
	w.recs, w.mask = recs, size-1
}

// Flush waits until every command queued before the call is answered (for an open
// transaction: until its queued commands are acknowledged), ctx ends or the writer fails.
func (w *Writer) Flush(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.tail
	for {
		if w.err != nil {
			return w.err
		}
		if w.head >= target || (w.inTxn && w.next >= target) {
			return nil
		}
		if err := w.wait(ctx); err != nil {
			return err
		}
	}
}

// Applied returns the highest source offset such that the command carrying it and every
// command before it were answered without error, or skipped and counted under IgnoreErrors.
func (w *Writer) Applied() int64 { return w.applied.Load() }

// Stats returns a snapshot of the writer's counters.
func (w *Writer) Stats() Stats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Stats{
		Commands:      w.stats.commands,
		Bytes:         w.stats.bytes,
		Selects:       w.stats.selects,
		Replies:       w.stats.replies,
		Skipped:       w.stats.skipped,
		Retries:       w.stats.retries,
		Reconnects:    w.stats.reconnects,
		Reconciled:    w.stats.reconciled,
		InFlight:      int(w.tail - w.head),
		InFlightBytes: w.bytes,
		Applied:       w.applied.Load(),
		Errors:        make(map[string]int64, len(w.errCounts)),
	}
	for k, v := range w.errCounts {
		s.Errors[k] = v
	}
	return s
}

// Err returns why the writer stopped: its fatal error, ErrClosed after Close, or nil while
// it runs.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Done is closed when the writer stops, on a fatal error or Close; Err says why.
func (w *Writer) Done() <-chan struct{} { return w.done }

// Close stops the goroutines and closes the connection without waiting for replies:
// commands not yet answered are not applied as far as Applied is concerned. It returns the
// writer's fatal error if it had failed before, nil otherwise.
func (w *Writer) Close() error {
	w.closeOnce.Do(func() {
		close(w.closing)
		<-w.stopped
		if w.metrics != nil {
			w.opts.Registerer.Unregister(w.metrics)
		}
	})
	w.mu.Lock()
	defer w.mu.Unlock()
	if errors.Is(w.err, ErrClosed) {
		return nil
	}
	return w.err
}

// stop records why the writer stopped and releases everyone waiting. The first reason wins.
func (w *Writer) stop(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	w.err = err
	w.wake()
	close(w.done)
}

// encodedLen is the length of the RESP encoding of args.
func encodedLen(args [][]byte) int {
	n := 1 + digits(uint64(len(args))) + 2
	for _, a := range args {
		n += 1 + digits(uint64(len(a))) + 2 + len(a) + 2
	}
	return n
}

func selectLen(db int) int {
	return encodedLen2(len(selectName), digits(uint64(db)))
}

func encodedLen2(a, b int) int {
	return 1 + 1 + 2 + (1 + digits(uint64(a)) + 2 + a + 2) + (1 + digits(uint64(b)) + 2 + b + 2)
}

func digits(n uint64) int {
	d := 1
	for n >= 10 {
		n /= 10
		d++
	}
	return d
}

func appendUint(dst []byte, n uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return append(dst, tmp[i:]...)
}

// equalFold compares a command name with an upper-case ASCII name, ignoring case.
func equalFold(b []byte, upper string) bool {
	if len(b) != len(upper) {
		return false
	}
	for i := range len(b) {
		if b[i]&^0x20 != upper[i] {
			return false
		}
	}
	return true
}
