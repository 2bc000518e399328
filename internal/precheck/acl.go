package precheck

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

// Permissions are probed without running anything:
//
//   - Inside MULTI, a server checks each command's ACL permissions (and, for writes,
//     READONLY, OOM and MISCONF) when it queues it, and only runs it at EXEC. Queueing
//     the commands Ferry will use and then sending DISCARD therefore tells, command by
//     command and key by key, whether they would be allowed, and writes nothing. This
//     works with any user on Redis 6+ and Valkey (before 6 there are no ACLs and every
//     command queues), and catches a read-only replica or a full server too, which
//     ACL DRYRUN would not.
//   - Commands a server refuses inside MULTI (PSYNC and SYNC have the no-multi flag from
//     Redis 7.0) are asked with ACL DRYRUN (Redis 7.0+), which needs +acl|dryrun. Without
//     it their permission cannot be known without running them; the report says so.
//   - EXEC is probed outside a transaction: "EXEC without MULTI" comes after the ACL
//     check, so it proves the permission without running anything.

// probeMode says how a command is probed.
type probeMode uint8

const (
	inMulti probeMode = iota // queued in a discarded MULTI
	noMulti                  // refused inside MULTI by Redis 7+: ACL DRYRUN only
	outside                  // run outside MULTI, where it fails harmlessly after the ACL check
)

// probe is one command whose permission is checked.
type probe struct {
	acl      string // what to grant: "psync", "cluster|slots"
	args     []any  // a harmless invocation with the command's arity
	mode     probeMode
	optional bool   // Ferry works without it, with less
	why      string // for optional commands: what is lost without it
}

// outcome is what a probe found.
type outcome uint8

const (
	allowed    outcome = iota
	denied             // NOPERM for the command
	deniedKey          // NOPERM for a key or channel
	unknownCmd         // the server does not have the command (renamed, disabled, too old)
	refused            // permitted, but the server refuses it now: READONLY, OOM, MISCONF...
	unverified         // could not tell
)

type probeResult struct {
	probe
	outcome outcome
	msg     string // the server's reply, for everything but allowed
}

// probeAll checks every probe on c for user. c is left in an unknown state: the caller
// closes it.
func probeAll(ctx context.Context, c *redis.Conn, user string, v serverVersion, probes []probe) []probeResult {
	out := make([]probeResult, len(probes))
	var queue, dry []int
	for i, p := range probes {
		out[i].probe = p
		switch p.mode {
		case outside:
			out[i].outcome, out[i].msg = classify(c.Do(ctx, p.args...))
		case noMulti:
			if v.atLeast(7, 0) {
				dry = append(dry, i)
			} else {
				queue = append(queue, i)
			}
		default:
			queue = append(queue, i)
		}
	}
	if len(queue) > 0 {
		if _, err := c.Do(ctx, "MULTI"); err != nil {
			// MULTI itself is refused: everything goes to ACL DRYRUN.
			for _, i := range queue {
				out[i].outcome, out[i].msg = unverified, "MULTI: "+err.Error()
			}
			dry = append(dry, queue...)
		} else {
			for _, i := range queue {
				_ = c.Send(probes[i].args...)
			}
			_ = c.Send("DISCARD")
			for _, i := range queue {
				v, err := c.Receive()
				if isNotInMulti(err) {
					dry = append(dry, i)
					continue
				}
				if !isReply(err) && err != nil {
					out[i].outcome, out[i].msg = unverified, err.Error()
					continue
				}
				if err == nil && v.Text() != "QUEUED" {
					out[i].outcome, out[i].msg = unverified, "unexpected reply "+strconv.Quote(v.Text())
					continue
				}
				out[i].outcome, out[i].msg = classify(v, err)
			}
			_, _ = c.Receive() // DISCARD
		}
	}
	slices.Sort(dry)
	dryOK := v.atLeast(7, 0)
	for _, i := range dry {
		if !dryOK {
			out[i].outcome = unverified
			if out[i].msg == "" {
				out[i].msg = "refused inside MULTI and the server has no ACL DRYRUN (Redis 7.0+)"
			}
			continue
		}
		args := append([]any{"ACL", "DRYRUN", user}, probes[i].args...)
		v, err := c.Do(ctx, args...)
		switch {
		case err == nil && v.Text() == "OK":
			out[i].outcome, out[i].msg = allowed, ""
		case err == nil:
			// A bulk string explaining the denial.
			out[i].outcome, out[i].msg = denied, v.Text()
			if strings.Contains(v.Text(), "key") || strings.Contains(v.Text(), "channel") {
				out[i].outcome = deniedKey
			}
		case isReply(err) && isNoPerm(err):
			dryOK = false // the user may not run ACL DRYRUN: no use asking again
			out[i].outcome, out[i].msg = unverified, "ACL DRYRUN: "+err.Error()
		case isReply(err) && strings.Contains(err.Error(), "not found"):
			out[i].outcome, out[i].msg = unknownCmd, err.Error()
		default:
			out[i].outcome, out[i].msg = unverified, "ACL DRYRUN: "+err.Error()
		}
	}
	return out
}

// classify reads the reply to a queued or harmlessly failing command.
func classify(v resp.Value, err error) (outcome, string) {
	if err == nil {
		return allowed, ""
	}
	var re *resp.Error
	if !errors.As(err, &re) {
		return unverified, err.Error()
	}
	msg := re.Msg
	switch {
	case strings.Contains(msg, "NOPERM") && (strings.Contains(msg, "key") || strings.Contains(msg, "channel")):
		return deniedKey, msg
	case strings.Contains(msg, "NOPERM"): // also inside "EXECABORT ... NOPERM ..."
		return denied, msg
	case strings.Contains(msg, "unknown command") || strings.Contains(msg, "unknown subcommand"):
		return unknownCmd, msg
	case strings.HasSuffix(msg, "without MULTI"): // EXEC/DISCARD probed outside: permitted
		return allowed, ""
	case re.Prefix() == "MOVED" || re.Prefix() == "ASK":
		// Cluster routing comes after the ACL check: the permission is there.
		return allowed, ""
	case re.IsReadOnly() || re.IsOOM() || re.Prefix() == "MISCONF" || re.Prefix() == "NOREPLICAS" ||
		re.IsLoading() || re.Prefix() == "MASTERDOWN" || re.IsClusterDown() || re.IsBusy():
		return refused, msg
	}
	return unverified, msg
}

func isReply(err error) bool {
	var re *resp.Error
	return errors.As(err, &re)
}

func isNoPerm(err error) bool {
	var re *resp.Error
	return errors.As(err, &re) && strings.Contains(re.Msg, "NOPERM")
}

func isNotInMulti(err error) bool {
	var re *resp.Error
	return errors.As(err, &re) && strings.Contains(re.Msg, "not allowed inside a transaction")
}

// sourceProbes are the commands Ferry's replica runs on the source.
func (r *runner) sourceProbes() []probe {
	p := []probe{
		{acl: "ping", args: []any{"PING"}},
		{acl: "info", args: []any{"INFO", "replication"}},
		{acl: "replconf", args: []any{"REPLCONF", "ACK", "0"}},
		{acl: "psync", args: []any{"PSYNC", "?", "-1"}, mode: noMulti},
	}
	if r.src.cluster {
		p = append(p,
			probe{acl: "cluster|slots", args: []any{"CLUSTER", "SLOTS"}},
			probe{acl: "cluster|nodes", args: []any{"CLUSTER", "NODES"}},
		)
	}
	return append(p,
		probe{acl: "command", args: []any{"COMMAND"}, optional: true, why: "Ferry uses its built-in list of write commands, which does not know module commands"},
		probe{acl: "client|setname", args: []any{"CLIENT", "SETNAME", clientName}, optional: true, why: "Ferry's connection is unnamed in CLIENT LIST"},
	)
}

// sourceACL checks that the source user may replicate.
func (r *runner) sourceACL(ctx context.Context) Check {
	c, err := r.src.dialSeed(ctx)
	if err != nil {
		return Check{Result: Warn, Found: "could not check: " + err.Error()}
	}
	defer c.Close()
	res := probeAll(ctx, c, r.src.user(), r.src.server, r.sourceProbes())
	return aclFindings(r.src, res, r.sourceACLLine(), "")
}

// sourceACLLine is the full set of permissions Ferry uses on the source, including the
// heartbeat key and what the precheck reads.
func (r *runner) sourceACLLine() string {
	cmds := "+psync +replconf +ping +info +command +client|setname"
	if r.src.cluster {
		cmds += " +cluster|slots +cluster|nodes +cluster|shards"
	}
	cmds += " +set +config|get +memory|usage +scan +select +module|list"
	keys := "~*"
	if r.src.server.atLeast(7, 0) {
		// Selectors (7.0) let the user write only the heartbeat key.
		keys = "%R~* %RW~" + r.cfg.Namespace + ":hb:*"
	}
	return fmt.Sprintf("ACL SETUSER %s on %s %s", r.src.user(), cmds, keys)
}

// targetACLLine is the full set of permissions Ferry uses on the target.
func (r *runner) targetACLLine() string {
	cmds := "+@write +@scripting +select +multi +exec +discard +ping +info +command"
	if r.tgt.cluster {
		cmds += " +cluster|slots +cluster|nodes +cluster|shards +asking"
	}
	return fmt.Sprintf("ACL SETUSER %s on %s ~*", r.tgt.user(), cmds)
}

// targetProbes are the commands Ferry's writer runs on the target, on key.
func (r *runner) targetProbes(key string) []probe {
	p := []probe{
		{acl: "ping", args: []any{"PING"}},
		{acl: "exec", args: []any{"EXEC"}, mode: outside},
	}
	if !r.tgt.cluster {
		dbs := r.targetDBs()
		p = append(p, probe{acl: "select", args: []any{"SELECT", dbs[0]}})
	}
	p = append(p,
		probe{acl: "set", args: []any{"SET", r.cfg.checkpointKey(), "probe"}},
		probe{acl: "restore", args: []any{"RESTORE", key, "0", "probe", "REPLACE", "ABSTTL"}},
		probe{acl: "del", args: []any{"DEL", key}},
		probe{acl: "rpush", args: []any{"RPUSH", key, "v"}},
		probe{acl: "sadd", args: []any{"SADD", key, "v"}},
		probe{acl: "zadd", args: []any{"ZADD", key, "0", "v"}},
		probe{acl: "hset", args: []any{"HSET", key, "f", "v"}},
		probe{acl: "pexpireat", args: []any{"PEXPIREAT", key, "1"}},
	)
	if !r.tgt.server.atLeast(5, 0) {
		// No streams before 5.0: XADD would only say "unknown command".
	} else {
		p = append(p, probe{acl: "xadd", args: []any{"XADD", key, "*", "f", "v"}})
	}
	if r.tgt.cluster {
		p = append(p,
			probe{acl: "cluster|slots", args: []any{"CLUSTER", "SLOTS"}},
			probe{acl: "cluster|nodes", args: []any{"CLUSTER", "NODES"}},
		)
	}
	return append(p,
		probe{acl: "command", args: []any{"COMMAND"}, optional: true, why: "Ferry cannot learn key positions of commands it does not know (module commands) from the server"},
		probe{acl: "info", args: []any{"INFO", "server"}, optional: true, why: "Ferry cannot report the target's memory and version"},
	)
}

// probeKeyFallback is the key probed on the target when no source key could be sampled.
const probeKeyFallback = "ferry-precheck-probe"

// targetACL checks that the target user may run every write Ferry sends.
func (r *runner) targetACL(ctx context.Context) Check {
	key, keyFrom := probeKeyFallback, "a made-up key; no source key could be sampled"
	if r.src.err == nil {
		if k, ok := r.sampleSourceKey(ctx); ok {
			key, keyFrom = k, "a key sampled from the source"
		}
	}
	c, err := r.tgt.dialSeed(ctx)
	if err != nil {
		return Check{Result: Warn, Found: "could not check: " + err.Error()}
	}
	defer c.Close()
	res := probeAll(ctx, c, r.tgt.user(), r.tgt.server, r.targetProbes(key))
	return aclFindings(r.tgt, res, r.targetACLLine(), fmt.Sprintf("data commands probed on key %q (%s)", key, keyFrom))
}

// sampleSourceKey returns one source key that is not Ferry's, from the first selected
// database that has keys, so the target's key permissions are probed with a real name.
func (r *runner) sampleSourceKey(ctx context.Context) (string, bool) {
	n := r.src.nodes[0]
	if n.info == nil {
		return "", false
	}
	dbs := sortedKeys(keyspace(n.info, "keys"))
	for _, db := range dbs {
		if !r.dbSelected(db) {
			continue
		}
		c, err := r.src.dial(ctx, n.addr)
		if err != nil {
			return "", false
		}
		defer c.Close()
		if db != 0 {
			if _, err := c.Do(ctx, "SELECT", db); err != nil {
				return "", false
			}
		}
		v, err := c.Do(ctx, "SCAN", "0", "COUNT", "20")
		if err != nil || len(v.Elems) != 2 {
			return "", false
		}
		for _, k := range v.Elems[1].Elems {
			if key := k.Text(); !strings.HasPrefix(key, r.cfg.Namespace+":") {
				return key, true
			}
		}
		return "", false
	}
	return "", false
}

// aclFindings turns probe results into a check: required commands denied or refused
// fail it; optional ones and unverifiable ones are noted.
func aclFindings(s *side, res []probeResult, fullLine, note string) Check {
	var (
		deniedCmds, grants, keyDenied, unknown, refusedMsgs, unverifiedCmds, optionalNotes []string
	)
	for _, p := range res {
		name := strings.ToUpper(strings.ReplaceAll(p.acl, "|", " "))
		switch p.outcome {
		case allowed:
			continue
		case unverified:
			unverifiedCmds = append(unverifiedCmds, fmt.Sprintf("%s (%s)", name, p.msg))
			continue
		}
		if p.optional {
			if p.outcome == denied || p.outcome == unknownCmd {
				optionalNotes = append(optionalNotes, fmt.Sprintf("%s not permitted (optional: %s; grant +%s)", name, p.why, p.acl))
			}
			continue
		}
		switch p.outcome {
		case denied:
			deniedCmds = append(deniedCmds, name)
			grants = append(grants, "+"+p.acl)
		case deniedKey:
			keyDenied = append(keyDenied, fmt.Sprintf("%s %s", name, argString(p.args[1])))
		case unknownCmd:
			unknown = append(unknown, name)
		case refused:
			refusedMsgs = append(refusedMsgs, fmt.Sprintf("%s: %s", name, p.msg))
		}
	}
	var found []string
	var advice []string
	result := Pass
	if len(deniedCmds) > 0 {
		result = Fail
		found = append(found, fmt.Sprintf("user %q may not run %s", s.user(), strings.Join(deniedCmds, ", ")))
		advice = append(advice, fmt.Sprintf("grant them: ACL SETUSER %s %s", s.user(), strings.Join(grants, " ")))
	}
	if len(keyDenied) > 0 {
		result = Fail
		found = append(found, fmt.Sprintf("user %q may not write the keys of %s", s.user(), strings.Join(keyDenied, ", ")))
		advice = append(advice, fmt.Sprintf("allow the keys Ferry writes: ACL SETUSER %s ~* (or patterns covering every synced key and Ferry's own %s:* keys)", s.user(), s.cfg.Namespace))
	}
	if len(unknown) > 0 {
		result = Fail
		found = append(found, fmt.Sprintf("the server does not know %s (renamed or disabled with rename-command?)", strings.Join(unknown, ", ")))
		advice = append(advice, "restore the original command names on this server (rename-command in its config)")
	}
	if len(refusedMsgs) > 0 {
		result = Fail
		found = append(found, "permitted but refused now: "+strings.Join(refusedMsgs, "; "))
		advice = append(advice, refusedAdvice(s, refusedMsgs))
	}
	if len(advice) > 0 {
		advice = append(advice, "everything Ferry uses here: "+fullLine)
	}
	if result == Pass {
		n := 0
		for _, p := range res {
			if p.outcome == allowed {
				n++
			}
		}
		found = append(found, fmt.Sprintf("user %q may run the %d commands probed (in a discarded MULTI or with ACL DRYRUN; nothing was run)", s.user(), n))
	}
	if len(unverifiedCmds) > 0 {
		found = append(found, "not verified: "+strings.Join(unverifiedCmds, "; "))
		if result == Pass {
			advice = append(advice, fmt.Sprintf("to verify these too, grant +acl|dryrun to %q or run the precheck as an admin; a missing permission will otherwise show when the sync starts", s.user()))
		}
	}
	found = append(found, optionalNotes...)
	if note != "" {
		found = append(found, note)
	}
	return Check{Result: result, Found: strings.Join(found, "; "), Advice: strings.Join(advice, "; ")}
}

// refusedAdvice explains server states that refuse permitted commands.
func refusedAdvice(s *side, msgs []string) string {
	all := strings.Join(msgs, " ")
	switch {
	case strings.Contains(all, "READONLY"):
		return fmt.Sprintf("%s is a read-only replica: point %s at its master", s.opts.Addr, s.flag())
	case strings.Contains(all, "OOM"):
		return fmt.Sprintf("%s is at its maxmemory and refuses writes: free memory or raise maxmemory", s.opts.Addr)
	case strings.Contains(all, "MISCONF"):
		return fmt.Sprintf("%s cannot save its RDB and refuses writes (stop-writes-on-bgsave-error): fix its disk or persistence settings", s.opts.Addr)
	case strings.Contains(all, "NOREPLICAS"):
		return fmt.Sprintf("%s has fewer replicas than min-replicas-to-write: bring its replicas back", s.opts.Addr)
	}
	return "see the server's reply and its log"
}

// heartbeat checks that the source user may write the task's heartbeat key, which makes
// latency exact (the SET arrives through the stream) instead of estimated.
func (r *runner) heartbeat(ctx context.Context) Check {
	c, err := r.src.dialSeed(ctx)
	if err != nil {
		return Check{Result: Warn, Found: "could not check: " + err.Error()}
	}
	defer c.Close()
	key := r.cfg.heartbeatKey()
	now := strconv.FormatInt(time.Now().UnixMilli(), 10)
	set := probe{acl: "set", args: []any{"SET", key, now, "PX", "5000"}}
	res := probeAll(ctx, c, r.src.user(), r.src.server, []probe{set})[0]
	how := "probed in a discarded MULTI or with ACL DRYRUN; nothing written"
	if res.outcome == unverified {
		// Neither MULTI nor ACL DRYRUN is allowed: a real heartbeat write is the only
		// way left to know. It is the task's own key and expires in 5 s.
		c2, err := r.src.dialSeed(ctx)
		if err != nil {
			return Check{Result: Warn, Found: "could not check: " + err.Error()}
		}
		defer c2.Close()
		res.outcome, res.msg = classify(c2.Do(ctx, set.args...))
		how = "probed with a real heartbeat write that expires in 5 s"
	}
	fallback := "Ferry falls back to offset lag: bytes behind, and seconds estimated from the source's write rate"
	switch res.outcome {
	case allowed:
		return Check{Result: Pass, Found: fmt.Sprintf("SET %s … PX is permitted (%s): latency is measured end to end", key, how)}
	case denied, deniedKey:
		return Check{
			Result: Warn,
			Found:  fmt.Sprintf("user %q may not SET %s (%s); %s", r.src.user(), key, res.msg, fallback),
			Advice: fmt.Sprintf("for exact latency: ACL SETUSER %s +set %s", r.src.user(), r.hbKeyPattern()),
		}
	case refused:
		return Check{
			Result: Warn,
			Found:  fmt.Sprintf("the source refuses the heartbeat write (%s); %s", res.msg, fallback),
			Advice: refusedAdvice(r.src, []string{res.msg}) + "; or accept estimated latency with --accept-warnings",
		}
	case unknownCmd:
		return Check{Result: Warn, Found: fmt.Sprintf("SET is unknown on the source (%s); %s", res.msg, fallback), Advice: "restore the SET command name (rename-command)"}
	}
	return Check{Result: Warn, Found: fmt.Sprintf("could not tell whether the heartbeat write is permitted (%s); %s", res.msg, fallback)}
}

// hbKeyPattern is the ACL key pattern for heartbeat keys: write-only with selectors
// (7.0+), read-write before.
func (r *runner) hbKeyPattern() string {
	if r.src.server.atLeast(7, 0) {
		return "%RW~" + r.cfg.Namespace + ":hb:*"
	}
	return "~" + r.cfg.Namespace + ":hb:*"
}

// argString renders a probe argument for messages.
func argString(a any) string {
	switch v := a.(type) {
	case string:
		return strconv.Quote(v)
	case []byte:
		return strconv.Quote(string(v))
	}
	return fmt.Sprint(a)
}
