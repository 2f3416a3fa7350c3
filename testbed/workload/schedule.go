package workload

import (
	"container/heap"
	"time"
)

// Source yields planned messages in the order of their start: each call returns the events
// of one message (with their Due times set) or false when the stream is over.
type Source interface {
	Next() (start time.Duration, events []Event, ok bool)
}

// Schedule releases events when they fall due. It is driven by explicit elapsed times, so it
// is deterministic and tests step it without a clock. Not safe for concurrent use.
type Schedule struct {
	src      Source
	pending  eventHeap
	seq      uint64
	nextAt   time.Duration
	nextEvts []Event
	done     bool
	// MaxPending bounds the events held for later (delayed events of messages already
	// started); Advance stops pulling new messages while it is exceeded, so a slow consumer
	// slows the stream instead of growing memory.
	MaxPending int
	messages   int64
}

// NewSchedule wraps a source.
func NewSchedule(src Source) *Schedule {
	s := &Schedule{src: src, MaxPending: 1 << 22}
	s.pull()
	return s
}

func (s *Schedule) pull() {
	at, evts, ok := s.src.Next()
	s.nextAt, s.nextEvts, s.done = at, evts, !ok
}

// Advance appends to dst every event due at elapsed, in due order (ties in the order they
// were planned), and returns it.
func (s *Schedule) Advance(elapsed time.Duration, dst []Event) []Event {
	for !s.done && s.nextAt <= elapsed && s.pending.Len() < s.MaxPending {
		for _, e := range s.nextEvts {
			heap.Push(&s.pending, item{e: e, seq: s.seq})
			s.seq++
		}
		s.messages++
		s.pull()
	}
	for s.pending.Len() > 0 && s.pending[0].e.Due <= elapsed {
		dst = append(dst, heap.Pop(&s.pending).(item).e)
	}
	return dst
}

// Started is the number of messages whose events were taken from the source.
func (s *Schedule) Started() int64 { return s.messages }

// Done reports whether every event has been released.
func (s *Schedule) Done() bool { return s.done && s.pending.Len() == 0 }

// Pending is the number of events held for later.
func (s *Schedule) Pending() int { return s.pending.Len() }

// NextDue is the due time of the next event, the start of the next message if sooner; ok is
// false when nothing is left.
func (s *Schedule) NextDue() (time.Duration, bool) {
	switch {
	case s.pending.Len() > 0 && (s.done || s.pending[0].e.Due <= s.nextAt):
		return s.pending[0].e.Due, true
	case !s.done:
		return s.nextAt, true
	}
	return 0, false
}

type item struct {
	e   Event
	seq uint64
}

type eventHeap []item

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if h[i].e.Due != h[j].e.Due {
		return h[i].e.Due < h[j].e.Due
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(item)) }
func (h *eventHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = item{}
	*h = old[:len(old)-1]
	return it
}
