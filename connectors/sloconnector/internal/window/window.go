// Package window keeps the recent history of one SLO series in fixed time buckets, so that
// event counts over rolling windows (5m to 30d) can be summed with bounded memory.
//
// Windows are served by levels of different bucket widths: short windows by one-minute
// buckets, long ones by coarser buckets, so a 30-day window costs 720 hourly buckets instead
// of 43,200 one-minute ones. A window's sum covers its buckets counted back from the bucket
// that holds "now", that one included: with width g and n buckets, between (n-1)·g and n·g of
// history. The error is at most one bucket, under 5% of the window with the default choice
// of widths (every window gets at least 24 buckets, or one-minute buckets when shorter).
package window // import "github.com/imcol/imcol/connectors/sloconnector/internal/window"

import (
	"fmt"
	"slices"
	"time"
)

// Widths are the bucket widths levels can use, finest first.
var Widths = []time.Duration{time.Minute, 10 * time.Minute, time.Hour}

// minBuckets is how many buckets a window needs at a coarser width before it uses that width.
const minBuckets = 24

// Counts is a pair of event counters. Good may exceed Total: a retraction adds a good event
// without a total one (it corrects a bad event counted earlier, maybe in another bucket), so
// ratios must clamp Good to Total.
type Counts struct {
	Total uint64
	Good  uint64
}

// Add returns the sum of two pairs.
func (c Counts) Add(o Counts) Counts { return Counts{Total: c.Total + o.Total, Good: c.Good + o.Good} }

// Level is one bucket width and how many buckets of it are kept.
type Level struct {
	Width   time.Duration
	Buckets int
}

// Layout says which level serves each window. It is shared by every series of an SLO.
type Layout struct {
	Levels []Level
	// windows maps a window to its level index and bucket count.
	windows map[time.Duration]span
}

type span struct {
	level   int
	buckets int
}

// NewLayout chooses levels for the given windows. Every window must be at least one minute.
func NewLayout(windows []time.Duration) (*Layout, error) {
	l := &Layout{windows: make(map[time.Duration]span, len(windows))}
	sizes := make([]int, len(Widths))
	for _, w := range windows {
		if w < Widths[0] {
			return nil, fmt.Errorf("window %s is shorter than the finest bucket width %s", w, Widths[0])
		}
		lvl := 0
		for i := len(Widths) - 1; i > 0; i-- {
			if w%Widths[i] == 0 && int(w/Widths[i]) >= minBuckets {
				lvl = i
				break
			}
		}
		n := int((w + Widths[lvl] - 1) / Widths[lvl])
		l.windows[w] = span{level: lvl, buckets: n}
		sizes[lvl] = max(sizes[lvl], n)
	}
	// Level indexes in spans refer to Widths; compact them to the levels actually used.
	remap := make([]int, len(Widths))
	for i, n := range sizes {
		if n > 0 {
			remap[i] = len(l.Levels)
			l.Levels = append(l.Levels, Level{Width: Widths[i], Buckets: n})
		}
	}
	for w, s := range l.windows {
		s.level = remap[s.level]
		l.windows[w] = s
	}
	return l, nil
}

// Has reports whether the layout serves window w.
func (l *Layout) Has(w time.Duration) bool {
	_, ok := l.windows[w]
	return ok
}

// ring is a circular array of buckets; head is the index (time / width) of the newest bucket.
type ring struct {
	head  int64
	slots []Counts
}

// Series is the bucketed history of one series.
type Series struct {
	layout *Layout
	rings  []ring
}

// NewSeries returns an empty history with the layout's levels.
func NewSeries(layout *Layout) *Series {
	s := &Series{layout: layout, rings: make([]ring, len(layout.Levels))}
	for i, lvl := range layout.Levels {
		s.rings[i] = ring{head: -1, slots: make([]Counts, lvl.Buckets)}
	}
	return s
}

func bucketIndex(t time.Time, width time.Duration) int64 {
	return t.UnixNano() / int64(width)
}

// advance moves the ring's head forward to idx, clearing the buckets it passes.
func (r *ring) advance(idx int64) {
	if idx <= r.head {
		return
	}
	n := int64(len(r.slots))
	if r.head < 0 || idx-r.head >= n {
		clear(r.slots)
	} else {
		for i := r.head + 1; i <= idx; i++ {
			r.slots[i%n] = Counts{}
		}
	}
	r.head = idx
}

// Add counts events at time t. Events older than a level's history are not counted there;
// with arrival-time bucketing that only happens when the clock steps back.
func (s *Series) Add(t time.Time, c Counts) {
	for i := range s.rings {
		r := &s.rings[i]
		idx := bucketIndex(t, s.layout.Levels[i].Width)
		r.advance(idx)
		n := int64(len(r.slots))
		if idx <= r.head-n {
			continue
		}
		r.slots[idx%n] = r.slots[idx%n].Add(c)
	}
}

// Sum returns the counts over window w ending at now (the bucket holding now included).
// It panics if the layout does not serve w: windows are fixed by configuration.
func (s *Series) Sum(now time.Time, w time.Duration) Counts {
	sp, ok := s.layout.windows[w]
	if !ok {
		panic(fmt.Sprintf("window %s not in layout", w))
	}
	r := &s.rings[sp.level]
	nowIdx := bucketIndex(now, s.layout.Levels[sp.level].Width)
	n := int64(len(r.slots))
	// Buckets in (nowIdx-buckets, nowIdx] that the ring still holds: (head-n, head].
	lo := max(nowIdx-int64(sp.buckets)+1, r.head-n+1)
	hi := min(nowIdx, r.head)
	var sum Counts
	for i := lo; i <= hi; i++ {
		if i < 0 {
			continue
		}
		sum = sum.Add(r.slots[i%n])
	}
	return sum
}

// Empty reports whether no events fell in the layout's history up to now.
func (s *Series) Empty(now time.Time) bool {
	for i := range s.rings {
		r := &s.rings[i]
		n := int64(len(r.slots))
		nowIdx := bucketIndex(now, s.layout.Levels[i].Width)
		for j := max(nowIdx-n+1, r.head-n+1, 0); j <= min(nowIdx, r.head); j++ {
			if r.slots[j%n] != (Counts{}) {
				return false
			}
		}
	}
	return true
}

// Bucket is one non-empty bucket, for persistence.
type Bucket struct {
	Index  int64
	Counts Counts
}

// LevelState is the persisted content of one level.
type LevelState struct {
	Width   time.Duration
	Buckets []Bucket
}

// State returns the non-empty buckets of every level, oldest first.
func (s *Series) State() []LevelState {
	out := make([]LevelState, len(s.rings))
	for i := range s.rings {
		r := &s.rings[i]
		out[i].Width = s.layout.Levels[i].Width
		n := int64(len(r.slots))
		for j := max(r.head-n+1, 0); j <= r.head; j++ {
			if c := r.slots[j%n]; c != (Counts{}) {
				out[i].Buckets = append(out[i].Buckets, Bucket{Index: j, Counts: c})
			}
		}
	}
	return out
}

// Restore adds persisted buckets to the series (to an empty one on restart, or to one that
// already holds buckets when saved series are merged). Levels whose width the layout no
// longer uses are dropped, and buckets that no longer fit a shorter history are skipped, so a
// configuration change after a restart keeps whatever history still applies.
func (s *Series) Restore(levels []LevelState) {
	for _, ls := range levels {
		i := slices.IndexFunc(s.layout.Levels, func(l Level) bool { return l.Width == ls.Width })
		if i < 0 || len(ls.Buckets) == 0 {
			continue
		}
		r := &s.rings[i]
		n := int64(len(r.slots))
		newest := ls.Buckets[0].Index
		for _, b := range ls.Buckets {
			newest = max(newest, b.Index)
		}
		r.advance(newest)
		for _, b := range ls.Buckets {
			if b.Index > r.head-n && b.Index >= 0 {
				r.slots[b.Index%n] = r.slots[b.Index%n].Add(b.Counts)
			}
		}
	}
}
