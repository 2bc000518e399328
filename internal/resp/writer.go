package resp

import (
	"io"
	"strconv"
)

var crlf = []byte("\r\n")

// bulkOverhead is the most a bulk string adds to its payload: "$", 20 digits, 2 CRLFs.
const bulkOverhead = 25

func appendHeader(dst []byte, k Kind, n int64) []byte {
	dst = append(dst, byte(k))
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\r', '\n')
}

// AppendArrayHeader appends "*<n>\r\n".
func AppendArrayHeader(dst []byte, n int) []byte {
	return appendHeader(dst, KindArray, int64(n))
}

// AppendBulk appends b as a bulk string.
func AppendBulk(dst, b []byte) []byte {
	dst = appendHeader(dst, KindBulkString, int64(len(b)))
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendBulkString appends s as a bulk string.
func AppendBulkString(dst []byte, s string) []byte {
	dst = appendHeader(dst, KindBulkString, int64(len(s)))
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendInt appends n in decimal as a bulk string, the way command arguments carry numbers.
func AppendInt(dst []byte, n int64) []byte {
	var tmp [20]byte
	return AppendBulk(dst, strconv.AppendInt(tmp[:0], n, 10))
}

// AppendCommand appends a command: an array of bulk strings.
func AppendCommand(dst []byte, args ...[]byte) []byte {
	dst = AppendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = AppendBulk(dst, a)
	}
	return dst
}

// AppendCommandStrings appends a command given as strings.
func AppendCommandStrings(dst []byte, args ...string) []byte {
	dst = AppendArrayHeader(dst, len(args))
	for _, a := range args {
		dst = AppendBulkString(dst, a)
	}
	return dst
}

// AppendValue appends v in its own RESP type, so a value read by ReadValue is written back
// byte for byte as long as it came without attributes. Null values are written as the
// null of their kind ($-1, *-1, or '_' for other kinds). A map writes len(Elems)/2 pairs.
// A Value of an unknown kind (the zero Value included) is written as the RESP3 null.
// Line-typed values (+ - , ( ) must not contain CR or LF; that is the caller's duty.
func AppendValue(dst []byte, v Value) []byte {
	switch v.Kind {
	case KindSimpleString, KindError, KindDouble, KindBigNumber:
		if v.Null {
			return append(dst, '_', '\r', '\n')
		}
		dst = append(dst, byte(v.Kind))
		dst = append(dst, v.Str...)
		return append(dst, '\r', '\n')
	case KindInteger:
		return appendHeader(dst, KindInteger, v.Int)
	case KindBoolean:
		if v.Int != 0 {
			return append(dst, "#t\r\n"...)
		}
		return append(dst, "#f\r\n"...)
	case KindBulkString, KindBlobError, KindVerbatim:
		if v.Null {
			if v.Kind == KindBulkString {
				return append(dst, "$-1\r\n"...)
			}
			return append(dst, '_', '\r', '\n')
		}
		dst = appendHeader(dst, v.Kind, int64(len(v.Str)))
		dst = append(dst, v.Str...)
		return append(dst, '\r', '\n')
	case KindArray, KindSet, KindPush, KindMap, KindAttribute:
		if v.Null {
			if v.Kind == KindArray {
				return append(dst, "*-1\r\n"...)
			}
			return append(dst, '_', '\r', '\n')
		}
		n := len(v.Elems)
		if v.Kind == KindMap || v.Kind == KindAttribute {
			n /= 2
		}
		dst = appendHeader(dst, v.Kind, int64(n))
		for i, e := range v.Elems {
			if (v.Kind == KindMap || v.Kind == KindAttribute) && i >= 2*n {
				break // an odd trailing key has no value and is not written
			}
			dst = AppendValue(dst, e)
		}
		return dst
	}
	return append(dst, '_', '\r', '\n')
}

// Writer buffers encoded commands for an io.Writer, reusing its buffer, so pipelined
// writes cost no allocation per command. Arguments at least as large as the buffer are
// written straight through instead of being copied. Like bufio.Writer, the first write
// error is sticky. A Writer is not safe for concurrent use.
type Writer struct {
	w    io.Writer
	buf  []byte
	size int
	err  error
}

// NewWriter returns a Writer with a buffer of size bytes (DefaultBufferSize if size <= 0).
// Buffered data is written out when it reaches size and on Flush.
func NewWriter(w io.Writer, size int) *Writer {
	if size <= 0 {
		size = DefaultBufferSize
	}
	return &Writer{w: w, buf: make([]byte, 0, size+bulkOverhead+32), size: size}
}

// Reset discards buffered data and any error and writes to w.
func (w *Writer) Reset(wr io.Writer) {
	w.w = wr
	w.buf = w.buf[:0]
	w.err = nil
}

// Buffered returns the number of bytes waiting for Flush.
func (w *Writer) Buffered() int { return len(w.buf) }

// WriteCommand encodes one command.
func (w *Writer) WriteCommand(args ...[]byte) error {
	if w.err != nil {
		return w.err
	}
	w.buf = AppendArrayHeader(w.buf, len(args))
	for _, a := range args {
		if len(a) < w.size {
			// Write out before the buffer would outgrow its size, so a command with
			// many arguments does not leave a huge buffer behind.
			if len(w.buf)+len(a)+bulkOverhead > cap(w.buf) {
				if err := w.Flush(); err != nil {
					return err
				}
			}
			w.buf = AppendBulk(w.buf, a)
			continue
		}
		w.buf = appendHeader(w.buf, KindBulkString, int64(len(a)))
		if err := w.Flush(); err != nil {
			return err
		}
		if err := w.writeAll(a); err != nil {
			return err
		}
		w.buf = append(w.buf, crlf...)
	}
	return w.flushIfFull()
}

// WriteCommandStrings encodes one command given as strings.
func (w *Writer) WriteCommandStrings(args ...string) error {
	if w.err != nil {
		return w.err
	}
	w.buf = AppendCommandStrings(w.buf, args...)
	return w.flushIfFull()
}

// Write appends raw, already encoded bytes.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if len(p) >= w.size {
		if err := w.Flush(); err != nil {
			return 0, err
		}
		if err := w.writeAll(p); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	return len(p), w.flushIfFull()
}

func (w *Writer) flushIfFull() error {
	if len(w.buf) >= w.size {
		return w.Flush()
	}
	return nil
}

// Flush writes the buffered bytes to the underlying writer.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	err := w.writeAll(w.buf)
	w.buf = w.buf[:0]
	return err
}

func (w *Writer) writeAll(p []byte) error {
	n, err := w.w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = err
	}
	return err
}
