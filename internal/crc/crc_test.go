package crc

import (
	"bytes"
	"fmt"
	"hash/crc64"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// loremIpsum is the text of Redis's crc64Test (src/crc64.c). Redis hashes
// sizeof(li), so its published value includes the C string's trailing NUL.
const loremIpsum = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed " +
	"do eiusmod tempor incididunt ut labore et dolore magna " +
	"aliqua. Ut enim ad minim veniam, quis nostrud exercitation " +
	"ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis " +
	"aute irure dolor in reprehenderit in voluptate velit esse " +
	"cillum dolore eu fugiat nulla pariatur. Excepteur sint " +
	"occaecat cupidatat non proident, sunt in culpa qui officia " +
	"deserunt mollit anim id est laborum."

// refCRC64 is a deliberately different formulation from the table code: the
// non-reflected, MSB-first shift register with Redis's spelling of the
// polynomial, fed input bits LSB-first and reflected at the end (what the
// pycrc-generated _crc64 in Redis does). Chaining enters through the reflected
// state. Agreement with CRC64 therefore also checks the reflected constant.
func refCRC64(crc uint64, p []byte) uint64 {
	const poly = 0xad93d23594c935a9
	r := bits.Reverse64(crc)
	for _, c := range p {
		for i := range 8 {
			bit := r>>63 ^ uint64(c>>i)&1
			r <<= 1
			if bit != 0 {
				r ^= poly
			}
		}
	}
	return bits.Reverse64(r)
}

// refCRC16 is the textbook bit-at-a-time XMODEM.
func refCRC16(p []byte) uint16 {
	var crc uint16
	for _, c := range p {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func TestCRC64Vectors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint64
	}{
		{"empty", "", 0},
		{"check value", "123456789", 0xe9c6d914c4b8d9ca},
		{"redis crc64Test lorem ipsum with NUL", loremIpsum + "\x00", 0xc7794709e69683b3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CRC64(0, []byte(tt.in)); got != tt.want {
				t.Errorf("CRC64(0, %q) = %#016x, want %#016x", tt.in, got, tt.want)
			}
			if got := refCRC64(0, []byte(tt.in)); got != tt.want {
				t.Errorf("refCRC64(0, %q) = %#016x, want %#016x (reference is wrong)", tt.in, got, tt.want)
			}
		})
	}
}

// TestCRC64AgainstReference covers every length up to several 16-byte
// blocks, at every alignment, split at every point, so each path through
// the block loop and the byte tail is exercised.
func TestCRC64AgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 80)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for off := range 8 {
		for n := 0; off+n <= 72; n++ {
			p := buf[off : off+n]
			want := refCRC64(0, p)
			if got := CRC64(0, p); got != want {
				t.Fatalf("off %d len %d: CRC64 = %#016x, reference %#016x", off, n, got, want)
			}
			for split := 0; split <= n; split++ {
				if got := CRC64(CRC64(0, p[:split]), p[split:]); got != want {
					t.Fatalf("off %d len %d split %d: chained CRC64 = %#016x, want %#016x", off, n, split, got, want)
				}
			}
		}
	}
	// A non-zero starting value must go through the same state as the reference.
	for n := range 40 {
		if got, want := CRC64(0xdeadbeefcafef00d, buf[:n]), refCRC64(0xdeadbeefcafef00d, buf[:n]); got != want {
			t.Fatalf("len %d from non-zero crc: %#016x, reference %#016x", n, got, want)
		}
	}
}

func TestCRC16Vectors(t *testing.T) {
	tests := []struct {
		in   string
		want uint16
	}{
		{"", 0},
		{"123456789", 0x31c3}, // the published XMODEM check value
	}
	for _, tt := range tests {
		if got := CRC16([]byte(tt.in)); got != tt.want {
			t.Errorf("CRC16(%q) = %#04x, want %#04x", tt.in, got, tt.want)
		}
		if got := CRC16String(tt.in); got != tt.want {
			t.Errorf("CRC16String(%q) = %#04x, want %#04x", tt.in, got, tt.want)
		}
	}
}

// TestCRC16Slots checks the low 14 bits against slots from the CLUSTER KEYSLOT
// documentation; internal/command checks many more against a live server.
func TestCRC16Slots(t *testing.T) {
	tests := []struct {
		key  string
		slot uint16
	}{
		{"somekey", 11058},
		{"hello", 866},
		{"foo", 12182},
	}
	for _, tt := range tests {
		if got := CRC16String(tt.key) & 0x3fff; got != tt.slot {
			t.Errorf("CRC16(%q) mod 16384 = %d, want slot %d", tt.key, got, tt.slot)
		}
	}
}

func TestCRC16AgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 300 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		want := refCRC16(p)
		if got := CRC16(p); got != want {
			t.Fatalf("len %d: CRC16 = %#04x, reference %#04x", n, got, want)
		}
		if got := CRC16String(string(p)); got != want {
			t.Fatalf("len %d: CRC16String = %#04x, reference %#04x", n, got, want)
		}
	}
}

func TestCRC16StringDoesNotAllocate(t *testing.T) {
	key := string(bytes.Repeat([]byte("k"), 200))
	var sink uint16
	if n := testing.AllocsPerRun(100, func() { sink ^= CRC16String(key) }); n != 0 {
		t.Errorf("CRC16String allocates %v times per call", n)
	}
	_ = sink
}

// FuzzCRC64 holds every implementation this CPU runs (the table walk, and on
// amd64 the carry-less folding) and the dispatching CRC64 to the bitwise
// reference, from 0 and from a starting value taken from split, and checks that
// splitting the input anywhere chains to the same result.
func FuzzCRC64(f *testing.F) {
	f.Add([]byte(""), uint(0))
	f.Add([]byte("123456789"), uint(4))
	f.Add([]byte(loremIpsum), uint(100))
	f.Add(bytes.Repeat([]byte{0xff}, 33), uint(9))
	f.Add(benchInput(300), uint(129))
	f.Add(benchInput(2000), uint(1000))
	impls := crc64Impls()
	impls["CRC64"] = CRC64
	f.Fuzz(func(t *testing.T, p []byte, split uint) {
		want := refCRC64(0, p)
		start := uint64(split) * 0x9e3779b97f4a7c15 // spreads small splits over all 64 bits
		wantStart := refCRC64(start, p)
		s := int(split % uint(len(p)+1))
		for name, f := range impls {
			if got := f(0, p); got != want {
				t.Fatalf("%s over %d bytes = %#016x, reference %#016x", name, len(p), got, want)
			}
			if got := f(f(0, p[:s]), p[s:]); got != want {
				t.Fatalf("%s over %d bytes chained at %d: %#016x, want %#016x", name, len(p), s, got, want)
			}
			if got := f(start, p); got != wantStart {
				t.Fatalf("%s over %d bytes from %#x = %#016x, reference %#016x", name, len(p), start, got, wantStart)
			}
		}
	})
}

func FuzzCRC16(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("123456789"))
	f.Add([]byte("{user1000}.following"))
	f.Fuzz(func(t *testing.T, p []byte) {
		want := refCRC16(p)
		if got := CRC16(p); got != want {
			t.Fatalf("CRC16 = %#04x, reference %#04x", got, want)
		}
		if got := CRC16String(string(p)); got != want {
			t.Fatalf("CRC16String = %#04x, reference %#04x", got, want)
		}
	})
}

var benchSizes = []int{16, 100, 4 << 10, 64 << 10, 1 << 20}

func benchInput(n int) []byte {
	p := make([]byte, n)
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

func sizeName(n int) string {
	if n < 1<<10 {
		return fmt.Sprintf("%dB", n)
	}
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}

var sink64 uint64

func BenchmarkCRC64(b *testing.B) {
	for _, n := range benchSizes {
		p := benchInput(n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				sink64 = CRC64(sink64, p)
			}
		})
	}
}

// BenchmarkStdlibECMA is the yardstick: hash/crc64 with the ECMA table uses
// the standard library's own slicing-by-8, so it is the same algorithm class
// on a different polynomial.
func BenchmarkStdlibECMA(b *testing.B) {
	tab := crc64.MakeTable(crc64.ECMA)
	for _, n := range benchSizes {
		p := benchInput(n)
		b.Run(sizeName(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for b.Loop() {
				sink64 = crc64.Update(sink64, tab, p)
			}
		})
	}
}

func BenchmarkCRC16String(b *testing.B) {
	for _, key := range []string{"user:{1000}:followers", string(benchInput(256))} {
		b.Run(fmt.Sprintf("%dB", len(key)), func(b *testing.B) {
			b.SetBytes(int64(len(key)))
			var s uint16
			for b.Loop() {
				s ^= CRC16String(key)
			}
			sink64 = uint64(s)
		})
	}
}

// TestShift64 checks Shift64 against hashing the zeros, across the byte, 8-byte, table
// and multiplier ranges, and the combination rule it exists for.
func TestShift64(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	zeros := make([]byte, 1<<20+300)
	lengths := []int{0, 1, 7, 8, 9, 15, 16, 17, 31, 32, 100, 101, 255, 256, 1000, 4095, 4096, 32767, 32768,
		32784, 65535, 65536, 65537, 1 << 19, 1<<20 + 123}
	for range 40 {
		lengths = append(lengths, rng.IntN(200000))
	}
	for _, n := range lengths {
		c := rng.Uint64()
		if got, want := Shift64(c, int64(n)), CRC64(c, zeros[:n]); got != want {
			t.Fatalf("Shift64(%#x, %d) = %#x, want %#x", c, n, got, want)
		}
	}
	if got := Shift64(0, 12345); got != 0 {
		t.Fatalf("Shift64(0, n) = %#x, want 0", got)
	}
	// Far beyond the tables: the same as shifting twice by half.
	c := rng.Uint64()
	if got, want := Shift64(c, 1<<40), Shift64(Shift64(c, 1<<39), 1<<39); got != want {
		t.Fatalf("Shift64(c, 2^40) = %#x, twice 2^39 = %#x", got, want)
	}
	p := benchInput(5000)
	for _, split := range []int{0, 1, 100, 2500, 4999, 5000} {
		a, b := p[:split], p[split:]
		if got, want := Shift64(CRC64(0, a), int64(len(b)))^CRC64(0, b), CRC64(0, p); got != want {
			t.Fatalf("split %d: combined %#x, want %#x", split, got, want)
		}
	}
}

func FuzzShift64(f *testing.F) {
	f.Add(uint64(0), uint(0))
	f.Add(uint64(0xdeadbeef), uint(17))
	f.Add(^uint64(0), uint(70000))
	zeros := make([]byte, 1<<18)
	f.Fuzz(func(t *testing.T, c uint64, n uint) {
		n %= uint(len(zeros) + 1)
		if got, want := Shift64(c, int64(n)), CRC64(c, zeros[:n]); got != want {
			t.Fatalf("Shift64(%#x, %d) = %#x, want %#x", c, n, got, want)
		}
	})
}

func BenchmarkShift64(b *testing.B) {
	for _, n := range []int64{101, 1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for b.Loop() {
				sink64 = Shift64(sink64|1, n)
			}
		})
	}
}
