package tracker

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

// stalledSourceBacklog plays a data-centre partition: source "dc2" is heard at t0 and then
// falls silent while "live" goes on, so once dc2 is idle the watermark follows live alone.
// After 2×ack_timeout dc2's backlog arrives at once in the given order (every event of the
// message happened at t0+1s and after, so all of it is late data), and live goes on until
// well past every window. With restart the collector restarts (a final snapshot) halfway
// through the backlog, and the rest of it arrives after the start-up hold. It returns the
// message's outcome labels.
func stalledSourceBacklog(t *testing.T, backlog []*event.Event, order []int, restart bool) []string {
	t.Helper()
	tr := pastHold(eventTimeConfig())
	tr.Apply(t0, ev(imsemconv.StageSend, "dc2-before", t0, from("dc2")))
	now := t0
	live := func(until int64) {
		for ; now < until; now += sec {
			tr.Apply(now, ev(imsemconv.StageSend, fmt.Sprint("live-", now), now, from("live")))
			tr.Tick(now)
		}
	}
	live(t0 + 2*int64(ackTO))
	var labels []string
	for n, i := range order {
		if restart && n == len(order)/2 {
			labels = append(labels, labelsOf(tr.TakeOutcomes())...)
			tr = restarted(t, tr, now)
			// The rest of the backlog comes after the start-up hold.
			live(now + idleTO.Nanoseconds() + 5*sec)
		}
		e := *backlog[i]
		tr.Apply(now, &e)
	}
	live(now + int64(offTO) + 2*int64(ackTO))
	return append(labels, labelsOf(tr.TakeOutcomes())...)
}

func labelsOf(outs []Outcome) []string {
	var labels []string
	for _, o := range outs {
		if o.MessageID != "m" {
			continue
		}
		l := string(o.Outcome) + "@" + o.Stage.String()
		if o.Retracted {
			l += "(retracted)"
		}
		labels = append(labels, l)
	}
	return labels
}

func dc2Lifecycle(ack int64, extra ...*event.Event) []*event.Event {
	at := t0 + sec
	return append([]*event.Event{
		ev(imsemconv.StageSend, "m", at, from("dc2")),
		ev(imsemconv.StagePersist, "m", at+10*ms, from("dc2")),
		ev(imsemconv.StagePush, "m", at+20*ms, fanout(1), from("dc2")),
		ev(imsemconv.StageDeliver, "m", at+30*ms, dev("d1"), from("dc2")),
		ev(imsemconv.StageAck, "m", ack, dev("d1"), from("dc2")),
	}, extra...)
}

// TestLateBornMessageIsJudgedOnItsOwnEvents: a message whose telemetry all arrives after the
// watermark passed its deadline gets the same verdict in every arrival order, with or without
// a restart halfway, the verdict its events' times give: delivered when acked within
// ack_timeout of the send (it used to be lost on whichever event came first, then
// retracted), lost with a late ack otherwise, offline_timeout for an offline recipient.
func TestLateBornMessageIsJudgedOnItsOwnEvents(t *testing.T) {
	for _, tc := range []struct {
		name    string
		backlog []*event.Event
		want    []string
	}{
		{"acked in time", dc2Lifecycle(t0 + sec + 40*ms), []string{"delivered@ack"}},
		{"acked after ack_timeout", dc2Lifecycle(t0 + sec + int64(ackTO) + sec), []string{"lost@deliver", "late@ack"}},
		{
			"offline recipient back within offline_timeout",
			dc2Lifecycle(t0+sec+int64(ackTO)+5*sec, ev(imsemconv.StagePush, "m", t0+sec+20*ms, dev("d1"), offline(), from("dc2"))),
			[]string{"delivered@ack"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := 0
			for _, restart := range []bool{false, true} {
				permute(len(tc.backlog), func(p []int) {
					if got := stalledSourceBacklog(t, tc.backlog, p, restart); !slices.Equal(got, tc.want) && bad < 3 {
						bad++
						var names []string
						for _, i := range p {
							names = append(names, tc.backlog[i].Stage.String())
						}
						assert.Equal(t, tc.want, got, "arrival order %v, restart %v", names, restart)
					}
				})
			}
		})
	}
}
