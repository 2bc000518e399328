package filter

import (
	"strings"
	"testing"
)

func TestParsePattern(t *testing.T) {
	cases := []struct {
		in       string
		kind     PatternKind
		text     string
		match    []string
		notMatch []string
		err      string
	}{
		{in: "user:", kind: Prefix, text: "user:", match: []string{"user:", "user:1"}, notMatch: []string{"user", "xuser:1", ""}},
		{in: "user:*", kind: Glob, text: "user:*", match: []string{"user:", "user:1"}, notMatch: []string{"user"}},
		{in: "*:tmp", kind: Glob, text: "*:tmp", match: []string{"a:tmp", ":tmp"}, notMatch: []string{"a:tmpx"}},
		{in: "*sess*", kind: Glob, text: "*sess*", match: []string{"sess", "a:sess:b"}, notMatch: []string{"ses"}},
		{in: "user:?", kind: Glob, text: "user:?", match: []string{"user:1"}, notMatch: []string{"user:12"}},
		{in: `a\*`, kind: Glob, text: `a\*`, match: []string{"a*"}, notMatch: []string{"ab", `a\*`}},
		{in: "p:a*", kind: Prefix, text: "a*", match: []string{"a*", "a*b"}, notMatch: []string{"ab"}},
		{in: "p:p:", kind: Prefix, text: "p:", match: []string{"p:1"}, notMatch: []string{"q:1"}},
		{in: "g:abc", kind: Glob, text: "abc", match: []string{"abc"}, notMatch: []string{"abcd", "ab"}},
		{in: "g:*", kind: Glob, text: "*", match: []string{"", "x"}},
		{in: "re:^s[0-9]+$", kind: Regex, text: "^s[0-9]+$", match: []string{"s1", "s42"}, notMatch: []string{"s", "xs1", "s1x"}},
		{in: "re:b", kind: Regex, text: "b", match: []string{"abc"}, notMatch: []string{"ac"}},
		{in: "re:a{1,3}", kind: Regex, text: "a{1,3}", match: []string{"xaa"}},
		{in: "", err: "empty key pattern"},
		{in: "p:", err: "write p:p:"},
		{in: "g:", err: "nothing after"},
		{in: "re:", err: "nothing after"},
		{in: "re:(", err: "missing closing )"},
	}
	for _, c := range cases {
		p, err := ParsePattern(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParsePattern(%q) error %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePattern(%q): %v", c.in, err)
			continue
		}
		if p.Kind() != c.kind || p.Text() != c.text {
			t.Errorf("ParsePattern(%q) = %s %q, want %s %q", c.in, p.Kind(), p.Text(), c.kind, c.text)
		}
		for _, k := range c.match {
			if !p.Match([]byte(k)) || !p.MatchString(k) {
				t.Errorf("%q does not match %q", c.in, k)
			}
		}
		for _, k := range c.notMatch {
			if p.Match([]byte(k)) || p.MatchString(k) {
				t.Errorf("%q matches %q", c.in, k)
			}
		}
		again, err := ParsePattern(p.String())
		if err != nil || again.Kind() != p.Kind() || again.Text() != p.Text() {
			t.Errorf("ParsePattern(%q).String() = %q does not read back: %v %v", c.in, p.String(), again, err)
		}
	}
	var zero Pattern
	if !zero.Match([]byte("anything")) {
		t.Error("the zero Pattern (empty prefix) does not match every key")
	}
	if got := MustParsePattern("p:a*[").ScanMatch(); got != `a\*\[*` {
		t.Errorf("prefix ScanMatch = %q", got)
	}
	if got := MustParsePattern("re:x").ScanMatch(); got != "" {
		t.Errorf("regex ScanMatch = %q, want empty", got)
	}
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"user:", "user:*", "p:a*", "g:[a-", "re:^a.*$", "re:(", `a\`, "p:", "*", "**x**"} {
		f.Add(s, "user:1")
	}
	f.Fuzz(func(t *testing.T, s, key string) {
		if len(s) > 200 {
			return
		}
		p, err := ParsePattern(s)
		if err != nil {
			return
		}
		again, err := ParsePattern(p.String())
		if err != nil || again.Kind() != p.Kind() || again.Text() != p.Text() {
			t.Fatalf("%q: String() %q reads back as %v, %v", s, p.String(), again, err)
		}
		if p.Match([]byte(key)) != p.MatchString(key) {
			t.Fatalf("%q: Match and MatchString disagree on %q", s, key)
		}
		if p.Match([]byte(key)) != again.Match([]byte(key)) {
			t.Fatalf("%q and its String() %q disagree on %q", s, p.String(), key)
		}
	})
}

// TestRegexBytes: keys are bytes read as UTF-8, as docs/filters.md says: an invalid byte
// reads as U+FFFD.
func TestRegexBytes(t *testing.T) {
	key := []byte{'a', 0xff, 'b'}
	for p, want := range map[string]bool{`re:^a.b$`: true, `re:^a\x{FFFD}b$`: true, `re:^a\xffb$`: false, `re:(?s)^a.b$`: true} {
		if got := MustParsePattern(p).Match(key); got != want {
			t.Errorf("%s on %q = %v, want %v", p, key, got, want)
		}
	}
	if MustParsePattern("re:^a.b$").Match([]byte("a\nb")) || !MustParsePattern("re:(?s)^a.b$").Match([]byte("a\nb")) {
		t.Error(". and newlines disagree with the docs")
	}
}
