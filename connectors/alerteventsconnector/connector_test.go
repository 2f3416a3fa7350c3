package alerteventsconnector

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/imcol/imcol/connectors/alerteventsconnector/internal/metadatatest"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

type harness struct {
	t     *testing.T
	c     *alertEventsConnector
	sink  *consumertest.LogsSink
	clock *clockwork.FakeClock
	tel   *componenttest.Telemetry
}

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	mutate(cfg)
	require.NoError(t, confmap.Validate(cfg))
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	sink := new(consumertest.LogsSink)
	// The fake clock only moves when a test advances it: tests call evaluate
	// with explicit timestamps and no ticker evaluation races with them.
	clk := clockwork.NewFakeClockAt(t0)
	c, err := newConnector(metadatatest.NewSettings(tel), cfg, sink, clk)
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, c.Shutdown(context.Background())) })
	return &harness{t: t, c: c, sink: sink, clock: clk, tel: tel}
}

func inlineRule(rule map[string]any) func(*Config) {
	return func(cfg *Config) {
		cfg.Groups = []map[string]any{{"name": "test", "rules": []any{rule}}}
	}
}

// push sends one data point at ts through ConsumeMetrics.
func (h *harness) push(ts time.Time, build func(pmetric.MetricSlice, pcommon.Timestamp)) {
	h.t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "openim")
	rm.Resource().Attributes().PutStr("service.instance.id", "10.0.0.1:10001")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("test")
	build(sm.Metrics(), pcommon.NewTimestampFromTime(ts))
	require.NoError(h.t, h.c.ConsumeMetrics(context.Background(), md))
}

func gauge(name string, v float64, attrs map[string]string) func(pmetric.MetricSlice, pcommon.Timestamp) {
	return func(ms pmetric.MetricSlice, ts pcommon.Timestamp) {
		m := ms.AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(ts)
		dp.SetDoubleValue(v)
		for k, val := range attrs {
			dp.Attributes().PutStr(k, val)
		}
	}
}

func staleGauge(name string) func(pmetric.MetricSlice, pcommon.Timestamp) {
	return func(ms pmetric.MetricSlice, ts pcommon.Timestamp) {
		m := ms.AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(ts)
		dp.SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))
	}
}

func counter(name string, start time.Time, v float64, temporality pmetric.AggregationTemporality) func(pmetric.MetricSlice, pcommon.Timestamp) {
	return func(ms pmetric.MetricSlice, ts pcommon.Timestamp) {
		m := ms.AppendEmpty()
		m.SetName(name)
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(temporality)
		dp := s.DataPoints().AppendEmpty()
		dp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		dp.SetTimestamp(ts)
		dp.SetDoubleValue(v)
	}
}

// eval evaluates at ts and returns the events it emitted.
func (h *harness) eval(ts time.Time) []plog.LogRecord {
	h.t.Helper()
	before := len(h.sink.AllLogs())
	h.c.evaluate(context.Background(), ts)
	var out []plog.LogRecord
	for _, ld := range h.sink.AllLogs()[before:] {
		lrs := ld.ResourceLogs().At(0).ScopeLogs().At(0).LogRecords()
		for i := 0; i < lrs.Len(); i++ {
			out = append(out, lrs.At(i))
		}
	}
	return out
}

func states(lrs []plog.LogRecord) []string {
	out := make([]string, 0, len(lrs))
	for _, lr := range lrs {
		v, _ := lr.Attributes().Get(attrState)
		out = append(out, v.Str())
	}
	return out
}

func attr(t *testing.T, lr plog.LogRecord, k string) string {
	t.Helper()
	v, ok := lr.Attributes().Get(k)
	require.True(t, ok, "attribute %s missing", k)
	return v.AsString()
}

var instanceDown = map[string]any{
	"alert":  "InstanceDown",
	"expr":   "up == 0",
	"for":    "1m",
	"labels": map[string]any{"severity": "critical"},
	"annotations": map[string]any{
		"summary":     "Instance {{ $labels.instance }} down",
		"description": "{{ $labels.job }} has been down; up = {{ $value }}",
	},
}

func TestPendingFiringResolved(t *testing.T) {
	h := newHarness(t, func(cfg *Config) {
		inlineRule(instanceDown)(cfg)
		cfg.ExternalURL = "http://prometheus.example:9090"
		cfg.ExternalLabels = map[string]string{"cluster": "edge-1"}
	})
	step := 15 * time.Second
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * step) }

	h.push(at(0), gauge("up", 1, nil))
	assert.Empty(t, h.eval(at(0)))
	h.push(at(1), gauge("up", 0, nil))
	ev := h.eval(at(1))
	require.Equal(t, []string{statePending}, states(ev))
	for i := 2; i <= 4; i++ {
		h.push(at(i), gauge("up", 0, nil))
		assert.Empty(t, h.eval(at(i)), "step %d", i)
	}
	h.push(at(5), gauge("up", 0, nil))
	ev = h.eval(at(5)) // 60s after the alert became active
	require.Equal(t, []string{stateFiring}, states(ev))

	lr := ev[0]
	assert.Equal(t, "Instance 10.0.0.1:10001 down", lr.Body().Str())
	assert.Equal(t, "critical", lr.SeverityText())
	assert.Equal(t, plog.SeverityNumberFatal, lr.SeverityNumber())
	assert.Equal(t, eventName, lr.EventName())
	assert.Equal(t, "InstanceDown", attr(t, lr, attrAlertName))
	assert.Equal(t, "openim", attr(t, lr, attrLabelPrefix+"job"))
	assert.Equal(t, "10.0.0.1:10001", attr(t, lr, attrLabelPrefix+"instance"))
	assert.Equal(t, "edge-1", attr(t, lr, attrLabelPrefix+"cluster"))
	assert.Equal(t, "test", attr(t, lr, attrLabelPrefix+"otel_scope_name"))
	assert.Equal(t, "openim has been down; up = 0", attr(t, lr, attrAnnotationPrefix+"description"))
	assert.Equal(t, "0", attr(t, lr, attrValue))
	assert.Equal(t, at(1).Format(time.RFC3339Nano), attr(t, lr, attrActiveAt))
	assert.Equal(t, at(5).Format(time.RFC3339Nano), attr(t, lr, attrStartsAt))
	assert.Len(t, attr(t, lr, attrFingerprint), 16)
	assert.Equal(t, "http://prometheus.example:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1", attr(t, lr, attrGeneratorURL))
	assert.Equal(t, inlineRulesSource, attr(t, lr, attrRuleFile))
	assert.Equal(t, pcommon.NewTimestampFromTime(at(5)), lr.Timestamp())
	svc, _ := h.sink.AllLogs()[len(h.sink.AllLogs())-1].ResourceLogs().At(0).Resource().Attributes().Get("service.name")
	assert.Equal(t, "imcol", svc.Str())

	h.push(at(6), gauge("up", 0, nil))
	assert.Empty(t, h.eval(at(6)), "firing is reported once")
	h.push(at(7), gauge("up", 1, nil))
	ev = h.eval(at(7))
	require.Equal(t, []string{stateResolved}, states(ev))
	assert.Equal(t, plog.SeverityNumberInfo, ev[0].SeverityNumber())
	assert.Equal(t, at(7).Format(time.RFC3339Nano), attr(t, ev[0], attrEndsAt))
	assert.Equal(t, attr(t, lr, attrFingerprint), attr(t, ev[0], attrFingerprint))
	h.push(at(8), gauge("up", 1, nil))
	assert.Empty(t, h.eval(at(8)), "resolved is reported once")

	metadatatest.AssertEqualAlertEventsEvents(t, h.tel, []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: stateAttrSet(statePending)},
		{Value: 1, Attributes: stateAttrSet(stateFiring)},
		{Value: 1, Attributes: stateAttrSet(stateResolved)},
	}, metricdatatestIgnore()...)
}

func TestPendingThatClearsEmitsInactive(t *testing.T) {
	h := newHarness(t, inlineRule(instanceDown))
	h.push(t0, gauge("up", 0, nil))
	require.Equal(t, []string{statePending}, states(h.eval(t0)))
	h.push(t0.Add(15*time.Second), gauge("up", 1, nil))
	require.Equal(t, []string{stateInactive}, states(h.eval(t0.Add(15*time.Second))))
}

func TestEmitPendingDisabled(t *testing.T) {
	h := newHarness(t, func(cfg *Config) {
		inlineRule(instanceDown)(cfg)
		cfg.EmitPending = false
	})
	h.push(t0, gauge("up", 0, nil))
	assert.Empty(t, h.eval(t0))
	h.push(t0.Add(time.Minute), gauge("up", 0, nil))
	require.Equal(t, []string{stateFiring}, states(h.eval(t0.Add(time.Minute))))
}

func TestKeepFiringFor(t *testing.T) {
	h := newHarness(t, inlineRule(map[string]any{
		"alert": "LossBurst", "expr": "lost > 0", "keep_firing_for": "1m",
		"labels": map[string]any{"severity": "warning"},
	}))
	h.push(t0, gauge("lost", 3, nil))
	require.Equal(t, []string{stateFiring}, states(h.eval(t0)), "no `for`: fires at once")
	for _, d := range []time.Duration{15 * time.Second, 30 * time.Second, 45 * time.Second} {
		h.push(t0.Add(d), gauge("lost", 0, nil))
		assert.Empty(t, h.eval(t0.Add(d)), "kept firing at +%s", d)
	}
	h.push(t0.Add(75*time.Second), gauge("lost", 0, nil))
	require.Equal(t, []string{stateResolved}, states(h.eval(t0.Add(75*time.Second))))
}

func TestStaleMarkerMakesAbsentFire(t *testing.T) {
	h := newHarness(t, inlineRule(map[string]any{"alert": "Gone", "expr": `absent(connections{job="openim"})`}))
	h.push(t0, gauge("connections", 10, nil))
	assert.Empty(t, h.eval(t0))
	// The prometheus receiver turns a scrape's staleness marker into a data
	// point flagged NoRecordedValue: the series disappears at once.
	h.push(t0.Add(15*time.Second), staleGauge("connections"))
	require.Equal(t, []string{stateFiring}, states(h.eval(t0.Add(15*time.Second))))
}

func TestSeriesThatStopArrivingGoStaleAfterLookback(t *testing.T) {
	h := newHarness(t, func(cfg *Config) {
		inlineRule(map[string]any{"alert": "Gone", "expr": `absent(connections)`})(cfg)
		cfg.LookbackDelta = 2 * time.Minute
	})
	h.push(t0, gauge("connections", 10, nil))
	assert.Empty(t, h.eval(t0))
	// 8s before: the group runs every 15s and is due again after half of that.
	assert.Empty(t, h.eval(t0.Add(2*time.Minute-8*time.Second)), "still inside the lookback delta")
	// The lookback window excludes its start, as in Prometheus.
	require.Equal(t, []string{stateFiring}, states(h.eval(t0.Add(2*time.Minute))))
}

func TestCounterResetAndDelta(t *testing.T) {
	for _, tc := range []struct {
		name   string
		points []float64 // one per 15s
		temp   pmetric.AggregationTemporality
		reset  int // index at which the start time changes (process restart)
	}{
		// 0,10,20 then restart: 5,15 → increase over the window = 20 + 15.
		{name: "cumulative with reset", points: []float64{0, 10, 20, 5, 15}, temp: pmetric.AggregationTemporalityCumulative, reset: 3},
		// Deltas of contiguous windows accumulate like the prometheus exporter.
		{name: "delta", points: []float64{0, 10, 10, 5, 10}, temp: pmetric.AggregationTemporalityDelta, reset: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, inlineRule(map[string]any{
				"alert": "Lost", "expr": `increase(im_lost_total[5m]) > 30`,
			}))
			start := t0.Add(-time.Second)
			prev := start
			for i, v := range tc.points {
				ts := t0.Add(time.Duration(i) * 15 * time.Second)
				if i == tc.reset {
					start = ts.Add(-time.Second)
				}
				s := start
				if tc.temp == pmetric.AggregationTemporalityDelta {
					s = prev
				}
				h.push(ts, counter("im.lost", s, v, tc.temp))
				prev = ts
			}
			ev := h.eval(t0.Add(time.Minute))
			require.Equal(t, []string{stateFiring}, states(ev))
			// 35 counted across the reset; no extrapolation: the first sample is 0
			// and the last one is at the evaluation time.
			assert.InDelta(t, 35, mustFloat(t, attr(t, ev[0], attrValue)), 0.01)
		})
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := newHarness(t, inlineRule(map[string]any{
		"alert": "SlowDelivery",
		"expr":  `histogram_quantile(0.99, sum by (le) (rate(delivery_latency_milliseconds_bucket[1m]))) > 500`,
	}))
	for i := 0; i <= 4; i++ {
		ts := t0.Add(time.Duration(i) * 15 * time.Second)
		h.push(ts, func(ms pmetric.MetricSlice, pts pcommon.Timestamp) {
			m := ms.AppendEmpty()
			m.SetName("delivery.latency")
			m.SetUnit("ms")
			hh := m.SetEmptyHistogram()
			hh.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dp := hh.DataPoints().AppendEmpty()
			dp.SetStartTimestamp(pcommon.NewTimestampFromTime(t0.Add(-time.Second)))
			dp.SetTimestamp(pts)
			dp.ExplicitBounds().FromRaw([]float64{100, 200, 1000})
			n := uint64(i) * 100
			dp.BucketCounts().FromRaw([]uint64{0, 0, n, 0}) // every message 200-1000 ms
			dp.SetCount(n)
			dp.SetSum(float64(n) * 600)
		})
	}
	ev := h.eval(t0.Add(time.Minute))
	require.Equal(t, []string{stateFiring}, states(ev))
}

func TestEvaluationFailureIsCounted(t *testing.T) {
	h := newHarness(t, func(cfg *Config) {
		inlineRule(map[string]any{"alert": "Dup", "expr": `label_replace(x, "a", "same", "", "")`})(cfg)
	})
	h.push(t0, gauge("x", 1, map[string]string{"a": "1"}))
	h.push(t0.Add(time.Second), gauge("x", 1, map[string]string{"a": "2"}))
	assert.Empty(t, h.eval(t0.Add(time.Second)))
	metadatatest.AssertEqualAlertEventsEvaluationFailures(t, h.tel, []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attrSet("rule_group", inlineRulesSource+";test")},
	}, metricdatatestIgnore()...)
}

func TestStoreBoundsAreCounted(t *testing.T) {
	h := newHarness(t, func(cfg *Config) {
		inlineRule(instanceDown)(cfg)
		cfg.Store.MaxSeries = 1
	})
	h.push(t0, gauge("up", 1, nil))
	h.push(t0, gauge("other", 1, nil))
	h.push(t0.Add(-time.Second), gauge("up", 1, nil))
	metadatatest.AssertEqualAlertEventsStoreDropped(t, h.tel, []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attrSet("reason", "series_limit")},
		{Value: 1, Attributes: attrSet("reason", "out_of_order")},
	}, metricdatatestIgnore()...)
}

// amServer is an in-process Alertmanager v2 API.
type amServer struct {
	*httptest.Server
	posts chan []amAlert
}

type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
}

func newAMServer(t *testing.T, user, pass string) *amServer {
	s := &amServer{posts: make(chan []amAlert, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/api/v2/alerts" {
			http.NotFound(w, r)
			return
		}
		if u, p, ok := r.BasicAuth(); user != "" && (!ok || u != user || p != pass) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var alerts []amAlert
		if err := json.Unmarshal(body, &alerts); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.posts <- alerts
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *amServer) next(t *testing.T) []amAlert {
	t.Helper()
	select {
	case a := <-s.posts:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no notification reached the Alertmanager")
		return nil
	}
}

func TestAlertmanagerDeliveryAndResend(t *testing.T) {
	am := newAMServer(t, "imcol", "s3cret")
	h := newHarness(t, func(cfg *Config) {
		inlineRule(instanceDown)(cfg)
		cfg.ExternalLabels = map[string]string{"cluster": "edge-1"}
		cfg.Alertmanagers = []AlertmanagerConfig{{
			Endpoint:  am.URL,
			BasicAuth: &BasicAuthConfig{Username: "imcol", Password: "s3cret"},
		}}
		cfg.ResendDelay = time.Minute
	})
	step := 15 * time.Second
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * step) }
	for i := 0; i <= 4; i++ {
		h.push(at(i), gauge("up", 0, nil))
		h.eval(at(i))
	}
	// Firing at at(4): sent with endsAt = ts + 4 × max(resend_delay, interval).
	got := am.next(t)
	require.Len(t, got, 1)
	assert.Equal(t, "InstanceDown", got[0].Labels["alertname"])
	assert.Equal(t, "edge-1", got[0].Labels["cluster"])
	assert.Equal(t, "Instance 10.0.0.1:10001 down", got[0].Annotations["summary"])
	assert.True(t, got[0].StartsAt.Equal(at(4)))
	assert.True(t, got[0].EndsAt.Equal(at(4).Add(4*time.Minute)), "endsAt %s", got[0].EndsAt)

	// No resend before resend_delay: the next notification is the one at
	// at(9), 75s later (the queue is FIFO, so an earlier one would arrive first).
	for i := 5; i <= 9; i++ {
		h.push(at(i), gauge("up", 0, nil))
		h.eval(at(i))
	}
	got = am.next(t)
	require.Len(t, got, 1)
	assert.True(t, got[0].EndsAt.Equal(at(9).Add(4*time.Minute)), "resent with a fresh endsAt, got %s", got[0].EndsAt)

	h.push(at(10), gauge("up", 1, nil))
	h.eval(at(10))
	got = am.next(t)
	require.Len(t, got, 1)
	assert.True(t, got[0].EndsAt.Equal(at(10)), "resolved alerts carry endsAt = resolution time, got %s", got[0].EndsAt)
	assert.True(t, got[0].StartsAt.Equal(at(4)))

	// The client counts a delivery after the server answered.
	require.Eventually(t, func() bool { return h.c.notifier.stats().sent == 3 }, 10*time.Second, 10*time.Millisecond)
}

func TestAlertmanagerFailuresAreCounted(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	h := newHarness(t, func(cfg *Config) {
		inlineRule(map[string]any{"alert": "Now", "expr": "vector(1)"})(cfg)
		cfg.Alertmanagers = []AlertmanagerConfig{{Endpoint: failing.URL, Timeout: 5 * time.Second}}
		cfg.DrainNotificationsOnShutdown = false
	})
	h.eval(t0)
	// The send loop runs on its own goroutine and counts after the response.
	require.Eventually(t, func() bool { return h.c.notifier.stats().dropped > 0 }, 10*time.Second, 10*time.Millisecond)
	s := h.c.notifier.stats()
	assert.Equal(t, int64(1), s.failed)
	assert.Equal(t, int64(1), s.dropped)
	assert.Zero(t, s.sent)
}

func TestLoopEvaluatesOnTicks(t *testing.T) {
	h := newHarness(t, inlineRule(map[string]any{"alert": "Now", "expr": "vector(1)"}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, h.clock.BlockUntilContext(ctx, 1), "the loop's ticker")
	h.clock.Advance(15 * time.Second)
	// The loop evaluates on its own goroutine: wait for the event it emits.
	require.Eventually(t, func() bool { return h.sink.LogRecordCount() == 1 }, 10*time.Second, 5*time.Millisecond)
	lr := h.sink.AllLogs()[0].ResourceLogs().At(0).ScopeLogs().At(0).LogRecords().At(0)
	assert.Equal(t, pcommon.NewTimestampFromTime(t0.Add(15*time.Second)), lr.Timestamp(), "evaluated at the tick's time")
	h.clock.Advance(15 * time.Second)
	require.Eventually(t, func() bool {
		m, err := h.tel.GetMetric("otelcol_alert_events_evaluations")
		if err != nil {
			return false
		}
		sum, ok := m.Data.(metricdata.Sum[int64])
		return ok && len(sum.DataPoints) == 1 && sum.DataPoints[0].Value == 2
	}, 10*time.Second, 5*time.Millisecond, "a second evaluation on the second tick")
	assert.Equal(t, 1, h.sink.LogRecordCount(), "vector(1) fires once")
}

func TestDerivedRetention(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	cfg.Groups = []map[string]any{{"name": "g", "rules": []any{
		map[string]any{"alert": "A", "expr": "rate(x[10m] offset 5m) > 0"},
		// The subquery's 30m window plus the 1m range of its first step.
		map[string]any{"alert": "B", "expr": "max_over_time(rate(y[1m])[30m:1m]) > 0"},
	}}}
	loaded, err := loadRuleGroups(cfg, discardLogger())
	require.NoError(t, err)
	retention, fixed := derivedRetention(loaded, 5*time.Minute, 15*time.Second)
	assert.Equal(t, 31*time.Minute+15*time.Second, retention)
	assert.Empty(t, fixed)

	for _, tc := range []struct {
		expr  string
		want  time.Duration
		fixed bool
	}{
		{expr: "up == 0", want: 5 * time.Minute},                 // lookback_delta
		{expr: "up offset 10m == 0", want: 15 * time.Minute},     // offset + lookback
		{expr: "up offset -1m == 0", want: 4 * time.Minute},      // a negative offset reads later
		{expr: "rate(x[5m] @ end()) > 0", want: 5 * time.Minute}, // @ end() is the evaluation time
		{expr: "rate(x[5m] @ 1700000000) > 0", want: 5 * time.Minute, fixed: true},
		{expr: "max_over_time(up[10m:1m] offset 2m) > 0", want: 17 * time.Minute}, // subquery + its instant selectors' lookback
		{expr: "vector(1)", want: 0},
	} {
		expr, perr := promqlParser.ParseExpr(tc.expr)
		require.NoError(t, perr)
		got, fixed := exprWindow(expr, 5*time.Minute)
		assert.Equal(t, tc.want, got, tc.expr)
		assert.Equal(t, tc.fixed, fixed, tc.expr)
	}

	// A query_offset shifts its own group only: the 10m window read 2m back
	// beats the 5m window read 4m back, and offsets do not add up.
	cfg.Groups = []map[string]any{
		{"name": "a", "query_offset": "2m", "rules": []any{map[string]any{"alert": "A", "expr": "rate(x[10m]) > 0"}}},
		{"name": "b", "query_offset": "4m", "rules": []any{map[string]any{"alert": "B", "expr": "rate(y[5m]) > 0"}}},
	}
	loaded, err = loadRuleGroups(cfg, discardLogger())
	require.NoError(t, err)
	retention, _ = derivedRetention(loaded, 5*time.Minute, 15*time.Second)
	assert.Equal(t, 12*time.Minute+15*time.Second, retention)
}

func TestShutdownWithoutStart(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	inlineRule(instanceDown)(cfg)
	cfg.Alertmanagers = []AlertmanagerConfig{{Endpoint: "http://127.0.0.1:1"}}
	c, err := newConnector(metadatatest.NewSettings(componenttest.NewTelemetry()), cfg, consumertest.NewNop(), clockwork.NewFakeClockAt(t0))
	require.NoError(t, err)
	require.NoError(t, c.Shutdown(context.Background()))
	require.NoError(t, c.Shutdown(context.Background()))
}

func mustFloat(t *testing.T, s string) float64 {
	t.Helper()
	var f float64
	require.NoError(t, json.Unmarshal([]byte(s), &f))
	require.False(t, math.IsNaN(f))
	return f
}

func attrSet(k, v string) attribute.Set { return attribute.NewSet(attribute.String(k, v)) }

func stateAttrSet(state string) attribute.Set { return attrSet("state", state) }

func metricdatatestIgnore() []metricdatatest.Option {
	return []metricdatatest.Option{metricdatatest.IgnoreTimestamp(), metricdatatest.IgnoreExemplars()}
}

func TestAlertmanagerOverTLS(t *testing.T) {
	got := make(chan struct{}, 10)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/am/api/v2/alerts" {
			got <- struct{}{}
		}
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, pemCert(srv), 0o600))
	h := newHarness(t, func(cfg *Config) {
		inlineRule(map[string]any{"alert": "Now", "expr": "vector(1)"})(cfg)
		cfg.Alertmanagers = []AlertmanagerConfig{{Endpoint: srv.URL + "/am", TLS: TLSConfig{CAFile: ca}}}
	})
	h.eval(t0)
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification over TLS with the configured CA and path prefix")
	}
}

func pemCert(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

func TestRefusedDeltasAreCounted(t *testing.T) {
	h := newHarness(t, inlineRule(instanceDown))
	start := t0.Add(-time.Minute)
	h.push(t0, counter("im.retried", start, 2, pmetric.AggregationTemporalityDelta))
	h.push(t0.Add(15*time.Second), counter("im.retried", t0, 3, pmetric.AggregationTemporalityDelta))
	// Out of order: deltatocumulative refuses a point not newer than the running total.
	h.push(t0.Add(10*time.Second), counter("im.retried", t0, 1, pmetric.AggregationTemporalityDelta))
	metadatatest.AssertEqualAlertEventsStoreDropped(t, h.tel, []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attrSet("reason", "delta")},
	}, metricdatatestIgnore()...)
	got := h.latest(t)
	var lost []float64
	for k, v := range got {
		if strings.Contains(k, `__name__="im_retried_total"`) {
			lost = append(lost, v)
		}
	}
	assert.Equal(t, []float64{5}, lost, "2 + 3, the refused point left out")
}
