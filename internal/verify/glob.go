package verify

// maxGlobNesting bounds the recursion of globMatch the way Redis bounds stringmatchlen (a
// pattern of many '*' against a long key would otherwise recurse once per star); past it the
// match fails, as in Redis.
const maxGlobNesting = 1000

// globMatch reports whether key matches pattern with the semantics of Redis's stringmatchlen,
// which SCAN MATCH and KEYS use: '*' any run of bytes, '?' one byte, "[abc]", "[^a-z]"
// classes, '\' escaping the next byte. Matching is on bytes, case-sensitive. Matching the
// server's rules matters because a filter is also sent to the server as SCAN MATCH, and a key
// must be selected the same way whether it was filtered by the server or by Ferry.
func globMatch(pattern, key string) bool {
	if pattern == "*" {
		// KEYS and SCAN treat a lone "*" as "every key" without calling the matcher,
		// which would not match the empty key name.
		return true
	}
	skip := false
	return globMatchAt(pattern, key, &skip, 0)
}

// globMatchAt is the recursive matcher. skipLonger is set once a '*' has tried every suffix
// of the key: a later '*' at a shallower level cannot do better, so the search stops instead
// of going exponential (Redis's skipLongerMatches).
func globMatchAt(p, s string, skipLonger *bool, nesting int) bool {
	if nesting > maxGlobNesting {
		return false
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if globMatchAt(p[1:], s, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			*skipLonger = true
			return false
		case '?':
			s = s[1:]
		case '[':
			var ok bool
			p, ok = matchClass(p[1:], s[0])
			if !ok {
				return false
			}
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		default:
			if p[0] != s[0] {
				return false
			}
			s = s[1:]
		}
		p = p[1:]
		if len(s) == 0 {
			for len(p) > 0 && p[0] == '*' {
				p = p[1:]
			}
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

// matchClass matches c against the class that starts at p (just after '['). It returns the
// pattern positioned on the class's closing ']' (or on its last byte when the class is not
// closed, which Redis accepts as running to the end of the pattern), and whether c matched.
func matchClass(p string, c byte) (string, bool) {
	not := len(p) > 0 && p[0] == '^'
	if not {
		p = p[1:]
	}
	match := false
	for {
		switch {
		case len(p) >= 2 && p[0] == '\\':
			p = p[1:]
			if p[0] == c {
				match = true
			}
		case len(p) > 0 && p[0] == ']':
			return p, match != not
		case len(p) == 0:
			// Unclosed class: Redis steps back onto the last byte so that the caller's
			// advance leaves the pattern empty. An empty remainder ("[" or "[^" at the
			// end) has no byte to step back onto; the caller then sees an empty pattern
			// as well, which is the same outcome.
			return " ", match != not
		case len(p) >= 3 && p[1] == '-':
			lo, hi := p[0], p[2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				match = true
			}
			p = p[2:]
		default:
			if p[0] == c {
				match = true
			}
		}
		p = p[1:]
	}
}

// globMeta are the bytes that make a filter a glob rather than a prefix.
const globMeta = "*?[\\"

// escapeGlob returns a pattern matching exactly s.
func escapeGlob(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
