package crc

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestCRC64ImplsAllLengths runs every implementation this CPU has (crc64Impls
// lists the table walk everywhere, which is how the fallback gets tested on
// machines that would never pick it, and the folding path where it runs)
// over every length 0..5000 at all sixteen alignments, from 0 and from a
// random start, against the bitwise reference. The reference for all lengths
// of one alignment is one incremental pass, so the test costs the
// implementations' time, not the reference's.
func TestCRC64ImplsAllLengths(t *testing.T) {
	const maxLen = 5000
	rng := rand.New(rand.NewPCG(11, 12))
	buf := make([]byte, maxLen+16)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	impls := crc64Impls()
	impls["CRC64"] = CRC64
	for off := range 16 {
		for _, start := range []uint64{0, rng.Uint64()} {
			p := buf[off : off+maxLen]
			want := make([]uint64, maxLen+1) // want[n]: CRC of p[:n] from start
			want[0] = start
			for n := range maxLen {
				want[n+1] = refCRC64(want[n], p[n:n+1])
			}
			for name, f := range impls {
				for n := 0; n <= maxLen; n++ {
					if got := f(start, p[:n]); got != want[n] {
						t.Fatalf("%s: offset %d, %d bytes from %#x: %#016x, reference %#016x", name, off, n, start, got, want[n])
					}
				}
			}
		}
	}
}

// TestCRC64ImplsVectors checks the published values through each
// implementation, and long inputs of a single repeated byte (all zeros is the
// case where a wrong fold constant can still give a right answer, hence the
// non-zero start).
func TestCRC64ImplsVectors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint64
	}{
		{"check value", "123456789", 0xe9c6d914c4b8d9ca},
		{"redis crc64Test lorem ipsum with NUL", loremIpsum + "\x00", 0xc7794709e69683b3},
	}
	for name, f := range crc64Impls() {
		for _, tt := range tests {
			if got := f(0, []byte(tt.in)); got != tt.want {
				t.Errorf("%s: %s = %#016x, want %#016x", name, tt.name, got, tt.want)
			}
		}
		for _, b := range []byte{0, 0xff, 0x5a} {
			for _, n := range []int{64, 127, 128, 129, 255, 256, 1000, 4096, 65536 + 7} {
				p := make([]byte, n)
				for i := range p {
					p[i] = b
				}
				if got, want := f(0xfeedface, p), refCRC64(0xfeedface, p); got != want {
					t.Errorf("%s: %d bytes of %#x = %#016x, reference %#016x", name, n, b, got, want)
				}
			}
		}
	}
}

// TestCRC64ImplsChain checks each implementation against the table walk on
// inputs up to 1 MiB split at random points: a stream checksummed in pieces,
// as the RDB reader does, must come out as one pass would.
func TestCRC64ImplsChain(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	buf := benchInput(1 << 20)
	for name, f := range crc64Impls() {
		for range 30 {
			p := buf[rng.IntN(64):]
			p = p[:rng.IntN(len(p)+1)]
			want := crc64Table(0, p)
			if got := f(0, p); got != want {
				t.Fatalf("%s: %d bytes = %#016x, table walk %#016x", name, len(p), got, want)
			}
			var c uint64
			for rest := p; len(rest) > 0; {
				k := min(len(rest), rng.IntN(70000))
				c = f(c, rest[:k])
				rest = rest[k:]
			}
			if c != want {
				t.Fatalf("%s: %d bytes in random pieces = %#016x, one pass %#016x", name, len(p), c, want)
			}
		}
	}
}

func TestCRC64DoesNotAllocate(t *testing.T) {
	p := benchInput(5000)
	var sink uint64
	if n := testing.AllocsPerRun(100, func() { sink ^= CRC64(sink, p) }); n != 0 {
		t.Errorf("CRC64 allocates %v times per call", n)
	}
	_ = sink
}

// BenchmarkCRC64Impls runs each implementation at the sizes of BenchmarkCRC64,
// so one run gives the speed-up of the folding path over the table walk.
func BenchmarkCRC64Impls(b *testing.B) {
	for name, f := range crc64Impls() {
		for _, n := range benchSizes {
			p := benchInput(n)
			b.Run(fmt.Sprintf("%s/%s", name, sizeName(n)), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					sink64 = f(sink64, p)
				}
			})
		}
	}
}

// BenchmarkCRC64Threshold compares the implementations on short inputs, where
// the folding path's fixed cost decides: clmulMin comes from this.
func BenchmarkCRC64Threshold(b *testing.B) {
	for name, f := range crc64Impls() {
		for _, n := range []int{8, 15, 16, 17, 20, 24, 31, 32, 33, 48, 63, 64, 100, 127, 128, 129, 200, 255} {
			p := benchInput(n)
			b.Run(fmt.Sprintf("%s/%dB", name, n), func(b *testing.B) {
				b.SetBytes(int64(n))
				for b.Loop() {
					sink64 = f(sink64, p)
				}
			})
		}
	}
}
