package writer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/internal/resp"
)

// ErrClosed is returned by Write and Flush after Close.
var ErrClosed = errors.New("writer: closed")

// What the writer does about an error reply.
type class uint8

const (
	classFatal class = iota // stop: retrying cannot help and skipping would lose data
	classRetry              // the destination is temporarily unable: back off, resend
	classData               // the destination's data disagrees with the command: fatal, or skipped under IgnoreErrors
)

// Error reasons: the keys of Stats.Errors and the "reason" label of the errors metric.
// They are a closed set so the metric's cardinality stays bounded.
const (
	ReasonConnection     = "connection"      // connection lost, refused or timed out
	ReasonLoading        = "loading"         // -LOADING
	ReasonBusy           = "busy"            // -BUSY (a script or function past its time limit)
	ReasonTryAgain       = "tryagain"        // -TRYAGAIN
	ReasonMasterDown     = "masterdown"      // -MASTERDOWN
	ReasonOOM            = "oom"             // -OOM
	ReasonNoPerm         = "noperm"          // -NOPERM
	ReasonAuth           = "auth"            // -NOAUTH, -WRONGPASS
	ReasonReadOnly       = "readonly"        // -READONLY
	ReasonMisconf        = "misconf"         // -MISCONF (the destination cannot persist)
	ReasonWrongType      = "wrongtype"       // -WRONGTYPE
	ReasonBusyKey        = "busykey"         // -BUSYKEY (RESTORE without REPLACE onto an existing key)
	ReasonNoScript       = "noscript"        // -NOSCRIPT
	ReasonUnknownCommand = "unknown_command" // -ERR unknown command / subcommand
	ReasonBadArguments   = "bad_arguments"   // -ERR wrong number of arguments, syntax error
	ReasonDBRange        = "db_range"        // -ERR DB index is out of range (SELECT)
	ReasonPayload        = "restore_payload" // -ERR DUMP payload version or checksum are wrong
	ReasonCluster        = "cluster"         // -MOVED, -ASK, -CLUSTERDOWN, -CROSSSLOT on a standalone writer
	ReasonValue          = "value"           // other -ERR about the data: not an integer, no such key, overflow…
	ReasonExecAbort      = "execabort"       // -EXECABORT without a known cause
	ReasonProtocol       = "protocol"        // a reply that does not match the command stream
	ReasonOther          = "other"           // any other error code
)

// classify decides what an error reply means for the writer.
func classify(e *resp.Error) (class, string) {
	switch e.Prefix() {
	case "LOADING":
		return classRetry, ReasonLoading
	case "BUSY":
		return classRetry, ReasonBusy
	case "TRYAGAIN":
		return classRetry, ReasonTryAgain
	case "MASTERDOWN":
		return classRetry, ReasonMasterDown
	case "OOM":
		return classFatal, ReasonOOM
	case "NOPERM":
		return classFatal, ReasonNoPerm
	case "NOAUTH", "WRONGPASS":
		return classFatal, ReasonAuth
	case "READONLY":
		return classFatal, ReasonReadOnly
	case "MISCONF":
		return classFatal, ReasonMisconf
	case "WRONGTYPE":
		return classData, ReasonWrongType
	case "BUSYKEY":
		return classData, ReasonBusyKey
	case "NOSCRIPT":
		return classFatal, ReasonNoScript
	case "MOVED", "ASK", "CLUSTERDOWN", "CROSSSLOT":
		return classFatal, ReasonCluster
	case "EXECABORT":
		// "EXECABORT Transaction discarded because of: BUSY …" (Redis 7): EXEC itself was
		// rejected, and the embedded error says why.
		if _, cause, ok := strings.Cut(e.Msg, "because of: "); ok && !strings.HasPrefix(cause, "EXECABORT") {
			return classify(&resp.Error{Msg: cause})
		}
		return classFatal, ReasonExecAbort
	case "ERR":
		m := strings.ToLower(e.Msg)
		switch {
		case strings.Contains(m, "unknown command"), strings.Contains(m, "unknown subcommand"):
			return classFatal, ReasonUnknownCommand
		case strings.Contains(m, "wrong number of arguments"), strings.Contains(m, "syntax error"):
			return classFatal, ReasonBadArguments
		case strings.Contains(m, "db index is out of range"), strings.Contains(m, "invalid db index"):
			return classFatal, ReasonDBRange
		case strings.Contains(m, "payload version or checksum"):
			return classData, ReasonPayload
		}
		return classData, ReasonValue
	}
	return classFatal, ReasonOther
}

// sanitize drops the part of a server error text that echoes command arguments, e.g.
// "ERR unknown command 'X', with args beginning with: 'secret'": error texts name the
// command and the key, never argument values.
func sanitize(msg string) string {
	if i := strings.Index(msg, ", with args beginning with"); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// ApplyError is the writer's fatal error: what the destination refused, where the command
// sits in the source stream, and what to do about it. Err is the server's reply
// (*resp.Error, its text stripped of argument values) or the connection error.
type ApplyError struct {
	Reason string // one of the Reason constants
	Cmd    string // command name as sent ("" for connection-level failures)
	Key    string // the command's second argument, at most 100 bytes ("" when none)
	DB     int    // Command.DB (-1: any database)
	Offset int64  // Command.Offset (0: a snapshot command)
	Hint   string // what is wrong and what to do, for a human
	Err    error
}

func (e *ApplyError) Error() string {
	var b strings.Builder
	b.WriteString("writer: ")
	b.WriteString(e.Hint)
	if e.Err != nil {
		b.WriteString(" [")
		b.WriteString(e.Err.Error())
		b.WriteString("]")
	}
	return b.String()
}

func (e *ApplyError) Unwrap() error { return e.Err }

// where describes the command for an error text: `SET "user:1" (db 0, offset 1234)`.
func (e *ApplyError) where() string {
	if e.Cmd == "" {
		return "the destination connection"
	}
	var b strings.Builder
	b.WriteString(e.Cmd)
	if e.Key != "" {
		b.WriteByte(' ')
		b.WriteString(strconv.Quote(e.Key))
	}
	b.WriteString(" (")
	if e.DB < 0 {
		b.WriteString("any db")
	} else {
		b.WriteString("db ")
		b.WriteString(strconv.Itoa(e.DB))
	}
	if e.Offset > 0 {
		b.WriteString(", offset ")
		b.WriteString(strconv.FormatInt(e.Offset, 10))
	} else {
		b.WriteString(", snapshot")
	}
	b.WriteByte(')')
	return b.String()
}

// hint writes the human part of the error: what happened and how to fix it.
func (e *ApplyError) hint(user string) string {
	w := e.where()
	if user == "" {
		user = "default"
	}
	switch e.Reason {
	case ReasonOOM:
		return fmt.Sprintf("destination out of memory while applying %s: raise maxmemory on the destination "+
			"(CONFIG SET maxmemory) or free memory there, and keep maxmemory-policy noeviction so that "+
			"synced keys are not evicted silently", w)
	case ReasonNoPerm:
		return fmt.Sprintf("the destination user lacks permission for %s: grant it with ACL SETUSER %s +%s "+
			"(or +@all) and the key pattern (~*)", w, user, strings.ToLower(e.Cmd))
	case ReasonAuth:
		return "the destination refused the login: check the user name and password of --target"
	case ReasonReadOnly:
		return fmt.Sprintf("the destination is a read-only replica (refused %s): point --target at its master", w)
	case ReasonMisconf:
		return fmt.Sprintf("the destination refuses writes because it cannot persist (refused %s): fix its disk or "+
			"RDB/AOF settings (see its log), or set stop-writes-on-bgsave-error no", w)
	case ReasonWrongType:
		return fmt.Sprintf("the destination diverged from the source at key %q: it holds a value of another type "+
			"than %s expects; empty the destination before syncing, or choose the ignore-errors conflict mode "+
			"to skip and count such commands", e.Key, w)
	case ReasonBusyKey:
		return fmt.Sprintf("key %q already exists on the destination (%s): empty the destination before syncing, "+
			"or choose the ignore-errors conflict mode to skip and count such commands", e.Key, w)
	case ReasonNoScript:
		return fmt.Sprintf("the destination does not have the script that %s calls: load it there with SCRIPT LOAD "+
			"or FUNCTION LOAD before syncing", w)
	case ReasonUnknownCommand:
		return fmt.Sprintf("the destination does not know %s (older version, or a module it lacks): upgrade the "+
			"destination or filter the command out", w)
	case ReasonBadArguments:
		return fmt.Sprintf("the destination rejects the arguments of %s (older version?): upgrade the destination "+
			"or filter the command out", w)
	case ReasonDBRange:
		return fmt.Sprintf("the destination has fewer databases than the source uses (%s): raise \"databases\" "+
			"in its configuration or map the source's databases onto existing ones", w)
	case ReasonPayload:
		return fmt.Sprintf("the destination cannot read the RESTORE payload of %s (its RDB version is older than "+
			"the source's): use a destination of the source's version or newer", w)
	case ReasonCluster:
		return fmt.Sprintf("the destination is a cluster node (refused %s): sync to it as a cluster destination", w)
	case ReasonValue:
		return fmt.Sprintf("the destination diverged from the source: it refused %s because of the value it holds; "+
			"empty the destination before syncing, or choose the ignore-errors conflict mode to skip and count "+
			"such commands", w)
	case ReasonProtocol:
		return fmt.Sprintf("the destination's replies do not match the commands sent (at %s): this is a bug or a "+
			"proxy in the way; report it", w)
	}
	return fmt.Sprintf("the destination refused %s", w)
}

// retryError is a failure worth retrying: the connection, or a retryable error reply.
type retryError struct {
	reason string
	err    error
	// ae describes the command that met the error, when there was one.
	ae *ApplyError
}

func (e *retryError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }
