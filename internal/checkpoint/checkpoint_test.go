package checkpoint

import (
	"context"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/testutil"
)

const id = "8de1f6e2a8b5c3d4e5f60718293a4b5c6d7e8f90"

func TestParseFull(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Full
		err  string
	}{
		{in: id + " 0 0", want: Full{ReplID: id}},
		{in: id + " 123456 789", want: Full{ReplID: id, Offset: 123456, Keys: 789}},
		{in: "  " + id + "\t1 2 ", want: Full{ReplID: id, Offset: 1, Keys: 2}},
		{in: "", err: "want"},
		{in: id + " 1", err: "want"},
		{in: id + " 1 2 3", err: "want"},
		{in: id + " -1 2", err: "want"},
		{in: id + " 1 -2", err: "want"},
		{in: id + " 1 x", err: "want"},
		{in: id + " 1 99999999999999999999", err: "want"},
		{in: "xyz 1 2", err: "want"},
	} {
		got, err := ParseFull(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseFull(%q) = %v, %v; want an error with %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseFull(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if back, err := ParseFull(got.String()); err != nil || back != got {
			t.Errorf("round trip of %v: %v, %v", got, back, err)
		}
	}
}

func TestParseMarker(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Marker
		owns bool
		bad  bool
	}{
		{in: "existing=block", want: Marker{Existing: ExistingBlock}, owns: true},
		{in: "existing=overwrite", want: Marker{Existing: ExistingOverwrite}},
		{in: "version=2 existing=block later=x", want: Marker{Existing: ExistingBlock}, owns: true},
		{in: "", bad: true},
		{in: "existing=", bad: true},
		{in: "existing=yes", bad: true},
		{in: "block", bad: true},
		{in: "version=2", bad: true},
	} {
		got, err := ParseMarker(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseMarker(%q) = %v; want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want || got.Owns() != c.owns {
			t.Errorf("ParseMarker(%q) = %v (owns %v), %v; want %v (owns %v)", c.in, got, got.Owns(), err, c.want, c.owns)
		}
		if back, err := ParseMarker(got.String()); err != nil || back != got {
			t.Errorf("round trip of %v: %v, %v", got, back, err)
		}
	}
}

func FuzzParseFull(f *testing.F) {
	for _, s := range []string{id + " 1 2", id + " 0 0", "x 1 2", id + " 1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseFull(s)
		if err != nil {
			return
		}
		if v.Offset < 0 || v.Keys < 0 {
			t.Fatalf("ParseFull(%q) accepted negative numbers: %v", s, v)
		}
		if back, err := ParseFull(v.String()); err != nil || back != v {
			t.Fatalf("round trip of %v from %q: %v, %v", v, s, back, err)
		}
	})
}

func FuzzParseMarker(f *testing.F) {
	for _, s := range []string{"existing=block", "existing=overwrite", "a=b existing=block", "=", "existing"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMarker(s)
		if err != nil {
			return
		}
		if m.Existing != ExistingBlock && m.Existing != ExistingOverwrite {
			t.Fatalf("ParseMarker(%q) accepted existing=%q", s, m.Existing)
		}
		if back, err := ParseMarker(m.String()); err != nil || back != m {
			t.Fatalf("round trip of %v: %v, %v", m, back, err)
		}
	})
}

// TestLoad reads the keys from a real server: none, all three, and a corrupt one.
func TestLoad(t *testing.T) {
	ctx := context.Background()
	s := testutil.StartServer(t)
	c, err := redis.Dial(ctx, redis.Options{Addr: s.Addr(), DB: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := Load(ctx, c, "t1")
	if err != nil || st.Marker != nil || st.Full != nil || !st.Checkpoint.IsZero() {
		t.Fatalf("empty destination: %+v, %v", st, err)
	}
	k := KeysFor("t1")
	pos := replica.Position{ReplID: id, Offset: 42, DB: 5}
	full := Full{ReplID: id, Offset: 7, Keys: 1000}
	s.Do(t, "SET", k.Checkpoint, pos.String())
	s.Do(t, "SET", k.Full, full.String())
	s.Do(t, "SET", k.Marker, Marker{Existing: ExistingBlock}.String())
	s.Do(t, "SET", KeysFor("t2").Checkpoint, "other task")
	st, err = Load(ctx, c, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Checkpoint != pos || st.Full == nil || *st.Full != full || st.Marker == nil || !st.Marker.Owns() {
		t.Fatalf("Load = %+v; want %v, %v, owner", st, pos, full)
	}
	if st.Full.Position() != (replica.Position{ReplID: id, Offset: 7}) {
		t.Fatalf("Full.Position = %v", st.Full.Position())
	}
	s.Do(t, "SET", k.Checkpoint, "garbage")
	if _, err := Load(ctx, c, "t1"); err == nil || !strings.Contains(err.Error(), k.Checkpoint) {
		t.Fatalf("corrupt checkpoint: %v; want an error naming the key", err)
	}
}

// TestSlotTags: every slot has a tag of at most 4 characters, the tags are distinct, and a
// key with a tag as its hash tag is in the tag's slot.
func TestSlotTags(t *testing.T) {
	seen := map[string]bool{}
	for s := range SlotCount {
		tag := SlotTag(uint16(s))
		if tag == "" || len(tag) > 4 || seen[tag] {
			t.Fatalf("slot %d: tag %q (empty, long or used twice)", s, tag)
		}
		seen[tag] = true
		if got := command.SlotString("{" + tag + "}"); got != uint16(s) {
			t.Fatalf("slot %d: tag %q hashes to slot %d", s, tag, got)
		}
	}
	// The table is fixed: keys written by one version are found by the next.
	for slot, tag := range map[uint16]string{0: "1bz", 1: "emj", 16383: "hia"} {
		if got := SlotTag(slot); got != tag {
			t.Errorf("SlotTag(%d) = %q; the table changed (was %q)", slot, got, tag)
		}
	}
}

func TestSlotKeys(t *testing.T) {
	k, err := NewSlotKeys("t0123abcd")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []uint16{0, 1, 5460, 5461, 12182, 16383} {
		key := k.Key(s)
		if !strings.HasPrefix(key, "ferry:sckpt:t0123abcd:{") || !strings.HasPrefix(key, k.Prefix()) {
			t.Fatalf("Key(%d) = %q", s, key)
		}
		if got := command.SlotString(key); got != s {
			t.Fatalf("Key(%d) = %q hashes to slot %d", s, key, got)
		}
	}
	for _, bad := range []string{"", "a{b", "a}b"} {
		if _, err := NewSlotKeys(bad); err == nil {
			t.Errorf("NewSlotKeys(%q) accepted", bad)
		}
	}
}

func TestParseSlotPosition(t *testing.T) {
	for _, c := range []struct {
		in   string
		want SlotPosition
		bad  bool
	}{
		{in: id + " 0", want: SlotPosition{ReplID: id}},
		{in: id + " 123456789", want: SlotPosition{ReplID: id, Offset: 123456789}},
		{in: " " + id + "\t7 ", want: SlotPosition{ReplID: id, Offset: 7}},
		{in: "", bad: true},
		{in: id, bad: true},
		{in: id + " 1 0", bad: true}, // a task checkpoint, not a slot's
		{in: id + " -1", bad: true},
		{in: id + " x", bad: true},
		{in: id + " 99999999999999999999", bad: true},
		{in: "xyz 1", bad: true},
		{in: strings.Repeat("g", 40) + " 1", bad: true},
	} {
		got, err := ParseSlotPosition(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseSlotPosition(%q) = %v; want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseSlotPosition(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
		if back, err := ParseSlotPosition(got.String()); err != nil || back != got {
			t.Errorf("round trip of %v: %v, %v", got, back, err)
		}
	}
}

func FuzzParseSlotPosition(f *testing.F) {
	for _, s := range []string{id + " 0", id + " 42", "", "x 1", id + " -3", id + " 1 2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSlotPosition(s)
		if err != nil {
			if len(err.Error()) > 1000 { // bounded whatever the input (a quoted 100-byte clip)
				t.Fatalf("error text of %d bytes", len(err.Error()))
			}
			return
		}
		if p.Offset < 0 || len(p.ReplID) != 40 {
			t.Fatalf("accepted %q as %+v", s, p)
		}
		back, err := ParseSlotPosition(p.String())
		if err != nil || back != p {
			t.Fatalf("round trip of %+v: %+v, %v", p, back, err)
		}
	})
}
