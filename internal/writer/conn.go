package writer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ferrysync/ferry/internal/resp"
)

// errClosing ends serve when Close is called.
var errClosing = errors.New("writer: closing")

// drainGrace is how long the reader may go on reading replies after the sender's write
// failed: replies already on the wire still retire their commands, which then need no
// resend (and cannot be applied twice).
const drainGrace = 200 * time.Millisecond

// run owns the connection: it serves one connection until it fails, then reconnects and
// resends, or stops the writer. It is the only goroutine that dials.
func (w *Writer) run(nc net.Conn) {
	defer close(w.stopped)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := time.Duration(0)
	for {
		err := w.serve(nc)
		var re *retryError
		switch {
		case errors.Is(err, errClosing):
			w.stop(ErrClosed)
			return
		case !errors.As(err, &re):
			w.stop(err)
			return
		}
		if nc = w.reconnect(ctx, re, &backoff); nc == nil {
			return
		}
	}
}

// serve runs the sender and the reader on nc until one of them fails or Close is called,
// then closes nc and waits for both. It returns the failure that matters most: a fatal
// one over a retryable one.
func (w *Writer) serve(nc net.Conn) error {
	quit := make(chan struct{})
	sendErr := make(chan error, 1)
	recvErr := make(chan error, 1)
	w.deadlineMu.Lock()
	w.draining = false
	w.deadlineMu.Unlock()
	go func() { sendErr <- w.send(nc, quit) }()
	go func() { recvErr <- w.receive(nc) }()

	var first error
	sendDone, recvDone := false, false
	select {
	case first = <-recvErr:
		recvDone = true
	case first = <-sendErr:
		sendDone = true
		// Let the reader take in the replies already on their way before closing.
		w.deadlineMu.Lock()
		w.draining = true
		_ = nc.SetReadDeadline(time.Now().Add(drainGrace))
		w.deadlineMu.Unlock()
		select {
		case err := <-recvErr:
			recvDone = true
			if !isRetry(err) {
				first = err
			}
		case <-w.closing:
		}
	case <-w.closing:
		first = errClosing
	}
	close(quit)
	_ = nc.Close()
	if !sendDone {
		<-sendErr
	}
	if !recvDone {
		if err := <-recvErr; !isRetry(err) && isRetry(first) {
			first = err
		}
	}
	select {
	case <-w.closing:
		return errClosing
	default:
	}
	return first
}

func isRetry(err error) bool {
	var re *retryError
	return errors.As(err, &re)
}

// reconnect backs off, dials again and rewinds the window to its first unanswered
// command. It returns nil when the writer stopped (fatal error, retries exhausted, Close).
func (w *Writer) reconnect(ctx context.Context, re *retryError, backoff *time.Duration) net.Conn {
	w.mu.Lock()
	now := time.Now()
	newEpisode := w.failingSince.IsZero()
	if newEpisode {
		w.failingSince = now
		*backoff = 0
	}
	since := w.failingSince
	w.errCounts[re.reason]++
	w.stats.retries++
	w.mu.Unlock()

	attrs := []any{"reason", re.reason, "err", re.err}
	if re.ae != nil && re.ae.Cmd != "" {
		attrs = append(attrs, "cmd", re.ae.Cmd, "db", re.ae.DB, "offset", re.ae.Offset)
	}
	if newEpisode {
		w.log.Warn("destination failed; retrying and resending unanswered commands", attrs...)
	} else {
		w.log.Debug("destination failed again; retrying", attrs...)
	}
	lastWarn := now
	last := re
	for {
		*backoff = min(max(*backoff*2, minBackoff), maxBackoff)
		if time.Since(since)+*backoff > w.opts.RetryTimeout {
			w.stop(w.gaveUp(last, time.Since(since)))
			return nil
		}
		t := time.NewTimer(*backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			w.stop(ErrClosed)
			return nil
		}
		w.mu.Lock()
		db := w.encDB
		if w.head < w.tail {
			db = w.recs[w.head&w.mask].ctxDB
		}
		w.mu.Unlock()

		nc, err := w.dial(ctx, db, true)
		if err == nil {
			w.mu.Lock()
			resend := w.tail - w.head
			w.sent, w.next = w.head, w.head
			w.inTxn, w.txnErr = false, nil
			w.stats.reconnects++
			w.mu.Unlock()
			w.log.Debug("reconnected to the destination", "db", db, "resend", resend,
				"down", time.Since(since).Round(time.Millisecond))
			select {
			case w.kick <- struct{}{}:
			default:
			}
			return nc
		}
		if ctx.Err() != nil {
			w.stop(ErrClosed)
			return nil
		}
		if errors.Is(err, ErrStop) {
			w.stop(err)
			return nil
		}
		var e *resp.Error
		if errors.As(err, &e) {
			if cl, reason := classify(e); cl != classRetry {
				w.mu.Lock()
				w.errCounts[reason]++
				w.mu.Unlock()
				ae := &ApplyError{Reason: reason, Cmd: "SELECT", DB: db, Err: err}
				if reason != ReasonDBRange {
					ae.Cmd = ""
				}
				ae.Hint = ae.hint(w.opts.Target.Username)
				w.stop(ae)
				return nil
			}
		}
		last = &retryError{reason: ReasonConnection, err: err, ae: re.ae}
		if errors.As(err, &e) {
			_, last.reason = classify(e)
		}
		w.mu.Lock()
		w.errCounts[last.reason]++
		w.mu.Unlock()
		if time.Since(lastWarn) >= time.Minute {
			lastWarn = time.Now()
			w.log.Warn("destination still unavailable; retrying", "reason", last.reason, "err", err,
				"down", time.Since(since).Round(time.Second), "retry_timeout", w.opts.RetryTimeout)
		} else {
			w.log.Debug("reconnect failed", "reason", last.reason, "err", err)
		}
	}
}

// gaveUp is the fatal error after RetryTimeout of retryable failures.
func (w *Writer) gaveUp(re *retryError, down time.Duration) error {
	ae := &ApplyError{Reason: re.reason, DB: -1, Err: re.err}
	w.mu.Lock()
	waiting := w.tail - w.head
	if re.ae != nil {
		ae.Cmd, ae.Key, ae.DB, ae.Offset = re.ae.Cmd, re.ae.Key, re.ae.DB, re.ae.Offset
	} else if waiting > 0 {
		d := w.describe(w.head, re.reason, nil)
		ae.Cmd, ae.Key, ae.DB, ae.Offset = d.Cmd, d.Key, d.DB, d.Offset
	}
	w.mu.Unlock()
	why := map[string]string{
		ReasonConnection: "the destination stayed unreachable; check that it is up and reachable",
		ReasonLoading:    "the destination kept loading its dataset",
		ReasonBusy:       "a script or function kept the destination busy; stop it with SCRIPT KILL or FUNCTION KILL",
		ReasonTryAgain:   "the destination kept answering TRYAGAIN (a slot migration that does not end)",
		ReasonMasterDown: "the destination replica kept reporting its master down",
	}[re.reason]
	if why == "" {
		why = "the destination kept failing"
	}
	ae.Hint = fmt.Sprintf("gave up after retrying for %s (RetryTimeout %s); unanswered commands: %d, "+
		"the first %s: %s", down.Round(time.Millisecond), w.opts.RetryTimeout, waiting, ae.where(), why)
	if waiting == 0 {
		ae.Hint = fmt.Sprintf("gave up after retrying for %s (RetryTimeout %s): %s",
			down.Round(time.Millisecond), w.opts.RetryTimeout, why)
	}
	return ae
}

// send writes queued commands whenever it is woken, all that is queued at once.
func (w *Writer) send(nc net.Conn, quit <-chan struct{}) error {
	timeout := w.opts.Target.IOTimeout
	for {
		select {
		case <-w.kick:
		case <-quit:
			return nil
		}
		for {
			w.mu.Lock()
			if w.sent == w.tail {
				w.mu.Unlock()
				break
			}
			w.gather()
			w.writing = true
			w.mu.Unlock()

			if timeout > 0 {
				_ = nc.SetWriteDeadline(time.Now().Add(timeout))
			}
			w.wbufs = w.iov
			_, err := w.wbufs.WriteTo(nc)

			w.mu.Lock()
			w.writing = false
			for i, c := range w.limbo {
				w.recycle(c)
				w.limbo[i] = nil
			}
			w.limbo = w.limbo[:0]
			w.mu.Unlock()
			if err != nil {
				return &retryError{reason: ReasonConnection, err: fmt.Errorf("write to %s: %w", w.opts.Target.Addr, err)}
			}
		}
	}
}

// gather collects the encodings of [sent, tail) into w.iov, one slice per run of
// adjacent records in a chunk, and marks them sent. Called with mu held.
func (w *Writer) gather() {
	iov := w.iov[:0]
	var c *chunk
	start, end := 0, 0
	for s := w.sent; s < w.tail; s++ {
		r := &w.recs[s&w.mask]
		if r.c == c && r.start == end {
			end = r.end
			continue
		}
		if c != nil {
			iov = append(iov, c.b[start:end])
		}
		c, start, end = r.c, r.start, r.end
	}
	if c != nil {
		iov = append(iov, c.b[start:end])
	}
	w.iov = iov
	w.sent = w.tail
}

// connReader reads from the connection with IOTimeout as a stall detector: a timeout
// while no reply is owed is just an idle connection; two in a row while replies are owed
// mean the connection is dead.
type connReader struct {
	w       *Writer
	nc      net.Conn
	timeout time.Duration
	stalls  int
}

func (r *connReader) Read(p []byte) (int, error) {
	for {
		draining := r.armDeadline()
		n, err := r.nc.Read(p)
		var ne net.Error
		timeout := err != nil && errors.As(err, &ne) && ne.Timeout()
		if n > 0 || err == nil {
			r.stalls = 0
			if timeout {
				err = nil // data arrived in time after all; the next read re-arms
			}
			return n, err
		}
		if timeout && !draining {
			if !r.w.owed() {
				r.stalls = 0
				continue
			}
			if r.stalls++; r.stalls < 2 {
				continue
			}
		}
		return n, err
	}
}

// armDeadline sets the read deadline unless serve has set the drain deadline, which it
// must not override; the mutex orders the two. It reports whether the reader is draining.
func (r *connReader) armDeadline() bool {
	r.w.deadlineMu.Lock()
	defer r.w.deadlineMu.Unlock()
	if !r.w.draining && r.timeout > 0 {
		_ = r.nc.SetReadDeadline(time.Now().Add(r.timeout))
	}
	return r.w.draining
}

// owed reports whether commands written to the connection still wait for their reply.
func (w *Writer) owed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.next < w.sent
}

// receive reads replies and applies them in batches: everything already buffered is
// matched under one lock.
func (w *Writer) receive(nc net.Conn) error {
	w.rr.reset(&connReader{w: w, nc: nc, timeout: w.opts.Target.IOTimeout})
	for {
		k := 0
		var rerr error
		for k < len(w.batch) {
			if k > 0 && !w.rr.buffered() {
				break
			}
			if rerr = w.rr.read(&w.batch[k]); rerr != nil {
				break
			}
			k++
		}
		if k > 0 {
			if err := w.applyBatch(k); err != nil {
				return err
			}
		}
		if rerr != nil {
			var pe *resp.ProtocolError
			if errors.As(rerr, &pe) {
				return w.protocolError(pe)
			}
			return &retryError{reason: ReasonConnection, err: fmt.Errorf("read from %s: %w", w.opts.Target.Addr, rerr)}
		}
	}
}

func (w *Writer) protocolError(err error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errCounts[ReasonProtocol]++
	ae := &ApplyError{Reason: ReasonProtocol, DB: -1, Err: err}
	if w.next < w.tail {
		ae = w.describe(w.next, ReasonProtocol, nil)
		ae.Err = err
	}
	ae.Hint = ae.hint(w.opts.Target.Username)
	return ae
}

// applyBatch matches k replies to the window. Called by the reader.
func (w *Writer) applyBatch(k int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.wake()
	for i := range k {
		if err := w.apply(&w.batch[i]); err != nil {
			return err
		}
	}
	return nil
}

// apply matches one reply to the first unanswered record. Called with mu held.
func (w *Writer) apply(rep *reply) error {
	if w.next >= w.sent {
		w.errCounts[ReasonProtocol]++
		return &ApplyError{Reason: ReasonProtocol, DB: -1, Err: rep.err,
			Hint: "the destination sent a reply for no command: this is a bug or a proxy in the way; report it"}
	}
	seq := w.next
	r := &w.recs[seq&w.mask]
	w.next++
	if w.inTxn && r.kind != recExec {
		// Inside MULTI the reply is +QUEUED, or the error that will make EXEC abort.
		if rep.err != nil && w.txnErr == nil {
			w.txnErr, w.txnErrSeq = rep.err, seq
		}
		return nil
	}
	if rep.err != nil {
		if r.kind == recExec && w.inTxn {
			// The transaction was discarded: by -EXECABORT after a queued command was
			// refused (report that command), or by EXEC's own rejection.
			w.inTxn = false
			if rep.err.IsExecAbort() && w.txnErr != nil {
				return w.refusedTxn(seq, w.txnErrSeq, w.txnErr)
			}
			return w.refusedTxn(seq, seq, rep.err)
		}
		w.inTxn = false
		return w.refused(seq, seq, rep.err)
	}
	switch r.kind {
	case recMulti:
		w.inTxn, w.txnErr = true, nil
		return nil
	case recExec:
		if !w.inTxn {
			break // an EXEC that the server did not reject; nothing more to check
		}
		w.inTxn = false
		return w.applyExec(seq, rep)
	}
	w.retire(seq + 1)
	return nil
}

// applyExec checks EXEC's array: element i answers the i-th queued command.
func (w *Writer) applyExec(seq uint64, rep *reply) error {
	multi := w.head
	queued := int64(seq - multi - 1)
	if rep.null {
		w.errCounts[ReasonOther]++
		ae := w.describe(seq, ReasonOther, nil)
		ae.Hint = "EXEC returned null (transaction aborted by WATCH) although the writer never watches keys: " +
			"something else shares the connection; report it"
		return ae
	}
	if !rep.array || rep.n != queued {
		w.errCounts[ReasonProtocol]++
		ae := w.describe(seq, ReasonProtocol, nil)
		ae.Hint = fmt.Sprintf("EXEC's reply does not list the %d queued commands: this is a bug or a proxy in the way; report it", queued)
		return ae
	}
	for _, ee := range rep.elemErrs {
		es := multi + 1 + uint64(ee.i)
		cl, reason := classify(ee.err)
		if cl == classData && w.opts.IgnoreErrors {
			w.skip(es, reason, ee.err)
			continue
		}
		// The rest of the transaction is applied; resending it could apply it twice, so a
		// retryable error inside EXEC is fatal too.
		w.errCounts[reason]++
		ae := w.describe(es, reason, ee.err)
		ae.Hint = ae.hint(w.opts.Target.Username) + " (inside a transaction; its other commands were applied)"
		return ae
	}
	w.retire(seq + 1)
	return nil
}

// refused handles an error reply to record seq, reported as the failure of record at
// (the same record, or for EXEC the command that aborted it).
func (w *Writer) refused(seq, at uint64, e *resp.Error) error {
	if w.opts.Redirect != nil {
		if err, ok := w.clusterReply(seq, at, e); ok {
			return err
		}
	}
	cl, reason := classify(e)
	switch {
	case cl == classRetry:
		return &retryError{reason: reason, err: &resp.Error{Msg: sanitize(e.Msg)}, ae: w.describe(at, reason, e)}
	case cl == classData && w.opts.IgnoreErrors:
		w.skip(at, reason, e)
		w.retire(seq + 1)
		return nil
	}
	w.errCounts[reason]++
	ae := w.describe(at, reason, e)
	if r := &w.recs[at&w.mask]; r.kind == recSelect && reason == ReasonValue {
		ae.Reason, ae.Hint = ReasonDBRange, ""
	}
	if ae.Hint == "" {
		ae.Hint = ae.hint(w.opts.Target.Username)
	}
	return ae
}

// refusedTxn handles -EXECABORT caused by the queued command at: the transaction was
// discarded whole, so it is retried, skipped or fatal as a unit.
func (w *Writer) refusedTxn(seq, at uint64, e *resp.Error) error {
	if cl, _ := classify(e); cl == classData && w.opts.IgnoreErrors {
		for s := w.head + 1; s <= seq; s++ {
			if s != at && w.recs[s&w.mask].user {
				w.recs[s&w.mask].skipped = true
				w.stats.skipped++
			}
		}
	}
	err := w.refused(seq, at, e)
	if ae, ok := err.(*ApplyError); ok {
		ae.Hint += " (the whole transaction was discarded)"
	}
	return err
}

// skip counts a command refused for its data under IgnoreErrors and logs the first of
// each reason. Called with mu held.
func (w *Writer) skip(seq uint64, reason string, e *resp.Error) {
	r := &w.recs[seq&w.mask]
	if !r.skipped {
		r.skipped = true
		w.stats.skipped++
	}
	w.errCounts[reason]++
	if w.logged[reason] {
		return
	}
	w.logged[reason] = true
	ae := w.describe(seq, reason, e)
	w.log.Warn("skipping commands the destination refuses (ignore-errors mode); further ones for this reason are only counted",
		"reason", reason, "cmd", ae.Cmd, "key", ae.Key, "db", ae.DB, "offset", ae.Offset, "err", ae.Err)
}

// retire removes the records before upto from the window: they are answered. Called with
// mu held.
func (w *Writer) retire(upto uint64) {
	for w.head < upto {
		r := &w.recs[w.head&w.mask]
		if r.user && !r.skipped {
			w.stats.replies++
		}
		if r.offset > w.applied.Load() {
			w.applied.Store(r.offset)
		}
		w.bytes -= r.end - r.start
		c := r.c
		r.c = nil
		if c.live--; c.live == 0 {
			w.release(c)
		}
		w.head++
	}
	if !w.failingSince.IsZero() {
		w.log.Info("the destination accepts commands again", "down", time.Since(w.failingSince).Round(time.Millisecond))
		w.failingSince = time.Time{}
	}
}

// describe builds the error for record seq: its command name and key are read back from
// its encoding, which is still in memory because the record is not retired.
func (w *Writer) describe(seq uint64, reason string, e *resp.Error) *ApplyError {
	r := &w.recs[seq&w.mask]
	ae := &ApplyError{Reason: reason, DB: r.db, Offset: r.offset}
	if e != nil {
		ae.Err = &resp.Error{Msg: sanitize(e.Msg)}
	}
	name, key := nameAndKey(r.c.b[r.start:r.end])
	ae.Cmd = string(name[:min(len(name), 64)])
	if r.kind == recSelect {
		key = nil
		if !r.user {
			// An injected SELECT answers for the command it was injected for.
			if next := seq + 1; next < w.tail {
				ae.Offset = w.recs[next&w.mask].offset
			}
		}
	}
	ae.Key = string(key[:min(len(key), maxKeyInError)])
	return ae
}

// nameAndKey returns the first two arguments of an encoded command (nil when absent or
// when the encoding is not what Write produced).
func nameAndKey(enc []byte) (name, key []byte) {
	p := 0
	next := func() []byte {
		if p >= len(enc) {
			return nil
		}
		i := p
		for i < len(enc) && enc[i] != '\r' {
			i++
		}
		line := enc[p:i]
		p = i + 2
		return line
	}
	if h := next(); len(h) == 0 || h[0] != '*' {
		return nil, nil
	}
	arg := func() []byte {
		h := next()
		if len(h) == 0 || h[0] != '$' {
			return nil
		}
		n, ok := resp.ParseInt(h[1:])
		if !ok || n < 0 || int64(len(enc)-p) < n {
			return nil
		}
		a := enc[p : p+int(n)]
		p += int(n) + 2
		return a
	}
	name = arg()
	key = arg()
	return name, key
}
