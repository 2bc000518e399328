package replica

import (
	"fmt"
	"strconv"
	"strings"
)

// Position is a point in a source's replication stream: the replication ID, the offset of
// the last byte applied (what a Redis replica reports as master_repl_offset) and the DB
// selected at that point. The DB is part of it because a source answering +CONTINUE does
// not send SELECT again: a reader resuming mid-stream must know which DB it is in.
type Position struct {
	ReplID string
	Offset int64
	DB     int
}

// IsZero reports whether p names no stream (no replication ID): resuming from it asks the
// source for a full sync ("PSYNC ? -1").
func (p Position) IsZero() bool { return p.ReplID == "" }

// String renders p as "<replid> <offset> <db>", the form checkpoints store; ParsePosition
// reads it back.
func (p Position) String() string {
	return p.ReplID + " " + strconv.FormatInt(p.Offset, 10) + " " + strconv.Itoa(p.DB)
}

// ParsePosition parses the "<replid> <offset> <db>" form of Position.String.
func ParsePosition(s string) (Position, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return Position{}, fmt.Errorf("parse replication position %q: want \"<replid> <offset> <db>\"", s)
	}
	off, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || off < 0 {
		return Position{}, fmt.Errorf("parse replication position %q: offset %q is not a non-negative integer", s, f[1])
	}
	db, err := strconv.Atoi(f[2])
	if err != nil || db < 0 {
		return Position{}, fmt.Errorf("parse replication position %q: db %q is not a non-negative integer", s, f[2])
	}
	if !validReplID(f[0]) {
		return Position{}, fmt.Errorf("parse replication position %q: replication ID %q is not 40 hex digits", s, f[0])
	}
	return Position{ReplID: f[0], Offset: off, DB: db}, nil
}

// replIDLen is CONFIG_RUN_ID_SIZE: replication IDs and the diskless EOF mark are 40 chars.
const replIDLen = 40

func validReplID(s string) bool {
	if len(s) != replIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
