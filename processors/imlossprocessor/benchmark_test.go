package imlossprocessor

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor"
	"go.opentelemetry.io/collector/processor/processorhelper"
	"go.opentelemetry.io/collector/processor/processortest"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/metadata"
)

const (
	benchMessages = 100
	benchBatches  = 64
)

// benchBatches builds batches of complete lifecycles (5 spans per message) plus as many
// ordinary spans, the mix a gateway's traces pipeline carries.
func benchTraces() []ptrace.Traces {
	out := make([]ptrace.Traces, benchBatches)
	for b := range out {
		var evs []lc
		for m := range benchMessages {
			id := fmt.Sprintf("%08x-%04x-msg", b, m)
			conv := fmt.Sprintf("si_%d", m%10)
			evs = append(evs,
				lc{stage: send, msg: id, conv: conv},
				lc{stage: persist, msg: id, conv: conv, seq: int64(b*benchMessages/10 + m/10 + 1)},
				lc{stage: push, msg: id, conv: conv, fanout: 1},
				lc{stage: deliver, msg: id, conv: conv, dev: "d"},
				lc{stage: ack, msg: id, conv: conv, dev: "d"},
			)
		}
		td := spansOf(time.Time{}, evs...)
		spans := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans()
		for range benchMessages * 5 {
			s := spans.AppendEmpty()
			s.SetName("db.query")
			s.Attributes().PutStr("db.system", "mongodb")
		}
		out[b] = td
	}
	return out
}

func consumeAll(b *testing.B, p processor.Traces, batches []ptrace.Traces, n int) {
	ctx := context.Background()
	for i := range n {
		if err := p.ConsumeTraces(ctx, batches[i%len(batches)]); err != nil {
			b.Fatal(err)
		}
	}
}

// scanNs measures, in the same run and for the same b.N, the least an attribute-driven
// processor does: a processor built with the same helper that visits every span of the same
// batches and looks up the stage and message id attributes. (testing.Benchmark cannot be
// nested inside a running benchmark.)
func scanNs(b *testing.B, batches []ptrace.Traces) float64 {
	var found int
	p, err := processorhelper.NewTraces(context.Background(), processortest.NewNopSettings(metadata.Type), defaultCfg(), consumertest.NewNop(),
		func(_ context.Context, td ptrace.Traces) (ptrace.Traces, error) {
			for _, rs := range td.ResourceSpans().All() {
				for _, ss := range rs.ScopeSpans().All() {
					for _, span := range ss.Spans().All() {
						if _, ok := span.Attributes().Get(imsemconv.AttrStage); ok {
							if _, ok = span.Attributes().Get(imsemconv.AttrMessageID); ok {
								found++
							}
						}
					}
				}
			}
			return td, nil
		})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	consumeAll(b, p, batches, b.N)
	if found != b.N*benchMessages*5 {
		b.Fatalf("scan found %d lifecycle spans", found)
	}
	return float64(time.Since(start).Nanoseconds()) / float64(b.N)
}

// BenchmarkConsumeTraces reports the cost per lifecycle event of a batch of 500 lifecycle
// spans and 500 ordinary spans, through the whole processor (extraction, hand-over, tracking,
// outcome emission), and its ratio to an attribute scan of the same batches measured in the
// same run.
func BenchmarkConsumeTraces(b *testing.B) {
	batches := benchTraces()
	base := scanNs(b, batches)
	cfg := defaultCfg()
	cfg.DecidedCacheSize = 0 // batches repeat: each repetition is followed as new messages
	p, rt := startBench(b, cfg)
	b.ReportAllocs()
	b.ResetTimer()
	consumeAll(b, p, batches, b.N)
	rt.forceTick() // the loop has taken in, decided and emitted everything
	b.StopTimer()
	perBatch := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perBatch/(benchMessages*5), "ns/event")
	b.ReportMetric(base, "scan_ns/batch")
	b.ReportMetric(perBatch/base, "x_scan")
}

// startBench starts an im_loss traces processor with cfg.
func startBench(b *testing.B, cfg *Config) (processor.Traces, *lossRuntime) {
	clk := newFakeClock()
	f := &factory{shared: newSharedRuntimes(), clock: clk}
	set := processortest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = componenttest.NewNopTelemetrySettings()
	p, err := f.processorFactory().CreateTraces(context.Background(), set, cfg, consumertest.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	if err = p.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		b.Fatal(err)
	}
	skipStartLead(clk)
	b.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, f.shared.m[set.ID].rt
}

// eventsPerSecond runs b.N batches through a processor configured by set, from as many
// concurrent callers as GOMAXPROCS (receivers call processors concurrently), and returns the
// lifecycle events it took in, decided and emitted per second.
func eventsPerSecond(b *testing.B, batches []ptrace.Traces, set func(*Config)) float64 {
	cfg := defaultCfg()
	cfg.DecidedCacheSize = 0 // batches repeat: each repetition is followed as new messages
	set(cfg)
	p, rt := startBench(b, cfg)
	callers := runtime.GOMAXPROCS(0)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range callers {
		wg.Go(func() {
			ctx := context.Background()
			for i := c; i < b.N; i += callers {
				if err := p.ConsumeTraces(ctx, batches[i%len(batches)]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rt.forceTick()
	return float64(b.N*benchMessages*5) / time.Since(start).Seconds()
}

// BenchmarkShards reports lifecycle events per second per core through the whole processor
// with one shard and with two, measured in the same run, and the ratio of two to one (the
// goal on a machine with two cores or more: 1.8).
func BenchmarkShards(b *testing.B) {
	batches := benchTraces()
	b.ReportAllocs()
	b.ResetTimer()
	one := eventsPerSecond(b, batches, func(c *Config) { c.Shards = 1 })
	two := eventsPerSecond(b, batches, func(c *Config) { c.Shards = 2 })
	b.StopTimer()
	cores := float64(runtime.GOMAXPROCS(0))
	b.ReportMetric(one/cores, "events/s/core_1shard")
	b.ReportMetric(two/cores, "events/s/core_2shards")
	b.ReportMetric(two/one, "x_2shards_vs_1")
}

// BenchmarkDropDuplicates reports what drop_duplicates costs: lifecycle events per second
// through the whole processor (default shards, concurrent callers) with it, as a ratio to
// the same without it, measured in the same run. With it each caller waits for the shards
// its batch went to, to learn which deliveries to drop.
func BenchmarkDropDuplicates(b *testing.B) {
	batches := benchTraces()
	b.ReportAllocs()
	b.ResetTimer()
	off := eventsPerSecond(b, batches, func(*Config) {})
	on := eventsPerSecond(b, batches, func(c *Config) { c.DropDuplicates = true })
	b.StopTimer()
	b.ReportMetric(off, "events/s_forward")
	b.ReportMetric(on, "events/s_drop_duplicates")
	b.ReportMetric(on/off, "x_drop_vs_forward")
}
