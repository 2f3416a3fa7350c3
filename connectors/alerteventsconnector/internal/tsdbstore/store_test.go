package tsdbstore

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

type sample struct {
	t int64
	f float64
}

func newStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func selectAll(t *testing.T, s *Store, ms ...*labels.Matcher) map[string][]sample {
	t.Helper()
	q, err := s.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	if len(ms) == 0 {
		ms = []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "__name__", ".+")}
	}
	set := q.Select(context.Background(), true, nil, ms...)
	out := map[string][]sample{}
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			out[set.At().Labels().String()] = append(out[set.At().Labels().String()], sample{ts, v})
		}
	}
	require.NoError(t, set.Err())
	return out
}

func appendRule(t *testing.T, s *Store, l labels.Labels, ts int64, v float64) {
	t.Helper()
	app := s.Appender(context.Background())
	_, err := app.Append(0, l, ts, v)
	require.NoError(t, err, "refusals are counted, not returned")
	require.NoError(t, app.Commit())
}

func TestBoundsAndRefusalsAreCounted(t *testing.T) {
	s := newStore(t, Options{MaxSeries: 2, Retention: time.Hour})
	up := labels.FromStrings("__name__", "up", "job", "a")
	upB := labels.FromStrings("__name__", "up", "job", "b")
	other := labels.FromStrings("__name__", "other")
	ms := t0.UnixMilli()

	appendRule(t, s, up, ms, 1)
	appendRule(t, s, up, ms, 1) // an exact duplicate is accepted silently
	appendRule(t, s, up, ms, 2) // a different value at the same time is refused
	appendRule(t, s, up, ms-500, 1)
	appendRule(t, s, upB, ms, 0)
	appendRule(t, s, other, ms, 1) // a third series over MaxSeries
	assert.Equal(t, Drops{DropSeriesLimit: 1, DropOutOfOrder: 2}, s.TakeDrops())
	assert.Equal(t, Drops{}, s.TakeDrops(), "taken drops reset")
	assert.Equal(t, int64(2), s.NumSeries())
	assert.Equal(t, []sample{{ms, 1}}, selectAll(t, s)[up.String()])
	assert.Positive(t, s.NumChunks())
}

func TestTruncateFreesSeriesAndRefusesOlderSamples(t *testing.T) {
	s := newStore(t, Options{MaxSeries: 1, Retention: 10 * time.Minute})
	a := labels.FromStrings("__name__", "a")
	b := labels.FromStrings("__name__", "b")
	appendRule(t, s, a, t0.UnixMilli(), 1)
	appendRule(t, s, b, t0.UnixMilli(), 1)
	assert.Equal(t, Drops{DropSeriesLimit: 1}, s.TakeDrops())

	// Not yet a quarter of the retention beyond the truncation point: kept.
	require.NoError(t, s.Truncate(t0.Add(time.Minute).UnixMilli()))
	assert.Equal(t, int64(1), s.NumSeries())
	// Past it: the series without samples left is garbage collected, and the
	// limit frees up for another one.
	mint := t0.Add(5 * time.Minute).UnixMilli()
	require.NoError(t, s.Truncate(mint))
	assert.Zero(t, s.NumSeries())
	appendRule(t, s, b, mint-1, 1)
	assert.Equal(t, Drops{DropTooOld: 1}, s.TakeDrops())
	appendRule(t, s, b, mint, 1)
	assert.Equal(t, Drops{}, s.TakeDrops())
	assert.Len(t, selectAll(t, s), 1)
}

func metricsWith(build func(pmetric.MetricSlice)) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "svc")
	build(rm.ScopeMetrics().AppendEmpty().Metrics())
	return md
}

func TestIngestStaleStartTimeAndUnsupported(t *testing.T) {
	s := newStore(t, Options{MaxSeries: 100, Retention: time.Hour})
	ts := pcommon.NewTimestampFromTime(t0)
	start := pcommon.NewTimestampFromTime(t0.Add(-time.Minute))
	res := s.Ingest(context.Background(), metricsWith(func(ms pmetric.MetricSlice) {
		g := ms.AppendEmpty()
		g.SetName("up")
		dp := g.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(ts)
		dp.SetStartTimestamp(start) // a gauge's start time adds no zero
		dp.SetFlags(pmetric.DefaultDataPointFlags.WithNoRecordedValue(true))

		c := ms.AppendEmpty()
		c.SetName("lost")
		sum := c.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		cdp := sum.DataPoints().AppendEmpty()
		cdp.SetStartTimestamp(start)
		cdp.SetTimestamp(ts)
		cdp.SetIntValue(5)

		eh := ms.AppendEmpty()
		eh.SetName("latency")
		ehs := eh.SetEmptyExponentialHistogram()
		ehs.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		edp := ehs.DataPoints().AppendEmpty()
		edp.SetTimestamp(ts)
		edp.SetCount(1)

		nd := ms.AppendEmpty()
		nd.SetName("queue")
		nd.SetEmptySum().DataPoints().AppendEmpty().SetTimestamp(ts) // no temporality
	}), Translation{AddMetricSuffixes: true})
	assert.Equal(t, Result{Unsupported: 1}, res)
	assert.Equal(t, Drops{DropUnsupported: 1}, s.TakeDrops(), "the exponential histogram, as a native histogram")

	got := selectAll(t, s)
	up := got[`{__name__="up", job="svc"}`]
	require.Len(t, up, 1)
	assert.True(t, value.IsStaleNaN(up[0].f), "NoRecordedValue is Prometheus's stale marker")
	assert.Equal(t, []sample{{t0.Add(-time.Minute).UnixMilli(), 0}, {t0.UnixMilli(), 5}}, got[`{__name__="lost_total", job="svc"}`],
		"a counter's start time is a zero sample")
}

func TestHostileInputNeverPanics(t *testing.T) {
	s := newStore(t, Options{MaxSeries: 100, Retention: time.Hour})
	res := s.Ingest(context.Background(), metricsWith(func(ms pmetric.MetricSlice) {
		add := func(name string) pmetric.Metric {
			m := ms.AppendEmpty()
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
			h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			dp := h.DataPoints().AppendEmpty()
			dp.ExplicitBounds().FromRaw([]float64{5, 1, 5, math.Inf(1)})
			dp.BucketCounts().FromRaw(counts)
			dp.SetCount(3)
			dp.SetTimestamp(pcommon.NewTimestampFromTime(t0))
		}
		sm := add("empty.summary").SetEmptySummary().DataPoints().AppendEmpty()
		sm.QuantileValues().AppendEmpty().SetQuantile(math.NaN())
	}), Translation{AddMetricSuffixes: true})
	assert.Positive(t, res.Invalid, "the nameless metric without data points")
	assert.NotEmpty(t, selectAll(t, s))
}

func TestQuerierSelectsByMatchers(t *testing.T) {
	s := newStore(t, Options{MaxSeries: 10, Retention: time.Hour})
	for i, job := range []string{"a", "b", "c"} {
		appendRule(t, s, labels.FromStrings("__name__", "up", "job", job), t0.UnixMilli(), float64(i))
	}
	got := selectAll(t, s, labels.MustNewMatcher(labels.MatchRegexp, "job", "a|c"))
	assert.Len(t, got, 2)
	q, err := s.Querier(math.MinInt64, math.MaxInt64)
	require.NoError(t, err)
	defer q.Close()
	vals, _, err := q.LabelValues(context.Background(), "job", &storage.LabelHints{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c"}, vals)
}

func TestCloseWritesNoChunkFiles(t *testing.T) {
	parent := t.TempDir()
	s, err := New(Options{MaxSeries: 10, Retention: time.Hour, Dir: parent})
	require.NoError(t, err)
	a := labels.FromStrings("__name__", "a")
	for i := range 500 { // several full chunks of 120 samples
		appendRule(t, s, a, t0.Add(time.Duration(i)*time.Second).UnixMilli(), float64(i))
	}
	chunkFiles := func() []string {
		files, gerr := filepath.Glob(filepath.Join(s.dir, "chunks_head", "*"))
		require.NoError(t, gerr)
		return files
	}
	assert.Empty(t, chunkFiles(), "nothing is m-mapped while running")
	require.NoError(t, s.head.Truncate(math.MaxInt64))
	require.NoError(t, s.head.Close())
	assert.Empty(t, chunkFiles(), "an emptied head writes no chunk on close")
	require.NoError(t, os.RemoveAll(s.dir))
	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestDirFallsBackToTheWorkingDirectory(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing")) // as in a container built from scratch
	t.Chdir(t.TempDir())
	s, err := New(Options{MaxSeries: 10, Retention: time.Hour})
	require.NoError(t, err)
	wd, err := os.Getwd()
	require.NoError(t, err)
	assert.Equal(t, wd, filepath.Dir(s.dir))
	require.NoError(t, s.Close())
	entries, err := os.ReadDir(wd)
	require.NoError(t, err)
	assert.Empty(t, entries, "Close removes the directory")
}
