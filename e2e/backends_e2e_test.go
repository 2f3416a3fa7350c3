package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/internal/testcollector"
	"github.com/imcol/imcol/testbed/workload"
)

// stack is everything TestBackendsEndToEnd runs: the four real servers, the sinks behind
// Alertmanager, an OpenIM-like service, and imcol with configs/backends.yaml.
type stack struct {
	smtp    *smtpSink
	webhook *webhookSink
	am      *server
	loki    *server
	jaeger  *jaeger
	prom    *server
	svc     *imService
	imcol   *testcollector.Process
	env     map[string]string
}

// The im_loss timeouts of the run: short, so that losses are decided within seconds.
const (
	e2eAckTimeout     = "3s"
	e2eOfflineTimeout = "10s"
	e2eReorderWindow  = "2s"
	e2eTick           = "200ms"
	// Each run ends in silence: its last verdicts come from the max_source_lag cap.
	e2eAllowedLateness = "500ms"
	e2eSourceIdle      = "3s"
	e2eMaxSourceLag    = "6s"
)

func startStack(t *testing.T) *stack {
	t.Helper()
	s := &stack{smtp: newSMTPSink(t), webhook: newWebhookSink(t)}
	s.am = startAlertmanager(t, s.smtp.addr(), s.webhook.url())
	s.loki = startLoki(t)
	s.jaeger = startJaeger(t)
	s.svc = newIMService(t)

	s.env = testcollector.DefaultConfigEnv(t)
	targets := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(targets, "openim.yaml"),
		[]byte(fmt.Sprintf("- targets: [%q]\n  labels:\n    job: openim-msg-gateway\n", s.svc.addr)), 0o600))
	root := testcollector.RepoRoot(t)
	s.prom = startPrometheus(t, map[string]string{
		"imcol":      s.env["IMCOL_PROMETHEUS_ENDPOINT"],
		"imcol-self": "127.0.0.1:" + s.env["IMCOL_TELEMETRY_PORT"],
	}, []string{
		filepath.Join(root, "configs", "rules", "*.yaml"),
		filepath.Join(root, "configs", "prometheus", "slo-rules.yaml"),
	}, s.am.addr)

	for k, v := range map[string]string{
		"IMCOL_TARGETS_DIR":          targets,
		"IMCOL_SCRAPE_INTERVAL":      "1s",
		"IMCOL_EVALUATION_INTERVAL":  "1s",
		"IMCOL_RESEND_DELAY":         "1s",
		"IMCOL_HOSTMETRICS_INTERVAL": "1s",
		"IMCOL_ACK_TIMEOUT":          e2eAckTimeout,
		"IMCOL_OFFLINE_TIMEOUT":      e2eOfflineTimeout,
		"IMCOL_REORDER_WINDOW":       e2eReorderWindow,
		"IMCOL_LOSS_TICK":            e2eTick,
		"IMCOL_ALLOWED_LATENESS":     e2eAllowedLateness,
		"IMCOL_SOURCE_IDLE_TIMEOUT":  e2eSourceIdle,
		"IMCOL_MAX_SOURCE_LAG":       e2eMaxSourceLag,
		"IMCOL_ALERTMANAGER_URL":     s.am.url(""),
		"IMCOL_REMOTE_WRITE_URL":     s.prom.url("/api/v1/write"),
		"IMCOL_LOKI_OTLP_ENDPOINT":   s.loki.url("/otlp"),
		"IMCOL_JAEGER_OTLP_ENDPOINT": s.jaeger.otlp,
	} {
		s.env[k] = v
	}
	s.imcol = testcollector.Start(t, testcollector.Options{
		Config:         filepath.Join(root, "configs", "backends.yaml"),
		Env:            s.env,
		HealthEndpoint: s.env["IMCOL_HEALTH_ENDPOINT"],
	})
	return s
}

// truthRecord is one line of imload's -truth file: a message and the outcome records it must produce
// (labels outcome/reason@stage).
type truthRecord struct {
	MessageID      string   `json:"message_id"`
	ConversationID string   `json:"conversation_id"`
	Class          string   `json:"class"`
	Expect         []string `json:"expect"`
}

// trafficSeed is the testbed workload seed: message ids and trace ids derive from it.
const trafficSeed = 7

// traceIDOf returns the trace id the testbed gave a message's spans.
func traceIDOf(t *testing.T, messageID string) string {
	idx, ok := workload.ParseMessageID(trafficSeed, messageID)
	require.True(t, ok, "not a testbed message id: %s", messageID)
	return workload.TraceID(trafficSeed, idx).String()
}

// driveTraffic sends IM traffic with injected faults through the testbed's generator and returns
// the ground truth it recorded.
func driveTraffic(t *testing.T, s *stack, messages int, faultSpec string) []truthRecord {
	t.Helper()
	return startImload(t, s.env["IMCOL_OTLP_GRPC_ENDPOINT"], messages, faultSpec, imloadTimeouts{
		ack: e2eAckTimeout, offline: e2eOfflineTimeout, reorder: e2eReorderWindow, tick: e2eTick,
	}, "-rate", "50")()
}

// imloadTimeouts are the im_loss settings of the collector under test, which the generator needs to
// place its faults. Empty lateness fields keep imload's defaults.
type imloadTimeouts struct {
	ack, offline, reorder, tick  string
	lateness, sourceIdle, maxLag string
}

func (o imloadTimeouts) args() []string {
	args := []string{"-ack-timeout", o.ack, "-offline-timeout", o.offline, "-reorder-window", o.reorder, "-tick-interval", o.tick}
	for flag, v := range map[string]string{"-allowed-lateness": o.lateness, "-source-idle-timeout": o.sourceIdle, "-max-source-lag": o.maxLag} {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	return args
}

// startImload starts the testbed's generator against endpoint in the background; the function it
// returns waits for it to finish and returns the ground truth it recorded.
func startImload(t *testing.T, endpoint string, messages int, faultSpec string, timeouts imloadTimeouts, extra ...string) func() []truthRecord {
	t.Helper()
	truthPath := filepath.Join(t.TempDir(), "truth.jsonl")
	args := append([]string{"run", "./testbed/cmd/imload",
		"-endpoint", endpoint, "-messages", strconv.Itoa(messages), "-signals", "mixed",
		"-faults", faultSpec, "-truth", truthPath, "-seed", strconv.Itoa(trafficSeed), "-progress", "0"},
		timeouts.args()...)
	cmd := exec.Command("go", append(args, extra...)...)
	cmd.Dir = testcollector.RepoRoot(t)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	return func() []truthRecord {
		t.Helper()
		require.NoError(t, cmd.Wait(), "imload:\n%s", out.String())
		return readTruth(t, truthPath, messages)
	}
}

func readTruth(t *testing.T, path string, messages int) []truthRecord {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var truth []truthRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r truthRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		truth = append(truth, r)
	}
	require.NoError(t, sc.Err())
	require.Len(t, truth, messages)
	return truth
}

// countExpected counts the expected records whose label starts with prefix: labels read
// outcome/reason@stage, or outcome@stage when there is no reason ("delivered@ack").
func countExpected(truth []truthRecord, prefix string) int {
	n := 0
	for _, r := range truth {
		for _, e := range r.Expect {
			if strings.HasPrefix(e, prefix) {
				n++
			}
		}
	}
	return n
}

// promQuery runs an instant query and returns its single value, or an error while there is none.
func promQuery(ctx context.Context, prom *server, query string) (float64, error) {
	var resp struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(ctx, prom.url("/api/v1/query?query="+url.QueryEscape(query)), &resp); err != nil {
		return 0, err
	}
	if len(resp.Data.Result) != 1 {
		return 0, fmt.Errorf("%q: %d series", query, len(resp.Data.Result))
	}
	return strconv.ParseFloat(resp.Data.Result[0].Value[1].(string), 64)
}

// lokiLines returns the log lines Loki holds for a LogQL query over the last hour.
func lokiLines(ctx context.Context, loki *server, query string) ([]string, error) {
	var resp struct {
		Data struct {
			Result []struct {
				Values [][2]string `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	q := url.Values{}
	q.Set("query", query)
	q.Set("limit", "5000")
	q.Set("start", strconv.FormatInt(time.Now().Add(-time.Hour).UnixNano(), 10))
	q.Set("end", strconv.FormatInt(time.Now().Add(time.Minute).UnixNano(), 10))
	if err := getJSON(ctx, loki.url("/loki/api/v1/query_range?"+q.Encode()), &resp); err != nil {
		return nil, err
	}
	var lines []string
	for _, stream := range resp.Data.Result {
		for _, v := range stream.Values {
			lines = append(lines, v[1])
		}
	}
	return lines, nil
}

// jaegerTraceSpans returns operation name → tags (as "key=value") of a trace held by Jaeger.
func jaegerTraceSpans(ctx context.Context, j *jaeger, traceID string) (map[string][]string, error) {
	var resp struct {
		Data []struct {
			Spans []struct {
				OperationName string `json:"operationName"`
				Tags          []struct {
					Key   string `json:"key"`
					Value any    `json:"value"`
				} `json:"tags"`
			} `json:"spans"`
		} `json:"data"`
	}
	if err := getJSON(ctx, j.url("/api/traces/"+traceID), &resp); err != nil {
		return nil, err
	}
	spans := map[string][]string{}
	for _, tr := range resp.Data {
		for _, sp := range tr.Spans {
			for _, tag := range sp.Tags {
				spans[sp.OperationName] = append(spans[sp.OperationName], fmt.Sprintf("%s=%v", tag.Key, tag.Value))
			}
			if _, ok := spans[sp.OperationName]; !ok {
				spans[sp.OperationName] = nil
			}
		}
	}
	return spans, nil
}

// liveMetricNames lists every metric name Prometheus holds.
func liveMetricNames(ctx context.Context, prom *server) (map[string]bool, error) {
	var resp struct {
		Data []string `json:"data"`
	}
	if err := getJSON(ctx, prom.url("/api/v1/label/__name__/values"), &resp); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, n := range resp.Data {
		names[n] = true
	}
	return names, nil
}

// TestBackendsEndToEnd runs imcol with configs/backends.yaml in front of real Prometheus,
// Alertmanager, Loki and Jaeger, drives IM traffic with injected losses from the testbed, and checks
// every path through the servers' own query APIs.
func TestBackendsEndToEnd(t *testing.T) {
	t.Parallel()
	s := startStack(t)

	truth := driveTraffic(t, s, 400, "loss_persist=0.03,loss_push=0.04,loss_deliver=0.04,persist_failed=0.03,duplicate=0.03,seq_gap=0.03")
	lost, decided := countExpected(truth, "lost/"), countExpected(truth, "delivered@")+countExpected(truth, "lost/")
	require.Positive(t, lost)

	t.Run("prometheus holds IM, SLO and host metrics by scrape and remote write", func(t *testing.T) {
		ctx := subtestContext(t)
		want := map[string]float64{
			`sum(otelcol_processor_im_loss_outcomes_total{job="imcol-self",outcome="lost"})`:                     float64(lost),
			`sum(imcol_slo_events_total{job="imcol",slo_name="im-message-delivery"})`:                            float64(decided),
			`sum(imcol_slo_good_events_total{job="imcol",slo_name="im-message-delivery"})`:                       float64(decided - lost),
			`sum(imcol_slo_events_total{imcol_export="remote_write",slo_name="im-message-delivery"})`:            float64(decided),
			`count(system_memory_utilization_ratio{job="imcol"}) > bool 0`:                                       1,
			`count(system_memory_utilization_ratio{imcol_export="remote_write"}) > bool 0`:                       1,
			`count(imcol_slo_burn_rate{job="imcol",slo_name="im-message-delivery",window="1h"})`:                 1,
			`count(imcol_slo_error_budget_remaining_ratio{job="imcol",slo_name="im-message-delivery"}) > bool 0`: 1,
		}
		for query, value := range want {
			waitUntil(ctx, t, s.imcol, query, func() bool {
				got, err := promQuery(ctx, s.prom, query)
				return err == nil && got == value
			})
		}
	})

	t.Run("jaeger returns a lost message's trace with its outcome span", func(t *testing.T) {
		ctx := subtestContext(t)
		var lostMsg truthRecord
		for _, r := range truth {
			if r.Class == "loss_push" {
				lostMsg = r
				break
			}
		}
		require.NotEmpty(t, lostMsg.MessageID, "the traffic had no loss at push")
		traceID := traceIDOf(t, lostMsg.MessageID)
		waitUntil(ctx, t, s.imcol, "the outcome span of "+lostMsg.MessageID+" in Jaeger", func() bool {
			spans, err := jaegerTraceSpans(ctx, s.jaeger, traceID)
			if err != nil {
				return false
			}
			tags := strings.Join(spans["im.message.outcome"], " ")
			return containsAll(tags, "im.outcome=lost", "im.loss.reason=ack_timeout", "im.loss.stage=push",
				"im.message.id="+lostMsg.MessageID)
		})
	})

	t.Run("loki returns the loss events by service and attributes", func(t *testing.T) {
		ctx := subtestContext(t)
		query := `{service_name="imcol"} | im_outcome="lost"`
		waitUntil(ctx, t, s.imcol, query, func() bool {
			lines, err := lokiLines(ctx, s.loki, query)
			return err == nil && len(lines) == lost
		})
	})

	t.Run("dashboards query only metrics a live run exposes", func(t *testing.T) {
		ctx := subtestContext(t)
		used := dashboardMetrics(t)
		err := testcollector.Eventually(ctx, time.Second, func() error {
			live, err := liveMetricNames(ctx, s.prom)
			if err != nil {
				return err
			}
			if missing := missingMetrics(used, live); len(missing) > 0 {
				return fmt.Errorf("not in Prometheus:\n%s", strings.Join(missing, "\n"))
			}
			return nil
		})
		require.NoError(t, err)
	})

	t.Run("OpenIM alarm: a stopped service fires InstanceDown everywhere, and it resolves", func(t *testing.T) {
		ctx := subtestContext(t)
		s.svc.stop()
		waitUntil(ctx, t, s.imcol, "InstanceDown at Alertmanager, the webhook and the mailbox", func() bool {
			var active []struct {
				Labels map[string]string `json:"labels"`
			}
			return getJSON(ctx, s.am.url("/api/v2/alerts?active=true"), &active) == nil &&
				hasAlert(active, "InstanceDown", s.svc.addr) &&
				s.webhook.saw("InstanceDown", "firing") && mailed(s.smtp, "InstanceDown", "FIRING")
		})
		alertQuery := `{service_name="imcol"} | alert_name="InstanceDown" | alert_state="firing"`
		waitUntil(ctx, t, s.imcol, "the firing alert event in Loki", func() bool {
			lines, err := lokiLines(ctx, s.loki, alertQuery)
			return err == nil && len(lines) == 1
		})
		s.svc.start(t)
		waitUntil(ctx, t, s.imcol, "InstanceDown resolved at the webhook, in the mailbox and in Loki", func() bool {
			lines, err := lokiLines(ctx, s.loki, `{service_name="imcol"} | alert_name="InstanceDown" | alert_state="resolved"`)
			return err == nil && len(lines) == 1 &&
				s.webhook.saw("InstanceDown", "resolved") && mailed(s.smtp, "InstanceDown", "RESOLVED")
		})
	})
}

// subtestContext bounds one check, so that a failing one leaves the others their time.
func subtestContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
