package clustersource

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/ferrysync/ferry/internal/cluster"
	"github.com/ferrysync/ferry/internal/command"
)

// slotSet is a set of hash slots. Values are never changed once shared: a shard's sets
// are replaced whole (atomic pointers), so readers need no lock.
type slotSet [command.SlotCount / 64]uint64

func (s *slotSet) has(slot uint16) bool {
	return s[slot/64]&(1<<(slot%64)) != 0
}

func (s *slotSet) add(slot uint16) { s[slot/64] |= 1 << (slot % 64) }

func (s *slotSet) addRanges(rs []cluster.SlotRange) {
	for _, r := range rs {
		for slot := int(r.First); slot <= int(r.Last); slot++ {
			s.add(uint16(slot))
		}
	}
}

func (s *slotSet) union(o *slotSet) *slotSet {
	out := *s
	for i := range out {
		out[i] |= o[i]
	}
	return &out
}

// count returns how many slots s holds.
func (s *slotSet) count() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// overlap returns how many slots s and o share.
func (s *slotSet) overlap(o *slotSet) int {
	n := 0
	for i := range s {
		n += bits.OnesCount64(s[i] & o[i])
	}
	return n
}

// first returns the lowest slot in s, or false when s is empty.
func (s *slotSet) first() (uint16, bool) {
	for i, w := range s {
		if w != 0 {
			return uint16(i*64 + bits.TrailingZeros64(w)), true
		}
	}
	return 0, false
}

// String renders s as ranges, "0-5460" or "0-100,200,5000-5460".
func (s *slotSet) String() string {
	var b strings.Builder
	for slot := 0; slot < command.SlotCount; slot++ {
		if !s.has(uint16(slot)) {
			continue
		}
		lo := slot
		for slot+1 < command.SlotCount && s.has(uint16(slot+1)) {
			slot++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if lo == slot {
			fmt.Fprintf(&b, "%d", lo)
		} else {
			fmt.Fprintf(&b, "%d-%d", lo, slot)
		}
	}
	return b.String()
}

func slotsOf(rs []cluster.SlotRange) *slotSet {
	var s slotSet
	s.addRanges(rs)
	return &s
}

// tagFor returns a short hash tag whose key slot is slot: "{<tag>}" in a key name puts
// the key there.
func tagFor(slot uint16) string {
	for i := 0; ; i++ {
		tag := strconv.FormatInt(int64(i), 36)
		if command.SlotString(tag) == slot {
			return tag
		}
	}
}
