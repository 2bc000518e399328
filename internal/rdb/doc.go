// Package rdb reads RDB snapshots — files and replication transfers — as a stream, and
// turns their values into RESTORE payloads or write commands.
//
// # Formats
//
// Every RDB that Redis writes, versions 1 to 12 ("REDIS0001"–"REDIS0012"), and Valkey
// 9's "VALKEY080". Dispatch is on magic and version, because from type 22 and opcode
// 243 on the two projects number things differently (22 is Redis' HASH_METADATA_PRE_GA
// but Valkey's HASH_2; 243 is Valkey's SLOT_IMPORT). All value types and encodings are
// read: strings (raw, integer, LZF), lists (linked list, ziplist, quicklist with
// ziplist nodes, quicklist 2 with listpack and PLAIN nodes), sets (hashtable, intset,
// listpack), sorted sets (ASCII and binary scores, ziplist, listpack), hashes
// (hashtable, zipmap, ziplist, listpack, Redis 7.4 field-TTL hashes and their release
// candidate forms, Valkey's HASH_2), streams v1–v3 with consumer groups, pending
// entries and consumers, and MODULE_2 values (walked through their self-describing
// opcodes; the pre-GA module format cannot be skipped and is reported as such). AUX,
// SELECTDB, RESIZEDB, EXPIRETIME(_MS), IDLE, FREQ, SLOT_INFO, MODULE_AUX, FUNCTION2 and
// FUNCTION_PRE_GA records are understood; the CRC64 trailer is checked (from v5 on;
// zero means the writer disabled it).
//
// # Reading: one pass, two views per value
//
// A Decoder reads records with Next. A key's Entry carries its database, key, type,
// absolute expiry and LRU/LFU hints; its value is read afterwards, in one of two views
// chosen per key:
//
//   - Raw(max) returns the value's bytes exactly as they are in the input, if there are
//     at most max of them: the body of a RESTORE payload, sliced from the read buffer,
//     never decoded and re-encoded. This is the fast path.
//   - Iter() returns an Iterator that yields the value's elements one at a time (list
//     items, members, member-score pairs, field-value pairs with their TTLs, stream
//     entries, groups, consumers and pending entries, chunks of a string).
//
// The two combine for big keys without reading the input twice: Raw walks the value's
// structure while the buffer keeps its bytes; as soon as they exceed max it stops, goes
// back to the value's start and returns ok=false, and Iter then re-reads the value from
// the buffered bytes and continues from the input. Value(max) does both. Memory is
// therefore bounded by max, plus the largest single element (Options.MaxElementSize
// caps it) and, for streams, one consumer group's pending-entries list: a
// hundred-million-member zset or a gigabyte string (LZF-compressed or not: LZF is
// decompressed through its 8 KiB window) never sits in memory whole. A value not read
// is skipped by the next Next without being decoded.
//
// Entries, raw slices and elements point into the decoder's buffers and stay valid only
// until the next call on the Decoder (or Iterator): copy what must outlive it.
//
// Empty collections (which some old Redis versions could write) are not emitted, as
// Redis skips them on load; Stats counts them.
//
// # Input and what follows the RDB
//
// The decoder reads ahead through an internal buffer. When Options.Size is the RDB's
// size (a file, a sized replication transfer) it never reads beyond it. Otherwise (a
// diskless transfer, an AOF with an RDB preamble) it may read past the checksum: after
// Next returns io.EOF, Offset is the RDB's exact length and Buffered holds the bytes
// read beyond it — the 40-byte "$EOF:" mark, or the AOF tail — for the caller to
// consume before reading on from the source.
//
// # Errors
//
// Errors are *Error: the input offset, the key and type being read, what was being read
// and why, wrapping ErrTruncated, ErrCorrupt, ErrChecksum, ErrUnsupported (including
// "a format newer than this build") or ErrTooLarge. No input makes the decoder panic,
// and no length field makes it allocate beyond the bytes actually received or the
// configured caps; FuzzDecode checks both. Errors from the input are sticky.
//
// # RESTORE payloads
//
// A payload is type byte + raw value + RDB version (2 bytes little-endian) + CRC64 of
// all that (8 bytes little-endian). Payload builds them and the RESTORE command into
// reused buffers without allocating. A destination loads a payload whose version is at
// most its own RDB version and whose type it knows; PayloadVersion computes the label
// from a per-type table of the first RDB version that knew each type (so a v11 file's
// plain values still go to Redis 7.0 as v10 payloads) and returns ErrNeedsCommands
// when the destination cannot take the type at all (a listpack set into Redis 7.0, a
// field-TTL hash across Redis and Valkey).
//
// # The command path
//
// CommandWriter turns a value, through its Iterator, into DEL and write commands in
// chunks bounded by element count and bytes (RPUSH, SADD, ZADD, HSET + HPEXPIREAT,
// SET + APPEND, XADD + XSETID + XGROUP + XCLAIM, then PEXPIREAT). Its documentation
// lists what commands cannot reproduce.
//
// # Inspect
//
// Inspect summarises a file (version, aux fields, per-database counts by type and
// encoding, expiry statistics, largest keys, functions, modules) into a JSON-ready
// Report; Report.WriteText prints it for people.
package rdb
