package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/filter"
	"github.com/ferrysync/ferry/internal/rdb"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/throttle"
	"github.com/ferrysync/ferry/internal/writer"
)

// TestLoadFiltered loads a six-DB snapshot with --dbs 1,3 --db-map 3:0 --exclude 'tmp:*':
// the destination must hold exactly the selected keys, in their mapped DBs, each with the
// value Redis itself digests for the source key; nothing else.
func TestLoadFiltered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := testutil.StartServer(t)
	for db := 0; db < 6; db++ {
		w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: int64(db), DBs: []int{db}, TTL: true, Keys: 200, Skip: []string{"crossdb"}})
		if err := w.Fill(ctx, src, 1500); err != nil {
			t.Fatal(err)
		}
		c := src.Conn(t)
		if _, err := c.Do(ctx, "SELECT", db); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 20; i++ {
			if _, err := c.Do(ctx, "SET", "tmp:"+string(rune('a'+i)), i); err != nil {
				t.Fatal(err)
			}
		}
	}
	src.Do(t, "SAVE")
	data, err := os.ReadFile(filepath.Join(src.Dir(), "dump.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := filter.ParseSpec(filter.Strings{DBs: "1,3", DBMap: "3:0", Exclude: []string{"tmp:*"}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := filter.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	dst := testutil.StartServer(t)
	opts := redis.Options{Addr: dst.Addr()}
	target, err := DestinationTarget(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	wr, err := writer.Open(ctx, writer.Options{Target: opts})
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	l := &Loader{Writer: wr, Target: target, Filter: f, Throttle: throttle.New(throttle.Limits{})}
	if err := l.Load(ctx, rdb.NewDecoder(strings.NewReader(string(data)), rdb.Options{Size: int64(len(data))})); err != nil {
		t.Fatal(err)
	}
	if l.Progress.Filtered.Load() == 0 || l.Progress.Keys.Load() == 0 {
		t.Fatalf("filtered %d, written %d: want both", l.Progress.Filtered.Load(), l.Progress.Keys.Load())
	}
	// Every selected source key is on the destination, in its mapped DB, with the same
	// digest; the destination has no other key.
	want := map[int]int{1: 1, 3: 0}
	total := int64(0)
	for srcDB, dstDB := range want {
		sc, dc := src.Conn(t), dst.Conn(t)
		if _, err := sc.Do(ctx, "SELECT", srcDB); err != nil {
			t.Fatal(err)
		}
		if _, err := dc.Do(ctx, "SELECT", dstDB); err != nil {
			t.Fatal(err)
		}
		keys, err := sc.Do(ctx, "KEYS", "*")
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, k := range keys.Elems {
			if strings.HasPrefix(string(k.Str), "tmp:") {
				continue
			}
			n++
			a, _ := sc.Do(ctx, "DEBUG", "DIGEST-VALUE", k.Str)
			b, _ := dc.Do(ctx, "DEBUG", "DIGEST-VALUE", k.Str)
			if len(a.Elems) != 1 || len(b.Elems) != 1 || string(a.Elems[0].Str) != string(b.Elems[0].Str) {
				t.Fatalf("db %d key %q → db %d: digest %v vs %v", srcDB, k.Str, dstDB, a, b)
			}
		}
		size, _ := dc.Do(ctx, "DBSIZE")
		if size.Int != n {
			t.Fatalf("destination db %d has %d keys, want the %d selected from source db %d", dstDB, size.Int, n, srcDB)
		}
		total += n
	}
	info, err := dst.Info(ctx, "keyspace")
	if err != nil {
		t.Fatal(err)
	}
	for k := range info {
		if k != "db0" && k != "db1" {
			t.Fatalf("destination has keys in %s, which nothing maps to", k)
		}
	}
	if got := l.Progress.Keys.Load(); got != total {
		t.Fatalf("loader counted %d keys written, the destination holds %d", got, total)
	}
}
