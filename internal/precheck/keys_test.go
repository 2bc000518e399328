package precheck

import (
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// setIn writes keys into database db of s.
func setIn(t *testing.T, s *testutil.Server, db int, keys ...string) {
	t.Helper()
	c := s.Conn(t)
	ctx := t.Context()
	if _, err := c.Do(ctx, "SELECT", db); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := c.Do(ctx, "SET", k, "v"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestExistingKeys: keys in the target databases the sync writes to fail the check under
// --existing block, with counts per database that leave out Ferry's own keys (a task's
// checkpoint exists on resume); databases the sync does not write, and --existing
// overwrite, pass.
func TestExistingKeys(t *testing.T) {
	t.Parallel()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	setIn(t, src, 0, "a")
	setIn(t, src, 1, "b")
	setIn(t, dst, 0, "x", "y", "z", "ferry:ckpt:t1", "ferry:hb:other")
	setIn(t, dst, 3, "p", "q")
	setIn(t, dst, 7, "ferry:ckpt:t1")

	cases := []struct {
		name     string
		dbs      []int
		dbMap    map[int]int
		existing string
		want     Result
		texts    []string
	}{
		{"all dbs", nil, nil, "", Fail, []string{"db0: 3 keys", "db3: 2 keys", "ignored 3 of Ferry's own keys", "ferry:ckpt:t1 is task \"t1\"'s checkpoint", "--existing overwrite", "FLUSHDB"}},
		{"db 1 only", []int{1}, nil, ExistingBlock, Pass, []string{"target database 1: no keys"}},
		{"db 1 into 3", []int{1}, map[int]int{1: 3}, ExistingBlock, Fail, []string{"db3: 2 keys"}},
		{"resume into 7", []int{0}, map[int]int{0: 7}, ExistingBlock, Pass, []string{"no keys", "ignored 1 of Ferry's own keys", "a sync of this task resumes from it"}},
		{"overwrite", nil, nil, ExistingOverwrite, Pass, []string{"db0: 3 keys", "--existing overwrite: keys with the same names"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := runCheck(t, Config{Source: addr(src), Target: addr(dst), DBs: c.dbs, DBMap: c.dbMap, Existing: c.existing, Task: "t1", RateSample: fastRate})
			expect(t, rep, SideTarget, CheckExistingKeys, c.want, c.texts...)
		})
	}
}

// TestDatabases: a database the target does not have, or the source does not have,
// fails; several source databases into one target database warns.
func TestDatabases(t *testing.T) {
	t.Parallel()
	src := testutil.StartServer(t, "--databases", "8")
	dst := testutil.StartServer(t, "--databases", "4")
	setIn(t, src, 5, "k")

	rep := runCheck(t, Config{Source: addr(src), Target: addr(dst), RateSample: fastRate})
	expect(t, rep, SideBoth, CheckDatabases, Fail, "5→5", "the target has no database 5", "--db-map")

	rep = runCheck(t, Config{Source: addr(src), Target: addr(dst), DBs: []int{5, 9}, DBMap: map[int]int{5: 1, 9: 2}, RateSample: fastRate})
	expect(t, rep, SideBoth, CheckDatabases, Fail, "the source has no database 9")

	rep = runCheck(t, Config{Source: addr(src), Target: addr(dst), DBs: []int{0, 5}, DBMap: map[int]int{5: 0}, RateSample: fastRate})
	expect(t, rep, SideBoth, CheckDatabases, Warn, "source databases 0, 5 all go to target database 0")

	rep = runCheck(t, Config{Source: addr(src), Target: addr(dst), DBMap: map[int]int{5: 3}, RateSample: fastRate})
	expect(t, rep, SideBoth, CheckDatabases, Pass, "5→3")
}
