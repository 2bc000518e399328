package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/internal/testutil"
	"github.com/ferrysync/ferry/internal/verify"
)

// TestDBMapPrefixFlags: --db-map takes key prefixes in ferry sync and rdb restore (the
// filter), ferry verify (the comparison) and ferry precheck (which only needs the
// databases), and a bad prefix is a usage error naming the flag.
func TestDBMapPrefixFlags(t *testing.T) {
	const m = "0:prefix=db0:,1:prefix=db1:,2:5:prefix=x:"

	fs := pflag.NewFlagSet("sync", pflag.ContinueOnError)
	sel := addFilterFlags(fs)
	if err := fs.Parse([]string{"--dbs", "0-2", "--db-map", m}); err != nil {
		t.Fatal(err)
	}
	flt, err := sel.filter()
	if err != nil || flt == nil {
		t.Fatalf("sync --db-map %s: %v", m, err)
	}
	if d, _ := flt.KeepDB(1); d != 0 || string(flt.KeyPrefix(1)) != "db1:" || string(flt.KeyPrefix(2)) != "x:" {
		t.Errorf("db 1 → %d prefix %q, db 2 prefix %q", d, flt.KeyPrefix(1), flt.KeyPrefix(2))
	}
	if d, _ := flt.KeepDB(2); d != 5 {
		t.Errorf("db 2 → %d, want 5", d)
	}
	for _, bad := range []string{"1:prefix=db1:", "1:prefix={x}:,0:prefix=a", "0:prefix=a:,1:prefix=a:b:"} {
		fs := pflag.NewFlagSet("sync", pflag.ContinueOnError)
		sel := addFilterFlags(fs)
		if err := fs.Parse([]string{"--db-map", bad}); err != nil {
			t.Fatal(err)
		}
		if _, err := sel.filter(); err == nil || !strings.Contains(err.Error(), "--db-map") && !strings.Contains(err.Error(), "prefix") {
			t.Errorf("sync --db-map %s: %v; want a usage error about the prefix", bad, err)
		}
	}

	var o verify.Options
	if err := verifySelection(&o, "", m, nil, nil); err != nil {
		t.Fatal(err)
	}
	if o.Selection.Map[1] != 0 || o.Selection.Prefix[1] != "db1:" || o.Selection.DestKey(2, "k") != "x:k" {
		t.Errorf("verify selection %+v", o.Selection)
	}

	pfs := pflag.NewFlagSet("precheck", pflag.ContinueOnError)
	var pf precheckFlags
	pf.register(pfs)
	if err := pfs.Parse([]string{"--source", "redis://127.0.0.1:1", "--target", "redis://127.0.0.1:2", "--db-map", m}); err != nil {
		t.Fatal(err)
	}
	cfg, err := pf.config(pfs)
	if err != nil || cfg.DBMap[0] != 0 || cfg.DBMap[1] != 0 || cfg.DBMap[2] != 5 {
		t.Errorf("precheck --db-map %s: %v, %v", m, cfg.DBMap, err)
	}
}

// TestRDBRestorePrefixIntoCluster restores a file with the same key names in two
// databases into a 3-master cluster under --db-map 0:prefix=db0:,1:prefix=db1:, through
// RESTORE payloads and, for big values, the command path; every key K of database N is
// dbN:K there. ferry verify with the same --db-map then exits 0, and after one changed
// value exits non-zero naming the key and its destination name. A sync from the cluster
// with a prefix is refused (not supported with a cluster source yet).
func TestRDBRestorePrefixIntoCluster(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	cl := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 71, DBs: []int{0, 1}, TTL: true, Large: true, Keys: 200,
		Skip: []string{"function", "crossdb"}})
	if err := w.Fill(ctx, src, 2000); err != nil {
		t.Fatal(err)
	}
	src.Do(t, "SAVE")
	file := filepath.Join(src.Dir(), "dump.rdb")
	const m = "0:prefix=db0:,1:prefix=db1:"
	target := "redis://" + cl.Addrs()[0]

	code, out, errs := run(t, "rdb", "restore", file, "--target", target, "--no-progress", "--db-map", m, "--big-key-threshold", "2048")
	if code != ExitOK || !strings.Contains(out, "keys (") || strings.Contains(out, "(0 as commands") {
		t.Fatalf("rdb restore --db-map %s: code %d, want some keys as commands (the renamed command path)\n%s%s", m, code, out, errs)
	}
	n := 0
	c := src.Conn(t)
	for _, db := range []int{0, 1} {
		if _, err := c.Do(ctx, "SELECT", db); err != nil {
			t.Fatal(err)
		}
		keys, err := c.Do(ctx, "KEYS", "*")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys.Elems {
			name := fmt.Sprintf("db%d:%s", db, k.Str)
			sd, err := c.Do(ctx, "DEBUG", "DIGEST-VALUE", k.Str)
			if err != nil {
				t.Fatal(err)
			}
			dd, err := cl.MasterForKey(name).Call(ctx, "DEBUG", "DIGEST-VALUE", name)
			if err != nil || fmt.Sprint(sd) != fmt.Sprint(dd) {
				t.Fatalf("db %d key %q: %q on the cluster is %v (%v), want %v", db, k.Str, name, dd, err, sd)
			}
			n++
		}
	}
	var total int64
	for _, ms := range cl.Masters() {
		total += ms.Do(t, "DBSIZE").Int
	}
	if n == 0 || total != int64(n) {
		t.Fatalf("the cluster holds %d keys, the file %d", total, n)
	}

	args := []string{"verify", "--source", "redis://" + src.Addr(), "--target", target, "--db-map", m, "--rounds", "1"}
	if code, out, errs := run(t, args...); code != ExitOK {
		t.Fatalf("verify --db-map %s after the restore: code %d\n%s%s", m, code, out, errs)
	}
	// One changed value: a key both databases have, changed under db1: only.
	if _, err := c.Do(ctx, "SELECT", 1); err != nil {
		t.Fatal(err)
	}
	c.Do(ctx, "SET", "same-in-both", "source")
	if _, err := c.Do(ctx, "SELECT", 0); err != nil {
		t.Fatal(err)
	}
	c.Do(ctx, "SET", "same-in-both", "source")
	for _, k := range []string{"db0:same-in-both", "db1:same-in-both"} {
		v := "source"
		if k == "db1:same-in-both" {
			v = "changed"
		}
		if _, err := cl.Call(ctx, "SET", k, v); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs = run(t, args...)
	if code == ExitOK || !strings.Contains(out, `"same-in-both" (destination "db1:same-in-both")`) || strings.Contains(out, "db0:same-in-both") {
		t.Fatalf("verify after one changed value: code %d\n%s%s", code, out, errs)
	}

	// A cluster source cannot take a prefix yet (its shards find their keys on the
	// destination by slot): refused before anything starts.
	code, _, errs = run(t, "sync", "--source", target, "--target", "redis://"+src.Addr(), "--db-map", "0:prefix=c:", "--data-dir", t.TempDir(), "--no-progress")
	if code != ExitUsage || !strings.Contains(errs, "not supported with a cluster source") {
		t.Fatalf("sync from a cluster with a key prefix: code %d, stderr %s", code, errs)
	}
}
