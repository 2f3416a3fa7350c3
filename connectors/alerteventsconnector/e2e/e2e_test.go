// Package e2e runs the real bin/imcol with the alert_events connector: a
// prometheus receiver scrapes an in-test target that the test stops and
// restarts, and the connector's InstanceDown rule must go pending, firing and
// resolved, as log events and as Alertmanager notifications.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"

	"github.com/imcol/imcol/internal/testcollector"
)

// target is a metrics endpoint that can be stopped and started again on the
// same port.
type target struct {
	addr    string
	srv     *http.Server
	done    chan struct{}
	scraped chan struct{}
}

func (tg *target) start(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", tg.addr)
	require.NoError(t, err)
	tg.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			select {
			case tg.scraped <- struct{}{}:
			default:
			}
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			_, _ = io.WriteString(w, "# TYPE online_user_num gauge\nonline_user_num 42\n")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	tg.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(l)
	}(tg.srv, tg.done)
}

func (tg *target) stop() {
	if tg.srv == nil {
		return
	}
	_ = tg.srv.Close()
	<-tg.done
	tg.srv = nil
}

type amAlert struct {
	Labels   map[string]string `json:"labels"`
	StartsAt time.Time         `json:"startsAt"`
	EndsAt   time.Time         `json:"endsAt"`
}

type amPost struct {
	received time.Time
	alerts   []amAlert
}

type event struct{ state, alertname, body string }

func TestInstanceDownEndToEnd(t *testing.T) {
	tg := &target{addr: testcollector.FreeEndpoint(t), scraped: make(chan struct{}, 1)}
	tg.start(t)
	t.Cleanup(tg.stop)

	posts := make(chan amPost, 1000)
	am := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/alerts" {
			http.NotFound(w, r)
			return
		}
		var alerts []amAlert
		if err := json.NewDecoder(r.Body).Decode(&alerts); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		posts <- amPost{received: time.Now(), alerts: alerts}
	}))
	t.Cleanup(am.Close)

	events := startCollector(t, fmt.Sprintf(`
receivers:
  prometheus:
    config:
      scrape_configs:
        - job_name: im-target
          scrape_interval: 1s
          scrape_timeout: 500ms
          static_configs:
            - targets: ["%[1]s"]
connectors:
  alert_events:
    evaluation_interval: 1s
    resend_delay: 1s
    groups:
      - name: e2e
        rules:
          - alert: InstanceDown
            expr: up{job="im-target"} == 0
            for: 3s
            labels:
              severity: critical
            annotations:
              summary: "Instance {{ $$labels.instance }} is down"
    alertmanagers:
      - endpoint: %[2]s
        timeout: 5s
`, tg.addr, am.URL))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Let two scrapes succeed (up == 1), then take the target down.
	for range 2 {
		select {
		case <-tg.scraped:
		case e := <-events:
			t.Fatalf("event before the target went down: %+v", e)
		case <-ctx.Done():
			t.Fatal("the prometheus receiver never scraped the target")
		}
	}
	tg.stop()

	want := fmt.Sprintf("Instance %s is down", tg.addr)
	ev := nextEvent(ctx, t, events)
	assert.Equal(t, event{state: "pending", alertname: "InstanceDown", body: want}, ev)
	ev = nextEvent(ctx, t, events)
	assert.Equal(t, event{state: "firing", alertname: "InstanceDown", body: want}, ev)

	// Firing reached Alertmanager with an endsAt in the future.
	firing := nextPost(ctx, t, posts)
	require.NotEmpty(t, firing.alerts)
	assert.Equal(t, "InstanceDown", firing.alerts[0].Labels["alertname"])
	assert.Equal(t, tg.addr, firing.alerts[0].Labels["instance"])
	assert.True(t, firing.alerts[0].EndsAt.After(firing.received), "a firing alert's endsAt lies ahead")

	tg.start(t)
	ev = nextEvent(ctx, t, events)
	assert.Equal(t, event{state: "resolved", alertname: "InstanceDown", body: want}, ev)

	// Resends may precede it; the resolution carries an endsAt in the past.
	for {
		p := nextPost(ctx, t, posts)
		require.NotEmpty(t, p.alerts)
		if !p.alerts[0].EndsAt.After(p.received) {
			assert.True(t, p.alerts[0].StartsAt.Equal(firing.alerts[0].StartsAt))
			break
		}
	}
}

// startCollector runs bin/imcol with the given prometheus receiver and
// alert_events connector configuration, its alert events sent to an
// in-test sink, and returns the events.
func startCollector(t *testing.T, receiverAndConnector string) <-chan event {
	t.Helper()
	events, sinkURL := eventSink(t)
	health := testcollector.FreeEndpoint(t)
	cfg := receiverAndConnector + fmt.Sprintf(`
extensions:
  health_check:
    endpoint: %[1]s
exporters:
  otlp_http:
    endpoint: %[2]s
    compression: none
    retry_on_failure:
      enabled: false
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [prometheus]
      exporters: [alert_events]
    logs:
      receivers: [alert_events]
      exporters: [otlp_http]
`, health, sinkURL)
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	proc := testcollector.Start(t, testcollector.Options{Config: path, HealthEndpoint: health})
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(proc.Output())
		}
	})
	return events
}

// eventSink is an OTLP/HTTP logs endpoint that passes every alert event it
// receives to the returned channel.
func eventSink(t *testing.T) (<-chan event, string) {
	events := make(chan event, 1000)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		forEachRecord(req.Logs(), func(lr plog.LogRecord) {
			st, _ := lr.Attributes().Get("alert.state")
			name, _ := lr.Attributes().Get("alert.name")
			events <- event{state: st.Str(), alertname: name.Str(), body: lr.Body().Str()}
		})
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := plogotlp.NewExportResponse().MarshalProto()
		_, _ = w.Write(out)
	}))
	t.Cleanup(sink.Close)
	return events, sink.URL
}

func forEachRecord(ld plog.Logs, f func(plog.LogRecord)) {
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

func nextEvent(ctx context.Context, t *testing.T, ch <-chan event) event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-ctx.Done():
		t.Fatal(errors.New("timed out waiting for an alert event"))
		return event{}
	}
}

func nextPost(ctx context.Context, t *testing.T, ch <-chan amPost) amPost {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-ctx.Done():
		t.Fatal(errors.New("timed out waiting for an Alertmanager notification"))
		return amPost{}
	}
}
