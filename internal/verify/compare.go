package verify

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/ferrysync/ferry/internal/resp"
)

// Value-comparison thresholds. Small values are compared in one pipelined round trip per
// batch of keys; big ones element by element in windows, so no value is ever held whole.
const (
	// digestMaxElems and digestMaxBytes bound the values whose DEBUG DIGEST-VALUE is asked
	// for (those above the whole-value bounds): the server computes it in one go,
	// blocking, so a huge key would stall it.
	digestMaxElems = 4096
	digestMaxBytes = 4 << 20
	// wholeMaxElems and wholeMaxBytes bound the values fetched whole (HGETALL, GET, …),
	// digest or not.
	wholeMaxElems = 128
	wholeMaxBytes = 64 << 10
	// chunkElems is the window of the element-by-element comparison: HSCAN/SSCAN/ZSCAN
	// COUNT, HMGET/SMISMEMBER/ZMSCORE size, LRANGE and XRANGE windows.
	chunkElems = 512
	// chunkBytes is the GETRANGE window for big strings.
	chunkBytes = 256 << 10
)

// state is what one side says about a key.
type state struct {
	typ    string // TYPE; "none" when absent
	pttl   int64  // PTTL: -1 no TTL, -2 absent
	length int64  // STRLEN/HLEN/LLEN/SCARD/ZCARD/XLEN; -1 when not asked or not known
}

func (s state) present() bool { return s.typ != "none" }

// worker compares keys with its own connections to both sides.
type worker struct {
	v        *verifier
	src, dst *session
	// reusable batches, one per side
	sb, db batch
}

func (v *verifier) newWorker() *worker {
	w := &worker{v: v, src: newSession(v.src), dst: newSession(v.dst)}
	w.sb.s, w.db.s = w.src, w.dst
	return w
}

func (w *worker) close() {
	w.src.close()
	w.dst.close()
}

// dkey is source key key of source database sdb as the destination names it (under the
// database's key prefix, if any).
func (w *worker) dkey(sdb int, key string) string { return w.v.opts.Selection.DestKey(sdb, key) }

// prepare resets the worker's two batches for the source and destination databases.
func (w *worker) prepare(sdb, ddb int) (*batch, *batch) {
	w.sb.reset()
	w.db.reset()
	w.sb.db, w.db.db = sdb, ddb
	return &w.sb, &w.db
}

// verdict is the outcome of comparing one key.
type verdict struct {
	key      string
	src, dst state
	class    Class // "" when equal
	detail   string
	ttl      string // a TTL difference, kept when the value differs too
	changing bool   // the source changed while the key was re-checked
}

// compareKeys compares keys of source db sdb with destination db ddb, as deep as the mode
// asks, and returns the keys that differ.
func (w *worker) compareKeys(ctx context.Context, sdb, ddb int, keys []string) ([]verdict, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vs := make([]verdict, len(keys))
	for i, k := range keys {
		vs[i].key = k
	}
	if err := w.probe(ctx, sdb, ddb, vs); err != nil {
		return nil, err
	}
	// deeper holds the keys present on both sides with one type, whose contents the mode
	// wants compared.
	var deeper []*verdict
	for i := range vs {
		v := &vs[i]
		w.classify(v)
		if v.class == "" && v.src.present() && v.dst.present() && w.v.opts.Mode >= ModeLength {
			deeper = append(deeper, v)
		}
	}
	if len(deeper) > 0 {
		if err := w.compareLengths(ctx, sdb, ddb, deeper); err != nil {
			return nil, err
		}
		if w.v.opts.Mode >= ModeValue {
			if err := w.compareValues(ctx, sdb, ddb, deeper); err != nil {
				return nil, err
			}
		}
	}
	out := vs[:0]
	for _, v := range vs {
		if v.class == "" && v.ttl != "" {
			v.class, v.detail = ClassTTL, v.ttl
		} else if v.class == ClassValue && v.ttl != "" {
			v.detail += "; also " + v.ttl
		}
		if v.class != "" {
			out = append(out, v)
		}
	}
	return out, nil
}

// probe reads TYPE and PTTL of every key on both sides in one pipelined round trip.
func (w *worker) probe(ctx context.Context, sdb, ddb int, vs []verdict) error {
	sb, db := w.prepare(sdb, ddb)
	for _, v := range vs {
		dk := w.dkey(sdb, v.key)
		sb.add(v.key, "TYPE", v.key)
		sb.add(v.key, "PTTL", v.key)
		db.add(dk, "TYPE", dk)
		db.add(dk, "PTTL", dk)
	}
	if err := exec(ctx, sb, db); err != nil {
		return err
	}
	for i := range vs {
		var err error
		if vs[i].src, err = readState(sb.calls[2*i:], sdb, vs[i].key); err != nil {
			return fmt.Errorf("source: %w", err)
		}
		if vs[i].dst, err = readState(db.calls[2*i:], ddb, vs[i].key); err != nil {
			return fmt.Errorf("destination: %w", err)
		}
	}
	return nil
}

// readState reads the TYPE and PTTL replies of one key.
func readState(calls []call, db int, key string) (state, error) {
	for _, c := range calls[:2] {
		if c.err != nil {
			return state{}, fmt.Errorf("%s %s (db %d): %w", c.args[0], quoteKey(key), db, c.err)
		}
	}
	st := state{typ: calls[0].v.Text(), pttl: calls[1].v.Int, length: -1}
	if st.typ == "" {
		return state{}, fmt.Errorf("TYPE %s (db %d): unexpected reply", quoteKey(key), db)
	}
	if st.pttl == -2 {
		// It expired between TYPE and PTTL.
		st.typ = "none"
	}
	if st.typ == "none" {
		st.pttl = -2
	}
	return st, nil
}

// classify decides what TYPE and PTTL alone say. A key that is about to expire (within the
// TTL tolerance) on the only side holding it is not a difference: the other side has most
// likely expired it already, by its own clock.
func (w *worker) classify(v *verdict) {
	tol := w.v.opts.TTLTolerance.Milliseconds()
	expiring := func(s state) bool { return s.pttl >= 0 && s.pttl <= tol }
	switch {
	case !v.src.present() && !v.dst.present():
		return
	case v.src.present() && !v.dst.present():
		if !expiring(v.src) {
			v.class, v.detail = ClassMissing, fmt.Sprintf("%s on source, absent on destination", v.src.typ)
		}
		return
	case !v.src.present() && v.dst.present():
		if !expiring(v.dst) {
			v.class, v.detail = ClassExtra, fmt.Sprintf("absent on source, %s on destination", v.dst.typ)
		}
		return
	case v.src.typ != v.dst.typ:
		v.class, v.detail = ClassType, fmt.Sprintf("%s on source, %s on destination", v.src.typ, v.dst.typ)
		return
	}
	v.ttl = ttlDifference(v.src.pttl, v.dst.pttl, tol)
}

// ttlDifference describes how two PTTLs differ, or returns "" when they agree: both
// without a TTL, or both with one and no further apart than tol milliseconds.
func ttlDifference(src, dst, tol int64) string {
	switch {
	case src == -1 && dst == -1:
		return ""
	case src >= 0 && dst == -1:
		return fmt.Sprintf("%s on source, no TTL on destination", formatTTL(src))
	case src == -1 && dst >= 0:
		return fmt.Sprintf("no TTL on source, %s on destination", formatTTL(dst))
	}
	d := src - dst
	if d < 0 {
		d = -d
	}
	if d <= tol {
		return ""
	}
	return fmt.Sprintf("%s on source, %s on destination (apart by %s)", formatTTL(src), formatTTL(dst), roundDuration(time.Duration(d)*time.Millisecond))
}

// lengthCommand is the command that gives a type's length.
func lengthCommand(typ string) string {
	switch typ {
	case "string":
		return "STRLEN"
	case "hash":
		return "HLEN"
	case "list":
		return "LLEN"
	case "set":
		return "SCARD"
	case "zset":
		return "ZCARD"
	case "stream":
		return "XLEN"
	}
	return "" // a module type: no generic length
}

// compareLengths asks every key's length on both sides and marks those that differ.
func (w *worker) compareLengths(ctx context.Context, sdb, ddb int, vs []*verdict) error {
	sb, db := w.prepare(sdb, ddb)
	var asked []*verdict
	for _, v := range vs {
		cmd := lengthCommand(v.src.typ)
		if cmd == "" {
			continue
		}
		dk := w.dkey(sdb, v.key)
		sb.add(v.key, cmd, v.key)
		db.add(dk, cmd, dk)
		asked = append(asked, v)
	}
	if err := exec(ctx, sb, db); err != nil {
		return err
	}
	for i, v := range asked {
		s, d := sb.calls[i], db.calls[i]
		if s.err != nil || d.err != nil {
			if isWrongType(s.err) || isWrongType(d.err) {
				// The key was replaced by another type since TYPE: in flight.
				v.class, v.detail = ClassType, "type changed during the comparison"
				continue
			}
			return fmt.Errorf("%s %s (db %d/%d): %w", s.args[0], quoteKey(v.key), sdb, ddb, firstErr(s.err, d.err))
		}
		v.src.length, v.dst.length = s.v.Int, d.v.Int
		if v.src.length != v.dst.length {
			v.class, v.detail = ClassValue, fmt.Sprintf("length %d on source, %d on destination", v.src.length, v.dst.length)
		}
	}
	return nil
}

// compareValues compares the contents of keys whose type (and, when known, length) agree,
// and names what differs in the keys that do not.
func (w *worker) compareValues(ctx context.Context, sdb, ddb int, vs []*verdict) error {
	var digest, whole, elementwise, streams []*verdict
	useDigest := w.v.src.digest && w.v.dst.digest
	for _, v := range vs {
		switch {
		case v.class == ClassType:
			// changed during the comparison; the next round looks again
		case v.class == ClassValue:
			// Lengths differ: name what differs.
			elementwise = append(elementwise, v)
		case v.src.length >= 0 && small(v.src, wholeMaxElems, wholeMaxBytes):
			// Small values are read whole even where DEBUG is allowed: DEBUG DIGEST-VALUE
			// costs the server several times a GET or HGETALL of a small value (measured:
			// 14 µs a call against 1-2), and the reply is no bigger than the digest's.
			whole = append(whole, v)
		case useDigest && (v.src.length < 0 || small(v.src, digestMaxElems, digestMaxBytes)):
			digest = append(digest, v)
		case v.src.length < 0:
			v.class, v.detail = "", ""
			w.v.uncompared.Add(1)
		default:
			elementwise = append(elementwise, v)
		}
	}
	w.v.byWhole.Add(int64(len(whole)))
	w.v.byDigest.Add(int64(len(digest)))
	if len(digest) > 0 {
		differ, err := w.compareDigests(ctx, sdb, ddb, digest)
		if err != nil {
			return err
		}
		for _, v := range digest {
			switch {
			case v.class != "":
			case v.src.typ == "stream":
				streams = append(streams, v)
			}
		}
		for _, v := range differ {
			if v.src.length < 0 {
				v.class, v.detail = ClassValue, fmt.Sprintf("%s values differ (DEBUG DIGEST-VALUE)", v.src.typ)
				continue
			}
			elementwise = append(elementwise, v)
		}
	}
	if len(whole) > 0 {
		if err := w.compareWhole(ctx, sdb, ddb, whole); err != nil {
			return err
		}
		for _, v := range whole {
			if v.class == "" && v.src.typ == "stream" {
				streams = append(streams, v)
			}
		}
	}
	w.v.byElements.Add(int64(len(elementwise)))
	for _, v := range elementwise {
		d, err := w.compareElements(ctx, sdb, ddb, v)
		if err != nil {
			return err
		}
		switch {
		case d != "":
			v.class = ClassValue
			if v.detail != "" {
				v.detail += ": " + d
			} else {
				v.detail = d
			}
		case v.class == ClassValue:
			// The lengths differed but no element does now: the key changed in between.
			// Leave it marked; the next round decides.
		default:
			if v.src.typ == "stream" {
				streams = append(streams, v)
			}
		}
	}
	if len(streams) > 0 {
		if err := w.compareStreamMeta(ctx, sdb, ddb, streams); err != nil {
			return err
		}
	}
	return nil
}

// small reports whether a value is at most maxElems elements (or maxBytes for a string).
func small(s state, maxElems, maxBytes int64) bool {
	if s.typ == "string" {
		return s.length <= maxBytes
	}
	return s.length <= maxElems
}

// compareDigests asks DEBUG DIGEST-VALUE of every key on both sides and returns the keys
// whose digests differ.
func (w *worker) compareDigests(ctx context.Context, sdb, ddb int, vs []*verdict) ([]*verdict, error) {
	sb, db := w.prepare(sdb, ddb)
	for _, v := range vs {
		dk := w.dkey(sdb, v.key)
		sb.add(v.key, "DEBUG", "DIGEST-VALUE", v.key)
		db.add(dk, "DEBUG", "DIGEST-VALUE", dk)
	}
	if err := exec(ctx, sb, db); err != nil {
		return nil, err
	}
	var differ []*verdict
	for i, v := range vs {
		s, d := sb.calls[i], db.calls[i]
		if s.err != nil || d.err != nil {
			return nil, fmt.Errorf("DEBUG DIGEST-VALUE %s (db %d/%d): %w", quoteKey(v.key), sdb, ddb, firstErr(s.err, d.err))
		}
		if !bytes.Equal(digestOf(s.v), digestOf(d.v)) {
			differ = append(differ, v)
		}
	}
	return differ, nil
}

func digestOf(v resp.Value) []byte {
	if len(v.Elems) == 1 {
		return v.Elems[0].Str
	}
	return v.Str
}

func isWrongType(err error) bool {
	re, ok := err.(*resp.Error)
	return ok && re.IsWrongType()
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// wholeCommand is the command that reads a small value whole.
func wholeCommand(typ, key string) []any {
	switch typ {
	case "string":
		return []any{"GET", key}
	case "hash":
		return []any{"HGETALL", key}
	case "list":
		return []any{"LRANGE", key, 0, -1}
	case "set":
		return []any{"SMEMBERS", key}
	case "zset":
		return []any{"ZRANGE", key, 0, -1, "WITHSCORES"}
	case "stream":
		return []any{"XRANGE", key, "-", "+"}
	}
	return nil
}

// compareWhole reads small values whole on both sides, pipelined, and compares them.
func (w *worker) compareWhole(ctx context.Context, sdb, ddb int, vs []*verdict) error {
	sb, db := w.prepare(sdb, ddb)
	for _, v := range vs {
		dk := w.dkey(sdb, v.key)
		sb.add(v.key, wholeCommand(v.src.typ, v.key)...)
		db.add(dk, wholeCommand(v.src.typ, dk)...)
	}
	if err := exec(ctx, sb, db); err != nil {
		return err
	}
	for i, v := range vs {
		s, d := sb.calls[i], db.calls[i]
		if s.err != nil || d.err != nil {
			if isWrongType(s.err) || isWrongType(d.err) {
				v.class, v.detail = ClassType, "type changed during the comparison"
				continue
			}
			return fmt.Errorf("%s %s (db %d/%d): %w", s.args[0], quoteKey(v.key), sdb, ddb, firstErr(s.err, d.err))
		}
		var det details
		switch v.src.typ {
		case "string":
			diffBytes(&det, 0, s.v.Str, d.v.Str)
		case "hash":
			diffPairs(&det, "field", pairs(s.v.Elems), pairs(d.v.Elems), true, false)
		case "zset":
			diffPairs(&det, "member", pairs(s.v.Elems), pairs(d.v.Elems), true, true)
		case "set":
			diffPairs(&det, "member", members(s.v.Elems), members(d.v.Elems), true, false)
		case "list":
			diffList(&det, 0, s.v.Elems, d.v.Elems)
		case "stream":
			diffEntries(&det, s.v.Elems, d.v.Elems, "")
		}
		if !det.empty() {
			v.class, v.detail = ClassValue, det.String()
		}
	}
	return nil
}

// pair is a field and its value (a hash field, a zset member and score; a set member with
// no value).
type pair struct {
	k, v []byte
	has  bool // false: the element is absent on that side (HMGET/ZMSCORE nil)
}

func pairs(elems []resp.Value) []pair {
	out := make([]pair, 0, len(elems)/2)
	for i := 0; i+1 < len(elems); i += 2 {
		out = append(out, pair{k: elems[i].Str, v: elems[i+1].Str, has: true})
	}
	return out
}

func members(elems []resp.Value) []pair {
	out := make([]pair, len(elems))
	for i, e := range elems {
		out[i] = pair{k: e.Str, has: true}
	}
	return out
}

// diffPairs compares two complete sets of pairs (order does not matter). With both set, it
// reports elements of dst missing from src as extra; scores says values are floats.
func diffPairs(det *details, what string, src, dst []pair, both, scores bool) {
	m := make(map[string][]byte, len(dst))
	for _, p := range dst {
		m[string(p.k)] = p.v
	}
	for _, p := range src {
		dv, ok := m[string(p.k)]
		switch {
		case !ok:
			det.add("%s %s missing on destination", what, quoteKey(string(p.k)))
		case !sameValue(p.v, dv, scores):
			det.add("%s %s: %s on source, %s on destination", what, quoteKey(string(p.k)), quoteKey(string(p.v)), quoteKey(string(dv)))
		}
		delete(m, string(p.k))
		if det.full() {
			return
		}
	}
	if !both {
		return
	}
	for _, p := range dst {
		if _, left := m[string(p.k)]; left {
			det.add("%s %s extra on destination", what, quoteKey(string(p.k)))
			if det.full() {
				return
			}
		}
	}
}

// sameValue compares two values; scores are compared as numbers, since a score's text
// form is not unique ("1" and "1.0").
func sameValue(a, b []byte, scores bool) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if !scores {
		return false
	}
	fa, ea := parseScore(a)
	fb, eb := parseScore(b)
	return ea == nil && eb == nil && fa == fb
}

// diffBytes names the first byte at which two strings (or windows of them starting at
// offset) differ.
func diffBytes(det *details, offset int64, a, b []byte) {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			det.add("bytes differ from offset %d", offset+int64(i))
			return
		}
	}
	if len(a) != len(b) {
		det.add("bytes differ from offset %d (one side ends)", offset+int64(n))
	}
}

// diffList names differing elements of two list windows starting at index start.
func diffList(det *details, start int64, a, b []resp.Value) {
	n := max(len(a), len(b))
	for i := 0; i < n && !det.full(); i++ {
		switch {
		case i >= len(a):
			det.add("element %d extra on destination", start+int64(i))
		case i >= len(b):
			det.add("element %d missing on destination", start+int64(i))
		case !bytes.Equal(a[i].Str, b[i].Str):
			det.add("element %d: %s on source, %s on destination", start+int64(i), quoteKey(string(a[i].Str)), quoteKey(string(b[i].Str)))
		}
	}
}

// entry is one stream entry: ID and field-value list.
type entry struct {
	id     streamID
	fields []resp.Value
}

func parseEntries(elems []resp.Value) ([]entry, error) {
	out := make([]entry, 0, len(elems))
	for _, e := range elems {
		if len(e.Elems) != 2 {
			return nil, fmt.Errorf("stream entry: want [id, fields], got %d elements", len(e.Elems))
		}
		id, err := parseStreamID(string(e.Elems[0].Str))
		if err != nil {
			return nil, err
		}
		out = append(out, entry{id: id, fields: e.Elems[1].Elems})
	}
	return out, nil
}

// diffEntries compares two windows of stream entries, both starting at the same ID. Only
// entries up to bound are judged (bound "" means all); the rest are left for the next
// window.
func diffEntries(det *details, srcElems, dstElems []resp.Value, bound string) {
	src, err1 := parseEntries(srcElems)
	dst, err2 := parseEntries(dstElems)
	if err := firstErr(err1, err2); err != nil {
		det.add("unreadable stream entries: %v", err)
		return
	}
	var lim streamID
	limited := bound != ""
	if limited {
		lim, _ = parseStreamID(bound)
	}
	i, j := 0, 0
	for !det.full() {
		si, dj := i < len(src), j < len(dst)
		if si && limited && lim.less(src[i].id) {
			si = false
		}
		if dj && limited && lim.less(dst[j].id) {
			dj = false
		}
		switch {
		case !si && !dj:
			return
		case si && (!dj || src[i].id.less(dst[j].id)):
			det.add("entry %s missing on destination", src[i].id)
			i++
		case dj && (!si || dst[j].id.less(src[i].id)):
			det.add("entry %s extra on destination", dst[j].id)
			j++
		default:
			if !sameFields(src[i].fields, dst[j].fields) {
				det.add("entry %s differs", src[i].id)
			}
			i++
			j++
		}
	}
}

func sameFields(a, b []resp.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Str, b[i].Str) {
			return false
		}
	}
	return true
}

// cursorText reads a SCAN-family cursor.
func cursorText(v resp.Value) (string, []resp.Value, error) {
	if len(v.Elems) != 2 {
		return "", nil, fmt.Errorf("scan reply: want [cursor, items], got %d elements", len(v.Elems))
	}
	return string(v.Elems[0].Str), v.Elems[1].Elems, nil
}

// fingerprint returns, for each key, a summary of its state on the source: type, whether it
// has a TTL, its length and, where DEBUG is allowed and the value is small, its digest.
// Two equal fingerprints taken around a comparison mean the source key most likely did
// not change in between (a change that keeps all of these is not seen).
func (w *worker) fingerprint(ctx context.Context, sdb int, keys []string) ([]string, error) {
	sb, _ := w.prepare(sdb, 0)
	for _, k := range keys {
		sb.add(k, "TYPE", k)
		sb.add(k, "PTTL", k)
	}
	if err := exec(ctx, sb); err != nil {
		return nil, err
	}
	states := make([]state, len(keys))
	for i, k := range keys {
		var err error
		if states[i], err = readState(sb.calls[2*i:], sdb, k); err != nil {
			return nil, fmt.Errorf("source: %w", err)
		}
	}
	sb.reset()
	var idx []int
	for i, st := range states {
		if cmd := lengthCommand(st.typ); cmd != "" {
			sb.add(keys[i], cmd, keys[i])
			idx = append(idx, i)
		}
	}
	if err := exec(ctx, sb); err != nil {
		return nil, err
	}
	for j, i := range idx {
		if sb.calls[j].err == nil {
			states[i].length = sb.calls[j].v.Int
		}
	}
	digests := make([][]byte, len(keys))
	if w.v.src.digest {
		sb.reset()
		idx = idx[:0]
		for i, st := range states {
			if st.present() && (st.length < 0 || small(st, digestMaxElems, digestMaxBytes)) {
				sb.add(keys[i], "DEBUG", "DIGEST-VALUE", keys[i])
				idx = append(idx, i)
			}
		}
		if err := exec(ctx, sb); err != nil {
			return nil, err
		}
		for j, i := range idx {
			if sb.calls[j].err == nil {
				digests[i] = digestOf(sb.calls[j].v)
			}
		}
	}
	out := make([]string, len(keys))
	for i, st := range states {
		out[i] = fmt.Sprintf("%s|%t|%d|%x", st.typ, st.pttl >= 0, st.length, digests[i])
	}
	return out, nil
}
