package alerteventsconnector

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

var (
	parityStart = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	parityNow   = parityStart.Add(time.Minute)
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
	pts, pstart := pcommon.NewTimestampFromTime(ts), pcommon.NewTimestampFromTime(parityStart)

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
		// The exporter accumulates deltas in place: give it its own copy.
		cp := pmetric.NewMetrics()
		md.CopyTo(cp)
		require.NoError(t, exp.ConsumeMetrics(context.Background(), cp))
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

// storeSeries feeds the batches through the connector's ingestion path
// (ConsumeMetrics: deltatocumulative, Prometheus's OTLP translator, the TSDB
// head) and returns the newest sample of every series, read back through the
// store's querier.
func storeSeries(t *testing.T, tr TranslationConfig, batches ...pmetric.Metrics) series {
	t.Helper()
	h := newHarness(t, func(cfg *Config) {
		inlineRule(instanceDown)(cfg)
		cfg.Translation = tr
	})
	for _, md := range batches {
		require.NoError(t, h.c.ConsumeMetrics(context.Background(), md))
	}
	return h.latest(t)
}

// latest returns the newest sample of every series the store holds.
func (h *harness) latest(t *testing.T) series {
	t.Helper()
	q, err := h.c.store.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), true, nil, labels.MustNewMatcher(labels.MatchRegexp, model.MetricNameLabel, ".+"))
	out := series{}
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			_, v := it.At()
			out[set.At().Labels().String()] = v
		}
		require.NoError(t, it.Err())
	}
	require.NoError(t, set.Err())
	return out
}

// TestParityWithPrometheusExporter feeds the same OTLP data to contrib's
// prometheus exporter and to the connector: the series (names, labels,
// values) the rules can select must be identical to what the exporter serves.
func TestParityWithPrometheusExporter(t *testing.T) {
	batches := []pmetric.Metrics{
		sampleMetrics(parityNow.Add(-30*time.Second), parityStart, 3),
		// The delta continues the previous one: accumulated to 3 + 4.
		sampleMetrics(parityNow, parityNow.Add(-30*time.Second), 4),
	}
	for _, tc := range []struct {
		name string
		raw  map[string]any
		set  TranslationConfig
	}{
		{name: "defaults", raw: map[string]any{}, set: TranslationConfig{AddMetricSuffixes: true}},
		{
			name: "resource to telemetry, no scope info, namespace",
			raw: map[string]any{
				"resource_to_telemetry_conversion": map[string]any{"enabled": true},
				"without_scope_info":               true,
				"namespace":                        "edge",
			},
			set: TranslationConfig{AddMetricSuffixes: true, WithoutScopeInfo: true, ResourceToTelemetryConversion: true, Namespace: "edge"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := scrapeExporter(t, tc.raw, batches...)
			got := storeSeries(t, tc.set, batches...)
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

// formatFloat renders le and quantile values as client_golang's text exposition does.
func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
