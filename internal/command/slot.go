// Package command knows what Redis commands mean to a sync: which arguments
// are keys, which cluster slot a key lives in, and how to split a multi-key
// command.
//
// Key positions come from the destination's own COMMAND reply (Table): Redis 7
// key specs, evaluated as the server evaluates them, or the legacy
// first/last/step of older servers; where only the server can tell (SORT …
// STORE, MIGRATE … KEYS, an invalid spec) it is asked with COMMAND GETKEYS,
// per command, with nothing cached. Route classifies a command for a cluster:
// keyless, every master, one slot, split per slot (DEL, MSET…) or co-locate
// (RENAME, SUNIONSTORE…).
package command

import (
	"bytes"
	"strings"

	"github.com/ferrysync/ferry/internal/crc"
)

// SlotCount is the number of hash slots in a Redis Cluster (CLUSTER_SLOTS).
const SlotCount = 16384

// Slot returns the cluster slot of key, as CLUSTER KEYSLOT does: the
// CRC16-XMODEM of the key, or of its hash tag if it has one, mod SlotCount.
func Slot(key []byte) uint16 { return crc.CRC16(hashTag(key)) & (SlotCount - 1) }

// SlotString is Slot for a string key; it does not allocate.
func SlotString(key string) uint16 { return crc.CRC16String(hashTagString(key)) & (SlotCount - 1) }

// hashTag returns the part of key that decides its slot, following Redis's
// keyHashSlot: the bytes between the first '{' and the first '}' after it,
// unless there is no such '}' or the braces are adjacent ("{}"), in which case
// the whole key hashes. Only the first '{' counts: in "{}{a}" the tag is empty,
// so the whole key is hashed, not "a". hashTagString is the same for strings;
// both use IndexByte, which is vectorised, because keys can be long.
func hashTag(key []byte) []byte {
	open := bytes.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	n := bytes.IndexByte(key[open+1:], '}')
	if n <= 0 {
		return key
	}
	return key[open+1 : open+1+n]
}

func hashTagString(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	n := strings.IndexByte(key[open+1:], '}')
	if n <= 0 {
		return key
	}
	return key[open+1 : open+1+n]
}
