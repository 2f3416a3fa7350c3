package scenarios

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	// late event arrives first) needs a single export worker, and late_message, whose
	// keep-alive (clean messages every 50 ms after the step until the watermark has passed
	// the last late message's window: about 15 s at these timeouts) would stretch every step
	// with a slow tail that its rate and CPU per message would count.
	FaultProbability float64
	Timeouts         faults.Timeouts
	Seed             uint64
	// SettleDeadline bounds the wait for a step's items to reach the sink.
	SettleDeadline time.Duration
	// StopAtFirstFailure ends a variant's steps at the first step with drops or lag.
	StopAtFirstFailure bool
	// Scaling lists CPU counts: for each, the IM pipeline climbs ScalingRates again on a fresh
	// collector pinned with taskset to that many CPUs, with GOMAXPROCS set to match. Empty, or
	// no IM variant: no scaling table.
	Scaling      []int
	ScalingRates []float64
	ScalingStep  time.Duration
	// Profile runs one more step of the IM pipeline at its highest zero-drop rate, after its
	// ladder (so profiling does not weigh on the measured steps), and reads a CPU and an alloc
	// profile from its pprof extension during it.
	Profile bool
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
		Scaling:            []int{1, 2},
		ScalingRates:       []float64{2000, 4000, 6000, 8000, 12000},
		ScalingStep:        10 * time.Second,
		Profile:            true,
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
	// Forced is the verdicts im_loss made at max_source_lag rather than by its watermark: a few
	// at the end of every step (the sources fall silent, the last deadlines pass only at the
	// cap), many more when the watermark lagged during the step; IM only.
	Forced float64 `json:"forced_decisions,omitempty"`
	// Misjudged is the false and missed outcome labels among the step's messages (outcome
	// records as traces); IM ladders that validate only, -1 elsewhere.
	Misjudged int64 `json:"misjudged_labels"`
	// MisjudgedExamples names the first of them: a step that kept up should have none, and
	// the run-wide examples would mostly be a saturated step's.
	MisjudgedExamples []string `json:"misjudged_examples,omitempty"`
}

const forcedMetric = "otelcol_processor_im_loss_forced_decisions_total"

// VariantThroughput is the throughput of one pipeline.
type VariantThroughput struct {
	Variant Variant      `json:"variant"`
	Steps   []StepResult `json:"steps"`
	// MaxZeroDropRate is the highest step with no drops that the pipeline kept up with.
	MaxZeroDropRate float64 `json:"max_zero_drop_rate"`
	// Saturated is set when a step failed (drops or lag): the pipeline's limit lies between
	// MaxZeroDropRate and that step. Unset, every step passed and the limit is above the ladder.
	Saturated bool `json:"saturated"`
	// Validations cover every step, per outcome signal (IM pipeline only).
	Validations harness.Validations `json:"validations,omitempty"`
	// Profile is the IM pipeline's profiled step (ThroughputOptions.Profile).
	Profile *ProfileCapture `json:"profile,omitempty"`
	// Affinity is the CPU list the collector process was allowed (Cpus_allowed_list).
	Affinity string `json:"affinity,omitempty"`
}

// ProfileCapture is one more step of the IM pipeline at its highest zero-drop rate, during
// which a CPU and an alloc profile were read from the collector's pprof extension.
type ProfileCapture struct {
	Rate float64 `json:"rate"`
	// Seconds is how long each profile covers, from the step's start.
	Seconds int `json:"seconds"`
	// Step is the profiled step itself; its CPU per message includes profiling's overhead,
	// so the ladder's step at the same rate is the one to quote.
	Step  StepResult              `json:"step"`
	CPU   *harness.ProfileSummary `json:"cpu,omitempty"`
	Alloc *harness.ProfileSummary `json:"alloc,omitempty"`
	// Problems say why a profile is missing.
	Problems []string `json:"problems,omitempty"`
}

// ProfileTop is how many functions a profile summary lists.
const ProfileTop = 10

// ProfileFocus are the packages whose share of each profile is reported: the IM pipeline's
// own components, the exporters' compression, the OTLP gRPC codec and handlers (receiving and
// exporting alike) and the exporter helper (queue, sending).
var ProfileFocus = []string{
	"imcol/processors/imlossprocessor", "imcol/connectors/sloconnector", "compress/", "batchprocessor",
	"pdata/internal/otelgrpc", "exporter/exporterhelper",
}

// ThroughputResult is the throughput scenario's result.
type ThroughputResult struct {
	Options  ThroughputOptions   `json:"-"`
	Variants []VariantThroughput `json:"variants"`
	Ratios   []Ratio             `json:"ratios"`
	Criteria Criteria            `json:"criteria"`
	Scaling  *Scaling            `json:"scaling,omitempty"`
}

// Throughput steps the rate up for each variant, each on a fresh collector, with the same
// seeds so every variant gets the same load, the variants' steps in lockstep (climb); then,
// with an IM variant, the scaling ladders, in lockstep too.
func Throughput(tb testing.TB, o ThroughputOptions) *ThroughputResult {
	tb.Helper()
	res := &ThroughputResult{Options: o}
	hasIM := false
	var runs []*ladderRun
	for _, v := range o.Variants {
		runs = append(runs, startLadder(tb, o, v, ladder{
			name: "throughput-" + v.Name, rates: o.Rates, step: o.StepDuration,
			validate: v.IM, profile: v.IM && o.Profile,
		}))
		hasIM = hasIM || v.IM
	}
	res.Variants = climb(tb, o, runs)
	res.Ratios = throughputRatios(res.Variants)
	res.Criteria = throughputCriteria(res.Variants)
	if hasIM && len(o.Scaling) > 0 {
		res.Scaling = scaling(tb, o)
	}
	return res
}

// ladder is one climb of the rates on one fresh collector.
type ladder struct {
	name  string
	rates []float64
	step  time.Duration
	// cpus and procs pin the collector (harness.Spec.CPUs, GOMAXPROCS).
	cpus  string
	procs int
	// validate compares every outcome record with the truth at the end (IM only).
	validate bool
	// profile adds the profiled step (IM only).
	profile bool
}

// ladderRun is a ladder in progress: its collector and sink, its steps so far, and the loads
// sent (the truth the IM pipeline's records are validated against).
type ladderRun struct {
	l     ladder
	v     Variant
	sink  *harness.Sink
	col   *harness.Collector
	vt    VariantThroughput
	books []*loadRun
	done  bool
}

func startLadder(tb testing.TB, o ThroughputOptions, v Variant, l ladder) *ladderRun {
	tb.Helper()
	env := map[string]string{}
	if v.IM {
		env = timeoutEnv(o.Timeouts)
	}
	sink, col := startSinkAndCollectorSpec(tb, v.Config, harness.Spec{Name: l.name, Env: env, CPUs: l.cpus, GOMAXPROCS: l.procs},
		harness.SinkOptions{KeepRecords: l.validate})
	return &ladderRun{l: l, v: v, sink: sink, col: col, vt: VariantThroughput{Variant: v, Affinity: col.Affinity()}}
}

// step runs the ladder's i-th step, unless the ladder is over.
func (r *ladderRun) step(ctx context.Context, tb testing.TB, o ThroughputOptions, i int) {
	if r.done || i >= len(r.l.rates) {
		r.done = true
		return
	}
	rate := r.l.rates[i]
	step, lr := throughputStep(ctx, tb, o, r.v, r.col, r.sink, rate, o.Seed+uint64(i), r.l.step, nil)
	r.books = append(r.books, lr)
	r.vt.Steps = append(r.vt.Steps, step)
	if step.Drops == 0 && step.KeptUp {
		r.vt.MaxZeroDropRate = rate
		return
	}
	r.vt.Saturated = true
	r.done = o.StopAtFirstFailure
}

// finish runs the profiled step, validates the records (IM) and stops the collector.
func (r *ladderRun) finish(ctx context.Context, tb testing.TB, o ThroughputOptions) VariantThroughput {
	vt := &r.vt
	if r.l.profile && vt.MaxZeroDropRate > 0 {
		pc, lr := profiledStep(ctx, tb, o, r.v, r.col, r.sink, vt.MaxZeroDropRate, o.Seed+uint64(len(r.l.rates)), r.l.step)
		vt.Profile = pc
		r.books = append(r.books, lr)
	}
	if r.l.validate {
		// Every message of every step must be decided before the records can be compared.
		var want int64
		for _, lr := range r.books {
			want += expectedAllSignals(lr.book)
		}
		settle(ctx, single(r.col), r.sink, settleCondition{minRecords: want, idle: true}, o.Timeouts.OfflineTimeout+o.SettleDeadline)
		records := r.sink.Records()
		for _, sig := range outcomeSignals {
			var mine []harness.Record
			for _, rec := range records {
				if rec.Signal == sig {
					mine = append(mine, rec)
				}
			}
			v, perRun, examples := validateSteps(r.books, mine)
			v.Signal = sig
			vt.Validations = append(vt.Validations, *v)
			if sig != outcomeSignals[0] {
				continue
			}
			// The books are the steps in order, then the profiled step.
			for i, n := range perRun {
				switch {
				case i < len(vt.Steps):
					vt.Steps[i].Misjudged, vt.Steps[i].MisjudgedExamples = n, examples[i]
				case vt.Profile != nil:
					vt.Profile.Step.Misjudged, vt.Profile.Step.MisjudgedExamples = n, examples[i]
				}
			}
		}
	}
	if err := r.col.Stop(); err != nil {
		tb.Errorf("%s: %v", r.l.name, err)
	}
	r.sink.Stop()
	return *vt
}

// climb runs the ladders in lockstep: step i of every ladder before step i+1 of any, the
// order rotating at each step. On a shared machine a burst of load from elsewhere then lands
// on neighbouring steps of every pipeline instead of on one pipeline's whole ladder; the
// ladders' collectors that are not measuring sit idle meanwhile. Then each ladder finishes,
// those without a profile or validation first.
func climb(tb testing.TB, o ThroughputOptions, runs []*ladderRun) []VariantThroughput {
	ctx := context.Background()
	steps := 0
	for _, r := range runs {
		steps = max(steps, len(r.l.rates))
	}
	for i := range steps {
		for j := range runs {
			runs[(i+j)%len(runs)].step(ctx, tb, o, i)
		}
	}
	out := make([]VariantThroughput, len(runs))
	for _, last := range []bool{false, true} {
		for i, r := range runs {
			if (r.l.profile || r.l.validate) == last {
				out[i] = r.finish(ctx, tb, o)
			}
		}
	}
	return out
}

// throughputStep sends one step's load at rate and measures it until every item reached the
// sink. during, when set, runs alongside the load (the profiles).
func throughputStep(ctx context.Context, tb testing.TB, o ThroughputOptions, v Variant, col *harness.Collector, sink *harness.Sink,
	rate float64, seed uint64, dur time.Duration, during func(),
) (StepResult, *loadRun) {
	probs := map[faults.Class]float64{}
	for _, c := range faults.Faults {
		if c != faults.ClassLateEvents && c != faults.ClassLateMessage {
			probs[c] = o.FaultProbability
		}
	}
	wc := workload.DefaultConfig()
	wc.Seed, wc.Rate = seed, rate
	wc.Messages = int64(rate * dur.Seconds())
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
	if during != nil {
		during()
	}
	stats, err := lr.run.Wait()
	if err != nil {
		tb.Fatalf("%s: load: %v", v.Name, err)
	}
	sent, accepted, rejected, failed := stats.Items()
	cond, deadline := settleCondition{lifecycle: spans0 + logs0 - out0 + accepted}, o.SettleDeadline
	if v.IM {
		// The step ends when im_loss has decided all its messages and their outcome records
		// reached the sink: its CPU then covers the whole of its own work, which in lockstep
		// (climb) no other step of the ladder would pick up. With every source idle the last
		// deadlines pass only at max_source_lag.
		t := o.Timeouts.WithDefaults()
		cond.idle, deadline = true, deadline+t.OfflineTimeout+t.MaxSourceLag
	}
	st := settle(ctx, single(col), sink, cond, deadline)
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
		Forced: after.Sum(forcedMetric, nil) - before.Sum(forcedMetric, nil), Misjudged: -1,
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
	tb.Logf("throughput %s (%s) %.0f msg/s: %d messages, %d items, cpu %.1f µs/msg, rss max %d MiB, drops %d, lag %s, forced verdicts %.0f",
		v.Name, col.Name(), rate, stats.Messages, sent, step.CPUPerMessage, step.Usage.RSSMax>>20, step.Drops, step.MaxLag, step.Forced)
	return step, lr
}

// profiledStep runs one more step at rate while reading a CPU profile and an alloc profile
// (the allocations of the window, pprof's delta) over all but the last second of the load.
func profiledStep(ctx context.Context, tb testing.TB, o ThroughputOptions, v Variant, col *harness.Collector, sink *harness.Sink,
	rate float64, seed uint64, dur time.Duration,
) (*ProfileCapture, *loadRun) {
	pc := &ProfileCapture{Rate: rate, Seconds: max(1, int(dur.Seconds())-1)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	fetch := func(path, sampleType string, into **harness.ProfileSummary) {
		defer wg.Done()
		pctx, cancel := context.WithTimeout(ctx, time.Duration(pc.Seconds)*time.Second+o.SettleDeadline)
		defer cancel()
		p, err := harness.FetchProfile(pctx, col.Endpoints.PprofURL(fmt.Sprintf("%s?seconds=%d", path, pc.Seconds)))
		var sum harness.ProfileSummary
		if err == nil {
			sum, err = harness.SummarizeProfile(p, sampleType, ProfileTop, ProfileFocus...)
		}
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			pc.Problems = append(pc.Problems, fmt.Sprintf("%s profile: %v", path, err))
			return
		}
		*into = &sum
	}
	step, lr := throughputStep(ctx, tb, o, v, col, sink, rate, seed, dur, func() {
		wg.Add(2)
		go fetch("profile", "cpu", &pc.CPU)
		go fetch("allocs", "alloc_space", &pc.Alloc)
	})
	wg.Wait()
	pc.Step = step
	for _, p := range pc.Problems {
		tb.Errorf("%s: %s", v.Name, p)
	}
	return pc, lr
}

// validateSteps validates each step's records against its own truth (steps differ by seed)
// and adds the results up; perRun is each step's false and missed labels, examples the first
// stepExamples mismatches of each step.
func validateSteps(runs []*loadRun, records []harness.Record) (total *harness.Validation, perRun []int64, examples [][]string) {
	total = &harness.Validation{Confusion: map[string]map[string]int64{}}
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
		var wrong int64
		for _, c := range v.Classes {
			wrong += c.FP + c.FN
		}
		perRun = append(perRun, wrong)
		examples = append(examples, v.Examples[:min(stepExamples, len(v.Examples))])
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
	return total, perRun, examples
}

// stepExamples is how many mismatches a step's result names.
const stepExamples = 5

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

// Verdicts of a criterion.
const (
	VerdictMet          = "met"
	VerdictNotMet       = "not met"
	VerdictNotEvaluated = "not evaluated"
)

// The criteria of the throughput issue (#12), against the baseline of the same run.
const (
	// ZeroDropThreshold: the IM pipeline's highest zero-drop rate is at least this share of
	// the baseline's.
	ZeroDropThreshold = 0.95
	// CPUThreshold: the IM pipeline's CPU per message is at most this multiple of the
	// baseline's at every step up to the baseline's saturation.
	CPUThreshold = 1.10
	// ratioTolerance keeps a ratio equal to a threshold from failing on floating-point noise.
	ratioTolerance = 1e-9
)

// Criteria are the criteria, each met or not with its numbers. The benchmark reports
// them; it does not fail on them.
type Criteria struct {
	ZeroDrop ZeroDropCriterion `json:"zero_drop_rate"`
	CPU      CPUCriterion      `json:"cpu_per_message"`
}

// ZeroDropCriterion: IM pipeline zero-drop rate ≥ 0.95× the baseline's in the same run.
type ZeroDropCriterion struct {
	Verdict   string  `json:"verdict"`
	IM        float64 `json:"im_rate"`
	Baseline  float64 `json:"baseline_rate"`
	Ratio     float64 `json:"ratio"`
	Threshold float64 `json:"threshold"`
	// Note qualifies the figures (a ladder that never saturated, a missing pipeline).
	Note string `json:"note,omitempty"`
}

// CPUCriterion: CPU per message ≤ 1.10× the baseline at every step up to the baseline's
// saturation (its highest zero-drop step).
type CPUCriterion struct {
	Verdict    string  `json:"verdict"`
	Threshold  float64 `json:"threshold"`
	Saturation float64 `json:"baseline_saturation_rate"`
	// Steps are the baseline's steps up to its saturation, each with the IM pipeline's.
	Steps []CPUStepCheck `json:"steps"`
	// Worst is the highest ratio among the steps, at WorstRate.
	Worst     float64 `json:"worst_ratio"`
	WorstRate float64 `json:"worst_rate"`
	Note      string  `json:"note,omitempty"`
}

// CPUStepCheck is one step of the CPU criterion, in µs per message.
type CPUStepCheck struct {
	Rate     float64 `json:"rate"`
	IM       float64 `json:"im_cpu_per_message_us"`
	Baseline float64 `json:"baseline_cpu_per_message_us"`
	Ratio    float64 `json:"ratio"`
	Met      bool    `json:"met"`
	// Missing: the IM pipeline has no step at this rate (its ladder stopped before).
	Missing bool `json:"missing,omitempty"`
}

func throughputCriteria(vs []VariantThroughput) Criteria {
	c := Criteria{
		ZeroDrop: ZeroDropCriterion{Verdict: VerdictNotEvaluated, Threshold: ZeroDropThreshold},
		CPU:      CPUCriterion{Verdict: VerdictNotEvaluated, Threshold: CPUThreshold},
	}
	var im, base *VariantThroughput
	for i := range vs {
		switch {
		case vs[i].Variant.IM:
			im = &vs[i]
		case vs[i].Variant.Name == VariantBaseline.Name:
			base = &vs[i]
		}
	}
	if im == nil || base == nil {
		c.ZeroDrop.Note = "needs the im and baseline pipelines in the run"
		c.CPU.Note = c.ZeroDrop.Note
		return c
	}
	z := &c.ZeroDrop
	z.IM, z.Baseline = im.MaxZeroDropRate, base.MaxZeroDropRate
	c.CPU.Saturation = base.MaxZeroDropRate
	if base.MaxZeroDropRate == 0 {
		z.Note = "the baseline passed no step"
		c.CPU.Note = z.Note
		return c
	}
	z.Ratio = im.MaxZeroDropRate / base.MaxZeroDropRate
	z.Verdict = VerdictNotMet
	if z.Ratio >= ZeroDropThreshold-ratioTolerance {
		z.Verdict = VerdictMet
	}
	var notes []string
	if !base.Saturated {
		notes = append(notes, "the baseline passed every step: its limit is above the ladder")
	}
	if !im.Saturated {
		notes = append(notes, "the IM pipeline passed every step: its limit is above the ladder")
	}
	if len(notes) > 0 {
		z.Note = strings.Join(notes, "; ")
	} else {
		z.Note = "resolution is the ladder's: each rate is the highest step passed"
	}
	cpu := &c.CPU
	cpu.Verdict = VerdictMet
	for _, b := range base.Steps {
		if b.Rate > base.MaxZeroDropRate {
			continue
		}
		chk := CPUStepCheck{Rate: b.Rate, Baseline: b.CPUPerMessage}
		i := slices.IndexFunc(im.Steps, func(s StepResult) bool { return s.Rate == b.Rate })
		if i < 0 {
			chk.Missing = true
		} else {
			chk.IM = im.Steps[i].CPUPerMessage
			chk.Ratio = divide(chk.IM, chk.Baseline)
			chk.Met = chk.Baseline > 0 && chk.IM > 0 && chk.Ratio <= CPUThreshold+ratioTolerance
		}
		if !chk.Met {
			cpu.Verdict = VerdictNotMet
		}
		if chk.Ratio > cpu.Worst {
			cpu.Worst, cpu.WorstRate = chk.Ratio, chk.Rate
		}
		cpu.Steps = append(cpu.Steps, chk)
	}
	if slices.ContainsFunc(cpu.Steps, func(s CPUStepCheck) bool { return s.Missing }) {
		cpu.Note = "the IM pipeline stopped before some of the baseline's zero-drop steps: not met at those"
	}
	return c
}

// Scaling is the IM pipeline pinned to 1, 2, ... CPUs, with GOMAXPROCS to match.
type Scaling struct {
	Rates []float64    `json:"rates"`
	Step  string       `json:"step"`
	Rows  []ScalingRow `json:"rows"`
	// Ratios compare each row with the first (the fewest CPUs).
	Ratios []ScalingRatio `json:"ratios"`
}

// ScalingRow is one climb of the ladder on a given number of CPUs.
type ScalingRow struct {
	CPUs       int `json:"cpus"`
	GOMAXPROCS int `json:"gomaxprocs"`
	// CPUList is what the collector was pinned to (taskset -c); Affinity is the
	// Cpus_allowed_list its process had.
	CPUList  string `json:"cpu_list,omitempty"`
	Affinity string `json:"affinity"`
	Pinned   bool   `json:"pinned"`
	// PinProblem says why the collector ran unpinned (GOMAXPROCS still set).
	PinProblem      string       `json:"pin_problem,omitempty"`
	Steps           []StepResult `json:"steps"`
	MaxZeroDropRate float64      `json:"max_zero_drop_rate"`
	Saturated       bool         `json:"saturated"`
	// CPUPerMessage is at the highest zero-drop step, in µs.
	CPUPerMessage float64 `json:"cpu_per_message_us"`
	// RatePerCore is MaxZeroDropRate per CPU.
	RatePerCore float64 `json:"rate_per_core"`
}

// ScalingRatio compares a row with one of fewer CPUs: Rate and PerCore divide the highest
// zero-drop rates (total and per core: 1 per core is linear scaling), CPUPerMessage the CPU
// per message at those steps.
type ScalingRatio struct {
	CPUs          int     `json:"cpus"`
	Against       int     `json:"against_cpus"`
	Rate          float64 `json:"rate"`
	PerCore       float64 `json:"per_core"`
	CPUPerMessage float64 `json:"cpu_per_message"`
}

// scaling climbs ScalingRates with the IM pipeline once per entry of o.Scaling, pinned to the
// first that many CPUs this process may use. Without taskset, or with fewer CPUs, the row runs
// unpinned and says why.
func scaling(tb testing.TB, o ThroughputOptions) *Scaling {
	tb.Helper()
	sc := &Scaling{Rates: o.ScalingRates, Step: o.ScalingStep.String()}
	_, tasksetErr := harness.TasksetPath()
	allowed, allowedErr := harness.AllowedCPUs()
	var runs []*ladderRun
	for _, n := range o.Scaling {
		row := ScalingRow{CPUs: n, GOMAXPROCS: n}
		switch {
		case tasksetErr != nil:
			row.PinProblem = tasksetErr.Error()
		case allowedErr != nil:
			row.PinProblem = allowedErr.Error()
		default:
			list, err := harness.FirstCPUs(allowed, n)
			if err != nil {
				row.PinProblem = err.Error()
			} else {
				row.CPUList, row.Pinned = list, true
			}
		}
		if row.PinProblem != "" {
			tb.Logf("scaling %d CPUs: running unpinned: %s", n, row.PinProblem)
		}
		runs = append(runs, startLadder(tb, o, VariantIM, ladder{
			name: fmt.Sprintf("scaling-%dcpu", n), rates: o.ScalingRates, step: o.ScalingStep,
			cpus: row.CPUList, procs: n,
		}))
		sc.Rows = append(sc.Rows, row)
	}
	for i, vt := range climb(tb, o, runs) {
		row := &sc.Rows[i]
		row.Steps, row.MaxZeroDropRate, row.Saturated = vt.Steps, vt.MaxZeroDropRate, vt.Saturated
		row.Affinity = vt.Affinity
		scalingFigures(row)
	}
	sc.Ratios = scalingRatios(sc.Rows)
	return sc
}

func scalingFigures(row *ScalingRow) {
	row.RatePerCore = divide(row.MaxZeroDropRate, float64(row.CPUs))
	if i := slices.IndexFunc(row.Steps, func(s StepResult) bool { return s.Rate == row.MaxZeroDropRate }); i >= 0 && row.MaxZeroDropRate > 0 {
		row.CPUPerMessage = row.Steps[i].CPUPerMessage
	}
}

func scalingRatios(rows []ScalingRow) []ScalingRatio {
	if len(rows) < 2 {
		return nil
	}
	first := rows[0]
	var out []ScalingRatio
	for _, r := range rows[1:] {
		out = append(out, ScalingRatio{
			CPUs: r.CPUs, Against: first.CPUs,
			Rate:          divide(r.MaxZeroDropRate, first.MaxZeroDropRate),
			PerCore:       divide(r.RatePerCore, first.RatePerCore),
			CPUPerMessage: divide(r.CPUPerMessage, first.CPUPerMessage),
		})
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
