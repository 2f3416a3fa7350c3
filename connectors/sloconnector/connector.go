package sloconnector // import "github.com/imcol/imcol/connectors/sloconnector"

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottllog"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottlspan"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"

	"github.com/imcol/imcol/components/signal"
	"github.com/imcol/imcol/connectors/sloconnector/internal/metadata"
	"github.com/imcol/imcol/connectors/sloconnector/internal/state"
	"github.com/imcol/imcol/connectors/sloconnector/internal/window"
	"github.com/imcol/imcol/connectors/sloconnector/sloconfig"
)

// Names of the emitted metrics and attributes. Through the prometheus exporter they become
// imcol_slo_events_total, imcol_slo_good_events_total, imcol_slo_retracted_events_total,
// imcol_slo_objective_ratio, imcol_slo_error_budget_remaining_ratio, imcol_slo_burn_rate and
// imcol_slo_low_traffic.
const (
	metricEvents          = "imcol.slo.events"
	metricGoodEvents      = "imcol.slo.good_events"
	metricRetractedEvents = "imcol.slo.retracted_events"
	metricObjective       = "imcol.slo.objective"
	metricBudgetRemaining = "imcol.slo.error_budget.remaining"
	metricBurnRate        = "imcol.slo.burn_rate"
	metricLowTraffic      = "imcol.slo.low_traffic"

	attrSLOName = "slo_name"
	attrWindow  = "window"
	// overflowAttr marks the series that collects events beyond max_series, as the
	// OpenTelemetry SDKs' cardinality limit does.
	overflowAttr = "otel.metric.overflow"

	storageKeyPrefix = "slo/"
)

type sloConnector struct {
	logger    *zap.Logger
	id        component.ID
	cfg       *Config
	signal    signal.Signal
	clock     clockwork.Clock
	next      consumer.Metrics
	telemetry *metadata.TelemetryBuilder

	skippedConditionError metric.AddOption
	skippedNoLatency      metric.AddOption
	storageLoadError      metric.AddOption
	storageSaveError      metric.AddOption

	// observations are the per-call buffers of SLI verdicts (see count).
	observations sync.Pool

	// mu guards the SLO state below; the next consumer and storage are never called under it.
	mu     sync.Mutex
	slos   []*slo
	keyBuf []byte

	storageClient storage.Client
	cancel        context.CancelFunc
	done          chan struct{}
	shutdownOnce  sync.Once
}

type slo struct {
	cfg          *sloconfig.SLOConfig
	errorBudget  float64 // 1 - objective
	window       time.Duration
	windows      []time.Duration
	windowLabels []string
	minEvents    uint64
	maxSeries    int
	layout       *window.Layout
	series       map[string]*series
	overflow     *series
	spanSLI      *sli[*ottlspan.TransformContext]
	logSLI       *sli[*ottllog.TransformContext]
	// retracts is true when the SLI has a retracted condition: only then is
	// imcol.slo.retracted_events emitted.
	retracts bool
}

type series struct {
	values  []string
	present []bool
	start   time.Time
	total   uint64
	// good includes the retractions, which add a good event and no total one: good may
	// exceed total when a retraction arrives without the loss it corrects.
	good      uint64
	retracted uint64
	// reported is false until the series was emitted once with zero counters, so that
	// Prometheus's rate() and increase() count the series' first events too.
	reported bool
	hist     *window.Series
}

func newConnector(set connector.Settings, cfg *Config, sig signal.Signal, clock clockwork.Clock, next consumer.Metrics) (*sloConnector, error) {
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	reason := func(r string) metric.AddOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", r)))
	}
	operation := func(op string) metric.AddOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String("operation", op)))
	}
	c := &sloConnector{
		logger:                set.Logger,
		id:                    set.ID,
		cfg:                   cfg,
		signal:                sig,
		clock:                 clock,
		next:                  next,
		telemetry:             tb,
		skippedConditionError: reason("condition_error"),
		skippedNoLatency:      reason("no_latency_value"),
		storageLoadError:      operation("load"),
		storageSaveError:      operation("save"),
	}
	now := clock.Now()
	for i := range cfg.SLOs {
		sc := &cfg.SLOs[i]
		if sc.EffectiveSignal() != sig {
			continue
		}
		s, err := newSLO(sc, set.TelemetrySettings, now)
		if err != nil {
			tb.Shutdown()
			return nil, fmt.Errorf("slos::%d: %w", i, err)
		}
		c.slos = append(c.slos, s)
		if len(sc.Dimensions) == 0 {
			c.telemetry.ConnectorSloSeries.Add(context.Background(), 1)
		}
	}
	return c, nil
}

func newSLO(sc *sloconfig.SLOConfig, set component.TelemetrySettings, now time.Time) (*slo, error) {
	s := &slo{
		cfg:         sc,
		errorBudget: 1 - sc.Objective,
		window:      sc.EffectiveWindow(),
		windows:     sc.Windows(),
		minEvents:   uint64(sc.EffectiveMinEvents()),
		maxSeries:   sc.EffectiveMaxSeries(),
		retracts:    sc.SLI.Ratio != nil && sc.SLI.Ratio.Retracted != "",
		series:      make(map[string]*series),
	}
	for _, w := range s.windows {
		s.windowLabels = append(s.windowLabels, model.Duration(w).String())
	}
	var err error
	if s.layout, err = window.NewLayout(append(slices.Clone(s.windows), s.window)); err != nil {
		return nil, err
	}
	if sc.EffectiveSignal() == signal.Logs {
		s.logSLI, err = newSLI(&sc.SLI, set, sloconfig.NewLogParser, logLatency)
	} else {
		s.spanSLI, err = newSLI(&sc.SLI, set, sloconfig.NewSpanParser, spanLatency)
	}
	if err != nil {
		return nil, err
	}
	// An SLO without dimensions has exactly one series: emit it from the start, so zero
	// traffic shows as zero counters and a full budget rather than as missing data.
	if len(sc.Dimensions) == 0 {
		s.series[""] = s.newSeries(now, nil, nil)
	}
	return s, nil
}

func (s *slo) newSeries(now time.Time, values []string, present []bool) *series {
	return &series{values: values, present: present, start: now, hist: window.NewSeries(s.layout)}
}

func (*sloConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// Start restores the rolling windows from storage, when configured, and starts flushing.
func (c *sloConnector) Start(ctx context.Context, host component.Host) error {
	if len(c.slos) == 0 {
		return nil
	}
	if c.cfg.Storage != nil {
		client, err := storageClient(ctx, host, *c.cfg.Storage, c.id, c.signal)
		if err != nil {
			return err
		}
		c.storageClient = client
		c.load(ctx)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	ticker := c.clock.NewTicker(c.cfg.FlushInterval)
	go func() {
		defer close(c.done)
		defer ticker.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-ticker.Chan():
				if err := c.flush(runCtx); err != nil {
					c.logger.Warn("SLO flush failed", zap.Error(err))
				}
			}
		}
	}()
	return nil
}

func storageClient(ctx context.Context, host component.Host, id, owner component.ID, sig signal.Signal) (storage.Client, error) {
	ext, ok := host.GetExtensions()[id]
	if !ok {
		return nil, fmt.Errorf("storage: extension %q not found", id)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return nil, fmt.Errorf("storage: extension %q is not a storage extension", id)
	}
	client, err := se.GetClient(ctx, component.KindConnector, owner, string(sig))
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return client, nil
}

// Shutdown stops the flush loop, emits and saves a last flush, and closes the storage client.
// It is safe without Start and when called twice, and returns only once the flush loop has
// exited: it never leaves a goroutine or an open storage client behind.
//
// Stopping cancels the context of a flush in progress, so a next consumer or storage call
// blocked in it returns at once. The last flush and the close use ctx: once ctx is done the
// last metrics are not emitted, the state is still saved (losing it would cost more than a
// late return from a local store) and Shutdown returns ctx's error. Only a next consumer or
// storage extension that ignores cancellation can hold Shutdown past the deadline.
func (c *sloConnector) Shutdown(ctx context.Context) error {
	var err error
	c.shutdownOnce.Do(func() { err = c.shutdown(ctx) })
	return err
}

func (c *sloConnector) shutdown(ctx context.Context) error {
	defer c.telemetry.Shutdown()
	var errs []error
	if c.cancel != nil {
		c.cancel()
		select {
		case <-c.done:
		case <-ctx.Done():
			// Well-behaved consumers return at once when cancelled; one that does not holds
			// Shutdown here rather than being left running over a closed storage client.
			c.logger.Warn("The shutdown deadline passed before the SLO flush in progress returned; waiting for it")
			<-c.done
		}
		md, snapshot := c.collect()
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("last SLO metrics not emitted: %w", err))
		} else {
			errs = append(errs, c.emit(ctx, md))
		}
		errs = append(errs, c.save(ctx, snapshot))
	}
	if c.storageClient != nil {
		if err := c.storageClient.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("storage: close: %w", err))
		}
	}
	return errors.Join(errs...)
}

type skips struct{ conditionErrors, noLatency, overflowed int64 }

func (c *sloConnector) record(ctx context.Context, s skips) {
	if s.conditionErrors > 0 {
		c.telemetry.ConnectorSloEventsSkipped.Add(ctx, s.conditionErrors, c.skippedConditionError)
	}
	if s.noLatency > 0 {
		c.telemetry.ConnectorSloEventsSkipped.Add(ctx, s.noLatency, c.skippedNoLatency)
	}
	if s.overflowed > 0 {
		c.telemetry.ConnectorSloSeriesDropped.Add(ctx, s.overflowed)
	}
}

// ConsumeTraces counts the spans of every traces SLO.
func (c *sloConnector) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	if len(c.slos) == 0 {
		return nil
	}
	obs := c.getObservations()
	for _, rs := range td.ResourceSpans().All() {
		res := rs.Resource().Attributes()
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				tCtx := ottlspan.NewTransformContextPtr(rs, ss, span)
				for _, s := range c.slos {
					*obs = appendObservation(*obs, s, s.spanSLI.evaluate(ctx, tCtx), span.Attributes(), res)
				}
				tCtx.Close()
			}
		}
	}
	c.count(ctx, obs)
	return nil
}

// ConsumeLogs counts the log records of every logs SLO.
func (c *sloConnector) ConsumeLogs(ctx context.Context, ld plog.Logs) error {
	if len(c.slos) == 0 {
		return nil
	}
	obs := c.getObservations()
	for _, rl := range ld.ResourceLogs().All() {
		res := rl.Resource().Attributes()
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				tCtx := ottllog.NewTransformContextPtr(rl, sl, lr)
				for _, s := range c.slos {
					*obs = appendObservation(*obs, s, s.logSLI.evaluate(ctx, tCtx), lr.Attributes(), res)
				}
				tCtx.Close()
			}
		}
	}
	c.count(ctx, obs)
	return nil
}

// observation is one SLI verdict waiting to be counted. The OTTL conditions are evaluated
// without the lock, so pipelines calling concurrently only serialise on the counting.
type observation struct {
	slo        *slo
	v          verdict
	attrs, res pcommon.Map
}

func appendObservation(obs []observation, s *slo, v verdict, attrs, res pcommon.Map) []observation {
	if v == verdictIgnored {
		return obs
	}
	return append(obs, observation{slo: s, v: v, attrs: attrs, res: res})
}

// count adds the observations under the lock, then records what was skipped.
func (c *sloConnector) count(ctx context.Context, obs *[]observation) {
	var sk skips
	c.mu.Lock()
	now := c.clock.Now()
	for i := range *obs {
		o := &(*obs)[i]
		c.observe(o.slo, o.v, now, o.attrs, o.res, &sk)
	}
	c.mu.Unlock()
	c.putObservations(obs)
	c.record(ctx, sk)
}

func (c *sloConnector) getObservations() *[]observation {
	if obs, ok := c.observations.Get().(*[]observation); ok {
		return obs
	}
	obs := make([]observation, 0, 256)
	return &obs
}

func (c *sloConnector) putObservations(obs *[]observation) {
	if cap(*obs) > 1<<16 {
		return // let an unusually large batch's buffer go
	}
	clear(*obs) // the maps belong to the caller's data
	*obs = (*obs)[:0]
	c.observations.Put(obs)
}

// observe counts one event in its series. Events arriving in the same flush interval share
// that interval's buckets: windows roll on arrival time, as Prometheus's rate() would.
func (c *sloConnector) observe(s *slo, v verdict, now time.Time, attrs, res pcommon.Map, sk *skips) {
	switch v {
	case verdictIgnored:
		return
	case verdictConditionError:
		sk.conditionErrors++
		return
	case verdictNoLatency:
		sk.noLatency++
		return
	}
	sr := c.seriesFor(s, now, attrs, res, sk)
	if v == verdictRetracted {
		sr.good++
		sr.retracted++
		sr.hist.Add(now, window.Counts{Good: 1})
		return
	}
	good := uint64(0)
	if v == verdictGood {
		good = 1
	}
	sr.total++
	sr.good += good
	sr.hist.Add(now, window.Counts{Total: 1, Good: good})
}

func lookup(attrs, res pcommon.Map, name string) (pcommon.Value, bool) {
	if v, ok := attrs.Get(name); ok {
		return v, true
	}
	return res.Get(name)
}

// maxValueLength bounds a dimension value: max_series bounds the number of series, this their
// size, whatever a sender puts in an attribute. Longer values are cut on a UTF-8 boundary.
const maxValueLength = 256

func valueString(v pcommon.Value) string {
	var s string
	if v.Type() == pcommon.ValueTypeStr {
		s = v.Str()
	} else {
		s = v.AsString()
	}
	if len(s) <= maxValueLength {
		return s
	}
	cut := maxValueLength
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func (c *sloConnector) seriesFor(s *slo, now time.Time, attrs, res pcommon.Map, sk *skips) *series {
	dims := s.cfg.Dimensions
	if len(dims) == 0 {
		return s.series[""]
	}
	key := c.keyBuf[:0]
	for _, d := range dims {
		if v, ok := lookup(attrs, res, d); ok {
			key = appendKeyPart(key, true, valueString(v))
		} else {
			key = appendKeyPart(key, false, "")
		}
	}
	c.keyBuf = key
	if sr, ok := s.series[string(key)]; ok {
		return sr
	}
	if len(s.series) >= s.maxSeries {
		sk.overflowed++
		if s.overflow == nil {
			s.overflow = s.newSeries(now, make([]string, len(dims)), make([]bool, len(dims)))
			c.telemetry.ConnectorSloSeries.Add(context.Background(), 1)
		}
		return s.overflow
	}
	values := make([]string, len(dims))
	present := make([]bool, len(dims))
	for i, d := range dims {
		if v, ok := lookup(attrs, res, d); ok {
			values[i], present[i] = valueString(v), true
		}
	}
	sr := s.newSeries(now, values, present)
	s.series[string(key)] = sr
	c.telemetry.ConnectorSloSeries.Add(context.Background(), 1)
	return sr
}

// flush emits the SLO metrics and saves the state. It builds everything under the lock and
// calls the next consumer and the storage only after releasing it.
func (c *sloConnector) flush(ctx context.Context) error {
	md, snapshot := c.collect()
	err := c.emit(ctx, md)
	return errors.Join(err, c.save(ctx, snapshot))
}

// collect builds the metrics and, with storage, the state to save.
func (c *sloConnector) collect() (pmetric.Metrics, []*storage.Operation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	c.expire(now)
	md := c.buildMetrics(now)
	var snapshot []*storage.Operation
	if c.storageClient != nil {
		snapshot = c.snapshot()
	}
	return md, snapshot
}

func (c *sloConnector) emit(ctx context.Context, md pmetric.Metrics) error {
	if err := c.next.ConsumeMetrics(ctx, md); err != nil {
		return fmt.Errorf("emit SLO metrics: %w", err)
	}
	return nil
}

func (c *sloConnector) save(ctx context.Context, snapshot []*storage.Operation) error {
	if snapshot == nil {
		return nil
	}
	if err := c.storageClient.Batch(ctx, snapshot...); err != nil {
		c.telemetry.ConnectorSloStorageErrors.Add(context.WithoutCancel(ctx), 1, c.storageSaveError)
		return fmt.Errorf("save SLO state: %w", err)
	}
	return nil
}

// expire forgets series without events in their SLO window, so dimension values that stop
// appearing free their slot; the single series of an SLO without dimensions is kept.
func (c *sloConnector) expire(now time.Time) {
	for _, s := range c.slos {
		if len(s.cfg.Dimensions) == 0 {
			continue
		}
		for k, sr := range s.series {
			if sr.hist.Empty(now) {
				delete(s.series, k)
				c.telemetry.ConnectorSloSeries.Add(context.Background(), -1)
			}
		}
		if s.overflow != nil && s.overflow.hist.Empty(now) {
			s.overflow = nil
			c.telemetry.ConnectorSloSeries.Add(context.Background(), -1)
		}
	}
}

type outputMetrics struct {
	events, good, objective, budget, burnRate, lowTraffic pmetric.Metric
	// retracted is set only when an SLO has a retracted condition.
	retracted *pmetric.Metric
}

func (c *sloConnector) buildMetrics(now time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(metadata.ScopeName)
	ms := sm.Metrics()
	newSum := func(name, desc string) pmetric.Metric {
		m := ms.AppendEmpty()
		m.SetName(name)
		m.SetDescription(desc)
		m.SetUnit("{event}")
		sum := m.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		return m
	}
	newGauge := func(name, unit, desc string) pmetric.Metric {
		m := ms.AppendEmpty()
		m.SetName(name)
		m.SetDescription(desc)
		m.SetUnit(unit)
		m.SetEmptyGauge()
		return m
	}
	var out outputMetrics
	out.events = newSum(metricEvents, "Events selected by the SLO's indicator.")
	out.good = newSum(metricGoodEvents, "Selected events that met the objective's condition, and retractions.")
	if slices.ContainsFunc(c.slos, func(s *slo) bool { return s.retracts }) {
		m := newSum(metricRetractedEvents, "Retractions: good events that correct a bad event counted earlier, without adding to the events (included in imcol.slo.good_events).")
		out.retracted = &m
	}
	out.objective = newGauge(metricObjective, "1", "The SLO's target ratio of good events.")
	out.budget = newGauge(metricBudgetRemaining, "1", "Share of the error budget left over the SLO window: 1 - (bad/total)/(1 - objective); negative when overspent.")
	out.burnRate = newGauge(metricBurnRate, "", "Error rate over the window divided by the error rate that would exactly use up the budget: (bad/total)/(1 - objective).")
	out.lowTraffic = newGauge(metricLowTraffic, "", "1 when the window holds fewer than min_events events, so its burn rate should not page.")
	ts := pcommon.NewTimestampFromTime(now)
	for _, s := range c.slos {
		for _, k := range s.sortedKeys() {
			c.appendSeries(&out, s, s.series[k], false, now, ts)
		}
		if s.overflow != nil {
			c.appendSeries(&out, s, s.overflow, true, now, ts)
		}
	}
	return md
}

func (*sloConnector) appendSeries(out *outputMetrics, s *slo, sr *series, overflow bool, now time.Time, ts pcommon.Timestamp) {
	setAttrs := func(m pcommon.Map) {
		m.PutStr(attrSLOName, s.cfg.Name)
		for i, d := range s.cfg.Dimensions {
			if sr.present[i] {
				m.PutStr(d, sr.values[i])
			}
		}
		if overflow {
			m.PutBool(overflowAttr, true)
		}
	}
	start := pcommon.NewTimestampFromTime(sr.start)
	total, good, retracted := sr.total, sr.good, sr.retracted
	if !sr.reported {
		total, good, retracted = 0, 0, 0
		sr.reported = true
	}
	type point struct {
		m pmetric.Metric
		v uint64
	}
	sums := []point{{out.events, total}, {out.good, good}}
	if s.retracts {
		sums = append(sums, point{*out.retracted, retracted})
	}
	for _, p := range sums {
		dp := p.m.Sum().DataPoints().AppendEmpty()
		setAttrs(dp.Attributes())
		dp.SetStartTimestamp(start)
		dp.SetTimestamp(ts)
		dp.SetIntValue(int64(p.v))
	}
	gauge := func(m pmetric.Metric) pmetric.NumberDataPoint {
		dp := m.Gauge().DataPoints().AppendEmpty()
		setAttrs(dp.Attributes())
		dp.SetTimestamp(ts)
		return dp
	}
	gauge(out.objective).SetDoubleValue(s.cfg.Objective)
	gauge(out.budget).SetDoubleValue(1 - s.burnRate(sr.hist.Sum(now, s.window)))
	for i, w := range s.windows {
		counts := sr.hist.Sum(now, w)
		dp := gauge(out.burnRate)
		dp.Attributes().PutStr(attrWindow, s.windowLabels[i])
		dp.SetDoubleValue(s.burnRate(counts))
		lt := gauge(out.lowTraffic)
		lt.Attributes().PutStr(attrWindow, s.windowLabels[i])
		if counts.Total < s.minEvents {
			lt.SetIntValue(1)
		} else {
			lt.SetIntValue(0)
		}
	}
}

func (s *slo) sortedKeys() []string {
	keys := make([]string, 0, len(s.series))
	for k := range s.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// burnRate is the error ratio over the error budget; 0 without events. Good events are
// clamped to the total: a window can hold a retraction but not the loss it corrects.
func (s *slo) burnRate(c window.Counts) float64 {
	if c.Total == 0 {
		return 0
	}
	bad := float64(c.Total - min(c.Good, c.Total))
	return bad / float64(c.Total) / s.errorBudget
}

func (c *sloConnector) snapshot() []*storage.Operation {
	ops := make([]*storage.Operation, 0, len(c.slos))
	for _, s := range c.slos {
		st := &state.SLO{Dimensions: s.cfg.Dimensions}
		add := func(sr *series, overflow bool) {
			values, present := sr.values, sr.present
			if values == nil {
				values, present = []string{}, []bool{}
			}
			st.Series = append(st.Series, state.Series{
				Overflow: overflow, Values: values, Present: present,
				Start: sr.start, Total: sr.total, Good: sr.good, Retracted: sr.retracted, Levels: sr.hist.State(),
			})
		}
		// Key order, so that a restart with a lower max_series keeps the same series every time.
		for _, k := range s.sortedKeys() {
			add(s.series[k], false)
		}
		if s.overflow != nil {
			add(s.overflow, true)
		}
		ops = append(ops, storage.SetOperation(storageKeyPrefix+s.cfg.Name, state.Encode(st)))
	}
	return ops
}

// load restores every SLO saved under the same name and dimensions. A value that cannot be
// used is logged and counted, and the SLO starts empty: a bad file must not stop the collector.
func (c *sloConnector) load(ctx context.Context) {
	ops := make([]*storage.Operation, len(c.slos))
	for i, s := range c.slos {
		ops[i] = storage.GetOperation(storageKeyPrefix + s.cfg.Name)
	}
	if err := c.storageClient.Batch(ctx, ops...); err != nil {
		c.telemetry.ConnectorSloStorageErrors.Add(ctx, 1, c.storageLoadError)
		c.logger.Warn("Failed to load SLO state; windows start empty", zap.Error(err))
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.slos {
		if ops[i].Value == nil {
			continue
		}
		st, err := state.Decode(ops[i].Value)
		if err == nil && !slices.Equal(st.Dimensions, s.cfg.Dimensions) {
			err = fmt.Errorf("saved with dimensions %q, configured with %q", st.Dimensions, s.cfg.Dimensions)
		}
		if err != nil {
			c.telemetry.ConnectorSloStorageErrors.Add(ctx, 1, c.storageLoadError)
			c.logger.Warn("Discarding saved SLO state", zap.String("slo", s.cfg.Name), zap.Error(err))
			continue
		}
		c.restore(s, st)
	}
}

func (c *sloConnector) restore(s *slo, st *state.SLO) {
	if len(s.cfg.Dimensions) == 0 {
		// The single series exists from the start; a saved one replaces it.
		for _, ss := range st.Series {
			s.series[""] = restoredSeries(s, ss)
		}
		return
	}
	var restored int64
	for _, ss := range st.Series {
		key := string(seriesKey(ss.Values, ss.Present))
		switch sr, known := s.series[key]; {
		case ss.Overflow && s.overflow != nil:
			s.overflow.merge(ss)
		case ss.Overflow:
			s.overflow = restoredSeries(s, ss)
			restored++
		case known:
			sr.merge(ss)
		case len(s.series) < s.maxSeries:
			s.series[key] = restoredSeries(s, ss)
			restored++
		default:
			// max_series was lowered since the save: the series that no longer fit
			// join the overflow series, as new combinations beyond the cap would.
			if s.overflow == nil {
				n := len(s.cfg.Dimensions)
				s.overflow = s.newSeries(ss.Start, make([]string, n), make([]bool, n))
				s.overflow.reported = true
				restored++
			}
			s.overflow.merge(ss)
			c.telemetry.ConnectorSloSeriesDropped.Add(context.Background(), int64(ss.Total))
		}
	}
	c.telemetry.ConnectorSloSeries.Add(context.Background(), restored)
}

// restoredSeries rebuilds a saved series. It was reported before the restart, so its
// counters continue where they were instead of starting again at zero.
func restoredSeries(s *slo, ss state.Series) *series {
	sr := &series{values: ss.Values, present: ss.Present, start: ss.Start, total: ss.Total, good: ss.Good,
		retracted: ss.Retracted, reported: true, hist: window.NewSeries(s.layout)}
	if len(s.cfg.Dimensions) == 0 {
		sr.values, sr.present = nil, nil
	}
	sr.hist.Restore(ss.Levels)
	return sr
}

// merge adds a saved series' counters and buckets to sr.
func (sr *series) merge(ss state.Series) {
	sr.total += ss.Total
	sr.good += ss.Good
	sr.retracted += ss.Retracted
	if ss.Start.Before(sr.start) {
		sr.start = ss.Start
	}
	sr.hist.Restore(ss.Levels)
}

// seriesKey builds the same key as seriesFor from saved values.
func seriesKey(values []string, present []bool) []byte {
	var key []byte
	for i, v := range values {
		key = appendKeyPart(key, present[i], v)
	}
	return key
}

// appendKeyPart keeps keys unambiguous: a presence byte, then the length-prefixed value.
func appendKeyPart(key []byte, present bool, v string) []byte {
	if !present {
		return append(key, 0)
	}
	key = append(key, 1)
	key = binary.AppendUvarint(key, uint64(len(v)))
	return append(key, v...)
}
