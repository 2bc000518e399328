package task

import (
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// ferryProc is one `ferry sync` process of the real binary, for the tests that kill it
// with SIGKILL; TestMain removes the binary.
type ferryProc = testutil.FerryProc[Status]

// startFerry runs `ferry --log-format json sync --status-addr <free port> --no-progress <args>`.
func startFerry(tb testing.TB, args ...string) *ferryProc {
	tb.Helper()
	return testutil.StartFerrySync[Status](tb, args...)
}
