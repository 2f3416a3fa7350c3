package scenarios

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/internal/testcollector"
	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/sender"
	"github.com/imcol/imcol/testbed/workload"
)

// CorrectnessOptions configure the correctness scenario.
type CorrectnessOptions struct {
	Name     string
	Seed     uint64
	Messages int64
	Rate     float64
	// FaultProbability is given to every fault class.
	FaultProbability float64
	Signals          sender.Signals
	Protocol         string
	Timeouts         faults.Timeouts
	// Deadline bounds the wait for the collector to decide everything after the load ends.
	Deadline time.Duration
	// Backends is the topology: 0 or 1 sends the load to one collector; N > 1 starts N
	// backend collectors with the same config behind one gateway running the shipped
	// configs/gateway.yaml (load_balancing by conversation) and sends the load to the gateway.
	Backends int
}

// DefaultCorrectness is small enough for `go test` on two shared cores (about 20 s) and
// large enough that every fault class occurs dozens of times.
func DefaultCorrectness() CorrectnessOptions {
	return CorrectnessOptions{
		Name:             "correctness",
		Seed:             42,
		Messages:         1200,
		Rate:             200,
		FaultProbability: 0.04,
		Protocol:         "grpc",
		Timeouts:         ShortTimeouts(),
		Deadline:         45 * time.Second,
	}
}

// DefaultScaleOut is the correctness scenario through one gateway in front of two backends.
func DefaultScaleOut() CorrectnessOptions {
	o := DefaultCorrectness()
	o.Name, o.Backends = "scale-out", 2
	return o
}

// CorrectnessResult is what the correctness scenario measured.
type CorrectnessResult struct {
	Options  CorrectnessOptions     `json:"-"`
	Signals  string                 `json:"signals"`
	Protocol string                 `json:"protocol"`
	Classes  map[faults.Class]int64 `json:"fault_classes"`
	// Validations has one entry per signal outcome records are emitted as.
	Validations harness.Validations `json:"validations"`
	Sender      sender.Stats        `json:"sender"`
	Settle      settleState         `json:"settle"`
	// Drops are the collector's non-zero drop counters.
	Drops map[string]float64 `json:"collector_drops"`
	// SLO compares each delivery SLO (one per signal) with the truth.
	SLO   []SLOCheck    `json:"slo"`
	Usage harness.Usage `json:"usage"`
	// Collectors describes each collector of a scaled-out run (gateway first); empty for one
	// collector, whose usage is Usage.
	Collectors []CollectorShare `json:"collectors,omitempty"`
}

// CollectorShare is one collector's part of a scaled-out run.
type CollectorShare struct {
	Name string `json:"name"`
	// Role is gateway or backend.
	Role string `json:"role"`
	// Accepted is the spans and log records its receivers accepted.
	Accepted float64 `json:"accepted_items"`
	// Outcomes is im_loss's outcomes counter (backends): the outcomes it decided for the
	// conversations routed to it.
	Outcomes float64            `json:"im_loss_outcomes"`
	Drops    map[string]float64 `json:"drops,omitempty"`
	Usage    harness.Usage      `json:"usage"`
}

// SLOCheck compares SLO counters with the ground truth.
type SLOCheck struct {
	Name       string  `json:"slo_name"`
	Events     float64 `json:"events"`
	Good       float64 `json:"good_events"`
	WantEvents int64   `json:"want_events"`
	WantGood   int64   `json:"want_good_events"`
	Problem    string  `json:"problem,omitempty"`
}

// Correctness runs the scenario: faults of every class against im_loss with short timeouts,
// through one collector or (o.Backends > 1) through the shipped gateway in front of several,
// then every outcome record is compared with the truth. It fails tb only when the scenario
// cannot run; Check judges the result.
func Correctness(tb testing.TB, o CorrectnessOptions) *CorrectnessResult {
	tb.Helper()
	ctx := context.Background()
	var sink *harness.Sink
	var top topology
	if o.Backends > 1 {
		sink, top = startScaledOut(tb, o.Name, "correctness", o.Backends, timeoutEnv(o.Timeouts), harness.SinkOptions{KeepRecords: true})
	} else {
		var col *harness.Collector
		sink, col = startSinkAndCollector(tb, o.Name, "correctness", timeoutEnv(o.Timeouts), harness.SinkOptions{KeepRecords: true})
		top = single(col)
	}

	wc := workload.DefaultConfig()
	wc.Seed, wc.Messages, wc.Rate = o.Seed, o.Messages, o.Rate
	wc.OfflineReconnectMin, wc.OfflineReconnectMax = offlineReconnect(o.Timeouts)
	probs := map[faults.Class]float64{}
	for _, c := range faults.Faults {
		probs[c] = o.FaultProbability
	}
	endpoint := top.entry().Endpoints.OTLPGRPC
	if o.Protocol == "http" {
		endpoint = top.entry().Endpoints.OTLPHTTP
	}
	begin := time.Now()
	lr := startLoad(ctx, tb, Load{
		Workload: wc, Faults: probs, Timeouts: o.Timeouts,
		// One worker: records arrive in the order they were emitted, which the truth of
		// late events (the first late event names the stage) relies on.
		Sender: sender.Config{Endpoint: endpoint, Protocol: o.Protocol, Signals: o.Signals, Workers: 1},
	})
	stats, err := lr.run.Wait()
	if err != nil {
		tb.Fatalf("load: %v", err)
	}
	res := &CorrectnessResult{
		Options: o, Signals: o.Signals.String(), Protocol: o.Protocol,
		Classes: lr.book.Counts(), Sender: stats,
	}
	res.Settle = settle(ctx, top, sink, settleCondition{minRecords: expectedAllSignals(lr.book), idle: true}, o.Deadline)
	res.Validations = harness.ValidateSignals(lr.book, lr.seed, lr.run.StartTime(), sink.Records(), outcomeSignals)

	res.SLO = checkSLOs(ctx, top, lr.book)

	end := time.Now()
	if res.Drops, err = top.drops(ctx); err != nil {
		tb.Fatalf("scraping the collectors: %v", err)
	}
	if top.gateway == nil {
		res.Usage = top.entry().Usage(begin, end)
		return res
	}
	for _, col := range top.all() {
		fams, err := col.Telemetry(ctx)
		if err != nil {
			tb.Fatalf("scraping the collectors: %v", err)
		}
		share := CollectorShare{
			Name: col.Name(), Role: "backend", Accepted: acceptedItems(fams),
			Outcomes: fams.Sum(outcomesMetric, nil), Drops: fams.Drops(), Usage: col.Usage(begin, end),
		}
		if col == top.gateway {
			share.Role = "gateway"
		}
		res.Collectors = append(res.Collectors, share)
	}
	return res
}

const outcomesMetric = "otelcol_processor_im_loss_outcomes_total"

// deliverySLOs are the delivery SLOs of the IM scenario configs, one per outcome signal.
var deliverySLOs = []string{"delivery-traces", "delivery-logs"}

// sloTruth is what a delivery SLO must count for the truth: one event per verdict (delivered
// or lost), good when delivered, plus one good event per retraction record (a loss taken
// back by late acks stamped before the deadline, or a seq gap's loss taken back by the late
// persist of that seq; the event itself was counted as lost). So a late message counts two
// events, its delivery and its seq's loss, and both good: the delivery and the retraction.
func sloTruth(book *faults.Book) SLOCheck {
	var want SLOCheck
	for _, t := range book.All() {
		for _, l := range t.Labels {
			switch {
			case l.Primary():
				want.WantEvents++
				if l.Outcome == imsemconv.OutcomeDelivered {
					want.WantGood++
				}
			case l.Retracted:
				want.WantGood++
			}
		}
	}
	return want
}

// checkSLOs polls every delivery SLO (the connector flushes on its own interval) until its
// counters agree with the truth, or 15 s pass.
func checkSLOs(ctx context.Context, top topology, book *faults.Book) []SLOCheck {
	want := sloTruth(book)
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var out []SLOCheck
	for _, name := range deliverySLOs {
		chk := want
		chk.Name = name
		if err := testcollector.Eventually(sctx, 250*time.Millisecond, func() error {
			// Scraped with the parent context: when the wait runs out, the last problem
			// reported is the disagreement, not a scrape cut short by the deadline.
			ev, good, err := sloCounts(ctx, top, name)
			if err != nil {
				return err
			}
			chk.Events, chk.Good = ev, good
			if ev != float64(chk.WantEvents) || good != float64(chk.WantGood) {
				return fmt.Errorf("SLO %s counts %v events, %v good; the truth has %d and %d", name, ev, good, chk.WantEvents, chk.WantGood)
			}
			return nil
		}); err != nil {
			chk.Problem = err.Error()
		}
		out = append(out, chk)
	}
	return out
}

// Check fails tb unless the run was exact: precision = recall = 1 for every label, every
// fault class injected, nothing refused or dropped, and the SLO counters equal to the truth.
func (r *CorrectnessResult) Check(tb testing.TB) {
	tb.Helper()
	if !r.Settle.Settled {
		tb.Errorf("the collector did not settle within %s: %s", r.Options.Deadline, r.Settle.LastProblem)
	}
	for _, c := range faults.Faults {
		if r.Classes[c] == 0 {
			tb.Errorf("fault class %s was never injected: raise the messages or the fault probability", c)
		}
	}
	if len(r.Validations) != len(outcomeSignals) {
		tb.Errorf("validated %d signals, want %v", len(r.Validations), outcomeSignals)
	}
	for _, v := range r.Validations {
		if !v.Exact() {
			tb.Errorf("%s: detection is not exact: %s\nexamples:\n%s", v.Signal, v.Summary(), joinLines(v.Examples))
		}
		for _, c := range v.Classes {
			if c.Precision != 1 || c.Recall != 1 {
				tb.Errorf("%s %s: precision %.4f recall %.4f (tp %d, fp %d, fn %d)", v.Signal, c.Label, c.Precision, c.Recall, c.TP, c.FP, c.FN)
			}
		}
	}
	if _, acc, rej, failed := r.Sender.Items(); rej != 0 || failed != 0 || acc == 0 {
		tb.Errorf("the collector accepted %d items, rejected %d, and %d failed (last error: %s)", acc, rej, failed, r.Sender.LastError)
	}
	if len(r.Drops) > 0 {
		tb.Errorf("the collector dropped items: %v", r.Drops)
	}
	for _, slo := range r.SLO {
		if slo.Problem != "" {
			tb.Errorf("SLO metrics disagree with the truth: %s", slo.Problem)
		}
	}
	// Exact detection would also hold if the gateway sent everything to one backend: the
	// scale-out is only proven when every backend owns a share of the conversations.
	for _, c := range r.Collectors {
		if c.Role == "backend" && (c.Outcomes == 0 || c.Accepted == 0) {
			tb.Errorf("backend %s got no share of the load: %.0f items accepted, %.0f outcomes decided", c.Name, c.Accepted, c.Outcomes)
		}
	}
	if n := r.Options.Backends; n > 1 && len(r.Collectors) != n+1 {
		tb.Errorf("%d collectors described, want a gateway and %d backends", len(r.Collectors), n)
	}
}

func joinLines(lines []string) string {
	var out strings.Builder
	for _, l := range lines {
		out.WriteString("  " + l + "\n")
	}
	return out.String()
}
