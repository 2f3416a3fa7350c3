package imlossprocessor

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/internal/testcollector"
)

const e2eRestartConfig = `
extensions:
  health_check:
    endpoint: ${env:E2E_HEALTH}
  file_storage/im_loss:
    directory: ${env:E2E_DATA}
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:E2E_OTLP}
processors:
  im_loss:
    ack_timeout: 3s
    offline_timeout: 8s
    reorder_window: 1s
    tick_interval: 100ms
    allowed_lateness: 200ms
    source_idle_timeout: 3s
    max_source_lag: 2s
    storage: file_storage/im_loss
exporters:
  otlp_http:
    endpoint: http://${env:E2E_SINK}
    compression: none
service:
  extensions: [health_check, file_storage/im_loss]
  telemetry:
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
      exporters: [otlp_http]
    logs:
      receivers: [otlp]
      processors: [im_loss]
      exporters: [otlp_http]
`

// TestEndToEndRestartWithStorage stops the collector with messages in flight and an open
// conversation, restarts it, and requires that the restored messages are decided (neither
// forgotten nor falsely lost) and that the conversation's seq baseline survived. It also
// checks the internal metric names that the alert rules use.
func TestEndToEndRestartWithStorage(t *testing.T) {
	sink := &outcomeSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	otlpEndpoint := testcollector.FreeEndpoint(t)
	health := testcollector.FreeEndpoint(t)
	telemetryPort := testcollector.FreePort(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(e2eRestartConfig), 0o600))
	opts := testcollector.Options{
		Config: cfgPath,
		Env: map[string]string{
			"E2E_HEALTH": health, "E2E_OTLP": otlpEndpoint, "E2E_SINK": strings.TrimPrefix(srv.URL, "http://"),
			"E2E_DATA": t.TempDir(), "E2E_TELEMETRY_PORT": strconv.Itoa(telemetryPort),
		},
		HealthEndpoint: health,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r := rand.New(rand.NewPCG(5, 8))

	first := testcollector.Start(t, opts)
	var evs []lc
	var want []string
	for i := range 10 {
		msg := fmt.Sprintf("done-%d", i)
		evs = append(evs,
			lc{stage: send, msg: msg, conv: "c"},
			lc{stage: persist, msg: msg, conv: "c", seq: int64(i + 1)},
			lc{stage: push, msg: msg, conv: "c", fanout: 1},
			lc{stage: ack, msg: msg, conv: "c", dev: "d", at: 30 * time.Millisecond})
		want = append(want, delivered(msg, "c"))
	}
	for i := range 40 {
		msg := fmt.Sprintf("inflight-%d", i)
		evs = append(evs,
			lc{stage: send, msg: msg, conv: "c"},
			lc{stage: persist, msg: msg, conv: "c", seq: int64(11 + i)},
			lc{stage: push, msg: msg, conv: "c", fanout: 1})
	}
	evs = append(evs, lc{stage: send, conv: "c"}) // no message id: counted, passed through
	base := time.Now()
	sendMixedAt(ctx, t, otlpEndpoint, r, base, evs)
	waitForOutcomes(ctx, t, first, sink, want)

	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", telemetryPort)
	require.NoError(t, testcollector.Eventually(ctx, 100*time.Millisecond, func() error {
		body, err := scrape(ctx, metricsURL)
		if err != nil {
			return err
		}
		for _, series := range []string{
			`otelcol_processor_im_loss_outcomes_total{outcome="delivered",reason="",stage="ack"} 10`,
			"otelcol_processor_im_loss_tracked_messages 40",
			`otelcol_processor_im_loss_delivery_latency_milliseconds_bucket{le="50"} 10`,
			`otelcol_processor_im_loss_delivery_latency_milliseconds_count 10`,
			`otelcol_processor_im_loss_unrecognized_events_total{reason="missing_message_id"} 1`,
		} {
			if !strings.Contains(body, series) {
				return fmt.Errorf("%s not on %s yet", series, metricsURL)
			}
		}
		return nil
	}), first.Output())

	require.NoError(t, first.Stop(30*time.Second), first.Output())
	require.Contains(t, first.Output(), "Saved in-flight messages")

	second := testcollector.Start(t, opts)
	require.Contains(t, second.Output(), `"messages": 40`, "restored")
	// Acks that happened during the downtime (the services held their telemetry), in time.
	evs = nil
	for i := range 20 {
		msg := fmt.Sprintf("inflight-%d", i)
		evs = append(evs, lc{stage: ack, msg: msg, conv: "c", dev: "d", at: 100 * time.Millisecond})
		want = append(want, delivered(msg, "c"))
	}
	sendMixedAt(ctx, t, otlpEndpoint, r, base, evs)
	evs = nil
	for i := 20; i < 40; i++ {
		want = append(want, lost(fmt.Sprintf("inflight-%d", i), "c", "ack_timeout", push, ""))
	}
	// seq 51 never comes: only a restored baseline makes 52 reveal the gap.
	evs = append(evs, lc{stage: persist, msg: "after-restart", conv: "c", seq: 52})
	want = append(want, key("lost", "", "c", "seq_gap", "persist", "", "", 51), lost("after-restart", "c", "ack_timeout", persist, ""))
	sendMixed(ctx, t, otlpEndpoint, r, evs)
	waitForOutcomes(ctx, t, second, sink, want)

	// A sentinel lost after every other deadline: nothing else may have turned up by then.
	sendMixed(ctx, t, otlpEndpoint, r, []lc{{stage: send, msg: "sentinel", conv: "s"}})
	want = append(want, lost("sentinel", "s", "ack_timeout", send, ""))
	waitForOutcomes(ctx, t, second, sink, want)
}

func scrape(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
