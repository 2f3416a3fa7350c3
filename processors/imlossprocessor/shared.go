package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import (
	"context"
	"sync"

	"go.opentelemetry.io/collector/component"
)

// sharedRuntimes gives every pipeline that uses the same configured im_loss instance the
// same tracker, so a message whose stages arrive partly as spans and partly as logs is
// followed as one. (The collector's own sharedcomponent package is internal.) The runtime
// starts with the first pipeline and shuts down with the last.
type sharedRuntimes struct {
	mu sync.Mutex
	m  map[component.ID]*sharedEntry
}

type sharedEntry struct {
	rt      *lossRuntime
	users   int
	started bool
}

func newSharedRuntimes() *sharedRuntimes {
	return &sharedRuntimes{m: make(map[component.ID]*sharedEntry)}
}

// acquire returns the runtime for id, creating it with create, and registers s as one of
// its pipelines.
func (sr *sharedRuntimes) acquire(id component.ID, create func() (*lossRuntime, error), s *sink) (*lossRuntime, uint8, error) {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	e := sr.m[id]
	if e == nil {
		rt, err := create()
		if err != nil {
			return nil, 0, err
		}
		e = &sharedEntry{rt: rt}
		sr.m[id] = e
	}
	idx, err := e.rt.addSink(s)
	if err != nil {
		return nil, 0, err
	}
	e.users++
	return e.rt, idx, nil
}

func (sr *sharedRuntimes) start(ctx context.Context, id component.ID, host component.Host) error {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	e := sr.m[id]
	if e == nil || e.started {
		return nil
	}
	if err := e.rt.start(ctx, host); err != nil {
		return err
	}
	e.started = true
	return nil
}

// release detaches one pipeline. Its consumer is never called again once release returns,
// even though the runtime may keep serving other pipelines; the last release shuts it down.
func (sr *sharedRuntimes) release(ctx context.Context, id component.ID, rt *lossRuntime, sinkIdx uint8) error {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	e := sr.m[id]
	if e == nil || e.rt != rt {
		return nil
	}
	e.users--
	if e.users > 0 {
		if e.started {
			done := make(chan struct{})
			// Ordered after every outcome already queued for this pipeline.
			select {
			case rt.emitCh <- emitItem{detach: int(sinkIdx), done: done}:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case <-done:
			case <-ctx.Done():
				return ctx.Err()
			}
		} else {
			rt.sinkAt(int(sinkIdx)).detached = true
		}
		return nil
	}
	delete(sr.m, id)
	if !e.started {
		rt.tel.Shutdown()
		return nil
	}
	return rt.shutdown(ctx)
}
