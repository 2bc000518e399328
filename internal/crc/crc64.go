// Package crc implements the two checksums Redis puts on the wire: CRC64-Jones,
// which closes every RDB file and every DUMP/RESTORE payload, and CRC16-XMODEM,
// which maps a key to its cluster slot.
package crc

import "encoding/binary"

// jonesPoly is the Jones polynomial in reflected (LSB-first) form. Redis's
// crc64.c spells it non-reflected as 0xad93d23594c935a9; the reflected form
// lets the table walk consume input bytes from the low end of the state.
const jonesPoly = 0x95ac9329ac4bc9b5

// crc64Tables holds the slicing-by-16 tables: row 0 is the classic byte table,
// row k advances a byte's contribution past k further zero bytes, so sixteen
// input bytes fold into the state with sixteen independent lookups instead of
// a chain of dependent ones. 32 KiB, which still sits in L1 on current x86;
// measured about 1.35x the throughput of slicing-by-8 (see BenchmarkCRC64).
// Built once at init and never written again.
var crc64Tables = makeCRC64Tables()

func makeCRC64Tables() *[16][256]uint64 {
	t := new([16][256]uint64)
	for i := range 256 {
		c := uint64(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ jonesPoly
			} else {
				c >>= 1
			}
		}
		t[0][i] = c
	}
	for i := range 256 {
		c := t[0][i]
		for k := 1; k < 16; k++ {
			c = t[0][c&0xff] ^ c>>8
			t[k][i] = c
		}
	}
	return t
}

// CRC64 extends crc with p using Redis's CRC64 (Jones polynomial, reflected,
// initial value 0, no final xor). Pass 0 to start; because there is no final
// xor the result chains: CRC64(CRC64(0, a), b) == CRC64(0, a+b), which lets a
// streaming reader checksum an RDB file chunk by chunk.
//
// On amd64 with PCLMULQDQ, inputs of clmulMin bytes and more go through
// carry-less multiplication (crc64_amd64.go); everything else takes the table
// walk below.
func CRC64(crc uint64, p []byte) uint64 {
	return update(crc, p)
}

// crc64Table is the portable slicing-by-16 table walk: the fallback on CPUs
// without carry-less multiplication, and the faster path for short inputs.
func crc64Table(crc uint64, p []byte) uint64 {
	t := crc64Tables
	for len(p) >= 16 {
		// The body of crc64Block, written out: it is too large for the
		// inliner, and this loop is the fallback's hot path.
		a := crc ^ binary.LittleEndian.Uint64(p)
		b := binary.LittleEndian.Uint64(p[8:])
		crc = t[15][byte(a)] ^
			t[14][byte(a>>8)] ^
			t[13][byte(a>>16)] ^
			t[12][byte(a>>24)] ^
			t[11][byte(a>>32)] ^
			t[10][byte(a>>40)] ^
			t[9][byte(a>>48)] ^
			t[8][byte(a>>56)] ^
			t[7][byte(b)] ^
			t[6][byte(b>>8)] ^
			t[5][byte(b>>16)] ^
			t[4][byte(b>>24)] ^
			t[3][byte(b>>32)] ^
			t[2][byte(b>>40)] ^
			t[1][byte(b>>48)] ^
			t[0][byte(b>>56)]
		p = p[16:]
	}
	// At most one 8-byte step remains; the same tables serve it, shifted by 8.
	if len(p) >= 8 {
		crc ^= binary.LittleEndian.Uint64(p)
		crc = t[7][byte(crc)] ^
			t[6][byte(crc>>8)] ^
			t[5][byte(crc>>16)] ^
			t[4][byte(crc>>24)] ^
			t[3][byte(crc>>32)] ^
			t[2][byte(crc>>40)] ^
			t[1][byte(crc>>48)] ^
			t[0][byte(crc>>56)]
		p = p[8:]
	}
	// Fewer than 8 bytes left: one dependent lookup per byte.
	for _, b := range p {
		crc = t[0][byte(crc)^b] ^ crc>>8
	}
	return crc
}

// crc64Block is the CRC, from state 0, of the 16 bytes a‖b (each little-endian):
// sixteen independent lookups, one per byte by its distance from the end.
func crc64Block(t *[16][256]uint64, a, b uint64) uint64 {
	return t[15][byte(a)] ^
		t[14][byte(a>>8)] ^
		t[13][byte(a>>16)] ^
		t[12][byte(a>>24)] ^
		t[11][byte(a>>32)] ^
		t[10][byte(a>>40)] ^
		t[9][byte(a>>48)] ^
		t[8][byte(a>>56)] ^
		t[7][byte(b)] ^
		t[6][byte(b>>8)] ^
		t[5][byte(b>>16)] ^
		t[4][byte(b>>24)] ^
		t[3][byte(b>>32)] ^
		t[2][byte(b>>40)] ^
		t[1][byte(b>>48)] ^
		t[0][byte(b>>56)]
}
