// Package sloconfig is the configuration of one SLO of the slo connector, and the alerting
// policy it implies: the burn-rate windows and error budget alerts with their defaults
// applied. The connector evaluates its SLOs from it and cmd/slorules writes Prometheus rules
// from it, so that the two cannot drift apart.
package sloconfig // import "github.com/imcol/imcol/connectors/sloconnector/sloconfig"

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"

	"github.com/imcol/imcol/components/signal"
)

// SLOConfig is one service level objective.
type SLOConfig struct {
	// Name identifies the SLO: the slo_name label of every series it emits. Unique per connector.
	Name string `mapstructure:"name"`
	// Description is free text for humans, copied into alert annotations.
	Description string `mapstructure:"description"`
	// Signal selects the events: spans (traces, the default) or log records (logs).
	Signal signal.Signal `mapstructure:"signal"`
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

// Severity routes an alert: page (wake someone up) or ticket (handle in working hours).
type Severity string

const (
	// SeverityPage needs immediate action.
	SeverityPage Severity = "page"
	// SeverityTicket can wait for working hours.
	SeverityTicket Severity = "ticket"
)

func (s Severity) check() error {
	if s != SeverityPage && s != SeverityTicket {
		return fmt.Errorf("unknown severity %q (want page or ticket)", string(s))
	}
	return nil
}

// UnmarshalText accepts page or ticket.
func (s *Severity) UnmarshalText(text []byte) error {
	v := Severity(text)
	if err := v.check(); err != nil {
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
