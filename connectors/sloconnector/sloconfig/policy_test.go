package sloconfig

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// full is the first SLO of the connector's slo/full test config: a 28-day window, one
// default window overridden, one disabled, one added, and budget alerts overridden and added.
func full() SLOConfig {
	return SLOConfig{
		Name: "api-availability", Objective: 0.9995, Window: Duration(28 * 24 * time.Hour),
		SLI: SLIConfig{Ratio: &RatioSLIConfig{Bad: "status.code == STATUS_CODE_ERROR"}},
		Alerting: AlertingConfig{
			Windows: map[string]BurnRateWindowConfig{
				"ticket_slow": {Disabled: true},
				"page_fast":   {BurnRate: 10},
				"page_medium": {Severity: SeverityPage, BurnRate: 8, LongWindow: Duration(3 * time.Hour), ShortWindow: Duration(15 * time.Minute)},
			},
			BudgetAlerts: map[string]BudgetAlertConfig{
				"budget_80": {Severity: SeverityTicket},
				"budget_95": {Consumed: 0.95, Severity: SeverityPage},
			},
		},
	}
}

func TestOverridesMergeWithDefaults(t *testing.T) {
	t.Parallel()
	slo := full()
	// 28d window: the default budget shares give 0.05*672h/6h = 5.6 and 0.1*672h/24h = 2.8.
	assert.Equal(t, []BurnRateWindow{
		{Name: "page_fast", Severity: SeverityPage, BurnRate: 10, LongWindow: time.Hour, ShortWindow: 5 * time.Minute},
		{Name: "page_medium", Severity: SeverityPage, BurnRate: 8, LongWindow: 3 * time.Hour, ShortWindow: 15 * time.Minute},
		{Name: "page_slow", Severity: SeverityPage, BurnRate: 0.05 * 672 / 6, LongWindow: 6 * time.Hour, ShortWindow: 30 * time.Minute},
		{Name: "ticket_fast", Severity: SeverityTicket, BurnRate: 0.1 * 672 / 24, LongWindow: 24 * time.Hour, ShortWindow: 2 * time.Hour},
	}, slo.BurnRateWindows())
	assert.Equal(t, []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 24 * time.Hour}, slo.Windows())
	assert.Equal(t, []BudgetAlert{
		{Name: "budget_50", Consumed: 0.5, Severity: SeverityTicket},
		{Name: "budget_80", Consumed: 0.8, Severity: SeverityTicket},
		{Name: "budget_95", Consumed: 0.95, Severity: SeverityPage},
	}, slo.BudgetAlerts())
	assert.Equal(t, 28*24*time.Hour, slo.EffectiveWindow())
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	slo := SLOConfig{Name: "delivery-latency", Objective: 0.99, SLI: SLIConfig{Latency: &LatencySLIConfig{Threshold: Duration(200 * time.Millisecond)}}}
	// The seed: a 30-day window gives the SRE workbook's 14.4, 6, 3 and 1.
	var rates []float64
	for _, bw := range slo.BurnRateWindows() {
		rates = append(rates, bw.BurnRate)
	}
	assert.InDeltaSlice(t, []float64{14.4, 6, 3, 1}, rates, 1e-9)
	assert.Equal(t, 30*24*time.Hour, slo.EffectiveWindow())
	assert.Equal(t, int64(1), slo.EffectiveMinEvents())
	assert.Equal(t, 1000, slo.EffectiveMaxSeries())
	assert.Equal(t, "traces", string(slo.EffectiveSignal()))
	assert.Equal(t, time.Millisecond, slo.SLI.Latency.UnitDuration())
}
