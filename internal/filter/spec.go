package filter

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/internal/rdb"
)

// MaxDB is the highest database number --dbs and --db-map accept. Redis's default is 16
// databases; 256 covers every configuration seen in practice, and the bound keeps a
// selection a fixed-size table.
const MaxDB = 255

// Spec is a selection as the user writes it: flags or the task file's filter section.
// New checks it and compiles it into a Filter. The zero Spec selects everything, unmapped.
type Spec struct {
	// DBs are the source databases to copy, each 0–MaxDB; nil selects every database.
	DBs []int
	// DBMap sends source database k to destination database DBMap[k] (both 0–MaxDB); a
	// selected database it does not name keeps its number. Every source it names must be
	// selected.
	DBMap map[int]int
	// DBPrefix renames every key of source database k to DBPrefix[k]+key on the
	// destination (--db-map k:prefix=P, which also maps k to database 0). The database it
	// lands in is DBMap's. Several source databases may share a destination database
	// without AllowDBMerge when each has a prefix and no prefix begins with another: their
	// keys cannot collide. Every source it names must be selected; a prefix may not be
	// empty, hold a comma or a '{' (it would change the keys' hash tags, so their cluster
	// slots), or reach into Ferry's own key space (ferry:).
	DBPrefix map[int]string
	// AllowDBMerge lets two selected source databases land in one destination database
	// where their keys may collide (no prefix, or prefixes one of which begins with the
	// other). Off by default, because their keys then overwrite each other without a
	// word; with it, the user says the key spaces are disjoint.
	AllowDBMerge bool
	// Include: a key is copied only when it matches one of these (empty: every key).
	Include []Pattern
	// Exclude: a key matching any of these is not copied, even when it is included.
	Exclude []Pattern
	// Types are the data types to copy (TypeNames); empty copies every type.
	Types []string
	// ExcludeCommands are stream commands never forwarded (case-insensitive names, e.g.
	// "flushall", "flushdb", "publish").
	ExcludeCommands []string
}

// TypeNames are the names --types accepts, as TYPE reports them.
var TypeNames = []string{"string", "list", "set", "zset", "hash", "stream", "module"}

// ParseDBs parses a database list such as "0,3,5-9": numbers and inclusive ranges,
// comma-separated, spaces allowed, each 0–MaxDB. The result is ascending without
// duplicates. An empty string gives nil (every database).
func ParseDBs(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var set [MaxDB + 1]bool
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return nil, fmt.Errorf("db list %q: empty item (write numbers and ranges such as 0,3,5-9)", s)
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseDB(lo)
		if err != nil {
			return nil, fmt.Errorf("db list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parseDB(hi); err != nil {
				return nil, fmt.Errorf("db list %q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("db list %q: range %d-%d runs backwards (write %d-%d)", s, a, b, b, a)
			}
		}
		for db := a; db <= b; db++ {
			set[db] = true
		}
	}
	var dbs []int
	for db, ok := range set {
		if ok {
			dbs = append(dbs, db)
		}
	}
	return dbs, nil
}

// FormatDBs is the inverse of ParseDBs, with runs written as ranges ("0,3,5-9").
func FormatDBs(dbs []int) string {
	dbs = slices.Clone(dbs)
	slices.Sort(dbs)
	dbs = slices.Compact(dbs)
	var b strings.Builder
	for i := 0; i < len(dbs); {
		j := i
		for j+1 < len(dbs) && dbs[j+1] == dbs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(dbs[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(dbs[j]))
		}
		i = j + 1
	}
	return b.String()
}

// prefixItem introduces the key prefix of a --db-map item: 1:prefix=db1: or 1:0:prefix=db1:.
const prefixItem = "prefix="

// ParseDBMapping parses a --db-map value: comma-separated items, each
//
//	N:M          source database N into destination database M
//	N:prefix=P   source database N into destination database 0, every key renamed P<key>
//	N:M:prefix=P source database N into destination database M, keys renamed P<key>
//
// with N and M 0–MaxDB. A source may appear once. Spaces around an item are ignored, so
// a prefix cannot end with a space, and it cannot hold a comma (the item separator).
// Whether two sources may share a destination, and which prefixes are allowed, is decided
// by New, which knows the whole selection. An empty string gives nil maps.
func ParseDBMapping(s string) (dbs map[int]int, prefixes map[int]string, err error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil, nil
	}
	dbs = make(map[int]int)
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		src, rest, ok := strings.Cut(part, ":")
		if !ok {
			return nil, nil, fmt.Errorf("db map %q: item %q is not source:destination or source:prefix=P (as in 0:1,3:3 or 1:prefix=db1:)", s, part)
		}
		a, err := parseDB(src)
		if err != nil {
			return nil, nil, fmt.Errorf("db map %q: %w", s, err)
		}
		prev, dup := dbs[a]
		b, prefix, hasPrefix := 0, "", false
		rest = strings.TrimLeft(rest, " \t")
		if p, ok := strings.CutPrefix(rest, prefixItem); ok {
			prefix, hasPrefix = p, true
		} else {
			dst, tail, hasTail := strings.Cut(rest, ":")
			if b, err = parseDB(dst); err != nil {
				return nil, nil, fmt.Errorf("db map %q: %w", s, err)
			}
			if hasTail {
				if prefix, hasPrefix = strings.CutPrefix(strings.TrimLeft(tail, " \t"), prefixItem); !hasPrefix {
					return nil, nil, fmt.Errorf("db map %q: item %q: after source:destination only :prefix=P may follow (as in 1:0:prefix=db1:)", s, part)
				}
			}
		}
		if dup {
			return nil, nil, fmt.Errorf("db map %q: source db %d is mapped twice (to %d and to %d)", s, a, prev, b)
		}
		if hasPrefix {
			if prefix == "" {
				return nil, nil, fmt.Errorf("db map %q: item %q has an empty prefix (write %d:%d to map the database without renaming its keys)", s, part, a, b)
			}
			if prefixes == nil {
				prefixes = make(map[int]string)
			}
			prefixes[a] = prefix
		}
		dbs[a] = b
	}
	return dbs, prefixes, nil
}

// ParseDBMap parses a database mapping of numbers only, such as "0:1,3:3": source:destination
// pairs, each 0–MaxDB. An item with a key prefix (1:prefix=db1:) is an error here: a caller
// that can carry prefixes uses ParseDBMapping, and one that cannot must not drop them
// silently (the databases would then merge without them).
func ParseDBMap(s string) (map[int]int, error) {
	m, prefixes, err := ParseDBMapping(s)
	if err != nil {
		return nil, err
	}
	for src, p := range prefixes {
		return nil, fmt.Errorf("db map %q: source db %d maps to key prefix %q, which this setting does not take (only source:destination numbers)", s, src, p)
	}
	return m, nil
}

// FormatDBMap is the inverse of ParseDBMap, ordered by source.
func FormatDBMap(m map[int]int) string { return FormatDBMapping(m, nil) }

// FormatDBMapping is the inverse of ParseDBMapping, ordered by source: N:M, or N:prefix=P
// when N goes to database 0 with a prefix, or N:M:prefix=P.
func FormatDBMapping(m map[int]int, prefixes map[int]string) string {
	srcs := make([]int, 0, len(m)+len(prefixes))
	for s := range m {
		srcs = append(srcs, s)
	}
	for s := range prefixes {
		if _, ok := m[s]; !ok {
			srcs = append(srcs, s)
		}
	}
	slices.Sort(srcs)
	parts := make([]string, len(srcs))
	for i, s := range srcs {
		d, mapped := m[s]
		if !mapped {
			d = s // a prefix alone keeps the database's number (Spec.DBPrefix)
		}
		p, ok := prefixes[s]
		switch {
		case !ok:
			parts[i] = strconv.Itoa(s) + ":" + strconv.Itoa(d)
		case d == 0:
			parts[i] = strconv.Itoa(s) + ":" + prefixItem + p
		default:
			parts[i] = strconv.Itoa(s) + ":" + strconv.Itoa(d) + ":" + prefixItem + p
		}
	}
	return strings.Join(parts, ",")
}

func parseDB(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a database number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > MaxDB {
		return 0, fmt.Errorf("database %s is out of range (0-%d)", s, MaxDB)
	}
	return n, nil
}

// ParseTypes parses a --types value such as "string,hash": comma-separated TypeNames,
// case-insensitive. An empty string gives nil (every type).
func ParseTypes(s string) ([]string, error) {
	names := splitList(s)
	for i, n := range names {
		n = strings.ToLower(n)
		if kindByName(n) == rdb.KindUnknown {
			return nil, fmt.Errorf("type %q: want one of %s", names[i], strings.Join(TypeNames, ", "))
		}
		names[i] = n
	}
	return names, nil
}

// ParseCommands parses an --exclude-commands value such as "flushall,flushdb": command
// names, comma-separated, case-insensitive (returned lower-case). An empty string gives nil.
func ParseCommands(s string) ([]string, error) {
	names := splitList(s)
	for i, n := range names {
		if err := checkCommandName(n); err != nil {
			return nil, err
		}
		names[i] = strings.ToLower(n)
	}
	return names, nil
}

func checkCommandName(n string) error {
	if n == "" || len(n) > maxCommandName || strings.ContainsAny(n, " \t\r\n,|") {
		return fmt.Errorf("command name %q: give a name such as flushall (no spaces or subcommands)", n)
	}
	if _, control := controlCommands[strings.ToLower(n)]; control {
		return fmt.Errorf("command %q cannot be excluded: it carries the stream's transaction and database boundaries", n)
	}
	return nil
}

// maxCommandName bounds the names the filter looks up (longer names are no Redis command);
// it is also the size of the stack buffer used to lower-case a name without allocating.
const maxCommandName = 64

func splitList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func kindByName(n string) rdb.Kind {
	switch n {
	case "string":
		return rdb.KindString
	case "list":
		return rdb.KindList
	case "set":
		return rdb.KindSet
	case "zset":
		return rdb.KindZSet
	case "hash":
		return rdb.KindHash
	case "stream":
		return rdb.KindStream
	case "module":
		return rdb.KindModule
	}
	return rdb.KindUnknown
}

// Strings are the flag (or task file) values a Spec is parsed from. Keeping the parse in
// one place makes the flags and the task file mean exactly the same thing.
type Strings struct {
	DBs             string   // "0,3,5-9"
	DBMap           string   // "0:1,3:3", "1:prefix=db1:,2:prefix=db2:"
	AllowDBMerge    bool     // --db-merge
	Include         []string // one pattern per value (no comma splitting: a regex may hold one)
	Exclude         []string
	Types           string // "string,hash"
	ExcludeCommands string // "flushall,flushdb"
}

// ParseSpec parses flag values into a Spec; errors name the flag.
func ParseSpec(s Strings) (Spec, error) {
	var (
		sp  Spec
		err error
	)
	if sp.DBs, err = ParseDBs(s.DBs); err != nil {
		return Spec{}, fmt.Errorf("--dbs: %w", err)
	}
	if sp.DBMap, sp.DBPrefix, err = ParseDBMapping(s.DBMap); err != nil {
		return Spec{}, fmt.Errorf("--db-map: %w", err)
	}
	sp.AllowDBMerge = s.AllowDBMerge
	if sp.Include, err = ParsePatterns(s.Include); err != nil {
		return Spec{}, fmt.Errorf("--include: %w", err)
	}
	if sp.Exclude, err = ParsePatterns(s.Exclude); err != nil {
		return Spec{}, fmt.Errorf("--exclude: %w", err)
	}
	if sp.Types, err = ParseTypes(s.Types); err != nil {
		return Spec{}, fmt.Errorf("--types: %w", err)
	}
	if sp.ExcludeCommands, err = ParseCommands(s.ExcludeCommands); err != nil {
		return Spec{}, fmt.Errorf("--exclude-commands: %w", err)
	}
	return sp, nil
}
