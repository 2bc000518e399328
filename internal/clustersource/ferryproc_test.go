package clustersource

import (
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// ferryProc is one `ferry sync` process of the real binary, for the tests that kill it;
// TestMain removes the binary.
type ferryProc = testutil.FerryProc[Status]

// startFerry runs `ferry --log-format json sync --status-addr <free port> --no-progress <args>`;
// a status in a timeout message reads shard by shard.
func startFerry(tb testing.TB, args ...string) *ferryProc {
	tb.Helper()
	p := testutil.StartFerrySync[Status](tb, args...)
	p.Describe = describe
	return p
}
