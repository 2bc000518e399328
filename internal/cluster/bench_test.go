package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/writer"
)

// benchWrite writes b.N SETs of 64-byte values over 100k keys to a, then flushes, and
// reports the throughput.
func benchWrite(b *testing.B, a applier) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	val := make([]byte, 64)
	for i := range val {
		val[i] = 'x'
	}
	keys := make([][]byte, 100_000)
	for i := range keys {
		keys[i] = []byte("bench:" + strconv.Itoa(i))
	}
	args := [][]byte{[]byte("SET"), nil, val}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		args[1] = keys[i%len(keys)]
		if err := a.Write(ctx, writer.Command{Args: args, Offset: int64(i + 1)}); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "cmds/s")
}

// BenchmarkWriter is the baseline: one writer to one standalone server.
func BenchmarkWriter(b *testing.B) {
	s := testutil.StartServer(b)
	benchWrite(b, openWriter(b, s))
}

// BenchmarkRouter is the same load through a Router to a 3-master cluster.
func BenchmarkRouter(b *testing.B) {
	c := testutil.StartCluster(b, testutil.ClusterOptions{Masters: 3})
	benchWrite(b, openRouter(b, c, nil))
}

// BenchmarkCoLocate measures the cost of a cross-slot command that must be co-located:
// SUNIONSTORE of two 100-member sets in other slots, amid single-slot writes.
func BenchmarkCoLocate(b *testing.B) {
	c := testutil.StartCluster(b, testutil.ClusterOptions{Masters: 3})
	r := openRouter(b, c, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, set := range []string{"a", "b"} {
		args := [][]byte{[]byte("SADD"), []byte(set)}
		for i := range 100 {
			args = append(args, []byte(set+strconv.Itoa(i)))
		}
		if err := r.Write(ctx, writer.Command{Args: args}); err != nil {
			b.Fatal(err)
		}
	}
	cmd := writer.Command{Args: [][]byte{[]byte("SUNIONSTORE"), []byte("c"), []byte("a"), []byte("b")}}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := r.Write(ctx, cmd); err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "cmds/s")
}
