// Package seqgap finds missing sequence numbers in one conversation. Its state is a
// high-water mark and short lists of missing ranges (open, and recently confirmed), so memory
// does not depend on how many numbers are missing: a hostile jump of 2^63 costs one anomaly,
// not 2^63 entries.
package seqgap // import "github.com/imcol/imcol/processors/imlossprocessor/internal/seqgap"

import "slices"

// MaxRanges bounds the open (not yet confirmed) gaps per conversation. A conversation
// with more open gaps than this inside one reorder window is broken, not merely reordered;
// the oldest gap is then confirmed early.
const MaxRanges = 16

// MaxConfirmed bounds the confirmed gaps a conversation remembers, so that a seq reported
// lost whose persist arrives late is recognised (and, stamped within its reorder window,
// takes the loss back) instead of passing unnoticed. Older ones are forgotten.
const MaxConfirmed = 8

// Range is an open gap: Lo..Hi (inclusive) not seen yet, confirmed at Deadline unless filled.
type Range struct {
	Lo, Hi   int64
	Deadline int64
	// Sink records which pipeline revealed the gap, so its outcome goes back there.
	Sink uint8
}

// Size is the number of missing sequence numbers.
func (r Range) Size() uint64 { return uint64(r.Hi-r.Lo) + 1 }

// Confirmed is a gap that was reported lost: Range is what of it is still missing, Gap its
// size when it was reported.
type Confirmed struct {
	Range
	Gap uint64
}

// Detector is the per-conversation state. The zero value is ready to use.
type Detector struct {
	max       int64
	init      bool
	ranges    []Range
	confirmed []Confirmed
}

// Result reports what one observation revealed.
type Result struct {
	// Anomaly is set when the jump exceeded maxGap; AnomalyLo is the first missing seq.
	Anomaly     bool
	AnomalyLo   int64
	AnomalySize uint64
	// Confirmed holds a gap confirmed early because MaxRanges was exceeded.
	Confirmed    Range
	HasConfirmed bool
	// Opened is set when a new gap started waiting for its reorder window.
	Opened bool
	// Late is set when seq belongs to a gap already reported lost: LateOf is that gap, as
	// it was reported. The seq persisted within the gap's reorder window when the time
	// observed is <= LateOf.Deadline: its telemetry was merely late, the loss is taken back.
	Late   bool
	LateOf Confirmed
	// Forgotten counts confirmed gaps dropped from memory by this observation.
	Forgotten int
}

// Observe records seq (>= 0) seen at persist at time now. window is the reorder window
// (ns); jumps of more than maxGap missing numbers are anomalies.
func (d *Detector) Observe(seq, now, window int64, maxGap uint64, sink uint8) Result {
	var res Result
	if !d.init {
		// The first seq of a conversation is a baseline: what came before it was never ours to see.
		d.init, d.max = true, seq
		return res
	}
	switch {
	case seq > d.max:
		// Both are >= 0, so the unsigned difference is exact even for a jump of 2^63-1.
		missing := uint64(seq) - uint64(d.max) - 1
		lo := d.max + 1
		d.max = seq
		switch {
		case missing == 0:
		case missing > maxGap:
			res.Anomaly, res.AnomalyLo, res.AnomalySize = true, lo, missing
		default:
			d.ranges = append(d.ranges, Range{Lo: lo, Hi: seq - 1, Deadline: now + window, Sink: sink})
			res.Opened = true
			res.Confirmed, res.HasConfirmed = d.trim()
		}
	default:
		var filled bool
		res.Confirmed, res.HasConfirmed, filled = d.fill(seq)
		if !filled {
			res.LateOf, res.Late = d.fillConfirmed(seq)
		}
	}
	if res.HasConfirmed {
		d.remember(res.Confirmed)
	}
	res.Forgotten = d.forget()
	return res
}

// fill removes seq from the open range containing it, if any (filled), and returns a gap
// confirmed early because the split exceeded MaxRanges.
func (d *Detector) fill(seq int64) (early Range, confirmed, filled bool) {
	i := slices.IndexFunc(d.ranges, func(r Range) bool { return r.contains(seq) })
	if i < 0 {
		// Not missing: a retry or duplicate of a seq already seen, one before the baseline,
		// or one of a gap already confirmed.
		return Range{}, false, false
	}
	var split bool
	if d.ranges, split = cut(d.ranges, i, seq); split {
		early, confirmed = d.trim()
	}
	return early, confirmed, true
}

// fillConfirmed removes seq from the confirmed gap containing it, if any, and returns that
// gap as it was reported.
func (d *Detector) fillConfirmed(seq int64) (Confirmed, bool) {
	i := slices.IndexFunc(d.confirmed, func(c Confirmed) bool { return c.contains(seq) })
	if i < 0 {
		return Confirmed{}, false
	}
	c := d.confirmed[i]
	d.confirmed, _ = cut(d.confirmed, i, seq)
	return c, true
}

func (r Range) contains(seq int64) bool { return seq >= r.Lo && seq <= r.Hi }

// gap is a pointer to an element of either list (Confirmed embeds Range).
type gap[T any] interface {
	*T
	rng() *Range
}

func (r *Range) rng() *Range { return r }

// cut removes seq from list[i], which contains it; split reports that the gap was split in
// two. Both halves keep the original's position, deadline and sink, so deadline order holds.
func cut[T any, P gap[T]](list []T, i int, seq int64) (_ []T, split bool) {
	r := P(&list[i]).rng()
	switch {
	case r.Lo == r.Hi:
		return slices.Delete(list, i, i+1), false
	case seq == r.Lo:
		r.Lo++
	case seq == r.Hi:
		r.Hi--
	default:
		right := list[i]
		P(&right).rng().Lo = seq + 1
		r.Hi = seq - 1
		return slices.Insert(list, i+1, right), true
	}
	return list, false
}

// remember keeps a confirmed gap for the late persists of its seqs.
func (d *Detector) remember(r Range) {
	d.confirmed = append(d.confirmed, Confirmed{Range: r, Gap: r.Size()})
}

// forget drops the oldest confirmed gaps beyond MaxConfirmed and reports how many.
func (d *Detector) forget() int {
	n := len(d.confirmed) - MaxConfirmed
	if n <= 0 {
		return 0
	}
	d.confirmed = slices.Delete(d.confirmed, 0, n)
	return n
}

func (d *Detector) trim() (Range, bool) {
	if len(d.ranges) <= MaxRanges {
		return Range{}, false
	}
	oldest := d.ranges[0]
	d.ranges = append(d.ranges[:0], d.ranges[1:]...)
	return oldest, true
}

// Expire confirms the gaps whose deadline is <= now: it removes them, appends them to dst,
// and remembers them (forgotten: how many older confirmed gaps that pushed out). Deadlines
// are event times, which need not grow with the order seqs arrive in, so every range is checked.
func (d *Detector) Expire(now int64, dst []Range) (_ []Range, forgotten int) {
	kept := d.ranges[:0]
	for _, r := range d.ranges {
		if r.Deadline <= now {
			dst = append(dst, r)
			d.remember(r)
		} else {
			kept = append(kept, r)
		}
	}
	d.ranges = kept
	if len(d.ranges) == 0 {
		d.ranges = nil
	}
	return dst, d.forget()
}

// Pending reports whether gaps are waiting for their reorder window.
func (d *Detector) Pending() bool { return len(d.ranges) > 0 }

// OpenRanges returns the open gaps, oldest first (for snapshots).
func (d *Detector) OpenRanges() []Range { return d.ranges }

// ConfirmedGaps returns the confirmed gaps remembered, oldest first (for snapshots).
func (d *Detector) ConfirmedGaps() []Confirmed { return d.confirmed }

// State returns the high-water mark (for snapshots).
func (d *Detector) State() (maxSeq int64, initialised bool) { return d.max, d.init }

// Restore rebuilds a detector from a snapshot, shifting deadlines by offset. Ranges that
// the current limits could not have produced are dropped: a snapshot is input too.
func Restore(maxSeq int64, initialised bool, ranges []Range, confirmed []Confirmed, offset int64, maxGap uint64) Detector {
	d := Detector{max: maxSeq, init: initialised}
	if len(ranges) > MaxRanges {
		ranges = ranges[len(ranges)-MaxRanges:]
	}
	for _, r := range ranges {
		if r.valid(maxSeq, maxGap) {
			r.Deadline += offset
			d.ranges = append(d.ranges, r)
		}
	}
	if len(confirmed) > MaxConfirmed {
		confirmed = confirmed[len(confirmed)-MaxConfirmed:]
	}
	for _, c := range confirmed {
		if c.valid(maxSeq, maxGap) && c.Size() <= c.Gap {
			c.Deadline += offset
			d.confirmed = append(d.confirmed, c)
		}
	}
	return d
}

func (r Range) valid(maxSeq int64, maxGap uint64) bool {
	return r.Lo <= r.Hi && r.Lo >= 0 && r.Hi < maxSeq && r.Size() <= maxGap
}
