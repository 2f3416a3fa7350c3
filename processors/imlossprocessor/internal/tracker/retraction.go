package tracker

import (
	"cmp"
	"math"
	"slices"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

// retractionDevicesPerEntry sizes the budget of devices all retractions may follow together:
// this many per entry of the decided memory. A loss of a large group message may take many
// devices (up to max_devices_per_message) as long as the losses followed meanwhile leave room;
// one that does not fit is not followed, and counted as an eviction (state retraction).
const retractionDevicesPerEntry = 8

func (t *Tracker) retractionBudget() int { return len(t.decidedRing) * retractionDevicesPerEntry }

// retraction is what late acks of a message declared lost on ack timeout must show to take
// the loss back: every device that had not acked, acked before the deadline. Its telemetry was
// merely late (delayed beyond allowed_lateness while the same source's later events flowed).
type retraction struct {
	deadline int64
	// devices are the hashes of the devices known at the loss, acked or not, and of the
	// unknown ones whose on-time ack arrived since, sorted by hash. Room for the unknown ones
	// is counted against the budget from the start.
	devices []retractDevice
	need    uint16 // acks still missing
	unknown uint16 // missing devices that were never seen (announced by the fan-out only)
}

type retractDevice struct {
	hash  uint64
	acked bool
}

// noteRetractable records, as m is declared lost on ack timeout, what would take the loss back.
func (t *Tracker) noteRetractable(m *message) {
	if t.cfg.DecidedCacheSize == 0 {
		return
	}
	expected, known, acked := t.expected(m)
	if expected <= acked {
		return
	}
	size := max(expected, known)
	if size > min(t.cfg.MaxDevicesPerMessage, math.MaxUint16) {
		t.counters.Evicted[EvictedRetraction]++
		return
	}
	r := &retraction{deadline: t.deadlineOf(m), need: uint16(expected - acked), unknown: uint16(max(expected-known, 0))}
	r.devices = make([]retractDevice, 0, size)
	t.forEachDevice(m, func(dv device) {
		r.devices = append(r.devices, retractDevice{hash: t.hash(dv.id), acked: dv.flags&devAcked != 0})
	})
	slices.SortFunc(r.devices, byHash)
	t.addRetraction(t.hash(m.id), r)
}

func byHash(a, b retractDevice) int { return cmp.Compare(a.hash, b.hash) }

// size is what r counts against the budget: its devices and room for the unknown ones.
func (r *retraction) size() int { return len(r.devices) + int(r.unknown) }

// addRetraction follows r for message h when its devices fit the budget; a loss that does
// not fit is not followed, and counted.
func (t *Tracker) addRetraction(h uint64, r *retraction) {
	t.dropRetraction(h)
	if t.retractDevices+r.size() > t.retractionBudget() {
		t.counters.Evicted[EvictedRetraction]++
		return
	}
	t.retract[h] = r
	t.retractDevices += r.size()
}

func (t *Tracker) dropRetraction(h uint64) {
	if r := t.retract[h]; r != nil {
		t.retractDevices -= r.size()
		delete(t.retract, h)
	}
}

// lateAck applies a late event to the retraction of message h and reports whether it
// completed it. An ack stamped after the deadline proves the loss: nothing can retract it then.
func (t *Tracker) lateAck(h uint64, ev *event.Event, at int64) bool {
	r := t.retract[h]
	if r == nil || ev.Stage != imsemconv.StageAck || ev.Failed {
		return false
	}
	dh := t.hash(ev.DeviceID)
	i, found := slices.BinarySearchFunc(r.devices, retractDevice{hash: dh}, byHash)
	switch {
	case found && r.devices[i].acked:
		return false // a repeated ack
	case at > r.deadline:
		t.dropRetraction(h)
		return false
	case found:
		r.devices[i].acked = true
	case r.unknown > 0:
		// Its room was counted already: the size stays the same.
		r.unknown--
		r.devices = slices.Insert(r.devices, i, retractDevice{hash: dh, acked: true})
	default:
		return false // a device the message was not expected to reach
	}
	r.need--
	if r.need > 0 {
		return false
	}
	t.dropRetraction(h)
	return true
}
