package replica

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// hexLike returns n bytes drawn from alphabet: data that shares most bytes with a mark.
func hexLike(rng *rand.Rand, n int, alphabet string) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return b
}

// TestMarkFinderEveryPosition plants the mark at every position of buffers made of the
// mark's own characters (the worst case for the pair table), of its prefixes and of
// near-misses, and compares with bytes.Index.
func TestMarkFinderEveryPosition(t *testing.T) {
	mark := []byte(testMark)
	m := newMarkFinder(mark)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, alphabet := range []string{"0123456789abcdef", "abcdefghijklmnopqrstuvwxyz", "\x00\xff"} {
		for size := 0; size < 3*markStride+2*len(mark); size++ {
			base := hexLike(rng, size, alphabet)
			check := func(p []byte, what string) {
				t.Helper()
				if got, want := m.index(p), bytes.Index(p, mark); got != want {
					t.Fatalf("%s (size %d, alphabet %q): index %d, bytes.Index %d", what, size, alphabet, got, want)
				}
			}
			check(base, "no mark")
			for at := 0; at+len(mark) <= size; at++ {
				p := append([]byte(nil), base...)
				copy(p[at:], mark)
				check(p, "mark")
				// A second occurrence later must not hide the first.
				if at+2*len(mark) <= size {
					copy(p[at+len(mark):], mark)
					check(p, "two marks")
				}
				// The mark less its last byte, or with one byte changed, is not the mark.
				q := append([]byte(nil), base...)
				copy(q[at:], mark)
				q[at+rng.IntN(len(mark))] ^= 0x20
				check(q, "near miss")
			}
			// A mark cut by the end of the buffer is not found here (the framer's carry
			// handles marks split across reads).
			if size >= len(mark)-1 {
				p := append([]byte(nil), base...)
				copy(p[size-len(mark)+1:], mark)
				check(p, "cut mark")
			}
		}
	}
}

// FuzzMarkFinder compares the finder with bytes.Index for any data and any mark.
func FuzzMarkFinder(f *testing.F) {
	f.Add([]byte(testMark), []byte("xx"+testMark+"yy"), 3)
	f.Add([]byte(testMark), []byte(testMark[:20]+testMark), 0)
	f.Add([]byte("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab"), bytes.Repeat([]byte("a"), 200), 17)
	f.Fuzz(func(t *testing.T, mark, data []byte, at int) {
		if len(mark) == 0 {
			return
		}
		if at >= 0 && at+len(mark) <= len(data) && at%3 == 0 {
			copy(data[at:], mark) // plant it sometimes, so that found marks are common
		}
		m := newMarkFinder(mark)
		if got, want := m.index(data), bytes.Index(data, mark); got != want {
			t.Fatalf("mark %q in %q: index %d, bytes.Index %d", mark, data, got, want)
		}
	})
}

// BenchmarkMarkSearch: the finder against bytes.Index on 64 KiB reads of hex-heavy data
// without the mark (every read of a diskless RDB but the last).
func BenchmarkMarkSearch(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	p := hexLike(rng, 64<<10, "0123456789abcdefghijklmnopqrstuvwxyz:")
	mark := []byte(testMark)
	b.Run("finder", func(b *testing.B) {
		m := newMarkFinder(mark)
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if m.index(p) >= 0 {
				b.Fatal("found a mark that is not there")
			}
		}
	})
	b.Run("bytes.Index", func(b *testing.B) {
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			if bytes.Contains(p, mark) {
				b.Fatal("found a mark that is not there")
			}
		}
	})
}
