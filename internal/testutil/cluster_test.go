package testutil

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ferrysync/ferry/internal/command"
)

// keyInRange finds a key whose slot lies in [lo, hi].
func keyInRange(t *testing.T, lo, hi int) string {
	t.Helper()
	for i := range 1_000_000 {
		k := "k" + strconv.Itoa(i)
		if s := int(command.SlotString(k)); s >= lo && s <= hi {
			return k
		}
	}
	t.Fatalf("no key found for slots %d-%d", lo, hi)
	return ""
}

func TestClusterServesAllSlotsAndFailsOver(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, ClusterOptions{Masters: 3, ReplicasPerMaster: 1})
	t.Logf("cluster of 3 masters + 3 replicas ready in %v", time.Since(start))

	if n := len(c.Masters()); n != 3 {
		t.Fatalf("%d masters", n)
	}
	if n := len(c.Replicas()); n != 3 {
		t.Fatalf("%d replicas", n)
	}
	for _, s := range c.Nodes() {
		info := s.Do(t, "CLUSTER", "INFO")
		fields := parseInfoText(info.Str)
		if fields["cluster_state"] != "ok" || fields["cluster_slots_ok"] != "16384" {
			t.Errorf("%s: cluster_state:%s cluster_slots_ok:%s", s.Addr(), fields["cluster_state"], fields["cluster_slots_ok"])
		}
	}
	covered := 0
	for _, m := range c.Masters() {
		for _, r := range c.SlotRanges(m) {
			covered += r[1] - r[0] + 1
			// A key at each end of the master's range, written through the router and read
			// back from that very master.
			for _, k := range []string{keyInRange(t, r[0], r[0]+50), keyInRange(t, r[1]-50, r[1])} {
				if got := c.MasterForKey(k); got != m {
					t.Errorf("MasterForKey(%q) = %s, want %s", k, got, m)
				}
				c.Do(t, "SET", k, "v-"+k)
				if v := m.Do(t, "GET", k); string(v.Str) != "v-"+k {
					t.Errorf("GET %q on %s = %q", k, m, v.Str)
				}
			}
		}
	}
	if covered != command.SlotCount {
		t.Errorf("slot ranges cover %d slots", covered)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w := NewWorkload(WorkloadOptions{Seed: 7, Cluster: true, TTL: true, Large: true})
	start = time.Now()
	if err := w.Fill(ctx, c, 20000); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled the cluster with 20000 operations in %v", time.Since(start))

	// Fail a master over while the workload writes: its writes are redirected (MOVED) and
	// retried on the promoted replica, so nothing is lost or applied twice.
	old := c.Masters()[1]
	k := keyInRange(t, c.SlotRanges(old)[0][0], c.SlotRanges(old)[0][1])
	c.Do(t, "SET", k, "before")
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	type result struct {
		n   int
		err error
	}
	ran := make(chan result, 1)
	go func() {
		n, err := w.Run(runCtx, c, 3000)
		ran <- result{n, err}
	}()
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	promoted := c.Failover(t, old)
	t.Logf("failover under load in %v", time.Since(start))

	// A second failover behind the harness's back: the workload keeps routing that shard's keys
	// to the demoted master until WaitHealthy adopts the new map, so its writes there are all
	// redirected, and must follow the MOVED replies in order.
	other := c.Masters()[2]
	redirectedBefore := w.Redirected()
	replica := c.ReplicasOf(other)[0]
	replica.Do(t, "CLUSTER", "FAILOVER")
	for replica.Do(t, "ROLE").Elems[0].Text() != "master" {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	c.WaitHealthy(t)
	if c.MasterForKey(keyInRange(t, c.SlotRanges(replica)[0][0], c.SlotRanges(replica)[0][0])) != replica {
		t.Fatal("WaitHealthy did not adopt the promoted replica")
	}
	time.Sleep(100 * time.Millisecond)
	stopRun()
	r := <-ran
	if r.err != nil {
		t.Fatalf("workload across the failovers: %v", r.err)
	}
	t.Logf("%d operations ran across the failovers, %d redirected and retried (%d after the unannounced one)",
		r.n, w.Redirected(), w.Redirected()-redirectedBefore)
	if w.Redirected()-redirectedBefore == 0 {
		t.Error("no operation was redirected after a failover the workload was not told about")
	}
	if err := w.VerifyExact(ctx, c); err != nil {
		t.Fatal(err)
	}
	if n := w.InDoubt(); n != 0 {
		t.Errorf("%d operations in doubt after a coordinated failover", n)
	}
	// Every replica holds exactly its master's data.
	for _, m := range c.Masters() {
		if err := WaitReplicasCaughtUp(ctx, m); err != nil {
			t.Fatal(err)
		}
		for _, rep := range c.ReplicasOf(m) {
			if a, b := Digest(t, m), Digest(t, rep); a != b {
				t.Errorf("master %s digest %s, its replica %s %s", m, a, rep, b)
			}
		}
	}

	// CompareKeys across a cluster and a standalone server holding a copy of its data.
	copyTo := StartServer(t)
	copyAll(t, c, copyTo)
	RequireSameData(t, c, copyTo, CompareOptions{})
	victim := keyInRange(t, c.SlotRanges(c.Masters()[2])[0][0], c.SlotRanges(c.Masters()[2])[0][1])
	c.Do(t, "SET", victim, "only in the cluster")
	diffs, err := CompareKeys(ctx, c, copyTo, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 1 || diffs[0].Key != victim || diffs[0].Class != DiffMissing {
		t.Errorf("CompareKeys(cluster, copy) after a write to the cluster: %v", diffs)
	}

	// A master dies: its replica takes over on its own, and WaitHealthy follows the new map.
	dead := c.Masters()[0]
	survivor := keyInRange(t, c.SlotRanges(dead)[0][0], c.SlotRanges(dead)[0][1])
	c.Do(t, "SET", survivor, "replicated before the crash")
	// WAIT on the connection that wrote (the master's shared one, which c.Do used).
	if v := dead.Do(t, "WAIT", 1, 5000); v.Int != 1 {
		t.Fatalf("WAIT: %d replicas acknowledged", v.Int)
	}
	start = time.Now()
	dead.Kill()
	c.WaitHealthy(t)
	t.Logf("automatic failover after a kill in %v", time.Since(start))
	if m := c.MasterForKey(survivor); m == dead || len(c.Masters()) != 3 {
		t.Fatalf("after the kill %s serves %q; masters %v", m, survivor, c.Masters())
	}
	if v := c.Do(t, "GET", survivor); string(v.Str) != "replicated before the crash" {
		t.Errorf("GET %q after the failover = %q", survivor, v.Str)
	}
	start = time.Now()
	dead.Restart(t)
	c.WaitHealthy(t)
	t.Logf("killed master rejoined as a replica in %v", time.Since(start))
	if rs := c.ReplicasOf(c.MasterForKey(survivor)); len(rs) != 1 || rs[0] != dead {
		t.Errorf("replicas of the new master: %v, want the restarted node", rs)
	}
	if promoted == old || c.MasterForKey(k) != promoted {
		t.Fatalf("after failover %s serves %q, want %s", c.MasterForKey(k), k, promoted)
	}
	if v := promoted.Do(t, "GET", k); string(v.Str) != "before" {
		t.Errorf("GET on promoted master = %q", v.Str)
	}
	if rs := c.ReplicasOf(promoted); len(rs) != 1 || rs[0] != old {
		t.Errorf("replicas of the promoted master: %v, want the old master", rs)
	}
	c.Do(t, "SET", k, "after")
	if v := c.Do(t, "GET", k); string(v.Str) != "after" {
		t.Errorf("GET after failover = %q", v.Str)
	}
}

func TestParseClusterNodes(t *testing.T) {
	text := "07c3 127.0.0.1:30004@31004,host master - 0 1426238316232 4 connected 0-5460 5462 [5461->-e7d1]\n" +
		"e7d1 127.0.0.1:30002@31002 myself,slave 07c3 0 0 2 connected\n"
	nodes, err := parseClusterNodes(text)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%+v", nodes)
	want := "[{id:07c3 addr:127.0.0.1:30004 flags:[master] master:- ranges:[[0 5460] [5462 5462]]} {id:e7d1 addr:127.0.0.1:30002 flags:[myself slave] master:07c3 ranges:[]}]"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if _, err := parseClusterNodes("garbage"); err == nil {
		t.Error("garbage parsed")
	}
}

// copyAll copies every key of d's DB 0, with its TTL, into dst with DUMP and RESTORE.
func copyAll(t *testing.T, d Deployment, dst *Server) {
	t.Helper()
	ctx := context.Background()
	out := dst.Conn(t)
	for _, m := range d.Masters() {
		in := m.Conn(t)
		cursor := "0"
		for {
			v, err := in.Do(ctx, "SCAN", cursor, "COUNT", 500)
			if err != nil {
				t.Fatal(err)
			}
			keys := v.Elems[1].Elems
			for _, k := range keys {
				for _, cmd := range [][]any{{"DUMP", k.Str}, {"PTTL", k.Str}} {
					if err := in.Send(cmd...); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, k := range keys {
				dump, err := in.Receive()
				if err != nil {
					t.Fatal(err)
				}
				pttl, err := in.Receive()
				if err != nil {
					t.Fatal(err)
				}
				if err := out.Send("RESTORE", k.Str, max(pttl.Int, 0), dump.Str, "REPLACE"); err != nil {
					t.Fatal(err)
				}
			}
			for range keys {
				if _, err := out.Receive(); err != nil {
					t.Fatal(err)
				}
			}
			cursor = string(v.Elems[0].Str)
			if cursor == "0" {
				break
			}
		}
	}
}
