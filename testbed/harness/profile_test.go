package harness

import (
	"bytes"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handMade is a CPU profile with known stacks (leaf first):
//
//	work ← serve ← main        60
//	serve ← main               30
//	hash (inlined into serve) ← main   10
//	work ← work ← main (recursion)      0 in cpu, counted only in the other sample type
func handMade(t *testing.T) *profile.Profile {
	fn := map[string]*profile.Function{}
	for i, name := range []string{"main", "serve", "work", "hash"} {
		fn[name] = &profile.Function{ID: uint64(i + 1), Name: name}
	}
	loc := func(id uint64, names ...string) *profile.Location {
		l := &profile.Location{ID: id, Address: 0x1000 * id}
		for _, n := range names {
			l.Line = append(l.Line, profile.Line{Function: fn[n]})
		}
		return l
	}
	mainL, serveL, workL, inlined := loc(1, "main"), loc(2, "serve"), loc(3, "work"), loc(4, "hash", "serve")
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		DurationNanos: 2e9,
		Sample: []*profile.Sample{
			{Location: []*profile.Location{workL, serveL, mainL}, Value: []int64{6, 60}},
			{Location: []*profile.Location{serveL, mainL}, Value: []int64{3, 30}},
			{Location: []*profile.Location{inlined, mainL}, Value: []int64{1, 10}},
			{Location: []*profile.Location{workL, workL, mainL}, Value: []int64{5, 0}},
		},
		Location: []*profile.Location{mainL, serveL, workL, inlined},
		Function: []*profile.Function{fn["main"], fn["serve"], fn["work"], fn["hash"]},
	}
	// Through the wire format, as a fetched profile comes.
	var buf bytes.Buffer
	require.NoError(t, p.Write(&buf))
	parsed, err := profile.Parse(&buf)
	require.NoError(t, err)
	return parsed
}

func TestSummarizeProfileFlatAndCum(t *testing.T) {
	s, err := SummarizeProfile(handMade(t), "cpu", 10, "hash", "wor", "nothing")
	require.NoError(t, err)
	assert.Equal(t, []ProfileShare{{Match: "hash", Value: 10, Percent: 10}, {Match: "wor", Value: 60, Percent: 60}, {Match: "nothing"}}, s.Focus)
	assert.Equal(t, "nanoseconds", s.Unit)
	assert.Equal(t, int64(100), s.Total)
	assert.Equal(t, "2s", s.Duration)
	assert.Equal(t, []ProfileFunc{
		{Function: "work", Flat: 60, FlatPercent: 60, Cum: 60, CumPercent: 60},
		{Function: "serve", Flat: 30, FlatPercent: 30, Cum: 100, CumPercent: 100},
		{Function: "hash", Flat: 10, FlatPercent: 10, Cum: 10, CumPercent: 10},
		{Function: "main", Flat: 0, FlatPercent: 0, Cum: 100, CumPercent: 100},
	}, s.ByFlat)
	var cum []string
	for _, f := range s.ByCum {
		cum = append(cum, f.Function)
	}
	assert.Equal(t, []string{"main", "serve", "work", "hash"}, cum, "ties broken by name")

	// A recursive stack counts its function once in cum.
	s, err = SummarizeProfile(handMade(t), "samples", 2)
	require.NoError(t, err)
	assert.Nil(t, s.Focus)
	assert.Equal(t, int64(15), s.Total)
	require.Len(t, s.ByFlat, 2)
	assert.Equal(t, ProfileFunc{Function: "work", Flat: 11, FlatPercent: 100 * 11 / 15.0, Cum: 11, CumPercent: 100 * 11 / 15.0}, s.ByFlat[0])
	assert.Equal(t, "main", s.ByCum[0].Function)
	assert.InDelta(t, 100, s.ByCum[0].CumPercent, 1e-9)

	_, err = SummarizeProfile(handMade(t), "alloc_space", 10)
	assert.ErrorContains(t, err, `no "alloc_space" samples (has samples, cpu)`)
}

var sink [][]byte

//go:noinline
func allocateForProfile() {
	for range 256 {
		sink = append(sink, make([]byte, 64<<10))
	}
}

// TestSummarizeARealAllocProfile summarises an alloc profile written by runtime/pprof, with
// every allocation sampled: the 16 MiB allocated by one function lead it.
func TestSummarizeARealAllocProfile(t *testing.T) {
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	t.Cleanup(func() { runtime.MemProfileRate = old })
	allocateForProfile()
	sink = nil
	// The profile shows allocations as of the last completed GC cycles.
	runtime.GC()
	runtime.GC()
	var buf bytes.Buffer
	require.NoError(t, pprof.Lookup("allocs").WriteTo(&buf, 0))
	p, err := profile.Parse(&buf)
	require.NoError(t, err)
	s, err := SummarizeProfile(p, "alloc_space", 10)
	require.NoError(t, err)
	assert.Equal(t, "bytes", s.Unit)
	require.NotEmpty(t, s.ByFlat)
	top := s.ByFlat[0]
	assert.Contains(t, top.Function, "allocateForProfile")
	assert.GreaterOrEqual(t, top.Flat, int64(256*64<<10))
	assert.Greater(t, top.FlatPercent, 50.0)
	assert.GreaterOrEqual(t, top.Cum, top.Flat)
}
