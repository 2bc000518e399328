package testutil

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

// The classes of KeyDiff, seen from a (the reference, usually the source) towards b.
const (
	DiffMissing = "missing" // in a, not in b
	DiffExtra   = "extra"   // in b, not in a
	DiffType    = "type"    // in both, of different types
	DiffValue   = "value"   // same type, different value (DEBUG DIGEST-VALUE, or stream groups)
	DiffTTL     = "ttl"     // one has a TTL and the other not, or they differ beyond TTLTolerance
)

const (
	// DefaultCompareBatch is how many keys CompareKeys checks per pipelined round trip.
	DefaultCompareBatch = 500
	// scanCount is the COUNT hint of the SCANs that list the keys.
	scanCount = 1000
	// compareTimeout bounds RequireSameData.
	compareTimeout = 2 * time.Minute
	// maxReportedDiffs is how many differences RequireSameData names.
	maxReportedDiffs = 20
	// maxPending caps the PEL entries compared per stream consumer group.
	maxPending = 10000
)

// CompareOptions configures CompareKeys.
type CompareOptions struct {
	// DBs are the databases to compare; default: every database holding keys on either side
	// (INFO keyspace). Naming a database one side does not have is an error.
	DBs []int
	// SkipPrefixes leaves out keys whose name starts with any of them (e.g. "ferry:").
	SkipPrefixes []string
	// TTLTolerance, when positive, also compares the remaining TTLs of keys that both have one:
	// they differ when PTTL values are further apart than this. When zero only the presence of
	// a TTL is compared.
	TTLTolerance time.Duration
	// BatchSize is the number of keys checked per pipelined round trip; default
	// DefaultCompareBatch.
	BatchSize int
}

// KeyDiff is one key that differs between two deployments.
type KeyDiff struct {
	DB     int
	Key    string
	Class  string // DiffMissing, DiffExtra, DiffType, DiffValue or DiffTTL
	Detail string
}

func (d KeyDiff) String() string {
	return fmt.Sprintf("db %d key %q: %s (%s)", d.DB, d.Key, d.Class, d.Detail)
}

// keyState is what CompareKeys learns about one key on one side.
type keyState struct {
	typ    string // "none" when absent
	pttl   int64  // -1 without TTL, -2 absent
	digest string // DEBUG DIGEST-VALUE
	// meta holds, for streams, what DEBUG DIGEST-VALUE leaves out (consumer groups, PELs,
	// last and max-deleted IDs), in a canonical text form.
	meta string
}

// CompareKeys compares the data of a and b, key by key: for every database in opts.DBs it SCANs
// every master of both sides, and compares each key's TYPE, DEBUG DIGEST-VALUE (plus, for
// streams, consumer groups and pending entries, which the digest does not cover), and TTL
// presence (and difference, with opts.TTLTolerance). Differences are reported from a's point of
// view ("missing" means a has the key and b has not), sorted by database and key. Keys changing
// while they are compared show up as differences: compare quiesced data, or compare again.
func CompareKeys(ctx context.Context, a, b Deployment, opts CompareOptions) ([]KeyDiff, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultCompareBatch
	}
	dbs := opts.DBs
	if len(dbs) == 0 {
		var err error
		if dbs, err = unionKeyspaceDBs(ctx, a, b); err != nil {
			return nil, err
		}
	}
	for _, db := range dbs {
		for _, side := range []struct {
			name string
			d    Deployment
		}{{"a", a}, {"b", b}} {
			if !hasDB(side.d, db) {
				return nil, fmt.Errorf("compare db %d: deployment %s has no db %d (it has %v)", db, side.name, db, side.d.DBs())
			}
		}
	}
	ca, cb := newConnSet(), newConnSet()
	defer ca.close()
	defer cb.close()

	var diffs []KeyDiff
	for _, db := range dbs {
		keys, err := scanBoth(ctx, ca, a, cb, b, db, opts.SkipPrefixes)
		if err != nil {
			return nil, err
		}
		for start := 0; start < len(keys); start += opts.BatchSize {
			batch := keys[start:min(start+opts.BatchSize, len(keys))]
			var sa, sb []keyState
			var ea, eb error
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				sa, ea = probe(ctx, ca, a, db, batch)
			}()
			sb, eb = probe(ctx, cb, b, db, batch)
			wg.Wait()
			if err := errors.Join(ea, eb); err != nil {
				return nil, err
			}
			for i, k := range batch {
				if d, ok := diffKey(sa[i], sb[i], opts.TTLTolerance); ok {
					d.DB, d.Key = db, k
					diffs = append(diffs, d)
				}
			}
		}
	}
	slices.SortFunc(diffs, func(x, y KeyDiff) int {
		if x.DB != y.DB {
			return x.DB - y.DB
		}
		return strings.Compare(x.Key, y.Key)
	})
	return diffs, nil
}

// diffKey classifies the difference between one key's states on both sides, if any.
func diffKey(a, b keyState, ttlTolerance time.Duration) (KeyDiff, bool) {
	switch {
	case a.typ == "none" && b.typ == "none":
		return KeyDiff{}, false // gone on both sides since the SCAN
	case b.typ == "none":
		return KeyDiff{Class: DiffMissing, Detail: "a has a " + a.typ + ", b has no such key"}, true
	case a.typ == "none":
		return KeyDiff{Class: DiffExtra, Detail: "b has a " + b.typ + ", a has no such key"}, true
	case a.typ != b.typ:
		return KeyDiff{Class: DiffType, Detail: "a has a " + a.typ + ", b a " + b.typ}, true
	case a.digest != b.digest:
		return KeyDiff{Class: DiffValue, Detail: fmt.Sprintf("%s digest %s in a, %s in b", a.typ, a.digest, b.digest)}, true
	case a.meta != b.meta:
		return KeyDiff{Class: DiffValue, Detail: fmt.Sprintf("stream metadata differs: a {%s}, b {%s}", a.meta, b.meta)}, true
	case (a.pttl < 0) != (b.pttl < 0):
		return KeyDiff{Class: DiffTTL, Detail: "TTL in a " + ttlText(a.pttl) + ", in b " + ttlText(b.pttl)}, true
	case ttlTolerance > 0 && a.pttl >= 0 && b.pttl >= 0 && absDiff(a.pttl, b.pttl) > ttlTolerance.Milliseconds():
		return KeyDiff{Class: DiffTTL, Detail: fmt.Sprintf("TTL in a %s, in b %s: more than %v apart", ttlText(a.pttl), ttlText(b.pttl), ttlTolerance)}, true
	}
	return KeyDiff{}, false
}

func ttlText(pttl int64) string {
	if pttl < 0 {
		return "none"
	}
	return (time.Duration(pttl) * time.Millisecond).String()
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// RequireSameData fails the test when a and b hold different data, naming up to 20 of the keys
// that differ and how.
func RequireSameData(tb testing.TB, a, b Deployment, opts CompareOptions) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), compareTimeout)
	defer cancel()
	diffs, err := CompareKeys(ctx, a, b, opts)
	if err != nil {
		tb.Fatalf("compare data: %v", err)
	}
	if len(diffs) == 0 {
		return
	}
	var msg strings.Builder
	fmt.Fprintf(&msg, "%d keys differ", len(diffs))
	counts := make(map[string]int)
	for _, d := range diffs {
		counts[d.Class]++
	}
	classes := []string{DiffMissing, DiffExtra, DiffType, DiffValue, DiffTTL}
	sep := " ("
	for _, c := range classes {
		if counts[c] > 0 {
			fmt.Fprintf(&msg, "%s%d %s", sep, counts[c], c)
			sep = ", "
		}
	}
	msg.WriteString("):")
	for i, d := range diffs {
		if i == maxReportedDiffs {
			fmt.Fprintf(&msg, "\n  ... and %d more", len(diffs)-maxReportedDiffs)
			break
		}
		msg.WriteString("\n  ")
		msg.WriteString(d.String())
	}
	tb.Fatal(msg.String())
}

// unionKeyspaceDBs lists the databases holding keys on either side.
func unionKeyspaceDBs(ctx context.Context, a, b Deployment) ([]int, error) {
	da, err := keyspaceDBs(ctx, a)
	if err != nil {
		return nil, err
	}
	db, err := keyspaceDBs(ctx, b)
	if err != nil {
		return nil, err
	}
	all := append(da, db...)
	slices.Sort(all)
	return slices.Compact(all), nil
}

// connSet holds one connection per server, each with the database it last SELECTed. The oracle
// dials its own connections instead of using Server.Call's shared one, which tests may have
// left on another database.
type connSet struct {
	mu    sync.Mutex
	conns map[*Server]*dbConn
}

type dbConn struct {
	c  *redis.Conn
	db int
}

func newConnSet() *connSet { return &connSet{conns: make(map[*Server]*dbConn)} }

// get returns s's connection with db selected.
func (cs *connSet) get(ctx context.Context, s *Server, db int) (*dbConn, error) {
	cs.mu.Lock()
	dc := cs.conns[s]
	cs.mu.Unlock()
	if dc == nil {
		c, err := s.Dial(ctx)
		if err != nil {
			return nil, err
		}
		dc = &dbConn{c: c, db: 0}
		cs.mu.Lock()
		cs.conns[s] = dc
		cs.mu.Unlock()
	}
	if dc.db != db {
		if _, err := dc.c.Do(ctx, "SELECT", strconv.Itoa(db)); err != nil {
			return nil, fmt.Errorf("%s: SELECT %d: %w", s.Addr(), db, err)
		}
		dc.db = db
	}
	return dc, nil
}

func (cs *connSet) close() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, dc := range cs.conns {
		dc.c.Close()
	}
}

// scanBoth lists the keys of db on every master of both deployments, in parallel, and returns
// their union, sorted, without the skipped prefixes.
func scanBoth(ctx context.Context, ca *connSet, a Deployment, cb *connSet, b Deployment, db int, skip []string) ([]string, error) {
	type job struct {
		cs *connSet
		s  *Server
	}
	var jobs []job
	for _, m := range a.Masters() {
		jobs = append(jobs, job{ca, m})
	}
	for _, m := range b.Masters() {
		jobs = append(jobs, job{cb, m})
	}
	results := make([][]string, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = scanKeys(ctx, j.cs, j.s, db, skip)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var all []string
	for _, r := range results {
		all = append(all, r...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// scanKeys lists the keys of db on s with SCAN.
func scanKeys(ctx context.Context, cs *connSet, s *Server, db int, skip []string) ([]string, error) {
	dc, err := cs.get(ctx, s, db)
	if err != nil {
		return nil, err
	}
	var keys []string
	cursor := "0"
	for {
		v, err := dc.c.Do(ctx, "SCAN", cursor, "COUNT", strconv.Itoa(scanCount))
		if err != nil {
			return nil, fmt.Errorf("%s: SCAN %s in db %d: %w", s.Addr(), cursor, db, err)
		}
		if len(v.Elems) != 2 {
			return nil, fmt.Errorf("%s: SCAN in db %d: unexpected reply with %d elements", s.Addr(), db, len(v.Elems))
		}
		for _, k := range v.Elems[1].Elems {
			key := string(k.Str)
			if !hasAnyPrefix(key, skip) {
				keys = append(keys, key)
			}
		}
		cursor = string(v.Elems[0].Str)
		if cursor == "0" {
			return keys, nil
		}
	}
}

func hasAnyPrefix(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// probe returns the state of every key of the batch on deployment d, querying each master for
// its keys in one pipeline, the masters in parallel.
func probe(ctx context.Context, cs *connSet, d Deployment, db int, keys []string) ([]keyState, error) {
	groups := make(map[*Server][]int)
	for i, k := range keys {
		m := d.MasterForKey(k)
		groups[m] = append(groups[m], i)
	}
	states := make([]keyState, len(keys))
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for m, idx := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := probeServer(ctx, cs, m, db, keys, idx, states); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return states, errors.Join(errs...)
}

// probeServer fills states[i] for keys[i], i in idx, all held by s: one pipeline of TYPE and
// PTTL per key and a single multi-key DEBUG DIGEST-VALUE, then a second round for streams.
func probeServer(ctx context.Context, cs *connSet, s *Server, db int, keys []string, idx []int, states []keyState) error {
	dc, err := cs.get(ctx, s, db)
	if err != nil {
		return err
	}
	c := dc.c
	fail := func(what string, err error) error {
		return fmt.Errorf("%s: compare db %d: %s: %w", s.Addr(), db, what, err)
	}
	digestArgs := make([]any, 0, 2+len(idx))
	digestArgs = append(digestArgs, "DEBUG", "DIGEST-VALUE")
	for _, i := range idx {
		if err := c.Send("TYPE", keys[i]); err != nil {
			return fail("send TYPE", err)
		}
		if err := c.Send("PTTL", keys[i]); err != nil {
			return fail("send PTTL", err)
		}
		digestArgs = append(digestArgs, keys[i])
	}
	// DEBUG is not a keyed command, so a cluster node takes keys of many slots in one call.
	if err := c.Send(digestArgs...); err != nil {
		return fail("send DEBUG DIGEST-VALUE", err)
	}
	if err := c.Flush(); err != nil {
		return fail("flush", err)
	}
	var streams []int
	for _, i := range idx {
		t, err := c.Receive()
		if err != nil {
			return fail(fmt.Sprintf("TYPE %q", keys[i]), err)
		}
		p, err := c.Receive()
		if err != nil {
			return fail(fmt.Sprintf("PTTL %q", keys[i]), err)
		}
		states[i].typ = string(t.Str)
		states[i].pttl = p.Int
		if states[i].typ == "stream" {
			streams = append(streams, i)
		}
	}
	dv, err := c.Receive()
	if err != nil {
		return fail("DEBUG DIGEST-VALUE", err)
	}
	if len(dv.Elems) != len(idx) {
		return fail("DEBUG DIGEST-VALUE", fmt.Errorf("%d digests for %d keys", len(dv.Elems), len(idx)))
	}
	for j, i := range idx {
		states[i].digest = valueDigest(dv.Elems[j].Str, states[i].pttl >= 0)
	}
	if len(streams) == 0 {
		return nil
	}
	names := make([]string, len(streams))
	for j, i := range streams {
		names[j] = keys[i]
	}
	metas, err := streamMetas(c, names)
	if err != nil {
		return fail("stream metadata", err)
	}
	for j, i := range streams {
		states[i].meta = metas[j]
	}
	return nil
}

// expireMark is what DEBUG DIGEST-VALUE mixes into the digest of a key that has a TTL: it
// XORs in SHA1("!!expire!!") (xorObjectDigest in Redis's debug.c), whatever the expire time.
var expireMark = sha1.Sum([]byte("!!expire!!"))

// valueDigest removes the expire mark from a DEBUG DIGEST-VALUE, so that the value is compared on
// its own and a TTL present on one side only is reported as a TTL difference, not a value one.
// TestDigestValueIgnoresTTL checks the server still works this way.
func valueDigest(hexDigest []byte, hasTTL bool) string {
	if !hasTTL {
		return string(hexDigest)
	}
	var d [sha1.Size]byte
	if n, err := hex.Decode(d[:], hexDigest); err != nil || n != sha1.Size {
		return string(hexDigest) // not a digest: compared as it is
	}
	for i := range d {
		d[i] ^= expireMark[i]
	}
	return hex.EncodeToString(d[:])
}

// streamMetas renders, for each stream key, what DEBUG DIGEST-VALUE does not cover, in a
// canonical text: the last generated and max deleted IDs, entries added, and per consumer group
// its last delivered ID, its pending entries (ID, consumer, delivery count) and its consumers
// with their pending counts. Idle and delivery times are left out: they are clock readings, not
// data. So is entries-read: a lag estimate that Redis's own replication does not keep equal (a
// replica attached under load differs from its master). Two pipelined round trips: the streams,
// then their groups. A key gone meanwhile gets its error text, so it differs from a key that is
// still there.
func streamMetas(c *redis.Conn, keys []string) ([]string, error) {
	for _, k := range keys {
		if err := c.Send("XINFO", "STREAM", k); err != nil {
			return nil, err
		}
		if err := c.Send("XINFO", "GROUPS", k); err != nil {
			return nil, err
		}
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	out := make([]strings.Builder, len(keys))
	groups := make([][]string, len(keys))
	gfields := make([]map[string]map[string]resp.Value, len(keys))
	for i := range keys {
		info, err := receiveOrReplyError(c)
		if err != nil {
			return nil, err
		}
		gs, err := receiveOrReplyError(c)
		if err != nil {
			return nil, err
		}
		b := &out[i]
		if e := info.Err(); e != nil {
			b.WriteString("error: " + e.Error())
			continue
		}
		fields := replyMap(info)
		for _, f := range []string{"length", "last-generated-id", "max-deleted-entry-id", "entries-added", "recorded-first-entry-id"} {
			if v, ok := fields[f]; ok {
				fmt.Fprintf(b, "%s=%s ", f, v.Text())
			}
		}
		gfields[i] = make(map[string]map[string]resp.Value)
		for _, g := range gs.Elems {
			m := replyMap(g)
			name := m["name"].Text()
			groups[i] = append(groups[i], name)
			gfields[i][name] = m
		}
		slices.Sort(groups[i])
	}
	sent := false
	for i, k := range keys {
		for _, g := range groups[i] {
			if err := c.Send("XPENDING", k, g, "-", "+", strconv.Itoa(maxPending)); err != nil {
				return nil, err
			}
			if err := c.Send("XINFO", "CONSUMERS", k, g); err != nil {
				return nil, err
			}
			sent = true
		}
	}
	if !sent {
		return finish(out), nil
	}
	if err := c.Flush(); err != nil {
		return nil, err
	}
	for i := range keys {
		b := &out[i]
		for _, name := range groups[i] {
			pel, err := receiveOrReplyError(c)
			if err != nil {
				return nil, err
			}
			cons, err := receiveOrReplyError(c)
			if err != nil {
				return nil, err
			}
			g := gfields[i][name]
			fmt.Fprintf(b, "group %q last-delivered-id=%s pending=%s [", name, g["last-delivered-id"].Text(), g["pending"].Text())
			for _, e := range pel.Elems {
				if len(e.Elems) == 4 {
					fmt.Fprintf(b, "%s:%s:%d ", e.Elems[0].Text(), e.Elems[1].Text(), e.Elems[3].Int)
				}
			}
			b.WriteString("] consumers [")
			var cs []string
			for _, cv := range cons.Elems {
				m := replyMap(cv)
				cs = append(cs, m["name"].Text()+":"+m["pending"].Text())
			}
			slices.Sort(cs)
			b.WriteString(strings.Join(cs, " "))
			b.WriteString("] ")
		}
	}
	return finish(out), nil
}

func finish(bs []strings.Builder) []string {
	out := make([]string, len(bs))
	for i := range bs {
		out[i] = strings.TrimSpace(bs[i].String())
	}
	return out
}

// receiveOrReplyError reads a pipelined reply; an error reply is returned as a value (its Err()
// says what), only a broken connection as an error.
func receiveOrReplyError(c *redis.Conn) (resp.Value, error) {
	v, err := c.Receive()
	if err != nil && !isReplyError(err) {
		return v, err
	}
	return v, nil
}

// replyMap turns a RESP2 field/value array (or a RESP3 map) into a map.
func replyMap(v resp.Value) map[string]resp.Value {
	m := make(map[string]resp.Value, len(v.Elems)/2)
	for i := 0; i+1 < len(v.Elems); i += 2 {
		m[v.Elems[i].Text()] = v.Elems[i+1]
	}
	return m
}
