package state

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/connectors/sloconnector/internal/window"
)

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

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	in := sample()
	b := Encode(in)
	out, err := Decode(b)
	require.NoError(t, err)
	// Encode writes empty bucket lists as a count of zero; Decode returns them non-nil.
	in.Series[1].Levels[0].Buckets = []window.Bucket{}
	assert.Equal(t, in, out)
}

func TestDecodeRejectsCorruptInput(t *testing.T) {
	t.Parallel()
	b := Encode(sample())
	for n := range b {
		_, err := Decode(b[:n])
		assert.Error(t, err, "prefix of %d bytes", n)
	}
	_, err := Decode(append(append([]byte(nil), b...), 0))
	assert.EqualError(t, err, "1 bytes after the last series")
	_, err = Decode([]byte("SLO\x02"))
	assert.EqualError(t, err, "not an slo state value (or an unknown format version)")
	// A huge element count must not allocate.
	_, err = Decode([]byte("SLO\x01\xff\xff\xff\xff\x0f"))
	assert.EqualError(t, err, "state claims 4294967295 elements in 0 bytes")
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(sample()))
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
