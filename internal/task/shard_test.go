package task

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/testutil"
)

// shardApplier is a stream applier of a shard task, for the rewrites that need no
// connection: inside a source transaction, where nothing is committed before a migrated
// key is applied.
func shardApplier() *streamApplier {
	return &streamApplier{t: &Task{cfg: Config{Name: "t-s0", Shard: &Shard{ID: "s0"}}}, inMulti: true}
}

func argStrings(args [][]byte) string {
	s := make([]string, len(args))
	for i, a := range args {
		s[i] = string(a)
	}
	return strings.Join(s, " ")
}

func streamCmd(name string, args ...string) *replica.Command {
	cmd := &replica.Command{Name: name, Class: replica.ClassData, Offset: 100}
	for _, a := range args {
		cmd.Args = append(cmd.Args, []byte(a))
	}
	return cmd
}

// TestShardRewrites: what a shard makes of the commands that several shards' streams
// carry to one destination.
func TestShardRewrites(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{"FUNCTION LOAD code", "FUNCTION LOAD REPLACE code"},
		{"FUNCTION LOAD REPLACE code", "FUNCTION LOAD REPLACE code"},
		{"function load replace code", "function load replace code"},
		{"FUNCTION RESTORE payload", "FUNCTION RESTORE payload REPLACE"},
		{"FUNCTION RESTORE payload APPEND", "FUNCTION RESTORE payload REPLACE"},
		{"FUNCTION RESTORE payload FLUSH", "FUNCTION RESTORE payload FLUSH"},
		{"FUNCTION FLUSH ASYNC", "FUNCTION FLUSH ASYNC"},
		{"RESTORE-ASKING k 1795266011958 payload ABSTTL", "RESTORE k 1795266011958 payload ABSTTL REPLACE"},
		{"RESTORE-ASKING k 0 payload", "RESTORE k 0 payload REPLACE"},
		{"RESTORE-ASKING k 0 payload REPLACE IDLETIME 5", "RESTORE k 0 payload REPLACE IDLETIME 5"},
		{"SET k v", "SET k v"},
	} {
		f := strings.Fields(c.in)
		cmd := streamCmd(strings.ToLower(f[0]), f...)
		a := shardApplier()
		fwd, err := a.shardCommand(context.Background(), cmd)
		if err != nil || !fwd {
			t.Fatalf("%s: forward %v, %v", c.in, fwd, err)
		}
		if got := argStrings(cmd.Args); got != c.want {
			t.Errorf("%s → %s, want %s", c.in, got, c.want)
		}
	}
	a := shardApplier()
	if st := a.t.cfg.Shard.Stats(); st.Migrated != 0 {
		t.Fatalf("fresh stats: %+v", st)
	}
	if _, err := a.shardCommand(context.Background(), streamCmd("restore-asking", "RESTORE-ASKING", "k", "0", "p")); err != nil {
		t.Fatal(err)
	}
	if st := a.t.cfg.Shard.Stats(); st.Migrated != 1 {
		t.Fatalf("a migrated key is not counted: %+v", st)
	}
}

// TestShardFlushInTransaction: a FLUSHALL inside a source transaction cannot be turned
// into a deletion of the shard's keys at that point; the task stops and says why.
func TestShardFlushInTransaction(t *testing.T) {
	a := shardApplier()
	_, err := a.shardCommand(context.Background(), streamCmd("flushall", "FLUSHALL"))
	if err == nil || !strings.Contains(err.Error(), "inside a transaction") || !strings.Contains(err.Error(), "--exclude-commands flushall") {
		t.Fatalf("FLUSHALL in MULTI: %v", err)
	}
	_, err = a.shardCommand(context.Background(), streamCmd("function", "FUNCTION", "DELETE", "lib"))
	if err == nil || !strings.Contains(err.Error(), "inside a transaction") {
		t.Fatalf("FUNCTION DELETE in MULTI: %v", err)
	}
}

// TestShardProbe asks a real 2-master cluster where keys live while a slot migrates and
// after it moved: a key already moved to the importing node is elsewhere (ASK followed with
// ASKING), one not moved yet or never written is not, and once the slot belongs to the
// other master its keys are elsewhere (MOVED followed).
func TestShardProbe(t *testing.T) {
	ctx := context.Background()
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 2})
	a, b := c.Masters()[0], c.Masters()[1]
	slot := c.SlotRanges(a)[0][1] // a's last slot
	tag := ""
	for i := 0; int(command.SlotString(tag)) != slot; i++ {
		tag = strconv.Itoa(i)
	}
	moved, stays, never, own := "{"+tag+"}moved", "{"+tag+"}stays", "{"+tag+"}never", "mine"
	for command.SlotString(own) == uint16(slot) || c.MasterForKey(own) != a {
		own += "x"
	}
	a.Do(t, "SET", moved, "1")
	a.Do(t, "SET", stays, "2")
	a.Do(t, "SET", own, "3")
	b.Do(t, "CLUSTER", "SETSLOT", slot, "IMPORTING", c.NodeID(a))
	a.Do(t, "CLUSTER", "SETSLOT", slot, "MIGRATING", c.NodeID(b))
	a.Do(t, "MIGRATE", "127.0.0.1", b.Port(), "", 0, 5000, "KEYS", moved)

	p := &sourceProbe{conns: make(map[string]*redis.Conn)}
	defer p.close()
	p.retarget(redis.Options{Addr: a.Addr()})
	keys := [][]byte{[]byte(moved), []byte(stays), []byte(never), []byte(own)}
	got, err := p.elsewhere(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, false, false}; !slices.Equal(got, want) {
		t.Fatalf("while migrating: elsewhere %v, want %v", got, want)
	}

	a.Do(t, "MIGRATE", "127.0.0.1", b.Port(), "", 0, 5000, "KEYS", stays)
	for _, m := range []*testutil.Server{a, b} {
		m.Do(t, "CLUSTER", "SETSLOT", slot, "NODE", c.NodeID(b))
	}
	got, err = p.elsewhere(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, true, false, false}; !slices.Equal(got, want) {
		t.Fatalf("after the move: elsewhere %v, want %v", got, want)
	}
}
