package alerteventsconnector

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/imcol/imcol/connectors/alerteventsconnector/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
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
	full.Store = StoreConfig{MaxSeries: 5000, Retention: time.Hour, Directory: "testdata"}
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
		err      string
	}{
		{id: component.NewIDWithName(metadata.Type, "full"), expected: full},
		{
			id:  component.NewID(metadata.Type),
			err: "no rule defined: configure at least one alerting rule in rule_files or groups",
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_durations"),
			err: "evaluation_interval: must be positive, got 0s\n" +
				"lookback_delta: must be positive, got -1m0s\n" +
				"query_timeout: must be positive, got 0s\n" +
				"resend_delay: must be positive, got 0s",
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_limits"),
			err: "max_query_samples: must be positive, got 0\n" +
				"notification_queue_capacity: must be positive, got 0\n" +
				"notification_batch_size: must be positive, got -1\n" +
				"store: max_series: must be positive, got 0\n" +
				"retention: must not be negative, got -1h0m0s\n" +
				`directory: "testdata/config.yaml" is not a directory`,
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_labels"),
			err: "service_name: must not be empty\n" +
				`external_url: "grafana.example.com" is not an absolute URL` + "\n" +
				`external_labels: invalid label name ""` + "\n" +
				`external_labels: invalid label name "__name__"`,
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_alertmanager"),
			err: "alertmanagers::0: endpoint: must not be empty\n" +
				`alertmanagers::1: endpoint: scheme must be http or https, got "alertmanager"` + "\n" +
				`alertmanagers::2: endpoint: parse "http://[::1": missing ']' in host` + "\n" +
				`alertmanagers::3: endpoint: "http:///api" has no host` + "\n" +
				`alertmanagers::4: endpoint: "http://am:9093/?team=im" must not have a query or fragment` + "\n" +
				"timeout: must not be negative, got -1s\n" +
				"alertmanagers::5::tls: cert_file and key_file must be set together\n" +
				"alertmanagers::5::basic_auth: username: must not be empty",
		},
		{
			// Inline groups are checked by Prometheus's rulefmt, which names the group and rule.
			id: component.NewIDWithName(metadata.Type, "bad_rule"),
			err: `groups: 5:17: group "g", rule 1, "A": could not parse expression: 1:16: parse error: unclosed left parenthesis` + "\n" +
				`groups: group "g", rule 2, "B": annotation "summary": template: __alert_B:1: unclosed action`,
		},
		{
			// Unknown keys are refused as Prometheus refuses them.
			id:  component.NewIDWithName(metadata.Type, "unknown_rule_key"),
			err: "groups: yaml: unmarshal errors:\n  line 5: field bogus not found in type rulefmt.Rule",
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_rule_files"),
			err: `rule_files::0: "testdata/no_such_dir/*.yaml" matches no file` + "\n" +
				`rule_files::1: "testdata/[": syntax error in pattern` + "\n" +
				`rule_files::2: testdata/bad_rules/unparsable.yaml: 5:15: group "broken", rule 1, "A": could not parse expression: 1:6: parse error: unexpected end of input`,
		},
		{
			id: component.NewIDWithName(metadata.Type, "group_interval_too_short"),
			err: `rule_files::0: testdata/bad_rules/fast.yaml: group "fast": interval 10s is shorter than evaluation_interval (1m0s)` + "\n" +
				"groups::0: interval 10s is shorter than evaluation_interval (1m0s)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			t.Parallel()
			cfg := createDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
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
