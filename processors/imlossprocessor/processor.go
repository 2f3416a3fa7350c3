package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import (
	"context"
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processorhelper"
)

// lossProcessor is one pipeline's view of the shared runtime. It forwards every record
// unchanged (except duplicates with drop_duplicates) after handing the lifecycle events it
// found to the tracker.
type lossProcessor struct {
	shared *sharedRuntimes
	id     component.ID
	rt     *lossRuntime
	sink   uint8

	shutdownOnce sync.Once
	shutdownErr  error
}

func (p *lossProcessor) start(ctx context.Context, host component.Host) error {
	return p.shared.start(ctx, p.id, host)
}

func (p *lossProcessor) shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() {
		p.shutdownErr = p.shared.release(ctx, p.id, p.rt, p.sink)
	})
	return p.shutdownErr
}

func (p *lossProcessor) processTraces(ctx context.Context, td ptrace.Traces) (ptrace.Traces, error) {
	evs := p.rt.getEvents()
	*evs = p.rt.extract.traces(ctx, td, p.sink, *evs)
	if len(*evs) == 0 {
		p.rt.putEvents(evs)
		return td, nil
	}
	if dups := p.rt.submit(ctx, evs, p.rt.cfg.DropDuplicates); len(dups) > 0 {
		removeSpans(td, dups)
		if td.SpanCount() == 0 {
			return td, processorhelper.ErrSkipProcessingData
		}
	}
	return td, nil
}

func (p *lossProcessor) processLogs(ctx context.Context, ld plog.Logs) (plog.Logs, error) {
	evs := p.rt.getEvents()
	*evs = p.rt.extract.logs(ctx, ld, p.sink, *evs)
	if len(*evs) == 0 {
		p.rt.putEvents(evs)
		return ld, nil
	}
	if dups := p.rt.submit(ctx, evs, p.rt.cfg.DropDuplicates); len(dups) > 0 {
		removeLogs(ld, dups)
		if ld.LogRecordCount() == 0 {
			return ld, processorhelper.ErrSkipProcessingData
		}
	}
	return ld, nil
}
