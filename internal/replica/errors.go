package replica

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// ErrClosed is returned by reads after Close.
var ErrClosed = errSpoolClosed

// ErrNotReady is matched (errors.Is) by a *NotReadyError.
var ErrNotReady = errors.New("source not ready to serve a replica")

// NotReadyError is the source's answer that it cannot serve a replica now but should
// later: -LOADING (it is loading its dataset), -NOMASTERLINK (it is a replica whose own
// link is down) or -BUSY (a script is running). Retry after a pause.
type NotReadyError struct {
	Addr  string
	Reply string // the error line, without '-'
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("source %s cannot serve a replica yet (%s): retry later", e.Addr, e.Reply)
}

func (e *NotReadyError) Is(target error) bool { return target == ErrNotReady }

// LinkError says the replication link ended: the source closed it, it timed out, or
// reading it failed. It comes out of RDB() or Next() once everything received before
// the end was read. Resume with PSYNC from the last applied Position.
type LinkError struct {
	Addr        string
	Offset      int64 // Received() when the link ended
	InRDB       bool  // the link ended before the RDB was complete
	RDBReceived int64 // bytes of RDB received, when InRDB
	Timeout     time.Duration
	Err         error
}

func (e *LinkError) Error() string {
	where := fmt.Sprintf("at offset %d", e.Offset)
	if e.InRDB {
		where = fmt.Sprintf("during the RDB transfer, after %d bytes", e.RDBReceived)
	}
	var ne net.Error
	switch {
	case errors.Is(e.Err, io.EOF), errors.Is(e.Err, io.ErrUnexpectedEOF), errors.Is(e.Err, syscall.ECONNRESET):
		return fmt.Sprintf("source %s closed the replication link %s (client-output-buffer-limit replica? repl-timeout? check the source log)", e.Addr, where)
	case errors.As(e.Err, &ne) && ne.Timeout():
		return fmt.Sprintf("no data from source %s for %s, %s: the link is dead or the source is stalled (a source sends a PING every repl-ping-replica-period; raise SourceTimeout if it is slow to fork)", e.Addr, e.Timeout, where)
	}
	return fmt.Sprintf("replication link to source %s broke %s: %v", e.Addr, where, e.Err)
}

func (e *LinkError) Unwrap() error { return e.Err }

// UnknownCommandError is a command in the replication stream that Ferry cannot classify.
// Skipping it could lose data, so the stream stops there.
type UnknownCommandError struct {
	Name   string // as received
	Offset int64  // the offset of the command's last byte
}

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("unknown command %q in the replication stream at offset %d: refusing to skip it; "+
		"if it is a module or newer-version command, let the source user run COMMAND (ACL SETUSER <user> +command) so Ferry learns the source's write commands",
		e.Name, e.Offset)
}

// hintError is a message written for the operator that still unwraps to its cause (a
// *resp.Error, say) for errors.Is and errors.As.
type hintError struct {
	msg string
	err error
}

func (e *hintError) Error() string { return e.msg }
func (e *hintError) Unwrap() error { return e.err }
