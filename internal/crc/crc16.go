package crc

import "encoding/binary"

// xmodemPoly is the CRC16-CCITT polynomial, used MSB-first with initial value 0
// (the XMODEM variant), which is what Redis Cluster's crc16.c computes.
const xmodemPoly = 0x1021

// crc16Tables are slicing-by-8 tables for the MSB-first CRC16: row k[x] is the
// CRC of byte x followed by k zero bytes. A byte-at-a-time CRC16 is a chain of
// dependent loads (about 3 ns/byte here), and slot lookup runs for every
// command, so long keys are worth the 4 KiB. Built once at init, never written.
var crc16Tables = makeCRC16Tables()

func makeCRC16Tables() *[8][256]uint16 {
	t := new([8][256]uint16)
	for i := range 256 {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ xmodemPoly
			} else {
				c <<= 1
			}
		}
		t[0][i] = c
	}
	for i := range 256 {
		c := t[0][i]
		for k := 1; k < 8; k++ {
			c = c<<8 ^ t[0][c>>8]
			t[k][i] = c
		}
	}
	return t
}

// CRC16 returns the CRC16-XMODEM of p (poly 0x1021, init 0, no reflection, no
// final xor). A key's cluster slot is CRC16(key or hash tag) mod 16384.
func CRC16(p []byte) uint16 {
	t := crc16Tables
	var crc uint16
	for len(p) >= 8 {
		crc = crc16Block(t, crc, binary.BigEndian.Uint64(p))
		p = p[8:]
	}
	for _, b := range p {
		crc = crc<<8 ^ t[0][byte(crc>>8)^b]
	}
	return crc
}

// CRC16String is CRC16 over the bytes of s, without converting s to a slice
// (a conversion would allocate for keys longer than the compiler's stack
// buffer, and slot lookup runs once per command).
func CRC16String(s string) uint16 {
	t := crc16Tables
	var crc uint16
	for len(s) >= 8 {
		v := uint64(s[0])<<56 | uint64(s[1])<<48 | uint64(s[2])<<40 | uint64(s[3])<<32 |
			uint64(s[4])<<24 | uint64(s[5])<<16 | uint64(s[6])<<8 | uint64(s[7])
		crc = crc16Block(t, crc, v)
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ t[0][byte(crc>>8)^s[i]]
	}
	return crc
}

// crc16Block folds eight bytes, v in big-endian order, into crc. The 16-bit
// state only overlaps the first two bytes (the CRC is linear, so a state is
// the same as xoring it into the message), after which each byte's
// contribution is an independent table lookup by its distance from the end.
func crc16Block(t *[8][256]uint16, crc uint16, v uint64) uint16 {
	v ^= uint64(crc) << 48
	return t[7][byte(v>>56)] ^
		t[6][byte(v>>48)] ^
		t[5][byte(v>>40)] ^
		t[4][byte(v>>32)] ^
		t[3][byte(v>>24)] ^
		t[2][byte(v>>16)] ^
		t[1][byte(v>>8)] ^
		t[0][byte(v)]
}
