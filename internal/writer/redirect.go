package writer

import (
	"github.com/ferrysync/ferry/internal/resp"
)

// Reasons counted in Stats.Errors by a writer with Options.Redirect.
const (
	ReasonMoved       = "moved"       // -MOVED: a command handed to Options.Redirect
	ReasonAsk         = "ask"         // -ASK: a command handed to Options.Redirect
	ReasonClusterDown = "clusterdown" // -CLUSTERDOWN, retried like -TRYAGAIN
)

// Redirected is what a writer hands to Options.Redirect: a command the server did not
// run because its slot is served elsewhere.
type Redirected struct {
	// Cmds is the command, or a whole transaction from MULTI to EXEC when one of its
	// commands (or EXEC itself) was redirected; the server discarded it whole. Args are
	// copies the receiver owns. Commands the writer injected (SELECT) are left out.
	Cmds []Command
	// Err is the -MOVED or -ASK reply (IsMoved / IsAsk give the slot and address).
	Err *resp.Error
	// Applied is Applied() just before these commands: every command written before them
	// is answered. A router keeps its own applied position at or below it until it has
	// applied the commands elsewhere.
	Applied int64
}

// clusterReply handles, for a writer with Options.Redirect, the replies that are about
// the cluster rather than the command: -MOVED and -ASK retire the command (for a
// transaction, all of it, MULTI at the head of the window to EXEC at seq) without
// applying it, after handing it to Redirect; -CLUSTERDOWN is retried. ok is false for
// any other reply. Called with mu held.
func (w *Writer) clusterReply(seq, at uint64, e *resp.Error) (err error, ok bool) {
	var reason string
	switch e.Prefix() {
	case "CLUSTERDOWN":
		return &retryError{reason: ReasonClusterDown, err: &resp.Error{Msg: sanitize(e.Msg)},
			ae: w.describe(at, ReasonClusterDown, e)}, true
	case "MOVED":
		reason = ReasonMoved
	case "ASK":
		reason = ReasonAsk
	default:
		return nil, false
	}
	rd := Redirected{Err: &resp.Error{Msg: e.Msg}, Applied: w.applied.Load()}
	for s := w.head; s <= seq; s++ {
		r := &w.recs[s&w.mask]
		if r.user {
			rd.Cmds = append(rd.Cmds, Command{DB: r.db, Args: decodeArgs(r.c.b[r.start:r.end]), Offset: r.offset})
		}
		// Retired below without counting as answered or moving Applied: the command
		// was not applied here.
		r.offset, r.skipped = 0, true
	}
	w.errCounts[reason]++
	w.opts.Redirect(rd)
	w.retire(seq + 1)
	return nil, true
}

// decodeArgs returns a copy of the arguments of a command encoded by Write (an array of
// bulk strings): one allocation for the bytes, one for the slice headers.
func decodeArgs(enc []byte) [][]byte {
	buf := append([]byte(nil), enc...)
	p := 0
	line := func() []byte {
		i := p
		for i < len(buf) && buf[i] != '\r' {
			i++
		}
		l := buf[p:i]
		p = i + 2
		return l
	}
	h := line()
	if len(h) < 2 || h[0] != '*' {
		return nil
	}
	n, ok := resp.ParseInt(h[1:])
	if !ok || n < 0 || n > int64(len(buf)) {
		return nil
	}
	args := make([][]byte, 0, n)
	for range n {
		h := line()
		if len(h) < 2 || h[0] != '$' {
			return args
		}
		m, ok := resp.ParseInt(h[1:])
		if !ok || m < 0 || int64(len(buf)-p) < m {
			return args
		}
		args = append(args, buf[p:p+int(m):p+int(m)])
		p += int(m) + 2
	}
	return args
}
