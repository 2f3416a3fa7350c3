package state

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/connectors/sloconnector/internal/window"
)

// sample is also the content of testdata/v1.bin, written by the version 1 encoder, except
// for the retractions, which version 1 could not hold.
func sample() *SLO {
	return &SLO{
		Dimensions: []string{"service.name", "im.conversation.type"},
		Series: []Series{
			{
				Values:  []string{"gateway", ""},
				Present: []bool{true, false},
				Start:   time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC),
				Total:   1000,
				Good:    998,
				Levels: []window.LevelState{
					{Width: time.Minute, Buckets: []window.Bucket{{Index: 29386200, Counts: window.Counts{Total: 10, Good: 9}}}},
					{Width: time.Hour, Buckets: []window.Bucket{{Index: 489770, Counts: window.Counts{Total: 1000, Good: 998}}}},
				},
			},
			{
				Overflow: true,
				Values:   []string{"", ""},
				Present:  []bool{false, false},
				Start:    time.Date(2026, 11, 21, 10, 5, 0, 0, time.UTC),
				Total:    3,
				Good:     0,
				Levels:   []window.LevelState{{Width: time.Minute}},
			},
		},
	}
}

// withRetractions adds what version 2 can hold: retracted events, and a bucket holding a
// retraction without the loss it corrects (good above total).
func withRetractions() *SLO {
	s := sample()
	s.Series[0].Good, s.Series[0].Retracted = 999, 3
	s.Series[0].Levels[0].Buckets = append(s.Series[0].Levels[0].Buckets,
		window.Bucket{Index: 29386201, Counts: window.Counts{Total: 0, Good: 2}})
	s.Series[1].Good, s.Series[1].Retracted = 4, 4 // more good than total
	return s
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	in := withRetractions()
	b := Encode(in)
	out, err := Decode(b)
	require.NoError(t, err)
	// Encode writes empty bucket lists as a count of zero; Decode returns them non-nil.
	in.Series[1].Levels[0].Buckets = []window.Bucket{}
	assert.Equal(t, in, out)
}

// TestDecodeVersion1 keeps the state saved before retractions existed loadable.
func TestDecodeVersion1(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("testdata", "v1.bin"))
	require.NoError(t, err)
	require.Equal(t, "SLO\x01", string(b[:4]))
	out, err := Decode(b)
	require.NoError(t, err)
	want := sample()
	want.Series[1].Levels[0].Buckets = []window.Bucket{}
	assert.Equal(t, want, out)
	// Re-saved, it is written in the current version.
	assert.Equal(t, "SLO\x02", string(Encode(out)[:4]))
}

func TestDecodeChecksGoodEvents(t *testing.T) {
	t.Parallel()
	s := sample()
	s.Series[1].Good = 4 // 3 total, no retractions
	_, err := Decode(Encode(s))
	assert.EqualError(t, err, "series 1: good events 4 exceed total 3 plus retracted 0")
	s.Series[1].Retracted = 5 // more retractions than good events
	_, err = Decode(Encode(s))
	assert.EqualError(t, err, "series 1: good events 4 exceed total 3 plus retracted 5")

	// Version 1 had no retractions: a bucket with more good than total events is corrupt.
	v1, err := os.ReadFile(filepath.Join("testdata", "v1.bin"))
	require.NoError(t, err)
	i := bytes.Index(v1, []byte{0x0a, 0x09}) // the first bucket's total 10, good 9
	require.Positive(t, i)
	v1 = slices.Clone(v1)
	v1[i+1] = 0x0b
	_, err = Decode(v1)
	assert.EqualError(t, err, "series 0: bucket 29386200: good events exceed total")
}

func TestDecodeRejectsCorruptInput(t *testing.T) {
	t.Parallel()
	b := Encode(withRetractions())
	for n := range b {
		_, err := Decode(b[:n])
		assert.Error(t, err, "prefix of %d bytes", n)
	}
	_, err := Decode(append(append([]byte(nil), b...), 0))
	assert.EqualError(t, err, "1 bytes after the last series")
	_, err = Decode([]byte("SLO\x03"))
	assert.EqualError(t, err, "not an slo state value (or an unknown format version)")
	// A huge element count must not allocate.
	for _, v := range []string{"SLO\x01", "SLO\x02"} {
		_, err = Decode([]byte(v + "\xff\xff\xff\xff\x0f"))
		assert.EqualError(t, err, "state claims 4294967295 elements in 0 bytes")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(withRetractions()))
	if v1, err := os.ReadFile(filepath.Join("testdata", "v1.bin")); err == nil {
		f.Add(v1)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must survive a round trip unchanged (varints may be non-canonical
		// in the input, so the bytes themselves can differ).
		again, err := Decode(Encode(s))
		require.NoError(t, err)
		assert.Equal(t, s, again)
	})
}
