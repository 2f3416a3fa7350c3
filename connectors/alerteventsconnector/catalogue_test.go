package alerteventsconnector

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// The shipped rule catalogue, evaluated by the connector on OTLP metrics
// shaped as their producers emit them: each rule must stay quiet while
// healthy, fire during the incident and resolve after it.
const catalogueGlob = "../../configs/rules/*.yaml"

const (
	promReceiverScope = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/prometheusreceiver"
	hostMetricsScope  = "github.com/open-telemetry/opentelemetry-collector-contrib/receiver/hostmetricsreceiver/internal/scraper/memoryscraper"
)

type metricKind int

const (
	kindGauge metricKind = iota
	kindCounter
	kindUpDown // non-monotonic cumulative sum
	kindHistogram
)

// point is one OTLP data point of one metric.
type point struct {
	name, unit string
	kind       metricKind
	attrs      map[string]string
	value      float64
	bounds     []float64 // histograms
	counts     []uint64  // histograms, per bucket (not cumulative)
}

// resource is who emits: job/instance become service.name/service.instance.id
// as the prometheus receiver sets them; empty for hostmetrics.
type resource struct{ job, instance string }

type scenario struct {
	alert             string
	res               resource
	scope             string
	badFrom, goodFrom int // steps [badFrom, goodFrom) are the incident
	horizon           int // last step; the alert must have resolved by then
	points            func(i int, ph phases) []point
	wantLabels        map[string]string
}

// phases helps build cumulative counters from per-step increments.
type phases struct{ badFrom, goodFrom int }

func (p phases) bad(i int) bool { return i >= p.badFrom && i < p.goodFrom }

// cum is a counter's value at step i growing by good or bad per step.
func (p phases) cum(i int, good, bad float64) float64 {
	var v float64
	for j := 1; j <= i; j++ {
		if p.bad(j) {
			v += bad
		} else {
			v += good
		}
	}
	return v
}

func (p phases) pick(i int, good, bad float64) float64 {
	if p.bad(i) {
		return bad
	}
	return good
}

func catalogueScenarios() []scenario {
	openim := resource{job: "openim-api", instance: "10.0.0.5:20100"}
	// The collector's own endpoint (:8888 with conventional suffixes) serves
	// otelcol_..._total counters and unit-suffixed histograms; the prometheus
	// receiver keeps those family names as the OTLP metric names, and takes
	// job and instance from the endpoint's target_info (TestSelfMetricNames).
	imcol := resource{job: "imcol", instance: "5f0c2a4e-9d1b-4c3a-8e7f-2b6d9a1c0e43"}
	outcome := func(outcome, stage, reason string, v float64) point {
		return point{name: "otelcol_processor_im_loss_outcomes_total", kind: kindCounter, value: v,
			attrs: map[string]string{"outcome": outcome, "stage": stage, "reason": reason}}
	}
	sloGauge := func(name, unit, window string, v float64) point {
		attrs := map[string]string{"slo_name": "im-delivery", "service.name": "openim-msggateway"}
		if window != "" {
			attrs["window"] = window
		}
		return point{name: name, unit: unit, kind: kindGauge, value: v, attrs: attrs}
	}
	return []scenario{
		{
			alert: "InstanceDown", res: resource{job: "openim-msggateway", instance: "10.0.0.1:20112"}, scope: promReceiverScope,
			badFrom: 4, goodFrom: 12, horizon: 16,
			points: func(i int, p phases) []point {
				return []point{{name: "up", kind: kindGauge, value: p.pick(i, 1, 0)}}
			},
			wantLabels: map[string]string{"job": "openim-msggateway", "instance": "10.0.0.1:20112", "severity": "critical"},
		},
		{
			alert: "DatabaseInsertFailed", res: resource{job: "openim-msgtransfer", instance: "10.0.0.2:20120"}, scope: promReceiverScope,
			badFrom: 4, goodFrom: 8, horizon: 40,
			points: func(i int, p phases) []point {
				return []point{
					{name: "msg_insert_redis_failed_total", kind: kindCounter, value: p.cum(i, 0, 1)},
					{name: "msg_insert_mongo_failed_total", kind: kindCounter, value: 0},
				}
			},
			wantLabels: map[string]string{"job": "openim-msgtransfer", "severity": "critical"},
		},
		{
			alert: "SeqSetFailed", res: resource{job: "openim-msgtransfer", instance: "10.0.0.2:20120"}, scope: promReceiverScope,
			badFrom: 4, goodFrom: 6, horizon: 40,
			points: func(i int, p phases) []point {
				return []point{{name: "seq_set_failed_total", kind: kindCounter, value: p.cum(i, 0, 1)}}
			},
			wantLabels: map[string]string{"severity": "critical"},
		},
		{
			alert: "OfflinePushFailing", res: resource{job: "openim-push", instance: "10.0.0.3:20170"}, scope: promReceiverScope,
			badFrom: 4, goodFrom: 44, horizon: 100,
			points: func(i int, p phases) []point {
				return []point{{name: "msg_offline_push_failed_total", kind: kindCounter, value: p.cum(i, 0, 20)}}
			},
			wantLabels: map[string]string{"job": "openim-push", "severity": "warning"},
		},
		{
			// OpenIM exposes the counter as http_count: the exporter (and so the
			// rule) sees http_count_total.
			alert: "HighErrorRate", res: openim, scope: promReceiverScope,
			badFrom: 4, goodFrom: 40, horizon: 80,
			points: func(i int, p phases) []point {
				a := func(status string) map[string]string {
					return map[string]string{"path": "/msg/send_msg", "method": "POST", "status": status}
				}
				return []point{
					{name: "http_count", kind: kindCounter, attrs: a("200"), value: p.cum(i, 90, 90)},
					{name: "http_count", kind: kindCounter, attrs: a("500"), value: p.cum(i, 0, 20)},
				}
			},
			wantLabels: map[string]string{"job": "openim-api", "instance": "10.0.0.5:20100", "severity": "critical"},
		},
		{
			alert: "HighRateLimitViolations", res: openim, scope: promReceiverScope,
			badFrom: 4, goodFrom: 50, horizon: 90,
			points: func(i int, p phases) []point {
				return []point{{name: "http_count", kind: kindCounter, value: p.cum(i, 1, 300),
					attrs: map[string]string{"path": "/auth/user_token", "method": "POST", "status": "429"}}}
			},
			wantLabels: map[string]string{"job": "openim-api", "severity": "warning"},
		},
		{
			alert: "LowActiveConnections", res: resource{job: "openim-msggateway", instance: "10.0.0.1:20112"}, scope: promReceiverScope,
			badFrom: 40, goodFrom: 70, horizon: 80,
			points: func(i int, p phases) []point {
				return []point{{name: "online_user_num", kind: kindGauge, value: p.pick(i, 1000, 300)}}
			},
			wantLabels: map[string]string{"job": "openim-msggateway", "severity": "warning"},
		},
		{
			alert: "TooManyActiveConnections", res: resource{job: "openim-msggateway", instance: "10.0.0.1:20112"}, scope: promReceiverScope,
			badFrom: 4, goodFrom: 50, horizon: 56,
			points: func(i int, p phases) []point {
				return []point{{name: "online_user_num", kind: kindGauge, value: p.pick(i, 40000, 60000)}}
			},
			wantLabels: map[string]string{"instance": "10.0.0.1:20112", "severity": "warning"},
		},
		{
			alert: "HighMemoryUsage", scope: hostMetricsScope,
			badFrom: 4, goodFrom: 30, horizon: 36,
			points: func(i int, p phases) []point {
				return []point{
					{name: "system.memory.usage", unit: "By", kind: kindUpDown, attrs: map[string]string{"state": "used"}, value: p.pick(i, 4e9, 7.6e9)},
					{name: "system.memory.usage", unit: "By", kind: kindUpDown, attrs: map[string]string{"state": "free"}, value: p.pick(i, 4e9, 0.4e9)},
				}
			},
			wantLabels: map[string]string{"severity": "warning", "otel_scope_name": hostMetricsScope},
		},
		{
			alert: "HighCPUUsage", scope: hostMetricsScope,
			badFrom: 4, goodFrom: 70, horizon: 100,
			points: func(i int, p phases) []point {
				cpu := func(state string) map[string]string { return map[string]string{"cpu": "cpu0", "state": state} }
				return []point{
					{name: "system.cpu.time", unit: "s", kind: kindCounter, attrs: cpu("idle"), value: p.cum(i, 12, 0.75)},
					{name: "system.cpu.time", unit: "s", kind: kindCounter, attrs: cpu("user"), value: p.cum(i, 3, 14.25)},
				}
			},
			wantLabels: map[string]string{"severity": "warning"},
		},
		{
			alert: "DiskAlmostFull", scope: hostMetricsScope,
			badFrom: 4, goodFrom: 50, horizon: 56,
			points: func(i int, p phases) []point {
				fs := func(state string) map[string]string {
					return map[string]string{"device": "/dev/sda1", "mountpoint": "/var/lib/mongodb", "type": "ext4", "mode": "rw", "state": state}
				}
				return []point{
					{name: "system.filesystem.usage", unit: "By", kind: kindUpDown, attrs: fs("used"), value: p.pick(i, 50e9, 95e9)},
					{name: "system.filesystem.usage", unit: "By", kind: kindUpDown, attrs: fs("free"), value: p.pick(i, 50e9, 5e9)},
				}
			},
			wantLabels: map[string]string{"mountpoint": "/var/lib/mongodb", "severity": "warning"},
		},
		{
			alert: "IMMessageLossRateHigh", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 20, horizon: 50,
			points: func(i int, p phases) []point {
				return []point{
					outcome("delivered", "ack", "", p.cum(i, 1000, 1000)),
					outcome("lost", "push", "ack_timeout", p.cum(i, 0, 100)),
				}
			},
			wantLabels: map[string]string{"job": "imcol", "severity": "critical"},
		},
		{
			alert: "IMAckTimeoutRateHigh", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 40, horizon: 70,
			points: func(i int, p phases) []point {
				return []point{
					outcome("delivered", "ack", "", p.cum(i, 1000, 1000)),
					outcome("lost", "deliver", "ack_timeout", p.cum(i, 0, 100)),
				}
			},
			wantLabels: map[string]string{"job": "imcol", "severity": "warning"},
		},
		{
			alert: "IMDuplicateRateHigh", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 70, horizon: 120,
			points: func(i int, p phases) []point {
				return []point{
					outcome("delivered", "ack", "", p.cum(i, 1000, 1000)),
					outcome("duplicate", "deliver", "", p.cum(i, 0, 50)),
				}
			},
			wantLabels: map[string]string{"job": "imcol", "severity": "warning"},
		},
		{
			alert: "IMSequenceGaps", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 6, horizon: 50,
			points: func(i int, p phases) []point {
				return []point{{name: "otelcol_processor_im_loss_seq_gaps_total", kind: kindCounter, value: p.cum(i, 0, 1)}}
			},
			wantLabels: map[string]string{"job": "imcol", "severity": "warning"},
		},
		{
			alert: "IMLossTrackerEvicting", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 6, horizon: 50,
			points: func(i int, p phases) []point {
				return []point{
					{name: "otelcol_processor_im_loss_evictions_total", kind: kindCounter, attrs: map[string]string{"state": "message"}, value: p.cum(i, 0, 5)},
					// Routine: the decided memory evicts on every decision once full.
					{name: "otelcol_processor_im_loss_evictions_total", kind: kindCounter, attrs: map[string]string{"state": "decided"}, value: p.cum(i, 100, 100)},
				}
			},
			wantLabels: map[string]string{"job": "imcol", "severity": "warning"},
		},
		{
			alert: "IMLossVerdictsForced", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 6, horizon: 50,
			points: func(i int, p phases) []point {
				return []point{{name: "otelcol_processor_im_loss_forced_decisions_total", kind: kindCounter,
					attrs: map[string]string{"reason": "watermark_stalled"}, value: p.cum(i, 0, 2)}}
			},
			wantLabels: map[string]string{"job": "imcol", "severity": "warning"},
		},
		{
			alert: "IMLossVerdictsDelayed", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 50, horizon: 56,
			points: func(i int, p phases) []point {
				return []point{
					{name: "otelcol_processor_im_loss_watermark_lag_milliseconds", kind: kindGauge, value: p.pick(i, 3000, 400000)},
					{name: "otelcol_processor_im_loss_active_sources", kind: kindGauge, value: 3},
				}
			},
			wantLabels: map[string]string{"job": "imcol", "severity": "warning"},
		},
		{
			alert: "IMLossDecidedMemoryShort", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 50, horizon: 56,
			points: func(i int, p phases) []point {
				return []point{{name: "otelcol_processor_im_loss_decided_memory_reach_milliseconds", kind: kindGauge,
					value: p.pick(i, 300000, 40000)}}
			},
			wantLabels: map[string]string{"job": "imcol", "severity": "warning"},
		},
		{
			alert: "IMDeliveryLatencyP99High", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 50, horizon: 80,
			points: func(i int, p phases) []point {
				fast, slow := uint64(p.cum(i, 100, 0)), uint64(p.cum(i, 0, 100))
				return []point{{name: "otelcol_processor_im_loss_delivery_latency_milliseconds", kind: kindHistogram,
					bounds: []float64{100, 1000}, counts: []uint64{fast, slow, 0}, value: float64(fast)*50 + float64(slow)*800}}
			},
			wantLabels: map[string]string{"job": "imcol", "severity": "warning"},
		},
		{
			alert: "IMUnrecognizedEvents", res: imcol, scope: promReceiverScope,
			badFrom: 4, goodFrom: 80, horizon: 130,
			points: func(i int, p phases) []point {
				return []point{{name: "otelcol_processor_im_loss_unrecognized_events_total", kind: kindCounter,
					attrs: map[string]string{"reason": "missing_message_id"}, value: p.cum(i, 0, 20)}}
			},
			wantLabels: map[string]string{"reason": "missing_message_id", "severity": "info"},
		},
		{
			alert: "IMSLOFastBurn", scope: "github.com/imcol/imcol/connectors/sloconnector",
			badFrom: 4, goodFrom: 20, horizon: 24,
			points: func(i int, p phases) []point {
				return []point{
					sloGauge("imcol.slo.burn_rate", "", "1h", p.pick(i, 1, 30)),
					sloGauge("imcol.slo.burn_rate", "", "5m", p.pick(i, 1, 40)),
					sloGauge("imcol.slo.low_traffic", "", "1h", 0),
				}
			},
			wantLabels: map[string]string{"slo_name": "im-delivery", "window": "1h", "service_name": "openim-msggateway", "severity": "critical"},
		},
		{
			alert: "IMSLOSlowBurn", scope: "github.com/imcol/imcol/connectors/sloconnector",
			badFrom: 4, goodFrom: 70, horizon: 74,
			points: func(i int, p phases) []point {
				return []point{
					sloGauge("imcol.slo.burn_rate", "", "6h", p.pick(i, 2, 8)),
					sloGauge("imcol.slo.burn_rate", "", "30m", p.pick(i, 2, 9)),
					sloGauge("imcol.slo.low_traffic", "", "6h", 0),
				}
			},
			wantLabels: map[string]string{"slo_name": "im-delivery", "window": "6h", "severity": "warning"},
		},
		{
			alert: "IMErrorBudget50PercentConsumed", scope: "github.com/imcol/imcol/connectors/sloconnector",
			badFrom: 4, goodFrom: 10, horizon: 14,
			points: func(i int, p phases) []point {
				return []point{sloGauge("imcol.slo.error_budget.remaining", "1", "", p.pick(i, 0.9, 0.45))}
			},
			wantLabels: map[string]string{"slo_name": "im-delivery", "severity": "warning"},
		},
		{
			alert: "IMErrorBudget80PercentConsumed", scope: "github.com/imcol/imcol/connectors/sloconnector",
			badFrom: 4, goodFrom: 10, horizon: 14,
			points: func(i int, p phases) []point {
				return []point{sloGauge("imcol.slo.error_budget.remaining", "1", "", p.pick(i, 0.9, 0.1))}
			},
			wantLabels: map[string]string{"slo_name": "im-delivery", "severity": "critical"},
		},
	}
}

func (h *harness) pushPoints(ts time.Time, res resource, scope string, pts []point) {
	h.t.Helper()
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	if res.job != "" {
		rm.Resource().Attributes().PutStr("service.name", res.job)
		rm.Resource().Attributes().PutStr("service.instance.id", res.instance)
	}
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(scope)
	pts0 := pcommon.NewTimestampFromTime(t0.Add(-time.Minute))
	pts1 := pcommon.NewTimestampFromTime(ts)
	for _, p := range pts {
		m := sm.Metrics().AppendEmpty()
		m.SetName(p.name)
		m.SetUnit(p.unit)
		var attrs pcommon.Map
		switch p.kind {
		case kindGauge:
			dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
			dp.SetTimestamp(pts1)
			dp.SetDoubleValue(p.value)
			attrs = dp.Attributes()
		case kindCounter, kindUpDown:
			s := m.SetEmptySum()
			s.SetIsMonotonic(p.kind == kindCounter)
			s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dp := s.DataPoints().AppendEmpty()
			dp.SetStartTimestamp(pts0)
			dp.SetTimestamp(pts1)
			dp.SetDoubleValue(p.value)
			attrs = dp.Attributes()
		case kindHistogram:
			hh := m.SetEmptyHistogram()
			hh.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dp := hh.DataPoints().AppendEmpty()
			dp.SetStartTimestamp(pts0)
			dp.SetTimestamp(pts1)
			dp.ExplicitBounds().FromRaw(p.bounds)
			dp.BucketCounts().FromRaw(p.counts)
			var n uint64
			for _, c := range p.counts {
				n += c
			}
			dp.SetCount(n)
			dp.SetSum(p.value)
			attrs = dp.Attributes()
		}
		for k, v := range p.attrs {
			attrs.PutStr(k, v)
		}
	}
	require.NoError(h.t, h.c.ConsumeMetrics(context.Background(), md))
}

func TestShippedRulesFireAndResolve(t *testing.T) {
	scenarios := catalogueScenarios()

	// Every alerting rule shipped has a scenario.
	cfg := createDefaultConfig().(*Config)
	cfg.RuleFiles = []string{catalogueGlob}
	loaded, err := loadRuleGroups(cfg, discardLogger())
	require.NoError(t, err)
	covered := map[string]bool{}
	for _, s := range scenarios {
		covered[s.alert] = true
	}
	var shipped int
	for _, g := range loaded {
		for _, r := range g.group.Rules {
			if r.Alert != "" {
				shipped++
				assert.True(t, covered[r.Alert], "shipped rule %s (%s) has no scenario", r.Alert, g.file)
			}
		}
	}
	require.Len(t, scenarios, shipped, "one scenario per shipped rule")

	for _, sc := range scenarios {
		t.Run(sc.alert, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(cfg *Config) { cfg.RuleFiles = []string{catalogueGlob} })
			ph := phases{badFrom: sc.badFrom, goodFrom: sc.goodFrom}
			step := 15 * time.Second
			firedAt, resolvedAt := -1, -1
			for i := 0; i <= sc.horizon; i++ {
				ts := t0.Add(time.Duration(i) * step)
				h.pushPoints(ts, sc.res, sc.scope, sc.points(i, ph))
				for _, lr := range h.eval(ts) {
					if attr(t, lr, attrAlertName) != sc.alert {
						continue
					}
					switch attr(t, lr, attrState) {
					case stateFiring:
						require.Equal(t, -1, firedAt, "fired twice")
						firedAt = i
						for k, v := range sc.wantLabels {
							assert.Equal(t, v, attr(t, lr, attrLabelPrefix+k), "label %s", k)
						}
						assert.NotEmpty(t, lr.Body().Str())
						assert.NotContains(t, lr.Body().Str(), "error expanding template")
						assert.NotEmpty(t, attr(t, lr, attrAnnotationPrefix+"runbook"))
					case stateResolved:
						resolvedAt = i
					}
				}
			}
			require.NotEqual(t, -1, firedAt, "never fired")
			assert.GreaterOrEqual(t, firedAt, sc.badFrom, "fired before the incident")
			assert.Less(t, firedAt, sc.goodFrom, "fired only after the incident")
			require.NotEqual(t, -1, resolvedAt, "never resolved (fired at step %d)", firedAt)
			assert.GreaterOrEqual(t, resolvedAt, sc.goodFrom, "resolved during the incident (fired at %d)", firedAt)
		})
	}
}

// TestLossBurstFiresWithinForPlusOneInterval is the acceptance case:
// a burst of message losses fires the loss-rate and fast-burn alerts within
// the rule's `for` plus one evaluation interval.
func TestLossBurstFiresWithinForPlusOneInterval(t *testing.T) {
	h := newHarness(t, func(cfg *Config) { cfg.RuleFiles = []string{catalogueGlob} })
	step := 15 * time.Second // scrape and evaluation interval
	const burst = 20         // the burst starts at this step and lasts 1 minute
	imcol := resource{job: "imcol", instance: "5f0c2a4e-9d1b-4c3a-8e7f-2b6d9a1c0e43"}
	firedAt := map[string]int{}
	for i := 0; i <= burst+20; i++ {
		ts := t0.Add(time.Duration(i) * step)
		pts := []point{{name: "otelcol_processor_im_loss_outcomes_total", kind: kindCounter, value: float64(i) * 1000,
			attrs: map[string]string{"outcome": "delivered", "stage": "ack", "reason": ""}}}
		burning := 1.0
		if i >= burst {
			// The lost series appears with the burst, as an OTel counter does;
			// the receiver gives its first point no earlier start time.
			lost := float64(min(i-burst+1, 4)) * 100
			pts = append(pts, point{name: "otelcol_processor_im_loss_outcomes_total", kind: kindCounter, value: lost,
				attrs: map[string]string{"outcome": "lost", "stage": "push", "reason": "ack_timeout"}})
			burning = 50
		}
		h.pushPoints(ts, imcol, promReceiverScope, pts)
		h.pushPoints(ts, resource{}, "github.com/imcol/imcol/connectors/sloconnector", []point{
			{name: "imcol.slo.burn_rate", kind: kindGauge, value: burning, attrs: map[string]string{"slo_name": "im-delivery", "window": "1h"}},
			{name: "imcol.slo.burn_rate", kind: kindGauge, value: burning, attrs: map[string]string{"slo_name": "im-delivery", "window": "5m"}},
			{name: "imcol.slo.low_traffic", kind: kindGauge, value: 0, attrs: map[string]string{"slo_name": "im-delivery", "window": "1h"}},
		})
		for _, lr := range h.eval(ts) {
			if attr(t, lr, attrState) == stateFiring {
				firedAt[attr(t, lr, attrAlertName)] = i
			}
		}
	}
	// Both rules have `for: 2m` (8 steps); one more interval is the second
	// sample rate() needs for a series that appears with the burst.
	for _, alert := range []string{"IMMessageLossRateHigh", "IMSLOFastBurn"} {
		at, ok := firedAt[alert]
		require.True(t, ok, "%s never fired", alert)
		assert.LessOrEqual(t, time.Duration(at-burst)*step, 2*time.Minute+step, alert)
	}
}
