package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/resp"
)

// maxNodes bounds the nodes a topology reply may describe; Redis Cluster's own advice
// is at most 1000.
const maxNodes = 4096

// Node is one cluster node as a topology reply describes it.
type Node struct {
	ID     string
	Addr   string // host:port to dial (the TLS port when the topology was read for TLS)
	Role   string // "master" or "replica"
	Health string // CLUSTER SHARDS: "online", "failed" or "loading"; "" from CLUSTER SLOTS
}

// SlotRange is an inclusive range of slots.
type SlotRange struct{ First, Last uint16 }

// Shard is a master, its replicas and the slots it serves.
type Shard struct {
	Master   Node
	Replicas []Node
	Slots    []SlotRange
}

// Topology is a cluster's slot map: which master serves each slot.
type Topology struct {
	Shards []Shard // ordered by their first slot
	owner  [command.SlotCount]int16
}

// Master returns the master serving slot, or false when no master serves it.
func (t *Topology) Master(slot uint16) (Node, bool) {
	i := t.owner[slot&(command.SlotCount-1)]
	if i < 0 {
		return Node{}, false
	}
	return t.Shards[i].Master, true
}

// Masters returns the masters that serve slots, in slot order.
func (t *Topology) Masters() []Node {
	out := make([]Node, len(t.Shards))
	for i, s := range t.Shards {
		out[i] = s.Master
	}
	return out
}

// Covered returns how many of the 16384 slots have a master.
func (t *Topology) Covered() int {
	n := 0
	for _, o := range t.owner {
		if o >= 0 {
			n++
		}
	}
	return n
}

// newTopology indexes shards; a slot claimed twice is an error (a reply taken during a
// failover can list both the old and the new master: the caller retries).
func newTopology(shards []Shard) (*Topology, error) {
	for _, s := range shards {
		slices.SortFunc(s.Slots, func(a, b SlotRange) int { return int(a.First) - int(b.First) })
	}
	slices.SortFunc(shards, func(a, b Shard) int { return int(a.Slots[0].First) - int(b.Slots[0].First) })
	t := &Topology{Shards: shards}
	for i := range t.owner {
		t.owner[i] = -1
	}
	for i, s := range shards {
		for _, r := range s.Slots {
			for slot := int(r.First); slot <= int(r.Last); slot++ {
				if o := t.owner[slot]; o >= 0 {
					return nil, fmt.Errorf("cluster topology: slot %d is served by both %s and %s", slot, shards[o].Master.Addr, s.Master.Addr)
				}
				t.owner[slot] = int16(i)
			}
		}
	}
	return t, nil
}

// ParseShards reads a CLUSTER SHARDS reply (Redis 7.0+). With tls, nodes are addressed
// by their tls-port. Shards without slots or without a master are left out.
func ParseShards(v resp.Value, tls bool) (*Topology, error) {
	if !isArray(v) {
		return nil, fmt.Errorf("cluster topology: CLUSTER SHARDS reply is %s", describe(v))
	}
	if len(v.Elems) > maxNodes {
		return nil, fmt.Errorf("cluster topology: %d shards", len(v.Elems))
	}
	var shards []Shard
	for i, sv := range v.Elems {
		f, err := fields(sv)
		if err != nil {
			return nil, fmt.Errorf("cluster topology: shard %d: %w", i, err)
		}
		var sh Shard
		slots := f["slots"]
		if !isArray(slots) || len(slots.Elems)%2 != 0 || len(slots.Elems) > 2*command.SlotCount {
			return nil, fmt.Errorf("cluster topology: shard %d: slots is %s", i, describe(slots))
		}
		for j := 0; j < len(slots.Elems); j += 2 {
			r, err := slotRange(slots.Elems[j], slots.Elems[j+1])
			if err != nil {
				return nil, fmt.Errorf("cluster topology: shard %d: %w", i, err)
			}
			sh.Slots = append(sh.Slots, r)
		}
		nodes := f["nodes"]
		if !isArray(nodes) || len(nodes.Elems) > maxNodes {
			return nil, fmt.Errorf("cluster topology: shard %d: nodes is %s", i, describe(nodes))
		}
		haveMaster := false
		for _, nv := range nodes.Elems {
			n, err := shardNode(nv, tls)
			if err != nil {
				return nil, fmt.Errorf("cluster topology: shard %d: %w", i, err)
			}
			switch {
			case n.Role != "master":
				sh.Replicas = append(sh.Replicas, n)
			case !haveMaster || (sh.Master.Health != "online" && n.Health == "online"):
				// During a failover a shard can list two masters; the one online wins.
				if haveMaster {
					sh.Replicas = append(sh.Replicas, sh.Master)
				}
				sh.Master, haveMaster = n, true
			default:
				sh.Replicas = append(sh.Replicas, n)
			}
		}
		if len(sh.Slots) > 0 && haveMaster {
			shards = append(shards, sh)
		}
	}
	return newTopology(shards)
}

func shardNode(v resp.Value, tls bool) (Node, error) {
	f, err := fields(v)
	if err != nil {
		return Node{}, fmt.Errorf("node: %w", err)
	}
	n := Node{ID: text(f["id"]), Role: strings.ToLower(text(f["role"])), Health: strings.ToLower(text(f["health"]))}
	host := text(f["endpoint"])
	if host == "" || host == "?" {
		host = text(f["ip"])
	}
	port, ok := f["port"]
	if tp, has := f["tls-port"]; tls && has {
		port, ok = tp, true
	}
	if !ok || port.Kind != resp.KindInteger || port.Int <= 0 || port.Int > 65535 || host == "" {
		return Node{}, fmt.Errorf("node %s has no usable address (endpoint/ip %q, port %s)", n.ID, host, describe(port))
	}
	n.Addr = net.JoinHostPort(host, strconv.FormatInt(port.Int, 10))
	if n.Role == "slave" {
		n.Role = "replica"
	}
	return n, nil
}

// ParseSlots reads a CLUSTER SLOTS reply (every version; deprecated since 7.0):
// [first, last, [host, port, id, …], replicas…] per range.
func ParseSlots(v resp.Value) (*Topology, error) {
	if !isArray(v) || len(v.Elems) > command.SlotCount {
		return nil, fmt.Errorf("cluster topology: CLUSTER SLOTS reply is %s", describe(v))
	}
	byMaster := map[string]int{}
	var shards []Shard
	for i, e := range v.Elems {
		if !isArray(e) || len(e.Elems) < 3 {
			return nil, fmt.Errorf("cluster topology: slot range %d is %s", i, describe(e))
		}
		r, err := slotRange(e.Elems[0], e.Elems[1])
		if err != nil {
			return nil, fmt.Errorf("cluster topology: slot range %d: %w", i, err)
		}
		var nodes []Node
		for j, nv := range e.Elems[2:] {
			if !isArray(nv) || len(nv.Elems) < 2 || nv.Elems[1].Kind != resp.KindInteger ||
				nv.Elems[1].Int <= 0 || nv.Elems[1].Int > 65535 {
				return nil, fmt.Errorf("cluster topology: slot range %d node %d is %s", i, j, describe(nv))
			}
			n := Node{Role: "replica", Addr: net.JoinHostPort(text(nv.Elems[0]), strconv.FormatInt(nv.Elems[1].Int, 10))}
			if len(nv.Elems) > 2 {
				n.ID = text(nv.Elems[2])
			}
			if j == 0 {
				n.Role = "master"
			}
			nodes = append(nodes, n)
		}
		if len(nodes) > maxNodes {
			return nil, fmt.Errorf("cluster topology: slot range %d has %d nodes", i, len(nodes))
		}
		key := nodes[0].ID + "@" + nodes[0].Addr
		k, ok := byMaster[key]
		if !ok {
			k = len(shards)
			byMaster[key] = k
			shards = append(shards, Shard{Master: nodes[0], Replicas: nodes[1:]})
		}
		shards[k].Slots = append(shards[k].Slots, r)
	}
	return newTopology(shards)
}

func slotRange(a, b resp.Value) (SlotRange, error) {
	if a.Kind != resp.KindInteger || b.Kind != resp.KindInteger || a.Int < 0 || b.Int < a.Int || b.Int >= command.SlotCount {
		return SlotRange{}, fmt.Errorf("bad slot range %s–%s", describe(a), describe(b))
	}
	return SlotRange{uint16(a.Int), uint16(b.Int)}, nil
}

// Fetch reads the topology from the node behind d: CLUSTER SHARDS, or CLUSTER SLOTS on
// servers before 7.0.
func Fetch(ctx context.Context, d command.Doer, tls bool) (*Topology, error) {
	v, err := d.Do(ctx, "CLUSTER", "SHARDS")
	if err == nil {
		return ParseShards(v, tls)
	}
	var e *resp.Error
	if !errors.As(err, &e) || !strings.Contains(strings.ToLower(e.Msg), "unknown subcommand") {
		return nil, fmt.Errorf("cluster topology: CLUSTER SHARDS: %w", err)
	}
	if v, err = d.Do(ctx, "CLUSTER", "SLOTS"); err != nil {
		return nil, fmt.Errorf("cluster topology: CLUSTER SLOTS: %w", err)
	}
	return ParseSlots(v)
}

// fields reads a RESP3 map or a RESP2 array of alternating names and values.
func fields(v resp.Value) (map[string]resp.Value, error) {
	if (v.Kind != resp.KindMap && !isArray(v)) || len(v.Elems)%2 != 0 {
		return nil, fmt.Errorf("not a map (%s)", describe(v))
	}
	m := make(map[string]resp.Value, len(v.Elems)/2)
	for i := 0; i < len(v.Elems); i += 2 {
		m[strings.ToLower(text(v.Elems[i]))] = v.Elems[i+1]
	}
	return m, nil
}

func isArray(v resp.Value) bool {
	return (v.Kind == resp.KindArray || v.Kind == resp.KindSet) && !v.Null
}

func text(v resp.Value) string {
	switch v.Kind {
	case resp.KindSimpleString, resp.KindBulkString, resp.KindVerbatim:
		if len(v.Str) > 1024 {
			return string(v.Str[:1024])
		}
		return v.Text()
	}
	return ""
}

func describe(v resp.Value) string {
	switch {
	case v.Null:
		return "null"
	case v.Kind == resp.KindInteger:
		return fmt.Sprintf("integer %d", v.Int)
	case isArray(v) || v.Kind == resp.KindMap:
		return fmt.Sprintf("an aggregate of %d elements", len(v.Elems))
	case v.Kind == 0:
		return "missing"
	}
	return fmt.Sprintf("type %s", v.Kind)
}
