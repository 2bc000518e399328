package replica

import (
	"bytes"
	"context"
	"strconv"
	"testing"
	"time"
)

// BenchmarkStream measures the stream path end to end without a network: a goroutine
// copies a +CONTINUE stream of small SETs into the spool (memory only, or spilling to
// disk), and Next parses and classifies it.
func BenchmarkStream(b *testing.B) {
	const n = 200_000
	var stream []byte
	stream = append(stream, "+CONTINUE\r\n"...)
	for i := range n {
		stream = append(stream, cmd("SET", "key:"+strconv.Itoa(i), "value-"+strconv.Itoa(i))...)
	}
	for _, bc := range []struct {
		name   string
		memory int64
	}{{"memory", DefaultSpoolMemory}, {"spill", 256 << 10}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				opts, _ := Options{DataDir: b.TempDir(), SpoolMemory: bc.memory, AckInterval: time.Hour}.withDefaults()
				r := newReplica(opts, Position{ReplID: testReplID}, newCommandTable(), link{addr: "bench", src: bytes.NewReader(stream), w: &lockedBuffer{}})
				if err := r.begin(context.Background()); err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				for i := range n {
					c, err := r.Next(ctx)
					if err != nil || c.Class != ClassData {
						b.Fatalf("command %d: %v", i, err)
					}
				}
				r.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/cmd")
		})
	}
}
