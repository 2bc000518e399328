package filter

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// PatternKind says how a Pattern matches key names.
type PatternKind uint8

const (
	// Prefix matches keys that begin with the text, byte for byte.
	Prefix PatternKind = iota
	// Glob matches keys the way the server's KEYS and SCAN MATCH do (see globMatch).
	Glob
	// Regex matches keys in which the RE2 regular expression finds a match (unanchored:
	// "^" and "$" anchor it).
	Regex
)

func (k PatternKind) String() string {
	switch k {
	case Prefix:
		return "prefix"
	case Glob:
		return "glob"
	case Regex:
		return "regex"
	}
	return "unknown"
}

// Tags that force a pattern's kind. A value without one is a glob when it contains a glob
// meta-character (* ? [ \) and a prefix otherwise.
const (
	tagPrefix = "p:"
	tagGlob   = "g:"
	tagRegex  = "re:"
)

// Pattern selects keys by name. Build one with ParsePattern; the zero Pattern is the empty
// prefix, which matches every key.
type Pattern struct {
	kind PatternKind
	text string // without the tag
	// How the pattern runs, decided once: simple globs ("user:*", "*:tmp", "*sess*") become
	// byte comparisons, which are much faster than the general matcher and mean the same.
	fast fastKind
	lit  []byte
	re   *regexp.Regexp
}

type fastKind uint8

const (
	fastNone fastKind = iota
	fastPrefix
	fastSuffix
	fastContains
	fastExact
)

// ParsePattern parses one --include/--exclude value:
//
//	p:TEXT    keys beginning with TEXT (no character is special)
//	g:GLOB    keys matching GLOB with the server's KEYS/SCAN MATCH rules
//	re:REGEX  keys in which the RE2 expression REGEX finds a match (unanchored)
//	VALUE     a glob when VALUE contains * ? [ or \, otherwise a prefix
//
// A plain value that starts with one of the tags is read as tagged: to select keys that
// begin with "p:", write "p:p:". Empty patterns are refused: an empty prefix would silently
// select (or exclude) everything.
func ParsePattern(s string) (Pattern, error) {
	var p Pattern
	switch {
	case strings.HasPrefix(s, tagRegex):
		p.kind, p.text = Regex, s[len(tagRegex):]
	case strings.HasPrefix(s, tagGlob):
		p.kind, p.text = Glob, s[len(tagGlob):]
	case strings.HasPrefix(s, tagPrefix):
		p.kind, p.text = Prefix, s[len(tagPrefix):]
	case strings.ContainsAny(s, globMeta):
		p.kind, p.text = Glob, s
	default:
		p.kind, p.text = Prefix, s
	}
	if p.text == "" {
		if s == "" {
			return Pattern{}, errors.New("empty key pattern: give a prefix (user:), a glob (user:*:name) or re:REGEX")
		}
		return Pattern{}, fmt.Errorf("key pattern %q: nothing after %q (to match keys beginning with %q, write p:%s)", s, s, s, s)
	}
	switch p.kind {
	case Regex:
		re, err := regexp.Compile(p.text)
		if err != nil {
			return Pattern{}, fmt.Errorf("key pattern %q: %w", s, err)
		}
		p.re = re
	case Prefix:
		p.fast, p.lit = fastPrefix, []byte(p.text)
	case Glob:
		p.fast, p.lit = simplifyGlob(p.text)
	}
	return p, nil
}

// MustParsePattern is ParsePattern for patterns known to be valid (tests, constants).
func MustParsePattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// simplifyGlob recognises globs that are a literal with stars only at its ends. "*" alone and
// runs of stars with nothing else stay general: they differ from a byte comparison on the
// empty key.
func simplifyGlob(g string) (fastKind, []byte) {
	lead := len(g) - len(strings.TrimLeft(g, "*"))
	trail := len(g) - len(strings.TrimRight(g, "*"))
	if lead == len(g) {
		return fastNone, nil
	}
	mid := g[lead : len(g)-trail]
	if !globLiteral(mid) {
		return fastNone, nil
	}
	switch {
	case lead == 0 && trail == 0:
		return fastExact, []byte(mid)
	case lead == 0:
		return fastPrefix, []byte(mid)
	case trail == 0:
		return fastSuffix, []byte(mid)
	default:
		return fastContains, []byte(mid)
	}
}

// Kind is how the pattern matches.
func (p Pattern) Kind() PatternKind { return p.kind }

// Text is the pattern without its tag: the prefix, glob or regular expression.
func (p Pattern) Text() string { return p.text }

// String is the pattern in tagged form ("p:user:", "g:tmp:*", "re:^s[0-9]+$"), which
// ParsePattern reads back to the same pattern.
func (p Pattern) String() string {
	switch p.kind {
	case Glob:
		return tagGlob + p.text
	case Regex:
		return tagRegex + p.text
	}
	return tagPrefix + p.text
}

// ScanMatch is a SCAN MATCH argument selecting the same keys, or "" for a regular expression
// (which SCAN cannot express; filter such keys client-side).
func (p Pattern) ScanMatch() string {
	switch p.kind {
	case Glob:
		return p.text
	case Prefix:
		return EscapeGlob(p.text) + "*"
	}
	return ""
}

// Match reports whether key is selected by the pattern. It does not allocate.
func (p Pattern) Match(key []byte) bool {
	switch p.fast {
	case fastPrefix:
		return bytes.HasPrefix(key, p.lit)
	case fastSuffix:
		return bytes.HasSuffix(key, p.lit)
	case fastContains:
		return bytes.Contains(key, p.lit)
	case fastExact:
		return bytes.Equal(key, p.lit)
	}
	if p.re != nil {
		return p.re.Match(key)
	}
	if p.kind == Prefix { // the zero Pattern
		return true
	}
	return globMatch(p.text, key)
}

// MatchString is Match for a string key.
func (p Pattern) MatchString(key string) bool {
	switch p.fast {
	case fastPrefix:
		return strings.HasPrefix(key, string(p.lit))
	case fastSuffix:
		return strings.HasSuffix(key, string(p.lit))
	case fastContains:
		return strings.Contains(key, string(p.lit))
	case fastExact:
		return key == string(p.lit)
	}
	if p.re != nil {
		return p.re.MatchString(key)
	}
	if p.kind == Prefix {
		return true
	}
	return globMatch(p.text, []byte(key))
}

// ParsePatterns parses several patterns; the error names the one that failed.
func ParsePatterns(values []string) ([]Pattern, error) {
	if len(values) == 0 {
		return nil, nil
	}
	out := make([]Pattern, 0, len(values))
	for _, v := range values {
		p, err := ParsePattern(v)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
