package task

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/internal/checkpoint"
	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/command"
	"github.com/ferrysync/ferry/internal/redis"
	"github.com/ferrysync/ferry/internal/replica"
	"github.com/ferrysync/ferry/internal/snapshot"
	"github.com/ferrysync/ferry/internal/writer"
)

// destination is what a session writes through: a *writer.Writer (one standalone
// server) or a *cluster.Router (one writer per master). Both keep the stream's order per
// key, acknowledge offsets through Applied, and stop with Err once Done is closed.
type destination interface {
	snapshot.Destination
	Applied() int64
	Done() <-chan struct{}
	Err() error
	Close() error
}

var (
	_ destination = (*writer.Writer)(nil)
	_ destination = (*cluster.Router)(nil)
)

// replyErrors are a destination's error replies and connection failures by reason,
// summed over a cluster's masters.
func replyErrors(d destination) map[string]int64 {
	switch d := d.(type) {
	case *writer.Writer:
		return d.Stats().Errors
	case *cluster.Router:
		var out map[string]int64
		for _, ws := range d.Stats().Nodes {
			for reason, n := range ws.Errors {
				if out == nil {
					out = make(map[string]int64)
				}
				out[reason] += n
			}
		}
		return out
	}
	return nil
}

// ckptName is the name the task's own keys on the destination are derived from. On a
// cluster it is the task's name in a hash tag, "{name}", so that the checkpoint, the
// full-sync progress and the marker share one slot: one node holds all three, and the
// end of the full sync (DEL progress, SET checkpoint) stays one transaction.
func (t *Task) ckptName() string {
	if t.cluster {
		return "{" + t.cfg.Name + "}"
	}
	return t.cfg.Name
}

// prepareCluster asks the destination whether it is a cluster node (INFO cluster,
// cluster_enabled:1) and, when it is, adapts the task to it before anything is written:
// the own keys go under one hash tag, and source databases that would land anywhere but
// in database 0 refuse the task. Exactly-once delivery works there with per-slot
// checkpoints (cluster_eo.go).
func (t *Task) prepareCluster(ctx context.Context) error {
	on, err := cluster.Enabled(ctx, t.cfg.Target)
	if err != nil {
		return fmt.Errorf("task %s: %w", t.cfg.Name, err)
	}
	if !on {
		return nil
	}
	if t.cfg.Target.DB != 0 {
		return fmt.Errorf("task %s: the destination %s is a cluster, which has only database 0, but database %d was requested: drop it from the target URL",
			t.cfg.Name, t.cfg.Target.Addr, t.cfg.Target.DB)
	}
	t.cluster = true
	t.keys = checkpoint.KeysFor(t.ckptName())
	if err := t.checkClusterDBs(ctx); err != nil {
		return err
	}
	attrs := []any{"target", t.cfg.Target.Addr, "checkpoint", t.keys.Checkpoint, "delivery", string(t.cfg.Delivery)}
	if t.cfg.Delivery == DeliveryExactlyOnce {
		sk, err := t.slotKeys()
		if err != nil {
			return fmt.Errorf("task %s: %w", t.cfg.Name, err)
		}
		attrs = append(attrs, "slot_checkpoints", sk.Key(0))
	}
	t.log.Info("cluster destination", attrs...)
	return nil
}

// checkClusterDBs refuses source databases the task would write anywhere but database 0:
// those holding keys now (INFO keyspace) and those --dbs names. The rule is the filter's:
// a database lands where --db-map sends it (itself by default); several share database 0
// under key prefixes that keep their keys apart (--db-map 1:prefix=db1:, which the filter
// checks), or without them only with --db-merge. A database that is empty now and written
// later fails the task when its first command arrives (the router refuses it).
func (t *Task) checkClusterDBs(ctx context.Context) error {
	src, err := t.resolveSource(ctx)
	if err != nil {
		return err
	}
	c, err := redis.Dial(ctx, src)
	if err != nil {
		return fmt.Errorf("task %s: connect to source %s: %w", t.cfg.Name, src.Addr, err)
	}
	defer c.Close()
	info, err := c.Info(ctx, "keyspace")
	if err != nil {
		return fmt.Errorf("task %s: read the source's keyspace: %w", t.cfg.Name, err)
	}
	var dbs []int
	for name := range info {
		if db, err := strconv.Atoi(strings.TrimPrefix(name, "db")); err == nil && strings.HasPrefix(name, "db") {
			dbs = append(dbs, db)
		}
	}
	if t.cfg.Filter != nil {
		for _, db := range t.cfg.Filter.SourceDBs() {
			if !slices.Contains(dbs, db) {
				dbs = append(dbs, db)
			}
		}
	}
	slices.Sort(dbs)
	var off []string
	var all []string
	for _, db := range dbs {
		to := db
		if t.cfg.Filter != nil {
			var ok bool
			if to, ok = t.cfg.Filter.KeepDB(db); !ok {
				continue
			}
		}
		all = append(all, strconv.Itoa(db))
		if to != 0 {
			off = append(off, strconv.Itoa(db))
		}
	}
	if len(off) == 0 {
		return nil
	}
	return fmt.Errorf("task %s: the destination %s is a cluster, which has only database 0, and source database(s) %s would go to other databases; nothing was written: %s",
		t.cfg.Name, t.cfg.Target.Addr, strings.Join(off, ", "), clusterDBAdvice(all, off[0]))
}

// clusterDBAdvice says how to send the source databases all (as numbers) into a cluster's
// database 0: one key prefix each first (no collisions), then one database alone, then a
// merge.
func clusterDBAdvice(all []string, one string) string {
	if len(all) == 1 {
		return fmt.Sprintf("map it with --db-map %s:0 (or give its keys a prefix with --db-map %s:prefix=db%s:)", one, one, one)
	}
	prefixes := make([]string, len(all))
	zeros := make([]string, len(all))
	for i, db := range all {
		prefixes[i] = db + ":prefix=db" + db + ":"
		zeros[i] = db + ":0"
	}
	return fmt.Sprintf("give each database a key prefix in database 0 with --db-map %s (database N's key K becomes dbN:K, so equal names cannot collide), or sync one database with --dbs (e.g. --dbs %s --db-map %s:0), or merge them under their own names with --db-map %s --db-merge (keys with the same name in two databases then overwrite each other)",
		strings.Join(prefixes, ","), one, one, strings.Join(zeros, ","))
}

// openDestination opens the session's writer: one for a standalone server, a router over
// the masters for a cluster (with per-slot checkpoints in exactly-once delivery).
func (t *Task) openDestination(ctx context.Context, wopts writer.Options) (destination, error) {
	if !t.cluster {
		return writer.Open(ctx, wopts)
	}
	wopts.Reconcile = t.reconcileCluster
	opts := cluster.Options{
		Target: wopts.Target,
		Writer: wopts,
		// Co-location's temporary keys under Ferry's prefix: a comparison or a reverse
		// task skips them like the task's other keys.
		TempKeyPrefix: KeyPrefix,
		Logger:        t.log,
		Registerer:    t.cfg.Registerer,
	}
	if t.cfg.Delivery == DeliveryExactlyOnce {
		ck, err := t.clusterCheckpoints()
		if err != nil {
			return nil, err
		}
		opts.Checkpoints = ck
	}
	return cluster.Open(ctx, opts)
}

// dialClusterControl connects to the master serving the slot of the task's own keys.
func (t *Task) dialClusterControl(ctx context.Context) (*redis.Conn, error) {
	o := t.cfg.Target
	o.DB = checkpoint.DB
	seed, err := redis.Dial(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connect to destination %s: %w", o.Addr, err)
	}
	topo, err := cluster.Fetch(ctx, seed, o.TLS != nil)
	seed.Close()
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", o.Addr, err)
	}
	slot := command.SlotString(t.keys.Checkpoint)
	m, ok := topo.Master(slot)
	if !ok {
		return nil, fmt.Errorf("destination %s: no master serves slot %d of the task's keys (%s): fix the cluster (redis-cli --cluster fix)", o.Addr, slot, t.keys.Checkpoint)
	}
	o.Addr = m.Addr
	c, err := redis.Dial(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("connect to destination %s (master of the task's keys): %w", m.Addr, err)
	}
	return c, nil
}

// checkClusterEmpty is the existing-keys check on every master of a cluster.
func (t *Task) checkClusterEmpty(ctx context.Context) error {
	addrs, err := cluster.MasterAddrs(ctx, t.cfg.Target)
	if err != nil {
		return err
	}
	for _, addr := range addrs {
		o := t.cfg.Target
		o.Addr = addr
		if err := snapshot.CheckEmpty(ctx, o, KeyPrefix); err != nil {
			return fmt.Errorf("cluster master %s: %w", addr, err)
		}
	}
	return nil
}

// delivery is the delivery the task runs with, for the status.
func (t *Task) delivery() Delivery { return t.cfg.Delivery }

// streamDB is the destination DB of a stream command the filter did not decide. A
// cluster has only database 0 and the router refuses any other, so there MULTI, EXEC and
// PUBLISH (which select nothing) go without one; data commands keep their source DB, and
// one outside database 0 fails the task with the router's advice to map it.
func (t *Task) streamDB(cmd *replica.Command) int {
	if t.cluster && cmd.Class != replica.ClassData {
		return -1
	}
	return commandDB(cmd)
}
