package rdb

// LZF (liblzf, as used by Redis for RDB strings) is a byte-oriented LZ77 variant.
// Each control byte c starts either
//   - a literal run (c < 32): the next c+1 bytes are copied to the output, or
//   - a back reference: length c>>5 (7 means "add the next byte"), plus 2, copied from
//     ((c&31)<<8 | next byte) + 1 bytes back in the output (up to 8192 bytes back).
//
// Because references reach at most 8 KiB back, the format can be decompressed as a
// stream with an 8 KiB history window; lzfStream does that for huge strings.

const lzfWindow = 8192

// lzfMaxRatio bounds the output a compressed span can produce: the densest op is a
// 3-byte back reference expanding to 264 bytes. A claimed length above ratio × input
// is corrupt, and rejecting it early avoids allocating for it.
const lzfMaxRatio = 88

// lzfDecompress appends the decompression of in to dst, which must total ulen bytes.
func lzfDecompress(dst, in []byte, ulen int) ([]byte, error) {
	start := len(dst)
	if need := start + ulen; cap(dst) < need {
		nd := make([]byte, start, need)
		copy(nd, dst)
		dst = nd
	}
	end := start + ulen
	ip := 0
	for ip < len(in) {
		c := int(in[ip])
		ip++
		if c < 32 {
			n := c + 1
			if ip+n > len(in) || len(dst)+n > end {
				return dst, causef(ErrCorrupt, "LZF literal run overruns its buffer")
			}
			dst = append(dst, in[ip:ip+n]...)
			ip += n
			continue
		}
		n := c >> 5
		if n == 7 {
			if ip >= len(in) {
				return dst, causef(ErrCorrupt, "LZF back reference cut short")
			}
			n += int(in[ip])
			ip++
		}
		if ip >= len(in) {
			return dst, causef(ErrCorrupt, "LZF back reference cut short")
		}
		ref := len(dst) - ((c&31)<<8 | int(in[ip])) - 1
		ip++
		n += 2
		if ref < start || len(dst)+n > end {
			return dst, causef(ErrCorrupt, "LZF back reference outside the output")
		}
		// Overlapping copies are the RLE case of LZ77: copy byte by byte.
		for i := 0; i < n; i++ {
			dst = append(dst, dst[ref+i])
		}
	}
	if len(dst) != end {
		return dst, causef(ErrCorrupt, "LZF data decompresses to %d bytes, header says %d", len(dst)-start, ulen)
	}
	return dst, nil
}

// lzfStream decompresses an LZF span read from the decoder's reader incrementally,
// holding only the 8 KiB history plus what the consumer asked for.
type lzfStream struct {
	rd       *reader
	in       int64  // compressed bytes not yet read
	out      []byte // history + produced, not yet consumed bytes
	pos      int    // consumer position in out
	produced int64  // total bytes produced
	ulen     int64  // total expected
}

func (z *lzfStream) reset(rd *reader, clen, ulen int64) {
	z.rd, z.in, z.ulen, z.produced, z.pos = rd, clen, ulen, 0, 0
	z.out = z.out[:0]
}

// left is the number of decompressed bytes not yet taken.
func (z *lzfStream) left() int64 { return z.ulen - z.produced + int64(len(z.out)-z.pos) }

// slide drops consumed output beyond the history window.
func (z *lzfStream) slide() {
	keep := len(z.out) - lzfWindow
	if keep > z.pos {
		keep = z.pos
	}
	if keep > lzfWindow { // amortise: only move when it frees a useful amount
		copy(z.out, z.out[keep:])
		z.out = z.out[:len(z.out)-keep]
		z.pos -= keep
	}
}

// produce decompresses until n unconsumed bytes are available or the input is done.
func (z *lzfStream) produce(n int) error {
	z.slide()
	for len(z.out)-z.pos < n && z.in > 0 {
		c, err := z.rd.readByte()
		if err != nil {
			return err
		}
		z.in--
		if c < 32 {
			k := int(c) + 1
			if int64(k) > z.in || z.produced+int64(k) > z.ulen {
				return causef(ErrCorrupt, "LZF literal run overruns its buffer")
			}
			b, err := z.rd.readN(k)
			if err != nil {
				return err
			}
			z.in -= int64(k)
			z.out = append(z.out, b...)
			z.produced += int64(k)
			continue
		}
		k := int(c >> 5)
		if k == 7 {
			if z.in < 1 {
				return causef(ErrCorrupt, "LZF back reference cut short")
			}
			e, err := z.rd.readByte()
			if err != nil {
				return err
			}
			z.in--
			k += int(e)
		}
		if z.in < 1 {
			return causef(ErrCorrupt, "LZF back reference cut short")
		}
		lo, err := z.rd.readByte()
		if err != nil {
			return err
		}
		z.in--
		back := (int(c&31)<<8 | int(lo)) + 1
		k += 2
		ref := len(z.out) - back
		if ref < 0 || int64(back) > z.produced || z.produced+int64(k) > z.ulen {
			return causef(ErrCorrupt, "LZF back reference outside the output")
		}
		for i := 0; i < k; i++ {
			z.out = append(z.out, z.out[ref+i])
		}
		z.produced += int64(k)
	}
	if z.in == 0 && z.produced != z.ulen {
		return causef(ErrCorrupt, "LZF data decompresses to %d bytes, header says %d", z.produced, z.ulen)
	}
	return nil
}

// take returns the next n decompressed bytes (valid until the next call).
func (z *lzfStream) take(n int) ([]byte, error) {
	if int64(n) > z.left() {
		return nil, causef(ErrCorrupt, "read past the end of an LZF-compressed blob")
	}
	if err := z.produce(n); err != nil {
		return nil, err
	}
	if len(z.out)-z.pos < n {
		return nil, causef(ErrCorrupt, "LZF data shorter than its header says")
	}
	b := z.out[z.pos : z.pos+n : z.pos+n]
	z.pos += n
	return b, nil
}
