package alerteventsconnector // import "github.com/imcol/imcol/connectors/alerteventsconnector"

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commonconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/notifier"
)

const defaultAlertmanagerTimeout = 10 * time.Second

// notifierHandle runs Prometheus's notifier (per-Alertmanager bounded queue,
// batching, drop accounting, drain on shutdown) with a fixed target list.
type notifierHandle struct {
	manager *notifier.Manager
	reg     *prometheus.Registry
	targets map[string][]*targetgroup.Group
	done    chan struct{}
	started bool
}

func newNotifier(cfg *Config, externalLabels labels.Labels, logger *slog.Logger) (*notifierHandle, error) {
	amCfgs := make(promconfig.AlertmanagerConfigs, 0, len(cfg.Alertmanagers))
	targets := make(map[string][]*targetgroup.Group, len(cfg.Alertmanagers))
	for i, am := range cfg.Alertmanagers {
		u, err := url.Parse(am.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("alertmanagers[%d].endpoint: %w", i, err)
		}
		c := promconfig.DefaultAlertmanagerConfig
		c.HTTPClientConfig = commonconfig.DefaultHTTPClientConfig
		c.Scheme = u.Scheme
		c.PathPrefix = strings.TrimSuffix(u.Path, "/")
		c.APIVersion = promconfig.AlertmanagerAPIVersionV2
		timeout := am.Timeout
		if timeout == 0 {
			timeout = defaultAlertmanagerTimeout
		}
		c.Timeout = model.Duration(timeout)
		c.HTTPClientConfig.TLSConfig = commonconfig.TLSConfig{
			CAFile:             am.TLS.CAFile,
			CertFile:           am.TLS.CertFile,
			KeyFile:            am.TLS.KeyFile,
			ServerName:         am.TLS.ServerName,
			InsecureSkipVerify: am.TLS.InsecureSkipVerify,
		}
		if am.BasicAuth != nil {
			c.HTTPClientConfig.BasicAuth = &commonconfig.BasicAuth{
				Username: am.BasicAuth.Username,
				Password: commonconfig.Secret(am.BasicAuth.Password),
			}
		}
		if err := c.HTTPClientConfig.Validate(); err != nil {
			return nil, fmt.Errorf("alertmanagers[%d]: %w", i, err)
		}
		amCfgs = append(amCfgs, &c)
		// ToMap keys the configs "config-<index>"; the targets use the same keys.
		targets[fmt.Sprintf("config-%d", i)] = []*targetgroup.Group{{
			Source:  am.Endpoint,
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(u.Host)}},
		}}
	}
	reg := prometheus.NewRegistry()
	mgr := notifier.NewManager(&notifier.Options{
		QueueCapacity:   cfg.NotificationQueueCapacity,
		DrainOnShutdown: cfg.DrainNotificationsOnShutdown,
		MaxBatchSize:    cfg.NotificationBatchSize,
		Registerer:      reg,
	}, model.UTF8Validation, logger)
	err := mgr.ApplyConfig(&promconfig.Config{
		GlobalConfig: promconfig.GlobalConfig{
			ExternalLabels:             externalLabels,
			MetricNameValidationScheme: model.UTF8Validation,
		},
		AlertingConfig: promconfig.AlertingConfig{AlertmanagerConfigs: amCfgs},
	})
	if err != nil {
		return nil, fmt.Errorf("alertmanagers: %w", err)
	}
	return &notifierHandle{manager: mgr, reg: reg, targets: targets, done: make(chan struct{})}, nil
}

func (n *notifierHandle) start() {
	n.started = true
	tsets := make(chan map[string][]*targetgroup.Group)
	go func() {
		defer close(n.done)
		n.manager.Run(tsets)
	}()
	// The channel is unbuffered and the manager handles one update at a time,
	// so the second send returns only after the first update was applied:
	// the send loops exist before the first evaluation can notify. The second
	// update is identical and changes nothing.
	tsets <- n.targets
	tsets <- n.targets
}

func (n *notifierHandle) stop(ctx context.Context) error {
	n.manager.Stop()
	if !n.started {
		return nil
	}
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type notifierStats struct{ sent, failed, dropped int64 }

// stats sums the notifier's own counters over all Alertmanagers.
func (n *notifierHandle) stats() notifierStats {
	var s notifierStats
	if n == nil {
		return s
	}
	mfs, err := n.reg.Gather()
	if err != nil {
		return s
	}
	for _, mf := range mfs {
		var dst *int64
		switch mf.GetName() {
		case "prometheus_notifications_sent_total":
			dst = &s.sent
		case "prometheus_notifications_errors_total":
			dst = &s.failed
		case "prometheus_notifications_dropped_total":
			dst = &s.dropped
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			*dst += int64(m.GetCounter().GetValue())
		}
	}
	return s
}
