package tracker

import (
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/components/imsemconv"
)

// TestRestartKeepsDecidedMemory is the testbed's false loss after a graceful restart: a
// delayed event of a message decided before the restart must not start a new message
// (which its deadline would declare lost at persist), and late events and duplicates must
// still be recognised.
func TestRestartKeepsDecidedMemory(t *testing.T) {
	tr := New(testConfig())
	// m1: its ack overtook its deliver, and it was decided delivered.
	tr.Apply(t0, ev(imsemconv.StageSend, "m1", t0))
	tr.Apply(t0, ev(imsemconv.StagePush, "m1", t0, fanout(1)))
	tr.Apply(t0, ev(imsemconv.StageAck, "m1", t0, dev("d1")))
	// m2: lost at push.
	lifecycle(tr, "m2", t0, imsemconv.StagePush)
	tr.Tick(t0 + int64(ackTO))
	require.Len(t, tr.TakeOutcomes(), 2)
	snap := tr.Snapshot(t0+int64(ackTO), Final)

	restartAt := t0 + int64(ackTO) + int64(time.Minute)
	tr2 := New(testConfig())
	st, err := tr2.Restore(snap, restartAt)
	require.NoError(t, err)
	assert.Equal(t, 2, st.Decided)
	assert.Equal(t, Final, st.Kind)

	tr2.Apply(restartAt, ev(imsemconv.StagePersist, "m1", t0, seq(1))) // the delayed event
	assert.False(t, tr2.Apply(restartAt, ev(imsemconv.StageDeliver, "m1", t0, dev("d1"))), "the original deliver, after its ack")
	assert.Equal(t, 0, tr2.Len(), "no new message started")
	assert.True(t, tr2.Apply(restartAt, ev(imsemconv.StageDeliver, "m1", t0, dev("d1"))), "a second deliver is a duplicate")
	tr2.Apply(restartAt, ev(imsemconv.StageAck, "m2", t0, dev("d1")))
	tr2.Tick(restartAt + int64(offTO))
	out := tr2.TakeOutcomes()
	require.Len(t, out, 2)
	assert.Equal(t, imsemconv.OutcomeDuplicate, out[0].Outcome)
	assert.Equal(t, imsemconv.OutcomeLate, out[1].Outcome)
	assert.Equal(t, imsemconv.StagePush, out[1].LossStage)
	assert.Equal(t, 0, tr2.Len())
}

func TestRestoreIntoSmallerDecidedMemoryKeepsNewest(t *testing.T) {
	tr := New(testConfig())
	for _, id := range []string{"a", "b", "c"} {
		lifecycle(tr, id, t0, imsemconv.StageAck)
	}
	tr.TakeOutcomes()
	cfg := testConfig()
	cfg.DecidedCacheSize = 2
	tr2 := New(cfg)
	st, err := tr2.Restore(tr.Snapshot(t0, Final), t0)
	require.NoError(t, err)
	assert.Equal(t, 2, st.Decided)
	assert.Equal(t, int64(1), tr2.TakeCounters().Evicted[EvictedDecided])
	assert.True(t, tr2.Apply(t0, ev(imsemconv.StageDeliver, "c", t0, dev("d1"))), "newest kept")
	assert.False(t, tr2.Apply(t0, ev(imsemconv.StageDeliver, "a", t0, dev("d1"))), "oldest dropped: a new (orphan) message")
	assert.Equal(t, 1, tr2.Len())

	cfg.DecidedCacheSize = 0
	st, err = New(cfg).Restore(tr.Snapshot(t0, Final), t0)
	require.NoError(t, err)
	assert.Equal(t, 0, st.Decided)
}

// TestRestoreReadsVersion1 keeps snapshots written before the decided memory was saved
// readable: an upgrade restores the in-flight messages.
func TestRestoreReadsVersion1(t *testing.T) {
	tr := New(testConfig())
	lifecycle(tr, "m1", t0, imsemconv.StagePush, trace(4))
	v2 := tr.Snapshot(t0, Final)
	// Version 1 is version 2 without the kind byte, the key and the (here empty) decided section.
	body := v2[len(snapshotMagic):]
	_, n := binary.Varint(body)
	v1 := append(append([]byte{}, snapshotMagicV1...), body[:n]...)
	v1 = append(v1, body[n+1+16:len(body)-1]...)

	tr2 := New(testConfig())
	st, err := tr2.Restore(v1, t0)
	require.NoError(t, err)
	assert.Equal(t, RestoreStats{Kind: Final, Version: 1, Messages: 1}, st)
	tr2.Apply(t0, ev(imsemconv.StageDeliver, "m1", t0, dev("d1")))
	tr2.Apply(t0, ev(imsemconv.StageAck, "m1", t0, dev("d1")))
	out := tr2.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
}

// TestUncertainMessageWithoutFanoutIsNotDelivered: after a restart without an exact
// snapshot, a message whose fan-out-bearing push went to the previous instance shows only its
// per-device (offline) push, deliver and ack here: every device seen acked, but how many were
// expected is unknown, so it is neither delivered nor lost. Begun after the restart, the same
// events are delivered on the devices seen.
func TestUncertainMessageWithoutFanoutIsNotDelivered(t *testing.T) {
	restartAt := t0 + int64(time.Minute)
	tr := New(testConfig())
	tr.DistrustEventsBefore(restartAt)
	after := restartAt + int64(CrashClockSkew)
	for _, m := range []struct {
		id string
		at int64
	}{{"before", restartAt - int64(time.Second)}, {"after", after}} {
		tr.Apply(restartAt, ev(imsemconv.StageSend, m.id, m.at))
		tr.Apply(restartAt, ev(imsemconv.StagePush, m.id, m.at+10*ms, dev("d2"), offline()))
		tr.Apply(restartAt, ev(imsemconv.StageDeliver, m.id, m.at+20*ms, dev("d2")))
		tr.Apply(restartAt, ev(imsemconv.StageAck, m.id, m.at+30*ms, dev("d2")))
	}
	tr.Tick(after + int64(offTO) + sec)
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, "after", out[0].MessageID)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	assert.Equal(t, int64(1), tr.TakeCounters().Unjudged)
	assert.Equal(t, 0, tr.Len())
}

// TestCheckpointRestoreNeverJudgesLost: after a crash, the events applied between the
// checkpoint and the crash are gone. A restored message may have been acked then, and a seq
// seen then would look missing, so neither may turn into a loss.
func TestCheckpointRestoreNeverJudgesLost(t *testing.T) {
	tr := New(testConfig())
	lifecycle(tr, "m1", t0, imsemconv.StagePush, seq(1))
	lifecycle(tr, "m2", t0, imsemconv.StagePush, seq(2))
	snap := tr.Snapshot(t0, Checkpoint)
	// Not in the snapshot: m1's ack and seq 3, applied before the crash.

	restartAt := t0 + int64(time.Minute)
	tr2 := New(testConfig())
	st, err := tr2.Restore(snap, restartAt)
	require.NoError(t, err)
	assert.Equal(t, Checkpoint, st.Kind)
	assert.Equal(t, 2, st.Messages)

	lifecycle(tr2, "m4", restartAt, imsemconv.StageAck, seq(4))
	// m2's deliver and ack happened in time; the crash delayed their telemetry.
	tr2.Apply(restartAt, ev(imsemconv.StageDeliver, "m2", t0+30*ms, dev("d1")))
	tr2.Apply(restartAt, ev(imsemconv.StageAck, "m2", t0+40*ms, dev("d1")))
	out := tr2.TakeOutcomes()
	require.Len(t, out, 2, "a restored message whose evidence completes is delivered")
	assert.Equal(t, "m4", out[0].MessageID)
	assert.Equal(t, "m2", out[1].MessageID)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[1].Outcome)

	// m5 was sent before the crash; its events arrive delayed. Its push and acks may have
	// been applied after the checkpoint and lost: not judged either. m6 began after the
	// restart (beyond the allowed clock skew) and is judged as usual.
	lifecycle(tr2, "m5", t0, imsemconv.StagePersist, conv("c2"), seq(7))
	after := restartAt + int64(CrashClockSkew)
	lifecycle(tr2, "m6", after, imsemconv.StagePersist, conv("c3"), seq(1))
	tr2.Tick(restartAt + int64(offTO))
	out = tr2.TakeOutcomes()
	require.Len(t, out, 1, "m1 and m5 are not judged lost, seq 3 is not a gap")
	assert.Equal(t, "m6", out[0].MessageID)
	assert.Equal(t, imsemconv.StagePersist, out[0].Stage)
	assert.Equal(t, int64(2), tr2.TakeCounters().Unjudged)
	assert.Equal(t, 0, tr2.Len())

	// The same snapshot taken at shutdown (final) is exact: m1 is lost, and seq 3 is a gap.
	tr3 := New(testConfig())
	_, err = tr3.Restore(tr.Snapshot(t0, Final), restartAt)
	require.NoError(t, err)
	lifecycle(tr3, "m4", restartAt, imsemconv.StageAck, seq(4))
	tr3.Tick(restartAt + int64(offTO))
	var got []string
	for _, o := range tr3.TakeOutcomes() {
		got = append(got, string(o.Outcome)+"/"+string(o.Reason))
	}
	assert.ElementsMatch(t, []string{"delivered/", "lost/seq_gap", "lost/ack_timeout", "lost/ack_timeout"}, got)
}

// TestRestartKeepsEachDevicesAckTime: the acks of a group message arrived before its send and
// offline push, a restart in between (a gateway's queues resuming apart): whichever side of
// the restart each event fell on, the recipient that was offline acked within
// offline_timeout, and the other in time, so the message is delivered; with the roles swapped
// it is lost.
func TestRestartKeepsEachDevicesAckTime(t *testing.T) {
	late := t0 + int64(ackTO) + 5*sec
	for _, tc := range []struct {
		name       string
		ackA, ackB int64
		want       []string
	}{
		{"offline recipient back late", t0 + 4*ms, late, []string{"delivered@ack"}},
		{"online recipient late", late, t0 + 4*ms, []string{"lost@deliver", "late@ack"}},
	} {
		evs := offlineRecipient(tc.ackA, tc.ackB)
		arrival := append(slices.Clone(evs[4:]), evs[:4]...) // acks first, then send and pushes
		for split := range len(arrival) + 1 {
			tr := New(testConfig())
			for _, e := range arrival[:split] {
				tr.Apply(t0, e)
			}
			tr2 := New(testConfig())
			_, err := tr2.Restore(tr.Snapshot(t0, Final), t0)
			require.NoError(t, err)
			for _, e := range arrival[split:] {
				tr2.Apply(t0, e)
			}
			tr2.Tick(t0 + int64(offTO))
			var got []string
			for _, o := range tr2.TakeOutcomes() {
				got = append(got, string(o.Outcome)+"@"+o.Stage.String())
			}
			assert.Equal(t, tc.want, got, "%s, restart after %d events", tc.name, split)
		}
	}
}
