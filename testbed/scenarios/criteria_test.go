package scenarios

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func steps(cpu map[float64]float64, rates ...float64) []StepResult {
	out := make([]StepResult, len(rates))
	for i, r := range rates {
		out[i] = StepResult{Rate: r, CPUPerMessage: cpu[r]}
	}
	return out
}

func TestThroughputCriteriaMet(t *testing.T) {
	base := VariantThroughput{Variant: VariantBaseline, MaxZeroDropRate: 8000, Saturated: true,
		Steps: steps(map[float64]float64{1000: 150, 2000: 100, 8000: 80, 16000: 70}, 1000, 2000, 8000, 16000)}
	im := VariantThroughput{Variant: VariantIM, MaxZeroDropRate: 8000, Saturated: true,
		Steps: steps(map[float64]float64{1000: 165, 2000: 105, 8000: 80, 16000: 200}, 1000, 2000, 8000, 16000)}
	c := throughputCriteria([]VariantThroughput{im, base, {Variant: VariantPeer, MaxZeroDropRate: 1000}})
	assert.Equal(t, VerdictMet, c.ZeroDrop.Verdict)
	assert.InDelta(t, 1.0, c.ZeroDrop.Ratio, 1e-12)
	assert.Equal(t, 8000.0, c.ZeroDrop.IM)
	assert.Equal(t, VerdictMet, c.CPU.Verdict, "1.10× exactly at 1000 is within; 16000 is past the baseline's saturation")
	require.Len(t, c.CPU.Steps, 3)
	assert.Equal(t, 8000.0, c.CPU.Saturation)
	assert.InDelta(t, 1.10, c.CPU.Worst, 1e-12)
	assert.Equal(t, 1000.0, c.CPU.WorstRate)
}

func TestThroughputCriteriaNotMet(t *testing.T) {
	base := VariantThroughput{Variant: VariantBaseline, MaxZeroDropRate: 8000, Saturated: true,
		Steps: steps(map[float64]float64{1000: 150, 2000: 100, 4000: 90, 8000: 80}, 1000, 2000, 4000, 8000)}
	// IM fails at 4000 (its ladder stops there): below 0.95×, and no step at 8000.
	im := VariantThroughput{Variant: VariantIM, MaxZeroDropRate: 2000, Saturated: true,
		Steps: steps(map[float64]float64{1000: 160, 2000: 130, 4000: 95}, 1000, 2000, 4000)}
	c := throughputCriteria([]VariantThroughput{im, base})
	assert.Equal(t, VerdictNotMet, c.ZeroDrop.Verdict)
	assert.InDelta(t, 0.25, c.ZeroDrop.Ratio, 1e-12)
	assert.Equal(t, VerdictNotMet, c.CPU.Verdict)
	require.Len(t, c.CPU.Steps, 4)
	assert.True(t, c.CPU.Steps[0].Met, "160/150 = 1.07")
	assert.False(t, c.CPU.Steps[1].Met, "130/100 = 1.30")
	assert.True(t, c.CPU.Steps[2].Met, "95/90")
	assert.True(t, c.CPU.Steps[3].Missing)
	assert.False(t, c.CPU.Steps[3].Met)
	assert.InDelta(t, 1.30, c.CPU.Worst, 1e-12)
	assert.Equal(t, 2000.0, c.CPU.WorstRate)
	assert.Contains(t, c.CPU.Note, "stopped before")
}

func TestThroughputCriteriaNotEvaluated(t *testing.T) {
	im := VariantThroughput{Variant: VariantIM, MaxZeroDropRate: 1000, Steps: steps(nil, 1000)}
	c := throughputCriteria([]VariantThroughput{im, {Variant: VariantPeer, MaxZeroDropRate: 1000}})
	assert.Equal(t, VerdictNotEvaluated, c.ZeroDrop.Verdict)
	assert.Equal(t, VerdictNotEvaluated, c.CPU.Verdict)
	c = throughputCriteria([]VariantThroughput{im, {Variant: VariantBaseline, Saturated: true, Steps: steps(nil, 1000)}})
	assert.Equal(t, VerdictNotEvaluated, c.ZeroDrop.Verdict)
	assert.Contains(t, c.ZeroDrop.Note, "baseline passed no step")
	// A ladder that never saturated is said to be one.
	c = throughputCriteria([]VariantThroughput{im, {Variant: VariantBaseline, MaxZeroDropRate: 1000, Steps: steps(map[float64]float64{1000: 10}, 1000)}})
	assert.Equal(t, VerdictMet, c.ZeroDrop.Verdict)
	assert.Contains(t, c.ZeroDrop.Note, "above the ladder")
	assert.Equal(t, VerdictNotMet, c.CPU.Verdict, "im's CPU per message is unmeasured (0): not met, not divided by zero into a pass")
}

func TestScalingFiguresAndRatios(t *testing.T) {
	one := ScalingRow{CPUs: 1, MaxZeroDropRate: 4000, Steps: steps(map[float64]float64{2000: 120, 4000: 100, 6000: 90}, 2000, 4000, 6000)}
	two := ScalingRow{CPUs: 2, MaxZeroDropRate: 6000, Steps: steps(map[float64]float64{2000: 130, 4000: 110, 6000: 105}, 2000, 4000, 6000)}
	scalingFigures(&one)
	scalingFigures(&two)
	assert.Equal(t, 4000.0, one.RatePerCore)
	assert.Equal(t, 100.0, one.CPUPerMessage)
	assert.Equal(t, 3000.0, two.RatePerCore)
	assert.Equal(t, 105.0, two.CPUPerMessage)
	rs := scalingRatios([]ScalingRow{one, two})
	require.Len(t, rs, 1)
	assert.Equal(t, ScalingRatio{CPUs: 2, Against: 1, Rate: 1.5, PerCore: 0.75, CPUPerMessage: 1.05}, rs[0])
	assert.Nil(t, scalingRatios([]ScalingRow{one}))

	none := ScalingRow{CPUs: 1, Steps: steps(map[float64]float64{2000: 120}, 2000)}
	scalingFigures(&none)
	assert.Zero(t, none.CPUPerMessage, "no zero-drop step, no figure")
}
