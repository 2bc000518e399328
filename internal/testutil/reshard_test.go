package testutil

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

// redirClient is a minimal cluster client for the reshard test: a slot table learnt from the
// harness at start and corrected only by the redirections it meets, which it follows as a
// cluster client must (MOVED: update the table and retry there; ASK: ASKING and the command on
// the importing node, table unchanged), counting each kind.
type redirClient struct {
	c     *Cluster
	slots [command.SlotCount]string
	conns map[string]*redis.Conn
	moved atomic.Int64
	ask   atomic.Int64
}

func newRedirClient(c *Cluster) *redirClient {
	rc := &redirClient{c: c, conns: make(map[string]*redis.Conn)}
	for s := range command.SlotCount {
		rc.slots[s] = c.MasterForSlot(s).Addr()
	}
	return rc
}

func (rc *redirClient) conn(ctx context.Context, addr string) (*redis.Conn, error) {
	if cn := rc.conns[addr]; cn != nil {
		return cn, nil
	}
	cn, err := redis.Dial(ctx, redis.Options{Addr: addr})
	if err != nil {
		return nil, err
	}
	rc.conns[addr] = cn
	return cn, nil
}

func (rc *redirClient) close() {
	for _, cn := range rc.conns {
		cn.Close()
	}
}

// do runs a single-key command (the key is args[1]) wherever the cluster says it belongs.
func (rc *redirClient) do(ctx context.Context, args ...any) (resp.Value, error) {
	slot := command.SlotString(args[1].(string))
	addr, asking := rc.slots[slot], false
	for range 10 {
		cn, err := rc.conn(ctx, addr)
		if err != nil {
			return resp.Value{}, err
		}
		if asking {
			if _, err := cn.Do(ctx, "ASKING"); err != nil {
				return resp.Value{}, err
			}
		}
		v, err := cn.Do(ctx, args...)
		var re *resp.Error
		if !errors.As(err, &re) {
			return v, err
		}
		if _, to, ok := re.IsMoved(); ok {
			rc.moved.Add(1)
			rc.slots[slot], addr, asking = to, to, false
			continue
		}
		if _, to, ok := re.IsAsk(); ok {
			rc.ask.Add(1)
			addr, asking = to, true
			continue
		}
		return v, err
	}
	return resp.Value{}, fmt.Errorf("%v: still redirected after 10 tries", args)
}

// keysInSlot returns n key names with the given prefix that hash to slot.
func keysInSlot(prefix string, slot, n int) []string {
	var out []string
	for i := 0; len(out) < n; i++ {
		if k := prefix + strconv.Itoa(i); int(command.SlotString(k)) == slot {
			out = append(out, k)
		}
	}
	return out
}

// TestReshardUnderLoad moves 1000 slots between two masters of a cluster with replicas while a
// client increments counters in every slot range: the client meets real -MOVED (slots that
// moved) and -ASK (a slot held migrating with its keys already moved), every acknowledged
// increment is there exactly once afterwards, keys written before the move keep their values
// (DEBUG DIGEST-VALUE), and every node, replicas included, agrees on the new owner.
func TestReshardUnderLoad(t *testing.T) {
	c := StartCluster(t, ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	from, to, other := c.Masters()[0], c.Masters()[1], c.Masters()[2]
	slots, err := c.LastSlots(from, 1000)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Data of every type, in the moved slots and elsewhere, with its digests before the move.
	w := NewWorkload(WorkloadOptions{Seed: 3, Cluster: true, TTL: true, Large: true, Keys: 4000, Skip: []string{"function"}})
	if err := w.Fill(ctx, c, 6000); err != nil {
		t.Fatal(err)
	}
	before := snapshotDigests(t, c)

	// Counters: 2000 spread over all slots, plus a few in the first slot to move, which the
	// client hits while that slot is held migrating.
	var keys []string
	for i := range 2000 {
		keys = append(keys, "ctr:"+strconv.Itoa(i))
	}
	keys = append(keys, keysInSlot("ctr:first:", slots[0], 4)...)
	rc := newRedirClient(c)
	defer rc.close()
	acked := make(map[string]int64)
	var mu sync.Mutex
	stop := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				errc <- nil
				return
			case <-tick.C:
			}
			for j := range 8 {
				k := keys[(8*i+j)%len(keys)]
				if _, err := rc.do(ctx, "INCR", k); err != nil {
					errc <- fmt.Errorf("INCR %s: %w", k, err)
					return
				}
				mu.Lock()
				acked[k]++
				mu.Unlock()
			}
		}
	}()

	time.Sleep(100 * time.Millisecond) // the client is writing
	start := time.Now()
	moved := c.Reshard(t, from, to, 1000, ReshardOptions{
		Midway: func(ctx context.Context, slot int) error {
			// The client goes round its keys in a few hundred ms; one of the first slot's
			// counters, already on to, is answered with ASK by from.
			deadline := time.Now().Add(20 * time.Second)
			for rc.ask.Load() == 0 {
				if time.Now().After(deadline) {
					return fmt.Errorf("no ASK within 20 s for slot %d", slot)
				}
				time.Sleep(5 * time.Millisecond)
			}
			return nil
		},
	})
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond) // the client meets the moved slots' old owner
	close(stop)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Logf("moved %d slots in %v; the client followed %d MOVED and %d ASK", len(moved), took, rc.moved.Load(), rc.ask.Load())
	if rc.moved.Load() == 0 || rc.ask.Load() == 0 {
		t.Fatalf("redirections met: %d MOVED, %d ASK; want both", rc.moved.Load(), rc.ask.Load())
	}
	if len(moved) != 1000 || moved[0] != slots[0] {
		t.Fatalf("Reshard moved %d slots starting at %d, want 1000 starting at %d", len(moved), moved[0], slots[0])
	}

	// Ownership: the harness, every node's own view (converged checked every node against
	// the harness), and the keys themselves.
	var keysMoved int64
	for _, s := range moved {
		if m := c.MasterForSlot(s); m != to {
			t.Fatalf("the harness has slot %d on %s, want %s", s, m, to)
		}
		if n := from.Do(t, "CLUSTER", "COUNTKEYSINSLOT", s).Int; n != 0 {
			t.Fatalf("%s still holds %d keys of moved slot %d", from, n, s)
		}
		keysMoved += to.Do(t, "CLUSTER", "COUNTKEYSINSLOT", s).Int
	}
	for _, n := range c.Nodes() {
		v := n.Do(t, "CLUSTER", "SLOTS")
		if owner := slotOwnerIn(v, moved[len(moved)/2]); owner != to.Port() {
			t.Fatalf("%s's CLUSTER SLOTS has slot %d on port %d, want %d", n, moved[len(moved)/2], owner, to.Port())
		}
	}
	if keysMoved == 0 {
		t.Fatal("no key lived in the moved slots: the test moved nothing")
	}
	if got := c.Masters(); len(got) != 3 || got[0] != from || got[1] != to || got[2] != other {
		t.Fatalf("masters in slot order %v", got)
	}

	// Every key readable where the harness says it is, with the value it had, or, for the
	// counters, exactly the acknowledged increments.
	after := snapshotDigests(t, c)
	if len(after) != len(before) {
		t.Fatalf("%d keys before the move, %d after", len(before), len(after))
	}
	for k, d := range before {
		if after[k] != d {
			t.Fatalf("key %q: digest %s before the move, %s after", k, d, after[k])
		}
	}
	for k, n := range acked {
		v := c.MasterForKey(k).Do(t, "GET", k)
		if got, _ := strconv.ParseInt(string(v.Str), 10, 64); got != n {
			t.Fatalf("counter %s = %q on %s, want %d acknowledged increments", k, v.Str, c.MasterForKey(k), n)
		}
	}
	if err := w.VerifyExact(ctx, c); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d keys moved with their slots, %d counters exact", keysMoved, len(acked))
}

// snapshotDigests reads DEBUG DIGEST-VALUE of every key but the counters, from the master the
// harness says holds it: a key on any other node would not be found there.
func snapshotDigests(t *testing.T, c *Cluster) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := newConnSet()
	defer cs.close()
	out := make(map[string]string)
	for _, m := range c.Masters() {
		keys, err := scanKeys(ctx, cs, m, 0, []string{"ctr:"})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if owner := c.MasterForKey(k); owner != m {
				t.Fatalf("key %q (slot %d) is on %s, the harness says %s", k, command.SlotString(k), m, owner)
			}
			v := m.Do(t, "DEBUG", "DIGEST-VALUE", k)
			out[k] = string(v.Elems[0].Str)
		}
	}
	return out
}

// slotOwnerIn returns the port of the master serving slot in a CLUSTER SLOTS reply, or 0.
func slotOwnerIn(v resp.Value, slot int) int {
	for _, r := range v.Elems {
		if len(r.Elems) < 3 {
			continue
		}
		if int(r.Elems[0].Int) <= slot && slot <= int(r.Elems[1].Int) {
			return int(r.Elems[2].Elems[1].Int)
		}
	}
	return 0
}

// TestMoveSlotsRefusesForeignSlot: a slot the named master does not serve is refused before
// anything changes.
func TestMoveSlotsRefusesForeignSlot(t *testing.T) {
	c := StartCluster(t, ClusterOptions{Masters: 2})
	a, b := c.Masters()[0], c.Masters()[1]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	foreign := c.SlotRanges(b)[0][0]
	err := c.MoveSlots(ctx, a, b, []int{foreign}, ReshardOptions{})
	if err == nil {
		t.Fatalf("moving slot %d, served by %s, away from %s was accepted", foreign, b, a)
	}
	if _, err := c.LastSlots(a, command.SlotCount); err == nil {
		t.Fatal("LastSlots asked for more slots than the master serves did not fail")
	}
	if m := c.MasterForSlot(foreign); m != b {
		t.Fatalf("slot %d now on %s", foreign, m)
	}
}
