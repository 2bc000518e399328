//go:build amd64 && !purego

package crc

import "golang.org/x/sys/cpu"

// hasCLMUL is whether this CPU has PCLMULQDQ, and SSSE3 for PSHUFB (every
// x86-64 CPU since about 2010, but not every virtual machine passes them
// through). Set once at init and only read afterwards.
var hasCLMUL = cpu.X86.HasPCLMULQDQ && cpu.X86.HasSSSE3

// clmulMin is the shortest input worth the carry-less path. The folding path
// costs about 16 ns even for one block (the call into assembly, the tail
// shuffles, the 16-lookup reduction at the end), while the table walk does 16
// bytes in 12 ns but pays ~3 ns for each byte past a multiple of 8. Measured
// with BenchmarkCRC64Threshold: the table walk wins up to 17 bytes, folding
// from 20 on (17 vs 22 ns) and by 2.5x at 100 bytes.
const clmulMin = 20

func update(crc uint64, p []byte) uint64 {
	if hasCLMUL && len(p) >= clmulMin {
		return crc64CLMUL(crc, p)
	}
	return crc64Table(crc, p)
}

// crc64Impls names the implementations this CPU can run, for the tests to
// compare each against the bitwise reference regardless of which one update
// picks.
func crc64Impls() map[string]func(uint64, []byte) uint64 {
	m := map[string]func(uint64, []byte) uint64{"table": crc64Table}
	if hasCLMUL {
		m["clmul"] = crc64CLMUL
	}
	return m
}

// Folding, for a reflected CRC (bit i of a 64-bit word is the coefficient of
// x^(63-i), input bytes LSB first, as in crc64Table):
//
// With no final xor and initial value 0, CRC64(c, M) = (c·x^(8n) + M·x^64) mod P
// for an n-byte message M, so c enters by xoring it into the first eight bytes.
// Keep a 128-bit remainder X (16 bytes in memory order: the low qword holds the
// higher-degree half, X = Xlo·x^64 + Xhi). Moving X past D more bits of message
// only needs its residue:
//
//	X·x^D ≡ Xlo·(x^(D+64) mod P) + Xhi·(x^D mod P)
//
// two 64×64 carry-less products of at most 127 bits, to which the block found D
// bits further on is xored. Several lanes, each a 16-byte column of the input,
// fold independently by the lane count times 128 bits, hiding the multiply
// latency; at the end the lanes fold into one, and the CRC of the remaining X is
// X·x^64 mod P, which is exactly crc64Block over X's 16 bytes.
//
// PCLMULQDQ on reflected operands yields the reflected product shifted by one
// bit (bit m of the 128-bit result holds the coefficient of x^(126-m), but in
// the 128-bit reflected layout bit m means x^(127-m)), so the product read back
// is a·b·x; each constant is therefore x^(T-1) mod P to multiply by x^T.

// clmulKeys are the fold constants, each pair {x^(D+63) mod P, x^(D-1) mod P}
// for the low and the high qword of a lane moved D bits forward, and the
// shuffle and mask rows for the last len%16 bytes. The assembly finds the
// fields through go_asm.h, so their order is free.
type clmulKeys struct {
	fold1024 [2]uint64 // eight lanes, one loop step (8·128 bits)
	fold512  [2]uint64 // merging lanes four apart
	fold256  [2]uint64 // two apart
	fold128  [2]uint64 // neighbouring lanes, the one-lane loop and the tail

	// shuf[16:32] is 0..15 with 0x80 (PSHUFB: write a zero) either side, so
	// the 16 bytes at shuf[r] move a register's first r bytes to its top and
	// those at shuf[16+r] move the rest down by r, both zero-filled.
	shuf [48]byte
	// mask[r:r+16] keeps the top r bytes of a register.
	mask [32]byte
}

// keys is computed from the polynomial at init rather than pasted in as magic
// numbers, and never written afterwards.
var keys = func() *clmulKeys {
	pair := func(d int) [2]uint64 { return [2]uint64{xPowMod(d + 63), xPowMod(d - 1)} }
	k := &clmulKeys{fold1024: pair(1024), fold512: pair(512), fold256: pair(256), fold128: pair(128)}
	for i := range k.shuf {
		k.shuf[i] = 0x80
		if i >= 16 && i < 32 {
			k.shuf[i] = byte(i - 16)
		}
	}
	for i := 16; i < 32; i++ {
		k.mask[i] = 0xff
	}
	return k
}()

// xPowMod returns x^n mod P, reflected, by square and multiply.
func xPowMod(n int) uint64 {
	r := uint64(1) << 63 // x^0
	b := uint64(1) << 62 // x^1
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			r = mulmod(r, b)
		}
		b = mulmod(b, b)
	}
	return r
}

// foldCLMUL folds crc and all of p, which must hold at least 16 bytes, into
// a 128-bit remainder X = lo·x^64 + hi (see above). A tail of r = len(p)%16
// bytes T is taken in the same algebra: X‖T is X's first r bytes, which fold
// forward by 128 bits, followed by the 16 bytes X[r:]‖T, read from the end of
// p and from X by byte shuffles.
//
//go:noescape
func foldCLMUL(crc uint64, p []byte, k *clmulKeys) (lo, hi uint64)

// crc64CLMUL is CRC64 by folding. Any length is valid (the tests run it over
// all of them); below 16 bytes there is nothing to fold.
func crc64CLMUL(crc uint64, p []byte) uint64 {
	if len(p) < 16 {
		return crc64Table(crc, p)
	}
	lo, hi := foldCLMUL(crc, p, keys)
	return crc64Block(crc64Tables, lo, hi)
}
