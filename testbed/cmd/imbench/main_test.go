package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/scenarios"
)

func validation() harness.Validations {
	return harness.Validations{{
		Signal: "traces", Messages: 10, Records: 11,
		Classes: []harness.ClassQuality{
			{Label: "delivered@ack", Expected: 9, TP: 9, Precision: 1, Recall: 1, Latency: harness.Latency{Count: 9, P50: 40, P95: 90, Max: 120}},
			{Label: "lost/ack_timeout@push", Expected: 1, TP: 1, FP: 1, Precision: 0.5, Recall: 1},
		},
		Confusion: map[string]map[string]int64{"delivered@ack": {"delivered@ack": 8, "lost/ack_timeout@push": 1}, "lost/ack_timeout@push": {"lost/ack_timeout@push": 1}},
		Faults:    []harness.FaultQuality{{Class: faults.ClassNone, Messages: 9, Exact: 8}},
		Examples:  []string{"message 3 (none): unexpected lost/ack_timeout@push"},
	}}
}

func TestReportsRenderEveryScenario(t *testing.T) {
	v := validation()
	step := scenarios.StepResult{Rate: 1000, Achieved: 998, Messages: 20000, Items: 140000, KeptUp: true, MaxLag: "20ms",
		Usage: harness.Usage{Samples: 20, CPUSeconds: 4, CPUAvg: 20, CPUMax: 35, RSSAvg: 200 << 20, RSSMax: 210 << 20}, CPUPerMessage: 200}
	results := map[string]any{
		"correctness": &scenarios.CorrectnessResult{Options: scenarios.DefaultCorrectness(), Validations: v,
			SLO: []scenarios.SLOCheck{{Name: "delivery-traces", Events: 10, WantEvents: 10}}},
		"throughput": &scenarios.ThroughputResult{
			Options: scenarios.DefaultThroughput(),
			Variants: []scenarios.VariantThroughput{
				{Variant: scenarios.VariantIM, Steps: []scenarios.StepResult{step}, MaxZeroDropRate: 1000, Validations: v},
				{Variant: scenarios.VariantBaseline, Steps: []scenarios.StepResult{step}, MaxZeroDropRate: 1000},
			},
			Ratios: []scenarios.Ratio{{Rate: 1000, Against: "baseline", CPUPerMessage: 1.5, RSSAvg: 1.2, RSSMax: 1.1}},
		},
		"memory": &scenarios.MemoryResult{
			Options:          scenarios.DefaultMemory(),
			Variants:         []scenarios.VariantMemory{{Variant: scenarios.VariantIM, Messages: 1000, Tracked: 1000}},
			Ratios:           []scenarios.Ratio{{Against: "peer", CPUPerMessage: 2, RSSAvg: 3, RSSMax: 3}},
			BytesPerInFlight: 180,
		},
		"scale-out": &scenarios.CorrectnessResult{Options: scenarios.DefaultScaleOut(), Validations: v,
			Collectors: []scenarios.CollectorShare{
				{Name: "gw", Role: "gateway", Accepted: 100},
				{Name: "b1", Role: "backend", Accepted: 40, Outcomes: 4},
				{Name: "b2", Role: "backend", Accepted: 60, Outcomes: 6},
			}},
		"restart":        []*scenarios.RestartResult{{Mode: scenarios.RestartGraceful, Validations: v, Downtime: "1s"}},
		"backend-outage": &scenarios.OutageResult{Accepted: 10, Delivered: 10, Outage: "5s", Validations: v},
		"lag": []*scenarios.LagResult{
			{Options: scenarios.DefaultLag(scenarios.LagGateway), Mode: scenarios.LagGateway, Lags: "im-gateway=6s/3s",
				TimedRun: scenarios.TimedRun{Validations: v, Latency: scenarios.LatencyCheck{What: "w", Checked: 3, Over: 1, Examples: []string{"message 4 late"}}}},
			{Options: scenarios.DefaultLag(scenarios.LagStall), Mode: scenarios.LagStall, TimedRun: scenarios.TimedRun{Validations: v},
				Stall: &scenarios.StallInfo{Duration: "9s", MaxHeld: 2, Abandoned: 3}},
		},
		"dead-service": &scenarios.DeadServiceResult{Options: scenarios.DefaultDeadService(), Service: "im-gateway", StoppedAt: "2.5s",
			TimedRun: scenarios.TimedRun{Validations: v}},
	}
	dir := t.TempDir()
	sum := &summaryReport{Date: "2026-01-02"}
	for name, res := range results {
		rep := report{Scenario: name, Date: "2026-01-02", Took: time.Second.String(), Result: res, Problems: "something odd"}
		require.NoError(t, writeReport(dir, rep))
		md, err := os.ReadFile(filepath.Join(dir, "2026-01-02-"+name+".md"))
		require.NoError(t, err)
		assert.Contains(t, string(md), "# imcol testbed: "+name)
		assert.Contains(t, string(md), "## Collector configs")
		assert.Contains(t, string(md), "something odd")
		_, err = os.Stat(filepath.Join(dir, "2026-01-02-"+name+".json"))
		require.NoError(t, err)
		sum.add(rep)
	}
	tp, err := os.ReadFile(filepath.Join(dir, "2026-01-02-throughput.md"))
	require.NoError(t, err)
	assert.Contains(t, string(tp), "| 1000 | baseline | 1.50× | 1.20× | 1.10× |")
	assert.Contains(t, string(tp), "| lost/ack_timeout@push | 1 | 1 | 1 | 0 | 0.5000 | 1.0000 |")
	assert.Contains(t, string(tp), "### Outcome records as traces")
	cr, err := os.ReadFile(filepath.Join(dir, "2026-01-02-correctness.md"))
	require.NoError(t, err)
	assert.Contains(t, string(cr), "2026-01-02-throughput.md", "non-performance reports point at the ratios of the run")
	so, err := os.ReadFile(filepath.Join(dir, "2026-01-02-scale-out.md"))
	require.NoError(t, err)
	assert.Contains(t, string(so), "| b2 | backend | 60 | 6 | none |")
	lg, err := os.ReadFile(filepath.Join(dir, "2026-01-02-lag.md"))
	require.NoError(t, err)
	assert.Contains(t, string(lg), "| gateway | im-gateway=6s/3s |")
	assert.Contains(t, string(lg), "sink stalled 9s (held at most 2 requests, 3 abandoned)")
	assert.Contains(t, string(lg), "testbed/configs/stall.yaml")
	s := sum.markdown()
	assert.Contains(t, s, "- lag (gateway): exact")
	assert.Contains(t, s, "- dead-service (im-gateway stops at 2.5s)")
	assert.Contains(t, s, "scale-out (gateway + 2 backends)")
	assert.Contains(t, s, "outcomes per backend 4 / 6")
	assert.Contains(t, s, "bytes per in-flight message")
	assert.Contains(t, s, "lowest precision 0.5000")
}

func TestRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-scenarios", "nope"},
		{"-rates", "fast"},
		{"-variants", "im,other"},
		{"-signals", "bogus"},
	} {
		var out bytes.Buffer
		assert.Error(t, run(append(args, "-out", t.TempDir()), &out), "%v", args)
	}
}
