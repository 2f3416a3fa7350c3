package sloconnector // import "github.com/imcol/imcol/connectors/sloconnector"

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap/xconfmap"

	"github.com/imcol/imcol/components/signal"
)

// Defaults. The alert window set is the SRE workbook's (and Sloth's) for a 30-day SLO; for
// other SLO windows the burn rates are rescaled so each alert still fires on the same share
// of the error budget.
const (
	defaultFlushInterval = 15 * time.Second
	defaultWindow        = 30 * 24 * time.Hour
	defaultMaxSeries     = 1000
	defaultMinEvents     = 1
	defaultLatencyUnit   = "ms"

	// maxWindow bounds the hourly buckets kept per series (2160, about 34 KiB).
	maxWindow = 90 * 24 * time.Hour

	// maxNameLength bounds SLO and window names: they become label values and storage keys.
	maxNameLength = 63
)

// defaultBurnRateWindows are the multiwindow multi-burn-rate alerts of the Google SRE workbook
// (chapter 5, table 5-8). budgetConsumed is the share of the SLO window's error budget burnt
// when the alert fires; with a 30-day window it gives burn rates 14.4, 6, 3 and 1.
var defaultBurnRateWindows = map[string]struct {
	severity       Severity
	budgetConsumed float64
	long, short    time.Duration
}{
	"page_fast":   {SeverityPage, 0.02, time.Hour, 5 * time.Minute},
	"page_slow":   {SeverityPage, 0.05, 6 * time.Hour, 30 * time.Minute},
	"ticket_fast": {SeverityTicket, 0.10, 24 * time.Hour, 2 * time.Hour},
	"ticket_slow": {SeverityTicket, 0.10, 72 * time.Hour, 6 * time.Hour},
}

// defaultBudgetAlerts fire when this share of the SLO window's error budget is consumed.
var defaultBudgetAlerts = map[string]BudgetAlertConfig{
	"budget_50": {Consumed: 0.5, Severity: SeverityTicket},
	"budget_80": {Consumed: 0.8, Severity: SeverityPage},
}

var (
	_ component.Config   = (*Config)(nil)
	_ xconfmap.Validator = (*Config)(nil)

	nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	// windowNameRE keeps window names usable as a Prometheus label value and alert tier.
	windowNameRE = regexp.MustCompile(`^[a-z0-9_]+$`)
)

// Config configures the slo connector.
type Config struct {
	// FlushInterval is how often SLO metrics are emitted (default 15s).
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// Storage is the id of a storage extension (file_storage) that keeps the rolling windows
	// across restarts. Without it, windows start empty on every start.
	Storage *component.ID `mapstructure:"storage"`
	// SLOs are the objectives this connector evaluates.
	SLOs []SLOConfig `mapstructure:"slos"`
}

// SLOConfig is one service level objective.
type SLOConfig struct {
	// Name identifies the SLO: the slo_name label of every series it emits. Unique per connector.
	Name string `mapstructure:"name"`
	// Description is free text for humans, copied into alert annotations.
	Description string `mapstructure:"description"`
	// Signal selects the events: spans (traces, the default) or log records (logs).
	Signal Signal `mapstructure:"signal"`
	// Objective is the target ratio of good events, in (0, 1): 0.9995 for 99.95%.
	Objective float64 `mapstructure:"objective"`
	// Window is the SLO period for the error budget (default 30d). Prometheus duration syntax.
	Window Duration `mapstructure:"window"`
	// SLI says which events count and which of them are good.
	SLI SLIConfig `mapstructure:"sli"`
	// Dimensions are attribute names (looked up on the span or log record, then its resource)
	// kept as labels, e.g. service.name. Each distinct combination is one series.
	Dimensions []string `mapstructure:"dimensions"`
	// MaxSeries caps the series of this SLO (default 1000); events of further dimension
	// combinations are counted in one overflow series.
	MaxSeries int `mapstructure:"max_series"`
	// MinEvents is the low-traffic gate: a window with fewer events is flagged low-traffic
	// (default 1, so an empty window is always flagged).
	MinEvents int64 `mapstructure:"min_events"`
	// Alerting configures the burn-rate windows and error budget alerts.
	Alerting AlertingConfig `mapstructure:"alerting"`
}

// SLIConfig holds exactly one kind of indicator.
type SLIConfig struct {
	// Ratio counts good (or bad) events among the selected ones.
	Ratio *RatioSLIConfig `mapstructure:"ratio"`
	// Latency counts events at or under a latency threshold as good.
	Latency *LatencySLIConfig `mapstructure:"latency"`
}

// RatioSLIConfig selects events and good or bad ones by OTTL conditions.
type RatioSLIConfig struct {
	// Total is an OTTL condition selecting the events of the SLI; empty selects every event.
	Total string `mapstructure:"total"`
	// Good is an OTTL condition true for good events. Set exactly one of good and bad.
	Good string `mapstructure:"good"`
	// Bad is an OTTL condition true for bad events.
	Bad string `mapstructure:"bad"`
	// Retracted is an optional OTTL condition selecting retractions: records that correct an
	// earlier bad event, such as im_loss's late record for a message it had declared lost.
	// It is evaluated before Total; a matching record adds one good event and no total event.
	Retracted string `mapstructure:"retracted"`
}

// LatencySLIConfig counts selected events as good when their latency is at most Threshold.
type LatencySLIConfig struct {
	// Total is an OTTL condition selecting the events of the SLI; empty selects every event.
	Total string `mapstructure:"total"`
	// Threshold is the latency bound of a good event, e.g. 200ms.
	Threshold Duration `mapstructure:"threshold"`
	// Attribute names a numeric attribute holding the latency. Empty means the span duration;
	// log SLOs must set it (e.g. im.delivery.latency_ms).
	Attribute string `mapstructure:"attribute"`
	// Unit of the attribute's value: ns, us, ms (default) or s.
	Unit string `mapstructure:"unit"`
}

// AlertingConfig changes the default alerting of an SLO.
type AlertingConfig struct {
	// Windows adds, overrides or disables burn-rate alert windows by name. The defaults are
	// page_fast (1h/5m), page_slow (6h/30m), ticket_fast (1d/2h) and ticket_slow (3d/6h).
	// Fields left out of an override keep their default.
	Windows map[string]BurnRateWindowConfig `mapstructure:"windows"`
	// BudgetAlerts adds, overrides or disables error budget alerts by name. The defaults are
	// budget_50 (ticket) and budget_80 (page).
	BudgetAlerts map[string]BudgetAlertConfig `mapstructure:"budget_alerts"`
}

// BurnRateWindowConfig is one multiwindow burn-rate alert.
type BurnRateWindowConfig struct {
	// Disabled removes the window.
	Disabled bool `mapstructure:"disabled"`
	// Severity is page or ticket.
	Severity Severity `mapstructure:"severity"`
	// BurnRate is the alert threshold, as a multiple of the error rate that exactly uses up the
	// budget over the SLO window. Default windows derive it from the SLO window.
	BurnRate float64 `mapstructure:"burn_rate"`
	// LongWindow is the window whose burn rate must exceed BurnRate.
	LongWindow Duration `mapstructure:"long_window"`
	// ShortWindow must exceed it too, so the alert resets soon after the burn stops.
	ShortWindow Duration `mapstructure:"short_window"`
}

// BudgetAlertConfig alerts when a share of the error budget is consumed.
type BudgetAlertConfig struct {
	// Disabled removes the alert.
	Disabled bool `mapstructure:"disabled"`
	// Consumed is the consumed share of the error budget, in (0, 1].
	Consumed float64 `mapstructure:"consumed"`
	// Severity is page or ticket.
	Severity Severity `mapstructure:"severity"`
}

// BurnRateWindow is an effective burn-rate alert window.
type BurnRateWindow struct {
	Name        string
	Severity    Severity
	BurnRate    float64
	LongWindow  time.Duration
	ShortWindow time.Duration
}

// BudgetAlert is an effective error budget alert.
type BudgetAlert struct {
	Name     string
	Consumed float64
	Severity Severity
}

// Validate checks the configuration, including compiling every OTTL condition.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("flush_interval: must be positive, got %s", cfg.FlushInterval))
	}
	if len(cfg.SLOs) == 0 {
		errs = append(errs, errors.New("slos: at least one SLO is required"))
	}
	seen := make(map[string]int, len(cfg.SLOs))
	for i := range cfg.SLOs {
		slo := &cfg.SLOs[i]
		if j, dup := seen[slo.Name]; dup && slo.Name != "" {
			errs = append(errs, fmt.Errorf("slos[%d].name: %q is already the name of slos[%d]", i, slo.Name, j))
		}
		seen[slo.Name] = i
		for _, err := range slo.validate() {
			errs = append(errs, fmt.Errorf("slos[%d] %q: %w", i, slo.Name, err))
		}
	}
	return errors.Join(errs...)
}

// validate checks one SLO; error messages name the YAML key below the SLO. It is unexported
// so that xconfmap does not run it a second time without the SLO name in the message.
func (s *SLOConfig) validate() []error {
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
	errs = append(errs, s.SLI.validate(s.signal())...)
	return append(errs, s.validateAlerting()...)
}

func (s *SLOConfig) validateDimensions() []error {
	var errs []error
	labels := map[string]string{"slo_name": "slo_name", "window": "window", "otel_metric_overflow": overflowAttr}
	namer := otlptranslator.LabelNamer{}
	for i, d := range s.Dimensions {
		label, err := namer.Build(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("dimensions[%d]: %w", i, err))
			continue
		}
		if other, taken := labels[label]; taken {
			errs = append(errs, fmt.Errorf("dimensions[%d]: %q becomes the Prometheus label %q, which %q already uses", i, d, label, other))
			continue
		}
		labels[label] = d
	}
	return errs
}

func (s *SLOConfig) validateAlerting() []error {
	var errs []error
	window := s.EffectiveWindow()
	incomplete := map[string]bool{}
	for _, name := range sortedKeys(s.Alerting.Windows) {
		key := "alerting.windows." + name
		w := s.Alerting.Windows[name]
		if !windowNameRE.MatchString(name) || len(name) > maxNameLength {
			incomplete[name] = true
			errs = append(errs, fmt.Errorf("%s: window names must be lowercase letters, digits and '_'", key))
			continue
		}
		if w.Severity != "" {
			if err := w.Severity.validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s.severity: %w", key, err))
			}
		}
		if w.BurnRate < 0 {
			errs = append(errs, fmt.Errorf("%s.burn_rate: must be positive, got %v", key, w.BurnRate))
		}
		if _, isDefault := defaultBurnRateWindows[name]; !isDefault && !w.Disabled {
			var missing []string
			for k, zero := range map[string]bool{"severity": w.Severity == "", "burn_rate": w.BurnRate == 0, "long_window": w.LongWindow == 0, "short_window": w.ShortWindow == 0} {
				if zero {
					missing = append(missing, k)
				}
			}
			slices.Sort(missing)
			if len(missing) > 0 {
				incomplete[name] = true
				errs = append(errs, fmt.Errorf("%s: a window that is not a default needs %s", key, strings.Join(missing, ", ")))
			}
		}
	}
	for _, bw := range s.BurnRateWindows() {
		key := "alerting.windows." + bw.Name
		switch {
		case incomplete[bw.Name]:
		case bw.ShortWindow < time.Minute:
			errs = append(errs, fmt.Errorf("%s.short_window: must be at least 1m, got %s", key, model.Duration(bw.ShortWindow)))
		case bw.ShortWindow >= bw.LongWindow:
			errs = append(errs, fmt.Errorf("%s.short_window: must be shorter than long_window (%s), got %s", key, model.Duration(bw.LongWindow), model.Duration(bw.ShortWindow)))
		case bw.LongWindow > window:
			errs = append(errs, fmt.Errorf("%s.long_window: must not exceed the SLO window (%s), got %s (disable it with disabled: true)", key, model.Duration(window), model.Duration(bw.LongWindow)))
		}
	}
	for _, name := range sortedKeys(s.Alerting.BudgetAlerts) {
		key := "alerting.budget_alerts." + name
		b := s.Alerting.BudgetAlerts[name]
		if !windowNameRE.MatchString(name) || len(name) > maxNameLength {
			errs = append(errs, fmt.Errorf("%s: budget alert names must be lowercase letters, digits and '_'", key))
			continue
		}
		if b.Severity != "" {
			if err := b.Severity.validate(); err != nil {
				errs = append(errs, fmt.Errorf("%s.severity: %w", key, err))
			}
		}
		_, isDefault := defaultBudgetAlerts[name]
		if b.Consumed != 0 || !isDefault {
			if !b.Disabled && !(b.Consumed > 0 && b.Consumed <= 1) {
				errs = append(errs, fmt.Errorf("%s.consumed: must be a ratio in (0, 1], got %v", key, b.Consumed))
			}
		}
		if !isDefault && !b.Disabled && b.Severity == "" {
			errs = append(errs, fmt.Errorf("%s.severity: required for a budget alert that is not a default", key))
		}
	}
	return errs
}

func (c *SLIConfig) validate(signal Signal) []error {
	switch {
	case c.Ratio == nil && c.Latency == nil:
		return []error{errors.New("sli: set one of ratio and latency")}
	case c.Ratio != nil && c.Latency != nil:
		return []error{errors.New("sli: set only one of ratio and latency")}
	}
	var errs []error
	if r := c.Ratio; r != nil {
		switch {
		case r.Good == "" && r.Bad == "":
			errs = append(errs, errors.New("sli.ratio: set one of good and bad"))
		case r.Good != "" && r.Bad != "":
			errs = append(errs, errors.New("sli.ratio: set only one of good and bad"))
		}
		for _, kc := range [][2]string{{"total", r.Total}, {"good", r.Good}, {"bad", r.Bad}, {"retracted", r.Retracted}} {
			if kc[1] == "" {
				continue
			}
			if _, err := compileCondition(signal, kc[1]); err != nil {
				errs = append(errs, fmt.Errorf("sli.ratio.%s: %w", kc[0], err))
			}
		}
	}
	if l := c.Latency; l != nil {
		if l.Threshold <= 0 {
			errs = append(errs, errors.New("sli.latency.threshold: required, a positive duration such as 200ms"))
		}
		if _, ok := latencyUnits[l.unit()]; !ok {
			errs = append(errs, fmt.Errorf("sli.latency.unit: must be one of ns, us, ms, s, got %q", l.Unit))
		}
		if signal == SignalLogs && l.Attribute == "" {
			errs = append(errs, errors.New("sli.latency.attribute: required for a logs SLO (log records have no duration)"))
		}
		if l.Total != "" {
			if _, err := compileCondition(signal, l.Total); err != nil {
				errs = append(errs, fmt.Errorf("sli.latency.total: %w", err))
			}
		}
	}
	return errs
}

var latencyUnits = map[string]time.Duration{"ns": time.Nanosecond, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}

func (l *LatencySLIConfig) unit() string {
	if l.Unit == "" {
		return defaultLatencyUnit
	}
	return l.Unit
}

func (s *SLOConfig) signal() Signal {
	if s.Signal == "" {
		return SignalTraces
	}
	return s.Signal
}

// EffectiveWindow is the SLO window with its default applied.
func (s *SLOConfig) EffectiveWindow() time.Duration {
	if s.Window == 0 {
		return defaultWindow
	}
	return time.Duration(s.Window)
}

// EffectiveMinEvents is the low-traffic gate with its default applied.
func (s *SLOConfig) EffectiveMinEvents() int64 {
	return max(s.MinEvents, defaultMinEvents)
}

func (s *SLOConfig) maxSeries() int {
	if s.MaxSeries == 0 {
		return defaultMaxSeries
	}
	return s.MaxSeries
}

// BurnRateWindows returns the effective burn-rate alert windows: the defaults merged with the
// configured overrides, page before ticket, then fastest first.
func (s *SLOConfig) BurnRateWindows() []BurnRateWindow {
	window := s.EffectiveWindow()
	var out []BurnRateWindow
	names := sortedKeys(defaultBurnRateWindows)
	for _, n := range sortedKeys(s.Alerting.Windows) {
		if _, ok := defaultBurnRateWindows[n]; !ok {
			names = append(names, n)
		}
	}
	for _, name := range names {
		o, overridden := s.Alerting.Windows[name]
		if overridden && o.Disabled {
			continue
		}
		bw := BurnRateWindow{Name: name, Severity: o.Severity, BurnRate: o.BurnRate, LongWindow: time.Duration(o.LongWindow), ShortWindow: time.Duration(o.ShortWindow)}
		if d, ok := defaultBurnRateWindows[name]; ok {
			if bw.Severity == "" {
				bw.Severity = d.severity
			}
			if bw.LongWindow == 0 {
				bw.LongWindow = d.long
			}
			if bw.ShortWindow == 0 {
				bw.ShortWindow = d.short
			}
			if bw.BurnRate == 0 {
				bw.BurnRate = d.budgetConsumed * float64(window) / float64(bw.LongWindow)
			}
		}
		out = append(out, bw)
	}
	slices.SortStableFunc(out, func(a, b BurnRateWindow) int {
		if a.Severity != b.Severity {
			if a.Severity == SeverityPage {
				return -1
			}
			return 1
		}
		if a.LongWindow != b.LongWindow {
			return int(a.LongWindow/time.Second - b.LongWindow/time.Second)
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// Windows returns every distinct long and short window of the burn-rate alerts, ascending:
// the windows the connector reports burn rates for.
func (s *SLOConfig) Windows() []time.Duration {
	var ws []time.Duration
	for _, bw := range s.BurnRateWindows() {
		ws = append(ws, bw.LongWindow, bw.ShortWindow)
	}
	slices.Sort(ws)
	return slices.Compact(ws)
}

// BudgetAlerts returns the effective error budget alerts, by consumed share ascending.
func (s *SLOConfig) BudgetAlerts() []BudgetAlert {
	names := sortedKeys(defaultBudgetAlerts)
	for _, n := range sortedKeys(s.Alerting.BudgetAlerts) {
		if _, ok := defaultBudgetAlerts[n]; !ok {
			names = append(names, n)
		}
	}
	var out []BudgetAlert
	for _, name := range names {
		o, overridden := s.Alerting.BudgetAlerts[name]
		if overridden && o.Disabled {
			continue
		}
		d := defaultBudgetAlerts[name]
		ba := BudgetAlert{Name: name, Consumed: o.Consumed, Severity: o.Severity}
		if ba.Consumed == 0 {
			ba.Consumed = d.Consumed
		}
		if ba.Severity == "" {
			ba.Severity = d.Severity
		}
		out = append(out, ba)
	}
	slices.SortStableFunc(out, func(a, b BudgetAlert) int {
		switch {
		case a.Consumed < b.Consumed:
			return -1
		case a.Consumed > b.Consumed:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Signal is the kind of events an SLO reads: traces or logs.
type Signal = signal.Signal

// The signals a config may name.
const (
	SignalTraces = signal.Traces
	SignalLogs   = signal.Logs
)

// Severity routes an alert: page (wake someone up) or ticket (handle in working hours).
type Severity string

const (
	// SeverityPage needs immediate action.
	SeverityPage Severity = "page"
	// SeverityTicket can wait for working hours.
	SeverityTicket Severity = "ticket"
)

func (s Severity) validate() error {
	if s != SeverityPage && s != SeverityTicket {
		return fmt.Errorf("unknown severity %q (want page or ticket)", string(s))
	}
	return nil
}

// UnmarshalText accepts page or ticket.
func (s *Severity) UnmarshalText(text []byte) error {
	v := Severity(text)
	if err := v.validate(); err != nil {
		return err
	}
	*s = v
	return nil
}

// Duration is a time.Duration written in Prometheus syntax, which allows days and weeks
// ("30d", "1h", "200ms"), so SLO windows read the same here as in the generated rules.
type Duration time.Duration

// UnmarshalText parses a Prometheus duration.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := model.ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Prometheus syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String writes the duration in Prometheus syntax.
func (d Duration) String() string { return model.Duration(d).String() }
