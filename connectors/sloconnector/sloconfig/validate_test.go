package sloconfig

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
)

// The connector's config tests cover every rule reachable from YAML. A severity can only be
// wrong in a config built in code: YAML refuses it when it is loaded.
func TestValidateChecksSeveritiesOfConfigsBuiltInCode(t *testing.T) {
	t.Parallel()
	slo := full()
	slo.Alerting.Windows["page_fast"] = BurnRateWindowConfig{Severity: "urgent"}
	slo.Alerting.BudgetAlerts["budget_95"] = BudgetAlertConfig{Consumed: 0.95, Severity: "soon"}
	require.EqualError(t, confmap.Validate(&slo), "alerting: "+
		`windows::page_fast::severity: unknown severity "urgent" (want page or ticket)`+"\n"+
		`budget_alerts::budget_95::severity: unknown severity "soon" (want page or ticket)`)
}
