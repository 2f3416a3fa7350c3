package main

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/imcol/imcol/testbed/configs"
	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/scenarios"
)

func mib(b uint64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) }

func markdown(r report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# imcol testbed: %s (%s)\n\n", r.Scenario, r.Date)
	if r.Quick {
		b.WriteString("> Quick run (`imbench -quick`): small sizes that prove the scenario works. Do not quote these figures.\n\n")
	}
	fmt.Fprintf(&b, "Took %s. How to read this report: testbed/README.md.\n\n", r.Took)
	if r.LoadAtEnd != "" {
		fmt.Fprintf(&b, "Load average at the end: %s (at the start: %s; the machine has %d CPUs).\n\n", r.LoadAtEnd, r.Env.SharedLoad, r.Env.CPUs)
	}
	if r.Problems != "" {
		fmt.Fprintf(&b, "**Problems while running:**\n\n```\n%s\n```\n\n", r.Problems)
	}
	writeEnv(&b, r.Env)
	var used []string
	switch res := r.Result.(type) {
	case *scenarios.CorrectnessResult:
		used = []string{"correctness"}
		writeCorrectness(&b, res)
	case *scenarios.ThroughputResult:
		for _, v := range res.Variants {
			used = append(used, v.Variant.Config)
		}
		writeThroughput(&b, res)
	case *scenarios.MemoryResult:
		for _, v := range res.Variants {
			used = append(used, v.Variant.Config)
		}
		writeMemory(&b, res)
	case []*scenarios.RestartResult:
		used = []string{"restart"}
		writeRestart(&b, res)
	case *scenarios.OutageResult:
		used = []string{"backend-outage"}
		writeOutage(&b, res)
	case []*scenarios.LagResult:
		used = []string{"correctness", "stall"}
		writeLag(&b, res)
	case *scenarios.DeadServiceResult:
		used = []string{"correctness"}
		writeDeadService(&b, res)
	}
	if r.Scenario != "throughput" && r.Scenario != "memory" {
		fmt.Fprintf(&b, "\nCPU-per-message and RSS ratios of the IM pipeline against baseline and peer, measured in the same run: %s-throughput.md and %s-memory.md.\n", r.Date, r.Date)
	}
	writeConfigs(&b, used)
	return b.String()
}

func writeEnv(b *strings.Builder, e environment) {
	b.WriteString("## Machine and versions\n\n| | |\n|---|---|\n")
	fmt.Fprintf(b, "| CPUs | %d (%s) |\n| Memory | %d MiB |\n| OS | %s, kernel %s |\n| Go | %s |\n| Collector | %s |\n| Load average at start | %s |\n\n",
		e.CPUs, e.CPUModel, e.MemoryMiB, e.OS, e.Kernel, e.Go, strings.ReplaceAll(e.Collector, "\n", " "), e.SharedLoad)
	b.WriteString("The load generator, the sink and the collector share these CPUs; CPU and RSS are the collector process's own.\n\n")
}

// writeQualities writes each signal's validation under its own heading.
func writeQualities(b *strings.Builder, vs harness.Validations, level string) {
	for i := range vs {
		fmt.Fprintf(b, "%s Outcome records as %s\n\n", level, vs[i].Signal)
		writeQuality(b, &vs[i])
	}
}

func writeQuality(b *strings.Builder, v *harness.Validation) {
	fmt.Fprintf(b, "%d messages, %d outcome records, %d unmatched records, %d repeated records.\n\n", v.Messages, v.Records, v.Unmatched, v.Repeats)
	b.WriteString("| outcome label | expected | TP | FP | FN | precision | recall | detection p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range v.Classes {
		fmt.Fprintf(b, "| %s | %d | %d | %d | %d | %.4f | %.4f | %.0f | %.0f | %.0f |\n",
			c.Label, c.Expected, c.TP, c.FP, c.FN, c.Precision, c.Recall, c.Latency.P50, c.Latency.P95, c.Latency.Max)
	}
	b.WriteString("\nConfusion of verdicts (rows: truth, columns: detected):\n\n")
	var rows, cols []string
	for exp, row := range v.Confusion {
		rows = append(rows, exp)
		for det := range row {
			if !slices.Contains(cols, det) {
				cols = append(cols, det)
			}
		}
	}
	sort.Strings(rows)
	sort.Strings(cols)
	b.WriteString("| truth \\ detected | " + strings.Join(cols, " | ") + " |\n|---|" + strings.Repeat("---:|", len(cols)) + "\n")
	for _, r := range rows {
		fmt.Fprintf(b, "| %s |", r)
		for _, c := range cols {
			fmt.Fprintf(b, " %d |", v.Confusion[r][c])
		}
		b.WriteString("\n")
	}
	b.WriteString("\n| fault class | messages | exactly right |\n|---|---:|---:|\n")
	for _, f := range v.Faults {
		fmt.Fprintf(b, "| %s | %d | %d |\n", f.Class, f.Messages, f.Exact)
	}
	if len(v.Examples) > 0 {
		b.WriteString("\nFirst mismatches:\n\n")
		for _, e := range v.Examples {
			fmt.Fprintf(b, "- %s\n", e)
		}
	}
	b.WriteString("\n")
}

func writeCorrectness(b *strings.Builder, r *scenarios.CorrectnessResult) {
	o := r.Options
	b.WriteString("## Settings\n\n")
	fmt.Fprintf(b, "%d messages at %.0f/s, every fault class with probability %.2f, signals %s over %s, seed %d.\n", o.Messages, o.Rate, o.FaultProbability, r.Signals, r.Protocol, o.Seed)
	fmt.Fprintf(b, "im_loss: ack_timeout %s, offline_timeout %s, reorder_window %s, tick_interval %s; fault margin %s.\n\n",
		o.Timeouts.AckTimeout, o.Timeouts.OfflineTimeout, o.Timeouts.ReorderWindow, o.Timeouts.TickInterval, o.Timeouts.Margin)
	if len(r.Collectors) > 0 {
		fmt.Fprintf(b, "Topology: one gateway running the shipped %s (load_balancing by `im.conversation.id`) in front of %d backends running testbed/configs/correctness.yaml; the load goes to the gateway, every backend exports to the sink. SLO and drop counters are summed over the collectors.\n\n", scenarios.GatewayConfig, len(r.Collectors)-1)
		b.WriteString("| collector | role | items accepted | im_loss outcomes | drops | CPU avg % | RSS max MiB |\n|---|---|---:|---:|---|---:|---:|\n")
		for _, c := range r.Collectors {
			drops := "none"
			if len(c.Drops) > 0 {
				drops = fmt.Sprint(c.Drops)
			}
			fmt.Fprintf(b, "| %s | %s | %.0f | %.0f | %s | %.0f | %s |\n", c.Name, c.Role, c.Accepted, c.Outcomes, drops, c.Usage.CPUAvg, mib(c.Usage.RSSMax))
		}
		b.WriteString("\n")
	}
	b.WriteString("## Detection quality\n\n")
	exact := r.Validations.Exact() && r.Settle.Settled && len(r.Drops) == 0
	for _, slo := range r.SLO {
		exact = exact && slo.Problem == ""
	}
	fmt.Fprintf(b, "Exact (precision = recall = 1 for every label in both signals, SLO counters equal to the truth, no drops): **%v**.\n\n", exact)
	writeQualities(b, r.Validations, "###")
	b.WriteString("| delivery SLO | events | truth | good events | truth | problem |\n|---|---:|---:|---:|---:|---|\n")
	for _, slo := range r.SLO {
		fmt.Fprintf(b, "| %s | %.0f | %d | %.0f | %d | %s |\n", slo.Name, slo.Events, slo.WantEvents, slo.Good, slo.WantGood, slo.Problem)
	}
	b.WriteString("\n")
	sent, acc, rej, failed := r.Sender.Items()
	fmt.Fprintf(b, "Items: %d sent, %d accepted, %d rejected, %d failed. Collector drop counters: %v. Settled after %s.\n\n", sent, acc, rej, failed, r.Drops, r.Settle.Waited)
	if len(r.Collectors) == 0 {
		fmt.Fprintf(b, "Collector: CPU avg %.0f%% max %.0f%%, RSS avg %s MiB max %s MiB.\n", r.Usage.CPUAvg, r.Usage.CPUMax, mib(r.Usage.RSSAvg), mib(r.Usage.RSSMax))
	}
}

func writeThroughput(b *strings.Builder, r *scenarios.ThroughputResult) {
	o := r.Options
	b.WriteString("## Settings\n\n")
	fmt.Fprintf(b, "Steps of %s at %v messages/s; %d export workers; signals %s; every fault class but late_events and late_message with probability %g. Each variant runs on a fresh collector with the same seeds, so all get the same load; the variants step in lockstep (step i of each, the order rotating, before step i+1 of any). An IM step lasts until im_loss decided all its messages.\n\n",
		o.StepDuration, o.Rates, o.Workers, o.Signals, o.FaultProbability)
	if len(o.Scaling) > 0 {
		fmt.Fprintf(b, "Scaling table: the IM pipeline alone, steps of %s at %v messages/s, once per CPU count %v, each on a fresh collector pinned with `taskset -c` and GOMAXPROCS set to the count.\n\n",
			o.ScalingStep, o.ScalingRates, o.Scaling)
	}
	b.WriteString("## Highest rate with zero drops\n\n| pipeline | messages/s | limit found | CPU µs/msg at it |\n|---|---:|---|---:|\n")
	for _, v := range r.Variants {
		limit := "yes (the next step failed)"
		if !v.Saturated {
			limit = "no (every step passed)"
		}
		fmt.Fprintf(b, "| %s | %.0f | %s | %s |\n", v.Variant.Name, v.MaxZeroDropRate, limit, cpuAt(v.Steps, v.MaxZeroDropRate))
	}
	b.WriteString("\n")
	writeCriteria(b, r.Criteria)
	b.WriteString("## Ratios of the IM pipeline (same run)\n\n")
	writeRatios(b, r.Ratios, true)
	b.WriteString("## Steps\n\n`forced`: verdicts im_loss made at max_source_lag rather than by its watermark (a few at the end of every step, when the sources fall silent and the last deadlines pass only at the cap; many more when the watermark lagged during the step, e.g. the generator that far behind schedule); `misjudged`: false and missed outcome labels among the step's messages (records as traces).\n\n")
	b.WriteString("| pipeline | target msg/s | achieved | messages | items | CPU avg % | CPU max % | CPU µs/msg | RSS avg MiB | RSS max MiB | drops | max lag | forced | misjudged |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, v := range r.Variants {
		for _, s := range v.Steps {
			forced, wrong := "-", "-"
			if v.Variant.IM {
				forced = fmt.Sprintf("%.0f", s.Forced)
			}
			if s.Misjudged >= 0 && v.Variant.IM {
				wrong = strconv.FormatInt(s.Misjudged, 10)
			}
			fmt.Fprintf(b, "| %s | %.0f | %.0f | %d | %d | %.0f | %.0f | %.1f | %s | %s | %d | %s | %s | %s |\n",
				v.Variant.Name, s.Rate, s.Achieved, s.Messages, s.Items, s.Usage.CPUAvg, s.Usage.CPUMax, s.CPUPerMessage,
				mib(s.Usage.RSSAvg), mib(s.Usage.RSSMax), s.Drops, s.MaxLag, forced, wrong)
		}
	}
	for _, v := range r.Variants {
		for _, s := range v.Steps {
			if s.Drops > 0 {
				fmt.Fprintf(b, "\n%s at %.0f/s dropped: %v", v.Variant.Name, s.Rate, s.DropDetail)
			}
		}
	}
	b.WriteString("\n\n")
	for _, v := range r.Variants {
		for _, s := range v.Steps {
			writeMisjudged(b, fmt.Sprintf("%s at %.0f msg/s", v.Variant.Name, s.Rate), s)
		}
	}
	if r.Scaling != nil {
		writeScaling(b, r.Scaling)
	}
	for _, v := range r.Variants {
		if v.Profile != nil {
			writeProfiles(b, v.Profile)
		}
	}
	for _, v := range r.Variants {
		if len(v.Validations) > 0 {
			b.WriteString("## Detection quality of the IM pipeline under load\n\n")
			if v.Profile != nil {
				b.WriteString("Every step of the ladder and the profiled step.\n\n")
			}
			writeQualities(b, v.Validations, "###")
		}
	}
}

// cpuAt is the CPU per message of the step at rate, or "-" when there is none.
func cpuAt(steps []scenarios.StepResult, rate float64) string {
	i := slices.IndexFunc(steps, func(s scenarios.StepResult) bool { return s.Rate == rate })
	if i < 0 || rate == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", steps[i].CPUPerMessage)
}

func writeCriteria(b *strings.Builder, c scenarios.Criteria) {
	b.WriteString("## Criteria of issue #12 (against the baseline of this run)\n\n")
	b.WriteString("The benchmark reports them; it fails on none.\n\n| criterion | verdict | figures |\n|---|---|---|\n")
	z := c.ZeroDrop
	fig := fmt.Sprintf("im %.0f msg/s, baseline %.0f msg/s: %.2f×", z.IM, z.Baseline, z.Ratio)
	if z.Note != "" {
		fig += " (" + z.Note + ")"
	}
	fmt.Fprintf(b, "| IM pipeline zero-drop rate ≥ %.2f× the baseline's | **%s** | %s |\n", z.Threshold, z.Verdict, fig)
	cp := c.CPU
	fig = fmt.Sprintf("baseline saturation %.0f msg/s; worst %.2f× at %.0f msg/s", cp.Saturation, cp.Worst, cp.WorstRate)
	if cp.Note != "" {
		fig += " (" + cp.Note + ")"
	}
	fmt.Fprintf(b, "| CPU per message ≤ %.2f× the baseline at every step up to its saturation | **%s** | %s |\n\n", cp.Threshold, cp.Verdict, fig)
	if len(cp.Steps) > 0 {
		b.WriteString("| msg/s | im CPU µs/msg | baseline CPU µs/msg | ratio | met |\n|---:|---:|---:|---:|---|\n")
		for _, s := range cp.Steps {
			if s.Missing {
				fmt.Fprintf(b, "| %.0f | no step | %.1f | - | no |\n", s.Rate, s.Baseline)
				continue
			}
			met := "no"
			if s.Met {
				met = "yes"
			}
			fmt.Fprintf(b, "| %.0f | %.1f | %.1f | %.2f× | %s |\n", s.Rate, s.IM, s.Baseline, s.Ratio, met)
		}
		b.WriteString("\n")
	}
}

func writeScaling(b *strings.Builder, sc *scenarios.Scaling) {
	fmt.Fprintf(b, "## Scaling of the IM pipeline by CPU\n\nSteps of %s at %v msg/s; each CPU count on a fresh collector pinned with `taskset -c` to that many CPUs, GOMAXPROCS set to match. The generator and the sink are not pinned: they share the machine's CPUs with it.\n\n", sc.Step, sc.Rates)
	b.WriteString("| CPUs | GOMAXPROCS | pinned to | process affinity | highest zero-drop msg/s | limit found | CPU µs/msg at it | msg/s per core |\n|---:|---:|---|---|---:|---|---:|---:|\n")
	for _, r := range sc.Rows {
		pinned := r.CPUList
		if !r.Pinned {
			pinned = "**not pinned**: " + r.PinProblem
		}
		limit := "yes"
		if !r.Saturated {
			limit = "no (every step passed)"
		}
		fmt.Fprintf(b, "| %d | %d | %s | %s | %.0f | %s | %.1f | %.0f |\n", r.CPUs, r.GOMAXPROCS, pinned, r.Affinity, r.MaxZeroDropRate, limit, r.CPUPerMessage, r.RatePerCore)
	}
	b.WriteString("\n")
	for _, rt := range sc.Ratios {
		fmt.Fprintf(b, "%d vs %d CPUs: highest zero-drop rate %.2f×, per core %.2f× (1.00× is linear scaling), CPU per message %.2f×.\n\n", rt.CPUs, rt.Against, rt.Rate, rt.PerCore, rt.CPUPerMessage)
	}
	b.WriteString("| CPUs | target msg/s | achieved | messages | CPU avg % | CPU max % | CPU µs/msg | RSS max MiB | drops | max lag |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range sc.Rows {
		for _, s := range r.Steps {
			fmt.Fprintf(b, "| %d | %.0f | %.0f | %d | %.0f | %.0f | %.1f | %s | %d | %s |\n",
				r.CPUs, s.Rate, s.Achieved, s.Messages, s.Usage.CPUAvg, s.Usage.CPUMax, s.CPUPerMessage, mib(s.Usage.RSSMax), s.Drops, s.MaxLag)
		}
	}
	for _, r := range sc.Rows {
		for _, s := range r.Steps {
			if s.Drops > 0 {
				fmt.Fprintf(b, "\n%d CPUs at %.0f/s dropped: %v", r.CPUs, s.Rate, s.DropDetail)
			}
		}
	}
	b.WriteString("\n\n")
}

// writeMisjudged names the first mismatches of a step that kept up: there should be none, so
// each is worth reading (a saturated step's are the lag's, summed up in the table).
func writeMisjudged(b *strings.Builder, what string, s scenarios.StepResult) {
	if !s.KeptUp || len(s.MisjudgedExamples) == 0 {
		return
	}
	fmt.Fprintf(b, "%s kept up and misjudged %d labels; the first:\n\n", what, s.Misjudged)
	for _, e := range s.MisjudgedExamples {
		fmt.Fprintf(b, "- %s\n", e)
	}
	b.WriteString("\n")
}

func writeProfiles(b *strings.Builder, pc *scenarios.ProfileCapture) {
	s := pc.Step
	fmt.Fprintf(b, "## Profiles of the IM pipeline at %.0f msg/s\n\nOne more step at the IM pipeline's highest zero-drop rate, after its ladder; the collector's pprof extension profiled %ds of it (`/debug/pprof/profile` and the allocations of the same window, `/debug/pprof/allocs?seconds=`). The step: %d messages, achieved %.0f msg/s, CPU %.1f µs/msg (profiling included), drops %d, max lag %s, forced verdicts %.0f, misjudged labels %d.\n\n",
		pc.Rate, pc.Seconds, s.Messages, s.Achieved, s.CPUPerMessage, s.Drops, s.MaxLag, s.Forced, s.Misjudged)
	writeMisjudged(b, "The profiled step", s)
	for _, p := range pc.Problems {
		fmt.Fprintf(b, "- **%s**\n", p)
	}
	if len(pc.Problems) > 0 {
		b.WriteString("\n")
	}
	for _, x := range []struct {
		title string
		sum   *harness.ProfileSummary
	}{{"CPU", pc.CPU}, {"Allocations (alloc_space)", pc.Alloc}} {
		if x.sum == nil {
			continue
		}
		fmt.Fprintf(b, "### %s: %s over %d samples%s\n\n", x.title, profileValue(x.sum.Total, x.sum.Unit), x.sum.Samples, durationNote(x.sum.Duration))
		if len(x.sum.Focus) > 0 {
			b.WriteString("Share of the samples with a function of these packages on the stack (`pprof -focus`; they overlap):\n\n| package | cum | cum % |\n|---|---:|---:|\n")
			for _, f := range x.sum.Focus {
				fmt.Fprintf(b, "| `%s` | %s | %.1f%% |\n", f.Match, profileValue(f.Value, x.sum.Unit), f.Percent)
			}
			b.WriteString("\n")
		}
		for _, order := range []struct {
			name string
			fs   []harness.ProfileFunc
		}{{"by flat (`pprof -top`)", x.sum.ByFlat}, {"by cum (`pprof -top -cum`)", x.sum.ByCum}} {
			fmt.Fprintf(b, "Top %d %s:\n\n| function | flat | flat %% | cum | cum %% |\n|---|---:|---:|---:|---:|\n", len(order.fs), order.name)
			for _, f := range order.fs {
				fmt.Fprintf(b, "| `%s` | %s | %.1f%% | %s | %.1f%% |\n", shortFunction(f.Function), profileValue(f.Flat, x.sum.Unit), f.FlatPercent, profileValue(f.Cum, x.sum.Unit), f.CumPercent)
			}
			b.WriteString("\n")
		}
	}
}

// shortFunction drops the type arguments of generic functions ("[go.shape.interface {...}]"
// runs to hundreds of characters); the .json keeps the full names.
func shortFunction(name string) string {
	var b strings.Builder
	depth := 0
	for _, r := range name {
		switch {
		case r == '[':
			if depth == 0 {
				b.WriteString("[…]")
			}
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func durationNote(d string) string {
	if d == "" {
		return ""
	}
	return " (" + d + ")"
}

// profileValue writes a profile value in its unit: CPU nanoseconds as seconds, bytes as MiB.
func profileValue(v int64, unit string) string {
	switch unit {
	case "nanoseconds":
		return fmt.Sprintf("%.2fs", float64(v)/1e9)
	case "bytes":
		return fmt.Sprintf("%.1f MiB", float64(v)/(1<<20))
	}
	return fmt.Sprintf("%d %s", v, unit)
}

func writeRatios(b *strings.Builder, rs []scenarios.Ratio, withRate bool) {
	if len(rs) == 0 {
		b.WriteString("No ratios: the IM pipeline or the references did not run.\n\n")
		return
	}
	b.WriteString("Values above 1 mean the IM pipeline costs more than the reference.\n\n")
	if withRate {
		b.WriteString("| msg/s | against | CPU per message | RSS avg | RSS max |\n|---:|---|---:|---:|---:|\n")
	} else {
		b.WriteString("| against | CPU per message | RSS avg | RSS max |\n|---|---:|---:|---:|\n")
	}
	for _, r := range rs {
		if withRate {
			fmt.Fprintf(b, "| %.0f ", r.Rate)
		}
		fmt.Fprintf(b, "| %s | %.2f× | %.2f× | %.2f× |\n", r.Against, r.CPUPerMessage, r.RSSAvg, r.RSSMax)
	}
	b.WriteString("\n")
}

func writeMemory(b *strings.Builder, r *scenarios.MemoryResult) {
	o := r.Options
	b.WriteString("## Settings\n\n")
	fmt.Fprintf(b, "%d messages sent at %.0f/s up to push and never acknowledged (im_loss ack_timeout 2h), so every one stays in flight; %d resource samples are taken once all are. Signals %s, %d export workers.\n\n",
		o.InFlight, o.Rate, o.HoldSamples, o.Signals, o.Workers)
	b.WriteString("## Ratios of the IM pipeline (same run)\n\n")
	writeRatios(b, r.Ratios, false)
	fmt.Fprintf(b, "Memory per in-flight message (IM hold RSS minus baseline hold RSS, over the messages): **%.0f bytes**.\n\n", r.BytesPerInFlight)
	b.WriteString("| pipeline | messages | items | tracked by im_loss | idle RSS MiB | hold RSS avg MiB | hold RSS max MiB | load CPU avg % | CPU µs/msg | settled |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, v := range r.Variants {
		fmt.Fprintf(b, "| %s | %d | %d | %.0f | %s | %s | %s | %.0f | %.1f | %v |\n", v.Variant.Name, v.Messages, v.Items, v.Tracked,
			mib(v.IdleRSS), mib(v.Hold.RSSAvg), mib(v.Hold.RSSMax), v.Load.CPUAvg, v.CPUPerMessage, v.Settle.Settled)
	}
	b.WriteString("\n")
}

func writeRestart(b *strings.Builder, rs []*scenarios.RestartResult) {
	b.WriteString("## Settings\n\nThe collector goes down a third of the way through the stream and comes back on the same ports and storage; the generator retries through the downtime. `graceful` sends SIGTERM and `crash` SIGKILL to a collector whose im_loss keeps its state in file_storage; `no-storage` sends SIGTERM to one without storage (everything in flight is forgotten, and the restart looks like a first start). A lagging service (timestamps unchanged) makes events of messages decided before the restart arrive after it. Criterion: zero false losses.\n\n")
	b.WriteString("| mode | lags | downtime | false losses | undecided messages | exact | settled |\n|---|---|---|---:|---:|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(b, "| %s | %s | %s | %d | %d | %v | %v |\n", r.Mode, r.Lags, r.Downtime, r.FalseLosses, r.Undecided, r.Validations.Exact(), r.Settle.Settled)
	}
	b.WriteString("\n")
	for _, r := range rs {
		fmt.Fprintf(b, "### %s\n\n", r.Mode)
		writeQualities(b, r.Validations, "####")
	}
}

func writeOutage(b *strings.Builder, r *scenarios.OutageResult) {
	b.WriteString("## Settings\n\nThe backend (the testbed's sink) is down from 20% to 60% of the stream; the OTLP exporter has a persistent sending queue on file_storage and retries without a time limit. Criterion: zero items lost.\n\n")
	fmt.Fprintf(b, "| outage | items accepted | delivered (distinct) | lost | duplicated | settled |\n|---|---:|---:|---:|---:|---|\n| %s | %d | %d | **%d** | %d | %v |\n\n",
		r.Outage, r.Accepted, r.Delivered, r.Lost, r.Duplicates, r.Settle.Settled)
	fmt.Fprintf(b, "Collector drop counters: %v.\n\n", r.Drops)
	writeQualities(b, r.Validations, "###")
}

func writeLag(b *strings.Builder, rs []*scenarios.LagResult) {
	b.WriteString("## Settings\n\nEvery fault class with the telemetry made late: one service or all lagged on their way to the collector (timestamps unchanged; the lag ramps in over half its length from the start), or the sink stalled mid-run with no sending queue, so the whole pipeline blocks and pushes back on the services. On event time the verdicts must equal the truth; each loss is measured from its deadline in event time to its record at the sink.\n\n")
	if len(rs) > 0 {
		t := rs[0].Options.Timeouts
		fmt.Fprintf(b, "im_loss: ack_timeout %s, offline_timeout %s, reorder_window %s, tick_interval %s, allowed_lateness %s, source_idle_timeout %s, max_source_lag %s; fault margin %s.\n\n",
			t.AckTimeout, t.OfflineTimeout, t.ReorderWindow, t.TickInterval, t.AllowedLateness, t.SourceIdleTimeout, t.MaxSourceLag, t.Margin)
	}
	b.WriteString("| mode | lags / stall | messages | exact | losses measured | over bound | worst latency ms | its bound ms | SLO equal to truth | drops | settled |\n|---|---|---:|---|---:|---:|---:|---:|---|---|---|\n")
	for _, r := range rs {
		lags := r.Lags
		if r.Stall != nil {
			lags = fmt.Sprintf("sink stalled %s (held at most %d requests, %d abandoned)", r.Stall.Duration, r.Stall.MaxHeld, r.Stall.Abandoned)
		}
		var messages int64
		if len(r.Validations) > 0 {
			messages = r.Validations[0].Messages
		}
		fmt.Fprintf(b, "| %s | %s | %d | %v | %d | %d | %.0f | %.0f | %v | %d | %v |\n", r.Mode, lags, messages, r.Validations.Exact(),
			r.Latency.Checked, r.Latency.Over, r.Latency.Worst.LatencyMs, r.Latency.Worst.BoundMs, sloOK(r.SLO), len(r.Drops), r.Settle.Settled)
	}
	if len(rs) > 0 {
		fmt.Fprintf(b, "\nLatency: %s.\n\n", rs[0].Latency.What)
	}
	for _, r := range rs {
		fmt.Fprintf(b, "### %s\n\n", r.Mode)
		writeQualities(b, r.Validations, "####")
		for _, e := range r.Latency.Examples {
			fmt.Fprintf(b, "- %s\n", e)
		}
	}
}

func writeDeadService(b *strings.Builder, r *scenarios.DeadServiceResult) {
	o := r.Options
	b.WriteString("## Settings\n\n")
	fmt.Fprintf(b, "%d clean messages at %.0f/s; %s stops sending for good at %s. The truth of each message follows from the events that were sent (the least advanced missing device's last stage). im_loss: ack_timeout %s, source_idle_timeout %s, max_source_lag %s.\n\n",
		o.Messages, o.Rate, r.Service, r.StoppedAt, o.Timeouts.AckTimeout, o.Timeouts.SourceIdleTimeout, o.Timeouts.MaxSourceLag)
	fmt.Fprintf(b, "Exact: **%v**; messages hit by the stop: %d; losses measured %d, over their bound %d (worst %.0f ms of %.0f ms); SLO equal to the truth: %v; drops: %v; settled after %s.\n\n",
		r.Validations.Exact(), r.Classes["service_down"], r.Latency.Checked, r.Latency.Over, r.Latency.Worst.LatencyMs, r.Latency.Worst.BoundMs, sloOK(r.SLO), r.Drops, r.Settle.Waited)
	fmt.Fprintf(b, "Latency: %s.\n\n", r.Latency.What)
	writeQualities(b, r.Validations, "###")
}

func sloOK(slos []scenarios.SLOCheck) bool {
	for _, s := range slos {
		if s.Problem != "" {
			return false
		}
	}
	return len(slos) > 0
}

func writeConfigs(b *strings.Builder, names []string) {
	b.WriteString("\n## Collector configs\n\n")
	for _, n := range names {
		cfg, err := configs.Get(n)
		if err != nil {
			continue
		}
		fmt.Fprintf(b, "<details><summary>testbed/configs/%s.yaml</summary>\n\n```yaml\n%s```\n\n</details>\n\n", n, cfg)
	}
}

// summaryReport gathers the key figures of every scenario of a run.
type summaryReport struct {
	Env   environment
	Date  string
	Quick bool
	Lines []string
}

func (s *summaryReport) add(r report) {
	switch res := r.Result.(type) {
	case *scenarios.CorrectnessResult:
		if len(res.Collectors) == 0 {
			s.Lines = append(s.Lines, fmt.Sprintf("- correctness: exact %v (%s)", res.Validations.Exact(), labelsLine(res.Validations)))
			break
		}
		var shares []string
		for _, c := range res.Collectors {
			if c.Role == "backend" {
				shares = append(shares, fmt.Sprintf("%.0f", c.Outcomes))
			}
		}
		s.Lines = append(s.Lines, fmt.Sprintf("- scale-out (gateway + %d backends): exact %v (%s); outcomes per backend %s",
			len(shares), res.Validations.Exact(), labelsLine(res.Validations), strings.Join(shares, " / ")))
	case *scenarios.ThroughputResult:
		var parts []string
		for _, v := range res.Variants {
			parts = append(parts, fmt.Sprintf("%s %.0f msg/s", v.Variant.Name, v.MaxZeroDropRate))
		}
		s.Lines = append(s.Lines, "- throughput, highest zero-drop rate: "+strings.Join(parts, ", "))
		for _, rt := range res.Ratios {
			s.Lines = append(s.Lines, fmt.Sprintf("  - at %.0f msg/s vs %s: CPU/message %.2f×, RSS avg %.2f×, RSS max %.2f×", rt.Rate, rt.Against, rt.CPUPerMessage, rt.RSSAvg, rt.RSSMax))
		}
		for _, v := range res.Variants {
			var cpu []string
			for _, st := range v.Steps {
				cpu = append(cpu, fmt.Sprintf("%.0f", st.CPUPerMessage))
			}
			s.Lines = append(s.Lines, fmt.Sprintf("  - %s CPU µs/msg per step: %s", v.Variant.Name, strings.Join(cpu, " / ")))
		}
		z, c := res.Criteria.ZeroDrop, res.Criteria.CPU
		s.Lines = append(s.Lines,
			fmt.Sprintf("  - criterion zero-drop rate ≥ %.2f× baseline: **%s** (%.0f vs %.0f msg/s, %.2f×)", z.Threshold, z.Verdict, z.IM, z.Baseline, z.Ratio),
			fmt.Sprintf("  - criterion CPU/message ≤ %.2f× baseline up to its saturation (%.0f msg/s): **%s** (worst %.2f× at %.0f msg/s)", c.Threshold, c.Saturation, c.Verdict, c.Worst, c.WorstRate))
		if sc := res.Scaling; sc != nil {
			for _, r := range sc.Rows {
				pin := "pinned to " + r.CPUList
				if !r.Pinned {
					pin = "NOT pinned: " + r.PinProblem
				}
				s.Lines = append(s.Lines, fmt.Sprintf("  - scaling, %d CPU (%s, GOMAXPROCS %d): %.0f msg/s zero-drop, %.0f msg/s per core, %.1f µs/msg", r.CPUs, pin, r.GOMAXPROCS, r.MaxZeroDropRate, r.RatePerCore, r.CPUPerMessage))
			}
			for _, rt := range sc.Ratios {
				s.Lines = append(s.Lines, fmt.Sprintf("  - scaling, %d vs %d CPUs: rate %.2f×, per core %.2f×, CPU/message %.2f×", rt.CPUs, rt.Against, rt.Rate, rt.PerCore, rt.CPUPerMessage))
			}
		}
		for _, v := range res.Variants {
			if p := v.Profile; p != nil {
				for _, x := range []struct {
					name string
					sum  *harness.ProfileSummary
				}{{"CPU", p.CPU}, {"alloc", p.Alloc}} {
					if x.sum == nil {
						continue
					}
					var top []string
					for _, f := range x.sum.ByFlat[:min(3, len(x.sum.ByFlat))] {
						top = append(top, fmt.Sprintf("%s %.1f%%", shortFunction(f.Function), f.FlatPercent))
					}
					var focus []string
					for _, f := range x.sum.Focus {
						focus = append(focus, fmt.Sprintf("%s %.1f%%", f.Match, f.Percent))
					}
					s.Lines = append(s.Lines, fmt.Sprintf("  - %s profile at %.0f msg/s, top flat: %s; cum under %s", x.name, p.Rate, strings.Join(top, ", "), strings.Join(focus, ", ")))
				}
			}
			if len(v.Validations) > 0 {
				var per []string
				for _, st := range v.Steps {
					per = append(per, fmt.Sprintf("%.0f msg/s %d (forced %.0f)", st.Rate, st.Misjudged, st.Forced))
				}
				s.Lines = append(s.Lines, "  - detection under load: "+labelsLine(v.Validations)+"; misjudged labels per step: "+strings.Join(per, ", "))
			}
		}
	case *scenarios.MemoryResult:
		s.Lines = append(s.Lines, fmt.Sprintf("- memory, %d messages in flight: %.0f bytes per in-flight message", res.Options.InFlight, res.BytesPerInFlight))
		for _, rt := range res.Ratios {
			s.Lines = append(s.Lines, fmt.Sprintf("  - vs %s: RSS avg %.2f×, RSS max %.2f×, CPU/message %.2f×", rt.Against, rt.RSSAvg, rt.RSSMax, rt.CPUPerMessage))
		}
	case []*scenarios.RestartResult:
		for _, rr := range res {
			s.Lines = append(s.Lines, fmt.Sprintf("- restart (%s): %d false losses, %d undecided, downtime %s", rr.Mode, rr.FalseLosses, rr.Undecided, rr.Downtime))
		}
	case *scenarios.OutageResult:
		s.Lines = append(s.Lines, fmt.Sprintf("- backend-outage (%s down): %d of %d items lost, %d duplicated; detection exact %v", res.Outage, res.Lost, res.Accepted, res.Duplicates, res.Validations.Exact()))
	case []*scenarios.LagResult:
		for _, lr := range res {
			s.Lines = append(s.Lines, fmt.Sprintf("- lag (%s): exact %v (%s); %d of %d losses over their latency bound", lr.Mode, lr.Validations.Exact(), labelsLine(lr.Validations), lr.Latency.Over, lr.Latency.Checked))
		}
	case *scenarios.DeadServiceResult:
		s.Lines = append(s.Lines, fmt.Sprintf("- dead-service (%s stops at %s): exact %v (%s); %d of %d losses over their latency bound", res.Service, res.StoppedAt, res.Validations.Exact(), labelsLine(res.Validations), res.Latency.Over, res.Latency.Checked))
	}
}

func labelsLine(vs harness.Validations) string {
	minP, minR := 1.0, 1.0
	var messages int64
	labels := 0
	for _, v := range vs {
		messages, labels = v.Messages, max(labels, len(v.Classes))
		for _, c := range v.Classes {
			minP, minR = min(minP, c.Precision), min(minR, c.Recall)
		}
	}
	return fmt.Sprintf("%d messages, %d labels, %d signals, lowest precision %.4f, lowest recall %.4f", messages, labels, len(vs), minP, minR)
}

func (s *summaryReport) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# imcol testbed summary (%s)\n\n", s.Date)
	if s.Quick {
		b.WriteString("> Quick run: do not quote these figures.\n\n")
	}
	writeEnv(&b, s.Env)
	b.WriteString("## Key figures\n\n")
	b.WriteString(strings.Join(s.Lines, "\n"))
	b.WriteString("\n\nFault classes: " + faultList() + ". Details in the per-scenario reports of the same date.\n")
	return b.String()
}

func faultList() string {
	names := make([]string, len(faults.Faults))
	for i, c := range faults.Faults {
		names[i] = string(c)
	}
	return strings.Join(names, ", ")
}
