package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import (
	"context"
	"errors"
	"fmt"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottllog"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottlspan"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/ottlfuncs"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

var nopLogger = zap.NewNop()

type stageMatcher[K any] struct {
	stage imsemconv.Stage
	conds ottl.ConditionSequence[K]
}

// stageMatchers recognise stages by OTTL condition, in lifecycle order.
type stageMatchers struct {
	spans []stageMatcher[*ottlspan.TransformContext]
	logs  []stageMatcher[*ottllog.TransformContext]
}

func newStageMatchers(cfg *StageConditionsConfig, set component.TelemetrySettings) (*stageMatchers, error) {
	sm := &stageMatchers{}
	var errs []error
	if !cfg.Spans.empty() {
		parser, err := ottlspan.NewParser(ottlfuncs.StandardConverters[*ottlspan.TransformContext](), set)
		if err != nil {
			return nil, fmt.Errorf("stage_conditions::spans: %w", err)
		}
		sm.spans, errs = parseStageConditions(&parser, "stage_conditions::spans", cfg.Spans.byStage(), set, errs)
	}
	if !cfg.Logs.empty() {
		parser, err := ottllog.NewParser(ottlfuncs.StandardConverters[*ottllog.TransformContext](), set)
		if err != nil {
			return nil, fmt.Errorf("stage_conditions::logs: %w", err)
		}
		sm.logs, errs = parseStageConditions(&parser, "stage_conditions::logs", cfg.Logs.byStage(), set, errs)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return sm, nil
}

// parseStageConditions parses every stage's conditions, appending to errs one error per
// stage that fails, named by its YAML key, so the user sees all mistakes at once.
func parseStageConditions[K any](parser *ottl.Parser[K], key string, stages []stageConditionList, set component.TelemetrySettings, errs []error) ([]stageMatcher[K], []error) {
	var matchers []stageMatcher[K]
	for _, sc := range stages {
		if len(sc.conds) == 0 {
			continue
		}
		parsed, err := parser.ParseConditions(sc.conds)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s::%s: %w", key, sc.stage, err))
			continue
		}
		// What ottlspan.NewConditionSequence and ottllog.NewConditionSequence do without options.
		matchers = append(matchers, stageMatcher[K]{stage: sc.stage, conds: ottl.NewConditionSequence(parsed, set)})
	}
	return matchers, errs
}

// matchStage returns the stage of the first matcher whose conditions hold for tCtx.
func matchStage[K any](ctx context.Context, matchers []stageMatcher[K], tCtx K) (imsemconv.Stage, bool, event.Reason) {
	for i := range matchers {
		m := &matchers[i]
		ok, err := m.conds.Eval(ctx, tCtx)
		if err != nil {
			return imsemconv.StageUnknown, true, event.ReasonConditionError
		}
		if ok {
			return m.stage, true, event.ReasonNone
		}
	}
	return imsemconv.StageUnknown, false, event.ReasonNone
}

// extractor turns spans and log records into lifecycle events. It is safe for concurrent
// use: it only reads its configuration.
type extractor struct {
	names    event.Names
	matchers *stageMatchers
	// unrecognized counts an event that could not be used; it passes through untouched.
	unrecognized func(ctx context.Context, r event.Reason)
}

func (x *extractor) spanStage(ctx context.Context, rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, span ptrace.Span) (imsemconv.Stage, bool, event.Reason) {
	stage, found, reason := event.StageFromAttributes(span.Attributes(), &x.names)
	if found || len(x.matchers.spans) == 0 {
		return stage, found, reason
	}
	tCtx := ottlspan.NewTransformContextPtr(rs, ss, span)
	defer tCtx.Close()
	return matchStage(ctx, x.matchers.spans, tCtx)
}

func (x *extractor) logStage(ctx context.Context, rl plog.ResourceLogs, sl plog.ScopeLogs, lr plog.LogRecord) (imsemconv.Stage, bool, event.Reason) {
	stage, found, reason := event.StageFromAttributes(lr.Attributes(), &x.names)
	if found || len(x.matchers.logs) == 0 {
		return stage, found, reason
	}
	tCtx := ottllog.NewTransformContextPtr(rl, sl, lr)
	defer tCtx.Close()
	return matchStage(ctx, x.matchers.logs, tCtx)
}

// traces appends the lifecycle events found in td to dst. Ref numbers every span in
// iteration order, so duplicates can be removed afterwards.
func (x *extractor) traces(ctx context.Context, td ptrace.Traces, sink uint8, dst []event.Event) []event.Event {
	var ref int32
	for _, rs := range td.ResourceSpans().All() {
		src := sourceOf(rs.Resource())
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				n := len(dst)
				dst = x.span(ctx, rs, ss, span, sink, ref, dst)
				if len(dst) > n {
					dst[n].Source = src
				}
				ref++
			}
		}
	}
	return dst
}

func (x *extractor) span(ctx context.Context, rs ptrace.ResourceSpans, ss ptrace.ScopeSpans, span ptrace.Span, sink uint8, ref int32, dst []event.Event) []event.Event {
	if span.Name() == imsemconv.OutcomeEventName {
		return dst // our own output coming round again (chained collectors)
	}
	stage, found, reason := x.spanStage(ctx, rs, ss, span)
	if !found {
		return dst
	}
	if reason == event.ReasonNone {
		dst = append(dst, event.Event{})
		ev := &dst[len(dst)-1]
		if reason = event.Decode(span.Attributes(), &x.names, stage, ev); reason == event.ReasonNone {
			ev.TraceID = span.TraceID()
			ev.Start, ev.End = int64(span.StartTimestamp()), int64(span.EndTimestamp())
			ev.Failed = span.Status().Code() == ptrace.StatusCodeError
			ev.Sink, ev.Ref = sink, ref
			return dst
		}
		dst = dst[:len(dst)-1]
	}
	x.unrecognized(ctx, reason)
	return dst
}

// logs appends the lifecycle events found in ld to dst.
func (x *extractor) logs(ctx context.Context, ld plog.Logs, sink uint8, dst []event.Event) []event.Event {
	var ref int32
	for _, rl := range ld.ResourceLogs().All() {
		src := sourceOf(rl.Resource())
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				n := len(dst)
				dst = x.log(ctx, rl, sl, lr, sink, ref, dst)
				if len(dst) > n {
					dst[n].Source = src
				}
				ref++
			}
		}
	}
	return dst
}

// maxSourceKey bounds a source's key: resource attributes are input too.
const maxSourceKey = 2 * event.MaxIDLength

// instanceKeys name a service's replica, best first: many SDKs set no service.instance.id,
// and replicas exporting with different lags must not share a source (each would make the
// other's events look like late data).
var instanceKeys = [...]string{"service.instance.id", "k8s.pod.uid", "host.name"}

// sourceOf names the service instance a resource describes, the unit whose progress in event
// time the watermark follows: service.name, and the first of instanceKeys that is set.
func sourceOf(res pcommon.Resource) string {
	attrs := res.Attributes()
	var name, instance string
	if v, ok := attrs.Get("service.name"); ok {
		name = v.AsString()
	}
	for _, k := range instanceKeys {
		if v, ok := attrs.Get(k); ok && v.AsString() != "" {
			instance = v.AsString()
			break
		}
	}
	key := name
	if instance != "" {
		key = name + "\x00" + instance
	}
	if len(key) > maxSourceKey {
		key = key[:maxSourceKey]
	}
	return key
}

func (x *extractor) log(ctx context.Context, rl plog.ResourceLogs, sl plog.ScopeLogs, lr plog.LogRecord, sink uint8, ref int32, dst []event.Event) []event.Event {
	if lr.EventName() == imsemconv.OutcomeEventName {
		return dst
	}
	stage, found, reason := x.logStage(ctx, rl, sl, lr)
	if !found {
		return dst
	}
	if reason == event.ReasonNone {
		dst = append(dst, event.Event{})
		ev := &dst[len(dst)-1]
		if reason = event.Decode(lr.Attributes(), &x.names, stage, ev); reason == event.ReasonNone {
			ev.TraceID = lr.TraceID()
			ts := lr.Timestamp()
			if ts == 0 {
				ts = lr.ObservedTimestamp()
			}
			ev.Start, ev.End = int64(ts), int64(ts)
			ev.Failed = lr.SeverityNumber() >= plog.SeverityNumberError
			ev.Sink, ev.Ref = sink, ref
			return dst
		}
		dst = dst[:len(dst)-1]
	}
	x.unrecognized(ctx, reason)
	return dst
}

// removeSpans drops the spans whose ref is in drop (sorted ascending).
func removeSpans(td ptrace.Traces, drop []int32) {
	hit := refsIn[ptrace.Span](drop)
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		return removeEmptying(rs.ScopeSpans(), func(ss ptrace.ScopeSpans) bool {
			return removeEmptying(ss.Spans(), hit)
		})
	})
}

// removeLogs drops the log records whose ref is in drop (sorted ascending).
func removeLogs(ld plog.Logs, drop []int32) {
	hit := refsIn[plog.LogRecord](drop)
	ld.ResourceLogs().RemoveIf(func(rl plog.ResourceLogs) bool {
		return removeEmptying(rl.ScopeLogs(), func(sl plog.ScopeLogs) bool {
			return removeEmptying(sl.LogRecords(), hit)
		})
	})
}

// refsIn returns a RemoveIf predicate that must see every record in ref order (the order
// extraction numbered them in) and selects those whose ref is in drop (sorted ascending).
func refsIn[E any](drop []int32) func(E) bool {
	var ref int32
	i := 0
	return func(E) bool {
		hit := i < len(drop) && drop[i] == ref
		if hit {
			i++
		}
		ref++
		return hit
	}
}

// removeEmptying removes the elements of s that remove selects and reports whether that
// emptied s, so the caller drops the container too. Only containers we emptied go; empty
// ones that came in stay untouched.
func removeEmptying[E any, S interface {
	RemoveIf(func(E) bool)
	Len() int
}](s S, remove func(E) bool) bool {
	removed := false
	s.RemoveIf(func(e E) bool {
		r := remove(e)
		removed = removed || r
		return r
	})
	return removed && s.Len() == 0
}
