package tracker

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/seqgap"
)

const seqgapMaxConfirmed = seqgap.MaxConfirmed

// seqLabels are the seq-gap records among outs, as "outcome@stage seq" (+"(retracted)").
func seqLabels(outs []Outcome) []string {
	var labels []string
	for _, o := range outs {
		if o.Reason != imsemconv.ReasonSeqGap {
			continue
		}
		l := fmt.Sprintf("%s@%s %d", o.Outcome, o.Stage, o.Seq)
		if o.Retracted {
			l += "(retracted)"
		}
		labels = append(labels, l)
	}
	return labels
}

// lateSeq persists seqs 1 and 3 of a conversation at t0 and seq 2 stamped at missing; the
// watermark moves on with a source that goes on sending. With late, seq 2's persist arrives
// only after the watermark passed the gap's deadline (t0 + reorder_window); with restart the
// collector restarts (a final snapshot) before it arrives. It returns the seq-gap records.
func lateSeq(t *testing.T, missing int64, late, restart bool) []string {
	t.Helper()
	tr := pastHold(eventTimeConfig())
	tr.Apply(t0, ev(imsemconv.StagePersist, "a", t0, seq(1), from("tr")))
	tr.Apply(t0, ev(imsemconv.StagePersist, "c", t0, seq(3), from("tr")))
	persist := ev(imsemconv.StagePersist, "b", missing, seq(2), from("tr"))
	if !late {
		tr.Apply(t0, persist)
	}
	now := t0
	var outs []Outcome
	for ; now <= t0+2*int64(window); now += sec {
		tr.Apply(now, ev(imsemconv.StageSend, "live", now, from("tr")))
		tr.Tick(now)
	}
	if restart {
		outs = append(outs, tr.TakeOutcomes()...)
		tr = restarted(t, tr, now)
	}
	if late {
		tr.Apply(now, persist)
		tr.Apply(now, ev(imsemconv.StagePersist, "b", missing, seq(2), from("tr"))) // its retry
	}
	return seqLabels(append(outs, tr.TakeOutcomes()...))
}

// TestLateSeqTakesTheGapBack: a seq persisted within the reorder window is not lost, however
// late its telemetry arrives. Arriving after its gap was confirmed, it takes the loss back
// (once, its retry changes nothing), across a restart too.
func TestLateSeqTakesTheGapBack(t *testing.T) {
	inTime := t0 + sec
	assert.Empty(t, lateSeq(t, inTime, false, false), "arriving in time, no gap")
	for _, restart := range []bool{false, true} {
		assert.Equal(t, []string{"lost@persist 2", "late@persist 2(retracted)"}, lateSeq(t, inTime, true, restart),
			"restart %v", restart)
	}
}

// TestSeqPersistedAfterTheWindowStaysLost: a seq persisted after its gap's reorder window
// was missing by the rule's own definition: its late persist is reported, the loss stands.
func TestSeqPersistedAfterTheWindowStaysLost(t *testing.T) {
	afterWindow := t0 + int64(window) + sec
	for _, restart := range []bool{false, true} {
		assert.Equal(t, []string{"lost@persist 2", "late@persist 2"}, lateSeq(t, afterWindow, true, restart), "restart %v", restart)
	}
}

// TestLateSeqRecordKeepsTheGapsKeys: the late record has the lost record's keys and pipeline,
// so consumers pair them.
func TestLateSeqRecordKeepsTheGapsKeys(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	sink := func(e *event.Event) { e.Sink = 1 }
	tr.Apply(t0, ev(imsemconv.StagePersist, "a", t0, seq(1), from("tr"), sink))
	tr.Apply(t0, ev(imsemconv.StagePersist, "d", t0, seq(4), from("tr"), sink))
	tr.Apply(t0+int64(window), ev(imsemconv.StageSend, "live", t0+int64(window), from("tr"), sink))
	tr.Tick(t0 + int64(window))
	require.Equal(t, []string{"lost@persist 2", "lost@persist 3"}, seqLabels(tr.TakeOutcomes()))
	tr.Apply(t0+int64(window), ev(imsemconv.StagePersist, "b", t0+ms, seq(2), from("tr"), sink))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	o := out[0]
	assert.Equal(t, Outcome{
		Outcome: imsemconv.OutcomeLate, Stage: imsemconv.StagePersist, Reason: imsemconv.ReasonSeqGap,
		LossStage: imsemconv.StagePersist, Retracted: true, ConversationID: "c1", Seq: 2, HasSeq: true,
		GapSize: 2, Sink: 1, Start: t0 + ms, End: t0 + ms,
	}, o)
}

// TestConfirmedGapsForgottenAreCounted: a conversation remembers seqgap.MaxConfirmed
// confirmed gaps; older ones are forgotten and counted as evictions of decided state.
func TestConfirmedGapsForgottenAreCounted(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	const n = seqgapMaxConfirmed + 3
	for i := range int64(n + 1) {
		at := t0 + i*2*int64(window)
		tr.Apply(at, ev(imsemconv.StagePersist, "p", at, seq(2*i), from("tr")))
		tr.Tick(at)
	}
	tr.TakeOutcomes()
	assert.Equal(t, int64(n-1-seqgapMaxConfirmed), tr.TakeCounters().Evicted[EvictedDecided])
}
