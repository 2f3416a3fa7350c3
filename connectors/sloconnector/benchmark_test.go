package sloconnector

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/connector/spanmetricsconnector"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/imcol/imcol/connectors/sloconnector/sloconfig"
)

// benchSpans is a batch of 1000 spans from 20 services: 4 in 5 server spans, 1 in 50 failed,
// with a handful of attributes, as an IM gateway's traces look.
func benchSpans() ptrace.Traces {
	td := ptrace.NewTraces()
	start := pcommon.NewTimestampFromTime(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC))
	for s := range 20 {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", fmt.Sprintf("svc-%d", s))
		rs.Resource().Attributes().PutStr("host.name", "node-1")
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		for i := range 50 {
			sp := spans.AppendEmpty()
			sp.SetName(fmt.Sprintf("op-%d", i%5))
			sp.SetKind(ptrace.SpanKindServer)
			if i%5 == 4 {
				sp.SetKind(ptrace.SpanKindClient)
			}
			if i%50 == 7 {
				sp.Status().SetCode(ptrace.StatusCodeError)
			}
			sp.SetTraceID(pcommon.TraceID{byte(s), byte(i), 1})
			sp.SetSpanID(pcommon.SpanID{byte(s), byte(i), 1})
			sp.SetStartTimestamp(start)
			sp.SetEndTimestamp(start + pcommon.Timestamp(time.Duration(i)*time.Millisecond))
			sp.Attributes().PutStr("rpc.method", "SendMessage")
			sp.Attributes().PutStr("im.conversation.type", "group")
		}
	}
	return td
}

// benchSLOConfig is the seed's API availability SLO plus a span latency SLO.
func benchSLOConfig() *Config {
	avail := ratioSLO("api", 0.9995, "kind == SPAN_KIND_SERVER", "status.code == STATUS_CODE_ERROR")
	avail.Dimensions = []string{"service.name"}
	lat := sloconfig.SLOConfig{Name: "lat", Objective: 0.99, Dimensions: []string{"service.name"}, SLI: sloconfig.SLIConfig{Latency: &sloconfig.LatencySLIConfig{
		Total: "kind == SPAN_KIND_SERVER", Threshold: sloconfig.Duration(200 * time.Millisecond),
	}}}
	return &Config{FlushInterval: time.Minute, SLOs: []sloconfig.SLOConfig{avail, lat}}
}

func startTraces(b *testing.B, f connector.Factory, cfg component.Config) connector.Traces {
	b.Helper()
	c, err := f.CreateTracesToMetrics(context.Background(), connectortest.NewNopSettings(f.Type()), cfg, consumertest.NewNop())
	require.NoError(b, err)
	require.NoError(b, c.Start(context.Background(), nopHost()))
	b.Cleanup(func() { require.NoError(b, c.Shutdown(context.Background())) })
	return c
}

func BenchmarkConsumeTraces(b *testing.B) {
	c := startTraces(b, NewFactory(), benchSLOConfig())
	td := benchSpans()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.ConsumeTraces(context.Background(), td); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*td.SpanCount()), "ns/span")
}

// BenchmarkVersusSpanMetrics feeds the same batches to this connector (two SLOs) and to
// contrib's span_metrics connector (default config: calls and duration histogram per service,
// span name, kind and status), alternating within one run so both see the same machine load,
// and reports the ratio of their costs per span (below 1: the slo connector is cheaper).
func BenchmarkVersusSpanMetrics(b *testing.B) {
	sm := spanmetricsconnector.NewFactory()
	spanMetrics := startTraces(b, sm, sm.CreateDefaultConfig())
	slo := startTraces(b, NewFactory(), benchSLOConfig())
	td := benchSpans()
	ctx := context.Background()
	var sloTime, smTime time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := slo.ConsumeTraces(ctx, td); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := spanMetrics.ConsumeTraces(ctx, td); err != nil {
			b.Fatal(err)
		}
		sloTime += t1.Sub(t0)
		smTime += time.Since(t1)
	}
	spans := float64(b.N * td.SpanCount())
	b.ReportMetric(float64(sloTime.Nanoseconds())/spans, "slo-ns/span")
	b.ReportMetric(float64(smTime.Nanoseconds())/spans, "spanmetrics-ns/span")
	b.ReportMetric(float64(sloTime)/float64(smTime), "slo/spanmetrics")
}

// BenchmarkParallelPipelines feeds b.N batches to one connector from one goroutine, then the same
// b.N batches from GOMAXPROCS goroutines (pipelines sharing the connector), in the same run,
// and reports the speed-up of the second (1: the connector serialises its callers).
func BenchmarkParallelPipelines(b *testing.B) {
	c := startTraces(b, NewFactory(), benchSLOConfig())
	td := benchSpans()
	ctx := context.Background()
	consume := func(n int) {
		for range n {
			if err := c.ConsumeTraces(ctx, td); err != nil {
				b.Error(err)
				return
			}
		}
	}
	b.ResetTimer()
	start := time.Now()
	consume(b.N)
	serial := time.Since(start)

	workers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	start = time.Now()
	for w := range workers {
		share := b.N / workers
		if w == 0 {
			share += b.N % workers
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			consume(share)
		}()
	}
	wg.Wait()
	parallel := time.Since(start)
	b.ReportMetric(float64(workers), "goroutines")
	b.ReportMetric(float64(serial)/float64(parallel), "speedup")
}
