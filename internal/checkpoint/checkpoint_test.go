package checkpoint

import (
	"context"
	"strings"
	"testing"

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
