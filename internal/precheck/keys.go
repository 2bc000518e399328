package precheck

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
)

// ownScanLimit is the largest database whose Ferry keys are counted exactly (SCAN MATCH
// over all of it); beyond it the count stands as it is, because a database that large is
// not Ferry's checkpoint and heartbeat keys alone.
const ownScanLimit = 10000

// ownNamesShown is how many of Ferry's own key names a report lists.
const ownNamesShown = 5

// sourceDBs returns the source databases the sync reads: Config.DBs, or when that is nil
// the databases that hold keys now (on a cluster, 0).
func (r *runner) sourceDBs() []int {
	if r.cfg.DBs != nil {
		return r.cfg.DBs
	}
	set := make(map[int]bool)
	for _, n := range r.src.nodes {
		for db, keys := range keyspace(n.info, "keys") {
			if keys > 0 {
				set[db] = true
			}
		}
	}
	if len(set) == 0 {
		return []int{0}
	}
	return slices.Sorted(maps.Keys(set))
}

// targetDBs returns the target databases the sync writes, sorted: the mapped source
// databases; 0 on a cluster.
func (r *runner) targetDBs() []int {
	if r.tgt.cluster {
		return []int{0}
	}
	set := make(map[int]bool)
	for _, db := range r.sourceDBs() {
		set[r.cfg.targetDB(db)] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// writtenTargetDB reports whether the sync may write to target database db. With all
// source databases selected (Config.DBs nil), a database that is empty on the source now
// may still receive writes later, so every target database counts.
func (r *runner) writtenTargetDB(db int) bool {
	if r.tgt.cluster {
		return db == 0
	}
	if r.cfg.DBs == nil {
		return true
	}
	return slices.Contains(r.targetDBs(), db)
}

// dbKeys is what one target database holds.
type dbKeys struct {
	db        int
	keys      int64 // all keys, from INFO keyspace
	own       int64 // Ferry's keys among them
	ownNames  []string
	ownExact  bool // own was counted over the whole database
	ownErr    error
	nodeCount int
}

// existingKeys checks for keys in the target databases the sync writes to.
func (r *runner) existingKeys(ctx context.Context) Check {
	byDB := make(map[int]*dbKeys)
	var unreadable []string
	for _, n := range r.tgt.nodes {
		if n.info == nil {
			unreadable = append(unreadable, fmt.Sprintf("%s: %v", n.addr, n.err))
			continue
		}
		for db, k := range keyspace(n.info, "keys") {
			if k == 0 || !r.writtenTargetDB(db) {
				continue
			}
			d := byDB[db]
			if d == nil {
				d = &dbKeys{db: db, ownExact: true}
				byDB[db] = d
			}
			d.keys += k
			d.nodeCount++
			own, names, exact, err := r.countOwnKeys(ctx, n, db, k)
			d.own += own
			d.ownNames = append(d.ownNames, names...)
			d.ownExact = d.ownExact && exact
			if err != nil {
				d.ownErr = err
			}
		}
	}
	dbs := slices.SortedFunc(maps.Values(byDB), func(a, b *dbKeys) int { return cmp.Compare(a.db, b.db) })
	var (
		foreign     []string
		ownNames    []string
		ownTotal    int64
		foreignKeys int64
	)
	for _, d := range dbs {
		ownTotal += d.own
		ownNames = append(ownNames, d.ownNames...)
		n := d.keys - d.own
		if n <= 0 {
			continue
		}
		foreignKeys += n
		s := fmt.Sprintf("db%d: %d keys", d.db, n)
		if !d.ownExact {
			s += " (Ferry's own keys not counted out: database too large to scan)"
		}
		if d.ownErr != nil {
			s += fmt.Sprintf(" (could not count Ferry's own keys: %v)", d.ownErr)
		}
		foreign = append(foreign, s)
	}
	var found strings.Builder
	scope := "all target databases (every source database is synced)"
	if r.tgt.cluster {
		scope = "the target cluster"
	} else if r.cfg.DBs != nil {
		scope = "target " + plural(len(r.targetDBs()), "database", "databases") + " " + formatDBs(r.targetDBs())
	}
	if len(foreign) == 0 {
		fmt.Fprintf(&found, "%s: no keys", scope)
	} else {
		fmt.Fprintf(&found, "%s: %s", scope, strings.Join(foreign, ", "))
	}
	if ownTotal > 0 {
		slices.Sort(ownNames)
		shown := ownNames[:min(len(ownNames), ownNamesShown)]
		fmt.Fprintf(&found, "; ignored %d of Ferry's own keys (%s)", ownTotal, strings.Join(shown, ", "))
		if slices.Contains(ownNames, r.cfg.checkpointKey()) {
			fmt.Fprintf(&found, "; %s is task %q's checkpoint: a sync of this task resumes from it", r.cfg.checkpointKey(), r.cfg.Task)
		}
	}
	if len(unreadable) > 0 {
		fmt.Fprintf(&found, "; could not read INFO of %s", strings.Join(unreadable, ", "))
	}
	// The task ran here before: what the databases hold is its own copy, which a sync of
	// this task resumes (or, when it must sync from scratch, deletes first).
	resuming := slices.Contains(ownNames, r.cfg.markerKey())
	marker := r.cfg.markerKey()
	if !resuming && foreignKeys > 0 && r.src.cluster {
		// A cluster source's task runs one task per master; its own layout key says the
		// data is the task's.
		marker, resuming = r.clusterSourceLayout(ctx)
	}
	switch {
	case foreignKeys > 0 && resuming:
		fmt.Fprintf(&found, "; %s marks them as task %q's own data from an earlier run: the sync resumes it", marker, r.cfg.Task)
		return Check{Result: Pass, Found: found.String()}
	case foreignKeys == 0 && len(unreadable) > 0:
		return Check{Result: Warn, Found: found.String(), Advice: "make every target master reachable and let the user run INFO"}
	case foreignKeys == 0:
		return Check{Result: Pass, Found: found.String()}
	case r.cfg.Existing == ExistingOverwrite:
		found.WriteString(" (--existing overwrite: keys with the same names as source keys are replaced; the others stay, so the target will hold more than the source)")
		return Check{Result: Pass, Found: found.String()}
	}
	return Check{
		Result: Fail,
		Found:  found.String(),
		Advice: "the target must start empty under --existing block: empty those databases (FLUSHDB in each; this deletes their keys), map the source to empty ones with --db-map, or pass --existing overwrite to replace keys with the same names and keep the others",
	}
}

// countOwnKeys counts Ferry's keys (the namespace prefix) in one database of one node.
// Databases larger than ownScanLimit are not scanned (exact=false).
func (r *runner) countOwnKeys(ctx context.Context, n *node, db int, keys int64) (count int64, names []string, exact bool, err error) {
	if keys > ownScanLimit {
		return 0, nil, false, nil
	}
	c, err := r.tgt.dial(ctx, n.addr)
	if err != nil {
		return 0, nil, true, err
	}
	defer c.Close()
	if db != 0 {
		if _, err := c.Do(ctx, "SELECT", db); err != nil {
			return 0, nil, true, err
		}
	}
	err = scanKeys(ctx, c, r.cfg.Namespace+":*", func(key string) bool {
		count++
		if len(names) < ownNamesShown {
			names = append(names, key)
		}
		return true
	})
	return count, names, true, err
}

// scanKeys runs SCAN with MATCH pattern (none when empty) over the selected database and
// calls fn for each key until it returns false or the scan ends.
func scanKeys(ctx context.Context, c *redis.Conn, pattern string, fn func(key string) bool) error {
	cursor := "0"
	for {
		args := []any{"SCAN", cursor, "COUNT", "1000"}
		if pattern != "" {
			args = append(args, "MATCH", pattern)
		}
		v, err := c.Do(ctx, args...)
		if err != nil {
			return err
		}
		if len(v.Elems) != 2 {
			return fmt.Errorf("SCAN on %s: unexpected reply", c.Addr())
		}
		for _, k := range v.Elems[1].Elems {
			if !fn(k.Text()) {
				return nil
			}
		}
		cursor = v.Elems[0].Text()
		if cursor == "0" {
			return nil
		}
	}
}

// databases checks that the selected source databases exist and map to databases that
// exist on the target: a cluster has only database 0.
func (r *runner) databases(ctx context.Context) Check {
	src := r.sourceDBs()
	var (
		fails, warns, notes []string
		advice              []string
	)
	if r.src.cluster && slices.ContainsFunc(src, func(db int) bool { return db != 0 }) {
		fails = append(fails, fmt.Sprintf("the source is a cluster, which has only database 0, but databases %s were selected", formatDBs(src)))
		advice = append(advice, "drop --dbs (a cluster source has only database 0)")
	}
	if !r.src.cluster && r.cfg.DBs != nil {
		if bad, err := missingDBs(ctx, r.src, src); err != nil {
			notes = append(notes, "could not check the source's databases: "+err.Error())
		} else if len(bad) > 0 {
			fails = append(fails, fmt.Sprintf("the source has no database %s", formatDBs(bad)))
			advice = append(advice, "select databases the source has (its databases setting)")
		}
	}

	// Where each source database lands.
	into := make(map[int][]int)
	var pairs []string
	for _, db := range src {
		to := r.cfg.targetDB(db)
		into[to] = append(into[to], db)
		pairs = append(pairs, fmt.Sprintf("%d→%d", db, to))
	}
	if r.tgt.cluster {
		var off []int
		for to, from := range into {
			if to != 0 {
				off = append(off, from...)
			}
		}
		slices.Sort(off)
		if len(off) > 0 {
			fails = append(fails, fmt.Sprintf("the target is a cluster, which has only database 0, and source %s would go to other databases",
				plural(len(off), "database "+formatDBs(off), "databases "+formatDBs(off))))
			advice = append(advice, fmt.Sprintf("give each database a key prefix in database 0 with --db-map '%s', sync one database with --dbs, or merge them into 0 with --db-map %s --db-merge (keys with the same name in two databases then overwrite each other)", dbMapToPrefixes(src), dbMapToZero(src)))
		}
	} else {
		var to []int
		for t := range into {
			to = append(to, t)
		}
		slices.Sort(to)
		if bad, err := missingDBs(ctx, r.tgt, to); err != nil {
			notes = append(notes, "could not check the target's databases: "+err.Error())
		} else if len(bad) > 0 {
			fails = append(fails, fmt.Sprintf("the target has no database %s", formatDBs(bad)))
			advice = append(advice, "raise the target's databases setting (needs a restart), or map to existing databases with --db-map")
		}
	}
	for to, from := range into {
		if len(from) > 1 && (!r.tgt.cluster || to == 0) && !r.cfg.distinctPrefixes(from) {
			slices.Sort(from)
			warns = append(warns, fmt.Sprintf("source databases %s all go to target database %d: keys with the same name overwrite each other", formatDBs(from), to))
		}
	}
	if r.cfg.DBs == nil && !r.src.cluster {
		notes = append(notes, "all source databases are synced; those empty now are not listed")
	}
	found := "source → target: " + strings.Join(pairs, ", ")
	for _, list := range [][]string{fails, warns, notes} {
		if len(list) > 0 {
			found += "; " + strings.Join(list, "; ")
		}
	}
	switch {
	case len(fails) > 0:
		return Check{Result: Fail, Found: found, Advice: strings.Join(advice, "; ")}
	case len(warns) > 0:
		return Check{Result: Warn, Found: found, Advice: "make sure the databases have no key names in common, or sync them to separate databases"}
	}
	return Check{Result: Pass, Found: found}
}

// missingDBs returns the databases of dbs that s does not have, by selecting each: a
// database out of range is refused, whatever the user's permissions to CONFIG GET.
func missingDBs(ctx context.Context, s *side, dbs []int) ([]int, error) {
	c, err := s.dialSeed(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var bad []int
	for _, db := range dbs {
		if _, err := c.Do(ctx, "SELECT", db); err != nil {
			if strings.Contains(err.Error(), "out of range") {
				bad = append(bad, db)
				continue
			}
			return nil, err
		}
	}
	return bad, nil
}

// dbMapToPrefixes maps every database to 0 under a prefix of its own: "0:prefix=db0:,…".
func dbMapToPrefixes(dbs []int) string {
	parts := make([]string, len(dbs))
	for i, db := range dbs {
		parts[i] = fmt.Sprintf("%d:prefix=db%d:", db, db)
	}
	return strings.Join(parts, ",")
}

func dbMapToZero(dbs []int) string {
	parts := make([]string, len(dbs))
	for i, db := range dbs {
		parts[i] = fmt.Sprintf("%d:0", db)
	}
	return strings.Join(parts, ",")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// bigKey is one sampled key and its size.
type bigKey struct {
	key  string
	db   int
	node string
	size int64
	typ  string
	// strlen is a string's length (MEMORY USAGE counts the allocation, which is larger).
	strlen int64
}

// bigKeysShown is how many of the largest sampled keys the report names.
const bigKeysShown = 3

// bigKeyBudget bounds the time spent sampling.
const bigKeyBudget = 1500 * time.Millisecond

// bigKeys samples source keys with SCAN and MEMORY USAGE, and compares the largest with
// the big-key threshold and the target's proto-max-bulk-len.
func (r *runner) bigKeys(ctx context.Context) Check {
	deadline := time.Now().Add(bigKeyBudget)
	var (
		top      []bigKey
		sampled  int
		total    int64
		complete = true
	)
	perNode := max(1, r.cfg.SampleKeys/len(r.src.nodes))
	for _, n := range r.src.nodes {
		if n.info == nil {
			complete = false
			continue
		}
		for db, keys := range keyspace(n.info, "keys") {
			if r.dbSelected(db) {
				total += keys
			}
		}
		got, t, err := r.sampleNode(ctx, n, perNode, deadline)
		if err != nil {
			c := skipf("not checked: %v", err)
			c.Advice = noPermAdvice(r.src, err, "memory|usage +scan")
			return c
		}
		sampled += got
		top = append(top, t...)
		slices.SortFunc(top, func(a, b bigKey) int { return cmp.Compare(b.size, a.size) })
		top = top[:min(len(top), bigKeysShown)]
	}
	r.keyTypes(ctx, top)

	protoMax, protoErr := r.targetProtoMax(ctx)
	threshold := r.cfg.BigKeyThreshold
	thr := formatBytes(threshold)
	if r.bigKeyDefault {
		thr += " (the default; --big-key-threshold)"
	}

	var found strings.Builder
	fmt.Fprintf(&found, "sampled %d of %d keys (MEMORY USAGE, the in-memory size; the RDB form is usually smaller)", sampled, total)
	if !complete {
		found.WriteString(", not every master could be read")
	}
	if len(top) > 0 {
		parts := make([]string, len(top))
		for i, k := range top {
			parts[i] = fmt.Sprintf("%q db%d %s (%s)", truncate(k.key, 64), k.db, formatBytes(k.size), k.typ)
		}
		fmt.Fprintf(&found, "; largest: %s", strings.Join(parts, ", "))
	}
	above := 0
	for _, k := range top {
		if k.size > threshold {
			above++
		}
	}
	fmt.Fprintf(&found, "; big-key threshold %s", thr)
	if above > 0 {
		fmt.Fprintf(&found, ": %d of the largest %s above it and will be written as commands in chunks (slower, bounded memory)", above, plural(above, "is", "are"))
	}
	if protoErr != nil {
		fmt.Fprintf(&found, "; target proto-max-bulk-len unknown (%v)", protoErr)
		return Check{Result: Pass, Found: found.String()}
	}
	fmt.Fprintf(&found, "; target proto-max-bulk-len %s", formatBytes(protoMax))
	if threshold >= protoMax {
		return Check{
			Result: Fail,
			Found:  found.String(),
			Advice: fmt.Sprintf("a value just under the threshold goes as one RESTORE argument larger than the target accepts: lower --big-key-threshold below %s, or raise proto-max-bulk-len on the target", formatBytes(protoMax)),
		}
	}
	for _, k := range top {
		if k.typ == "string" && k.strlen > protoMax {
			return Check{
				Result: Fail,
				Found:  found.String(),
				Advice: fmt.Sprintf("string %q (%s) is longer than the target's proto-max-bulk-len allows: raise it on the target (CONFIG SET proto-max-bulk-len %d)", truncate(k.key, 64), formatBytes(k.strlen), roundUpMiB(k.strlen)),
			}
		}
	}
	return Check{Result: Pass, Found: found.String()}
}

// sampleNode samples up to limit keys of node n's selected databases, pipelining MEMORY
// USAGE per SCAN page, and returns the count and the largest keys.
func (r *runner) sampleNode(ctx context.Context, n *node, limit int, deadline time.Time) (int, []bigKey, error) {
	c, err := r.src.dial(ctx, n.addr)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	var (
		top     []bigKey
		sampled int
	)
	dbs := sortedKeys(keyspace(n.info, "keys"))
	for _, db := range dbs {
		if !r.dbSelected(db) || sampled >= limit || time.Now().After(deadline) {
			continue
		}
		if _, err := c.Do(ctx, "SELECT", db); err != nil {
			return 0, nil, err
		}
		var page []string
		flush := func() error {
			for _, k := range page {
				if err := c.Send("MEMORY", "USAGE", k); err != nil {
					return err
				}
			}
			for _, k := range page {
				v, err := c.Receive()
				if err != nil {
					if isReply(err) && !isNoPerm(err) && !strings.Contains(err.Error(), "unknown") {
						continue // e.g. the key expired in between
					}
					return err
				}
				if v.Null {
					continue // deleted since SCAN returned it
				}
				sampled++
				top = append(top, bigKey{key: k, db: db, node: n.addr, size: v.Int})
			}
			slices.SortFunc(top, func(a, b bigKey) int { return cmp.Compare(b.size, a.size) })
			top = top[:min(len(top), bigKeysShown)]
			page = page[:0]
			return nil
		}
		err := scanKeys(ctx, c, "", func(key string) bool {
			if strings.HasPrefix(key, r.cfg.Namespace+":") {
				return true
			}
			page = append(page, key)
			if len(page) < 100 {
				return true
			}
			if ferr := flush(); ferr != nil {
				err = ferr
				return false
			}
			return sampled < limit && time.Now().Before(deadline)
		})
		if err == nil && len(page) > 0 {
			err = flush()
		}
		if err != nil {
			return 0, nil, err
		}
	}
	return sampled, top, nil
}

// keyTypes fills in the type of each key (best effort: "?" when it cannot be read).
func (r *runner) keyTypes(ctx context.Context, keys []bigKey) {
	for i := range keys {
		keys[i].typ = "?"
		c, err := r.src.dial(ctx, keys[i].node)
		if err != nil {
			continue
		}
		if _, err := c.Do(ctx, "SELECT", keys[i].db); err == nil {
			if v, err := c.Do(ctx, "TYPE", keys[i].key); err == nil {
				keys[i].typ = v.Text()
			}
			if keys[i].typ == "string" {
				if v, err := c.Do(ctx, "STRLEN", keys[i].key); err == nil {
					keys[i].strlen = v.Int
				}
			}
		}
		c.Close()
	}
}

// targetProtoMax reads the target's proto-max-bulk-len: the largest argument it takes.
func (r *runner) targetProtoMax(ctx context.Context) (int64, error) {
	if r.tgt.err != nil {
		return 0, fmt.Errorf("target unreachable")
	}
	c, err := r.tgt.dialSeed(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	v, err := configGet(ctx, c, "proto-max-bulk-len")
	if err != nil {
		return 0, err
	}
	return parseSize(v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func sortedKeys[V any](m map[int]V) []int { return slices.Sorted(maps.Keys(m)) }

// clusterSourceLayout looks for the layout key a sync from a cluster source writes on
// the target before its first write (package clustersource): <ns>:shards:<task>, in a hash
// tag on a cluster target. It returns the key found.
func (r *runner) clusterSourceLayout(ctx context.Context) (string, bool) {
	key := r.cfg.Namespace + ":shards:" + r.cfg.Task
	if r.tgt.cluster {
		key = r.cfg.Namespace + ":shards:{" + r.cfg.Task + "}"
	}
	for _, n := range r.tgt.nodes {
		c, err := r.tgt.dial(ctx, n.addr)
		if err != nil {
			continue
		}
		// On a cluster only the key's master answers; the others reply MOVED.
		v, err := c.Do(ctx, "EXISTS", key)
		c.Close()
		if err == nil && v.Int == 1 {
			return key, true
		}
	}
	return "", false
}
