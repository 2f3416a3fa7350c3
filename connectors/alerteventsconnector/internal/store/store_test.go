package store

import (
	"context"
	"math"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func selectAll(t *testing.T, s *Store, mint, maxt int64, ms ...*labels.Matcher) map[string][]sample {
	t.Helper()
	q, err := s.Querier(mint, maxt)
	require.NoError(t, err)
	defer q.Close()
	set := q.Select(context.Background(), true, &storage.SelectHints{Start: mint, End: maxt}, ms...)
	out := map[string][]sample{}
	var prev labels.Labels
	for set.Next() {
		series := set.At()
		require.True(t, prev.IsEmpty() || labels.Compare(prev, series.Labels()) < 0, "sorted")
		prev = series.Labels()
		it := series.Iterator(nil)
		for it.Next() == chunkenc.ValFloat {
			ts, v := it.At()
			out[series.Labels().String()] = append(out[series.Labels().String()], sample{ts, v})
		}
	}
	require.NoError(t, set.Err())
	return out
}

func TestAppendSelectAndBounds(t *testing.T) {
	s := New(2, 3)
	up := labels.FromStrings("__name__", "up", "job", "a")
	upB := labels.FromStrings("__name__", "up", "job", "b")
	other := labels.FromStrings("__name__", "other")

	assert.True(t, s.Append(up, 1000, 1))
	assert.True(t, s.Append(up, 1000, 1), "an exact duplicate is accepted silently")
	assert.False(t, s.Append(up, 1000, 2), "a different value at the same time is refused")
	assert.False(t, s.Append(up, 500, 1), "out of order")
	assert.True(t, s.Append(upB, 1000, 0))
	assert.False(t, s.Append(other, 1000, 1), "third series over max_series")
	for i := int64(2); i <= 4; i++ {
		assert.True(t, s.Append(up, i*1000, float64(i)))
	}
	d := s.TakeDrops()
	assert.Equal(t, Drops{DropSeriesLimit: 1, DropSampleLimit: 1, DropOutOfOrder: 2}, d)
	assert.Equal(t, Drops{}, s.TakeDrops(), "taken drops reset")

	got := selectAll(t, s, 0, 10_000, labels.MustNewMatcher(labels.MatchEqual, "__name__", "up"), labels.MustNewMatcher(labels.MatchEqual, "job", "a"))
	assert.Equal(t, map[string][]sample{up.String(): {{2000, 2}, {3000, 3}, {4000, 4}}}, got, "oldest evicted at max_samples_per_series")
	got = selectAll(t, s, 2500, 3000, labels.MustNewMatcher(labels.MatchRegexp, "job", "a|b"))
	assert.Equal(t, map[string][]sample{up.String(): {{3000, 3}}}, got, "time range is inclusive; b has no sample in it")

	series, samples := s.Stats()
	assert.Equal(t, 2, series)
	assert.Equal(t, 4, samples)
}

func TestTruncateAndRetention(t *testing.T) {
	s := New(10, 100)
	a := labels.FromStrings("__name__", "a")
	b := labels.FromStrings("__name__", "b")
	s.Append(a, 1000, 1)
	s.Append(a, 5000, 1)
	s.Append(b, 1000, 1)
	s.Truncate(2000)
	series, samples := s.Stats()
	assert.Equal(t, 1, series, "b had only old samples and is gone")
	assert.Equal(t, 1, samples)
	assert.False(t, s.Append(b, 1500, 1), "older than the retention")
	assert.Equal(t, int64(1), s.TakeDrops()[DropTooOld])

	q, err := s.Querier(0, 10_000)
	require.NoError(t, err)
	names, _, err := q.LabelValues(context.Background(), "__name__", nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"a"}, names)
}

func TestStaleMarkersAndStartTimes(t *testing.T) {
	s := New(10, 100)
	x := labels.FromStrings("__name__", "x")
	stale := math.Float64frombits(value.StaleNaN)
	assert.False(t, s.Append(x, 1000, stale), "a stale marker does not create a series")
	assert.True(t, s.AppendWithStart(x, 500, 1000, 7))
	assert.True(t, s.Append(x, 2000, stale))
	got := selectAll(t, s, 0, 3000)[x.String()]
	require.Len(t, got, 3)
	assert.Equal(t, sample{500, 0}, got[0], "zero at the start time of a new cumulative series")
	assert.True(t, value.IsStaleNaN(got[2].f))

	y := labels.FromStrings("__name__", "y")
	s.Truncate(900)
	assert.True(t, s.AppendWithStart(y, 800, 1000, 3))
	assert.Len(t, selectAll(t, s, 0, 3000)[y.String()], 1, "no zero before the retention window")
}

func TestAppenderCommitsRuleResults(t *testing.T) {
	s := New(10, 100)
	app := s.Appender(context.Background())
	_, err := app.Append(0, labels.FromStrings("__name__", "ALERTS", "alertname", "A"), 1000, 1)
	require.NoError(t, err)
	require.NoError(t, app.Rollback())
	series, _ := s.Stats()
	assert.Zero(t, series)
	_, err = app.Append(0, labels.FromStrings("__name__", "ALERTS", "alertname", "A"), 1000, 1)
	require.NoError(t, err)
	require.NoError(t, app.Commit())
	series, _ = s.Stats()
	assert.Equal(t, 1, series)
	_, err = app.AppendHistogram(0, labels.EmptyLabels(), 0, nil, nil)
	assert.Error(t, err)
}
