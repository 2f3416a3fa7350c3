package alerteventsconnector // import "github.com/imcol/imcol/connectors/alerteventsconnector"

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// inlineRulesSource names inline groups in errors and in the rule_group
// attribute, where a rule file's path would be.
const inlineRulesSource = "alert_events.groups"

// promqlParser parses rules exactly as Prometheus does by default.
var promqlParser = parser.NewParser(parser.Options{})

// loadedGroup is one validated rule group and where it came from.
type loadedGroup struct {
	// file is the rule file, or inlineRulesSource.
	file string
	// key is the YAML path of the config entry that brought the group, for errors.
	key   string
	group rulefmt.RuleGroup
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// loadRuleGroups reads rule_files (expanding globs) and the inline groups,
// validating them with Prometheus's rulefmt, so every error names the file,
// the group and the rule.
func loadRuleGroups(cfg *Config, logger *slog.Logger) ([]loadedGroup, error) {
	var (
		out  []loadedGroup
		errs []error
	)
	seen := map[string]struct{}{}
	for i, pattern := range cfg.RuleFiles {
		files, err := filepath.Glob(pattern)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule_files::%d: %q: %w", i, pattern, err))
			continue
		}
		if len(files) == 0 {
			errs = append(errs, fmt.Errorf("rule_files::%d: %q matches no file", i, pattern))
			continue
		}
		slices.Sort(files)
		for _, f := range files {
			if _, dup := seen[f]; dup {
				continue
			}
			seen[f] = struct{}{}
			rgs, ferrs := rulefmt.ParseFile(f, false, model.UTF8Validation, promqlParser, logger)
			for _, e := range ferrs {
				errs = append(errs, fmt.Errorf("rule_files::%d: %w", i, e))
			}
			if len(ferrs) > 0 {
				continue
			}
			for _, g := range rgs.Groups {
				out = append(out, loadedGroup{file: f, key: fmt.Sprintf("rule_files::%d: %s: group %q", i, f, g.Name), group: g})
			}
		}
	}
	if len(cfg.Groups) > 0 {
		// Inline groups go through the same parser as files, so they accept
		// exactly the rule-file schema and fail the same way.
		content, err := yaml.Marshal(map[string]any{"groups": cfg.Groups})
		if err != nil {
			errs = append(errs, fmt.Errorf("groups: %w", err))
		} else {
			rgs, gerrs := rulefmt.Parse(content, false, model.UTF8Validation, promqlParser, logger)
			if len(gerrs) > 0 {
				for _, e := range gerrs {
					errs = append(errs, fmt.Errorf("groups: %w", e))
				}
			} else {
				// rulefmt keeps the groups in the order of the list.
				for j, g := range rgs.Groups {
					out = append(out, loadedGroup{file: inlineRulesSource, key: fmt.Sprintf("groups::%d", j), group: g})
				}
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n := 0
	for _, g := range out {
		n += len(g.group.Rules)
	}
	if n == 0 {
		return nil, errors.New("no rule defined: configure at least one alerting rule in rule_files or groups")
	}
	for _, g := range out {
		if g.group.Interval != 0 && time.Duration(g.group.Interval) < cfg.EvaluationInterval {
			errs = append(errs, fmt.Errorf("%s: interval %s is shorter than evaluation_interval (%s)",
				g.key, g.group.Interval, cfg.EvaluationInterval))
		}
	}
	return out, errors.Join(errs...)
}

// derivedRetention is the history the rules can read: for each rule, how far
// before its evaluation time Prometheus's engine selects samples
// (promql.FindMinMaxTime: ranges, subqueries, offset, @ and the lookback delta
// of instant selectors), plus the group's query_offset, plus one evaluation
// interval for subquery step alignment and evaluation jitter.
//
// A selector pinned to a fixed time (`@ 1700000000`) would need history back
// to that time, ever longer; it is counted with its range and offset as if it
// were read at the evaluation time, and fixedTimeRules names the rules that have
// one so that the connector can warn.
func derivedRetention(groups []loadedGroup, lookback, interval time.Duration) (retention time.Duration, fixedTimeRules []string) {
	var longest time.Duration
	for _, g := range groups {
		var groupOffset time.Duration
		if g.group.QueryOffset != nil {
			groupOffset = time.Duration(*g.group.QueryOffset)
		}
		for _, r := range g.group.Rules {
			expr, err := promqlParser.ParseExpr(r.Expr)
			if err != nil {
				continue
			}
			w, fixed := exprWindow(expr, lookback)
			if fixed {
				fixedTimeRules = append(fixedTimeRules, r.Alert+r.Record)
			}
			longest = max(longest, w+groupOffset)
		}
	}
	return longest + interval, fixedTimeRules
}

// exprWindow is how far back from the evaluation time an expression reads,
// and whether it has a selector or subquery pinned to a fixed time. expr is
// modified.
func exprWindow(expr parser.Expr, lookback time.Duration) (time.Duration, bool) {
	fixed := false
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch e := n.(type) {
		case *parser.VectorSelector:
			if e.Timestamp != nil && e.StartOrEnd == 0 {
				fixed, e.Timestamp = true, nil
			}
		case *parser.SubqueryExpr:
			if e.Timestamp != nil && e.StartOrEnd == 0 {
				fixed, e.Timestamp = true, nil
			}
		}
		return nil
	})
	// Any reference time works once fixed times are gone; the rule's instant
	// query has start = end = the evaluation time.
	ref := time.Unix(1<<32, 0)
	mint, _ := promql.FindMinMaxTime(&parser.EvalStmt{Expr: expr, Start: ref, End: ref, LookbackDelta: lookback})
	if mint == 0 {
		return 0, fixed // no selector (vector(1), time())
	}
	// FindMinMaxTime excludes the window's first millisecond, as the engine does.
	return time.Duration(ref.UnixMilli()-mint+1) * time.Millisecond, fixed
}
