package crc

import (
	"math/bits"
	"sync"
)

// CRC64 has no initial value and no final xor, so it is linear over GF(2): for any
// strings a and b,
//
//	CRC64(0, a‖b) = Shift64(CRC64(0, a), len(b)) ^ CRC64(0, b)
//
// where Shift64(c, n) is the state c after n zero bytes (c·x^(8n) mod P). A reader that
// already keeps the running CRC of a stream can therefore get the CRC of any span of it,
// or of the span behind another prefix (a DUMP payload's type byte), from the running
// values at the span's ends and one Shift64, instead of a second pass over its bytes.

// shiftTableLevels is how many powers of two of 16-byte blocks have lookup tables: up to
// 16·2^11 = 32 KiB per step, which covers every value Ferry restores in one step or a
// few. Each level is 16 KiB (8 byte positions × 256 entries), built on first use. Longer
// shifts multiply by precomputed powers of x instead (mulmod), whose ~100 ns each is
// nothing next to reading 64 KiB or more.
const shiftTableLevels = 12

// shiftTables[k][j][b] is the state b<<(8j) after 16·2^k zero bytes.
var shiftTables = sync.OnceValue(func() *[shiftTableLevels][8][256]uint64 {
	t := new([shiftTableLevels][8][256]uint64)
	// 16 zero bytes: the slicing-by-16 step with an all-zero second word.
	for j := range 8 {
		t[0][j] = crc64Tables[15-j]
	}
	for k := 1; k < shiftTableLevels; k++ {
		for j := range 8 {
			for b := range 256 {
				v := uint64(b) << (8 * j)
				t[k][j][b] = shiftBy(&t[k-1], shiftBy(&t[k-1], v))
			}
		}
	}
	return t
})

// shiftBy applies one level's table to crc.
func shiftBy(t *[8][256]uint64, crc uint64) uint64 {
	return t[0][byte(crc)] ^ t[1][byte(crc>>8)] ^ t[2][byte(crc>>16)] ^ t[3][byte(crc>>24)] ^
		t[4][byte(crc>>32)] ^ t[5][byte(crc>>40)] ^ t[6][byte(crc>>48)] ^ t[7][byte(crc>>56)]
}

// xPow8[k] is x^(8·2^k) mod P in the reflected form (x^0 is the top bit): the shift by
// 2^k zero bytes as a multiplier.
var xPow8 = func() (p [64]uint64) {
	p[0] = 1 << (63 - 8) // x^8
	for k := 1; k < len(p); k++ {
		p[k] = mulmod(p[k-1], p[k-1])
	}
	return p
}()

// mulmod multiplies a and b modulo the Jones polynomial, both reflected.
func mulmod(a, b uint64) uint64 {
	var p uint64
	for m := uint64(1) << 63; a != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
			a ^= m
		}
		// b *= x
		if b&1 != 0 {
			b = b>>1 ^ jonesPoly
		} else {
			b >>= 1
		}
	}
	return p
}

// Shift64 returns CRC64(crc, n zero bytes) without the bytes: about one table lookup
// per byte of n's binary length instead of one per byte. n must not be negative.
func Shift64(crc uint64, n int64) uint64 {
	if crc == 0 || n <= 0 {
		return crc
	}
	// The last n%16 bytes: the slicing step of CRC64 over that many zero bytes, whose
	// lookups are independent of each other (a byte loop would chain them).
	if r := int(n & 15); r != 0 {
		t := crc64Tables
		var next uint64
		if r < 8 {
			next = crc >> (8 * r)
		}
		for i := range min(r, 8) {
			next ^= t[r-1-i][byte(crc>>(8*i))]
		}
		crc = next
	}
	q := uint64(n) >> 4 // 16-byte blocks
	if q == 0 {
		return crc
	}
	st := shiftTables()
	for k := 0; k < shiftTableLevels && q != 0; k, q = k+1, q>>1 {
		if q&1 != 0 {
			crc = shiftBy(&st[k], crc)
		}
	}
	// Blocks of 16·2^shiftTableLevels bytes and more: bit i of q is 2^(i+4+levels) bytes.
	for q != 0 {
		i := bits.TrailingZeros64(q)
		crc = mulmod(xPow8[i+4+shiftTableLevels], crc)
		q &= q - 1
	}
	return crc
}
