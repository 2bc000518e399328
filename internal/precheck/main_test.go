package precheck

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// addr gives the options to reach s as the default user.
func addr(s *testutil.Server) redis.Options { return redis.Options{Addr: s.Addr()} }

// fastRate keeps the write-rate sample short in tests that are not about it.
const fastRate = 150 * time.Millisecond

// runCheck runs a precheck and fails the test on an error.
func runCheck(t *testing.T, cfg Config) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if testing.Verbose() {
		var b strings.Builder
		_ = rep.WriteTable(&b)
		t.Logf("report:\n%s", b.String())
	}
	return rep
}

// expect asserts that the check named name on side has result want and that its found
// and advice text together contain every one of texts.
func expect(t *testing.T, rep *Report, side, name string, want Result, texts ...string) Check {
	t.Helper()
	c, ok := rep.Find(side, name)
	if !ok {
		t.Fatalf("no %s %s check in the report", side, name)
	}
	if c.Result != want {
		t.Errorf("%s %s: result %s, want %s (found %q, advice %q)", side, name, c.Result, want, c.Found, c.Advice)
	}
	all := c.Found + " | " + c.Advice
	for _, s := range texts {
		if !strings.Contains(all, s) {
			t.Errorf("%s %s: %q does not contain %q", side, name, all, s)
		}
	}
	return c
}
