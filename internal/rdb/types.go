package rdb

import "strconv"

// Type is an RDB value type byte as it appears on disk (and as the first byte of a
// DUMP/RESTORE payload). The same number can mean different things in Redis and in
// Valkey (22), so a Type is only meaningful together with the Flavor of its file.
type Type uint8

// On-disk value types (redis/redis src/rdb.h, valkey-io/valkey src/rdb.h).
const (
	TypeString            Type = 0  // RDB_TYPE_STRING
	TypeList              Type = 1  // RDB_TYPE_LIST (linked list, RDB v1+)
	TypeSet               Type = 2  // RDB_TYPE_SET
	TypeZSet              Type = 3  // RDB_TYPE_ZSET (scores as ASCII doubles)
	TypeHash              Type = 4  // RDB_TYPE_HASH
	TypeZSet2             Type = 5  // RDB_TYPE_ZSET_2 (binary double scores, RDB v8)
	TypeModulePreGA       Type = 6  // RDB_TYPE_MODULE_PRE_GA (Redis 4.0 RCs; not self-describing)
	TypeModule2           Type = 7  // RDB_TYPE_MODULE_2
	TypeHashZipmap        Type = 9  // RDB_TYPE_HASH_ZIPMAP
	TypeListZiplist       Type = 10 // RDB_TYPE_LIST_ZIPLIST
	TypeSetIntset         Type = 11 // RDB_TYPE_SET_INTSET
	TypeZSetZiplist       Type = 12 // RDB_TYPE_ZSET_ZIPLIST
	TypeHashZiplist       Type = 13 // RDB_TYPE_HASH_ZIPLIST
	TypeListQuicklist     Type = 14 // RDB_TYPE_LIST_QUICKLIST (nodes are ziplists)
	TypeStreamListpacks   Type = 15 // RDB_TYPE_STREAM_LISTPACKS
	TypeHashListpack      Type = 16 // RDB_TYPE_HASH_LISTPACK (RDB v10, Redis 7.0)
	TypeZSetListpack      Type = 17 // RDB_TYPE_ZSET_LISTPACK
	TypeListQuicklist2    Type = 18 // RDB_TYPE_LIST_QUICKLIST_2 (listpack and PLAIN nodes)
	TypeStreamListpacks2  Type = 19 // RDB_TYPE_STREAM_LISTPACKS_2
	TypeSetListpack       Type = 20 // RDB_TYPE_SET_LISTPACK (RDB v11, Redis 7.2)
	TypeStreamListpacks3  Type = 21 // RDB_TYPE_STREAM_LISTPACKS_3
	TypeHashMetadataPreGA Type = 22 // RDB_TYPE_HASH_METADATA_PRE_GA (Redis 7.4 RCs; absolute field TTLs)
	TypeHashListpackExPre Type = 23 // RDB_TYPE_HASH_LISTPACK_EX_PRE_GA (Redis 7.4 RCs)
	TypeHashMetadata      Type = 24 // RDB_TYPE_HASH_METADATA (Redis 7.4; TTLs relative to a min expire)
	TypeHashListpackEx    Type = 25 // RDB_TYPE_HASH_LISTPACK_EX (Redis 7.4)

	// TypeValkeyHash2 is Valkey 9's RDB_TYPE_HASH_2: a hash whose fields carry absolute
	// expiry times. It shares the number 22 with Redis' TypeHashMetadataPreGA; which one a
	// byte means depends on the file's magic (VALKEY vs REDIS).
	TypeValkeyHash2 Type = 22
)

// Opcodes: bytes in the type position that are not value types.
const (
	opSlotImport    = 243 // Valkey 9: RDB_OPCODE_SLOT_IMPORT (atomic slot migration state); Redis 8.6+/RDB 13: KEY_META
	opSlotInfo      = 244 // RDB_OPCODE_SLOT_INFO (Redis 7.4, cluster only): slot id, size, expires size
	opFunction2     = 245 // RDB_OPCODE_FUNCTION2 (Redis 7.0 GA): one library's code
	opFunctionPreGA = 246 // RDB_OPCODE_FUNCTION_PRE_GA (Redis 7.0 rc1/rc2): name, engine, [desc], code
	opModuleAux     = 247 // RDB_OPCODE_MODULE_AUX: module data outside the keyspace
	opIdle          = 248 // RDB_OPCODE_IDLE: LRU idle seconds of the next key
	opFreq          = 249 // RDB_OPCODE_FREQ: LFU counter of the next key
	opAux           = 250 // RDB_OPCODE_AUX: string name, string value
	opResizeDB      = 251 // RDB_OPCODE_RESIZEDB: hash table size hints
	opExpireTimeMs  = 252 // RDB_OPCODE_EXPIRETIME_MS: 8-byte little-endian ms
	opExpireTime    = 253 // RDB_OPCODE_EXPIRETIME: 4-byte little-endian seconds (RDB < 3)
	opSelectDB      = 254 // RDB_OPCODE_SELECTDB
	opEOF           = 255 // RDB_OPCODE_EOF, followed by the CRC64 from RDB v5 on
)

// Module value sub-opcodes (RDB_MODULE_OPCODE_*), the self-describing stream that makes
// MODULE_2 values skippable without the module.
const (
	moduleOpEOF    = 0
	moduleOpSInt   = 1
	moduleOpUInt   = 2
	moduleOpFloat  = 3
	moduleOpDouble = 4
	moduleOpString = 5
)

// Flavor tells whose numbering a file (or a destination) uses.
type Flavor uint8

const (
	// Redis files start with "REDIS" and a 4-digit version (0001–0012).
	Redis Flavor = iota
	// Valkey files from Valkey 9 on start with "VALKEY" and a 3-digit version (080).
	Valkey
)

func (f Flavor) String() string {
	if f == Valkey {
		return "valkey"
	}
	return "redis"
}

// MarshalText makes the flavor readable in JSON reports.
func (f Flavor) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// Highest versions this build reads.
const (
	MaxRedisVersion  = 12 // Redis 7.4 / 8.x
	ValkeyVersion80  = 80 // Valkey 9.0 ("VALKEY080")
	maxValkeyVersion = 80
)

// Kind is the broad data type of a value, as TYPE would report it.
type Kind uint8

const (
	KindUnknown Kind = iota
	KindString
	KindList
	KindSet
	KindZSet
	KindHash
	KindStream
	KindModule
)

var kindNames = [...]string{"unknown", "string", "list", "set", "zset", "hash", "stream", "module"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// MarshalText makes the kind readable in JSON reports.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// typeInfo describes one on-disk type for one flavor.
type typeInfo struct {
	name     string // upstream constant without the RDB_TYPE_ prefix
	encoding string // short encoding name for reports
	kind     Kind
	// minVersion is the lowest RDB version whose loader knows this type: a RESTORE
	// payload carrying it must be labelled at least this, and a destination whose own
	// RDB version is lower cannot take it.
	minVersion int
}

// redisTypes and valkeyTypes map type bytes to their meaning. Types 0–21 are shared; 22+
// diverge. An empty name means "unknown type".
var redisTypes, valkeyTypes [256]typeInfo

func init() {
	common := map[Type]typeInfo{
		TypeString: {"STRING", "string", KindString, 1},
		TypeList:   {"LIST", "linkedlist", KindList, 1},
		TypeSet:    {"SET", "hashtable", KindSet, 1},
		TypeZSet:   {"ZSET", "skiplist", KindZSet, 1},
		TypeHash:   {"HASH", "hashtable", KindHash, 1},
		// ZSET_2 and MODULE_2 arrived with RDB v8 (Redis 4.0).
		TypeZSet2:       {"ZSET_2", "skiplist", KindZSet, 8},
		TypeModulePreGA: {"MODULE_PRE_GA", "module", KindModule, 8},
		TypeModule2:     {"MODULE_2", "module", KindModule, 8},
		// The compact encodings came with RDB v2 (Redis 2.4); ziplist zsets/hashes with
		// Redis 2.6 (RDB v4 files already carry them); quicklist with v7 (Redis 3.2).
		TypeHashZipmap:      {"HASH_ZIPMAP", "zipmap", KindHash, 2},
		TypeListZiplist:     {"LIST_ZIPLIST", "ziplist", KindList, 2},
		TypeSetIntset:       {"SET_INTSET", "intset", KindSet, 2},
		TypeZSetZiplist:     {"ZSET_ZIPLIST", "ziplist", KindZSet, 4},
		TypeHashZiplist:     {"HASH_ZIPLIST", "ziplist", KindHash, 4},
		TypeListQuicklist:   {"LIST_QUICKLIST", "quicklist", KindList, 7},
		TypeStreamListpacks: {"STREAM_LISTPACKS", "stream", KindStream, 9},
		// Redis 7.0 (RDB v10) replaced ziplists by listpacks.
		TypeHashListpack:     {"HASH_LISTPACK", "listpack", KindHash, 10},
		TypeZSetListpack:     {"ZSET_LISTPACK", "listpack", KindZSet, 10},
		TypeListQuicklist2:   {"LIST_QUICKLIST_2", "quicklist2", KindList, 10},
		TypeStreamListpacks2: {"STREAM_LISTPACKS_2", "stream", KindStream, 10},
		// Redis 7.2 (RDB v11).
		TypeSetListpack:      {"SET_LISTPACK", "listpack", KindSet, 11},
		TypeStreamListpacks3: {"STREAM_LISTPACKS_3", "stream", KindStream, 11},
	}
	for t, info := range common {
		redisTypes[t] = info
		valkeyTypes[t] = info
	}
	// Redis 7.4 (RDB v12) hash field expiration.
	redisTypes[TypeHashMetadataPreGA] = typeInfo{"HASH_METADATA_PRE_GA", "hashtable-ex", KindHash, 12}
	redisTypes[TypeHashListpackExPre] = typeInfo{"HASH_LISTPACK_EX_PRE_GA", "listpack-ex", KindHash, 12}
	redisTypes[TypeHashMetadata] = typeInfo{"HASH_METADATA", "hashtable-ex", KindHash, 12}
	redisTypes[TypeHashListpackEx] = typeInfo{"HASH_LISTPACK_EX", "listpack-ex", KindHash, 12}
	// Valkey 9 (VALKEY080) hash field expiration.
	valkeyTypes[TypeValkeyHash2] = typeInfo{"HASH_2", "hashtable-ex", KindHash, ValkeyVersion80}
}

func typeTable(f Flavor) *[256]typeInfo {
	if f == Valkey {
		return &valkeyTypes
	}
	return &redisTypes
}

// TypeName returns the upstream name of t in flavor f ("LIST_QUICKLIST_2"), or
// "UNKNOWN(n)".
func TypeName(f Flavor, t Type) string {
	if n := typeTable(f)[t].name; n != "" {
		return n
	}
	return "UNKNOWN(" + strconv.Itoa(int(t)) + ")"
}

// EncodingName returns a short encoding name for reports ("listpack", "quicklist2").
func EncodingName(f Flavor, t Type) string {
	if n := typeTable(f)[t].encoding; n != "" {
		return n
	}
	return "unknown"
}

// KindOf returns the data type a value of type t decodes to.
func KindOf(f Flavor, t Type) Kind { return typeTable(f)[t].kind }

func knownType(f Flavor, t Type) bool { return typeTable(f)[t].name != "" }

// Target describes what a destination's RESTORE accepts.
type Target struct {
	Flavor Flavor
	// Version is the highest RDB version the destination loads: Redis 2.6–2.8: 6,
	// 3.0–3.2: 7, 4.0: 8, 5.0–6.2: 9, 7.0: 10, 7.2: 11, 7.4+: 12; Valkey 7.2–8.x: 11,
	// Valkey 9+: 80.
	Version int
}

// TargetFor maps a server's INFO fields to a Target: name is "redis" or "valkey"
// (INFO server's "server_name", empty for Redis before 7.2), version its version string
// ("7.0.15"). Valkey 7.2–8.x report server_name valkey; Redis-compatible forks report
// redis_version and get the Redis mapping.
func TargetFor(name, version string) Target {
	major, minor := parseMajorMinor(version)
	if name == "valkey" {
		if major >= 9 {
			return Target{Flavor: Valkey, Version: ValkeyVersion80}
		}
		return Target{Flavor: Valkey, Version: 11}
	}
	v := 12
	switch {
	case major < 2 || (major == 2 && minor < 6):
		v = 5
	case major == 2:
		v = 6
	case major == 3:
		v = 7
	case major == 4:
		v = 8
	case major < 7:
		v = 9
	case major == 7 && minor < 2:
		v = 10
	case major == 7 && minor < 4:
		v = 11
	}
	return Target{Flavor: Redis, Version: v}
}

func parseMajorMinor(v string) (int, int) {
	var parts [2]int
	i := 0
	for _, c := range v {
		switch {
		case c >= '0' && c <= '9':
			parts[i] = parts[i]*10 + int(c-'0')
		case c == '.' && i == 0:
			i = 1
		default:
			return parts[0], parts[1]
		}
	}
	return parts[0], parts[1]
}

// knows reports whether the destination's loader understands type t of a file with
// flavor src. Types 22 and up differ between Redis and Valkey, so they only travel
// within one flavor.
func (tg Target) knows(src Flavor, t Type) bool {
	info := typeTable(src)[t]
	if info.name == "" || t == TypeModulePreGA {
		return false
	}
	if t >= 22 && src != tg.Flavor {
		return false
	}
	return info.minVersion <= tg.Version
}

// supportsFieldTTL reports whether HPEXPIREAT exists on the destination.
func (tg Target) supportsFieldTTL() bool {
	if tg.Flavor == Valkey {
		return tg.Version >= ValkeyVersion80
	}
	return tg.Version >= 12
}

// streamsV2 reports whether XSETID ENTRIESADDED/MAXDELETEDID and XGROUP CREATE
// ENTRIESREAD exist (Redis 7.0+, Valkey 7.2+).
func (tg Target) streamsV2() bool { return tg.Version >= 10 }
