package precheck

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxDBListLen bounds the text ParseDBs and ParseDBMap read, so a hostile argument
// cannot make them allocate much: every database 0–255 fits in far less.
const maxDBListLen = 4096

// ParseDBs parses a database list such as "0,3,5-9" into sorted, distinct numbers from
// 0 to MaxDB.
func ParseDBs(s string) ([]int, error) {
	if len(s) > maxDBListLen {
		return nil, fmt.Errorf("database list: longer than %d characters", maxDBListLen)
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("database list: empty (want e.g. 0,3,5-9)")
	}
	var seen [MaxDB + 1]bool
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseDB(lo)
		if err != nil {
			return nil, fmt.Errorf("database list %q: %w", part, err)
		}
		b := a
		if isRange {
			if b, err = parseDB(hi); err != nil {
				return nil, fmt.Errorf("database list %q: %w", part, err)
			}
			if b < a {
				return nil, fmt.Errorf("database list %q: range ends before it starts", part)
			}
		}
		for db := a; db <= b; db++ {
			seen[db] = true
		}
	}
	var out []int
	for db, ok := range seen {
		if ok {
			out = append(out, db)
		}
	}
	return out, nil
}

func parseDB(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("missing database number")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a database number", s)
		}
	}
	if len(s) > 3 {
		return 0, fmt.Errorf("database %s: want 0 to %d", s, MaxDB)
	}
	n, _ := strconv.Atoi(s)
	if n > MaxDB {
		return 0, fmt.Errorf("database %d: want 0 to %d", n, MaxDB)
	}
	return n, nil
}

// ParseDBMap parses a database mapping such as "0:1,3:3" (source:target) into a map. A
// source database may appear once; several may map to the same target.
func ParseDBMap(s string) (map[int]int, error) {
	if len(s) > maxDBListLen {
		return nil, fmt.Errorf("database map: longer than %d characters", maxDBListLen)
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("database map: empty (want e.g. 0:1,3:3)")
	}
	m := make(map[int]int)
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		from, to, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("database map %q: want source:target", part)
		}
		a, err := parseDB(from)
		if err != nil {
			return nil, fmt.Errorf("database map %q: %w", part, err)
		}
		b, err := parseDB(to)
		if err != nil {
			return nil, fmt.Errorf("database map %q: %w", part, err)
		}
		if prev, dup := m[a]; dup && prev != b {
			return nil, fmt.Errorf("database map: source database %d is mapped twice (to %d and %d)", a, prev, b)
		}
		m[a] = b
	}
	return m, nil
}

// FormatDBMap renders a mapping the way ParseDBMap reads it, sorted by source database.
func FormatDBMap(m map[int]int) string {
	parts := make([]string, 0, len(m))
	for _, from := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d:%d", from, m[from]))
	}
	return strings.Join(parts, ",")
}

// formatDBs renders sorted databases compactly: "0, 3, 5-9".
func formatDBs(dbs []int) string {
	var parts []string
	for i := 0; i < len(dbs); i++ {
		j := i
		for j+1 < len(dbs) && dbs[j+1] == dbs[j]+1 {
			j++
		}
		if j > i+1 {
			parts = append(parts, fmt.Sprintf("%d-%d", dbs[i], dbs[j]))
			i = j
		} else {
			parts = append(parts, strconv.Itoa(dbs[i]))
		}
	}
	return strings.Join(parts, ", ")
}

// formatBytes renders a byte count with binary units: "512 B", "1.5 KiB", "8.0 MiB".
func formatBytes(n int64) string {
	if n < 0 {
		return "-" + formatBytes(-n)
	}
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// parseSize reads a size as Redis prints or accepts it: bytes, or a number with k, kb,
// m, mb, g, gb (k = 1000, kb = 1024, as in redis.conf), and also KiB, MiB, GiB.
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
		{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
		{"k", 1000}, {"m", 1000 * 1000}, {"g", 1000 * 1000 * 1000},
		{"b", 1},
	} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with kb, mb or gb", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// formatDuration renders a duration for reports: "850 ms", "4.2 s", "600 s".
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f s", d.Seconds())
}
