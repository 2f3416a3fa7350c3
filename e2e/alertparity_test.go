package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"gopkg.in/yaml.v3"

	"github.com/imcol/imcol/internal/testcollector"
)

// The differential test runs the shipped rule catalogue in imcol's alert_events connector and in a
// real Prometheus (Debian 2.42) that scrapes imcol's prometheus exporter, both with the same
// evaluation interval, through three incidents at once: a message-loss burst, a service going down
// and coming back, and an SLO fast burn. The alerts that fire (names and label sets) and their
// resolution must be the same, and each transition must happen within one evaluation interval plus
// one scrape interval of the other's.
const (
	parityInterval = 2 * time.Second // scrape and evaluation interval, everywhere
	// parityTimeScale shortens every range, subquery, offset, `for` and `keep_firing_for` of the
	// catalogue (5m windows become 15s, `for: 2m` becomes 6s) so that incidents fire and resolve
	// within a minute; both systems load the same shortened files.
	parityTimeScale = 20
	incidentLength  = 20 * time.Second
)

// incidentEndpoint serves, in Prometheus text format, the metric families the incidents move: the
// im_loss outcome counters (as imcol's own telemetry names them) and the slo connector's burn-rate
// gauges. Counters grow with wall time, so rate() sees a steady flow.
type incidentEndpoint struct {
	mu               sync.Mutex
	start            time.Time
	burstAt, burstTo time.Time // lost messages grow between these
	burning          bool
}

func (e *incidentEndpoint) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	e.mu.Lock()
	now := time.Now()
	delivered := 1000 * now.Sub(e.start).Seconds()
	var lost float64
	if !e.burstAt.IsZero() && now.After(e.burstAt) {
		end := now
		if !e.burstTo.IsZero() && end.After(e.burstTo) {
			end = e.burstTo
		}
		lost = 50 * end.Sub(e.burstAt).Seconds() // 5% of the traffic during the burst
	}
	burn := 1.0
	if e.burning {
		burn = 40
	}
	e.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = fmt.Fprintf(w, `# TYPE otelcol_processor_im_loss_outcomes_total counter
otelcol_processor_im_loss_outcomes_total{outcome="delivered",stage="ack",reason=""} %.0f
otelcol_processor_im_loss_outcomes_total{outcome="lost",stage="push",reason="stage_failed"} %.0f
# TYPE imcol_slo_burn_rate gauge
imcol_slo_burn_rate{slo_name="im-message-delivery",window="1h"} %[3]g
imcol_slo_burn_rate{slo_name="im-message-delivery",window="5m"} %[3]g
# TYPE imcol_slo_low_traffic gauge
imcol_slo_low_traffic{slo_name="im-message-delivery",window="1h"} 0
`, delivered, lost, burn)
}

// shortenedCatalogue writes configs/rules/*.yaml into dir with every duration divided by parityTimeScale.
func shortenedCatalogue(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testcollector.RepoRoot(t), "configs", "rules", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	scale := func(d time.Duration) time.Duration { return d / parityTimeScale }
	p := parser.NewParser(parser.Options{})
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var doc struct {
			Groups []map[string]any `yaml:"groups"`
		}
		require.NoError(t, yaml.Unmarshal(raw, &doc))
		for _, g := range doc.Groups {
			for _, r := range g["rules"].([]any) {
				rule := r.(map[string]any)
				for _, key := range []string{"for", "keep_firing_for"} {
					if v, ok := rule[key].(string); ok {
						d, err := model.ParseDuration(v)
						require.NoError(t, err)
						rule[key] = model.Duration(scale(time.Duration(d))).String()
					}
				}
				expr, err := p.ParseExpr(rule["expr"].(string))
				require.NoError(t, err, f)
				parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
					switch e := n.(type) {
					case *parser.MatrixSelector:
						e.Range = scale(e.Range)
					case *parser.VectorSelector:
						e.OriginalOffset = scale(e.OriginalOffset)
					case *parser.SubqueryExpr:
						e.Range, e.Step, e.OriginalOffset = scale(e.Range), scale(e.Step), scale(e.OriginalOffset)
					}
					return nil
				})
				rule["expr"] = expr.String()
			}
		}
		writeYAML(t, dir, filepath.Base(f), doc)
	}
}

// transition is when an alert instance (its label set, alertname included) fired and resolved.
type transition struct{ fired, resolved time.Time }

func labelKey(ls map[string]string) string {
	keys := make([]string, 0, len(ls))
	for k := range ls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q,", k, ls[k])
	}
	return b.String()
}

// imcolTransitions reads the alert events of a file exporter: firing and resolved, at the
// evaluation time that produced them.
func imcolTransitions(t *testing.T, path string) map[string]*transition {
	t.Helper()
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	out := map[string]*transition{}
	var um plog.JSONUnmarshaler
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if line == "" {
			continue
		}
		ld, err := um.UnmarshalLogs([]byte(line))
		if err != nil {
			continue // a line being written
		}
		forEachLogRecord(ld, func(lr plog.LogRecord) {
			labels := map[string]string{}
			var state string
			for k, v := range lr.Attributes().All() {
				if name, ok := strings.CutPrefix(k, "alert.label."); ok {
					labels[name] = v.AsString()
				}
				if k == "alert.state" {
					state = v.Str()
				}
			}
			key := labelKey(labels)
			tr := out[key]
			if tr == nil {
				tr = &transition{}
				out[key] = tr
			}
			switch state {
			case "firing":
				tr.fired = lr.Timestamp().AsTime()
			case "resolved":
				tr.resolved = lr.Timestamp().AsTime()
			}
		})
	}
	return out
}

// promTransitions reads Prometheus's ALERTS{alertstate="firing"} series between from and to at a
// 100 ms resolution: an alert fired at its first sample and resolved at the stale marker Prometheus
// writes when it stops firing.
func promTransitions(ctx context.Context, t *testing.T, prom *server, from, to time.Time) map[string]*transition {
	t.Helper()
	step := 100 * time.Millisecond
	q := url.Values{
		"query": {`ALERTS{alertstate="firing"}`},
		"start": {fmt.Sprintf("%.3f", float64(from.UnixMilli())/1000)},
		"end":   {fmt.Sprintf("%.3f", float64(to.UnixMilli())/1000)},
		"step":  {step.String()},
	}
	var resp struct {
		Data struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Values [][2]any          `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, getJSON(ctx, prom.url("/api/v1/query_range?"+q.Encode()), &resp))
	out := map[string]*transition{}
	for _, r := range resp.Data.Result {
		delete(r.Metric, "__name__")
		delete(r.Metric, "alertstate")
		if len(r.Values) == 0 {
			continue
		}
		at := func(v [2]any) time.Time { return time.UnixMilli(int64(v[0].(float64) * 1000)) }
		tr := &transition{fired: at(r.Values[0])}
		if last := at(r.Values[len(r.Values)-1]); last.Add(step).Before(to) {
			tr.resolved = last.Add(step)
		}
		out[labelKey(r.Metric)] = tr
	}
	return out
}

func TestAlertsMatchPrometheus(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	require.NoError(t, os.Mkdir(rules, 0o700))
	shortenedCatalogue(t, rules)

	svc := newIMService(t)
	incidents := &incidentEndpoint{start: time.Now()}
	l, err := net.Listen("tcp", testcollector.FreeEndpoint(t))
	require.NoError(t, err)
	telemetry := &http.Server{Handler: incidents, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = telemetry.Serve(l) }()
	t.Cleanup(func() { _ = telemetry.Close() })

	exporter, health := testcollector.FreeEndpoint(t), testcollector.FreeEndpoint(t)
	events := filepath.Join(dir, "alerts.jsonl")
	cfg := fmt.Sprintf(`
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: im-service
          scrape_interval: %[1]s
          static_configs: [{targets: ["%[2]s"]}]
        - job_name: im-telemetry
          scrape_interval: %[1]s
          static_configs: [{targets: ["%[3]s"]}]
connectors:
  alert_events:
    rule_files: ["%[4]s/*.yaml"]
    evaluation_interval: %[1]s
exporters:
  prometheus:
    endpoint: %[5]s
  file/alerts:
    path: %[6]s
    format: json
extensions:
  health_check:
    endpoint: %[7]s
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [prometheus, alert_events]
    logs:
      receivers: [alert_events]
      exporters: [file/alerts]
`, parityInterval, svc.addr, l.Addr(), rules, exporter, events, health)
	cfgPath := filepath.Join(dir, "imcol.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	proc := testcollector.Start(t, testcollector.Options{Config: cfgPath, HealthEndpoint: health})

	promCfg := map[string]any{
		"global": map[string]any{
			"scrape_interval": parityInterval.String(), "evaluation_interval": parityInterval.String(),
		},
		"rule_files": []string{filepath.Join(rules, "*.yaml")},
		"scrape_configs": []any{map[string]any{
			// honor_labels keeps the job and instance imcol's receiver gave each series.
			"job_name": "imcol", "honor_labels": true,
			"static_configs": []any{map[string]any{"targets": []string{exporter}}},
		}},
	}
	promAddr := testcollector.FreeEndpoint(t)
	prom := startServer(t, "prometheus", lookBackend(t, "prometheus"), promAddr, "/-/ready",
		"--config.file="+writeYAML(t, dir, "prometheus.yml", promCfg), "--storage.tsdb.path="+filepath.Join(dir, "prom"),
		"--web.listen-address="+promAddr, "--log.level=warn")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	begin := time.Now()
	// Both sides see data before the incidents start: Prometheus through the exporter.
	waitUntil(ctx, t, proc, "Prometheus to see the service and the burn rates through imcol", func() bool {
		var r struct {
			Data struct {
				Result []any `json:"result"`
			} `json:"data"`
		}
		q := url.Values{"query": {`count(up{job="im-service"} == 1) + count(imcol_slo_burn_rate) + count(otelcol_processor_im_loss_outcomes_total)`}}
		return getJSON(ctx, prom.url("/api/v1/query?"+q.Encode()), &r) == nil && len(r.Data.Result) == 1
	})

	// The three incidents, at once, for incidentLength.
	incidents.mu.Lock()
	incidents.burstAt, incidents.burning = time.Now(), true
	incidents.mu.Unlock()
	svc.stop()
	select {
	case <-time.After(incidentLength):
	case <-ctx.Done():
		t.Fatal("timed out during the incidents")
	}
	incidents.mu.Lock()
	incidents.burstTo, incidents.burning = time.Now(), false
	incidents.mu.Unlock()
	svc.start(t)

	want := []string{"IMMessageLossRateHigh", "IMSLOFastBurn", "InstanceDown"}
	resolvedAll := func(trs map[string]*transition) bool {
		var names []string
		for key, tr := range trs {
			if tr.fired.IsZero() || tr.resolved.IsZero() {
				return false
			}
			names = append(names, alertName(key))
		}
		slices.Sort(names)
		return slices.Equal(names, want)
	}
	var imcol, promTr map[string]*transition
	waitUntil(ctx, t, proc, "imcol and Prometheus to fire and resolve "+strings.Join(want, ", "), func() bool {
		imcol = imcolTransitions(t, events)
		promTr = promTransitions(ctx, t, prom, begin, time.Now())
		return resolvedAll(imcol) && resolvedAll(promTr)
	})

	// The same alerts with the same label sets, within one evaluation plus one scrape interval.
	bound := 2 * parityInterval
	require.ElementsMatch(t, slices.Collect(maps.Keys(promTr)), slices.Collect(maps.Keys(imcol)), "alert label sets")
	for key, p := range promTr {
		i := imcol[key]
		fired, resolved := i.fired.Sub(p.fired), i.resolved.Sub(p.resolved)
		t.Logf("%s: fired imcol−Prometheus %+.1fs, resolved %+.1fs", alertName(key), fired.Seconds(), resolved.Seconds())
		assert.LessOrEqual(t, fired.Abs(), bound, "%s fired", key)
		assert.LessOrEqual(t, resolved.Abs(), bound, "%s resolved", key)
	}
}

func alertName(key string) string {
	_, rest, _ := strings.Cut(key, `alertname="`)
	name, _, _ := strings.Cut(rest, `"`)
	return name
}
