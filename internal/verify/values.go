package verify

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/internal/resp"
)

// compareElements compares one key element by element in windows of chunkElems (or
// chunkBytes of a string), and names up to maxDetailItems differences. Memory is bounded by
// the window, whatever the size of the value: this is the path for big keys and for keys
// whose digests differ.
func (w *worker) compareElements(ctx context.Context, sdb, ddb int, v *verdict) (string, error) {
	var det details
	var err error
	switch v.src.typ {
	case "string":
		err = w.elementsString(ctx, sdb, ddb, v, &det)
	case "hash":
		err = w.elementsScan(ctx, sdb, ddb, v, &det, hashKind)
	case "set":
		err = w.elementsScan(ctx, sdb, ddb, v, &det, setKind)
	case "zset":
		err = w.elementsScan(ctx, sdb, ddb, v, &det, zsetKind)
	case "list":
		err = w.elementsList(ctx, sdb, ddb, v, &det)
	case "stream":
		err = w.elementsStream(ctx, sdb, ddb, v, &det)
	default:
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if det.empty() {
		return "", nil
	}
	return det.String(), nil
}

// both runs one command on each side for key, as cmd builds it for the side's name of
// the key, and returns the two replies.
func (w *worker) both(ctx context.Context, sdb, ddb int, key string, cmd func(name string) []any) (resp.Value, resp.Value, error) {
	sb, db := w.prepare(sdb, ddb)
	args := cmd(key)
	dk := w.dkey(sdb, key)
	sb.add(key, args...)
	db.add(dk, cmd(dk)...)
	if err := exec(ctx, sb, db); err != nil {
		return resp.Value{}, resp.Value{}, err
	}
	s, d := sb.calls[0], db.calls[0]
	if err := firstErr(s.err, d.err); err != nil {
		return resp.Value{}, resp.Value{}, fmt.Errorf("%s %s (db %d/%d): %w", args[0], quoteKey(key), sdb, ddb, err)
	}
	return s.v, d.v, nil
}

func (w *worker) elementsString(ctx context.Context, sdb, ddb int, v *verdict, det *details) error {
	n := max(v.src.length, v.dst.length)
	for off := int64(0); off < n && det.empty(); off += chunkBytes {
		a, b, err := w.both(ctx, sdb, ddb, v.key, func(k string) []any { return []any{"GETRANGE", k, off, off + chunkBytes - 1} })
		if err != nil {
			return err
		}
		diffBytes(det, off, a.Str, b.Str)
	}
	return nil
}

func (w *worker) elementsList(ctx context.Context, sdb, ddb int, v *verdict, det *details) error {
	n := max(v.src.length, v.dst.length)
	for start := int64(0); start < n && !det.full(); start += chunkElems {
		a, b, err := w.both(ctx, sdb, ddb, v.key, func(k string) []any { return []any{"LRANGE", k, start, start + chunkElems - 1} })
		if err != nil {
			return err
		}
		diffList(det, start, a.Elems, b.Elems)
	}
	return nil
}

// scanKind describes a collection compared by SCAN on one side and lookups on the other.
type scanKind struct {
	what    string // "field" or "member", for messages
	scan    string // HSCAN, SSCAN, ZSCAN
	lookup  string // HMGET, SMISMEMBER, ZMSCORE
	single  string // the one-member lookup for servers without lookup (SISMEMBER, ZSCORE)
	valued  bool   // SCAN returns element, value pairs
	numeric bool   // values are scores
}

var (
	hashKind = scanKind{what: "field", scan: "HSCAN", lookup: "HMGET", valued: true}
	setKind  = scanKind{what: "member", scan: "SSCAN", lookup: "SMISMEMBER", single: "SISMEMBER"}
	zsetKind = scanKind{what: "member", scan: "ZSCAN", lookup: "ZMSCORE", single: "ZSCORE", valued: true, numeric: true}
)

// elementsScan walks the source's elements with HSCAN/SSCAN/ZSCAN and looks each window up
// on the destination; then, when the destination may hold elements the source has not
// (lengths differ, or an element was missing), walks the destination the same way to name
// them.
func (w *worker) elementsScan(ctx context.Context, sdb, ddb int, v *verdict, det *details, k scanKind) error {
	missing := false
	dk := w.dkey(sdb, v.key)
	err := w.scanLookup(ctx, w.src, sdb, v.key, w.dst, ddb, dk, k, func(p pair, other pair) {
		switch {
		case !other.has:
			missing = true
			det.add("%s %s missing on destination", k.what, quoteKey(string(p.k)))
		case k.valued && !sameValue(p.v, other.v, k.numeric):
			det.add("%s %s: %s on source, %s on destination", k.what, quoteKey(string(p.k)), quoteKey(string(p.v)), quoteKey(string(other.v)))
		}
	}, det)
	if err != nil || det.full() {
		return err
	}
	if v.src.length == v.dst.length && !missing {
		return nil
	}
	return w.scanLookup(ctx, w.dst, ddb, dk, w.src, sdb, v.key, k, func(p pair, other pair) {
		if !other.has {
			det.add("%s %s extra on destination", k.what, quoteKey(string(p.k)))
		}
	}, det)
}

// scanLookup scans key on side a (named akey there) and looks every window up on side b
// (named bkey), calling visit for each element until det is full. The next window's SCAN
// goes out in the same round trip as the current window's lookup, so a big key costs one
// round trip per window, not two.
func (w *worker) scanLookup(ctx context.Context, a *session, adb int, akey string, b *session, bdb int, bkey string, k scanKind, visit func(p, other pair), det *details) error {
	key := akey
	ab := &batch{s: a, db: adb}
	bb := &batch{s: b, db: bdb}
	ab.add(key, k.scan, key, "0", "COUNT", chunkElems)
	if err := exec(ctx, ab); err != nil {
		return err
	}
	for {
		if err := ab.calls[0].err; err != nil {
			if isWrongType(err) {
				return nil // replaced meanwhile; the next round looks again
			}
			return fmt.Errorf("%s %s %s (db %d): %w", a.ep.name, k.scan, quoteKey(key), adb, err)
		}
		next, items, err := cursorText(ab.calls[0].v)
		if err != nil {
			return fmt.Errorf("%s %s %s: %w", a.ep.name, k.scan, quoteKey(key), err)
		}
		var ps []pair
		if k.valued {
			ps = pairs(items)
		} else {
			ps = members(items)
		}
		// ps keeps pointing into the reply just read; the batch's next call replaces the
		// reply value, not the memory ps refers to.
		var prefetch *batch
		if next != "0" {
			ab.reset()
			ab.add(key, k.scan, key, next, "COUNT", chunkElems)
			prefetch = ab
		}
		if len(ps) > 0 {
			found, err := w.lookup(ctx, bb, bkey, k, ps, prefetch)
			if err != nil {
				return err
			}
			for i, p := range ps {
				visit(p, found[i])
				if det.full() {
					return nil
				}
			}
		} else if prefetch != nil {
			if err := exec(ctx, prefetch); err != nil {
				return err
			}
		}
		if prefetch == nil {
			return nil
		}
	}
}

// lookup asks side bb for the elements ps: HMGET, SMISMEMBER or ZMSCORE, or one SISMEMBER
// or ZSCORE per member on a server without the multi-member form. with, when not nil, is
// executed in the same round trip.
func (w *worker) lookup(ctx context.Context, bb *batch, key string, k scanKind, ps []pair, with *batch) ([]pair, error) {
	bb.reset()
	multi := k.single == "" || !bb.s.ep.noMulti.Load()
	if multi {
		args := make([]any, 0, 2+len(ps))
		args = append(args, k.lookup, key)
		for _, p := range ps {
			args = append(args, p.k)
		}
		bb.add(key, args...)
	} else {
		for _, p := range ps {
			bb.add(key, k.single, key, p.k)
		}
	}
	batches := []*batch{bb}
	if with != nil {
		batches = append(batches, with)
	}
	if err := exec(ctx, batches...); err != nil {
		return nil, err
	}
	out := make([]pair, len(ps))
	if multi {
		c := bb.calls[0]
		if re, ok := c.err.(*resp.Error); ok && k.single != "" && re.Prefix() == "ERR" && strings.Contains(strings.ToLower(re.Msg), "unknown command") {
			bb.s.ep.noMulti.Store(true)
			return w.lookup(ctx, bb, key, k, ps, nil)
		}
		if c.err != nil {
			if isWrongType(c.err) {
				return out, nil // replaced meanwhile: everything reads as absent
			}
			return nil, fmt.Errorf("%s %s %s (db %d): %w", bb.s.ep.name, k.lookup, quoteKey(key), bb.db, c.err)
		}
		if len(c.v.Elems) != len(ps) {
			return nil, fmt.Errorf("%s %s %s: %d replies for %d elements", bb.s.ep.name, k.lookup, quoteKey(key), len(c.v.Elems), len(ps))
		}
		for i, e := range c.v.Elems {
			out[i] = lookupResult(e, k)
		}
		return out, nil
	}
	for i, c := range bb.calls {
		if c.err != nil {
			if isWrongType(c.err) {
				return out, nil
			}
			return nil, fmt.Errorf("%s %s %s (db %d): %w", bb.s.ep.name, k.single, quoteKey(key), bb.db, c.err)
		}
		out[i] = lookupResult(c.v, k)
	}
	return out, nil
}

func lookupResult(e resp.Value, k scanKind) pair {
	if k.valued {
		return pair{v: e.Str, has: !e.Null && e.Kind != resp.KindNull}
	}
	return pair{has: e.Int == 1}
}

// elementsStream walks both streams in ID order, in windows of chunkElems entries, and
// names entries missing, extra or different.
func (w *worker) elementsStream(ctx context.Context, sdb, ddb int, v *verdict, det *details) error {
	start := "-"
	for !det.full() {
		a, b, err := w.both(ctx, sdb, ddb, v.key, func(k string) []any { return []any{"XRANGE", k, start, "+", "COUNT", chunkElems} })
		if err != nil {
			if isWrongType(errors.Unwrap(err)) {
				return nil
			}
			return err
		}
		srcDone, dstDone := len(a.Elems) < chunkElems, len(b.Elems) < chunkElems
		bound := ""
		last := func(es []resp.Value) string { return string(es[len(es)-1].Elems[0].Str) }
		switch {
		case srcDone && dstDone:
		case srcDone:
			bound = last(b.Elems)
		case dstDone:
			bound = last(a.Elems)
		default:
			x, _ := parseStreamID(last(a.Elems))
			y, _ := parseStreamID(last(b.Elems))
			bound = last(a.Elems)
			if y.less(x) {
				bound = last(b.Elems)
			}
		}
		diffEntries(det, a.Elems, b.Elems, bound)
		if bound == "" {
			return nil
		}
		start = "(" + bound
	}
	return nil
}

// streamID is a stream entry ID, ms-seq.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, error) {
	a, b, ok := strings.Cut(s, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return streamID{}, fmt.Errorf("bad stream ID %q", s)
	}
	return streamID{ms, seq}, nil
}

func (a streamID) less(b streamID) bool { return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq) }

func (a streamID) String() string { return fmt.Sprintf("%d-%d", a.ms, a.seq) }

// parseScore reads a zset score as Redis prints it (including inf and -inf).
func parseScore(b []byte) (float64, error) {
	switch strings.ToLower(string(b)) {
	case "inf", "+inf":
		return math.Inf(1), nil
	case "-inf":
		return math.Inf(-1), nil
	}
	return strconv.ParseFloat(string(b), 64)
}

// streamInfoFields are the XINFO STREAM fields that are part of a stream's state beyond its
// entries. Others (radix-tree sizes) depend on the encoding, not the data.
var streamInfoFields = []string{"last-generated-id", "max-deleted-entry-id", "entries-added", "recorded-first-entry-id", "groups"}

// groupFields are the XINFO GROUPS fields compared. entries-read and lag are left out:
// they are estimates that Redis's own replication does not keep (XREADGROUP reaches a
// replica as XCLAIM and XGROUP SETID without them), so a replica, and Ferry, which applies
// the same stream, legitimately shows them differently.
var groupFields = []string{"consumers", "pending", "last-delivered-id"}

// compareStreamMeta compares what a stream holds beyond its entries, which DEBUG
// DIGEST-VALUE does not cover: last and max-deleted IDs, entries-added, consumer groups
// with their consumers and pending-entry summaries. Idle times are left out: they are
// clocks, not data.
func (w *worker) compareStreamMeta(ctx context.Context, sdb, ddb int, vs []*verdict) error {
	sb, db := w.prepare(sdb, ddb)
	for _, v := range vs {
		dk := w.dkey(sdb, v.key)
		sb.add(v.key, "XINFO", "STREAM", v.key)
		sb.add(v.key, "XINFO", "GROUPS", v.key)
		db.add(dk, "XINFO", "STREAM", dk)
		db.add(dk, "XINFO", "GROUPS", dk)
	}
	if err := exec(ctx, sb, db); err != nil {
		return err
	}
	type meta struct {
		src, dst map[string]string
		groups   []string
	}
	metas := make([]meta, len(vs))
	for i, v := range vs {
		m := &metas[i]
		var err error
		if m.src, err = streamMetaLines(sb.calls[2*i], sb.calls[2*i+1]); err != nil {
			if isWrongType(err) || isNoSuchKey(err) {
				metas[i] = meta{}
				continue
			}
			return fmt.Errorf("source XINFO %s (db %d): %w", quoteKey(v.key), sdb, err)
		}
		if m.dst, err = streamMetaLines(db.calls[2*i], db.calls[2*i+1]); err != nil {
			if isWrongType(err) || isNoSuchKey(err) {
				metas[i] = meta{}
				continue
			}
			return fmt.Errorf("destination XINFO %s (db %d): %w", quoteKey(v.key), ddb, err)
		}
		seen := map[string]bool{}
		for _, lines := range []map[string]string{m.src, m.dst} {
			for name := range lines {
				if g, ok := strings.CutPrefix(name, "group "); ok {
					g, _, _ = strings.Cut(g, "\x00")
					if !seen[g] {
						seen[g] = true
						m.groups = append(m.groups, g)
					}
				}
			}
		}
		slices.Sort(m.groups)
	}
	// Consumers and pending summaries, per group, in one more round trip.
	sb, db = w.prepare(sdb, ddb)
	type ref struct {
		v     int
		group string
	}
	var refs []ref
	for i, v := range vs {
		dk := w.dkey(sdb, v.key)
		for _, g := range metas[i].groups {
			sb.add(v.key, "XINFO", "CONSUMERS", v.key, g)
			sb.add(v.key, "XPENDING", v.key, g)
			db.add(dk, "XINFO", "CONSUMERS", dk, g)
			db.add(dk, "XPENDING", dk, g)
			refs = append(refs, ref{i, g})
		}
	}
	if len(refs) > 0 {
		if err := exec(ctx, sb, db); err != nil {
			return err
		}
	}
	for j, r := range refs {
		m := &metas[r.v]
		if m.src == nil {
			continue
		}
		consumerLines(m.src, r.group, sb.calls[2*j], sb.calls[2*j+1])
		consumerLines(m.dst, r.group, db.calls[2*j], db.calls[2*j+1])
	}
	for i, v := range vs {
		m := metas[i]
		if m.src == nil {
			continue
		}
		var det details
		diffMeta(&det, m.src, m.dst)
		if !det.empty() {
			v.class, v.detail = ClassValue, "stream "+det.String()
		}
	}
	return nil
}

func isNoSuchKey(err error) bool {
	re, ok := err.(*resp.Error)
	return ok && strings.Contains(re.Msg, "no such key")
}

// streamMetaLines turns XINFO STREAM and XINFO GROUPS replies into name → value lines;
// group lines are named "group <name>\x00<field>".
func streamMetaLines(info, groups call) (map[string]string, error) {
	if err := firstErr(info.err, groups.err); err != nil {
		return nil, err
	}
	lines := map[string]string{}
	fields := flatMap(info.v)
	for _, f := range streamInfoFields {
		if val, ok := fields[f]; ok {
			lines[f] = render(val)
		}
	}
	for _, g := range groups.v.Elems {
		gf := flatMap(g)
		name := render(gf["name"])
		lines["group "+name+"\x00exists"] = "yes"
		for _, f := range groupFields {
			if val, ok := gf[f]; ok {
				lines["group "+name+"\x00"+f] = render(val)
			}
		}
	}
	return lines, nil
}

// consumerLines adds a group's consumers (name and pending count) and its XPENDING
// summary to lines.
func consumerLines(lines map[string]string, group string, consumers, pending call) {
	if lines == nil || consumers.err != nil || pending.err != nil {
		return // NOGROUP: the group line already says it is missing
	}
	for _, c := range consumers.v.Elems {
		cf := flatMap(c)
		lines["group "+group+"\x00consumer "+render(cf["name"])+" pending"] = render(cf["pending"])
	}
	lines["group "+group+"\x00pending summary"] = render(pending.v)
}

// diffMeta names the lines that differ. A field present on one side only is compared only
// when it belongs to a group (a newer server adds stream fields an older one lacks).
func diffMeta(det *details, src, dst map[string]string) {
	names := make([]string, 0, len(src)+len(dst))
	for n := range src {
		names = append(names, n)
	}
	for n := range dst {
		if _, ok := src[n]; !ok {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		a, inA := src[n]
		b, inB := dst[n]
		grp, field, isGroup := strings.Cut(strings.TrimPrefix(n, "group "), "\x00")
		label := n
		if isGroup {
			label = fmt.Sprintf("group %s %s", quoteKey(grp), field)
		}
		_, groupInA := src["group "+grp+"\x00exists"]
		_, groupInB := dst["group "+grp+"\x00exists"]
		consumer, isConsumer := strings.CutPrefix(field, "consumer ")
		consumer = strings.TrimSuffix(consumer, " pending")
		switch {
		case inA && inB && a != b:
			det.add("%s: %s on source, %s on destination", label, a, b)
		case inA && inB, !isGroup:
			// Equal; or a stream field one server version has and the other lacks.
		case field == "exists" && inA:
			det.add("group %s missing on destination", quoteKey(grp))
		case field == "exists":
			det.add("group %s extra on destination", quoteKey(grp))
		case !groupInA || !groupInB:
			// The group's own line says it is missing.
		case isConsumer && inA:
			det.add("group %s consumer %s missing on destination", quoteKey(grp), quoteKey(consumer))
		case isConsumer:
			det.add("group %s consumer %s extra on destination", quoteKey(grp), quoteKey(consumer))
		}
		if det.full() {
			return
		}
	}
}

// flatMap reads a RESP2 alternating key/value array (or a RESP3 map).
func flatMap(v resp.Value) map[string]resp.Value {
	m := make(map[string]resp.Value, len(v.Elems)/2)
	for i := 0; i+1 < len(v.Elems); i += 2 {
		m[string(v.Elems[i].Str)] = v.Elems[i+1]
	}
	return m
}

// render writes a reply as compact text for comparison and messages.
func render(v resp.Value) string {
	if v.Null || v.Kind == resp.KindNull {
		return "nil"
	}
	switch v.Kind {
	case resp.KindArray, resp.KindSet, resp.KindMap, resp.KindPush:
		parts := make([]string, len(v.Elems))
		for i, e := range v.Elems {
			parts[i] = render(e)
		}
		return "[" + strings.Join(parts, " ") + "]"
	}
	return v.Text()
}
