package imlossprocessor

import (
	"flag"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/golden"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/plogtest"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/pdatatest/ptracetest"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden/*/ from the scenario in faultScenario")

// faultScenario is one of every fault the processor detects. The input files are written
// from it with -update-golden; the expected files were reviewed by hand.
func faultScenario() []lc {
	ms := time.Millisecond
	return []lc{
		// delivered, arriving out of order
		{stage: ack, msg: "ok-1", conv: "s1", dev: "d1", at: 90 * ms, trace: 1},
		{stage: send, msg: "ok-1", conv: "s1", at: 0, trace: 1},
		{stage: persist, msg: "ok-1", conv: "s1", seq: 1, at: 10 * ms, trace: 1},
		{stage: push, msg: "ok-1", conv: "s1", fanout: 1, at: 20 * ms, trace: 1},
		{stage: deliver, msg: "ok-1", conv: "s1", dev: "d1", at: 30 * ms, trace: 1},
		// lost after persist
		{stage: send, msg: "lost-persist", conv: "s1", trace: 2},
		{stage: persist, msg: "lost-persist", conv: "s1", seq: 2, trace: 2},
		// seq 3 never reported anywhere: a gap
		{stage: send, msg: "lost-deliver", conv: "s1", trace: 4},
		{stage: persist, msg: "lost-deliver", conv: "s1", seq: 4, trace: 4},
		{stage: push, msg: "lost-deliver", conv: "s1", dev: "d1", trace: 4},
		{stage: deliver, msg: "lost-deliver", conv: "s1", dev: "d1", trace: 4},
		{stage: deliver, msg: "lost-deliver", conv: "s1", dev: "d1", trace: 4}, // duplicate
		// persist failed, never retried
		{stage: send, msg: "db-failed", conv: "s2", trace: 5},
		{stage: persist, msg: "db-failed", conv: "s2", seq: 1, failed: true, trace: 5},
		// persist failed, retried successfully, delivered
		{stage: send, msg: "db-retried", conv: "s2", trace: 6},
		{stage: persist, msg: "db-retried", conv: "s2", seq: 2, failed: true, at: 5 * ms, trace: 6},
		{stage: persist, msg: "db-retried", conv: "s2", seq: 2, at: 25 * ms, trace: 6},
		{stage: push, msg: "db-retried", conv: "s2", dev: "d9", at: 30 * ms, trace: 6},
		{stage: ack, msg: "db-retried", conv: "s2", dev: "d9", at: 150 * ms, trace: 6},
		// group of three devices; one offline and never back, one online that never acks
		{stage: send, msg: "grp-1", conv: "g1", trace: 7},
		{stage: persist, msg: "grp-1", conv: "g1", seq: 1, trace: 7},
		{stage: push, msg: "grp-1", conv: "g1", fanout: 3, dev: "a", trace: 7},
		{stage: push, msg: "grp-1", conv: "g1", fanout: 3, dev: "b", trace: 7},
		{stage: push, msg: "grp-1", conv: "g1", fanout: 3, dev: "c", offline: true, trace: 7},
		{stage: deliver, msg: "grp-1", conv: "g1", dev: "a", trace: 7},
		{stage: ack, msg: "grp-1", conv: "g1", dev: "a", at: 40 * ms, trace: 7},
		{stage: deliver, msg: "grp-1", conv: "g1", dev: "b", trace: 7},
	}
}

func TestGoldenTraces(t *testing.T) {
	dir := filepath.Join("testdata", "golden", "traces")
	if *updateGolden {
		require.NoError(t, golden.WriteTraces(t, filepath.Join(dir, "input.yaml"), spansOf(time.Time{}, faultScenario()...)))
	}
	input, err := golden.ReadTraces(filepath.Join(dir, "input.yaml"))
	require.NoError(t, err)

	cfg := defaultCfg()
	// One shard: the golden file fixes how outcomes are batched into resources (each shard
	// hands its own batch to the emitter).
	cfg.Shards = 1
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()
	require.NoError(t, h.traces.ConsumeTraces(t.Context(), input))
	h.advance(cfg.AckTimeout)
	h.advance(cfg.OfflineTimeout)

	got := ptrace.NewTraces()
	for _, td := range h.tsink.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			if attr(rs.Resource().Attributes(), "service.name") == cfg.Outcomes.ServiceName {
				rs.CopyTo(got.ResourceSpans().AppendEmpty())
			}
		}
	}
	expectedFile := filepath.Join(dir, "expected.yaml")
	if *updateGolden {
		require.NoError(t, golden.WriteTraces(t, expectedFile, got))
	}
	expected, err := golden.ReadTraces(expectedFile)
	require.NoError(t, err)
	require.NoError(t, ptracetest.CompareTraces(expected, got,
		ptracetest.IgnoreResourceSpansOrder(), ptracetest.IgnoreSpansOrder()))
}

func TestGoldenLogs(t *testing.T) {
	dir := filepath.Join("testdata", "golden", "logs")
	if *updateGolden {
		require.NoError(t, golden.WriteLogs(t, filepath.Join(dir, "input.yaml"), logsOf(time.Time{}, faultScenario()...)))
	}
	input, err := golden.ReadLogs(filepath.Join(dir, "input.yaml"))
	require.NoError(t, err)

	cfg := defaultCfg()
	// One shard: the golden file fixes how outcomes are batched into resources (each shard
	// hands its own batch to the emitter).
	cfg.Shards = 1
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()
	require.NoError(t, h.logs.ConsumeLogs(t.Context(), input))
	h.advance(cfg.AckTimeout)
	h.advance(cfg.OfflineTimeout)

	got := plog.NewLogs()
	for _, ld := range h.lsink.AllLogs() {
		for _, rl := range ld.ResourceLogs().All() {
			if attr(rl.Resource().Attributes(), "service.name") == cfg.Outcomes.ServiceName {
				rl.CopyTo(got.ResourceLogs().AppendEmpty())
			}
		}
	}
	expectedFile := filepath.Join(dir, "expected.yaml")
	if *updateGolden {
		require.NoError(t, golden.WriteLogs(t, expectedFile, got))
	}
	expected, err := golden.ReadLogs(expectedFile)
	require.NoError(t, err)
	require.NoError(t, plogtest.CompareLogs(expected, got,
		plogtest.IgnoreResourceLogsOrder(), plogtest.IgnoreLogRecordsOrder()))
}
