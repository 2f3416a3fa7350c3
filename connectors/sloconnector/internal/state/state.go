// Package state encodes the persisted state of one SLO (its series, cumulative counters and
// rolling-window buckets) for a storage extension. The format is a compact binary one because
// a 30-day window holds hundreds of buckets per series and is saved on every flush.
//
// Decoding treats its input as untrusted: a corrupt or truncated value returns an error, never
// panics, and never allocates more than the input could describe.
package state // import "github.com/imcol/imcol/connectors/sloconnector/internal/state"

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/imcol/imcol/connectors/sloconnector/internal/window"
)

// magic starts every value; its last byte is the format version. Version 2 added the
// retracted counter of each series; version 1 values (written before) still decode, with no
// retracted events.
var (
	magic   = []byte("SLO\x02")
	magicV1 = []byte("SLO\x01")
)

// SLO is the persisted state of one SLO.
type SLO struct {
	// Dimensions are the configured dimension names, so a configuration change can be detected.
	Dimensions []string
	Series     []Series
}

// Series is one series of an SLO.
type Series struct {
	Overflow bool
	// Values holds one entry per dimension; Present says whether the event had the attribute.
	Values  []string
	Present []bool
	Start   time.Time
	Total   uint64
	// Good counts the good events, the retracted ones included.
	Good uint64
	// Retracted counts the retractions: good events without a total event (version 2 on).
	Retracted uint64
	// Levels are the rolling-window buckets. A bucket's Good includes its retractions, so it
	// may exceed its Total.
	Levels []window.LevelState
}

// Encode writes s in the binary format.
func Encode(s *SLO) []byte {
	b := append([]byte(nil), magic...)
	b = appendStrings(b, s.Dimensions)
	b = binary.AppendUvarint(b, uint64(len(s.Series)))
	for i := range s.Series {
		sr := &s.Series[i]
		flags := byte(0)
		if sr.Overflow {
			flags = 1
		}
		b = append(b, flags)
		b = appendStrings(b, sr.Values)
		for _, p := range sr.Present {
			if p {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
		b = binary.AppendVarint(b, sr.Start.UnixNano())
		b = binary.AppendUvarint(b, sr.Total)
		b = binary.AppendUvarint(b, sr.Good)
		b = binary.AppendUvarint(b, sr.Retracted)
		b = binary.AppendUvarint(b, uint64(len(sr.Levels)))
		for _, l := range sr.Levels {
			b = binary.AppendVarint(b, int64(l.Width))
			b = binary.AppendUvarint(b, uint64(len(l.Buckets)))
			for _, bk := range l.Buckets {
				b = binary.AppendVarint(b, bk.Index)
				b = binary.AppendUvarint(b, bk.Counts.Total)
				b = binary.AppendUvarint(b, bk.Counts.Good)
			}
		}
	}
	return b
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errTruncated = errors.New("truncated state")

type reader struct {
	b       []byte
	version int
}

func (r *reader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		return 0, errTruncated
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) varint() (int64, error) {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		return 0, errTruncated
	}
	r.b = r.b[n:]
	return v, nil
}

func (r *reader) byte() (byte, error) {
	if len(r.b) == 0 {
		return 0, errTruncated
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v, nil
}

// count reads a length and checks that at least minSize bytes per element remain.
func (r *reader) count(minSize int) (int, error) {
	n, err := r.uvarint()
	if err != nil {
		return 0, err
	}
	if n > uint64(len(r.b)/minSize) {
		return 0, fmt.Errorf("state claims %d elements in %d bytes", n, len(r.b))
	}
	return int(n), nil
}

func (r *reader) strings() ([]string, error) {
	n, err := r.count(1)
	if err != nil {
		return nil, err
	}
	out := make([]string, n)
	for i := range out {
		l, err := r.count(1)
		if err != nil {
			return nil, err
		}
		out[i] = string(r.b[:l])
		r.b = r.b[l:]
	}
	return out, nil
}

// Decode parses a value written by Encode, in the current format or in version 1.
func Decode(b []byte) (*SLO, error) {
	var version int
	switch {
	case bytes.HasPrefix(b, magic):
		version = 2
	case bytes.HasPrefix(b, magicV1):
		version = 1
	default:
		return nil, errors.New("not an slo state value (or an unknown format version)")
	}
	r := &reader{b: b[len(magic):], version: version}
	s := &SLO{}
	var err error
	if s.Dimensions, err = r.strings(); err != nil {
		return nil, err
	}
	// A series takes at least 6 bytes: flags, value count, start, total, good, (retracted,)
	// level count.
	n, err := r.count(6)
	if err != nil {
		return nil, err
	}
	s.Series = make([]Series, n)
	for i := range s.Series {
		if err := r.series(&s.Series[i], len(s.Dimensions)); err != nil {
			return nil, fmt.Errorf("series %d: %w", i, err)
		}
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last series", len(r.b))
	}
	return s, nil
}

func (r *reader) series(sr *Series, dims int) error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	sr.Overflow = flags&1 == 1
	if sr.Values, err = r.strings(); err != nil {
		return err
	}
	if len(sr.Values) != dims {
		return fmt.Errorf("%d values for %d dimensions", len(sr.Values), dims)
	}
	sr.Present = make([]bool, dims)
	for j := range sr.Present {
		p, perr := r.byte()
		if perr != nil {
			return perr
		}
		sr.Present[j] = p == 1
	}
	start, err := r.varint()
	if err != nil {
		return err
	}
	sr.Start = time.Unix(0, start).UTC()
	if sr.Total, err = r.uvarint(); err != nil {
		return err
	}
	if sr.Good, err = r.uvarint(); err != nil {
		return err
	}
	if r.version >= 2 {
		if sr.Retracted, err = r.uvarint(); err != nil {
			return err
		}
	}
	// Only retractions add good events without total ones.
	if sr.Retracted > sr.Good || sr.Good-sr.Retracted > sr.Total {
		return fmt.Errorf("good events %d exceed total %d plus retracted %d", sr.Good, sr.Total, sr.Retracted)
	}
	nl, err := r.count(2)
	if err != nil {
		return err
	}
	sr.Levels = make([]window.LevelState, nl)
	for j := range sr.Levels {
		l := &sr.Levels[j]
		w, err := r.varint()
		if err != nil {
			return err
		}
		if w <= 0 {
			return fmt.Errorf("bucket width %d", w)
		}
		l.Width = time.Duration(w)
		nb, err := r.count(3)
		if err != nil {
			return err
		}
		l.Buckets = make([]window.Bucket, nb)
		for k := range l.Buckets {
			bk := &l.Buckets[k]
			if bk.Index, err = r.varint(); err != nil {
				return err
			}
			if bk.Counts.Total, err = r.uvarint(); err != nil {
				return err
			}
			if bk.Counts.Good, err = r.uvarint(); err != nil {
				return err
			}
			// Version 1 had no retractions; since version 2 a bucket's good events may
			// exceed its total (a retraction without the loss it corrects).
			if r.version == 1 && bk.Counts.Good > bk.Counts.Total {
				return fmt.Errorf("bucket %d: good events exceed total", bk.Index)
			}
		}
	}
	return nil
}
