package rdb

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"runtime"
	"testing"

	"github.com/ferrysync/ferry/internal/crc"
)

// genReader streams a generated RDB without holding it: next returns the following
// piece of the body (reused buffers are fine) or nil at its end; genReader appends the
// EOF opcode and the CRC64.
type genReader struct {
	next    func() []byte
	cur     []byte
	crc     uint64
	trailer []byte
	done    bool
}

func (g *genReader) Read(p []byte) (int, error) {
	for len(g.cur) == 0 {
		if g.done {
			if len(g.trailer) == 0 {
				return 0, io.EOF
			}
			n := copy(p, g.trailer)
			g.trailer = g.trailer[n:]
			return n, nil
		}
		if g.cur = g.next(); g.cur == nil {
			g.done = true
			g.crc = crc.CRC64(g.crc, []byte{opEOF})
			g.trailer = binary.LittleEndian.AppendUint64([]byte{opEOF}, g.crc)
			continue
		}
		g.crc = crc.CRC64(g.crc, g.cur)
	}
	n := copy(p, g.cur)
	g.cur = g.cur[n:]
	return n, nil
}

// pieces yields head, then body(i) for i = 0, 1, … until it returns nil.
func pieces(head []byte, body func(i int) []byte) func() []byte {
	i := -1
	return func() []byte {
		i++
		if i == 0 {
			return head
		}
		return body(i - 1)
	}
}

// allocDuring returns the bytes allocated while f runs.
func allocDuring(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

const rawThreshold = 1 << 20

// readBig reads the one key of r with a 1 MiB raw threshold, which it must exceed, and
// calls each for every element.
func readBig(t *testing.T, r io.Reader, each func(*Elem)) { readBigAt(t, r, rawThreshold, each) }

func readBigAt(t *testing.T, r io.Reader, threshold int, each func(*Elem)) {
	t.Helper()
	d := NewDecoder(r, Options{})
	e, err := d.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := d.Raw(threshold); ok || err != nil {
		t.Fatalf("Raw(%d) = ok %v, err %v; want a value over the threshold", threshold, ok, err)
	}
	_ = e
	it, err := d.Iter()
	if err != nil {
		t.Fatal(err)
	}
	for it.Next() {
		each(it.Elem())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("after the value: %v", err)
	}
}

// memBound is what a big value may cost: the raw threshold the decoder buffered
// before giving up on a RESTORE payload (its buffer doubles, so twice that), plus a
// few chunks and read buffers.
const memBound = 4*rawThreshold + 4*DefaultChunkSize + 1<<20

func TestHugeStringBoundedMemory(t *testing.T) {
	const size = 48 << 20
	head := newRDB("REDIS0011").key(TypeString, "big").len(size).b
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	sent := 0
	gen := pieces(head, func(int) []byte {
		if sent == size {
			return nil
		}
		sent += len(chunk)
		return chunk
	})
	var total int64
	alloc := allocDuring(func() {
		readBig(t, &genReader{next: gen}, func(e *Elem) {
			if e.Kind != ElemChunk || e.Offset != total || !bytes.Equal(e.Member, chunk[:len(e.Member)]) {
				t.Fatalf("chunk at %d: kind %d offset %d len %d", total, e.Kind, e.Offset, len(e.Member))
			}
			total += int64(len(e.Member))
		})
	})
	if total != size || alloc > memBound {
		t.Fatalf("read %d of %d bytes, allocating %d (bound %d)", total, size, alloc, memBound)
	}
	t.Logf("%d MiB string: %d KiB allocated", size>>20, alloc>>10)
}

// lzfRun compresses n copies of c: one literal, then maximal back references to the
// previous byte (264 bytes per 3-byte op).
func lzfRun(c byte, n int) []byte {
	out := []byte{0, c}
	left := n - 1
	for left > 0 {
		k := min(left, 264)
		if k < 3 { // shorter than a back reference: literals
			out = append(out, byte(k-1))
			out = append(out, bytes.Repeat([]byte{c}, k)...)
			break
		}
		l := k - 2
		if l >= 7 {
			out = append(out, 7<<5, byte(l-7), 0)
		} else {
			out = append(out, byte(l<<5), 0)
		}
		left -= k
	}
	return out
}

func TestHugeLZFStringBoundedMemory(t *testing.T) {
	const size = 32 << 20
	comp := lzfRun('x', size)
	w := newRDB("REDIS0011").key(TypeString, "big").byte1(0xC3).len(uint64(len(comp))).len(size).raw(comp)
	data := w.end(true)
	var total int64
	alloc := allocDuring(func() {
		// The compressed value is small: it would travel as a RESTORE payload whole.
		// Make it "too big" to exercise streaming decompression.
		readBigAt(t, bytes.NewReader(data), 64<<10, func(e *Elem) {
			if bytes.Count(e.Member, []byte{'x'}) != len(e.Member) {
				t.Fatalf("chunk at %d is not all x", total)
			}
			total += int64(len(e.Member))
		})
	})
	if total != size || alloc > memBound {
		t.Fatalf("read %d of %d bytes, allocating %d (bound %d)", total, size, alloc, memBound)
	}
	t.Logf("%d MiB LZF string from %d KiB: %d KiB allocated", size>>20, len(comp)>>10, alloc>>10)
	// The same bytes decompressed in one piece agree.
	full, err := lzfDecompress(nil, comp, size)
	if err != nil || bytes.Count(full, []byte{'x'}) != size {
		t.Fatalf("block decompression: %v", err)
	}
}

func TestHugeZSetBoundedMemory(t *testing.T) {
	const members = 300_000
	head := newRDB("REDIS0009").key(TypeZSet2, "z").len(members).b
	var buf []byte
	gen := pieces(head, func(i int) []byte {
		if i*1000 >= members {
			return nil
		}
		buf = buf[:0]
		for j := i * 1000; j < (i+1)*1000; j++ {
			buf = append(buf, 14)
			buf = appendMemberName(buf, "member:", j)
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(float64(j)/4))
		}
		return buf
	})
	n := 0
	var want []byte
	alloc := allocDuring(func() {
		readBig(t, &genReader{next: gen}, func(e *Elem) {
			want = appendMemberName(want[:0], "member:", n)
			if e.Kind != ElemZSetMember || e.Score != float64(n)/4 || !bytes.Equal(e.Member, want) {
				t.Fatalf("element %d: %q %v", n, e.Member, e.Score)
			}
			n++
		})
	})
	if n != members || alloc > memBound {
		t.Fatalf("read %d of %d members, allocating %d", n, members, alloc)
	}
	t.Logf("%d-member zset: %d KiB allocated", members, alloc>>10)
}

func TestHugeListpackBoundedMemory(t *testing.T) {
	const fields = 300_000
	// Each element "f0000001" takes 1 + 8 + 1 bytes in a listpack.
	lpLen := 6 + fields*2*10 + 1
	head := newRDB("REDIS0010").key(TypeHashListpack, "h").len(uint64(lpLen)).b
	head = binary.LittleEndian.AppendUint32(head, uint32(lpLen))
	head = binary.LittleEndian.AppendUint16(head, 65535) // count unknown: > 65534
	var buf []byte
	gen := pieces(head, func(i int) []byte {
		if i*1000 > fields {
			return nil
		}
		buf = buf[:0]
		if i*1000 == fields {
			return append(buf, 0xFF)
		}
		for j := i * 1000; j < (i+1)*1000; j++ {
			for _, p := range []string{"f", "v"} {
				buf = append(buf, 0x80|8)
				buf = appendMemberName(buf, p, j)
				buf = append(buf, 9)
			}
		}
		return buf
	})
	n := 0
	var wf, wv []byte
	alloc := allocDuring(func() {
		readBig(t, &genReader{next: gen}, func(e *Elem) {
			wf, wv = appendMemberName(wf[:0], "f", n), appendMemberName(wv[:0], "v", n)
			if e.Kind != ElemHashField || !bytes.Equal(e.Member, wf) || !bytes.Equal(e.Value, wv) {
				t.Fatalf("field %d: %q=%q", n, e.Member, e.Value)
			}
			n++
		})
	})
	if n != fields || alloc > memBound {
		t.Fatalf("read %d of %d fields, allocating %d", n, fields, alloc)
	}
	t.Logf("%d-field listpack hash (%d MiB blob): %d KiB allocated", fields, lpLen>>20, alloc>>10)
}

// appendMemberName appends prefix and i as 7 zero-padded digits, without allocating.
func appendMemberName(dst []byte, prefix string, i int) []byte {
	dst = append(dst, prefix...)
	var d [7]byte
	for k := 6; k >= 0; k-- {
		d[k] = byte('0' + i%10)
		i /= 10
	}
	return append(dst, d[:]...)
}

// TestRawThenIterate: a value just over the threshold is re-read from the buffered
// bytes, and one under it comes back whole, byte-identical to the input.
func TestRawThenIterate(t *testing.T) {
	w := newRDB("REDIS0011")
	w.key(TypeList, "small").len(3).str("a").str("b").str("c")
	w.key(TypeList, "large").len(200)
	for i := 0; i < 200; i++ {
		w.str(fmt.Sprintf("element-%03d", i))
	}
	data := w.end(true)
	d := NewDecoder(bytes.NewReader(data), Options{BufferSize: 64})
	e, err := d.Next()
	if err != nil || string(e.Key) != "small" {
		t.Fatalf("first key %v %v", e, err)
	}
	raw, ok, err := d.Raw(100)
	if !ok || err != nil || !bytes.Equal(raw, []byte{3, 1, 'a', 1, 'b', 1, 'c'}) {
		t.Fatalf("small: %q %v %v", raw, ok, err)
	}
	if e, _ = d.Next(); string(e.Key) != "large" {
		t.Fatalf("second key %q", e.Key)
	}
	if _, ok, err := d.Raw(100); ok || err != nil {
		t.Fatalf("large fits in 100 bytes? %v %v", ok, err)
	}
	it, err := d.Iter()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for it.Next() {
		if want := fmt.Sprintf("element-%03d", n); string(it.Elem().Member) != want {
			t.Fatalf("element %d: %q", n, it.Elem().Member)
		}
		n++
	}
	if it.Err() != nil || n != 200 {
		t.Fatalf("%d elements, %v", n, it.Err())
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatal(err)
	}
}
