package clustersource

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/testutil"
)

// TestReshardSource moves slots between two source masters (IMPORTING/MIGRATING, MIGRATE,
// SETSLOT NODE, as redis-cli --cluster reshard does) while the sync is in its incremental
// phase and a client keeps incrementing counters and appending to lists in those slots,
// following MOVED and ASK. The exporting shard's stream deletes the moved keys (DEL), the
// importing shard's restores them (RESTORE-ASKING): no key may be lost on the destination,
// and every counter and list must equal the acknowledged writes exactly.
//
// Twice: with every DEL's keys looked up on the source ("checked": the migration settle
// time is not over), and with the fast path on ("fast": only keys another shard imported
// are looked up).
func TestReshardSource(t *testing.T) {
	t.Run("checked", func(t *testing.T) { reshardSource(t, DefaultMigrationSettle) })
	t.Run("fast", func(t *testing.T) { reshardSource(t, testSettle) })
}

func reshardSource(t *testing.T, settle time.Duration) {
	ctx := context.Background()
	src := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3, Args: sourceArgs})
	dst := testutil.StartServer(t)
	from, to := src.Masters()[0], src.Masters()[1]
	slots, err := src.LastSlots(from, 40)
	if err != nil {
		t.Fatal(err)
	}
	fill := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 41, Cluster: true, TTL: true, Keys: 1000})
	if err := fill.Fill(ctx, src, 2000); err != nil {
		t.Fatal(err)
	}
	// Keys of every moving slot: strings and hashes in the snapshot, counters and lists
	// written throughout.
	var counters, lists []string
	for i, slot := range slots {
		tag := "{" + tagFor(uint16(slot)) + "}"
		for j := range 5 {
			src.Do(t, "SET", tag+"s"+strconv.Itoa(j), "v"+strconv.Itoa(i*10+j))
			src.Do(t, "HSET", tag+"h"+strconv.Itoa(j), "f", i, "g", j)
		}
		counters = append(counters, tag+"cnt")
		lists = append(lists, tag+"log")
	}
	w := newRedirWriter(src)
	defer w.close()
	w.step(ctx, counters, lists) // something in the snapshot already

	r := startSyncSettle(t, testConfig(t, src, dst.Addr()), settle)
	waitStatus(t, r, 60*time.Second, "every shard incremental", incremental)
	fast := settle < DefaultMigrationSettle
	if fast {
		waitStatus(t, r, 30*time.Second, "the fast path for deletions", func(st Status) bool { return st.FastDeletes })
	}

	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				errc <- nil
				return
			case <-tick.C:
			}
			if err := w.step(ctx, counters, lists); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond)
	mctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = src.MoveSlots(mctx, from, to, slots, testutil.ReshardOptions{
		Batch: 3,
		Midway: func(ctx context.Context, slot int) error {
			// The client meets the slot held migrating: writes to its moved keys are
			// answered with ASK.
			deadline := time.Now().Add(20 * time.Second)
			for w.asks.Load() == 0 {
				if time.Now().After(deadline) {
					return fmt.Errorf("no ASK within 20 s for slot %d", slot)
				}
				time.Sleep(5 * time.Millisecond)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // writes after the move, on the new owner
	close(stop)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, r)
	st := r.s.Status()
	if err := r.stop(t); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	var kept, migrated int64
	for _, sh := range st.Shards {
		kept += sh.Cluster.KeptMigrated
		migrated += sh.Cluster.Migrated
		if sh.FullSyncs != 1 {
			t.Fatalf("shard %s: %d full syncs; the reshard must not force one", sh.ID, sh.FullSyncs)
		}
	}
	// On the fast path, an exporting DEL processed before the importing shard recorded the
	// key is applied at once (the importing shard's barrier then puts its restore after
	// it), so fewer DELs, maybe none, need the source's answer.
	if migrated == 0 || (!fast && kept == 0) || fast != st.FastDeletes {
		t.Fatalf("%d keys kept from the exporting shard's DELs, %d RESTORE-ASKING applied, fast path %v; want the migration seen on both sides (%s)",
			kept, migrated, st.FastDeletes, describe(st))
	}
	t.Logf("moved %d slots; %d migrated keys restored, %d DELs of moved keys kept from the destination; %d DEL keys looked up on the source, %d not; %d ASK, %d MOVED met by the client",
		len(slots), migrated, kept, st.DeletesChecked, st.DeletesFast, w.asks.Load(), w.moved.Load())
	requireSynced(t, src, dst, fill)
	for _, k := range counters {
		want := w.counter(k)
		if v := dst.Do(t, "GET", k); string(v.Str) != strconv.FormatInt(want, 10) {
			t.Fatalf("counter %s: destination %q, acknowledged %d", k, v.Str, want)
		}
	}
	for _, k := range lists {
		want := w.list(k)
		v := dst.Do(t, "LRANGE", k, 0, -1)
		if len(v.Elems) != len(want) {
			t.Fatalf("list %s: destination has %d elements, acknowledged %d", k, len(v.Elems), len(want))
		}
		for i, e := range v.Elems {
			if string(e.Str) != strconv.FormatInt(want[i], 10) {
				t.Fatalf("list %s element %d: destination %q, acknowledged %d", k, i, e.Str, want[i])
			}
		}
	}
}

// redirWriter writes to a cluster following MOVED and ASK, and remembers what was
// acknowledged.
type redirWriter struct {
	c     *testutil.Cluster
	conns map[string]*redis.Conn
	seq   int64
	i     int

	mu       sync.Mutex
	counters map[string]int64
	lists    map[string][]int64

	asks, moved atomic.Int64
}

func newRedirWriter(c *testutil.Cluster) *redirWriter {
	return &redirWriter{c: c, conns: make(map[string]*redis.Conn), counters: make(map[string]int64), lists: make(map[string][]int64)}
}

func (w *redirWriter) close() {
	for _, c := range w.conns {
		c.Close()
	}
}

func (w *redirWriter) conn(ctx context.Context, addr string) (*redis.Conn, error) {
	if c := w.conns[addr]; c != nil {
		return c, nil
	}
	c, err := redis.Dial(ctx, redis.Options{Addr: addr})
	if err != nil {
		return nil, err
	}
	w.conns[addr] = c
	return c, nil
}

// do sends one command to the master of key, following redirections.
func (w *redirWriter) do(ctx context.Context, key string, args ...any) error {
	addr := w.c.MasterForKey(key).Addr()
	asking := false
	for range 20 {
		c, err := w.conn(ctx, addr)
		if err != nil {
			return err
		}
		if asking {
			if _, err := c.Do(ctx, "ASKING"); err != nil {
				return err
			}
		}
		_, err = c.Do(ctx, args...)
		var re *resp.Error
		if !errors.As(err, &re) {
			return err
		}
		if _, a, ok := re.IsAsk(); ok {
			w.asks.Add(1)
			addr, asking = a, true
			continue
		}
		if _, a, ok := re.IsMoved(); ok {
			w.moved.Add(1)
			addr, asking = a, false
			continue
		}
		if re.IsTryAgain() {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		return err
	}
	return fmt.Errorf("%v: still redirected after 20 attempts", args)
}

// step increments one counter and appends to one list, round robin.
func (w *redirWriter) step(ctx context.Context, counters, lists []string) error {
	k := counters[w.i%len(counters)]
	if err := w.do(ctx, k, "INCR", k); err != nil {
		return fmt.Errorf("INCR %s: %w", k, err)
	}
	l := lists[w.i%len(lists)]
	w.seq++
	if err := w.do(ctx, l, "RPUSH", l, w.seq); err != nil {
		return fmt.Errorf("RPUSH %s: %w", l, err)
	}
	w.mu.Lock()
	w.counters[k]++
	w.lists[l] = append(w.lists[l], w.seq)
	w.mu.Unlock()
	w.i++
	return nil
}

func (w *redirWriter) counter(k string) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counters[k]
}

func (w *redirWriter) list(k string) []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lists[k]
}
