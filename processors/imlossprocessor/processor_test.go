package imlossprocessor

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/metadatatest"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"
)

const (
	send    = imsemconv.StageSend
	persist = imsemconv.StagePersist
	push    = imsemconv.StagePush
	deliver = imsemconv.StageDeliver
	ack     = imsemconv.StageAck
)

// defaultCfg decides on the collector's clock (no lag allowed), so each test steps verdicts
// with the fake clock alone; the event-time model is tested with the tracker
// (internal/tracker/eventtime_test.go) and in runtime_test.go.
func defaultCfg() *Config {
	cfg := createDefaultConfig().(*Config)
	cfg.AllowedLateness = time.Second // the tests' batches are not in time order
	cfg.MaxSourceLag = time.Nanosecond
	return cfg
}

func TestStagesSplitAcrossSignalsShareOneTracker(t *testing.T) {
	cfg := defaultCfg()
	cfg.Outcomes.Signals = []Signal{} // back into the pipeline of the message's first event
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()

	h.sendSpans(
		lc{stage: send, msg: "m1", conv: "c1", at: 0, trace: 5},
		lc{stage: persist, msg: "m1", conv: "c1", seq: 1, at: 10 * time.Millisecond, trace: 5},
		lc{stage: push, msg: "m1", conv: "c1", fanout: 1, at: 20 * time.Millisecond, trace: 5},
	)
	h.sendLogs(
		lc{stage: deliver, msg: "m1", conv: "c1", dev: "d1", at: 30 * time.Millisecond},
		lc{stage: ack, msg: "m1", conv: "c1", dev: "d1", at: 40 * time.Millisecond},
	)
	h.advance(0)

	spans := outcomeSpans(h.tsink)
	require.Len(t, spans, 1, "outcome goes back into the pipeline of the message's first event")
	assert.Empty(t, outcomeLogs(h.lsink))
	s := spans[0]
	assert.Equal(t, pcommon.TraceID{5, 0xaa}, s.TraceID(), "outcome span lives in the message's trace")
	assert.Equal(t, 40*time.Millisecond, s.EndTimestamp().AsTime().Sub(s.StartTimestamp().AsTime()), "send to last ack")
	assert.Equal(t, map[string]any{
		imsemconv.AttrOutcome:         "delivered",
		imsemconv.AttrMessageID:       "m1",
		imsemconv.AttrConversationID:  "c1",
		imsemconv.AttrDeliveryLatency: 40.0,
	}, s.Attributes().AsRaw())

	// The lifecycle data itself went through untouched.
	assert.Equal(t, 3+1, h.tsink.SpanCount())
	assert.Equal(t, 2, h.lsink.LogRecordCount())
	rs := h.tsink.AllTraces()[1].ResourceSpans().At(0)
	assert.Equal(t, "imcol", attr(rs.Resource().Attributes(), "service.name"))
}

func TestOutcomeSpansAndLogsCarryTheSameAttributes(t *testing.T) {
	cfg := defaultCfg() // outcomes go out as spans and as log records
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()

	h.sendSpans(
		lc{stage: send, msg: "ok", conv: "c1"},
		lc{stage: push, msg: "ok", conv: "c1", fanout: 1},
		lc{stage: ack, msg: "ok", conv: "c1", dev: "d", at: 80 * time.Millisecond},
		lc{stage: send, msg: "lost", conv: "c2"},
		lc{stage: push, msg: "lost", conv: "c2", dev: "phone"},
	)
	h.advance(cfg.AckTimeout)

	spans, logs := outcomeSpans(h.tsink), outcomeLogs(h.lsink)
	require.Len(t, spans, 2)
	require.Len(t, logs, 2)
	for i := range spans {
		assert.Equal(t, spans[i].Attributes().AsRaw(), logs[i].Attributes().AsRaw())
		assert.Equal(t, spans[i].TraceID(), logs[i].TraceID())
	}
	assert.Equal(t, map[string]any{
		imsemconv.AttrOutcome:         "lost",
		imsemconv.AttrMessageID:       "lost",
		imsemconv.AttrConversationID:  "c2",
		imsemconv.AttrRecipientDevice: "phone",
		imsemconv.AttrLossStage:       "push",
		imsemconv.AttrLossReason:      "ack_timeout",
		imsemconv.AttrLossDevices:     int64(1),
	}, logs[1].Attributes().AsRaw())
	assert.Equal(t, ptrace.StatusCodeError, spans[1].Status().Code())
	assert.Equal(t, "WARN", logs[1].SeverityText())
	for _, l := range logs {
		_, leaked := l.Attributes().Get("im.message.body")
		assert.False(t, leaked)
	}
}

func TestEmitFailuresOnlyStillCountsEverything(t *testing.T) {
	cfg := defaultCfg()
	cfg.Outcomes.Emit = EmitModeFailures
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()

	h.sendLogs(
		lc{stage: send, msg: "ok", conv: "c1"},
		lc{stage: push, msg: "ok", conv: "c1", fanout: 1},
		lc{stage: ack, msg: "ok", conv: "c1", dev: "d", at: 120 * time.Millisecond},
		lc{stage: send, msg: "bad", conv: "c1"},
		lc{stage: persist, msg: "bad", conv: "c1", failed: true},
	)
	h.advance(cfg.AckTimeout)

	logs := outcomeLogs(h.lsink)
	require.Len(t, logs, 1)
	assert.Equal(t, "stage_failed", attr(logs[0].Attributes(), imsemconv.AttrLossReason))
	assert.Equal(t, "persist", attr(logs[0].Attributes(), imsemconv.AttrLossStage))

	assertCounter(t, h.tel, "otelcol_processor_im_loss_outcomes", []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("outcome", "delivered"), attribute.String("stage", "ack"), attribute.String("reason", ""))},
		{Value: 1, Attributes: attribute.NewSet(attribute.String("outcome", "lost"), attribute.String("stage", "persist"), attribute.String("reason", "stage_failed"))},
	}, metricdatatest.IgnoreTimestamp())
	got, err := h.tel.GetMetric("otelcol_processor_im_loss_delivery_latency")
	require.NoError(t, err)
	hist := got.Data.(metricdata.Histogram[float64]).DataPoints
	require.Len(t, hist, 1)
	assert.Equal(t, uint64(1), hist[0].Count)
	assert.InDelta(t, 120.0, hist[0].Sum, 1e-9)
	metadatatest.AssertEqualProcessorImLossTrackedMessages(t, h.tel, []metricdata.DataPoint[int64]{{Value: 0}}, metricdatatest.IgnoreTimestamp())
}

func TestDropDuplicates(t *testing.T) {
	for _, drop := range []bool{false, true} {
		t.Run(map[bool]string{false: "report", true: "drop"}[drop], func(t *testing.T) {
			cfg := defaultCfg()
			cfg.DropDuplicates = drop
			h := newHarness(t, cfg, nil, nil)
			defer h.shutdown()
			h.sendSpans(
				lc{stage: send, msg: "m", conv: "c"},
				lc{stage: deliver, msg: "m", conv: "c", dev: "d"},
				lc{stage: deliver, msg: "m", conv: "c", dev: "d"},
			)
			h.sendSpans(lc{stage: deliver, msg: "m", conv: "c", dev: "d"})
			h.advance(0)
			dups := outcomeSpans(h.tsink)
			require.Len(t, dups, 2)
			assert.Equal(t, "duplicate", attr(dups[0].Attributes(), imsemconv.AttrOutcome))
			assert.Equal(t, "d", attr(dups[0].Attributes(), imsemconv.AttrRecipientDevice))
			if drop {
				assert.Equal(t, 2+2, h.tsink.SpanCount(), "send and first deliver pass, both repeats dropped")
			} else {
				assert.Equal(t, 4+2, h.tsink.SpanCount())
			}
		})
	}
}

func TestMalformedEventsPassThroughAndAreCounted(t *testing.T) {
	h := newHarness(t, defaultCfg(), nil, nil)
	defer h.shutdown()

	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	s := spans.AppendEmpty()
	s.SetName("no id")
	s.Attributes().PutStr(imsemconv.AttrStage, "send")
	s = spans.AppendEmpty()
	s.SetName("bad seq")
	s.Attributes().PutStr(imsemconv.AttrStage, "persist")
	s.Attributes().PutStr(imsemconv.AttrMessageID, "m")
	s.Attributes().PutStr(imsemconv.AttrConversationID, "c")
	s.Attributes().PutStr(imsemconv.AttrSeq, "seven")
	s = spans.AppendEmpty()
	s.SetName("unknown stage")
	s.Attributes().PutStr(imsemconv.AttrStage, "sent")
	s = spans.AppendEmpty()
	s.SetName("ordinary span, not a lifecycle event")
	want := ptrace.NewTraces()
	td.CopyTo(want)

	require.NoError(t, h.traces.ConsumeTraces(context.Background(), td))
	h.advance(defaultCfg().AckTimeout)
	require.Len(t, h.tsink.AllTraces(), 1)
	assert.Equal(t, want, h.tsink.AllTraces()[0])
	assert.Equal(t, 0, h.rt().tracked())

	assertCounter(t, h.tel, "otelcol_processor_im_loss_unrecognized_events", []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "missing_message_id"))},
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "invalid_seq"))},
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "invalid_stage"))},
	}, metricdatatest.IgnoreTimestamp())
}

func TestStageConditionsWithoutStageAttribute(t *testing.T) {
	cfg := defaultCfg()
	cfg.StageConditions.Spans = StageConditions{
		Send:    []string{`name == "gateway.SendMsg"`},
		Persist: []string{`name == "msgtransfer.insert"`},
		Push:    []string{`name == "push.Push"`},
	}
	cfg.StageConditions.Logs = StageConditions{
		Deliver: []string{`body == "written to connection"`},
		Ack:     []string{`attributes["op"] == "ack"`},
	}
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()

	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for _, name := range []string{"gateway.SendMsg", "msgtransfer.insert", "push.Push", "unrelated"} {
		s := spans.AppendEmpty()
		s.SetName(name)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(epoch))
		s.Attributes().PutStr(imsemconv.AttrMessageID, "m")
		s.Attributes().PutStr(imsemconv.AttrConversationID, "c")
	}
	require.NoError(t, h.traces.ConsumeTraces(context.Background(), td))
	ld := logsOf(time.Time{}, lc{stage: deliver, msg: "m", conv: "c", dev: "d", at: time.Second})
	r := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
	r.Attributes().Remove(imsemconv.AttrStage)
	r.Body().SetStr("written to connection")
	ack := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().AppendEmpty()
	ack.SetTimestamp(pcommon.NewTimestampFromTime(epoch.Add(2 * time.Second)))
	ack.Attributes().PutStr("op", "ack")
	ack.Attributes().PutStr(imsemconv.AttrMessageID, "m")
	ack.Attributes().PutStr(imsemconv.AttrRecipientDevice, "d")
	require.NoError(t, h.logs.ConsumeLogs(context.Background(), ld))
	h.advance(0)

	out := outcomeSpans(h.tsink)
	require.Len(t, out, 1)
	assert.Equal(t, "delivered", attr(out[0].Attributes(), imsemconv.AttrOutcome))
	assert.Equal(t, "2000", attr(out[0].Attributes(), imsemconv.AttrDeliveryLatency))
}

func TestRestartWithStorageKeepsInFlightMessages(t *testing.T) {
	dir := t.TempDir()
	storageID := storagetest.NewStorageID("state")
	cfg := defaultCfg()
	cfg.Storage = &storageID
	// Event time: verdicts wait for the services' telemetry, however long the downtime.
	cfg.MaxSourceLag, cfg.SourceIdleTimeout = time.Hour, 10*time.Second
	newHost := func() component.Host {
		return storagetest.NewStorageHost().WithFileBackedStorageExtension("state", dir)
	}
	clk := newFakeClock()

	h := newHarness(t, cfg, newHost(), clk)
	h.sendSpans(
		lc{stage: send, msg: "m1", conv: "c", trace: 9},
		lc{stage: persist, msg: "m1", conv: "c", seq: 1},
		lc{stage: push, msg: "m1", conv: "c", fanout: 1},
		lc{stage: send, msg: "m2", conv: "c"},
		lc{stage: persist, msg: "m2", conv: "c", seq: 3}, // seq 2 missing: gap open at shutdown
	)
	h.advance(cfg.ReorderWindow / 2)
	h.shutdown()
	assert.Empty(t, outcomeSpans(h.tsink), "shutdown with storage decides nothing")

	clk.Advance(10 * time.Minute) // downtime, longer than every timeout
	h2 := newHarness(t, cfg, newHost(), clk)
	defer h2.shutdown()
	assert.Equal(t, 2, h2.rt().tracked())
	h2.advance(time.Second)
	assert.Empty(t, outcomeSpans(h2.tsink), "no false losses for the downtime")

	// The backlog of the downtime arrives with its own timestamps, then the present.
	h2.sendLogs(
		lc{stage: deliver, msg: "m1", conv: "c", dev: "d"},
		lc{stage: ack, msg: "m1", conv: "c", dev: "d", at: 100 * time.Millisecond},
	)
	present := 10*time.Minute + time.Second
	h2.sendLogs(lc{stage: send, msg: "m3", conv: "c", at: present})
	h2.sendSpans(lc{stage: send, msg: "m4", conv: "c", at: present})
	h2.advance(cfg.SourceIdleTimeout)
	var got []string
	for _, s := range outcomeSpans(h2.tsink) {
		got = append(got, attr(s.Attributes(), imsemconv.AttrOutcome)+"/"+attr(s.Attributes(), imsemconv.AttrMessageID)+
			"/"+attr(s.Attributes(), imsemconv.AttrLossReason)+"/"+attr(s.Attributes(), imsemconv.AttrSeq))
	}
	assert.ElementsMatch(t, []string{"delivered/m1//", "lost//seq_gap/2", "lost/m2/ack_timeout/"}, got)
}

func TestRestartWithoutStorageForgetsButInventsNothing(t *testing.T) {
	clk := newFakeClock()
	cfg := defaultCfg()
	h := newHarness(t, cfg, nil, clk)
	h.sendSpans(lc{stage: send, msg: "m1", conv: "c"}, lc{stage: push, msg: "m1", conv: "c", fanout: 1})
	h.shutdown()

	h2 := newHarness(t, cfg, nil, clk)
	defer h2.shutdown()
	h2.sendSpans(lc{stage: deliver, msg: "m1", conv: "c", dev: "d"}, lc{stage: ack, msg: "m1", conv: "c", dev: "d"})
	h2.advance(cfg.AckTimeout + arrivalDelay)
	assert.Empty(t, outcomeSpans(h2.tsink), "half a lifecycle after a restart is neither delivered nor lost")
	assertCounter(t, h2.tel, "otelcol_processor_im_loss_unrecognized_events", []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "orphan_message"))},
	}, metricdatatest.IgnoreTimestamp())
}

// TestRestartWithoutStorageTrustsNoDelayedEvent: without storage the decided memory is gone,
// so a delayed persist of a message decided before the restart looks like a new message. It
// is stamped before the start, so it is uncertain: counted, never declared lost. A message
// begun after the start is judged as usual.
func TestRestartWithoutStorageTrustsNoDelayedEvent(t *testing.T) {
	clk := newFakeClock()
	cfg := defaultCfg()
	h := newHarness(t, cfg, nil, clk)
	decideWithoutPersist(t, h)
	h.shutdown()

	clk.Advance(time.Minute)
	h2 := newHarness(t, cfg, nil, clk)
	defer h2.shutdown()
	h2.sendSpans(lc{stage: persist, msg: "m1", conv: "c", seq: 1})
	after := clk.Now().Add(tracker.CrashClockSkew)
	require.NoError(t, h2.traces.ConsumeTraces(context.Background(), spansOf(after,
		lc{stage: send, msg: "m2", conv: "c"}, lc{stage: push, msg: "m2", conv: "c", fanout: 1})))
	h2.advance(cfg.AckTimeout + 2*tracker.CrashClockSkew)
	var got []string
	for _, s := range outcomeSpans(h2.tsink) {
		got = append(got, attr(s.Attributes(), imsemconv.AttrOutcome)+"/"+attr(s.Attributes(), imsemconv.AttrMessageID))
	}
	assert.Equal(t, []string{"lost/m2"}, got, "the delayed persist is no loss; m2, begun after the start, is")
	assertCounter(t, h2.tel, "otelcol_processor_im_loss_unrecognized_events", []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "unjudged_after_restart"))},
	}, metricdatatest.IgnoreTimestamp())
}

func TestEvictionIsReportedAndCounted(t *testing.T) {
	cfg := defaultCfg()
	cfg.MaxTrackedMessages = 2
	cfg.MaxMessagesPerConversation = 2
	cfg.Shards = 1 // the oldest of all; with shards, the oldest of its shard (below)
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()
	h.sendSpans(lc{stage: send, msg: "a", conv: "1"}, lc{stage: send, msg: "b", conv: "2"}, lc{stage: send, msg: "c", conv: "3"})
	h.advance(0)
	out := outcomeSpans(h.tsink)
	require.Len(t, out, 1)
	assert.Equal(t, "a", attr(out[0].Attributes(), imsemconv.AttrMessageID))
	assert.Equal(t, "evicted", attr(out[0].Attributes(), imsemconv.AttrLossReason))
	assertCounter(t, h.tel, "otelcol_processor_im_loss_evictions", []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("state", "message"))},
	}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualProcessorImLossTrackedMessages(t, h.tel, []metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())
}

func TestSeqGapMetric(t *testing.T) {
	h := newHarness(t, defaultCfg(), nil, nil)
	defer h.shutdown()
	h.sendSpans(
		lc{stage: persist, msg: "a", conv: "c", seq: 1},
		lc{stage: persist, msg: "b", conv: "c", seq: 5},
		lc{stage: persist, msg: "z", conv: "c", seq: 1 << 40},
	)
	h.advance(defaultCfg().ReorderWindow + arrivalDelay)
	metadatatest.AssertEqualProcessorImLossSeqGaps(t, h.tel, []metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())
	var seqs []string
	for _, s := range outcomeSpans(h.tsink) {
		seqs = append(seqs, attr(s.Attributes(), imsemconv.AttrSeq)+":"+attr(s.Attributes(), imsemconv.AttrSeqGapAnomaly))
	}
	assert.Equal(t, []string{"6:true", "2:", "3:", "4:"}, seqs)
}

func TestDetachedPipelineIsNotCalledAfterShutdown(t *testing.T) {
	cfg := defaultCfg()
	h := newHarness(t, cfg, nil, nil)
	h.sendLogs(lc{stage: send, msg: "m", conv: "c"})
	require.NoError(t, h.traces.Shutdown(context.Background()))
	require.NoError(t, h.traces.Shutdown(context.Background()), "safe twice")
	h.advance(cfg.AckTimeout + arrivalDelay)
	assert.Empty(t, outcomeSpans(h.tsink))
	assert.Len(t, outcomeLogs(h.lsink), 1)
	require.NoError(t, h.logs.Shutdown(context.Background()))
	h.f.shared.mu.Lock()
	assert.Empty(t, h.f.shared.m, "the last shutdown releases the shared tracker")
	h.f.shared.mu.Unlock()
}

func TestShutdownWithoutStart(t *testing.T) {
	f := NewFactory()
	set := metadatatest.NewSettings(componenttest.NewTelemetry())
	p, err := f.CreateTraces(context.Background(), set, f.CreateDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	l, err := f.CreateLogs(context.Background(), set, f.CreateDefaultConfig(), consumertest.NewNop())
	require.NoError(t, err)
	require.NoError(t, p.Shutdown(context.Background()))
	require.NoError(t, l.Shutdown(context.Background()))
	require.NoError(t, l.Shutdown(context.Background()))
}

func TestStorageMisconfigured(t *testing.T) {
	cfg := defaultCfg()
	id := storagetest.NewNonStorageID("x")
	cfg.Storage = &id
	f := NewFactory()
	p, err := f.CreateTraces(context.Background(), metadatatest.NewSettings(componenttest.NewTelemetry()), cfg, consumertest.NewNop())
	require.NoError(t, err)
	err = p.Start(context.Background(), storagetest.NewStorageHost().WithNonStorageExtension("x"))
	require.ErrorContains(t, err, "is not a storage extension")
	require.NoError(t, p.Shutdown(context.Background()))

	missing := component.MustNewIDWithName("file_storage", "nope")
	cfg.Storage = &missing
	p, err = f.CreateTraces(context.Background(), metadatatest.NewSettings(componenttest.NewTelemetry()), cfg, consumertest.NewNop())
	require.NoError(t, err)
	require.ErrorContains(t, p.Start(context.Background(), componenttest.NewNopHost()), `extension "file_storage/nope" not found`)
	require.NoError(t, p.Shutdown(context.Background()))
}

// TestCountersStartAtZero: the first loss, gap or eviction must be visible to rate() and
// increase(), so the usual series exist at zero before anything happens.
func TestCountersStartAtZero(t *testing.T) {
	h := newHarness(t, defaultCfg(), nil, nil)
	defer h.shutdown()
	metadatatest.AssertEqualProcessorImLossSeqGaps(t, h.tel, []metricdata.DataPoint[int64]{{Value: 0}}, metricdatatest.IgnoreTimestamp())
	var evictions []metricdata.DataPoint[int64]
	for _, state := range []string{"message", "conversation", "seq_gap", "decided", "source", "retraction"} {
		evictions = append(evictions, metricdata.DataPoint[int64]{Attributes: attribute.NewSet(attribute.String("state", state))})
	}
	metadatatest.AssertEqualProcessorImLossEvictions(t, h.tel, evictions, metricdatatest.IgnoreTimestamp())

	outcomes, err := h.tel.GetMetric("otelcol_processor_im_loss_outcomes")
	require.NoError(t, err)
	lostAtPush := attribute.NewSet(attribute.String("outcome", "lost"), attribute.String("stage", "push"), attribute.String("reason", "ack_timeout"))
	found := false
	for _, dp := range outcomes.Data.(metricdata.Sum[int64]).DataPoints {
		assert.Zero(t, dp.Value)
		found = found || dp.Attributes.Equals(&lostAtPush)
	}
	assert.True(t, found, "no zero series for lost/ack_timeout@push")
	unrecognized, err := h.tel.GetMetric("otelcol_processor_im_loss_unrecognized_events")
	require.NoError(t, err)
	assert.Len(t, unrecognized.Data.(metricdata.Sum[int64]).DataPoints, len(event.Reasons))
	assertCounter(t, h.tel, "otelcol_processor_im_loss_forced_decisions", nil, metricdatatest.IgnoreTimestamp())
}

func TestShardsSplitTheLimits(t *testing.T) {
	cfg := defaultCfg()
	cfg.MaxTrackedMessages = 4
	cfg.MaxMessagesPerConversation = 4
	cfg.Shards = 2
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()
	var sends []lc
	for i := range 10 {
		sends = append(sends, lc{stage: send, msg: fmt.Sprintf("m%d", i), conv: fmt.Sprintf("c%d", i)})
	}
	h.sendSpans(sends...)
	h.advance(0)
	tracked := h.rt().tracked()
	assert.LessOrEqual(t, tracked, 4, "each shard holds 2")
	assert.Len(t, outcomeSpans(h.tsink), 10-tracked, "every message evicted is reported")
	assertCounter(t, h.tel, "otelcol_processor_im_loss_evictions", []metricdata.DataPoint[int64]{
		{Value: int64(10 - tracked), Attributes: attribute.NewSet(attribute.String("state", "message"))},
	}, metricdatatest.IgnoreTimestamp())
}

// TestDecidedMemoryReachGauge: once the decided memory forgets a message, the gauge says how
// far before the watermark it still reaches: from the forgotten message's deadline.
// TestArrivalLagGauge: the gauge shows how late the freshest telemetry arrives, the lag
// max_source_lag counts from: the least over the sources heard lately.
func TestArrivalLagGauge(t *testing.T) {
	h := newHarness(t, defaultCfg(), nil, nil)
	defer h.shutdown()
	h.advance(5 * time.Second)
	h.sendLogs(lc{stage: send, msg: "m", conv: "c"}) // stamped at the epoch, 5 s + arrivalDelay ago
	h.advance(0)
	late := (5*time.Second + arrivalDelay).Milliseconds()
	metadatatest.AssertEqualProcessorImLossArrivalLag(t, h.tel, []metricdata.DataPoint[int64]{{Value: late}}, metricdatatest.IgnoreTimestamp())

	// Another source, on time: its span ends 1 ms before it arrives.
	h.sendSpans(lc{stage: push, msg: "m", conv: "c", fanout: 1, at: 5 * time.Second})
	h.advance(0)
	onTime := (arrivalDelay - time.Millisecond).Milliseconds()
	metadatatest.AssertEqualProcessorImLossArrivalLag(t, h.tel, []metricdata.DataPoint[int64]{{Value: onTime}}, metricdatatest.IgnoreTimestamp())
}

func TestDecidedMemoryReachGauge(t *testing.T) {
	cfg := defaultCfg()
	cfg.DecidedCacheSize, cfg.Shards = 1, 1
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()
	delivered := func(msg string, at time.Duration) {
		h.sendSpans(lc{stage: send, msg: msg, conv: "c", at: at}, lc{stage: push, msg: msg, conv: "c", fanout: 1, at: at},
			lc{stage: ack, msg: msg, conv: "c", dev: "d", at: at})
	}
	delivered("m1", 0)
	h.advance(time.Second)
	_, err := h.tel.GetMetric("otelcol_processor_im_loss_decided_memory_reach")
	require.Error(t, err, "nothing forgotten, nothing to report")

	delivered("m2", time.Second) // the memory holds one: m1, due ack_timeout after its send, is forgotten
	h.advance(time.Minute)
	got, err := h.tel.GetMetric("otelcol_processor_im_loss_decided_memory_reach")
	require.NoError(t, err)
	gauge, ok := got.Data.(metricdata.Gauge[int64])
	require.True(t, ok)
	require.Len(t, gauge.DataPoints, 1)
	// Verdicts reach the clock (max_source_lag 1 ns): 1 min 1 s after m1's send, 31 s after its deadline.
	assert.InDelta(t, (time.Minute + time.Second - cfg.AckTimeout).Milliseconds(), gauge.DataPoints[0].Value, 5)
}
