package e2e

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// selfTelemetryEndpoint serves metrics the way the collector's own :8888 does
// with without_type_suffix: false and without_units: false: the same
// exporter, translation strategy and handler options as the collector's
// telemetry (go.opentelemetry.io/contrib/otelconf v0.3.0 prometheusReader).
// The instruments carry the names and units the im_loss processor declares,
// and the resource the collector's service.name and service.instance.id.
// The collector's handler only speaks the classic text format; openMetrics
// also offers OpenMetrics, which adds # UNIT lines, to show the name does
// not depend on the format.
func selfTelemetryEndpoint(t *testing.T, instance string, openMetrics bool) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.NoUTF8EscapingWithSuffixes))
	require.NoError(t, err)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(resource.NewSchemaless(
		attribute.String("service.name", "imcol"), attribute.String("service.instance.id", instance))))
	t.Cleanup(func() { require.NoError(t, mp.Shutdown(context.Background())) })
	m := mp.Meter("github.com/imcol/imcol/processors/imlossprocessor")

	ctx := context.Background()
	outcomes, err := m.Int64Counter("otelcol_processor_im_loss_outcomes", metric.WithUnit("{outcome}"))
	require.NoError(t, err)
	outcomes.Add(ctx, 3, metric.WithAttributes(attribute.String("outcome", "lost"), attribute.String("stage", "push"), attribute.String("reason", "ack_timeout")))
	latency, err := m.Float64Histogram("otelcol_processor_im_loss_delivery_latency", metric.WithUnit("ms"),
		metric.WithExplicitBucketBoundaries(5, 10, 25, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000, 30000, 60000))
	require.NoError(t, err)
	latency.Record(ctx, 120)
	gaps, err := m.Int64Counter("otelcol_processor_im_loss_seq_gaps", metric.WithUnit("{gap}"))
	require.NoError(t, err)
	gaps.Add(ctx, 1)
	tracked, err := m.Int64Gauge("otelcol_processor_im_loss_tracked_messages", metric.WithUnit("{message}"))
	require.NoError(t, err)
	tracked.Record(ctx, 7)
	rss, err := mp.Meter("go.opentelemetry.io/collector/service").Int64Gauge("otelcol_process_memory_rss", metric.WithUnit("By"))
	require.NoError(t, err)
	rss.Record(ctx, 1<<20)

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: openMetrics}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestSelfMetricNames proves which names the shipped rules must use for the
// collector's own metrics: a prometheus receiver in bin/imcol scrapes an
// endpoint serving them as :8888 does, and the alert_events connector lists,
// through a template query, every otelcol_ series it holds.
func TestSelfMetricNames(t *testing.T) {
	text := selfTelemetryEndpoint(t, "text", false)
	openMetrics := selfTelemetryEndpoint(t, "openmetrics", true)
	events := startCollector(t, fmt.Sprintf(`
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: text
          scrape_interval: 1s
          static_configs:
            - targets: ["%[1]s"]
        - job_name: openmetrics
          scrape_interval: 1s
          static_configs:
            - targets: ["%[2]s"]
connectors:
  alert_events:
    evaluation_interval: 1s
    groups:
      - name: names
        rules:
          - alert: SelfMetricNames
            # Both endpoints scraped, each with the 17 bounds and +Inf of the histogram.
            expr: count(count by (instance) (otelcol_processor_im_loss_delivery_latency_milliseconds_bucket) == 18) == 2
            annotations:
              summary: '{{ range query "count by (job, instance, __name__) ({__name__=~\"otelcol_.+\"})" }}{{ .Labels.job }}/{{ .Labels.instance }}/{{ .Labels.__name__ }} {{ end }}'
`, text, openMetrics))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	want := []string{
		"otelcol_process_memory_rss_bytes",
		"otelcol_processor_im_loss_delivery_latency_milliseconds_bucket",
		"otelcol_processor_im_loss_delivery_latency_milliseconds_count",
		"otelcol_processor_im_loss_delivery_latency_milliseconds_sum",
		"otelcol_processor_im_loss_outcomes_total",
		"otelcol_processor_im_loss_seq_gaps_total",
		"otelcol_processor_im_loss_tracked_messages",
	}
	var expected []string
	// job and instance come from the endpoint's target_info (the collector's
	// service.name and service.instance.id), not from the scrape job.
	for _, instance := range []string{"openmetrics", "text"} {
		for _, name := range want {
			expected = append(expected, "imcol/"+instance+"/"+name)
		}
	}
	for {
		ev := nextEvent(ctx, t, events)
		if ev.alertname != "SelfMetricNames" || ev.state != "firing" {
			continue
		}
		got := strings.Fields(ev.body)
		slices.Sort(got)
		assert.Equal(t, expected, got)
		return
	}
}
