package tracker

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

const (
	idleTO = 10 * time.Second
	maxLag = 2 * time.Minute
)

// eventTimeConfig is the production time model: verdicts wait for the watermark.
func eventTimeConfig() Config {
	cfg := testConfig()
	cfg.AllowedLateness = 0
	cfg.SourceIdleTimeout = idleTO
	cfg.MaxSourceLag = maxLag
	cfg.MaxClockSkew = time.Minute
	return cfg
}

func from(src string) func(*event.Event) { return func(e *event.Event) { e.Source = src } }

// arrival is one event and the collector time it reaches the tracker.
type arrival struct {
	at int64
	ev *event.Event
}

// lifecycleOf is one message's lifecycle the way the testbed's services report it: im-msg
// sends, im-transfer persists, im-push pushes, im-gateway delivers and acks. Each event
// arrives at its own time plus its source's lag. upTo is the last stage that happened.
func lifecycleOf(msg string, at int64, upTo imsemconv.Stage, lag map[string]time.Duration) []arrival {
	sources := map[imsemconv.Stage]string{
		imsemconv.StageSend: "im-msg", imsemconv.StagePersist: "im-transfer", imsemconv.StagePush: "im-push",
		imsemconv.StageDeliver: "im-gateway", imsemconv.StageAck: "im-gateway",
	}
	var out []arrival
	for _, s := range imsemconv.Stages {
		if s > upTo {
			break
		}
		stamp := at + int64(s-imsemconv.StageSend)*10*ms
		o := []func(*event.Event){from(sources[s])}
		switch s {
		case imsemconv.StagePush:
			o = append(o, fanout(1))
		case imsemconv.StageDeliver, imsemconv.StageAck:
			o = append(o, dev("d1"))
		}
		out = append(out, arrival{stamp + int64(lag[sources[s]]), ev(s, msg, stamp, o...)})
	}
	return out
}

// simulate delivers the arrivals in collector-time order, ticking every second until end,
// and returns every outcome by message; Start is overwritten with the collector time the
// outcome was decided at.
func simulate(tr *Tracker, arrivals []arrival, end int64) map[string][]Outcome {
	return simulateFrom(tr, arrivals, t0, end)
}

// simulateFrom is simulate with the collector's clock starting at start.
func simulateFrom(tr *Tracker, arrivals []arrival, start, end int64) map[string][]Outcome {
	slices.SortStableFunc(arrivals, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
	got := map[string][]Outcome{}
	collect := func(now int64) {
		for _, o := range tr.TakeOutcomes() {
			o.Start = now
			got[o.MessageID] = append(got[o.MessageID], o)
		}
	}
	for now := start; now <= end; now += sec {
		for len(arrivals) > 0 && arrivals[0].at <= now {
			tr.Apply(arrivals[0].at, arrivals[0].ev)
			arrivals = arrivals[1:]
			collect(now)
		}
		tr.Tick(now)
		collect(now)
	}
	return got
}

func msgID(i int) string { return fmt.Sprintf("m%03d", i) }

// stream is one message a second for n seconds; the listed ones stop after push.
func stream(n int, lost map[int]bool, lag map[string]time.Duration) []arrival {
	var all []arrival
	for i := range n {
		upTo := imsemconv.StageAck
		if lost[i] {
			upTo = imsemconv.StagePush
		}
		all = append(all, lifecycleOf(msgID(i), t0+int64(i)*sec, upTo, lag)...)
	}
	return all
}

func lagOf(lag map[string]time.Duration) time.Duration {
	var most time.Duration
	for _, l := range lag {
		most = max(most, l)
	}
	return most
}

func TestLaggingSourceHoldsVerdicts(t *testing.T) {
	for _, lag := range []map[string]time.Duration{
		{"im-gateway": 2 * ackTO}, // the ack reporter
		{"im-push": 2 * ackTO},
		{"im-msg": 2 * ackTO, "im-transfer": 2 * ackTO, "im-push": 2 * ackTO, "im-gateway": 2 * ackTO},
	} {
		cfg := eventTimeConfig()
		// Longer than the lag: a source that lags from the start is heard within it.
		cfg.SourceIdleTimeout = 3 * ackTO
		tr := New(cfg)
		const n, lostOne = 200, 50
		got := simulate(tr, stream(n, map[int]bool{lostOne: true}, lag), t0+n*sec)
		deadline := t0 + lostOne*sec + int64(ackTO)
		for i := range n - 3*int(ackTO/time.Second) { // the end of the run is still pending
			outs := got[msgID(i)]
			require.Len(t, outs, 1, "%s with lag %v", msgID(i), lag)
			if i == lostOne {
				assert.Equal(t, imsemconv.OutcomeLost, outs[0].Outcome)
				assert.Equal(t, imsemconv.StagePush, outs[0].Stage)
				assert.LessOrEqual(t, outs[0].Start, deadline+int64(lagOf(lag))+2*sec, "deadline + lag + 2 ticks")
				continue
			}
			assert.Equal(t, imsemconv.OutcomeDelivered, outs[0].Outcome, "%s with lag %v", msgID(i), lag)
		}
		assert.Zero(t, tr.TakeCounters().Forced)
	}
}

// TestLateAsAWholeIsJudgedOnEventTime: every service late by more than max_source_lag (a
// backlog replayed after an outage, a collector behind under load) still gets exact verdicts,
// while one service lagging the others by as much still has verdicts forced past it.
func TestLateAsAWholeIsJudgedOnEventTime(t *testing.T) {
	const lag = 3 * ackTO
	every := map[string]time.Duration{"im-msg": lag, "im-transfer": lag, "im-push": lag, "im-gateway": lag}
	for _, tc := range []struct {
		name   string
		lag    map[string]time.Duration
		forced bool
	}{
		{"every service", every, false},
		{"the ack reporter alone", map[string]time.Duration{"im-gateway": lag}, true},
	} {
		cfg := eventTimeConfig()
		cfg.MaxSourceLag = 2 * ackTO
		cfg.SourceIdleTimeout = 4 * ackTO // a source that lags from the start is heard within it
		tr := New(cfg)
		const n, lostOne = 200, 150
		got := simulate(tr, stream(n, map[int]bool{lostOne: true}, tc.lag), t0+n*sec+int64(lag))
		misjudged := 0
		for i := range n - 3*int(ackTO/time.Second) {
			want := imsemconv.OutcomeDelivered
			if i == lostOne {
				want = imsemconv.OutcomeLost
			}
			if outs := got[msgID(i)]; len(outs) == 0 || outs[0].Outcome != want {
				misjudged++
			}
		}
		forced := tr.TakeCounters().Forced
		if tc.forced {
			assert.Positive(t, forced, tc.name)
			assert.Positive(t, misjudged, "%s: verdicts forced past the lagging acks", tc.name)
			continue
		}
		assert.Zero(t, forced, tc.name)
		assert.Zero(t, misjudged, tc.name)
	}
}

// TestLateStreamEndIsDecidedBehindItsLag: when a stream late as a whole stops, its last
// messages are left to the cap, which counts from the freshest telemetry: decided exactly, no
// later than deadline + lag + max_source_lag + 2 ticks.
func TestLateStreamEndIsDecidedBehindItsLag(t *testing.T) {
	const lag = 3 * ackTO
	cfg := eventTimeConfig()
	cfg.MaxSourceLag = 2 * ackTO
	cfg.SourceIdleTimeout = 4 * ackTO
	tr := New(cfg)
	const n, lostOne = 100, 99
	every := map[string]time.Duration{"im-msg": lag, "im-transfer": lag, "im-push": lag, "im-gateway": lag}
	end := t0 + n*sec + int64(lag+cfg.MaxSourceLag+ackTO) + 5*sec
	got := simulate(tr, stream(n, map[int]bool{lostOne: true}, every), end)
	for i := range n {
		outs := got[msgID(i)]
		require.Len(t, outs, 1, msgID(i))
		want := imsemconv.OutcomeDelivered
		if i == lostOne {
			want = imsemconv.OutcomeLost
		}
		assert.Equal(t, want, outs[0].Outcome, msgID(i))
		deadline := t0 + int64(i)*sec + int64(ackTO)
		assert.LessOrEqual(t, outs[0].Start, deadline+int64(lag+cfg.MaxSourceLag)+2*sec, msgID(i))
	}
	assert.Positive(t, tr.TakeCounters().Forced, "the end of the stream is left to the cap")
}

// TestSameLagOnTheCollectorClockIsAFalseLoss shows what the watermark prevents: with no lag
// allowed (the collector's clock decides) the lagging acks come too late.
func TestSameLagOnTheCollectorClockIsAFalseLoss(t *testing.T) {
	cfg := eventTimeConfig()
	cfg.MaxSourceLag = 0
	got := simulate(New(cfg), stream(100, nil, map[string]time.Duration{"im-gateway": 2 * ackTO}), t0+100*sec)
	falseLosses := 0
	for _, outs := range got {
		if outs[0].Outcome == imsemconv.OutcomeLost {
			falseLosses++
		}
	}
	assert.Positive(t, falseLosses)
}

func TestSilentSourceLeavesTheMinimum(t *testing.T) {
	tr := New(eventTimeConfig())
	const n, dies = 150, 60 // the gateway dies at second 60: no deliver, no ack any more
	var all []arrival
	for i := range n {
		upTo := imsemconv.StageAck
		if i >= dies {
			upTo = imsemconv.StagePush
		}
		all = append(all, lifecycleOf(msgID(i), t0+int64(i)*sec, upTo, nil)...)
	}
	got := simulate(tr, all, t0+n*sec)
	for i := range n - int((ackTO+idleTO)/time.Second) - 2 {
		outs := got[msgID(i)]
		require.Len(t, outs, 1, msgID(i))
		if i < dies {
			assert.Equal(t, imsemconv.OutcomeDelivered, outs[0].Outcome, msgID(i))
			continue
		}
		assert.Equal(t, imsemconv.OutcomeLost, outs[0].Outcome, msgID(i))
		first := t0 + int64(i)*sec
		assert.LessOrEqual(t, outs[0].Start, first+int64(ackTO)+int64(idleTO)+sec, "ack_timeout + source_idle_timeout + tick")
	}
}

func TestNoSourceActiveHoldsTheWatermark(t *testing.T) {
	tr := New(eventTimeConfig())
	simulate(tr, stream(40, nil, nil), t0+40*sec)
	lifecycle(tr, "stuck", t0+40*sec, imsemconv.StagePush, from("im-msg"))
	tr.TakeOutcomes()
	// Nothing arrives any more (a blocked pipeline looks the same): no verdict until the cap.
	last := t0 + 40*sec
	tr.Tick(last + int64(ackTO) + int64(maxLag) - sec)
	assert.Empty(t, tr.TakeOutcomes())
	tr.Tick(last + int64(ackTO) + int64(maxLag) + sec)
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeLost, out[0].Outcome)
	assert.Equal(t, int64(1), tr.TakeCounters().Forced)
}

// pastHold is a tracker whose start-up hold is over: the tests below step the watermark by hand.
func pastHold(cfg Config) *Tracker {
	tr := New(cfg)
	tr.wm.start = t0 - int64(time.Hour)
	return tr
}

func TestAckAfterTheDeadlineIsLateWhateverTheArrival(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	lifecycle(tr, "m1", t0, imsemconv.StageDeliver, from("svc"))
	// The ack happened after ack_timeout, and arrives before the watermark passed the deadline.
	lateAck := t0 + int64(ackTO) + sec
	tr.Apply(t0+sec, ev(imsemconv.StageAck, "m1", lateAck, dev("d1"), from("gw")))
	tr.Tick(t0 + sec)
	assert.Empty(t, tr.TakeOutcomes(), "svc may still report an offline push that moves the deadline")
	tr.Apply(t0+2*sec, ev(imsemconv.StageSend, "other", lateAck+sec, from("svc")))
	tr.Tick(t0 + 2*sec)
	out := tr.TakeOutcomes()
	require.Len(t, out, 2)
	assert.Equal(t, imsemconv.OutcomeLost, out[0].Outcome)
	assert.Equal(t, imsemconv.StageDeliver, out[0].Stage)
	assert.Equal(t, imsemconv.OutcomeLate, out[1].Outcome)
	assert.Equal(t, imsemconv.StageAck, out[1].Stage)
	assert.False(t, out[1].Retracted)
}

// TestLateOfflinePushMovesTheDeadline: the recipient acked after ack_timeout, within
// offline_timeout; the offline push that says so comes from a lagging service after the ack.
func TestLateOfflinePushMovesTheDeadline(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	tr.Apply(t0, ev(imsemconv.StageSend, "m1", t0, from("msg")))
	ackAt := t0 + int64(ackTO) + 5*sec
	tr.Apply(ackAt, ev(imsemconv.StageDeliver, "m1", ackAt, dev("d1"), from("gw")))
	tr.Apply(ackAt, ev(imsemconv.StageAck, "m1", ackAt, dev("d1"), from("gw")))
	tr.Apply(ackAt+sec, ev(imsemconv.StagePush, "m1", t0+ms, fanout(1), dev("d1"), offline(), from("push")))
	tr.Apply(ackAt+sec, ev(imsemconv.StageSend, "later", ackAt+sec, from("push")))
	tr.Apply(ackAt+sec, ev(imsemconv.StageSend, "later2", ackAt+sec, from("msg")))
	tr.Tick(ackAt + sec)
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, "m1", out[0].MessageID)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
}

// TestLateDataNeverChangesAVerdict: deliver and ack stamped in time but arriving after the
// watermark passed their message's deadline are late data, whether or not a tick decided the
// message in between: the message is lost, and the late acks retract the loss.
func TestLateDataNeverChangesAVerdict(t *testing.T) {
	for _, tickBetween := range []bool{false, true} {
		tr := pastHold(eventTimeConfig())
		lifecycle(tr, "m1", t0, imsemconv.StagePush, from("gw"))
		later := t0 + int64(ackTO) + 5*sec
		tr.Apply(later, ev(imsemconv.StageSend, "m2", later, from("gw")))
		if tickBetween {
			tr.Tick(later)
		}
		tr.Apply(later, ev(imsemconv.StageDeliver, "m1", t0+30*ms, dev("d1"), from("gw")))
		tr.Apply(later, ev(imsemconv.StageAck, "m1", t0+40*ms, dev("d1"), from("gw")))
		tr.Tick(later)
		var got []string
		for _, o := range tr.TakeOutcomes() {
			got = append(got, fmt.Sprintf("%s@%s/%v", o.Outcome, o.Stage, o.Retracted))
		}
		assert.Equal(t, []string{"lost@push/false", "late@deliver/false", "late@ack/true"}, got, "tick between: %v", tickBetween)
	}
}

// TestSourcesArePerPipeline: a service's spans and logs are exported separately; one stream
// trailing the other holds the watermark back instead of making the other's events late.
func TestSourcesArePerPipeline(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	logs := func(e *event.Event) { e.Sink = 1 }
	lifecycle(tr, "m1", t0, imsemconv.StagePush, from("gw"))
	tr.Apply(t0+5*sec, ev(imsemconv.StageSend, "m2", t0+5*sec, from("gw")))
	tr.Apply(t0+5*sec, ev(imsemconv.StageAck, "m1", t0+50*ms, dev("d1"), from("gw"), logs))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
}

func TestHoldIsBounded(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	tr.maxWaiting = 2
	lifecycle(tr, "m1", t0, imsemconv.StagePush, from("slow")) // holds the watermark at t0
	past := t0 + int64(ackTO) + sec
	for range 2 {
		tr.Apply(t0+5*sec, ev(imsemconv.StageDeliver, "m1", past, dev("d1"), from("gw")))
	}
	assert.Equal(t, 2, tr.nWaiting)
	// Full: the third decides on what is known.
	tr.Apply(t0+5*sec, ev(imsemconv.StageDeliver, "m1", past, dev("d1"), from("gw")))
	assert.Equal(t, int64(1), tr.TakeCounters().HoldFull)
	assert.Equal(t, 0, tr.nWaiting)
	assert.Equal(t, 0, tr.Len())
}

func TestDeadlinesInEventTimeOrder(t *testing.T) {
	cfg := eventTimeConfig()
	cfg.SourceIdleTimeout = time.Hour
	tr := New(cfg)
	// The later message arrives first: a FIFO would block the earlier one behind it.
	lifecycle(tr, "later", t0+20*sec, imsemconv.StagePush, from("a"))
	lifecycle(tr, "earlier", t0, imsemconv.StagePush, from("b"))
	tr.wm.start = t0 - int64(time.Hour) // past the start-up hold
	tr.Apply(t0, ev(imsemconv.StagePersist, "x", t0+int64(ackTO)+sec, from("a")))
	tr.Apply(t0, ev(imsemconv.StagePersist, "y", t0+int64(ackTO)+sec, from("b")))
	tr.Tick(t0)
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, "earlier", out[0].MessageID)
}

func TestFutureTimestampsAreClamped(t *testing.T) {
	tr := New(eventTimeConfig())
	tr.Apply(t0, ev(imsemconv.StageSend, "m1", t0+int64(time.Hour), from("fast-clock")))
	assert.Equal(t, t0+int64(time.Minute)+int64(ackTO), tr.due.min().deadline)
}

func TestStartupHoldWaitsForLateSources(t *testing.T) {
	// The gateway's acks lag by 8 s from the start, beyond ack_timeout.
	cfg := eventTimeConfig()
	cfg.AckTimeout = 5 * time.Second
	got := simulate(New(cfg), stream(40, nil, map[string]time.Duration{"im-gateway": 8 * time.Second}), t0+40*sec)
	require.NotEmpty(t, got)
	for id, outs := range got {
		assert.Equal(t, imsemconv.OutcomeDelivered, outs[0].Outcome, id)
	}
}

func TestRetractionNeedsEveryMissingDevice(t *testing.T) {
	tr := New(testConfig())
	tr.Apply(t0, ev(imsemconv.StageSend, "g", t0))
	tr.Apply(t0, ev(imsemconv.StagePush, "g", t0, fanout(2)))
	tr.Tick(t0 + int64(ackTO))
	require.Len(t, tr.TakeOutcomes(), 1)
	later := t0 + int64(ackTO) + sec
	tr.Apply(later, ev(imsemconv.StageAck, "g", t0+ms, dev("d1")))
	tr.Apply(later, ev(imsemconv.StageAck, "g", t0+ms, dev("d1"))) // repeated
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.False(t, out[0].Retracted, "one of two devices")
	tr.Apply(later, ev(imsemconv.StageAck, "g", t0+2*ms, dev("d2")))
	out = tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.True(t, out[0].Retracted)

	// An ack stamped after the deadline proves the loss.
	tr.Apply(t0, ev(imsemconv.StageSend, "h", t0))
	tr.Apply(t0, ev(imsemconv.StagePush, "h", t0, fanout(2)))
	tr.Tick(t0 + int64(ackTO))
	tr.Apply(later, ev(imsemconv.StageAck, "h", t0+ms, dev("d1")))
	tr.Apply(later, ev(imsemconv.StageAck, "h", later, dev("d2")))
	for _, o := range tr.TakeOutcomes() {
		assert.False(t, o.Retracted, o.Outcome)
	}
}

// TestLargeGroupLossIsRetracted: a group message to 40 devices (20 pushed, 20 announced by
// the fan-out only) is declared lost on ack timeout; every missing ack then arrives, stamped in
// time, in random order and across a restart. The loss is taken back like a small one's.
func TestLargeGroupLossIsRetracted(t *testing.T) {
	const devices = 40
	tr := New(testConfig())
	tr.Apply(t0, ev(imsemconv.StageSend, "g", t0))
	tr.Apply(t0, ev(imsemconv.StagePush, "g", t0, fanout(devices)))
	for i := range devices / 2 {
		tr.Apply(t0, ev(imsemconv.StagePush, "g", t0, dev(fmt.Sprint("d", i))))
	}
	tr.Apply(t0, ev(imsemconv.StageAck, "g", t0+ms, dev("d0")))
	tr.Tick(t0 + int64(ackTO))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	require.Equal(t, imsemconv.OutcomeLost, out[0].Outcome)

	later := t0 + int64(ackTO) + sec
	order := rand.New(rand.NewPCG(1, 2)).Perm(devices)
	retracted := 0
	for n, i := range order {
		if n == devices/2 {
			tr = restarted(t, tr, later)
		}
		tr.Apply(later, ev(imsemconv.StageAck, "g", t0+2*ms, dev(fmt.Sprint("d", i))))
		tr.Apply(later, ev(imsemconv.StageAck, "g", t0+2*ms, dev(fmt.Sprint("d", i)))) // repeated
		for _, o := range tr.TakeOutcomes() {
			if o.Retracted {
				retracted++
				assert.Equal(t, devices-1, n, "retracted before the last missing ack")
			}
		}
	}
	assert.Equal(t, 1, retracted)
	assert.Zero(t, tr.retractDevices, "a completed retraction returns its room")
}

func restarted(t *testing.T, tr *Tracker, now int64) *Tracker {
	t.Helper()
	next := New(tr.cfg)
	_, err := next.Restore(tr.Snapshot(now, Final), now)
	require.NoError(t, err)
	return next
}

// TestRetractionsAreBounded: the devices all retractions follow share a budget of
// retractionDevicesPerEntry per decided entry; a loss that does not fit is not followed and
// counted.
func TestRetractionsAreBounded(t *testing.T) {
	cfg := testConfig()
	cfg.DecidedCacheSize = 4 // a budget of 32 devices
	tr := New(cfg)
	lose := func(id string, devices uint32) {
		tr.Apply(t0, ev(imsemconv.StageSend, id, t0))
		tr.Apply(t0, ev(imsemconv.StagePush, id, t0, fanout(devices)))
		tr.Tick(t0 + int64(ackTO))
		tr.TakeOutcomes()
	}
	lose("big", 30)
	lose("small", 3) // 33 > 32
	assert.Equal(t, int64(1), tr.TakeCounters().Evicted[EvictedRetraction])
	assert.Equal(t, 30, tr.retractDevices)
	lose("over-the-device-limit", uint32(cfg.MaxDevicesPerMessage)+1)
	assert.Equal(t, int64(1), tr.TakeCounters().Evicted[EvictedRetraction])

	// Forgetting "big" with its decided entry returns its room.
	for i := range 4 {
		lose(fmt.Sprint("m", i), 1)
	}
	assert.Nil(t, tr.retract[tr.hash("big")])
	assert.LessOrEqual(t, tr.retractDevices, tr.retractionBudget())
	assert.Len(t, tr.retract, 4)
}

func TestSourcesAreBounded(t *testing.T) {
	cfg := eventTimeConfig()
	cfg.MaxSources = 3
	tr := New(cfg)
	for i := range 10 {
		tr.Apply(t0, ev(imsemconv.StageSend, "m", t0, from(time.Duration(i).String())))
	}
	assert.Len(t, tr.wm.byKey, 3)
	assert.Equal(t, int64(7), tr.TakeCounters().Evicted[EvictedSource])
}

func TestRestoreAfterDowntimeWaitsForTheBacklog(t *testing.T) {
	tr := New(eventTimeConfig())
	lifecycle(tr, "m1", t0, imsemconv.StagePush, trace(9), from("svc"))
	tr.Apply(t0, ev(imsemconv.StagePersist, "p1", t0, seq(10), from("svc")))
	tr.Apply(t0, ev(imsemconv.StagePersist, "p3", t0, seq(12), from("svc")))
	snap := tr.Snapshot(t0, Final)

	restartAt := t0 + int64(time.Hour) // down for an hour; the services kept their telemetry
	tr2 := New(eventTimeConfig())
	st, err := tr2.Restore(snap, restartAt)
	require.NoError(t, err)
	assert.Equal(t, 3, st.Messages)
	tr2.Tick(restartAt + sec)
	assert.Empty(t, tr2.TakeOutcomes(), "downtime does not count against deadlines")

	// The backlog arrives, stamped when it happened.
	tr2.Apply(restartAt+2*sec, ev(imsemconv.StageDeliver, "m1", t0+30*ms, dev("d1"), from("svc")))
	tr2.Apply(restartAt+2*sec, ev(imsemconv.StageAck, "m1", t0+40*ms, dev("d1"), from("svc")))
	out := tr2.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	assert.Equal(t, byte(9), out[0].TraceID[0])

	// The services catch up to the present: the gap and the two persists are decided.
	tr2.Apply(restartAt+3*sec, ev(imsemconv.StageSend, "now", restartAt, from("svc")))
	tr2.Tick(restartAt + int64(idleTO) + sec)
	var reasons []imsemconv.LossReason
	for _, o := range tr2.TakeOutcomes() {
		reasons = append(reasons, o.Reason)
	}
	assert.ElementsMatch(t, []imsemconv.LossReason{imsemconv.ReasonAckTimeout, imsemconv.ReasonAckTimeout, imsemconv.ReasonSeqGap}, reasons)
	assert.Zero(t, tr2.TakeCounters().Forced)
}

// TestRestartWhilePipelinesResumeApart: the collector restarts mid-stream behind a gateway
// whose queues resume one by one — the spans at once, the logs (deliveries and acks) three idle
// timeouts later, after their retry backoff. The logs pipeline's source, restored from the
// snapshot, still holds the watermark: no message is judged lost, each is decided once.
func TestRestartWhilePipelinesResumeApart(t *testing.T) {
	const n = 120 // messages, one a second
	down, up := t0+60*sec, t0+65*sec
	resumes := [2]int64{up + sec, up + 3*int64(idleTO)}
	var before, after []arrival
	for _, a := range stream(n, nil, nil) {
		if a.ev.Stage >= imsemconv.StageDeliver {
			a.ev.Sink = 1
		}
		if a.at < down {
			before = append(before, a)
			continue
		}
		a.at = max(a.at, resumes[a.ev.Sink]) // queued upstream meanwhile
		after = append(after, a)
	}
	tr := New(eventTimeConfig())
	got := simulate(tr, before, down)
	restarted := New(eventTimeConfig())
	_, err := restarted.Restore(tr.Snapshot(down, Final), up)
	require.NoError(t, err)
	end := t0 + (n+60)*sec
	for id, outs := range simulateFrom(restarted, after, up, end) {
		got[id] = append(got[id], outs...)
	}

	for i := range n - int(ackTO/time.Second) - 1 { // the end of the run is still pending
		outs := got[msgID(i)]
		require.Len(t, outs, 1, msgID(i))
		assert.Equal(t, imsemconv.OutcomeDelivered, outs[0].Outcome, msgID(i))
	}
	for id, outs := range got {
		for _, o := range outs {
			assert.NotEqual(t, imsemconv.OutcomeLost, o.Outcome, "%s lost at %v", id, o.Stage)
		}
	}
	assert.Zero(t, restarted.TakeCounters().Forced)
}

// TestRestoreReadsVersion2 loads a snapshot written by the collector-clock tracker (before
// event time): its messages, gap and decided memory come back.
func TestRestoreReadsVersion2(t *testing.T) {
	data, err := os.ReadFile("testdata/snapshot-v2.bin")
	require.NoError(t, err)
	tr := New(testConfig())
	st, err := tr.Restore(data, t0+sec)
	require.NoError(t, err)
	assert.Equal(t, 2, st.Version)
	assert.Equal(t, 3, st.Messages)
	assert.Equal(t, 2, st.Decided)
	assert.True(t, tr.Apply(t0+sec, ev(imsemconv.StageDeliver, "d1", t0, dev("d1"))), "a duplicate of the delivered one")
	tr.Apply(t0+sec, ev(imsemconv.StageAck, "d2", t0, dev("d1")))
	out := tr.TakeOutcomes()
	require.Len(t, out, 2)
	assert.Equal(t, imsemconv.OutcomeLate, out[1].Outcome, "a late event of the lost one")
	tr.Tick(t0 + int64(offTO) + sec)
	var outcomes []string
	for _, o := range tr.TakeOutcomes() {
		outcomes = append(outcomes, o.MessageID+"/"+string(o.Reason))
	}
	assert.ElementsMatch(t, []string{"m1/ack_timeout", "m2/ack_timeout", "m3/ack_timeout", "/seq_gap"}, outcomes)

	// Written again, it is the current version and reads back the same.
	again, err := New(testConfig()).Restore(tr.Snapshot(t0, Final), t0)
	require.NoError(t, err)
	assert.Equal(t, 6, again.Version)
}

// TestFullHoldWithOfflineRecipientDoesNotReuseADecidedMessage: with the hold full, an event
// past the deadline moves the message to the offline deadline, whose release decides it; the
// event must then meet the decision, not the removed message.
func TestFullHoldWithOfflineRecipientDoesNotReuseADecidedMessage(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	tr.Apply(t0, ev(imsemconv.StageSend, "m", t0, from("msg")))
	tr.Apply(t0, ev(imsemconv.StagePush, "m", t0, fanout(1), dev("d1"), offline(), from("push")))
	ackAt := t0 + int64(ackTO) + sec // within offline_timeout
	tr.Apply(ackAt, ev(imsemconv.StageAck, "m", ackAt, dev("d1"), from("gw")))
	require.Equal(t, 1, tr.nWaiting)
	tr.maxWaiting = 1 // full
	tr.Apply(ackAt, ev(imsemconv.StageAck, "m", ackAt, dev("d1"), from("gw")))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	assert.Equal(t, 0, tr.Len())
	assert.Equal(t, 0, tr.due.Len())
}

// TestEarlierSendMakesACountedAckLate: the ack arrived first and counted against a deadline
// from its own time; the send, from a lagging service, shows it came after ack_timeout. The
// verdict waits for the watermark: an offline push still on its way would make it in time.
func TestEarlierSendMakesACountedAckLate(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	ackAt := t0 + int64(ackTO) + 5*sec
	tr.Apply(ackAt, ev(imsemconv.StageAck, "m", ackAt, dev("d1"), from("gw")))
	tr.Apply(ackAt+sec, ev(imsemconv.StagePush, "m", t0+ms, fanout(1), from("push")))
	tr.Apply(ackAt+sec, ev(imsemconv.StageSend, "m", t0, from("msg")))
	assert.Empty(t, tr.TakeOutcomes())
	for _, src := range []string{"gw", "push", "msg"} {
		tr.Apply(ackAt+sec, ev(imsemconv.StageSend, "later-"+src, ackAt+sec, from(src)))
	}
	tr.Tick(ackAt + sec)
	var got []string
	for _, o := range tr.TakeOutcomes() {
		got = append(got, fmt.Sprintf("%s@%s", o.Outcome, o.Stage))
	}
	assert.Equal(t, []string{"lost@deliver", "late@ack"}, got)
}

// TestLaterSendReleasesWhatWaited: an ack past the deadline of the earliest event waits; the
// send, stamped later, moves the deadline past the ack, which then counts.
func TestLaterSendReleasesWhatWaited(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	tr.Apply(t0, ev(imsemconv.StagePush, "m", t0, fanout(1), from("push"))) // clock skew: before the send
	ackAt := t0 + int64(ackTO) + sec
	tr.Apply(ackAt, ev(imsemconv.StageAck, "m", ackAt, dev("d1"), from("gw")))
	require.Equal(t, 1, tr.nWaiting)
	tr.Apply(ackAt, ev(imsemconv.StageSend, "m", t0+2*sec, from("msg")))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
	assert.Equal(t, 0, tr.nWaiting)
}

// TestStallLongerThanIdleKeepsSources: the pipeline was blocked for longer than
// source_idle_timeout; the sources active when it began still hold the watermark.
func TestStallLongerThanIdleKeepsSources(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	tr.Apply(t0, ev(imsemconv.StageSend, "m", t0, from("slow")))
	tr.Apply(t0, ev(imsemconv.StageSend, "x", t0+int64(ackTO)+sec, from("fast")))
	resume := t0 + 3*int64(idleTO)
	tr.PipelineStalled(t0+ms, resume)
	tr.Tick(resume)
	assert.Empty(t, tr.TakeOutcomes(), "slow still holds the watermark")
	assert.Equal(t, 2, tr.ActiveSources(resume))
}

// TestReorderedWithinASourceStillCounts: an event overtaken by its own source's later events,
// by more than allowed_lateness, counts as long as the watermark has not passed its message's
// deadline (concurrent exporters reorder under load).
func TestReorderedWithinASourceStillCounts(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	lifecycle(tr, "m1", t0, imsemconv.StagePush, from("gw"))
	tr.Apply(t0+5*sec, ev(imsemconv.StageSend, "m2", t0+5*sec, from("gw")))
	tr.Apply(t0+5*sec, ev(imsemconv.StageAck, "m1", t0+40*ms, dev("d1"), from("gw")))
	out := tr.TakeOutcomes()
	require.Len(t, out, 1)
	assert.Equal(t, imsemconv.OutcomeDelivered, out[0].Outcome)
}

// TestGapPassedByTheWatermarkIsConfirmedBeforeALateSeq: the missing seq arrives after the
// watermark passed the gap's deadline, before any tick: the gap is reported all the same, as
// a tick would have, and the late seq (persisted in time) takes it back.
func TestGapPassedByTheWatermarkIsConfirmedBeforeALateSeq(t *testing.T) {
	tr := pastHold(eventTimeConfig())
	tr.Apply(t0, ev(imsemconv.StagePersist, "a", t0, seq(1), from("tr")))
	tr.Apply(t0, ev(imsemconv.StagePersist, "c", t0, seq(3), from("tr")))
	tr.Apply(t0, ev(imsemconv.StageSend, "x", t0+int64(window)+sec, from("tr")))
	tr.Apply(t0, ev(imsemconv.StagePersist, "b", t0, seq(2), from("tr")))
	assert.Equal(t, []string{"lost@persist 2", "late@persist 2(retracted)"}, seqLabels(tr.TakeOutcomes()))
}

// TestHeldAckCountsWhenTheWatermarkJumpsPastTheOfflineDeadline: an offline recipient's ack,
// stamped after ack_timeout, arrives while the watermark is still short of ack_timeout and
// waits; the watermark then passes both deadlines at once (the other services fell idle at
// the end of a stream). The ack arrived in time for the offline deadline: delivered.
func TestHeldAckCountsWhenTheWatermarkJumpsPastTheOfflineDeadline(t *testing.T) {
	tr := offlineRecipientBackLate(true)
	require.Equal(t, 2, tr.nWaiting, "stamped after ack_timeout, before the watermark passed it")
	assert.Empty(t, tr.TakeOutcomes())
	jumpPastOfflineDeadline(tr)
	var got []string
	for _, o := range tr.TakeOutcomes() {
		got = append(got, o.MessageID+":"+string(o.Outcome)+"@"+o.Stage.String())
	}
	assert.Equal(t, []string{"m:delivered@ack"}, got)
}

// TestHeldEventsDoNotMakeAMessageLate: events that waited for a deadline are released once
// the watermark applied it; when the watermark jumped past the offline deadline as well, the
// message is decided on that tick, not given a new window as a late message would be.
func TestHeldEventsDoNotMakeAMessageLate(t *testing.T) {
	tr := offlineRecipientBackLate(false)
	require.Equal(t, 1, tr.nWaiting)
	jumpPastOfflineDeadline(tr)
	assert.Equal(t, []string{"lost@deliver"}, labelsOf(tr.TakeOutcomes()))
}

// offlineRecipientBackLate is message m to one device pushed offline, which is back after
// ack_timeout: its deliver (and, with ack, its ack) wait for the deadline.
func offlineRecipientBackLate(ack bool) *Tracker {
	tr := pastHold(eventTimeConfig())
	tr.Apply(t0, ev(imsemconv.StageSend, "m", t0, from("msg")))
	tr.Apply(t0, ev(imsemconv.StagePush, "m", t0+ms, fanout(1), from("push")))
	tr.Apply(t0, ev(imsemconv.StagePush, "m", t0+ms, dev("d1"), offline(), from("push")))
	back := t0 + int64(ackTO) + 10*sec
	tr.Apply(back, ev(imsemconv.StageDeliver, "m", back, dev("d1"), from("gw")))
	if ack {
		tr.Apply(back, ev(imsemconv.StageAck, "m", back+ms, dev("d1"), from("gw")))
	}
	return tr
}

// jumpPastOfflineDeadline silences msg and push while the gateway goes on far past the
// offline deadline, and ticks once msg and push are idle.
func jumpPastOfflineDeadline(tr *Tracker) {
	later := t0 + int64(offTO) + int64(time.Minute)
	tr.Apply(later, ev(imsemconv.StageAck, "other", later, dev("d1"), from("gw")))
	tr.Tick(later + int64(idleTO) + sec)
	tr.Apply(later+int64(idleTO)+sec, ev(imsemconv.StageAck, "other", later+int64(idleTO)+sec, dev("d1"), from("gw")))
	tr.Tick(later + int64(idleTO) + sec)
}
