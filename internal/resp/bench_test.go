package resp

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
)

// stream builds a batch of commands to loop over, so the reader sees a steady stream.
func stream(n int, valueSize int) ([]byte, int) {
	var buf []byte
	v := strings.Repeat("v", valueSize)
	for i := range n {
		buf = AppendCommandStrings(buf, "SET", fmt.Sprintf("key:%08d", i), v)
	}
	return buf, len(buf) / n
}

func BenchmarkReadCommand(b *testing.B) {
	for _, bc := range []struct {
		name  string
		value int
	}{{"SET-16B", 16}, {"SET-16KiB", 16 << 10}, {"SET-1MiB", 1 << 20}} {
		b.Run(bc.name, func(b *testing.B) {
			data, per := stream(64, bc.value)
			r := NewReader(&loopReader{data: data}, ReaderOptions{})
			b.SetBytes(int64(per))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := r.ReadCommand(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadValue(b *testing.B) {
	var mix []byte
	mix = append(mix, "+OK\r\n:12345\r\n"...)
	mix = AppendBulk(mix, bytes.Repeat([]byte("x"), 100))
	mix = AppendArrayHeader(mix, 10)
	for i := range 10 {
		mix = AppendBulkString(mix, fmt.Sprintf("member:%d", i))
	}
	const perLoop = 4
	r := NewReader(&loopReader{data: mix}, ReaderOptions{})
	b.SetBytes(int64(len(mix) / perLoop))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ReadValue(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendCommand(b *testing.B) {
	key, val := []byte("key:00000001"), bytes.Repeat([]byte("v"), 16)
	set := []byte("SET")
	buf := AppendCommand(nil, set, key, val)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendCommand(buf[:0], set, key, val)
	}
}

func BenchmarkWriter(b *testing.B) {
	key, val := []byte("key:00000001"), bytes.Repeat([]byte("v"), 16)
	set := []byte("SET")
	w := NewWriter(io.Discard, 0)
	b.SetBytes(int64(len(AppendCommand(nil, set, key, val))))
	b.ReportAllocs()
	for b.Loop() {
		if err := w.WriteCommand(set, key, val); err != nil {
			b.Fatal(err)
		}
	}
	_ = w.Flush()
}
