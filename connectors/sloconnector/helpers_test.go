package sloconnector

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/components/signal"
	"github.com/imcol/imcol/connectors/sloconnector/internal/metadata"
	"github.com/imcol/imcol/connectors/sloconnector/sloconfig"
)

// t0 is on an hour boundary, so hand-computed bucket edges are easy to follow.
var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

type harness struct {
	t     *testing.T
	clock *clockwork.FakeClock
	sink  *consumertest.MetricsSink
	conn  *sloConnector
}

func newHarness(t *testing.T, cfg *Config, sig signal.Signal, set connector.Settings) *harness {
	t.Helper()
	require.NoError(t, confmap.Validate(cfg))
	h := &harness{t: t, clock: clockwork.NewFakeClockAt(t0), sink: &consumertest.MetricsSink{}}
	factory := newFactoryWithClock(h.clock)
	var err error
	var c component.Component
	if sig == signal.Logs {
		c, err = factory.CreateLogsToMetrics(context.Background(), set, cfg, h.sink)
	} else {
		c, err = factory.CreateTracesToMetrics(context.Background(), set, cfg, h.sink)
	}
	require.NoError(t, err)
	h.conn = c.(*sloConnector)
	return h
}

func (h *harness) start(host component.Host) {
	h.t.Helper()
	require.NoError(h.t, h.conn.Start(context.Background(), host))
	h.t.Cleanup(func() { require.NoError(h.t, h.conn.Shutdown(context.Background())) })
}

func (h *harness) at(d time.Duration) { h.clock.Advance(t0.Add(d).Sub(h.clock.Now())) }

// flushAt moves the clock to t0+d and flushes directly, returning the flushed metrics as values.
func (h *harness) flushAt(d time.Duration) map[string]float64 {
	h.t.Helper()
	h.at(d)
	n := len(h.sink.AllMetrics())
	require.NoError(h.t, h.conn.flush(context.Background()))
	all := h.sink.AllMetrics()
	require.Len(h.t, all, n+1)
	return values(all[n])
}

// values flattens metrics into "name{k=v,...}" → value, attributes sorted, for exact asserts.
func values(md pmetric.Metrics) map[string]float64 {
	out := map[string]float64{}
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				m := ms.At(k)
				var dps pmetric.NumberDataPointSlice
				switch m.Type() {
				case pmetric.MetricTypeSum:
					dps = m.Sum().DataPoints()
				case pmetric.MetricTypeGauge:
					dps = m.Gauge().DataPoints()
				default:
					panic("unexpected metric type " + m.Type().String())
				}
				for l := 0; l < dps.Len(); l++ {
					dp := dps.At(l)
					v := dp.DoubleValue()
					if dp.ValueType() == pmetric.NumberDataPointValueTypeInt {
						v = float64(dp.IntValue())
					}
					out[seriesName(m.Name(), dp.Attributes())] = v
				}
			}
		}
	}
	return out
}

func seriesName(name string, attrs pcommon.Map) string {
	var kv []string
	for k, v := range attrs.All() {
		kv = append(kv, k+"="+v.AsString())
	}
	slices.Sort(kv)
	return fmt.Sprintf("%s{%s}", name, strings.Join(kv, ","))
}

func ratioSLO(name string, objective float64, total, bad string) sloconfig.SLOConfig {
	return sloconfig.SLOConfig{Name: name, Objective: objective, SLI: sloconfig.SLIConfig{Ratio: &sloconfig.RatioSLIConfig{Total: total, Bad: bad}}}
}

// oneDayWindows keeps the default page windows of a 1-day SLO: 5m, 30m, 1h and 6h.
func oneDayWindows(s sloconfig.SLOConfig) sloconfig.SLOConfig {
	s.Window = sloconfig.Duration(24 * time.Hour)
	s.Alerting.Windows = map[string]sloconfig.BurnRateWindowConfig{"ticket_fast": {Disabled: true}, "ticket_slow": {Disabled: true}}
	return s
}

type spanSpec struct {
	service  string
	kind     ptrace.SpanKind
	err      bool
	duration time.Duration
	name     string
	attrs    map[string]any
}

func traces(specs ...spanSpec) ptrace.Traces {
	td := ptrace.NewTraces()
	byService := map[string]ptrace.SpanSlice{}
	for i, s := range specs {
		spans, ok := byService[s.service]
		if !ok {
			rs := td.ResourceSpans().AppendEmpty()
			if s.service != "" {
				rs.Resource().Attributes().PutStr("service.name", s.service)
			}
			spans = rs.ScopeSpans().AppendEmpty().Spans()
			byService[s.service] = spans
		}
		sp := spans.AppendEmpty()
		sp.SetName(s.name)
		if sp.Name() == "" {
			sp.SetName("SendMessage")
		}
		sp.SetKind(s.kind)
		sp.SetTraceID(pcommon.TraceID{byte(i + 1)})
		sp.SetSpanID(pcommon.SpanID{byte(i + 1)})
		start := pcommon.NewTimestampFromTime(t0)
		sp.SetStartTimestamp(start)
		sp.SetEndTimestamp(start + pcommon.Timestamp(s.duration))
		if s.err {
			sp.Status().SetCode(ptrace.StatusCodeError)
		}
		require.NoError(nilT{}, sp.Attributes().FromRaw(s.attrs))
	}
	return td
}

func repeat(n int, s spanSpec) []spanSpec {
	out := make([]spanSpec, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// outcomeLog is one im_loss outcome record.
type outcomeLog struct {
	outcome   imsemconv.Outcome
	latencyMS any // int64, float64, string or nil (absent)
	reason    imsemconv.LossReason
	// retracted marks a late record that takes its message's loss back.
	retracted bool
}

func outcomeLogs(records ...outcomeLog) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "im-loss")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for i, r := range records {
		lr := lrs.AppendEmpty()
		lr.SetEventName(imsemconv.OutcomeEventName)
		lr.SetTimestamp(pcommon.NewTimestampFromTime(t0))
		a := lr.Attributes()
		a.PutStr(imsemconv.AttrOutcome, string(r.outcome))
		a.PutStr(imsemconv.AttrMessageID, fmt.Sprintf("m%d", i))
		a.PutStr(imsemconv.AttrConversationID, "c1")
		switch v := r.latencyMS.(type) {
		case int64:
			a.PutInt(imsemconv.AttrDeliveryLatency, v)
		case float64:
			a.PutDouble(imsemconv.AttrDeliveryLatency, v)
		case string:
			a.PutStr(imsemconv.AttrDeliveryLatency, v)
		}
		if r.reason != "" {
			a.PutStr(imsemconv.AttrLossReason, string(r.reason))
			a.PutStr(imsemconv.AttrLossStage, imsemconv.StagePush.String())
		}
		if r.retracted {
			a.PutBool(imsemconv.AttrLossRetracted, true)
		}
	}
	// A log record that is not an outcome record must be ignored by the outcome SLOs.
	other := lrs.AppendEmpty()
	other.SetEventName("im.message.stage")
	other.Attributes().PutStr(imsemconv.AttrOutcome, string(imsemconv.OutcomeLost))
	return ld
}

// nilT lets helpers that build test data use require without a *testing.T.
type nilT struct{}

func (nilT) Errorf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (nilT) FailNow()                          { panic("FailNow") }

// nopSettings uses a fixed id: storage clients are keyed by it, and a restart keeps its id.
func nopSettings() connector.Settings {
	set := connectortest.NewNopSettings(metadata.Type)
	set.ID = component.NewID(metadata.Type)
	return set
}

type extHost struct {
	component.Host
	ext map[component.ID]component.Component
}

func (h extHost) GetExtensions() map[component.ID]component.Component { return h.ext }

func nopHost() component.Host { return componenttest.NewNopHost() }
