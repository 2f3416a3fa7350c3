package sloconnector // import "github.com/imcol/imcol/connectors/sloconnector"

import (
	"context"
	"math"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottllog"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottlspan"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/imcol/imcol/connectors/sloconnector/sloconfig"
)

// verdict is what an SLI says about one event.
type verdict uint8

const (
	verdictIgnored verdict = iota // not selected by the SLI's total condition
	verdictGood
	verdictBad
	verdictRetracted      // a retraction: one good event, no total event
	verdictConditionError // an OTTL condition failed to evaluate: counted in telemetry only
	verdictNoLatency      // a latency SLI found no usable value: counted in telemetry only
)

// sli evaluates one SLO's indicator over a transform context K (span or log record).
type sli[K any] struct {
	total, good, bad *ottl.Condition[K]
	// retracted selects retractions (ratio SLIs only); nil when not configured.
	retracted *ottl.Condition[K]
	// latency returns the event's latency for latency SLIs; nil for ratio SLIs.
	latency   func(K) (time.Duration, bool)
	threshold time.Duration
}

func (s *sli[K]) evaluate(ctx context.Context, tCtx K) verdict {
	// A retraction is not one of the selected events (it corrects one counted earlier), so it
	// is recognised before the total condition and goes no further.
	if s.retracted != nil {
		ok, err := s.retracted.Eval(ctx, tCtx)
		if err != nil {
			return verdictConditionError
		}
		if ok {
			return verdictRetracted
		}
	}
	if s.total != nil {
		ok, err := s.total.Eval(ctx, tCtx)
		if err != nil {
			return verdictConditionError
		}
		if !ok {
			return verdictIgnored
		}
	}
	switch {
	case s.latency != nil:
		d, ok := s.latency(tCtx)
		if !ok {
			return verdictNoLatency
		}
		if d <= s.threshold {
			return verdictGood
		}
		return verdictBad
	case s.good != nil:
		ok, err := s.good.Eval(ctx, tCtx)
		if err != nil {
			return verdictConditionError
		}
		if ok {
			return verdictGood
		}
		return verdictBad
	default:
		ok, err := s.bad.Eval(ctx, tCtx)
		if err != nil {
			return verdictConditionError
		}
		if ok {
			return verdictBad
		}
		return verdictGood
	}
}

func parseCondition[K any](newParser func(component.TelemetrySettings) (ottl.Parser[K], error), cond string, set component.TelemetrySettings) (*ottl.Condition[K], error) {
	if cond == "" {
		return nil, nil
	}
	p, err := newParser(set)
	if err != nil {
		return nil, err
	}
	return p.ParseCondition(cond)
}

// newSLI compiles the SLI of an SLO validated for context K.
func newSLI[K any](cfg *sloconfig.SLIConfig, set component.TelemetrySettings,
	newParser func(component.TelemetrySettings) (ottl.Parser[K], error),
	latency func(attr string, unit time.Duration) func(K) (time.Duration, bool),
) (*sli[K], error) {
	s := &sli[K]{}
	var err error
	if r := cfg.Ratio; r != nil {
		if s.total, err = parseCondition(newParser, r.Total, set); err != nil {
			return nil, err
		}
		if s.good, err = parseCondition(newParser, r.Good, set); err != nil {
			return nil, err
		}
		if s.bad, err = parseCondition(newParser, r.Bad, set); err != nil {
			return nil, err
		}
		if s.retracted, err = parseCondition(newParser, r.Retracted, set); err != nil {
			return nil, err
		}
		return s, nil
	}
	l := cfg.Latency
	if s.total, err = parseCondition(newParser, l.Total, set); err != nil {
		return nil, err
	}
	s.threshold = time.Duration(l.Threshold)
	s.latency = latency(l.Attribute, l.UnitDuration())
	return s, nil
}

func spanLatency(attr string, unit time.Duration) func(*ottlspan.TransformContext) (time.Duration, bool) {
	if attr == "" {
		return func(tCtx *ottlspan.TransformContext) (time.Duration, bool) {
			span := tCtx.GetSpan()
			start, end := span.StartTimestamp(), span.EndTimestamp()
			if start == 0 || end < start {
				return 0, false
			}
			return time.Duration(end - start), true
		}
	}
	return func(tCtx *ottlspan.TransformContext) (time.Duration, bool) {
		return attrLatency(tCtx.GetSpan().Attributes(), attr, unit)
	}
}

func logLatency(attr string, unit time.Duration) func(*ottllog.TransformContext) (time.Duration, bool) {
	return func(tCtx *ottllog.TransformContext) (time.Duration, bool) {
		return attrLatency(tCtx.GetLogRecord().Attributes(), attr, unit)
	}
}

// maxLatency caps huge values (+Inf included) before the conversion to time.Duration overflows.
const maxLatency = float64(math.MaxInt64 / 2)

func attrLatency(attrs pcommon.Map, attr string, unit time.Duration) (time.Duration, bool) {
	v, ok := attrs.Get(attr)
	if !ok {
		return 0, false
	}
	var f float64
	switch v.Type() {
	case pcommon.ValueTypeInt:
		f = float64(v.Int())
	case pcommon.ValueTypeDouble:
		f = v.Double()
	default:
		return 0, false
	}
	f *= float64(unit)
	switch {
	case math.IsNaN(f) || f < 0:
		return 0, false
	case f > maxLatency: // beyond any threshold, so bad rather than unmeasurable
		return time.Duration(maxLatency), true
	}
	return time.Duration(f), true
}
