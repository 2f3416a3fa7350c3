package alerteventsconnector // import "github.com/imcol/imcol/connectors/alerteventsconnector"

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/open-telemetry/opentelemetry-collector-contrib/processor/deltatocumulativeprocessor"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/imcol/imcol/connectors/alerteventsconnector/internal/metadata"
	"github.com/imcol/imcol/connectors/alerteventsconnector/internal/tsdbstore"
)

// evalGroup is one rule group and its schedule.
type evalGroup struct {
	group    *rules.Group
	interval time.Duration
	lastEval time.Time
	attrs    metric.MeasurementOption
}

// alertKey identifies one alert instance across evaluations: the rule and
// the hash of the alert's labels, the key Prometheus's AlertingRule uses.
type alertKey struct {
	group, rule int
	fp          uint64
}

type alertEventsConnector struct {
	cfg       *Config
	logger    *zap.Logger
	next      consumer.Logs
	telemetry *metadata.TelemetryBuilder
	clock     clockwork.Clock

	store       *tsdbstore.Store
	translation tsdbstore.Translation
	retention   time.Duration
	// deltas turns delta sums and histograms into cumulative ones before they
	// reach the store: contrib's deltatocumulative processor, bounded to
	// store::max_series streams.
	deltas processor.Metrics

	groups         []*evalGroup
	externalLabels labels.Labels
	externalURL    string
	notifier       *notifierHandle // nil without alertmanagers

	// Owned by the evaluation goroutine (or the test driving evaluate).
	tracked map[alertKey]trackedAlert

	pending, firing atomic.Int64

	startOnce, stopOnce sync.Once
	stopCh              chan struct{}
	loopDone            chan struct{}
}

// trackedAlert is the last state seen for an alert instance, with a copy of
// the alert so an event can still be built once the rules package forgets it.
// The map is bounded by the rules' own active-alert maps, which in turn are
// bounded by the series the store holds.
type trackedAlert struct {
	state string
	alert rules.Alert
	group *rules.Group
	rule  *rules.AlertingRule
}

const (
	statePending  = "pending"
	stateFiring   = "firing"
	stateResolved = "resolved"
	stateInactive = "inactive"
)

var (
	stateAttrs = map[string]metric.MeasurementOption{
		statePending:  metric.WithAttributeSet(attribute.NewSet(attribute.String("state", statePending))),
		stateFiring:   metric.WithAttributeSet(attribute.NewSet(attribute.String("state", stateFiring))),
		stateResolved: metric.WithAttributeSet(attribute.NewSet(attribute.String("state", stateResolved))),
		stateInactive: metric.WithAttributeSet(attribute.NewSet(attribute.String("state", stateInactive))),
	}
	dropReasonAttrs = [...]metric.MeasurementOption{
		tsdbstore.DropSeriesLimit: reasonAttr("series_limit"),
		tsdbstore.DropOutOfOrder:  reasonAttr("out_of_order"),
		tsdbstore.DropTooOld:      reasonAttr("too_old"),
		tsdbstore.DropUnsupported: reasonAttr("unsupported"),
		tsdbstore.DropInvalid:     reasonAttr("invalid"),
	}
	deltaAttrs = reasonAttr("delta")
)

func reasonAttr(reason string) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", reason)))
}

func newConnector(set connector.Settings, cfg *Config, next consumer.Logs, clk clockwork.Clock) (*alertEventsConnector, error) {
	slogger := slog.New(zapslog.NewHandler(set.Logger.Core(), zapslog.WithName("prometheus")))
	loaded, err := loadRuleGroups(cfg, slogger)
	if err != nil {
		return nil, err
	}
	tb, err := metadata.NewTelemetryBuilder(set.TelemetrySettings)
	if err != nil {
		return nil, err
	}
	c := &alertEventsConnector{
		cfg:       cfg,
		logger:    set.Logger,
		next:      next,
		telemetry: tb,
		clock:     clk,
		translation: tsdbstore.Translation{
			Namespace:                     cfg.Translation.Namespace,
			AddMetricSuffixes:             cfg.Translation.AddMetricSuffixes,
			WithoutScopeInfo:              cfg.Translation.WithoutScopeInfo,
			ResourceToTelemetryConversion: cfg.Translation.ResourceToTelemetryConversion,
		},
		externalURL: cfg.ExternalURL,
		tracked:     make(map[alertKey]trackedAlert),
		stopCh:      make(chan struct{}),
		loopDone:    make(chan struct{}),
	}
	c.retention = cfg.Store.Retention
	if c.retention == 0 {
		var fixed []string
		c.retention, fixed = derivedRetention(loaded, cfg.LookbackDelta, cfg.EvaluationInterval)
		if len(fixed) > 0 {
			set.Logger.Warn("Rules select data at a fixed time (@ <timestamp>); only the derived retention is kept, so they see no data once that time is further back",
				zap.Strings("rules", fixed), zap.Duration("retention", c.retention))
		}
	}
	c.externalLabels = labels.FromMap(cfg.ExternalLabels)

	c.store, err = tsdbstore.New(tsdbstore.Options{
		MaxSeries: cfg.Store.MaxSeries,
		Retention: c.retention,
		Dir:       cfg.Store.Directory,
		Logger:    slogger,
	})
	if err != nil {
		tb.Shutdown()
		return nil, err
	}
	fail := func(err error) (*alertEventsConnector, error) {
		tb.Shutdown()
		return nil, errors.Join(err, c.store.Close())
	}
	ingest, err := consumer.NewMetrics(c.ingest, consumer.WithCapabilities(consumer.Capabilities{MutatesData: false}))
	if err != nil {
		return fail(err)
	}
	if c.deltas, err = newDeltaToCumulative(set, cfg, c.retention, ingest); err != nil {
		return fail(err)
	}

	if len(cfg.Alertmanagers) > 0 {
		c.notifier, err = newNotifier(cfg, c.externalLabels, slogger)
		if err != nil {
			return fail(err)
		}
	}

	opts := c.ruleOptions(slogger)
	for _, lg := range loaded {
		g, err := buildGroup(lg, cfg, c.externalLabels, opts, slogger)
		if err != nil {
			return fail(err)
		}
		c.groups = append(c.groups, g)
	}
	if err := c.registerCallbacks(); err != nil {
		return fail(err)
	}
	return c, nil
}

// newDeltaToCumulative builds contrib's deltatocumulative processor in front
// of next, with its streams bounded by store::max_series and forgotten after
// the retention. It reports its own telemetry (otelcol_deltatocumulative_*).
func newDeltaToCumulative(set connector.Settings, cfg *Config, retention time.Duration, next consumer.Metrics) (processor.Metrics, error) {
	f := deltatocumulativeprocessor.NewFactory()
	pcfg := f.CreateDefaultConfig().(*deltatocumulativeprocessor.Config)
	pcfg.MaxStreams = cfg.Store.MaxSeries
	pcfg.MaxStale = max(retention, time.Minute)
	return f.CreateMetrics(context.Background(), processor.Settings{
		ID:                component.NewIDWithName(f.Type(), set.ID.String()),
		TelemetrySettings: set.TelemetrySettings,
		BuildInfo:         set.BuildInfo,
	}, pcfg, next)
}

// ruleOptions wires Prometheus's rule evaluation to the store, the PromQL
// engine and, when configured, the notifier.
func (c *alertEventsConnector) ruleOptions(slogger *slog.Logger) *rules.ManagerOptions {
	cfg := c.cfg
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:        slogger,
		MaxSamples:    cfg.MaxQuerySamples,
		Timeout:       cfg.QueryTimeout,
		LookbackDelta: cfg.LookbackDelta,
		// Subqueries without a step use the evaluation interval, as Prometheus
		// uses its global evaluation_interval.
		NoStepSubqueryIntervalFn: func(int64) int64 { return cfg.EvaluationInterval.Milliseconds() },
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   promqlParser,
	})
	var extURL *url.URL
	if cfg.ExternalURL != "" {
		extURL, _ = url.Parse(cfg.ExternalURL) // validated in Validate
	}
	notify := func(context.Context, string, ...*rules.Alert) {}
	if c.notifier != nil {
		notify = rules.SendAlerts(c.notifier.manager, cfg.ExternalURL)
	}
	return &rules.ManagerOptions{
		NameValidationScheme: model.UTF8Validation,
		ExternalURL:          extURL,
		QueryFunc:            rules.EngineQueryFunc(engine, c.store),
		NotifyFunc:           notify,
		Appendable:           c.store,
		Queryable:            c.store,
		Logger:               slogger,
		ResendDelay:          cfg.ResendDelay,
		Metrics:              rules.NewGroupMetrics(nil),
		Parser:               promqlParser,
	}
}

func buildGroup(lg loadedGroup, cfg *Config, extLabels labels.Labels, opts *rules.ManagerOptions, logger *slog.Logger) (*evalGroup, error) {
	interval := cfg.EvaluationInterval
	if lg.group.Interval != 0 {
		interval = time.Duration(lg.group.Interval)
	}
	rs := make([]rules.Rule, 0, len(lg.group.Rules))
	for i, r := range lg.group.Rules {
		expr, err := promqlParser.ParseExpr(r.Expr)
		if err != nil {
			// rulefmt already parsed it; kept for safety against parser drift.
			return nil, fmt.Errorf("%s: group %q, rule %d: %w", lg.file, lg.group.Name, i+1, err)
		}
		lbls := rules.FromMaps(lg.group.Labels, r.Labels)
		if r.Alert != "" {
			// restored=true: there is no persisted `for` state to restore, and
			// only restored rules write the ALERTS series.
			rs = append(rs, rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
				lbls, labels.FromMap(r.Annotations), extLabels, cfg.ExternalURL, true, logger.With("alert", r.Alert)))
			continue
		}
		rs = append(rs, rules.NewRecordingRule(r.Record, expr, lbls))
	}
	g := rules.NewGroup(rules.GroupOptions{
		Name:        lg.group.Name,
		File:        lg.file,
		Interval:    interval,
		Limit:       lg.group.Limit,
		Rules:       rs,
		Opts:        opts,
		QueryOffset: (*time.Duration)(lg.group.QueryOffset),
	})
	return &evalGroup{
		group:    g,
		interval: interval,
		attrs:    metric.WithAttributeSet(attribute.NewSet(attribute.String("rule_group", rules.GroupKey(lg.file, lg.group.Name)))),
	}, nil
}

func (c *alertEventsConnector) registerCallbacks() error {
	return errors.Join(
		c.telemetry.RegisterAlertEventsAlertsCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(c.pending.Load(), stateAttrs[statePending])
			o.Observe(c.firing.Load(), stateAttrs[stateFiring])
			return nil
		}),
		c.telemetry.RegisterAlertEventsStoreSeriesCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(c.store.NumSeries())
			return nil
		}),
		c.telemetry.RegisterAlertEventsStoreChunksCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(c.store.NumChunks())
			return nil
		}),
		c.telemetry.RegisterAlertEventsNotificationsSentCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(c.notifier.stats().sent)
			return nil
		}),
		c.telemetry.RegisterAlertEventsNotificationsFailedCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(c.notifier.stats().failed)
			return nil
		}),
		c.telemetry.RegisterAlertEventsNotificationsDroppedCallback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(c.notifier.stats().dropped)
			return nil
		}),
	)
}

func (*alertEventsConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeMetrics only stores samples; evaluation happens on the ticker.
// Metrics with delta temporality go through the deltatocumulative processor
// first, on a copy: the connector does not mutate its input.
func (c *alertEventsConnector) ConsumeMetrics(ctx context.Context, md pmetric.Metrics) error {
	if !hasDelta(md) {
		return c.ingest(ctx, md)
	}
	cp := pmetric.NewMetrics()
	md.CopyTo(cp)
	in := int64(cp.DataPointCount())
	var out deltaOut
	// The processor calls ingest synchronously with the context it was given.
	if err := c.deltas.ConsumeMetrics(context.WithValue(ctx, deltaOutKey{}, &out), cp); err != nil {
		return err
	}
	if dropped := in - out.points; dropped > 0 {
		c.telemetry.AlertEventsStoreDropped.Add(ctx, dropped, deltaAttrs)
	}
	return nil
}

type (
	deltaOutKey struct{}
	// deltaOut counts the data points the deltatocumulative processor passed on.
	deltaOut struct{ points int64 }
)

// ingest writes cumulative metrics to the store.
func (c *alertEventsConnector) ingest(ctx context.Context, md pmetric.Metrics) error {
	if out, ok := ctx.Value(deltaOutKey{}).(*deltaOut); ok {
		out.points += int64(md.DataPointCount())
	}
	res := c.store.Ingest(ctx, md, c.translation)
	if res.Unsupported > 0 {
		c.telemetry.AlertEventsStoreDropped.Add(ctx, res.Unsupported, dropReasonAttrs[tsdbstore.DropUnsupported])
	}
	if res.Invalid > 0 {
		c.telemetry.AlertEventsStoreDropped.Add(ctx, res.Invalid, dropReasonAttrs[tsdbstore.DropInvalid])
	}
	c.recordStoreDrops(ctx)
	return nil
}

func hasDelta(md pmetric.Metrics) bool {
	delta := false
	tsdbstore.EachAggregated(md, func(temporality pmetric.AggregationTemporality, _ int) {
		delta = delta || temporality == pmetric.AggregationTemporalityDelta
	})
	return delta
}

func (c *alertEventsConnector) recordStoreDrops(ctx context.Context) {
	drops := c.store.TakeDrops()
	for reason, n := range drops {
		if n > 0 {
			c.telemetry.AlertEventsStoreDropped.Add(ctx, n, dropReasonAttrs[reason])
		}
	}
}

func (c *alertEventsConnector) Start(ctx context.Context, host component.Host) error {
	var err error
	c.startOnce.Do(func() {
		if err = c.deltas.Start(ctx, host); err != nil {
			close(c.loopDone)
			return
		}
		if c.notifier != nil {
			c.notifier.start()
		}
		go c.loop()
	})
	return err
}

func (c *alertEventsConnector) loop() {
	defer close(c.loopDone)
	t := c.clock.NewTicker(c.cfg.EvaluationInterval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		// Shutdown cancels an evaluation in flight (a slow query).
		select {
		case <-c.stopCh:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-c.stopCh:
			return
		case ts := <-t.Chan():
			c.evaluate(ctx, ts)
		}
	}
}

// Shutdown stops evaluating, then stops the notifier (draining its queues
// when configured), within ctx's deadline. It works without Start and twice.
func (c *alertEventsConnector) Shutdown(ctx context.Context) error {
	var err error
	c.stopOnce.Do(func() {
		close(c.stopCh)
		c.startOnce.Do(func() { close(c.loopDone) }) // never started: no loop to wait for
		loopDone := true
		select {
		case <-c.loopDone:
		case <-ctx.Done():
			loopDone = false
			err = fmt.Errorf("waiting for the evaluation loop: %w", ctx.Err())
		}
		if c.notifier != nil {
			err = errors.Join(err, c.notifier.stop(ctx))
		}
		err = errors.Join(err, c.deltas.Shutdown(ctx))
		if loopDone {
			// An evaluation still running would query a closed head: the head
			// (memory only) is then left to the garbage collector.
			err = errors.Join(err, c.store.Close())
		}
		c.telemetry.Shutdown()
	})
	return err
}

// evaluate runs every due rule group at ts, turns alert state changes into
// log records and hands them to the next consumer (without holding a lock).
func (c *alertEventsConnector) evaluate(ctx context.Context, ts time.Time) {
	// Wall time rather than the injected clock: this measures how long the
	// evaluation takes, not the time it evaluates at.
	start := time.Now()
	if err := c.store.Truncate(ts.Add(-c.retention).UnixMilli()); err != nil {
		c.logger.Warn("Truncating the TSDB head failed", zap.Error(err))
	}

	var events []alertEvent
	seen := make(map[alertKey]struct{}, len(c.tracked))
	var pending, firing int64
	for gi, g := range c.groups {
		c.evalIfDue(ctx, g, ts)
		for ri, ar := range g.group.Rules() {
			rule, ok := ar.(*rules.AlertingRule)
			if !ok {
				continue
			}
			ev := c.diffRule(gi, ri, g.group, rule, ts, seen)
			events = append(events, ev...)
			for _, a := range rule.ActiveAlerts() {
				switch a.State {
				case rules.StatePending:
					pending++
				case rules.StateFiring:
					firing++
				}
			}
		}
	}
	// Alerts the rules package forgot (a pending alert that cleared without
	// firing is deleted, not resolved).
	for k, tr := range c.tracked {
		if _, ok := seen[k]; ok {
			continue
		}
		delete(c.tracked, k)
		if tr.state == statePending && c.cfg.EmitPending {
			events = append(events, newEvent(stateInactive, &tr.alert, tr.group, tr.rule, ts))
		}
	}
	c.pending.Store(pending)
	c.firing.Store(firing)
	c.recordStoreDrops(ctx)
	c.telemetry.AlertEventsEvaluationDuration.Record(ctx, time.Since(start).Seconds())

	if len(events) == 0 {
		return
	}
	logs := c.buildLogs(events, ts)
	for _, e := range events {
		c.telemetry.AlertEventsEvents.Add(ctx, 1, stateAttrs[e.state])
	}
	if err := c.next.ConsumeLogs(ctx, logs); err != nil {
		c.telemetry.AlertEventsEventsFailed.Add(ctx, int64(len(events)))
		c.logger.Warn("Next consumer refused alert events", zap.Int("events", len(events)), zap.Error(err))
	}
}

// evalIfDue evaluates the group at ts when its interval has elapsed, with half
// an evaluation interval of slack so ticker jitter never skips a slot.
func (c *alertEventsConnector) evalIfDue(ctx context.Context, g *evalGroup, ts time.Time) {
	if !g.lastEval.IsZero() && ts.Sub(g.lastEval) < g.interval-c.cfg.EvaluationInterval/2 {
		return
	}
	g.lastEval = ts
	g.group.Eval(ctx, ts)
	c.telemetry.AlertEventsEvaluations.Add(ctx, 1, g.attrs)
	var failed int64
	for _, r := range g.group.Rules() {
		if r.Health() == rules.HealthBad {
			failed++
		}
	}
	if failed > 0 {
		c.telemetry.AlertEventsEvaluationFailures.Add(ctx, failed, g.attrs)
	}
}

// diffRule compares the rule's alert instances with the last emitted state.
func (c *alertEventsConnector) diffRule(gi, ri int, g *rules.Group, rule *rules.AlertingRule, ts time.Time, seen map[alertKey]struct{}) []alertEvent {
	var out []alertEvent
	rule.ForEachActiveAlert(func(a *rules.Alert) {
		k := alertKey{group: gi, rule: ri, fp: a.Labels.Hash()}
		seen[k] = struct{}{}
		tr, known := c.tracked[k]
		prev := tr.state
		var state string
		switch a.State {
		case rules.StatePending:
			state = statePending
		case rules.StateFiring:
			state = stateFiring
		case rules.StateInactive:
			// Inactive alerts the rules package keeps are resolved ones, kept for
			// its resolved retention; only a transition from firing is an event.
			if !known || prev != stateFiring {
				c.tracked[k] = trackedAlert{state: stateResolved, alert: *a, group: g, rule: rule}
				return
			}
			state = stateResolved
		default:
			return
		}
		if known && prev == state {
			return
		}
		c.tracked[k] = trackedAlert{state: state, alert: *a, group: g, rule: rule}
		if state == statePending && !c.cfg.EmitPending {
			return
		}
		out = append(out, newEvent(state, a, g, rule, ts))
	})
	return out
}
