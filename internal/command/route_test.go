package command_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/resp"
)

func TestRoute(t *testing.T) {
	tab, c := liveTable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cases := []struct {
		args string
		kind command.Kind
	}{
		{"SET a v", command.OneSlot},
		{"set a v", command.OneSlot},
		{"MSET {t}1 1 {t}2 2", command.OneSlot},
		{"MSET a 1 b 2", command.Split},
		{"MSETNX a 1 b 2", command.Split},
		{"DEL a b c", command.Split},
		{"UNLINK a b", command.Split},
		{"TOUCH a b", command.Split},
		{"DEL {t}1 {t}2", command.OneSlot},
		{"RENAME a b", command.CoLocate},
		{"RENAME {t}1 {t}2", command.OneSlot},
		{"RENAMENX a b", command.CoLocate},
		{"SMOVE a b m", command.CoLocate},
		{"LMOVE a b LEFT RIGHT", command.CoLocate},
		{"RPOPLPUSH a b", command.CoLocate},
		{"BLMOVE a b LEFT RIGHT 0", command.CoLocate},
		{"SUNIONSTORE a b c", command.CoLocate},
		{"SINTERSTORE a b", command.CoLocate},
		{"SDIFFSTORE a b", command.CoLocate},
		{"ZUNIONSTORE a 2 b c", command.CoLocate},
		{"ZINTERSTORE a 1 b", command.CoLocate},
		{"ZDIFFSTORE a 1 b", command.CoLocate},
		{"ZRANGESTORE a b 0 -1", command.CoLocate},
		{"BITOP OR a b c", command.CoLocate},
		{"PFMERGE a b", command.CoLocate},
		{"COPY a b REPLACE", command.CoLocate},
		{"GEOSEARCHSTORE a b FROMLONLAT 0 0 BYRADIUS 1 km", command.CoLocate},
		{"GEORADIUS a 0 0 1 km STORE b", command.CoLocate},
		{"SORT a STORE b", command.CoLocate},
		{"SORT {t}1 STORE {t}2", command.OneSlot},
		{"EVAL s 2 a b", command.CoLocate},
		{"EVAL s 0", command.Keyless},
		{"LMPOP 2 a b LEFT", command.CoLocate},
		{"FLUSHALL", command.AllMasters},
		{"FLUSHDB ASYNC", command.AllMasters},
		{"FUNCTION LOAD code", command.AllMasters},
		{"FUNCTION DELETE lib", command.AllMasters},
		{"FUNCTION FLUSH", command.AllMasters},
		{"FUNCTION RESTORE payload", command.AllMasters},
		{"SCRIPT LOAD s", command.AllMasters},
		{"SCRIPT FLUSH", command.AllMasters},
		{"PUBLISH ch m", command.Keyless},
		{"PING", command.Keyless},
	}
	var keys []command.Key
	for _, tc := range cases {
		args := splitCmd(tc.args)
		r, err := tab.Route(ctx, c, args, keys)
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		if r.Kind != tc.kind {
			t.Errorf("%s: %s, want %s", tc.args, r.Kind, tc.kind)
		}
		if r.Kind == command.OneSlot && r.Slot != command.Slot(args[r.Keys[0].Pos]) {
			t.Errorf("%s: slot %d", tc.args, r.Slot)
		}
	}
	if _, err := tab.Route(ctx, c, splitCmd("NOSUCHCOMMAND x"), nil); !errors.As(err, new(*command.UnknownCommandError)) {
		t.Errorf("unknown command: %v", err)
	}
	if _, err := tab.Route(ctx, c, splitCmd("FUNCTION NOSUCH"), nil); !errors.As(err, new(*command.UnknownCommandError)) {
		t.Errorf("unknown subcommand: %v", err)
	}
	// Without a server, what only the server knows is an error, not a guess.
	if _, err := tab.Route(ctx, nil, splitCmd("SORT a STORE b"), nil); !errors.Is(err, command.ErrNeedServer) {
		t.Errorf("SORT … STORE without a server: %v", err)
	}
}

func TestSplitBySlot(t *testing.T) {
	tab, c := liveTable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cases := []struct {
		args string
		want []string // the parts, in slot order
	}{
		{"DEL a b c {t}1 {t}2 a", []string{"DEL b", "DEL c", "DEL a a", "DEL {t}1 {t}2"}},
		{"MSET a 1 b 2 a 3", []string{"MSET b 2", "MSET a 1 a 3"}},
		{"MSETNX a 1 {t}1 2 {t}2 3", []string{"MSET a 1", "MSET {t}1 2 {t}2 3"}},
		{"UNLINK a b", []string{"UNLINK b", "UNLINK a"}},
	}
	for _, tc := range cases {
		args := splitCmd(tc.args)
		r, err := tab.Route(ctx, c, args, nil)
		if err != nil || r.Kind != command.Split {
			t.Fatalf("%s: %s, %v", tc.args, r.Kind, err)
		}
		var got []string
		var slots []uint16
		err = command.SplitBySlot(r, args, nil, func(slot uint16, part [][]byte) error {
			var b strings.Builder
			for i, a := range part {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.Write(a)
			}
			got = append(got, b.String())
			for _, p := range part[1:] {
				if s := command.Slot(p); len(p) > 1 && s != slot {
					return fmt.Errorf("part for slot %d holds key %q of slot %d", slot, p, s)
				}
			}
			slots = append(slots, slot)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", tc.args, err)
		}
		sorted := slices.Clone(got)
		// The expected parts are listed by slot; order both the same way.
		slices.SortFunc(sorted, func(x, y string) int {
			return int(command.Slot([]byte(strings.Fields(x)[1]))) - int(command.Slot([]byte(strings.Fields(y)[1])))
		})
		if !slices.Equal(got, sorted) || !slices.IsSorted(slots) {
			t.Errorf("%s: parts %q are not in slot order", tc.args, got)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: parts %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestLegacyTable checks the table of a server without key specs (before Redis 7): the
// same reply cut down to the six fields Redis 2.8 to 6.x send. Commands with fixed key
// positions are answered from first/last/step, the others by the server.
func TestLegacyTable(t *testing.T) {
	live, c := liveTable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := c.Do(ctx, "COMMAND")
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range v.Elems {
		v.Elems[i].Elems = e.Elems[:6]
	}
	tab, err := command.NewTable(v)
	if err != nil {
		t.Fatal(err)
	}
	if tab.KeySpecs() {
		t.Fatal("a table without key specs says it has them")
	}
	for _, tc := range curated {
		args := splitCmd(tc.args)
		if strings.Contains(live.Lookup(args).Name, "|") {
			// Old servers list no subcommands, and gave their containers (XGROUP,
			// OBJECT) key positions that Redis 7 moved to the subcommands.
			continue
		}
		if tab.Lookup(args) == nil {
			t.Errorf("%s: unknown", tc.args)
			continue
		}
		keys, err := tab.Keys(ctx, c, args, nil)
		if err != nil {
			t.Errorf("%s: %v", tc.args, err)
			continue
		}
		if got := positions(keys); !slices.Equal(got, tc.keys) && !(len(got) == 0 && len(tc.keys) == 0) {
			t.Errorf("%s (legacy): key positions %v, want %v", tc.args, got, tc.keys)
		}
	}
	// Whole-dataset commands are known by name where there are no tips.
	r, err := tab.Route(ctx, c, splitCmd("FLUSHALL"), nil)
	if err != nil || r.Kind != command.AllMasters {
		t.Errorf("FLUSHALL on a legacy table: %s, %v", r.Kind, err)
	}
	r, err = tab.Route(ctx, c, splitCmd("DEL a b"), nil)
	if err != nil || r.Kind != command.Split {
		t.Errorf("DEL a b on a legacy table: %s, %v", r.Kind, err)
	}
}

// TestParseErrors feeds NewTable malformed replies: each is an error, never a panic.
func TestParseErrors(t *testing.T) {
	str := func(s string) resp.Value { return resp.Value{Kind: resp.KindBulkString, Str: []byte(s)} }
	num := func(n int64) resp.Value { return resp.Value{Kind: resp.KindInteger, Int: n} }
	arr := func(v ...resp.Value) resp.Value { return resp.Value{Kind: resp.KindArray, Elems: v} }
	good := func() []resp.Value {
		return []resp.Value{str("get"), num(2), arr(str("readonly")), num(1), num(1), num(1), arr(), arr(),
			arr(arr(str("flags"), arr(str("RO")),
				str("begin_search"), arr(str("type"), str("index"), str("spec"), arr(str("index"), num(1))),
				str("find_keys"), arr(str("type"), str("range"), str("spec"), arr(str("lastkey"), num(0), str("keystep"), num(1), str("limit"), num(0))))),
			arr()}
	}
	if _, err := command.NewTable(arr(arr(good()...))); err != nil {
		t.Fatalf("the well-formed entry: %v", err)
	}
	mutations := map[string]func(e []resp.Value){
		"short entry":      func(e []resp.Value) {},
		"name not string":  func(e []resp.Value) { e[0] = num(1) },
		"arity not int":    func(e []resp.Value) { e[1] = str("2") },
		"flags not array":  func(e []resp.Value) { e[2] = str("x") },
		"negative first":   func(e []resp.Value) { e[3] = num(-1) },
		"zero step":        func(e []resp.Value) { e[5] = num(0) },
		"huge position":    func(e []resp.Value) { e[4] = num(1 << 40) },
		"specs not array":  func(e []resp.Value) { e[8] = num(1) },
		"spec not map":     func(e []resp.Value) { e[8] = arr(arr(str("flags"))) },
		"no begin_search":  func(e []resp.Value) { e[8] = arr(arr(str("flags"), arr())) },
		"keystep zero":     func(e []resp.Value) { e[8].Elems[0].Elems[5].Elems[3].Elems[3] = num(0) },
		"negative index":   func(e []resp.Value) { e[8].Elems[0].Elems[3].Elems[3].Elems[1] = num(-1) },
		"subcommand named": func(e []resp.Value) { e[9] = arr(arr(good()...)) },
	}
	for name, mutate := range mutations {
		e := good()
		if name == "short entry" {
			e = e[:5]
		}
		mutate(e)
		if _, err := command.NewTable(arr(arr(e...))); err == nil {
			t.Errorf("%s: no error", name)
		} else if !errors.As(err, new(*command.ParseError)) {
			t.Errorf("%s: %T %v, want a *ParseError", name, err, err)
		}
	}
	if _, err := command.NewTable(str("OK")); err == nil {
		t.Error("a string reply: no error")
	}
}
