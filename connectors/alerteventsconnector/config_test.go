package alerteventsconnector

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/confmap/xconfmap"

	"github.com/imcol/imcol/connectors/alerteventsconnector/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	full := createDefaultConfig().(*Config)
	full.RuleFiles = []string{"testdata/rules/*.yaml"}
	full.Groups = []map[string]any{{
		"name": "inline", "interval": "30s",
		"rules": []any{map[string]any{
			"alert": "InstanceDown", "expr": "up == 0", "for": "1m", "keep_firing_for": "2m",
			"labels":      map[string]any{"severity": "critical"},
			"annotations": map[string]any{"summary": "{{ $labels.instance }} is down"},
		}},
	}}
	full.EvaluationInterval = 30 * time.Second
	full.LookbackDelta = 2 * time.Minute
	full.QueryTimeout = 10 * time.Second
	full.MaxQuerySamples = 1_000_000
	full.ExternalURL = "https://grafana.example.com"
	full.ExternalLabels = map[string]string{"cluster": "edge-1"}
	full.EmitPending = false
	full.ServiceName = "imcol-alerts"
	full.Store = StoreConfig{MaxSeries: 5000, MaxSamplesPerSeries: 500, Retention: time.Hour}
	full.Translation = TranslationConfig{Namespace: "edge", WithoutScopeInfo: true, ResourceToTelemetryConversion: true}
	full.Alertmanagers = []AlertmanagerConfig{{
		Endpoint:  "https://alertmanager.example.com:9093/prefix",
		Timeout:   5 * time.Second,
		TLS:       TLSConfig{CAFile: "/etc/imcol/ca.pem", ServerName: "alertmanager.example.com"},
		BasicAuth: &BasicAuthConfig{Username: "imcol", Password: "s3cret"},
	}}
	full.ResendDelay = 2 * time.Minute
	full.NotificationQueueCapacity = 100
	full.NotificationBatchSize = 10
	full.DrainNotificationsOnShutdown = false

	tests := []struct {
		id       component.ID
		expected *Config
		errs     []string
	}{
		{id: component.NewID(metadata.Type), expected: createDefaultConfig().(*Config), errs: []string{"rule_files, groups: no rule defined"}},
		{id: component.NewIDWithName(metadata.Type, "full"), expected: full},
		{id: component.NewIDWithName(metadata.Type, "bad_durations"), errs: []string{
			"evaluation_interval: must be positive",
			"lookback_delta: must be positive",
			"store: max_series: must be positive; max_samples_per_series: must be at least 2",
		}},
		{id: component.NewIDWithName(metadata.Type, "bad_alertmanager"), errs: []string{
			`alertmanagers::0: endpoint: scheme must be http or https, got "alertmanager"`,
			"alertmanagers::1: tls: cert_file and key_file must be set together; basic_auth.username: must not be empty",
		}},
		{id: component.NewIDWithName(metadata.Type, "bad_rule"), errs: []string{
			`groups: `, `group "g", rule 1, "A"`, `group "g", rule 2, "B"`,
		}},
		{id: component.NewIDWithName(metadata.Type, "group_interval_too_short"), errs: []string{
			`alert_events.groups: group "fast": interval 10s is shorter than evaluation_interval 1m0s`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := createDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			err = xconfmap.Validate(cfg)
			if len(tt.errs) == 0 {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				for _, e := range tt.errs {
					assert.ErrorContains(t, err, e)
				}
			}
			if tt.expected != nil {
				assert.Equal(t, tt.expected, cfg)
			}
		})
	}
}
