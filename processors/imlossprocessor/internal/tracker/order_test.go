package tracker

import (
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
