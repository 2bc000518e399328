// Package verify compares a source and a destination Redis-protocol deployment (each a
// standalone server or a cluster) key by key, in both directions, reports the keys that
// differ, and optionally repairs them. It is `ferry verify`.
//
// # How a run goes
//
//	round 1     SCAN every selected source db on every source master; for each batch of keys
//	            read TYPE and PTTL on both sides (pipelined), then, as the mode asks, lengths
//	            and values. SCAN every destination db too and look its keys up on the
//	            source: that finds extra keys. The work is split by db, master and direction
//	            over Options.Parallel workers.
//	round 2..n  after Options.Interval, look again at the previous round's differences
//	            only. A key that was in flight (written on the source, not yet applied)
//	            drops out; a key that expired meanwhile is not a difference.
//	repair      (Options.Repair) rewrite differing keys from the source with DUMP and
//	            RESTORE … REPLACE with the remaining TTL (or commands in windows, through a
//	            temporary key in the same slot, for values too big for one RESTORE or a
//	            payload the destination refuses), fix TTL-only differences with PEXPIRE or
//	            PERSIST, delete extra keys only with Options.RepairExtra, write every action
//	            to the audit log, then compare the repaired keys once more.
//
// # Modes
//
// outline compares key sets, types and TTLs; length adds STRLEN/HLEN/LLEN/SCARD/ZCARD/XLEN;
// value compares whole values. Small values are compared with DEBUG DIGEST-VALUE when both
// sides allow DEBUG (managed services do not; it is probed at start), otherwise read whole
// in one pipelined round trip per batch. Big values, and values whose digests differ, are
// compared element by element in windows — HSCAN+HMGET, SSCAN+SMISMEMBER, ZSCAN+ZMSCORE,
// LRANGE, XRANGE, GETRANGE — so memory stays bounded by the window whatever the size of the
// key, and the report names the fields, members, indexes or entries that differ. Streams
// are compared with their consumer groups (last-delivered-id, consumers, pending counts
// and XPENDING summaries), which digests leave out; entries-read and lag are not compared,
// because Redis's own replication does not keep them. Sampling (Options.Sample) compares
// random keys (RANDOMKEY, spread over dbs and masters by size) and extrapolates.
//
// TTLs further apart than Options.TTLTolerance differ, as does a TTL on one side only. A
// key present on one side only whose TTL is within the tolerance is not a difference: the
// other side has most likely expired it already, by its own clock.
//
// # The fence: exact comparison during a live sync
//
// Without a fence, rounds make a live comparison probabilistic: a key written on the source
// between two reads can differ in one round and not the next. With FenceOptions each round
// starts by reading every source master's master_repl_offset (INFO replication) and waits
// until the replica doing the sync has acknowledged at least that offset. Ferry attaches to
// the source as a replica and acknowledges only what the destination has applied, so once
// the fence is passed, everything the source held when the round started is on the
// destination, and a key that still differs was not merely in flight — unless it was
// written again after the round started, which the next round sees.
//
// Name the replica as the source lists it in INFO replication ("slaveN:ip=…,port=…"; the
// port is the one the replica announced) with --fence-replica ip:port, one per master for
// a cluster source, or use --fence-replica auto, which picks the replica when exactly one
// is connected to a master (and refuses to guess when there are several). A round whose
// fence is not reached within the fence timeout runs unfenced and the summary says so.
// Any replica that acknowledges only what it has applied works as a fence: tests use a
// native Redis replica in place of Ferry.
//
// # Selection
//
// Selection has the semantics of `ferry sync`: source dbs ("0,3,5-9"), a source:destination
// db map ("0:1,3:3"), and key filters by prefix or SCAN MATCH glob. Two source dbs may not
// map to one destination db (an extra key could not be attributed). A cluster has db 0 only.
//
// # Limits
//
// Options.MaxOps bounds the commands per second sent to each side (a token bucket shared
// by all workers). Options.MaxDiffs bounds the differences kept between rounds.
package verify
