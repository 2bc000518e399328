package cluster

import (
	"context"
	"fmt"

	"github.com/ferrysync/ferry/internal/redis"
)

// Enabled says whether the server at opts is a cluster node (INFO cluster reports
// cluster_enabled:1), so that a sync or restore can pick a Router instead of one writer
// without the user saying which kind of destination it is.
func Enabled(ctx context.Context, opts redis.Options) (bool, error) {
	opts.DB = 0 // a cluster node refuses SELECT of any other
	c, err := redis.Dial(ctx, opts)
	if err != nil {
		return false, fmt.Errorf("connect to destination %s: %w", opts.Addr, err)
	}
	defer c.Close()
	info, err := c.Info(ctx, "cluster")
	if err != nil {
		return false, fmt.Errorf("destination %s: INFO cluster: %w", opts.Addr, err)
	}
	return info["cluster_enabled"] == "1", nil
}

// MasterAddrs returns the addresses of the masters serving slots, in slot order, read
// from the node at opts (for checks that must look at every master, such as whether the
// cluster holds keys).
func MasterAddrs(ctx context.Context, opts redis.Options) ([]string, error) {
	opts.DB = 0
	c, err := redis.Dial(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to destination %s: %w", opts.Addr, err)
	}
	defer c.Close()
	t, err := Fetch(ctx, c, opts.TLS != nil)
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", opts.Addr, err)
	}
	var addrs []string
	for _, n := range t.Masters() {
		addrs = append(addrs, n.Addr)
	}
	return addrs, nil
}
