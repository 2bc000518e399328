package replica

import (
	"strings"

	"github.com/ferrysync/ferry/internal/resp"
)

// Class says what a command in the replication stream is to a consumer.
type Class uint8

const (
	// ClassData changes the dataset: forward it to the destination.
	ClassData Class = iota + 1
	// ClassControl is replication plumbing (PING, REPLCONF, SELECT, and Valkey's
	// replicated CLUSTER SETSLOT): consumed, never forwarded. It still advances the
	// offset, so a consumer marks it applied once everything before it is.
	ClassControl
	// ClassMulti opens a transaction; the commands up to ClassExec apply atomically.
	ClassMulti
	// ClassExec closes a transaction.
	ClassExec
	// ClassPublish is PUBLISH or SPUBLISH: no data, but subscribers on a destination
	// may want it; the task decides.
	ClassPublish
)

func (c Class) String() string {
	switch c {
	case ClassData:
		return "data"
	case ClassControl:
		return "control"
	case ClassMulti:
		return "multi"
	case ClassExec:
		return "exec"
	case ClassPublish:
		return "publish"
	}
	return "unknown"
}

// fixedClasses are the commands whose class does not depend on what the source says.
var fixedClasses = map[string]Class{
	"ping":     ClassControl, // the source's heartbeat, every repl-ping-replica-period
	"replconf": ClassControl, // REPLCONF GETACK, answered with an ACK
	"select":   ClassControl, // changes Command.DB of what follows
	// Valkey 8+ replicates CLUSTER SETSLOT to its replicas so a slot migration survives
	// a failover; it is the source cluster's metadata, not data.
	"cluster":  ClassControl,
	"multi":    ClassMulti,
	"exec":     ClassExec,
	"publish":  ClassPublish,
	"spublish": ClassPublish,
}

// staticDataCommands are the commands a source may put in its replication stream, for
// sources that do not answer COMMAND (or whose user may not run it): every command with
// the write flag from Redis 2.8 to 8.x and Valkey 9, plus those Redis replicates
// without it (may_replicate, which COMMAND does not show: EVAL, EVALSHA, FCALL,
// PFCOUNT) and SCRIPT, whose LOAD and FLUSH older sources replicate. Containers
// (FUNCTION, XGROUP, SCRIPT) are listed by their name: all of their subcommands that
// reach the stream are data.
//
// FLUSHALL, FLUSHDB, SWAPDB, MOVE, FUNCTION, EVAL, EVALSHA and SCRIPT are data too: the
// destination must end identical, so they are forwarded like any write.
const staticDataCommands = `
append bitfield bitop blmove blmpop blpop brpop brpoplpush bzmpop bzpopmax bzpopmin
copy decr decrby del delex delifeq eval evalsha expire expireat fcall flushall flushdb
function geoadd georadius georadiusbymember geosearchstore getdel getex getset
hdel hexpire hexpireat hgetdel hgetex hincrby hincrbyfloat hmset hpersist hpexpire
hpexpireat hset hsetex hsetnx incr incrby incrbyfloat linsert lmove lmpop lpop lpush
lpushx lrem lset ltrim migrate move mset msetex msetnx persist pexpire pexpireat pfadd
pfcount pfdebug pfmerge psetex rename renamenx restore restore-asking rpop rpoplpush
rpush rpushx sadd script sdiffstore set setbit setex setnx setrange sinterstore smove
sort spop srem sunionstore swapdb unlink xack xackdel xadd xautoclaim xclaim xdel
xdelex xgroup xreadgroup xsetid xtrim zadd zdiffstore zincrby zinterstore zmpop
zpopmax zpopmin zrangestore zrem zremrangebylex zremrangebyrank zremrangebyscore
zunionstore
`

// commandTable maps lower-case command names to their class.
type commandTable struct {
	entries map[string]tableEntry
	// fromSource counts the commands learnt from the source's COMMAND reply beyond the
	// static table (module commands, newer versions).
	fromSource int
}

// tableEntry keeps the name as a string so Command.Name costs no allocation.
type tableEntry struct {
	name  string
	class Class
}

func newCommandTable() *commandTable {
	t := &commandTable{entries: make(map[string]tableEntry, 256)}
	for _, name := range strings.Fields(staticDataCommands) {
		t.add(name, ClassData)
	}
	for name, c := range fixedClasses {
		t.add(name, c)
	}
	return t
}

func (t *commandTable) add(name string, c Class) { t.entries[name] = tableEntry{name, c} }

// learn adds the commands the source's COMMAND reply flags as writes: module commands,
// and those of versions newer than the static table. A container (FUNCTION, XGROUP)
// counts when any subcommand is a write. It returns how many entries it understood;
// malformed entries are skipped, since the static table still applies.
func (t *commandTable) learn(reply resp.Value) int {
	understood := 0
	for _, e := range reply.Elems {
		name, write, ok := commandEntry(e)
		if !ok {
			continue
		}
		understood++
		if !write {
			continue
		}
		if _, known := t.entries[name]; !known {
			t.add(name, ClassData)
			t.fromSource++
		}
	}
	return understood
}

// commandEntry reads one COMMAND entry: [name, arity, flags, first, last, step,
// (6.0+) categories, (7.0+) tips, key specs, subcommands].
func commandEntry(e resp.Value) (name string, write, ok bool) {
	if len(e.Elems) < 3 || len(e.Elems[0].Str) == 0 {
		return "", false, false
	}
	name = strings.ToLower(string(e.Elems[0].Str))
	write = hasWriteFlag(e.Elems[2])
	if len(e.Elems) >= 10 {
		for _, sub := range e.Elems[9].Elems {
			if len(sub.Elems) >= 3 && hasWriteFlag(sub.Elems[2]) {
				write = true
			}
		}
	}
	return name, write, true
}

func hasWriteFlag(flags resp.Value) bool {
	for _, f := range flags.Elems {
		if strings.EqualFold(string(f.Str), "write") {
			return true
		}
	}
	return false
}

// lookup classifies a command name in any letter case, without allocating for names of
// up to 64 bytes, and returns the lower-case name.
func (t *commandTable) lookup(name []byte) (string, Class, bool) {
	var buf [64]byte
	if len(name) > len(buf) {
		e, ok := t.entries[strings.ToLower(string(name))]
		return e.name, e.class, ok
	}
	lower := buf[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	e, ok := t.entries[string(lower)]
	return e.name, e.class, ok
}
