package cluster

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/writer"
)

const (
	testReplID = "0123456789abcdef0123456789abcdef01234567"
	testTask   = "eotest"
	testFloor  = "ferry:ckpt:{" + testTask + "}"
	testMarker = "ferry:task:{" + testTask + "}"
)

// sbatch is one exactly-once batch of a synthetic stream: commands at offsets end-…, end.
type sbatch struct {
	cmds [][]string
	offs []int64
	end  int64
}

func (b sbatch) pos() string { return testReplID + " " + strconv.FormatInt(b.end, 10) + " 0" }

// slotHarness applies a synthetic stream of batches to a cluster through Routers with
// per-slot checkpoints, and the same commands, plainly, to a standalone reference server.
type slotHarness struct {
	t       *testing.T
	c       *testutil.Cluster
	ref     *testutil.Server
	refW    *writer.Writer
	batches []sbatch
	next    int64
}

func newSlotHarness(t *testing.T) *slotHarness {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	ref := testutil.StartServer(t)
	h := &slotHarness{t: t, c: c, ref: ref, refW: openWriter(t, ref), next: 100}
	// The floor the stream starts from, as a full sync leaves it.
	c.Do(t, "SET", testFloor, testReplID+" 100 0")
	c.Do(t, "SET", testMarker, "existing=block")
	return h
}

// add appends a batch of commands.
func (h *slotHarness) add(cmds ...[]string) {
	b := sbatch{cmds: cmds}
	for range cmds {
		h.next += 10
		b.offs = append(b.offs, h.next)
	}
	b.end = h.next
	h.batches = append(h.batches, b)
}

// generate appends n random batches over a small key space: counters, append-only lists,
// strings, sets, split (MSET, DEL) and co-located (LMOVE, SUNIONSTORE) commands.
func (h *slotHarness) generate(rng *rand.Rand, n int) {
	seq := 0
	// A third of the keys share one of a few hash tags, so that a slot's group mixes
	// blind writes (SET, DEL) with others (INCR, RPUSH) in some batches and not in others.
	k := func(kind string) string {
		if rng.IntN(3) == 0 {
			return "{g" + strconv.Itoa(rng.IntN(4)) + "}" + kind + ":" + strconv.Itoa(rng.IntN(10))
		}
		return kind + ":" + strconv.Itoa(rng.IntN(60))
	}
	for range n {
		var cmds [][]string
		for range 1 + rng.IntN(25) {
			seq++
			var c []string
			switch rng.IntN(9) {
			case 0, 1:
				c = []string{"INCR", k("c")}
			case 2, 3:
				c = []string{"RPUSH", k("l"), strconv.Itoa(seq)}
			case 4:
				c = []string{"SET", k("s"), strconv.Itoa(seq)}
				if rng.IntN(2) == 0 {
					c = append(c, "PXAT", strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10))
				}
			case 5:
				c = []string{"MSET", k("s"), "m" + strconv.Itoa(seq), k("s"), "n" + strconv.Itoa(seq)}
			case 6:
				c = []string{"DEL", k("s"), k("s")}
				switch rng.IntN(3) {
				case 0:
					c = []string{"PEXPIREAT", k("s"), strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)}
				case 1:
					c = []string{"PERSIST", k("s")}
				}
			case 7:
				c = []string{"LMOVE", k("l"), k("l"), "LEFT", "RIGHT"}
			case 8:
				if rng.IntN(2) == 0 {
					c = []string{"SADD", k("set"), strconv.Itoa(rng.IntN(20))}
				} else {
					c = []string{"SUNIONSTORE", k("set"), k("set"), k("set")}
				}
			}
			cmds = append(cmds, c)
		}
		h.add(cmds...)
	}
}

func (h *slotHarness) open() *Router {
	sk, err := checkpoint.NewSlotKeys(testTask)
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts := Options{
		Target: redis.Options{Addr: h.c.Masters()[0].Addr()},
		Logger: testLogger(h.t),
		Checkpoints: &Checkpoints{
			SlotKey: sk.Key, Key: testFloor, Marker: testMarker, MarkerValue: "existing=block",
			ColocatePrefix: "ferry:colo:{" + testTask + "}:",
		},
	}
	opts.Writer.Logger = opts.Logger
	r, err := Open(ctx, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = r.Close() })
	return r
}

// resume opens a Router that continues from the floor the cluster holds, with the
// per-slot checkpoints above it, and returns it with the index of the first batch after
// the floor.
func (h *slotHarness) resume() (*Router, int) {
	h.t.Helper()
	r := h.open()
	f := strings.Fields(string(h.c.Do(h.t, "GET", testFloor).Str))
	floor, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		h.t.Fatal(err)
	}
	vals, err := r.ReadSlotCheckpoints(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	var held []int64
	for slot, v := range vals {
		if v == "" {
			continue
		}
		p, err := checkpoint.ParseSlotPosition(v)
		if err != nil {
			h.t.Fatal(err)
		}
		if p.Offset > floor && p.ReplID == testReplID {
			if held == nil {
				held = make([]int64, checkpoint.SlotCount)
			}
			held[slot] = p.Offset
		}
	}
	r.Resume(testReplID, strings.Join(f, " "), floor, held)
	from := 0
	for from < len(h.batches) && h.batches[from].end <= floor {
		from++
	}
	return r, from
}

// apply writes batches [from, to) to r as a sync task does in exactly-once delivery.
func (h *slotHarness) apply(ctx context.Context, r *Router, from, to int) error {
	for _, b := range h.batches[from:to] {
		if err := r.Write(ctx, writer.Command{DB: -1, Args: [][]byte{[]byte("MULTI")}}); err != nil {
			return err
		}
		for i, c := range b.cmds {
			db := 0
			if c[0] == "FLUSHALL" || c[0] == "FUNCTION" {
				db = -1
			}
			if err := r.Write(ctx, writer.Command{DB: db, Args: byteArgs(c), Source: b.offs[i]}); err != nil {
				return err
			}
		}
		if err := r.Write(ctx, writer.Command{DB: 0, Args: byteArgs([]string{"SET", testFloor, b.pos()})}); err != nil {
			return err
		}
		if err := r.Write(ctx, writer.Command{DB: -1, Args: [][]byte{[]byte("EXEC")}, Offset: b.end}); err != nil {
			return err
		}
	}
	return nil
}

// reference applies batches [from, to) to the standalone reference, plainly.
func (h *slotHarness) reference(from, to int) {
	ctx := context.Background()
	for _, b := range h.batches[from:to] {
		for _, c := range b.cmds {
			db := 0
			if c[0] == "FLUSHALL" || c[0] == "FUNCTION" {
				db = -1
			}
			if err := h.refW.Write(ctx, writer.Command{DB: db, Args: byteArgs(c)}); err != nil {
				h.t.Fatal(err)
			}
		}
	}
	flushCtx(h.t, h.refW)
}

func (h *slotHarness) requireSame() {
	h.t.Helper()
	testutil.RequireSameData(h.t, h.ref, h.c, testutil.CompareOptions{SkipPrefixes: []string{"ferry:"}})
}

func byteArgs(c []string) [][]byte {
	out := make([][]byte, len(c))
	for i, a := range c {
		out[i] = []byte(a)
	}
	return out
}

// setFloor rewinds the task's checkpoint to batch i's position: the state a crash leaves
// when the floor had not caught up with what the slots hold.
func (h *slotHarness) setFloor(i int) {
	h.c.Do(h.t, "SET", testFloor, h.batches[i].pos())
}

// TestSlotCheckpointsReplay applies a stream of batches (counters, lists, split and
// co-located commands, LMOVE among them, which a second run would change) through a
// Router with per-slot checkpoints, then replays everything after an older floor through a
// new Router: the per-slot checkpoints skip what each slot holds, and the cluster ends
// equal to a reference that applied every command once.
func TestSlotCheckpointsReplay(t *testing.T) {
	h := newSlotHarness(t)
	h.generate(rand.New(rand.NewPCG(1, 2)), 30)
	h.reference(0, len(h.batches))
	ctx := context.Background()
	r := h.open()
	r.Resume(testReplID, testReplID+" 100 0", 100, nil)
	if err := h.apply(ctx, r, 0, len(h.batches)); err != nil {
		t.Fatal(err)
	}
	flushCtx(t, r)
	if got, want := string(h.c.Do(t, "GET", testFloor).Str), h.batches[len(h.batches)-1].pos(); got != want {
		t.Fatalf("after Flush the floor is %q, want the last batch's %q", got, want)
	}
	s := r.Stats()
	if s.SlotTxns == 0 || len(s.CoLocated) == 0 || s.Split == 0 {
		t.Fatalf("the stream did not exercise the paths: %+v", s)
	}
	r.Close()
	h.requireSame()

	h.setFloor(9)
	r2, from := h.resume()
	if from != 10 {
		t.Fatalf("resume from batch %d, want 10", from)
	}
	if err := h.apply(ctx, r2, from, len(h.batches)); err != nil {
		t.Fatal(err)
	}
	flushCtx(t, r2)
	h.requireSame()
	s2 := r2.Stats()
	t.Logf("first run: %d per-slot transactions; replay of %d batches: %d commands skipped, %d transactions",
		s.SlotTxns, len(h.batches)-from, s2.SlotSkipped, s2.SlotTxns)
	if s2.SlotSkipped == 0 || s2.SlotTxns != 0 {
		t.Fatalf("the replay skipped %d commands and wrote %d transactions; want every command skipped", s2.SlotSkipped, s2.SlotTxns)
	}
}

// TestSlotCheckpointsPartialBatch: one master is paused (CLIENT PAUSE WRITE) while a
// batch is applied, and the Router is closed before it resumes, so the batch is applied on
// the other masters only and the floor stays behind. A new Router replays from the floor:
// the slots of the other masters skip the batch, those of the paused one apply it.
func TestSlotCheckpointsPartialBatch(t *testing.T) {
	h := newSlotHarness(t)
	rng := rand.New(rand.NewPCG(3, 4))
	h.generate(rng, 10)
	var last [][]string
	for i := range 60 {
		last = append(last, []string{"INCR", "c:" + strconv.Itoa(i)}, []string{"RPUSH", "l:" + strconv.Itoa(i), "p" + strconv.Itoa(i)})
	}
	h.add(last...)
	h.generate(rng, 5)
	h.reference(0, len(h.batches))
	ctx := context.Background()
	r := h.open()
	r.Resume(testReplID, testReplID+" 100 0", 100, nil)
	if err := h.apply(ctx, r, 0, 10); err != nil {
		t.Fatal(err)
	}
	flushCtx(t, r)
	paused := h.c.Masters()[1]
	paused.Do(t, "CLIENT", "PAUSE", 60000, "WRITE")
	if err := h.apply(ctx, r, 10, 11); err != nil {
		t.Fatal(err)
	}
	// The other masters apply their part (their slots' checkpoints move to the batch's end).
	sk, _ := checkpoint.NewSlotKeys(testTask)
	want := checkpoint.SlotPosition{ReplID: testReplID, Offset: h.batches[10].end}.String()
	for _, m := range []*testutil.Server{h.c.Masters()[0], h.c.Masters()[2]} {
		key := ""
		for i := 0; key == ""; i++ {
			if k := "c:" + strconv.Itoa(i); h.c.MasterForKey(k) == m {
				key = k
			}
		}
		ck := sk.Key(checkpointSlot(key))
		waitFor(t, func() bool { v, err := m.Call(ctx, "GET", ck); return err == nil && string(v.Str) == want })
	}
	r.Close()
	paused.Do(t, "CLIENT", "UNPAUSE")

	r2, from := h.resume()
	if from > 10 {
		t.Fatalf("resume from batch %d: the floor passed the partial batch", from)
	}
	if err := h.apply(ctx, r2, from, len(h.batches)); err != nil {
		t.Fatal(err)
	}
	flushCtx(t, r2)
	h.requireSame()
	if n := r2.Stats().SlotSkipped; n == 0 {
		t.Fatal("nothing skipped: the other masters' part of the partial batch was applied twice")
	}
}

func checkpointSlot(key string) uint16 { return command.SlotString(key) }

// waitFor polls cond every 5 ms for up to 10 s (test observation only).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSlotCheckpointsColocateRedo: a co-located LMOVE between keys on two masters is cut
// after its result reached the first master (the second is paused and the Router closed).
// Replayed, it must not run again (the first list would lose another element): the result
// kept in its temporary keys is written to the second master only.
func TestSlotCheckpointsColocateRedo(t *testing.T) {
	h := newSlotHarness(t)
	ms := h.c.Masters()
	home := h.c.MasterForKey(testFloor)
	var a, b *testutil.Server
	for _, m := range ms {
		if m == home {
			continue
		}
		if a == nil {
			a = m
		} else {
			b = m
		}
	}
	keyOn := func(m *testutil.Server, prefix string) string {
		for i := 0; ; i++ {
			if k := prefix + strconv.Itoa(i); h.c.MasterForKey(k) == m {
				return k
			}
		}
	}
	la, lb := keyOn(a, "la"), keyOn(b, "lb")
	h.add([]string{"RPUSH", la, "1", "2", "3"}, []string{"RPUSH", lb, "x"})
	h.add([]string{"LMOVE", la, lb, "LEFT", "RIGHT"})
	h.add([]string{"RPUSH", la, "4"}, []string{"INCR", "cnt"})
	h.reference(0, len(h.batches))
	ctx := context.Background()
	r := h.open()
	r.Resume(testReplID, testReplID+" 100 0", 100, nil)
	if err := h.apply(ctx, r, 0, 1); err != nil {
		t.Fatal(err)
	}
	flushCtx(t, r)
	b.Do(t, "CLIENT", "PAUSE", 60000, "WRITE")
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	err := h.apply(short, r, 1, 2)
	cancel()
	if err == nil {
		t.Fatal("the co-located command finished although the master of its destination was paused")
	}
	r.Close()
	b.Do(t, "CLIENT", "UNPAUSE")
	if got := len(a.Do(t, "LRANGE", la, 0, -1).Elems); got != 2 {
		t.Fatalf("%s holds %d elements; want 2: the cut should come after the first master's part", la, got)
	}
	if v := home.Do(t, "GET", "ferry:colo:{"+testTask+"}:redo"); v.Null {
		t.Fatal("the co-located command's results were not kept")
	}

	r2, from := h.resume()
	if from != 1 {
		t.Fatalf("resume from batch %d, want 1", from)
	}
	if err := h.apply(ctx, r2, from, len(h.batches)); err != nil {
		t.Fatal(err)
	}
	flushCtx(t, r2)
	h.requireSame()
	if n := home.Do(t, "KEYS", "ferry:colo:*").Elems; len(n) != 0 {
		t.Fatalf("temporary keys left behind: %v", n)
	}
}

// TestSlotCheckpointsFlushAll: a batch with a FLUSHALL in the middle and a FUNCTION LOAD.
// The task's checkpoint and marker survive the flush, the floor is past the batch when the
// batch is done, and a replay from before the batch (a crash before the floor moved) flushes
// again and ends exact: the commands after the flush carried no slot checkpoint.
func TestSlotCheckpointsFlushAll(t *testing.T) {
	h := newSlotHarness(t)
	rng := rand.New(rand.NewPCG(5, 6))
	h.generate(rng, 5)
	const lib = "#!lua name=slotlib\nredis.register_function('slotf', function(keys, args) return 1 end)"
	h.add([]string{"INCR", "c:1"}, []string{"RPUSH", "l:2", "a"}, []string{"FLUSHALL"},
		[]string{"FUNCTION", "LOAD", lib}, []string{"INCR", "c:3"}, []string{"RPUSH", "l:4", "b"}, []string{"MSET", "s:1", "x", "s:2", "y"})
	h.generate(rng, 3)
	h.reference(0, len(h.batches))
	ctx := context.Background()
	r := h.open()
	r.Resume(testReplID, testReplID+" 100 0", 100, nil)
	if err := h.apply(ctx, r, 0, 6); err != nil {
		t.Fatal(err)
	}
	if got := string(h.c.Do(t, "GET", testFloor).Str); got != h.batches[5].pos() {
		t.Fatalf("after the batch with FLUSHALL the floor is %q, want that batch's %q", got, h.batches[5].pos())
	}
	if v := h.c.Do(t, "GET", testMarker); string(v.Str) != "existing=block" {
		t.Fatalf("the marker after FLUSHALL: %q", v.Str)
	}
	r.Close()

	h.setFloor(4)
	r2, from := h.resume()
	if err := h.apply(ctx, r2, from, len(h.batches)); err != nil {
		t.Fatal(err)
	}
	flushCtx(t, r2)
	h.requireSame()
	for _, m := range h.c.Masters() {
		if v := m.Do(t, "FUNCTION", "LIST", "LIBRARYNAME", "slotlib"); len(v.Elems) != 1 {
			t.Fatalf("master %s lacks the library", m.Addr())
		}
	}
}

func TestReplayableArgs(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"FUNCTION LOAD code", "FUNCTION LOAD REPLACE code"},
		{"function load replace code", "function load replace code"},
		{"FUNCTION RESTORE payload", "FUNCTION RESTORE payload REPLACE"},
		{"FUNCTION RESTORE payload APPEND", "FUNCTION RESTORE payload REPLACE"},
		{"FUNCTION RESTORE payload FLUSH", "FUNCTION RESTORE payload FLUSH"},
		{"FUNCTION DELETE lib", "FUNCTION DELETE lib"},
		{"FUNCTION FLUSH", "FUNCTION FLUSH"},
		{"FLUSHALL", "FLUSHALL"},
		{"SCRIPT LOAD body", "SCRIPT LOAD body"},
	} {
		in := byteArgs(strings.Fields(c.in))
		got := replayableArgs(in)
		parts := make([]string, len(got))
		for i, a := range got {
			parts[i] = string(a)
		}
		if s := strings.Join(parts, " "); s != c.want {
			t.Errorf("replayableArgs(%q) = %q, want %q", c.in, s, c.want)
		}
		if strings.Join(strings.Fields(c.in), " ") != c.in {
			t.Fatalf("bad case %q", c.in)
		}
	}
}

func TestBlindWrite(t *testing.T) {
	for _, c := range []struct {
		cmd   string
		blind bool
	}{
		{"SET k v", true},
		{"set k v pxat 1700000000000", true},
		{"SET k v EXAT 1700000000", true},
		{"SET k v PX 100", false},
		{"SET k v EX 10", false},
		{"SET k v NX", false},
		{"SET k v XX", false},
		{"SET k v GET", false},
		{"SET k v KEEPTTL", false},
		{"SET k v PXAT", false},
		{"SET k", false},
		{"DEL a b c", true},
		{"UNLINK a", true},
		{"DEL", false},
		{"RESTORE k 0 payload REPLACE", true},
		{"RESTORE k 1700000000000 payload REPLACE ABSTTL IDLETIME 5", true},
		{"RESTORE k 5000 payload REPLACE", false},
		{"RESTORE k 0 payload", false},
		{"RESTORE k 0 payload REPLACE BOGUS", false},
		{"PEXPIREAT k 1700000000000", true},
		{"PEXPIREAT k 1700000000000 NX", false},
		{"PERSIST k", true},
		{"EXPIRE k 10", false},
		{"INCR k", false},
		{"RPUSH k a", false},
		{"HSET k f v", false},
		{"SETEX k 10 v", false},
		{"APPEND k v", false},
	} {
		if got := blindWrite(byteArgs(strings.Fields(c.cmd))); got != c.blind {
			t.Errorf("blindWrite(%q) = %v, want %v", c.cmd, got, c.blind)
		}
	}
}
