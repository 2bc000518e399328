package clustersource

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/task"
)

// destination is the orchestrator's view of the destination: where its own keys and
// the shard tasks' positions live.
type destination struct {
	opts    redis.Options
	cluster bool
}

func openDestination(ctx context.Context, opts redis.Options) (*destination, error) {
	on, err := cluster.Enabled(ctx, opts)
	if err != nil {
		return nil, err
	}
	opts.DB = checkpoint.DB
	return &destination{opts: opts, cluster: on}, nil
}

// ownName is the name a task's keys are derived from on this destination: on a cluster
// the name in a hash tag, as the tasks themselves do, so that one node holds all of them.
func (d *destination) ownName(name string) string {
	if d.cluster {
		return "{" + name + "}"
	}
	return name
}

// conn connects to the node that holds key.
func (d *destination) conn(ctx context.Context, key string) (*redis.Conn, error) {
	o := d.opts
	if d.cluster {
		seed, err := redis.Dial(ctx, o)
		if err != nil {
			return nil, fmt.Errorf("connect to destination %s: %w", o.Addr, err)
		}
		topo, err := cluster.Fetch(ctx, seed, o.TLS != nil)
		seed.Close()
		if err != nil {
			return nil, fmt.Errorf("destination %s: %w", o.Addr, err)
		}
		m, ok := topo.Master(command.SlotString(key))
		if !ok {
			return nil, fmt.Errorf("destination %s: no master serves the slot of %s: fix the cluster (redis-cli --cluster fix)", o.Addr, key)
		}
		o.Addr = m.Addr
	}
	c, err := redis.Dial(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connect to destination %s: %w", o.Addr, err)
	}
	return c, nil
}

// checkEmpty is the existing-keys check (--existing block) on every master.
func (d *destination) checkEmpty(ctx context.Context) error {
	if !d.cluster {
		return snapshot.CheckEmpty(ctx, d.opts, task.KeyPrefix)
	}
	addrs, err := cluster.MasterAddrs(ctx, d.opts)
	if err != nil {
		return err
	}
	for _, addr := range addrs {
		o := d.opts
		o.Addr = addr
		if err := snapshot.CheckEmpty(ctx, o, task.KeyPrefix); err != nil {
			return fmt.Errorf("cluster master %s: %w", addr, err)
		}
	}
	return nil
}

// layout is what the destination records about a cluster-source task, in
// ferry:shards:<task>: how it first started (whether it owns the destination) and the
// names of its shard tasks, so that a restart finds them whatever the source's topology
// has become meanwhile.
type layout struct {
	existing string // checkpoint.ExistingBlock or ExistingOverwrite
	shards   []string
}

func (l layout) String() string {
	return "existing=" + l.existing + " shards=" + strings.Join(l.shards, ",")
}

func parseLayout(s string) (layout, error) {
	var l layout
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return layout{}, fmt.Errorf("field %q is not name=value", f)
		}
		switch k {
		case "existing":
			if v != checkpoint.ExistingBlock && v != checkpoint.ExistingOverwrite {
				return layout{}, fmt.Errorf("existing=%q is not block or overwrite", v)
			}
			l.existing = v
		case "shards":
			for _, n := range strings.Split(v, ",") {
				if n != "" {
					l.shards = append(l.shards, n)
				}
			}
		}
	}
	if l.existing == "" || len(l.shards) == 0 {
		return layout{}, errors.New("want existing=<block|overwrite> shards=<name>,…")
	}
	return l, nil
}

func (d *destination) layoutKey(name string) string {
	return task.KeyPrefix + "shards:" + d.ownName(name)
}

// loadLayout reads the task's layout; found is false on a first start.
func (d *destination) loadLayout(ctx context.Context, name string) (l layout, found bool, err error) {
	key := d.layoutKey(name)
	c, err := d.conn(ctx, key)
	if err != nil {
		return layout{}, false, err
	}
	defer c.Close()
	v, err := c.Do(ctx, "GET", key)
	if err != nil {
		return layout{}, false, fmt.Errorf("read %s on destination %s: %w", key, c.Addr(), err)
	}
	if v.Null {
		return layout{}, false, nil
	}
	if l, err = parseLayout(v.Text()); err != nil {
		return layout{}, false, fmt.Errorf("%s on destination %s holds %q: %w; delete it to start the task afresh", key, c.Addr(), v.Text(), err)
	}
	return l, true, nil
}

func (d *destination) saveLayout(ctx context.Context, name string, l layout) error {
	key := d.layoutKey(name)
	c, err := d.conn(ctx, key)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Do(ctx, "SET", key, l.String()); err != nil {
		return fmt.Errorf("write %s on destination %s: %w", key, c.Addr(), err)
	}
	return nil
}

// checkpointOf reads a shard task's checkpoint; zero when it has none.
func (d *destination) checkpointOf(ctx context.Context, shardName string) (checkpoint.State, error) {
	own := d.ownName(shardName)
	c, err := d.conn(ctx, checkpoint.KeysFor(own).Checkpoint)
	if err != nil {
		return checkpoint.State{}, err
	}
	defer c.Close()
	return checkpoint.Load(ctx, c, own)
}
