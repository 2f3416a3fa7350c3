package imlossprocessor

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/metadatatest"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"
)

// TestShutdownPastItsDeadlineStillStopsEverything: the next consumer blocks (an exporter
// without a queue, a stalled backend); shutdown with a short deadline must return its error
// promptly, end the emitter (goleak in TestMain checks it) and close the storage client.
func TestShutdownPastItsDeadlineStillStopsEverything(t *testing.T) {
	cfg := defaultCfg()
	storageID := storagetest.NewStorageID("state")
	cfg.Storage = &storageID
	host := storagetest.NewStorageHost().WithFileBackedStorageExtension("state", t.TempDir())

	entered := make(chan struct{})
	var once sync.Once
	blocked, err := consumer.NewLogs(func(ctx context.Context, _ plog.Logs) error {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		return ctx.Err()
	})
	require.NoError(t, err)
	clk := newFakeClock()
	f := &factory{shared: newSharedRuntimes(), clock: clk}
	p, err := f.processorFactory().CreateLogs(context.Background(), processortest.NewNopSettings(f.processorFactory().Type()), cfg, blocked)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), host))
	skipStartLead(clk)
	rt := onlyRuntime(t, f)

	// A complete lifecycle is decided at once; its outcome record blocks in the next consumer,
	// and so does the lifecycle data itself until the caller gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = p.ConsumeLogs(ctx, logsOf(time.Time{},
		lc{stage: send, msg: "m", conv: "c"},
		lc{stage: push, msg: "m", conv: "c", fanout: 1},
		lc{stage: ack, msg: "m", conv: "c", dev: "d"},
	))
	<-entered

	sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer scancel()
	start := time.Now()
	require.ErrorIs(t, p.Shutdown(sctx), context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
	_, err = rt.client.Get(context.Background(), "anything")
	require.Error(t, err, "the storage client is closed")
}

// steppedClock is a fake clock whose wall time can jump (an NTP step) while the monotonic
// time that Since measures goes on undisturbed, as Go's time.Now readings do.
type steppedClock struct {
	*clockwork.FakeClock
	mu   sync.Mutex
	step time.Duration
}

func (c *steppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.FakeClock.Now().Add(c.step)
}

func (c *steppedClock) jump(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.step += d
}

func TestWallClockStepExpiresNothing(t *testing.T) {
	clk := &steppedClock{FakeClock: newFakeClock()}
	cfg := defaultCfg() // verdicts on the collector's clock: the most exposed configuration
	sink := new(consumertest.LogsSink)
	f := &factory{shared: newSharedRuntimes(), clock: clk}
	p, err := f.processorFactory().CreateLogs(context.Background(), processortest.NewNopSettings(f.processorFactory().Type()), cfg, sink)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	skipStartLead(clk.FakeClock)
	defer func() { require.NoError(t, p.Shutdown(context.Background())) }()
	rt := onlyRuntime(t, f)

	require.NoError(t, p.ConsumeLogs(context.Background(), logsOf(time.Time{},
		lc{stage: send, msg: "m", conv: "c"}, lc{stage: push, msg: "m", conv: "c", fanout: 1})))
	rt.forceTick()
	clk.jump(time.Hour)
	rt.forceTick()
	assert.Empty(t, outcomeLogs(sink), "an hour's wall-clock step is not an hour of waiting")

	clk.Advance(cfg.AckTimeout + arrivalDelay)
	rt.forceTick()
	out := outcomeLogs(sink)
	require.Len(t, out, 1)
	assert.Equal(t, "lost", attr(out[0].Attributes(), imsemconv.AttrOutcome))
}

// TestLateRecordRetractsTheLoss: deliver and ack happened in time but reached the collector
// after the loss was decided; the second late record takes the loss back.
func TestLateRecordRetractsTheLoss(t *testing.T) {
	cfg := defaultCfg()
	h := newHarness(t, cfg, nil, nil)
	defer h.shutdown()
	h.sendLogs(lc{stage: send, msg: "m", conv: "c"}, lc{stage: push, msg: "m", conv: "c", fanout: 1})
	h.advance(cfg.AckTimeout + arrivalDelay)
	h.sendLogs(lc{stage: deliver, msg: "m", conv: "c", dev: "d", at: time.Second},
		lc{stage: ack, msg: "m", conv: "c", dev: "d", at: time.Second})
	h.advance(0)
	var got []string
	for _, r := range outcomeLogs(h.lsink) {
		a := r.Attributes()
		got = append(got, attr(a, imsemconv.AttrOutcome)+"@"+attr(a, imsemconv.AttrStage)+"/"+attr(a, imsemconv.AttrLossRetracted))
	}
	assert.Equal(t, []string{"lost@/", "late@deliver/", "late@ack/true"}, got)
	spans := outcomeSpans(h.tsink)
	require.Len(t, spans, 3)
	assert.Equal(t, "Unset", spans[2].Status().Code().String(), "a retraction is not an error")
}

func onlyRuntime(t *testing.T, f *factory) *lossRuntime {
	t.Helper()
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	require.Len(t, f.shared.m, 1)
	for _, e := range f.shared.m {
		return e.rt
	}
	return nil
}

// stallCfg is defaultCfg with short source_idle_timeout and max_source_lag, for the stall tests.
func stallCfg() *Config {
	cfg := defaultCfg()
	cfg.MaxSourceLag, cfg.SourceIdleTimeout = 10*time.Second, 5*time.Second
	return cfg
}

// startLogsBefore starts an im_loss logs processor on clk in front of next, stopped when the
// test ends, with its runtime and telemetry.
func startLogsBefore(t *testing.T, cfg *Config, clk *clockwork.FakeClock, next consumer.Logs) (processor.Logs, *lossRuntime, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	f := &factory{shared: newSharedRuntimes(), clock: clk}
	p, err := f.processorFactory().CreateLogs(context.Background(), metadatatest.NewSettings(tel), cfg, next)
	require.NoError(t, err)
	require.NoError(t, p.Start(context.Background(), componenttest.NewNopHost()))
	skipStartLead(clk)
	t.Cleanup(func() { require.NoError(t, p.Shutdown(context.Background())) })
	return p, onlyRuntime(t, f), tel
}

// busy reports whether a call into the next consumers is in progress.
func (r *lossRuntime) busy() bool {
	for i := range r.inCall {
		if r.inCall[i].Load() != 0 {
			return true
		}
	}
	return false
}

// TestStuckExporterKeepsSourcesAndCap: while the next consumer does not take the outcome
// records (and so, without a queue, back-pressures the receivers), the sources' silence is the
// pipeline's doing: they stay active, and the max_source_lag cap starts again when it is over,
// so the backlog has that long to arrive before anything is forced.
func TestStuckExporterKeepsSourcesAndCap(t *testing.T) {
	clk, cfg := newFakeClock(), stallCfg()
	entered, unblock := make(chan struct{}, 1), make(chan struct{})
	blocked, err := consumer.NewLogs(func(ctx context.Context, ld plog.Logs) error {
		if len(outcomeLogsOf(ld)) > 0 {
			entered <- struct{}{}
			select {
			case <-unblock:
			case <-ctx.Done():
			}
		}
		return nil
	})
	require.NoError(t, err)
	p, rt, tel := startLogsBefore(t, cfg, clk, blocked)
	forced := func() []metricdata.DataPoint[int64] {
		return []metricdata.DataPoint[int64]{{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "watermark_stalled"))}}
	}

	require.NoError(t, p.ConsumeLogs(context.Background(), logsOf(time.Time{},
		lc{stage: send, msg: "done", conv: "c"}, lc{stage: push, msg: "done", conv: "c", fanout: 1},
		lc{stage: ack, msg: "done", conv: "c", dev: "d"},
		lc{stage: send, msg: "inflight", conv: "c"}, lc{stage: push, msg: "inflight", conv: "c", fanout: 1})))
	<-entered // the delivered record blocks the emitter
	for range 60 {
		clk.Advance(time.Second) // a minute stuck, the loop ticking on
	}
	close(unblock)
	require.Eventually(t, func() bool { return !rt.busy() }, 5*time.Second, time.Millisecond)
	rt.forceTick()
	assertCounter(t, tel, "otelcol_processor_im_loss_forced_decisions", nil, metricdatatest.IgnoreTimestamp())
	clk.Advance(cfg.MaxSourceLag)
	rt.forceTick()
	assertCounter(t, tel, "otelcol_processor_im_loss_forced_decisions", forced(), metricdatatest.IgnoreTimestamp())
}

// TestBlockedPipelineWithNothingToEmitKeepsTheCap: the next consumer blocks on the lifecycle
// data passed on while im_loss has decided nothing, so it emits nothing: the block is seen on
// the data's own call, and the cap starts again from its end, as for a stuck emitter.
func TestBlockedPipelineWithNothingToEmitKeepsTheCap(t *testing.T) {
	clk, cfg := newFakeClock(), stallCfg()
	entered, unblock := make(chan struct{}, 1), make(chan struct{})
	blocking := atomic.Bool{}
	blocked, err := consumer.NewLogs(func(_ context.Context, ld plog.Logs) error {
		if blocking.Load() && len(outcomeLogsOf(ld)) == 0 {
			entered <- struct{}{}
			<-unblock
		}
		return nil
	})
	require.NoError(t, err)
	p, rt, tel := startLogsBefore(t, cfg, clk, blocked)

	require.NoError(t, p.ConsumeLogs(context.Background(), logsOf(time.Time{},
		lc{stage: send, msg: "inflight", conv: "c"}, lc{stage: push, msg: "inflight", conv: "c", fanout: 1})))
	rt.forceTick()
	blocking.Store(true)
	passed := make(chan error, 1)
	go func() {
		passed <- p.ConsumeLogs(context.Background(), logsOf(time.Time{}, lc{stage: deliver, msg: "inflight", conv: "c", dev: "d"}))
	}()
	// Passing the deliver on blocks; the tick makes sure the loop has applied it by then.
	<-entered
	rt.forceTick()
	unblocked := false
	defer func() {
		if !unblocked {
			close(unblock)
		}
	}()
	for range 60 {
		clk.Advance(time.Second) // a minute blocked, the loop ticking on
	}
	rt.forceTick()
	assertCounter(t, tel, "otelcol_processor_im_loss_forced_decisions", nil, metricdatatest.IgnoreTimestamp())
	close(unblock)
	unblocked = true
	require.NoError(t, <-passed)
	rt.forceTick()
	assertCounter(t, tel, "otelcol_processor_im_loss_forced_decisions", nil, metricdatatest.IgnoreTimestamp())
	clk.Advance(cfg.MaxSourceLag)
	rt.forceTick()
	assertCounter(t, tel, "otelcol_processor_im_loss_forced_decisions", []metricdata.DataPoint[int64]{
		{Value: 1, Attributes: attribute.NewSet(attribute.String("reason", "watermark_stalled"))},
	}, metricdatatest.IgnoreTimestamp())
}

func outcomeLogsOf(ld plog.Logs) []plog.LogRecord {
	sink := new(consumertest.LogsSink)
	_ = sink.ConsumeLogs(context.Background(), ld)
	return outcomeLogs(sink)
}

// TestMetricAttributesArePrecomputed: recording an outcome or an unrecognized event on the
// hot path finds its attribute set ready, without a lock or an allocation.
func TestMetricAttributesArePrecomputed(t *testing.T) {
	a := newMetricAttrs()
	for _, o := range usualOutcomes() {
		assert.Contains(t, a.outcomes, outcomeKey{o.Outcome, o.Stage, o.Reason})
	}
	for _, r := range event.Reasons {
		assert.Contains(t, a.unrecognize, r)
	}
	late := tracker.Outcome{Outcome: imsemconv.OutcomeLate, Stage: imsemconv.StageAck, Reason: imsemconv.ReasonAckTimeout}
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		_ = a.outcome(&late)
		_ = a.unrecognized(event.ReasonOverload)
	}))
}
