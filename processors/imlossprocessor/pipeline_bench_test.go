package imlossprocessor

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/imcol/imcol/processors/imlossprocessor/internal/metadata"
)

// The testbed's message mix (testbed/workload): 1:1 messages to a user's 1-3 devices and, a
// quarter of them, group messages to 2-21 devices; every lifecycle event a span, plus the
// gateway's receive span that is not one.
const (
	pipelineBatches     = 128
	pipelineBatchSpans  = 500
	pipelineConvs       = 340
	pipelineDecidedSize = 2048 // far fewer than the stream's messages: a replay is new messages
)

// pipelineBase is when the stream's first event happened, 10 s before the collector's clock.
var pipelineBase = epoch.Add(-10 * time.Second)

// pipelineStream builds the batches of BenchmarkPipeline: each message's events spread over
// the messages started after it (a lifecycle takes longer than the gap between messages), so
// the state holds messages in flight between batches as it does in the collector.
func pipelineStream() ([]ptrace.Traces, int) {
	type placed struct {
		at  int
		ev  lc
		pad bool // the gateway's receive span
	}
	var stream []placed
	for m := 0; len(stream) < pipelineBatches*pipelineBatchSpans; m++ {
		id := fmt.Sprintf("%016x-%015x", m*2654435761, m)
		conv := fmt.Sprintf("conv_%d", m%pipelineConvs)
		devices := 2
		if m%4 == 3 {
			devices = 2 + m%20
		}
		at := m * 4
		stream = append(stream,
			placed{at: at, pad: true},
			placed{at: at + 1, ev: lc{stage: send, msg: id, conv: conv}},
			placed{at: at + 8, ev: lc{stage: persist, msg: id, conv: conv, seq: int64(m/pipelineConvs + 1)}},
			placed{at: at + 16, ev: lc{stage: push, msg: id, conv: conv, fanout: int64(devices)}})
		for d := range devices {
			dev := fmt.Sprintf("device-%06d-%d", (m*7+d)%5000, d)
			stream = append(stream,
				placed{at: at + 24 + 3*d, ev: lc{stage: deliver, msg: id, conv: conv, dev: dev}},
				placed{at: at + 40 + 3*d, ev: lc{stage: ack, msg: id, conv: conv, dev: dev}})
		}
	}
	stream = stream[:pipelineBatches*pipelineBatchSpans]
	// Arrival order is event-time order (stable: a message's events keep theirs).
	slices.SortStableFunc(stream, func(a, b placed) int { return cmp.Compare(a.at, b.at) })
	base := pipelineBase
	out := make([]ptrace.Traces, 0, pipelineBatches)
	events := 0
	for b := range pipelineBatches {
		var evs []lc
		pads := 0
		for _, p := range stream[b*pipelineBatchSpans : (b+1)*pipelineBatchSpans] {
			if p.pad {
				pads++
				continue
			}
			p.ev.at = time.Duration(p.at) * 10 * time.Microsecond
			// Each span its own copy of the ids, as the receiver's unmarshalling gives them:
			// comparing ids then reads both, instead of stopping at equal pointers.
			p.ev.msg, p.ev.conv, p.ev.dev = strings.Clone(p.ev.msg), strings.Clone(p.ev.conv), strings.Clone(p.ev.dev)
			evs = append(evs, p.ev)
		}
		events += len(evs)
		td := spansOf(base, evs...)
		spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
		for range pads {
			s := spans.AppendEmpty()
			s.SetName("gateway.receive")
			s.Attributes().PutStr("rpc.method", "SendMessage")
		}
		out = append(out, td)
	}
	return out, events
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// unmarshalCPU is the CPU time, measured in the same run, that decoding the same batches n
// times from OTLP protobuf takes: what the receiver pays for them before im_loss sees them.
func unmarshalCPU(b *testing.B, batches []ptrace.Traces, n int) time.Duration {
	encoded := make([][]byte, len(batches))
	for i, td := range batches {
		var err error
		if encoded[i], err = (&ptrace.ProtoMarshaler{}).MarshalTraces(td); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime(b)
	for i := range n {
		if _, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(encoded[i%len(encoded)]); err != nil {
			b.Fatal(err)
		}
	}
	return cpuTime(b) - cpu
}

// BenchmarkPipeline reports the CPU time per lifecycle event of the whole path as the
// collector runs it: one im_loss instance in a traces and a logs pipeline, the testbed's mix of
// 1:1 and group messages in flight across batches, the decided-message memory on, and every
// outcome emitted as a span and a log record into the next consumers. cpu_ns/event counts
// every goroutine (the callers', the loop's, the shards', the emitter's, GC), which ns/event,
// wall time, does not: the processor's goroutines run in parallel. x_unmarshal is its ratio to
// decoding the same batches from protobuf, measured in the same run (absolute times drift on a
// shared machine; the ratio much less).
func BenchmarkPipeline(b *testing.B) {
	batches, events := pipelineStream()
	cfg := defaultCfg()
	cfg.DecidedCacheSize = pipelineDecidedSize
	traces, rt := startPipelines(b, cfg)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime(b)
	for i := range b.N {
		if err := traces.ConsumeTraces(ctx, batches[i%len(batches)]); err != nil {
			b.Fatal(err)
		}
	}
	rt.forceTick() // the loop has taken in, decided and emitted everything
	cpu = cpuTime(b) - cpu
	b.StopTimer()
	perEvent := float64(b.N) * float64(events) / float64(len(batches))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/perEvent, "ns/event")
	b.ReportMetric(float64(cpu.Nanoseconds())/perEvent, "cpu_ns/event")
	b.ReportMetric(float64(cpu)/float64(unmarshalCPU(b, batches, b.N)), "x_unmarshal")
}

// startPipelines starts one im_loss instance in a traces and a logs pipeline whose next
// consumers discard what they get, and returns the traces one.
func startPipelines(b *testing.B, cfg *Config) (processor.Traces, *lossRuntime) {
	// Started before the stream's first event (pipelineBase), which it trusts.
	clk := clockwork.NewFakeClockAt(pipelineBase.Add(-startLead))
	f := &factory{shared: newSharedRuntimes(), clock: clk}
	set := processortest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = componenttest.NewNopTelemetrySettings()
	ctx := context.Background()
	traces, err := f.processorFactory().CreateTraces(ctx, set, cfg, consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	logs, err := f.processorFactory().CreateLogs(ctx, set, cfg, consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	if err = traces.Start(ctx, componenttest.NewNopHost()); err != nil {
		b.Fatal(err)
	}
	if err = logs.Start(ctx, componenttest.NewNopHost()); err != nil {
		b.Fatal(err)
	}
	skipStartLead(clk)
	b.Cleanup(func() {
		_ = traces.Shutdown(ctx)
		_ = logs.Shutdown(ctx)
	})
	return traces, f.shared.m[set.ID].rt
}
