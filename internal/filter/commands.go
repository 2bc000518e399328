package filter

import (
	"strings"

	"github.com/ferrysync/ferry/internal/rdb"
)

// cmdClass says how the filter treats a command beyond its keys.
type cmdClass uint8

const (
	classKeyed   cmdClass = iota // data command on the keys it names, in the selected DB
	classControl                 // MULTI, EXEC, SELECT...: stream structure, never filtered
	classGlobal                  // acts on the whole server (FLUSHALL, SWAPDB, FUNCTION...)
	classFlushDB                 // FLUSHDB: the whole current DB
	classMove                    // MOVE key db: a key leaves its DB for another
	classCopy                    // COPY src dst [DB n]: may write into another DB
)

// keyShape says where a command's keys are.
type keyShape uint8

const (
	shapeRange         keyShape = iota // first..last by step (COMMAND INFO's legacy triple)
	shapeNumkeys                       // a count at numkeysAt, then that many keys (after a fixed range, if any)
	shapeSortStore                     // SORT key ... [STORE dst]
	shapeGeoStore                      // GEORADIUS[BYMEMBER] key ... [STORE k] [STOREDIST k]
	shapeStreams                       // XREAD/XREADGROUP ... STREAMS k1 .. kn id1 .. idn
	shapeSubcommandKey                 // XGROUP CREATE key ...: the key after a subcommand
)

// cmdInfo is what the filter knows about one command. It is the fallback for when the
// caller has no key positions from the servers' own COMMAND INFO key specs.
type cmdInfo struct {
	kind  rdb.Kind // the data type it works on; KindUnknown for generic commands
	class cmdClass
	shape keyShape
	// first, last, step: key positions as in COMMAND INFO (last < 0 counts from the end, -1
	// being the last argument); first 0 means no fixed range.
	first, last, step int
	// numkeysAt is the argument holding the key count (shapeNumkeys).
	numkeysAt int
	// optsAt is where GEORADIUS's options start (shapeGeoStore).
	optsAt int
	// sep is how many arguments each key owns when the command is separable under
	// filtering (1 for DEL, 2 for MSET's key value pairs); 0 when it is not.
	sep int
	// restore: the value's type is the payload's first byte (RESTORE, RESTORE-ASKING).
	restore bool
}

func one(kind rdb.Kind) cmdInfo  { return cmdInfo{kind: kind, first: 1, last: 1, step: 1} }
func pair(kind rdb.Kind) cmdInfo { return cmdInfo{kind: kind, first: 1, last: 2, step: 1} }
func all(kind rdb.Kind, first int) cmdInfo {
	return cmdInfo{kind: kind, first: first, last: -1, step: 1}
}
func blocking(kind rdb.Kind) cmdInfo { return cmdInfo{kind: kind, first: 1, last: -2, step: 1} }
func numkeys(kind rdb.Kind, fixed, at int) cmdInfo {
	c := cmdInfo{kind: kind, shape: shapeNumkeys, numkeysAt: at}
	if fixed > 0 {
		c.first, c.last, c.step = 1, fixed, 1
	}
	return c
}

// commandTable covers every Redis 7.x/8.x core command that names keys (writes, which are
// what a replication stream carries, and the common reads), plus the keyless commands
// whose meaning for a selection is special. Module commands are not here: their key
// positions must come from COMMAND INFO.
var commandTable = func() map[string]cmdInfo {
	const (
		str  = rdb.KindString
		list = rdb.KindList
		set  = rdb.KindSet
		zset = rdb.KindZSet
		hash = rdb.KindHash
		strm = rdb.KindStream
		gen  = rdb.KindUnknown
	)
	t := map[string]cmdInfo{}
	for _, n := range []string{"append", "decr", "decrby", "get", "getdel", "getex", "getrange",
		"getset", "incr", "incrby", "incrbyfloat", "psetex", "set", "setex", "setnx", "setrange",
		"strlen", "substr", "setbit", "getbit", "bitcount", "bitpos", "bitfield", "bitfield_ro", "pfadd"} {
		t[n] = one(str)
	}
	t["lcs"] = pair(str)
	t["mget"] = all(str, 1)
	t["pfcount"] = all(str, 1)
	t["pfmerge"] = all(str, 1)
	t["pfdebug"] = cmdInfo{kind: str, first: 2, last: 2, step: 1}
	t["bitop"] = all(str, 2)
	t["mset"] = cmdInfo{kind: str, first: 1, last: -1, step: 2, sep: 2}
	// MSETNX is in a stream only when it succeeded on the source, that is when none of its
	// keys existed there; on a destination that mirrors the source none of the selected ones
	// exists either, so its keys are as independent as MSET's.
	t["msetnx"] = cmdInfo{kind: str, first: 1, last: -1, step: 2, sep: 2}

	for _, n := range []string{"lindex", "linsert", "llen", "lpop", "lpos", "lpush", "lpushx",
		"lrange", "lrem", "lset", "ltrim", "rpop", "rpush", "rpushx"} {
		t[n] = one(list)
	}
	for _, n := range []string{"blmove", "brpoplpush", "lmove", "rpoplpush"} {
		t[n] = pair(list)
	}
	t["blpop"], t["brpop"] = blocking(list), blocking(list)
	t["lmpop"] = numkeys(list, 0, 1)
	t["blmpop"] = numkeys(list, 0, 2)

	for _, n := range []string{"sadd", "scard", "sismember", "smembers", "smismember", "spop",
		"srandmember", "srem", "sscan"} {
		t[n] = one(set)
	}
	for _, n := range []string{"sdiff", "sdiffstore", "sinter", "sinterstore", "sunion", "sunionstore"} {
		t[n] = all(set, 1)
	}
	t["smove"] = pair(set)
	t["sintercard"] = numkeys(set, 0, 1)

	for _, n := range []string{"zadd", "zcard", "zcount", "zincrby", "zlexcount", "zmscore",
		"zpopmax", "zpopmin", "zrandmember", "zrange", "zrangebylex", "zrangebyscore", "zrank",
		"zrem", "zremrangebylex", "zremrangebyrank", "zremrangebyscore", "zrevrange",
		"zrevrangebylex", "zrevrangebyscore", "zrevrank", "zscan", "zscore",
		"geoadd", "geodist", "geohash", "geopos", "georadius_ro", "georadiusbymember_ro", "geosearch"} {
		t[n] = one(zset)
	}
	t["zrangestore"], t["geosearchstore"] = pair(zset), pair(zset)
	t["bzpopmax"], t["bzpopmin"] = blocking(zset), blocking(zset)
	for _, n := range []string{"zdiff", "zinter", "zintercard", "zunion", "zmpop"} {
		t[n] = numkeys(zset, 0, 1)
	}
	t["bzmpop"] = numkeys(zset, 0, 2)
	for _, n := range []string{"zdiffstore", "zinterstore", "zunionstore"} {
		t[n] = numkeys(zset, 1, 2)
	}
	t["georadius"] = cmdInfo{kind: zset, shape: shapeGeoStore, first: 1, last: 1, step: 1, optsAt: 6}
	t["georadiusbymember"] = cmdInfo{kind: zset, shape: shapeGeoStore, first: 1, last: 1, step: 1, optsAt: 5}

	for _, n := range []string{"hdel", "hexists", "hget", "hgetall", "hincrby", "hincrbyfloat",
		"hkeys", "hlen", "hmget", "hmset", "hrandfield", "hscan", "hset", "hsetnx", "hstrlen",
		"hvals", "hexpire", "hexpireat", "hexpiretime", "hpexpire", "hpexpireat", "hpexpiretime",
		"hpersist", "httl", "hpttl", "hgetdel", "hgetex", "hsetex"} {
		t[n] = one(hash)
	}

	for _, n := range []string{"xack", "xackdel", "xadd", "xautoclaim", "xclaim", "xdel", "xdelex",
		"xlen", "xpending", "xrange", "xrevrange", "xsetid", "xtrim"} {
		t[n] = one(strm)
	}
	t["xgroup"] = cmdInfo{kind: strm, shape: shapeSubcommandKey}
	t["xinfo"] = cmdInfo{kind: strm, shape: shapeSubcommandKey}
	t["xread"] = cmdInfo{kind: strm, shape: shapeStreams}
	t["xreadgroup"] = cmdInfo{kind: strm, shape: shapeStreams}

	for _, n := range []string{"dump", "expire", "expireat", "expiretime", "persist", "pexpire",
		"pexpireat", "pexpiretime", "pttl", "sort_ro", "ttl", "type"} {
		t[n] = one(gen)
	}
	restore := one(gen)
	restore.restore = true
	t["restore"], t["restore-asking"] = restore, restore
	t["object"] = cmdInfo{kind: gen, shape: shapeSubcommandKey}
	t["rename"], t["renamenx"] = pair(gen), pair(gen)
	t["exists"] = all(gen, 1)
	for _, n := range []string{"del", "unlink", "touch"} {
		t[n] = cmdInfo{kind: gen, first: 1, last: -1, step: 1, sep: 1}
	}
	t["sort"] = cmdInfo{kind: gen, shape: shapeSortStore, first: 1, last: 1, step: 1}
	for _, n := range []string{"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"} {
		t[n] = numkeys(gen, 0, 2)
	}
	move := one(gen)
	move.class = classMove
	t["move"] = move
	cp := pair(gen)
	cp.class = classCopy
	t["copy"] = cp
	t["flushdb"] = cmdInfo{class: classFlushDB}
	for n := range controlCommands {
		t[n] = cmdInfo{class: classControl}
	}
	for _, n := range []string{"flushall", "swapdb", "function", "script", "publish", "spublish"} {
		t[n] = cmdInfo{class: classGlobal}
	}
	return t
}()

// controlCommands structure the stream rather than change data; they can be neither
// filtered nor excluded.
var controlCommands = map[string]struct{}{
	"multi": {}, "exec": {}, "discard": {}, "select": {}, "ping": {}, "replconf": {},
}

// lookup finds a command by name in any letter case without allocating.
func lookup(name string) (cmdInfo, bool) {
	if c, ok := commandTable[name]; ok {
		return c, true
	}
	var buf [maxCommandName]byte
	lower, ok := lowerName(buf[:0], name)
	if !ok {
		return cmdInfo{}, false
	}
	c, ok := commandTable[string(lower)] // the compiler does not copy for a map index
	return c, ok
}

// lowerName appends name in lower case to dst; false when the name is too long to be one.
func lowerName(dst []byte, name string) ([]byte, bool) {
	if len(name) > maxCommandName {
		return dst, false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst, true
}

// KeyIndices returns the positions in args (args[0] being the command name) of the keys the
// command names, from a built-in table of the core commands; ok is false for a command the
// table does not know (module commands, commands newer than this build), whose positions
// must come from the servers' COMMAND INFO key specs. Keyless commands give (nil, true).
func KeyIndices(name string, args [][]byte) (idx []int, ok bool) {
	return AppendKeyIndices(nil, name, args)
}

// AppendKeyIndices is KeyIndices appending to dst, so that a caller reusing a buffer does
// not allocate.
func AppendKeyIndices(dst []int, name string, args [][]byte) ([]int, bool) {
	c, ok := lookup(name)
	if !ok {
		return dst, false
	}
	return c.appendKeys(dst, args), true
}

func (c *cmdInfo) appendKeys(dst []int, args [][]byte) []int {
	n := len(args)
	switch c.shape {
	case shapeSubcommandKey:
		if n > 2 {
			dst = append(dst, 2)
		}
		return dst
	case shapeStreams:
		return appendStreamKeys(dst, args)
	}
	if c.first > 0 {
		last := c.last
		if last < 0 {
			last += n
		}
		if last >= n {
			last = n - 1
		}
		for i := c.first; i <= last; i += c.step {
			dst = append(dst, i)
		}
	}
	switch c.shape {
	case shapeNumkeys:
		if c.numkeysAt >= n {
			return dst
		}
		k, ok := smallUint(args[c.numkeysAt])
		if !ok {
			return dst
		}
		for i := c.numkeysAt + 1; i < n && i <= c.numkeysAt+k; i++ {
			dst = append(dst, i)
		}
	case shapeSortStore:
		// SORT key [BY p] [LIMIT off count] [GET p ...] [ASC|DESC] [ALPHA] [STORE dst]: walk
		// the options so that a BY or GET pattern spelled "store" is not taken for STORE.
		for i := 2; i < n; i++ {
			switch {
			case eqFold(args[i], "store") && i+1 < n:
				dst = append(dst, i+1)
				i++
			case eqFold(args[i], "by"), eqFold(args[i], "get"):
				i++
			case eqFold(args[i], "limit"):
				i += 2
			}
		}
	case shapeGeoStore:
		// GEORADIUS key lon lat radius unit [opts]; ...BYMEMBER key member radius unit [opts].
		for i := c.optsAt; i < n; i++ {
			switch {
			case (eqFold(args[i], "store") || eqFold(args[i], "storedist")) && i+1 < n:
				dst = append(dst, i+1)
				i++
			case eqFold(args[i], "count"):
				i++
			}
		}
	}
	return dst
}

// appendStreamKeys finds XREAD's and XREADGROUP's keys: the first half of what follows
// STREAMS. The options before it are walked, because a group or consumer may be named
// "streams".
func appendStreamKeys(dst []int, args [][]byte) []int {
	n := len(args)
	i := 1
	for i < n {
		switch {
		case eqFold(args[i], "group"):
			i += 3
		case eqFold(args[i], "count"), eqFold(args[i], "block"):
			i += 2
		case eqFold(args[i], "streams"):
			rest := n - i - 1
			for k := i + 1; k <= i+rest/2; k++ {
				dst = append(dst, k)
			}
			return dst
		default:
			i++
		}
	}
	return dst
}

// eqFold compares an argument with a lower-case ASCII word, ignoring case, without
// allocating.
func eqFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// CommandKind is the data type a command works on (LPUSH: list, GEOADD: zset, PFADD:
// string), KindModule for a module command (its name has a dot, as JSON.SET), or
// KindUnknown for generic commands (DEL, EXPIRE, RENAME...) and unknown ones. RESTORE is
// typed by its payload.
func CommandKind(name string, args [][]byte) rdb.Kind {
	c, ok := lookup(name)
	if !ok {
		if strings.IndexByte(name, '.') > 0 {
			return rdb.KindModule
		}
		return rdb.KindUnknown
	}
	return c.kindOf(args)
}

func (c *cmdInfo) kindOf(args [][]byte) rdb.Kind {
	if c.restore && len(args) > 3 && len(args[3]) > 0 {
		// A RESTORE payload starts with the value's RDB type; bytes 22-25 differ between
		// Redis and Valkey but are hashes in both.
		return rdb.KindOf(rdb.Redis, rdb.Type(args[3][0]))
	}
	return c.kind
}

// smallUint parses a non-negative decimal argument (a key count, a DB number) without
// allocating; false for anything else or for values past a billion, which no count is.
func smallUint(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
