package testutil

import (
	"testing"
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
