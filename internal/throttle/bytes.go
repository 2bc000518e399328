package throttle

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteUnits are the suffixes ParseBytes accepts: SI (powers of 1000) and binary (powers of
// 1024), spelled out so that "MB" and "MiB" cannot be confused. Longest first.
var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseBytes parses a byte count: a whole number, optionally with a unit (B, KB, MB, GB,
// TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024; case-insensitive), such as
// "1048576", "64MiB", "1.5GB". Fractions are allowed with a unit; the result is rounded
// down to a whole byte.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	num, mult := t, int64(1)
	for _, u := range byteUnits {
		if len(t) > len(u.suffix) && strings.EqualFold(t[len(t)-len(u.suffix):], u.suffix) {
			num, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	if num == "" || strings.ContainsAny(num, "+-eExXpP_") {
		return 0, fmt.Errorf("byte size %q: want a number with an optional unit, such as 1048576, 64MiB or 10MB", s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("byte size %q is too large", s)
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 1 {
		return 0, fmt.Errorf("byte size %q: want a number with an optional unit, such as 1048576, 64MiB or 10MB", s)
	}
	v := f * float64(mult)
	switch {
	case !(v >= 0): // NaN
		return 0, fmt.Errorf("byte size %q: want a number with an optional unit, such as 1048576, 64MiB or 10MB", s)
	case v >= math.MaxInt64: // infinities too
		return 0, fmt.Errorf("byte size %q is too large", s)
	}
	return int64(v), nil
}

// FormatBytes writes n with the largest binary unit that divides it exactly ("64MiB"), or
// as a plain number; ParseBytes reads it back.
func FormatBytes(n int64) string {
	if n > 0 {
		for _, u := range []struct {
			suffix string
			mult   int64
		}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
			if n%u.mult == 0 {
				return strconv.FormatInt(n/u.mult, 10) + u.suffix
			}
		}
	}
	return strconv.FormatInt(n, 10)
}
