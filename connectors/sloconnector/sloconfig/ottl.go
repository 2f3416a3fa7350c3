package sloconfig // import "github.com/imcol/imcol/connectors/sloconnector/sloconfig"

import (
	"fmt"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottllog"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/contexts/ottlspan"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/ottl/ottlfuncs"
	"go.opentelemetry.io/collector/component"
	"go.uber.org/zap"

	"github.com/imcol/imcol/components/signal"
)

// NewSpanParser returns the parser of the conditions of traces SLOs: the OTTL span context
// with the standard converters. Validate checks conditions with the same parser the
// connector runs them with.
func NewSpanParser(set component.TelemetrySettings) (ottl.Parser[*ottlspan.TransformContext], error) {
	return ottlspan.NewParser(ottlfuncs.StandardConverters[*ottlspan.TransformContext](), set)
}

// NewLogParser returns the parser of the conditions of logs SLOs (OTTL log context).
func NewLogParser(set component.TelemetrySettings) (ottl.Parser[*ottllog.TransformContext], error) {
	return ottllog.NewParser(ottlfuncs.StandardConverters[*ottllog.TransformContext](), set)
}

// keyedCondition is an OTTL condition and the YAML path that set it.
type keyedCondition struct{ key, condition string }

// checkConditions compiles every non-empty condition in the signal's context, only to
// check it, and returns one error per condition that does not compile.
func checkConditions(sig signal.Signal, conds []keyedCondition) []error {
	set := component.TelemetrySettings{Logger: zap.NewNop()}
	if sig == signal.Logs {
		return parseEach(NewLogParser, set, conds)
	}
	return parseEach(NewSpanParser, set, conds)
}

func parseEach[K any](newParser func(component.TelemetrySettings) (ottl.Parser[K], error), set component.TelemetrySettings, conds []keyedCondition) []error {
	parser, err := newParser(set)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, c := range conds {
		if c.condition == "" {
			continue
		}
		if _, err := parser.ParseCondition(c.condition); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.key, err))
		}
	}
	return errs
}
