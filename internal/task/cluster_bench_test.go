package task

import (
	"context"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// BenchmarkFullSyncCluster measures a full sync (--mode full) of the same source into one
// standalone server and into a 3-master cluster, in the same run:
//
//	go test -run '^$' -bench FullSyncCluster -benchtime 1x ./internal/task
func BenchmarkFullSyncCluster(b *testing.B) {
	ctx := context.Background()
	src := testutil.StartServer(b)
	src.Do(b, "DEBUG", "POPULATE", 300000, "pop", 100)
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 5, Large: true, Keys: 5000, Skip: []string{"function"}})
	if err := w.Fill(ctx, src, 20000); err != nil {
		b.Fatal(err)
	}
	keys := src.Do(b, "DBSIZE").Int
	// Each iteration starts on an empty destination (a new task, --existing block).
	run := func(b *testing.B, target string, masters []*testutil.Server) {
		b.ResetTimer() // not the destination's start
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			for _, m := range masters {
				m.Do(b, "FLUSHALL")
			}
			cfg := Config{Mode: ModeFull, HeartbeatInterval: time.Hour, DataDir: b.TempDir(), Logger: testLogger(b)}
			cfg.Source.Addr, cfg.Target.Addr = src.Addr(), target
			tk, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			start := time.Now()
			if err := tk.Run(ctx); err != nil {
				b.Fatal(err)
			}
			el := time.Since(start)
			b.ReportMetric(float64(keys)/el.Seconds(), "keys/s")
		}
	}
	b.Run("standalone", func(b *testing.B) {
		dst := testutil.StartServer(b)
		run(b, dst.Addr(), dst.Masters())
	})
	b.Run("cluster3", func(b *testing.B) {
		dst := testutil.StartCluster(b, testutil.ClusterOptions{Masters: 3})
		run(b, dst.Addrs()[0], dst.Masters())
	})
}
