package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/testbed/harness"
)

func TestSendsAndWritesTheTruth(t *testing.T) {
	sink, err := harness.NewSink("127.0.0.1:0", harness.SinkOptions{})
	require.NoError(t, err)
	defer sink.Stop()
	truth := filepath.Join(t.TempDir(), "truth.jsonl")
	var out bytes.Buffer
	err = run([]string{
		"-endpoint", sink.Endpoint(), "-messages", "80", "-rate", "2000", "-signals", "mixed",
		"-faults", "loss_push=0.5", "-truth", truth, "-progress", "0",
		"-ack-timeout", "1s", "-offline-timeout", "6s", "-reorder-window", "1s", "-tick-interval", "100ms", "-margin", "500ms",
		"-allowed-lateness", "200ms", "-source-idle-timeout", "1s", "-max-source-lag", "2s", "-lag", "gateway=300ms",
	}, &out)
	require.NoError(t, err, out.String())
	assert.Contains(t, out.String(), "imload: done")
	assert.Contains(t, out.String(), "loss_push")
	assert.Contains(t, out.String(), "lags im-gateway=300ms/300ms")
	spans, logs, _, _ := sink.Counts()
	assert.Positive(t, spans)
	assert.Positive(t, logs)

	f, err := os.Open(truth)
	require.NoError(t, err)
	defer f.Close()
	lines := 0
	classes := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l truthLine
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		require.NotEmpty(t, l.MessageID)
		require.NotEmpty(t, l.Expect)
		require.NotEmpty(t, l.Deadline)
		classes[l.Class]++
		lines++
	}
	require.NoError(t, sc.Err())
	assert.Equal(t, 80, lines)
	assert.Positive(t, classes["loss_push"])
}

func TestRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-endpoint", "10.1.2.3:4317", "-messages", "1"},
		{"-faults", "nope=1", "-messages", "1"},
		{"-signals", "gateway=metrics", "-messages", "1"},
		{"-duration", "0s"},
		{"-rate", "0", "-messages", "1"},
		{"extra"},
		{"-lag", "gateway", "-messages", "1"},
		{"-lag", "nope=1s", "-messages", "1"},
	} {
		var out bytes.Buffer
		assert.Error(t, run(append(args, "-progress", "0"), &out), "%v", args)
	}
}
