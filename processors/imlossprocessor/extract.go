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
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.uber.org/zap"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

var nopLogger = zap.NewNop()

type spanStageMatcher struct {
	stage imsemconv.Stage
	conds ottl.ConditionSequence[*ottlspan.TransformContext]
}

type logStageMatcher struct {
	stage imsemconv.Stage
	conds ottl.ConditionSequence[*ottllog.TransformContext]
}

// stageMatchers recognise stages by OTTL condition, in lifecycle order.
type stageMatchers struct {
	spans []spanStageMatcher
	logs  []logStageMatcher
}

func newStageMatchers(cfg *StageConditionsConfig, set component.TelemetrySettings) (*stageMatchers, error) {
	sm := &stageMatchers{}
	var errs []error
	if !cfg.Spans.empty() {
		parser, err := ottlspan.NewParser(ottlfuncs.StandardConverters[*ottlspan.TransformContext](), set)
		if err != nil {
			return nil, fmt.Errorf("stage_conditions::spans: %w", err)
		}
		for _, sc := range cfg.Spans.byStage() {
			if len(sc.conds) == 0 {
				continue
			}
			parsed, err := parser.ParseConditions(sc.conds)
			if err != nil {
				errs = append(errs, fmt.Errorf("stage_conditions::spans::%s: %w", sc.stage, err))
				continue
			}
			sm.spans = append(sm.spans, spanStageMatcher{stage: sc.stage, conds: ottlspan.NewConditionSequence(parsed, set)})
		}
	}
	if !cfg.Logs.empty() {
		parser, err := ottllog.NewParser(ottlfuncs.StandardConverters[*ottllog.TransformContext](), set)
		if err != nil {
			return nil, fmt.Errorf("stage_conditions::logs: %w", err)
		}
		for _, sc := range cfg.Logs.byStage() {
			if len(sc.conds) == 0 {
				continue
			}
			parsed, err := parser.ParseConditions(sc.conds)
			if err != nil {
				errs = append(errs, fmt.Errorf("stage_conditions::logs::%s: %w", sc.stage, err))
				continue
			}
			sm.logs = append(sm.logs, logStageMatcher{stage: sc.stage, conds: ottllog.NewConditionSequence(parsed, set)})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return sm, nil
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
	for i := range x.matchers.spans {
		m := &x.matchers.spans[i]
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

func (x *extractor) logStage(ctx context.Context, rl plog.ResourceLogs, sl plog.ScopeLogs, lr plog.LogRecord) (imsemconv.Stage, bool, event.Reason) {
	stage, found, reason := event.StageFromAttributes(lr.Attributes(), &x.names)
	if found || len(x.matchers.logs) == 0 {
		return stage, found, reason
	}
	tCtx := ottllog.NewTransformContextPtr(rl, sl, lr)
	defer tCtx.Close()
	for i := range x.matchers.logs {
		m := &x.matchers.logs[i]
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

// traces appends the lifecycle events found in td to dst. Ref numbers every span in
// iteration order, so duplicates can be removed afterwards.
func (x *extractor) traces(ctx context.Context, td ptrace.Traces, sink uint8, dst []event.Event) []event.Event {
	var ref int32
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				dst = x.span(ctx, rs, ss, span, sink, ref, dst)
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
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				dst = x.log(ctx, rl, sl, lr, sink, ref, dst)
				ref++
			}
		}
	}
	return dst
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
	var ref int32
	i := 0
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		emptied := false
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			removed := false
			ss.Spans().RemoveIf(func(ptrace.Span) bool {
				hit := i < len(drop) && drop[i] == ref
				if hit {
					i++
					removed = true
				}
				ref++
				return hit
			})
			// Only containers we emptied go; empty ones that came in stay untouched.
			gone := removed && ss.Spans().Len() == 0
			emptied = emptied || gone
			return gone
		})
		return emptied && rs.ScopeSpans().Len() == 0
	})
}

// removeLogs drops the log records whose ref is in drop (sorted ascending).
func removeLogs(ld plog.Logs, drop []int32) {
	var ref int32
	i := 0
	ld.ResourceLogs().RemoveIf(func(rl plog.ResourceLogs) bool {
		emptied := false
		rl.ScopeLogs().RemoveIf(func(sl plog.ScopeLogs) bool {
			removed := false
			sl.LogRecords().RemoveIf(func(plog.LogRecord) bool {
				hit := i < len(drop) && drop[i] == ref
				if hit {
					i++
					removed = true
				}
				ref++
				return hit
			})
			gone := removed && sl.LogRecords().Len() == 0
			emptied = emptied || gone
			return gone
		})
		return emptied && rl.ScopeLogs().Len() == 0
	})
}
