package sloconfig // import "github.com/imcol/imcol/connectors/sloconnector/sloconfig"

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/collector/confmap"

	"github.com/imcol/imcol/components/signal"
)

// The collector's validation walks the config and calls each Validate below itself, putting
// the YAML path of the sub-config in front of its error; no Validate here calls another.
var (
	_ confmap.Validator = (*SLOConfig)(nil)
	_ confmap.Validator = (*SLIConfig)(nil)
	_ confmap.Validator = (*RatioSLIConfig)(nil)
	_ confmap.Validator = (*LatencySLIConfig)(nil)
	_ confmap.Validator = (*AlertingConfig)(nil)
)

const (
	// maxWindow bounds the hourly buckets kept per series (2160, about 34 KiB).
	maxWindow = 90 * 24 * time.Hour
	// minShortWindow is the shortest burn-rate window worth evaluating.
	minShortWindow = time.Minute
	// maxNameLength bounds SLO and window names: they become label values and storage keys.
	maxNameLength = 63
)

var (
	nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	// alertNameRE keeps window and budget alert names usable as a Prometheus label value
	// and alert tier.
	alertNameRE = regexp.MustCompile(`^[a-z0-9_]+$`)
)

// Validate checks the SLO's own keys, and the rules that need the whole SLO: its conditions
// compile in its signal's context, and its burn-rate windows fit in its window.
func (s *SLOConfig) Validate() error {
	var errs []error
	switch {
	case s.Name == "":
		errs = append(errs, errors.New("name: required"))
	case len(s.Name) > maxNameLength || !nameRE.MatchString(s.Name):
		errs = append(errs, fmt.Errorf("name: must be 1 to %d letters, digits, '_', '.' or '-', starting with a letter or digit", maxNameLength))
	}
	if !(s.Objective > 0 && s.Objective < 1) {
		errs = append(errs, fmt.Errorf("objective: must be a ratio strictly between 0 and 1 (0.9995 for 99.95%%), got %v", s.Objective))
	}
	if s.Window != 0 && (time.Duration(s.Window) < time.Hour || time.Duration(s.Window) > maxWindow) {
		errs = append(errs, fmt.Errorf("window: must be between 1h and %s, got %s", Duration(maxWindow), s.Window))
	}
	if s.MaxSeries < 0 {
		errs = append(errs, fmt.Errorf("max_series: must not be negative, got %d", s.MaxSeries))
	}
	if s.MinEvents < 0 {
		errs = append(errs, fmt.Errorf("min_events: must not be negative, got %d", s.MinEvents))
	}
	errs = append(errs, s.validateDimensions()...)
	errs = append(errs, s.validateSLIForSignal()...)
	errs = append(errs, s.validateBurnRateWindows()...)
	return errors.Join(errs...)
}

// validateDimensions checks that each dimension becomes a Prometheus label of its own.
func (s *SLOConfig) validateDimensions() []error {
	var errs []error
	// The labels the connector puts on every series, by the attribute they come from.
	labels := map[string]string{"slo_name": "slo_name", "window": "window", "otel_metric_overflow": "otel.metric.overflow"}
	namer := otlptranslator.LabelNamer{}
	for i, d := range s.Dimensions {
		label, err := namer.Build(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("dimensions::%d: %w", i, err))
			continue
		}
		if other, taken := labels[label]; taken {
			errs = append(errs, fmt.Errorf("dimensions::%d: %q becomes the Prometheus label %q, which %q already uses", i, d, label, other))
			continue
		}
		labels[label] = d
	}
	return errs
}

// validateSLIForSignal checks what depends on the SLO's signal: the conditions compile in its
// OTTL context, and log records, which have no duration, name their latency attribute.
func (s *SLOConfig) validateSLIForSignal() []error {
	var conds []keyedCondition
	var errs []error
	if r := s.SLI.Ratio; r != nil {
		conds = append(conds,
			keyedCondition{"sli::ratio::total", r.Total},
			keyedCondition{"sli::ratio::good", r.Good},
			keyedCondition{"sli::ratio::bad", r.Bad},
			keyedCondition{"sli::ratio::retracted", r.Retracted})
	}
	if l := s.SLI.Latency; l != nil {
		conds = append(conds, keyedCondition{"sli::latency::total", l.Total})
		if s.EffectiveSignal() == signal.Logs && l.Attribute == "" {
			errs = append(errs, errors.New("sli::latency::attribute: required for a logs SLO (log records have no duration)"))
		}
	}
	return append(checkConditions(s.EffectiveSignal(), conds), errs...)
}

// validateBurnRateWindows checks the effective windows, defaults merged with overrides,
// against each other and the SLO window. Windows missing a duration are left to
// AlertingConfig.Validate, which reports what they miss.
func (s *SLOConfig) validateBurnRateWindows() []error {
	var errs []error
	window := s.EffectiveWindow()
	for _, bw := range s.BurnRateWindows() {
		key := "alerting::windows::" + bw.Name
		switch {
		case bw.LongWindow == 0 || bw.ShortWindow == 0:
		case bw.ShortWindow < minShortWindow:
			errs = append(errs, fmt.Errorf("%s::short_window: must be at least %s, got %s", key, Duration(minShortWindow), Duration(bw.ShortWindow)))
		case bw.ShortWindow >= bw.LongWindow:
			errs = append(errs, fmt.Errorf("%s::short_window: must be shorter than long_window (%s), got %s", key, Duration(bw.LongWindow), Duration(bw.ShortWindow)))
		case bw.LongWindow > window:
			errs = append(errs, fmt.Errorf("%s::long_window: must not exceed the SLO window (%s), got %s (disable it with disabled: true)", key, Duration(window), Duration(bw.LongWindow)))
		}
	}
	return errs
}

// Validate checks that exactly one kind of indicator is set.
func (c *SLIConfig) Validate() error {
	switch {
	case c.Ratio == nil && c.Latency == nil:
		return errors.New("set one of ratio and latency")
	case c.Ratio != nil && c.Latency != nil:
		return errors.New("set only one of ratio and latency")
	}
	return nil
}

// Validate checks that exactly one of good and bad is set. The conditions are compiled by
// SLOConfig.Validate, which knows the signal they are written for.
func (r *RatioSLIConfig) Validate() error {
	switch {
	case r.Good == "" && r.Bad == "":
		return errors.New("set one of good and bad")
	case r.Good != "" && r.Bad != "":
		return errors.New("set only one of good and bad")
	}
	return nil
}

// Validate checks the threshold and the unit.
func (l *LatencySLIConfig) Validate() error {
	var errs []error
	if l.Threshold <= 0 {
		errs = append(errs, errors.New("threshold: required, a positive duration such as 200ms"))
	}
	if _, ok := latencyUnits[l.unit()]; !ok {
		errs = append(errs, fmt.Errorf("unit: must be one of ns, us, ms, s, got %q", l.Unit))
	}
	return errors.Join(errs...)
}

// Validate checks each window and budget alert, in name order. The entries have no Validate
// of their own: the collector walks a map in random order, which would shuffle the errors.
func (a *AlertingConfig) Validate() error {
	var errs []error
	for _, name := range sortedKeys(a.Windows) {
		errs = append(errs, validateWindow("windows::"+name, name, a.Windows[name])...)
	}
	for _, name := range sortedKeys(a.BudgetAlerts) {
		errs = append(errs, validateBudgetAlert("budget_alerts::"+name, name, a.BudgetAlerts[name])...)
	}
	return errors.Join(errs...)
}

func validateWindow(key, name string, w BurnRateWindowConfig) []error {
	errs, ok := checkNamedAlert(key, name, w.Severity)
	if !ok {
		return errs
	}
	if w.BurnRate < 0 {
		errs = append(errs, fmt.Errorf("%s::burn_rate: must be positive, got %v", key, w.BurnRate))
	}
	if _, isDefault := defaultBurnRateWindows[name]; !isDefault && !w.Disabled {
		if missing := missingWindowKeys(w); len(missing) > 0 {
			errs = append(errs, fmt.Errorf("%s: a window that is not a default needs %s", key, strings.Join(missing, ", ")))
		}
	}
	return errs
}

// missingWindowKeys lists, in alphabetical order, the keys a window without defaults leaves unset.
func missingWindowKeys(w BurnRateWindowConfig) []string {
	var missing []string
	for _, k := range []struct {
		key   string
		unset bool
	}{
		{"burn_rate", w.BurnRate == 0},
		{"long_window", w.LongWindow == 0},
		{"severity", w.Severity == ""},
		{"short_window", w.ShortWindow == 0},
	} {
		if k.unset {
			missing = append(missing, k.key)
		}
	}
	return missing
}

func validateBudgetAlert(key, name string, b BudgetAlertConfig) []error {
	errs, ok := checkNamedAlert(key, name, b.Severity)
	if !ok {
		return errs
	}
	_, isDefault := defaultBudgetAlerts[name]
	// A default alert left at consumed 0 keeps its default share.
	if !b.Disabled && (b.Consumed != 0 || !isDefault) && !(b.Consumed > 0 && b.Consumed <= 1) {
		errs = append(errs, fmt.Errorf("%s::consumed: must be a ratio in (0, 1], got %v", key, b.Consumed))
	}
	if !isDefault && !b.Disabled && b.Severity == "" {
		errs = append(errs, fmt.Errorf("%s::severity: required for a budget alert that is not a default", key))
	}
	return errs
}

// checkNamedAlert checks what windows and budget alerts share: the name, which when wrong is
// the only error reported (ok false), and the severity when set.
func checkNamedAlert(key, name string, sev Severity) (errs []error, ok bool) {
	if err := checkAlertName(name); err != nil {
		return []error{fmt.Errorf("%s: %w", key, err)}, false
	}
	if sev != "" {
		if err := sev.check(); err != nil {
			errs = append(errs, fmt.Errorf("%s::severity: %w", key, err))
		}
	}
	return errs, true
}

func checkAlertName(name string) error {
	if len(name) > maxNameLength || !alertNameRE.MatchString(name) {
		return fmt.Errorf("must be 1 to %d lowercase letters, digits and '_'", maxNameLength)
	}
	return nil
}
