package verify

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ferrysync/ferry/internal/filter"
)

// MaxDB is the highest database number a selection may name: the same limit as sync's.
const MaxDB = filter.MaxDB

// Selection says which source databases and keys are compared and where they live on the
// destination. It is the same selection `ferry sync` makes, so that verify checks exactly
// what a sync copies. The zero Selection selects every database that holds keys, unmapped,
// and every key.
//
// This part is pure (parsing and matching only) so that it can move to a shared filter
// package without dragging connections along.
type Selection struct {
	// DBs are the source databases, ascending; empty means every database that holds keys
	// on either side (or, with Map set, the databases Map names).
	DBs []int
	// Map sends source database k to destination database Map[k]; a database it does not
	// name keeps its number.
	Map map[int]int
	// Prefix renames source database k's keys to Prefix[k]+key on the destination, as
	// sync's --db-map k:prefix=P does. Several source databases may then share a
	// destination database, each owning the keys that begin with its prefix; only those
	// are compared with it (keys outside every prefix belong to no compared database).
	Prefix map[int]string
	// Keys selects keys by name: the source's names, before any prefix.
	Keys KeyFilter
}

// DestKey is source database db's key as the destination names it.
func (s Selection) DestKey(db int, key string) string {
	if p, ok := s.Prefix[db]; ok {
		return p + key
	}
	return key
}

// Target returns the destination database of source database db.
func (s Selection) Target(db int) int {
	if t, ok := s.Map[db]; ok {
		return t
	}
	return db
}

// Explicit reports whether the databases were named (by --dbs or --db-map) rather than
// discovered.
func (s Selection) Explicit() bool { return len(s.DBs) > 0 || len(s.Map) > 0 || len(s.Prefix) > 0 }

// Resolve returns the source databases to compare: s.DBs when given, else the databases
// Map names, else discovered (the databases holding keys on either side, destination ones
// translated back through Map). It checks that every destination database's keys belong
// to one source database: either one source lands there, or several do under key
// prefixes none of which begins with another. Otherwise verify could not tell which
// source an extra key belongs to.
func (s Selection) Resolve(discovered []int) ([]int, error) {
	var dbs []int
	switch {
	case len(s.DBs) > 0:
		dbs = slices.Clone(s.DBs)
	case len(s.Map) > 0 || len(s.Prefix) > 0:
		for db := range s.Map {
			dbs = append(dbs, db)
		}
		for db := range s.Prefix {
			dbs = append(dbs, db)
		}
	default:
		dbs = slices.Clone(discovered)
	}
	slices.Sort(dbs)
	dbs = slices.Compact(dbs)
	if len(s.DBs) > 0 {
		for _, m := range []map[int]int{s.Map, prefixDBs(s.Prefix)} {
			for db := range m {
				if _, ok := slices.BinarySearch(dbs, db); !ok {
					return nil, fmt.Errorf("--db-map maps source db %d, which --dbs does not select (add it to --dbs or drop it from --db-map)", db)
				}
			}
		}
	}
	for db, p := range s.Prefix {
		if p == "" {
			return nil, fmt.Errorf("--db-map gives source db %d an empty key prefix", db)
		}
	}
	from := make(map[int][]int, len(dbs))
	for _, db := range dbs {
		t := s.Target(db)
		for _, prev := range from[t] {
			pp, pd := s.Prefix[prev], s.Prefix[db]
			switch {
			case pp == "" && pd == "":
				return nil, fmt.Errorf("source dbs %d and %d both map to destination db %d; verify compares one source db per destination db (verify them separately)", prev, db, t)
			case pp == "" || pd == "" || strings.HasPrefix(pp, pd) || strings.HasPrefix(pd, pp):
				return nil, fmt.Errorf("source dbs %d and %d both map to destination db %d, and their key prefixes (%q and %q) do not tell their keys apart; give each a prefix, neither beginning with the other, or verify them separately", prev, db, t, pp, pd)
			}
		}
		from[t] = append(from[t], db)
	}
	return dbs, nil
}

// prefixDBs is the set of databases a prefix map names, in Map's shape.
func prefixDBs(p map[int]string) map[int]int {
	m := make(map[int]int, len(p))
	for db := range p {
		m[db] = db
	}
	return m
}

// Shared says how many of dbs land in destination database dst (under their prefixes).
func (s Selection) Shared(dbs []int, dst int) int {
	n := 0
	for _, db := range dbs {
		if s.Target(db) == dst {
			n++
		}
	}
	return n
}

// Source returns the source database that destination database dst receives from, among
// the selected dbs.
func (s Selection) Source(dbs []int, dst int) (int, bool) {
	for _, db := range dbs {
		if s.Target(db) == dst {
			return db, true
		}
	}
	return 0, false
}

// ParseDBList parses a database list such as "0,3,5-9" with the same rules as sync's
// --dbs (internal/filter): one selection syntax for every command.
func ParseDBList(s string) ([]int, error) { return filter.ParseDBs(s) }

// ParseDBMap parses a database mapping such as "0:1,3:3" (source:destination pairs), as
// sync's --db-map; key prefixes are an error (use ParseDBMapping).
func ParseDBMap(s string) (map[int]int, error) { return filter.ParseDBMap(s) }

// ParseDBMapping parses sync's --db-map with key prefixes: "0:1,3:3",
// "0:prefix=db0:,1:prefix=db1:" (each into destination db 0), "1:2:prefix=x:". The
// results go to Selection.Map and Selection.Prefix.
func ParseDBMapping(s string) (map[int]int, map[int]string, error) { return filter.ParseDBMapping(s) }

// Pattern selects keys by name, as sync's --include/--exclude: a prefix, a glob with SCAN
// MATCH semantics, or a regular expression (see internal/filter).
type Pattern = filter.Pattern

// ParsePattern parses one --include/--exclude value.
func ParsePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, errors.New("empty key pattern (give a prefix such as user: or a glob such as user:*:name)")
	}
	return filter.ParsePattern(s)
}

// KeyFilter selects keys by name: a key is selected when it matches one of Include (or
// Include is empty) and none of Exclude. The zero KeyFilter selects every key.
type KeyFilter struct {
	Include []Pattern
	Exclude []Pattern
}

// NewKeyFilter parses include and exclude patterns.
func NewKeyFilter(include, exclude []string) (KeyFilter, error) {
	var f KeyFilter
	for _, s := range include {
		p, err := ParsePattern(s)
		if err != nil {
			return KeyFilter{}, fmt.Errorf("--include: %w", err)
		}
		f.Include = append(f.Include, p)
	}
	for _, s := range exclude {
		p, err := ParsePattern(s)
		if err != nil {
			return KeyFilter{}, fmt.Errorf("--exclude: %w", err)
		}
		f.Exclude = append(f.Exclude, p)
	}
	return f, nil
}

// Match reports whether key is selected.
func (f KeyFilter) Match(key string) bool {
	if len(f.Include) > 0 {
		in := false
		for _, p := range f.Include {
			if p.MatchString(key) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	for _, p := range f.Exclude {
		if p.MatchString(key) {
			return false
		}
	}
	return true
}

// ScanMatch returns a SCAN MATCH pattern that lets the server drop keys the filter never
// selects, or "" when there is none (no include, several, or a regular expression). Keys
// SCAN returns still go through Match.
func (f KeyFilter) ScanMatch() string {
	if len(f.Include) != 1 {
		return ""
	}
	return f.Include[0].ScanMatch()
}
