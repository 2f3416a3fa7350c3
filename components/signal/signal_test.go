package signal

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnmarshalText(t *testing.T) {
	var s Signal
	require.NoError(t, s.UnmarshalText([]byte("logs")))
	assert.Equal(t, Logs, s)
	require.NoError(t, s.UnmarshalText([]byte("traces")))
	assert.Equal(t, Traces, s)
	assert.EqualError(t, s.UnmarshalText([]byte("metrics")), `unknown signal "metrics" (want traces or logs)`)
}
