package testutil

import (
	"slices"
	"strconv"
)

// allFamilies lists the operation families with their relative weights.
func allFamilies() []family {
	return []family{
		{"string", 14, (*Workload).genString},
		{"list", 8, (*Workload).genList},
		{"set", 9, (*Workload).genSet},
		{"zset", 7, (*Workload).genZSet},
		{"hash", 8, (*Workload).genHash},
		{"stream", 7, (*Workload).genStream},
		{"hll", 3, (*Workload).genHLL},
		{"bitmap", 3, (*Workload).genBitmap},
		{"geo", 2, (*Workload).genGeo},
		{"counter", 6, (*Workload).genCounter},
		{"alog", 6, (*Workload).genAlog},
		{"keyspace", 7, (*Workload).genKeyspace},
		{"multikey", 7, (*Workload).genMultiKey},
		{"multi", 3, (*Workload).genMulti},
		{"script", 2, (*Workload).genScript},
		{"function", 2, (*Workload).genFunction},
		{"crossdb", 2, (*Workload).genCrossDB},
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func (w *Workload) genString(db int) *op {
	switch w.rng.IntN(3) {
	case 0: // integers
		k := w.key(kInt, w.pick())
		switch w.rng.IntN(5) {
		case 0:
			return newOp(db, k, []string{"INCR", k})
		case 1:
			return newOp(db, k, []string{"DECRBY", k, itoa(w.rng.IntN(1000))})
		case 2:
			return newOp(db, k, []string{"SET", k, itoa(w.rng.IntN(2_000_000) - 1_000_000)})
		default:
			return newOp(db, k, []string{"INCRBY", k, itoa(w.rng.IntN(2001) - 1000)})
		}
	case 1: // floats: INCRBYFLOAT is replicated as SET ... KEEPTTL, exercised here
		k := w.key(kFlt, w.pick())
		if w.rng.IntN(6) == 0 {
			return newOp(db, k, []string{"SET", k, w.incrFloat()})
		}
		return newOp(db, k, []string{"INCRBYFLOAT", k, w.incrFloat()})
	}
	j := w.pick()
	k := w.key(kStr, j)
	if w.isBig(j) {
		return newOp(db, k, []string{"SET", k, w.bigValue()})
	}
	switch w.rng.IntN(9) {
	case 0:
		return newOp(db, k, []string{"APPEND", k, w.value()})
	case 1:
		return newOp(db, k, []string{"SETRANGE", k, itoa(w.rng.IntN(64)), w.value()})
	case 2:
		if w.opts.TTL {
			return newOp(db, k, []string{"SETEX", k, itoa(w.ttlSeconds()), w.value()})
		}
		return newOp(db, k, []string{"SETNX", k, w.value()})
	case 3:
		if w.opts.TTL {
			return newOp(db, k, []string{"SET", k, w.value(), "EX", itoa(w.ttlSeconds())})
		}
		return newOp(db, k, []string{"SET", k, w.value(), "KEEPTTL"})
	case 4:
		return newOp(db, k, []string{"SET", k, w.value(), "GET"})
	case 5:
		return newOp(db, k, []string{"GETDEL", k})
	case 6:
		if w.opts.TTL {
			return newOp(db, k, []string{"GETEX", k, "PX", itoa(1000 * w.ttlSeconds())})
		}
		return newOp(db, k, []string{"SET", k, w.value(), "NX"})
	default:
		return newOp(db, k, []string{"SET", k, w.value()})
	}
}

func (w *Workload) genList(db int) *op {
	j := w.pick()
	k := w.key(kList, j)
	if w.isBig(j) {
		// Grows past one quicklist node (8 kB), bounded by the LTRIM.
		push := []string{"RPUSH", k}
		for range 64 {
			push = append(push, w.value())
		}
		return newOp(db, k, push, []string{"LTRIM", k, "-1000", "-1"})
	}
	switch w.rng.IntN(11) {
	case 0, 1:
		cmd := []string{"RPUSH", k}
		for range 1 + w.rng.IntN(4) {
			cmd = append(cmd, w.listElem())
		}
		return newOp(db, k, cmd)
	case 2:
		return newOp(db, k, []string{"LPUSH", k, w.listElem(), w.listElem()})
	case 3:
		return newOp(db, k, []string{"LPOP", k})
	case 4:
		return newOp(db, k, []string{"RPOP", k, itoa(1 + w.rng.IntN(3))})
	case 5:
		o := newOp(db, k, []string{"LSET", k, itoa(w.rng.IntN(10) - 5), w.listElem()})
		o.allow = []string{"ERR no such key", "ERR index out of range"}
		return o
	case 6:
		return newOp(db, k, []string{"LTRIM", k, "0", itoa(10 + w.rng.IntN(30))})
	case 7:
		where := "BEFORE"
		if w.rng.IntN(2) == 0 {
			where = "AFTER"
		}
		return newOp(db, k, []string{"LINSERT", k, where, w.listElem(), w.listElem()})
	case 8:
		return newOp(db, k, []string{"LREM", k, itoa(w.rng.IntN(5) - 2), w.listElem()})
	case 9:
		return newOp(db, k, []string{"RPUSHX", k, w.listElem()})
	default:
		return newOp(db, k, []string{"LPUSH", k, w.listElem()})
	}
}

// listElem is a list element: half from a small set, so LINSERT and LREM find their pivots.
func (w *Workload) listElem() string {
	if w.rng.IntN(2) == 0 {
		return "e" + itoa(w.rng.IntN(20))
	}
	return w.value()
}

func (w *Workload) genSet(db int) *op {
	ints := w.rng.IntN(2) == 0
	kd, universe, bigUniverse := kSet, 24, 1024
	elem := w.member
	if ints {
		kd, universe, bigUniverse, elem = kISet, 24, 2048, w.intMember
	}
	j := w.pick()
	k := w.key(kd, j)
	if w.isBig(j) {
		// Past set-max-intset-entries (512) and the listpack limit (128).
		cmd := []string{"SADD", k}
		for range 64 {
			cmd = append(cmd, elem(bigUniverse))
		}
		return newOp(db, k, cmd)
	}
	switch w.rng.IntN(6) {
	case 0, 1, 2:
		cmd := []string{"SADD", k}
		for range 1 + w.rng.IntN(4) {
			cmd = append(cmd, elem(universe))
		}
		return newOp(db, k, cmd)
	case 3:
		return newOp(db, k, []string{"SREM", k, elem(universe), elem(universe)})
	case 4:
		// SPOP picks at random; since Redis 7 it is replicated as the SREM it did.
		return newOp(db, k, []string{"SPOP", k})
	default:
		return newOp(db, k, []string{"SPOP", k, itoa(1 + w.rng.IntN(3))})
	}
}

func (w *Workload) genZSet(db int) *op {
	j := w.pick()
	k := w.key(kZSet, j)
	if w.isBig(j) {
		// Past zset-max-listpack-entries (128): a skiplist.
		cmd := []string{"ZADD", k}
		for range 64 {
			cmd = append(cmd, w.score(), w.member(1024))
		}
		return newOp(db, k, cmd)
	}
	switch w.rng.IntN(9) {
	case 0, 1, 2:
		cmd := []string{"ZADD", k}
		for range 1 + w.rng.IntN(3) {
			cmd = append(cmd, w.score(), w.member(24))
		}
		return newOp(db, k, cmd)
	case 3:
		flag := []string{"NX", "XX", "GT", "LT", "CH"}[w.rng.IntN(5)]
		return newOp(db, k, []string{"ZADD", k, flag, w.score(), w.member(24)})
	case 4:
		return newOp(db, k, []string{"ZINCRBY", k, w.incrFloat(), w.member(24)})
	case 5:
		return newOp(db, k, []string{"ZREM", k, w.member(24), w.member(24)})
	case 6:
		lo := w.rng.IntN(2000) - 1000
		return newOp(db, k, []string{"ZREMRANGEBYSCORE", k, itoa(lo), "(" + itoa(lo+100)})
	case 7:
		return newOp(db, k, []string{"ZREMRANGEBYRANK", k, "0", itoa(w.rng.IntN(3))})
	default:
		return newOp(db, k, []string{"ZPOPMIN", k})
	}
}

func (w *Workload) genHash(db int) *op {
	j := w.pick()
	k := w.key(kHash, j)
	if w.isBig(j) {
		// Past hash-max-listpack-entries (128): a hashtable.
		cmd := []string{"HSET", k}
		for range 64 {
			cmd = append(cmd, "f"+itoa(w.rng.IntN(1024)), w.value())
		}
		return newOp(db, k, cmd)
	}
	// Fields are typed like keys: f* hold strings, c* integers, x* floats, so HINCRBY never
	// meets a non-number.
	switch w.rng.IntN(8) {
	case 0, 1, 2:
		cmd := []string{"HSET", k}
		for range 1 + w.rng.IntN(3) {
			cmd = append(cmd, "f"+itoa(w.rng.IntN(16)), w.value())
		}
		return newOp(db, k, cmd)
	case 3:
		return newOp(db, k, []string{"HDEL", k, "f" + itoa(w.rng.IntN(16)), "c" + itoa(w.rng.IntN(4))})
	case 4, 5:
		return newOp(db, k, []string{"HINCRBY", k, "c" + itoa(w.rng.IntN(4)), itoa(w.rng.IntN(200) - 100)})
	case 6:
		return newOp(db, k, []string{"HINCRBYFLOAT", k, "x" + itoa(w.rng.IntN(2)), w.incrFloat()})
	default:
		return newOp(db, k, []string{"HSETNX", k, "f" + itoa(w.rng.IntN(16)), w.value()})
	}
}

// streamID returns a new explicit stream ID. IDs come from the workload's increasing sequence,
// so they are deterministic (no clock) and always above any stream's top, whatever RENAME and
// COPY moved where.
func (w *Workload) streamID(k DBKey) string {
	ms := strconv.FormatInt(w.nextSeq(), 10)
	id, arg := ms+"-0", ms+"-0"
	switch w.rng.IntN(4) {
	case 0:
		arg = ms + "-*" // Redis 7: the server picks the sequence part, 0 for a new ms
	case 1:
		id = ms + "-1"
		arg = id
	}
	ids := append(w.streamIDs[k], id)
	if len(ids) > recentIDs {
		ids = ids[1:]
	}
	w.streamIDs[k] = ids
	return arg
}

// recentStreamIDs returns up to n IDs recently added to k (they may be gone by now).
func (w *Workload) recentStreamIDs(k DBKey, n int) []string {
	ids := w.streamIDs[k]
	var out []string
	for range n {
		if len(ids) == 0 {
			break
		}
		out = append(out, ids[w.rng.IntN(len(ids))])
	}
	if len(out) == 0 {
		out = append(out, "1-0")
	}
	return out
}

func (w *Workload) genStream(db int) *op {
	j := w.pick()
	k := w.key(kStream, j)
	dk := DBKey{db, k}
	fields := func(cmd []string) []string {
		for range 1 + w.rng.IntN(2) {
			cmd = append(cmd, "f"+itoa(w.rng.IntN(4)), w.value())
		}
		return cmd
	}
	if w.isBig(j) {
		// Past stream-node-max-entries (100): several listpack nodes in the radix tree.
		var cmds [][]string
		for range 32 {
			cmds = append(cmds, fields([]string{"XADD", k, "MAXLEN", "1000", w.streamID(dk)}))
		}
		return newOp(db, k, cmds...)
	}
	group := "g" + itoa(1+w.rng.IntN(2))
	consumer := "c" + itoa(1+w.rng.IntN(3))
	// Consumer-group commands on a stream that has no such group (or no longer exists) fail
	// with NOGROUP; that is allowed, and the generator re-creates groups now and then.
	noGroup := []string{"NOGROUP", "ERR no such key", "ERR The XGROUP subcommand requires the key to exist"}
	if !w.streamGroups[dk] && w.rng.IntN(3) == 0 {
		// Both groups, so that the group commands below find theirs. BUSYGROUP: the key got
		// its groups some way the generator does not follow (COPY, RENAME).
		w.streamGroups[dk] = true
		o := newOp(db, k, []string{"XGROUP", "CREATE", k, "g1", "0", "MKSTREAM"},
			[]string{"XGROUP", "CREATE", k, "g2", "$", "MKSTREAM"})
		o.allow = []string{"BUSYGROUP"}
		return o
	}
	switch w.rng.IntN(12) {
	case 0, 1, 2, 3:
		return newOp(db, k, fields([]string{"XADD", k, w.streamID(dk)}))
	case 4:
		return newOp(db, k, fields([]string{"XADD", k, "MAXLEN", itoa(20 + w.rng.IntN(20)), w.streamID(dk)}))
	case 5:
		return newOp(db, k, append([]string{"XDEL", k}, w.recentStreamIDs(dk, 2)...))
	case 6:
		return newOp(db, k, []string{"XTRIM", k, "MAXLEN", itoa(10 + w.rng.IntN(30))})
	case 7, 8:
		// Creates pending entries; replicated as XCLAIMs and XGROUP SETID.
		cmd := []string{"XREADGROUP", "GROUP", group, consumer, "COUNT", itoa(1 + w.rng.IntN(3))}
		if w.rng.IntN(5) == 0 {
			cmd = append(cmd, "NOACK")
		}
		o := newOp(db, k, append(cmd, "STREAMS", k, ">"))
		o.allow = noGroup
		return o
	case 9:
		o := newOp(db, k, append([]string{"XACK", k, group}, w.recentStreamIDs(dk, 2)...))
		o.allow = noGroup
		return o
	case 10:
		cmd := append([]string{"XCLAIM", k, group, consumer, "0"}, w.recentStreamIDs(dk, 2)...)
		o := newOp(db, k, cmd)
		o.allow = noGroup
		return o
	default:
		var o *op
		switch w.rng.IntN(3) {
		case 0:
			o = newOp(db, k, []string{"XAUTOCLAIM", k, group, consumer, "0", "0-0", "COUNT", "2"})
		case 1:
			o = newOp(db, k, []string{"XGROUP", "DELCONSUMER", k, group, consumer})
		default:
			o = newOp(db, k, []string{"XGROUP", "SETID", k, group, w.recentStreamIDs(dk, 1)[0]})
		}
		o.allow = noGroup
		return o
	}
}

func (w *Workload) genHLL(db int) *op {
	j := w.pick()
	k := w.key(kHLL, j)
	n, universe := 1+w.rng.IntN(5), 64
	if w.isBig(j) {
		n, universe = 256, 1<<20 // beyond hll-sparse-max-bytes (3000) soon: the dense encoding
	}
	cmd := []string{"PFADD", k}
	for range n {
		cmd = append(cmd, "u"+itoa(w.rng.IntN(universe)))
	}
	return newOp(db, k, cmd)
}

func (w *Workload) genBitmap(db int) *op {
	j := w.pick()
	k := w.key(kBits, j)
	span := 1024
	if w.isBig(j) {
		span = 65536
	}
	switch w.rng.IntN(4) {
	case 0:
		return newOp(db, k, []string{"BITFIELD", k, "SET", "u8", "#" + itoa(w.rng.IntN(span/8)), itoa(w.rng.IntN(256))})
	case 1:
		return newOp(db, k, []string{"BITFIELD", k, "OVERFLOW", "WRAP", "INCRBY", "i16", "#" + itoa(w.rng.IntN(span/16)), itoa(w.rng.IntN(2000) - 1000)})
	default:
		return newOp(db, k, []string{"SETBIT", k, itoa(w.rng.IntN(span)), itoa(w.rng.IntN(2))})
	}
}

func (w *Workload) genGeo(db int) *op {
	k := w.key(kGeo, w.pick())
	if w.rng.IntN(5) == 0 {
		return newOp(db, k, []string{"ZREM", k, "p" + itoa(w.rng.IntN(32))})
	}
	cmd := []string{"GEOADD", k}
	if w.rng.IntN(4) == 0 {
		cmd = append(cmd, "CH")
	}
	for range 1 + w.rng.IntN(3) {
		cmd = append(cmd, w.lon(), w.lat(), "p"+itoa(w.rng.IntN(32)))
	}
	return newOp(db, k, cmd)
}

func (w *Workload) lon() string {
	return strconv.FormatFloat(w.rng.Float64()*360-180, 'f', 6, 64)
}

func (w *Workload) lat() string {
	return strconv.FormatFloat(w.rng.Float64()*170-85, 'f', 6, 64)
}

// counterOp increments counter key k in db: INCR, or INCRBY a small amount.
func (w *Workload) counterCmd(db int, k string) ([]string, effect) {
	if w.rng.IntN(3) == 0 {
		n := 1 + w.rng.IntN(9)
		return []string{"INCRBY", k, itoa(n)}, effect{key: DBKey{db, k}, incr: int64(n)}
	}
	return []string{"INCR", k}, effect{key: DBKey{db, k}, incr: 1}
}

// alogCmd appends the next unique integer to append-only list k in db.
func (w *Workload) alogCmd(db int, k string) ([]string, effect) {
	seq := w.nextSeq()
	return []string{"RPUSH", k, strconv.FormatInt(seq, 10)}, effect{key: DBKey{db, k}, push: seq}
}

func (w *Workload) genCounter(db int) *op {
	k := w.key(kCnt, w.pick())
	cmd, e := w.counterCmd(db, k)
	o := newOp(db, k, cmd)
	o.effects = []effect{e}
	return o
}

func (w *Workload) genAlog(db int) *op {
	k := w.key(kAlog, w.pick())
	cmd, e := w.alogCmd(db, k)
	o := newOp(db, k, cmd)
	o.effects = []effect{e}
	if w.rng.IntN(4) == 0 {
		// Two elements in one RPUSH: both or neither.
		seq := w.nextSeq()
		o.cmds[0] = append(o.cmds[0], strconv.FormatInt(seq, 10))
		o.effects = append(o.effects, effect{key: DBKey{db, k}, push: seq})
	}
	return o
}

// plainKind returns a random kind that key-space operations may touch.
func (w *Workload) plainKind() kind { return plainKinds[w.rng.IntN(len(plainKinds))] }

// forget drops what the generator believes about a stream key that was deleted or moved.
func (w *Workload) forget(db int, kd kind, keys ...string) {
	if kd != kStream {
		return
	}
	for _, k := range keys {
		delete(w.streamGroups, DBKey{db, k})
		delete(w.streamIDs, DBKey{db, k})
	}
}

func (w *Workload) genKeyspace(db int) *op {
	kd := w.plainKind()
	k := w.key(kd, w.pickSmall())
	if w.opts.TTL && w.rng.IntN(2) == 0 {
		switch w.rng.IntN(6) {
		case 0:
			return newOp(db, k, []string{"EXPIRE", k, itoa(w.ttlSeconds())})
		case 1:
			flag := []string{"NX", "XX", "GT", "LT"}[w.rng.IntN(4)]
			return newOp(db, k, []string{"EXPIRE", k, itoa(w.ttlSeconds()), flag})
		case 2:
			return newOp(db, k, []string{"PEXPIRE", k, itoa(1000 * w.ttlSeconds())})
		case 3:
			at := w.epoch.Unix() + int64(w.ttlSeconds())
			return newOp(db, k, []string{"EXPIREAT", k, strconv.FormatInt(at, 10)})
		default:
			return newOp(db, k, []string{"PERSIST", k})
		}
	}
	pickKey := w.keyPicker()
	switch w.rng.IntN(6) {
	case 0, 1:
		w.forget(db, kd, k)
		return newOp(db, k, []string{"DEL", k})
	case 2:
		w.forget(db, kd, k)
		return newOp(db, k, []string{"UNLINK", k})
	case 3:
		src, dst := pickKey(kd), pickKey(kd)
		w.forget(db, kd, src, dst)
		o := newOp(db, src, []string{"RENAME", src, dst})
		o.allow = []string{"ERR no such key"}
		return o
	case 4:
		src, dst := pickKey(kd), pickKey(kd)
		w.forget(db, kd, dst)
		return newOp(db, src, []string{"RENAMENX", src, dst}).allowing("ERR no such key")
	default:
		src, dst := pickKey(kd), pickKey(kd)
		w.forget(db, kd, dst)
		cmd := []string{"COPY", src, dst}
		if w.rng.IntN(2) == 0 {
			cmd = append(cmd, "REPLACE")
		}
		return newOp(db, src, cmd).allowing(errSameObject)
	}
}

func (o *op) allowing(prefixes ...string) *op {
	o.allow = append(o.allow, prefixes...)
	return o
}

func (w *Workload) genMultiKey(db int) *op {
	pick := w.keyPicker()
	switch w.rng.IntN(13) {
	case 0:
		a, b, c := pick(kStr), pick(kStr), pick(kStr)
		return newOp(db, a, []string{"MSET", a, w.value(), b, w.value(), c, w.value()})
	case 1:
		a, b := pick(kStr), pick(kStr)
		return newOp(db, a, []string{"MSETNX", a, w.value(), b, w.value()})
	case 2:
		a, b, c := pick(w.plainKind()), pick(w.plainKind()), pick(w.plainKind())
		for _, k := range []string{a, b, c} {
			w.forget(db, kStream, k)
		}
		return newOp(db, a, []string{"DEL", a, b, c})
	case 3:
		kd := []kind{kSet, kISet}[w.rng.IntN(2)]
		dst, x, y := pick(kd), pick(kd), pick(kd)
		name := []string{"SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE"}[w.rng.IntN(3)]
		return newOp(db, dst, []string{name, dst, x, y})
	case 4:
		dst, x, y := pick(kZSet), pick(kZSet), pick(kZSet)
		if w.rng.IntN(2) == 0 {
			return newOp(db, dst, []string{"ZUNIONSTORE", dst, "2", x, y, "WEIGHTS", "1", "2"})
		}
		return newOp(db, dst, []string{"ZINTERSTORE", dst, "2", x, y, "AGGREGATE", "MAX"})
	case 5:
		src, dst := pick(kList), pick(kList)
		ends := []string{"LEFT", "RIGHT"}
		return newOp(db, src, []string{"LMOVE", src, dst, ends[w.rng.IntN(2)], ends[w.rng.IntN(2)]})
	case 6:
		src, dst := pick(kList), pick(kList)
		return newOp(db, src, []string{"RPOPLPUSH", src, dst})
	case 7:
		src, dst := pick(kSet), pick(kSet)
		return newOp(db, src, []string{"SMOVE", src, dst, w.member(24)})
	case 8:
		dst, x, y := pick(kHLL), pick(kHLL), pick(kHLL)
		return newOp(db, dst, []string{"PFMERGE", dst, x, y})
	case 9:
		dst, x, y := pick(kBits), pick(kBits), pick(kBits)
		name := []string{"AND", "OR", "XOR"}[w.rng.IntN(3)]
		return newOp(db, dst, []string{"BITOP", name, dst, x, y})
	case 10:
		dst, src := pick(kGeo), pick(kGeo)
		return newOp(db, dst, []string{"GEOSEARCHSTORE", dst, src, "FROMLONLAT", w.lon(), w.lat(), "BYRADIUS", "5000", "km", "ASC", "COUNT", "20"})
	case 11:
		dst, src := pick(kZSet), pick(kZSet)
		return newOp(db, dst, []string{"ZRANGESTORE", dst, src, "0", itoa(w.rng.IntN(10))})
	default:
		kd := w.plainKind()
		src, dst := pick(kd), pick(kd)
		w.forget(db, kd, dst)
		return newOp(db, src, []string{"COPY", src, dst, "REPLACE"}).allowing(errSameObject)
	}
}

// errSameObject is COPY's answer when source and destination are the same key.
const errSameObject = "ERR source and destination objects are the same"

// genMulti is a MULTI/EXEC block of 2 to 5 writes, some on exact-accounting keys. Without
// Cluster it may SELECT another database half-way, which a sync must follow.
func (w *Workload) genMulti(db int) *op {
	pick := w.keyPicker()
	o := newOp(db, "", []string{"MULTI"})
	cur := db
	for i := range 2 + w.rng.IntN(4) {
		if i > 0 && !w.opts.Cluster && len(w.opts.DBs) > 1 && w.rng.IntN(4) == 0 {
			cur = w.opts.DBs[w.rng.IntN(len(w.opts.DBs))]
			o.cmds = append(o.cmds, []string{"SELECT", itoa(cur)})
		}
		var cmd []string
		switch w.rng.IntN(7) {
		case 0:
			k := pick(kCnt)
			c, e := w.counterCmd(cur, k)
			cmd, o.effects = c, append(o.effects, e)
		case 1:
			k := pick(kAlog)
			c, e := w.alogCmd(cur, k)
			cmd, o.effects = c, append(o.effects, e)
		case 2:
			cmd = []string{"SET", pick(kStr), w.value()}
		case 3:
			cmd = []string{"HSET", pick(kHash), "f" + itoa(w.rng.IntN(16)), w.value()}
		case 4:
			cmd = []string{"SADD", pick(kSet), w.member(24)}
		case 5:
			cmd = []string{"ZADD", pick(kZSet), w.score(), w.member(24)}
		default:
			if w.opts.TTL {
				cmd = []string{"EXPIRE", pick(kStr), itoa(w.ttlSeconds())}
			} else {
				cmd = []string{"LPUSH", pick(kList), w.listElem()}
			}
		}
		if o.route == "" {
			o.route = cmd[1]
		}
		o.cmds = append(o.cmds, cmd)
	}
	o.cmds = append(o.cmds, []string{"EXEC"})
	o.endDB = cur
	return o
}

// genScript runs evalScript (EVAL, or EVALSHA of the copy loaded at setup) on a hash, a
// counter and an append-only list.
func (w *Workload) genScript(db int) *op {
	pick := w.keyPicker()
	h, c, l := pick(kHash), pick(kCnt), pick(kAlog)
	n := 1 + w.rng.IntN(5)
	seq := w.nextSeq()
	ttl := 0
	if w.opts.TTL && w.rng.IntN(3) == 0 {
		ttl = w.ttlSeconds()
	}
	name, body := "EVAL", evalScript
	if w.rng.IntN(2) == 0 {
		name, body = "EVALSHA", evalSHA()
	}
	o := newOp(db, h, []string{name, body, "3", h, c, l, "f" + itoa(w.rng.IntN(16)), w.value(), itoa(n), strconv.FormatInt(seq, 10), itoa(ttl)})
	o.effects = []effect{{key: DBKey{db, c}, incr: int64(n)}, {key: DBKey{db, l}, push: seq}}
	return o
}

// genFunction calls the library loaded at setup.
func (w *Workload) genFunction(db int) *op {
	pick := w.keyPicker()
	if w.rng.IntN(3) == 0 {
		s, h := pick(kSet), pick(kHash)
		return newOp(db, s, []string{"FCALL", "ferrywl_tag", "2", s, h, w.member(24)})
	}
	z, c, l := pick(kZSet), pick(kCnt), pick(kAlog)
	seq := w.nextSeq()
	o := newOp(db, z, []string{"FCALL", "ferrywl_bump", "3", z, c, l, w.incrFloat(), w.member(24), strconv.FormatInt(seq, 10)})
	o.effects = []effect{{key: DBKey{db, c}, incr: 1}, {key: DBKey{db, l}, push: seq}}
	return o
}

// genCrossDB moves and copies keys between databases (standalone with several DBs only).
func (w *Workload) genCrossDB(db int) *op {
	kd := w.plainKind()
	k := w.key(kd, w.pickSmall())
	other := w.opts.DBs[w.rng.IntN(len(w.opts.DBs))]
	if other == db {
		other = w.opts.DBs[(slices.Index(w.opts.DBs, db)+1)%len(w.opts.DBs)]
	}
	w.forget(db, kd, k)
	w.forget(other, kd, k)
	if w.rng.IntN(2) == 0 {
		return newOp(db, k, []string{"MOVE", k, itoa(other)})
	}
	return newOp(db, k, []string{"COPY", k, k, "DB", itoa(other), "REPLACE"})
}
