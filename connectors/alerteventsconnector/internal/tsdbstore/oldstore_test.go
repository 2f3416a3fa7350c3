package tsdbstore

// The metrics store alert_events used before the TSDB head (imcol up to issue
// #13), kept only as the baseline of BenchmarkAlertEvaluation: a map of
// series, each a slice of samples shifted on every append once full, and a
// name index; queries without an exact metric name scan every series.

import (
	"context"
	"errors"
	"math"
	"slices"
	"sort"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// oldDropReason says why a oldSample was not stored or was evicted early.
type oldDropReason int

const (
	// oldDropSeriesLimit: the oldSample would have created a series beyond MaxSeries.
	oldDropSeriesLimit oldDropReason = iota
	// oldDropSampleLimit: the oldest oldSample of a series was evicted at MaxSamplesPerSeries.
	oldDropSampleLimit
	// oldDropOutOfOrder: older than (or conflicting with) the newest oldSample of its series.
	oldDropOutOfOrder
	// oldDropTooOld: older than the retention window.
	oldDropTooOld
	oldNumDropReasons
)

// oldDrops counts samples by oldDropReason.
type oldDrops [oldNumDropReasons]int64

// Add sums other into d.
func (d *oldDrops) Add(other oldDrops) {
	for i := range d {
		d[i] += other[i]
	}
}

// Total is the sum over all reasons.
func (d *oldDrops) Total() int64 {
	var n int64
	for _, v := range d {
		n += v
	}
	return n
}

type oldSample struct {
	t int64
	f float64
}

type oldSeries struct {
	lset    labels.Labels
	name    string
	samples []oldSample
}

// oldStore holds series keyed by their label set. All methods are safe for
// concurrent use: ingestion and queries take the lock briefly; queries copy
// the samples they return so the engine never reads under the lock.
type oldStore struct {
	maxSeries  int
	maxSamples int

	mu         sync.RWMutex
	series     map[uint64][]*oldSeries // hash collisions chain
	byName     map[string]map[*oldSeries]struct{}
	numSeries  int
	numSamples int
	mint       int64 // samples before mint are rejected (retention)
	drops      oldDrops
}

// New returns an empty store bounded to maxSeries series of at most
// maxSamplesPerSeries samples each.
func newOldStore(maxSeries, maxSamplesPerSeries int) *oldStore {
	return &oldStore{
		maxSeries:  maxSeries,
		maxSamples: maxSamplesPerSeries,
		series:     make(map[uint64][]*oldSeries),
		byName:     make(map[string]map[*oldSeries]struct{}),
		mint:       math.MinInt64,
	}
}

// Append stores one float oldSample (StaleNaN marks the series stale, as a
// Prometheus scrape does). It reports whether the oldSample was stored; a
// refused oldSample is counted in the store's drops.
func (s *oldStore) Append(lset labels.Labels, t int64, v float64) bool {
	return s.AppendWithStart(lset, 0, t, v)
}

// AppendWithStart is Append for a cumulative series whose start time st is
// known (0 when not): a series first seen with st before t gets a zero
// oldSample at st, as Prometheus's created-timestamp zero ingestion does, so
// that rate() and increase() count what the counter gained before its first
// oldSample instead of losing it.
func (s *oldStore) AppendWithStart(lset labels.Labels, st, t int64, v float64) bool {
	h := lset.Hash()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t < s.mint {
		s.drops[oldDropTooOld]++
		return false
	}
	ms := s.get(h, lset)
	if ms == nil {
		if value.IsStaleNaN(v) {
			// A stale marker for a series we do not hold carries no information.
			return false
		}
		if s.numSeries >= s.maxSeries {
			s.drops[oldDropSeriesLimit]++
			return false
		}
		ms = &oldSeries{lset: lset, name: lset.Get(model.MetricNameLabel)}
		s.series[h] = append(s.series[h], ms)
		idx := s.byName[ms.name]
		if idx == nil {
			idx = make(map[*oldSeries]struct{})
			s.byName[ms.name] = idx
		}
		idx[ms] = struct{}{}
		s.numSeries++
		if st > 0 && st < t && st >= s.mint && !value.IsStaleNaN(v) {
			ms.samples = append(ms.samples, oldSample{t: st, f: 0})
			s.numSamples++
		}
	} else if last := ms.samples[len(ms.samples)-1]; t <= last.t {
		// Prometheus's TSDB rejects out-of-order samples and silently ignores an
		// exact duplicate; a different value at the same timestamp is rejected.
		if t == last.t && (last.f == v || math.Float64bits(last.f) == math.Float64bits(v)) {
			return true
		}
		s.drops[oldDropOutOfOrder]++
		return false
	}
	if len(ms.samples) >= s.maxSamples {
		copy(ms.samples, ms.samples[1:])
		ms.samples = ms.samples[:len(ms.samples)-1]
		s.numSamples--
		s.drops[oldDropSampleLimit]++
	}
	ms.samples = append(ms.samples, oldSample{t: t, f: v})
	s.numSamples++
	return true
}

func (s *oldStore) get(h uint64, lset labels.Labels) *oldSeries {
	for _, ms := range s.series[h] {
		if labels.Equal(ms.lset, lset) {
			return ms
		}
	}
	return nil
}

// Truncate drops every oldSample older than mint, removes series left empty,
// and refuses later appends older than mint.
func (s *oldStore) Truncate(mint int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mint > s.mint {
		s.mint = mint
	}
	for h, chain := range s.series {
		kept := chain[:0]
		for _, ms := range chain {
			i := sort.Search(len(ms.samples), func(i int) bool { return ms.samples[i].t >= mint })
			if i > 0 {
				s.numSamples -= i
				// Copy down rather than reslice so the evicted prefix is freed.
				ms.samples = append(ms.samples[:0], ms.samples[i:]...)
			}
			if len(ms.samples) == 0 {
				delete(s.byName[ms.name], ms)
				if len(s.byName[ms.name]) == 0 {
					delete(s.byName, ms.name)
				}
				s.numSeries--
				continue
			}
			kept = append(kept, ms)
		}
		if len(kept) == 0 {
			delete(s.series, h)
		} else {
			s.series[h] = kept
		}
	}
}

// Stats reports the series and samples held.
func (s *oldStore) Stats() (series, samples int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.numSeries, s.numSamples
}

// TakeDrops returns the drops counted since the previous call and resets them.
func (s *oldStore) TakeDrops() oldDrops {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops
	s.drops = oldDrops{}
	return d
}

var _ storage.Queryable = (*oldStore)(nil)

// Querier implements storage.Queryable.
func (s *oldStore) Querier(mint, maxt int64) (storage.Querier, error) {
	return &oldQuerier{s: s, mint: mint, maxt: maxt}, nil
}

type oldQuerier struct {
	s          *oldStore
	mint, maxt int64
}

func (q *oldQuerier) Select(_ context.Context, _ bool, hints *storage.SelectHints, matchers ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := q.mint, q.maxt
	if hints != nil {
		mint, maxt = hints.Start, hints.End
	}
	var out []storage.Series
	q.s.mu.RLock()
	q.s.forEachMatching(matchers, func(ms *oldSeries) {
		lo, _ := slices.BinarySearchFunc(ms.samples, mint, func(e oldSample, t int64) int { return oldCmpInt(e.t, t) })
		hi, found := slices.BinarySearchFunc(ms.samples, maxt, func(e oldSample, t int64) int { return oldCmpInt(e.t, t) })
		if found {
			hi++
		}
		if lo >= hi {
			return
		}
		cp := make(oldFloatSamples, hi-lo)
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
	return &oldSeriesSet{series: out, idx: -1}
}

// forEachMatching calls f for every series matching all matchers; the caller
// holds the lock.
func (s *oldStore) forEachMatching(matchers []*labels.Matcher, f func(*oldSeries)) {
	var nameEq *labels.Matcher
	for _, m := range matchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			nameEq = m
			break
		}
	}
	match := func(ms *oldSeries) {
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

func (q *oldQuerier) LabelValues(_ context.Context, name string, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	set := map[string]struct{}{}
	q.s.mu.RLock()
	q.s.forEachMatching(matchers, func(ms *oldSeries) {
		if v := ms.lset.Get(name); v != "" {
			set[v] = struct{}{}
		}
	})
	q.s.mu.RUnlock()
	return oldSortedKeys(set, hints), nil, nil
}

func (q *oldQuerier) LabelNames(_ context.Context, hints *storage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	set := map[string]struct{}{}
	q.s.mu.RLock()
	q.s.forEachMatching(matchers, func(ms *oldSeries) {
		ms.lset.Range(func(l labels.Label) { set[l.Name] = struct{}{} })
	})
	q.s.mu.RUnlock()
	return oldSortedKeys(set, hints), nil, nil
}

func (*oldQuerier) Close() error { return nil }

func oldSortedKeys(set map[string]struct{}, hints *storage.LabelHints) []string {
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

func oldCmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type oldSeriesSet struct {
	series []storage.Series
	idx    int
}

func (s *oldSeriesSet) Next() bool                      { s.idx++; return s.idx < len(s.series) }
func (s *oldSeriesSet) At() storage.Series              { return s.series[s.idx] }
func (*oldSeriesSet) Err() error                        { return nil }
func (*oldSeriesSet) Warnings() annotations.Annotations { return nil }

// oldFloatSamples adapts stored samples to storage.Samples.
type oldFloatSamples []oldSample

func (fs oldFloatSamples) Get(i int) chunks.Sample { return fs[i] }
func (fs oldFloatSamples) Len() int                { return len(fs) }

func (s oldSample) T() int64                    { return s.t }
func (oldSample) ST() int64                     { return 0 }
func (s oldSample) F() float64                  { return s.f }
func (oldSample) H() *histogram.Histogram       { return nil }
func (oldSample) FH() *histogram.FloatHistogram { return nil }
func (oldSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s oldSample) Copy() chunks.Sample         { return s }

// errOldNativeHistograms is returned for native histogram appends: the store
// holds float samples only, as the OTLP translation produces classic
// histogram series.
var errOldNativeHistograms = errors.New("native histograms are not supported by the alert_events store")

var _ storage.Appendable = (*oldStore)(nil)

// Appender implements storage.Appendable for rule evaluation: recording rule
// results and the ALERTS / ALERTS_FOR_STATE series become queryable, as in
// Prometheus. Samples are buffered and applied on Commit.
func (s *oldStore) Appender(context.Context) storage.Appender {
	return &oldAppender{s: s}
}

type oldPending struct {
	lset labels.Labels
	t    int64
	f    float64
}

type oldAppender struct {
	s   *oldStore
	buf []oldPending
}

func (a *oldAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	a.buf = append(a.buf, oldPending{lset: l.Copy(), t: t, f: v})
	return ref, nil
}

func (*oldAppender) SetOptions(*storage.AppendOptions) {}

func (a *oldAppender) Commit() error {
	// Refusals (limit, out of order) are counted by the store, as for ingested
	// data; rule results are never worth failing the evaluation for.
	for _, p := range a.buf {
		a.s.Append(p.lset, p.t, p.f)
	}
	a.buf = nil
	return nil
}

func (a *oldAppender) Rollback() error {
	a.buf = nil
	return nil
}

func (*oldAppender) AppendExemplar(ref storage.SeriesRef, _ labels.Labels, _ exemplar.Exemplar) (storage.SeriesRef, error) {
	return ref, nil
}

func (*oldAppender) AppendHistogram(ref storage.SeriesRef, _ labels.Labels, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, errOldNativeHistograms
}

func (*oldAppender) AppendHistogramSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, errOldNativeHistograms
}

func (*oldAppender) UpdateMetadata(ref storage.SeriesRef, _ labels.Labels, _ metadata.Metadata) (storage.SeriesRef, error) {
	return ref, nil
}

func (*oldAppender) AppendSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64) (storage.SeriesRef, error) {
	return ref, nil
}
