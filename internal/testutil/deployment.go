package testutil

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Deployment is a set of Redis processes holding one dataset: a single *Server or a *Cluster.
// The oracles (CompareKeys, VerifyExact) and the workload use it to find the data.
type Deployment interface {
	// Masters returns the servers that accept writes; together they hold every key.
	Masters() []*Server
	// DBs returns the databases the deployment has: 0..databases-1 for a server, [0] for a cluster.
	DBs() []int
	// MasterForKey returns the master that holds key.
	MasterForKey(key string) *Server
}

var (
	_ Deployment = (*Server)(nil)
	_ Deployment = (*Cluster)(nil)
)

// defaultDatabases is redis-server's default for the databases setting.
const defaultDatabases = 16

// Masters is [s]: a server is a deployment of one.
func (s *Server) Masters() []*Server { return []*Server{s} }

// MasterForKey is s: a server holds every key.
func (s *Server) MasterForKey(string) *Server { return s }

// DBs returns 0..databases-1, from the --databases argument it was started with (default 16).
func (s *Server) DBs() []int {
	s.mu.Lock()
	n := defaultDatabases
	for i := 0; i+1 < len(s.args); i++ {
		if strings.EqualFold(s.args[i], "--databases") {
			if v, err := strconv.Atoi(s.args[i+1]); err == nil && v > 0 {
				n = v
			}
		}
	}
	s.mu.Unlock()
	dbs := make([]int, n)
	for i := range dbs {
		dbs[i] = i
	}
	return dbs
}

// Digest returns DEBUG DIGEST of s: a hash of the whole dataset, all databases, including each
// key's absolute expire time. Two servers' digests are equal when they hold the same data, as
// long as no key expires while they are being compared.
func Digest(tb testing.TB, s *Server) string {
	tb.Helper()
	return string(s.Do(tb, "DEBUG", "DIGEST").Str)
}

// keyspaceDBs returns the databases that hold keys on any master of d, from INFO keyspace.
func keyspaceDBs(ctx context.Context, d Deployment) ([]int, error) {
	var dbs []int
	seen := make(map[int]bool)
	for _, m := range d.Masters() {
		info, err := m.Info(ctx, "keyspace")
		if err != nil {
			return nil, err
		}
		for k := range info {
			n, ok := strings.CutPrefix(k, "db")
			if !ok {
				continue
			}
			db, err := strconv.Atoi(n)
			if err != nil {
				return nil, fmt.Errorf("%s: INFO keyspace field %q: %w", m.Addr(), k, err)
			}
			if !seen[db] {
				seen[db] = true
				dbs = append(dbs, db)
			}
		}
	}
	return dbs, nil
}

// hasDB reports whether d has database db.
func hasDB(d Deployment, db int) bool {
	for _, x := range d.DBs() {
		if x == db {
			return true
		}
	}
	return false
}

// withDefaultTimeout gives ctx a deadline when it has none, so a hung server fails a test
// instead of hanging it until the go test timeout.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
