package tracker

import (
	"slices"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

// maxRetractionDevices bounds the devices a retraction follows; losses of larger group
// messages are not retracted (their late records still say what arrived).
const maxRetractionDevices = 8

// retraction is what late acks of a message declared lost on ack timeout must show to take
// the loss back: every device that had not acked, acked before the deadline. Its telemetry was
// merely late (delayed beyond allowed_lateness while the same source's later events flowed).
type retraction struct {
	deadline int64
	// devices are the hashes of the devices known at the loss, acked or not, and of the
	// unknown ones whose on-time ack arrived since.
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
	if known > maxRetractionDevices || expected > maxRetractionDevices || expected <= acked {
		return
	}
	r := &retraction{deadline: m.deadline, need: uint16(expected - acked), unknown: uint16(max(expected-known, 0))}
	t.forEachDevice(m, func(dv device) {
		r.devices = append(r.devices, retractDevice{hash: t.hash(dv.id), acked: dv.flags&devAcked != 0})
	})
	t.retract[t.hash(m.id)] = r
}

// lateAck applies a late event to the retraction of message h and reports whether it
// completed it. An ack stamped after the deadline proves the loss: nothing can retract it then.
func (t *Tracker) lateAck(h uint64, ev *event.Event, at int64) bool {
	r := t.retract[h]
	if r == nil || ev.Stage != imsemconv.StageAck || ev.Failed {
		return false
	}
	dh := t.hash(ev.DeviceID)
	i := slices.IndexFunc(r.devices, func(d retractDevice) bool { return d.hash == dh })
	switch {
	case i >= 0 && r.devices[i].acked:
		return false // a repeated ack
	case at > r.deadline:
		delete(t.retract, h)
		return false
	case i >= 0:
		r.devices[i].acked = true
	case r.unknown > 0:
		r.unknown--
		r.devices = append(r.devices, retractDevice{hash: dh, acked: true})
	default:
		return false // a device the message was not expected to reach
	}
	r.need--
	if r.need > 0 {
		return false
	}
	delete(t.retract, h)
	return true
}
