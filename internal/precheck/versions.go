package precheck

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// Engines.
const (
	engineRedis  = "redis"
	engineValkey = "valkey"
)

// serverVersion is a server's engine and version, from INFO server.
type serverVersion struct {
	engine              string // engineRedis, engineValkey, or another server_name
	version             string // as reported, e.g. "7.0.15"
	major, minor, patch int
}

func (v serverVersion) String() string {
	name := v.engine
	switch v.engine {
	case engineRedis:
		name = "Redis"
	case engineValkey:
		name = "Valkey"
	}
	return name + " " + v.version
}

// atLeast compares the version with major.minor.
func (v serverVersion) atLeast(major, minor int) bool {
	return v.major > major || v.major == major && v.minor >= minor
}

// parseServerVersion reads the engine and version from INFO. Valkey reports
// server_name:valkey and valkey_version (its redis_version is frozen at 7.2.4 for
// compatibility); Redis 7.2+ reports server_name:redis, older Redis nothing.
func parseServerVersion(info map[string]string) serverVersion {
	v := serverVersion{engine: engineRedis, version: info["redis_version"]}
	if vv, ok := info["valkey_version"]; ok {
		v.engine, v.version = engineValkey, vv
	} else if name := info["server_name"]; name != "" && name != engineRedis {
		v.engine = name
		if nv, ok := info[name+"_version"]; ok {
			v.version = nv
		}
	}
	parts := strings.SplitN(v.version, ".", 3)
	nums := [3]*int{&v.major, &v.minor, &v.patch}
	for i, p := range parts {
		n, _ := strconv.Atoi(strings.TrimFunc(p, func(r rune) bool { return r < '0' || r > '9' }))
		*nums[i] = n
	}
	return v
}

// rdbVersion is the RDB format version a server writes, which is also the highest its
// RESTORE accepts in a DUMP payload (verifyDumpPayload refuses newer ones), or 0 for an
// engine this table does not know.
//
// Redis, from RDB_VERSION in src/rdb.h at each release tag of redis/redis: 2.6.0, 2.8.0
// and 3.0.0 define REDIS_RDB_VERSION 6; 3.2.0 RDB_VERSION 7; 4.0.0 8; 5.0.0, 6.0.0 and
// 6.2.0 9; 7.0.0 10; 7.2.0 11; 7.4.0 12. Redis 8.0–8.4 keep 12 and 8.6 moves to 13, per
// the version table redis/librdb keeps in src/redisver.h ({"8.6", 13}, {"7.4", 12} "+ 8.0,
// 8.2, 8.4").
//
// Valkey, from valkey-io/valkey src/rdb.h: 7.2.5 and 8.0.0 define RDB_VERSION 11 (8.1
// did not change it); 9.0 defines RDB_VERSION 80, written with the magic "VALKEY080".
// Valkey reserves 12–79 (RDB_FOREIGN_VERSION_MIN/MAX) for Redis's later formats and
// refuses them unless rdb-version-check is relaxed.
func rdbVersion(v serverVersion) int {
	switch v.engine {
	case engineValkey:
		if v.major >= 9 {
			return 80
		}
		return 11
	case engineRedis:
	default:
		return 0
	}
	switch {
	case v.major > 8 || v.major == 8 && v.minor >= 6:
		return 13
	case v.atLeast(7, 4):
		return 12
	case v.atLeast(7, 2):
		return 11
	case v.atLeast(7, 0):
		return 10
	case v.atLeast(5, 0):
		return 9
	case v.atLeast(4, 0):
		return 8
	case v.atLeast(3, 2):
		return 7
	case v.atLeast(2, 6):
		return 6
	default:
		return 5
	}
}

// hasFieldTTL reports whether the engine has hash fields with their own TTL (HEXPIRE):
// Redis 7.4+ and Valkey 9+.
func hasFieldTTL(v serverVersion) bool {
	switch v.engine {
	case engineRedis:
		return v.atLeast(7, 4)
	case engineValkey:
		return v.major >= 9
	}
	return false
}

// payloadsCompatible reports whether the target's RESTORE takes the source's DUMP
// payloads unchanged: RDB versions up to 11 are one common format; beyond that Redis
// (12, 13) and Valkey (80) diverge, so only the same engine at the same or a newer
// version reads them.
func payloadsCompatible(src, tgt serverVersion) bool {
	s, t := rdbVersion(src), rdbVersion(tgt)
	if s == 0 || t == 0 || s > t {
		return false
	}
	return s <= 11 || src.engine == tgt.engine
}

// versionFindings compares the two servers: what the snapshot's values travel as, and
// what cannot be carried over. subexpiry is the number of keys with hash-field TTLs on
// the source (-1 when the source does not report it).
func versionFindings(src, tgt serverVersion, subexpiry int64) Check {
	sr, tr := rdbVersion(src), rdbVersion(tgt)
	var found strings.Builder
	fmt.Fprintf(&found, "%s (RDB %s) → %s (RDB %s)", src, rdbName(sr), tgt, rdbName(tr))
	if sr == 0 || tr == 0 {
		return Check{
			Result: Warn,
			Found:  found.String() + "; Ferry does not know this engine's formats, so RESTORE compatibility is unknown",
			Advice: "Ferry supports Redis and Valkey; with another engine, test on a copy first and run ferry verify after the sync",
		}
	}
	switch {
	case payloadsCompatible(src, tgt):
		found.WriteString(": RESTORE payloads are accepted as they are")
	case !tgt.atLeast(2, 6) && tgt.engine == engineRedis:
		found.WriteString(": the target has no RESTORE; every value is written as commands (slower)")
	default:
		found.WriteString(": values in encodings the target knows go as RESTORE payloads labelled with its RDB version; the others are rewritten as commands (slower for large values)")
	}

	var lost, notes []string
	if hasFieldTTL(src) && !hasFieldTTL(tgt) {
		switch {
		case subexpiry > 0:
			lost = append(lost, fmt.Sprintf("%d keys have hash fields with their own TTL; the target has no field TTLs, so those fields would never expire there, and HEXPIRE-family commands in the stream would fail", subexpiry))
		case subexpiry < 0:
			lost = append(lost, "hash-field TTLs (HEXPIRE and friends), if the source uses them: the target has none, so such fields would never expire there and the commands would fail")
		default:
			notes = append(notes, "no hash fields with TTLs now; a HEXPIRE-family command during the sync would fail on the target")
		}
	}
	if src.atLeast(5, 0) && !tgt.atLeast(5, 0) {
		lost = append(lost, "streams: the target predates them (Redis 5.0), so stream keys cannot be written")
	}
	if src.atLeast(7, 0) && !tgt.atLeast(7, 0) {
		lost = append(lost, "functions (FUNCTION LOAD): the target predates them (Redis 7.0)")
		notes = append(notes, "stream metadata added in 7.0 (entries-read, max-deleted-id) is dropped")
	}
	if src.atLeast(5, 0) && !tgt.atLeast(5, 0) {
		notes = append(notes, "RESTORE on the target has no ABSTTL/IDLETIME/FREQ: TTLs are converted to relative ones and LRU/LFU hints are dropped")
	}
	if len(notes) > 0 {
		found.WriteString("; " + strings.Join(notes, "; "))
	}
	if len(lost) == 0 {
		return Check{Result: Pass, Found: found.String()}
	}
	found.WriteString("; cannot be carried over: " + strings.Join(lost, "; "))
	return Check{
		Result: Warn,
		Found:  found.String(),
		Advice: fmt.Sprintf("use a target at least as new as the source (%s), or make sure the source does not use these features; accept with --accept-warnings if it does not", src),
	}
}

func rdbName(v int) string {
	switch v {
	case 0:
		return "unknown"
	case 80:
		return "80, VALKEY080"
	}
	return strconv.Itoa(v)
}

// versions compares engines, versions and RDB formats.
func (r *runner) versions(ctx context.Context) Check {
	if _, skip := r.src.infoOr(); skip != nil {
		return *skip
	}
	if _, skip := r.tgt.infoOr(); skip != nil {
		return *skip
	}
	// Redis 7.4 added subexpiry= to INFO keyspace; without it the count is unknown.
	var sub int64
	reported, anyKeys := false, false
	for _, n := range r.src.nodes {
		if n.info == nil {
			continue
		}
		anyKeys = anyKeys || len(keyspace(n.info, "keys")) > 0
		subs := keyspace(n.info, "subexpiry")
		reported = reported || len(subs) > 0
		for db, c := range subs {
			if r.dbSelected(db) {
				sub += c
			}
		}
	}
	if !reported && anyKeys {
		sub = -1
	}
	return versionFindings(r.src.server, r.tgt.server, sub)
}

// dbSelected reports whether source database db is synced.
func (r *runner) dbSelected(db int) bool {
	if r.cfg.DBs == nil {
		return true
	}
	for _, d := range r.cfg.DBs {
		if d == db {
			return true
		}
	}
	return false
}
