package workload

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLagRampsInAndKeepsOrder(t *testing.T) {
	l := Lag{Delay: 6 * time.Second, Ramp: 6 * time.Second}
	assert.Zero(t, l.At(0))
	assert.Equal(t, 3*time.Second, l.At(3*time.Second))
	assert.Equal(t, 6*time.Second, l.At(6*time.Second))
	assert.Equal(t, 6*time.Second, l.At(time.Minute))
	assert.Equal(t, 6*time.Second, Lag{Delay: 6 * time.Second}.At(0), "no ramp: a step")
	prev := time.Duration(-1)
	for due := time.Duration(0); due < 10*time.Second; due += 7 * time.Millisecond {
		out := due + l.At(due)
		require.Greater(t, out, prev, "a service's events keep their order")
		prev = out
	}
}

func TestParseLags(t *testing.T) {
	ls, err := ParseLags("im-gateway=10s")
	require.NoError(t, err)
	assert.Equal(t, Lag{Delay: 10 * time.Second, Ramp: 10 * time.Second}, ls[ServiceGateway])
	assert.Zero(t, ls[ServicePush])
	assert.Equal(t, 10*time.Second, ls.Max())
	ls, err = ParseLags("all=5s/0s, push=8s")
	require.NoError(t, err)
	assert.Equal(t, Lag{Delay: 5 * time.Second}, ls[ServiceMsg])
	assert.Equal(t, Lag{Delay: 8 * time.Second, Ramp: 8 * time.Second}, ls[ServicePush])
	assert.Equal(t, "im-gateway=5s/0s,im-msg=5s/0s,im-transfer=5s/0s,im-push=8s/8s", ls.String())
	back, err := ParseLags(ls.String())
	require.NoError(t, err)
	assert.Equal(t, ls, back)
	for _, bad := range []string{"gateway", "nope=1s", "gateway=x", "gateway=-1s", "gateway=1s/x", "gateway=2h"} {
		_, err = ParseLags(bad)
		assert.Error(t, err, bad)
	}
	ls, err = ParseLags("")
	require.NoError(t, err)
	assert.True(t, ls.Zero())
	assert.Equal(t, "none", ls.String())
}

type oneMessageSource struct{ msgs [][]Event }

func (f *oneMessageSource) Next() (time.Duration, []Event, bool) {
	if len(f.msgs) == 0 {
		return 0, nil, false
	}
	e := f.msgs[0]
	f.msgs = f.msgs[1:]
	return e[0].Due, e, true
}

func TestLaggedSourceDelaysOnlyTheLaggedService(t *testing.T) {
	var lags Lags
	lags[ServicePush] = Lag{Delay: time.Second}
	src := Lagged(&oneMessageSource{msgs: [][]Event{{
		{Service: ServiceMsg, Start: 10, End: 20, Due: 20},
		{Service: ServicePush, Start: 30, End: 40, Due: 40},
	}}}, lags)
	_, evts, ok := src.Next()
	require.True(t, ok)
	assert.Equal(t, time.Duration(20), evts[0].Due)
	assert.Equal(t, time.Second+40, evts[1].Due)
	assert.Equal(t, time.Duration(40), evts[1].End, "timestamps are the event's own")
}
