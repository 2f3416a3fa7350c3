package scenarios

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/imcol/imcol/internal/testcollector"
	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/sender"
	"github.com/imcol/imcol/testbed/workload"
)

// Variant is one pipeline the performance scenarios measure under the same load.
type Variant struct {
	Name string `json:"name"`
	// Config is the scenario config (testbed/configs/<config>.yaml).
	Config string `json:"config"`
	// IM is set for the pipeline with im_loss, whose timeouts the harness sets.
	IM bool `json:"im"`
}

// Variants: imcol's IM pipeline, the passthrough baseline, and the upstream-style peer.
var (
	VariantIM       = Variant{Name: "im", Config: "im", IM: true}
	VariantBaseline = Variant{Name: "baseline", Config: "baseline"}
	VariantPeer     = Variant{Name: "peer", Config: "peer"}
	AllVariants     = []Variant{VariantIM, VariantBaseline, VariantPeer}
)

// Ratio compares the IM pipeline with a reference pipeline measured in the same run.
type Ratio struct {
	Rate    float64 `json:"rate,omitempty"`
	Against string  `json:"against"`
	// CPUPerMessage is im's CPU per message divided by the reference's; RSSAvg and RSSMax
	// divide the resident memory.
	CPUPerMessage float64 `json:"cpu_per_message"`
	RSSAvg        float64 `json:"rss_avg"`
	RSSMax        float64 `json:"rss_max"`
}

func divide(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// ThroughputOptions configure the throughput scenario.
type ThroughputOptions struct {
	// Rates are the steps, in messages per second, tried in order.
	Rates        []float64
	StepDuration time.Duration
	Variants     []Variant
	Signals      sender.Signals
	Protocol     string
	Workers      int
	// FaultProbability is given to every fault class except late_events, whose truth (which
	// late event arrives first) needs a single export worker.
	FaultProbability float64
	Timeouts         faults.Timeouts
	Seed             uint64
	// SettleDeadline bounds the wait for a step's items to reach the sink.
	SettleDeadline time.Duration
	// StopAtFirstFailure ends a variant's steps at the first step with drops or lag.
	StopAtFirstFailure bool
}

// DefaultThroughput steps from 1000 to 16000 messages/s (about 7 items per message).
func DefaultThroughput() ThroughputOptions {
	return ThroughputOptions{
		Rates:            []float64{1000, 2000, 4000, 8000, 16000},
		StepDuration:     20 * time.Second,
		Variants:         AllVariants,
		Protocol:         "grpc",
		Workers:          4,
		FaultProbability: 0.001,
		// Offline devices are back within 8 s, which bounds each step's tail.
		Timeouts: eventTime(faults.Timeouts{
			AckTimeout: 5 * time.Second, OfflineTimeout: 12 * time.Second, ReorderWindow: 5 * time.Second,
			TickInterval: 250 * time.Millisecond, Margin: 2 * time.Second,
		}),
		Seed:               1000,
		SettleDeadline:     60 * time.Second,
		StopAtFirstFailure: true,
	}
}

// StepResult is one rate step of one variant.
type StepResult struct {
	Rate     float64 `json:"target_rate"`
	Messages int64   `json:"messages"`
	Items    int64   `json:"items"`
	// Achieved is messages per second over the emission of the step.
	Achieved float64 `json:"achieved_rate"`
	// KeptUp is false when the generator fell more than a second behind schedule (the
	// collector pushing back, or the machine out of CPU).
	KeptUp bool          `json:"kept_up"`
	MaxLag string        `json:"max_lag"`
	Usage  harness.Usage `json:"usage"`
	// CPUPerMessage is the collector's CPU time per message, in microseconds.
	CPUPerMessage float64 `json:"cpu_per_message_us"`
	// Drops counts items refused or lost anywhere: by the sender's view, the collector's own
	// counters, and lifecycle items that never reached the sink.
	Drops      int64              `json:"drops"`
	DropDetail map[string]float64 `json:"drop_detail,omitempty"`
	Settle     settleState        `json:"settle"`
}

// VariantThroughput is the throughput of one pipeline.
type VariantThroughput struct {
	Variant Variant      `json:"variant"`
	Steps   []StepResult `json:"steps"`
	// MaxZeroDropRate is the highest step with no drops that the pipeline kept up with.
	MaxZeroDropRate float64 `json:"max_zero_drop_rate"`
	// Validations cover every step, per outcome signal (IM pipeline only).
	Validations harness.Validations `json:"validations,omitempty"`
}

// ThroughputResult is the throughput scenario's result.
type ThroughputResult struct {
	Options  ThroughputOptions   `json:"-"`
	Variants []VariantThroughput `json:"variants"`
	Ratios   []Ratio             `json:"ratios"`
}

// Throughput steps the rate up for each variant, each on a fresh collector, with the same
// seeds so every variant gets the same load.
func Throughput(tb testing.TB, o ThroughputOptions) *ThroughputResult {
	tb.Helper()
	res := &ThroughputResult{Options: o}
	for _, v := range o.Variants {
		res.Variants = append(res.Variants, throughputVariant(tb, o, v))
	}
	res.Ratios = throughputRatios(res.Variants)
	return res
}

func throughputVariant(tb testing.TB, o ThroughputOptions, v Variant) VariantThroughput {
	ctx := context.Background()
	env := map[string]string{}
	if v.IM {
		env = timeoutEnv(o.Timeouts)
	}
	sink, col := startSinkAndCollector(tb, "throughput-"+v.Name, v.Config, env, harness.SinkOptions{KeepRecords: v.IM})
	vt := VariantThroughput{Variant: v}
	probs := map[faults.Class]float64{}
	for _, c := range faults.Faults {
		if c != faults.ClassLateEvents {
			probs[c] = o.FaultProbability
		}
	}
	var books []*loadRun
	for i, rate := range o.Rates {
		wc := workload.DefaultConfig()
		wc.Seed, wc.Rate = o.Seed+uint64(i), rate
		wc.Messages = int64(rate * o.StepDuration.Seconds())
		wc.OfflineReconnectMin, wc.OfflineReconnectMax = offlineReconnect(o.Timeouts)
		before, err := col.Telemetry(ctx)
		if err != nil {
			tb.Fatalf("%s: scraping: %v", v.Name, err)
		}
		spans0, logs0, _, out0 := sink.Counts()
		begin := time.Now()
		col.Monitor.Record(begin)
		lr := startLoad(ctx, tb, Load{
			Workload: wc, Faults: probs, Timeouts: o.Timeouts,
			Sender: sender.Config{Endpoint: col.Endpoints.OTLPGRPC, Protocol: o.Protocol, Signals: o.Signals, Workers: o.Workers},
		})
		stats, err := lr.run.Wait()
		if err != nil {
			tb.Fatalf("%s: load: %v", v.Name, err)
		}
		books = append(books, lr)
		sent, accepted, rejected, failed := stats.Items()
		st := settle(ctx, single(col), sink, settleCondition{lifecycle: spans0 + logs0 - out0 + accepted}, o.SettleDeadline)
		end := time.Now()
		col.Monitor.Record(end)
		after, err := col.Telemetry(ctx)
		if err != nil {
			tb.Fatalf("%s: scraping: %v", v.Name, err)
		}
		step := StepResult{
			Rate: rate, Messages: stats.Messages, Items: sent,
			MaxLag: stats.MaxLag.Round(time.Millisecond).String(),
			KeptUp: stats.MaxLag <= time.Second,
			Usage:  col.Usage(begin, end), Settle: st, DropDetail: map[string]float64{},
		}
		step.Achieved = stats.Rate()
		step.CPUPerMessage = divide(step.Usage.CPUSeconds*1e6, float64(stats.Messages))
		if rejected+failed > 0 {
			step.DropDetail["sender_rejected_or_failed"] = float64(rejected + failed)
		}
		for name, n := range after.Drops() {
			if d := n - before.Sum(name, nil); d > 0 {
				step.DropDetail[name] = d
			}
		}
		if missing := accepted - (st.Lifecycle - (spans0 + logs0 - out0)); missing > 0 {
			step.DropDetail["lifecycle_items_missing_at_sink"] = float64(missing)
		}
		for _, d := range step.DropDetail {
			step.Drops += int64(d)
		}
		tb.Logf("throughput %s %.0f msg/s: %d messages, %d items, cpu %.1f µs/msg, rss max %d MiB, drops %d, lag %s",
			v.Name, rate, stats.Messages, sent, step.CPUPerMessage, step.Usage.RSSMax>>20, step.Drops, step.MaxLag)
		vt.Steps = append(vt.Steps, step)
		if step.Drops == 0 && step.KeptUp {
			vt.MaxZeroDropRate = rate
		} else if o.StopAtFirstFailure {
			break
		}
	}
	if v.IM {
		// Every message of every step must be decided before the records can be compared.
		var want int64
		for _, lr := range books {
			want += expectedAllSignals(lr.book)
		}
		settle(ctx, single(col), sink, settleCondition{minRecords: want, idle: true}, o.Timeouts.OfflineTimeout+o.SettleDeadline)
		records := sink.Records()
		for _, sig := range outcomeSignals {
			var mine []harness.Record
			for _, r := range records {
				if r.Signal == sig {
					mine = append(mine, r)
				}
			}
			v := validateSteps(books, mine)
			v.Signal = sig
			vt.Validations = append(vt.Validations, *v)
		}
	}
	return vt
}

// validateSteps validates each step's records against its own truth (steps differ by seed)
// and adds the results up.
func validateSteps(runs []*loadRun, records []harness.Record) *harness.Validation {
	total := &harness.Validation{Confusion: map[string]map[string]int64{}}
	classes := map[string]*harness.ClassQuality{}
	latencies := map[string][]harness.Latency{}
	claimed := 0
	for _, lr := range runs {
		var mine []harness.Record
		for _, r := range records {
			if workload.BelongsTo(lr.seed, r.MessageID, r.ConversationID) {
				mine = append(mine, r)
			}
		}
		claimed += len(mine)
		v := harness.Validate(lr.book, lr.seed, lr.run.StartTime(), mine)
		total.Messages += v.Messages
		total.Records += v.Records
		total.Unmatched += v.Unmatched
		total.Repeats += v.Repeats
		for _, c := range v.Classes {
			agg := classes[c.Label]
			if agg == nil {
				agg = &harness.ClassQuality{Label: c.Label}
				classes[c.Label] = agg
			}
			agg.Expected += c.Expected
			agg.TP += c.TP
			agg.FP += c.FP
			agg.FN += c.FN
			latencies[c.Label] = append(latencies[c.Label], c.Latency)
		}
		for exp, row := range v.Confusion {
			if total.Confusion[exp] == nil {
				total.Confusion[exp] = map[string]int64{}
			}
			for det, n := range row {
				total.Confusion[exp][det] += n
			}
		}
		total.Faults = mergeFaults(total.Faults, v.Faults)
		if room := 20 - len(total.Examples); room > 0 {
			total.Examples = append(total.Examples, v.Examples[:min(room, len(v.Examples))]...)
		}
	}
	// Records of no step (foreign ids) are unmatched too.
	total.Unmatched += int64(len(records) - claimed)
	total.Records = int64(len(records))
	for _, l := range slices.Sorted(maps.Keys(classes)) {
		c := classes[l]
		c.Precision = ratioOf(c.TP, c.TP+c.FP)
		c.Recall = ratioOf(c.TP, c.TP+c.FN)
		c.Latency = worstLatency(latencies[l])
		total.Classes = append(total.Classes, *c)
	}
	return total
}

func mergeFaults(into, add []harness.FaultQuality) []harness.FaultQuality {
	for _, f := range add {
		i := slices.IndexFunc(into, func(g harness.FaultQuality) bool { return g.Class == f.Class })
		if i < 0 {
			into = append(into, f)
			continue
		}
		into[i].Messages += f.Messages
		into[i].Exact += f.Exact
	}
	return into
}

func ratioOf(a, b int64) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// worstLatency combines per-step summaries conservatively: the largest of each quantile.
func worstLatency(ls []harness.Latency) harness.Latency {
	var out harness.Latency
	for _, l := range ls {
		out.Count += l.Count
		out.P50 = max(out.P50, l.P50)
		out.P95 = max(out.P95, l.P95)
		out.P99 = max(out.P99, l.P99)
		out.Max = max(out.Max, l.Max)
	}
	return out
}

func throughputRatios(vs []VariantThroughput) []Ratio {
	var im *VariantThroughput
	for i := range vs {
		if vs[i].Variant.IM {
			im = &vs[i]
		}
	}
	if im == nil {
		return nil
	}
	var out []Ratio
	for _, ref := range vs {
		if ref.Variant.IM {
			continue
		}
		for _, s := range im.Steps {
			i := slices.IndexFunc(ref.Steps, func(r StepResult) bool { return r.Rate == s.Rate })
			if i < 0 {
				continue
			}
			r := ref.Steps[i]
			out = append(out, Ratio{
				Rate: s.Rate, Against: ref.Variant.Name,
				CPUPerMessage: divide(s.CPUPerMessage, r.CPUPerMessage),
				RSSAvg:        divide(float64(s.Usage.RSSAvg), float64(r.Usage.RSSAvg)),
				RSSMax:        divide(float64(s.Usage.RSSMax), float64(r.Usage.RSSMax)),
			})
		}
	}
	return out
}

// MemoryOptions configure the memory scenario.
type MemoryOptions struct {
	// InFlight is the number of messages left in flight (sent up to push, never acked).
	InFlight int64
	Rate     float64
	Variants []Variant
	Signals  sender.Signals
	Protocol string
	Workers  int
	Seed     uint64
	// HoldSamples is how many resource samples are taken once everything is in flight.
	HoldSamples int
	// Deadline bounds the wait for all messages to be in flight.
	Deadline time.Duration
}

// DefaultMemory holds one million messages in flight.
func DefaultMemory() MemoryOptions {
	return MemoryOptions{
		InFlight: 1_000_000, Rate: 10_000, Variants: AllVariants, Protocol: "grpc", Workers: 4,
		Seed: 2000, HoldSamples: 5, Deadline: 5 * time.Minute,
	}
}

// VariantMemory is the memory of one pipeline.
type VariantMemory struct {
	Variant  Variant `json:"variant"`
	Messages int64   `json:"messages"`
	Items    int64   `json:"items"`
	// Tracked is im_loss's tracked_messages gauge once everything is in flight.
	Tracked float64 `json:"tracked_messages,omitempty"`
	// IdleRSS is the resident memory before the load.
	IdleRSS uint64        `json:"idle_rss_bytes"`
	Load    harness.Usage `json:"load"`
	Hold    harness.Usage `json:"hold"`
	// CPUPerMessage is over the load phase, in microseconds.
	CPUPerMessage float64     `json:"cpu_per_message_us"`
	Settle        settleState `json:"settle"`
}

// MemoryResult is the memory scenario's result.
type MemoryResult struct {
	Options  MemoryOptions   `json:"-"`
	Variants []VariantMemory `json:"variants"`
	Ratios   []Ratio         `json:"ratios"`
	// BytesPerInFlight is (im hold RSS - baseline hold RSS) / in-flight messages.
	BytesPerInFlight float64 `json:"bytes_per_in_flight_message"`
}

// Memory leaves InFlight messages in flight in each variant and measures resident memory.
func Memory(tb testing.TB, o MemoryOptions) *MemoryResult {
	tb.Helper()
	ctx := context.Background()
	res := &MemoryResult{Options: o}
	// Deadlines far beyond the scenario keep every message in flight; the limit leaves room.
	imTimeouts := faults.Timeouts{AckTimeout: 2 * time.Hour, OfflineTimeout: 3 * time.Hour, ReorderWindow: 10 * time.Second, TickInterval: time.Second, Margin: 2 * time.Second}
	for _, v := range o.Variants {
		env := map[string]string{}
		if v.IM {
			env = timeoutEnv(imTimeouts)
			env[EnvMaxTracked] = strconv.FormatInt(o.InFlight+o.InFlight/10+1000, 10)
		}
		sink, col := startSinkAndCollector(tb, "memory-"+v.Name, v.Config, env, harness.SinkOptions{})
		wc := workload.DefaultConfig()
		wc.Seed, wc.Rate, wc.Messages, wc.OfflineShare = o.Seed, o.Rate, o.InFlight, 0
		// Enough conversations that none reaches im_loss's per-conversation limit.
		wc.SingleConversations, wc.GroupConversations = 5000, 500
		vm := VariantMemory{Variant: v}
		idle := time.Now()
		col.Monitor.Record(idle)
		vm.IdleRSS = col.Usage(idle, idle).RSSMax
		begin := time.Now()
		lr := startLoad(ctx, tb, Load{
			Workload: wc, Faults: map[faults.Class]float64{faults.ClassLossPush: 1}, Timeouts: imTimeouts,
			Sender: sender.Config{Endpoint: col.Endpoints.OTLPGRPC, Protocol: o.Protocol, Signals: o.Signals, Workers: o.Workers},
		})
		stats, err := lr.run.Wait()
		if err != nil {
			tb.Fatalf("%s: load: %v", v.Name, err)
		}
		sent, accepted, _, _ := stats.Items()
		vm.Messages, vm.Items = stats.Messages, sent
		vm.Settle = settle(ctx, single(col), sink, settleCondition{lifecycle: accepted}, o.Deadline)
		if v.IM {
			wctx, cancel := context.WithTimeout(ctx, o.Deadline)
			err = testcollector.Eventually(wctx, 500*time.Millisecond, func() error {
				fams, terr := col.Telemetry(wctx)
				if terr != nil {
					return terr
				}
				vm.Tracked = fams.Sum(trackedMetric, nil)
				if vm.Tracked < float64(o.InFlight) {
					return fmt.Errorf("im_loss follows %.0f of %d messages", vm.Tracked, o.InFlight)
				}
				return nil
			})
			cancel()
			if err != nil {
				tb.Errorf("%s: %v", v.Name, err)
			}
		}
		loaded := time.Now()
		col.Monitor.Record(loaded)
		vm.Load = col.Usage(begin, loaded)
		vm.CPUPerMessage = divide(vm.Load.CPUSeconds*1e6, float64(stats.Messages))
		// Hold: let the monitor take its samples with everything in flight.
		hctx, cancel := context.WithTimeout(ctx, time.Duration(o.HoldSamples+5)*2*time.Second)
		err = testcollector.Eventually(hctx, 100*time.Millisecond, func() error {
			if n := col.Usage(loaded, time.Now()).Samples; n < o.HoldSamples {
				return fmt.Errorf("%d of %d hold samples", n, o.HoldSamples)
			}
			return nil
		})
		cancel()
		if err != nil {
			tb.Errorf("%s: %v", v.Name, err)
		}
		vm.Hold = col.Usage(loaded, time.Now())
		tb.Logf("memory %s: %d messages in flight, rss hold avg %d MiB max %d MiB (idle %d MiB), cpu %.1f µs/msg",
			v.Name, vm.Messages, vm.Hold.RSSAvg>>20, vm.Hold.RSSMax>>20, vm.IdleRSS>>20, vm.CPUPerMessage)
		// The measurement is over. A graceful stop would make im_loss decide every message in
		// flight as lost, which is not what this scenario measures.
		col.Kill()
		sink.Stop()
		res.Variants = append(res.Variants, vm)
	}
	var im, base *VariantMemory
	for i := range res.Variants {
		switch {
		case res.Variants[i].Variant.IM:
			im = &res.Variants[i]
		case res.Variants[i].Variant.Name == VariantBaseline.Name:
			base = &res.Variants[i]
		}
	}
	if im != nil {
		for _, ref := range res.Variants {
			if ref.Variant.IM {
				continue
			}
			res.Ratios = append(res.Ratios, Ratio{
				Against:       ref.Variant.Name,
				CPUPerMessage: divide(im.CPUPerMessage, ref.CPUPerMessage),
				RSSAvg:        divide(float64(im.Hold.RSSAvg), float64(ref.Hold.RSSAvg)),
				RSSMax:        divide(float64(im.Hold.RSSMax), float64(ref.Hold.RSSMax)),
			})
		}
		if base != nil && im.Messages > 0 {
			res.BytesPerInFlight = (float64(im.Hold.RSSAvg) - float64(base.Hold.RSSAvg)) / float64(im.Messages)
		}
	}
	return res
}
