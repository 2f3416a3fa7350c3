package scenarios

import (
	"context"
	"fmt"
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
// then every outcome record is compared with the truth. It fails tb only when the scenario
// cannot run; Check judges the result.
func Correctness(tb testing.TB, o CorrectnessOptions) *CorrectnessResult {
	tb.Helper()
	ctx := context.Background()
	sink, col := startSinkAndCollector(tb, o.Name, "correctness", timeoutEnv(o.Timeouts), harness.SinkOptions{KeepRecords: true})

	wc := workload.DefaultConfig()
	wc.Seed, wc.Messages, wc.Rate = o.Seed, o.Messages, o.Rate
	wc.OfflineReconnectMin, wc.OfflineReconnectMax = offlineReconnect(o.Timeouts)
	probs := map[faults.Class]float64{}
	for _, c := range faults.Faults {
		probs[c] = o.FaultProbability
	}
	endpoint := col.Endpoints.OTLPGRPC
	if o.Protocol == "http" {
		endpoint = col.Endpoints.OTLPHTTP
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
	res.Settle = settle(ctx, col, sink, settleCondition{minRecords: expectedAllSignals(lr.book), idle: true}, o.Deadline)
	res.Validations = harness.ValidateSignals(lr.book, lr.seed, lr.run.StartTime(), sink.Records(), outcomeSignals)

	// Every outcome reaches both SLOs (one per signal). The connector flushes on its own
	// interval: poll until it agrees with the truth.
	var want SLOCheck
	for _, t := range lr.book.All() {
		for _, l := range t.Labels {
			if l.Primary() {
				want.WantEvents++
				if l.Outcome == imsemconv.OutcomeDelivered {
					want.WantGood++
				}
			}
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for _, name := range []string{"delivery-traces", "delivery-logs"} {
		chk := want
		chk.Name = name
		if err := testcollector.Eventually(sctx, 250*time.Millisecond, func() error {
			ev, good, err := sloCounts(sctx, col, name)
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
		res.SLO = append(res.SLO, chk)
	}

	fams, err := col.Telemetry(ctx)
	if err != nil {
		tb.Fatalf("scraping the collector: %v", err)
	}
	res.Drops = fams.Drops()
	res.Usage = col.Usage(begin, time.Now())
	return res
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
}

func joinLines(lines []string) string {
	out := ""
	for _, l := range lines {
		out += "  " + l + "\n"
	}
	return out
}
