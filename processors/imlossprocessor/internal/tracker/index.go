package tracker

import "hash/maphash"

// index maps message ids to messages with open addressing over a slice of pointers.
// A Go map of a million entries costs ~35 bytes per entry at this size; this table costs
// 9 bytes per slot at a load factor between 3/8 and 3/4 — the difference is a tenth of
// the memory budget. The seed is random per process, so ids cannot be chosen to collide.
// Each slot also keeps 8 bits of its message's hash: a probe past another message then reads
// a byte of this table instead of that message and its id (two cache misses, then a string
// comparison), which was most of the time the tracker spent looking messages up.
type index struct {
	seed  maphash.Seed
	slots []*message
	tags  []uint8
	mask  uint64
	n     int
}

const minIndexSlots = 1024

func newIndex() index {
	return index{seed: maphash.MakeSeed(), slots: make([]*message, minIndexSlots), tags: make([]uint8, minIndexSlots), mask: minIndexSlots - 1}
}

func (x *index) hash(id string) uint64 { return maphash.String(x.seed, id) }

// tagOf is the bits of h that do not choose the home slot (tables have at most 2^56 slots).
func tagOf(h uint64) uint8 { return uint8(h >> 56) }

func (x *index) get(id string) *message {
	h := x.hash(id)
	tag := tagOf(h)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		m := x.slots[i]
		if m == nil || (x.tags[i] == tag && m.id == id) {
			return m
		}
	}
}

// put adds m, whose id must not be present.
func (x *index) put(m *message) {
	if (x.n+1)*4 > len(x.slots)*3 {
		x.resize(len(x.slots) * 2)
	}
	x.insert(m)
	x.n++
}

func (x *index) insert(m *message) {
	h := x.hash(m.id)
	i := h & x.mask
	for x.slots[i] != nil {
		i = (i + 1) & x.mask
	}
	x.slots[i], x.tags[i] = m, tagOf(h)
}

func (x *index) resize(size int) {
	old := x.slots
	x.slots, x.tags = make([]*message, size), make([]uint8, size)
	x.mask = uint64(size - 1)
	for _, m := range old {
		if m != nil {
			x.insert(m)
		}
	}
}

// remove deletes m by backward-shift, so probes never need tombstones.
func (x *index) remove(m *message) {
	i := x.hash(m.id) & x.mask
	for x.slots[i] != m {
		if x.slots[i] == nil {
			return
		}
		i = (i + 1) & x.mask
	}
	x.n--
	for j := (i + 1) & x.mask; ; j = (j + 1) & x.mask {
		c := x.slots[j]
		if c == nil {
			break
		}
		home := x.hash(c.id) & x.mask
		// c may move into the hole at i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j)) {
			x.slots[i], x.tags[i] = c, x.tags[j]
			i = j
		}
	}
	x.slots[i] = nil
	if x.n*8 < len(x.slots) && len(x.slots) > minIndexSlots {
		x.resize(len(x.slots) / 2)
	}
}
