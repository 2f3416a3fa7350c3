package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/imcol/imcol/internal/testcollector"
)

// dashboardQueries returns every PromQL expression of the shipped Grafana dashboards, keyed by
// "file: panel title".
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testcollector.RepoRoot(t), "configs", "grafana", "dashboards", "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no dashboards found")
	queries := map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var dash struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(raw, &dash), f)
		for _, p := range dash.Panels {
			for i, target := range p.Targets {
				queries[filepath.Base(f)+": "+p.Title+": "+string(rune('A'+i))] = target.Expr
			}
		}
	}
	return queries
}

// metricNames parses expr with Prometheus's own parser and returns the metric names it selects.
func metricNames(t *testing.T, expr string) []string {
	t.Helper()
	node, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	require.NoError(t, err, "invalid PromQL %q", expr)
	var names []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// dashboardMetrics maps every metric name the dashboards query to the panels that query it.
func dashboardMetrics(t *testing.T) map[string][]string {
	used := map[string][]string{}
	for panel, expr := range dashboardQueries(t) {
		names := metricNames(t, expr)
		require.NotEmpty(t, names, "%s selects no metric: %q", panel, expr)
		for _, name := range names {
			require.NotEmpty(t, name, "%s selects by matcher only: %q", panel, expr)
			used[name] = append(used[name], panel)
		}
	}
	return used
}

// missingMetrics lists the dashboard metrics that are not in live, sorted, with their panels.
func missingMetrics(used map[string][]string, live map[string]bool) []string {
	var missing []string
	for name, panels := range used {
		if !live[name] {
			sort.Strings(panels)
			missing = append(missing, name+" (used by "+strings.Join(panels, "; ")+")")
		}
	}
	sort.Strings(missing)
	return missing
}

// TestDashboardsAndComposeAreWellFormed checks, without any server, that every dashboard query is
// valid PromQL naming a metric, and that the docker-compose file and provisioning files are YAML
// naming the shipped configs. Whether each metric really exists is checked against a live run in
// TestBackendsEndToEnd.
func TestDashboardsAndComposeAreWellFormed(t *testing.T) {
	used := dashboardMetrics(t)
	require.Greater(t, len(used), 20)

	root := testcollector.RepoRoot(t)
	for _, rel := range []string{
		"configs/docker-compose.yaml",
		"configs/grafana/provisioning/dashboards/imcol.yaml",
		"configs/grafana/provisioning/datasources/imcol.yaml",
	} {
		raw, err := os.ReadFile(filepath.Join(root, rel))
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, yaml.Unmarshal(raw, &doc), rel)
	}
	compose := loadYAML(t, "configs/docker-compose.yaml")
	services := at(compose, "services")
	for _, svc := range []string{"imcol", "prometheus", "alertmanager", "loki", "jaeger", "grafana"} {
		require.Contains(t, services, svc, "docker-compose.yaml misses service %s", svc)
	}
	// Every file the compose stack mounts from the repository must exist.
	for name, svc := range services {
		for _, v := range asList(svc.(map[string]any)["volumes"]) {
			src := strings.SplitN(v.(string), ":", 2)[0]
			if !strings.HasPrefix(src, ".") {
				continue // a named volume
			}
			_, err := os.Stat(filepath.Join(root, "configs", src))
			require.NoError(t, err, "service %s mounts %s, which does not exist", name, src)
		}
	}
}
