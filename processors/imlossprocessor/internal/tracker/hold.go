package tracker

import "github.com/imcol/imcol/processors/imlossprocessor/internal/event"

// held is an event waiting for its message's deadline (a copy: the caller's batch is reused).
type held struct {
	ev          event.Event
	at          int64 // event time
	beforeCrash bool
}

// hold keeps an event stamped after m's deadline until that deadline is applied: it may
// arrive before the watermark shows the deadline final, while an offline push or an earlier
// send still on its way can move it. Once the deadline is applied the event either counts (it
// fell within the offline deadline) or is late. So what it does to the verdict does not depend
// on when it arrived.
//
// It reports false when the hold is full (counted): the event is then applied at once.
func (t *Tracker) hold(m *message, ev *event.Event, at int64, beforeCrash bool) bool {
	if t.releasingAll {
		return false
	}
	if t.nWaiting >= t.maxWaiting {
		t.counters.HoldFull++
		return false
	}
	t.waiting[m] = append(t.waiting[m], held{ev: *ev, at: at, beforeCrash: beforeCrash})
	t.nWaiting++
	return true
}

// release routes again, in arrival order, the events that waited for m's deadline: m was
// decided (they are late, duplicates or retractions now), or its deadline moved (the offline
// deadline, a later send).
func (t *Tracker) release(m *message) {
	if len(t.waiting) == 0 {
		return
	}
	list, ok := t.waiting[m]
	if !ok {
		return
	}
	delete(t.waiting, m)
	t.nWaiting -= len(list)
	for i := range list {
		h := &list[i]
		t.route(&h.ev, h.at, h.beforeCrash, true)
	}
}

// ReleaseHeld applies every waiting event at once, on what is known: before a final
// snapshot, which does not keep them.
func (t *Tracker) ReleaseHeld() {
	t.releasingAll = true
	defer func() { t.releasingAll = false }()
	for len(t.waiting) > 0 {
		for m := range t.waiting {
			t.release(m)
			break
		}
	}
}
