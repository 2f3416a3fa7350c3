package alerteventsconnector // import "github.com/imcol/imcol/connectors/alerteventsconnector"

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap"
)

// Config configures the alert_events connector.
type Config struct {
	// RuleFiles are paths or globs of Prometheus rule files, loaded unchanged.
	RuleFiles []string `mapstructure:"rule_files"`
	// Groups are rule groups written inline, in the schema of a Prometheus rule
	// file's `groups:` list.
	Groups []map[string]any `mapstructure:"groups"`
	// EvaluationInterval is how often rule groups are evaluated; a group's own
	// `interval` overrides it (rounded to a multiple of this interval).
	EvaluationInterval time.Duration `mapstructure:"evaluation_interval"`
	// LookbackDelta is how far back an instant selector looks for a sample, as
	// Prometheus's --query.lookback-delta.
	LookbackDelta time.Duration `mapstructure:"lookback_delta"`
	// QueryTimeout bounds one rule's query, as Prometheus's --query.timeout.
	QueryTimeout time.Duration `mapstructure:"query_timeout"`
	// MaxQuerySamples bounds the samples one query may load, as Prometheus's
	// --query.max-samples.
	MaxQuerySamples int `mapstructure:"max_query_samples"`
	// ExternalURL is the base of each alert's generator URL and of
	// $externalURL in templates (Prometheus's --web.external-url).
	ExternalURL string `mapstructure:"external_url"`
	// ExternalLabels are added to every alert sent and emitted, as Prometheus's
	// global.external_labels (labels set by the rule win).
	ExternalLabels map[string]string `mapstructure:"external_labels"`
	// EmitPending also emits an event when an alert becomes pending, and an
	// `inactive` event when a pending alert clears without firing.
	EmitPending bool `mapstructure:"emit_pending"`
	// ServiceName is the service.name resource attribute of the emitted logs.
	ServiceName string `mapstructure:"service_name"`
	// Store bounds the in-memory TSDB head the rules query.
	Store StoreConfig `mapstructure:"store"`
	// Translation selects how OTLP metric and attribute names become
	// Prometheus names; the defaults equal the prometheus exporter's.
	Translation TranslationConfig `mapstructure:"translation"`
	// Alertmanagers receive firing and resolved alerts; empty disables delivery.
	Alertmanagers []AlertmanagerConfig `mapstructure:"alertmanagers"`
	// ResendDelay is the minimum time before a still-firing alert is re-sent
	// to Alertmanager (Prometheus's --rules.alert.resend-delay).
	ResendDelay time.Duration `mapstructure:"resend_delay"`
	// NotificationQueueCapacity bounds the alerts queued per Alertmanager;
	// the oldest are dropped (and counted) when it is full.
	NotificationQueueCapacity int `mapstructure:"notification_queue_capacity"`
	// NotificationBatchSize is the most alerts sent in one request.
	NotificationBatchSize int `mapstructure:"notification_batch_size"`
	// DrainNotificationsOnShutdown sends queued alerts before shutdown completes.
	DrainNotificationsOnShutdown bool `mapstructure:"drain_notifications_on_shutdown"`

	// prevent unkeyed literal initialization
	_ struct{}
}

// StoreConfig bounds the in-memory TSDB head the rules query.
type StoreConfig struct {
	// MaxSeries is the most series held (rule results included); samples of
	// new series beyond it are dropped and counted (reason series_limit). It
	// also bounds the delta streams made cumulative.
	MaxSeries int `mapstructure:"max_series"`
	// Retention is how much history is kept. 0 derives it from the rules: the
	// furthest back any rule selects (ranges, subqueries, offset, lookback_delta,
	// query_offset) plus one evaluation_interval.
	Retention time.Duration `mapstructure:"retention"`
	// Directory is where the TSDB head gets a private directory, which its
	// chunk mapper requires but nothing is written to. Empty: the system's
	// temporary directory, else the working directory.
	Directory string `mapstructure:"directory"`
}

// TranslationConfig mirrors the prometheus exporter's naming options.
type TranslationConfig struct {
	// Namespace prefixes every metric name (prometheus exporter `namespace`).
	Namespace string `mapstructure:"namespace"`
	// AddMetricSuffixes adds type and unit suffixes (_total, _seconds, _ratio).
	AddMetricSuffixes bool `mapstructure:"add_metric_suffixes"`
	// WithoutScopeInfo omits the otel_scope_* labels.
	WithoutScopeInfo bool `mapstructure:"without_scope_info"`
	// ResourceToTelemetryConversion turns every resource attribute into a label.
	ResourceToTelemetryConversion bool `mapstructure:"resource_to_telemetry_conversion"`
}

// AlertmanagerConfig is one Alertmanager (v2 API) to notify.
type AlertmanagerConfig struct {
	// Endpoint is the Alertmanager base URL, e.g. http://alertmanager:9093;
	// a path is used as path prefix before /api/v2/alerts.
	Endpoint string `mapstructure:"endpoint"`
	// Timeout bounds one delivery request; 0 means 10s (Prometheus's default).
	Timeout time.Duration `mapstructure:"timeout"`
	// TLS configures the client side of https endpoints.
	TLS TLSConfig `mapstructure:"tls"`
	// BasicAuth sets HTTP basic authentication.
	BasicAuth *BasicAuthConfig `mapstructure:"basic_auth"`
}

// TLSConfig is the TLS client configuration for one Alertmanager.
type TLSConfig struct {
	// CAFile verifies the server certificate (system roots when empty).
	CAFile string `mapstructure:"ca_file"`
	// CertFile and KeyFile are the client certificate for mutual TLS.
	CertFile string `mapstructure:"cert_file"`
	// KeyFile is the client certificate's private key.
	KeyFile string `mapstructure:"key_file"`
	// ServerName overrides the name checked in the server certificate.
	ServerName string `mapstructure:"server_name"`
	// InsecureSkipVerify disables server certificate verification.
	InsecureSkipVerify bool `mapstructure:"insecure_skip_verify"`
}

// BasicAuthConfig is HTTP basic authentication.
type BasicAuthConfig struct {
	// Username is the basic auth user.
	Username string `mapstructure:"username"`
	// Password is the basic auth password.
	Password configopaque.String `mapstructure:"password"`
}

var (
	_ component.Config  = (*Config)(nil)
	_ confmap.Validator = (*Config)(nil)
	_ confmap.Validator = (*StoreConfig)(nil)
	_ confmap.Validator = (*AlertmanagerConfig)(nil)
	_ confmap.Validator = (*TLSConfig)(nil)
	_ confmap.Validator = (*BasicAuthConfig)(nil)
)

func createDefaultConfig() component.Config {
	return &Config{
		EvaluationInterval: 15 * time.Second,
		LookbackDelta:      5 * time.Minute,
		QueryTimeout:       30 * time.Second,
		MaxQuerySamples:    5_000_000,
		EmitPending:        true,
		ServiceName:        "imcol",
		Store: StoreConfig{
			MaxSeries: 20_000,
		},
		Translation: TranslationConfig{
			AddMetricSuffixes: true,
		},
		ResendDelay:                  time.Minute,
		NotificationQueueCapacity:    10_000,
		NotificationBatchSize:        256,
		DrainNotificationsOnShutdown: true,
	}
}

// Validate checks the connector's own keys, and loads and parses every rule so that a bad
// rule fails start-up naming its file, group and rule. The collector validates store and
// each alertmanagers entry itself.
func (cfg *Config) Validate() error {
	var errs []error
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"evaluation_interval", cfg.EvaluationInterval},
		{"lookback_delta", cfg.LookbackDelta},
		{"query_timeout", cfg.QueryTimeout},
		{"resend_delay", cfg.ResendDelay},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", d.key, d.v))
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{
		{"max_query_samples", cfg.MaxQuerySamples},
		{"notification_queue_capacity", cfg.NotificationQueueCapacity},
		{"notification_batch_size", cfg.NotificationBatchSize},
	} {
		if n.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %d", n.key, n.v))
		}
	}
	if cfg.ServiceName == "" {
		errs = append(errs, errors.New("service_name: must not be empty"))
	}
	if cfg.ExternalURL != "" {
		if u, err := url.Parse(cfg.ExternalURL); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("external_url: %q is not an absolute URL", cfg.ExternalURL))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.ExternalLabels)) {
		if name == "" || name == model.MetricNameLabel {
			errs = append(errs, fmt.Errorf("external_labels: invalid label name %q", name))
		}
	}
	if _, err := loadRuleGroups(cfg, discardLogger()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Validate checks the store bounds.
func (sc *StoreConfig) Validate() error {
	var errs []error
	if sc.MaxSeries <= 0 {
		errs = append(errs, fmt.Errorf("max_series: must be positive, got %d", sc.MaxSeries))
	}
	if sc.Retention < 0 {
		errs = append(errs, fmt.Errorf("retention: must not be negative, got %s", sc.Retention))
	}
	if sc.Directory != "" {
		if fi, err := os.Stat(sc.Directory); err != nil {
			errs = append(errs, fmt.Errorf("directory: %w", err))
		} else if !fi.IsDir() {
			errs = append(errs, fmt.Errorf("directory: %q is not a directory", sc.Directory))
		}
	}
	return errors.Join(errs...)
}

// Validate checks one Alertmanager entry's endpoint and timeout.
func (ac *AlertmanagerConfig) Validate() error {
	var errs []error
	if err := checkEndpoint(ac.Endpoint); err != nil {
		errs = append(errs, fmt.Errorf("endpoint: %w", err))
	}
	if ac.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must not be negative, got %s", ac.Timeout))
	}
	return errors.Join(errs...)
}

// checkEndpoint accepts an absolute http(s) URL that /api/v2/alerts can be appended to.
func checkEndpoint(endpoint string) error {
	if endpoint == "" {
		return errors.New("must not be empty")
	}
	u, err := url.Parse(endpoint)
	switch {
	case err != nil:
		return err
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	case u.Host == "":
		return fmt.Errorf("%q has no host", endpoint)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q must not have a query or fragment", endpoint)
	}
	return nil
}

// Validate checks that a client certificate comes with its key.
func (tc *TLSConfig) Validate() error {
	if (tc.CertFile == "") != (tc.KeyFile == "") {
		return errors.New("cert_file and key_file must be set together")
	}
	return nil
}

// Validate checks that the user is named.
func (ba *BasicAuthConfig) Validate() error {
	if ba.Username == "" {
		return errors.New("username: must not be empty")
	}
	return nil
}
