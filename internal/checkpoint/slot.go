package checkpoint

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/ferrysync/ferry/internal/crc"
)

// Per-slot checkpoints (Redis Cluster destinations, exactly-once delivery).
//
// A cluster refuses a MULTI/EXEC whose keys span slots, so on a cluster the unit that commits
// atomically with its position is the slot: for each slot s a task keeps
// "ferry:sckpt:<task>:{<tag>}", where the hash tag is chosen to put the key in slot s, with
// the value "<replid> <offset>": the stream offset up to which slot s holds every command
// (SlotPosition). It is written in the same transaction as the slot's share of each batch.
// Because the key lives in its own slot, a resharding moves it together with the slot's data
// and a failover keeps it with the data. The task's main checkpoint (Keys.Checkpoint) is
// then a floor: a position that every slot has reached, from which a session resumes while
// skipping, slot by slot, what the slot checkpoints say is already there.

// SlotCount is the number of hash slots of a Redis Cluster.
const SlotCount = 16384

// slotPrefix starts every per-slot checkpoint key.
const slotPrefix = Prefix + "sckpt:"

// slotTags maps each slot to the shortest, first-found tag that hashes to it. The search runs
// once per process (about 170 000 CRC16s of 1 to 4 bytes, a few milliseconds) and is
// deterministic, so every Ferry version and process names the same keys.
var slotTags = sync.OnceValue(func() *[SlotCount]string {
	var tags [SlotCount]string
	left := SlotCount
	for n := uint64(0); left > 0; n++ {
		tag := strconv.FormatUint(n, 36)
		s := crc.CRC16String(tag) & (SlotCount - 1)
		if tags[s] == "" {
			tags[s] = tag
			left--
		}
	}
	return &tags
})

// SlotTag returns a short string (digits and lower-case letters) that, as a key's hash tag,
// puts the key in slot.
func SlotTag(slot uint16) string { return slotTags()[slot&(SlotCount-1)] }

// SlotKeys names one task's per-slot checkpoints.
type SlotKeys struct {
	prefix string // "ferry:sckpt:<task>:{"
}

// NewSlotKeys returns the names of task's per-slot checkpoints. The task name must not hold
// '{' or '}': the key's hash tag has to be the first braces in it.
func NewSlotKeys(task string) (SlotKeys, error) {
	if task == "" || strings.ContainsAny(task, "{}") {
		return SlotKeys{}, fmt.Errorf("per-slot checkpoints of task %q: a task name for a cluster destination must not be empty or hold '{' or '}'", task)
	}
	return SlotKeys{prefix: slotPrefix + task + ":{"}, nil
}

// Key is slot's checkpoint key, "ferry:sckpt:<task>:{<tag>}", which hashes to slot.
func (k SlotKeys) Key(slot uint16) string { return k.prefix + SlotTag(slot) + "}" }

// Prefix is what every per-slot checkpoint key of the task starts with (and no other key of
// Ferry's does), for deleting them.
func (k SlotKeys) Prefix() string { return k.prefix }

// SlotPosition is the value of a per-slot checkpoint: slot holds every command of the
// source's stream ReplID up to Offset.
type SlotPosition struct {
	ReplID string
	Offset int64
}

// String renders p as "<replid> <offset>"; ParseSlotPosition reads it back.
func (p SlotPosition) String() string {
	return p.ReplID + " " + strconv.FormatInt(p.Offset, 10)
}

// replIDLen is the length of a replication ID: 40 hex digits.
const replIDLen = 40

// ParseSlotPosition parses the "<replid> <offset>" form of SlotPosition.String.
func ParseSlotPosition(s string) (SlotPosition, error) {
	f := strings.Fields(s)
	if len(f) != 2 || len(f[0]) != replIDLen || !isHex(f[0]) {
		return SlotPosition{}, fmt.Errorf("parse per-slot checkpoint %q: want \"<40-hex-digit replid> <offset>\"", clipValue(s))
	}
	off, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || off < 0 {
		return SlotPosition{}, fmt.Errorf("parse per-slot checkpoint %q: the offset is not a non-negative integer", clipValue(s))
	}
	return SlotPosition{ReplID: f[0], Offset: off}, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return true
}

// clipValue keeps error texts short whatever a key holds.
func clipValue(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
