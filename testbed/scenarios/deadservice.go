package scenarios

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/sender"
	"github.com/imcol/imcol/testbed/workload"
)

// DeadServiceOptions configure the dead-service scenario.
type DeadServiceOptions struct {
	Name     string
	Seed     uint64
	Messages int64
	Rate     float64
	// Service stops sending for good once At of the stream's duration has passed.
	Service  workload.Service
	At       float64
	Timeouts faults.Timeouts
	Deadline time.Duration
}

// DefaultDeadService stops im-gateway (which reports deliver and ack) 2.5 s into a 10 s
// stream of 1500 clean messages: the other services go on long enough past the deadlines of
// the messages in flight at the stop that those are decided by the watermark, not the cap.
func DefaultDeadService() DeadServiceOptions {
	return DeadServiceOptions{
		Name: "dead-service", Seed: 2000, Messages: 1500, Rate: 150,
		Service: workload.ServiceGateway, At: 0.25, Timeouts: ShortTimeouts(), Deadline: 60 * time.Second,
	}
}

// DeadServiceResult is what the dead-service scenario measured.
type DeadServiceResult struct {
	Options   DeadServiceOptions     `json:"-"`
	Service   string                 `json:"service"`
	StoppedAt string                 `json:"stopped_at"`
	Classes   map[faults.Class]int64 `json:"classes"`
	TimedRun
}

// DeadService sends a clean stream until one service stops for good: from then on none of
// its events is sent (faults.Config.Stop). The truth of every message follows from the events
// that were sent, by im_loss's stage rule: a message missing acks is lost at the last stage
// its least advanced missing device reached (the push's fan-out says which devices are
// expected), so a dead im-gateway leaves its in-flight messages lost at push or deliver and
// every later one at push. The dead source leaves the watermark minimum after
// source_idle_timeout, so the losses come within ack_timeout (offline_timeout for a message
// waiting for an offline device) + source_idle_timeout + a tick of each message's first event.
func DeadService(tb testing.TB, o DeadServiceOptions) *DeadServiceResult {
	tb.Helper()
	ctx := context.Background()
	sink, col := startSinkAndCollector(tb, o.Name, "correctness", timeoutEnv(o.Timeouts), harness.SinkOptions{KeepRecords: true})
	top := single(col)
	wc := workload.DefaultConfig()
	wc.Seed, wc.Messages, wc.Rate = o.Seed, o.Messages, o.Rate
	wc.OfflineReconnectMin, wc.OfflineReconnectMax = offlineReconnect(o.Timeouts)
	at := time.Duration(float64(o.Messages) / o.Rate * o.At * float64(time.Second))
	lr := startLoad(ctx, tb, Load{
		Workload: wc, Timeouts: o.Timeouts, Stop: &faults.Stop{Service: o.Service, At: at},
		Sender: sender.Config{Endpoint: col.Endpoints.OTLPGRPC, Workers: 1},
	})
	stats, err := lr.run.Wait()
	if err != nil {
		tb.Fatalf("%s: load: %v", o.Name, err)
	}
	res := &DeadServiceResult{Options: o, Service: o.Service.Name(), StoppedAt: at.String(), Classes: lr.book.Counts()}
	res.Sender = stats
	res.Settle = settle(ctx, top, sink, settleCondition{minRecords: expectedAllSignals(lr.book), idle: true}, o.Deadline)
	records := sink.Records()
	res.Validations = harness.ValidateSignals(lr.book, lr.seed, lr.run.StartTime(), records, outcomeSignals)
	res.Latency = deadLatency(lr, records, o)
	res.SLO = checkSLOs(ctx, top, lr.book)
	if res.Drops, err = top.drops(ctx); err != nil {
		tb.Fatalf("scraping the collector: %v", err)
	}
	tb.Logf("%s (%s stopped at %s): %s; latency: %d losses checked, %d over their bound, worst %.0f ms of %.0f ms",
		o.Name, res.Service, res.StoppedAt, res.Validations.Summary(), res.Latency.Checked, res.Latency.Over, res.Latency.Worst.LatencyMs, res.Latency.Worst.BoundMs)
	return res
}

// deadLatency measures every loss from its message's first event leaving the generator to its
// first record at the sink. Bound: the message's timeout (deadline − send time: ack_timeout,
// or offline_timeout while an offline device is pending) + source_idle_timeout + 2 ticks +
// slack. The last messages of the stream, whose deadline the live sources do not outlast,
// are left to the max_source_lag cap: deadline + max_source_lag + 2 ticks + slack.
func deadLatency(lr *loadRun, records []harness.Record, o DeadServiceOptions) LatencyCheck {
	t := o.Timeouts.WithDefaults()
	dead := o.Service
	end := liveEnd(lr.book, &dead)
	c := LatencyCheck{What: fmt.Sprintf("from each loss's first event to its first record at the sink, per signal; bound its timeout + source_idle_timeout %s + 2 ticks + %s slack (deadline + max_source_lag %s + 2 ticks + slack for deadlines the live sources do not outlast)",
		t.SourceIdleTimeout, detectionSlack, t.MaxSourceLag)}
	start := lr.run.StartTime()
	forEachDetectedLoss(lr, records, func(label string, tr *faults.Truth, at time.Time) {
		bound := tr.Deadline - tr.FirstDue + t.SourceIdleTimeout + 2*t.TickInterval + detectionSlack
		if tr.Deadline+t.AllowedLateness+t.Margin > end {
			bound = max(bound, tr.Deadline-tr.FirstDue+t.MaxSourceLag+2*t.TickInterval+detectionSlack)
		}
		c.add(tr.Index, label, at.Sub(start.Add(tr.FirstDue)), bound)
	})
	return c
}

// Check fails tb unless the verdicts were exact (the in-flight and later messages lost at the
// right stage, nothing else lost), the service really died mid-stream, nothing was dropped,
// the SLO counters equal the truth, and every loss came within its bound.
func (r *DeadServiceResult) Check(tb testing.TB) {
	tb.Helper()
	o := r.Options
	if !r.Settle.Settled {
		tb.Errorf("%s: the collector did not settle within %s: %s", o.Name, o.Deadline, r.Settle.LastProblem)
	}
	checkExact(tb, o.Name, r.Validations)
	if r.Classes[faults.ClassServiceDown] == 0 || r.Classes[faults.ClassNone] == 0 {
		tb.Errorf("%s: want messages before and after the stop, got classes %v", o.Name, r.Classes)
	}
	r.check(tb, o.Name)
}
