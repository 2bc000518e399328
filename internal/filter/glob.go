package filter

// globMaxNesting bounds how deep '*' may recurse, as Redis bounds stringmatchlen (since 7.0.9,
// CVE-2022-36021): past it that branch fails to match, exactly as on the server, so a pattern
// of thousands of stars cannot exhaust the stack.
const globMaxNesting = 1000

// globResult is the outcome of one matching step. giveUp is Redis's skipLongerMatches: once
// the rest of a pattern after some '*' has failed against every suffix of the key, no
// earlier '*' can do better by consuming more bytes, so every enclosing '*' stops at once.
// Without it a pattern such as "a*a*a*a*b" is exponential in the key's length.
type globResult uint8

const (
	globNoMatch globResult = iota
	globMatched
	globGiveUp
)

// globMatch reports whether key matches pattern the way the server's KEYS and SCAN MATCH
// decide it: Redis's stringmatchlen, case-sensitive, on bytes.
//
//   - '*' matches any run of bytes, '?' any one byte;
//   - "[abc]", "[a-z]" (either order: "[z-a]" is the same range), "[^...]" a negated class,
//     '\' escapes the next byte inside or outside a class;
//   - an unclosed '[' runs to the end of the pattern ("[ab" is the class {a, b}); a trailing
//     lone '\' matches a backslash; "[a-]" is the range from 'a' to ']' (the server's reading);
//   - the lone pattern "*" matches every key, the empty key too (KEYS and SCAN special-case
//     it; any other pattern never matches the empty key).
//
// The server's rules are the contract because a selection must mean the same thing when
// it is sent as SCAN MATCH (verify, precheck) and when Ferry applies it to a stream.
func globMatch(pattern string, key []byte) bool {
	if pattern == "*" {
		return true
	}
	return globStep(pattern, key, 0) == globMatched
}

func globStep(p string, s []byte, nesting int) globResult {
	if nesting > globMaxNesting {
		return globNoMatch
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return globMatched
			}
			for len(s) > 0 {
				switch globStep(p[1:], s, nesting+1) {
				case globMatched:
					return globMatched
				case globGiveUp:
					return globGiveUp
				}
				s = s[1:]
			}
			return globGiveUp
		case '?':
			s = s[1:]
		case '[':
			last, in := globClass(p, 1, s[0])
			if !in {
				return globNoMatch
			}
			p = p[last:]
			s = s[1:]
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			if p[0] != s[0] {
				return globNoMatch
			}
			s = s[1:]
		default:
			if p[0] != s[0] {
				return globNoMatch
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
	if len(p) == 0 && len(s) == 0 {
		return globMatched
	}
	return globNoMatch
}

// globClass matches c against the class whose body starts at p[i] (just past the '['). It
// returns the index of the last pattern byte the class occupies (its closing ']', or, when
// the class is never closed, the pattern's last byte), so that the caller's one-byte advance
// lands just after the class; and whether c is in the class.
func globClass(p string, i int, c byte) (last int, in bool) {
	not := i < len(p) && p[i] == '^'
	if not {
		i++
	}
	match := false
	for {
		rem := len(p) - i
		switch {
		case rem >= 2 && p[i] == '\\':
			i++
			if p[i] == c {
				match = true
			}
		case rem > 0 && p[i] == ']':
			return i, match != not
		case rem == 0:
			// Unclosed: the class ran to the end. Step back onto the last byte, as the
			// server does, so the caller's advance leaves the pattern empty.
			return i - 1, match != not
		case rem >= 3 && p[i+1] == '-':
			lo, hi := p[i], p[i+2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				match = true
			}
			i += 2
		default:
			if p[i] == c {
				match = true
			}
		}
		i++
	}
}

// globMeta are the bytes that make a plain --include/--exclude value a glob rather than a
// prefix. The backslash counts because a value such as `a\*b` is plainly meant as an
// escaped glob (and verify reads plain values the same way).
const globMeta = "*?[\\"

// globLiteral reports whether s has no glob meta-character, so that it matches itself only.
func globLiteral(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', '\\':
			return false
		}
	}
	return true
}

// EscapeGlob returns the glob that matches exactly s (every meta-character escaped).
func EscapeGlob(s string) string {
	b := make([]byte, 0, len(s)+4)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
