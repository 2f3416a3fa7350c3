package sloconnector

import (
	"context"
	"flag"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/pmetrictest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/components/signal"
	"github.com/imcol/imcol/connectors/sloconnector/internal/metadatatest"
	"github.com/imcol/imcol/connectors/sloconnector/sloconfig"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// seedConfig loads the seed SLOs shipped in configs/default.yaml.
func seedConfig(t *testing.T) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "seed.yaml"))
	require.NoError(t, err)
	sub, err := cm.Sub("connectors::slo")
	require.NoError(t, err)
	cfg := createDefaultConfig().(*Config)
	require.NoError(t, sub.Unmarshal(cfg))
	require.NoError(t, confmap.Validate(cfg))
	return cfg
}

// seedTraces: gateway serves 10 requests (1 failed), auth 4 (2 failed); client spans and
// the outcome span are not server spans and do not count.
func seedTraces() ptrace.Traces {
	var specs []spanSpec
	specs = append(specs, repeat(9, spanSpec{service: "gateway", kind: ptrace.SpanKindServer, duration: 20 * time.Millisecond})...)
	specs = append(specs, spanSpec{service: "gateway", kind: ptrace.SpanKindServer, err: true, duration: 5 * time.Millisecond})
	specs = append(specs, repeat(2, spanSpec{service: "auth", kind: ptrace.SpanKindServer, duration: time.Millisecond})...)
	specs = append(specs, repeat(2, spanSpec{service: "auth", kind: ptrace.SpanKindServer, err: true})...)
	specs = append(specs, repeat(3, spanSpec{service: "gateway", kind: ptrace.SpanKindClient, err: true})...)
	specs = append(specs, spanSpec{service: "im-loss", kind: ptrace.SpanKindInternal, name: imsemconv.OutcomeEventName})
	return traces(specs...)
}

// seedLogs: 8 delivered (two slower than 200 ms, one exactly 200 ms), 2 lost, 1 duplicate,
// 1 late, 1 late that retracts a loss, 1 delivered without a latency value.
func seedLogs() []outcomeLog {
	return []outcomeLog{
		{outcome: imsemconv.OutcomeDelivered, latencyMS: int64(12)},
		{outcome: imsemconv.OutcomeDelivered, latencyMS: int64(150)},
		{outcome: imsemconv.OutcomeDelivered, latencyMS: int64(200)},
		{outcome: imsemconv.OutcomeDelivered, latencyMS: 199.5},
		{outcome: imsemconv.OutcomeDelivered, latencyMS: 200.5},
		{outcome: imsemconv.OutcomeDelivered, latencyMS: int64(950)},
		{outcome: imsemconv.OutcomeDelivered, latencyMS: int64(3)},
		{outcome: imsemconv.OutcomeDelivered},
		{outcome: imsemconv.OutcomeLost, reason: imsemconv.ReasonAckTimeout},
		{outcome: imsemconv.OutcomeLost, reason: imsemconv.ReasonSeqGap},
		{outcome: imsemconv.OutcomeDuplicate, latencyMS: int64(10)},
		{outcome: imsemconv.OutcomeLate, latencyMS: int64(40_000)},
		{outcome: imsemconv.OutcomeLate, reason: imsemconv.ReasonAckTimeout, retracted: true},
	}
}

func TestSeedGolden(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		signal  signal.Signal
		consume func(h *harness) error
	}{
		{"traces", signal.Traces, func(h *harness) error { return h.conn.ConsumeTraces(context.Background(), seedTraces()) }},
		{"logs", signal.Logs, func(h *harness) error { return h.conn.ConsumeLogs(context.Background(), outcomeLogs(seedLogs()...)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, seedConfig(t), tc.signal, nopSettings())
			h.at(30 * time.Second)
			require.NoError(t, tc.consume(h))
			h.flushAt(45 * time.Second) // first sight of every series: counters at 0
			h.flushAt(60 * time.Second)
			all := h.sink.AllMetrics()
			file := filepath.Join("testdata", "golden", tc.name+"_expected.yaml")
			if *update {
				require.NoError(t, golden.WriteMetrics(t, file, all[1]))
			}
			expected, err := golden.ReadMetrics(file)
			require.NoError(t, err)
			require.NoError(t, pmetrictest.CompareMetrics(expected, all[1],
				pmetrictest.IgnoreTimestamp(), pmetrictest.IgnoreStartTimestamp(), pmetrictest.IgnoreMetricDataPointsOrder()))
		})
	}
}

// The golden files are checked against hand-computed values here, so they cannot drift.
func TestSeedHandComputed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, seedConfig(t), signal.Traces, nopSettings())
	h.at(30 * time.Second)
	require.NoError(t, h.conn.ConsumeTraces(context.Background(), seedTraces()))
	first := h.flushAt(45 * time.Second)
	second := h.flushAt(60 * time.Second)

	gw := "service.name=gateway,slo_name=im-api-availability"
	auth := "service.name=auth,slo_name=im-api-availability"
	// New series are reported at 0 once, so Prometheus's increase() sees their first events.
	assert.Equal(t, 0.0, first["imcol.slo.events{"+gw+"}"])
	assert.Equal(t, 10.0, second["imcol.slo.events{"+gw+"}"])
	assert.Equal(t, 9.0, second["imcol.slo.good_events{"+gw+"}"])
	assert.Equal(t, 4.0, second["imcol.slo.events{"+auth+"}"])
	assert.Equal(t, 2.0, second["imcol.slo.good_events{"+auth+"}"])
	assert.Equal(t, 0.9995, second["imcol.slo.objective{"+gw+"}"])
	// gateway: error ratio 0.1, budget 0.0005 → burn rate 200, budget remaining 1 - 200.
	assert.InDelta(t, 200, second["imcol.slo.burn_rate{"+gw+",window=1h}"], 1e-9)
	assert.InDelta(t, 200, second["imcol.slo.burn_rate{"+gw+",window=3d}"], 1e-9)
	assert.InDelta(t, -199, second["imcol.slo.error_budget.remaining{"+gw+"}"], 1e-9)
	// auth: 0.5 / 0.0005 = 1000.
	assert.InDelta(t, 1000, second["imcol.slo.burn_rate{"+auth+",window=5m}"], 1e-9)
	// 10 and 4 events are under min_events 200 in every window.
	assert.Equal(t, 1.0, second["imcol.slo.low_traffic{"+gw+",window=6h}"])
	// 2 series × (2 counters + objective + budget + 7 windows × 2 gauges).
	assert.Len(t, second, 2*(4+7*2))

	// The logs instance evaluates only the logs SLOs.
	hl := newHarness(t, seedConfig(t), signal.Logs, nopSettings())
	require.NoError(t, hl.conn.ConsumeLogs(context.Background(), outcomeLogs(seedLogs()...)))
	hl.flushAt(time.Second)
	logs := hl.flushAt(2 * time.Second)
	del := "slo_name=im-message-delivery"
	lat := "slo_name=im-delivery-latency"
	// Delivery: 8 delivered + 2 lost = 10 messages; the retraction takes one loss back, so 9
	// good → burn (0.1 / 0.0001) = 1000.
	assert.Equal(t, 10.0, logs["imcol.slo.events{"+del+"}"])
	assert.Equal(t, 9.0, logs["imcol.slo.good_events{"+del+"}"])
	assert.Equal(t, 1.0, logs["imcol.slo.retracted_events{"+del+"}"])
	assert.InDelta(t, 1000, logs["imcol.slo.burn_rate{"+del+",window=1h}"], 1e-9)
	assert.InDelta(t, -999, logs["imcol.slo.error_budget.remaining{"+del+"}"], 1e-9)
	// Latency: 7 delivered with a value, 5 at or under 200 ms → (2/7) / 0.01.
	assert.Equal(t, 7.0, logs["imcol.slo.events{"+lat+"}"])
	assert.Equal(t, 5.0, logs["imcol.slo.good_events{"+lat+"}"])
	assert.InDelta(t, 2.0/7/0.01, logs["imcol.slo.burn_rate{"+lat+",window=30m}"], 1e-9)
	// Only the delivery SLO has a retracted condition, so only it has a retracted counter.
	assert.NotContains(t, logs, "imcol.slo.retracted_events{"+lat+"}")
	assert.Len(t, logs, 2*(4+7*2)+1)
}

func TestBurnRatesAcrossRollOver(t *testing.T) {
	t.Parallel()
	slo := oneDayWindows(ratioSLO("api", 0.99, "", "status.code == STATUS_CODE_ERROR"))
	slo.MinEvents = 20
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{slo}}, signal.Traces, nopSettings())
	ok := spanSpec{kind: ptrace.SpanKindServer}
	bad := spanSpec{kind: ptrace.SpanKindServer, err: true}
	ctx := context.Background()

	h.at(30 * time.Second) // minute 0: 100 events, 2 bad
	require.NoError(t, h.conn.ConsumeTraces(ctx, traces(append(repeat(98, ok), repeat(2, bad)...)...)))
	h.at(10 * time.Minute) // minute 10: 50 events, 5 bad
	require.NoError(t, h.conn.ConsumeTraces(ctx, traces(append(repeat(45, ok), repeat(5, bad)...)...)))

	m := h.flushAt(12 * time.Minute)
	s := "slo_name=api"
	assert.Equal(t, 0.0, m["imcol.slo.events{"+s+"}"], "the series is reported at 0 first")
	// 5m = minutes 8..12: only minute 10 → 5/50 = 0.1 → burn 10.
	assert.InDelta(t, 10, m["imcol.slo.burn_rate{"+s+",window=5m}"], 1e-9)
	// 30m, 1h and 6h hold all 150 events, 7 bad → 7/150/0.01.
	for _, w := range []string{"30m", "1h", "6h"} {
		assert.InDelta(t, 7.0/150/0.01, m["imcol.slo.burn_rate{"+s+",window="+w+"}"], 1e-9, w)
		assert.Equal(t, 0.0, m["imcol.slo.low_traffic{"+s+",window="+w+"}"], w)
	}
	assert.InDelta(t, 1-7.0/150/0.01, m["imcol.slo.error_budget.remaining{"+s+"}"], 1e-9)

	m = h.flushAt(45 * time.Minute)
	assert.Equal(t, 150.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 143.0, m["imcol.slo.good_events{"+s+"}"])
	// Both events rolled out of 5m and 30m (minutes 16..45): no events, burn 0, low traffic.
	for _, w := range []string{"5m", "30m"} {
		assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window="+w+"}"], w)
		assert.Equal(t, 1.0, m["imcol.slo.low_traffic{"+s+",window="+w+"}"], w)
	}
	assert.InDelta(t, 7.0/150/0.01, m["imcol.slo.burn_rate{"+s+",window=1h}"], 1e-9)

	h.at(61 * time.Minute) // minute 61: 10 good events
	require.NoError(t, h.conn.ConsumeTraces(ctx, traces(repeat(10, ok)...)))
	m = h.flushAt(70 * time.Minute)
	// 1h = minutes 11..70: only the 10 good ones, under min_events 20.
	assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window=1h}"])
	assert.Equal(t, 1.0, m["imcol.slo.low_traffic{"+s+",window=1h}"])
	// 6h (10-minute buckets) and the 1d budget hold 160 events, 7 bad.
	assert.InDelta(t, 7.0/160/0.01, m["imcol.slo.burn_rate{"+s+",window=6h}"], 1e-9)
	assert.InDelta(t, 1-7.0/160/0.01, m["imcol.slo.error_budget.remaining{"+s+"}"], 1e-9)
	assert.Equal(t, 160.0, m["imcol.slo.events{"+s+"}"])

	// A day later the budget is whole again; the cumulative counters are not reset.
	m = h.flushAt(25 * time.Hour)
	assert.Equal(t, 1.0, m["imcol.slo.error_budget.remaining{"+s+"}"])
	assert.Equal(t, 160.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 153.0, m["imcol.slo.good_events{"+s+"}"])
}

func TestZeroTraffic(t *testing.T) {
	t.Parallel()
	h := newHarness(t, seedConfig(t), signal.Logs, nopSettings())
	m := h.flushAt(15 * time.Second)
	assert.Equal(t, 0.0, m["imcol.slo.retracted_events{slo_name=im-message-delivery}"])
	for _, slo := range []string{"im-message-delivery", "im-delivery-latency"} {
		s := "slo_name=" + slo
		assert.Equal(t, 0.0, m["imcol.slo.events{"+s+"}"])
		assert.Equal(t, 0.0, m["imcol.slo.good_events{"+s+"}"])
		assert.Equal(t, 1.0, m["imcol.slo.error_budget.remaining{"+s+"}"])
		for _, w := range []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d"} {
			assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window="+w+"}"])
			assert.Equal(t, 1.0, m["imcol.slo.low_traffic{"+s+",window="+w+"}"])
		}
	}
	assert.Len(t, m, 2*(4+7*2)+1)
	// The traces SLO has a dimension, so without traffic it has no series at all.
	ht := newHarness(t, seedConfig(t), signal.Traces, nopSettings())
	assert.Empty(t, ht.flushAt(15*time.Second))
}

func TestLowTrafficGate(t *testing.T) {
	t.Parallel()
	slo := oneDayWindows(ratioSLO("api", 0.9, "", "status.code == STATUS_CODE_ERROR"))
	slo.MinEvents = 3
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{slo}}, signal.Traces, nopSettings())
	require.NoError(t, h.conn.ConsumeTraces(context.Background(), traces(spanSpec{err: true}, spanSpec{})))
	m := h.flushAt(time.Second)
	// 2 events < 3: the burn rate is still reported, and flagged.
	assert.InDelta(t, 5, m["imcol.slo.burn_rate{slo_name=api,window=1h}"], 1e-9)
	assert.Equal(t, 1.0, m["imcol.slo.low_traffic{slo_name=api,window=1h}"])
	require.NoError(t, h.conn.ConsumeTraces(context.Background(), traces(spanSpec{})))
	m = h.flushAt(2 * time.Second)
	assert.InDelta(t, 1.0/3/0.1, m["imcol.slo.burn_rate{slo_name=api,window=1h}"], 1e-9)
	assert.Equal(t, 0.0, m["imcol.slo.low_traffic{slo_name=api,window=1h}"])
}

func TestCardinalityOverflow(t *testing.T) {
	t.Parallel()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	slo := oneDayWindows(ratioSLO("api", 0.99, "", "status.code == STATUS_CODE_ERROR"))
	slo.Dimensions = []string{"service.name"}
	slo.MaxSeries = 2
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{slo}}, signal.Traces, metadatatest.NewSettings(tt))
	var specs []spanSpec
	for _, svc := range []string{"a", "b", "c", "d", "e"} {
		specs = append(specs, spanSpec{service: svc}, spanSpec{service: svc, err: true})
	}
	require.NoError(t, h.conn.ConsumeTraces(context.Background(), traces(specs...)))
	h.flushAt(time.Second)
	m := h.flushAt(2 * time.Second)
	assert.Equal(t, 2.0, m["imcol.slo.events{service.name=a,slo_name=api}"])
	assert.Equal(t, 2.0, m["imcol.slo.events{service.name=b,slo_name=api}"])
	assert.Equal(t, 6.0, m["imcol.slo.events{otel.metric.overflow=true,slo_name=api}"])
	assert.Equal(t, 3.0, m["imcol.slo.good_events{otel.metric.overflow=true,slo_name=api}"])
	assert.Len(t, m, 3*(4+4*2))

	metadatatest.AssertEqualConnectorSloSeriesDropped(t, tt, []metricdata.DataPoint[int64]{{Value: 6}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorSloSeries(t, tt, []metricdata.DataPoint[int64]{{Value: 3}}, metricdatatest.IgnoreTimestamp())

	// Once their SLO window passes without events, series are forgotten and slots free up.
	h.at(25 * time.Hour)
	require.NoError(t, h.conn.ConsumeTraces(context.Background(), traces(spanSpec{service: "f"})))
	m = h.flushAt(25*time.Hour + time.Second)
	assert.Len(t, m, 1*(4+4*2))
	assert.Equal(t, 0.0, m["imcol.slo.events{service.name=f,slo_name=api}"])
	metadatatest.AssertEqualConnectorSloSeries(t, tt, []metricdata.DataPoint[int64]{{Value: 1}}, metricdatatest.IgnoreTimestamp())
}

func TestSkippedEvents(t *testing.T) {
	t.Parallel()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	lat := sloconfig.SLOConfig{Name: "lat", Signal: signal.Logs, Objective: 0.99, SLI: sloconfig.SLIConfig{Latency: &sloconfig.LatencySLIConfig{
		Attribute: imsemconv.AttrDeliveryLatency, Threshold: sloconfig.Duration(200 * time.Millisecond),
	}}}
	// Len() fails on an int attribute: an evaluation error, not a crash and not a count.
	cond := sloconfig.SLOConfig{Name: "cond", Signal: signal.Logs, Objective: 0.99, SLI: sloconfig.SLIConfig{Ratio: &sloconfig.RatioSLIConfig{
		Bad: `Len(attributes["im.delivery.latency_ms"]) > 3`,
	}}}
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{lat, cond}}, signal.Logs, metadatatest.NewSettings(tt))
	require.NoError(t, h.conn.ConsumeLogs(context.Background(), outcomeLogs(
		outcomeLog{outcome: imsemconv.OutcomeDelivered, latencyMS: int64(100)},
		outcomeLog{outcome: imsemconv.OutcomeDelivered, latencyMS: "100"},
		outcomeLog{outcome: imsemconv.OutcomeDelivered, latencyMS: math.NaN()},
		outcomeLog{outcome: imsemconv.OutcomeDelivered, latencyMS: int64(-5)},
		outcomeLog{outcome: imsemconv.OutcomeDelivered, latencyMS: math.Inf(1)},
	)))
	h.flushAt(time.Second)
	m := h.flushAt(2 * time.Second)
	// lat: 100 ms good, +Inf bad; the string, NaN, negative and absent (the trailing
	// non-outcome record) values are skipped.
	assert.Equal(t, 2.0, m["imcol.slo.events{slo_name=lat}"])
	assert.Equal(t, 1.0, m["imcol.slo.good_events{slo_name=lat}"])
	// cond: Len of the string "100" works (→ good); on numbers and on the absent attribute
	// it fails.
	assert.Equal(t, 1.0, m["imcol.slo.events{slo_name=cond}"])
	assert.Equal(t, 1.0, m["imcol.slo.good_events{slo_name=cond}"])
	metadatatest.AssertEqualConnectorSloEventsSkipped(t, tt, []metricdata.DataPoint[int64]{
		{Value: 4, Attributes: attribute.NewSet(attribute.String("reason", "no_latency_value"))},
		{Value: 5, Attributes: attribute.NewSet(attribute.String("reason", "condition_error"))},
	}, metricdatatest.IgnoreTimestamp())
}

func TestSpanLatencySLI(t *testing.T) {
	t.Parallel()
	slo := oneDayWindows(sloconfig.SLOConfig{Name: "lat", Objective: 0.9, SLI: sloconfig.SLIConfig{Latency: &sloconfig.LatencySLIConfig{
		Total: "kind == SPAN_KIND_SERVER", Threshold: sloconfig.Duration(100 * time.Millisecond),
	}}})
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{slo}}, signal.Traces, nopSettings())
	require.NoError(t, h.conn.ConsumeTraces(context.Background(), traces(
		spanSpec{kind: ptrace.SpanKindServer, duration: 100 * time.Millisecond},
		spanSpec{kind: ptrace.SpanKindServer, duration: 100*time.Millisecond + 1},
		spanSpec{kind: ptrace.SpanKindServer, duration: time.Millisecond},
		spanSpec{kind: ptrace.SpanKindClient, duration: time.Hour},
	)))
	h.flushAt(time.Second)
	m := h.flushAt(2 * time.Second)
	assert.Equal(t, 3.0, m["imcol.slo.events{slo_name=lat}"])
	assert.Equal(t, 2.0, m["imcol.slo.good_events{slo_name=lat}"])
}

func TestFlushOnTickAndShutdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, seedConfig(t), signal.Logs, nopSettings())
	require.NoError(t, h.conn.Start(context.Background(), nopHost()))
	require.NoError(t, h.clock.BlockUntilContext(context.Background(), 1))
	require.NoError(t, h.conn.ConsumeLogs(context.Background(), outcomeLogs(seedLogs()...)))
	h.clock.Advance(15 * time.Second)
	require.Eventually(t, func() bool { return len(h.sink.AllMetrics()) == 1 }, 10*time.Second, time.Millisecond)
	// Shutdown flushes once more, and is safe twice.
	require.NoError(t, h.conn.Shutdown(context.Background()))
	require.NoError(t, h.conn.Shutdown(context.Background()))
	all := h.sink.AllMetrics()
	require.Len(t, all, 2)
	assert.Equal(t, 10.0, values(all[1])["imcol.slo.events{slo_name=im-message-delivery}"])
}

func TestShutdownWithoutStart(t *testing.T) {
	t.Parallel()
	h := newHarness(t, seedConfig(t), signal.Traces, nopSettings())
	require.NoError(t, h.conn.Shutdown(context.Background()))
	assert.Empty(t, h.sink.AllMetrics())
}

func TestNoSLOsForSignal(t *testing.T) {
	t.Parallel()
	cfg := &Config{FlushInterval: time.Second, SLOs: []sloconfig.SLOConfig{ratioSLO("api", 0.99, "", "false")}}
	h := newHarness(t, cfg, signal.Logs, nopSettings())
	h.start(nopHost())
	require.NoError(t, h.conn.ConsumeLogs(context.Background(), outcomeLogs(seedLogs()...)))
	assert.Empty(t, h.sink.AllMetrics())
}

func TestStorageExtensionErrors(t *testing.T) {
	t.Parallel()
	cfg := seedConfig(t)
	id := component.MustNewID("file_storage")
	cfg.Storage = &id
	h := newHarness(t, cfg, signal.Logs, nopSettings())
	assert.EqualError(t, h.conn.Start(context.Background(), nopHost()), `storage: extension "file_storage" not found`)
	notStorage := struct {
		component.StartFunc
		component.ShutdownFunc
	}{}
	host := extHost{Host: nopHost(), ext: map[component.ID]component.Component{id: notStorage}}
	assert.EqualError(t, h.conn.Start(context.Background(), host), `storage: extension "file_storage" is not a storage extension`)
}

// TestOutcomeSpans covers im_loss outcomes emitted as spans, as the README describes: the
// span's duration is the send → last-ack latency.
func TestOutcomeSpans(t *testing.T) {
	t.Parallel()
	isOutcome := `name == "im.message.outcome"`
	delivery := oneDayWindows(sloconfig.SLOConfig{Name: "delivery", Objective: 0.9999, SLI: sloconfig.SLIConfig{Ratio: &sloconfig.RatioSLIConfig{
		Total: isOutcome + ` and (attributes["im.outcome"] == "delivered" or attributes["im.outcome"] == "lost")`,
		Good:  `attributes["im.outcome"] == "delivered"`,
	}}})
	latency := oneDayWindows(sloconfig.SLOConfig{Name: "latency", Objective: 0.99, SLI: sloconfig.SLIConfig{Latency: &sloconfig.LatencySLIConfig{
		Total: isOutcome + ` and attributes["im.outcome"] == "delivered"`, Threshold: sloconfig.Duration(200 * time.Millisecond),
	}}})
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{delivery, latency}}, signal.Traces, nopSettings())
	outcome := func(o imsemconv.Outcome, d time.Duration) spanSpec {
		return spanSpec{name: imsemconv.OutcomeEventName, kind: ptrace.SpanKindInternal, duration: d,
			err: o == imsemconv.OutcomeLost, attrs: map[string]any{imsemconv.AttrOutcome: string(o)}}
	}
	require.NoError(t, h.conn.ConsumeTraces(context.Background(), traces(
		outcome(imsemconv.OutcomeDelivered, 50*time.Millisecond),
		outcome(imsemconv.OutcomeDelivered, 250*time.Millisecond),
		outcome(imsemconv.OutcomeDelivered, 200*time.Millisecond),
		outcome(imsemconv.OutcomeLost, 30*time.Second),
		outcome(imsemconv.OutcomeDuplicate, time.Millisecond),
		spanSpec{name: "SendMessage", kind: ptrace.SpanKindServer, attrs: map[string]any{imsemconv.AttrOutcome: "delivered"}},
	)))
	h.flushAt(time.Second)
	m := h.flushAt(2 * time.Second)
	assert.Equal(t, 4.0, m["imcol.slo.events{slo_name=delivery}"])
	assert.Equal(t, 3.0, m["imcol.slo.good_events{slo_name=delivery}"])
	assert.Equal(t, 3.0, m["imcol.slo.events{slo_name=latency}"])
	assert.Equal(t, 2.0, m["imcol.slo.good_events{slo_name=latency}"])
}

func TestDimensions(t *testing.T) {
	t.Parallel()
	slo := oneDayWindows(ratioSLO("api", 0.99, "", "status.code == STATUS_CODE_ERROR"))
	slo.Dimensions = []string{"service.name", "tenant"}
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{slo}}, signal.Traces, nopSettings())
	long := strings.Repeat("x", 255) + "é" // the 2-byte rune straddles the 256-byte cut
	require.NoError(t, h.conn.ConsumeTraces(context.Background(), traces(
		spanSpec{service: "gw"}, // no tenant: left out
		spanSpec{service: "gw", attrs: map[string]any{"tenant": ""}}, // empty tenant: its own series
		spanSpec{service: "gw", attrs: map[string]any{"tenant": int64(7)}},
		spanSpec{service: "gw", attrs: map[string]any{"service.name": "override", "tenant": long}},
	)))
	h.flushAt(time.Second)
	m := h.flushAt(2 * time.Second)
	assert.Equal(t, 1.0, m["imcol.slo.events{service.name=gw,slo_name=api}"])
	assert.Equal(t, 1.0, m["imcol.slo.events{service.name=gw,slo_name=api,tenant=}"])
	assert.Equal(t, 1.0, m["imcol.slo.events{service.name=gw,slo_name=api,tenant=7}"])
	assert.Equal(t, 1.0, m["imcol.slo.events{service.name=override,slo_name=api,tenant="+strings.Repeat("x", 255)+"}"])
	assert.Len(t, m, 4*(4+4*2))
}

// deliverySLO is the seed delivery SLO over a 1-day window, with or without its retracted
// condition.
func deliverySLO(retracted bool) sloconfig.SLOConfig {
	r := &sloconfig.RatioSLIConfig{
		Total: `event_name == "im.message.outcome" and (attributes["im.outcome"] == "delivered" or attributes["im.outcome"] == "lost")`,
		Good:  `attributes["im.outcome"] == "delivered"`,
	}
	if retracted {
		r.Retracted = `attributes["im.outcome"] == "late" and attributes["im.loss.retracted"] == true`
	}
	return oneDayWindows(sloconfig.SLOConfig{Name: "delivery", Signal: signal.Logs, Objective: 0.99, SLI: sloconfig.SLIConfig{Ratio: r}})
}

func delivered(n int) []outcomeLog {
	return slices.Repeat([]outcomeLog{{outcome: imsemconv.OutcomeDelivered}}, n)
}

var (
	lostRecord      = outcomeLog{outcome: imsemconv.OutcomeLost, reason: imsemconv.ReasonAckTimeout}
	retractionLog   = outcomeLog{outcome: imsemconv.OutcomeLate, reason: imsemconv.ReasonAckTimeout, retracted: true}
	plainLateRecord = outcomeLog{outcome: imsemconv.OutcomeLate, reason: imsemconv.ReasonAckTimeout}
)

func TestRetractionInTheSameWindow(t *testing.T) {
	t.Parallel()
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{deliverySLO(true)}}, signal.Logs, nopSettings())
	ctx := context.Background()
	h.at(30 * time.Second)
	require.NoError(t, h.conn.ConsumeLogs(ctx, outcomeLogs(append(delivered(9), lostRecord)...)))
	m := h.flushAt(time.Minute)
	s := "slo_name=delivery"
	assert.InDelta(t, 0.1/0.01, m["imcol.slo.burn_rate{"+s+",window=5m}"], 1e-9, "the loss burns before it is retracted")

	// The first late record of the message is not a retraction; the second one is.
	h.at(90 * time.Second)
	require.NoError(t, h.conn.ConsumeLogs(ctx, outcomeLogs(plainLateRecord, retractionLog)))
	h.flushAt(2 * time.Minute) // the series was reported at 0 the first time
	m = h.flushAt(3 * time.Minute)
	assert.Equal(t, 10.0, m["imcol.slo.events{"+s+"}"], "a retraction is not an event")
	assert.Equal(t, 10.0, m["imcol.slo.good_events{"+s+"}"], "good == total once the loss is retracted")
	assert.Equal(t, 1.0, m["imcol.slo.retracted_events{"+s+"}"])
	for _, w := range []string{"5m", "30m", "1h", "6h"} {
		assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window="+w+"}"], w)
	}
	assert.Equal(t, 1.0, m["imcol.slo.error_budget.remaining{"+s+"}"])
}

// A window can hold a retraction but not the loss it corrects: its good events are clamped
// to its total, so burn rates never go negative and the budget never exceeds 1.
func TestRetractionInALaterWindowIsClamped(t *testing.T) {
	t.Parallel()
	slo := deliverySLO(true)
	slo.MinEvents = 1
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{slo}}, signal.Logs, nopSettings())
	ctx := context.Background()
	s := "slo_name=delivery"

	h.at(30 * time.Second) // minute 0: 9 delivered, 1 lost
	require.NoError(t, h.conn.ConsumeLogs(ctx, outcomeLogs(append(delivered(9), lostRecord)...)))
	h.at(10 * time.Minute) // minute 10: the retraction and 4 delivered
	require.NoError(t, h.conn.ConsumeLogs(ctx, outcomeLogs(append(delivered(4), retractionLog)...)))
	h.flushAt(11 * time.Minute)
	m := h.flushAt(12 * time.Minute)
	assert.Equal(t, 14.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 14.0, m["imcol.slo.good_events{"+s+"}"])
	assert.Equal(t, 1.0, m["imcol.slo.retracted_events{"+s+"}"])
	// 5m = minutes 8..12: 4 events and 5 good ones, clamped to 4 → 0, not -0.25/0.01.
	assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window=5m}"])
	// 30m and longer hold the loss and its retraction.
	for _, w := range []string{"30m", "1h", "6h"} {
		assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window="+w+"}"], w)
	}
	assert.Equal(t, 1.0, m["imcol.slo.error_budget.remaining{"+s+"}"])

	// A window holding only a retraction has no events: burn 0, and flagged low-traffic.
	h.at(20 * time.Minute)
	require.NoError(t, h.conn.ConsumeLogs(ctx, outcomeLogs(retractionLog)))
	m = h.flushAt(21 * time.Minute)
	assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window=5m}"])
	assert.Equal(t, 1.0, m["imcol.slo.low_traffic{"+s+",window=5m}"])
	// A retraction whose loss was never counted (say, before a restart without storage) can
	// lift the cumulative good events above the total, but no ratio: the budget stays 1.
	assert.Equal(t, 14.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 15.0, m["imcol.slo.good_events{"+s+"}"])
	assert.Equal(t, 2.0, m["imcol.slo.retracted_events{"+s+"}"])
	assert.Equal(t, 1.0, m["imcol.slo.error_budget.remaining{"+s+"}"])

	// A retraction in a window with a new loss offsets it: 1 lost + 1 delivered + 1 retraction.
	h.at(40 * time.Minute)
	require.NoError(t, h.conn.ConsumeLogs(ctx, outcomeLogs(append(delivered(1), lostRecord, retractionLog)...)))
	m = h.flushAt(41 * time.Minute)
	assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window=5m}"])
	for name, v := range m {
		if strings.HasPrefix(name, "imcol.slo.burn_rate") {
			assert.GreaterOrEqual(t, v, 0.0, name)
		}
	}
}

func TestRetractionWithoutTheConditionIsIgnored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{deliverySLO(false)}}, signal.Logs, nopSettings())
	require.NoError(t, h.conn.ConsumeLogs(context.Background(), outcomeLogs(append(delivered(9), lostRecord, retractionLog)...)))
	h.flushAt(time.Second)
	m := h.flushAt(2 * time.Second)
	s := "slo_name=delivery"
	assert.Equal(t, 10.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 9.0, m["imcol.slo.good_events{"+s+"}"])
	assert.InDelta(t, 0.1/0.01, m["imcol.slo.burn_rate{"+s+",window=1h}"], 1e-9)
	// No retracted condition, no retracted counter.
	assert.NotContains(t, m, "imcol.slo.retracted_events{"+s+"}")
	assert.Len(t, m, 4+4*2)
}

// TestRetractionOfOutcomeSpans: im_loss sets im.loss.retracted on the late span too.
func TestRetractionOfOutcomeSpans(t *testing.T) {
	t.Parallel()
	isOutcome := `name == "im.message.outcome"`
	delivery := oneDayWindows(sloconfig.SLOConfig{Name: "delivery", Objective: 0.9999, Dimensions: []string{"service.name"},
		SLI: sloconfig.SLIConfig{Ratio: &sloconfig.RatioSLIConfig{
			Total:     isOutcome + ` and (attributes["im.outcome"] == "delivered" or attributes["im.outcome"] == "lost")`,
			Good:      `attributes["im.outcome"] == "delivered"`,
			Retracted: `attributes["im.outcome"] == "late" and attributes["im.loss.retracted"] == true`,
		}}})
	h := newHarness(t, &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{delivery}}, signal.Traces, nopSettings())
	outcome := func(o imsemconv.Outcome, retracted bool) spanSpec {
		attrs := map[string]any{imsemconv.AttrOutcome: string(o)}
		if retracted {
			attrs[imsemconv.AttrLossRetracted] = true
		}
		return spanSpec{service: "im-loss", name: imsemconv.OutcomeEventName, kind: ptrace.SpanKindInternal, attrs: attrs}
	}
	require.NoError(t, h.conn.ConsumeTraces(context.Background(), traces(
		outcome(imsemconv.OutcomeDelivered, false),
		outcome(imsemconv.OutcomeLost, false),
		outcome(imsemconv.OutcomeLost, false),
		outcome(imsemconv.OutcomeLate, false),
		outcome(imsemconv.OutcomeLate, true),
	)))
	h.flushAt(time.Second)
	m := h.flushAt(2 * time.Second)
	s := "service.name=im-loss,slo_name=delivery"
	assert.Equal(t, 3.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 2.0, m["imcol.slo.good_events{"+s+"}"])
	assert.Equal(t, 1.0, m["imcol.slo.retracted_events{"+s+"}"])
}
