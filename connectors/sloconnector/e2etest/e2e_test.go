// Package e2etest runs the slo connector inside the real bin/imcol: known spans and im_loss
// outcome records go in over OTLP, and the SLO counters, budgets and burn rates must come out
// exactly on the prometheus exporter's endpoint.
package e2etest

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/internal/testcollector"
)

// The seed objectives (testdata/seed.yaml, shipped in configs/default.yaml).
const (
	apiObjective      = 0.9995
	deliveryObjective = 0.9999
	latencyObjective  = 0.99
)

var windows = []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d"}

func TestSeedSLOsThroughImcol(t *testing.T) {
	otlp, prom, health := testcollector.FreeEndpoint(t), testcollector.FreeEndpoint(t), testcollector.FreeEndpoint(t)
	env := map[string]string{"E2E_OTLP": otlp, "E2E_PROM": prom, "E2E_HEALTH": health}
	seed, err := filepath.Abs(filepath.Join("..", "testdata", "seed.yaml"))
	require.NoError(t, err)
	overlay, err := filepath.Abs(filepath.Join("testdata", "e2e.yaml"))
	require.NoError(t, err)
	bin := testcollector.Binary(t)
	out, err := exec.Command(bin, "components").Output()
	require.NoError(t, err)
	if !strings.Contains(string(out), "name: slo\n") {
		t.Fatalf("%s lacks the slo connector: add it to builder-config.yaml and rebuild (make generate build)", bin)
	}
	// Later --config files are merged over earlier ones, as in production overlays.
	p := testcollector.Launch(t, bin, []string{"--config", seed, "--config", overlay}, env)
	t.Cleanup(func() {
		if stopErr := p.Stop(30 * time.Second); stopErr != nil {
			t.Errorf("collector did not stop cleanly: %v\n%s", stopErr, p.Output())
		}
	})
	require.NoError(t, p.WaitHealthy("http://"+health+"/", 60*time.Second), p.Output())

	conn, err := grpc.NewClient(otlp, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(spans()))
	require.NoError(t, err)
	_, err = plogotlp.NewGRPCClient(conn).Export(ctx, plogotlp.NewExportRequestFromLogs(outcomes()))
	require.NoError(t, err)

	// Hand-computed expectations. gateway: 10 server spans, 2 failed; auth: 4, none failed.
	// Delivery: 9 delivered + 1 lost (the duplicate and the late records do not count), and the
	// loss retracted by a late record: 10 good.
	// Latency: 9 delivered with a latency, 7 at or under 200 ms.
	gw := map[string]string{"slo_name": "im-api-availability", "service_name": "gateway"}
	auth := map[string]string{"slo_name": "im-api-availability", "service_name": "auth"}
	del := map[string]string{"slo_name": "im-message-delivery"}
	lat := map[string]string{"slo_name": "im-delivery-latency"}
	type slo struct {
		labels      map[string]string
		total, good float64
		objective   float64
	}
	slos := []slo{
		{gw, 10, 8, apiObjective},
		{auth, 4, 4, apiObjective},
		{del, 10, 10, deliveryObjective},
		{lat, 9, 7, latencyObjective},
	}

	// The connector reports new series at 0 once, then their counts: poll until all arrived.
	var families map[string]*dto.MetricFamily
	err = testcollector.Eventually(ctx, 200*time.Millisecond, func() error {
		families, err = scrape("http://" + prom + "/metrics")
		if err != nil {
			return err
		}
		for _, s := range slos {
			if v, ok := value(families, "imcol_slo_events_total", s.labels); !ok || v != s.total {
				return fmt.Errorf("imcol_slo_events_total%v = %v (present %v), want %v", s.labels, v, ok, s.total)
			}
		}
		return nil
	})
	require.NoError(t, err, p.Output())

	for _, s := range slos {
		burn := (s.total - s.good) / s.total / (1 - s.objective)
		check := func(name string, extra map[string]string, want float64) {
			t.Helper()
			labels := map[string]string{}
			for k, v := range s.labels {
				labels[k] = v
			}
			for k, v := range extra {
				labels[k] = v
			}
			got, ok := value(families, name, labels)
			if assert.True(t, ok, "%s%v missing", name, labels) {
				assert.Equal(t, want, got, "%s%v", name, labels)
			}
		}
		check("imcol_slo_events_total", nil, s.total)
		check("imcol_slo_good_events_total", nil, s.good)
		check("imcol_slo_objective_ratio", nil, s.objective)
		check("imcol_slo_error_budget_remaining_ratio", nil, 1-burn)
		for _, w := range windows {
			check("imcol_slo_burn_rate", map[string]string{"window": w}, burn)
			// Far fewer events than any seed SLO's min_events.
			check("imcol_slo_low_traffic", map[string]string{"window": w}, 1)
		}
	}
	// Only the delivery SLO has a retracted condition.
	if v, ok := value(families, "imcol_slo_retracted_events_total", del); assert.True(t, ok, "imcol_slo_retracted_events_total%v missing", del) {
		assert.Equal(t, 1.0, v)
	}
	// Exactly these series, no more: 4 SLO series × (4 + 2 × 7 windows), and the delivery
	// SLO's retracted counter.
	total := 0
	for _, name := range []string{"imcol_slo_events_total", "imcol_slo_good_events_total", "imcol_slo_retracted_events_total", "imcol_slo_objective_ratio", "imcol_slo_error_budget_remaining_ratio", "imcol_slo_burn_rate", "imcol_slo_low_traffic"} {
		require.Contains(t, families, name)
		total += len(families[name].GetMetric())
	}
	assert.Equal(t, 4*(4+2*len(windows))+1, total)
}

func scrape(url string) (map[string]*dto.MetricFamily, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// value finds the sample whose labels include want (the exporter may add scope labels).
func value(families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	mf, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
				break
			}
		}
		// A series with an extra SLO label (another window, another dimension) is not this one.
		for k := range got {
			if _, wanted := want[k]; !wanted && !strings.HasPrefix(k, "otel_scope_") && k != "job" && k != "instance" {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		case m.GetUntyped() != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func spans() ptrace.Traces {
	td := ptrace.NewTraces()
	now := time.Now()
	add := func(service string, kind ptrace.SpanKind, failed bool, n int) {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", service)
		ss := rs.ScopeSpans().AppendEmpty()
		for i := range n {
			sp := ss.Spans().AppendEmpty()
			sp.SetName("SendMessage")
			sp.SetKind(kind)
			sp.SetTraceID(pcommon.TraceID{byte(td.SpanCount()), byte(i), 1})
			sp.SetSpanID(pcommon.SpanID{byte(td.SpanCount()), byte(i), 1})
			sp.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-10 * time.Millisecond)))
			sp.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
			if failed {
				sp.Status().SetCode(ptrace.StatusCodeError)
			}
		}
	}
	add("gateway", ptrace.SpanKindServer, false, 8)
	add("gateway", ptrace.SpanKindServer, true, 2)
	add("gateway", ptrace.SpanKindClient, true, 3) // outgoing calls are not the API's requests
	add("auth", ptrace.SpanKindServer, false, 4)
	return td
}

func outcomes() plog.Logs {
	ld := plog.NewLogs()
	rl := ld.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "imcol")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	add := func(outcome imsemconv.Outcome, latencyMS int64) plog.LogRecord {
		lr := lrs.AppendEmpty()
		lr.SetEventName(imsemconv.OutcomeEventName)
		lr.SetTimestamp(pcommon.NewTimestampFromTime(time.Now()))
		lr.Attributes().PutStr(imsemconv.AttrOutcome, string(outcome))
		lr.Attributes().PutStr(imsemconv.AttrMessageID, fmt.Sprintf("m%d", lrs.Len()))
		if latencyMS >= 0 {
			lr.Attributes().PutInt(imsemconv.AttrDeliveryLatency, latencyMS)
		}
		if outcome == imsemconv.OutcomeLost {
			lr.Attributes().PutStr(imsemconv.AttrLossReason, string(imsemconv.ReasonAckTimeout))
			lr.Attributes().PutStr(imsemconv.AttrLossStage, imsemconv.StageDeliver.String())
		}
		return lr
	}
	for _, ms := range []int64{10, 50, 100, 150, 199, 200, 201, 500, 20} {
		add(imsemconv.OutcomeDelivered, ms)
	}
	add(imsemconv.OutcomeLost, -1)
	add(imsemconv.OutcomeDuplicate, 5)
	add(imsemconv.OutcomeLate, 90_000)
	// The late acks proved the lost message delivered in time: the loss is taken back.
	add(imsemconv.OutcomeLate, -1).Attributes().PutBool(imsemconv.AttrLossRetracted, true)
	return ld
}
