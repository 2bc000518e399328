package command

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestHashTag(t *testing.T) {
	tests := []struct{ key, tag string }{
		{"", ""},
		{"foo", "foo"},
		{"{user1000}.following", "user1000"},
		{"foo{bar}baz", "bar"},
		{"{}", "{}"},
		{"{}{a}", "{}{a}"}, // first '{' opens an empty tag: whole key
		{"{a}{b}", "a"},
		{"{", "{"},
		{"}", "}"},
		{"}{", "}{"},
		{"}{a}", "a"},
		{"{{a}}", "{a"},
		{"a{b", "a{b"},
		{"a{b}}", "b"},
		{"{\x00}", "\x00"},
	}
	for _, tt := range tests {
		if got := hashTagString(tt.key); got != tt.tag {
			t.Errorf("hashTagString(%q) = %q, want %q", tt.key, got, tt.tag)
		}
		if got := hashTag([]byte(tt.key)); string(got) != tt.tag {
			t.Errorf("hashTag(%q) = %q, want %q", tt.key, got, tt.tag)
		}
	}
}

// TestSlotDocumented uses slots published in the Redis documentation and
// cluster specification; TestSlotMatchesServer checks many more live.
func TestSlotDocumented(t *testing.T) {
	tests := []struct {
		key  string
		slot uint16
	}{
		{"somekey", 11058},
		{"foo{hello}", 866},
		{"hello", 866},
		{"foo", 12182},
		{"{}", 15257},
	}
	for _, tt := range tests {
		if got := SlotString(tt.key); got != tt.slot {
			t.Errorf("SlotString(%q) = %d, want %d", tt.key, got, tt.slot)
		}
		if got := Slot([]byte(tt.key)); got != tt.slot {
			t.Errorf("Slot(%q) = %d, want %d", tt.key, got, tt.slot)
		}
	}
}

// slotTestKeys returns the edge cases of hash-tag parsing plus n random keys:
// plain text, tagged keys, and arbitrary bytes rich in '{', '}', NUL and CRLF.
func slotTestKeys(n int) []string {
	keys := []string{
		"", "a", "foo", "{", "}", "{}", "}{", "{}{a}", "{a}{b}", "}{a}", "{{a}}", "{{}}",
		"a{b", "a{b}}", "a{}b{c}", "{user1000}.following", "{user1000}.followers",
		"\x00", "{\x00}", "\xff{\x00}\xff", "\r\n", "{\r\n}", strings.Repeat("k", 1000),
		"{" + strings.Repeat("t", 500) + "}" + strings.Repeat("x", 500),
	}
	rng := rand.New(rand.NewPCG(20240601, 7))
	alphabet := []byte("abcXYZ019:_-{}")
	for range n {
		var k []byte
		switch rng.IntN(4) {
		case 0: // printable, braces likely
			k = make([]byte, rng.IntN(24))
			for i := range k {
				k[i] = alphabet[rng.IntN(len(alphabet))]
			}
		case 1: // prefix{tag}suffix with a possibly empty tag
			k = []byte(randText(rng, 8) + "{" + randText(rng, 6) + "}" + randText(rng, 8))
		case 2: // arbitrary bytes with extra braces mixed in
			k = make([]byte, rng.IntN(40))
			for i := range k {
				switch rng.IntN(8) {
				case 0:
					k[i] = '{'
				case 1:
					k[i] = '}'
				default:
					k[i] = byte(rng.Uint32())
				}
			}
		default: // longer keys, crossing any short-key fast paths
			k = []byte(randText(rng, 300))
		}
		keys = append(keys, string(k))
	}
	return keys
}

func randText(rng *rand.Rand, maxLen int) string {
	b := make([]byte, rng.IntN(maxLen+1))
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return string(b)
}

func TestSlotMatchesServer(t *testing.T) {
	dir := t.TempDir()
	sock := startRedis(t, dir,
		"--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes.conf")
	keys := slotTestKeys(400)
	got := clusterKeySlots(t, sock, keys)
	for i, key := range keys {
		want := got[i]
		if s := Slot([]byte(key)); s != want {
			t.Errorf("Slot(%q) = %d, CLUSTER KEYSLOT says %d", key, s, want)
		}
		if s := SlotString(key); s != want {
			t.Errorf("SlotString(%q) = %d, CLUSTER KEYSLOT says %d", key, s, want)
		}
	}
}

func TestSlotStringDoesNotAllocate(t *testing.T) {
	keys := []string{"short", "{tag}" + strings.Repeat("x", 200), strings.Repeat("y", 300)}
	var sink uint16
	for _, k := range keys {
		if n := testing.AllocsPerRun(100, func() { sink ^= SlotString(k) }); n != 0 {
			t.Errorf("SlotString of a %d-byte key allocates %v times per call", len(k), n)
		}
	}
	_ = sink
}

func FuzzSlot(f *testing.F) {
	for _, k := range slotTestKeys(20) {
		f.Add([]byte(k))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		s := Slot(key)
		if s >= SlotCount {
			t.Fatalf("Slot(%q) = %d, not below %d", key, s, SlotCount)
		}
		if ss := SlotString(string(key)); ss != s {
			t.Fatalf("Slot(%q) = %d but SlotString = %d", key, s, ss)
		}
		// A non-empty tag decides the slot on its own.
		if open := bytes.IndexByte(key, '{'); open >= 0 {
			if n := bytes.IndexByte(key[open+1:], '}'); n > 0 {
				tag := key[open+1 : open+1+n]
				if st := Slot(tag); st != s {
					t.Fatalf("Slot(%q) = %d but its tag %q has slot %d", key, s, tag, st)
				}
			}
		}
	})
}

var benchSink uint16

func BenchmarkSlotString(b *testing.B) {
	for _, k := range []string{"user:1000:followers", "{user1000}.following", strings.Repeat("k", 256)} {
		b.Run(strings.ReplaceAll(k[:min(len(k), 20)], ":", "_"), func(b *testing.B) {
			b.SetBytes(int64(len(k)))
			for b.Loop() {
				benchSink ^= SlotString(k)
			}
		})
	}
}
