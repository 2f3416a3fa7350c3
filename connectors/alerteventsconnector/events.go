package alerteventsconnector // import "github.com/imcol/imcol/connectors/alerteventsconnector"

import (
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/util/strutil"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/imcol/imcol/connectors/alerteventsconnector/internal/metadata"
)

// Attribute names of an alert event log record (see README, "Alert event format").
const (
	eventName = "alert.state_change"

	attrAlertName        = "alert.name"
	attrState            = "alert.state"
	attrLabelPrefix      = "alert.label."
	attrAnnotationPrefix = "alert.annotation."
	attrValue            = "alert.value"
	attrActiveAt         = "alert.active_at"
	attrStartsAt         = "alert.starts_at"
	attrEndsAt           = "alert.ends_at"
	attrFingerprint      = "alert.fingerprint"
	attrGeneratorURL     = "alert.generator_url"
	attrRuleGroup        = "alert.rule.group"
	attrRuleFile         = "alert.rule.file"
	attrExpr             = "alert.rule.expr"
)

type alertEvent struct {
	state string
	alert rules.Alert
	group *rules.Group
	rule  *rules.AlertingRule
	ts    time.Time
}

func newEvent(state string, a *rules.Alert, g *rules.Group, r *rules.AlertingRule, ts time.Time) alertEvent {
	return alertEvent{state: state, alert: *a, group: g, rule: r, ts: ts}
}

func (c *alertEventsConnector) buildLogs(events []alertEvent, observed time.Time) plog.Logs {
	logs := plog.NewLogs()
	rl := logs.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", c.cfg.ServiceName)
	sl := rl.ScopeLogs().AppendEmpty()
	sl.Scope().SetName(metadata.ScopeName)
	records := sl.LogRecords()
	records.EnsureCapacity(len(events))
	for i := range events {
		c.fillRecord(records.AppendEmpty(), &events[i], observed)
	}
	return logs
}

func (c *alertEventsConnector) fillRecord(lr plog.LogRecord, e *alertEvent, observed time.Time) {
	a := &e.alert
	// What Alertmanager receives: the alert's labels plus external labels the
	// rule did not set.
	lb := labels.NewBuilder(a.Labels)
	c.externalLabels.Range(func(l labels.Label) {
		if !a.Labels.Has(l.Name) {
			lb.Set(l.Name, l.Value)
		}
	})
	lset := lb.Labels()

	lr.SetEventName(eventName)
	lr.SetTimestamp(pcommon.NewTimestampFromTime(e.ts))
	lr.SetObservedTimestamp(pcommon.NewTimestampFromTime(observed))
	sevText := lset.Get("severity")
	lr.SetSeverityText(sevText)
	if e.state == stateResolved || e.state == stateInactive {
		lr.SetSeverityNumber(plog.SeverityNumberInfo)
	} else {
		lr.SetSeverityNumber(severityNumber(sevText))
	}

	summary := a.Annotations.Get("summary")
	if summary == "" {
		summary = a.Annotations.Get("description")
	}
	if summary == "" {
		summary = lset.Get(labels.AlertName) + " " + e.state
	}
	lr.Body().SetStr(summary)

	attrs := lr.Attributes()
	attrs.EnsureCapacity(lset.Len() + a.Annotations.Len() + 12)
	attrs.PutStr(attrAlertName, lset.Get(labels.AlertName))
	attrs.PutStr(attrState, e.state)
	lset.Range(func(l labels.Label) { attrs.PutStr(attrLabelPrefix+l.Name, l.Value) })
	a.Annotations.Range(func(l labels.Label) { attrs.PutStr(attrAnnotationPrefix+l.Name, l.Value) })
	attrs.PutDouble(attrValue, a.Value)
	attrs.PutStr(attrActiveAt, formatTime(a.ActiveAt))
	switch e.state {
	case stateFiring:
		attrs.PutStr(attrStartsAt, formatTime(a.FiredAt))
	case stateResolved:
		attrs.PutStr(attrStartsAt, formatTime(a.FiredAt))
		attrs.PutStr(attrEndsAt, formatTime(a.ResolvedAt))
	case stateInactive:
		attrs.PutStr(attrEndsAt, formatTime(e.ts))
	}
	attrs.PutStr(attrFingerprint, fingerprint(lset))
	expr := e.rule.Query().String()
	attrs.PutStr(attrGeneratorURL, c.externalURL+strutil.TableLinkForExpression(expr))
	attrs.PutStr(attrRuleGroup, e.group.Name())
	attrs.PutStr(attrRuleFile, e.group.File())
	attrs.PutStr(attrExpr, expr)
}

// fingerprint is Alertmanager's fingerprint of the alert's label set, so an
// event can be joined with what Alertmanager shows.
func fingerprint(lset labels.Labels) string {
	ls := make(model.LabelSet, lset.Len())
	lset.Range(func(l labels.Label) { ls[model.LabelName(l.Name)] = model.LabelValue(l.Value) })
	return ls.Fingerprint().String()
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// severityNumber maps the conventional values of the `severity` label.
func severityNumber(s string) plog.SeverityNumber {
	switch strings.ToLower(s) {
	case "critical", "crit", "page", "fatal", "emergency", "emerg", "alert", "disaster":
		return plog.SeverityNumberFatal
	case "error", "err", "high", "major":
		return plog.SeverityNumberError
	case "warning", "warn", "medium", "minor", "average":
		return plog.SeverityNumberWarn
	case "info", "informational", "notice", "low", "none", "ticket":
		return plog.SeverityNumberInfo
	case "debug":
		return plog.SeverityNumberDebug
	}
	return plog.SeverityNumberUnspecified
}
