package precheck

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

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
