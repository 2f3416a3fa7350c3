package imlossprocessor

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/metadatatest"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"
)

// newFakeClock is a clockwork fake clock at a fixed start, startLead before the events' epoch:
// im_loss distrusts events stamped before it started (plus tracker.CrashClockSkew) unless it
// restored an exact snapshot, so the traffic a test judges is stamped after the start.
// Started components are moved on by startLead with skipStartLead, to arrivalDelay after the
// epoch (telemetry reaches the collector after it happened, spans after they end). Its tickers fire
// only when a test advances it past their period; tests that need a tick at a known point use
// forceTick.
func newFakeClock() *clockwork.FakeClock {
	return clockwork.NewFakeClockAt(epoch.Add(arrivalDelay - startLead))
}

const startLead = tracker.CrashClockSkew + 4*time.Millisecond

// arrivalDelay is how late the tests' first telemetry, stamped at the epoch, reaches the
// collector. Verdicts forced at max_source_lag wait for it too: the cap is measured from the
// freshest telemetry, so with defaultCfg's 1 ns a deadline d after the epoch is forced at
// d + arrivalDelay + 1 ns on the clock, not before.
const arrivalDelay = 2 * time.Millisecond

// skipStartLead moves a clock from newFakeClock on to arrivalDelay after the events' epoch,
// once the components using it have started; a clock already past that stays.
func skipStartLead(clk *clockwork.FakeClock) {
	if d := epoch.Add(arrivalDelay).Sub(clk.Now()); d > 0 {
		clk.Advance(d)
	}
}

// harness runs one im_loss instance in a traces and a logs pipeline, as the collector would.
type harness struct {
	t      *testing.T
	clock  *clockwork.FakeClock
	f      *factory
	id     component.ID
	traces processor.Traces
	logs   processor.Logs
	tsink  *consumertest.TracesSink
	lsink  *consumertest.LogsSink
	tel    *componenttest.Telemetry
}

func newHarness(t *testing.T, cfg *Config, host component.Host, clk *clockwork.FakeClock) *harness {
	t.Helper()
	return newHarnessWithHook(t, cfg, host, clk, nil)
}

// newHarnessWithHook also hands checkpointed to the runtime: it receives the size of every
// periodic checkpoint once written.
func newHarnessWithHook(t *testing.T, cfg *Config, host component.Host, clk *clockwork.FakeClock, checkpointed chan int) *harness {
	t.Helper()
	if clk == nil {
		clk = newFakeClock()
	}
	h := &harness{
		t: t, clock: clk,
		f:     &factory{shared: newSharedRuntimes(), clock: clk, checkpointed: checkpointed},
		tsink: new(consumertest.TracesSink),
		lsink: new(consumertest.LogsSink),
		tel:   componenttest.NewTelemetry(),
	}
	t.Cleanup(func() { require.NoError(t, h.tel.Shutdown(context.Background())) })
	pf := h.f.processorFactory()
	set := metadatatest.NewSettings(h.tel)
	h.id = set.ID
	var err error
	h.traces, err = pf.CreateTraces(context.Background(), set, cfg, h.tsink)
	require.NoError(t, err)
	h.logs, err = pf.CreateLogs(context.Background(), set, cfg, h.lsink)
	require.NoError(t, err)
	if host == nil {
		host = componenttest.NewNopHost()
	}
	require.NoError(t, h.traces.Start(context.Background(), host))
	require.NoError(t, h.logs.Start(context.Background(), host))
	skipStartLead(clk)
	return h
}

func (h *harness) shutdown() {
	require.NoError(h.t, h.traces.Shutdown(context.Background()))
	require.NoError(h.t, h.logs.Shutdown(context.Background()))
}

func (h *harness) rt() *lossRuntime {
	h.f.shared.mu.Lock()
	defer h.f.shared.mu.Unlock()
	return h.f.shared.m[h.id].rt
}

// advance lets the loop take in everything sent so far (at the current time), moves the
// clock and runs a tick, returning once its outcomes were emitted.
func (h *harness) advance(d time.Duration) {
	h.rt().forceTick()
	h.clock.Advance(d)
	h.rt().forceTick()
}

func (h *harness) sendSpans(evs ...lc) {
	require.NoError(h.t, h.traces.ConsumeTraces(context.Background(), spansOf(time.Time{}, evs...)))
}

func (h *harness) sendLogs(evs ...lc) {
	require.NoError(h.t, h.logs.ConsumeLogs(context.Background(), logsOf(time.Time{}, evs...)))
}

// lc is one lifecycle event to put on a span or log record.
type lc struct {
	stage   imsemconv.Stage
	msg     string
	conv    string
	dev     string
	seq     int64
	fanout  int64
	offline bool
	failed  bool
	at      time.Duration // event time relative to the clock's start
	trace   byte
}

func (e lc) putAttrs(m pcommon.Map) {
	m.PutStr(imsemconv.AttrStage, e.stage.String())
	m.PutStr(imsemconv.AttrMessageID, e.msg)
	if e.conv != "" {
		m.PutStr(imsemconv.AttrConversationID, e.conv)
	}
	if e.dev != "" {
		m.PutStr(imsemconv.AttrRecipientDevice, e.dev)
	}
	if e.seq > 0 {
		m.PutInt(imsemconv.AttrSeq, e.seq)
	}
	if e.fanout > 0 {
		m.PutInt(imsemconv.AttrFanout, e.fanout)
	}
	if e.offline {
		m.PutBool(imsemconv.AttrPushOffline, true)
	}
	// Content that must never leak into outcome records.
	m.PutStr("im.message.body", "secret text")
}

var epoch = time.Unix(1_700_000_000, 0).UTC()

func spansOf(base time.Time, evs ...lc) ptrace.Traces {
	if base.IsZero() {
		base = epoch
	}
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "gateway")
	ss := rs.ScopeSpans().AppendEmpty()
	for _, e := range evs {
		s := ss.Spans().AppendEmpty()
		s.SetName("im." + e.stage.String())
		tid := e.trace
		if tid == 0 {
			tid = 1
		}
		s.SetTraceID(pcommon.TraceID{tid, 0xaa})
		s.SetSpanID(pcommon.SpanID{byte(e.stage), 1})
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(base.Add(e.at)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(base.Add(e.at + time.Millisecond)))
		if e.failed {
			s.Status().SetCode(ptrace.StatusCodeError)
		}
		e.putAttrs(s.Attributes())
	}
	return td
}

func logsOf(base time.Time, evs ...lc) plog.Logs {
	if base.IsZero() {
		base = epoch
	}
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "push")
	sl := rl.ScopeLogs().AppendEmpty()
	for _, e := range evs {
		r := sl.LogRecords().AppendEmpty()
		r.SetTimestamp(pcommon.NewTimestampFromTime(base.Add(e.at)))
		r.SetSeverityNumber(plog.SeverityNumberInfo)
		if e.failed {
			r.SetSeverityNumber(plog.SeverityNumberError)
		}
		if e.trace != 0 {
			r.SetTraceID(pcommon.TraceID{e.trace, 0xaa})
		}
		r.Body().SetStr("lifecycle event")
		e.putAttrs(r.Attributes())
	}
	return ld
}

func outcomeSpans(sink *consumertest.TracesSink) []ptrace.Span {
	var out []ptrace.Span
	for _, td := range sink.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, s := range ss.Spans().All() {
					if s.Name() == imsemconv.OutcomeEventName {
						out = append(out, s)
					}
				}
			}
		}
	}
	return out
}

func outcomeLogs(sink *consumertest.LogsSink) []plog.LogRecord {
	var out []plog.LogRecord
	for _, ld := range sink.AllLogs() {
		for _, rl := range ld.ResourceLogs().All() {
			for _, sl := range rl.ScopeLogs().All() {
				for _, r := range sl.LogRecords().All() {
					if r.EventName() == imsemconv.OutcomeEventName {
						out = append(out, r)
					}
				}
			}
		}
	}
	return out
}

func attr(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

func nopTelemetrySettings() component.TelemetrySettings {
	return componenttest.NewNopTelemetrySettings()
}

// assertCounter compares a counter's non-zero points with want: start-up creates the usual
// series of every counter at zero (see initCounters), which the behaviour tests do not repeat.
func assertCounter(t *testing.T, tel *componenttest.Telemetry, name string, want []metricdata.DataPoint[int64], opts ...metricdatatest.Option) {
	t.Helper()
	got, err := tel.GetMetric(name)
	require.NoError(t, err)
	sum, ok := got.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is not an int64 sum", name)
	var nonZero []metricdata.DataPoint[int64]
	for _, dp := range sum.DataPoints {
		if dp.Value != 0 {
			nonZero = append(nonZero, dp)
		}
	}
	gotSum, wantSum := sum, sum
	gotSum.DataPoints, wantSum.DataPoints = nonZero, want
	gotMetric, wantMetric := got, got
	gotMetric.Data, wantMetric.Data = gotSum, wantSum
	metricdatatest.AssertEqual(t, wantMetric, gotMetric, opts...)
}

// decideWithoutPersist has m1 decided delivered on its send, push and ack, its persist delayed:
// the restart tests then bring the persist to a restarted instance.
func decideWithoutPersist(t *testing.T, h *harness) {
	t.Helper()
	h.sendSpans(
		lc{stage: send, msg: "m1", conv: "c"},
		lc{stage: push, msg: "m1", conv: "c", fanout: 1},
		lc{stage: ack, msg: "m1", conv: "c", dev: "d"},
	)
	h.advance(time.Second)
	require.Len(t, outcomeSpans(h.tsink), 1)
}
