// Package store is a bounded in-memory time-series store that the PromQL
// engine queries (storage.Queryable) and that rule evaluation writes back to
// (storage.Appendable), holding only what the rules need.
package store // import "github.com/imcol/imcol/connectors/alerteventsconnector/internal/store"

import (
	"math"
	"sort"
	"sync"

	"github.com/prometheus/common/model"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
)

// DropReason says why a sample was not stored or was evicted early.
type DropReason int

const (
	// DropSeriesLimit: the sample would have created a series beyond MaxSeries.
	DropSeriesLimit DropReason = iota
	// DropSampleLimit: the oldest sample of a series was evicted at MaxSamplesPerSeries.
	DropSampleLimit
	// DropOutOfOrder: older than (or conflicting with) the newest sample of its series.
	DropOutOfOrder
	// DropTooOld: older than the retention window.
	DropTooOld
	numDropReasons
)

// Drops counts samples by DropReason.
type Drops [numDropReasons]int64

// Add sums other into d.
func (d *Drops) Add(other Drops) {
	for i := range d {
		d[i] += other[i]
	}
}

// Total is the sum over all reasons.
func (d *Drops) Total() int64 {
	var n int64
	for _, v := range d {
		n += v
	}
	return n
}

type sample struct {
	t int64
	f float64
}

type memSeries struct {
	lset    labels.Labels
	name    string
	samples []sample
}

// Store holds series keyed by their label set. All methods are safe for
// concurrent use: ingestion and queries take the lock briefly; queries copy
// the samples they return so the engine never reads under the lock.
type Store struct {
	maxSeries  int
	maxSamples int

	mu         sync.RWMutex
	series     map[uint64][]*memSeries // hash collisions chain
	byName     map[string]map[*memSeries]struct{}
	numSeries  int
	numSamples int
	mint       int64 // samples before mint are rejected (retention)
	drops      Drops
}

// New returns an empty store bounded to maxSeries series of at most
// maxSamplesPerSeries samples each.
func New(maxSeries, maxSamplesPerSeries int) *Store {
	return &Store{
		maxSeries:  maxSeries,
		maxSamples: maxSamplesPerSeries,
		series:     make(map[uint64][]*memSeries),
		byName:     make(map[string]map[*memSeries]struct{}),
		mint:       math.MinInt64,
	}
}

// Append stores one float sample (StaleNaN marks the series stale, as a
// Prometheus scrape does). It reports whether the sample was stored; a
// refused sample is counted in the store's drops.
func (s *Store) Append(lset labels.Labels, t int64, v float64) bool {
	return s.AppendWithStart(lset, 0, t, v)
}

// AppendWithStart is Append for a cumulative series whose start time st is
// known (0 when not): a series first seen with st before t gets a zero
// sample at st, as Prometheus's created-timestamp zero ingestion does, so
// that rate() and increase() count what the counter gained before its first
// sample instead of losing it.
func (s *Store) AppendWithStart(lset labels.Labels, st, t int64, v float64) bool {
	h := lset.Hash()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t < s.mint {
		s.drops[DropTooOld]++
		return false
	}
	ms := s.get(h, lset)
	if ms == nil {
		if value.IsStaleNaN(v) {
			// A stale marker for a series we do not hold carries no information.
			return false
		}
		if s.numSeries >= s.maxSeries {
			s.drops[DropSeriesLimit]++
			return false
		}
		ms = &memSeries{lset: lset, name: lset.Get(model.MetricNameLabel)}
		s.series[h] = append(s.series[h], ms)
		idx := s.byName[ms.name]
		if idx == nil {
			idx = make(map[*memSeries]struct{})
			s.byName[ms.name] = idx
		}
		idx[ms] = struct{}{}
		s.numSeries++
		if st > 0 && st < t && st >= s.mint && !value.IsStaleNaN(v) {
			ms.samples = append(ms.samples, sample{t: st, f: 0})
			s.numSamples++
		}
	} else if last := ms.samples[len(ms.samples)-1]; t <= last.t {
		// Prometheus's TSDB rejects out-of-order samples and silently ignores an
		// exact duplicate; a different value at the same timestamp is rejected.
		if t == last.t && (last.f == v || math.Float64bits(last.f) == math.Float64bits(v)) {
			return true
		}
		s.drops[DropOutOfOrder]++
		return false
	}
	if len(ms.samples) >= s.maxSamples {
		copy(ms.samples, ms.samples[1:])
		ms.samples = ms.samples[:len(ms.samples)-1]
		s.numSamples--
		s.drops[DropSampleLimit]++
	}
	ms.samples = append(ms.samples, sample{t: t, f: v})
	s.numSamples++
	return true
}

func (s *Store) get(h uint64, lset labels.Labels) *memSeries {
	for _, ms := range s.series[h] {
		if labels.Equal(ms.lset, lset) {
			return ms
		}
	}
	return nil
}

// Truncate drops every sample older than mint, removes series left empty,
// and refuses later appends older than mint.
func (s *Store) Truncate(mint int64) {
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
func (s *Store) Stats() (series, samples int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.numSeries, s.numSamples
}

// TakeDrops returns the drops counted since the previous call and resets them.
func (s *Store) TakeDrops() Drops {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops
	s.drops = Drops{}
	return d
}
