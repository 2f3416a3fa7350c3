// Package seqgap finds missing sequence numbers in one conversation. Its state is a
// high-water mark and a short list of missing ranges, so memory does not depend on how
// many numbers are missing: a hostile jump of 2^63 costs one anomaly, not 2^63 entries.
package seqgap // import "github.com/imcol/imcol/processors/imlossprocessor/internal/seqgap"

// MaxRanges bounds the open (not yet confirmed) gaps per conversation. A conversation
// with more open gaps than this inside one reorder window is broken, not merely reordered;
// the oldest gap is then confirmed early.
const MaxRanges = 16

// Range is an open gap: Lo..Hi (inclusive) not seen yet, confirmed at Deadline unless filled.
type Range struct {
	Lo, Hi   int64
	Deadline int64
	// Sink records which pipeline revealed the gap, so its outcome goes back there.
	Sink uint8
}

// Size is the number of missing sequence numbers.
func (r Range) Size() uint64 { return uint64(r.Hi-r.Lo) + 1 }

// Detector is the per-conversation state. The zero value is ready to use.
type Detector struct {
	max    int64
	init   bool
	ranges []Range
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
		res.Confirmed, res.HasConfirmed = d.fill(seq)
	}
	return res
}

// fill removes seq from the open range containing it, if any.
func (d *Detector) fill(seq int64) (Range, bool) {
	for i := range d.ranges {
		r := &d.ranges[i]
		if seq < r.Lo || seq > r.Hi {
			continue
		}
		switch {
		case r.Lo == r.Hi:
			d.ranges = append(d.ranges[:i], d.ranges[i+1:]...)
		case seq == r.Lo:
			r.Lo++
		case seq == r.Hi:
			r.Hi--
		default:
			// Splitting keeps deadline order: both halves share the original deadline and
			// stay at the original position.
			right := Range{Lo: seq + 1, Hi: r.Hi, Deadline: r.Deadline, Sink: r.Sink}
			r.Hi = seq - 1
			d.ranges = append(d.ranges, Range{})
			copy(d.ranges[i+2:], d.ranges[i+1:])
			d.ranges[i+1] = right
			return d.trim()
		}
		return Range{}, false
	}
	// Not missing: a retry or duplicate of a seq already seen, or one before the baseline.
	return Range{}, false
}

func (d *Detector) trim() (Range, bool) {
	if len(d.ranges) <= MaxRanges {
		return Range{}, false
	}
	oldest := d.ranges[0]
	d.ranges = append(d.ranges[:0], d.ranges[1:]...)
	return oldest, true
}

// Expire removes and returns (appended to dst) the gaps whose deadline is <= now. Deadlines
// are event times, which need not grow with the order seqs arrive in, so every range is checked.
func (d *Detector) Expire(now int64, dst []Range) []Range {
	kept := d.ranges[:0]
	for _, r := range d.ranges {
		if r.Deadline <= now {
			dst = append(dst, r)
		} else {
			kept = append(kept, r)
		}
	}
	d.ranges = kept
	if len(d.ranges) == 0 {
		d.ranges = nil
	}
	return dst
}

// Pending reports whether gaps are waiting for their reorder window.
func (d *Detector) Pending() bool { return len(d.ranges) > 0 }

// OpenRanges returns the open gaps, oldest first (for snapshots).
func (d *Detector) OpenRanges() []Range { return d.ranges }

// State returns the high-water mark (for snapshots).
func (d *Detector) State() (maxSeq int64, initialised bool) { return d.max, d.init }

// Restore rebuilds a detector from a snapshot, shifting deadlines by offset. Ranges that
// the current limits could not have produced are dropped: a snapshot is input too.
func Restore(maxSeq int64, initialised bool, ranges []Range, offset int64, maxGap uint64) Detector {
	d := Detector{max: maxSeq, init: initialised}
	if len(ranges) > MaxRanges {
		ranges = ranges[len(ranges)-MaxRanges:]
	}
	for _, r := range ranges {
		if r.Lo > r.Hi || r.Lo < 0 || r.Hi >= maxSeq || r.Size() > maxGap {
			continue
		}
		r.Deadline += offset
		d.ranges = append(d.ranges, r)
	}
	return d
}
