package task

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// startSentinel runs a Sentinel (redis-server --sentinel) that monitors master under the
// name "mymaster", with a quorum of one, and returns its address once it knows the
// master's replicas.
func startSentinel(t *testing.T, master *testutil.Server, replicas int) string {
	t.Helper()
	bin, err := testutil.RedisServerPath()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	addr := testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
		"sentinel monitor mymaster 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds mymaster 1000\n"+
		"sentinel failover-timeout mymaster 5000\n",
		port, dir, filepath.Join(dir, "sentinel.log"), master.Port())
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	cmd.Dir = dir
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
			t.Logf("sentinel log:\n%s", b)
		}
	})
	ctx := context.Background()
	waitUntil(t, 30*time.Second, "the Sentinel to discover the replicas", func() bool {
		c, err := redis.Dial(ctx, redis.Options{Addr: addr, DialTimeout: time.Second})
		if err != nil {
			return false
		}
		defer c.Close()
		v, err := c.Do(ctx, "SENTINEL", "REPLICAS", "mymaster")
		return err == nil && len(v.Elems) >= replicas
	})
	return addr
}

// TestSentinelFailover: the source master dies; a task pointed at a Sentinel follows the
// failover the Sentinel performs: the next session asks it again, attaches to the promoted
// replica and continues there with a partial resync (PSYNC2: the replica knows the dead
// master's replication ID, and has the stream as far as the task has it).
//
// (A failover forced on a live master, SENTINEL FAILOVER, does not wait for the replica to
// catch up, and the old master goes on sending PINGs to the task until it is converted:
// the task is then ahead of the promoted replica and only a full resync is correct.)
func TestSentinelFailover(t *testing.T) {
	ctx := context.Background()
	m := testutil.StartServer(t, sourceArgs...)
	r := testutil.StartServer(t, sourceArgs...)
	r.ReplicaOf(t, m)
	sentinel := startSentinel(t, m, 1)
	dst := testutil.StartServer(t)
	fill, live := newWorkloads(100)
	if err := fill.Fill(ctx, m, 5000); err != nil {
		t.Fatal(err)
	}
	cfg := resumeConfig(t, "", dst.Addr())
	cfg.Sentinel = redis.Options{Addr: sentinel, DialTimeout: 2 * time.Second}
	cfg.SentinelMaster = "mymaster"
	cfg.SourceTimeout = 3 * time.Second
	task := startTask(t, cfg)
	waitPhase(t, task, PhaseIncremental)
	l := startLoad(live, m, 1000)
	time.Sleep(300 * time.Millisecond)
	l.stop(t)
	verifySynced(t, m, dst, fill, live)
	before := task.t.Status()
	partial := stat(t, r, "stats", "sync_partial_ok")

	if err := testutil.WaitReplicasCaughtUp(ctx, m); err != nil {
		t.Fatal(err)
	}
	m.Kill()
	c, err := redis.Dial(ctx, redis.Options{Addr: sentinel})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitUntil(t, 30*time.Second, "the Sentinel to name the replica master", func() bool {
		v, err := c.Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
		return err == nil && len(v.Elems) == 2 && string(v.Elems[1].Str) == strconv.Itoa(r.Port())
	})
	st := waitStatus(t, task, 60*time.Second, "a session on the promoted replica", func(s Status) bool {
		task.t.mu.Lock()
		on := task.t.source.Addr == r.Addr()
		task.t.mu.Unlock()
		return on && s.Phase == PhaseIncremental && s.PartialSyncs > before.PartialSyncs
	})
	// The Sentinel closed the clients of the replica it promoted, the harness's shared
	// connection among them: this call notices, the next ones dial again.
	_, _ = r.Info(ctx, "server")
	l = startLoad(live, r, 1000)
	time.Sleep(300 * time.Millisecond)
	l.stop(t)
	verifySynced(t, r, dst, fill, live)
	if st.FullSyncs != before.FullSyncs {
		t.Fatalf("%d → %d full syncs across the failover; want none", before.FullSyncs, st.FullSyncs)
	}
	if got := stat(t, r, "stats", "sync_partial_ok"); got <= partial {
		t.Fatalf("the promoted replica's sync_partial_ok stayed at %d", got)
	}
	if err := task.stop(t); err != nil {
		t.Fatal(err)
	}
}
