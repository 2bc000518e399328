package testutil

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/resp"
)

const (
	// DefaultClusterMasters is the number of masters when ClusterOptions.Masters is 0.
	DefaultClusterMasters = 3
	// DefaultNodeTimeout is cluster-node-timeout when ClusterOptions.NodeTimeout is 0: short, so
	// a killed master is detected in seconds, long enough not to flap on a loaded 2-core machine.
	DefaultNodeTimeout = 2 * time.Second
	// clusterSetupTimeout bounds StartCluster and Failover.
	clusterSetupTimeout = 60 * time.Second
	// clusterPoll is the interval at which a converging cluster is re-examined.
	clusterPoll = 20 * time.Millisecond
)

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Masters is the number of masters (shards); default DefaultClusterMasters.
	Masters int
	// ReplicasPerMaster is the number of replicas attached to each master; default 0.
	ReplicasPerMaster int
	// Args are extra redis-server arguments for every node.
	Args []string
	// NodeTimeout is cluster-node-timeout; default DefaultNodeTimeout.
	NodeTimeout time.Duration
}

// Cluster is a Redis Cluster of processes started by StartCluster. Its slot map and roles are
// the ones the harness assigned, kept up to date by Failover, and by Refresh and WaitHealthy
// after changes the cluster made on its own (a killed master replaced by its replica). Safe for
// concurrent use (a workload may route keys while the test fails a master over), except for
// the methods taking a testing.TB, which belong to the test's goroutine.
type Cluster struct {
	nodes []*Server          // every node, in start order
	ids   map[*Server]string // cluster node IDs

	mu     sync.RWMutex
	shards []*shard
	owner  [command.SlotCount]uint8 // slot → index into shards
}

// shard is one master with its replicas and the slot ranges it serves.
type shard struct {
	ranges   [][2]int // inclusive
	master   *Server
	replicas []*Server
}

// StartCluster starts opts.Masters masters with opts.ReplicasPerMaster replicas each, splits the
// 16384 slots evenly between the masters (CLUSTER ADDSLOTSRANGE), joins the nodes (CLUSTER MEET),
// attaches the replicas (CLUSTER REPLICATE), and returns when every node reports cluster_state:ok,
// agrees on the slot map and roles, and every replica's link to its master is up. All processes
// are stopped when the test ends.
func StartCluster(tb testing.TB, opts ClusterOptions) *Cluster {
	tb.Helper()
	path := requireServerBinary(tb)
	if opts.Masters <= 0 {
		opts.Masters = DefaultClusterMasters
	}
	if opts.Masters > 255 {
		tb.Fatalf("StartCluster: %d masters is more than the harness supports (255)", opts.Masters)
	}
	if opts.ReplicasPerMaster < 0 {
		tb.Fatalf("StartCluster: ReplicasPerMaster %d < 0", opts.ReplicasPerMaster)
	}
	if opts.NodeTimeout <= 0 {
		opts.NodeTimeout = DefaultNodeTimeout
	}
	args := append([]string{
		"--cluster-enabled", "yes",
		"--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
	}, opts.Args...)

	ctx, cancel := context.WithTimeout(context.Background(), clusterSetupTimeout)
	defer cancel()

	c := &Cluster{ids: make(map[*Server]string)}
	n := opts.Masters * (1 + opts.ReplicasPerMaster)
	// Launch every process first and only then wait: they start in parallel.
	for range n {
		s := newServer(tb, path, true, args)
		if err := s.launch(false); err != nil {
			tb.Fatalf("start cluster node: %v", err)
		}
		c.nodes = append(c.nodes, s)
	}
	for _, s := range c.nodes {
		if err := s.finishStart(ctx, false); err != nil {
			tb.Fatalf("start cluster node: %v\n%s", err, s.Log())
		}
	}
	if err := c.setup(ctx, opts); err != nil {
		tb.Fatalf("StartCluster: %v", err)
	}
	return c
}

// setup turns the started nodes into a cluster: slots, epochs, meet, replicate, converge.
func (c *Cluster) setup(ctx context.Context, opts ClusterOptions) error {
	for _, s := range c.nodes {
		v, err := s.Call(ctx, "CLUSTER", "MYID")
		if err != nil {
			return err
		}
		c.ids[s] = string(v.Str)
	}
	for i := range opts.Masters {
		m := c.nodes[i]
		lo := i * command.SlotCount / opts.Masters
		hi := (i+1)*command.SlotCount/opts.Masters - 1
		sh := &shard{ranges: [][2]int{{lo, hi}}, master: m}
		for r := range opts.ReplicasPerMaster {
			sh.replicas = append(sh.replicas, c.nodes[opts.Masters+i*opts.ReplicasPerMaster+r])
		}
		c.shards = append(c.shards, sh)
		for slot := lo; slot <= hi; slot++ {
			c.owner[slot] = uint8(i)
		}
		if _, err := m.Call(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi); err != nil {
			return err
		}
	}
	// Distinct epochs before the nodes meet, as redis-cli --cluster create does: otherwise
	// every node starts at epoch 0 and the collision is resolved one gossip round at a time.
	for i, s := range c.nodes {
		if _, err := s.Call(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1); err != nil {
			return err
		}
	}
	first := c.nodes[0]
	for _, s := range c.nodes[1:] {
		s.mu.Lock()
		port, bus := s.port, s.busPort
		s.mu.Unlock()
		// The bus port is not port+10000 (the harness picks a free one), so MEET names it.
		if _, err := first.Call(ctx, "CLUSTER", "MEET", "127.0.0.1", port, bus); err != nil {
			return err
		}
	}
	// A node can only REPLICATE a master it knows, so wait for the gossip to spread first.
	if err := c.poll(ctx, "all nodes know each other", c.allKnown); err != nil {
		return err
	}
	for _, sh := range c.shards {
		for _, r := range sh.replicas {
			if _, err := r.Call(ctx, "CLUSTER", "REPLICATE", c.ids[sh.master]); err != nil {
				return err
			}
		}
	}
	return c.poll(ctx, "cluster converged", c.converged)
}

// poll calls check every clusterPoll until it returns nil, or fails with check's last complaint
// when ctx ends.
func (c *Cluster) poll(ctx context.Context, what string, check func(context.Context) error) error {
	t := time.NewTicker(clusterPoll)
	defer t.Stop()
	for {
		err := check(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting until %s: %w (last check: %v)", what, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr string
	flags    []string
	master   string // "-" for masters
	ranges   [][2]int
}

func (n clusterNode) has(flag string) bool { return slices.Contains(n.flags, flag) }

// parseClusterNodes parses CLUSTER NODES output. Slot-migration entries ("[...]") are skipped.
func parseClusterNodes(text string) ([]clusterNode, error) {
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q: want at least 8 fields", line)
		}
		n := clusterNode{id: f[0], flags: strings.Split(f[2], ","), master: f[3]}
		// ip:port@cport[,hostname]
		n.addr, _, _ = strings.Cut(f[1], "@")
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue
			}
			lo, hi, isRange := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("CLUSTER NODES slot %q: %w", r, err)
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("CLUSTER NODES slot %q: %w", r, err)
				}
			}
			n.ranges = append(n.ranges, [2]int{a, b})
		}
		out = append(out, n)
	}
	return out, nil
}

func (c *Cluster) clusterNodes(ctx context.Context, s *Server) ([]clusterNode, error) {
	v, err := s.Call(ctx, "CLUSTER", "NODES")
	if err != nil {
		return nil, err
	}
	return parseClusterNodes(string(v.Str))
}

// allKnown checks that every node lists every other node, none of them still in handshake.
func (c *Cluster) allKnown(ctx context.Context) error {
	for _, s := range c.nodes {
		view, err := c.clusterNodes(ctx, s)
		if err != nil {
			return err
		}
		if len(view) != len(c.nodes) {
			return fmt.Errorf("%s knows %d of %d nodes", s.Addr(), len(view), len(c.nodes))
		}
		for _, n := range view {
			if n.has("handshake") || n.has("noaddr") {
				return fmt.Errorf("%s sees %s in state %v", s.Addr(), n.addr, n.flags)
			}
		}
	}
	return nil
}

// converged checks, on every running node: cluster_state:ok, the roles, masters and slot ranges
// the harness expects for every running node, none of them flagged failing, and for running
// replicas an established replication link. Stopped nodes are left out of the checks (others
// may flag them as failing).
func (c *Cluster) converged(ctx context.Context) error {
	c.mu.RLock()
	type want struct {
		master string // "-" for a master
		ranges [][2]int
	}
	expect := make(map[string]want, len(c.nodes))
	var replicas []*Server
	for _, sh := range c.shards {
		expect[c.ids[sh.master]] = want{master: "-", ranges: sh.ranges}
		for _, r := range sh.replicas {
			expect[c.ids[r]] = want{master: c.ids[sh.master]}
			replicas = append(replicas, r)
		}
	}
	c.mu.RUnlock()
	running := make(map[string]bool, len(c.nodes))
	for _, s := range c.nodes {
		running[c.ids[s]] = s.Running()
	}

	for _, s := range c.nodes {
		if !running[c.ids[s]] {
			continue
		}
		info, err := s.Call(ctx, "CLUSTER", "INFO")
		if err != nil {
			return err
		}
		if st := redis.ParseInfo(string(info.Str))["cluster_state"]; st != "ok" {
			return fmt.Errorf("%s: cluster_state:%s", s.Addr(), st)
		}
		view, err := c.clusterNodes(ctx, s)
		if err != nil {
			return err
		}
		seen := 0
		for _, n := range view {
			if isRunning, known := running[n.id]; known && !isRunning {
				continue
			}
			w, ok := expect[n.id]
			if !ok {
				return fmt.Errorf("%s lists node %s %s %v, which the harness does not expect", s.Addr(), n.id, n.addr, n.flags)
			}
			seen++
			for _, bad := range []string{"fail", "fail?", "handshake", "noaddr"} {
				if n.has(bad) {
					return fmt.Errorf("%s sees %s flagged %v", s.Addr(), n.addr, n.flags)
				}
			}
			isMaster := w.master == "-"
			if n.has("master") != isMaster || n.master != w.master {
				return fmt.Errorf("%s sees %s as %v of %s, want master %s", s.Addr(), n.addr, n.flags, n.master, w.master)
			}
			if !slices.Equal(n.ranges, w.ranges) {
				return fmt.Errorf("%s sees %s serving slots %v, want %v", s.Addr(), n.addr, n.ranges, w.ranges)
			}
		}
		if seen != len(expect) {
			return fmt.Errorf("%s knows %d of the %d nodes expected", s.Addr(), seen, len(expect))
		}
	}
	for _, r := range replicas {
		info, err := r.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if info["master_link_status"] != "up" {
			return fmt.Errorf("replica %s: master_link_status:%s", r.Addr(), info["master_link_status"])
		}
	}
	return nil
}

// Refresh replaces the harness's slot map and roles with what the cluster itself reports
// (CLUSTER NODES of a running node), e.g. after a killed master was replaced by its replica,
// or a restarted node rejoined as a replica. Stopped replicas are left out. The map is kept
// unchanged, and an error returned, while the reported slots do not cover all 16384.
func (c *Cluster) Refresh(ctx context.Context) error {
	byID := make(map[string]*Server, len(c.nodes))
	for s, id := range c.ids {
		byID[id] = s
	}
	var view []clusterNode
	var err error
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		if view, err = c.clusterNodes(ctx, s); err == nil {
			break
		}
	}
	if view == nil {
		return fmt.Errorf("refresh cluster map: no running node answered CLUSTER NODES (last error: %v)", err)
	}
	var shards []*shard
	byMaster := make(map[string]*shard)
	for _, n := range view {
		if !n.has("master") || len(n.ranges) == 0 {
			continue
		}
		s := byID[n.id]
		if s == nil {
			return fmt.Errorf("refresh cluster map: unknown node %s %s", n.id, n.addr)
		}
		sh := &shard{ranges: n.ranges, master: s}
		shards = append(shards, sh)
		byMaster[n.id] = sh
	}
	if len(shards) > 255 {
		return fmt.Errorf("refresh cluster map: %d masters, more than the harness supports", len(shards))
	}
	slices.SortFunc(shards, func(a, b *shard) int { return a.ranges[0][0] - b.ranges[0][0] })
	var owner [command.SlotCount]uint8
	covered := 0
	for i, sh := range shards {
		for _, r := range sh.ranges {
			for slot := r[0]; slot <= r[1]; slot++ {
				owner[slot] = uint8(i)
				covered++
			}
		}
	}
	if covered != command.SlotCount {
		return fmt.Errorf("refresh cluster map: the masters serve %d of %d slots", covered, command.SlotCount)
	}
	for _, n := range view {
		s := byID[n.id]
		if sh := byMaster[n.master]; sh != nil && n.has("slave") && s != nil && s.Running() {
			sh.replicas = append(sh.replicas, s)
		}
	}
	c.mu.Lock()
	c.shards, c.owner = shards, owner
	c.mu.Unlock()
	return nil
}

// Nodes returns every node, masters and replicas.
func (c *Cluster) Nodes() []*Server { return slices.Clone(c.nodes) }

// Masters returns the current masters, in slot order.
func (c *Cluster) Masters() []*Server {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*Server, len(c.shards))
	for i, sh := range c.shards {
		out[i] = sh.master
	}
	return out
}

// Replicas returns the current replicas of all masters.
func (c *Cluster) Replicas() []*Server {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*Server
	for _, sh := range c.shards {
		out = append(out, sh.replicas...)
	}
	return out
}

// ReplicasOf returns the current replicas of master (none when it is not a master).
func (c *Cluster) ReplicasOf(master *Server) []*Server {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, sh := range c.shards {
		if sh.master == master {
			return slices.Clone(sh.replicas)
		}
	}
	return nil
}

// NodeID returns the cluster node ID of s.
func (c *Cluster) NodeID(s *Server) string { return c.ids[s] }

// SlotRanges returns the inclusive slot ranges master serves.
func (c *Cluster) SlotRanges(master *Server) [][2]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, sh := range c.shards {
		if sh.master == master {
			return slices.Clone(sh.ranges)
		}
	}
	return nil
}

// MasterForKey returns the master serving key's slot (hash tags respected).
func (c *Cluster) MasterForKey(key string) *Server {
	return c.MasterForSlot(int(command.SlotString(key)))
}

// MasterForSlot returns the master serving slot.
func (c *Cluster) MasterForSlot(slot int) *Server {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.shards[c.owner[slot&(command.SlotCount-1)]].master
}

// DBs is [0]: a cluster has only database 0.
func (c *Cluster) DBs() []int { return []int{0} }

// Addrs returns the addresses of all nodes, e.g. as seed addresses for a cluster client.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		out[i] = s.Addr()
	}
	return out
}

// Call sends a command to the master of its key, taken to be the first argument after the
// command name, and follows one MOVED redirection. Keyless commands go to the first master.
func (c *Cluster) Call(ctx context.Context, args ...any) (resp.Value, error) {
	target := c.Masters()[0]
	if len(args) > 1 {
		target = c.MasterForKey(argString(args[1]))
	}
	v, err := target.Call(ctx, args...)
	var re *resp.Error
	if errors.As(err, &re) {
		if _, addr, ok := re.IsMoved(); ok {
			for _, s := range c.nodes {
				if s.Addr() == addr {
					return s.Call(ctx, args...)
				}
			}
		}
	}
	return v, err
}

// Do is Call that fails the test on any error, an error reply included.
func (c *Cluster) Do(tb testing.TB, args ...any) resp.Value {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	v, err := c.Call(ctx, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return v
}

// Failover promotes a replica of master with CLUSTER FAILOVER (the coordinated manual failover:
// no acknowledged write is lost) and waits until the replica serves the slots, master has become
// its replica, every node agrees, and every replication link is up. master must be running and
// have a replica. Returns the new master.
func (c *Cluster) Failover(tb testing.TB, master *Server) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterSetupTimeout)
	defer cancel()
	promoted, err := c.failover(ctx, master)
	if err != nil {
		tb.Fatalf("failover of %s: %v", master, err)
	}
	return promoted
}

func (c *Cluster) failover(ctx context.Context, master *Server) (*Server, error) {
	c.mu.RLock()
	var sh *shard
	for _, x := range c.shards {
		if x.master == master {
			sh = x
		}
	}
	c.mu.RUnlock()
	if sh == nil {
		return nil, fmt.Errorf("%s is not a master of this cluster", master)
	}
	if len(sh.replicas) == 0 {
		return nil, fmt.Errorf("%s has no replica to promote; use ClusterOptions.ReplicasPerMaster", master)
	}
	promoted := sh.replicas[0]
	if _, err := promoted.Call(ctx, "CLUSTER", "FAILOVER"); err != nil {
		return nil, err
	}
	// Wait for the promotion itself before rewriting the expected map, so that a failure says
	// whether the failover or the convergence afterwards is what did not happen.
	err := c.poll(ctx, promoted.Addr()+" promoted", func(ctx context.Context) error {
		info, err := promoted.Info(ctx, "replication")
		if err != nil {
			return err
		}
		if info["role"] != "master" {
			return fmt.Errorf("%s has role:%s", promoted.Addr(), info["role"])
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	sh.master = promoted
	sh.replicas = append(slices.Clone(sh.replicas[1:]), master)
	c.mu.Unlock()
	if err := c.poll(ctx, "cluster converged after failover", c.converged); err != nil {
		return nil, err
	}
	return promoted, nil
}

// WaitHealthy waits until the cluster has settled, whatever happened to it: every running node
// reports cluster_state:ok and the same slot map and roles, and every running replica's link
// is up. The harness then adopts that map (see Refresh), so after a master was killed and its
// replica promoted, MasterForKey, Masters and Replicas follow. A stopped master with no
// replica to take over keeps the cluster from being healthy.
func (c *Cluster) WaitHealthy(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterSetupTimeout)
	defer cancel()
	err := c.poll(ctx, "cluster healthy", func(ctx context.Context) error {
		if err := c.Refresh(ctx); err != nil {
			return err
		}
		return c.converged(ctx)
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// argString renders a command argument as the string a server would see.
func argString(a any) string {
	switch v := a.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	default:
		return fmt.Sprint(v)
	}
}

// snapshotRouter returns a key → master function over a copy of the current slot map.
func (c *Cluster) snapshotRouter() func(string) *Server {
	c.mu.RLock()
	masters := make([]*Server, len(c.shards))
	for i, sh := range c.shards {
		masters[i] = sh.master
	}
	owner := c.owner
	c.mu.RUnlock()
	return func(key string) *Server { return masters[owner[command.SlotString(key)]] }
}
