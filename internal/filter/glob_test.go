package filter

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/testutil"
)

// globTable holds the server's rules, quirks included; each row was checked against
// redis-server 7.0 (TestGlobMatchesRedis re-checks the rows whose keys are non-empty).
var globTable = []struct {
	pattern, key string
	want         bool
}{
	{"*", "", true}, // KEYS/SCAN special case
	{"**", "", false},
	{"*", "abc", true},
	{"a*", "a", true},
	{"a*", "ab", true},
	{"a*", "ba", false},
	{"*a", "ba", true},
	{"*a", "ab", false},
	{"*b*", "abc", true},
	{"*b*", "ac", false},
	{"a*c", "abbbc", true},
	{"a*c", "abbbcd", false},
	{"a?c", "abc", true},
	{"a?c", "ac", false},
	{"?", "", false},
	{"a[bc]d", "acd", true},
	{"a[bc]d", "aed", false},
	{"a[^bc]d", "aed", true},
	{"a[^bc]d", "abd", false},
	{"[a-c]", "b", true},
	{"[c-a]", "b", true}, // reversed range
	{"[a-c]", "d", false},
	{"[a-]", "]", true},  // "a-]" is the range a..]; the class is then unclosed
	{"[a-]", "-", false}, // '-' (0x2d) is outside a..]
	{"[]a]", "]", false}, // "[]" is an empty class
	{"[]a]", "a", false},
	{"[]", "a", false},
	{"[ab", "a", true}, // unclosed: runs to the end
	{"[ab", "c", false},
	{"x[", "x", false},
	{"x[^", "xy", true},
	{"[\\]]", "]", true},
	{"[\\", "\\", true},
	{"\\*", "*", true},
	{"\\*", "a", false},
	{"a\\", "a\\", true}, // a trailing lone backslash is literal
	{"\\", "\\", true},
	{"a\\b", "ab", true},
	{"*\\*", "x*", true},
	{"h[^e]llo", "hello", false},
	{"h*o", "ho", true},
	{"user:*:name", "user:1:name", true},
	{"user:*:name", "user:1:age", false},
	{"a*a*a*a*b", strings.Repeat("a", 40), false},
}

func TestGlobTable(t *testing.T) {
	for _, c := range globTable {
		if got := globMatch(c.pattern, []byte(c.key)); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.key, got, c.want)
		}
		p, err := ParsePattern("g:" + c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Match([]byte(c.key)); got != c.want {
			t.Errorf("Pattern(g:%q).Match(%q) = %v, want %v", c.pattern, c.key, got, c.want)
		}
		if got := p.MatchString(c.key); got != c.want {
			t.Errorf("Pattern(g:%q).MatchString(%q) = %v, want %v", c.pattern, c.key, got, c.want)
		}
	}
}

// TestGlobPathological: patterns that are exponential without skipLongerMatches, and
// thousands of stars (past the nesting bound), finish at once.
func TestGlobPathological(t *testing.T) {
	key := []byte(strings.Repeat("a", 5000))
	start := time.Now()
	if globMatch(strings.Repeat("a*", 60)+"b", key) {
		t.Error("a*a*...b matched a key without b")
	}
	if globMatch(strings.Repeat("*", 3000)+"b", key) {
		t.Error("3000 stars then b matched a key without b")
	}
	// Past the nesting bound Redis gives up on that branch: 1500 "?*" pairs cannot match.
	if globMatch(strings.Repeat("?*", 1500), key[:2000]) {
		t.Error("a pattern nesting past 1000 matched; the server would not")
	}
	if !globMatch(strings.Repeat("?*", 900), key[:2000]) {
		t.Error("a pattern nesting below 1000 did not match")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("pathological globs took %v", d)
	}
}

// globCorpus generates keys and patterns over a small alphabet rich in meta-characters, so
// that classes, ranges, escapes and unclosed brackets meet keys that exercise them.
func globCorpus(seed uint64, nKeys, nPatterns int) (keys, patterns []string) {
	rng := rand.New(rand.NewPCG(seed, 1))
	gen := func(alphabet string, maxLen int) string {
		n := rng.IntN(maxLen + 1)
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	seen := map[string]bool{}
	keys = append(keys, "")
	seen[""] = true
	for len(keys) < nKeys {
		k := gen("ab:*?[]^-\\c", 6)
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	for _, c := range globTable {
		if c.pattern != "" && !strings.Contains(c.key, "a*a*") {
			patterns = append(patterns, c.pattern)
		}
	}
	for len(patterns) < nPatterns {
		if p := gen("ab:**?[]^-\\c", 7); p != "" {
			patterns = append(patterns, p)
		}
	}
	return keys, patterns
}

// TestGlobMatchesRedis checks the matcher against the server's own: KEYS and SCAN MATCH over
// a database holding a few hundred generated keys, for a few hundred generated patterns.
func TestGlobMatchesRedis(t *testing.T) {
	s := testutil.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := s.Conn(t)
	keys, patterns := globCorpus(7, 300, 400)
	for _, k := range keys {
		if err := c.Send("SET", k, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	for range keys {
		if _, err := c.Receive(); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range patterns {
		if err := c.Send("KEYS", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	matched := 0
	for _, p := range patterns {
		v, err := c.Receive()
		if err != nil {
			t.Fatalf("KEYS %q: %v", p, err)
		}
		server := make([]string, 0, len(v.Elems))
		for _, e := range v.Elems {
			server = append(server, string(e.Str))
		}
		pat, err := ParsePattern("g:" + p)
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, k := range keys {
			if pat.Match([]byte(k)) {
				ours = append(ours, k)
			}
		}
		slices.Sort(server)
		slices.Sort(ours)
		if !slices.Equal(server, ours) {
			t.Errorf("pattern %q: redis KEYS matches %q, ours %q", p, server, ours)
		}
		matched += len(ours)
	}
	if matched < len(patterns) {
		t.Fatalf("only %d matches over %d patterns: the corpus does not exercise the matcher", matched, len(patterns))
	}
	// SCAN MATCH uses the same matcher; check a sample, and the prefix form of patterns.
	for _, p := range patterns[:40] {
		for _, pat := range []Pattern{MustParsePattern("g:" + p), MustParsePattern("p:" + p)} {
			server := scanAll(ctx, t, c, pat.ScanMatch())
			var ours []string
			for _, k := range keys {
				if pat.Match([]byte(k)) {
					ours = append(ours, k)
				}
			}
			slices.Sort(ours)
			if !slices.Equal(server, ours) {
				t.Errorf("%s as SCAN MATCH %q: redis %q, ours %q", pat, pat.ScanMatch(), server, ours)
			}
		}
	}
}

func scanAll(ctx context.Context, t *testing.T, c *redis.Conn, match string) []string {
	t.Helper()
	var out []string
	cursor := "0"
	for {
		v, err := c.Do(ctx, "SCAN", cursor, "MATCH", match, "COUNT", 1000)
		if err != nil {
			t.Fatalf("SCAN MATCH %q: %v", match, err)
		}
		cursor = string(v.Elems[0].Str)
		for _, e := range v.Elems[1].Elems {
			out = append(out, string(e.Str))
		}
		if cursor == "0" {
			break
		}
	}
	slices.Sort(out)
	return out
}

// FuzzGlob: the matcher never panics or runs away; the fast forms (prefix, suffix,
// contains, exact) agree with the general matcher; an escaped literal matches itself.
func FuzzGlob(f *testing.F) {
	for _, c := range globTable {
		f.Add(c.pattern, c.key)
	}
	keys, patterns := globCorpus(3, 20, 40)
	for i, p := range patterns {
		f.Add(p, keys[i%len(keys)])
	}
	f.Fuzz(func(t *testing.T, pattern, key string) {
		if len(pattern) > 200 || len(key) > 200 {
			return
		}
		general := globMatch(pattern, []byte(key))
		if pattern != "" {
			p := MustParsePattern("g:" + pattern)
			if got := p.Match([]byte(key)); got != general {
				t.Fatalf("Pattern(g:%q) fast form %d says %v for %q, general matcher %v", pattern, p.fast, got, key, general)
			}
		}
		if !globMatch(EscapeGlob(key), []byte(key)) && key != "" {
			t.Fatalf("EscapeGlob(%q) = %q does not match the key", key, EscapeGlob(key))
		}
		if key != "" && globMatch(EscapeGlob(key), []byte(key+"x")) {
			t.Fatalf("EscapeGlob(%q) matches a longer key", key)
		}
	})
}
