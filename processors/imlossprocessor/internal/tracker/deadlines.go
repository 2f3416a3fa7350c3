package tracker

// deadlines is a binary min-heap of the messages in flight ordered by deadline (event time):
// telemetry of different services arrives in any order, so insertion order says nothing about
// which message is due first. Each message knows its position (hidx) for O(log n) updates.
type deadlines []*message

func (h deadlines) less(i, j int) bool { return h[i].deadline < h[j].deadline }

func (h deadlines) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = int32(i), int32(j)
}

func (h deadlines) Len() int { return len(h) }

func (h *deadlines) min() *message {
	if len(*h) == 0 {
		return nil
	}
	return (*h)[0]
}

func (h *deadlines) push(m *message) {
	m.hidx = int32(len(*h))
	*h = append(*h, m)
	h.up(int(m.hidx))
}

func (h *deadlines) remove(m *message) {
	i, last := int(m.hidx), len(*h)-1
	if i != last {
		h.swap(i, last)
	}
	(*h)[last] = nil
	*h = (*h)[:last]
	if i != last {
		h.fix(i)
	}
	m.hidx = -1
}

// update moves m after its deadline changed.
func (h *deadlines) update(m *message) { h.fix(int(m.hidx)) }

func (h *deadlines) fix(i int) {
	if !h.down(i) {
		h.up(i)
	}
}

func (h deadlines) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h deadlines) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}
