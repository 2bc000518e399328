package testutil

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestReplicaConvergesUnderWorkload is the harness proving itself: a native replica attached
// while the workload runs must end up identical to its master by every oracle, and the oracles
// must then notice each kind of deliberate damage, by key name and class.
func TestReplicaConvergesUnderWorkload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := StartServer(t)
	dst := StartServer(t)
	w := NewWorkload(WorkloadOptions{Seed: 42, DBs: []int{0, 1, 3}, TTL: true, Large: true})
	if err := w.Fill(ctx, src, 30000); err != nil {
		t.Fatal(err)
	}

	// Attach the replica while writes keep coming, so it sees a snapshot and then a stream.
	runCtx, stopRun := context.WithTimeout(ctx, 2*time.Second)
	defer stopRun()
	type result struct {
		n   int
		err error
	}
	ran := make(chan result, 1)
	go func() {
		n, err := w.Run(runCtx, src, 5000)
		ran <- result{n, err}
	}()
	time.Sleep(200 * time.Millisecond) // let the load start before the replica attaches
	dst.ReplicaOf(t, src)
	r := <-ran
	if r.err != nil {
		t.Fatalf("workload run: %v", r.err)
	}
	if r.n < 2000 {
		t.Errorf("Run sent only %d operations in 2 s at 5000/s", r.n)
	}
	t.Logf("run: %d operations", r.n)

	if err := WaitReplicasCaughtUp(ctx, src); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	diffs, err := CompareKeys(ctx, src, dst, CompareOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 0 {
		t.Fatalf("replica differs from its master: %v", diffs[:min(len(diffs), 10)])
	}
	t.Logf("compared %s in %v", keyCount(t, src), time.Since(start))
	if a, b := Digest(t, src), Digest(t, dst); a != b {
		t.Fatalf("DEBUG DIGEST differs: master %s, replica %s", a, b)
	}
	t.Logf("digests compared at %v", time.Since(start))
	if err := w.VerifyExact(ctx, dst); err != nil {
		t.Fatal(err)
	}
	t.Logf("verified at %v", time.Since(start))
	if len(w.Counters()) == 0 || len(w.Logs()) == 0 {
		t.Fatal("the workload wrote no exact-accounting keys")
	}

	// Damage the replica, one key per class of difference.
	dst.Do(t, "REPLICAOF", "NO", "ONE")
	hashKey := findKey(t, dst, 0, "hash", false)
	deleted := findKey(t, dst, 1, "string", false)
	noTTL := findKey(t, dst, 3, "zset", false)
	retyped := findKey(t, dst, 0, "set", false)
	dst.Do(t, "HSET", hashKey, "f0", "changed on the replica")
	dst.Do(t, "SELECT", "1")
	dst.Do(t, "DEL", deleted)
	dst.Do(t, "SET", "added-on-replica", "x")
	dst.Do(t, "SELECT", "3")
	dst.Do(t, "EXPIRE", noTTL, "3600")
	dst.Do(t, "SELECT", "0")
	dst.Do(t, "DEL", retyped)
	dst.Do(t, "SET", retyped, "now a string")

	t.Logf("damaged at %v", time.Since(start))
	diffs, err = CompareKeys(ctx, src, dst, CompareOptions{})
	t.Logf("compared at %v", time.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		fmt.Sprintf("0 %s", hashKey):            DiffValue,
		fmt.Sprintf("1 %s", deleted):            DiffMissing,
		fmt.Sprintf("1 %s", "added-on-replica"): DiffExtra,
		fmt.Sprintf("3 %s", noTTL):              DiffTTL,
		fmt.Sprintf("0 %s", retyped):            DiffType,
	}
	got := make(map[string]string)
	for _, d := range diffs {
		got[fmt.Sprintf("%d %s", d.DB, d.Key)] = d.Class
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("CompareKeys after damage:\n got  %v\n want %v\n diffs %v", got, want, diffs)
	}
	if a, b := Digest(t, src), Digest(t, dst); a == b {
		t.Error("DEBUG DIGEST equal after the replica was changed")
	}

	// A skipped prefix hides a difference.
	diffs, err = CompareKeys(ctx, src, dst, CompareOptions{DBs: []int{1}, SkipPrefixes: []string{"added-", deleted}})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) != 0 {
		t.Errorf("skipped prefixes still reported: %v", diffs)
	}

	// The exact-accounting check names a duplicated and a lost write.
	var counter, alog DBKey
	for k := range w.Counters() {
		counter = k
		break
	}
	for k, v := range w.Logs() {
		if len(v) > 0 {
			alog = k
			break
		}
	}
	dst.Do(t, "SELECT", fmt.Sprint(counter.DB))
	dst.Do(t, "INCR", counter.Key)
	dst.Do(t, "SELECT", fmt.Sprint(alog.DB))
	dst.Do(t, "RPOP", alog.Key)
	err = w.VerifyExact(ctx, dst)
	if err == nil {
		t.Fatal("VerifyExact passed on a damaged replica")
	}
	for _, want := range []string{counter.Key, "duplicated", alog.Key, "lost"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("VerifyExact error does not mention %q: %v", want, err)
		}
	}
}

// findKey returns a key of the given type in db, with or without a TTL.
func findKey(t *testing.T, s *Server, db int, typ string, withTTL bool) string {
	t.Helper()
	c := s.Conn(t)
	ctx := context.Background()
	if _, err := c.Do(ctx, "SELECT", db); err != nil {
		t.Fatal(err)
	}
	cursor := "0"
	for {
		v, err := c.Do(ctx, "SCAN", cursor, "TYPE", typ, "COUNT", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range v.Elems[1].Elems {
			ttl, err := c.Do(ctx, "PTTL", k.Str)
			if err != nil {
				t.Fatal(err)
			}
			if (ttl.Int >= 0) == withTTL {
				return string(k.Str)
			}
		}
		cursor = string(v.Elems[0].Str)
		if cursor == "0" {
			t.Fatalf("no %s key in db %d (withTTL %v)", typ, db, withTTL)
		}
	}
}

func keyCount(t *testing.T, s *Server) string {
	info := s.Do(t, "INFO", "keyspace").Text()
	return strings.ReplaceAll(strings.TrimSpace(strings.TrimPrefix(info, "# Keyspace")), "\r\n", " ")
}

func TestParseReplication(t *testing.T) {
	info := map[string]string{
		"role": "master", "master_repl_offset": "1234", "connected_slaves": "2",
		"slave0": "ip=127.0.0.1,port=6380,state=online,offset=1234,lag=0",
		"slave1": "ip=127.0.0.1,port=6381,state=wait_bgsave,offset=0,lag=1",
	}
	st, err := parseReplication(info)
	if err != nil {
		t.Fatal(err)
	}
	if st.MasterOffset != 1234 || len(st.Replicas) != 2 || st.Replicas[1].State != "wait_bgsave" || st.Replicas[0].Port != 6380 {
		t.Fatalf("parsed %+v", st)
	}
	if caughtUp(st) {
		t.Error("caught up with a replica in wait_bgsave")
	}
	st.Replicas = st.Replicas[:1]
	if !caughtUp(st) {
		t.Error("not caught up with the only replica at the master offset")
	}
	if caughtUp(ReplicationState{MasterOffset: 5}) {
		t.Error("caught up with no replica at all")
	}
	if !strings.Contains(describeReplication(ReplicationState{MasterOffset: 10, Replicas: []ReplicaInfo{{IP: "1.2.3.4", Port: 5, State: "online", Offset: 7}}}), "acknowledged offset 7 (3 behind)") {
		t.Error("describeReplication does not give both offsets")
	}
	if _, err := parseReplication(map[string]string{"master_repl_offset": "x"}); err == nil {
		t.Error("bad offset parsed")
	}
}
