package sloconfig // import "github.com/imcol/imcol/connectors/sloconnector/sloconfig"

import (
	"slices"
	"strings"
	"time"

	"github.com/imcol/imcol/components/signal"
)

// Defaults. The alert window set is the SRE workbook's (and Sloth's) for a 30-day SLO; for
// other SLO windows the burn rates are rescaled so each alert still fires on the same share
// of the error budget.
const (
	defaultWindow      = 30 * 24 * time.Hour
	defaultMaxSeries   = 1000
	defaultMinEvents   = 1
	defaultLatencyUnit = "ms"
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

var latencyUnits = map[string]time.Duration{"ns": time.Nanosecond, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}

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

// EffectiveSignal is the signal of the SLO's events with its default (traces) applied.
func (s *SLOConfig) EffectiveSignal() signal.Signal {
	if s.Signal == "" {
		return signal.Traces
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

// EffectiveMaxSeries is the series limit with its default applied.
func (s *SLOConfig) EffectiveMaxSeries() int {
	if s.MaxSeries == 0 {
		return defaultMaxSeries
	}
	return s.MaxSeries
}

// UnitDuration is the duration of one unit of the latency attribute's value.
func (l *LatencySLIConfig) UnitDuration() time.Duration {
	return latencyUnits[l.unit()]
}

func (l *LatencySLIConfig) unit() string {
	if l.Unit == "" {
		return defaultLatencyUnit
	}
	return l.Unit
}

// BurnRateWindows returns the effective burn-rate alert windows: the defaults merged with the
// configured overrides, page before ticket, then fastest first.
func (s *SLOConfig) BurnRateWindows() []BurnRateWindow {
	window := s.EffectiveWindow()
	var out []BurnRateWindow
	for _, name := range mergedNames(defaultBurnRateWindows, s.Alerting.Windows) {
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
	var out []BudgetAlert
	for _, name := range mergedNames(defaultBudgetAlerts, s.Alerting.BudgetAlerts) {
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

// mergedNames lists the default names, sorted, then the configured names that are not
// defaults, sorted.
func mergedNames[D, C any](defaults map[string]D, configured map[string]C) []string {
	names := sortedKeys(defaults)
	for _, n := range sortedKeys(configured) {
		if _, isDefault := defaults[n]; !isDefault {
			names = append(names, n)
		}
	}
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
