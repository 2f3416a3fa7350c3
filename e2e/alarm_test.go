package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/imcol/imcol/internal/testcollector"
)

// imService is an OpenIM-like component: a /metrics endpoint in Prometheus text format that the
// test stops and starts again on the same address, as an operator would restart a crashed service.
type imService struct {
	addr string
	mu   sync.Mutex
	srv  *http.Server
	done chan struct{}
}

func newIMService(t *testing.T) *imService {
	s := &imService{addr: testcollector.FreeEndpoint(t)}
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *imService) start(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", s.addr)
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(serveOpenIMMetrics), ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	s.mu.Lock()
	s.srv, s.done = srv, done
	s.mu.Unlock()
}

func (s *imService) stop() {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
		<-done
	}
}

// serveOpenIMMetrics writes a few of OpenIM's own metric families, as its components expose them.
func serveOpenIMMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = io.WriteString(w, `# TYPE online_user_num gauge
online_user_num 1200
# TYPE msg_insert_redis_failed_total counter
msg_insert_redis_failed_total 0
# TYPE msg_insert_mongo_failed_total counter
msg_insert_mongo_failed_total 0
# TYPE seq_set_failed_total counter
seq_set_failed_total 0
# TYPE msg_offline_push_failed_total counter
msg_offline_push_failed_total 0
# TYPE http_count_total counter
http_count_total{path="/msg/send_msg",method="POST",status="200"} 5000
http_count_total{path="/msg/send_msg",method="POST",status="429"} 3
`)
}

// alertEvent is one alert event log record as imcol writes it to its logs file.
type alertEvent struct{ name, state, instance, body string }

// readAlertEvents returns the alert events in a file exporter's JSON-lines output.
func readAlertEvents(t *testing.T, path string) []alertEvent {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var events []alertEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	var um plog.JSONUnmarshaler
	for sc.Scan() {
		ld, err := um.UnmarshalLogs(sc.Bytes())
		require.NoError(t, err)
		forEachLogRecord(ld, func(lr plog.LogRecord) {
			attrs := lr.Attributes()
			name, ok := attrs.Get("alert.name")
			if !ok {
				return
			}
			state, _ := attrs.Get("alert.state")
			inst, _ := attrs.Get("alert.label.instance")
			events = append(events, alertEvent{name.Str(), state.Str(), inst.Str(), lr.Body().AsString()})
		})
	}
	require.NoError(t, sc.Err())
	return events
}

func forEachLogRecord(ld plog.Logs, f func(plog.LogRecord)) {
	for i := 0; i < ld.ResourceLogs().Len(); i++ {
		sls := ld.ResourceLogs().At(i).ScopeLogs()
		for j := 0; j < sls.Len(); j++ {
			lrs := sls.At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				f(lrs.At(k))
			}
		}
	}
}

// alertStates lists, in order, the states the named alert went through for instance.
func alertStates(events []alertEvent, name, instance string) []string {
	var states []string
	for _, e := range events {
		if e.name == name && e.instance == instance {
			states = append(states, e.state)
		}
	}
	return states
}

// TestDefaultConfigAlarmExperience is OpenIM's "alarm experience" with imcol's default config and a
// real Alertmanager: a scraped service stops, InstanceDown goes pending then firing (as alert events
// in the logs file and as an Alertmanager notification that reaches the webhook and, rendered from
// the shipped template, the mailbox); the service restarts and the alert resolves everywhere.
func TestDefaultConfigAlarmExperience(t *testing.T) {
	t.Parallel()
	smtp := newSMTPSink(t)
	webhook := newWebhookSink(t)
	am := startAlertmanager(t, smtp.addr(), webhook.url())

	svc := newIMService(t)
	targets := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(targets, "openim.yaml"),
		[]byte(fmt.Sprintf("- targets: [%q]\n  labels:\n    job: openim-msg-gateway\n", svc.addr)), 0o600))

	env := testcollector.DefaultConfigEnv(t)
	env["IMCOL_TARGETS_DIR"] = targets
	env["IMCOL_SCRAPE_INTERVAL"] = "1s"
	env["IMCOL_EVALUATION_INTERVAL"] = "1s"
	root := testcollector.RepoRoot(t)
	overlay := fmt.Sprintf("yaml:connectors::alert_events::alertmanagers: [{endpoint: %q}]", am.url(""))
	proc := testcollector.Launch(t, testcollector.Binary(t),
		[]string{"--config", filepath.Join(root, "configs", "default.yaml"), "--config", overlay}, env)
	t.Cleanup(func() { require.NoError(t, proc.Stop(30*time.Second), tail(proc.Output(), 4000)) })
	require.NoError(t, proc.WaitHealthy("http://"+env["IMCOL_HEALTH_ENDPOINT"]+"/", 60*time.Second), proc.Output())

	logs := filepath.Join(env["IMCOL_DATA_DIR"], "logs.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	waitUntil(ctx, t, proc, "the service to be scraped", func() bool {
		body, err := testcollector.Get("http://" + env["IMCOL_PROMETHEUS_ENDPOINT"] + "/metrics")
		return err == nil && strings.Contains(body, "online_user_num{")
	})

	svc.stop()
	waitUntil(ctx, t, proc, "InstanceDown pending then firing as alert events", func() bool {
		return strings.Join(alertStates(readAlertEvents(t, logs), "InstanceDown", svc.addr), ",") == "pending,firing"
	})
	waitUntil(ctx, t, proc, "InstanceDown firing at the webhook and in the mailbox", func() bool {
		return webhook.saw("InstanceDown", "firing") && mailed(smtp, "InstanceDown", "FIRING")
	})
	var active []struct {
		Labels map[string]string `json:"labels"`
	}
	require.NoError(t, getJSON(ctx, am.url("/api/v2/alerts?active=true"), &active))
	require.True(t, hasAlert(active, "InstanceDown", svc.addr), "Alertmanager does not show InstanceDown: %+v", active)

	svc.start(t)
	waitUntil(ctx, t, proc, "InstanceDown resolved as an alert event", func() bool {
		return strings.Join(alertStates(readAlertEvents(t, logs), "InstanceDown", svc.addr), ",") == "pending,firing,resolved"
	})
	waitUntil(ctx, t, proc, "InstanceDown resolved at the webhook and in the mailbox", func() bool {
		return webhook.saw("InstanceDown", "resolved") && mailed(smtp, "InstanceDown", "RESOLVED")
	})
}

// mailed reports whether a mail rendered from the shipped template announced alertname with status.
func mailed(smtp *smtpSink, alertname, status string) bool { //nolint:unparam // for any alert; the tests check one
	for _, m := range smtp.messages() {
		// The template's heading, the alert's summary and its runbook: the mail was rendered by it.
		if containsAll(m, "Subject: ["+status, "imcol alert: "+alertname, "is down", "Runbook") {
			return true
		}
	}
	return false
}

func hasAlert(alerts []struct {
	Labels map[string]string `json:"labels"`
}, name, instance string,
) bool {
	for _, a := range alerts {
		if a.Labels["alertname"] == name && a.Labels["instance"] == instance {
			return true
		}
	}
	return false
}

// waitUntil polls cond until it holds, failing the test with the collector's output at the deadline.
func waitUntil(ctx context.Context, t *testing.T, proc *testcollector.Process, what string, cond func() bool) {
	t.Helper()
	err := testcollector.Eventually(ctx, 250*time.Millisecond, func() error {
		if cond() {
			return nil
		}
		return fmt.Errorf("not yet: %s", what)
	})
	require.NoError(t, err, "waiting for %s\ncollector output:\n%s", what, tail(proc.Output(), 6000))
}
