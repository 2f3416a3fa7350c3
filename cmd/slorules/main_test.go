package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seed is the connector configuration shipped in configs/default.yaml.
var seed = filepath.Join("..", "..", "connectors", "sloconnector", "testdata", "seed.yaml")

func generateTo(t *testing.T, dir string, configs ...string) string {
	t.Helper()
	out := filepath.Join(dir, "rules.yaml")
	var args []string
	for _, c := range configs {
		args = append(args, "--config", c)
	}
	require.NoError(t, run(append(args, "--out", out), nil))
	return out
}

func parseRules(t *testing.T, file string) *rulefmt.RuleGroups {
	t.Helper()
	groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	require.Empty(t, errs)
	return groups
}

func TestSeedRules(t *testing.T) {
	groups := parseRules(t, generateTo(t, t.TempDir(), seed))
	require.Len(t, groups.Groups, 3)
	names := []string{groups.Groups[0].Name, groups.Groups[1].Name, groups.Groups[2].Name}
	assert.Equal(t, []string{"imcol-slo-im-api-availability", "imcol-slo-im-message-delivery", "imcol-slo-im-delivery-latency"}, names)

	delivery := groups.Groups[1]
	// 8 ratio windows (7 alert windows and 30d), 5 event counts (4 long windows and 30d),
	// the budget, 4 burn alerts, 2 budget alerts.
	require.Len(t, delivery.Rules, 8+5+1+4+2)
	pageFast := delivery.Rules[14]
	assert.Equal(t, "SLOErrorBudgetBurn", pageFast.Alert)
	assert.Equal(t, `(
  imcol_slo:sli_error:ratio_rate1h{slo_name="im-message-delivery"} > (14.4 * 0.0001)
  and
  imcol_slo:sli_error:ratio_rate5m{slo_name="im-message-delivery"} > (14.4 * 0.0001)
)
and on (slo_name)
imcol_slo:sli_events:increase1h{slo_name="im-message-delivery"} >= 1000`, pageFast.Expr)
	assert.Equal(t, map[string]string{"severity": "page", "tier": "page_fast", "slo_name": "im-message-delivery"}, pageFast.Labels)

	ratio5m := delivery.Rules[0]
	assert.Equal(t, "imcol_slo:sli_error:ratio_rate5m", ratio5m.Record)
	assert.Equal(t, `clamp_min(
  1 - (
    sum by (slo_name) (rate(imcol_slo_good_events_total{slo_name="im-message-delivery"}[5m]))
    /
    sum by (slo_name) (rate(imcol_slo_events_total{slo_name="im-message-delivery"}[5m]))
  ),
  0
)`, ratio5m.Expr)
	budget := delivery.Rules[13]
	assert.Equal(t, "imcol_slo:error_budget_remaining:ratio", budget.Record)
	assert.Equal(t, `1 - imcol_slo:sli_error:ratio_rate30d{slo_name="im-message-delivery"} / 0.0001`, budget.Expr)

	// Dimensions group the API availability SLO, under their Prometheus label names.
	assert.Contains(t, groups.Groups[0].Rules[0].Expr, "sum by (slo_name, service_name) (rate(imcol_slo_good_events_total")
}

func TestMergedConfigsAndOverrides(t *testing.T) {
	t.Setenv("PUSH_OBJECTIVE", "0.999")
	groups := parseRules(t, generateTo(t, t.TempDir(), seed, filepath.Join("testdata", "custom.yaml")))
	require.Len(t, groups.Groups, 4)
	push := groups.Groups[3] // connector slo/custom sorts after slo
	assert.Equal(t, "imcol-slo-push-success", push.Name)
	var burn []string
	var budgets []string
	for _, r := range push.Rules {
		switch r.Alert {
		case "SLOErrorBudgetBurn":
			burn = append(burn, r.Labels["tier"])
		case "SLOErrorBudgetConsumed":
			budgets = append(budgets, r.Labels["tier"])
		}
	}
	assert.Equal(t, []string{"page_fast", "page_medium", "page_slow", "ticket_fast"}, burn)
	assert.Equal(t, []string{"budget_50"}, budgets)
	for _, r := range push.Rules {
		if r.Alert != "" && r.Labels["tier"] == "page_slow" {
			// 7d window: the default 5% of the budget in 6h is a burn rate of 0.05 × 168h / 6h = 1.4.
			assert.Contains(t, r.Expr, "imcol_slo:sli_error:ratio_rate6h{slo_name=\"push-success\"} > (1.4 * 0.001)")
			assert.Contains(t, r.Expr, "and on (slo_name, im_conversation_type)")
		}
	}
}

func TestErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		err  string
	}{
		"no config": {nil, "at least one --config is required"},
		"no slo connector": {
			[]string{"--config", filepath.Join("testdata", "no_slo.yaml")},
			"no slo connector in " + filepath.Join("testdata", "no_slo.yaml"),
		},
		"duplicate slo_name": {
			[]string{"--config", seed, "--config", filepath.Join("testdata", "duplicate.yaml")},
			`connectors::slo/again: SLO "im-api-availability" is also defined by connector slo; slo_name must be unique across connectors`,
		},
		"invalid connector config": {
			[]string{"--config", filepath.Join("testdata", "invalid.yaml")},
			"connectors::slo::slos::0: objective: must be a ratio strictly between 0 and 1 (0.9995 for 99.95%), got 1\n" +
				`sli::ratio::bad: condition has invalid syntax: 1:13: unexpected token "=" (expected <opcomparison> Value)`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := run(tc.args, &bytes.Buffer{})
			require.Error(t, err)
			assert.Equal(t, tc.err, err.Error())
		})
	}
}

func TestStdout(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run([]string{"--config", seed}, &out))
	assert.Contains(t, out.String(), "# Generated by slorules from "+seed)
	assert.Contains(t, out.String(), "name: imcol-slo-im-delivery-latency")
}

// TestPromtool checks freshly generated rules with the real promtool, and runs the unit tests
// in testdata/seed_test.yaml against them.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is required (Debian package prometheus): run the repository's install script, or `apt-get install -y --no-install-recommends prometheus`: %v", err)
	}
	dir := t.TempDir()
	rules := generateTo(t, dir, seed)
	tests, err := os.ReadFile(filepath.Join("testdata", "seed_test.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "seed_test.yaml"), tests, 0o600))

	for _, args := range [][]string{{"check", "rules", rules}, {"test", "rules", "seed_test.yaml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "promtool %v:\n%s", args, out)
		assert.Contains(t, string(out), "SUCCESS")
	}
}

// TestShippedSeedIsTested keeps configs/default.yaml's SLOs identical to the seed the
// connector's tests, the end-to-end test and the promtool tests run on.
func TestShippedSeedIsTested(t *testing.T) {
	shipped, err := loadSLOs(context.Background(), []string{filepath.Join("..", "..", "configs", "default.yaml")})
	require.NoError(t, err, "configs/default.yaml must define the seed SLOs (connectors/sloconnector/testdata/seed.yaml)")
	tested, err := loadSLOs(context.Background(), []string{seed})
	require.NoError(t, err)
	assert.Equal(t, tested, shipped)
}
