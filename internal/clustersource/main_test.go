package clustersource

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) {
		if ferryBin.dir != "" {
			os.RemoveAll(ferryBin.dir)
		}
	}))
}
