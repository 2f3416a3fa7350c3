package smoketest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imcol/imcol/internal/testcollector"
)

func TestDefaultConfigServesAllSignals(t *testing.T) {
	env := testcollector.DefaultConfigEnv(t)
	env["IMCOL_HOSTMETRICS_INTERVAL"] = "1s"
	grpcEndpoint, httpEndpoint := env["IMCOL_OTLP_GRPC_ENDPOINT"], env["IMCOL_OTLP_HTTP_ENDPOINT"]
	prom, dataDir := env["IMCOL_PROMETHEUS_ENDPOINT"], env["IMCOL_DATA_DIR"]
	root := testcollector.RepoRoot(t)
	proc := testcollector.Start(t, testcollector.Options{
		Config:         filepath.Join(root, "configs", "default.yaml"),
		Env:            env,
		HealthEndpoint: env["IMCOL_HEALTH_ENDPOINT"],
	})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sendOverGRPC(ctx, t, grpcEndpoint)
	sendOverHTTP(ctx, t, httpEndpoint)

	for _, transport := range []string{"grpc", "http"} {
		metric := "smoke_requests_" + transport + "_total"
		waitFor(ctx, t, proc, "metric "+metric+" on the Prometheus endpoint", func() (bool, error) {
			body, err := testcollector.Get("http://" + prom + "/metrics")
			return strings.Contains(body, metric+"{"), err
		})
		span := "smoke-span-" + transport
		waitFor(ctx, t, proc, "span "+span+" in traces.jsonl", func() (bool, error) {
			return fileContains(filepath.Join(dataDir, "traces.jsonl"), `"name":"`+span+`"`)
		})
		log := "smoke-log-" + transport
		waitFor(ctx, t, proc, "log "+log+" in logs.jsonl", func() (bool, error) {
			return fileContains(filepath.Join(dataDir, "logs.jsonl"), `"stringValue":"`+log+`"`)
		})
	}
	waitFor(ctx, t, proc, "host metrics on the Prometheus endpoint", func() (bool, error) {
		body, err := testcollector.Get("http://" + prom + "/metrics")
		return strings.Contains(body, "system_memory_utilization_ratio{"), err
	})
	telemetry := "http://127.0.0.1:" + env["IMCOL_TELEMETRY_PORT"] + "/metrics"
	waitFor(ctx, t, proc, "the collector's own metrics", func() (bool, error) {
		body, err := testcollector.Get(telemetry)
		return strings.Contains(body, "otelcol_receiver_accepted_spans_total{"), err
	})

	require.NoError(t, proc.Stop(30*time.Second), proc.Output())
}

func waitFor(ctx context.Context, t *testing.T, proc *testcollector.Process, what string, check func() (bool, error)) {
	t.Helper()
	err := testcollector.Eventually(ctx, 200*time.Millisecond, func() error {
		ok, err := check()
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s not seen yet", what)
		}
		return nil
	})
	require.NoError(t, err, "waiting for %s\ncollector output:\n%s", what, proc.Output())
}

func sendOverGRPC(ctx context.Context, t *testing.T, endpoint string) {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(smokeTraces("grpc")))
	require.NoError(t, err)
	_, err = pmetricotlp.NewGRPCClient(conn).Export(ctx, pmetricotlp.NewExportRequestFromMetrics(smokeMetrics("grpc")))
	require.NoError(t, err)
	_, err = plogotlp.NewGRPCClient(conn).Export(ctx, plogotlp.NewExportRequestFromLogs(smokeLogs("grpc")))
	require.NoError(t, err)
}

type protoMarshaler interface{ MarshalProto() ([]byte, error) }

func sendOverHTTP(ctx context.Context, t *testing.T, endpoint string) {
	requests := map[string]protoMarshaler{
		"/v1/traces":  ptraceotlp.NewExportRequestFromTraces(smokeTraces("http")),
		"/v1/metrics": pmetricotlp.NewExportRequestFromMetrics(smokeMetrics("http")),
		"/v1/logs":    plogotlp.NewExportRequestFromLogs(smokeLogs("http")),
	}
	for path, req := range requests {
		body, err := req.MarshalProto()
		require.NoError(t, err)
		httpReq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+endpoint+path, bytes.NewReader(body))
		require.NoError(t, err)
		httpReq.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := http.DefaultClient.Do(httpReq)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "POST %s", path)
	}
}

func smokeTraces(transport string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "smoke")
	span := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	span.SetName("smoke-span-" + transport)
	span.SetTraceID([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	span.SetSpanID([8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	now := time.Now()
	span.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Millisecond)))
	span.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	return td
}

func smokeMetrics(transport string) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "smoke")
	m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("smoke.requests." + transport)
	sum := m.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := sum.DataPoints().AppendEmpty()
	dp.SetIntValue(7)
	dp.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	return md
}

func smokeLogs(transport string) plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "smoke")
	lr := rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.Body().SetStr("smoke-log-" + transport)
	lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	return ld
}

func fileContains(path, needle string) (bool, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), needle) {
			return true, nil
		}
	}
	return false, sc.Err()
}
