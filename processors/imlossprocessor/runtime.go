package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/metadata"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"
)

// sink is one pipeline this processor instance is part of; outcomes can go back into it.
type sink struct {
	signal   Signal
	traces   consumer.Traces
	logs     consumer.Logs
	detached bool // set by the emitter goroutine only
}

type workItem struct {
	events *[]event.Event
	reply  chan []int32 // refs of duplicate deliveries, when the caller drops them
	// tickDone asks for a tick instead (tests): it runs after all earlier work, and is
	// closed once the tick's outcomes have reached the next consumers.
	tickDone chan struct{}
}

type emitItem struct {
	outcomes []tracker.Outcome
	detach   int // sink index to detach, or -1
	done     chan struct{}
}

// lossRuntime is the tracker shared by every pipeline of one configured im_loss instance.
// One goroutine (loop) owns the timeline: it stamps every event and hands it to the shard
// goroutines (shardLoop) that own the state, each its part; another (emitLoop) turns outcomes
// into spans and log records and calls the next consumers, so exporting never stalls state
// handling and no state is touched while a consumer runs.
type lossRuntime struct {
	cfg     *Config
	id      component.ID
	logger  *zap.Logger
	tel     *metadata.TelemetryBuilder
	attrs   *metricAttrs
	clock   clockwork.Clock
	extract *extractor
	disp    *tracker.Dispatcher // owned by loop
	shards  []*shard
	parts   []*[]shardOp // the batch being dispatched, by shard; owned by loop
	ops     sync.Pool

	mu    sync.Mutex // guards sinks (appended while pipelines are built)
	sinks []*sink

	work   chan workItem
	emitCh chan emitItem
	// spare holds outcome slices the emitter is done with, for the shards to reuse.
	spare    chan []tracker.Outcome
	stopping chan struct{}
	loopDone chan struct{}
	emitDone chan struct{}
	events   sync.Pool

	// started anchors the tracker's notion of now: started's wall time plus the monotonic time
	// since, so a wall-clock step (NTP) moves nothing.
	started time.Time
	// inCall holds the start (ns since started plus one; 0: free) of each call into the next
	// consumers in progress, the emitter's outcome records and the lifecycle data passed on
	// (see watched); stuckSince (same encoding) the start of the first call since the loop last
	// looked that took longer than a tick: a blocked exporter, which back-pressures the
	// receivers too (see pipelineStuck). Written by the callers, read by the loop.
	inCall     [callSlots]atomic.Int64
	stuckSince atomic.Int64

	// abort is closed when shutdown's deadline passes: whatever blocks on the next consumers
	// or on storage gives up (runCtx is cancelled with it) so every goroutine ends.
	abort     chan struct{}
	abortOnce sync.Once
	runCtx    context.Context
	cancelRun context.CancelFunc

	client storage.Client

	// Checkpoints: the loop encodes the snapshot (it owns the state) and hands the bytes
	// to checkpointLoop, which writes them, so storage I/O never holds up events.
	tickTicker  clockwork.Ticker
	ckTicker    clockwork.Ticker // nil without checkpoints
	checkpoints chan []byte
	ckDone      chan struct{}
	ckWriting   atomic.Bool // a checkpoint is queued or being written
	savedChunks int         // chunks of the snapshot in storage; owned by whoever writes
	// checkpointed, when set (tests), receives the size of every periodic checkpoint written.
	checkpointed chan int
}

const maxSinks = 255

func newLossRuntime(set component.TelemetrySettings, id component.ID, cfg *Config, clk clockwork.Clock) (*lossRuntime, error) {
	tel, err := metadata.NewTelemetryBuilder(set)
	if err != nil {
		return nil, err
	}
	matchers, err := newStageMatchers(&cfg.StageConditions, set)
	if err != nil {
		tel.Shutdown()
		return nil, err
	}
	disp, shards := newShards(tracker.Config{
		AckTimeout:           cfg.AckTimeout,
		OfflineTimeout:       cfg.OfflineTimeout,
		ReorderWindow:        cfg.ReorderWindow,
		MaxGap:               cfg.MaxGap,
		AllowedLateness:      cfg.AllowedLateness,
		SourceIdleTimeout:    cfg.SourceIdleTimeout,
		MaxSourceLag:         cfg.MaxSourceLag,
		MaxClockSkew:         cfg.MaxClockSkew,
		MaxSources:           cfg.MaxSources,
		MaxMessages:          cfg.MaxTrackedMessages,
		MaxPerConversation:   cfg.MaxMessagesPerConversation,
		MaxConversations:     cfg.MaxConversations,
		MaxDevicesPerMessage: cfg.MaxDevicesPerMessage,
		DecidedCacheSize:     cfg.DecidedCacheSize,
	}, cfg.shardCount())
	r := &lossRuntime{
		cfg:      cfg,
		id:       id,
		logger:   set.Logger,
		tel:      tel,
		attrs:    newMetricAttrs(),
		clock:    clk,
		disp:     disp,
		shards:   shards,
		parts:    make([]*[]shardOp, len(shards)),
		work:     make(chan workItem, 64),
		emitCh:   make(chan emitItem, 16),
		spare:    make(chan []tracker.Outcome, 2*len(shards)+2),
		stopping: make(chan struct{}),
		loopDone: make(chan struct{}),
		emitDone: make(chan struct{}),
		started:  clk.Now(),
		abort:    make(chan struct{}),
	}
	r.runCtx, r.cancelRun = context.WithCancel(context.Background())
	r.events.New = func() any { s := make([]event.Event, 0, 64); return &s }
	r.ops.New = func() any { s := make([]shardOp, 0, 64); return &s }
	r.extract = &extractor{
		names: event.Names{
			MessageID:      cfg.Attributes.MessageID,
			ConversationID: cfg.Attributes.ConversationID,
			Stage:          cfg.Attributes.Stage,
			Seq:            cfg.Attributes.Seq,
			Fanout:         cfg.Attributes.Fanout,
			Device:         cfg.Attributes.RecipientDevice,
			Offline:        cfg.Attributes.PushOffline,
		},
		matchers:     matchers,
		unrecognized: r.countUnrecognized,
	}
	return r, nil
}

func (r *lossRuntime) addSink(s *sink) (uint8, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sinks) >= maxSinks {
		return 0, fmt.Errorf("im_loss %q is used in more than %d pipelines", r.id, maxSinks)
	}
	r.sinks = append(r.sinks, s)
	return uint8(len(r.sinks) - 1), nil
}

func (r *lossRuntime) countUnrecognized(ctx context.Context, reason event.Reason) {
	r.tel.ProcessorImLossUnrecognizedEvents.Add(ctx, 1, r.attrs.unrecognized(reason))
}

// start restores saved state (when storage is configured) and starts the goroutines.
func (r *lossRuntime) start(ctx context.Context, host component.Host) error {
	r.initCounters(ctx)
	exact := false
	if r.cfg.Storage != nil {
		client, err := storageClient(ctx, host, *r.cfg.Storage, r.id)
		if err != nil {
			return err
		}
		r.client = client
		exact = r.restore(ctx)
		if r.checkpointing() {
			// Rewrite what was restored as a checkpoint right away: a crash before the first
			// periodic one must neither forget it nor bring it back as exact.
			if err := r.writeSnapshot(ctx, r.snapshotStopped(r.now(), tracker.Checkpoint)); err != nil {
				r.logger.Warn("Cannot write the first checkpoint", zap.Error(err))
			}
		}
	}
	if !exact {
		// Nothing (or only a checkpoint) was restored: a previous instance may have applied
		// and decided messages whose delayed events arrive now, a send, persist or push that
		// would start a new message and be declared lost. Events stamped before the start are
		// uncertain, as after a crash (a first start pays the same: it cannot tell).
		now := r.now()
		r.disp.DistrustEventsBefore(now)
		r.logger.Info("No exact in-flight state restored: messages with events stamped before the start (plus clock skew) are not judged lost on missing evidence",
			zap.Time("uncertain_before", time.Unix(0, now).Add(StartupUncertainty)))
	}
	for _, sig := range r.cfg.Outcomes.Signals {
		if !r.hasSink(sig) {
			r.logger.Warn("outcomes::signals lists a signal this im_loss instance has no pipeline for; its outcome records are not emitted there",
				zap.String("signal", string(sig)))
		}
	}
	// Tickers are created here, not in the loop, so a fake clock in tests sees them at once.
	r.tickTicker = r.clock.NewTicker(r.cfg.TickInterval)
	if r.checkpointing() {
		r.ckTicker = r.clock.NewTicker(r.cfg.CheckpointInterval)
		r.checkpoints = make(chan []byte, 1)
		r.ckDone = make(chan struct{})
		go r.checkpointLoop()
	}
	for _, s := range r.shards {
		go r.shardLoop(s)
	}
	go r.loop()
	go r.emitLoop()
	return nil
}

func (r *lossRuntime) checkpointing() bool {
	return r.client != nil && r.cfg.CheckpointInterval > 0
}

func (r *lossRuntime) hasSink(sig Signal) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sinks {
		if s.signal == sig {
			return true
		}
	}
	return false
}

// shutdown stops the loop, emits what was decided, and saves in-flight state when storage is
// configured. Without storage, in-flight messages are forgotten (see README). When ctx ends
// first, what still blocks is aborted and awaited, the state is not saved (the last
// checkpoint is what the next start finds) and the storage client is closed all the same.
func (r *lossRuntime) shutdown(ctx context.Context) error {
	defer r.tel.Shutdown()
	defer r.cancelRun()
	close(r.stopping)
	r.await(ctx, r.loopDone)
	if r.checkpoints != nil {
		// The final save below must not be overtaken by a checkpoint still being written.
		close(r.checkpoints)
		r.await(ctx, r.ckDone)
	}
	close(r.emitCh)
	r.await(ctx, r.emitDone)
	aborted := r.aborted()
	if r.client == nil {
		if n := r.tracked(); n > 0 {
			r.logger.Info("Forgetting in-flight messages on shutdown; configure storage to keep them across restarts",
				zap.Int("messages", n))
		}
		if aborted {
			return ctx.Err()
		}
		return nil
	}
	if aborted {
		r.logger.Warn("Shutdown deadline passed: in-flight state not saved; the next start restores the last checkpoint",
			zap.Int("messages", r.tracked()))
		return errors.Join(ctx.Err(), r.client.Close(context.Background()))
	}
	return errors.Join(r.save(ctx), r.client.Close(ctx))
}

// await waits for done; once ctx ends it aborts what blocks and keeps waiting, so no
// goroutine outlives shutdown.
func (r *lossRuntime) await(ctx context.Context, done <-chan struct{}) {
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	r.abortOnce.Do(func() {
		close(r.abort)
		r.cancelRun()
	})
	<-done
}

func (r *lossRuntime) aborted() bool {
	select {
	case <-r.abort:
		return true
	default:
		return false
	}
}

// now is the tracker's collector time (see started).
func (r *lossRuntime) now() int64 {
	return r.started.UnixNano() + int64(r.clock.Since(r.started))
}

// callSlots bounds the calls into the next consumers whose start the loop sees while they
// are in progress (the receivers' concurrent requests, and the emitter); a call beyond them
// is still seen once it returns.
const callSlots = 64

// watched brackets one call into the next consumers (see inCall). A call normally returns
// within milliseconds; one that takes longer than a tick waited for the pipeline. Lifecycle
// data passed on counts as much as outcome records: a pipeline blocked while im_loss has
// nothing to emit (nothing arrives, so nothing is decided) silences the sources just as well.
func (r *lossRuntime) watched(call func() error) error {
	mark := int64(r.clock.Since(r.started)) + 1
	slot := -1
	for i := range r.inCall {
		if r.inCall[i].CompareAndSwap(0, mark) {
			slot = i
			break
		}
	}
	err := call()
	if r.clock.Since(r.started)-time.Duration(mark-1) > r.cfg.TickInterval {
		r.stuckSince.CompareAndSwap(0, mark)
	}
	if slot >= 0 {
		r.inCall[slot].Store(0)
	}
	return err
}

// pipelineStuck reports whether the next consumers are, or were since the last call, stuck
// taking outcome records or lifecycle data, and since when (collector time).
func (r *lossRuntime) pipelineStuck() (since int64, stuck bool) {
	first := r.stuckSince.Swap(0)
	elapsed := r.clock.Since(r.started)
	for i := range r.inCall {
		if mark := r.inCall[i].Load(); mark != 0 && elapsed-time.Duration(mark-1) > r.cfg.TickInterval && (first == 0 || mark < first) {
			first = mark
		}
	}
	if first == 0 {
		return 0, false
	}
	return r.started.UnixNano() + first - 1, true
}

// watchTraces and watchLogs bracket the lifecycle data passed on to next (see watched).
func (r *lossRuntime) watchTraces(next consumer.Traces) consumer.Traces {
	c, _ := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
		return r.watched(func() error { return next.ConsumeTraces(ctx, td) })
	}, consumer.WithCapabilities(next.Capabilities()))
	return c
}

func (r *lossRuntime) watchLogs(next consumer.Logs) consumer.Logs {
	c, _ := consumer.NewLogs(func(ctx context.Context, ld plog.Logs) error {
		return r.watched(func() error { return next.ConsumeLogs(ctx, ld) })
	}, consumer.WithCapabilities(next.Capabilities()))
	return c
}

// submit hands events to the loop. With wantDuplicates it waits for the verdict and
// returns the refs of duplicate deliveries.
func (r *lossRuntime) submit(ctx context.Context, events *[]event.Event, wantDuplicates bool) []int32 {
	item := workItem{events: events}
	if wantDuplicates {
		item.reply = make(chan []int32, 1)
	}
	select {
	case r.work <- item:
	case <-ctx.Done():
		// The data still passes through; only its loss tracking is given up, and counted.
		r.tel.ProcessorImLossUnrecognizedEvents.Add(context.Background(), int64(len(*events)), r.attrs.unrecognized(event.ReasonOverload))
		r.putEvents(events)
		return nil
	case <-r.stopping:
		r.putEvents(events)
		return nil
	}
	if item.reply == nil {
		return nil
	}
	select {
	case dups := <-item.reply:
		return dups
	case <-ctx.Done():
		return nil
	case <-r.loopDone:
		return nil
	}
}

func (r *lossRuntime) getEvents() *[]event.Event {
	return r.events.Get().(*[]event.Event)
}

func (r *lossRuntime) putEvents(evs *[]event.Event) {
	if cap(*evs) > 4096 {
		return // let an unusually large batch's buffer go
	}
	clear(*evs) // drop string references so the pool does not keep ids alive
	*evs = (*evs)[:0]
	r.events.Put(evs)
}

func (r *lossRuntime) loop() {
	defer close(r.loopDone)
	defer r.tickTicker.Stop()
	var ckC <-chan time.Time
	if r.ckTicker != nil {
		defer r.ckTicker.Stop()
		ckC = r.ckTicker.Chan()
	}
	for {
		select {
		case item := <-r.work:
			r.apply(item)
		case <-r.tickTicker.Chan():
			r.tick(false)
		case <-ckC:
			r.checkpoint()
		case <-r.stopping:
			// Receivers stop before processors, so what is queued is all there will be.
			for {
				select {
				case item := <-r.work:
					r.apply(item)
				default:
					r.stopShards()
					return
				}
			}
		}
	}
}

func (r *lossRuntime) apply(item workItem) {
	if item.tickDone != nil {
		// Every shard has handed its outcomes to the emitter when tick returns.
		r.tick(true)
		r.handOn(emitItem{detach: -1, done: item.tickDone})
		return
	}
	r.dispatch(r.now(), *item.events, item.reply)
	r.putEvents(item.events)
}

// tick has every shard decide what is due; with wait, it returns once they have.
func (r *lossRuntime) tick(wait bool) {
	now := r.now()
	if since, stuck := r.pipelineStuck(); stuck {
		// The sources' silence is the pipeline's doing, not theirs.
		r.disp.PipelineStalled(since, now)
	}
	w, limit := r.disp.Limits(now)
	r.broadcast(shardWork{tick: true, w: w, limit: limit}, wait)
	ctx := context.Background()
	r.tel.ProcessorImLossTrackedMessages.Record(ctx, int64(r.tracked()))
	r.tel.ProcessorImLossActiveSources.Record(ctx, int64(r.disp.ActiveSources(now)))
	if w := r.disp.Watermark(); w != math.MinInt64 {
		r.tel.ProcessorImLossWatermarkLag.Record(ctx, max(now-w, 0)/int64(time.Millisecond))
	}
	r.tel.ProcessorImLossArrivalLag.Record(ctx, r.disp.ArrivalLag()/int64(time.Millisecond))
	if f := r.forgottenUpTo(); f > 0 && limit != math.MinInt64 {
		r.tel.ProcessorImLossDecidedMemoryReach.Record(ctx, max(limit-f, 0)/int64(time.Millisecond))
	}
	if n := r.disp.TakeEvictedSources(); n > 0 {
		r.tel.ProcessorImLossEvictions.Add(ctx, n, r.attrs.evicted[tracker.EvictedSource])
	}
}

// stopShards lets every shard finish its work and waits for them.
func (r *lossRuntime) stopShards() {
	for _, s := range r.shards {
		close(s.in)
	}
	for _, s := range r.shards {
		<-s.done
	}
}

// flush records the metrics of what tr decided and queues the outcomes to emit. Shards call
// it concurrently: it touches only tr, the instruments and the emitter's queue.
func (r *lossRuntime) flush(tr *tracker.Tracker) {
	ctx := context.Background()
	c := tr.TakeCounters()
	if c.SeqGaps > 0 {
		r.tel.ProcessorImLossSeqGaps.Add(ctx, c.SeqGaps)
	}
	for state, n := range c.Evicted {
		if n > 0 {
			r.tel.ProcessorImLossEvictions.Add(ctx, n, r.attrs.evicted[state])
		}
	}
	if c.Orphans > 0 {
		r.tel.ProcessorImLossUnrecognizedEvents.Add(ctx, c.Orphans, r.attrs.unrecognized(event.ReasonOrphan))
	}
	if c.TooManyDevices > 0 {
		r.tel.ProcessorImLossUnrecognizedEvents.Add(ctx, c.TooManyDevices, r.attrs.unrecognized(event.ReasonTooManyDevices))
	}
	if c.Unjudged > 0 {
		r.tel.ProcessorImLossUnrecognizedEvents.Add(ctx, c.Unjudged, r.attrs.unrecognized(event.ReasonUnjudgedAfterRestart))
	}
	if c.UnjudgedPastMemory > 0 {
		r.tel.ProcessorImLossUnrecognizedEvents.Add(ctx, c.UnjudgedPastMemory, r.attrs.unrecognized(event.ReasonUnjudgedPastMemory))
	}
	if c.Forced > 0 {
		r.tel.ProcessorImLossForcedDecisions.Add(ctx, c.Forced, r.attrs.watermarkStalled)
	}
	if c.HoldFull > 0 {
		r.tel.ProcessorImLossForcedDecisions.Add(ctx, c.HoldFull, r.attrs.holdFull)
	}
	outs := tr.TakeOutcomes()
	if len(outs) == 0 {
		tr.ReuseOutcomes(outs)
		return
	}
	tr.ReuseOutcomes(r.spareOutcomes())
	r.countOutcomes(ctx, outs)
	kept := outs[:0]
	for i := range outs {
		o := &outs[i]
		if o.HasLatency {
			r.tel.ProcessorImLossDeliveryLatency.Record(ctx, o.LatencyMs)
		}
		switch r.cfg.Outcomes.Emit {
		case EmitModeNone:
			continue
		case EmitModeFailures:
			if o.Outcome == imsemconv.OutcomeDelivered {
				continue
			}
		}
		kept = append(kept, *o)
	}
	if len(kept) > 0 {
		r.handOn(emitItem{outcomes: kept, detach: -1})
	} else {
		r.recycleOutcomes(outs)
	}
}

// spareOutcomes is an emptied outcome slice to reuse, nil when none is spare.
func (r *lossRuntime) spareOutcomes() []tracker.Outcome {
	select {
	case buf := <-r.spare:
		return buf
	default:
		return nil
	}
}

// maxSpareOutcomes bounds the slices kept for reuse: a mass expiry's are let go.
const maxSpareOutcomes = 1024

// recycleOutcomes keeps outs, whose outcomes were emitted or dropped, for reuse.
func (r *lossRuntime) recycleOutcomes(outs []tracker.Outcome) {
	if cap(outs) == 0 || cap(outs) > maxSpareOutcomes {
		return
	}
	clear(outs) // drop the ids, so a spare slice keeps no strings alive
	select {
	case r.spare <- outs[:0]:
	default:
	}
}

// countOutcomes adds outs to the outcomes counter once per outcome, stage and reason rather
// than once per record: a batch holds a handful of them.
func (r *lossRuntime) countOutcomes(ctx context.Context, outs []tracker.Outcome) {
	type count struct {
		key outcomeKey
		n   int64
	}
	var counts [8]count
	seen := counts[:0]
outer:
	for i := range outs {
		k := outcomeKey{outs[i].Outcome, outs[i].Stage, outs[i].Reason}
		for j := range seen {
			if seen[j].key == k {
				seen[j].n++
				continue outer
			}
		}
		seen = append(seen, count{k, 1})
	}
	for _, c := range seen {
		r.tel.ProcessorImLossOutcomes.Add(ctx, c.n, r.attrs.outcomeOf(c.key))
	}
}

// handOn queues outcomes for the emitter. Blocking is deliberate back-pressure — a stalled
// exporter slows intake instead of growing an unbounded queue of outcomes; the next tick
// then tells the tracker the pipeline stalled (see pipelineStuck). After an abort the outcomes
// are dropped (they were counted in the metrics already).
func (r *lossRuntime) handOn(item emitItem) {
	select {
	case r.emitCh <- item:
	case <-r.abort:
		r.logger.Warn("Shutdown deadline passed: outcome records not emitted", zap.Int("records", len(item.outcomes)))
	}
}

// forceTick runs one tick on the loop, after everything submitted before, and waits until
// its outcomes have been handed to the next consumers. Tests use it after advancing the
// fake clock.
func (r *lossRuntime) forceTick() {
	done := make(chan struct{})
	r.work <- workItem{tickDone: done}
	<-done
}

// checkpoint encodes the state on the loop and queues it for checkpointLoop. The encoding
// is the only part that holds up events (see README, Restarts). When the previous
// checkpoint is still being written this one is skipped rather than queued: storage slower
// than the interval must not pile up snapshots in memory.
func (r *lossRuntime) checkpoint() {
	if r.ckWriting.Load() {
		r.logger.Warn("Skipping a checkpoint: the previous one is still being written; consider a longer checkpoint_interval")
		return
	}
	start := time.Now()
	data := r.snapshotShards(r.now(), tracker.Checkpoint)
	r.logger.Debug("Checkpoint encoded", zap.Int("bytes", len(data)), zap.Int("messages", r.tracked()), zap.Duration("encode", time.Since(start)))
	r.ckWriting.Store(true)
	r.checkpoints <- data
}

func (r *lossRuntime) checkpointLoop() {
	defer close(r.ckDone)
	for data := range r.checkpoints {
		start := time.Now()
		if err := r.writeSnapshot(r.runCtx, data); err != nil {
			r.logger.Warn("Cannot write checkpoint", zap.Error(err))
		} else {
			r.logger.Debug("Checkpoint written", zap.Int("bytes", len(data)), zap.Duration("write", time.Since(start)))
		}
		r.ckWriting.Store(false)
		if r.checkpointed != nil {
			r.checkpointed <- len(data)
		}
	}
}

// initCounters creates the counters' usual series at zero, as Prometheus recommends: a series
// born at its first increment hides that increment from rate() and increase(), so the first loss,
// gap or eviction would never fire an alert, and dashboards would query series that do not exist.
func (r *lossRuntime) initCounters(ctx context.Context) {
	r.tel.ProcessorImLossSeqGaps.Add(ctx, 0)
	for _, opt := range r.attrs.evicted {
		r.tel.ProcessorImLossEvictions.Add(ctx, 0, opt)
	}
	for _, reason := range event.Reasons {
		r.tel.ProcessorImLossUnrecognizedEvents.Add(ctx, 0, r.attrs.unrecognized(reason))
	}
	for _, o := range usualOutcomes() {
		r.tel.ProcessorImLossOutcomes.Add(ctx, 0, r.attrs.outcome(&o))
	}
	r.tel.ProcessorImLossForcedDecisions.Add(ctx, 0, r.attrs.watermarkStalled)
	r.tel.ProcessorImLossForcedDecisions.Add(ctx, 0, r.attrs.holdFull)
}

// usualOutcomes lists the outcome, stage and reason combinations the tracker decides.
func usualOutcomes() []tracker.Outcome {
	lossStages := []imsemconv.Stage{imsemconv.StageSend, imsemconv.StagePersist, imsemconv.StagePush, imsemconv.StageDeliver}
	out := []tracker.Outcome{
		{Outcome: imsemconv.OutcomeDelivered, Stage: imsemconv.StageAck},
		{Outcome: imsemconv.OutcomeDuplicate, Stage: imsemconv.StageDeliver},
		{Outcome: imsemconv.OutcomeLost, Stage: imsemconv.StagePersist, Reason: imsemconv.ReasonSeqGap},
	}
	for _, st := range lossStages {
		for _, reason := range []imsemconv.LossReason{imsemconv.ReasonAckTimeout, imsemconv.ReasonStageFailed} {
			out = append(out, tracker.Outcome{Outcome: imsemconv.OutcomeLost, Stage: st, Reason: reason})
		}
		out = append(out, tracker.Outcome{Outcome: imsemconv.OutcomeUntracked, Stage: st, Reason: imsemconv.ReasonEvicted})
	}
	for _, st := range imsemconv.Stages {
		out = append(out, tracker.Outcome{Outcome: imsemconv.OutcomeLate, Stage: st})
	}
	return out
}

// metricAttrs precomputes every attribute set once, so recording neither allocates nor
// locks: the maps are only read after newMetricAttrs.
type metricAttrs struct {
	outcomes    map[outcomeKey]metric.MeasurementOption
	unrecognize map[event.Reason]metric.MeasurementOption
	evicted     [tracker.NumEvictedStates]metric.MeasurementOption
	// The reasons of forced decisions: the max_source_lag cap, and events applied at once
	// because too many were waiting for their message's deadline.
	watermarkStalled, holdFull metric.MeasurementOption
}

type outcomeKey struct {
	outcome imsemconv.Outcome
	stage   imsemconv.Stage
	reason  imsemconv.LossReason
}

func newMetricAttrs() *metricAttrs {
	a := &metricAttrs{
		outcomes:    make(map[outcomeKey]metric.MeasurementOption),
		unrecognize: make(map[event.Reason]metric.MeasurementOption),
	}
	for i, name := range [tracker.NumEvictedStates]string{"message", "conversation", "seq_gap", "decided", "source", "retraction"} {
		a.evicted[i] = withAttribute("state", name)
	}
	a.watermarkStalled = withAttribute("reason", "watermark_stalled")
	a.holdFull = withAttribute("reason", "hold_full")
	for _, r := range event.Reasons {
		a.unrecognize[r] = withAttribute("reason", string(r))
	}
	stages := append([]imsemconv.Stage{imsemconv.StageUnknown}, imsemconv.Stages[:]...)
	reasons := append([]imsemconv.LossReason{""}, imsemconv.LossReasons[:]...)
	for _, o := range imsemconv.Outcomes {
		for _, st := range stages {
			for _, r := range reasons {
				k := outcomeKey{o, st, r}
				a.outcomes[k] = k.attributes()
			}
		}
	}
	return a
}

func withAttribute(key, value string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String(key, value)))
}

func (k outcomeKey) attributes() metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(
		attribute.String("outcome", string(k.outcome)),
		attribute.String("stage", k.stage.String()),
		attribute.String("reason", string(k.reason)),
	))
}

func (a *metricAttrs) outcome(o *tracker.Outcome) metric.MeasurementOption {
	return a.outcomeOf(outcomeKey{o.Outcome, o.Stage, o.Reason})
}

func (a *metricAttrs) outcomeOf(k outcomeKey) metric.MeasurementOption {
	if opt, ok := a.outcomes[k]; ok {
		return opt
	}
	return k.attributes() // every combination is precomputed: not reached
}

func (a *metricAttrs) unrecognized(r event.Reason) metric.MeasurementOption {
	if opt, ok := a.unrecognize[r]; ok {
		return opt
	}
	return withAttribute("reason", string(r))
}
