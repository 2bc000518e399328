package clustersource

import (
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// BenchmarkStreamSetVsDel measures what the slot-migration check costs: "checked", a
// shard asks its source master (EXISTS) about every key of every DEL/UNLINK in its stream
// (until the migration settle time has passed with every shard incremental); "fast",
// only about keys another shard imported. Per
// iteration, every master of a 3-master source gets `keys` SETs, then a DEL per key, and
// the time until the destination (standalone) has applied each burst is measured; the
// reported rates are stream commands applied per second in each burst.
//
//	go test -run '^$' -bench StreamSetVsDel -benchtime 3x ./internal/clustersource
func BenchmarkStreamSetVsDel(b *testing.B) {
	b.Run("checked", func(b *testing.B) { benchSetVsDel(b, DefaultMigrationSettle) })
	b.Run("fast", func(b *testing.B) { benchSetVsDel(b, testSettle) })
}

func benchSetVsDel(b *testing.B, settle time.Duration) {
	const keys = 5000
	src := testutil.StartCluster(b, testutil.ClusterOptions{Masters: 3, Args: sourceArgs})
	dst := testutil.StartServer(b)
	r := startSyncSettle(b, testConfig(b, src, dst.Addr()), settle)
	waitStatus(b, r, 60*time.Second, "every shard incremental", incremental)
	if settle < DefaultMigrationSettle {
		waitStatus(b, r, 30*time.Second, "the fast path for deletions", func(st Status) bool { return st.FastDeletes })
	}
	burst := func(cmd string, i int) time.Duration {
		start := time.Now()
		for _, m := range src.Masters() {
			tag := "{" + tagFor(uint16(src.SlotRanges(m)[0][0])) + "}"
			c := m.Conn(b)
			for k := range keys {
				args := []any{cmd, tag + strconv.Itoa(i) + ":" + strconv.Itoa(k)}
				if cmd == "SET" {
					args = append(args, "v")
				}
				if err := c.Send(args...); err != nil {
					b.Fatal(err)
				}
			}
			for range keys {
				if _, err := c.Receive(); err != nil {
					b.Fatal(err)
				}
			}
		}
		waitCaughtUp(b, r)
		return time.Since(start)
	}
	var set, del time.Duration
	b.ResetTimer()
	for i := range b.N {
		set += burst("SET", i)
		del += burst("DEL", i)
	}
	b.StopTimer()
	n := float64(3 * keys * b.N)
	b.ReportMetric(n/set.Seconds(), "set/s")
	b.ReportMetric(n/del.Seconds(), "del/s")
	if err := r.stop(b); err != nil {
		b.Fatal(err)
	}
	if v := dst.Do(b, "KEYS", "{*"); len(v.Elems) != 0 {
		b.Fatalf("%d keys left on the destination after deleting them all", len(v.Elems))
	}
}
