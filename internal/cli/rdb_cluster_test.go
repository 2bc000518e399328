package cli

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/internal/testutil"
)

// TestRDBRestoreIntoCluster saves a standalone server's data (every type, TTLs, keys in
// many slots) and restores the file into a 3-master cluster: the keys must land on the
// masters of their slots with identical values, which Redis's DEBUG DIGEST-VALUE proves;
// restoring again with the default --existing block is refused, since the cluster now
// holds keys on every master.
func TestRDBRestoreIntoCluster(t *testing.T) {
	ctx := context.Background()
	src := testutil.StartServer(t)
	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 11, TTL: true, Large: true, Keys: 1500,
		Skip: []string{"function"}})
	if err := w.Fill(ctx, src, 4000); err != nil {
		t.Fatal(err)
	}
	src.Do(t, "SAVE")
	file := filepath.Join(src.Dir(), "dump.rdb")
	dst := testutil.StartCluster(t, testutil.ClusterOptions{Masters: 3})

	code, out, errText := run(t, "rdb", "restore", file, "--target", "redis://"+dst.Addrs()[0], "--no-progress")
	if code != 0 {
		t.Fatalf("ferry rdb restore into the cluster: exit %d\n%s%s", code, out, errText)
	}
	if !strings.Contains(out, "restored") {
		t.Fatalf("no summary line: %q", out)
	}
	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{})
	if err := w.VerifyExact(ctx, dst); err != nil {
		t.Fatal(err)
	}
	for _, m := range dst.Masters() {
		if n := m.Do(t, "DBSIZE").Int; n == 0 {
			t.Fatalf("master %s holds no keys: the restore did not spread by slot", m.Addr())
		}
	}

	code, _, errText = run(t, "rdb", "restore", file, "--target", "redis://"+dst.Addrs()[0], "--no-progress")
	if code == 0 || !strings.Contains(errText, "not empty") {
		t.Fatalf("a second restore into the filled cluster: exit %d, want a refusal naming the non-empty master\n%s", code, errText)
	}
}
