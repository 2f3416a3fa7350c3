package tsdbstore

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/storage"
	"github.com/stretchr/testify/require"
)

const (
	benchSeries  = 100_000
	benchSamples = 21 // 5 minutes at 15 s, both ends included
	benchStep    = 15 * time.Second
)

// benchRules are shaped like the shipped catalogue: ratios of rates grouped
// by job and instance, an exact-name instant selector, a selector without an
// exact metric name.
var benchRules = map[string]string{
	"HighErrorRate":    `sum by (job, instance) (rate(http_count_total{status="500"}[5m])) / sum by (job, instance) (rate(http_count_total[5m])) > 0.05`,
	"InstanceDown":     `up == 0`,
	"AnyFailure":       `sum by (job) (increase({__name__=~"msg_.+_failed_total"}[5m])) > 0`,
	"TooManyConnected": `sum by (job, instance) (online_user_num) > 50000`,
}

// benchSeriesLabels spreads 100k series over the rules' metrics: 1000
// instances of 10 jobs, each with http_count_total by path and status, two
// failure counters, up and online_user_num.
func benchSeriesLabels() []labels.Labels {
	out := make([]labels.Labels, 0, benchSeries)
	statuses := []string{"200", "429", "500"}
	for i := 0; len(out) < benchSeries; i++ {
		job := fmt.Sprintf("openim-%d", i%10)
		inst := fmt.Sprintf("10.0.%d.%d:10001", i/256, i%256)
		add := func(kv ...string) {
			if len(out) < benchSeries {
				out = append(out, labels.FromStrings(append([]string{"job", job, "instance", inst}, kv...)...))
			}
		}
		add(model.MetricNameLabel, "up")
		add(model.MetricNameLabel, "online_user_num")
		add(model.MetricNameLabel, "msg_insert_redis_failed_total")
		add(model.MetricNameLabel, "msg_insert_mongo_failed_total")
		for p := range 32 {
			for _, st := range statuses {
				add(model.MetricNameLabel, "http_count_total", "path", fmt.Sprintf("/api/%d", p), "status", st)
			}
		}
	}
	return out
}

type benchStore interface {
	storage.Queryable
	storage.Appendable
	truncate(mint int64)
}

type oldBench struct{ *oldStore }

func (o oldBench) truncate(mint int64) { o.Truncate(mint) }

type newBench struct{ *Store }

func (n newBench) truncate(mint int64) { _ = n.Truncate(mint) }

func fill(tb testing.TB, s storage.Appendable, series []labels.Labels, t0 time.Time) {
	tb.Helper()
	for i := range benchSamples {
		ts := t0.Add(time.Duration(i) * benchStep).UnixMilli()
		app := s.Appender(context.Background())
		for j, l := range series {
			v := float64(i * (j%7 + 1))
			if l.Get(model.MetricNameLabel) == "up" {
				v = 1
			}
			_, err := app.Append(0, l, ts, v)
			require.NoError(tb, err)
		}
		require.NoError(tb, app.Commit())
	}
}

// liveHeap is the bytes of live heap objects after a full collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

func newBenchGroup(b *testing.B, s benchStore) *rules.Group {
	b.Helper()
	logger := slog.New(slog.DiscardHandler)
	p := parser.NewParser(parser.Options{})
	engine := promql.NewEngine(promql.EngineOpts{
		Logger: logger, MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute, Parser: p,
	})
	opts := &rules.ManagerOptions{
		NameValidationScheme: model.UTF8Validation,
		QueryFunc:            rules.EngineQueryFunc(engine, s),
		NotifyFunc:           func(context.Context, string, ...*rules.Alert) {},
		Appendable:           s,
		Queryable:            s,
		Logger:               logger,
		Metrics:              rules.NewGroupMetrics(nil),
		Parser:               p,
	}
	var rs []rules.Rule
	for _, name := range []string{"HighErrorRate", "InstanceDown", "AnyFailure", "TooManyConnected"} {
		expr, err := p.ParseExpr(benchRules[name])
		require.NoError(b, err)
		rs = append(rs, rules.NewAlertingRule(name, expr, time.Minute, 0, labels.EmptyLabels(), labels.EmptyLabels(),
			labels.EmptyLabels(), "", true, logger))
	}
	return rules.NewGroup(rules.GroupOptions{Name: "bench", File: "bench", Interval: benchStep, Rules: rs, Opts: opts})
}

// evalTime evaluates the group n times at the newest sample's time, each
// preceded by the truncation the connector runs before every evaluation.
func evalTime(g *rules.Group, s benchStore, ts time.Time, retention time.Duration, n int) time.Duration {
	start := time.Now()
	for range n {
		s.truncate(ts.Add(-retention).UnixMilli())
		g.Eval(context.Background(), ts)
	}
	return time.Since(start) / time.Duration(n)
}

// BenchmarkAlertEvaluation compares, in one run, the old map-of-slices store
// with the TSDB head on 100k series of 21 samples (5 minutes at 15 s): the
// heap each holds, and the time of one evaluation of four catalogue-shaped
// alerting rules (with the truncation before it). Ratios are new/old.
func BenchmarkAlertEvaluation(b *testing.B) {
	series := benchSeriesLabels()
	t0 := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	last := t0.Add((benchSamples - 1) * benchStep)
	const retention = 5*time.Minute + benchStep

	base := liveHeap()
	old := oldBench{newOldStore(benchSeries+1000, 2000)}
	fill(b, old, series, t0)
	oldAfter := liveHeap()
	oldHeap := oldAfter - base

	base = liveHeap()
	st, err := New(Options{MaxSeries: benchSeries + 1000, Retention: retention})
	require.NoError(b, err)
	defer st.Close()
	head := newBench{st}
	fill(b, head, series, t0)
	after := liveHeap()
	newHeap := after - base
	// Both stores share the series' label strings: keep them (and the old
	// store) alive so neither measurement is reduced by what the other frees.
	defer runtime.KeepAlive(series)
	defer runtime.KeepAlive(old)
	require.Equal(b, Drops{}, st.TakeDrops())

	oldGroup, newGroup := newBenchGroup(b, old), newBenchGroup(b, head)
	// Both stores must give the same alerts: the comparison is meaningless otherwise.
	oldGroup.Eval(context.Background(), last)
	newGroup.Eval(context.Background(), last)
	require.Equal(b, activeAlerts(oldGroup), activeAlerts(newGroup))
	require.NotEmpty(b, activeAlerts(newGroup))

	b.ResetTimer()
	var oldEval, newEval time.Duration
	for range b.N {
		oldEval += evalTime(oldGroup, old, last, retention, 1)
		newEval += evalTime(newGroup, head, last, retention, 1)
	}
	b.StopTimer()
	n := time.Duration(b.N)
	b.ReportMetric(float64(oldHeap)/(1<<20), "old-heap-MiB")
	b.ReportMetric(float64(newHeap)/(1<<20), "new-heap-MiB")
	b.ReportMetric(float64(newHeap)/float64(oldHeap), "new/old-heap")
	b.ReportMetric(float64(oldEval/n)/1e6, "old-eval-ms")
	b.ReportMetric(float64(newEval/n)/1e6, "new-eval-ms")
	b.ReportMetric(float64(newEval)/float64(oldEval), "new/old-eval")
}

func activeAlerts(g *rules.Group) map[string]int {
	out := map[string]int{}
	for _, r := range g.Rules() {
		if ar, ok := r.(*rules.AlertingRule); ok {
			out[ar.Name()] = len(ar.ActiveAlerts())
		}
	}
	return out
}
