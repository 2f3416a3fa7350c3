// Package otlpconv turns OTLP metrics into Prometheus samples named exactly
// as the contrib prometheus exporter (v0.157.0) exposes them: the same
// otlptranslator namers and settings, job/instance from the resource,
// otel_scope_* labels, classic histogram and summary series, and deltas
// accumulated into cumulative values.
package otlpconv // import "github.com/imcol/imcol/connectors/alerteventsconnector/internal/otlpconv"

import (
	"math"
	"slices"
	"strconv"

	prometheustranslator "github.com/open-telemetry/opentelemetry-collector-contrib/pkg/translator/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/otlptranslator"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	prom "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	conventions "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// Settings mirror the prometheus exporter's naming options.
type Settings struct {
	Namespace                     string
	AddMetricSuffixes             bool
	WithoutScopeInfo              bool
	ResourceToTelemetryConversion bool
	// MaxDeltaSeries bounds the running totals kept for delta temporality.
	MaxDeltaSeries int
}

// Appender receives converted samples; st is the start time (ms) of a
// cumulative series, 0 for gauges.
type Appender func(lset labels.Labels, st, t int64, v float64)

// Result counts what a conversion could not use.
type Result struct {
	// Unsupported: exponential histograms, non-monotonic deltas, unspecified
	// temporality (the prometheus exporter drops them too).
	Unsupported int64
	// Invalid: names or labels the translator rejects, or two attributes that
	// translate to the same label.
	Invalid int64
	// DeltaLimit: delta series beyond MaxDeltaSeries.
	DeltaLimit int64
}

// Converter is not safe for concurrent use: it owns the delta running totals.
type Converter struct {
	set         Settings
	metricNamer otlptranslator.MetricNamer
	labelNamer  otlptranslator.LabelNamer
	deltas      map[uint64]*deltaState
}

type deltaState struct {
	lset     labels.Labels // of the sum / _count series, to resolve hash collisions
	lastT    pcommon.Timestamp
	startT   pcommon.Timestamp
	sum      float64
	count    uint64
	buckets  []uint64
	bounds   []float64
	lastSeen int64
}

// New returns a converter with the exporter's namers for the settings.
func New(set Settings) *Converter {
	return &Converter{
		set: set,
		metricNamer: otlptranslator.MetricNamer{
			WithMetricSuffixes: set.AddMetricSuffixes,
			Namespace:          set.Namespace,
			UTF8Allowed:        false,
		},
		labelNamer: otlptranslator.LabelNamer{
			UTF8Allowed:                 false,
			PreserveMultipleUnderscores: !prometheustranslator.DropSanitizationGate.IsEnabled(),
		},
		deltas: make(map[uint64]*deltaState),
	}
}

// Expire forgets delta running totals not updated since mint (milliseconds).
func (c *Converter) Expire(mint int64) {
	for h, d := range c.deltas {
		if d.lastSeen < mint {
			delete(c.deltas, h)
		}
	}
}

// DeltaSeries reports the running totals held.
func (c *Converter) DeltaSeries() int { return len(c.deltas) }

// Convert appends every data point of md; now (ms) stamps points without a
// timestamp.
func (c *Converter) Convert(md pmetric.Metrics, now int64, app Appender) Result {
	var res Result
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		rm := rms.At(i)
		base := c.resourceLabels(rm.Resource().Attributes())
		sms := rm.ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			sm := sms.At(j)
			scopeLabels := c.scopeLabels(sm)
			ms := sm.Metrics()
			for k := 0; k < ms.Len(); k++ {
				c.convertMetric(ms.At(k), rm.Resource().Attributes(), base, scopeLabels, now, app, &res)
			}
		}
	}
	return res
}

type kv struct{ name, value string }

func (c *Converter) resourceLabels(attrs pcommon.Map) []kv {
	var out []kv
	if job, ok := extractJob(attrs); ok {
		out = append(out, kv{model.JobLabel, job})
	}
	if inst, ok := attrs.Get(string(conventions.ServiceInstanceIDKey)); ok {
		out = append(out, kv{model.InstanceLabel, inst.AsString()})
	}
	return out
}

// extractJob is the exporter's: service.namespace/service.name.
func extractJob(attrs pcommon.Map) (string, bool) {
	sn, ok := attrs.Get(string(conventions.ServiceNameKey))
	if !ok {
		return "", false
	}
	job := sn.AsString()
	if ns, ok := attrs.Get(string(conventions.ServiceNamespaceKey)); ok {
		job = ns.AsString() + "/" + job
	}
	return job, true
}

func (c *Converter) scopeLabels(sm pmetric.ScopeMetrics) []kv {
	if c.set.WithoutScopeInfo {
		return nil
	}
	scope := sm.Scope()
	var out []kv
	for k, v := range scope.Attributes().All() {
		switch k {
		case "name", "version", "schema_url":
			continue
		}
		out = append(out, kv{"otel_scope_" + k, v.AsString()})
	}
	out = append(out,
		kv{"otel_scope_name", scope.Name()},
		kv{"otel_scope_version", scope.Version()},
		kv{"otel_scope_schema_url", sm.SchemaUrl()})
	return out
}

func (c *Converter) buildLabels(name string, dpAttrs, resAttrs pcommon.Map, base, scope []kv, extra ...kv) (labels.Labels, bool) {
	b := labels.NewScratchBuilder(dpAttrs.Len() + len(base) + len(scope) + 4)
	seen := make(map[string]struct{}, dpAttrs.Len()+8)
	ok := true
	add := func(n, v string, translate bool) {
		if translate {
			var err error
			n, err = c.labelNamer.Build(n)
			if err != nil {
				ok = false
				return
			}
		}
		if _, dup := seen[n]; dup {
			// client_golang refuses a metric with a repeated label name, so the
			// exporter never exposes it.
			ok = false
			return
		}
		seen[n] = struct{}{}
		// Prometheus treats an empty label value as an absent label.
		if v != "" {
			b.Add(n, v)
		}
	}
	for k, v := range dpAttrs.All() {
		add(k, v.AsString(), true)
	}
	if c.set.ResourceToTelemetryConversion {
		for k, v := range resAttrs.All() {
			if _, exists := dpAttrs.Get(k); exists {
				continue
			}
			add(k, v.AsString(), true)
		}
	}
	for _, l := range scope {
		add(l.name, l.value, true)
	}
	for _, l := range base {
		if _, dup := seen[l.name]; dup {
			continue
		}
		add(l.name, l.value, false)
	}
	for _, l := range extra {
		if _, dup := seen[l.name]; dup {
			ok = false
			continue
		}
		add(l.name, l.value, false)
	}
	b.Add(model.MetricNameLabel, name)
	b.Sort()
	return b.Labels(), ok
}

func ts(t pcommon.Timestamp, now int64) int64 {
	if t == 0 {
		return now
	}
	return int64(t) / 1e6
}

func startMillis(t pcommon.Timestamp) int64 { return int64(t) / 1e6 }

func numberValue(dp pmetric.NumberDataPoint) float64 {
	if dp.Flags().NoRecordedValue() {
		return math.Float64frombits(value.StaleNaN)
	}
	switch dp.ValueType() {
	case pmetric.NumberDataPointValueTypeInt:
		return float64(dp.IntValue())
	case pmetric.NumberDataPointValueTypeDouble:
		return dp.DoubleValue()
	}
	return math.NaN()
}

func (c *Converter) convertMetric(m pmetric.Metric, resAttrs pcommon.Map, base, scope []kv, now int64, app Appender, res *Result) {
	name, err := c.metricNamer.Build(prom.TranslatorMetricFromOtelMetric(m))
	if err != nil || name == "" {
		res.Invalid += int64(dataPointCount(m))
		return
	}
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		dps := m.Gauge().DataPoints()
		for i := 0; i < dps.Len(); i++ {
			dp := dps.At(i)
			lset, ok := c.buildLabels(name, dp.Attributes(), resAttrs, base, scope)
			if !ok {
				res.Invalid++
				continue
			}
			app(lset, 0, ts(dp.Timestamp(), now), numberValue(dp))
		}
	case pmetric.MetricTypeSum:
		sum := m.Sum()
		temporality := sum.AggregationTemporality()
		if temporality == pmetric.AggregationTemporalityUnspecified ||
			(temporality == pmetric.AggregationTemporalityDelta && !sum.IsMonotonic()) {
			res.Unsupported += int64(sum.DataPoints().Len())
			return
		}
		dps := sum.DataPoints()
		for i := 0; i < dps.Len(); i++ {
			dp := dps.At(i)
			lset, ok := c.buildLabels(name, dp.Attributes(), resAttrs, base, scope)
			if !ok {
				res.Invalid++
				continue
			}
			t := ts(dp.Timestamp(), now)
			v := numberValue(dp)
			var st int64
			if sum.IsMonotonic() {
				st = startMillis(dp.StartTimestamp())
			}
			if temporality == pmetric.AggregationTemporalityDelta && !value.IsStaleNaN(v) {
				d, ok := c.delta(lset, t, res)
				if !ok {
					continue
				}
				// As the exporter: a delta continuing the previous one adds to the
				// running total; a gap restarts it, which PromQL sees as a reset.
				if d.lastT != 0 && dp.StartTimestamp() == d.lastT {
					d.sum += v
				} else {
					d.sum = v
					d.startT = dp.StartTimestamp()
				}
				d.lastT = dp.Timestamp()
				v = d.sum
				st = startMillis(d.startT)
			}
			app(lset, st, t, v)
		}
	case pmetric.MetricTypeHistogram:
		h := m.Histogram()
		if h.AggregationTemporality() == pmetric.AggregationTemporalityUnspecified {
			res.Unsupported += int64(h.DataPoints().Len())
			return
		}
		dps := h.DataPoints()
		for i := 0; i < dps.Len(); i++ {
			c.convertHistogram(name, dps.At(i), h.AggregationTemporality(), resAttrs, base, scope, now, app, res)
		}
	case pmetric.MetricTypeSummary:
		dps := m.Summary().DataPoints()
		for i := 0; i < dps.Len(); i++ {
			dp := dps.At(i)
			t := ts(dp.Timestamp(), now)
			stale := dp.Flags().NoRecordedValue()
			val := func(v float64) float64 {
				if stale {
					return math.Float64frombits(value.StaleNaN)
				}
				return v
			}
			countL, ok := c.buildLabels(name+"_count", dp.Attributes(), resAttrs, base, scope)
			if !ok {
				res.Invalid++
				continue
			}
			sumL, _ := c.buildLabels(name+"_sum", dp.Attributes(), resAttrs, base, scope)
			st := startMillis(dp.StartTimestamp())
			app(countL, st, t, val(float64(dp.Count())))
			app(sumL, st, t, val(dp.Sum()))
			qs := dp.QuantileValues()
			for q := 0; q < qs.Len(); q++ {
				ql, ok := c.buildLabels(name, dp.Attributes(), resAttrs, base, scope, kv{model.QuantileLabel, formatFloat(qs.At(q).Quantile())})
				if !ok {
					res.Invalid++
					continue
				}
				app(ql, 0, t, val(qs.At(q).Value()))
			}
		}
	default:
		res.Unsupported += int64(dataPointCount(m))
	}
}

func (c *Converter) delta(lset labels.Labels, t int64, res *Result) (*deltaState, bool) {
	h := lset.Hash()
	d, ok := c.deltas[h]
	if ok && !labels.Equal(d.lset, lset) {
		// A hash collision between two delta series: treat the newcomer as
		// over the limit rather than mixing their totals.
		res.DeltaLimit++
		return nil, false
	}
	if !ok {
		if len(c.deltas) >= c.set.MaxDeltaSeries {
			res.DeltaLimit++
			return nil, false
		}
		d = &deltaState{lset: lset}
		c.deltas[h] = d
	}
	d.lastSeen = t
	return d, true
}

func (c *Converter) convertHistogram(name string, dp pmetric.HistogramDataPoint, temporality pmetric.AggregationTemporality, resAttrs pcommon.Map, base, scope []kv, now int64, app Appender, res *Result) {
	t := ts(dp.Timestamp(), now)
	countL, ok := c.buildLabels(name+"_count", dp.Attributes(), resAttrs, base, scope)
	if !ok {
		res.Invalid++
		return
	}
	sumL, _ := c.buildLabels(name+"_sum", dp.Attributes(), resAttrs, base, scope)

	// Bounds de-duplicated and sorted, counts made cumulative: the exporter's
	// convertDoubleHistogram.
	bounds := dp.ExplicitBounds().AsRaw()
	counts := dp.BucketCounts().AsRaw()
	idx := make(map[float64]int, len(bounds))
	uniq := make([]float64, 0, len(bounds))
	for i, b := range bounds {
		if _, seen := idx[b]; !seen {
			idx[b] = i
			uniq = append(uniq, b)
		}
	}
	slices.Sort(uniq)

	count, sum := dp.Count(), dp.Sum()
	perBucket := make([]uint64, len(uniq))
	for i, b := range uniq {
		if j := idx[b]; j < len(counts) {
			perBucket[i] = counts[j]
		}
	}
	stale := dp.Flags().NoRecordedValue()
	st := startMillis(dp.StartTimestamp())
	if temporality == pmetric.AggregationTemporalityDelta && !stale {
		d, ok := c.delta(countL, t, res)
		if !ok {
			return
		}
		if d.lastT != 0 && dp.StartTimestamp() == d.lastT && slices.Equal(d.bounds, uniq) {
			d.count += count
			d.sum += sum
			for i := range perBucket {
				d.buckets[i] += perBucket[i]
			}
		} else {
			d.count, d.sum = count, sum
			d.startT = dp.StartTimestamp()
			d.bounds = uniq
			d.buckets = append(d.buckets[:0], perBucket...)
		}
		d.lastT = dp.Timestamp()
		st = startMillis(d.startT)
		count, sum = d.count, d.sum
		perBucket = slices.Clone(d.buckets)
	}
	val := func(v float64) float64 {
		if stale {
			return math.Float64frombits(value.StaleNaN)
		}
		return v
	}
	app(countL, st, t, val(float64(count)))
	app(sumL, st, t, val(sum))
	var cum uint64
	for i, b := range uniq {
		cum += perBucket[i]
		bl, ok := c.buildLabels(name+"_bucket", dp.Attributes(), resAttrs, base, scope, kv{model.BucketLabel, formatFloat(b)})
		if !ok {
			res.Invalid++
			return
		}
		app(bl, st, t, val(float64(cum)))
	}
	inf, _ := c.buildLabels(name+"_bucket", dp.Attributes(), resAttrs, base, scope, kv{model.BucketLabel, "+Inf"})
	app(inf, st, t, val(float64(count)))
}

// formatFloat renders le/quantile values as client_golang's text exposition does.
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

func dataPointCount(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeHistogram:
		return m.Histogram().DataPoints().Len()
	case pmetric.MetricTypeExponentialHistogram:
		return m.ExponentialHistogram().DataPoints().Len()
	case pmetric.MetricTypeSummary:
		return m.Summary().DataPoints().Len()
	}
	return 0
}
