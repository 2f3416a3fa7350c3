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
				{Variant: scenarios.VariantIM, Steps: []scenarios.StepResult{step}, MaxZeroDropRate: 1000, Validations: v,
					Profile: &scenarios.ProfileCapture{Rate: 1000, Seconds: 19, Step: step,
						CPU: &harness.ProfileSummary{SampleType: "cpu", Unit: "nanoseconds", Total: 4e9, Samples: 400, Duration: "19s",
							ByFlat: []harness.ProfileFunc{{Function: "runtime.mallocgc", Flat: 1e9, FlatPercent: 25, Cum: 2e9, CumPercent: 50}},
							ByCum:  []harness.ProfileFunc{{Function: "pkg.(*q[go.shape.interface { X() [2]int }]).Send", Cum: 3e9, CumPercent: 75}},
							Focus:  []harness.ProfileShare{{Match: "imlossprocessor", Value: 5e8, Percent: 12.5}}},
						Problems: []string{"allocs profile: GET failed"}}},
				{Variant: scenarios.VariantBaseline, Steps: []scenarios.StepResult{step}, MaxZeroDropRate: 1000},
			},
			Ratios: []scenarios.Ratio{{Rate: 1000, Against: "baseline", CPUPerMessage: 1.5, RSSAvg: 1.2, RSSMax: 1.1}},
			Criteria: scenarios.Criteria{
				ZeroDrop: scenarios.ZeroDropCriterion{Verdict: scenarios.VerdictMet, IM: 1000, Baseline: 1000, Ratio: 1, Threshold: 0.95},
				CPU: scenarios.CPUCriterion{Verdict: scenarios.VerdictNotMet, Threshold: 1.1, Saturation: 2000, Worst: 1.5, WorstRate: 1000,
					Steps: []scenarios.CPUStepCheck{{Rate: 1000, IM: 300, Baseline: 200, Ratio: 1.5}, {Rate: 2000, Baseline: 150, Missing: true}}},
			},
			Scaling: &scenarios.Scaling{Rates: []float64{1000}, Step: "10s",
				Rows: []scenarios.ScalingRow{
					{CPUs: 1, GOMAXPROCS: 1, CPUList: "0", Affinity: "0", Pinned: true, Steps: []scenarios.StepResult{step}, MaxZeroDropRate: 1000, Saturated: true, CPUPerMessage: 200, RatePerCore: 1000},
					{CPUs: 2, GOMAXPROCS: 2, Affinity: "0-1", PinProblem: "taskset not found", Steps: []scenarios.StepResult{step}, MaxZeroDropRate: 1500, CPUPerMessage: 220, RatePerCore: 750},
				},
				Ratios: []scenarios.ScalingRatio{{CPUs: 2, Against: 1, Rate: 1.5, PerCore: 0.75, CPUPerMessage: 1.1}},
			},
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
	assert.Contains(t, string(tp), "| IM pipeline zero-drop rate ≥ 0.95× the baseline's | **met** | im 1000 msg/s, baseline 1000 msg/s: 1.00× |")
	assert.Contains(t, string(tp), "| CPU per message ≤ 1.10× the baseline at every step up to its saturation | **not met** | baseline saturation 2000 msg/s; worst 1.50× at 1000 msg/s |")
	assert.Contains(t, string(tp), "| 2000 | no step | 150.0 | - | no |")
	assert.Contains(t, string(tp), "| 1 | 1 | 0 | 0 | 1000 | yes | 200.0 | 1000 |")
	assert.Contains(t, string(tp), "| 2 | 2 | **not pinned**: taskset not found | 0-1 | 1500 | no (every step passed) | 220.0 | 750 |")
	assert.Contains(t, string(tp), "2 vs 1 CPUs: highest zero-drop rate 1.50×, per core 0.75×")
	assert.Contains(t, string(tp), "### CPU: 4.00s over 400 samples (19s)")
	assert.Contains(t, string(tp), "| `runtime.mallocgc` | 1.00s | 25.0% | 2.00s | 50.0% |")
	assert.Contains(t, string(tp), "| `pkg.(*q[…]).Send` | 0.00s | 0.0% | 3.00s | 75.0% |")
	assert.Contains(t, string(tp), "- **allocs profile: GET failed**")
	assert.Contains(t, string(tp), "| `imlossprocessor` | 0.50s | 12.5% |")
	assert.Contains(t, string(tp), "| baseline | 1000 | 998 | 20000 | 140000 | 20 | 35 | 200.0 | 200 | 210 | 0 | 20ms | - | - |")
	assert.Contains(t, string(tp), "| im | 1000 | 998 | 20000 | 140000 | 20 | 35 | 200.0 | 200 | 210 | 0 | 20ms | 0 | 0 |")
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
	assert.Contains(t, s, "criterion CPU/message ≤ 1.10× baseline up to its saturation (2000 msg/s): **not met** (worst 1.50× at 1000 msg/s)")
	assert.Contains(t, s, "scaling, 2 CPU (NOT pinned: taskset not found, GOMAXPROCS 2)")
	assert.Contains(t, s, "CPU profile at 1000 msg/s, top flat: runtime.mallocgc 25.0%")
}

func TestRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-scenarios", "nope"},
		{"-rates", "fast"},
		{"-variants", "im,other"},
		{"-signals", "bogus"},
		{"-scaling", "2,1"},
		{"-scaling", "0"},
		{"-scaling-rates", "-5"},
	} {
		var out bytes.Buffer
		assert.Error(t, run(append(args, "-out", t.TempDir()), &out), "%v", args)
	}
}

func TestParseScaling(t *testing.T) {
	got, err := parseScaling("1,2")
	require.NoError(t, err)
	assert.Equal(t, []int{1, 2}, got)
	got, err = parseScaling("none")
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.NotNil(t, got, "an empty list turns the scaling table off; nil would mean the default")
	_, err = parseScaling("1,1")
	assert.ErrorContains(t, err, "must increase")
}
