package sloconnector // import "github.com/imcol/imcol/connectors/sloconnector"

import (
	"context"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"

	"github.com/imcol/imcol/components/signal"
	"github.com/imcol/imcol/connectors/sloconnector/internal/metadata"
)

// NewFactory returns the factory of the slo connector.
func NewFactory() connector.Factory {
	return connector.NewFactory(
		metadata.Type,
		createDefaultConfig,
		connector.WithTracesToMetrics(createTracesToMetrics, metadata.TracesToMetricsStability),
		connector.WithLogsToMetrics(createLogsToMetrics, metadata.LogsToMetricsStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{FlushInterval: defaultFlushInterval}
}

// The collector creates one connector instance per signal. Each evaluates only the SLOs of its
// signal, so an SLO's series come from exactly one instance and never collide.

func createTracesToMetrics(ctx context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Traces, error) {
	return newConnector(set, cfg.(*Config), signal.Traces, clockwork.FromContext(ctx), next)
}

func createLogsToMetrics(ctx context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Logs, error) {
	return newConnector(set, cfg.(*Config), signal.Logs, clockwork.FromContext(ctx), next)
}
