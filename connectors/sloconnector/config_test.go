package sloconnector

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/confmap/xconfmap"

	"github.com/imcol/imcol/connectors/sloconnector/internal/metadata"
)

func loadConfig(t *testing.T, id component.ID) (*Config, error) {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	sub, err := cm.Sub(id.String())
	require.NoError(t, err)
	cfg := createDefaultConfig().(*Config)
	if err := sub.Unmarshal(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	storageID := component.MustNewIDWithName("file_storage", "slo")
	tests := []struct {
		id       component.ID
		expected *Config
		err      string
	}{
		{
			id: component.NewID(metadata.Type),
			expected: &Config{
				FlushInterval: 15 * time.Second,
				SLOs: []SLOConfig{{
					Name: "api-availability", Objective: 0.9995,
					SLI: SLIConfig{Ratio: &RatioSLIConfig{Bad: "status.code == STATUS_CODE_ERROR"}},
				}},
			},
		},
		{
			id: component.NewIDWithName(metadata.Type, "full"),
			expected: &Config{
				FlushInterval: 30 * time.Second,
				Storage:       &storageID,
				SLOs: []SLOConfig{
					{
						Name: "api-availability", Description: "Gateway API requests that do not fail.",
						Objective: 0.9995, Window: Duration(28 * 24 * time.Hour),
						Dimensions: []string{"service.name"}, MaxSeries: 50, MinEvents: 100,
						SLI: SLIConfig{Ratio: &RatioSLIConfig{Total: "kind == SPAN_KIND_SERVER", Bad: "status.code == STATUS_CODE_ERROR"}},
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
					},
					{
						Name: "delivery-latency", Signal: SignalLogs, Objective: 0.99,
						SLI: SLIConfig{Latency: &LatencySLIConfig{
							Total:     `event_name == "im.message.outcome" and attributes["im.outcome"] == "delivered"`,
							Attribute: "im.delivery.latency_ms", Threshold: Duration(200 * time.Millisecond),
						}},
					},
					{
						Name: "delivery", Signal: SignalLogs, Objective: 0.9999,
						SLI: SLIConfig{Ratio: &RatioSLIConfig{
							Total:     `event_name == "im.message.outcome" and (attributes["im.outcome"] == "delivered" or attributes["im.outcome"] == "lost")`,
							Good:      `attributes["im.outcome"] == "delivered"`,
							Retracted: `attributes["im.outcome"] == "late" and attributes["im.loss.retracted"] == true`,
						}},
					},
				},
			},
		},
		{
			id:  component.NewIDWithName(metadata.Type, "no_slos"),
			err: "slos: at least one SLO is required",
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_objective"),
			err: `slos[0] "a": objective: must be a ratio strictly between 0 and 1 (0.9995 for 99.95%), got 99.95` + "\n" +
				`slos[0] "a": window: must be between 1h and 90d, got 1y`,
		},
		{
			id:  component.NewIDWithName(metadata.Type, "bad_ottl"),
			err: `slos[0] "loss": sli.ratio.good: condition has invalid syntax: 1:26: unexpected token "=" (expected <opcomparison> Value)`,
		},
		{
			// retracted is compiled like the other conditions, in the SLO's signal context.
			id: component.NewIDWithName(metadata.Type, "bad_retracted"),
			err: `slos[0] "loss": sli.ratio.retracted: condition has invalid syntax: 1:33: unexpected token "=" (expected <opcomparison> Value)` + "\n" +
				`slos[1] "loss-spans": sli.ratio.retracted: ` + logPathOnSpansErr,
		},
		{
			id:  component.NewIDWithName(metadata.Type, "span_path_on_logs"),
			err: `slos[0] "loss": sli.ratio.bad: ` + spanPathOnLogsErr,
		},
		{
			id:  component.NewIDWithName(metadata.Type, "both_good_and_bad"),
			err: `slos[0] "a": sli.ratio: set only one of good and bad`,
		},
		{
			id:  component.NewIDWithName(metadata.Type, "two_slis"),
			err: `slos[0] "a": sli: set only one of ratio and latency`,
		},
		{
			id:  component.NewIDWithName(metadata.Type, "no_sli"),
			err: `slos[0] "a": sli: set one of ratio and latency`,
		},
		{
			id: component.NewIDWithName(metadata.Type, "latency_logs_without_attribute"),
			err: `slos[0] "a": sli.latency.unit: must be one of ns, us, ms, s, got "minutes"` + "\n" +
				`slos[0] "a": sli.latency.attribute: required for a logs SLO (log records have no duration)`,
		},
		{
			id: component.NewIDWithName(metadata.Type, "duplicate_names"),
			err: "flush_interval: must be positive, got 0s\n" +
				`slos[1].name: "a" is already the name of slos[0]` + "\n" +
				`slos[2] "bad name!": name: must be 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit`,
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_windows"),
			err: `slos[0] "a": dimensions[1]: "service_name" becomes the Prometheus label "service_name", which "service.name" already uses` + "\n" +
				`slos[0] "a": dimensions[2]: "slo_name" becomes the Prometheus label "slo_name", which "slo_name" already uses` + "\n" +
				`slos[0] "a": alerting.windows.custom: a window that is not a default needs burn_rate, severity, short_window` + "\n" +
				`slos[0] "a": alerting.windows.page_fast.short_window: must be shorter than long_window (1h), got 2h` + "\n" +
				`slos[0] "a": alerting.windows.ticket_slow.long_window: must not exceed the SLO window (1d), got 3d (disable it with disabled: true)` + "\n" +
				`slos[0] "a": alerting.budget_alerts.budget_50.consumed: must be a ratio in (0, 1], got 1.5` + "\n" +
				`slos[0] "a": alerting.budget_alerts.mine.severity: required for a budget alert that is not a default`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			t.Parallel()
			cfg, err := loadConfig(t, tt.id)
			require.NoError(t, err)
			err = xconfmap.Validate(cfg)
			if tt.err != "" {
				require.Error(t, err)
				assert.Equal(t, tt.err, err.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.expected, cfg)
		})
	}
}

func TestUnmarshalErrors(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(t, component.NewIDWithName(metadata.Type, "bad_signal"))
	require.ErrorContains(t, err, `unknown signal "metrics" (want traces or logs)`)
	_, err = loadConfig(t, component.NewIDWithName(metadata.Type, "bad_severity"))
	require.ErrorContains(t, err, `unknown severity "urgent" (want page or ticket)`)
}

func TestEmptyConfigIsDefault(t *testing.T) {
	t.Parallel()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	sub, err := cm.Sub("slo/no_slos")
	require.NoError(t, err)
	cfg := createDefaultConfig()
	require.NoError(t, sub.Unmarshal(cfg))
	assert.Equal(t, createDefaultConfig(), cfg)
}

func TestEffectiveWindows(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(t, component.NewIDWithName(metadata.Type, "full"))
	require.NoError(t, err)
	api := cfg.SLOs[0]
	// 28d window: the default budget shares give 0.05*672h/6h = 5.6 and 0.1*672h/24h = 2.8.
	assert.Equal(t, []BurnRateWindow{
		{Name: "page_fast", Severity: SeverityPage, BurnRate: 10, LongWindow: time.Hour, ShortWindow: 5 * time.Minute},
		{Name: "page_medium", Severity: SeverityPage, BurnRate: 8, LongWindow: 3 * time.Hour, ShortWindow: 15 * time.Minute},
		{Name: "page_slow", Severity: SeverityPage, BurnRate: 0.05 * 672 / 6, LongWindow: 6 * time.Hour, ShortWindow: 30 * time.Minute},
		{Name: "ticket_fast", Severity: SeverityTicket, BurnRate: 0.1 * 672 / 24, LongWindow: 24 * time.Hour, ShortWindow: 2 * time.Hour},
	}, api.BurnRateWindows())
	assert.Equal(t, []time.Duration{5 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 24 * time.Hour}, api.Windows())
	assert.Equal(t, []BudgetAlert{
		{Name: "budget_50", Consumed: 0.5, Severity: SeverityTicket},
		{Name: "budget_80", Consumed: 0.8, Severity: SeverityTicket},
		{Name: "budget_95", Consumed: 0.95, Severity: SeverityPage},
	}, api.BudgetAlerts())

	// The seed: a 30-day window gives the SRE workbook's 14.4, 6, 3 and 1.
	lat := cfg.SLOs[1]
	var rates []float64
	for _, bw := range lat.BurnRateWindows() {
		rates = append(rates, bw.BurnRate)
	}
	assert.InDeltaSlice(t, []float64{14.4, 6, 3, 1}, rates, 1e-9)
	assert.Equal(t, 30*24*time.Hour, lat.EffectiveWindow())
	assert.Equal(t, int64(1), lat.EffectiveMinEvents())
}

const spanPathOnLogsErr = `segment "status" from path "status.code" is not a valid path nor a valid OTTL keyword for the log context - review https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/pkg/ottl/contexts/ottllog to see all valid paths`

const logPathOnSpansErr = `segment "event_name" from path "event_name" is not a valid path nor a valid OTTL keyword for the span context - review https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/pkg/ottl/contexts/ottlspan to see all valid paths`
