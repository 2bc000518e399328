package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/writer"
)

// benchRDBs caches the RDBs the benchmarks generate across b.N rounds.
var benchRDBs sync.Map

// savedRDB fills a fresh redis-server with fill and returns the dump SAVE writes.
func savedRDB(tb testing.TB, name string, fill func(ctx context.Context, c *redis.Conn) error) []byte {
	if v, ok := benchRDBs.Load(name); ok {
		return v.([]byte)
	}
	s := testutil.StartServer(tb)
	ctx := context.Background()
	c, err := redis.Dial(ctx, redis.Options{Addr: s.Addr(), IOTimeout: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := fill(ctx, c); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Do(ctx, "SAVE"); err != nil {
		tb.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir(), "dump.rdb"))
	if err != nil {
		tb.Fatal(err)
	}
	s.Stop()
	benchRDBs.Store(name, data)
	return data
}

// pipeline sends n commands made by gen and reads their replies, in batches.
func pipeline(c *redis.Conn, n int, gen func(i int) []any) error {
	const batch = 1000
	for start := 0; start < n; start += batch {
		end := min(start+batch, n)
		for i := start; i < end; i++ {
			if err := c.Send(gen(i)...); err != nil {
				return err
			}
		}
		if err := c.Flush(); err != nil {
			return err
		}
		for i := start; i < end; i++ {
			if _, err := c.Receive(); err != nil {
				return fmt.Errorf("command %d: %w", i, err)
			}
		}
	}
	return nil
}

// stringsRDB: n strings of 100 incompressible bytes, every tenth with an expiry.
func stringsRDB(tb testing.TB, n int) []byte {
	return savedRDB(tb, "strings-"+strconv.Itoa(n), func(ctx context.Context, c *redis.Conn) error {
		val := make([]byte, 100)
		return pipeline(c, n, func(i int) []any {
			for j := range val {
				val[j] = 'a' + byte((i*7919+j*104729+j*j*31)%26)
			}
			if i%10 == 0 {
				return []any{"SET", "str:" + strconv.Itoa(i), val, "PXAT", "4102444800000"}
			}
			return []any{"SET", "str:" + strconv.Itoa(i), val}
		})
	})
}

// collectionsRDB: n each of hashes, lists, sets and zsets of 50 elements.
func collectionsRDB(tb testing.TB, n int) []byte {
	return savedRDB(tb, "collections-"+strconv.Itoa(n), func(ctx context.Context, c *redis.Conn) error {
		return pipeline(c, 4*n, func(i int) []any {
			k, kind := i/4, i%4
			cmd := []any{[]string{"HSET", "RPUSH", "SADD", "ZADD"}[kind], []string{"h:", "l:", "s:", "z:"}[kind] + strconv.Itoa(k)}
			for j := range 50 {
				el := fmt.Sprintf("element-%d-%d", k, j)
				switch kind {
				case 0:
					cmd = append(cmd, "f"+strconv.Itoa(j), el)
				case 3:
					cmd = append(cmd, j*7%13, el)
				default:
					cmd = append(cmd, el)
				}
			}
			return cmd
		})
	})
}

// benchLoad loads data into a fresh destination b.N times through a Loader; what it
// measures is the whole full-phase path after the transfer: decode, payload, writer,
// destination.
func benchLoad(b *testing.B, data []byte, opts func(l *Loader, addr string)) {
	dst := testutil.StartServer(b)
	ctx := context.Background()
	c, err := redis.Dial(ctx, redis.Options{Addr: dst.Addr(), IOTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	target, err := DestinationTarget(ctx, redis.Options{Addr: dst.Addr()})
	if err != nil {
		b.Fatal(err)
	}
	var keys int64
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if _, err := c.Do(ctx, "FLUSHALL"); err != nil {
			b.Fatal(err)
		}
		w, err := writer.Open(ctx, writer.Options{Target: redis.Options{Addr: dst.Addr()}})
		if err != nil {
			b.Fatal(err)
		}
		l := &Loader{Writer: w, Target: target}
		if opts != nil {
			opts(l, dst.Addr())
		}
		b.StartTimer()
		dec := rdb.NewDecoder(bytes.NewReader(data), rdb.Options{Size: int64(len(data))})
		if err := l.Load(ctx, dec); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		keys += l.Progress.Keys.Load()
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(keys)/b.Elapsed().Seconds(), "keys/s")
	// Whole process, writer goroutines and setup included: per key it must round to 0.
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.Mallocs-mallocs)/float64(keys), "allocs/key")
}

// connections runs a load benchmark with 1 and with 4 destination connections.
func connections(b *testing.B, data []byte) {
	for _, n := range []int{1, 4} {
		b.Run("conns="+strconv.Itoa(n), func(b *testing.B) {
			benchLoad(b, data, func(l *Loader, addr string) {
				l.Connections = n
				l.Open = func(ctx context.Context) (*writer.Writer, error) {
					return writer.Open(ctx, writer.Options{Target: redis.Options{Addr: addr},
						MaxInFlightBytes: writer.DefaultMaxInFlightBytes / n})
				}
			})
		})
	}
}

func BenchmarkLoadStrings(b *testing.B) { connections(b, stringsRDB(b, 200_000)) }

func BenchmarkLoadCollections(b *testing.B) { connections(b, collectionsRDB(b, 20_000)) }

// BenchmarkLoadFile loads the RDB file named by $FERRY_BENCH_RDB (skipped without it).
func BenchmarkLoadFile(b *testing.B) {
	data, err := os.ReadFile(os.Getenv("FERRY_BENCH_RDB"))
	if err != nil {
		b.Skip("FERRY_BENCH_RDB: ", err)
	}
	connections(b, data)
}

// BenchmarkDecodeStrings isolates Ferry's own work on the RESTORE path: decode, raw
// slice and payload, no writes.
func BenchmarkDecodeStrings(b *testing.B) {
	data := stringsRDB(b, 200_000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var p rdb.Payload
	for b.Loop() {
		dec := rdb.NewDecoder(bytes.NewReader(data), rdb.Options{Size: int64(len(data))})
		for {
			e, err := dec.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			if e.Record != rdb.RecordKey {
				continue
			}
			raw, _, err := dec.Raw(DefaultBigKeyThreshold)
			if err != nil {
				b.Fatal(err)
			}
			p.RestoreArgs(e.Key, p.Build(e.Type, raw, 10), e.ExpireAt, e.Idle, e.Freq)
		}
	}
}
