package seqgap

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const window = 10

func TestBaselineAndContiguous(t *testing.T) {
	var d Detector
	for s := int64(100); s < 110; s++ {
		assert.Equal(t, Result{}, d.Observe(s, 0, window, 5, 0))
	}
	assert.False(t, d.Pending())
}

func TestGapOpensAndExpires(t *testing.T) {
	var d Detector
	d.Observe(1, 0, window, 5, 0)
	res := d.Observe(4, 3, window, 5, 2)
	assert.True(t, res.Opened)
	got, _ := d.Expire(12, nil)
	assert.Empty(t, got)
	got, forgotten := d.Expire(13, nil)
	require.Equal(t, []Range{{Lo: 2, Hi: 3, Deadline: 13, Sink: 2}}, got)
	assert.Zero(t, forgotten)
	assert.Equal(t, uint64(2), got[0].Size())
	assert.False(t, d.Pending())
}

func TestFillSplitsRanges(t *testing.T) {
	var d Detector
	d.Observe(0, 0, window, 10, 0)
	d.Observe(6, 0, window, 10, 0) // missing 1..5
	d.Observe(3, 1, window, 10, 0) // split 1..2, 4..5
	assert.Equal(t, []Range{{Lo: 1, Hi: 2, Deadline: 10}, {Lo: 4, Hi: 5, Deadline: 10}}, d.OpenRanges())
	d.Observe(1, 1, window, 10, 0)
	d.Observe(5, 1, window, 10, 0)
	assert.Equal(t, []Range{{Lo: 2, Hi: 2, Deadline: 10}, {Lo: 4, Hi: 4, Deadline: 10}}, d.OpenRanges())
	d.Observe(2, 1, window, 10, 0)
	d.Observe(4, 1, window, 10, 0)
	assert.False(t, d.Pending())
	// A retry of a seq already seen changes nothing.
	assert.Equal(t, Result{}, d.Observe(3, 1, window, 10, 0))
}

func TestAnomalyIsNotAllocated(t *testing.T) {
	var d Detector
	d.Observe(0, 0, window, 1000, 0)
	res := d.Observe(math.MaxInt64, 0, window, 1000, 0)
	assert.True(t, res.Anomaly)
	assert.Equal(t, int64(1), res.AnomalyLo)
	assert.Equal(t, uint64(math.MaxInt64-1), res.AnomalySize)
	assert.False(t, d.Pending())
	// Nothing can follow MaxInt64 upwards, and old seqs are ignored.
	assert.Equal(t, Result{}, d.Observe(5, 0, window, 1000, 0))
}

func TestRangesAreBounded(t *testing.T) {
	var d Detector
	d.Observe(0, 0, window, 10, 0)
	confirmed := 0
	for i := int64(1); i <= 100; i++ {
		res := d.Observe(i*2, i, window, 10, 0) // every other seq missing
		if res.HasConfirmed {
			confirmed++
		}
		require.LessOrEqual(t, len(d.OpenRanges()), MaxRanges)
	}
	assert.Equal(t, 100-MaxRanges, confirmed)
}

// TestLateSeqOfConfirmedGap: a seq of a gap already reported lost is recognised once, with
// the gap as it was reported (the caller compares its time with the deadline).
func TestLateSeqOfConfirmedGap(t *testing.T) {
	var d Detector
	d.Observe(1, 0, window, 5, 0)
	d.Observe(5, 3, window, 5, 2) // missing 2..4, deadline 13
	d.Expire(13, nil)
	reported := Confirmed{Range: Range{Lo: 2, Hi: 4, Deadline: 13, Sink: 2}, Gap: 3}

	res := d.Observe(3, 12, window, 5, 0)
	assert.Equal(t, Result{Late: true, LateOf: reported}, res)
	assert.Equal(t, []Confirmed{{Range: Range{Lo: 2, Hi: 2, Deadline: 13, Sink: 2}, Gap: 3}, {Range: Range{Lo: 4, Hi: 4, Deadline: 13, Sink: 2}, Gap: 3}}, d.ConfirmedGaps())
	assert.Equal(t, Result{}, d.Observe(3, 12, window, 5, 0), "a retry of the late persist")

	res = d.Observe(4, 30, window, 5, 0)
	assert.True(t, res.Late)
	assert.Equal(t, int64(13), res.LateOf.Deadline)
	assert.Equal(t, uint64(3), res.LateOf.Gap)
	res = d.Observe(2, 30, window, 5, 0)
	assert.True(t, res.Late)
	assert.Empty(t, d.ConfirmedGaps())
	assert.False(t, d.Pending())
}

// TestEarlyConfirmedGapIsRemembered: a gap confirmed early (too many open) is reported
// lost too, so its late seqs are recognised like any other.
func TestEarlyConfirmedGapIsRemembered(t *testing.T) {
	var d Detector
	d.Observe(0, 0, window, 10, 0)
	for i := int64(1); i <= MaxRanges+1; i++ {
		d.Observe(i*2, i, window, 10, 0)
	}
	require.Equal(t, []Confirmed{{Range: Range{Lo: 1, Hi: 1, Deadline: 11}, Gap: 1}}, d.ConfirmedGaps())
	res := d.Observe(1, 5, window, 10, 0)
	assert.True(t, res.Late)
	assert.Empty(t, d.ConfirmedGaps())
}

func TestConfirmedGapsAreBounded(t *testing.T) {
	var d Detector
	d.Observe(0, 0, window, 10, 0)
	forgotten := 0
	for i := int64(1); i <= 100; i++ {
		forgotten += d.Observe(i*2, i, window, 10, 0).Forgotten
		_, n := d.Expire(i+window, nil)
		forgotten += n
		require.LessOrEqual(t, len(d.ConfirmedGaps()), MaxConfirmed)
	}
	assert.Equal(t, 100-MaxConfirmed, forgotten)
	assert.Equal(t, int64(200-2*MaxConfirmed+1), d.ConfirmedGaps()[0].Lo, "the newest are kept")
}

func TestRestoreDropsInvalidRanges(t *testing.T) {
	bad := []Range{{Lo: 5, Hi: 4}, {Lo: -1, Hi: 2}, {Lo: 10, Hi: 12, Deadline: 7}, {Lo: 13, Hi: 40}, {Lo: 49, Hi: 50}}
	var confirmed []Confirmed
	for _, r := range bad {
		confirmed = append(confirmed, Confirmed{Range: r, Gap: r.Size()})
	}
	confirmed = append(confirmed, Confirmed{Range: Range{Lo: 20, Hi: 22}, Gap: 2}) // larger than reported
	d := Restore(50, true, bad, confirmed, 100, 10)
	assert.Equal(t, []Range{{Lo: 10, Hi: 12, Deadline: 107}}, d.OpenRanges())
	assert.Equal(t, []Confirmed{{Range: Range{Lo: 10, Hi: 12, Deadline: 107}, Gap: 3}}, d.ConfirmedGaps())
	m, init := d.State()
	assert.Equal(t, int64(50), m)
	assert.True(t, init)
}
