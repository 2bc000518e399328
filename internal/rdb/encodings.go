package rdb

import (
	"encoding/binary"
	"strconv"
)

// byteSrc is the content of one RDB string that holds an encoded structure (a
// listpack, ziplist, intset or zipmap "blob"), read front to back. Blobs are parsed
// from a byteSrc rather than a []byte so a huge blob can be walked straight off the
// input (or off an LZF stream) without being held in memory.
type byteSrc interface {
	// take returns the next n bytes of the blob, valid until the next call.
	take(n int) ([]byte, error)
	// left is the number of bytes not yet taken.
	left() int64
}

// memSrc is a blob held in memory (a small LZF blob decompressed in one go).
type memSrc struct {
	b []byte
	p int
}

func (m *memSrc) take(n int) ([]byte, error) {
	if n < 0 || n > len(m.b)-m.p {
		return nil, causef(ErrCorrupt, "structure runs past the end of its %d-byte blob", len(m.b))
	}
	b := m.b[m.p : m.p+n : m.p+n]
	m.p += n
	return b, nil
}

func (m *memSrc) left() int64 { return int64(len(m.b) - m.p) }

// rdrSrc is an uncompressed blob read straight from the input.
type rdrSrc struct {
	rd *reader
	n  int64
}

func (s *rdrSrc) take(n int) ([]byte, error) {
	if n < 0 || int64(n) > s.n {
		return nil, causef(ErrCorrupt, "structure runs past the end of its blob")
	}
	b, err := s.rd.readN(n)
	if err != nil {
		return nil, err
	}
	s.n -= int64(n)
	return b, nil
}

func (s *rdrSrc) left() int64 { return s.n }

// prim is one element of an encoded structure: a string or an integer.
type prim struct {
	s     []byte // valid until the next take on the source
	isInt bool
	i     int64
}

// appendTo appends the element's string form (integers in decimal, as Redis would
// return them).
func (p *prim) appendTo(dst []byte) []byte {
	if p.isInt {
		return strconv.AppendInt(dst, p.i, 10)
	}
	return append(dst, p.s...)
}

func (p *prim) float() (float64, error) {
	if p.isInt {
		return float64(p.i), nil
	}
	return parseScore(p.s)
}

// parser is one of the blob parsers below.
type parser interface {
	// next reads the next element; false at the structure's end.
	next(p *prim) (bool, error)
}

// ---- listpack (listpack.c) ----
//
// <total-bytes u32le> <num-elements u16le> <entry>... <0xFF>
// entry: <encoding+data> <backlen: 1–5 bytes holding len(encoding+data)>.

type listpackParser struct {
	src  byteSrc
	done bool
}

func (lp *listpackParser) reset(src byteSrc) error {
	lp.src, lp.done = src, false
	h, err := src.take(6)
	if err != nil {
		return err
	}
	if total := binary.LittleEndian.Uint32(h); int64(total) != src.left()+6 {
		return causef(ErrCorrupt, "listpack header says %d bytes, blob has %d", total, src.left()+6)
	}
	return nil
}

func lpBacklenSize(l uint64) int {
	switch {
	case l <= 127:
		return 1
	case l < 16383:
		return 2
	case l < 2097151:
		return 3
	case l < 268435455:
		return 4
	default:
		return 5
	}
}

func (lp *listpackParser) next(p *prim) (bool, error) {
	if lp.done {
		return false, nil
	}
	b, err := lp.src.take(1)
	if err != nil {
		return false, err
	}
	enc := b[0]
	var hdr, dataLen int // bytes of header (incl. the encoding byte), data bytes
	p.isInt, p.s = false, nil
	switch {
	case enc < 0x80: // 0xxxxxxx: 7-bit unsigned int
		p.isInt, p.i, hdr = true, int64(enc), 1
	case enc&0xC0 == 0x80: // 10xxxxxx: string up to 63 bytes
		hdr, dataLen = 1, int(enc&0x3F)
	case enc&0xE0 == 0xC0: // 110xxxxx yyyyyyyy: 13-bit signed int
		x, err := lp.src.take(1)
		if err != nil {
			return false, err
		}
		v := int64(enc&0x1F)<<8 | int64(x[0])
		if v >= 1<<12 {
			v -= 1 << 13
		}
		p.isInt, p.i, hdr = true, v, 2
	case enc&0xF0 == 0xE0: // 1110xxxx yyyyyyyy: string up to 4095 bytes
		x, err := lp.src.take(1)
		if err != nil {
			return false, err
		}
		hdr, dataLen = 2, int(enc&0x0F)<<8|int(x[0])
	case enc == 0xF0: // 32-bit string length
		x, err := lp.src.take(4)
		if err != nil {
			return false, err
		}
		l := binary.LittleEndian.Uint32(x)
		if int64(l) > lp.src.left() {
			return false, causef(ErrCorrupt, "listpack string of %d bytes overruns the blob", l)
		}
		hdr, dataLen = 5, int(l)
	case enc >= 0xF1 && enc <= 0xF4: // 16/24/32/64-bit signed ints
		n := [...]int{2, 3, 4, 8}[enc-0xF1]
		x, err := lp.src.take(n)
		if err != nil {
			return false, err
		}
		var u uint64
		for i := n - 1; i >= 0; i-- {
			u = u<<8 | uint64(x[i])
		}
		shift := uint(64 - 8*n)
		p.isInt, p.i, hdr = true, int64(u<<shift)>>shift, 1+n
	case enc == 0xFF:
		lp.done = true
		if lp.src.left() != 0 {
			return false, causef(ErrCorrupt, "%d bytes after the listpack terminator", lp.src.left())
		}
		return false, nil
	default:
		return false, causef(ErrCorrupt, "invalid listpack entry encoding 0x%02x", enc)
	}
	entryLen := uint64(hdr + dataLen)
	bl := lpBacklenSize(entryLen)
	if int64(dataLen+bl) > lp.src.left() {
		return false, causef(ErrCorrupt, "listpack entry of %d bytes overruns the blob", entryLen)
	}
	// Data and back-length in one take: a second take could move the first's bytes.
	x, err := lp.src.take(dataLen + bl)
	if err != nil {
		return false, err
	}
	if dataLen > 0 {
		p.s = x[:dataLen:dataLen]
	}
	back := x[dataLen:]
	// The backlen is written most significant group first; the first byte read has no
	// continuation bit, the others carry 128.
	var v uint64
	for i, c := range back {
		if i > 0 {
			c &= 0x7F
		}
		v = v<<7 | uint64(c)
	}
	if v != entryLen {
		return false, causef(ErrCorrupt, "listpack entry back-length %d does not match its size %d", v, entryLen)
	}
	if dataLen == 0 && !p.isInt {
		p.s = []byte{}
	}
	return true, nil
}

// ---- ziplist (ziplist.c) ----
//
// <zlbytes u32le> <zltail u32le> <zllen u16le> <entry>... <0xFF>
// entry: <prevlen: 1 byte, or 0xFE + u32le> <encoding> <data>.

type ziplistParser struct {
	src  byteSrc
	done bool
}

func (zl *ziplistParser) reset(src byteSrc) error {
	zl.src, zl.done = src, false
	h, err := src.take(10)
	if err != nil {
		return err
	}
	if total := binary.LittleEndian.Uint32(h); int64(total) != src.left()+10 {
		return causef(ErrCorrupt, "ziplist header says %d bytes, blob has %d", total, src.left()+10)
	}
	return nil
}

func (zl *ziplistParser) next(p *prim) (bool, error) {
	if zl.done {
		return false, nil
	}
	b, err := zl.src.take(1)
	if err != nil {
		return false, err
	}
	if b[0] == 0xFF {
		zl.done = true
		if zl.src.left() != 0 {
			return false, causef(ErrCorrupt, "%d bytes after the ziplist terminator", zl.src.left())
		}
		return false, nil
	}
	if b[0] == 0xFE {
		if _, err := zl.src.take(4); err != nil {
			return false, err
		}
	}
	e, err := zl.src.take(1)
	if err != nil {
		return false, err
	}
	enc := e[0]
	p.isInt, p.s = false, nil
	var n int
	switch enc >> 6 {
	case 0:
		n = int(enc & 0x3F)
	case 1:
		x, err := zl.src.take(1)
		if err != nil {
			return false, err
		}
		n = int(enc&0x3F)<<8 | int(x[0])
	case 2:
		if enc != 0x80 {
			return false, causef(ErrCorrupt, "invalid ziplist string encoding 0x%02x", enc)
		}
		x, err := zl.src.take(4)
		if err != nil {
			return false, err
		}
		l := binary.BigEndian.Uint32(x)
		if int64(l) > zl.src.left() {
			return false, causef(ErrCorrupt, "ziplist string of %d bytes overruns the blob", l)
		}
		n = int(l)
	default:
		var size int
		switch enc {
		case 0xC0:
			size = 2
		case 0xD0:
			size = 4
		case 0xE0:
			size = 8
		case 0xF0:
			size = 3
		case 0xFE:
			size = 1
		default:
			if enc >= 0xF1 && enc <= 0xFD { // 4-bit immediate 0..12
				p.isInt, p.i = true, int64(enc&0x0F)-1
				return true, nil
			}
			return false, causef(ErrCorrupt, "invalid ziplist integer encoding 0x%02x", enc)
		}
		x, err := zl.src.take(size)
		if err != nil {
			return false, err
		}
		var u uint64
		for i := size - 1; i >= 0; i-- {
			u = u<<8 | uint64(x[i])
		}
		shift := uint(64 - 8*size)
		p.isInt, p.i = true, int64(u<<shift)>>shift
		return true, nil
	}
	if int64(n) > zl.src.left() {
		return false, causef(ErrCorrupt, "ziplist string of %d bytes overruns the blob", n)
	}
	s, err := zl.src.take(n)
	if err != nil {
		return false, err
	}
	p.s = s
	return true, nil
}

// ---- intset (intset.c) ----
//
// <encoding u32le: 2, 4 or 8> <length u32le> <length little-endian signed integers>

type intsetParser struct {
	src  byteSrc
	size int
	n    uint32
}

func (is *intsetParser) reset(src byteSrc) error {
	is.src = src
	h, err := src.take(8)
	if err != nil {
		return err
	}
	enc := binary.LittleEndian.Uint32(h)
	if enc != 2 && enc != 4 && enc != 8 {
		return causef(ErrCorrupt, "invalid intset encoding %d", enc)
	}
	is.size, is.n = int(enc), binary.LittleEndian.Uint32(h[4:])
	if int64(is.n)*int64(is.size) != src.left() {
		return causef(ErrCorrupt, "intset of %d %d-byte integers in a %d-byte blob", is.n, is.size, src.left()+8)
	}
	return nil
}

func (is *intsetParser) next(p *prim) (bool, error) {
	if is.n == 0 {
		return false, nil
	}
	x, err := is.src.take(is.size)
	if err != nil {
		return false, err
	}
	is.n--
	var u uint64
	for i := is.size - 1; i >= 0; i-- {
		u = u<<8 | uint64(x[i])
	}
	shift := uint(64 - 8*is.size)
	p.isInt, p.i, p.s = true, int64(u<<shift)>>shift, nil
	return true, nil
}

// ---- zipmap (zipmap.c, Redis < 2.6 hashes) ----
//
// <zmlen u8> (<len>key<len><free>value<free bytes>)... <0xFF>
// len: one byte < 254, or 254 followed by a u32 (little-endian on every platform Redis
// ran on). zmlen >= 254 means "count unknown": the map is scanned to its end.

type zipmapParser struct {
	src     byteSrc
	isValue bool // next element is a value
	done    bool
}

func (zm *zipmapParser) reset(src byteSrc) error {
	zm.src, zm.isValue, zm.done = src, false, false
	_, err := src.take(1)
	return err
}

func (zm *zipmapParser) next(p *prim) (bool, error) {
	if zm.done {
		return false, nil
	}
	b, err := zm.src.take(1)
	if err != nil {
		return false, err
	}
	var n int64
	switch {
	case b[0] == 0xFF:
		if zm.isValue {
			return false, causef(ErrCorrupt, "zipmap ends between a field and its value")
		}
		zm.done = true
		if zm.src.left() != 0 {
			return false, causef(ErrCorrupt, "%d bytes after the zipmap terminator", zm.src.left())
		}
		return false, nil
	case b[0] == 254:
		x, err := zm.src.take(4)
		if err != nil {
			return false, err
		}
		n = int64(binary.LittleEndian.Uint32(x))
	default:
		n = int64(b[0])
	}
	free := 0
	if zm.isValue {
		f, err := zm.src.take(1)
		if err != nil {
			return false, err
		}
		free = int(f[0])
	}
	if n+int64(free) > zm.src.left() {
		return false, causef(ErrCorrupt, "zipmap entry of %d bytes overruns the blob", n)
	}
	// Take the value and its padding in one go: a second take could invalidate the first.
	s, err := zm.src.take(int(n) + free)
	if err != nil {
		return false, err
	}
	p.isInt, p.s = false, s[:n]
	zm.isValue = !zm.isValue
	return true, nil
}

func parseScore(s []byte) (float64, error) {
	f, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		// Redis writes inf/-inf/nan in its own spelling; strconv knows those too, but
		// be explicit about what is accepted.
		switch string(s) {
		case "inf", "+inf", "Inf", "+Inf":
			return posInf, nil
		case "-inf", "-Inf":
			return negInf, nil
		}
		return 0, causef(ErrCorrupt, "score %q is not a number", truncKey(s))
	}
	return f, nil
}
