package tracker

import (
	"slices"
	"testing"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

func permute(n int, fn func([]int)) {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	var rec func(k int)
	rec = func(k int) {
		if k == n {
			fn(p)
			return
		}
		for i := k; i < n; i++ {
			p[k], p[i] = p[i], p[k]
			rec(k + 1)
			p[k], p[i] = p[i], p[k]
		}
	}
	rec(0)
}

// TestAnyArrivalOrderNoFalseDuplicate feeds every arrival order of a clean lifecycle with
// two recipient devices, one of them pushed offline (as several concurrent exporters or a
// gateway with several consumers may reorder them): each must give exactly one delivered
// record and never a duplicate. It caught an offline push (a per-device push without
// fan-out) standing in for the fan-out: the message was decided once that device acked,
// and the other device's first deliver, arriving later, was reported as a duplicate.
func TestAnyArrivalOrderNoFalseDuplicate(t *testing.T) {
	evs := []*event.Event{
		ev(imsemconv.StageSend, "m", t0),
		ev(imsemconv.StagePush, "m", t0, fanout(2)),
		ev(imsemconv.StagePush, "m", t0, dev("b"), offline()),
		ev(imsemconv.StageDeliver, "m", t0, dev("a")),
		ev(imsemconv.StageAck, "m", t0, dev("a")),
		ev(imsemconv.StageDeliver, "m", t0, dev("b")),
		ev(imsemconv.StageAck, "m", t0, dev("b")),
	}
	bad := 0
	permute(len(evs), func(p []int) {
		if bad > 3 {
			return
		}
		tr := New(testConfig())
		dup := false
		for _, i := range p {
			e := *evs[i]
			dup = tr.Apply(t0, &e) || dup
		}
		tr.Tick(t0 + int64(offTO))
		out := tr.TakeOutcomes()
		if dup || len(out) != 1 || out[0].Outcome != imsemconv.OutcomeDelivered {
			bad++
			var names []string
			for _, i := range p {
				names = append(names, evs[i].Stage.String()+":"+evs[i].DeviceID)
			}
			t.Errorf("order %v: %+v", names, out)
		}
	})
}

// everyOrder feeds every arrival order of evs (all at one collector time, the watermark an
// hour behind: only the final Tick decides) and checks the outcome labels of each.
func everyOrder(t *testing.T, evs []*event.Event, want ...string) {
	t.Helper()
	bad := 0
	permute(len(evs), func(p []int) {
		if bad > 3 {
			return
		}
		tr := New(testConfig())
		for _, i := range p {
			e := *evs[i]
			tr.Apply(t0, &e)
		}
		tr.Tick(t0 + int64(offTO))
		var got []string
		for _, o := range tr.TakeOutcomes() {
			got = append(got, string(o.Outcome)+"@"+o.Stage.String())
		}
		if !slices.Equal(got, want) {
			bad++
			var names []string
			for _, i := range p {
				names = append(names, evs[i].Stage.String()+":"+evs[i].DeviceID)
			}
			t.Errorf("order %v: %v, want %v", names, got, want)
		}
	})
}

// offlineRecipient is a group message to a and b, b offline at push; b acks at ackB.
func offlineRecipient(ackA, ackB int64) []*event.Event {
	return []*event.Event{
		ev(imsemconv.StageSend, "m", t0),
		ev(imsemconv.StagePersist, "m", t0+ms),
		ev(imsemconv.StagePush, "m", t0+2*ms, fanout(2)),
		ev(imsemconv.StagePush, "m", t0+2*ms, dev("b"), offline()),
		ev(imsemconv.StageDeliver, "m", t0+3*ms, dev("a")),
		ev(imsemconv.StageAck, "m", ackA, dev("a")),
		ev(imsemconv.StageDeliver, "m", ackB-ms, dev("b")),
		ev(imsemconv.StageAck, "m", ackB, dev("b")),
	}
}

// TestAnyArrivalOrderOfflineReconnect: a recipient offline at push reconnects and acks after
// ack_timeout, within offline_timeout. Whatever the arrival order of its events, it is
// delivered: a gateway's queues resuming apart after a restart deliver the ack before the send
// and the offline push.
func TestAnyArrivalOrderOfflineReconnect(t *testing.T) {
	everyOrder(t, offlineRecipient(t0+4*ms, t0+int64(ackTO)+5*sec), "delivered@ack")
}

// TestAnyArrivalOrderLateOnlineAck: the offline recipient acked in time, the online one after
// ack_timeout: nothing waited for an offline recipient at the deadline, so the message is lost
// in any arrival order.
func TestAnyArrivalOrderLateOnlineAck(t *testing.T) {
	everyOrder(t, offlineRecipient(t0+int64(ackTO)+5*sec, t0+4*ms), "lost@deliver", "late@ack")
}

// TestAnyArrivalOrderRepeatedLateAck: a device acked in time and again after ack_timeout (a
// client retry): its first ack counts, in any arrival order.
func TestAnyArrivalOrderRepeatedLateAck(t *testing.T) {
	everyOrder(t, []*event.Event{
		ev(imsemconv.StageSend, "m", t0),
		ev(imsemconv.StagePush, "m", t0+2*ms, fanout(1)),
		ev(imsemconv.StageDeliver, "m", t0+3*ms, dev("a")),
		ev(imsemconv.StageAck, "m", t0+4*ms, dev("a")),
		ev(imsemconv.StageAck, "m", t0+int64(ackTO)+sec, dev("a")),
	}, "delivered@ack")
}
