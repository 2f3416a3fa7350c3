package store // import "github.com/imcol/imcol/connectors/alerteventsconnector/internal/store"

import (
	"context"
	"errors"
	"slices"

	"github.com/prometheus/common/model"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

var _ storage.Queryable = (*Store)(nil)

// Querier implements storage.Queryable.
func (s *Store) Querier(mint, maxt int64) (storage.Querier, error) {
	return &querier{s: s, mint: mint, maxt: maxt}, nil
}

type querier struct {
	s          *Store
	mint, maxt int64
}

func (q *querier) Select(_ context.Context, _ bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = hints.Start, hints.End
	}
	var out []storage.Series
	q.s.mu.RLock()
	q.s.forEachMatching(matchers, func(ms *memSeries) {
		lo, _ := slices.BinarySearchFunc(ms.samples, mint, func(e sample, t int64) int { return cmpInt(e.t, t) })
		hi, found := slices.BinarySearchFunc(ms.samples, maxt, func(e sample, t int64) int { return cmpInt(e.t, t) })
		if found {
			hi++
		}
		if lo >= hi {
			return
		}
		cp := make(floatSamples, hi-lo)
		copy(cp, ms.samples[lo:hi])
		out = append(out, &storage.SeriesEntry{
			Lset: ms.lset,
			SampleIteratorFn: func(chunkenc.Iterator) chunkenc.Iterator {
				return storage.NewListSeriesIterator(cp)
			},
		})
	})
	q.s.mu.RUnlock()
	// The engine merges and matches series assuming label order.
	slices.SortFunc(out, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return &seriesSet{series: out, idx: -1}
}

// forEachMatching calls f for every series matching all matchers; the caller
// holds the lock.
func (s *Store) forEachMatching(matchers []*labels.Matcher, f func(*memSeries)) {
	var nameEq *labels.Matcher
	for _, m := range matchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			nameEq = m
			break
		}
	}
	match := func(ms *memSeries) {
		for _, m := range matchers {
			if !m.Matches(ms.lset.Get(m.Name)) {
				return
			}
		}
		f(ms)
	}
	if nameEq != nil {
		for ms := range s.byName[nameEq.Value] {
			match(ms)
		}
		return
	}
	for _, chain := range s.series {
		for _, ms := range chain {
			match(ms)
		}
	}
}

func (q *querier) LabelValues(_ context.Context, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	set := map[string]struct{}{}
	q.s.mu.RLock()
	q.s.forEachMatching(matchers, func(ms *memSeries) {
		if v := ms.lset.Get(name); v != "" {
			set[v] = struct{}{}
		}
	})
	q.s.mu.RUnlock()
	return sortedKeys(set, hints), nil, nil
}

func (q *querier) LabelNames(_ context.Context, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	set := map[string]struct{}{}
	q.s.mu.RLock()
	q.s.forEachMatching(matchers, func(ms *memSeries) {
		ms.lset.Range(func(l labels.Label) { set[l.Name] = struct{}{} })
	})
	q.s.mu.RUnlock()
	return sortedKeys(set, hints), nil, nil
}

func (*querier) Close() error { return nil }

func sortedKeys(set map[string]struct{}, hints *storage.LabelHints) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	if hints != nil && hints.Limit > 0 && len(out) > hints.Limit {
		out = out[:hints.Limit]
	}
	return out
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type seriesSet struct {
	series []storage.Series
	idx    int
}

func (s *seriesSet) Next() bool                      { s.idx++; return s.idx < len(s.series) }
func (s *seriesSet) At() storage.Series              { return s.series[s.idx] }
func (*seriesSet) Err() error                        { return nil }
func (*seriesSet) Warnings() annotations.Annotations { return nil }

// floatSamples adapts stored samples to storage.Samples.
type floatSamples []sample

func (fs floatSamples) Get(i int) chunks.Sample { return fs[i] }
func (fs floatSamples) Len() int                { return len(fs) }

func (s sample) T() int64                    { return s.t }
func (sample) ST() int64                     { return 0 }
func (s sample) F() float64                  { return s.f }
func (sample) H() *histogram.Histogram       { return nil }
func (sample) FH() *histogram.FloatHistogram { return nil }
func (sample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s sample) Copy() chunks.Sample         { return s }

// errNativeHistograms is returned for native histogram appends: the store
// holds float samples only, as the OTLP translation produces classic
// histogram series.
var errNativeHistograms = errors.New("native histograms are not supported by the alert_events store")
