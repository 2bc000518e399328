package precheck

import (
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/testutil"
)

// TestHealthyPair: a source with data and an empty target with room pass every check,
// within 5 s with the default 1 s write-rate sample.
func TestHealthyPair(t *testing.T) {
	t.Parallel()
	src := testutil.StartServer(t, "--repl-timeout", "600")
	dst := testutil.StartServer(t)
	src.Do(t, "DEBUG", "POPULATE", "200", "key", "100")
	src.Do(t, "SELECT", "2")
	start := time.Now()
	rep := runCheck(t, Config{Source: addr(src), Target: addr(dst)})
	elapsed := time.Since(start)
	for _, c := range rep.Checks {
		if c.Result != Pass {
			t.Errorf("%s %s: %s (found %q, advice %q)", c.Side, c.Name, c.Result, c.Found, c.Advice)
		}
	}
	if elapsed > 5*time.Second {
		t.Errorf("a healthy precheck took %s, want under 5 s", elapsed)
	}
	t.Logf("healthy precheck: %s", elapsed)
	if !rep.OK(false) || rep.Result != Pass {
		t.Errorf("report result %s, OK(false)=%v", rep.Result, rep.OK(false))
	}
}
