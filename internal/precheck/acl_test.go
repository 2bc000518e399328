package precheck

import (
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

func userOpts(s *testutil.Server, user string) redis.Options {
	return redis.Options{Addr: s.Addr(), Username: user, Password: "pw"}
}

// TestSourceACL: a replication user missing REPLCONF fails with the exact grant; PSYNC,
// which Redis 7 refuses inside MULTI, is checked with ACL DRYRUN when the user may run it
// and reported as not verified when not.
func TestSourceACL(t *testing.T) {
	t.Parallel()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	src.Do(t, "SET", "app:1", "v")
	// No REPLCONF, no PSYNC, no ACL DRYRUN.
	src.Do(t, "ACL", "SETUSER", "norepl", "on", ">pw", "+ping", "+info", "+multi", "+discard", "+command", "+client|setname", "~*")
	rep := runCheck(t, Config{Source: userOpts(src, "norepl"), Target: addr(dst), RateSample: fastRate})
	c := expect(t, rep, SideSource, CheckACL, Fail, `user "norepl" may not run REPLCONF`, "ACL SETUSER norepl +replconf", "not verified: PSYNC")
	if strings.Contains(c.Found, "may not run") && strings.Contains(c.Found, "PSYNC,") {
		t.Errorf("PSYNC reported as denied without a way to know: %q", c.Found)
	}

	// With ACL DRYRUN the missing PSYNC is found too.
	src.Do(t, "ACL", "SETUSER", "dry", "on", ">pw", "+ping", "+info", "+replconf", "+multi", "+discard", "+command", "+client|setname", "+acl|dryrun", "~*")
	rep = runCheck(t, Config{Source: userOpts(src, "dry"), Target: addr(dst), RateSample: fastRate})
	expect(t, rep, SideSource, CheckACL, Fail, `user "dry" may not run PSYNC`, "ACL SETUSER dry +psync", "everything Ferry uses here: ACL SETUSER dry on +psync +replconf")

	// Everything required: pass; without SET the heartbeat falls back to estimates.
	src.Do(t, "ACL", "SETUSER", "ok", "on", ">pw", "+ping", "+info", "+replconf", "+psync", "+multi", "+discard", "+command", "+client|setname", "+acl|dryrun", "~*")
	rep = runCheck(t, Config{Source: userOpts(src, "ok"), Target: addr(dst), RateSample: fastRate, Task: "t1"})
	expect(t, rep, SideSource, CheckACL, Pass, `user "ok" may run the 6 commands probed`)
	expect(t, rep, SideSource, CheckHeartbeat, Warn, `may not SET ferry:hb:t1`, "offset lag", "ACL SETUSER ok +set %RW~ferry:hb:*")

	// With SET only on the heartbeat keys the heartbeat passes.
	src.Do(t, "ACL", "SETUSER", "ok", "+set", "resetkeys", "%R~*", "%RW~ferry:hb:*")
	rep = runCheck(t, Config{Source: userOpts(src, "ok"), Target: addr(dst), RateSample: fastRate, Task: "t1"})
	expect(t, rep, SideSource, CheckHeartbeat, Pass, "SET ferry:hb:t1")
	if n := src.Do(t, "EXISTS", "ferry:hb:t1").Int; n != 0 {
		t.Errorf("the heartbeat probe wrote ferry:hb:t1")
	}
}

// TestHeartbeatReplicaSource: a source that is a replica refuses the heartbeat write.
func TestHeartbeatReplicaSource(t *testing.T) {
	t.Parallel()
	master := testutil.StartServer(t)
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	src.ReplicaOf(t, master)
	rep := runCheck(t, Config{Source: addr(src), Target: addr(dst), RateSample: fastRate})
	expect(t, rep, SideSource, CheckHeartbeat, Warn, "READONLY", "read-only replica", "offset lag")
	expect(t, rep, SideSource, CheckACL, Pass)
}

// TestTargetACL: a target user missing RESTORE and EXEC fails with the grant; one whose
// keys do not cover the synced keys fails naming the key; a read-only replica as target
// fails with where to point instead.
func TestTargetACL(t *testing.T) {
	t.Parallel()
	src := testutil.StartServer(t)
	dst := testutil.StartServer(t)
	src.Do(t, "SET", "user:1", "v")

	dst.Do(t, "ACL", "SETUSER", "w", "on", ">pw", "+@all", "-restore", "-exec", "~*")
	rep := runCheck(t, Config{Source: addr(src), Target: userOpts(dst, "w"), RateSample: fastRate})
	expect(t, rep, SideTarget, CheckACL, Fail, `user "w" may not run EXEC, RESTORE`, "ACL SETUSER w +exec +restore", `key "user:1"`)

	dst.Do(t, "ACL", "SETUSER", "k", "on", ">pw", "+@all", "~app:*", "~ferry:*")
	rep = runCheck(t, Config{Source: addr(src), Target: userOpts(dst, "k"), RateSample: fastRate})
	expect(t, rep, SideTarget, CheckACL, Fail, `may not write the keys of`, `RESTORE "user:1"`, "ACL SETUSER k ~*")

	replica := testutil.StartServer(t)
	replica.ReplicaOf(t, dst)
	rep = runCheck(t, Config{Source: addr(src), Target: addr(replica), RateSample: fastRate})
	expect(t, rep, SideTarget, CheckACL, Fail, "READONLY", "is a read-only replica: point --target at its master")

	rep = runCheck(t, Config{Source: addr(src), Target: addr(dst), RateSample: fastRate})
	expect(t, rep, SideTarget, CheckACL, Pass, `user "default" may run`)
}
