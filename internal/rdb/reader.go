package rdb

import (
	"errors"
	"io"

	"github.com/ferrysync/ferry/internal/crc"
)

// errMarkOverflow is returned by reader primitives while a mark is set and a read
// would retain more than markLimit bytes since the mark. It never escapes the package:
// Raw turns it into ok=false and the empty-key peek into "not empty".
var errMarkOverflow = errors.New("rdb: capture limit exceeded")

const (
	defaultBufferSize = 64 << 10
	// maxNoProgress bounds how often a misbehaving io.Reader may return (0, nil).
	maxNoProgress = 100
)

// reader is a bufio-like reader specialised for the decoder:
//   - it counts consumed bytes (offsets in errors, raw value boundaries);
//   - it keeps the running CRC64 of everything consumed, computed lazily over whole
//     buffer spans when they are discarded (fast, and correct across rewinds);
//   - a mark pins the bytes after it in the buffer so a value can be captured
//     zero-copy (Raw) or re-read from its start (rewind) when it turns out too big;
//     markLimit bounds what a mark may pin, which is what bounds memory;
//   - it never reads past limit when the input size is known, and grows its buffer
//     only as data actually arrives, so a bogus length in the input cannot make it
//     allocate more than about twice what was really read.
type reader struct {
	src    io.Reader
	buf    []byte
	r, w   int   // consumed / filled positions in buf
	base   int64 // input offset of buf[0]
	limit  int64 // total input size when known (> 0)
	srcErr error // sticky error from src

	crcOn bool
	crc   uint64
	crcAt int // buf[:crcAt] is already folded into crc

	mark      int // position pinned in buf, or -1
	markLimit int

	maxRead int64 // largest single span a caller may ask for (Options.MaxElementSize)
	minBuf  int
}

func (rd *reader) init(src io.Reader, limit, maxRead int64, bufSize int) {
	if bufSize <= 0 {
		bufSize = defaultBufferSize
	}
	if limit > 0 && limit < int64(bufSize) { // small inputs get a small buffer
		bufSize = max(int(limit), 16)
	}
	*rd = reader{src: src, limit: limit, maxRead: maxRead, mark: -1, minBuf: bufSize}
}

func (rd *reader) offset() int64 { return rd.base + int64(rd.r) }

// setMark pins the current position; limit is the most bytes reads may consume past it.
func (rd *reader) setMark(limit int) {
	rd.mark = rd.r
	rd.markLimit = limit
}

// rewind goes back to the mark and clears it.
func (rd *reader) rewind() {
	rd.r = rd.mark
	rd.mark = -1
}

func (rd *reader) clearMark() { rd.mark = -1 }

// marked returns the bytes consumed since the mark (valid until the next read).
func (rd *reader) marked() []byte { return rd.buf[rd.mark:rd.r] }

// buffered returns bytes read from src but not consumed.
func (rd *reader) buffered() []byte { return rd.buf[rd.r:rd.w] }

// sum folds everything consumed so far into the CRC and returns it.
func (rd *reader) sum() uint64 {
	if rd.crcOn && rd.crcAt < rd.r {
		rd.crc = crc.CRC64(rd.crc, rd.buf[rd.crcAt:rd.r])
		rd.crcAt = rd.r
	}
	return rd.crc
}

// fill makes at least n unconsumed bytes available in buf[r:w].
func (rd *reader) fill(n int) error {
	if rd.mark >= 0 && rd.r+n-rd.mark > rd.markLimit {
		return errMarkOverflow
	}
	if rd.w-rd.r >= n {
		return nil
	}
	if int64(n) > rd.maxRead {
		return causef(ErrTooLarge, "a %d-byte field is larger than the %d-byte limit", n, rd.maxRead)
	}
	if rd.limit > 0 && rd.offset()+int64(n) > rd.limit {
		return ErrTruncated
	}
	noProgress := 0
	for rd.w-rd.r < n {
		if rd.srcErr != nil {
			if rd.srcErr == io.EOF {
				return ErrTruncated
			}
			return rd.srcErr
		}
		if rd.w == len(rd.buf) {
			rd.makeRoom()
		}
		end := len(rd.buf)
		if rd.limit > 0 {
			if left := rd.limit - (rd.base + int64(rd.w)); int64(end-rd.w) > left {
				end = rd.w + int(left)
			}
		}
		if end == rd.w { // limit reached
			rd.srcErr = io.EOF
			continue
		}
		m, err := rd.src.Read(rd.buf[rd.w:end])
		if m < 0 || m > end-rd.w {
			return errors.New("rdb: source reader returned an invalid count")
		}
		rd.w += m
		if err != nil {
			rd.srcErr = err
		} else if m == 0 {
			if noProgress++; noProgress > maxNoProgress {
				return io.ErrNoProgress
			}
		}
	}
	return nil
}

// makeRoom discards what is neither unconsumed nor pinned, then grows the buffer if the
// free tail is still empty. Growth at most doubles, so it follows the data that
// actually arrives rather than the size a length field claims.
func (rd *reader) makeRoom() {
	keep := rd.r
	if rd.mark >= 0 && rd.mark < keep {
		keep = rd.mark
	}
	if keep > 0 {
		if rd.crcOn && rd.crcAt < keep {
			rd.crc = crc.CRC64(rd.crc, rd.buf[rd.crcAt:keep])
			rd.crcAt = keep
		}
		copy(rd.buf, rd.buf[keep:rd.w])
		rd.w -= keep
		rd.r -= keep
		rd.crcAt = max(rd.crcAt-keep, 0)
		if rd.mark >= 0 {
			rd.mark -= keep
		}
		rd.base += int64(keep)
	}
	if rd.w < len(rd.buf) {
		return
	}
	size := 2 * len(rd.buf)
	if size < rd.minBuf {
		size = rd.minBuf
	}
	nb := make([]byte, size)
	copy(nb, rd.buf[:rd.w])
	rd.buf = nb
}

func (rd *reader) readByte() (byte, error) {
	if rd.r < rd.w && (rd.mark < 0 || rd.r+1-rd.mark <= rd.markLimit) {
		b := rd.buf[rd.r]
		rd.r++
		return b, nil
	}
	if err := rd.fill(1); err != nil {
		return 0, err
	}
	b := rd.buf[rd.r]
	rd.r++
	return b, nil
}

// readN returns the next n bytes, valid until the next call on the reader.
func (rd *reader) readN(n int) ([]byte, error) {
	if n < 0 {
		return nil, ErrCorrupt
	}
	if err := rd.fill(n); err != nil {
		return nil, err
	}
	b := rd.buf[rd.r : rd.r+n : rd.r+n]
	rd.r += n
	return b, nil
}

// skip consumes n bytes. Without a mark it streams through them in buffer-sized steps.
func (rd *reader) skip(n int64) error {
	if n < 0 {
		return ErrCorrupt
	}
	if rd.mark >= 0 {
		if int64(rd.r)+n-int64(rd.mark) > int64(rd.markLimit) {
			return errMarkOverflow
		}
		if err := rd.fill(int(n)); err != nil {
			return err
		}
		rd.r += int(n)
		return nil
	}
	if rd.limit > 0 && rd.offset()+n > rd.limit {
		return ErrTruncated
	}
	for {
		avail := int64(rd.w - rd.r)
		if avail >= n {
			rd.r += int(n)
			return nil
		}
		rd.r = rd.w
		n -= avail
		if err := rd.fill(1); err != nil {
			return err
		}
	}
}
