package writer

import (
	"context"
	"strconv"
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// BenchmarkWriteSet measures Write+Flush throughput of small SET commands against a real
// redis-server, and the allocations of the whole writer (sender and reader included) per
// command. Compare with: redis-benchmark -p <port> -P 64 -t set -n 1000000 -q
func BenchmarkWriteSet(b *testing.B) {
	for _, keys := range []int{1, 100_000} {
		b.Run("keys="+strconv.Itoa(keys), func(b *testing.B) {
			dst := testutil.StartServer(b)
			w := open(b, dst, nil)
			key := []byte("key:000000000000")
			c := Command{DB: 0, Args: [][]byte{[]byte("SET"), key, []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")}}
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(encodedLen(c.Args)))
			b.ResetTimer()
			for i := range b.N {
				// Rewrite the key's digits in place: the caller may reuse its slices.
				n := i % keys
				for j := len(key) - 1; j >= 4; j-- {
					key[j] = byte('0' + n%10)
					n /= 10
				}
				c.Offset = int64(i + 1)
				if err := w.Write(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
			if got := w.Applied(); got != int64(b.N) {
				b.Fatalf("Applied = %d, want %d", got, b.N)
			}
		})
	}
}

// BenchmarkWriteSelect alternates databases: every command needs an injected SELECT.
func BenchmarkWriteSelect(b *testing.B) {
	dst := testutil.StartServer(b)
	w := open(b, dst, nil)
	c := Command{Args: [][]byte{[]byte("SET"), []byte("k"), []byte("v")}}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.DB = i % 2
		if err := w.Write(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
}
