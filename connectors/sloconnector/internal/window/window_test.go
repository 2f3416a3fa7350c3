package window

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)

func TestNewLayoutDefaultWindows(t *testing.T) {
	t.Parallel()
	l, err := NewLayout([]time.Duration{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour, 720 * time.Hour})
	require.NoError(t, err)
	assert.Equal(t, []Level{
		{Width: time.Minute, Buckets: 120},
		{Width: 10 * time.Minute, Buckets: 36},
		{Width: time.Hour, Buckets: 720},
	}, l.Levels)
	assert.True(t, l.Has(6*time.Hour))
	assert.False(t, l.Has(7*time.Hour))
}

func TestNewLayoutOnlyUsedLevels(t *testing.T) {
	t.Parallel()
	l, err := NewLayout([]time.Duration{90 * time.Second, 3 * time.Hour})
	require.NoError(t, err)
	// 90s rounds up to two one-minute buckets; 3h is 18 ten-minute buckets (< 24), so it stays on minutes.
	assert.Equal(t, []Level{{Width: time.Minute, Buckets: 180}}, l.Levels)

	_, err = NewLayout([]time.Duration{30 * time.Second})
	assert.EqualError(t, err, "window 30s is shorter than the finest bucket width 1m0s")
}

func TestSumAcrossRollOver(t *testing.T) {
	t.Parallel()
	l, err := NewLayout([]time.Duration{5 * time.Minute, time.Hour})
	require.NoError(t, err)
	s := NewSeries(l)
	// One event per minute for 10 minutes, good except at minutes 2 and 7.
	for i := range 10 {
		good := uint64(1)
		if i == 2 || i == 7 {
			good = 0
		}
		s.Add(t0.Add(time.Duration(i)*time.Minute+30*time.Second), Counts{Total: 1, Good: good})
	}
	now := t0.Add(9*time.Minute + 45*time.Second)
	// 5m window: minutes 5..9 → 5 events, one bad (minute 7).
	assert.Equal(t, Counts{Total: 5, Good: 4}, s.Sum(now, 5*time.Minute))
	assert.Equal(t, Counts{Total: 10, Good: 8}, s.Sum(now, time.Hour))

	// Five minutes later with no traffic, the 5m window is empty and the hour still holds all.
	later := now.Add(5 * time.Minute)
	assert.Equal(t, Counts{}, s.Sum(later, 5*time.Minute))
	assert.Equal(t, Counts{Total: 10, Good: 8}, s.Sum(later, time.Hour))
	assert.False(t, s.Empty(later))

	// After the hour everything rolled out, and the ring reuses its slots cleanly.
	muchLater := t0.Add(2 * time.Hour)
	assert.Equal(t, Counts{}, s.Sum(muchLater, time.Hour))
	assert.True(t, s.Empty(muchLater))
	s.Add(muchLater, Counts{Total: 3, Good: 3})
	assert.Equal(t, Counts{Total: 3, Good: 3}, s.Sum(muchLater, 5*time.Minute))
	assert.Equal(t, Counts{Total: 3, Good: 3}, s.Sum(muchLater, time.Hour))
}

func TestCoarseLevel(t *testing.T) {
	t.Parallel()
	l, err := NewLayout([]time.Duration{24 * time.Hour})
	require.NoError(t, err)
	require.Equal(t, []Level{{Width: time.Hour, Buckets: 24}}, l.Levels)
	s := NewSeries(l)
	for h := range 30 {
		s.Add(t0.Add(time.Duration(h)*time.Hour), Counts{Total: 2, Good: 1})
	}
	// Hours 6..29 are in the day ending in hour 29.
	assert.Equal(t, Counts{Total: 48, Good: 24}, s.Sum(t0.Add(29*time.Hour+59*time.Minute), 24*time.Hour))
}

func TestAddInThePastIsIgnoredBeyondHistory(t *testing.T) {
	t.Parallel()
	l, err := NewLayout([]time.Duration{5 * time.Minute})
	require.NoError(t, err)
	s := NewSeries(l)
	s.Add(t0.Add(time.Hour), Counts{Total: 1, Good: 1})
	s.Add(t0, Counts{Total: 1, Good: 0}) // clock stepped back an hour
	assert.Equal(t, Counts{Total: 1, Good: 1}, s.Sum(t0.Add(time.Hour), 5*time.Minute))
	// A step back within the history is counted in its own bucket.
	s.Add(t0.Add(time.Hour-2*time.Minute), Counts{Total: 1, Good: 0})
	assert.Equal(t, Counts{Total: 2, Good: 1}, s.Sum(t0.Add(time.Hour), 5*time.Minute))
}

func TestStateRestore(t *testing.T) {
	t.Parallel()
	l, err := NewLayout([]time.Duration{5 * time.Minute, 24 * time.Hour})
	require.NoError(t, err)
	s := NewSeries(l)
	for i := range 90 {
		s.Add(t0.Add(time.Duration(i)*time.Minute), Counts{Total: 1, Good: uint64(i % 2)})
	}
	now := t0.Add(89 * time.Minute)
	st := s.State()

	r := NewSeries(l)
	r.Restore(st)
	assert.Equal(t, s.Sum(now, 5*time.Minute), r.Sum(now, 5*time.Minute))
	assert.Equal(t, s.Sum(now, 24*time.Hour), r.Sum(now, 24*time.Hour))
	assert.Equal(t, Counts{Total: 90, Good: 45}, r.Sum(now, 24*time.Hour))

	// A layout without the minute level keeps the hourly history only.
	l2, err := NewLayout([]time.Duration{48 * time.Hour})
	require.NoError(t, err)
	r2 := NewSeries(l2)
	r2.Restore(st)
	assert.Equal(t, Counts{Total: 90, Good: 45}, r2.Sum(now, 48*time.Hour))
}
