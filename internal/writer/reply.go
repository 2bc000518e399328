package writer

import (
	"bufio"
	"errors"
	"io"

	"github.com/ferrysync/ferry/internal/resp"
)

// The reply reader does not build values: the writer only needs to know whether a reply
// is an error and, for EXEC, which elements of its array are errors. Skipping instead of
// decoding keeps the reply path free of allocations for the common +OK, +QUEUED, :n and
// bulk replies; only error texts are copied.

const (
	// maxErrorText is how much of an error reply's text is kept; the rest is read and
	// dropped. Server error texts are short; a longer one is not worth the memory.
	maxErrorText = 1024
	// maxReplyDepth bounds aggregate nesting, so a hostile peer cannot recurse us into a
	// stack overflow. Real replies nest a handful of levels.
	maxReplyDepth = 64
	// replyBufferSize is the read buffer; one fill holds thousands of small replies.
	replyBufferSize = 64 << 10
)

// reply is what one reply tells the writer.
type reply struct {
	err      *resp.Error // the reply is an error ('-' or '!')
	array    bool        // the reply is an array (EXEC's result)
	null     bool        // the reply is a null ($-1, *-1, _)
	n        int64       // number of elements of a top-level aggregate
	elemErrs []elemErr   // error elements of a top-level array, in order
}

// elemErr is an error element of an array reply: for EXEC, the i-th queued command failed.
type elemErr struct {
	i   int64
	err *resp.Error
}

func (r *reply) reset() {
	r.err = nil
	r.array = false
	r.null = false
	r.n = 0
	r.elemErrs = r.elemErrs[:0]
}

// replyReader reads replies from a connection, counting bytes so a protocol error can
// say where it was found.
type replyReader struct {
	br   *bufio.Reader
	off  int64
	long []byte // a line longer than the buffer: its type byte and maxErrorText bytes
	tmp  [1 + maxErrorText]byte
}

func newReplyReader(rd io.Reader) *replyReader {
	return &replyReader{br: bufio.NewReaderSize(rd, replyBufferSize)}
}

func (rr *replyReader) reset(rd io.Reader) {
	rr.br.Reset(rd)
	rr.off = 0
}

// buffered reports whether a reply's first byte is already buffered, i.e. whether reading
// the next reply is likely not to wait for the network.
func (rr *replyReader) buffered() bool { return rr.br.Buffered() > 0 }

func (rr *replyReader) protoErr(msg string) error {
	return &resp.ProtocolError{Offset: rr.off, Msg: msg}
}

// read reads the next reply into rep. Out-of-band RESP3 pushes are skipped.
func (rr *replyReader) read(rep *reply) error {
	rep.reset()
	for {
		push, err := rr.value(rep, 0, 0)
		if err != nil || !push {
			return err
		}
		rep.reset()
	}
}

// line reads one line and returns it without its CRLF. A line longer than the read buffer
// is consumed in full; its type byte and next maxErrorText bytes are returned.
func (rr *replyReader) line() ([]byte, error) {
	b, err := rr.br.ReadSlice('\n')
	if err == nil {
		rr.off += int64(len(b))
		if len(b) < 2 || b[len(b)-2] != '\r' {
			return nil, rr.protoErr("line not terminated by CRLF")
		}
		return b[:len(b)-2], nil
	}
	if !errors.Is(err, bufio.ErrBufferFull) {
		return nil, noEOF(err)
	}
	rr.long = append(rr.tmp[:0], b[:min(len(b), len(rr.tmp))]...)
	rr.off += int64(len(b))
	prev := b[len(b)-1]
	for {
		b, err = rr.br.ReadSlice('\n')
		rr.off += int64(len(b))
		if err == nil {
			if (len(b) >= 2 && b[len(b)-2] != '\r') || (len(b) == 1 && prev != '\r') {
				return nil, rr.protoErr("line not terminated by CRLF")
			}
			return rr.long, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, noEOF(err)
		}
		prev = b[len(b)-1]
	}
}

// noEOF turns an EOF in the middle of a reply into io.ErrUnexpectedEOF: either way the
// connection is gone, but the distinction helps when reading logs.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// value reads one value at the given depth; idx is its position in the parent aggregate.
// It reports whether the value was a top-level push, which answers no command.
func (rr *replyReader) value(rep *reply, depth int, idx int64) (push bool, err error) {
	if depth > maxReplyDepth {
		return false, rr.protoErr("reply nested too deeply")
	}
	ln, err := rr.line()
	if err != nil {
		return false, err
	}
	if len(ln) == 0 {
		return false, rr.protoErr("empty line where a reply was expected")
	}
	kind, rest := resp.Kind(ln[0]), ln[1:]
	switch kind {
	case resp.KindSimpleString, resp.KindDouble, resp.KindBigNumber:
		return false, nil
	case resp.KindInteger:
		if _, ok := resp.ParseInt(rest); !ok {
			return false, rr.protoErr("invalid integer reply")
		}
		return false, nil
	case resp.KindBoolean:
		if len(rest) != 1 || (rest[0] != 't' && rest[0] != 'f') {
			return false, rr.protoErr("invalid boolean reply")
		}
		return false, nil
	case resp.KindNull:
		if len(rest) != 0 {
			return false, rr.protoErr("invalid null reply")
		}
		if depth == 0 {
			rep.null = true
		}
		return false, nil
	case resp.KindError:
		rr.noteError(rep, depth, idx, string(rest[:min(len(rest), maxErrorText)]))
		return false, nil
	case resp.KindBulkString, resp.KindVerbatim, resp.KindBlobError:
		n, ok := resp.ParseInt(rest)
		if !ok || n < -1 || (n == -1 && kind != resp.KindBulkString) {
			return false, rr.protoErr("invalid length of a " + kind.String() + " reply")
		}
		if n == -1 {
			if depth == 0 {
				rep.null = true
			}
			return false, nil
		}
		if kind == resp.KindBlobError {
			text, err := rr.payloadPrefix(n)
			if err != nil {
				return false, err
			}
			rr.noteError(rep, depth, idx, text)
			return false, nil
		}
		return false, rr.skipPayload(n)
	case resp.KindArray, resp.KindSet, resp.KindPush, resp.KindMap, resp.KindAttribute:
		n, ok := resp.ParseInt(rest)
		if !ok || n < -1 || (n == -1 && kind != resp.KindArray) {
			return false, rr.protoErr("invalid length of a " + kind.String() + " reply")
		}
		if n == -1 {
			if depth == 0 {
				rep.null = true
			}
			return false, nil
		}
		elems := n
		if kind == resp.KindMap || kind == resp.KindAttribute {
			if n > (1<<62)/2 {
				return false, rr.protoErr("map reply too long")
			}
			elems = 2 * n
		}
		// The loop allocates nothing per element, so a huge count is only as costly as
		// the input that backs it.
		for i := int64(0); i < elems; i++ {
			if _, err := rr.value(rep, depth+1, i); err != nil {
				return false, err
			}
		}
		if kind == resp.KindAttribute {
			// Attributes annotate the value that follows; that value is the reply.
			return rr.value(rep, depth, idx)
		}
		if depth == 0 {
			if kind == resp.KindPush {
				return true, nil
			}
			rep.array = kind == resp.KindArray
			rep.n = n
		}
		return false, nil
	}
	return false, rr.protoErr("unknown reply type " + kind.String())
}

// noteError records an error at the top level or as an element of the top-level array;
// errors nested deeper answer no command of ours.
func (rr *replyReader) noteError(rep *reply, depth int, idx int64, text string) {
	switch depth {
	case 0:
		rep.err = &resp.Error{Msg: text}
	case 1:
		rep.elemErrs = append(rep.elemErrs, elemErr{i: idx, err: &resp.Error{Msg: text}})
	}
}

// skipPayload consumes n payload bytes and the CRLF after them.
func (rr *replyReader) skipPayload(n int64) error {
	for n > 0 {
		step := int(min(n, 1<<30))
		d, err := rr.br.Discard(step)
		rr.off += int64(d)
		if err != nil {
			return noEOF(err)
		}
		n -= int64(d)
	}
	return rr.crlf()
}

// payloadPrefix consumes n payload bytes and the CRLF, returning the first maxErrorText.
func (rr *replyReader) payloadPrefix(n int64) (string, error) {
	keep := int(min(n, maxErrorText))
	b := rr.tmp[:keep]
	got, err := io.ReadFull(rr.br, b)
	rr.off += int64(got)
	if err != nil {
		return "", noEOF(err)
	}
	text := string(b)
	if err := rr.skipPayload(n - int64(keep)); err != nil {
		return "", err
	}
	return text, nil
}

func (rr *replyReader) crlf() error {
	c1, err := rr.br.ReadByte()
	if err != nil {
		return noEOF(err)
	}
	c2, err := rr.br.ReadByte()
	if err != nil {
		return noEOF(err)
	}
	rr.off += 2
	if c1 != '\r' || c2 != '\n' {
		return rr.protoErr("payload not followed by CRLF")
	}
	return nil
}
