package precheck

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// TestHealthyPair: a source with data (and a replica, so the write rate is sampled over
// the default 1 s) and an empty target with room pass every check, in under 5 s.
func TestHealthyPair(t *testing.T) {
	t.Parallel()
	src := testutil.StartServer(t, "--repl-timeout", "600")
	dst := testutil.StartServer(t)
	src.Do(t, "DEBUG", "POPULATE", "2000", "key", "100")
	setIn(t, src, 3, "k3")
	testutil.StartServer(t).ReplicaOf(t, src)
	start := time.Now()
	rep := runCheck(t, Config{Source: addr(src), Target: addr(dst)})
	elapsed := time.Since(start)
	for _, c := range rep.Checks {
		if c.Result != Pass {
			t.Errorf("%s %s: %s (found %q, advice %q)", c.Side, c.Name, c.Result, c.Found, c.Advice)
		}
	}
	expect(t, rep, SideSource, CheckBacklog, Pass, "(master_repl_offset over ")
	expect(t, rep, SideBoth, CheckDatabases, Pass, "0→0, 3→3")
	expect(t, rep, SideBoth, CheckCommands, Pass, "the target knows all")
	if elapsed > 5*time.Second {
		t.Errorf("a healthy precheck took %s, want under 5 s", elapsed)
	}
	t.Logf("healthy precheck: %s", elapsed)
	if !rep.OK(false) || rep.Result != Pass || len(rep.Checks) != 18 {
		t.Errorf("report result %s, OK(false)=%v, %d checks", rep.Result, rep.OK(false), len(rep.Checks))
	}
}

// TestConfigErrors: an invalid Config is an error, not a report.
func TestConfigErrors(t *testing.T) {
	ok := redis.Options{Addr: "127.0.0.1:1"}
	for _, c := range []struct {
		cfg  Config
		text string
	}{
		{Config{Target: ok}, "both a source and a target"},
		{Config{Source: ok, Target: ok, Existing: "flush"}, `existing-key policy "flush"`},
		{Config{Source: ok, Target: ok, DBs: []int{256}}, "database 256"},
		{Config{Source: ok, Target: ok, DBMap: map[int]int{1: -1}}, "mapping 1:-1"},
	} {
		_, err := Run(context.Background(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.text) {
			t.Errorf("Run(%+v) = %v, want an error about %q", c.cfg, err, c.text)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Config{Source: ok, Target: ok}); err == nil {
		t.Error("Run with a cancelled context: no error")
	}
}
