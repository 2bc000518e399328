package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/resp"
	"github.com/ferrysync/ferry/internal/testutil"
)

// Recorded from a redis-server 7.0.15 cluster of 3 masters with one replica each.
const (
	recordedShards = "testdata/cluster-shards-7.0.15.resp"
	recordedSlots  = "testdata/cluster-slots-7.0.15.resp"
)

// TestTopology reads a real cluster's topology both ways and checks it against the
// harness's own map.
func TestTopology(t *testing.T) {
	c := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	conn := c.Masters()[0].Conn(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shards, err := Fetch(ctx, conn, false)
	if err != nil {
		t.Fatal(err)
	}
	v, err := conn.Do(ctx, "CLUSTER", "SLOTS")
	if err != nil {
		t.Fatal(err)
	}
	slots, err := ParseSlots(v)
	if err != nil {
		t.Fatal(err)
	}
	for name, topo := range map[string]*Topology{"SHARDS": shards, "SLOTS": slots} {
		if topo.Covered() != command.SlotCount || len(topo.Shards) != 3 {
			t.Fatalf("%s: %d slots covered by %d shards", name, topo.Covered(), len(topo.Shards))
		}
		for slot := 0; slot < command.SlotCount; slot += 97 {
			m, ok := topo.Master(uint16(slot))
			want := c.MasterForSlot(slot)
			if !ok || m.Addr != want.Addr() || m.ID != c.NodeID(want) || m.Role != "master" {
				t.Fatalf("%s: slot %d: %+v, want %s %s", name, slot, m, want.Addr(), c.NodeID(want))
			}
		}
	}
	for _, sh := range shards.Shards {
		if len(sh.Replicas) != 1 || sh.Replicas[0].Role != "replica" {
			t.Errorf("SHARDS: shard of %s has replicas %+v", sh.Master.Addr, sh.Replicas)
		}
	}
	if os.Getenv("FERRY_RECORD") != "" {
		// Refresh the recorded replies: FERRY_RECORD=1 go test -run TestTopology.
		for cmd, path := range map[string]string{"SHARDS": recordedShards, "SLOTS": recordedSlots} {
			raw, err := rawReply(c.Masters()[0], "CLUSTER", cmd)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// rawReply returns a reply's bytes as the server sent them.
func rawReply(s *testutil.Server, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.Dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := c.NetConn().Write(resp.AppendCommandStrings(nil, args...)); err != nil {
		return nil, err
	}
	_ = c.NetConn().SetReadDeadline(time.Now().Add(time.Second))
	var out bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		n, err := c.NetConn().Read(buf)
		out.Write(buf[:n])
		r := resp.NewReader(bytes.NewReader(out.Bytes()), resp.ReaderOptions{})
		if _, perr := r.ReadValue(); perr == nil && r.Offset() == int64(out.Len()) {
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func parseRecorded(t testing.TB, path string) resp.Value {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := resp.NewReader(bytes.NewReader(data), resp.ReaderOptions{}).ReadValue()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestTopologyRecorded(t *testing.T) {
	shards, err := ParseShards(parseRecorded(t, recordedShards), false)
	if err != nil {
		t.Fatal(err)
	}
	slots, err := ParseSlots(parseRecorded(t, recordedSlots))
	if err != nil {
		t.Fatal(err)
	}
	if shards.Covered() != command.SlotCount || slots.Covered() != command.SlotCount {
		t.Fatalf("covered %d and %d", shards.Covered(), slots.Covered())
	}
	for slot := range command.SlotCount {
		a, _ := shards.Master(uint16(slot))
		b, _ := slots.Master(uint16(slot))
		if a.Addr != b.Addr || a.ID != b.ID {
			t.Fatalf("slot %d: SHARDS says %+v, SLOTS %+v", slot, a, b)
		}
	}
	// With TLS, SHARDS addresses nodes by their tls-port when they have one.
	v := parseRecorded(t, recordedShards)
	node := v.Elems[0].Elems[3].Elems[0]
	node.Elems = append(node.Elems, resp.Value{Kind: resp.KindBulkString, Str: []byte("tls-port")}, resp.Value{Kind: resp.KindInteger, Int: 16999})
	v.Elems[0].Elems[3].Elems[0] = node
	tlsTopo, err := ParseShards(v, true)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, sh := range tlsTopo.Shards {
		for _, n := range append([]Node{sh.Master}, sh.Replicas...) {
			found = found || strings.HasSuffix(n.Addr, ":16999")
		}
	}
	if !found {
		t.Errorf("tls-port not used: %+v", tlsTopo.Shards)
	}
}

func TestTopologyErrors(t *testing.T) {
	str := func(s string) resp.Value { return resp.Value{Kind: resp.KindBulkString, Str: []byte(s)} }
	num := func(n int64) resp.Value { return resp.Value{Kind: resp.KindInteger, Int: n} }
	arr := func(v ...resp.Value) resp.Value { return resp.Value{Kind: resp.KindArray, Elems: v} }
	node := func(port int64) resp.Value {
		return arr(str("127.0.0.1"), num(port), str("id"))
	}
	cases := map[string]resp.Value{
		"not an array":    str("OK"),
		"reversed range":  arr(arr(num(10), num(5), node(7000))),
		"slot too high":   arr(arr(num(0), num(16384), node(7000))),
		"bad port":        arr(arr(num(0), num(10), node(0))),
		"no node":         arr(arr(num(0), num(10))),
		"overlap":         arr(arr(num(0), num(10), node(7000)), arr(num(5), num(20), node(7001))),
		"port not number": arr(arr(num(0), num(10), arr(str("h"), str("7000")))),
	}
	for name, v := range cases {
		if _, err := ParseSlots(v); err == nil {
			t.Errorf("SLOTS %s: no error", name)
		}
	}
	shardCases := map[string]resp.Value{
		"not an array": num(1),
		"odd map":      arr(arr(str("slots"))),
		"odd slots":    arr(arr(str("slots"), arr(num(0)), str("nodes"), arr())),
		"node no port": arr(arr(str("slots"), arr(num(0), num(1)), str("nodes"), arr(arr(str("id"), str("x"), str("ip"), str("h"), str("role"), str("master"))))),
	}
	for name, v := range shardCases {
		if _, err := ParseShards(v, false); err == nil {
			t.Errorf("SHARDS %s: no error", name)
		}
	}
	// A shard without slots (a fresh master) is left out, not an error.
	empty := arr(arr(str("slots"), arr(), str("nodes"), arr(arr(str("id"), str("x"), str("ip"), str("h"), str("port"), num(1), str("role"), str("master")))))
	if topo, err := ParseShards(empty, false); err != nil || len(topo.Shards) != 0 || topo.Covered() != 0 {
		t.Errorf("empty shard: %+v %v", topo, err)
	}
}

// FuzzTopology parses arbitrary bytes as CLUSTER SHARDS and CLUSTER SLOTS replies: no
// panic, and whatever is accepted is a consistent map.
func FuzzTopology(f *testing.F) {
	for _, p := range []string{recordedShards, recordedSlots} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := resp.NewReader(bytes.NewReader(data), resp.ReaderOptions{BufferSize: 4096, MaxBulkLen: 1 << 16, MaxElements: 1 << 16}).ReadValue()
		if err != nil {
			return
		}
		for _, parse := range []func(resp.Value) (*Topology, error){
			func(v resp.Value) (*Topology, error) { return ParseShards(v, false) },
			func(v resp.Value) (*Topology, error) { return ParseShards(v, true) },
			ParseSlots,
		} {
			topo, err := parse(v)
			if err != nil {
				if errors.Is(err, context.Canceled) {
					t.Fatal(err)
				}
				continue
			}
			covered := 0
			for slot := range command.SlotCount {
				m, ok := topo.Master(uint16(slot))
				if !ok {
					continue
				}
				covered++
				if m.Addr == "" {
					t.Fatalf("slot %d: master without an address", slot)
				}
			}
			if covered != topo.Covered() {
				t.Fatalf("Covered %d, counted %d", topo.Covered(), covered)
			}
		}
	})
}
