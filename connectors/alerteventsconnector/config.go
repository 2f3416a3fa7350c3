package alerteventsconnector // import "github.com/imcol/imcol/connectors/alerteventsconnector"

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/confmap/xconfmap"
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
	// Store bounds the in-memory metrics store.
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

// StoreConfig bounds the in-memory series store the rules query.
type StoreConfig struct {
	// MaxSeries is the most series held; samples of new series beyond it are
	// dropped and counted (reason series_limit).
	MaxSeries int `mapstructure:"max_series"`
	// MaxSamplesPerSeries is the most samples held per series; the oldest are
	// evicted and counted (reason sample_limit).
	MaxSamplesPerSeries int `mapstructure:"max_samples_per_series"`
	// Retention is how long samples are kept. 0 derives it from the rules:
	// the longest range or subquery window (plus offset) plus lookback_delta
	// plus one evaluation_interval.
	Retention time.Duration `mapstructure:"retention"`
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
	_ component.Config   = (*Config)(nil)
	_ xconfmap.Validator = (*Config)(nil)
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
			MaxSeries:           20_000,
			MaxSamplesPerSeries: 2_000,
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

// Validate checks the configuration, and loads and parses every rule so that
// a bad rule fails start-up naming its file, group and rule.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.EvaluationInterval <= 0 {
		errs = append(errs, errors.New("evaluation_interval: must be positive"))
	}
	if cfg.LookbackDelta <= 0 {
		errs = append(errs, errors.New("lookback_delta: must be positive"))
	}
	if cfg.QueryTimeout <= 0 {
		errs = append(errs, errors.New("query_timeout: must be positive"))
	}
	if cfg.MaxQuerySamples <= 0 {
		errs = append(errs, errors.New("max_query_samples: must be positive"))
	}
	if cfg.ServiceName == "" {
		errs = append(errs, errors.New("service_name: must not be empty"))
	}
	if cfg.ExternalURL != "" {
		if u, err := url.Parse(cfg.ExternalURL); err != nil || u.Scheme == "" || u.Host == "" {
			errs = append(errs, fmt.Errorf("external_url: %q is not an absolute URL", cfg.ExternalURL))
		}
	}
	for name := range cfg.ExternalLabels {
		if name == "" || name == "__name__" {
			errs = append(errs, fmt.Errorf("external_labels: invalid label name %q", name))
		}
	}
	if cfg.ResendDelay <= 0 {
		errs = append(errs, errors.New("resend_delay: must be positive"))
	}
	if cfg.NotificationQueueCapacity <= 0 {
		errs = append(errs, errors.New("notification_queue_capacity: must be positive"))
	}
	if cfg.NotificationBatchSize <= 0 {
		errs = append(errs, errors.New("notification_batch_size: must be positive"))
	}
	// store and each alertmanagers entry validate themselves: xconfmap.Validate
	// walks the sub-configs and prefixes their errors with the YAML path.
	if err := errors.Join(errs...); err != nil {
		return err
	}
	_, err := loadRuleGroups(cfg, discardLogger())
	return err
}

// Validate checks the store bounds.
func (sc *StoreConfig) Validate() error {
	var errs []error
	if sc.MaxSeries <= 0 {
		errs = append(errs, errors.New("max_series: must be positive"))
	}
	if sc.MaxSamplesPerSeries < 2 {
		errs = append(errs, errors.New("max_samples_per_series: must be at least 2 (rate needs two samples)"))
	}
	if sc.Retention < 0 {
		errs = append(errs, errors.New("retention: must not be negative"))
	}
	return joinOneLine(errs)
}

// Validate checks one Alertmanager entry.
func (ac *AlertmanagerConfig) Validate() error {
	var errs []error
	u, err := url.Parse(ac.Endpoint)
	switch {
	case ac.Endpoint == "":
		errs = append(errs, errors.New("endpoint: must not be empty"))
	case err != nil:
		errs = append(errs, fmt.Errorf("endpoint: %w", err))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, fmt.Errorf("endpoint: scheme must be http or https, got %q", u.Scheme))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("endpoint: %q has no host", ac.Endpoint))
	case u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, fmt.Errorf("endpoint: %q must not have a query or fragment", ac.Endpoint))
	}
	if ac.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	if (ac.TLS.CertFile == "") != (ac.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls: cert_file and key_file must be set together"))
	}
	if ac.BasicAuth != nil && ac.BasicAuth.Username == "" {
		errs = append(errs, errors.New("basic_auth.username: must not be empty"))
	}
	return joinOneLine(errs)
}

// joinOneLine joins a sub-config's errors on one line, so the YAML path
// xconfmap puts in front applies to each of them.
func joinOneLine(errs []error) error {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}
