package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import (
	"context"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"

	"github.com/imcol/imcol/processors/imlossprocessor/internal/metadata"
)

type factory struct {
	shared *sharedRuntimes
	clock  clockwork.Clock
	// checkpointed is handed to every runtime (tests only, see lossRuntime.checkpointed).
	checkpointed chan int
}

// NewFactory returns the im_loss processor factory.
func NewFactory() processor.Factory {
	return newFactory(clockwork.NewRealClock())
}

func newFactory(clk clockwork.Clock) processor.Factory {
	return (&factory{shared: newSharedRuntimes(), clock: clk}).processorFactory()
}

func (f *factory) processorFactory() processor.Factory {
	return processor.NewFactory(
		metadata.Type,
		createDefaultConfig,
		processor.WithTraces(f.createTraces, metadata.TracesStability),
		processor.WithLogs(f.createLogs, metadata.LogsStability),
	)
}

func (f *factory) runtime(set processor.Settings, cfg *Config, s *sink) (*lossProcessor, error) {
	rt, idx, err := f.shared.acquire(set.ID, func() (*lossRuntime, error) {
		rt, err := newLossRuntime(set.TelemetrySettings, set.ID, cfg, f.clock)
		if rt != nil {
			rt.checkpointed = f.checkpointed
		}
		return rt, err
	}, s)
	if err != nil {
		return nil, err
	}
	return &lossProcessor{shared: f.shared, id: set.ID, rt: rt, sink: idx}, nil
}

func (f *factory) createTraces(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Traces) (processor.Traces, error) {
	c := cfg.(*Config)
	p, err := f.runtime(set, c, &sink{signal: SignalTraces, traces: next})
	if err != nil {
		return nil, err
	}
	return processorhelper.NewTraces(ctx, set, cfg, p.rt.watchTraces(next), p.processTraces,
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown),
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: c.DropDuplicates}))
}

func (f *factory) createLogs(ctx context.Context, set processor.Settings, cfg component.Config, next consumer.Logs) (processor.Logs, error) {
	c := cfg.(*Config)
	p, err := f.runtime(set, c, &sink{signal: SignalLogs, logs: next})
	if err != nil {
		return nil, err
	}
	return processorhelper.NewLogs(ctx, set, cfg, p.rt.watchLogs(next), p.processLogs,
		processorhelper.WithStart(p.start),
		processorhelper.WithShutdown(p.shutdown),
		processorhelper.WithCapabilities(consumer.Capabilities{MutatesData: c.DropDuplicates}))
}
