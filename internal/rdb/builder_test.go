package rdb

import (
	"encoding/binary"
	"math"

	"github.com/ferrysync/ferry/internal/crc"
)

// rdbBuilder writes RDB bytes for tests that need inputs no fixture has.
type rdbBuilder struct{ b []byte }

func newRDB(magic string) *rdbBuilder { return &rdbBuilder{b: []byte(magic)} }

func (w *rdbBuilder) byte1(c byte) *rdbBuilder { w.b = append(w.b, c); return w }

func (w *rdbBuilder) raw(p []byte) *rdbBuilder { w.b = append(w.b, p...); return w }

func appendLen(b []byte, n uint64) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, byte(n>>8)|0x40, byte(n))
	case n <= math.MaxUint32:
		b = append(b, 0x80)
		return binary.BigEndian.AppendUint32(b, uint32(n))
	default:
		b = append(b, 0x81)
		return binary.BigEndian.AppendUint64(b, n)
	}
}

func appendStr(b []byte, s string) []byte {
	b = appendLen(b, uint64(len(s)))
	return append(b, s...)
}

func (w *rdbBuilder) len(n uint64) *rdbBuilder { w.b = appendLen(w.b, n); return w }

func (w *rdbBuilder) str(s string) *rdbBuilder { w.b = appendStr(w.b, s); return w }

func (w *rdbBuilder) millis(ms int64) *rdbBuilder {
	w.b = binary.LittleEndian.AppendUint64(w.b, uint64(ms))
	return w
}

func (w *rdbBuilder) aux(k, v string) *rdbBuilder { return w.byte1(opAux).str(k).str(v) }

// key starts a key record of type t.
func (w *rdbBuilder) key(t Type, k string) *rdbBuilder { return w.byte1(byte(t)).str(k) }

// end appends EOF and, for v5+ files, the CRC64 of everything before it.
func (w *rdbBuilder) end(withCRC bool) []byte {
	w.b = append(w.b, opEOF)
	if withCRC {
		w.b = binary.LittleEndian.AppendUint64(w.b, crc.CRC64(0, w.b))
	}
	return w.b
}

// listpack encodes elements (string or int64) as a listpack.
func listpack(elems ...any) []byte {
	b := make([]byte, 6)
	for _, e := range elems {
		start := len(b)
		switch v := e.(type) {
		case string:
			switch {
			case len(v) < 64:
				b = append(b, 0x80|byte(len(v)))
			case len(v) < 4096:
				b = append(b, 0xE0|byte(len(v)>>8), byte(len(v)))
			default:
				b = append(b, 0xF0)
				b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
			}
			b = append(b, v...)
		case int:
			b = append(b, 0xF4)
			b = binary.LittleEndian.AppendUint64(b, uint64(int64(v)))
		case int64:
			b = append(b, 0xF4)
			b = binary.LittleEndian.AppendUint64(b, uint64(v))
		default:
			panic("listpack: unsupported element")
		}
		l := uint64(len(b) - start)
		n := lpBacklenSize(l)
		for i := n - 1; i >= 0; i-- {
			c := byte(l >> (7 * uint(i)) & 127)
			if i < n-1 {
				c |= 128
			}
			b = append(b, c)
		}
	}
	b = append(b, 0xFF)
	binary.LittleEndian.PutUint32(b, uint32(len(b)))
	count := len(elems)
	if count > 65535 {
		count = 65535
	}
	binary.LittleEndian.PutUint16(b[4:], uint16(count))
	return b
}
