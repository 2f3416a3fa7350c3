package alerteventsconnector // import "github.com/imcol/imcol/connectors/alerteventsconnector"

import (
	"context"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"

	"github.com/imcol/imcol/connectors/alerteventsconnector/internal/metadata"
)

// NewFactory returns the factory of the alert_events connector.
func NewFactory() connector.Factory {
	return newFactoryWithClock(clockwork.NewRealClock())
}

// newFactoryWithClock builds connectors whose evaluation ticker runs on clock,
// so tests step evaluation time explicitly.
func newFactoryWithClock(clock clockwork.Clock) connector.Factory {
	f := &factory{clock: clock}
	return connector.NewFactory(
		metadata.Type,
		createDefaultConfig,
		connector.WithMetricsToLogs(f.createMetricsToLogs, metadata.MetricsToLogsStability),
	)
}

type factory struct {
	clock clockwork.Clock
}

func (f *factory) createMetricsToLogs(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Logs) (connector.Metrics, error) {
	return newConnector(set, cfg.(*Config), next, f.clock)
}
