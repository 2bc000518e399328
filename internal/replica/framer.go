package replica

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// frameSink receives what the framer cuts out of the bytes a source sends after PSYNC.
// The slices are only valid during the call.
type frameSink interface {
	rdbData(p []byte) error
	rdbEnd() error
	streamData(p []byte) error
}

type frameState uint8

const (
	stPsync  frameState = iota // waiting for the answer to PSYNC
	stHeader                   // after +FULLRESYNC: waiting for "$<size>" or "$EOF:<mark>"
	stSized                    // copying an RDB of known size
	stMark                     // copying a diskless RDB up to its EOF mark
	stStream                   // the command stream: everything else
	stFailed                   // a protocol error was returned; nothing more is accepted
)

// maxFrameLine caps the lines before the RDB (the PSYNC answer, the RDB header). Real ones
// are under 100 bytes; the cap only stops a wrong peer from growing the buffer forever.
const maxFrameLine = 4096

// psyncAnswer is what the source said to PSYNC.
type psyncAnswer struct {
	full   bool   // +FULLRESYNC
	replID string // the full sync's ID, or the new ID of +CONTINUE <id> ("" if none was sent)
	offset int64  // +FULLRESYNC's offset: the snapshot's position in the stream
}

// replyError is an error line a source sent where the framer expected a PSYNC answer or an
// RDB header. Text is the line without its '-'.
type replyError struct{ Text string }

func (e *replyError) Error() string { return e.Text }

// framer splits the bytes after PSYNC into the PSYNC answer, the RDB payload and the
// command stream. It is fed whatever each socket read returned, so every boundary (a
// line, the diskless EOF mark, the RDB end) may fall anywhere inside or across chunks.
//
// Bytes before the RDB — newline keepalives, the answer line, the "$" header — are not
// part of the replication stream and never count toward an offset; the stream starts
// right after the RDB (or right after +CONTINUE).
type framer struct {
	state      frameState
	line       []byte // a line not yet terminated
	keepalives int    // '\n' keepalives seen before the answer and before the RDB header
	answer     psyncAnswer
	answered   bool  // the PSYNC answer was parsed
	rdbSize    int64 // -1 for a diskless RDB (EOF mark)
	left       int64 // bytes of a sized RDB still to come
	mark       []byte
	finder     *markFinder
	// carry holds the last bytes of a diskless RDB that might be the start of the EOF
	// mark, at most len(mark)-1 of them; tmp is scratch for matching across chunks.
	carry, tmp []byte
}

func newFramer(expectAnswer bool) *framer {
	f := &framer{rdbSize: -1}
	if !expectAnswer {
		f.state = stStream
	}
	return f
}

// feed consumes p entirely, or returns the first error; after an error the framer is
// unusable.
func (f *framer) feed(p []byte, s frameSink) error {
	for len(p) > 0 {
		switch f.state {
		case stPsync, stHeader:
			line, rest, ok, err := f.takeLine(p)
			if err != nil {
				f.state = stFailed
				return err
			}
			p = rest
			if !ok {
				return nil
			}
			if err := f.onLine(line, s); err != nil {
				f.state = stFailed
				return err
			}
		case stSized:
			n := min(int64(len(p)), f.left)
			if err := s.rdbData(p[:n]); err != nil {
				return err
			}
			f.left -= n
			p = p[n:]
			if f.left == 0 {
				if err := f.endRDB(s); err != nil {
					return err
				}
			}
		case stMark:
			rest, err := f.feedMark(p, s)
			if err != nil {
				return err
			}
			p = rest
		case stStream:
			return s.streamData(p)
		default:
			return errors.New("replication framer used after a protocol error")
		}
	}
	return nil
}

// takeLine returns the next complete line (without its LF or CRLF) and what follows it.
// Without a complete line it keeps p and reports ok=false. The line may alias f.line and
// is valid until the next call.
func (f *framer) takeLine(p []byte) (line, rest []byte, ok bool, err error) {
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		if len(f.line)+len(p) > maxFrameLine {
			return nil, nil, false, fmt.Errorf("source sent a line of more than %d bytes before the RDB (%q...): not a Redis master?", maxFrameLine, clip(append(f.line, p...)))
		}
		f.line = append(f.line, p...)
		return nil, nil, false, nil
	}
	line, rest = p[:i], p[i+1:]
	if len(f.line) > 0 {
		if len(f.line)+i > maxFrameLine {
			return nil, nil, false, fmt.Errorf("source sent a line of more than %d bytes before the RDB (%q...): not a Redis master?", maxFrameLine, clip(f.line))
		}
		f.line = append(f.line, line...)
		line = f.line
		f.line = f.line[:0]
	}
	return bytes.TrimSuffix(line, []byte("\r")), rest, true, nil
}

func (f *framer) onLine(line []byte, s frameSink) error {
	if len(line) == 0 {
		// A source sends bare newlines while it prepares the snapshot, so that the
		// link does not look dead; they are not part of the stream.
		f.keepalives++
		return nil
	}
	if line[0] == '-' {
		return &replyError{Text: string(line[1:])}
	}
	if f.state == stPsync {
		return f.onAnswer(line)
	}
	return f.onHeader(line, s)
}

func (f *framer) onAnswer(line []byte) error {
	fields := bytes.Fields(line)
	if len(fields) == 0 {
		return fmt.Errorf("unexpected answer to PSYNC %q: is this a Redis master?", clip(line))
	}
	switch string(fields[0]) {
	case "+FULLRESYNC":
		if len(fields) != 3 || !validReplID(string(fields[1])) {
			return fmt.Errorf("malformed answer to PSYNC %q: want \"+FULLRESYNC <40-char replid> <offset>\"", clip(line))
		}
		off, err := strconv.ParseInt(string(fields[2]), 10, 64)
		if err != nil || off < 0 {
			return fmt.Errorf("malformed answer to PSYNC %q: the offset is not a non-negative integer", clip(line))
		}
		f.answer = psyncAnswer{full: true, replID: string(fields[1]), offset: off}
		f.state = stHeader
	case "+CONTINUE":
		// "+CONTINUE" alone comes from sources without PSYNC2; with it, the source sends
		// its current ID, which differs from ours after a failover.
		if len(fields) > 2 || len(fields) == 2 && !validReplID(string(fields[1])) {
			return fmt.Errorf("malformed answer to PSYNC %q: want \"+CONTINUE [<40-char replid>]\"", clip(line))
		}
		if len(fields) == 2 {
			f.answer.replID = string(fields[1])
		}
		f.state = stStream
	default:
		return fmt.Errorf("unexpected answer to PSYNC %q: is this a Redis master?", clip(line))
	}
	f.answered = true
	return nil
}

func (f *framer) onHeader(line []byte, s frameSink) error {
	if line[0] != '$' {
		return fmt.Errorf("expected the RDB header \"$<size>\" or \"$EOF:<mark>\" after +FULLRESYNC, got %q", clip(line))
	}
	if mark, ok := bytes.CutPrefix(line, []byte("$EOF:")); ok {
		// Diskless sync: the RDB's size is unknown, and it ends with this random mark.
		if len(mark) < replIDLen {
			return fmt.Errorf("malformed diskless RDB header %q: the EOF mark is shorter than %d bytes", clip(line), replIDLen)
		}
		f.mark = append([]byte(nil), mark[:replIDLen]...)
		f.finder = newMarkFinder(f.mark)
		f.state = stMark
		return nil
	}
	size, err := strconv.ParseInt(string(line[1:]), 10, 64)
	if err != nil || size < 0 {
		return fmt.Errorf("malformed RDB header %q: the size is not a non-negative integer", clip(line))
	}
	f.rdbSize, f.left = size, size
	f.state = stSized
	if size == 0 {
		return f.endRDB(s)
	}
	return nil
}

// feedMark copies diskless RDB bytes to s until the EOF mark, holding back the last
// len(mark)-1 bytes seen, which could be the start of a mark split across reads. It
// returns the bytes after the mark (the start of the stream), if the mark was in p.
func (f *framer) feedMark(p []byte, s frameSink) ([]byte, error) {
	keep := len(f.mark) - 1
	if len(f.carry) > 0 {
		// A mark that starts in carry ends within the first keep bytes of p.
		f.tmp = append(append(f.tmp[:0], f.carry...), p[:min(len(p), keep)]...)
		if i := bytes.Index(f.tmp, f.mark); i >= 0 {
			after := i + len(f.mark) - len(f.carry) // index in p right after the mark
			if err := emit(s, f.tmp[:i]); err != nil {
				return nil, err
			}
			f.carry = f.carry[:0]
			return p[after:], f.endRDB(s)
		}
	}
	if i := f.finder.index(p); i >= 0 {
		if err := emit(s, f.carry); err != nil {
			return nil, err
		}
		if err := emit(s, p[:i]); err != nil {
			return nil, err
		}
		f.carry = f.carry[:0]
		return p[i+len(f.mark):], f.endRDB(s)
	}
	// No mark yet: everything but the last keep bytes is certainly RDB.
	total := len(f.carry) + len(p)
	if total <= keep {
		f.carry = append(f.carry, p...)
		return nil, nil
	}
	out := total - keep
	if out <= len(f.carry) {
		if err := emit(s, f.carry[:out]); err != nil {
			return nil, err
		}
		f.carry = append(append(f.carry[:0], f.carry[out:]...), p...)
		return nil, nil
	}
	if err := emit(s, f.carry); err != nil {
		return nil, err
	}
	if err := emit(s, p[:out-len(f.carry)]); err != nil {
		return nil, err
	}
	f.carry = append(f.carry[:0], p[len(p)-keep:]...)
	return nil, nil
}

func (f *framer) endRDB(s frameSink) error {
	f.state = stStream
	return s.rdbEnd()
}

func emit(s frameSink, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	return s.rdbData(p)
}

// clip shortens what a peer sent for an error message.
func clip(b []byte) string {
	const n = 80
	if len(b) > n {
		return string(b[:n])
	}
	return string(b)
}
