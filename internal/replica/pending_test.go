package replica

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPending: Pending is true while received commands wait to be parsed, false once the
// stream has run dry, and true again when more arrives.
func TestPending(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("+CONTINUE\r\n")) }()
	r, _ := craftedReplica(t, pr, Position{ReplID: testReplID, Offset: 100}, time.Hour)
	if r.Pending() {
		t.Fatal("Pending before anything was received")
	}
	two := append(cmd("SET", "a", "1"), cmd("SET", "b", "2")...)
	if _, err := pw.Write(two); err != nil {
		t.Fatal(err)
	}
	waitPending(t, r, true)
	ctx := context.Background()
	if _, err := r.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if !r.Pending() {
		t.Fatal("the second command is received but Pending is false")
	}
	if _, err := r.Next(ctx); err != nil {
		t.Fatal(err)
	}
	if r.Pending() {
		t.Fatal("Pending with nothing left to parse")
	}
	if _, err := pw.Write(cmd("PING")); err != nil {
		t.Fatal(err)
	}
	waitPending(t, r, true)
}

func waitPending(t *testing.T, r *Replica, want bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.Pending() != want {
		if time.Now().After(deadline) {
			t.Fatalf("Pending did not become %v", want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRemoveStaleSpools removes what a killed process left and nothing else.
func TestRemoveStaleSpools(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"replica-spool-123", "replica-spool-456", "keep"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "stream-1.spool"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := RemoveStaleSpools(dir)
	if err != nil || n != 2 {
		t.Fatalf("RemoveStaleSpools = %d, %v; want 2, nil", n, err)
	}
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != "keep" {
		t.Fatalf("left %v; want only keep", left)
	}
}
