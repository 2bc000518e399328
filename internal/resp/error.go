package resp

import (
	"strconv"
	"strings"
)

// Error is an error reply from the server ('-' or RESP3 '!'). Msg is the reply text without
// the leading '-', e.g. "MOVED 3999 127.0.0.1:6381" or "ERR unknown command 'FOO'".
// The predicates answer the questions a caller has to ask before retrying or failing.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Prefix returns the error code: the first word of the message ("ERR", "MOVED", "WRONGTYPE").
func (e *Error) Prefix() string {
	if i := strings.IndexByte(e.Msg, ' '); i >= 0 {
		return e.Msg[:i]
	}
	return e.Msg
}

// IsMoved reports a cluster redirection "MOVED <slot> <host:port>".
func (e *Error) IsMoved() (slot int, addr string, ok bool) { return e.redirect("MOVED") }

// IsAsk reports a cluster migration redirection "ASK <slot> <host:port>".
func (e *Error) IsAsk() (slot int, addr string, ok bool) { return e.redirect("ASK") }

func (e *Error) redirect(code string) (int, string, bool) {
	rest, found := strings.CutPrefix(e.Msg, code+" ")
	if !found {
		return 0, "", false
	}
	s, addr, found := strings.Cut(rest, " ")
	if !found || addr == "" || strings.IndexByte(addr, ' ') >= 0 {
		return 0, "", false
	}
	slot, err := strconv.Atoi(s)
	if err != nil || slot < 0 || slot > 16383 {
		return 0, "", false
	}
	return slot, addr, true
}

func (e *Error) is(code string) bool { return e.Prefix() == code }

// IsLoading: the server is loading its dataset into memory and refuses most commands.
func (e *Error) IsLoading() bool { return e.is("LOADING") }

// IsBusy: a script or function is running past busy-reply-threshold.
func (e *Error) IsBusy() bool { return e.is("BUSY") }

// IsBusyKey: RESTORE (or COPY, RENAME…) found the target key already present.
func (e *Error) IsBusyKey() bool { return e.is("BUSYKEY") }

// IsTryAgain: a multi-key command hit keys mid-migration between cluster nodes.
func (e *Error) IsTryAgain() bool { return e.is("TRYAGAIN") }

// IsClusterDown: the cluster cannot serve the slot right now.
func (e *Error) IsClusterDown() bool { return e.is("CLUSTERDOWN") }

// IsOOM: the command was refused because the server is over maxmemory.
func (e *Error) IsOOM() bool { return e.is("OOM") }

// IsNoPerm: the ACL user lacks the permission for the command or key.
func (e *Error) IsNoPerm() bool { return e.is("NOPERM") }

// IsReadOnly: the write went to a replica.
func (e *Error) IsReadOnly() bool { return e.is("READONLY") }

// IsWrongType: the key holds a value of another type.
func (e *Error) IsWrongType() bool { return e.is("WRONGTYPE") }

// IsNoScript: EVALSHA with a script the server does not have.
func (e *Error) IsNoScript() bool { return e.is("NOSCRIPT") }

// IsNoAuth: the server requires AUTH before this command.
func (e *Error) IsNoAuth() bool { return e.is("NOAUTH") }

// IsWrongPass: AUTH was refused (bad user name or password, or the user is disabled).
func (e *Error) IsWrongPass() bool { return e.is("WRONGPASS") }

// IsCrossSlot: the keys of a multi-key command hash to different cluster slots.
func (e *Error) IsCrossSlot() bool { return e.is("CROSSSLOT") }

// IsExecAbort: EXEC discarded the transaction because a queued command was rejected.
func (e *Error) IsExecAbort() bool { return e.is("EXECABORT") }
