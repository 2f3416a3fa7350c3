package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/internal/testcollector"
)

// The im_loss settings of the container run. While the backend restarts, the gateway queues and
// retries, each request of its queue on its own backoff, so the backlog arrives behind fresh
// data. The backend's source_idle_timeout, its start-up hold, is longer than the gateway's
// retry max_interval (gatewayRetry), as the README asks of any deployment, and max_source_lag
// longer still.
var imageTimeouts = imloadTimeouts{
	ack: e2eAckTimeout, offline: e2eOfflineTimeout, reorder: e2eReorderWindow, tick: e2eTick,
	lateness: e2eAllowedLateness, sourceIdle: "15s", maxLag: "30s",
}

// gatewayRetry is the gateway's retry backoff towards the backend: short, so the test does not
// wait for the default's 30 s, and well under the backend's source_idle_timeout.
var gatewayRetry = map[string]string{"IMCOL_RETRY_INITIAL_INTERVAL": "500ms", "IMCOL_RETRY_MAX_INTERVAL": "3s"}

// imageUID is the user the Dockerfile runs imcol as.
const imageUID = "10001"

// sloFlushInterval is the slo connector's flush_interval in backends.yaml.
const sloFlushInterval = 15 * time.Second

// stopGrace is the SIGTERM grace period the test gives a container, as Kubernetes'
// terminationGracePeriodSeconds default (30 s) would.
const stopGrace = 30 * time.Second

// tier is the three-container deployment of the README: sidecar → gateway → backend.
type tier struct {
	image                     string
	prom                      *server
	sidecar, gateway, backend *container
	sidecarOTLP               string
	backendSpec               containerSpec
}

func startTier(t *testing.T) *tier {
	t.Helper()
	tr := &tier{image: requireImage(t)}
	suffix := fmt.Sprintf("%d-%d", time.Now().UnixNano()%1e6, testcollector.FreePort(t))

	backendEnv := tierEnv(t)
	for k, v := range map[string]string{
		"IMCOL_PPROF_ENDPOINT":       testcollector.FreeEndpoint(t),
		"IMCOL_SCRAPE_INTERVAL":      "1s",
		"IMCOL_EVALUATION_INTERVAL":  "1s",
		"IMCOL_HOSTMETRICS_INTERVAL": "1s",
		"IMCOL_ACK_TIMEOUT":          imageTimeouts.ack,
		"IMCOL_OFFLINE_TIMEOUT":      imageTimeouts.offline,
		"IMCOL_REORDER_WINDOW":       imageTimeouts.reorder,
		"IMCOL_LOSS_TICK":            imageTimeouts.tick,
		"IMCOL_ALLOWED_LATENESS":     imageTimeouts.lateness,
		"IMCOL_SOURCE_IDLE_TIMEOUT":  imageTimeouts.sourceIdle,
		"IMCOL_MAX_SOURCE_LAG":       imageTimeouts.maxLag,
		// Only Prometheus runs here: Alertmanager, Loki and Jaeger get ports nothing listens on,
		// and their exporters queue on the volume, as they would during an outage.
		"IMCOL_ALERTMANAGER_URL":     "http://" + testcollector.FreeEndpoint(t),
		"IMCOL_LOKI_OTLP_ENDPOINT":   "http://" + testcollector.FreeEndpoint(t) + "/otlp",
		"IMCOL_JAEGER_OTLP_ENDPOINT": testcollector.FreeEndpoint(t),
	} {
		backendEnv[k] = v
	}
	tr.prom = startPrometheus(t, map[string]string{
		"imcol":      backendEnv["IMCOL_PROMETHEUS_ENDPOINT"],
		"imcol-self": "127.0.0.1:" + backendEnv["IMCOL_TELEMETRY_PORT"],
	}, nil, testcollector.FreeEndpoint(t))
	backendEnv["IMCOL_REMOTE_WRITE_URL"] = tr.prom.url("/api/v1/write")
	tr.backendSpec = containerSpec{role: "backend", config: "/etc/imcol/backends.yaml", volume: "imcol-e2e-backend-" + suffix, env: backendEnv}
	tr.backend = runContainer(t, tr.image, tr.backendSpec)

	gatewayEnv := tierEnv(t)
	gatewayEnv["IMCOL_BACKENDS"] = fmt.Sprintf("[%q]", backendEnv["IMCOL_OTLP_GRPC_ENDPOINT"])
	maps.Copy(gatewayEnv, gatewayRetry)
	tr.gateway = runContainer(t, tr.image, containerSpec{role: "gateway", config: "/etc/imcol/gateway.yaml", volume: "imcol-e2e-gateway-" + suffix, env: gatewayEnv})

	sidecarEnv := tierEnv(t)
	sidecarEnv["IMCOL_GATEWAY_ENDPOINT"] = gatewayEnv["IMCOL_OTLP_GRPC_ENDPOINT"]
	tr.sidecar = runContainer(t, tr.image, containerSpec{role: "sidecar", config: "/etc/imcol/sidecar.yaml", volume: "imcol-e2e-sidecar-" + suffix, env: sidecarEnv})
	tr.sidecarOTLP = sidecarEnv["IMCOL_OTLP_GRPC_ENDPOINT"]
	return tr
}

// tierEnv gives a container its own loopback ports; its data stays at the image's /var/lib/imcol.
func tierEnv(t *testing.T) map[string]string {
	return map[string]string{
		"IMCOL_OTLP_GRPC_ENDPOINT":  testcollector.FreeEndpoint(t),
		"IMCOL_OTLP_HTTP_ENDPOINT":  testcollector.FreeEndpoint(t),
		"IMCOL_PROMETHEUS_ENDPOINT": testcollector.FreeEndpoint(t),
		"IMCOL_HEALTH_ENDPOINT":     testcollector.FreeEndpoint(t),
		"IMCOL_TELEMETRY_HOST":      "127.0.0.1",
		"IMCOL_TELEMETRY_PORT":      strconv.Itoa(testcollector.FreePort(t)),
	}
}

// waitProm waits until an instant query returns want, showing the backend's logs on failure.
func (tr *tier) waitProm(ctx context.Context, t *testing.T, query string, want float64) {
	t.Helper()
	err := testcollector.Eventually(ctx, 250*time.Millisecond, func() error {
		got, err := promQuery(ctx, tr.prom, query)
		if err == nil && got != want {
			err = fmt.Errorf("%s = %v, want %v", query, got, want)
		}
		return err
	})
	require.NoError(t, err, "backend logs:\n%s", tail(tr.backend.logs(t), 6000))
}

// logVerdictsOnFailure logs the backend's verdicts when the test failed.
func (tr *tier) logVerdictsOnFailure(t *testing.T) {
	if t.Failed() {
		tr.logVerdicts(t)
	}
}

// logVerdicts logs the backend's verdicts since its restart and the SLO counters, so a
// failure says which verdicts were wrong.
func (tr *tier) logVerdicts(t *testing.T) {
	for _, q := range []string{
		`sum by (outcome, stage, reason) (otelcol_processor_im_loss_outcomes_total{job="imcol-self"}) > 0`,
		`sum by (reason) (otelcol_processor_im_loss_unrecognized_events_total{job="imcol-self"}) > 0`,
		`sum by (reason) (otelcol_processor_im_loss_forced_decisions_total{job="imcol-self"}) > 0`,
		`sum by (__name__) ({__name__=~"imcol_slo_.*events_total",job="imcol",slo_name="im-message-delivery"})`,
	} {
		var raw json.RawMessage
		err := getJSON(context.Background(), tr.prom.url("/api/v1/query?query="+url.QueryEscape(q)), &raw)
		t.Logf("%s: %s %v", q, raw, err)
	}
}

// keepsProm checks that an instant query still returns want after d: a counter that reached
// the truth on its way past it (a false verdict still in the pipeline) fails here.
func (tr *tier) keepsProm(ctx context.Context, t *testing.T, query string, want float64, d time.Duration) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	case <-time.After(d):
	}
	got, err := promQuery(ctx, tr.prom, query)
	require.NoError(t, err)
	assert.Equal(t, want, got, "%s moved past the truth", query)
}

// loggedCount returns the "messages" field of the last log line containing msg.
func loggedCount(logs, msg string) (int, bool) {
	re := regexp.MustCompile(regexp.QuoteMeta(msg) + `.*"messages": (\d+)`)
	m := re.FindAllStringSubmatch(logs, -1)
	if len(m) == 0 {
		return 0, false
	}
	n, err := strconv.Atoi(m[len(m)-1][1])
	return n, err == nil
}

// TestImageTiers runs the image as the README deploys it — a sidecar, a gateway and a backend
// container on the host's loopback, the backend in front of a real Prometheus — and checks that IM
// traffic sent to the sidecar ends as outcome and SLO metrics in Prometheus, that every container
// runs as the image's non-root user on a read-only root filesystem, that SIGTERM stops the backend
// cleanly within the grace period, and that its state volume carries in-flight messages and SLO
// windows across the restart.
func TestImageTiers(t *testing.T) {
	t.Parallel()
	tr := startTier(t)

	t.Run("every container runs as uid 10001 on a read-only root filesystem", func(t *testing.T) {
		for _, c := range []*container{tr.sidecar, tr.gateway, tr.backend} {
			pid := c.pid(t)
			assert.Equal(t, []string{imageUID, imageUID, imageUID, imageUID}, processUIDs(t, pid), c.name)
			assert.Contains(t, mountOptions(t, pid, "/"), "ro", "%s: / is writable", c.name)
			assert.Contains(t, mountOptions(t, pid, "/var/lib/imcol"), "rw", "%s: the state volume is read-only", c.name)
		}
	})

	t.Run("the image's HEALTHCHECK reports healthy", func(t *testing.T) {
		_, err := podman(t, "healthcheck", "run", tr.backend.name)
		require.NoError(t, err)
	})

	first := startImload(t, tr.sidecarOTLP, 200, "loss_push=0.05,loss_deliver=0.05,persist_failed=0.03,duplicate=0.03", imageTimeouts, "-rate", "50")()
	lost1, decided1 := countExpected(first, "lost/"), countExpected(first, "delivered@")+countExpected(first, "lost/")
	require.Positive(t, lost1)

	t.Run("outcomes and SLO metrics reach Prometheus through sidecar, gateway and backend", func(t *testing.T) {
		ctx := subtestContext(t)
		tr.waitProm(ctx, t, `sum(otelcol_processor_im_loss_outcomes_total{job="imcol-self",outcome="lost"})`, float64(lost1))
		tr.waitProm(ctx, t, `sum(otelcol_processor_im_loss_outcomes_total{job="imcol-self",outcome="delivered"})`, float64(decided1-lost1))
		tr.waitProm(ctx, t, `sum(imcol_slo_events_total{job="imcol",slo_name="im-message-delivery"})`, float64(decided1))
		tr.waitProm(ctx, t, `sum(imcol_slo_good_events_total{job="imcol",slo_name="im-message-delivery"})`, float64(decided1-lost1))
		tr.waitProm(ctx, t, `sum(imcol_slo_events_total{imcol_export="remote_write",slo_name="im-message-delivery"})`, float64(decided1))
	})

	// A second stream, different messages; the backend is stopped and started while it flows.
	wait := startImload(t, tr.sidecarOTLP, 400, "loss_push=0.05,loss_deliver=0.05,duplicate=0.03", imageTimeouts, "-rate", "40", "-seed", "8")
	t.Run("SIGTERM stops the backend cleanly within the grace period, its state saved", func(t *testing.T) {
		ctx := subtestContext(t)
		// Stop while the backend follows messages of the second stream.
		tr.waitProm(ctx, t, `sum({__name__=~"otelcol_processor_im_loss_tracked_messages.*",job="imcol-self"}) > bool 20`, 1)
		took, code := tr.backend.stop(t, stopGrace)
		logs := tr.backend.logs(t)
		assert.Less(t, took, stopGrace, "stop took the whole grace period: SIGKILL")
		assert.Equal(t, 0, code, "exit code after SIGTERM")
		assert.Contains(t, logs, "Shutdown complete.")
		saved, ok := loggedCount(logs, "Saved in-flight messages")
		assert.True(t, ok && saved > 0, "no in-flight messages saved at shutdown:\n%s", grepLines(logs, "in-flight", "Shutdown", "shutdown", "panic", "Restored", "signal"))
		t.Logf("backend stopped in %s, %d in-flight messages saved", took.Round(time.Millisecond), saved)
	})

	mustPodman(t, "start", tr.backend.name)
	tr.backend.waitHealthy(t)
	second := wait()
	lost2, decided2 := countExpected(second, "lost/"), countExpected(second, "delivered@")+countExpected(second, "lost/")

	t.Run("the volume carries in-flight messages and SLO windows across the restart", func(t *testing.T) {
		ctx := subtestContext(t)
		logs := tr.backend.logs(t)
		restored, ok := loggedCount(logs, "Restored in-flight state")
		assert.True(t, ok && restored > 0, "nothing restored after the restart")
		assert.NotContains(t, logs, "from a checkpoint", "the shutdown did not save its state")
		// The SLO counters continue from the saved windows (a lost volume restarts them from
		// zero), and every in-flight message is decided exactly once after the restart: once
		// nothing is tracked any more, the events are the truth and stay there for a flush.
		tr.waitProm(ctx, t, `sum({__name__=~"otelcol_processor_im_loss_tracked_messages.*",job="imcol-self"})`, 0)
		defer tr.logVerdictsOnFailure(t)
		events := `sum(imcol_slo_events_total{job="imcol",slo_name="im-message-delivery"})`
		good := `sum(imcol_slo_good_events_total{job="imcol",slo_name="im-message-delivery"})`
		tr.waitProm(ctx, t, events, float64(decided1+decided2))
		tr.keepsProm(ctx, t, events, float64(decided1+decided2), sloFlushInterval+2*time.Second)
		// No false loss: the gateway's queues resume apart, so acks arrive before their send
		// and offline push; each device's ack counts by its own time, and the events waiting
		// for a deadline at the shutdown are in the snapshot.
		truth := float64(decided1 + decided2 - lost1 - lost2)
		got, err := promQuery(ctx, tr.prom, good)
		require.NoError(t, err)
		assert.Equal(t, truth, got, "%s", good)
		mount := mustPodman(t, "volume", "inspect", "--format", "{{.Mountpoint}}", tr.backendSpec.volume)
		for _, owner := range []string{"processor_im_loss", "connector_slo"} {
			matches, err := filepath.Glob(filepath.Join(mount, owner+"*"))
			require.NoError(t, err)
			assert.NotEmpty(t, matches, "no %s storage in the backend's volume %s", owner, mount)
		}
	})

	t.Run("the sidecar and gateway stop cleanly on SIGTERM", func(t *testing.T) {
		for _, c := range []*container{tr.sidecar, tr.gateway} {
			took, code := c.stop(t, stopGrace)
			assert.Less(t, took, stopGrace, c.name)
			assert.Equal(t, 0, code, c.name)
			assert.Contains(t, c.logs(t), "Shutdown complete.", c.name)
		}
	})
}

// grepLines returns the lines of logs that contain any of words.
func grepLines(logs string, words ...string) string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		for _, w := range words {
			if strings.Contains(line, w) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
