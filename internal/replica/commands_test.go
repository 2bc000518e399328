package replica

import (
	"testing"

	"github.com/ferrysync/ferry/internal/resp"
)

func status(s string) resp.Value { return resp.Value{Kind: '+', Str: []byte(s)} }

func entry(name string, flags []string, subs ...resp.Value) resp.Value {
	var fl []resp.Value
	for _, f := range flags {
		fl = append(fl, status(f))
	}
	e := resp.Value{Kind: '*', Elems: []resp.Value{
		{Kind: '$', Str: []byte(name)}, {Kind: ':', Int: -1}, {Kind: '*', Elems: fl},
		{Kind: ':'}, {Kind: ':'}, {Kind: ':'},
	}}
	if subs != nil {
		e.Elems = append(e.Elems, resp.Value{Kind: '*'}, resp.Value{Kind: '*'}, resp.Value{Kind: '*'},
			resp.Value{Kind: '*', Elems: subs})
	}
	return e
}

func TestCommandTable(t *testing.T) {
	tab := newCommandTable()
	reply := resp.Value{Kind: '*', Elems: []resp.Value{
		entry("JSON.SET", []string{"write", "denyoom"}),
		entry("json.get", []string{"readonly"}),
		entry("newcontainer", []string{}, entry("newcontainer|get", []string{"readonly"}), entry("newcontainer|put", []string{"write"})),
		entry("select", []string{"write"}), // a fixed class is never overridden
		{Kind: '*'},                        // malformed: skipped
	}}
	if n := tab.learn(reply); n != 4 {
		t.Fatalf("understood %d entries, want 4", n)
	}
	if tab.fromSource != 2 {
		t.Fatalf("learnt %d new commands, want 2", tab.fromSource)
	}
	cases := []struct {
		name  string
		class Class
		ok    bool
	}{
		{"json.set", ClassData, true},
		{"Json.Set", ClassData, true},
		{"JSON.GET", 0, false},
		{"NEWCONTAINER", ClassData, true},
		{"SELECT", ClassControl, true},
		{"ping", ClassControl, true},
		{"REPLCONF", ClassControl, true},
		{"multi", ClassMulti, true},
		{"EXEC", ClassExec, true},
		{"publish", ClassPublish, true},
		{"SPUBLISH", ClassPublish, true},
		{"flushall", ClassData, true},
		{"swapdb", ClassData, true},
		{"FUNCTION", ClassData, true},
		{"evalsha", ClassData, true},
		{"script", ClassData, true},
		{"pfcount", ClassData, true},
		{"get", 0, false},
		{"", 0, false},
	}
	for _, tc := range cases {
		name, class, ok := tab.lookup([]byte(tc.name))
		if ok != tc.ok || class != tc.class {
			t.Errorf("lookup(%q) = %q %v %v, want %v %v", tc.name, name, class, ok, tc.class, tc.ok)
		}
	}
	long := make([]byte, 100)
	for i := range long {
		long[i] = 'A'
	}
	if _, _, ok := tab.lookup(long); ok {
		t.Error("a 100-byte name was found")
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tab := newCommandTable()
	name := []byte("HSET")
	if n := testing.AllocsPerRun(100, func() { tab.lookup(name) }); n != 0 {
		t.Fatalf("lookup allocates %.0f times", n)
	}
}

func TestParsePosition(t *testing.T) {
	p := Position{ReplID: testReplID, Offset: 123456, DB: 9}
	got, err := ParsePosition(p.String())
	if err != nil || got != p {
		t.Fatalf("round trip of %q: %v, %v", p.String(), got, err)
	}
	for _, bad := range []string{"", testReplID + " 1", "xyz 1 0", testReplID + " -1 0", testReplID + " 1 x", testReplID + " 1 0 extra"} {
		if _, err := ParsePosition(bad); err == nil {
			t.Errorf("ParsePosition(%q) accepted it", bad)
		}
	}
	if !(Position{}).IsZero() || p.IsZero() {
		t.Error("IsZero")
	}
}
