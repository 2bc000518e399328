// Package filter decides what of a source reaches the destination: which databases (and
// under which numbers), which keys (by prefix, glob or regular expression), which data
// types, and which stream commands. It is pure: no connections, no clocks. A Filter is
// compiled once from a Spec and is safe for concurrent use; its hot-path methods do not
// allocate, and it counts what it filters, by reason.
//
// docs/filters.md is the user-facing statement of these rules; keep the two in step.
package filter

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/ferrysync/ferry/internal/rdb"
)

// AllDBs is the database of a command that acts on the whole server (FLUSHALL, SWAPDB,
// FUNCTION, SCRIPT, PUBLISH): it runs on whatever database the connection has selected.
const AllDBs = -1

// Verdict is what to do with one stream command.
type Verdict uint8

const (
	// Keep: forward the command unchanged, in Decision.DB.
	Keep Verdict = iota
	// Drop: do not forward it (Decision.Reason says why).
	Drop
	// Rewrite: forward Decision.Cmds instead, in order. A multi-key command reduced to its
	// selected keys, a cross-database command with its database renumbered, FLUSHALL as a
	// FLUSHDB per selected database...
	Rewrite
	// Refuse: the selection cannot represent the command's effect (a key moved into a
	// selected database from one that is not: its value never reached the destination).
	// Decision.Err explains; the task must stop rather than diverge silently.
	Refuse
)

var verdictNames = [...]string{"keep", "drop", "rewrite", "refuse"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "unknown"
}

// Reason is why something was filtered.
type Reason uint8

const (
	ReasonNone        Reason = iota
	ReasonDB                 // the source database is not selected
	ReasonNotIncluded        // the key matches no --include pattern
	ReasonExcluded           // the key matches an --exclude pattern
	ReasonType               // the data type is not selected (--types)
	ReasonCommand            // the command is excluded (--exclude-commands)
	ReasonCrossDB            // the command crosses the selection's boundary (see Refuse)
	// NumReasons sizes arrays indexed by Reason.
	NumReasons
)

var reasonNames = [...]string{"none", "db", "not-included", "excluded", "type", "command", "cross-db"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// MarshalText makes a reason readable in JSON.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Cmd is one command to send to the destination.
type Cmd struct {
	DB   int      // the destination database to run it in, or AllDBs
	Args [][]byte // the command; elements may alias the arguments given to Command
}

// Decision is the filter's answer for one stream command.
type Decision struct {
	Verdict Verdict
	// Reason: for Drop, why; for Rewrite, why something was taken out (ReasonNone when the
	// command was only renumbered); for Refuse, ReasonCrossDB.
	Reason Reason
	// DB is where a kept command runs on the destination (mapped), or AllDBs.
	DB int
	// Cmds replace the command when Verdict is Rewrite (allocated; rewrites are rare).
	Cmds []Cmd
	// Err says why a command was refused, and what to do about it.
	Err error
}

// Filter is a compiled Spec. Use New.
type Filter struct {
	spec Spec
	// Databases: sel[db] says db is selected, dst[db] where it lands. allDBs: every database
	// is selected (numbers past MaxDB too, unmapped); identity: and none is renumbered.
	allDBs, identity bool
	sel              [MaxDB + 1]bool
	dst              [MaxDB + 1]uint8
	// prefix[db] is source database db's key prefix on the destination (nil: none);
	// prefixed says any database has one.
	prefix   [MaxDB + 1][]byte
	prefixed bool
	// sources[d] counts the selected source databases landing in destination d.
	sources [MaxDB + 1]uint16
	// flushTargets are the destination databases a source FLUSHALL empties; nil when
	// FLUSHALL can pass whole (every destination database receives a selected source).
	flushTargets []int

	include, exclude []Pattern
	keyFilter        bool // include or exclude patterns are set

	allTypes bool
	types    [8]bool // by rdb.Kind

	excluded map[string]struct{} // lower-case command names

	counts counters
}

type counters struct {
	keys, commands, splitKeys [NumReasons]atomic.Uint64
	rewritten, refused        atomic.Uint64
	renamedKeys, renamed      atomic.Uint64
}

// ownPrefix is the key space of Ferry's own keys (checkpoint.Prefix, which this pure
// package does not import): a key prefix may not rename source keys into it.
const ownPrefix = "ferry:"

// New checks spec and compiles it. Errors say which setting is wrong and how to fix it.
func New(spec Spec) (*Filter, error) {
	f := &Filter{spec: spec, allDBs: spec.DBs == nil}
	if f.allDBs {
		for db := range f.sel {
			f.sel[db] = true
		}
	} else {
		if len(spec.DBs) == 0 {
			return nil, fmt.Errorf("--dbs selects no database (leave it out to copy every database)")
		}
		for _, db := range spec.DBs {
			if db < 0 || db > MaxDB {
				return nil, fmt.Errorf("--dbs: database %d is out of range (0-%d)", db, MaxDB)
			}
			f.sel[db] = true
		}
	}
	for db := range f.dst {
		f.dst[db] = uint8(db)
	}
	f.identity = f.allDBs
	for src, d := range spec.DBMap {
		if src < 0 || src > MaxDB || d < 0 || d > MaxDB {
			return nil, fmt.Errorf("--db-map %d:%d: databases are 0-%d", src, d, MaxDB)
		}
		if !f.sel[src] {
			return nil, fmt.Errorf("--db-map maps source db %d, which --dbs does not select (add it to --dbs or drop it from --db-map)", src)
		}
		f.dst[src] = uint8(d)
		if src != d {
			f.identity = false
		}
	}
	for src, p := range spec.DBPrefix {
		if src < 0 || src > MaxDB {
			return nil, fmt.Errorf("--db-map %d:prefix=%s: databases are 0-%d", src, p, MaxDB)
		}
		if !f.sel[src] {
			return nil, fmt.Errorf("--db-map gives source db %d a key prefix, but --dbs does not select it (add it to --dbs or drop it from --db-map)", src)
		}
		if err := checkPrefix(p); err != nil {
			return nil, fmt.Errorf("--db-map %d:prefix=%s: %w", src, p, err)
		}
		f.prefix[src] = []byte(p)
		f.prefixed = true
		f.identity = false
	}
	// Which selected sources share a destination database, and whether their keys can
	// collide there: two without a prefix, or one without and one with (its keys may
	// begin with the prefix), or two prefixes one of which begins with the other.
	var into [MaxDB + 1][]int
	for src := range f.sel {
		if !f.sel[src] {
			continue
		}
		d := f.dst[src]
		if !spec.AllowDBMerge {
			for _, other := range into[d] {
				if err := f.collision(other, src, int(d)); err != nil {
					return nil, err
				}
			}
		}
		into[d] = append(into[d], src)
		f.sources[d]++
	}
	if !f.identity {
		whole := f.allDBs
		for d := range f.sources {
			if f.sources[d] > 0 {
				f.flushTargets = append(f.flushTargets, d)
			} else {
				whole = false
			}
		}
		if whole {
			f.flushTargets = nil
		}
	}

	f.include, f.exclude = spec.Include, spec.Exclude
	f.keyFilter = len(f.include) > 0 || len(f.exclude) > 0

	f.allTypes = len(spec.Types) == 0
	for _, n := range spec.Types {
		k := kindByName(strings.ToLower(n))
		if k == rdb.KindUnknown {
			return nil, fmt.Errorf("--types: %q is not a type (want %s)", n, strings.Join(TypeNames, ", "))
		}
		f.types[k] = true
	}

	for _, n := range spec.ExcludeCommands {
		if err := checkCommandName(n); err != nil {
			return nil, fmt.Errorf("--exclude-commands: %w", err)
		}
		if f.excluded == nil {
			f.excluded = make(map[string]struct{})
		}
		f.excluded[strings.ToLower(n)] = struct{}{}
	}
	return f, nil
}

// checkPrefix says why a key prefix cannot be used, or nil.
func checkPrefix(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("an empty prefix renames nothing (map the database without one)")
	case strings.ContainsRune(p, ','):
		return fmt.Errorf("a prefix cannot hold a comma, which separates --db-map items")
	case strings.ContainsRune(p, '{'):
		return fmt.Errorf("a prefix cannot hold '{': it would change the keys' hash tags, and with them their cluster slots and which keys share one")
	case strings.HasPrefix(p, ownPrefix) || strings.HasPrefix(ownPrefix, p):
		return fmt.Errorf("keys renamed with it could land in Ferry's own key space (%s*), which Ferry never copies and deletes as its own; choose another prefix", ownPrefix)
	}
	return nil
}

// collision says why source databases a < b, both landing in destination database d,
// cannot share it without --db-merge, or nil when their prefixes keep them apart.
func (f *Filter) collision(a, b, d int) error {
	pa, pb := f.prefix[a], f.prefix[b]
	hint := "select fewer databases with --dbs"
	if f.allDBs {
		hint = "without --dbs every database is copied; name the ones to copy with --dbs"
	}
	switch {
	case pa == nil && pb == nil:
		return fmt.Errorf("source dbs %d and %d would both land in destination db %d, and their keys would overwrite each other: %s, map one elsewhere with --db-map, or allow it with --db-merge when the key spaces are disjoint",
			a, b, d, hint)
	case pa == nil || pb == nil:
		bare, named, p := a, b, pb
		if pb == nil {
			bare, named, p = b, a, pa
		}
		return fmt.Errorf("source db %d would land in destination db %d without a key prefix, next to source db %d under prefix %q: a key of db %d beginning with %q would overwrite a key of db %d; give db %d a prefix too (--db-map %d:prefix=db%d:), %s, or allow it with --db-merge when the key spaces are disjoint",
			bare, d, named, p, bare, p, named, bare, bare, bare, hint)
	case bytes.HasPrefix(pa, pb) || bytes.HasPrefix(pb, pa):
		short, long, ps, pl := a, b, pa, pb
		if len(pa) > len(pb) {
			short, long, ps, pl = b, a, pb, pa
		}
		rest := string(pl[len(ps):])
		return fmt.Errorf("source dbs %d and %d would land in destination db %d under key prefixes %q and %q, one of which begins with the other: key %q of db %d and key \"k\" of db %d would both be %q; choose prefixes neither of which begins with the other, or allow it with --db-merge when the key spaces are disjoint",
			a, b, d, pa, pb, rest+"k", short, long, string(pl)+"k")
	}
	return nil
}

// MustNew is New for specs known to be valid (tests).
func MustNew(spec Spec) *Filter {
	f, err := New(spec)
	if err != nil {
		panic(err)
	}
	return f
}

// Spec is the selection the filter was compiled from.
func (f *Filter) Spec() Spec { return f.spec }

// Identity reports whether the filter lets everything through unchanged, so a caller can
// skip it altogether.
func (f *Filter) Identity() bool {
	return f.identity && !f.keyFilter && f.allTypes && len(f.excluded) == 0
}

// KeepDB reports whether source database db is selected and which destination database it
// lands in. AllDBs passes through unchanged; other negative numbers are no database.
func (f *Filter) KeepDB(db int) (dst int, ok bool) {
	switch {
	case db == AllDBs:
		return AllDBs, true
	case db < 0:
		return 0, false
	case db > MaxDB:
		return db, f.allDBs
	case !f.sel[db]:
		return 0, false
	}
	return int(f.dst[db]), true
}

// KeyPrefix is source database db's key prefix on the destination (--db-map
// db:prefix=P), or nil when its keys keep their names. The caller must not modify it.
func (f *Filter) KeyPrefix(db int) []byte {
	if db < 0 || db > MaxDB {
		return nil
	}
	return f.prefix[db]
}

// Prefixed reports whether any source database has a key prefix.
func (f *Filter) Prefixed() bool { return f.prefixed }

// RenameKeys returns args, a command writing one key of source database db (the
// snapshot's command path: DEL, SET, APPEND, RPUSH, SADD, ZADD, HSET, HPEXPIREAT, XADD,
// XSETID, XGROUP, XCLAIM, PEXPIREAT), with its keys renamed by db's prefix; args itself
// when db has none. Key positions come from the filter's table; a command it does not
// know is an error, not a guess. Renamed arguments are new; the others alias args.
func (f *Filter) RenameKeys(db int, args [][]byte) ([][]byte, error) {
	p := f.KeyPrefix(db)
	if p == nil || len(args) == 0 {
		return args, nil
	}
	info, ok := lookup(string(args[0]))
	if !ok {
		return nil, fmt.Errorf("%s (db %d): its key positions are unknown, so its key cannot be renamed with prefix %q", args[0], db, p)
	}
	var buf [4]int
	return renameArgs(p, args, info.appendKeys(buf[:0], args), nil), nil
}

// SourceDBs are the selected source databases, ascending; nil when every database is.
func (f *Filter) SourceDBs() []int {
	if f.allDBs {
		return nil
	}
	var dbs []int
	for db, ok := range f.sel {
		if ok {
			dbs = append(dbs, db)
		}
	}
	return dbs
}

// KeepKey reports whether a key name is selected: it matches an include pattern (or there
// are none) and no exclude pattern.
func (f *Filter) KeepKey(key []byte) bool { return f.keyReason(key) == ReasonNone }

// KeepType reports whether a data type is selected. KindUnknown is selected only when
// every type is.
func (f *Filter) KeepType(kind rdb.Kind) bool {
	return f.allTypes || (int(kind) < len(f.types) && f.types[kind])
}

// KeepCommand reports whether a command name is not excluded.
func (f *Filter) KeepCommand(name string) bool {
	return len(f.excluded) == 0 || !f.isExcluded(name)
}

func (f *Filter) keyReason(key []byte) Reason {
	if len(f.include) > 0 && !matchAny(f.include, key) {
		return ReasonNotIncluded
	}
	if len(f.exclude) > 0 && matchAny(f.exclude, key) {
		return ReasonExcluded
	}
	return ReasonNone
}

func matchAny(ps []Pattern, key []byte) bool {
	for i := range ps {
		if ps[i].Match(key) {
			return true
		}
	}
	return false
}

func (f *Filter) isExcluded(name string) bool {
	if _, ok := f.excluded[name]; ok {
		return true
	}
	var buf [maxCommandName]byte
	lower, ok := lowerName(buf[:0], name)
	if !ok {
		return false
	}
	_, ok = f.excluded[string(lower)]
	return ok
}

// SnapshotKey decides one key of the snapshot, found in source database db with the given
// type: whether it is copied, and into which destination database. A key not copied is
// counted under its reason. Key patterns match the source's name; a copied key is written
// under KeyPrefix(db)+key (the caller renames it: the RESTORE payload does not hold the
// name, and RenameKeys renames the command path's commands).
func (f *Filter) SnapshotKey(db int, key []byte, kind rdb.Kind) (dst int, ok bool) {
	dst, ok = f.KeepDB(db)
	r := ReasonNone
	switch {
	case !ok:
		r = ReasonDB
	case !f.KeepType(kind):
		r = ReasonType
	default:
		r = f.keyReason(key)
	}
	if r != ReasonNone {
		f.counts.keys[r].Add(1)
		return 0, false
	}
	if f.prefixed && f.KeyPrefix(db) != nil {
		f.counts.renamedKeys.Add(1)
	}
	return dst, true
}

// Command decides one command of the replication stream. db is the database selected on
// the source when it ran; name is the command name (any letter case); args is the whole
// command, args[0] being the name as received; keyIdx are the positions in args of the keys
// it names, from the servers' key specs (COMMAND INFO, COMMAND GETKEYS), or nil to use the
// built-in table (KeyIndices). A command the table does not know, given without key
// positions while key patterns are set, is refused: it cannot be filtered by key.
//
// The rules, in order (docs/filters.md states them for users):
//   - control commands (MULTI, EXEC, SELECT, PING...) are kept, in AllDBs;
//   - an excluded command is dropped;
//   - server-wide and cross-database commands (FLUSHALL, SWAPDB, MOVE, COPY ... DB) are
//     renumbered through the database map, or refused when their effect crosses the
//     selection's boundary in a way the destination cannot reproduce;
//   - a command in an unselected database is dropped, then one on an unselected type;
//   - a separable multi-key command (DEL, UNLINK, TOUCH, MSET, MSETNX) keeps its selected
//     keys: kept whole, dropped, or rewritten without the others;
//   - any other command is kept when any of its keys matches an include pattern (or there
//     are none) and dropped only when all of its keys match an exclude pattern;
//   - in a database with a key prefix, what is forwarded has every key renamed (and
//     SORT's BY and GET patterns): a Rewrite. Patterns match the source's names.
//
// Keep and Drop do not allocate; Rewrite and Refuse do. Rewritten arguments alias args,
// except renamed keys, which are new.
func (f *Filter) Command(db int, name string, args [][]byte, keyIdx []int) Decision {
	info, known := lookup(name)
	if known && info.class == classControl {
		return Decision{Verdict: Keep, DB: AllDBs}
	}
	if len(f.excluded) > 0 && f.isExcluded(name) {
		return f.drop(ReasonCommand)
	}
	if known {
		switch info.class {
		case classGlobal:
			return f.global(name, args)
		case classFlushDB:
			return f.flushDB(db)
		case classMove:
			return f.move(db, args)
		case classCopy:
			return f.copyCmd(db, args)
		}
	}
	dst, ok := f.KeepDB(db)
	if !ok {
		return f.drop(ReasonDB)
	}
	if !f.allTypes {
		kind := rdb.KindUnknown
		if known {
			kind = info.kindOf(args)
		} else if strings.IndexByte(name, '.') > 0 {
			kind = rdb.KindModule
		}
		if kind != rdb.KindUnknown && !f.KeepType(kind) {
			return f.drop(ReasonType)
		}
	}
	p := f.KeyPrefix(db)
	if !f.keyFilter && p == nil {
		return Decision{Verdict: Keep, DB: dst}
	}
	var buf [16]int
	if keyIdx == nil {
		if !known {
			if p != nil {
				return f.refuse(fmt.Errorf("command %q (db %d): its key positions are unknown, so its keys cannot be renamed with the database's prefix %q; this build's table does not know it (a module command, or one newer than Ferry): map db %d without a prefix, or do not run it on the source", name, db, p, db))
			}
			return f.refuse(fmt.Errorf("command %q (db %d): its key positions are unknown, so key patterns cannot be applied to it; this build's table does not know it and none were supplied from COMMAND INFO", name, db))
		}
		keyIdx = info.appendKeys(buf[:0], args)
	}
	if f.keyFilter {
		if known && info.sep > 0 {
			return f.separable(dst, info.sep, args, keyIdx, p)
		}
		// Not separable: keep when any key is included and not every key is excluded.
		anyIncluded, allExcluded, n := len(f.include) == 0, len(f.exclude) > 0, 0
		for _, i := range keyIdx {
			if i <= 0 || i >= len(args) {
				continue
			}
			n++
			k := args[i]
			if !anyIncluded && matchAny(f.include, k) {
				anyIncluded = true
			}
			if allExcluded && !matchAny(f.exclude, k) {
				allExcluded = false
			}
		}
		switch {
		case n == 0:
			return Decision{Verdict: Keep, DB: dst} // keyless: key patterns do not apply, nothing to rename
		case !anyIncluded:
			return f.drop(ReasonNotIncluded)
		case allExcluded:
			return f.drop(ReasonExcluded)
		}
		if p == nil {
			return Decision{Verdict: Keep, DB: dst}
		}
	}
	return f.renameCommand(db, dst, p, name, info, args, keyIdx)
}

// renameCommand forwards a command of a prefixed database with its keys renamed. SORT's
// BY and GET patterns name keys too (the '*' is replaced by an element): they get the
// prefix in front, which names exactly the renamed keys — unless the prefix holds a '*'
// itself, which would take the pattern's place.
func (f *Filter) renameCommand(db, dst int, p []byte, name string, info cmdInfo, args [][]byte, keyIdx []int) Decision {
	var patterns []int
	if info.shape == shapeSortStore {
		patterns = sortPatterns(args)
		if len(patterns) > 0 && bytes.IndexByte(p, '*') >= 0 {
			return f.refuse(fmt.Errorf("%s %q (db %d) names keys by pattern (BY/GET), and the database's key prefix %q holds a '*', so no pattern names the renamed keys; choose a prefix without '*'", name, args[1], db, p))
		}
	}
	n := 0
	for _, i := range keyIdx {
		if i > 0 && i < len(args) {
			n++
		}
	}
	if n == 0 && len(patterns) == 0 {
		return Decision{Verdict: Keep, DB: dst} // keyless
	}
	f.counts.renamed.Add(1)
	return Decision{Verdict: Rewrite, DB: dst, Cmds: []Cmd{{DB: dst, Args: renameArgs(p, args, keyIdx, patterns)}}}
}

// sortPatterns finds the BY and GET patterns of SORT that name keys: those holding a '*'
// ("#" is the element itself, and a pattern without '*' names no key).
func sortPatterns(args [][]byte) []int {
	var out []int
	for i := 2; i < len(args); i++ {
		switch {
		case (eqFold(args[i], "by") || eqFold(args[i], "get")) && i+1 < len(args):
			if bytes.IndexByte(args[i+1], '*') >= 0 {
				out = append(out, i+1)
			}
			i++
		case eqFold(args[i], "limit"):
			i += 2
		case eqFold(args[i], "store"):
			i++
		}
	}
	return out
}

// renameArgs copies args with p put in front of the arguments at keyIdx and at more
// (positions out of range are ignored). The renamed arguments share one new buffer; the
// others alias args. A position listed twice is renamed once.
func renameArgs(p []byte, args [][]byte, keyIdx, more []int) [][]byte {
	size := 0
	for _, idx := range [2][]int{keyIdx, more} {
		for _, i := range idx {
			if i > 0 && i < len(args) {
				size += len(p) + len(args[i])
			}
		}
	}
	out := make([][]byte, len(args))
	copy(out, args)
	buf := make([]byte, 0, size)
	for _, idx := range [2][]int{keyIdx, more} {
		for _, i := range idx {
			if i <= 0 || i >= len(args) {
				continue
			}
			start := len(buf)
			buf = append(buf, p...)
			buf = append(buf, args[i]...)
			out[i] = buf[start:len(buf):len(buf)]
		}
	}
	return out
}

// withPrefix is p+key in a new slice, or key itself when p is nil.
func withPrefix(p, key []byte) []byte {
	if p == nil {
		return key
	}
	out := make([]byte, 0, len(p)+len(key))
	return append(append(out, p...), key...)
}

// separable keeps the selected keys of a command whose keys are independent: each key at
// i owns args[i:i+sep] (the key, and MSET's value). Kept keys get the prefix p, if any.
func (f *Filter) separable(dst, sep int, args [][]byte, keyIdx []int, p []byte) Decision {
	kept, total := 0, 0
	first := ReasonNone
	for _, i := range keyIdx {
		if i <= 0 || i+sep > len(args) {
			continue
		}
		total++
		if r := f.keyReason(args[i]); r == ReasonNone {
			kept++
		} else if first == ReasonNone {
			first = r
		}
	}
	switch {
	case total == 0 && p != nil && len(keyIdx) > 0:
		// A key without its value (malformed; no source propagates it): renamed all the same.
		f.counts.renamed.Add(1)
		return Decision{Verdict: Rewrite, DB: dst, Cmds: []Cmd{{DB: dst, Args: renameArgs(p, args, keyIdx, nil)}}}
	case total == 0 || (kept == total && p == nil):
		return Decision{Verdict: Keep, DB: dst}
	case kept == 0:
		return f.drop(first)
	}
	out := make([][]byte, 1, 1+kept*sep)
	out[0] = args[0]
	for _, i := range keyIdx {
		if i <= 0 || i+sep > len(args) {
			continue
		}
		if r := f.keyReason(args[i]); r != ReasonNone {
			f.counts.splitKeys[r].Add(1)
			continue
		}
		out = append(out, withPrefix(p, args[i]))
		out = append(out, args[i+1:i+sep]...)
	}
	if p != nil {
		f.counts.renamed.Add(1)
		if kept == total {
			return Decision{Verdict: Rewrite, DB: dst, Cmds: []Cmd{{DB: dst, Args: out}}}
		}
	}
	return f.rewrite(first, Cmd{DB: dst, Args: out})
}

// global decides a command that acts on the whole server.
func (f *Filter) global(name string, args [][]byte) Decision {
	switch {
	case eqFoldString(name, "flushall"):
		if f.flushTargets == nil {
			return Decision{Verdict: Keep, DB: AllDBs}
		}
		cmds := make([]Cmd, len(f.flushTargets))
		for i, d := range f.flushTargets {
			a := make([][]byte, 0, len(args))
			a = append(a, []byte("FLUSHDB"))
			a = append(a, args[1:]...) // ASYNC or SYNC
			cmds[i] = Cmd{DB: d, Args: a}
		}
		return f.rewrite(ReasonNone, cmds...)
	case eqFoldString(name, "swapdb"):
		if f.identity {
			return Decision{Verdict: Keep, DB: AllDBs}
		}
		if len(args) != 3 {
			return f.refuse(fmt.Errorf("SWAPDB with %d arguments: want two database numbers", len(args)-1))
		}
		a, okA := smallUint(args[1])
		b, okB := smallUint(args[2])
		if !okA || !okB {
			return f.refuse(fmt.Errorf("SWAPDB %q %q: not database numbers", args[1], args[2]))
		}
		ma, selA := f.KeepDB(a)
		mb, selB := f.KeepDB(b)
		switch {
		case !selA && !selB:
			return f.drop(ReasonDB)
		case selA != selB:
			return f.refuse(fmt.Errorf("SWAPDB %d %d swaps a selected database with an unselected one, whose keys never reached the destination; select both databases or neither", a, b))
		case f.merged(ma) || f.merged(mb):
			return f.refuse(fmt.Errorf("SWAPDB %d %d: destination db %d or %d also receives another source db (--db-merge or key prefixes), so swapping them would move that db's keys too", a, b, ma, mb))
		case !bytes.Equal(f.KeyPrefix(a), f.KeyPrefix(b)):
			return f.refuse(fmt.Errorf("SWAPDB %d %d: the two databases have different key prefixes (%q and %q), so after swapping the destination databases every key would carry the other database's prefix; give them the same prefix, or exclude the command with --exclude-commands swapdb", a, b, f.KeyPrefix(a), f.KeyPrefix(b)))
		case ma == a && mb == b:
			return Decision{Verdict: Keep, DB: AllDBs}
		}
		return f.rewrite(ReasonNone, Cmd{DB: AllDBs, Args: [][]byte{args[0], itoa(ma), itoa(mb)}})
	}
	// FUNCTION, SCRIPT, PUBLISH, SPUBLISH: not tied to a database or a key.
	return Decision{Verdict: Keep, DB: AllDBs}
}

func (f *Filter) merged(dst int) bool { return dst >= 0 && dst <= MaxDB && f.sources[dst] > 1 }

func (f *Filter) flushDB(db int) Decision {
	dst, ok := f.KeepDB(db)
	if !ok {
		return f.drop(ReasonDB)
	}
	if f.merged(dst) {
		if p := f.KeyPrefix(db); p != nil {
			// Deleting only the keys under one prefix takes a scan of every destination
			// master, ordered with the stream and committed: not one command.
			return f.refuse(fmt.Errorf("FLUSHDB in source db %d: its keys live under prefix %q in destination db %d, which also receives other source dbs, and deleting only that prefix's keys is not one command; exclude it with --exclude-commands flushdb (and delete the keys matching %s* on the destination yourself), or sync db %d on its own",
				db, p, dst, EscapeGlob(string(p)), db))
		}
		return f.refuse(fmt.Errorf("FLUSHDB in source db %d: destination db %d also receives another source db (--db-merge), whose keys it would delete too; exclude it with --exclude-commands flushdb or do not merge", db, dst))
	}
	return Decision{Verdict: Keep, DB: dst}
}

// move decides MOVE key db: the key leaves source database db for another.
func (f *Filter) move(db int, args [][]byte) Decision {
	if len(args) != 3 {
		return f.refuse(fmt.Errorf("MOVE with %d arguments: want a key and a database", len(args)-1))
	}
	if r := f.keyReason(args[1]); r != ReasonNone {
		return f.drop(r)
	}
	t, ok := smallUint(args[2])
	if !ok {
		return f.refuse(fmt.Errorf("MOVE %q %q: not a database number", args[1], args[2]))
	}
	ms, selS := f.KeepDB(db)
	mt, selT := f.KeepDB(t)
	ps, pt := f.KeyPrefix(db), f.KeyPrefix(t)
	switch {
	case !selS && !selT:
		return f.drop(ReasonDB)
	case !selS:
		return f.refuse(fmt.Errorf("MOVE %q from db %d (not selected) into db %d (selected): the key's value never reached the destination; select db %d too, or exclude the key", args[1], db, t, db))
	case !selT:
		// The key leaves the selection: on the destination it is simply gone.
		f.countRenamed(ps)
		return f.rewrite(ReasonDB, Cmd{DB: ms, Args: [][]byte{[]byte("DEL"), withPrefix(ps, args[1])}})
	case ms == mt && bytes.Equal(ps, pt):
		// Both databases land in one under one name (--db-merge): the key stays where it is.
		return f.drop(ReasonDB)
	case ms == mt:
		// One destination database, two prefixes: the key changes its name. The source
		// propagates only a MOVE that succeeded, one whose key the target db did not hold.
		f.countRenamed(ps)
		return f.rewrite(ReasonNone, Cmd{DB: ms, Args: [][]byte{[]byte("RENAME"), withPrefix(ps, args[1]), withPrefix(pt, args[1])}})
	case !bytes.Equal(ps, pt):
		return f.refuse(fmt.Errorf("MOVE %q from db %d into db %d: the databases land in different destination databases (%d and %d) under different key prefixes (%q and %q), and no one command moves a key to another database under another name; give them one prefix or one destination database", args[1], db, t, ms, mt, ps, pt))
	case mt == t && ps == nil:
		return Decision{Verdict: Keep, DB: ms}
	}
	f.countRenamed(ps)
	return f.rewrite(ReasonNone, Cmd{DB: ms, Args: [][]byte{args[0], withPrefix(ps, args[1]), itoa(mt)}})
}

// countRenamed counts a rewritten command whose keys got prefix p, if any.
func (f *Filter) countRenamed(p []byte) {
	if p != nil {
		f.counts.renamed.Add(1)
	}
}

// copyCmd decides COPY src dst [DB n] [REPLACE].
func (f *Filter) copyCmd(db int, args [][]byte) Decision {
	if len(args) < 3 {
		return f.refuse(fmt.Errorf("COPY with %d arguments: want a source and a destination key", len(args)-1))
	}
	// The key rule of non-separable commands, over both keys.
	src, dstKey := args[1], args[2]
	if len(f.include) > 0 && !matchAny(f.include, src) && !matchAny(f.include, dstKey) {
		return f.drop(ReasonNotIncluded)
	}
	if len(f.exclude) > 0 && matchAny(f.exclude, src) && matchAny(f.exclude, dstKey) {
		return f.drop(ReasonExcluded)
	}
	dbAt := -1
	for i := 3; i+1 < len(args); i++ {
		if eqFold(args[i], "db") {
			dbAt = i + 1
			break
		}
	}
	ms, selS := f.KeepDB(db)
	ps := f.KeyPrefix(db)
	if dbAt < 0 {
		switch {
		case !selS:
			return f.drop(ReasonDB)
		case ps == nil:
			return Decision{Verdict: Keep, DB: ms}
		}
		f.counts.renamed.Add(1)
		return Decision{Verdict: Rewrite, DB: ms, Cmds: []Cmd{{DB: ms, Args: renameArgs(ps, args, []int{1, 2}, nil)}}}
	}
	t, ok := smallUint(args[dbAt])
	if !ok {
		return f.refuse(fmt.Errorf("COPY %q %q DB %q: not a database number", src, dstKey, args[dbAt]))
	}
	mt, selT := f.KeepDB(t)
	pt := f.KeyPrefix(t)
	switch {
	case !selS && !selT:
		return f.drop(ReasonDB)
	case !selS:
		return f.refuse(fmt.Errorf("COPY %q from db %d (not selected) to %q in db %d (selected): the value never reached the destination; select db %d too, or exclude the key", src, db, dstKey, t, db))
	case !selT:
		return f.drop(ReasonDB) // a copy out of the selection changes nothing in it
	case ms == mt && bytes.Equal(ps, pt) && string(src) == string(dstKey):
		return f.drop(ReasonDB) // merged databases: the copy is the key itself
	case mt == t && ps == nil && pt == nil:
		return Decision{Verdict: Keep, DB: ms}
	}
	// COPY names both keys, so it can rename them too: the source under its database's
	// prefix, the copy under the target database's.
	out := make([][]byte, 0, len(args))
	for i := 0; i < len(args); i++ {
		switch {
		case i == 1:
			out = append(out, withPrefix(ps, src))
		case i == 2:
			out = append(out, withPrefix(pt, dstKey))
		case i == dbAt-1 && ms == mt:
			i++ // same destination database: a plain COPY
		case i == dbAt:
			out = append(out, itoa(mt))
		default:
			out = append(out, args[i])
		}
	}
	if ps != nil || pt != nil {
		f.counts.renamed.Add(1)
	}
	return f.rewrite(ReasonNone, Cmd{DB: ms, Args: out})
}

func (f *Filter) drop(r Reason) Decision {
	f.counts.commands[r].Add(1)
	return Decision{Verdict: Drop, Reason: r}
}

func (f *Filter) rewrite(r Reason, cmds ...Cmd) Decision {
	f.counts.rewritten.Add(1)
	return Decision{Verdict: Rewrite, Reason: r, DB: cmds[0].DB, Cmds: cmds}
}

func (f *Filter) refuse(err error) Decision {
	f.counts.refused.Add(1)
	return Decision{Verdict: Refuse, Reason: ReasonCrossDB, Err: err}
}

func itoa(n int) []byte { return strconv.AppendInt(nil, int64(n), 10) }

func eqFoldString(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// Counts are the filter's counters: what it kept out, by reason.
type Counts struct {
	Keys      [NumReasons]uint64 `json:"keys"`       // snapshot keys not copied
	Commands  [NumReasons]uint64 `json:"commands"`   // stream commands not forwarded
	SplitKeys [NumReasons]uint64 `json:"split_keys"` // keys taken out of multi-key commands forwarded in part
	Rewritten uint64             `json:"rewritten"`  // commands forwarded in a rewritten form
	Refused   uint64             `json:"refused"`    // commands the selection cannot represent
	// RenamedKeys and Renamed count snapshot keys and stream commands whose keys got their
	// database's prefix (--db-map N:prefix=P). A command renamed and nothing else is not
	// counted in Rewritten.
	RenamedKeys uint64 `json:"renamed_keys"`
	Renamed     uint64 `json:"renamed"`
}

// TotalKeys is the number of snapshot keys not copied.
func (c Counts) TotalKeys() uint64 { return sum(c.Keys) }

// TotalCommands is the number of stream commands not forwarded.
func (c Counts) TotalCommands() uint64 { return sum(c.Commands) }

func sum(a [NumReasons]uint64) uint64 {
	var n uint64
	for _, v := range a {
		n += v
	}
	return n
}

// Counts reads the counters.
func (f *Filter) Counts() Counts {
	var c Counts
	for r := range NumReasons {
		c.Keys[r] = f.counts.keys[r].Load()
		c.Commands[r] = f.counts.commands[r].Load()
		c.SplitKeys[r] = f.counts.splitKeys[r].Load()
	}
	c.Rewritten = f.counts.rewritten.Load()
	c.Refused = f.counts.refused.Load()
	c.RenamedKeys = f.counts.renamedKeys.Load()
	c.Renamed = f.counts.renamed.Load()
	return c
}
