package resp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// Reader defaults; each can be changed through ReaderOptions.
const (
	// DefaultBufferSize is the read buffer: 64 KiB holds a typical pipelined batch of
	// commands, so ReadCommand rarely has to assemble an argument outside it.
	DefaultBufferSize = 64 << 10
	// DefaultMaxBulkLen matches Redis's default proto-max-bulk-len (512 MiB).
	DefaultMaxBulkLen = 512 << 20
	// DefaultMaxElements caps the declared length of one aggregate (for maps and attributes,
	// the number of pairs). Redis 7 accepts commands of up to INT_MAX arguments and
	// replicates them as they came, so the cap is well above any sane command (an MSET of
	// 8 million keys) while still refusing nonsense lengths. Memory is not reserved from
	// the declared length: it grows as elements arrive.
	DefaultMaxElements = 1 << 24
	// DefaultMaxDepth is the deepest nesting of aggregates ReadValue accepts; replies from
	// Redis nest at most a few levels (COMMAND DOCS, XINFO STREAM FULL).
	DefaultMaxDepth = 32
	// DefaultMaxLineLen caps simple strings, errors, doubles, big numbers and ReadLine.
	DefaultMaxLineLen = 1 << 20

	// minBufferSize keeps every length line ("$<len>\r\n") inside one buffer.
	minBufferSize = 64
	// maxLengthLine is the longest length or integer line accepted: type byte, sign,
	// 20 digits, CRLF, with room to spare. Longer lines are rejected as soon as they are
	// seen instead of being buffered in the hope of a terminator.
	maxLengthLine = 32
	// retainedScratch is the largest scratch buffer kept for good. A larger one is kept
	// while big commands keep coming and released after releaseAfter commands that did
	// not need it: one huge value should not pin hundreds of MiB for the life of a
	// replication stream, and a run of them should not allocate per command.
	retainedScratch = 4 << 20
	releaseAfter    = 64
	// growChunk is the smallest step by which a payload buffer grows while its bytes
	// arrive; growth is otherwise geometric, so memory stays within ~2x the input read.
	growChunk = 64 << 10
)

// ReaderOptions tunes a Reader. Zero fields take the defaults above.
type ReaderOptions struct {
	BufferSize  int   // read buffer in bytes; default DefaultBufferSize, at least 64
	MaxBulkLen  int64 // longest bulk string, bulk error or verbatim string; default 512 MiB
	MaxElements int64 // longest aggregate (pairs for maps); default DefaultMaxElements
	MaxDepth    int   // deepest aggregate nesting; default DefaultMaxDepth
	MaxLineLen  int   // longest simple line; default DefaultMaxLineLen
}

func (o ReaderOptions) withDefaults() ReaderOptions {
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
	o.BufferSize = max(o.BufferSize, minBufferSize)
	if o.MaxBulkLen <= 0 {
		o.MaxBulkLen = DefaultMaxBulkLen
	}
	if o.MaxElements <= 0 {
		o.MaxElements = DefaultMaxElements
	}
	if o.MaxDepth <= 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxLineLen <= 0 {
		o.MaxLineLen = DefaultMaxLineLen
	}
	return o
}

// Reader parses RESP from an io.Reader through its own buffer and counts every byte it
// consumes, so Offset is exactly the position in the stream.
//
// Errors: a malformed element gives a *ProtocolError; input that ends inside an element
// gives an error wrapping io.ErrUnexpectedEOF; input that ends cleanly between elements
// gives io.EOF itself. Once an error has cost the Reader bytes of a partly read element,
// the stream position is lost and every later call returns the same error. An error
// from the underlying reader (a deadline, say) before any byte of the element was
// consumed leaves the Reader intact, and the call can be repeated.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	rd       io.Reader
	opts     ReaderOptions
	buf      []byte
	pos, end int   // unread bytes are buf[pos:end]
	off      int64 // stream offset of buf[pos]
	rerr     error // error returned together with data by rd, reported on the next read
	err      error // sticky: the stream position is lost

	// ReadCommand state, reused across calls.
	args  [][]byte
	spans []span
	arena []byte // arguments that could not stay in buf
	// smallRun counts commands since one needed an arena above retainedScratch: a
	// stream of big values keeps its arena, a stream that went back to small
	// commands gives it up.
	smallRun int
	line     []byte // lines longer than buf
}

// span locates one parsed command argument in buf or in the arena.
type span struct {
	start, end int
	inArena    bool
}

// NewReader returns a Reader over rd.
func NewReader(rd io.Reader, opts ReaderOptions) *Reader {
	opts = opts.withDefaults()
	return &Reader{rd: rd, opts: opts, buf: make([]byte, opts.BufferSize)}
}

// Reset discards all state, buffered data and errors and reads from rd, keeping buffers.
// The offset restarts at 0.
func (r *Reader) Reset(rd io.Reader) {
	r.rd = rd
	r.pos, r.end, r.off = 0, 0, 0
	r.rerr, r.err = nil, nil
}

// Offset returns the number of bytes consumed so far.
func (r *Reader) Offset() int64 { return r.off }

// Buffered returns the number of bytes read from the underlying reader but not yet consumed.
func (r *Reader) Buffered() int { return r.end - r.pos }

func (r *Reader) consume(n int) {
	r.pos += n
	r.off += int64(n)
}

// offAt converts a buffer index to a stream offset.
func (r *Reader) offAt(i int) int64 { return r.off + int64(i-r.pos) }

func (r *Reader) protoErr(at int64, msg string) error {
	return &ProtocolError{Offset: at, Msg: msg}
}

// errBufferFull means more was called with no room left; callers prevent it, so seeing
// it is a bug in this package.
var errBufferFull = errors.New("resp: internal error: read buffer full")

// readRaw reads from the underlying reader, first reporting an error held back from a
// read that also returned data.
func (r *Reader) readRaw(p []byte) (int, error) {
	if err := r.rerr; err != nil {
		r.rerr = nil
		return 0, err
	}
	for range 100 {
		n, err := r.rd.Read(p)
		if n < 0 || n > len(p) {
			return 0, fmt.Errorf("resp: underlying reader returned invalid count %d", n)
		}
		if n > 0 {
			r.rerr = err
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, io.ErrNoProgress
}

// more reads at least one byte into the buffer, keeping buf[pos:end]. It may move the
// unread bytes to the front of the buffer; shift is how far they moved, so callers that
// hold buffer indexes subtract it.
func (r *Reader) more() (shift int, err error) {
	// Compacting costs a copy of the unread tail, so do it only when the buffer is empty
	// or the free space at its end is getting small.
	if r.pos > 0 && (r.pos == r.end || len(r.buf)-r.end < len(r.buf)/2) {
		shift = r.pos
		r.end = copy(r.buf, r.buf[r.pos:r.end])
		r.pos = 0
	}
	if r.end == len(r.buf) {
		return shift, errBufferFull
	}
	n, err := r.readRaw(r.buf[r.end:])
	r.end += n
	return shift, err
}

// fail turns an error from parsing one element that started at offset start into what
// the caller sees, and makes it sticky when bytes of the element were consumed.
func (r *Reader) fail(err error, start int64) error {
	var pe *ProtocolError
	switch {
	case errors.As(err, &pe):
	case err == io.EOF && r.off == start && r.pos == r.end:
		return io.EOF // clean end between elements
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		err = fmt.Errorf("resp: input ends inside an element at byte %d: %w",
			r.off+int64(r.end-r.pos), io.ErrUnexpectedEOF)
	default:
		err = fmt.Errorf("resp: read at byte %d: %w", r.off+int64(r.end-r.pos), err)
	}
	if r.off != start || pe != nil {
		r.err = err
	}
	return err
}

// PeekByte returns the next byte without consuming it, reading if the buffer is empty.
func (r *Reader) PeekByte() (byte, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.pos == r.end {
		if _, err := r.more(); err != nil {
			return 0, r.fail(err, r.off)
		}
	}
	return r.buf[r.pos], nil
}

// SkipNewlines consumes '\n' bytes at the read position (a master sends them as
// keepalives while it prepares an RDB) and returns how many it consumed. It reads from
// the underlying reader only when nothing is buffered, and returns once the buffered
// newlines are consumed, so a caller sees each keepalive as it arrives.
func (r *Reader) SkipNewlines() (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.pos == r.end {
		if _, err := r.more(); err != nil {
			return 0, r.fail(err, r.off)
		}
	}
	n := 0
	for r.pos+n < r.end && r.buf[r.pos+n] == '\n' {
		n++
	}
	r.consume(n)
	return n, nil
}

// Read reads raw bytes: first what is buffered, then straight from the underlying
// reader. The bytes are counted in Offset. It is how a replica copies an RDB payload
// that follows "$<len>" without parsing it.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if r.pos == r.end {
		if len(p) >= len(r.buf) {
			// Large reads bypass the buffer to avoid a copy.
			n, err := r.readRaw(p)
			r.off += int64(n)
			return n, err
		}
		if _, err := r.more(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.pos:r.end])
	r.consume(n)
	return n, nil
}

// ReadLine reads one line terminated by CRLF or LF and returns it without the
// terminator; the bytes, terminator included, are counted in Offset. The slice aliases
// the Reader's buffers and is valid until the next call. Lines are capped at MaxLineLen.
func (r *Reader) ReadLine() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	start := r.off
	line, err := r.readLine(r.opts.MaxLineLen, true)
	if err != nil {
		return nil, r.fail(err, start)
	}
	return line, nil
}

// readLine reads and consumes one line at the read position. RESP requires CRLF; lenient
// also accepts a bare LF (for ReadLine). The result aliases buf or r.line.
func (r *Reader) readLine(limit int, lenient bool) ([]byte, error) {
	scan := r.pos
	for {
		if i := bytes.IndexByte(r.buf[scan:r.end], '\n'); i >= 0 {
			nl := scan + i
			if nl-r.pos > limit+1 {
				return nil, r.protoErr(r.off, fmt.Sprintf("line longer than %d bytes", limit))
			}
			e := nl
			if nl > r.pos && r.buf[nl-1] == '\r' {
				e = nl - 1
			} else if !lenient {
				return nil, r.protoErr(r.offAt(nl), "line terminated by LF without CR")
			}
			line := r.buf[r.pos:e]
			r.consume(nl + 1 - r.pos)
			return line, nil
		}
		if r.end-r.pos > limit+1 {
			return nil, r.protoErr(r.off, fmt.Sprintf("line longer than %d bytes", limit))
		}
		if r.end-r.pos == len(r.buf) {
			return r.readLongLine(limit, lenient)
		}
		scan = r.end
		shift, err := r.more()
		scan -= shift
		if err != nil {
			return nil, err
		}
	}
}

// readLongLine continues a line that does not fit in the buffer, assembling it in r.line.
func (r *Reader) readLongLine(limit int, lenient bool) ([]byte, error) {
	start := r.off
	if cap(r.line) > retainedScratch {
		r.line = nil
	}
	r.line = append(r.line[:0], r.buf[r.pos:r.end]...)
	r.consume(r.end - r.pos)
	for {
		if _, err := r.more(); err != nil {
			return nil, err
		}
		i := bytes.IndexByte(r.buf[r.pos:r.end], '\n')
		if i < 0 {
			i = r.end - r.pos
		}
		if len(r.line)+i > limit+1 {
			return nil, r.protoErr(start, fmt.Sprintf("line longer than %d bytes", limit))
		}
		r.line = append(r.line, r.buf[r.pos:r.pos+i]...)
		if r.pos+i == r.end {
			r.consume(i)
			continue
		}
		r.consume(i + 1)
		if n := len(r.line); n > 0 && r.line[n-1] == '\r' {
			return r.line[:n-1], nil
		}
		if !lenient {
			return nil, r.protoErr(r.off-1, "line terminated by LF without CR")
		}
		return r.line, nil
	}
}

// Element classes, dispatched on the type byte.
const (
	clsInvalid = iota
	clsLine    // + -
	clsInt     // :
	clsBlob    // $ ! =
	clsAgg     // * ~ >
	clsMap     // %
	clsAttr    // |
	clsNull    // _
	clsBool    // #
	clsDouble  // ,
	clsBig     // (
)

// kindClass maps every possible first byte to its class; anything else is invalid.
var kindClass = [256]uint8{
	'+': clsLine, '-': clsLine, ':': clsInt,
	'$': clsBlob, '!': clsBlob, '=': clsBlob,
	'*': clsAgg, '~': clsAgg, '>': clsAgg,
	'%': clsMap, '|': clsAttr,
	'_': clsNull, '#': clsBool, ',': clsDouble, '(': clsBig,
}

// ReadValue reads one complete element of any RESP2 or RESP3 type and returns an owned
// copy. RESP3 attributes ('|') are read, counted in Offset, and dropped: the value they
// annotate is returned instead, so callers never see KindAttribute. Error replies come
// back as values of KindError / KindBlobError, not as Go errors (see Value.Err).
func (r *Reader) ReadValue() (Value, error) {
	if r.err != nil {
		return Value{}, r.err
	}
	start := r.off
	v, err := r.readValue(1)
	if err != nil {
		return Value{}, r.fail(err, start)
	}
	return v, nil
}

func (r *Reader) readValue(depth int) (Value, error) {
	for {
		if r.pos == r.end {
			if _, err := r.more(); err != nil {
				return Value{}, err
			}
		}
		at := r.off
		k := r.buf[r.pos]
		cls := kindClass[k]
		limit := maxLengthLine
		switch cls {
		case clsInvalid:
			return Value{}, r.protoErr(at, fmt.Sprintf("invalid type byte %q", k))
		case clsLine, clsDouble, clsBig:
			limit = r.opts.MaxLineLen
		}
		line, err := r.readLine(limit, false)
		if err != nil {
			return Value{}, err
		}
		body := line[1:]
		kind := Kind(k)
		switch cls {
		case clsLine:
			return Value{Kind: kind, Str: clone(body)}, nil
		case clsInt:
			n, ok := ParseInt(body)
			if !ok {
				return Value{}, r.protoErr(at+1, fmt.Sprintf("invalid integer %q", body))
			}
			return Value{Kind: kind, Int: n}, nil
		case clsNull:
			if len(body) != 0 {
				return Value{}, r.protoErr(at+1, fmt.Sprintf("invalid null %q", body))
			}
			return Value{Kind: kind, Null: true}, nil
		case clsBool:
			if len(body) == 1 && (body[0] == 't' || body[0] == 'f') {
				return Value{Kind: kind, Int: int64(btoi(body[0] == 't'))}, nil
			}
			return Value{}, r.protoErr(at+1, fmt.Sprintf("invalid boolean %q", body))
		case clsDouble:
			if !validDouble(body) {
				return Value{}, r.protoErr(at+1, fmt.Sprintf("invalid double %q", body))
			}
			return Value{Kind: kind, Str: clone(body)}, nil
		case clsBig:
			if !validBigNumber(body) {
				return Value{}, r.protoErr(at+1, fmt.Sprintf("invalid big number %q", body))
			}
			return Value{Kind: kind, Str: clone(body)}, nil
		case clsBlob:
			n, ok := ParseInt(body)
			if !ok || n < -1 || (n == -1 && kind != KindBulkString) {
				return Value{}, r.protoErr(at+1, fmt.Sprintf("invalid %s length %q", blobName(kind), body))
			}
			if n == -1 {
				return Value{Kind: kind, Null: true}, nil
			}
			if n > r.opts.MaxBulkLen {
				return Value{}, r.protoErr(at+1, fmt.Sprintf("%s length %d exceeds the limit of %d bytes", blobName(kind), n, r.opts.MaxBulkLen))
			}
			if kind == KindVerbatim && n < 4 {
				return Value{}, r.protoErr(at+1, fmt.Sprintf("verbatim string length %d is shorter than its format prefix", n))
			}
			payloadAt := r.off
			p, err := r.readPayload(int(n))
			if err != nil {
				return Value{}, err
			}
			if kind == KindVerbatim && p[3] != ':' {
				return Value{}, r.protoErr(payloadAt+3, "verbatim string without ':' after its 3-byte format")
			}
			return Value{Kind: kind, Str: p}, nil
		default: // aggregates
			n, ok := ParseInt(body)
			if !ok || n < -1 || (n == -1 && kind != KindArray) {
				return Value{}, r.protoErr(at+1, fmt.Sprintf("invalid %s length %q", aggName(kind), body))
			}
			if n == -1 {
				return Value{Kind: kind, Null: true}, nil
			}
			if n > r.opts.MaxElements {
				return Value{}, r.protoErr(at+1, fmt.Sprintf("%s length %d exceeds the limit of %d", aggName(kind), n, r.opts.MaxElements))
			}
			if depth > r.opts.MaxDepth {
				return Value{}, r.protoErr(at, fmt.Sprintf("aggregates nested deeper than %d", r.opts.MaxDepth))
			}
			if cls != clsAgg {
				n *= 2
			}
			// The declared length is untrusted: reserve a bounded amount and let append
			// grow the slice as elements actually arrive.
			elems := make([]Value, 0, min(n, 1024))
			for range n {
				e, err := r.readValue(depth + 1)
				if err != nil {
					return Value{}, err
				}
				elems = append(elems, e)
			}
			if cls == clsAttr {
				continue // the attribute is dropped; read the value it annotates
			}
			return Value{Kind: kind, Elems: elems}, nil
		}
	}
}

// readPayload reads n payload bytes and the CRLF after them into a new slice, growing it
// only as the bytes arrive.
func (r *Reader) readPayload(n int) ([]byte, error) {
	out := make([]byte, 0, min(n, max(r.end-r.pos, growChunk)))
	for len(out) < n {
		if r.pos == r.end {
			need := n - len(out)
			if need >= len(r.buf) {
				// Long payloads go straight from the underlying reader to out.
				if len(out) == cap(out) {
					out = slices.Grow(out, min(need, max(len(out), growChunk)))
				}
				m, err := r.readRaw(out[len(out):min(cap(out), n)])
				out = out[:len(out)+m]
				r.off += int64(m)
				if err != nil {
					return nil, err
				}
				continue
			}
			if _, err := r.more(); err != nil {
				return nil, err
			}
		}
		take := min(r.end-r.pos, n-len(out))
		out = append(out, r.buf[r.pos:r.pos+take]...)
		r.consume(take)
	}
	if err := r.expectCRLF(); err != nil {
		return nil, err
	}
	return out, nil
}

// expectCRLF consumes the CRLF that ends a bulk payload.
func (r *Reader) expectCRLF() error {
	for r.end-r.pos < 2 {
		if _, err := r.more(); err != nil {
			return err
		}
	}
	if r.buf[r.pos] != '\r' || r.buf[r.pos+1] != '\n' {
		return r.protoErr(r.off, "bulk payload not followed by CRLF")
	}
	r.consume(2)
	return nil
}

// ReadCommand reads one command as the master's replication stream and clients send it:
// an array of bulk strings. It returns the arguments and n, the exact number of bytes
// the command took. The argument slices alias the Reader's buffers and are valid until
// the next call on the Reader; copy what must outlive it. An empty array (*0, or *-1)
// returns no arguments, as Redis ignores it too. In steady state ReadCommand does not
// allocate: arguments that do not fit in the read buffer are assembled in a reusable
// scratch buffer.
func (r *Reader) ReadCommand() (args [][]byte, n int64, err error) {
	if r.err != nil {
		return nil, 0, r.err
	}
	start := r.off
	if cap(r.arena) > retainedScratch && r.smallRun >= releaseAfter {
		r.arena = nil
	}
	r.arena = r.arena[:0]
	r.spans = r.spans[:0]
	if err := r.readCommand(); err != nil {
		return nil, 0, r.fail(err, start)
	}
	if len(r.arena) > retainedScratch {
		r.smallRun = 0
	} else {
		r.smallRun++
	}
	r.args = r.args[:0]
	for _, s := range r.spans {
		b := r.buf
		if s.inArena {
			b = r.arena
		}
		r.args = append(r.args, b[s.start:s.end:s.end])
	}
	return r.args, r.off - start, nil
}

// readCommand parses with a cursor p and consumes nothing until the command is complete,
// so an I/O error with nothing consumed leaves the Reader able to retry. Only when the
// command outgrows the buffer are the parsed arguments moved to the arena and their bytes
// consumed (see spill).
func (r *Reader) readCommand() error {
	p := r.pos
	count, next, ok := r.fastLen(p, '*')
	if !ok {
		ls, le, lnext, err := r.cmdLine(p, '*', 0)
		if err != nil {
			return err
		}
		if count, ok = ParseInt(r.buf[ls+1 : le]); !ok || count < -1 {
			return r.protoErr(r.offAt(ls+1), fmt.Sprintf("invalid array length %q", r.buf[ls+1:le]))
		}
		p, next = ls, lnext // cmdLine may have moved the buffer
	}
	if count > r.opts.MaxElements {
		return r.protoErr(r.offAt(p+1), fmt.Sprintf("command of %d arguments exceeds the limit of %d", count, r.opts.MaxElements))
	}
	p = next
	for i := int64(1); i <= count; i++ {
		n, next, ok := r.fastLen(p, '$')
		if !ok {
			ls, le, lnext, err := r.cmdLine(p, '$', i)
			if err != nil {
				return err
			}
			// cmdLine may have moved the buffer; ls is where the line is now.
			p, next = ls, lnext
			if n, ok = ParseInt(r.buf[ls+1 : le]); !ok || n < 0 {
				return r.protoErr(r.offAt(ls+1), fmt.Sprintf("invalid bulk length %q", r.buf[ls+1:le]))
			}
		}
		if n > r.opts.MaxBulkLen {
			return r.protoErr(r.offAt(p+1), fmt.Sprintf("bulk length %d exceeds the limit of %d bytes", n, r.opts.MaxBulkLen))
		}
		p = next
		if int(n)+2 > len(r.buf) {
			var err error
			if p, err = r.bigArg(p, int(n)); err != nil {
				return err
			}
			continue
		}
		for r.end-p < int(n)+2 {
			shift, err := r.moreCmd(p)
			p -= shift
			if err != nil {
				return err
			}
		}
		e := p + int(n)
		if r.buf[e] != '\r' || r.buf[e+1] != '\n' {
			return r.protoErr(r.offAt(e), "bulk payload not followed by CRLF")
		}
		r.spans = append(r.spans, span{start: p, end: e})
		p = e + 2
	}
	r.consume(p - r.pos)
	return nil
}

// fastLen parses a length line "<want><digits>\r\n" at p when all of it is buffered
// and it has at most 9 digits, the common case. Anything else returns ok false and takes
// the general path, which also produces the errors, so results never depend on which
// path ran.
func (r *Reader) fastLen(p int, want byte) (n int64, next int, ok bool) {
	b := r.buf[p:r.end]
	if len(b) < 4 || b[0] != want {
		return 0, 0, false
	}
	i := 1
	for ; i < len(b) && i <= 9; i++ {
		c := b[i]
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	if i == 1 || i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
		return 0, 0, false
	}
	return n, p + i + 2, true
}

// cmdLine makes sure the length line at p, which must start with want, is buffered, and
// returns its bounds (ls at the type byte, le at the CR) and the index after it. arg is
// the argument number, for messages.
func (r *Reader) cmdLine(p int, want byte, arg int64) (ls, le, next int, err error) {
	scan := p
	for {
		if p < r.end && r.buf[p] != want {
			if want == '*' {
				return 0, 0, 0, r.protoErr(r.offAt(p), fmt.Sprintf("expected '*' to start a command, got %q", r.buf[p]))
			}
			return 0, 0, 0, r.protoErr(r.offAt(p), fmt.Sprintf("expected '$' to start argument %d, got %q", arg, r.buf[p]))
		}
		if i := bytes.IndexByte(r.buf[scan:r.end], '\n'); i >= 0 {
			nl := scan + i
			// Checked before the terminator, so the error does not depend on how the
			// input was split into reads.
			if nl-p > maxLengthLine {
				return 0, 0, 0, r.protoErr(r.offAt(p), fmt.Sprintf("length line longer than %d bytes", maxLengthLine))
			}
			if nl == p || r.buf[nl-1] != '\r' {
				return 0, 0, 0, r.protoErr(r.offAt(nl), "line terminated by LF without CR")
			}
			return p, nl - 1, nl + 1, nil
		}
		if r.end-p > maxLengthLine {
			return 0, 0, 0, r.protoErr(r.offAt(p), fmt.Sprintf("length line longer than %d bytes", maxLengthLine))
		}
		scan = r.end
		shift, err := r.moreCmd(p)
		p -= shift
		scan -= shift
		if err != nil {
			return 0, 0, 0, err
		}
	}
}

// moreCmd is more for readCommand: when the buffer is full of the command being parsed,
// it first spills the parsed arguments so there is room, and it keeps the spans of
// arguments still in buf pointing at their bytes after a shift.
func (r *Reader) moreCmd(p int) (shift int, err error) {
	if r.pos == 0 && r.end == len(r.buf) {
		r.spill(p)
	}
	shift, err = r.more()
	if shift > 0 {
		for i := range r.spans {
			if !r.spans[i].inArena {
				r.spans[i].start -= shift
				r.spans[i].end -= shift
			}
		}
	}
	return shift, err
}

// spill copies the arguments parsed so far from buf to the arena and consumes the
// buffer up to p, so the rest of the command can use the whole buffer.
func (r *Reader) spill(p int) {
	for i := range r.spans {
		s := &r.spans[i]
		if s.inArena {
			continue
		}
		at := len(r.arena)
		r.arena = append(r.arena, r.buf[s.start:s.end]...)
		*s = span{start: at, end: len(r.arena), inArena: true}
	}
	r.consume(p - r.pos)
}

// bigArg reads an argument longer than the buffer into the arena, growing it as the
// bytes arrive, and returns the buffer index after its CRLF.
func (r *Reader) bigArg(p, n int) (int, error) {
	r.spill(p)
	at := len(r.arena)
	take := min(r.end-r.pos, n)
	r.arena = append(r.arena, r.buf[r.pos:r.pos+take]...)
	r.consume(take)
	for got := take; got < n; {
		need := n - got
		if len(r.arena) == cap(r.arena) {
			r.arena = slices.Grow(r.arena, min(need, max(cap(r.arena), len(r.buf))))
		}
		m, err := r.readRaw(r.arena[len(r.arena):min(cap(r.arena), at+n)])
		r.arena = r.arena[:len(r.arena)+m]
		r.off += int64(m)
		got += m
		if err != nil {
			return 0, err
		}
	}
	if err := r.expectCRLF(); err != nil {
		return 0, err
	}
	r.spans = append(r.spans, span{start: at, end: at + n, inArena: true})
	return r.pos, nil
}

// ParseInt parses an optionally negative decimal integer of at most 19 digits (which
// always fits in a uint64 before the range check), as RESP length and integer lines carry
// it. It allocates nothing; other packages that read raw replies use it too.
func ParseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

func validDouble(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		// strconv would accept '_' separators and hex floats; RESP doubles have neither.
		if c == '_' || c == 'x' || c == 'X' {
			return false
		}
	}
	_, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		var ne *strconv.NumError
		return errors.As(err, &ne) && ne.Err == strconv.ErrRange
	}
	return true
}

func validBigNumber(b []byte) bool {
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// clone copies b; an empty b gives nil so that equal values compare equal regardless of
// how they were produced.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func blobName(k Kind) string {
	switch k {
	case KindBlobError:
		return "bulk error"
	case KindVerbatim:
		return "verbatim string"
	}
	return "bulk"
}

func aggName(k Kind) string {
	switch k {
	case KindMap:
		return "map"
	case KindSet:
		return "set"
	case KindPush:
		return "push"
	case KindAttribute:
		return "attribute"
	}
	return "array"
}
