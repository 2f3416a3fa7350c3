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
	return newFactoryWithClock(clockwork.NewRealClock())
}

// newFactoryWithClock builds connectors that read time from clock, so tests step the flush
// ticker and the rolling windows explicitly.
func newFactoryWithClock(clock clockwork.Clock) connector.Factory {
	f := &factory{clock: clock}
	return connector.NewFactory(
		metadata.Type,
		createDefaultConfig,
		connector.WithTracesToMetrics(f.createTracesToMetrics, metadata.TracesToMetricsStability),
		connector.WithLogsToMetrics(f.createLogsToMetrics, metadata.LogsToMetricsStability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{FlushInterval: defaultFlushInterval}
}

type factory struct {
	clock clockwork.Clock
}

// The collector creates one connector instance per signal. Each evaluates only the SLOs of its
// signal, so an SLO's series come from exactly one instance and never collide.

func (f *factory) createTracesToMetrics(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Traces, error) {
	return newConnector(set, cfg.(*Config), signal.Traces, f.clock, next)
}

func (f *factory) createLogsToMetrics(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Logs, error) {
	return newConnector(set, cfg.(*Config), signal.Logs, f.clock, next)
}
