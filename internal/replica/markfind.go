package replica

import "bytes"

// markStride is how far apart markFinder probes its input. Any occurrence of a mark of
// at least markStride+2 bytes covers a probe position whose byte and the next both lie
// inside the occurrence: among the len(mark)-1 ≥ markStride+1 consecutive positions where
// a two-byte window fits in the mark, one is a multiple of markStride.
const markStride = 32

// markFinder finds a diskless transfer's EOF mark in the RDB bytes as they arrive.
//
// bytes.Index is the obvious tool and was 7 % of a full sync's CPU: it scans for the
// mark's first byte, and a mark is 40 hex digits, so in RDB data (text values, digits,
// hex ids) that byte is everywhere and every hit costs a comparison. The mark cannot be
// anywhere else than at the end of the transfer, but the finder must not assume it: a
// source (or a proxy) that sends the command stream right behind the mark is still
// framed correctly. Instead it looks at one two-byte window every markStride bytes and
// asks a 64 Kibit table whether that pair occurs in the mark (39 pairs of 65,536, so
// random data passes the test once in ~1,700 probes); only then does it compare.
type markFinder struct {
	mark  []byte
	pairs [1 << 16 / 64]uint64 // bit a<<8|b set when mark holds a followed by b
}

func newMarkFinder(mark []byte) *markFinder {
	m := &markFinder{mark: mark}
	for i := 0; i+1 < len(mark); i++ {
		v := uint(mark[i])<<8 | uint(mark[i+1])
		m.pairs[v/64] |= 1 << (v % 64)
	}
	return m
}

// index returns the position of the first occurrence of the mark in p, or -1: what
// bytes.Index(p, mark) returns.
func (m *markFinder) index(p []byte) int {
	n := len(m.mark)
	if n < markStride+2 {
		return bytes.Index(p, m.mark)
	}
	for j := 0; j+1 < len(p); j += markStride {
		v := uint(p[j])<<8 | uint(p[j+1])
		if m.pairs[v/64]&(1<<(v%64)) == 0 {
			continue
		}
		// The pair occurs in the mark: try every place it does. An occurrence found at
		// the first probe that finds any is the earliest: one starting earlier would have
		// covered an earlier probe, or this one at a smaller start, which is kept.
		best := -1
		for o := range n - 1 {
			if m.mark[o] != p[j] || m.mark[o+1] != p[j+1] {
				continue
			}
			start := j - o
			if start < 0 || start+n > len(p) || (best >= 0 && start >= best) {
				continue
			}
			if bytes.Equal(p[start:start+n], m.mark) {
				best = start
			}
		}
		if best >= 0 {
			return best
		}
	}
	return -1
}
