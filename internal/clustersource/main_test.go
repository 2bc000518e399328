package clustersource

import (
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { testutil.RemoveFerryBinary() }))
}
