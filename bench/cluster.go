package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ferrysync/ferry/internal/command"
)

// clusterMasters is the size of the destination cluster.
const clusterMasters = 3

// cluster is a destination Redis Cluster of masters only, slots split evenly in order:
// master i owns [i·16384/n, (i+1)·16384/n).
type cluster struct {
	nodes    []*server
	busPorts []int
}

// clusterPart is the master that owns key's slot, as an index into cluster.nodes.
func clusterPart(key []byte) int {
	slot := int(command.Slot(key))
	for i := range clusterMasters - 1 {
		if slot < (i+1)*command.SlotCount/clusterMasters {
			return i
		}
	}
	return clusterMasters - 1
}

// startCluster starts clusterMasters servers in cluster mode, gives each its slots, joins
// them and waits until every node sees every slot served.
func startCluster(ctx context.Context, root, bin, name string) (*cluster, error) {
	c := &cluster{}
	for i := range clusterMasters {
		busPort, err := freePort()
		if err != nil {
			c.stop()
			return nil, err
		}
		s, err := startServer(ctx, root, bin, fmt.Sprintf("%s-%d", name, i),
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(busPort), "--cluster-node-timeout", "5000")
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes = append(c.nodes, s)
		c.busPorts = append(c.busPorts, busPort)
	}
	for i, s := range c.nodes {
		lo := i * command.SlotCount / clusterMasters
		hi := (i+1)*command.SlotCount/clusterMasters - 1
		if _, err := s.do(ctx, "CLUSTER", "ADDSLOTSRANGE", lo, hi); err != nil {
			c.stop()
			return nil, err
		}
		if i > 0 {
			// The bus port is not port+10000 here, so MEET must name it.
			if _, err := c.nodes[0].do(ctx, "CLUSTER", "MEET", "127.0.0.1", s.port, c.busPorts[i]); err != nil {
				c.stop()
				return nil, err
			}
		}
	}
	deadline := time.Now().Add(time.Minute)
	for !c.ready(ctx) {
		if time.Now().After(deadline) {
			c.stop()
			return nil, errors.New("cluster not ready after a minute")
		}
		select {
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return c, nil
}

// ready: every node says cluster_state:ok and knows all the masters.
func (c *cluster) ready(ctx context.Context) bool {
	for _, s := range c.nodes {
		v, err := s.do(ctx, "CLUSTER", "INFO")
		if err != nil || !strings.Contains(string(v.Str), "cluster_state:ok") ||
			!strings.Contains(string(v.Str), "cluster_known_nodes:"+strconv.Itoa(clusterMasters)) {
			return false
		}
	}
	return true
}

func (c *cluster) stop() {
	for _, s := range c.nodes {
		s.stop()
	}
}

func (c *cluster) flush(ctx context.Context) error {
	for _, s := range c.nodes {
		if err := s.flush(ctx); err != nil {
			return err
		}
	}
	return nil
}

// cpu is the CPU seconds of all the masters together.
func (c *cluster) cpu(ctx context.Context) (float64, error) {
	var sum float64
	for _, s := range c.nodes {
		v, err := s.cpu(ctx)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// sameKeys checks that the cluster holds as many keys as src (Ferry's own keys removed).
func (c *cluster) sameKeys(ctx context.Context, src *server) error {
	want, err := src.dbsize(ctx)
	if err != nil {
		return err
	}
	var got int64
	for _, s := range c.nodes {
		if err := s.deletePrefix(ctx, "ferry:"); err != nil {
			return err
		}
		n, err := s.dbsize(ctx)
		if err != nil {
			return err
		}
		got += n
	}
	if got != want {
		return fmt.Errorf("the cluster has %d keys, the source %d", got, want)
	}
	return nil
}
