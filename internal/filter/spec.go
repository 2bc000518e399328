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
	// AllowDBMerge lets two selected source databases land in one destination database.
	// Off by default, because their keys then overwrite each other without a word; with it,
	// the user says the key spaces are disjoint.
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

// ParseDBMap parses a database mapping such as "0:1,3:3": source:destination pairs, each
// 0–MaxDB. A source may appear once. Whether two sources may share a destination is
// decided by New (Spec.AllowDBMerge), which also knows the selected databases.
func ParseDBMap(s string) (map[int]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	m := make(map[int]int)
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		src, dst, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("db map %q: item %q is not source:destination (as in 0:1,3:3)", s, part)
		}
		a, err := parseDB(src)
		if err != nil {
			return nil, fmt.Errorf("db map %q: %w", s, err)
		}
		b, err := parseDB(dst)
		if err != nil {
			return nil, fmt.Errorf("db map %q: %w", s, err)
		}
		if prev, dup := m[a]; dup {
			return nil, fmt.Errorf("db map %q: source db %d is mapped twice (to %d and to %d)", s, a, prev, b)
		}
		m[a] = b
	}
	return m, nil
}

// FormatDBMap is the inverse of ParseDBMap, ordered by source.
func FormatDBMap(m map[int]int) string {
	srcs := make([]int, 0, len(m))
	for s := range m {
		srcs = append(srcs, s)
	}
	slices.Sort(srcs)
	parts := make([]string, len(srcs))
	for i, s := range srcs {
		parts[i] = strconv.Itoa(s) + ":" + strconv.Itoa(m[s])
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
	DBMap           string   // "0:1,3:3"
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
	if sp.DBMap, err = ParseDBMap(s.DBMap); err != nil {
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
