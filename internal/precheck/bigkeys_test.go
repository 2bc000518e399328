package precheck

import (
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// TestBigKeys: the largest sampled keys are named with their size and type against the
// threshold that applies; a threshold at or above the target's proto-max-bulk-len fails,
// and so does a string the target could not take at all.
func TestBigKeys(t *testing.T) {
	t.Parallel()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t, "--proto-max-bulk-len", "1mb")
	src.Do(t, "DEBUG", "POPULATE", "300", "small", "50")
	src.Do(t, "SET", "big:string", strings.Repeat("s", 200<<10))
	for i := range 40 {
		src.Do(t, "RPUSH", "big:list", strings.Repeat("l", 4096), i)
	}

	rep := runCheck(t, Config{Source: addr(src), Target: addr(dst), BigKeyThreshold: 64 << 10, RateSample: fastRate})
	expect(t, rep, SideSource, CheckBigKeys, Pass, "sampled 302 of 302 keys", `largest: "big:string" db0 2`, "(string)", `"big:list"`, "(list)",
		"big-key threshold 64.0 KiB: 2 of the largest are above it and will be written as commands in chunks", "target proto-max-bulk-len 1.0 MiB")

	rep = runCheck(t, Config{Source: addr(src), Target: addr(dst), RateSample: fastRate})
	expect(t, rep, SideSource, CheckBigKeys, Fail, "big-key threshold 8.0 MiB (the default; --big-key-threshold)", "lower --big-key-threshold below 1.0 MiB")

	src.Do(t, "SET", "huge", strings.Repeat("h", 1100<<10))
	rep = runCheck(t, Config{Source: addr(src), Target: addr(dst), BigKeyThreshold: 512 << 10, RateSample: fastRate})
	expect(t, rep, SideSource, CheckBigKeys, Fail, `string "huge" (1.1 MiB) is longer than the target's proto-max-bulk-len`)
}
