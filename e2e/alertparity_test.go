package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
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
// evaluation interval, through three incidents: a message-loss burst (the testbed's generator with
// injected push losses, judged by im_loss), the SLO fast burn it causes (the slo connector's burn
// rates), and a scraped service going down and coming back. The alerts that fire (names and label
// sets) and their resolution must be the same, and each transition must happen within one
// evaluation interval plus one scrape interval of the other's.
const (
	parityInterval = 2 * time.Second // scrape and evaluation interval, everywhere
	// parityTimeScale shortens every range, subquery, offset, `for` and `keep_firing_for` of the
	// catalogue (5m windows become 15s, `for: 2m` becomes 6s) so that incidents fire and resolve
	// within a minute; both systems load the same shortened files.
	parityTimeScale = 20
	// The loss burst: burstMessages at trafficRate with a share burstLoss lost at push, then
	// cleanMessages without faults, during which the loss ratios and burn rates fall back.
	trafficRate   = 50
	burstMessages = 1000
	burstLoss     = 0.3
	cleanMessages = 2000
)

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
//
// Prometheus gives a scraped series without job or instance its target's (job "imcol", instance
// the exporter's address): the slo connector's series have neither. imcol's alert_events sees them
// without, so these two target labels are left out here; that is the one difference of label sets
// between the two (README, "Compared with running the rules in Prometheus").
func promTransitions(ctx context.Context, t *testing.T, prom *server, exporter string, from, to time.Time) map[string]*transition {
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
		if r.Metric["job"] == "imcol" && r.Metric["instance"] == exporter {
			delete(r.Metric, "job")
			delete(r.Metric, "instance")
		}
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

// imcolConfig is the pipeline under test: OTLP IM traffic through im_loss (timeouts of the
// testbed's quick scenarios) into the delivery SLO; the SLO's metrics, imcol's own metrics
// (scraped from its telemetry endpoint, as configs/default.yaml does) and a scraped service go to
// the prometheus exporter and to alert_events.
const imcolConfig = `
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: ${env:E2E_OTLP}
  prometheus:
    config:
      scrape_configs:
        - job_name: im-service
          scrape_interval: ${env:E2E_INTERVAL}
          static_configs: [{targets: ["${env:E2E_SERVICE}"]}]
        - job_name: imcol-self
          scrape_interval: ${env:E2E_INTERVAL}
          static_configs: [{targets: ["127.0.0.1:${env:E2E_TELEMETRY_PORT}"]}]
processors:
  im_loss:
    ack_timeout: 3s
    offline_timeout: 12s
    reorder_window: 3s
    tick_interval: 100ms
    allowed_lateness: 500ms
    source_idle_timeout: 3s
    max_source_lag: 6s
    outcomes:
      signals: [logs]
connectors:
  slo:
    flush_interval: ${env:E2E_INTERVAL}
    slos:
      - name: im-message-delivery
        signal: logs
        # 1%: the burst burns it fast, and the clean traffic after it dilutes the burn below 14.4.
        objective: 0.99
        sli:
          ratio:
            total: event_name == "im.message.outcome" and (attributes["im.outcome"] == "delivered" or attributes["im.outcome"] == "lost")
            good: attributes["im.outcome"] == "delivered"
  alert_events:
    rule_files: ["${env:E2E_RULES}/*.yaml"]
    evaluation_interval: ${env:E2E_INTERVAL}
exporters:
  prometheus:
    endpoint: ${env:E2E_EXPORTER}
  file/traces:
    path: ${env:E2E_DIR}/traces.jsonl
  file/alerts:
    path: ${env:E2E_DIR}/alerts.jsonl
    format: json
extensions:
  health_check:
    endpoint: ${env:E2E_HEALTH}
service:
  extensions: [health_check]
  telemetry:
    logs:
      level: warn
    metrics:
      level: detailed
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: ${env:E2E_TELEMETRY_PORT}
                without_type_suffix: false
                without_units: false
  pipelines:
    traces:
      receivers: [otlp]
      processors: [im_loss]
      exporters: [file/traces]
    logs:
      receivers: [otlp]
      processors: [im_loss]
      exporters: [slo]
    metrics:
      receivers: [prometheus, slo]
      exporters: [prometheus, alert_events]
    logs/alerts:
      receivers: [alert_events]
      exporters: [file/alerts]
`

// buildImload builds the testbed's generator once, so the burst and the clean traffic after it
// follow each other without a compile in between.
func buildImload(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "imload")
	cmd := exec.Command("go", "build", "-o", bin, "./testbed/cmd/imload")
	cmd.Dir = testcollector.RepoRoot(t)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "building imload:\n%s", out)
	return bin
}

// runImload sends messages at trafficRate with the given faults and a seed of its own (message ids
// derive from it), with the collector's im_loss settings so that faults are placed as im_loss
// judges them.
func runImload(ctx context.Context, t *testing.T, bin, endpoint string, seed, messages int, faults string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, "-endpoint", endpoint, "-signals", "mixed", "-seed", strconv.Itoa(seed),
		"-messages", strconv.Itoa(messages), "-rate", strconv.Itoa(trafficRate), "-faults", faults, "-offline-share", "0",
		"-progress", "0", "-ack-timeout", "3s", "-offline-timeout", "12s", "-reorder-window", "3s",
		"-tick-interval", "100ms", "-allowed-lateness", "500ms", "-source-idle-timeout", "3s", "-max-source-lag", "6s")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "imload:\n%s", out)
}

// TestAlertsMatchPrometheus is not parallel: it asserts a timing bound of a few seconds, so it runs
// before the package's parallel tests (real backends, container image) load the machine.
func TestAlertsMatchPrometheus(t *testing.T) {
	imload := buildImload(t)
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	require.NoError(t, os.Mkdir(rules, 0o700))
	shortenedCatalogue(t, rules)

	svc := newIMService(t)
	otlp, exporter, health := testcollector.FreeEndpoint(t), testcollector.FreeEndpoint(t), testcollector.FreeEndpoint(t)
	cfgPath := filepath.Join(dir, "imcol.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(imcolConfig), 0o600))
	proc := testcollector.Start(t, testcollector.Options{Config: cfgPath, HealthEndpoint: health, Env: map[string]string{
		"E2E_OTLP": otlp, "E2E_INTERVAL": parityInterval.String(), "E2E_SERVICE": svc.addr,
		"E2E_TELEMETRY_PORT": strconv.Itoa(testcollector.FreePort(t)), "E2E_RULES": rules, "E2E_EXPORTER": exporter,
		"E2E_DIR": dir, "E2E_HEALTH": health,
	}})

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

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	begin := time.Now()
	waitUntil(ctx, t, proc, "Prometheus to see the service and imcol's own metrics through imcol", func() bool {
		var r struct {
			Data struct {
				Result []any `json:"result"`
			} `json:"data"`
		}
		q := url.Values{"query": {`count(up{job="im-service"} == 1) + count(otelcol_process_uptime_seconds_total)`}}
		return getJSON(ctx, prom.url("/api/v1/query?"+q.Encode()), &r) == nil && len(r.Data.Result) == 1
	})

	// The service goes down while the burst runs, and comes back when it ends.
	svc.stop()
	runImload(ctx, t, imload, otlp, 11, burstMessages, fmt.Sprintf("loss_push=%g", burstLoss))
	svc.start(t)
	runImload(ctx, t, imload, otlp, 12, cleanMessages, "")

	required := []string{"IMMessageLossRateHigh", "IMSLOFastBurn", "InstanceDown"}
	var imcol, promTr map[string]*transition
	err := testcollector.Eventually(ctx, time.Second, func() error {
		imcol = imcolTransitions(t, filepath.Join(dir, "alerts.jsonl"))
		promTr = promTransitions(ctx, t, prom, exporter, begin, time.Now())
		if agree(imcol, promTr, required) {
			return nil
		}
		return fmt.Errorf("imcol:\n%sPrometheus:\n%s", describe(imcol, begin), describe(promTr, begin))
	})
	require.NoError(t, err, "waiting for imcol and Prometheus to agree on the alerts, with %s fired and resolved\ncollector output:\n%s",
		strings.Join(required, ", "), tail(proc.Output(), 3000))

	// The same alerts with the same label sets, within one evaluation plus one scrape interval.
	bound := 2 * parityInterval
	for _, key := range slices.Sorted(maps.Keys(promTr)) {
		p, i := promTr[key], imcol[key]
		fired := i.fired.Sub(p.fired)
		assert.LessOrEqual(t, fired.Abs(), bound, "%s fired", key)
		if p.resolved.IsZero() {
			t.Logf("%s: fired imcol−Prometheus %+.1fs, still firing at the end in both", alertName(key), fired.Seconds())
			continue
		}
		resolved := i.resolved.Sub(p.resolved)
		t.Logf("%s: fired imcol−Prometheus %+.1fs, resolved %+.1fs", alertName(key), fired.Seconds(), resolved.Seconds())
		assert.LessOrEqual(t, resolved.Abs(), bound, "%s resolved", key)
	}
}

func describe(trs map[string]*transition, begin time.Time) string {
	var b strings.Builder
	for _, key := range slices.Sorted(maps.Keys(trs)) {
		tr := trs[key]
		rel := func(ts time.Time) string {
			if ts.IsZero() {
				return "-"
			}
			return fmt.Sprintf("%.1fs", ts.Sub(begin).Seconds())
		}
		fmt.Fprintf(&b, "  %s fired %s resolved %s\n", key, rel(tr.fired), rel(tr.resolved))
	}
	return b.String()
}

// agree reports whether both sides fired the same alert instances, each resolved on both sides or
// on neither, and every required alert fired and resolved.
func agree(a, b map[string]*transition, required []string) bool {
	if len(a) != len(b) {
		return false
	}
	done := map[string]bool{}
	for key, ta := range a {
		tb, ok := b[key]
		if !ok || ta.fired.IsZero() || tb.fired.IsZero() || ta.resolved.IsZero() != tb.resolved.IsZero() {
			return false
		}
		if !ta.resolved.IsZero() {
			done[alertName(key)] = true
		}
	}
	for _, name := range required {
		if !done[name] {
			return false
		}
	}
	return true
}

func alertName(key string) string {
	_, rest, _ := strings.Cut(key, `alertname="`)
	name, _, _ := strings.Cut(rest, `"`)
	return name
}
