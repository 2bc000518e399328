package clustersource

import (
	"slices"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/task"
	"github.com/ferrysync/ferry/internal/throttle"
)

func TestSlotSet(t *testing.T) {
	s := slotsOf([]cluster.SlotRange{{First: 0, Last: 100}, {First: 200, Last: 200}, {First: 5000, Last: 5460}})
	if got := s.String(); got != "0-100,200,5000-5460" {
		t.Fatalf("String = %q", got)
	}
	if s.count() != 101+1+461 {
		t.Fatalf("count = %d", s.count())
	}
	for _, c := range []struct {
		slot uint16
		want bool
	}{{0, true}, {100, true}, {101, false}, {200, true}, {201, false}, {5460, true}, {16383, false}} {
		if s.has(c.slot) != c.want {
			t.Errorf("has(%d) = %v", c.slot, !c.want)
		}
	}
	o := slotsOf([]cluster.SlotRange{{First: 50, Last: 300}, {First: 16383, Last: 16383}})
	if n := s.overlap(o); n != 51+1 {
		t.Fatalf("overlap = %d, want 52", n)
	}
	u := s.union(o)
	if u.String() != "0-300,5000-5460,16383" || s.String() != "0-100,200,5000-5460" {
		t.Fatalf("union = %q (and s became %q)", u.String(), s.String())
	}
	if f, ok := o.first(); !ok || f != 50 {
		t.Fatalf("first = %d %v", f, ok)
	}
	var empty slotSet
	if _, ok := empty.first(); ok || empty.String() != "" {
		t.Fatal("empty set has a first slot or ranges")
	}
}

func TestTagFor(t *testing.T) {
	for _, slot := range []uint16{0, 1, 5460, 5461, 10922, 16383, 12345} {
		tag := tagFor(slot)
		if got := command.SlotString("ferry:hb:{" + tag + "}:x"); got != slot {
			t.Fatalf("tagFor(%d) = %q, whose key lands in slot %d", slot, tag, got)
		}
	}
}

func TestLayout(t *testing.T) {
	l := layout{existing: "block", shards: []string{"t-s0", "t-s5461"}}
	got, err := parseLayout(l.String())
	if err != nil || got.existing != "block" || !slices.Equal(got.shards, l.shards) {
		t.Fatalf("round trip of %q: %+v, %v", l.String(), got, err)
	}
	for _, bad := range []string{"", "existing=block", "shards=a", "existing=maybe shards=a", "existing=block shards=a junk"} {
		if _, err := parseLayout(bad); err == nil {
			t.Errorf("parseLayout(%q) accepted", bad)
		}
	}
	if got, err := parseLayout("shards=a,b existing=overwrite future=1"); err != nil || got.existing != "overwrite" || len(got.shards) != 2 {
		t.Fatalf("fields in another order and an unknown one: %+v, %v", got, err)
	}
}

func TestNames(t *testing.T) {
	s := &Sync{cfg: task.Config{Name: "job"}}
	if n := s.shardName(5461, nil); n != "job-s5461" {
		t.Fatalf("shardName = %q", n)
	}
	if n := s.shardName(0, []string{"job-s0", "job-s0-2"}); n != "job-s0-3" {
		t.Fatalf("shardName with the name taken = %q", n)
	}
	for name, want := range map[string]int{"job-s0": 0, "job-s16383": 16383, "job-s7-2": 7, "job-s16384": -1, "other-s1": -1, "job-sx": -1} {
		a, ok := s.anchorOf(name)
		if (want < 0) == ok || (ok && int(a) != want) {
			t.Errorf("anchorOf(%q) = %d %v, want %d", name, a, ok, want)
		}
	}
	if _, err := New(task.Config{Name: "a-very-long-task-name-that-leaves-no-room-for-the-shard-suffix-x", DataDir: "d"}); err == nil {
		t.Fatal("New accepted a task name the shard suffix would push past 64 characters")
	}
	if _, err := New(task.Config{Name: "ok"}); err == nil {
		t.Fatal("New accepted no data directory")
	}
}

func TestSplit(t *testing.T) {
	if got := split(throttle.Limits{MaxOps: 1000, MaxBytes: 10}, 3); got.MaxOps != 334 || got.MaxBytes != 4 {
		t.Fatalf("split = %+v", got)
	}
	if got := split(throttle.Limits{}, 3); !got.Unlimited() {
		t.Fatalf("unlimited split = %+v", got)
	}
}

func TestAggregatePhase(t *testing.T) {
	for _, c := range []struct {
		in   []task.Phase
		want task.Phase
	}{
		{[]task.Phase{task.PhaseIncremental, task.PhaseIncremental}, task.PhaseIncremental},
		{[]task.Phase{task.PhaseIncremental, task.PhaseFull}, task.PhaseFull},
		{[]task.Phase{task.PhaseFull, task.PhaseConnecting, task.PhaseIncremental}, task.PhaseConnecting},
		{[]task.Phase{task.PhaseIncremental, task.PhaseFailed}, task.PhaseFailed},
		{[]task.Phase{task.PhaseStopped, task.PhaseStopped}, task.PhaseStopped},
		{[]task.Phase{task.PhaseStopped, task.PhaseIncremental}, task.PhaseIncremental},
	} {
		if got := aggregatePhase(c.in); got != c.want {
			t.Errorf("aggregatePhase(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestPick: the shard follows its node while it is a master, then the master its node
// replicates (a failover), then the master serving most of its slots.
func TestPick(t *testing.T) {
	r := &shardRun{}
	r.slots.Store(slotsOf([]cluster.SlotRange{{First: 0, Last: 5460}}))
	shard := func(id string, first, last uint16, replicas ...string) cluster.Shard {
		sh := cluster.Shard{Master: cluster.Node{ID: id, Addr: id + ":1"}, Slots: []cluster.SlotRange{{First: first, Last: last}}}
		for _, rid := range replicas {
			sh.Replicas = append(sh.Replicas, cluster.Node{ID: rid})
		}
		return sh
	}
	topo := func(shards ...cluster.Shard) *cluster.Topology { return &cluster.Topology{Shards: shards} }
	for _, c := range []struct {
		name string
		topo *cluster.Topology
		prev string
		want string
	}{
		{"same node, slots moved", topo(shard("a", 0, 100), shard("b", 101, 16383)), "a", "a"},
		{"failover", topo(shard("c", 0, 5460, "a"), shard("b", 5461, 16383)), "a", "c"},
		{"old node gone", topo(shard("b", 0, 100), shard("d", 101, 16383)), "a", "d"},
		{"nothing of ours", topo(shard("b", 6000, 16383)), "a", ""},
	} {
		sh, _, ok := r.pick(c.topo, c.prev)
		if got := sh.Master.ID; ok != (c.want != "") || got != c.want {
			t.Errorf("%s: picked %q (%v), want %q", c.name, got, ok, c.want)
		}
	}
}

// TestMigrationRecord: which DEL keys a shard asks the source about, and when a record is
// forgotten.
func TestMigrationRecord(t *testing.T) {
	s := &Sync{settle: time.Minute}
	a, b := &shardRun{s: s, id: "s0"}, &shardRun{s: s, id: "s5461"}
	key := []byte("k")
	if !s.moved(a, key, 100) {
		t.Fatal("with the fast path off every key must be asked about")
	}
	s.mig.fast, s.mig.marks = true, map[*shardRun]int64{a: 50, b: 70}
	if s.moved(a, key, 100) {
		t.Fatal("a key nobody imported, past the mark, is asked about")
	}
	if !s.moved(a, key, 50) {
		t.Fatal("a DEL at or below the mark may delete a key another shard got in its snapshot: ask")
	}
	s.imported(b, key)
	s.imported(b, key) // migrated in twice
	s.imported(a, []byte("mine"))
	if !s.moved(a, key, 100) || s.moved(b, key, 100) {
		t.Fatal("a key b imported: a's DEL asks, b's own does not")
	}
	if s.moved(a, []byte("mine"), 100) {
		t.Fatal("a key a itself imported: its own DEL needs no lookup")
	}
	first := s.mig.log[0].at
	s.forget(&migCut{before: first})
	if !s.moved(a, key, 100) {
		t.Fatal("forgetting the first of two records of a key forgot the key")
	}
	s.forget(&migCut{before: time.Now()})
	if s.moved(a, key, 100) || len(s.mig.keys) != 0 || len(s.mig.log) != 0 {
		t.Fatalf("records left after forgetting them all: %v, %d entries", s.mig.keys, len(s.mig.log))
	}
	if s.checkedDeletes.Load() != 4 || s.fastDeletes.Load() != 4 {
		t.Fatalf("counted %d checked, %d fast; want 4 and 4", s.checkedDeletes.Load(), s.fastDeletes.Load())
	}
	if !reached(map[*shardRun]int64{a: 10, b: 20}, map[*shardRun]int64{a: 10, b: 20}) ||
		reached(map[*shardRun]int64{a: 10, b: 19}, map[*shardRun]int64{a: 10, b: 20}) {
		t.Fatal("reached")
	}
}
