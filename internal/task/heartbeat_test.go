package task

import (
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// TestHeartbeatFallsBackToEstimate: a source user that may not write the heartbeat key gets
// an offset-based lag, labelled as an estimate, which returns to zero once caught up.
func TestHeartbeatFallsBackToEstimate(t *testing.T) {
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	src.Do(t, "ACL", "SETUSER", "nohb", "on", ">pw", "~*", "&*", "+@all", "-set")
	cfg := testConfig(t, src, dst)
	cfg.Source = redis.Options{Addr: src.Addr(), Username: "nohb", Password: "pw"}
	cfg.HeartbeatInterval = 100 * time.Millisecond
	r := startTask(t, cfg)
	waitPhase(t, r, PhaseIncremental)
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 41, Keys: 500})
	l := startLoad(w, src, 3000)
	time.Sleep(time.Second)
	st := waitStatus(t, r, 10*time.Second, "an estimated lag", func(s Status) bool { return s.LagEstimated })
	l.stop(t)
	waitAcked(t, src)
	st = waitStatus(t, r, 10*time.Second, "the estimated lag back at zero", func(s Status) bool { return s.LagEstimated && s.LagSeconds == 0 })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if n := dst.Do(t, "EXISTS", cfg.heartbeatKey()).Int; n != 0 {
		t.Fatalf("a heartbeat key reached the destination")
	}
	t.Logf("final status: lag %d bytes, %.3f s (estimated)", st.LagBytes, st.LagSeconds)
}
