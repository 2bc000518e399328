// Package command knows what Redis commands mean to a sync: which arguments
// are keys, which cluster slot a key lives in, and how to split a multi-key
// command. For now it holds slot computation.
package command

import "github.com/ferrysync/ferry/internal/crc"

// SlotCount is the number of hash slots in a Redis Cluster (CLUSTER_SLOTS).
const SlotCount = 16384

// Slot returns the cluster slot of key, as CLUSTER KEYSLOT does: the
// CRC16-XMODEM of the key, or of its hash tag if it has one, mod SlotCount.
func Slot(key []byte) uint16 { return crc.CRC16(hashTag(key)) & (SlotCount - 1) }

// SlotString is Slot for a string key; it does not allocate.
func SlotString(key string) uint16 { return crc.CRC16String(hashTag(key)) & (SlotCount - 1) }

// hashTag returns the part of key that decides its slot, following Redis's
// keyHashSlot: the bytes between the first '{' and the first '}' after it,
// unless there is no such '}' or the braces are adjacent ("{}"), in which case
// the whole key hashes. Only the first '{' counts: in "{}{a}" the tag is empty,
// so the whole key is hashed, not "a".
func hashTag[T ~string | ~[]byte](key T) T {
	for s := 0; s < len(key); s++ {
		if key[s] != '{' {
			continue
		}
		for e := s + 1; e < len(key); e++ {
			if key[e] == '}' {
				if e == s+1 {
					return key
				}
				return key[s+1 : e]
			}
		}
		return key
	}
	return key
}
