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

// partitionedSend plays a send from a stalled service ("dc2") whose message every other
// service reported on time ("live"): the message is decided without it and, with a decided
// memory of ring entries, forgotten while the live stream goes on (a message per second, each
// decided as soon as its ack is in). The send arrives 2×ack_timeout late, after a restart with
// restart. It returns m's outcome labels and the messages left unjudged past memory.
func partitionedSend(t *testing.T, ring int, restart bool, ack int64) ([]string, int64) {
	t.Helper()
	cfg := eventTimeConfig()
	cfg.DecidedCacheSize = ring
	tr := pastHold(cfg)
	tr.Apply(t0, ev(imsemconv.StageSend, "dc2-before", t0, from("dc2")))
	at := t0 + sec
	tr.Apply(at, ev(imsemconv.StagePersist, "m", at+10*ms, from("live")))
	tr.Apply(at, ev(imsemconv.StagePush, "m", at+20*ms, fanout(1), from("live")))
	tr.Apply(at, ev(imsemconv.StageDeliver, "m", at+30*ms, dev("d1"), from("live")))
	tr.Apply(at, ev(imsemconv.StageAck, "m", ack, dev("d1"), from("live")))
	now, unjudged := at, int64(0)
	var outs []Outcome
	live := func(until int64) {
		for ; now < until; now += sec {
			id := fmt.Sprint("live-", now)
			tr.Apply(now, ev(imsemconv.StageSend, id, now, from("live")))
			tr.Apply(now, ev(imsemconv.StagePush, id, now, fanout(1), from("live")))
			tr.Apply(now, ev(imsemconv.StageAck, id, now, dev("d1"), from("live")))
			tr.Tick(now)
		}
		outs = append(outs, tr.TakeOutcomes()...)
		unjudged += tr.TakeCounters().UnjudgedPastMemory
	}
	live(t0 + 3*int64(ackTO))
	if restart {
		tr = restarted(t, tr, now)
		live(now + idleTO.Nanoseconds() + 5*sec)
	}
	tr.Apply(now, ev(imsemconv.StageSend, "m", at, from("dc2")))
	live(now + 2*int64(ackTO))
	return labelsOf(outs), unjudged
}

// TestLateSendOfAForgottenMessageIsNotALoss: a late send whose message the decided memory
// still holds is recognised; once the memory forgot it, the send starts a late message that
// may be the forgotten one, so it is left unjudged (counted) instead of lost at send. A
// message lost beyond doubt (its ack after ack_timeout) is judged as long as the memory holds it.
func TestLateSendOfAForgottenMessageIsNotALoss(t *testing.T) {
	inTime, tooLate := t0+sec+40*ms, t0+sec+int64(ackTO)+sec
	for _, restart := range []bool{false, true} {
		labels, unjudged := partitionedSend(t, 1000, restart, inTime)
		assert.Equal(t, []string{"delivered@ack"}, labels, "remembered, restart %v", restart)
		assert.Zero(t, unjudged)

		labels, unjudged = partitionedSend(t, 10, restart, inTime)
		assert.Equal(t, []string{"delivered@ack"}, labels, "forgotten, restart %v", restart)
		assert.Equal(t, int64(1), unjudged, "forgotten, restart %v", restart)

		labels, _ = partitionedSend(t, 1000, restart, tooLate)
		assert.Equal(t, []string{"lost@deliver", "late@ack"}, labels, "acked too late, restart %v", restart)
	}
}
