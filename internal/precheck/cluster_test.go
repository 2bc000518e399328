package precheck

import (
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// TestCluster: a cluster target takes one database only, so several source databases
// without --db-map fail; a cluster source is checked master by master; a slot served by
// no master fails with the slot and the fix.
func TestCluster(t *testing.T) {
	t.Parallel()
	cl := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	src := testutil.StartServer(t, "--repl-timeout", "600")
	setIn(t, src, 0, "a", "b")
	setIn(t, src, 1, "c")
	seed := redis.Options{Addr: cl.Masters()[0].Addr()}

	// Standalone source with two databases into a cluster.
	rep := runCheck(t, Config{Source: addr(src), Target: seed, RateSample: fastRate})
	expect(t, rep, SideTarget, CheckCluster, Pass, "3 masters serve 16384 of 16384 slots", "cluster_state:ok")
	expect(t, rep, SideBoth, CheckDatabases, Fail, "the target is a cluster, which has only database 0", "source database 1 would go to other databases", "--db-map '0:prefix=db0:,1:prefix=db1:'", "--db-map 0:0,1:0 --db-merge")
	expect(t, rep, SideTarget, CheckConnect, Pass, "cluster of 3 masters")
	expect(t, rep, SideTarget, CheckACL, Pass)
	expect(t, rep, SideTarget, CheckMemory, Pass, "target master "+cl.Masters()[1].Addr())
	expect(t, rep, SideTarget, CheckExistingKeys, Pass, "the target cluster: no keys")

	rep = runCheck(t, Config{Source: addr(src), Target: seed, DBMap: map[int]int{1: 0}, RateSample: fastRate})
	expect(t, rep, SideBoth, CheckDatabases, Warn, "source databases 0, 1 all go to target database 0")
	rep = runCheck(t, Config{Source: addr(src), Target: seed, DBs: []int{1}, DBMap: map[int]int{1: 0}, RateSample: fastRate})
	expect(t, rep, SideBoth, CheckDatabases, Pass, "1→0")
	// A key prefix per database: they share database 0 without colliding.
	rep = runCheck(t, Config{Source: addr(src), Target: seed, DBMap: map[int]int{0: 0, 1: 0},
		DBPrefix: map[int]string{0: "db0:", 1: "db1:"}, RateSample: fastRate})
	expect(t, rep, SideBoth, CheckDatabases, Pass, "0→0", "1→0")

	// A cluster source.
	for i := range 30 {
		cl.Do(t, "SET", "key:"+string(rune('a'+i%26))+string(rune('0'+i/26)), "v")
	}
	dst := testutil.StartServer(t)
	rep = runCheck(t, Config{Source: seed, Target: addr(dst), RateSample: fastRate})
	expect(t, rep, SideSource, CheckCluster, Pass, "3 masters serve 16384 of 16384 slots")
	expect(t, rep, SideSource, CheckACL, Pass)
	expect(t, rep, SideSource, CheckBigKeys, Pass, "sampled 30 of 30 keys")
	b := expect(t, rep, SideSource, CheckBacklog, Pass)
	for _, m := range cl.Masters() {
		if !strings.Contains(b.Found, m.Addr()+": repl-backlog-size") {
			t.Errorf("backlog check does not report master %s: %q", m.Addr(), b.Found)
		}
	}
	expect(t, rep, SideBoth, CheckDatabases, Pass, "0→0")
	rep = runCheck(t, Config{Source: seed, Target: addr(dst), DBs: []int{0, 1}, RateSample: fastRate})
	expect(t, rep, SideBoth, CheckDatabases, Fail, "the source is a cluster, which has only database 0")

	// Slot 100 served by nobody.
	owner := cl.MasterForSlot(100)
	owner.Do(t, "CLUSTER", "DELSLOTS", "100")
	rep = runCheck(t, Config{Source: addr(src), Target: redis.Options{Addr: owner.Addr()}, DBs: []int{0}, RateSample: fastRate})
	expect(t, rep, SideTarget, CheckCluster, Fail, "serve 16383 of 16384 slots", "slots served by no master: 100", "redis-cli --cluster fix")
}

// TestMissingSlots covers slot-gap arithmetic.
func TestMissingSlots(t *testing.T) {
	got := formatSlotRanges(missingSlots([]slotRange{{0, 99, "a"}, {101, 5000, "b"}, {5002, 16383, "c"}}), 8)
	if got != "100, 5001" {
		t.Errorf("missing = %q, want 100, 5001", got)
	}
	got = formatSlotRanges(missingSlots([]slotRange{{10, 16000, "a"}}), 8)
	if got != "0-9, 16001-16383" {
		t.Errorf("missing = %q", got)
	}
	if m := missingSlots([]slotRange{{0, 16383, "a"}}); len(m) != 0 {
		t.Errorf("full coverage reports %v missing", m)
	}
	got = formatSlotRanges([][2]int{{1, 1}, {3, 3}, {5, 5}}, 2)
	if got != "1, 3, and 1 more ranges" {
		t.Errorf("limited = %q", got)
	}
}
