package otlpconv

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

var (
	start = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	now   = start.Add(time.Minute)
)

// sampleMetrics covers every metric type and the naming corner cases:
// dotted names and attributes, units, an existing _total suffix, invalid
// characters, scope attributes and a delta counter.
func sampleMetrics(ts time.Time, deltaStart time.Time, deltaValue float64) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "msggateway")
	rm.Resource().Attributes().PutStr("service.namespace", "openim")
	rm.Resource().Attributes().PutStr("service.instance.id", "10.0.0.1:10001")
	rm.Resource().Attributes().PutStr("host.name", "im-1")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.SetSchemaUrl("https://opentelemetry.io/schemas/1.26.0")
	sm.Scope().SetName("github.com/openim/gateway")
	sm.Scope().SetVersion("v3.8.0")
	sm.Scope().Attributes().PutStr("team", "im")
	pts, pstart := pcommon.NewTimestampFromTime(ts), pcommon.NewTimestampFromTime(start)

	add := func(name, unit string) pmetric.Metric {
		m := sm.Metrics().AppendEmpty()
		m.SetName(name)
		m.SetUnit(unit)
		return m
	}
	g := add("im.gateway.connections", "{connection}").SetEmptyGauge().DataPoints().AppendEmpty()
	g.SetTimestamp(pts)
	g.SetIntValue(42)
	g.Attributes().PutStr("network.protocol.name", "websocket")

	r := add("im.cache.hit_ratio", "1").SetEmptyGauge().DataPoints().AppendEmpty()
	r.SetTimestamp(pts)
	r.SetDoubleValue(0.93)

	cs := add("im.messages.sent", "{message}").SetEmptySum()
	cs.SetIsMonotonic(true)
	cs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	c := cs.DataPoints().AppendEmpty()
	c.SetStartTimestamp(pstart)
	c.SetTimestamp(pts)
	c.SetIntValue(1234)
	c.Attributes().PutStr("im.conversation.type", "group")

	ts2 := add("process.cpu.time", "s").SetEmptySum()
	ts2.SetIsMonotonic(true)
	ts2.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	c2 := ts2.DataPoints().AppendEmpty()
	c2.SetStartTimestamp(pstart)
	c2.SetTimestamp(pts)
	c2.SetDoubleValue(12.5)

	tot := add("http_count_total", "").SetEmptySum()
	tot.SetIsMonotonic(true)
	tot.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	c3 := tot.DataPoints().AppendEmpty()
	c3.SetStartTimestamp(pstart)
	c3.SetTimestamp(pts)
	c3.SetDoubleValue(7)
	c3.Attributes().PutStr("status", "429")

	ud := add("system.memory.usage", "By").SetEmptySum()
	ud.SetIsMonotonic(false)
	ud.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	u := ud.DataPoints().AppendEmpty()
	u.SetStartTimestamp(pstart)
	u.SetTimestamp(pts)
	u.SetIntValue(1 << 30)
	u.Attributes().PutStr("state", "used")

	bad := add("odd-name/with spaces", "ms").SetEmptyGauge().DataPoints().AppendEmpty()
	bad.SetTimestamp(pts)
	bad.SetDoubleValue(1)
	bad.Attributes().PutStr("0weird-key", "v")

	hs := add("im.delivery.latency", "ms").SetEmptyHistogram()
	hs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	h := hs.DataPoints().AppendEmpty()
	h.SetStartTimestamp(pstart)
	h.SetTimestamp(pts)
	h.ExplicitBounds().FromRaw([]float64{10, 50, 200, 1000})
	h.BucketCounts().FromRaw([]uint64{5, 10, 3, 1, 1})
	h.SetCount(20)
	h.SetSum(2500)

	ss := add("rpc.server.duration", "s").SetEmptySummary().DataPoints().AppendEmpty()
	ss.SetStartTimestamp(pstart)
	ss.SetTimestamp(pts)
	ss.SetCount(10)
	ss.SetSum(3.5)
	q := ss.QuantileValues().AppendEmpty()
	q.SetQuantile(0.5)
	q.SetValue(0.2)
	q = ss.QuantileValues().AppendEmpty()
	q.SetQuantile(0.99)
	q.SetValue(1.5)

	ds := add("im.messages.lost", "{message}").SetEmptySum()
	ds.SetIsMonotonic(true)
	ds.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	d := ds.DataPoints().AppendEmpty()
	d.SetStartTimestamp(pcommon.NewTimestampFromTime(deltaStart))
	d.SetTimestamp(pts)
	d.SetDoubleValue(deltaValue)
	return md
}

type series map[string]float64 // labels.String() → value

func scrapeExporter(t *testing.T, rawCfg map[string]any, batches ...pmetric.Metrics) series {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	endpoint := l.Addr().String()
	require.NoError(t, l.Close())

	f := prometheusexporter.NewFactory()
	cfg := f.CreateDefaultConfig()
	rawCfg["endpoint"] = endpoint
	require.NoError(t, confmap.NewFromStringMap(rawCfg).Unmarshal(cfg))
	exp, err := f.CreateMetrics(context.Background(), exportertest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(context.Background(), componenttest.NewNopHost()))
	defer func() { require.NoError(t, exp.Shutdown(context.Background())) }()
	for _, md := range batches {
		require.NoError(t, exp.ConsumeMetrics(context.Background(), md))
	}
	resp, err := http.Get("http://" + endpoint + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err)

	out := series{}
	for name, mf := range families {
		if strings.HasSuffix(name, "target_info") {
			continue // resource attributes as an info metric: not what rules select
		}
		for _, m := range mf.GetMetric() {
			base := labels.NewBuilder(labels.EmptyLabels())
			for _, lp := range m.GetLabel() {
				base.Set(lp.GetName(), lp.GetValue())
			}
			put := func(n string, v float64, extra ...string) {
				b := labels.NewBuilder(base.Labels())
				b.Set(model.MetricNameLabel, n)
				for i := 0; i < len(extra); i += 2 {
					b.Set(extra[i], extra[i+1])
				}
				out[b.Labels().String()] = v
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				put(name, m.GetCounter().GetValue())
			case dto.MetricType_GAUGE:
				put(name, m.GetGauge().GetValue())
			case dto.MetricType_UNTYPED:
				put(name, m.GetUntyped().GetValue())
			case dto.MetricType_HISTOGRAM:
				hh := m.GetHistogram()
				put(name+"_count", float64(hh.GetSampleCount()))
				put(name+"_sum", hh.GetSampleSum())
				for _, b := range hh.GetBucket() {
					put(name+"_bucket", float64(b.GetCumulativeCount()), "le", formatFloat(b.GetUpperBound()))
				}
				put(name+"_bucket", float64(hh.GetSampleCount()), "le", "+Inf")
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				put(name+"_count", float64(s.GetSampleCount()))
				put(name+"_sum", s.GetSampleSum())
				for _, qv := range s.GetQuantile() {
					put(name, qv.GetValue(), "quantile", formatFloat(qv.GetQuantile()))
				}
			default:
				t.Fatalf("unexpected family type %s", mf.GetType())
			}
		}
	}
	return out
}

func convert(set Settings, batches ...pmetric.Metrics) series {
	c := New(set)
	out := series{}
	for _, md := range batches {
		c.Convert(md, now.UnixMilli(), func(lset labels.Labels, _, _ int64, v float64) {
			out[lset.String()] = v
		})
	}
	return out
}

// TestParityWithPrometheusExporter feeds the same OTLP data to contrib's
// prometheus exporter and to the converter: the series (names, labels,
// values) must be identical.
func TestParityWithPrometheusExporter(t *testing.T) {
	batches := []pmetric.Metrics{
		sampleMetrics(now.Add(-30*time.Second), start, 3),
		// The delta continues the previous one: accumulated to 3 + 4.
		sampleMetrics(now, now.Add(-30*time.Second), 4),
	}
	for _, tc := range []struct {
		name string
		raw  map[string]any
		set  Settings
	}{
		{name: "defaults", raw: map[string]any{}, set: Settings{AddMetricSuffixes: true, MaxDeltaSeries: 10}},
		{
			name: "resource to telemetry, no scope info, namespace",
			raw: map[string]any{
				"resource_to_telemetry_conversion": map[string]any{"enabled": true},
				"without_scope_info":               true,
				"namespace":                        "edge",
			},
			set: Settings{AddMetricSuffixes: true, WithoutScopeInfo: true, ResourceToTelemetryConversion: true, Namespace: "edge", MaxDeltaSeries: 10},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := scrapeExporter(t, tc.raw, batches...)
			got := convert(tc.set, batches...)
			assert.Equal(t, sortedKeys(want), sortedKeys(got))
			for k, v := range want {
				assert.InDelta(t, v, got[k], 1e-9, k)
			}
			// A few names the rules depend on, spelled out.
			for _, name := range []string{"http_count_total", "im_messages_sent_total", "process_cpu_time_seconds_total",
				"system_memory_usage_bytes", "im_cache_hit_ratio", "im_delivery_latency_milliseconds_bucket", "im_messages_lost_total"} {
				assert.Contains(t, firstKeyWith(got, `__name__="`+tc.set.Namespace+map[bool]string{true: "_", false: ""}[tc.set.Namespace != ""]+name+`"`), name)
			}
			assert.InDelta(t, 7, got[firstKeyWith(got, "im_messages_lost_total")], 1e-9, "delta accumulated")
		})
	}
}

func firstKeyWith(s series, substr string) string {
	for _, k := range sortedKeys(s) {
		if strings.Contains(k, substr) {
			return k
		}
	}
	return fmt.Sprintf("no series with %q", substr)
}

func sortedKeys(s series) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestStaleAndUnsupported(t *testing.T) {
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	g := sm.Metrics().AppendEmpty()
	g.SetName("up")
	dp := g.SetEmptyGauge().DataPoints().AppendEmpty()
	dp.SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))
	eh := sm.Metrics().AppendEmpty()
	eh.SetName("latency")
	eh.SetEmptyExponentialHistogram().DataPoints().AppendEmpty()
	nd := sm.Metrics().AppendEmpty()
	nd.SetName("queue")
	s := nd.SetEmptySum()
	s.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	s.DataPoints().AppendEmpty()

	var got []float64
	res := New(Settings{AddMetricSuffixes: true, MaxDeltaSeries: 1}).Convert(md, now.UnixMilli(), func(_ labels.Labels, _, tms int64, v float64) {
		assert.Equal(t, now.UnixMilli(), tms, "points without a timestamp are stamped on arrival")
		got = append(got, v)
	})
	require.Len(t, got, 1)
	assert.True(t, math.IsNaN(got[0]))
	assert.Equal(t, int64(2), res.Unsupported)
}

func TestHostileInputNeverPanics(t *testing.T) {
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	add := func(name string) pmetric.Metric {
		m := sm.Metrics().AppendEmpty()
		m.SetName(name)
		return m
	}
	add("") // no name, no data
	g := add("nan.gauge").SetEmptyGauge().DataPoints().AppendEmpty()
	g.SetDoubleValue(math.NaN())
	g.Attributes().PutStr("a.b", "1")
	g.Attributes().PutStr("a_b", "2") // collides with a.b once translated
	inf := add("inf.gauge").SetEmptyGauge().DataPoints().AppendEmpty()
	inf.SetDoubleValue(math.Inf(-1))
	inf.Attributes().PutEmptyMap("nested").PutStr("k", "v")
	for _, counts := range [][]uint64{nil, {1}, {1, 2, 3, 4, 5, 6, 7}} {
		h := add("odd.histogram").SetEmptyHistogram()
		h.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
		dp := h.DataPoints().AppendEmpty()
		dp.ExplicitBounds().FromRaw([]float64{5, 1, 5, math.Inf(1)})
		dp.BucketCounts().FromRaw(counts)
		dp.SetCount(3)
	}
	s := add("empty.summary").SetEmptySummary().DataPoints().AppendEmpty()
	s.QuantileValues().AppendEmpty().SetQuantile(math.NaN())

	c := New(Settings{AddMetricSuffixes: true, MaxDeltaSeries: 2})
	var n int
	res := c.Convert(md, now.UnixMilli(), func(lset labels.Labels, _, _ int64, _ float64) {
		n++
		assert.NotEmpty(t, lset.Get(model.MetricNameLabel))
	})
	assert.Positive(t, n)
	assert.Equal(t, int64(1), res.Invalid, "the gauge whose attributes collide as labels is refused and counted")
}
