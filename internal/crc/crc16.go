package crc

// xmodemPoly is the CRC16-CCITT polynomial, used MSB-first with initial value 0
// (the XMODEM variant), which is what Redis Cluster's crc16.c computes.
const xmodemPoly = 0x1021

// crc16Table is built once at init and never written again.
var crc16Table = makeCRC16Table()

func makeCRC16Table() *[256]uint16 {
	t := new([256]uint16)
	for i := range 256 {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ xmodemPoly
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}

// CRC16 returns the CRC16-XMODEM of p (poly 0x1021, init 0, no reflection, no
// final xor). A key's cluster slot is CRC16(key or hash tag) mod 16384.
func CRC16(p []byte) uint16 { return crc16(p) }

// CRC16String is CRC16 over the bytes of s, without converting s to a slice
// (a conversion would allocate for keys longer than the compiler's stack
// buffer, and slot lookup runs once per command).
func CRC16String(s string) uint16 { return crc16(s) }

func crc16[T ~string | ~[]byte](p T) uint16 {
	t := crc16Table
	var crc uint16
	for i := 0; i < len(p); i++ {
		crc = crc<<8 ^ t[byte(crc>>8)^p[i]]
	}
	return crc
}
