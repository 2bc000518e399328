package precheck

import (
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/resp"
)

func TestCompareCommands(t *testing.T) {
	// A COMMAND reply as a 7.x source sends it (name, arity, flags, …).
	cmd := func(name string, flags ...string) resp.Value {
		fs := make([]resp.Value, len(flags))
		for i, f := range flags {
			fs[i] = resp.Value{Kind: resp.KindSimpleString, Str: []byte(f)}
		}
		return resp.Value{Kind: resp.KindArray, Elems: []resp.Value{
			{Kind: resp.KindBulkString, Str: []byte(name)}, {Kind: resp.KindInteger, Int: -2},
			{Kind: resp.KindArray, Elems: fs},
		}}
	}
	src := parseWriteCommands(resp.Value{Kind: resp.KindArray, Elems: []resp.Value{
		cmd("set", "write", "denyoom"), cmd("get", "readonly", "fast"), cmd("hsetex", "write"), cmd("lmpop", "write"),
	}})
	if len(src) != 3 || !src["hsetex"] || src["get"] {
		t.Fatalf("parsed write commands %v", src)
	}
	old := parseWriteCommands(resp.Value{Kind: resp.KindArray, Elems: []resp.Value{cmd("set", "write"), cmd("get", "readonly")}})
	c := compareCommands(src, old)
	if c.Result != Warn || !strings.Contains(c.Found, "hsetex, lmpop") || !strings.Contains(c.Advice, "stops with its name") {
		t.Fatalf("older target: %+v", c)
	}
	if c := compareCommands(old, src); c.Result != Pass {
		t.Fatalf("newer target: %+v", c)
	}
}
