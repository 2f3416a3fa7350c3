package tracker

import (
	"fmt"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

const (
	sec    = int64(time.Second)
	ms     = int64(time.Millisecond)
	t0     = int64(1_700_000_000) * sec
	ackTO  = 30 * time.Second
	offTO  = 10 * time.Minute
	window = 5 * time.Second
)

func testConfig() Config {
	return Config{
		AckTimeout: ackTO, OfflineTimeout: offTO, ReorderWindow: window, MaxGap: 100,
		MaxMessages: 1000, MaxPerConversation: 100, MaxConversations: 100,
		MaxDevicesPerMessage: 64, DecidedCacheSize: 100,
		// No lag allowed: verdicts at the collector's clock, so each rule is stepped by Tick(now)
		// alone. The event-time model has its own tests (eventtime_test.go).
		// The watermark stays an hour behind the events: only Tick(now) decides here.
		MaxSourceLag: 0, MaxClockSkew: time.Hour, MaxSources: 100, AllowedLateness: time.Hour,
	}
}

// ev builds an event; opts tweak it.
func ev(stage imsemconv.Stage, msg string, at int64, opts ...func(*event.Event)) *event.Event {
	e := &event.Event{MessageID: msg, ConversationID: "c1", Stage: stage, Start: at, End: at}
	for _, o := range opts {
		o(e)
	}
	return e
}

func dev(d string) func(*event.Event)    { return func(e *event.Event) { e.DeviceID = d } }
func fanout(n uint32) func(*event.Event) { return func(e *event.Event) { e.Fanout = n } }
func seq(n int64) func(*event.Event)     { return func(e *event.Event) { e.Seq, e.HasSeq = n, true } }
func conv(c string) func(*event.Event)   { return func(e *event.Event) { e.ConversationID = c } }
func failed() func(*event.Event)         { return func(e *event.Event) { e.Failed = true } }
func offline() func(*event.Event)        { return func(e *event.Event) { e.Offline = true } }
func trace(b byte) func(*event.Event)    { return func(e *event.Event) { e.TraceID = pcommon.TraceID{b} } }

func lifecycle(tr *Tracker, msg string, at int64, upTo imsemconv.Stage, opts ...func(*event.Event)) {
	for _, s := range imsemconv.Stages {
		if s > upTo {
			return
		}
		o := append([]func(*event.Event){}, opts...)
		switch s {
		case imsemconv.StagePush:
			o = append(o, fanout(1))
		case imsemconv.StageDeliver, imsemconv.StageAck:
			o = append(o, dev("d1"))
		}
		tr.Apply(at, ev(s, msg, at+int64(s-imsemconv.StageSend)*10*ms, o...))
	}
}

func TestDeliveredWithLatency(t *testing.T) {
	tr := New(testConfig())
	lifecycle(tr, "m1", t0, imsemconv.StageAck, trace(7))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	assert.Equal(t, imsemconv.StageAck, out[0].Stage)
	assert.True(t, out[0].HasLatency)
	assert.InDelta(t, 40.0, out[0].LatencyMs, 1e-9) // send at +0, ack at +40ms
	assert.Equal(t, pcommon.TraceID{7}, out[0].TraceID)
	assert.Equal(t, "c1", out[0].ConversationID)
	assert.Equal(t, 0, tr.Len())
}

func TestOutOfOrderArrival(t *testing.T) {
	tr := New(testConfig())
	// ack first, send last: nothing is decided until send (latency) and push (fan-out) are in.
	tr.Apply(t0, ev(imsemconv.StageAck, "m1", t0+50*ms, dev("d1")))
	tr.Apply(t0, ev(imsemconv.StageDeliver, "m1", t0+40*ms, dev("d1")))
	tr.Apply(t0, ev(imsemconv.StagePush, "m1", t0+30*ms, fanout(1)))
	tr.Apply(t0, ev(imsemconv.StagePersist, "m1", t0+20*ms))
	assert.Empty(t, tr.TakeOutcomes())
	tr.Apply(t0, ev(imsemconv.StageSend, "m1", t0+10*ms))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	assert.InDelta(t, 40.0, out[0].LatencyMs, 1e-9)
}

func TestAckTimeoutReportsLastStage(t *testing.T) {
	for _, upTo := range []imsemconv.Stage{imsemconv.StageSend, imsemconv.StagePersist, imsemconv.StagePush, imsemconv.StageDeliver} {
		t.Run(upTo.String(), func(t *testing.T) {
			tr := New(testConfig())
			lifecycle(tr, "m1", t0, upTo)
			tr.Tick(t0 + int64(ackTO) - 1)
			assert.Empty(t, tr.TakeOutcomes(), "decided before the deadline")
			tr.Tick(t0 + int64(ackTO))
			out := tr.TakeOutcomes()
			require.Len(t, out, 1)
			assert.Equal(t, imsemconv.OutcomeLost, out[0].Outcome)
			assert.Equal(t, imsemconv.ReasonAckTimeout, out[0].Reason)
			assert.Equal(t, upTo, out[0].Stage)
			assert.Equal(t, 1, out[0].LostDevices)
			assert.Equal(t, t0+int64(ackTO), out[0].End)
		})
	}
}

func TestAckedWithoutSendIsDeliveredAtDeadline(t *testing.T) {
	tr := New(testConfig())
	tr.Apply(t0, ev(imsemconv.StagePersist, "m1", t0))
	tr.Apply(t0, ev(imsemconv.StagePush, "m1", t0, fanout(1)))
	tr.Apply(t0, ev(imsemconv.StageAck, "m1", t0, dev("d")))
	assert.Empty(t, tr.TakeOutcomes())
	tr.Tick(t0 + int64(ackTO))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	assert.False(t, out[0].HasLatency, "no send, no latency")
}

func TestOfflineRecipientGetsOfflineTimeout(t *testing.T) {
	t.Run("acked later", func(t *testing.T) {
		tr := New(testConfig())
		lifecycle(tr, "m1", t0, imsemconv.StagePersist)
		tr.Apply(t0, ev(imsemconv.StagePush, "m1", t0, fanout(1), dev("d1"), offline()))
		tr.Tick(t0 + int64(ackTO))
		assert.Empty(t, tr.TakeOutcomes(), "offline recipient is not lost at ack_timeout")
		assert.Equal(t, 1, tr.Len())
		tr.Apply(t0+5*60*sec, ev(imsemconv.StageDeliver, "m1", t0+5*60*sec, dev("d1")))
		tr.Apply(t0+5*60*sec, ev(imsemconv.StageAck, "m1", t0+5*60*sec, dev("d1")))
		out := tr.TakeOutcomes()
		require.Len(t, out, 1)
		assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	})
	t.Run("acked later, fan-out never announced", func(t *testing.T) {
		// A per-device push without fan-out does not say how many devices to expect, so
		// the ack of the devices seen so far does not decide; the deadline does.
		tr := New(testConfig())
		lifecycle(tr, "m1", t0, imsemconv.StagePersist)
		tr.Apply(t0, ev(imsemconv.StagePush, "m1", t0, dev("d1"), offline()))
		tr.Tick(t0 + int64(ackTO))
		tr.Apply(t0+5*60*sec, ev(imsemconv.StageDeliver, "m1", t0+5*60*sec, dev("d1")))
		tr.Apply(t0+5*60*sec, ev(imsemconv.StageAck, "m1", t0+5*60*sec, dev("d1")))
		assert.Empty(t, tr.TakeOutcomes())
		tr.Tick(t0 + int64(offTO))
		out := tr.TakeOutcomes()
		require.Len(t, out, 1)
		assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	})
	t.Run("never back", func(t *testing.T) {
		tr := New(testConfig())
		lifecycle(tr, "m1", t0, imsemconv.StagePersist)
		tr.Apply(t0, ev(imsemconv.StagePush, "m1", t0, offline())) // message-level offline flag
		tr.Tick(t0 + int64(offTO) - 1)
		assert.Empty(t, tr.TakeOutcomes())
		tr.Tick(t0 + int64(offTO))
		out := tr.TakeOutcomes()
		require.Len(t, out, 1)
		assert.Equal(t, imsemconv.OutcomeLost, out[0].Outcome)
		assert.Equal(t, imsemconv.StagePush, out[0].Stage)
	})
	t.Run("online device of a group still times out", func(t *testing.T) {
		tr := New(testConfig())
		lifecycle(tr, "m1", t0, imsemconv.StagePersist)
		tr.Apply(t0, ev(imsemconv.StagePush, "m1", t0, fanout(2), dev("a"), offline()))
		tr.Apply(t0, ev(imsemconv.StagePush, "m1", t0, fanout(2), dev("b")))
		tr.Apply(t0, ev(imsemconv.StageAck, "m1", t0, dev("b")))
		tr.Tick(t0 + int64(ackTO))
		assert.Empty(t, tr.TakeOutcomes(), "a is offline, b acked: wait")
		tr.Tick(t0 + int64(offTO))
		out := tr.TakeOutcomes()
		require.Len(t, out, 1)
		assert.Equal(t, "a", out[0].DeviceID)
		assert.Equal(t, 1, out[0].LostDevices)
	})
}

func TestSeqGap(t *testing.T) {
	t.Run("confirmed after reorder window", func(t *testing.T) {
		tr := New(testConfig())
		for _, s := range []int64{1, 2, 5} {
			tr.Apply(t0, ev(imsemconv.StagePersist, fmt.Sprint("m", s), t0, seq(s)))
		}
		tr.Tick(t0 + int64(window) - 1)
		assert.Empty(t, tr.TakeOutcomes())
		tr.Tick(t0 + int64(window))
		out := tr.TakeOutcomes()
		require.Len(t, out, 2)
		for i, o := range out {
			assert.Equal(t, imsemconv.OutcomeLost, o.Outcome)
			assert.Equal(t, imsemconv.ReasonSeqGap, o.Reason)
			assert.Equal(t, int64(3+i), o.Seq)
			assert.Equal(t, uint64(2), o.GapSize)
			assert.Equal(t, "c1", o.ConversationID)
			assert.Empty(t, o.MessageID)
		}
		assert.Equal(t, int64(1), tr.TakeCounters().SeqGaps)
	})
	t.Run("reordered within window", func(t *testing.T) {
		tr := New(testConfig())
		for _, s := range []int64{1, 4, 2, 3} {
			tr.Apply(t0, ev(imsemconv.StagePersist, fmt.Sprint("m", s), t0, seq(s)))
		}
		tr.Tick(t0 + int64(window))
		assert.Empty(t, tr.TakeOutcomes())
		assert.Zero(t, tr.TakeCounters().SeqGaps)
	})
	t.Run("huge jump is one anomaly", func(t *testing.T) {
		tr := New(testConfig())
		tr.Apply(t0, ev(imsemconv.StagePersist, "a", t0, seq(0)))
		tr.Apply(t0, ev(imsemconv.StagePersist, "b", t0, seq(1<<63-1)))
		out := tr.TakeOutcomes()
		require.Len(t, out, 1)
		assert.True(t, out[0].Anomaly)
		assert.Equal(t, uint64(1<<63-2), out[0].GapSize)
		assert.Equal(t, int64(1), out[0].Seq)
		tr.Tick(t0 + int64(time.Hour))
		for _, o := range tr.TakeOutcomes() {
			assert.NotEqual(t, imsemconv.ReasonSeqGap, o.Reason, "no per-seq records for an anomaly")
		}
		assert.Equal(t, int64(1), tr.TakeCounters().SeqGaps)
	})
	t.Run("per conversation", func(t *testing.T) {
		tr := New(testConfig())
		tr.Apply(t0, ev(imsemconv.StagePersist, "a", t0, seq(1), conv("x")))
		tr.Apply(t0, ev(imsemconv.StagePersist, "b", t0, seq(1), conv("y")))
		tr.Apply(t0, ev(imsemconv.StagePersist, "c", t0, seq(2), conv("y")))
		tr.Apply(t0, ev(imsemconv.StagePersist, "d", t0, seq(2), conv("x")))
		tr.Tick(t0 + int64(window))
		assert.Empty(t, tr.TakeOutcomes())
	})
}

func TestDuplicateDelivery(t *testing.T) {
	tr := New(testConfig())
	lifecycle(tr, "m1", t0, imsemconv.StageDeliver)
	assert.True(t, tr.Apply(t0, ev(imsemconv.StageDeliver, "m1", t0, dev("d1"))))
	assert.False(t, tr.Apply(t0, ev(imsemconv.StageDeliver, "m1", t0, dev("d2"))), "another device is not a duplicate")
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDuplicate, out[0].Outcome)
	assert.Equal(t, "d1", out[0].DeviceID)

	// After the delivered decision, a repeat is still recognised.
	tr2 := New(testConfig())
	lifecycle(tr2, "m2", t0, imsemconv.StageAck)
	require.Len(t, tr2.TakeOutcomes(), 1)
	assert.True(t, tr2.Apply(t0+sec, ev(imsemconv.StageDeliver, "m2", t0+sec, dev("d1"))))
	assert.False(t, tr2.Apply(t0+sec, ev(imsemconv.StageAck, "m2", t0+sec, dev("d1"))), "re-ack is ignored")
	out = tr2.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDuplicate, out[0].Outcome)
	assert.Equal(t, 0, tr2.Len(), "no new message started")

	// An ack that overtook its deliver: the deliver arriving after the decision is the
	// original, only a second one is a duplicate.
	tr3 := New(testConfig())
	tr3.Apply(t0, ev(imsemconv.StageAck, "m3", t0, dev("d1")))
	tr3.Apply(t0, ev(imsemconv.StageSend, "m3", t0))
	tr3.Apply(t0, ev(imsemconv.StagePush, "m3", t0, fanout(1)))
	require.Len(t, tr3.TakeOutcomes(), 1)
	assert.False(t, tr3.Apply(t0, ev(imsemconv.StageDeliver, "m3", t0, dev("d1"))))
	assert.Empty(t, tr3.TakeOutcomes())
	assert.True(t, tr3.Apply(t0, ev(imsemconv.StageDeliver, "m3", t0, dev("d1"))))
	assert.Len(t, tr3.TakeOutcomes(), 1)
}

func TestFailedStage(t *testing.T) {
	t.Run("not retried", func(t *testing.T) {
		tr := New(testConfig())
		tr.Apply(t0, ev(imsemconv.StageSend, "m1", t0))
		tr.Apply(t0, ev(imsemconv.StagePersist, "m1", t0, failed()))
		tr.Tick(t0 + int64(ackTO))
		out := tr.TakeOutcomes()
		require.Len(t, out, 1)
		assert.Equal(t, imsemconv.ReasonStageFailed, out[0].Reason)
		assert.Equal(t, imsemconv.StagePersist, out[0].Stage)
	})
	t.Run("superseded by retry", func(t *testing.T) {
		tr := New(testConfig())
		tr.Apply(t0, ev(imsemconv.StageSend, "m1", t0))
		tr.Apply(t0, ev(imsemconv.StagePersist, "m1", t0, failed()))
		tr.Apply(t0, ev(imsemconv.StagePersist, "m1", t0))
		tr.Apply(t0, ev(imsemconv.StagePush, "m1", t0, fanout(1)))
		tr.Tick(t0 + int64(ackTO))
		out := tr.TakeOutcomes()
		require.Len(t, out, 1)
		assert.Equal(t, imsemconv.ReasonAckTimeout, out[0].Reason)
		assert.Equal(t, imsemconv.StagePush, out[0].Stage)
	})
	t.Run("delivered despite a failed sub-step", func(t *testing.T) {
		tr := New(testConfig())
		tr.Apply(t0, ev(imsemconv.StagePersist, "m1", t0, failed()))
		lifecycle(tr, "m1", t0, imsemconv.StageAck)
		out := tr.TakeOutcomes()
		require.Len(t, out, 1)
		assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	})
}

func TestLateEvents(t *testing.T) {
	tr := New(testConfig())
	lifecycle(tr, "m1", t0, imsemconv.StagePush)
	tr.Tick(t0 + int64(ackTO))
	require.Len(t, tr.TakeOutcomes(), 1)
	tr.Apply(t0+int64(ackTO)+sec, ev(imsemconv.StageDeliver, "m1", t0, dev("d1")))
	tr.Apply(t0+int64(ackTO)+sec, ev(imsemconv.StageAck, "m1", t0, dev("d1")))
	tr.Apply(t0+int64(ackTO)+sec, ev(imsemconv.StageDeliver, "m1", t0, dev("d1")))
	out := tr.TakeOutcomes()
	require.Len(t, out, 2, "one late record, and the retraction")
	assert.Equal(t, imsemconv.OutcomeLate, out[0].Outcome)
	assert.Equal(t, imsemconv.StageDeliver, out[0].Stage)
	assert.Equal(t, imsemconv.StagePush, out[0].LossStage)
	assert.Equal(t, imsemconv.ReasonAckTimeout, out[0].Reason)
	assert.False(t, out[0].Retracted, "a deliver proves nothing")
	assert.Equal(t, imsemconv.OutcomeLate, out[1].Outcome)
	assert.Equal(t, imsemconv.StageAck, out[1].Stage)
	assert.True(t, out[1].Retracted, "the device acked before the deadline: the loss is taken back")
	assert.Equal(t, 0, tr.Len(), "late events are not merged into a new message")
}

func TestGroupFanout(t *testing.T) {
	tr := New(testConfig())
	tr.Apply(t0, ev(imsemconv.StageSend, "g1", t0, conv("grp")))
	tr.Apply(t0, ev(imsemconv.StagePersist, "g1", t0, conv("grp")))
	tr.Apply(t0, ev(imsemconv.StagePush, "g1", t0, conv("grp"), fanout(40)))
	for i := range 40 {
		d := fmt.Sprint("dev", i)
		tr.Apply(t0, ev(imsemconv.StageDeliver, "g1", t0, conv("grp"), dev(d)))
		if i != 17 {
			tr.Apply(t0, ev(imsemconv.StageAck, "g1", t0, conv("grp"), dev(d)))
		}
	}
	assert.Empty(t, tr.TakeOutcomes())
	tr.Tick(t0 + int64(ackTO))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeLost, out[0].Outcome)
	assert.Equal(t, imsemconv.StageDeliver, out[0].Stage)
	assert.Equal(t, "dev17", out[0].DeviceID)
	assert.Equal(t, 1, out[0].LostDevices)

	// Devices that were never seen count as missing at the message's stage.
	tr2 := New(testConfig())
	lifecycle(tr2, "g2", t0, imsemconv.StagePersist)
	tr2.Apply(t0, ev(imsemconv.StagePush, "g2", t0, fanout(3)))
	tr2.Apply(t0, ev(imsemconv.StageDeliver, "g2", t0, dev("a")))
	tr2.Apply(t0, ev(imsemconv.StageAck, "g2", t0, dev("a")))
	tr2.Tick(t0 + int64(ackTO))
	out = tr2.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.StagePush, out[0].Stage)
	assert.Equal(t, 2, out[0].LostDevices)
	assert.Empty(t, out[0].DeviceID)
}

func TestEvictionOldestFirst(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessages = 2
	tr := New(cfg)
	lifecycle(tr, "m1", t0, imsemconv.StagePush, conv("a"))
	lifecycle(tr, "m2", t0+sec, imsemconv.StagePush, conv("b"))
	lifecycle(tr, "m3", t0+2*sec, imsemconv.StagePush, conv("c"))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, "m1", out[0].MessageID)
	assert.Equal(t, imsemconv.ReasonEvicted, out[0].Reason)
	assert.Equal(t, imsemconv.OutcomeUntracked, out[0].Outcome, "the collector's limit, not a loss")
	assert.Equal(t, 2, tr.Len())
	assert.Equal(t, int64(1), tr.TakeCounters().Evicted[EvictedMessage])

	cfg = testConfig()
	cfg.MaxPerConversation = 1
	tr = New(cfg)
	lifecycle(tr, "m1", t0, imsemconv.StagePush, conv("a"))
	lifecycle(tr, "m2", t0, imsemconv.StagePush, conv("b"))
	lifecycle(tr, "m3", t0, imsemconv.StagePush, conv("a"))
	out = tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, "m1", out[0].MessageID)
	assert.Equal(t, 2, tr.Len())
	// The conversation survived the eviction of its only message.
	tr.Tick(t0 + int64(ackTO))
	out = tr.TakeOutcomes()
	require.Len(t, out, 2)
	assert.Equal(t, "a", out[1].ConversationID)
}

func TestConversationLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConversations = 2
	tr := New(cfg)
	for i, c := range []string{"a", "b", "c"} {
		lifecycle(tr, "m"+c, t0+int64(i)*sec, imsemconv.StagePush, conv(c))
	}
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, "ma", out[0].MessageID)
	assert.Equal(t, imsemconv.ReasonEvicted, out[0].Reason)
	assert.Len(t, tr.convs, 2)
	c := tr.TakeCounters()
	assert.Equal(t, int64(1), c.Evicted[EvictedConversation])
	assert.Equal(t, int64(1), c.Evicted[EvictedMessage])
}

func TestOrphanIsNotJudged(t *testing.T) {
	tr := New(testConfig())
	tr.Apply(t0, ev(imsemconv.StageDeliver, "m1", t0, dev("d")))
	tr.Apply(t0, ev(imsemconv.StageAck, "m1", t0, dev("d")))
	tr.Tick(t0 + int64(ackTO))
	assert.Empty(t, tr.TakeOutcomes())
	assert.Equal(t, int64(1), tr.TakeCounters().Orphans)
	assert.Equal(t, 0, tr.Len())
	assert.Empty(t, tr.convs, "the empty conversation without seq state is dropped")
}

func TestDecidedCacheIsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.DecidedCacheSize = 3
	tr := New(cfg)
	for i := range 10 {
		lifecycle(tr, fmt.Sprint("m", i), t0, imsemconv.StageAck)
	}
	assert.Len(t, tr.decided, 3)
	assert.Equal(t, int64(7), tr.TakeCounters().Evicted[EvictedDecided])
}

func TestHostileInputStaysBounded(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessages = 500
	cfg.MaxConversations = 50
	tr := New(cfg)
	// A million unique ids over a thousand conversations with wild seq jumps.
	for i := range 1_000_000 {
		e := ev(imsemconv.StagePersist, fmt.Sprint("id-", i), t0, conv(fmt.Sprint("c", i%997)), seq(int64(i)*1_000_003))
		tr.Apply(t0+int64(i), e)
		if i%10_000 == 0 {
			require.LessOrEqual(t, tr.Len(), 500)
			require.LessOrEqual(t, len(tr.convs), 50)
			require.LessOrEqual(t, len(tr.decided), cfg.DecidedCacheSize)
		}
		tr.TakeOutcomes()
	}
	tr.TakeCounters()
	// Many devices on one message.
	tr.Apply(t0, ev(imsemconv.StagePush, "big", t0, fanout(event.MaxFanout)))
	for i := range 200 {
		tr.Apply(t0, ev(imsemconv.StageAck, "big", t0, dev(strconv.Itoa(i))))
	}
	ds := tr.extra[tr.lookup("big")]
	require.NotNil(t, ds)
	assert.Less(t, len(ds.list), cfg.MaxDevicesPerMessage)
	assert.Positive(t, tr.TakeCounters().TooManyDevices)
}

func TestRestoreRejectsGarbage(t *testing.T) {
	tr := New(testConfig())
	lifecycle(tr, "m1", t0, imsemconv.StagePush)
	lifecycle(tr, "m2", t0, imsemconv.StageAck)
	snap := tr.Snapshot(t0, Final)
	for i := range len(snap) {
		tr2 := New(testConfig())
		_, _ = tr2.Restore(snap[:i], t0) // must not panic
	}
	_, err := New(testConfig()).Restore([]byte("nope"), t0)
	require.ErrorIs(t, err, ErrCorruptSnapshot)
}

func TestMessageFitsItsSizeClass(t *testing.T) {
	assert.Equal(t, uintptr(112), unsafe.Sizeof(message{}), "a million messages must fit the memory budget")
}

func TestEventTimesOutOfRangeDropLatencyOnly(t *testing.T) {
	cfg := testConfig()
	cfg.OfflineTimeout = 2 * time.Hour
	tr := New(cfg)
	tr.Apply(t0, ev(imsemconv.StageSend, "m", t0))
	tr.Apply(t0, ev(imsemconv.StagePush, "m", t0, fanout(1), dev("d"), offline()))
	tr.Tick(t0 + int64(ackTO))       // to the offline queue
	at := t0 + int64(40*time.Minute) // beyond the ±35 minutes a message stores
	tr.Apply(at, ev(imsemconv.StageAck, "m", at, dev("d")))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	assert.False(t, out[0].HasLatency)
}

func TestMassExpiryIsBatched(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMessages = 3 * TickBudget
	cfg.MaxPerConversation = 3 * TickBudget
	tr := New(cfg)
	n := 2*TickBudget + 10
	for i := range n {
		tr.Apply(t0, ev(imsemconv.StageSend, fmt.Sprint("m", i), t0))
	}
	total := 0
	calls := 0
	for more := true; more; calls++ {
		more = tr.Tick(t0 + int64(ackTO))
		out := tr.TakeOutcomes()
		require.LessOrEqual(t, len(out), TickBudget)
		total += len(out)
	}
	assert.Equal(t, n, total)
	assert.Equal(t, 3, calls)
	assert.Equal(t, 0, tr.Len())
}
