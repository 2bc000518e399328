package testutil

import (
	"strings"
	"testing"
	"time"
)

// TestDigestValueIgnoresTTL pins the server behaviour valueDigest relies on: DEBUG DIGEST-VALUE
// of a key with a TTL is its plain digest XOR SHA1("!!expire!!"), whatever the expire time.
func TestDigestValueIgnoresTTL(t *testing.T) {
	s := StartServer(t)
	s.Do(t, "HSET", "h", "f", "v", "g", "w")
	plain := string(s.Do(t, "DEBUG", "DIGEST-VALUE", "h").Elems[0].Str)
	for _, ttl := range []string{"100", "99999"} {
		s.Do(t, "EXPIRE", "h", ttl)
		withTTL := s.Do(t, "DEBUG", "DIGEST-VALUE", "h").Elems[0].Str
		if string(withTTL) == plain {
			t.Fatalf("the digest does not change with a TTL; valueDigest must not undo anything")
		}
		if got := valueDigest(withTTL, true); got != plain {
			t.Fatalf("EXPIRE %s: normalised digest %s, plain %s: the server mixes TTLs in differently now", ttl, got, plain)
		}
	}
	if got := valueDigest([]byte("not hex"), true); got != "not hex" {
		t.Errorf("valueDigest of garbage = %q", got)
	}
}

// BenchmarkCompareKeys100k compares two servers holding the same 100k keys (DEBUG POPULATE).
func BenchmarkCompareKeys100k(b *testing.B) {
	a, c := StartServer(b), StartServer(b)
	for _, s := range []*Server{a, c} {
		s.Do(b, "DEBUG", "POPULATE", 100000, "key", 16)
	}
	b.ResetTimer()
	for range b.N {
		diffs, err := CompareKeys(b.Context(), a, c, CompareOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(diffs) != 0 {
			b.Fatalf("%d diffs", len(diffs))
		}
	}
}

func TestDiffKey(t *testing.T) {
	str := func(digest string, pttl int64) keyState { return keyState{typ: "string", digest: digest, pttl: pttl} }
	none := keyState{typ: "none", pttl: -2}
	for _, tc := range []struct {
		name  string
		a, b  keyState
		tol   time.Duration
		class string // "" for no difference
	}{
		{"same", str("d1", -1), str("d1", -1), 0, ""},
		{"both gone", none, none, 0, ""},
		{"missing", str("d1", -1), none, 0, DiffMissing},
		{"extra", none, str("d1", -1), 0, DiffExtra},
		{"type", str("d1", -1), keyState{typ: "hash", digest: "d1", pttl: -1}, 0, DiffType},
		{"value", str("d1", -1), str("d2", -1), 0, DiffValue},
		{"value wins over ttl", str("d1", 5000), str("d2", -1), 0, DiffValue},
		{"stream meta", keyState{typ: "stream", digest: "d", meta: "x"}, keyState{typ: "stream", digest: "d", meta: "y"}, 0, DiffValue},
		{"ttl only in a", str("d1", 5000), str("d1", -1), 0, DiffTTL},
		{"ttl only in b", str("d1", -1), str("d1", 0), 0, DiffTTL},
		{"ttls differ, presence only", str("d1", 5000), str("d1", 90000), 0, ""},
		{"ttls within tolerance", str("d1", 5000), str("d1", 5900), time.Second, ""},
		{"ttls beyond tolerance", str("d1", 5000), str("d1", 6100), time.Second, DiffTTL},
	} {
		d, ok := diffKey(tc.a, tc.b, tc.tol)
		if ok != (tc.class != "") || d.Class != tc.class {
			t.Errorf("%s: got %v %+v, want class %q", tc.name, ok, d, tc.class)
		}
		if ok && d.Detail == "" {
			t.Errorf("%s: no detail", tc.name)
		}
	}
}

func TestCompareKeysRejectsMissingDB(t *testing.T) {
	a := StartServer(t, "--databases", "2")
	b := StartServer(t)
	b.Do(t, "SELECT", "5")
	b.Do(t, "SET", "k", "v")
	_, err := CompareKeys(t.Context(), a, b, CompareOptions{})
	if err == nil || !strings.Contains(err.Error(), "no db 5") {
		t.Fatalf("err = %v, want one naming db 5", err)
	}
	diffs, err := CompareKeys(t.Context(), b, b, CompareOptions{})
	if err != nil || len(diffs) != 0 {
		t.Fatalf("a server compared with itself: %v %v", diffs, err)
	}
}
