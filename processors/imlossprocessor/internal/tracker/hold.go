package tracker

import (
	"encoding/binary"
	"fmt"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

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

// Flags of a held event in a snapshot.
const (
	heldFailed byte = 1 << iota
	heldOffline
	heldHasSeq
	heldBeforeCrash
)

// appendHeld writes the events waiting for m's deadline: a restart must not decide m early
// on what is known without them, nor forget them.
func (t *Tracker) appendHeld(b []byte, m *message) []byte {
	list := t.waiting[m]
	b = binary.AppendUvarint(b, uint64(len(list)))
	for i := range list {
		h := &list[i]
		flags := flagIf(h.ev.Failed, heldFailed) | flagIf(h.ev.Offline, heldOffline) |
			flagIf(h.ev.HasSeq, heldHasSeq) | flagIf(h.beforeCrash, heldBeforeCrash)
		b = append(b, byte(h.ev.Stage), flags, h.ev.Sink)
		b = appendString(b, h.ev.ConversationID)
		b = appendString(b, h.ev.DeviceID)
		b = appendString(b, h.ev.Source)
		b = append(b, h.ev.TraceID[:]...)
		for _, v := range []int64{h.ev.Start, h.ev.End, h.ev.Seq, h.at} {
			b = binary.AppendVarint(b, v)
		}
		b = binary.AppendUvarint(b, uint64(h.ev.Fanout))
	}
	return b
}

func flagIf(on bool, flag byte) byte {
	if on {
		return flag
	}
	return 0
}

// readHeld reads what appendHeld wrote for the message id, at most limit events.
func readHeld(r *reader, id string, limit int) []held {
	n := r.count(limit)
	list := make([]held, 0, n)
	for range n {
		var h held
		h.ev.MessageID = id
		stage, flags := r.byte(), r.byte()
		h.ev.Stage, h.ev.Sink = imsemconv.Stage(stage), r.byte()
		h.ev.Failed, h.ev.Offline, h.ev.HasSeq = flags&heldFailed != 0, flags&heldOffline != 0, flags&heldHasSeq != 0
		h.beforeCrash = flags&heldBeforeCrash != 0
		h.ev.ConversationID, h.ev.DeviceID, h.ev.Source = r.str(), r.str(), r.strUpTo(maxSourceName)
		copy(h.ev.TraceID[:], r.bytes(16))
		h.ev.Start, h.ev.End, h.ev.Seq, h.at = r.varint(), r.varint(), r.varint(), r.varint()
		fanout := r.uvarint()
		if r.err != nil || h.ev.Stage < imsemconv.StageSend || h.ev.Stage > imsemconv.StageAck || fanout > event.MaxFanout {
			r.fail(fmt.Errorf("held event %d of %q", len(list), id))
			return nil
		}
		h.ev.Fanout = uint32(fanout)
		list = append(list, h)
	}
	return list
}

// rehold puts restored events back on hold for m; when the hold is full they are applied at
// once, as any event past a full hold is.
func (t *Tracker) rehold(m *message, list []held) {
	for i := range list {
		h := &list[i]
		if t.lookup(m.id) != m {
			t.route(&h.ev, h.at, h.beforeCrash, true)
			continue
		}
		if !t.hold(m, &h.ev, h.at, h.beforeCrash) {
			t.route(&h.ev, h.at, h.beforeCrash, true)
		}
	}
}
