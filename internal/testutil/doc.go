// Package testutil runs real redis-server processes for tests: single servers, clusters with
// replicas, a deterministic multi-type workload generator with exact-accounting keys, and oracles
// that say whether two deployments hold the same data (per-key DEBUG DIGEST-VALUE, TYPE and TTL).
//
// Every process is started on a free loopback port in the test's temporary directory, is killed
// when the test ends, and dies with the test binary (Pdeathsig on Linux), so a crashed or
// interrupted `go test` leaves nothing running. When a test fails, the tail of each server's log
// is printed.
//
// redis-server is looked up in $FERRY_REDIS_SERVER, then $PATH, then the usual install
// locations. Without it tests are skipped, except when $CI is set: CI must test for real.
//
// Typical use:
//
//	src, dst := testutil.StartServer(t), testutil.StartServer(t)
//	w := testutil.NewWorkload(testutil.WorkloadOptions{Seed: 1, DBs: []int{0, 1}, TTL: true})
//	if err := w.Fill(ctx, src, 20000); err != nil { t.Fatal(err) }
//	... start syncing src to dst; w.Run(ctx, src, 2000) meanwhile ...
//	if err := testutil.WaitReplicasCaughtUp(ctx, src); err != nil { t.Fatal(err) }
//	testutil.RequireSameData(t, src, dst, testutil.CompareOptions{SkipPrefixes: []string{"ferry:"}})
//	if err := w.VerifyExact(ctx, dst); err != nil { t.Fatal(err) }
//
// Clusters: StartCluster(t, ClusterOptions{Masters: 3, ReplicasPerMaster: 1}) gives a *Cluster,
// which is a Deployment like a *Server (workloads with Cluster: true, CompareKeys, VerifyExact
// all take either), with Failover for a coordinated failover and WaitHealthy after a Kill.
package testutil
