package imsemconv

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStageRoundTrip(t *testing.T) {
	for i, s := range Stages {
		got, ok := ParseStage(s.String())
		require.True(t, ok)
		assert.Equal(t, s, got)
		if i > 0 {
			assert.Greater(t, s, Stages[i-1], "stages must be ordered")
		}
	}
}

func TestStageUnmarshalText(t *testing.T) {
	var s Stage
	require.NoError(t, s.UnmarshalText([]byte("deliver")))
	assert.Equal(t, StageDeliver, s)
	assert.EqualError(t, s.UnmarshalText([]byte("sent")), `unknown stage "sent" (want one of send, persist, push, deliver, ack)`)
	_, ok := ParseStage("unknown")
	assert.False(t, ok)
	assert.Equal(t, "unknown", Stage(200).String())
}
