package faults

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/testbed/workload"
)

func timeouts() Timeouts {
	return Timeouts{
		AckTimeout: 3 * time.Second, OfflineTimeout: 9 * time.Second, ReorderWindow: 3 * time.Second, TickInterval: 100 * time.Millisecond,
		AllowedLateness: 500 * time.Millisecond, SourceIdleTimeout: 3 * time.Second, MaxSourceLag: 6 * time.Second, Margin: 1500 * time.Millisecond,
	}
}

func generator(t *testing.T, messages int64, offline float64) *workload.Generator {
	wc := workload.DefaultConfig()
	wc.Messages, wc.OfflineShare = messages, offline
	wc.OfflineReconnectMin, wc.OfflineReconnectMax = 4600*time.Millisecond, 7*time.Second
	g, err := workload.NewGenerator(wc)
	require.NoError(t, err)
	return g
}

// planAll plans every message of a run with the given probabilities.
func planAll(t *testing.T, g *workload.Generator, probs map[Class]float64) (*Book, [][]workload.Event) {
	return planWith(t, g, Config{Probability: probs, Timeouts: timeouts()})
}

// planWith plans every message of a run and returns, per message index, the events of that
// message (whichever call of Next emitted them).
func planWith(t *testing.T, g *workload.Generator, cfg Config) (*Book, [][]workload.Event) {
	book, calls := planCalls(t, g, cfg)
	all := make([][]workload.Event, len(calls))
	for _, evts := range calls {
		for _, e := range evts {
			all[e.Msg.Index] = append(all[e.Msg.Index], e)
		}
	}
	return book, all
}

// planCalls plans every message of a run and returns the events each call of Next returned.
func planCalls(t *testing.T, g *workload.Generator, cfg Config) (*Book, [][]workload.Event) {
	book := NewBook()
	p, err := NewPlanner(g, cfg, book)
	require.NoError(t, err)
	var calls [][]workload.Event
	for {
		start, evts, ok := p.Next()
		if !ok {
			break
		}
		for _, e := range evts {
			require.GreaterOrEqual(t, e.Due, start, "no event is due before the message it is sent with starts")
			require.LessOrEqual(t, e.Msg.Index, int64(len(calls)), "no event is sent before its message is planned")
		}
		calls = append(calls, evts)
	}
	require.Equal(t, int64(len(calls)), book.Len())
	return book, calls
}

func stagesOf(evts []workload.Event) []imsemconv.Stage {
	var out []imsemconv.Stage
	for _, e := range evts {
		if e.Stage != imsemconv.StageUnknown {
			out = append(out, e.Stage)
		}
	}
	return out
}

func TestEveryClassHasItsTruthAndEvents(t *testing.T) {
	tt := timeouts()
	for _, c := range Faults {
		t.Run(string(c), func(t *testing.T) {
			p := 1.0
			if c == ClassSeqGap || c == ClassLateMessage {
				// A gap needs an earlier seq in its conversation and a later one: leave room
				// for clean messages.
				p = 0.5
			}
			g := generator(t, 600, 0)
			book, all := planAll(t, g, map[Class]float64{c: p})
			injected := 0
			for i, truth := range book.All() {
				evts := all[i]
				if truth.Class != c {
					// Only a seq gap or a late message can be refused (no earlier seq in the
					// conversation, or a gap already open there); the closing messages that
					// reveal gaps and the keep-alive messages after late_events and
					// late_message are clean.
					require.Contains(t, []Class{ClassNone, ClassOffline}, truth.Class)
					if truth.Index >= 600 && (c == ClassLateEvents || c == ClassLateMessage) {
						continue
					}
					require.Contains(t, []Class{ClassSeqGap, ClassLateMessage}, c)
					continue
				}
				injected++
				st := stagesOf(evts)
				if c == ClassSeqGap {
					assert.Empty(t, evts)
					assert.Positive(t, truth.Seq)
					continue
				}
				m := evts[0].Msg
				switch c {
				case ClassLossSend:
					assert.Equal(t, []imsemconv.Stage{imsemconv.StageSend}, st)
					assert.Zero(t, truth.Seq, "a message lost before persist has no seq")
				case ClassLossPersist:
					assert.Equal(t, []imsemconv.Stage{imsemconv.StageSend, imsemconv.StagePersist}, st)
				case ClassLossPush:
					assert.Equal(t, imsemconv.StagePush, slices.Max(st))
				case ClassLossDeliver:
					assert.NotContains(t, st, imsemconv.StageAck)
					assert.Contains(t, st, imsemconv.StageDeliver)
				case ClassPersistFailed:
					last := evts[len(evts)-1]
					assert.True(t, last.Failed)
					assert.Equal(t, imsemconv.StagePersist, last.Stage)
					assert.True(t, last.HasSeq, "the seq was assigned before storage failed")
				case ClassPersistRetry:
					i := slices.IndexFunc(evts, func(e workload.Event) bool { return e.Stage == imsemconv.StagePersist })
					assert.True(t, evts[i].Failed)
					assert.False(t, evts[i+1].Failed)
					assert.Equal(t, imsemconv.StagePersist, evts[i+1].Stage)
					assert.Less(t, evts[i].Due, evts[i+1].Due, "the failure comes before its retry")
				case ClassDuplicate:
					dup := evts[len(evts)-1]
					assert.Equal(t, imsemconv.StageDeliver, dup.Stage)
					n := 0
					for _, e := range evts {
						if e.Stage == imsemconv.StageAck && e.Device == dup.Device {
							assert.Less(t, e.Due, dup.Due, "the duplicate follows the ack")
						}
						if e.Stage == imsemconv.StageDeliver && e.Device == dup.Device {
							n++
						}
					}
					assert.Equal(t, 2, n)
				case ClassReorder, ClassDelay:
					for _, e := range evts {
						assert.Less(t, e.Due-m.Start, tt.AckTimeout-tt.Margin, "tolerated delays stay inside the ack timeout")
						assert.LessOrEqual(t, e.Due-e.End, tt.AllowedLateness/2, "disorder within one source stays within allowed_lateness")
					}
				case ClassAckDelay:
					for _, e := range evts {
						if e.Stage == imsemconv.StageAck {
							assert.GreaterOrEqual(t, e.Start-m.Start, tt.AckTimeout+tt.Margin)
						}
					}
				case ClassLateEvents:
					first := time.Duration(1 << 62)
					for _, e := range evts {
						if e.Stage == imsemconv.StageDeliver || e.Stage == imsemconv.StageAck {
							assert.GreaterOrEqual(t, e.Due-m.Start, tt.AckTimeout+tt.AllowedLateness+tt.TickInterval+tt.Margin)
							assert.Less(t, e.Start-m.Start, tt.AckTimeout, "the events themselves were on time")
							if e.Due < first {
								first = e.Due
								assert.Equal(t, imsemconv.StageDeliver, e.Stage, "the first late event is a deliver")
							}
						}
					}
				case ClassOfflineExpired:
					dev := m.Recipients[0].Device
					for _, e := range evts {
						if e.Device == dev {
							assert.Equal(t, imsemconv.StagePush, e.Stage)
							assert.True(t, e.Offline)
						}
					}
				case ClassLateMessage:
					// The whole lifecycle, on time, and all of it held by one shift past
					// both deadlines: it arrives in lifecycle order.
					assert.Equal(t, []imsemconv.Stage{imsemconv.StageSend, imsemconv.StagePersist, imsemconv.StagePush}, st[:3])
					assert.Contains(t, st, imsemconv.StageAck)
					assert.Positive(t, truth.Seq)
					last := slices.MaxFunc(evts, func(a, b workload.Event) int { return cmp.Compare(a.End, b.End) }).End
					due := max(truth.Deadline, last+tt.AckTimeout) + tt.AllowedLateness + tt.TickInterval + tt.Margin
					for _, e := range evts {
						assert.Less(t, e.End-m.Start, tt.AckTimeout, "the events themselves were on time")
						assert.GreaterOrEqual(t, e.Due, due, "held past the gap's deadline and the message's")
						assert.Equal(t, evts[0].Due-evts[0].End, e.Due-e.End, "one shift for every event")
						assert.False(t, e.Offline)
					}
				}
				assert.Equal(t, len(evts), truth.Events)
			}
			assert.Positive(t, injected)
		})
	}
}

func TestTruthLabels(t *testing.T) {
	want := map[Class][]string{
		ClassLossSend:       {"lost/ack_timeout@send"},
		ClassLossPersist:    {"lost/ack_timeout@persist"},
		ClassLossPush:       {"lost/ack_timeout@push"},
		ClassLossDeliver:    {"lost/ack_timeout@deliver"},
		ClassSeqGap:         {"lost/seq_gap@persist"},
		ClassPersistFailed:  {"lost/stage_failed@persist"},
		ClassPersistRetry:   {"delivered@ack"},
		ClassDuplicate:      {"delivered@ack", "duplicate@deliver"},
		ClassReorder:        {"delivered@ack"},
		ClassDelay:          {"delivered@ack"},
		ClassAckDelay:       {"lost/ack_timeout@deliver", "late@ack"},
		ClassLateEvents:     {"lost/ack_timeout@push", "late@deliver", "late@ack(retracted)"},
		ClassOfflineExpired: {"lost/ack_timeout@push"},
		ClassLateMessage:    {"delivered@ack", "lost/seq_gap@persist", "late@persist(retracted)"},
		ClassNone:           {"delivered@ack"},
		ClassOffline:        {"delivered@ack"},
	}
	probs := map[Class]float64{}
	for _, c := range Faults {
		probs[c] = 1.0 / float64(len(Faults)+3)
	}
	book, all := planAll(t, generator(t, 2000, 0.05), probs)
	seen := map[Class]bool{}
	bigGroup := false
	for _, truth := range book.All() {
		var got []string
		for _, l := range truth.Labels {
			got = append(got, l.String())
		}
		// Large groups are retracted too (im_loss once followed at most 8 devices): the plan
		// must hold some, so the scenarios exercise them.
		if truth.Class == ClassLateEvents && fanout(all[truth.Index]) > 8 {
			bigGroup = true
		}
		require.Equal(t, want[truth.Class], got, "class %s", truth.Class)
		seen[truth.Class] = true
	}
	for c := range want {
		assert.True(t, seen[c], "class %s never planned", c)
	}
	assert.True(t, bigGroup, "a late_events group message to more than 8 devices")
}

func fanout(evts []workload.Event) int {
	for _, e := range evts {
		if e.Stage == imsemconv.StagePush && e.Device == "" {
			return e.Fanout
		}
	}
	return 0
}

func TestSeqNumbersAndGaps(t *testing.T) {
	book, all := planAll(t, generator(t, 3000, 0), map[Class]float64{ClassSeqGap: 0.2, ClassLossSend: 0.1, ClassDelay: 0.1})
	type seqInfo struct {
		reported bool
		due      time.Duration
	}
	perConv := map[string]map[int64]seqInfo{}
	for i, truth := range book.All() {
		if truth.Seq == 0 {
			assert.Equal(t, ClassLossSend, truth.Class)
			continue
		}
		c := perConv[truth.Conversation.ID]
		if c == nil {
			c = map[int64]seqInfo{}
			perConv[truth.Conversation.ID] = c
		}
		require.NotContains(t, c, truth.Seq, "seq %d assigned twice in %s", truth.Seq, truth.Conversation.ID)
		info := seqInfo{}
		for _, e := range all[i] {
			if e.Stage == imsemconv.StagePersist {
				require.Equal(t, truth.Seq, e.Seq)
				info = seqInfo{reported: true, due: e.Due}
			}
		}
		assert.Equal(t, truth.Class != ClassSeqGap, info.reported)
		c[truth.Seq] = info
	}
	gaps := 0
	for conv, seqs := range perConv {
		for s := int64(1); s <= int64(len(seqs)); s++ {
			info, ok := seqs[s]
			require.True(t, ok, "%s: seq %d missing: seqs must be dense", conv, s)
			if info.reported {
				continue
			}
			gaps++
			require.Greater(t, s, int64(1), "the first seq of a conversation is a baseline, never a gap")
			revealed := false
			for later := s + 1; later <= int64(len(seqs)); later++ {
				if seqs[later].reported {
					revealed = true
					break
				}
			}
			assert.True(t, revealed, "%s: gap at seq %d is never revealed by a later seq", conv, s)
		}
	}
	assert.Positive(t, gaps)
}

func TestDeterministic(t *testing.T) {
	probs := map[Class]float64{}
	for _, c := range Faults {
		probs[c] = 0.05
	}
	b1, e1 := planAll(t, generator(t, 500, 0.05), probs)
	b2, e2 := planAll(t, generator(t, 500, 0.05), probs)
	assert.Equal(t, b1.All(), b2.All())
	assert.Equal(t, e1, e2)
}

func TestConfigValidation(t *testing.T) {
	c := Config{Probability: map[Class]float64{ClassDelay: 0.7, ClassReorder: 0.5, "bogus": 0.1}, Timeouts: timeouts()}
	err := c.Validate()
	require.Error(t, err)
	assert.ErrorContains(t, err, `unknown class "bogus"`)
	assert.ErrorContains(t, err, "add up to")
	c = Config{Timeouts: Timeouts{AckTimeout: time.Second, OfflineTimeout: time.Second, ReorderWindow: time.Second, TickInterval: time.Millisecond}}
	assert.ErrorContains(t, c.Validate(), "offline_timeout")

	wc := workload.DefaultConfig()
	wc.OfflineReconnectMax = 8 * time.Second
	g, err := workload.NewGenerator(wc)
	require.NoError(t, err)
	_, err = NewPlanner(g, Config{Timeouts: timeouts()}, NewBook())
	assert.ErrorContains(t, err, "too close to offline_timeout")
}

func TestParseProbabilities(t *testing.T) {
	p, err := ParseProbabilities("seq_gap=0.1, delay=0.2")
	require.NoError(t, err)
	assert.Equal(t, map[Class]float64{ClassSeqGap: 0.1, ClassDelay: 0.2}, p)
	p, err = ParseProbabilities("all=0.01")
	require.NoError(t, err)
	assert.Len(t, p, len(Faults))
	_, err = ParseProbabilities("nope=1")
	assert.ErrorContains(t, err, `unknown class "nope"`)
	_, err = ParseProbabilities("delay")
	assert.ErrorContains(t, err, "not class=probability")
	_, err = ParseProbabilities("delay=x")
	assert.ErrorContains(t, err, "not a number")
	p, err = ParseProbabilities("")
	require.NoError(t, err)
	assert.Empty(t, p)
}

// TestLateEventsUnderLag: the late events of late_events must reach the collector after the
// slowest source's watermark passed the deadline, so the shift grows by how much more the
// slowest source lags than the gateway; the keep-alive keeps the stream going past the last
// late_events message's deadline.
func TestLateEventsUnderLag(t *testing.T) {
	tt := timeouts()
	base := tt.AckTimeout + tt.AllowedLateness + tt.TickInterval + tt.Margin
	for _, tc := range []struct {
		name  string
		lags  workload.Lags
		extra time.Duration
	}{
		{"none", workload.Lags{}, 0},
		{"gateway", lagOf(workload.ServiceGateway), 0},
		{"push", lagOf(workload.ServicePush), 6 * time.Second},
		{"all", workload.AllLagged(workload.Lag{Delay: 6 * time.Second}), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := generator(t, 300, 0)
			book, all := planWith(t, g, Config{Probability: map[Class]float64{ClassLateEvents: 0.3}, Timeouts: tt, Lags: tc.lags})
			var lastLate, lastStart time.Duration
			n := 0
			for i, truth := range book.All() {
				m := all[i][0].Msg
				lastStart = max(lastStart, m.Start)
				if truth.Class != ClassLateEvents {
					continue
				}
				n++
				lastLate = max(lastLate, m.Start)
				assert.Equal(t, m.Start+300*time.Microsecond+tt.AckTimeout, truth.Deadline)
				for _, e := range all[i] {
					if e.Stage == imsemconv.StageDeliver || e.Stage == imsemconv.StageAck {
						assert.GreaterOrEqual(t, e.Due-e.End, base+tc.extra-time.Millisecond)
					}
				}
			}
			require.Positive(t, n)
			assert.GreaterOrEqual(t, lastStart, lastLate+tt.AckTimeout+tt.AllowedLateness+tt.Margin, "the stream goes on past the last deadline")
			assert.Greater(t, book.Len(), int64(300), "keep-alive messages follow the regular stream")
		})
	}
}

// lagOf makes service s lag 6s behind the others.
func lagOf(s workload.Service) workload.Lags {
	var l workload.Lags
	l[s] = workload.Lag{Delay: 6 * time.Second}
	return l
}

// TestStopDecidesFromTheEventsSent: after a service stops, the truth of every message
// follows from the events that were actually planned, by the processor's stage rule.
func TestStopDecidesFromTheEventsSent(t *testing.T) {
	tt := timeouts()
	at := 2 * time.Second
	g := generator(t, 600, 0.05)
	book, all := planWith(t, g, Config{Timeouts: tt, Stop: &Stop{Service: workload.ServiceGateway, At: at}})
	var down, deliverStage, offline int
	for i, truth := range book.All() {
		for _, e := range all[i] {
			if e.Service == workload.ServiceGateway {
				require.Less(t, e.Due, at, "no gateway event after the stop")
			}
		}
		if truth.Class != ClassServiceDown {
			assert.Contains(t, []Class{ClassNone, ClassOffline}, truth.Class)
			assert.Equal(t, []string{"delivered@ack"}, labelStrings(truth.Labels))
			continue
		}
		down++
		require.Len(t, truth.Labels, 1)
		l := truth.Labels[0]
		assert.Equal(t, imsemconv.OutcomeLost, l.Outcome)
		assert.Contains(t, []imsemconv.Stage{imsemconv.StagePush, imsemconv.StageDeliver}, l.Stage)
		if l.Stage == imsemconv.StageDeliver {
			deliverStage++
		}
		send := all[i][slices.IndexFunc(all[i], func(e workload.Event) bool { return e.Stage == imsemconv.StageSend })]
		switch truth.Deadline - send.Start {
		case tt.OfflineTimeout:
			offline++
		default:
			assert.Equal(t, tt.AckTimeout, truth.Deadline-send.Start)
		}
	}
	assert.Greater(t, down, 400, "every message from the stop on is lost")
	assert.Positive(t, offline, "offline recipients pending: deadline on offline_timeout")
	assert.Positive(t, deliverStage, "messages in flight at the stop: delivered, not acked")
	_, err := NewPlanner(g, Config{Timeouts: tt, Probability: map[Class]float64{ClassDelay: 0.1}, Stop: &Stop{At: at}}, NewBook())
	assert.ErrorContains(t, err, "needs every fault probability zero")
}

func labelStrings(ls []Label) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.String()
	}
	return out
}

func TestVerdictStageRule(t *testing.T) {
	m := &workload.Message{Recipients: []workload.Recipient{{Device: "a"}, {Device: "b"}}}
	ev := func(s imsemconv.Stage, dev string, fan int) workload.Event {
		return workload.Event{Msg: m, Stage: s, Device: dev, Fanout: fan}
	}
	send, persist, push := ev(imsemconv.StageSend, "", 0), ev(imsemconv.StagePersist, "", 0), ev(imsemconv.StagePush, "", 2)
	for _, tc := range []struct {
		name string
		evts []workload.Event
		want string
	}{
		{"all acked", []workload.Event{send, persist, push, ev(imsemconv.StageDeliver, "a", 0), ev(imsemconv.StageAck, "a", 0), ev(imsemconv.StageDeliver, "b", 0), ev(imsemconv.StageAck, "b", 0)}, "delivered@ack"},
		{"one delivered, not acked", []workload.Event{send, persist, push, ev(imsemconv.StageDeliver, "a", 0), ev(imsemconv.StageAck, "a", 0), ev(imsemconv.StageDeliver, "b", 0)}, "lost/ack_timeout@deliver"},
		{"one never seen", []workload.Event{send, persist, push, ev(imsemconv.StageDeliver, "a", 0), ev(imsemconv.StageAck, "a", 0)}, "lost/ack_timeout@push"},
		{"least advanced counts", []workload.Event{send, persist, push, ev(imsemconv.StageDeliver, "a", 0)}, "lost/ack_timeout@push"},
		{"no push", []workload.Event{send, persist}, "lost/ack_timeout@persist"},
		{"offline push only", []workload.Event{send, persist, push, ev(imsemconv.StagePush, "b", 0), ev(imsemconv.StageDeliver, "a", 0)}, "lost/ack_timeout@push"},
	} {
		l, ok := Verdict(tc.evts)
		require.True(t, ok, tc.name)
		assert.Equal(t, tc.want, l.String(), tc.name)
	}
	_, ok := Verdict([]workload.Event{ev(imsemconv.StageDeliver, "a", 0)})
	assert.False(t, ok, "no origin stage: no verdict")
}

func TestLabelString(t *testing.T) {
	assert.Equal(t, "late@ack(retracted)", labelRetracted.String())
	assert.Equal(t, "late@ack", late(imsemconv.StageAck).String())
	assert.Equal(t, "late@persist(retracted)", SeqGapRetraction().String(), "a late record is named by its event's stage, not the loss's reason")
	assert.Equal(t, "lost/seq_gap@persist", SeqGapLoss().String())
	assert.True(t, SeqGapRetraction().BySeq())
	assert.True(t, SeqGapLoss().BySeq())
	assert.False(t, labelRetracted.BySeq())
	assert.False(t, labelDelivered.BySeq())
}

// TestLateMessageHeldPastItsGap: a late message's events go out with the message of the
// next seq of its conversation, persisted on time, which opens the gap; each of them reaches
// the collector (its service's lag included) only after the slowest source's watermark has
// passed the gap's deadline and the message's own, and the keep-alive carries the stream past
// the message's own window, which starts when its first event arrives.
func TestLateMessageHeldPastItsGap(t *testing.T) {
	tt := timeouts()
	for _, tc := range []struct {
		name string
		lags workload.Lags
	}{
		{"none", workload.Lags{}},
		{"gateway", lagOf(workload.ServiceGateway)},
		{"push", lagOf(workload.ServicePush)},
		{"all", workload.AllLagged(workload.Lag{Delay: 6 * time.Second, Ramp: 3 * time.Second})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := generator(t, 600, 0.05)
			cfg := Config{Probability: map[Class]float64{ClassLateMessage: 0.2, ClassSeqGap: 0.1, ClassLossSend: 0.05}, Timeouts: tt, Lags: tc.lags}
			book, calls := planCalls(t, g, cfg)
			arrival := func(e workload.Event) time.Duration { return e.Due + tc.lags.Of(e.Service, e.Due) }
			type key struct {
				conv string
				seq  int64
			}
			persists := map[key]workload.Event{}
			sentWith := map[int64]int{}
			var lastStart, keepUntil time.Duration
			for i, evts := range calls {
				for _, e := range evts {
					sentWith[e.Msg.Index] = i
					lastStart = max(lastStart, e.Msg.Start)
					if e.Stage == imsemconv.StagePersist {
						k := key{e.Msg.Conversation.ID, e.Seq}
						if p, ok := persists[k]; !ok || e.End > p.End {
							persists[k] = e // a retried persist reveals with its later sub-step
						}
					}
				}
			}
			n := 0
			for _, truth := range book.All() {
				if truth.Class != ClassLateMessage {
					continue
				}
				n++
				assert.Empty(t, calls[truth.Index], "a late message's events are held")
				next, ok := persists[key{truth.Conversation.ID, truth.Seq + 1}]
				require.True(t, ok, "message %d: the next seq of its conversation is persisted", truth.Index)
				assert.Equal(t, int(next.Msg.Index), sentWith[truth.Index], "sent with the message that reveals its gap")
				assert.NotEqual(t, ClassSeqGap, book.All()[next.Msg.Index].Class)
				assert.Equal(t, next.End+tt.ReorderWindow, truth.Deadline, "its deadline is the gap's")
				own, ok := persists[key{truth.Conversation.ID, truth.Seq}]
				require.True(t, ok)
				assert.Less(t, own.End, truth.Deadline, "the late persist is stamped before the gap's deadline: a retraction")
				var evts []workload.Event
				for _, e := range calls[sentWith[truth.Index]] {
					if e.Msg.Index == truth.Index {
						evts = append(evts, e)
					}
				}
				require.Len(t, evts, truth.Events)
				last := slices.MaxFunc(evts, func(a, b workload.Event) int { return cmp.Compare(a.End, b.End) }).End
				// The slowest source's events stamped allowed_lateness past the later deadline
				// arrive by then + the largest lag; a tick confirms; the margin separates.
				due := max(truth.Deadline, last+tt.AckTimeout) + tt.AllowedLateness + tc.lags.Max() + tt.TickInterval + tt.Margin
				first := time.Duration(1 << 62)
				for _, e := range evts {
					assert.GreaterOrEqual(t, arrival(e), due, "message %d: %s arrives after the watermark passed both deadlines", truth.Index, e.Stage)
					assert.Greater(t, arrival(e), arrival(next), "after the persist that opens the gap")
					first = min(first, e.Due)
				}
				keepUntil = max(keepUntil, first+tt.AckTimeout+tt.AllowedLateness+tt.Margin)
			}
			require.Positive(t, n)
			assert.GreaterOrEqual(t, lastStart, keepUntil, "the stream goes on past the last late message's window")
		})
	}
}
