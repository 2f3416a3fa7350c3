package sloconnector

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/imcol/imcol/components/signal"
	"github.com/imcol/imcol/connectors/sloconnector/internal/metadata"
	"github.com/imcol/imcol/connectors/sloconnector/sloconfig"
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
				SLOs: []sloconfig.SLOConfig{{
					Name: "api-availability", Objective: 0.9995,
					SLI: sloconfig.SLIConfig{Ratio: &sloconfig.RatioSLIConfig{Bad: "status.code == STATUS_CODE_ERROR"}},
				}},
			},
		},
		{
			id: component.NewIDWithName(metadata.Type, "full"),
			expected: &Config{
				FlushInterval: 30 * time.Second,
				Storage:       &storageID,
				SLOs: []sloconfig.SLOConfig{
					{
						Name: "api-availability", Description: "Gateway API requests that do not fail.",
						Objective: 0.9995, Window: sloconfig.Duration(28 * 24 * time.Hour),
						Dimensions: []string{"service.name"}, MaxSeries: 50, MinEvents: 100,
						SLI: sloconfig.SLIConfig{Ratio: &sloconfig.RatioSLIConfig{Total: "kind == SPAN_KIND_SERVER", Bad: "status.code == STATUS_CODE_ERROR"}},
						Alerting: sloconfig.AlertingConfig{
							Windows: map[string]sloconfig.BurnRateWindowConfig{
								"ticket_slow": {Disabled: true},
								"page_fast":   {BurnRate: 10},
								"page_medium": {Severity: sloconfig.SeverityPage, BurnRate: 8, LongWindow: sloconfig.Duration(3 * time.Hour), ShortWindow: sloconfig.Duration(15 * time.Minute)},
							},
							BudgetAlerts: map[string]sloconfig.BudgetAlertConfig{
								"budget_80": {Severity: sloconfig.SeverityTicket},
								"budget_95": {Consumed: 0.95, Severity: sloconfig.SeverityPage},
							},
						},
					},
					{
						Name: "delivery-latency", Signal: signal.Logs, Objective: 0.99,
						SLI: sloconfig.SLIConfig{Latency: &sloconfig.LatencySLIConfig{
							Total:     `event_name == "im.message.outcome" and attributes["im.outcome"] == "delivered"`,
							Attribute: "im.delivery.latency_ms", Threshold: sloconfig.Duration(200 * time.Millisecond),
						}},
					},
					{
						Name: "delivery", Signal: signal.Logs, Objective: 0.9999,
						SLI: sloconfig.SLIConfig{Ratio: &sloconfig.RatioSLIConfig{
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
			id: component.NewIDWithName(metadata.Type, "duplicate_names"),
			err: "flush_interval: must be positive, got 0s\n" +
				`slos::1::name: "a" is already the name of slos::0` + "\n" +
				`slos::2: name: must be 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit`,
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_objective"),
			err: "slos::0: objective: must be a ratio strictly between 0 and 1 (0.9995 for 99.95%), got 99.95\n" +
				"window: must be between 1h and 90d, got 1y",
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_slo_keys"),
			err: "slos::0: name: required\n" +
				"max_series: must not be negative, got -1\n" +
				"min_events: must not be negative, got -1\n" +
				"dimensions::0: " + emptyDimensionErr + "\n" +
				"sli::latency::total: " + badLatencyTotalErr + "\n" +
				"slos::0::sli::latency: threshold: required, a positive duration such as 200ms",
		},
		{
			id:  component.NewIDWithName(metadata.Type, "bad_ottl"),
			err: `slos::0: sli::ratio::good: condition has invalid syntax: 1:26: unexpected token "=" (expected <opcomparison> Value)`,
		},
		{
			// retracted is compiled like the other conditions, in the SLO's signal context.
			id: component.NewIDWithName(metadata.Type, "bad_retracted"),
			err: `slos::0: sli::ratio::retracted: condition has invalid syntax: 1:33: unexpected token "=" (expected <opcomparison> Value)` + "\n" +
				`slos::1: sli::ratio::retracted: ` + logPathOnSpansErr,
		},
		{
			id:  component.NewIDWithName(metadata.Type, "span_path_on_logs"),
			err: `slos::0: sli::ratio::bad: ` + spanPathOnLogsErr,
		},
		{
			id:  component.NewIDWithName(metadata.Type, "both_good_and_bad"),
			err: "slos::0::sli::ratio: set only one of good and bad",
		},
		{
			id:  component.NewIDWithName(metadata.Type, "two_slis"),
			err: "slos::0::sli: set only one of ratio and latency",
		},
		{
			id:  component.NewIDWithName(metadata.Type, "no_sli"),
			err: "slos::0::sli: set one of ratio and latency",
		},
		{
			id: component.NewIDWithName(metadata.Type, "latency_logs_without_attribute"),
			err: "slos::0: sli::latency::attribute: required for a logs SLO (log records have no duration)\n" +
				`slos::0::sli::latency: unit: must be one of ns, us, ms, s, got "minutes"`,
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_windows"),
			err: `slos::0: dimensions::1: "service_name" becomes the Prometheus label "service_name", which "service.name" already uses` + "\n" +
				`dimensions::2: "slo_name" becomes the Prometheus label "slo_name", which "slo_name" already uses` + "\n" +
				"alerting::windows::page_fast::short_window: must be shorter than long_window (1h), got 2h\n" +
				"alerting::windows::ticket_slow::long_window: must not exceed the SLO window (1d), got 3d (disable it with disabled: true)\n" +
				"slos::0::alerting: windows::custom: a window that is not a default needs burn_rate, severity, short_window\n" +
				"budget_alerts::budget_50::consumed: must be a ratio in (0, 1], got 1.5\n" +
				"budget_alerts::mine::severity: required for a budget alert that is not a default",
		},
		{
			// A disabled entry is not checked beyond its name.
			id: component.NewIDWithName(metadata.Type, "bad_alerting"),
			err: "slos::0: alerting::windows::page_slow::short_window: must be at least 1m, got 30s\n" +
				"slos::0::sli::ratio: set one of good and bad\n" +
				"slos::0::alerting: windows::Page-Fast: must be 1 to 63 lowercase letters, digits and '_'\n" +
				"windows::page_slow::burn_rate: must be positive, got -1\n" +
				"budget_alerts::Budget: must be 1 to 63 lowercase letters, digits and '_'",
		},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			t.Parallel()
			cfg, err := loadConfig(t, tt.id)
			require.NoError(t, err)
			err = confmap.Validate(cfg)
			if tt.err != "" {
				require.EqualError(t, err, tt.err)
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
	require.EqualError(t, err, "decoding failed due to the following error(s):\n\n"+
		`'slos[0].signal' unknown signal "metrics" (want traces or logs)`)
	_, err = loadConfig(t, component.NewIDWithName(metadata.Type, "bad_severity"))
	require.EqualError(t, err, "decoding failed due to the following error(s):\n\n"+
		`'slos[0].alerting.windows[ticket_fast].severity' unknown severity "urgent" (want page or ticket)`)
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

// The OTTL compiler's and the Prometheus label namer's own messages.
const (
	emptyDimensionErr  = "label name is empty"
	badLatencyTotalErr = `condition has invalid syntax: 1:6: unexpected token "=" (expected <opcomparison> Value)`
)

const spanPathOnLogsErr = `segment "status" from path "status.code" is not a valid path nor a valid OTTL keyword for the log context - review https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/pkg/ottl/contexts/ottllog to see all valid paths`

const logPathOnSpansErr = `segment "event_name" from path "event_name" is not a valid path nor a valid OTTL keyword for the span context - review https://github.com/open-telemetry/opentelemetry-collector-contrib/tree/main/pkg/ottl/contexts/ottlspan to see all valid paths`
