package scenarios

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/sender"
	"github.com/imcol/imcol/testbed/workload"
)

// LagMode is how the telemetry is made late in the lag scenario.
type LagMode string

const (
	// LagGateway lags im-gateway, the service that reports deliver and ack.
	LagGateway LagMode = "gateway"
	// LagPush lags im-push, whose push carries the fan-out.
	LagPush LagMode = "push"
	// LagAll lags every service alike.
	LagAll LagMode = "all"
	// LagBacklog lags every service alike by more than max_source_lag: a backlog replayed
	// after an outage, or a collector behind under load. The cap counts from the freshest
	// telemetry, which lags too, so the watermark must still decide every verdict.
	LagBacklog LagMode = "backlog"
	// LagStall stalls the sink mid-run: the whole pipeline blocks (stall.yaml has no sending
	// queue), im_loss can emit nothing, and the receivers push back on the services.
	LagStall LagMode = "stall"
)

// LagModes are the modes TestLag and imbench run.
var LagModes = []LagMode{LagGateway, LagPush, LagAll, LagBacklog, LagStall}

// LagOptions configure the lag scenario.
type LagOptions struct {
	Name string
	Mode LagMode
	Seed uint64
	// Messages at Rate; every fault class gets FaultProbability.
	Messages         int64
	Rate             float64
	FaultProbability float64
	Timeouts         faults.Timeouts
	// Lag is the export lag of the lagged services (it ramps in over Lag/2 from the start:
	// the services keep sending while they fall behind), or for LagStall how long the sink
	// stalls.
	Lag time.Duration
	// StallAt is the share of the messages started when the sink stalls (LagStall).
	StallAt float64
	// Deadline bounds the wait for the collector to decide everything after the load ends.
	Deadline time.Duration
}

// DefaultLag is the lag scenario of TestLag: 800 messages at 125/s (6.4 s, twice the lag's
// ramp) with every fault class, the telemetry lagged by twice ack_timeout, or the sink
// stalled for three times ack_timeout a third of the way through. max_source_lag is three
// times ack_timeout, beyond lag + allowed_lateness + margin: the watermark, not the cap,
// must decide every loss before the end of the stream. In backlog mode it is ack_timeout,
// half the lag every service has: the cap, counted from the freshest telemetry, must not
// force verdicts past it either.
func DefaultLag(mode LagMode) LagOptions {
	t := ShortTimeouts()
	t.MaxSourceLag = 3 * t.AckTimeout
	o := LagOptions{
		Name: "lag-" + string(mode), Mode: mode, Seed: 1000 + uint64(len(mode)),
		Messages: 800, Rate: 125, FaultProbability: 0.04, Timeouts: t,
		Lag: 2 * t.AckTimeout, StallAt: 1.0 / 3, Deadline: 60 * time.Second,
	}
	switch mode {
	case LagStall:
		o.Lag = 3 * t.AckTimeout
	case LagBacklog:
		o.Timeouts.MaxSourceLag = t.AckTimeout // half the lag
	}
	return o
}

// Lags are the export lags the mode gives the services.
func (o LagOptions) Lags() workload.Lags {
	l := workload.Lag{Delay: o.Lag, Ramp: o.Lag / 2}
	var lags workload.Lags
	switch o.Mode {
	case LagGateway:
		lags[workload.ServiceGateway] = l
	case LagPush:
		lags[workload.ServicePush] = l
	case LagAll, LagBacklog:
		lags = workload.AllLagged(l)
	}
	return lags
}

// LatencyCheck compares each loss's detection time with the bound the time model promises.
type LatencyCheck struct {
	// What says what was measured and the bound.
	What string `json:"what"`
	// Checked is the losses measured; Over the ones detected later than their bound.
	Checked int   `json:"checked"`
	Over    int   `json:"over_bound"`
	Worst   Slack `json:"worst"`
	// Examples name up to 10 losses over their bound.
	Examples []string `json:"examples,omitempty"`
}

// Slack is one loss's detection time against its bound, in milliseconds.
type Slack struct {
	Message   int64   `json:"message"`
	Label     string  `json:"label"`
	LatencyMs float64 `json:"latency_ms"`
	BoundMs   float64 `json:"bound_ms"`
}

// StallInfo is what the sink saw during a stall.
type StallInfo struct {
	Duration string `json:"duration"`
	// MaxHeld is the most export requests the sink held at once; Abandoned the ones whose
	// client (the collector's exporter) gave up and sent again.
	MaxHeld   int64 `json:"max_held_requests"`
	Abandoned int64 `json:"abandoned_requests"`
}

// LagResult is what the lag scenario measured.
type LagResult struct {
	Options LagOptions             `json:"-"`
	Mode    LagMode                `json:"mode"`
	Lags    string                 `json:"lags"`
	Classes map[faults.Class]int64 `json:"fault_classes"`
	TimedRun
	Stall *StallInfo `json:"stall,omitempty"`
}

// TimedRun is what every time-model scenario measures of its run.
type TimedRun struct {
	Validations harness.Validations `json:"validations"`
	Latency     LatencyCheck        `json:"loss_detection_latency"`
	Sender      sender.Stats        `json:"sender"`
	Settle      settleState         `json:"settle"`
	Drops       map[string]float64  `json:"collector_drops"`
	SLO         []SLOCheck          `json:"slo"`
}

// detectionSlack covers what the bounds leave out: the collector's batching (200 ms), the
// export to the sink, and scheduling on two shared cores.
const detectionSlack = time.Second

// Lag runs every fault class with the telemetry made late: some or all services lagged by
// o.Lag on their way to the collector (timestamps unchanged), or the sink stalled for o.Lag so
// that the whole pipeline blocks. On event time the verdicts must not change: the truth is
// the correctness truth (late_events' and late_message's holds grow by the lag difference
// to the slowest source), and every loss must be detected within the time model's bound
// (LatencyCheck).
func Lag(tb testing.TB, o LagOptions) *LagResult {
	tb.Helper()
	ctx := context.Background()
	config := "correctness"
	if o.Mode == LagStall {
		config = "stall"
	}
	sink, col := startSinkAndCollector(tb, o.Name, config, timeoutEnv(o.Timeouts), harness.SinkOptions{KeepRecords: true})
	top := single(col)
	wc := workload.DefaultConfig()
	wc.Seed, wc.Messages, wc.Rate = o.Seed, o.Messages, o.Rate
	wc.OfflineReconnectMin, wc.OfflineReconnectMax = offlineReconnect(o.Timeouts)
	probs := map[faults.Class]float64{}
	for _, c := range faults.Faults {
		probs[c] = o.FaultProbability
	}
	lags := o.Lags()
	lr := startLoad(ctx, tb, Load{
		Workload: wc, Faults: probs, Timeouts: o.Timeouts, Lags: lags,
		// One worker: each service's events arrive in the order they were emitted.
		Sender: sender.Config{Endpoint: col.Endpoints.OTLPGRPC, Workers: 1, RetryTimeout: time.Minute},
	})
	res := &LagResult{Options: o, Mode: o.Mode, Lags: lags.String()}
	if o.Mode == LagStall {
		wctx, cancel := context.WithTimeout(ctx, o.Deadline)
		err := waitMessages(wctx, lr, int64(float64(o.Messages)*o.StallAt))
		cancel()
		if err != nil {
			tb.Fatalf("%s: %v", o.Name, err)
		}
		sink.Stall()
		timer := time.NewTimer(o.Lag)
		<-timer.C
		sink.Resume()
		_, maxHeld, abandoned := sink.Stalls()
		res.Stall = &StallInfo{Duration: o.Lag.String(), MaxHeld: maxHeld, Abandoned: abandoned}
	}
	stats, err := lr.run.Wait()
	if err != nil {
		tb.Fatalf("%s: load: %v", o.Name, err)
	}
	res.Sender, res.Classes = stats, lr.book.Counts()
	res.Settle = settle(ctx, top, sink, settleCondition{minRecords: expectedAllSignals(lr.book), idle: true}, o.Deadline)
	records := sink.Records()
	res.Validations = harness.ValidateSignals(lr.book, lr.seed, lr.run.StartTime(), records, outcomeSignals)
	res.Latency = lagLatency(lr, records, o)
	res.SLO = checkSLOs(ctx, top, lr.book)
	if res.Drops, err = top.drops(ctx); err != nil {
		tb.Fatalf("scraping the collector: %v", err)
	}
	tb.Logf("%s (lags %s): %s; latency: %d losses checked, %d over their bound, worst %.0f ms of %.0f ms",
		o.Name, res.Lags, res.Validations.Summary(), res.Latency.Checked, res.Latency.Over, res.Latency.Worst.LatencyMs, res.Latency.Worst.BoundMs)
	return res
}

// lagLatency measures every loss (lost records, seq gaps included) from its deadline in event
// time (the send's timestamp plus ack_timeout, or offline_timeout while an offline device is
// pending; for a seq gap the revealing persist plus reorder_window) to its first record at
// the sink. On event time the watermark passes a deadline once every source's events stamped
// allowed_lateness beyond it arrived: at most the largest lag later (a stall counts as a lag
// of its length). So the bound is lag + allowed_lateness + 2 ticks + slack, shorter than
// max_source_lag: a collector that waited for the cap would miss it. Only losses whose
// deadline the stream does not outlast (deadline + allowed_lateness + margin beyond the last
// event of some source) are left to the cap, after the sources fall idle: max_source_lag +
// 2 ticks + slack behind the freshest telemetry, which is the lag late when every service
// lags, or when the lagged service is the last still sending: lag + max_source_lag + 2 ticks +
// slack.
func lagLatency(lr *loadRun, records []harness.Record, o LagOptions) LatencyCheck {
	t := o.Timeouts.WithDefaults()
	tight := o.Lag + t.AllowedLateness + 2*t.TickInterval + detectionSlack
	capped := max(tight, o.Lag+t.MaxSourceLag+2*t.TickInterval+detectionSlack)
	liveEnd := liveEnd(lr.book, nil)
	c := LatencyCheck{What: fmt.Sprintf("from each loss's deadline in event time to its first record at the sink, per signal; bound lag %s + allowed_lateness %s + 2 ticks + %s slack = %s (%s for deadlines the stream does not outlast, left to max_source_lag %s behind the lagged telemetry)",
		o.Lag, t.AllowedLateness, detectionSlack, tight, capped, t.MaxSourceLag)}
	start := lr.run.StartTime()
	forEachDetectedLoss(lr, records, func(label string, tr *faults.Truth, at time.Time) {
		if tr.Deadline == 0 {
			return
		}
		bound := tight
		if tr.Deadline+t.AllowedLateness+t.Margin > liveEnd {
			bound = capped
		}
		c.add(tr.Index, fmt.Sprintf("%s %s deadline %s", label, tr.Class, tr.Deadline), at.Sub(start.Add(tr.Deadline)), bound)
	})
	return c
}

// forEachDetectedLoss calls fn for every lost label of the truth that a record of some outcome
// signal reported, with the record's arrival at the sink (misses are the validation's to report).
func forEachDetectedLoss(lr *loadRun, records []harness.Record, fn func(label string, tr *faults.Truth, at time.Time)) {
	for _, sig := range outcomeSignals {
		var mine []harness.Record
		for _, r := range records {
			if r.Signal == sig {
				mine = append(mine, r)
			}
		}
		det := harness.Detections(lr.book, lr.seed, mine)
		for _, tr := range lr.book.All() {
			for _, l := range tr.Labels {
				if l.Outcome != imsemconv.OutcomeLost {
					continue
				}
				if at, ok := det[tr.Index][l.String()]; ok {
					fn(sig+" "+l.String(), &tr, at)
				}
			}
		}
	}
}

func (c *LatencyCheck) add(idx int64, label string, latency, bound time.Duration) {
	c.Checked++
	s := Slack{Message: idx, Label: label, LatencyMs: ms(latency), BoundMs: ms(bound)}
	if c.Worst.Label == "" || s.LatencyMs-s.BoundMs > c.Worst.LatencyMs-c.Worst.BoundMs {
		c.Worst = s
	}
	if latency > bound {
		c.Over++
		if len(c.Examples) < 10 {
			c.Examples = append(c.Examples, fmt.Sprintf("message %d %s detected %s after its reference, bound %s", idx, label, latency.Round(time.Millisecond), bound))
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// liveEnd is the last event time every live source (all services but dead) reached: beyond
// it the watermark cannot pass on its own once the stream is over.
func liveEnd(book *faults.Book, dead *workload.Service) time.Duration {
	end := time.Duration(-1)
	for s := range workload.NumServices {
		if dead != nil && s == *dead {
			continue
		}
		if l := book.LastEvent(s); end < 0 || l < end {
			end = l
		}
	}
	return end
}

// Check fails tb unless the verdicts were exact despite the lag, every fault class was
// injected, nothing was refused or dropped, the SLO counters equal the truth, and every loss
// was detected within its bound.
func (r *LagResult) Check(tb testing.TB) {
	tb.Helper()
	o := r.Options
	if !r.Settle.Settled {
		tb.Errorf("%s: the collector did not settle within %s: %s", o.Name, o.Deadline, r.Settle.LastProblem)
	}
	for _, c := range faults.Faults {
		if r.Classes[c] == 0 {
			tb.Errorf("%s: fault class %s was never injected", o.Name, c)
		}
	}
	checkExact(tb, o.Name, r.Validations)
	r.check(tb, o.Name)
	switch {
	case o.Mode != LagStall && r.Sender.Elapsed < r.Sender.LastStart+o.Lag:
		tb.Errorf("%s: the load ended %s after its last message: the lag of %s was not applied", o.Name, r.Sender.Elapsed-r.Sender.LastStart, o.Lag)
	case o.Mode == LagStall && (r.Stall == nil || r.Stall.MaxHeld == 0):
		tb.Errorf("%s: the sink held no request during the stall", o.Name)
	case o.Mode == LagStall && r.Sender.MaxLag < o.Lag/2:
		// Back-pressure must reach the services: a collector that buffered (or dropped)
		// during the stall would have kept accepting on schedule.
		tb.Errorf("%s: the generator fell at most %s behind during a %s stall: the stall did not block the receivers", o.Name, r.Sender.MaxLag, o.Lag)
	}
}

// checkExact fails tb unless every signal's validation is exact.
func checkExact(tb testing.TB, name string, vs harness.Validations) {
	tb.Helper()
	if len(vs) != len(outcomeSignals) {
		tb.Errorf("%s: validated %d signals, want %v", name, len(vs), outcomeSignals)
	}
	for _, v := range vs {
		if !v.Exact() {
			tb.Errorf("%s %s: detection is not exact: %s\nexamples:\n%s", name, v.Signal, v.Summary(), joinLines(v.Examples))
		}
	}
}

// check asserts what every time-model scenario must keep: nothing refused, failed or
// dropped, SLO counters equal to the truth, and every loss detected within its bound.
func (r *TimedRun) check(tb testing.TB, name string) {
	tb.Helper()
	if _, acc, rej, failed := r.Sender.Items(); rej != 0 || failed != 0 || acc == 0 {
		tb.Errorf("%s: the collector accepted %d items, rejected %d, and %d failed (last error: %s)", name, acc, rej, failed, r.Sender.LastError)
	}
	if len(r.Drops) > 0 {
		tb.Errorf("%s: the collector dropped items: %v", name, r.Drops)
	}
	for _, slo := range r.SLO {
		if slo.Problem != "" {
			tb.Errorf("%s: SLO metrics disagree with the truth: %s", name, slo.Problem)
		}
	}
	if r.Latency.Checked == 0 {
		tb.Errorf("%s: no loss detected to measure", name)
	}
	if r.Latency.Over > 0 {
		tb.Errorf("%s: %d of %d losses detected later than %s:\n%s", name, r.Latency.Over, r.Latency.Checked, r.Latency.What, joinLines(r.Latency.Examples))
	}
}
