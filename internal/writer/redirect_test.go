package writer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/testutil"
)

// redirects collects what a writer hands to Options.Redirect.
type redirects struct {
	mu  sync.Mutex
	got []Redirected
}

func (r *redirects) add(rd Redirected) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rd)
}

func (r *redirects) list() []Redirected {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// keyOn returns a key named prefix<n> whose slot master is s.
func keyOn(c *testutil.Cluster, s *testutil.Server, prefix string) string {
	for i := 0; ; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		if c.MasterForKey(k) == s {
			return k
		}
	}
}

func argsText(c Command) string {
	parts := make([]string, len(c.Args))
	for i, a := range c.Args {
		parts[i] = string(a)
	}
	return strings.Join(parts, " ")
}

// TestRedirectMoved writes commands for keys of two masters to one of them: the other
// master's commands come back through Redirect, in order, with their offsets, a
// transaction whole; the rest is applied; the writer keeps running.
func TestRedirectMoved(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 2})
	a, b := c.Masters()[0], c.Masters()[1]
	var rds redirects
	w := open(t, a, func(o *Options) { o.Redirect = rds.add })

	here, there, last := keyOn(c, a, "here"), keyOn(c, b, "there"), keyOn(c, a, "last")
	write(t, w, cmd(0, 10, "SET", here, "1"))
	write(t, w, cmd(0, 20, "SET", there, "1"))
	write(t, w, cmd(0, 30, "INCR", here))
	write(t, w, cmd(0, 0, "MULTI"))
	write(t, w, cmd(0, 0, "SET", here, "in-txn"))
	write(t, w, cmd(0, 0, "RPUSH", there, "x"))
	write(t, w, cmd(0, 40, "EXEC"))
	write(t, w, cmd(0, 50, "APPEND", there, "y"))
	write(t, w, cmd(0, 60, "SET", last, "last"))
	flush(t, w)

	got := rds.list()
	want := [][]string{
		{"SET " + there + " 1"},
		{"MULTI", "SET " + here + " in-txn", "RPUSH " + there + " x", "EXEC"},
		{"APPEND " + there + " y"},
	}
	wantOffsets := [][]int64{{20}, {0, 0, 0, 40}, {50}}
	if len(got) != len(want) {
		t.Fatalf("%d redirects, want %d: %+v", len(got), len(want), got)
	}
	for i, rd := range got {
		if _, addr, ok := rd.Err.IsMoved(); !ok || addr != b.Addr() {
			t.Errorf("redirect %d: %v, want MOVED to %s", i, rd.Err, b.Addr())
		}
		var texts []string
		var offs []int64
		for _, cm := range rd.Cmds {
			texts = append(texts, argsText(cm))
			offs = append(offs, cm.Offset)
			if cm.DB != 0 {
				t.Errorf("redirect %d: db %d", i, cm.DB)
			}
		}
		if !slices.Equal(texts, want[i]) || !slices.Equal(offs, wantOffsets[i]) {
			t.Errorf("redirect %d: %q offsets %v, want %q %v", i, texts, offs, want[i], wantOffsets[i])
		}
	}
	// Applied before each redirected unit: everything written before it was answered.
	if got[0].Applied != 10 || got[1].Applied != 30 || got[2].Applied != 30 {
		t.Errorf("Applied at the redirects: %d %d %d, want 10 30 30", got[0].Applied, got[1].Applied, got[2].Applied)
	}
	if v := a.Do(t, "GET", here); string(v.Str) != "2" {
		t.Errorf("%s = %q: the discarded transaction ran, or INCR did not", here, v.Str)
	}
	if v := a.Do(t, "GET", last); string(v.Str) != "last" {
		t.Errorf("the command after the redirects: %q", v.Str)
	}
	s := w.Stats()
	if s.Errors[ReasonMoved] != 3 || s.Replies != 3 || w.Applied() != 60 || w.Err() != nil {
		t.Errorf("stats %+v, applied %d, err %v; want 3 moved, 3 replies, applied 60", s, w.Applied(), w.Err())
	}
}

// TestRedirectAsk puts a slot in migration: a key already moved gets -ASK, and the
// redirected command names the importing node.
func TestRedirectAsk(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 2})
	a, b := c.Masters()[0], c.Masters()[1]
	key := keyOn(c, a, "mig")
	slot := command.SlotString(key)
	b.Do(t, "CLUSTER", "SETSLOT", slot, "IMPORTING", c.NodeID(a))
	a.Do(t, "CLUSTER", "SETSLOT", slot, "MIGRATING", c.NodeID(b))

	var rds redirects
	w := open(t, a, func(o *Options) { o.Redirect = rds.add })
	write(t, w, cmd(0, 7, "SET", key, "v"))
	flush(t, w)
	got := rds.list()
	if len(got) != 1 {
		t.Fatalf("redirects %+v", got)
	}
	s, addr, ok := got[0].Err.IsAsk()
	if !ok || addr != b.Addr() || s != int(slot) || argsText(got[0].Cmds[0]) != "SET "+key+" v" {
		t.Errorf("redirect %v %q, want ASK %d %s", got[0].Err, argsText(got[0].Cmds[0]), slot, b.Addr())
	}
	if n := w.Stats().Errors[ReasonAsk]; n != 1 {
		t.Errorf("ask count %d", n)
	}

	// ASKING + the command on the importing node is how a router follows it.
	wb := open(t, b, func(o *Options) { o.Redirect = rds.add })
	write(t, wb, cmd(0, 0, "ASKING"))
	write(t, wb, got[0].Cmds[0])
	flush(t, wb)
	if v := b.Do(t, "CLUSTER", "COUNTKEYSINSLOT", slot); v.Int != 1 {
		t.Errorf("the importing node holds %d keys of slot %d", v.Int, slot)
	}
}

// TestClusterDownRetried: a slot no master serves answers -CLUSTERDOWN; a router's
// writer retries until the slot is served again.
func TestClusterDownRetried(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 2})
	a := c.Masters()[0]
	key := keyOn(c, a, "down")
	slot := command.SlotString(key)
	a.Do(t, "CLUSTER", "DELSLOTS", slot)

	w := open(t, a, func(o *Options) { o.Redirect = func(Redirected) { t.Error("redirected") } })
	write(t, w, cmd(0, 5, "SET", key, "v"))
	time.Sleep(300 * time.Millisecond) // let it fail a few times
	a.Do(t, "CLUSTER", "ADDSLOTS", slot)
	flush(t, w)
	if v := a.Do(t, "GET", key); string(v.Str) != "v" {
		t.Errorf("GET after the slot came back: %q", v.Str)
	}
	s := w.Stats()
	if s.Errors[ReasonClusterDown] == 0 || s.Retries == 0 || w.Applied() != 5 {
		t.Errorf("stats %+v applied %d: want clusterdown retries", s, w.Applied())
	}
}

// TestMovedFatalWithoutRedirect: a plain writer pointed at a cluster node stops.
func TestMovedFatalWithoutRedirect(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 2})
	a, b := c.Masters()[0], c.Masters()[1]
	w := open(t, a, nil)
	write(t, w, cmd(0, 5, "SET", keyOn(c, b, "x"), "v"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.Flush(ctx)
	var ae *ApplyError
	if !asApplyError(err, &ae) || ae.Reason != ReasonCluster {
		t.Fatalf("flush: %v, want a cluster ApplyError", err)
	}
}

func asApplyError(err error, ae **ApplyError) bool {
	e, ok := err.(*ApplyError)
	if ok {
		*ae = e
	}
	return ok
}

func TestDecodeArgs(t *testing.T) {
	cases := [][][]byte{
		{[]byte("SET"), []byte("k"), []byte("")},
		{[]byte("RESTORE"), []byte("k\r\nx"), []byte("0"), []byte("\x00\xff\r\n$3\r\n")},
		{[]byte("PING")},
	}
	for _, args := range cases {
		enc := encode(args)
		got := decodeArgs(enc)
		if !slices.EqualFunc(got, args, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Errorf("decode(%q) = %q", enc, got)
		}
		enc[len(enc)-3] ^= 0xff // the decoded args are copies
		if string(got[len(got)-1]) != string(args[len(args)-1]) {
			t.Errorf("decoded args alias the encoding")
		}
	}
}

func encode(args [][]byte) []byte {
	var b []byte
	b = fmt.Appendf(b, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b
}
