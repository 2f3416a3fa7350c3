package tsdbstore // import "github.com/imcol/imcol/connectors/alerteventsconnector/internal/tsdbstore"

import (
	"context"
	"errors"

	prometheustranslator "github.com/open-telemetry/opentelemetry-collector-contrib/pkg/translator/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Translation mirrors the prometheus exporter's naming options.
type Translation struct {
	Namespace                     string
	AddMetricSuffixes             bool
	WithoutScopeInfo              bool
	ResourceToTelemetryConversion bool
}

// settings are Prometheus's OTLP translator settings that name series as the
// contrib prometheus exporter (v0.157.0) exposes them: the same
// otlptranslator namers, job/instance from the resource, otel_scope_* labels,
// classic histograms and summaries, no target_info.
func (tr Translation) settings() prw.Settings {
	s := prw.Settings{
		Namespace:                            tr.Namespace,
		AddMetricSuffixes:                    tr.AddMetricSuffixes,
		DisableTargetInfo:                    true,
		PromoteScopeMetadata:                 !tr.WithoutScopeInfo,
		LabelNamePreserveMultipleUnderscores: !prometheustranslator.DropSanitizationGate.IsEnabled(),
	}
	if tr.ResourceToTelemetryConversion {
		// The exporter copies every resource attribute, service.* included.
		s.PromoteResourceAttributes = prw.NewPromoteResourceAttributes(config.OTLPConfig{PromoteAllResourceAttributes: true})
		s.KeepIdentifyingResourceAttributes = true
	}
	return s
}

// Result counts what Ingest refused before the samples reached the head.
type Result struct {
	// Unsupported: data points of sums and histograms without a temporality
	// (the translator, like the exporter, has no meaning for them).
	Unsupported int64
	// Invalid: metrics the translator refused otherwise (a name or label it
	// cannot build, no data points), one per metric.
	Invalid int64
}

// Ingest writes cumulative OTLP metrics to the head through Prometheus's OTLP
// translator. Deltas must have been made cumulative before (the connector
// runs the deltatocumulative processor). Samples the head refuses are counted
// in the store's drops.
func (s *Store) Ingest(ctx context.Context, md pmetric.Metrics, tr Translation) Result {
	var res Result
	badMetrics := countWithoutTemporality(md, &res)
	app := &ingestAppender{app: s.head.AppenderV2(ctx), s: s}
	_, err := prw.NewPrometheusConverter(app).FromMetrics(ctx, md, tr.settings())
	if n := int64(len(unwrapJoined(err))) - badMetrics; n > 0 {
		res.Invalid += n
	}
	if err := app.Commit(); err != nil {
		// Commit fails only when the head is closed (shutdown).
		s.drops[DropInvalid].Add(app.appended)
	}
	return res
}

func unwrapJoined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// countWithoutTemporality counts the data points the translator refuses for
// their temporality, and returns the number of such metrics (the translator
// reports one error for each).
func countWithoutTemporality(md pmetric.Metrics, res *Result) int64 {
	var metrics int64
	EachAggregated(md, func(temporality pmetric.AggregationTemporality, points int) {
		if temporality != pmetric.AggregationTemporalityCumulative {
			metrics++
			res.Unsupported += int64(points)
		}
	})
	return metrics
}

// EachAggregated calls fn with the temporality and data point count of every
// metric of md that has a temporality: sums, histograms and exponential histograms.
func EachAggregated(md pmetric.Metrics, fn func(temporality pmetric.AggregationTemporality, points int)) {
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				switch m.Type() {
				case pmetric.MetricTypeSum:
					fn(m.Sum().AggregationTemporality(), m.Sum().DataPoints().Len())
				case pmetric.MetricTypeHistogram:
					fn(m.Histogram().AggregationTemporality(), m.Histogram().DataPoints().Len())
				case pmetric.MetricTypeExponentialHistogram:
					fn(m.ExponentialHistogram().AggregationTemporality(), m.ExponentialHistogram().DataPoints().Len())
				}
			}
		}
	}
}

// errNativeHistogram refuses native histograms: they come from OTLP
// exponential histograms, which the prometheus exporter does not expose.
var errNativeHistogram = errors.New("native histograms are not stored")

// ingestAppender counts and swallows refusals: the translator abandons the
// rest of a metric at the first append error.
type ingestAppender struct {
	app      storage.AppenderV2
	s        *Store
	appended int64
}

func (a *ingestAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AOptions) (storage.SeriesRef, error) {
	if h != nil || fh != nil {
		a.s.countRefusal(errNativeHistogram)
		return 0, nil
	}
	// Only counters (and the _count, _sum and _bucket series of histograms and
	// summaries) start at zero; a gauge's start time says nothing about its value.
	switch opts.Metadata.Type {
	case model.MetricTypeCounter, model.MetricTypeHistogram:
	case model.MetricTypeSummary:
		if ls.Has(model.QuantileLabel) {
			st = 0
		}
	default:
		st = 0
	}
	r, err := a.app.Append(ref, ls, st, t, v, nil, nil, opts)
	if err != nil {
		a.s.countRefusal(err)
		return 0, nil
	}
	a.appended++
	return r, nil
}

func (a *ingestAppender) Commit() error   { return a.app.Commit() }
func (a *ingestAppender) Rollback() error { return a.app.Rollback() }
