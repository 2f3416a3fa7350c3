// Command imbench runs the testbed's performance and resilience scenarios against the real
// bin/imcol and writes one report per scenario, testbed/results/<date>-<scenario>.md and
// .json, plus <date>-summary.md. It reports; it never fails on absolute times. It fails only
// when a scenario cannot run.
//
//	go run ./testbed/cmd/imbench                      # every scenario, full size
//	go run ./testbed/cmd/imbench -quick -scenarios throughput,memory
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/host"
	"github.com/shirou/gopsutil/v4/mem"

	"github.com/imcol/imcol/internal/testcollector"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/scenarios"
	"github.com/imcol/imcol/testbed/sender"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "imbench:", err)
		os.Exit(1)
	}
}

var allScenarios = []string{"correctness", "scale-out", "lag", "dead-service", "throughput", "memory", "restart", "backend-outage"}

type options struct {
	scenarios []string
	out       string
	date      string
	quick     bool
	rates     []float64
	step      time.Duration
	inFlight  int64
	memRate   float64
	workers   int
	signals   sender.Signals
	variants  []scenarios.Variant
	// scaling is nil when unset (the default applies), empty for none.
	scaling      []int
	scalingRates []float64
	scalingStep  time.Duration
	profile      bool
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("imbench", flag.ContinueOnError)
	var (
		which   = fs.String("scenarios", strings.Join(allScenarios, ","), "scenarios to run, comma-separated: "+strings.Join(allScenarios, ", "))
		outDir  = fs.String("out", filepath.Join("testbed", "results"), "directory for the reports")
		date    = fs.String("date", time.Now().UTC().Format("2006-01-02"), "date in the report file names")
		quick   = fs.Bool("quick", false, "small sizes: proves the scenarios work in about two minutes; the figures mean little")
		rates   = fs.String("rates", "", "throughput steps in messages/s (default 1000,2000,4000,8000,16000; quick: 200,400)")
		step    = fs.Duration("step", 0, "duration of each throughput step (default 20s; quick: 3s)")
		flight  = fs.Int64("in-flight", 0, "messages in flight in the memory scenario (default 1000000; quick: 20000)")
		memRate = fs.Float64("memory-rate", 0, "message rate of the memory scenario (default 10000; quick: 5000)")
		workers = fs.Int("workers", 4, "concurrent export requests in the performance scenarios")
		sigArg  = fs.String("signals", "traces", "traces, logs or mixed for the performance scenarios (span_metrics in the peer only sees spans)")
		bin     = fs.String("bin", "", "collector binary (default bin/imcol, or $"+testcollector.BinaryEnv+")")
		varArg  = fs.String("variants", "im,baseline,peer", "pipelines of the throughput and memory scenarios (ratios need im and a reference)")
		scArg   = fs.String("scaling", "1,2", "throughput: CPU counts of the IM pipeline's scaling table, each a fresh collector pinned with taskset to that many CPUs and GOMAXPROCS to match; none to skip")
		scRates = fs.String("scaling-rates", "", "throughput: steps of the scaling table in messages/s (default 2000,4000,6000,8000,12000; quick: 200,400)")
		scStep  = fs.Duration("scaling-step", 0, "throughput: duration of each scaling step (default 10s; quick: 3s)")
		profile = fs.Bool("profile", true, "throughput: one more IM step at its highest zero-drop rate with a CPU and an alloc profile read from its pprof extension")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	o := options{out: *outDir, date: *date, quick: *quick, step: *step, inFlight: *flight, memRate: *memRate, workers: *workers,
		scalingStep: *scStep, profile: *profile}
	for _, s := range strings.Split(*which, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allScenarios, s) {
			return fmt.Errorf("unknown scenario %q (have %s)", s, strings.Join(allScenarios, ", "))
		}
		o.scenarios = append(o.scenarios, s)
	}
	var err error
	if o.rates, err = parseRates("-rates", *rates); err != nil {
		return err
	}
	if o.scalingRates, err = parseRates("-scaling-rates", *scRates); err != nil {
		return err
	}
	if o.scaling, err = parseScaling(*scArg); err != nil {
		return err
	}
	if o.signals, err = sender.ParseSignals(*sigArg); err != nil {
		return err
	}
	for _, name := range strings.Split(*varArg, ",") {
		i := slices.IndexFunc(scenarios.AllVariants, func(v scenarios.Variant) bool { return v.Name == strings.TrimSpace(name) })
		if i < 0 {
			return fmt.Errorf("-variants: unknown pipeline %q (have im, baseline, peer)", name)
		}
		o.variants = append(o.variants, scenarios.AllVariants[i])
	}
	if *bin != "" {
		abs, err := filepath.Abs(*bin)
		if err != nil {
			return err
		}
		if err := os.Setenv(testcollector.BinaryEnv, abs); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	env := describeEnvironment(ctx)
	summary := &summaryReport{Env: env, Date: o.date, Quick: o.quick}
	var failures []error
	for _, name := range o.scenarios {
		fmt.Fprintf(out, "imbench: running %s\n", name)
		begin := time.Now()
		var result any
		err := harness.RunSession(ctx, name, out, func(tb testing.TB) { result = runScenario(tb, name, o) })
		if err != nil {
			failures = append(failures, err)
		}
		if result == nil {
			continue // the scenario could not run; its error says why
		}
		rep := report{Scenario: name, Date: o.date, Quick: o.quick, Env: env, Took: time.Since(begin).Round(time.Second).String(), Result: result,
			LoadAtEnd: loadAverage()}
		if err != nil {
			rep.Problems = err.Error()
		}
		if err := writeReport(o.out, rep); err != nil {
			return err
		}
		summary.add(rep)
		fmt.Fprintf(out, "imbench: %s done in %s\n", name, rep.Took)
	}
	if len(summary.Lines) > 0 {
		if err := os.WriteFile(filepath.Join(o.out, o.date+"-summary.md"), []byte(summary.markdown()), 0o644); err != nil {
			return err
		}
	}
	return errors.Join(failures...)
}

func runScenario(tb testing.TB, name string, o options) any {
	switch name {
	case "correctness":
		c := scenarios.DefaultCorrectness()
		c.Name = "bench-correctness"
		r := scenarios.Correctness(tb, c)
		return r
	case "scale-out":
		c := scenarios.DefaultScaleOut()
		c.Name = "bench-scale-out"
		// Mixed signals: a message's log records and spans must meet on one backend.
		sig, err := sender.ParseSignals("mixed")
		if err != nil {
			tb.Fatalf("%v", err)
		}
		c.Signals = sig
		return scenarios.Correctness(tb, c)
	case "lag":
		var out []*scenarios.LagResult
		for _, mode := range scenarios.LagModes {
			l := scenarios.DefaultLag(mode)
			l.Name = "bench-lag-" + string(mode)
			if !o.quick {
				l.Messages *= 2
			}
			out = append(out, scenarios.Lag(tb, l))
		}
		return out
	case "dead-service":
		d := scenarios.DefaultDeadService()
		d.Name = "bench-dead-service"
		return scenarios.DeadService(tb, d)
	case "throughput":
		t := scenarios.DefaultThroughput()
		t.Workers, t.Signals, t.Variants = o.workers, o.signals, o.variants
		if o.quick {
			t.Rates, t.StepDuration, t.Timeouts = []float64{200, 400}, 3*time.Second, scenarios.ShortTimeouts()
		}
		if len(o.rates) > 0 {
			t.Rates = o.rates
		}
		if o.step > 0 {
			t.StepDuration = o.step
		}
		if o.quick {
			t.ScalingRates, t.ScalingStep = []float64{200, 400}, 3*time.Second
		}
		if o.scaling != nil {
			t.Scaling = o.scaling
		}
		if len(o.scalingRates) > 0 {
			t.ScalingRates = o.scalingRates
		}
		if o.scalingStep > 0 {
			t.ScalingStep = o.scalingStep
		}
		t.Profile = o.profile
		return scenarios.Throughput(tb, t)
	case "memory":
		m := scenarios.DefaultMemory()
		m.Workers, m.Signals, m.Variants = o.workers, o.signals, o.variants
		if o.quick {
			m.InFlight, m.Rate = 20_000, 5_000
		}
		if o.inFlight > 0 {
			m.InFlight = o.inFlight
		}
		if o.memRate > 0 {
			m.Rate = o.memRate
		}
		return scenarios.Memory(tb, m)
	case "restart":
		var out []*scenarios.RestartResult
		for _, mode := range scenarios.RestartModes {
			r := scenarios.DefaultRestart(mode)
			if o.quick {
				r.Messages = 3000
			}
			out = append(out, scenarios.Restart(tb, r))
		}
		return out
	case "backend-outage":
		b := scenarios.DefaultOutage()
		if o.quick {
			b.Messages = 3000
		}
		return scenarios.BackendOutage(tb, b)
	}
	tb.Fatalf("unknown scenario %s", name)
	return nil
}

// parseRates reads a comma-separated list of message rates; empty is none.
func parseRates(flagName, arg string) ([]float64, error) {
	if arg == "" {
		return nil, nil
	}
	var out []float64
	for _, r := range strings.Split(arg, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(r), 64)
		if err != nil || v <= 0 || v > 1e6 {
			return nil, fmt.Errorf("%s: %q is not a rate in (0, 1e6]", flagName, r)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseScaling reads the -scaling CPU counts, in increasing order; "none" is an empty list.
func parseScaling(arg string) ([]int, error) {
	out := []int{}
	if arg == "none" || arg == "" {
		return out, nil
	}
	for _, c := range strings.Split(arg, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 || n > 1024 {
			return nil, fmt.Errorf("-scaling: %q is not a CPU count", c)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("-scaling: CPU counts must increase (%s)", arg)
		}
		out = append(out, n)
	}
	return out, nil
}

// environment describes the machine and the versions under test.
type environment struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	MemoryMiB  uint64 `json:"memory_mib"`
	OS         string `json:"os"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Collector  string `json:"collector_version"`
	Binary     string `json:"binary"`
	SharedLoad string `json:"load_average_at_start"`
}

func describeEnvironment(ctx context.Context) environment {
	e := environment{CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if infos, err := cpu.InfoWithContext(ctx); err == nil && len(infos) > 0 {
		e.CPUModel = infos[0].ModelName
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err == nil {
		e.MemoryMiB = vm.Total >> 20
	}
	if hi, err := host.InfoWithContext(ctx); err == nil {
		e.OS = hi.Platform + " " + hi.PlatformVersion + " (" + e.OS + ")"
		e.Kernel = hi.KernelVersion
	}
	e.SharedLoad = loadAverage()
	e.Binary = os.Getenv(testcollector.BinaryEnv)
	if e.Binary == "" {
		if wd, err := os.Getwd(); err == nil {
			e.Binary = filepath.Join(wd, "bin", "imcol")
		}
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if v, err := exec.CommandContext(vctx, e.Binary, "--version").Output(); err == nil {
		e.Collector = strings.TrimSpace(string(v))
	} else {
		e.Collector = "unknown (" + err.Error() + ")"
	}
	return e
}

// loadAverage is the machine's 1, 5 and 15 minute load averages, or "" where unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

type report struct {
	Scenario string `json:"scenario"`
	Date     string `json:"date"`
	Quick    bool   `json:"quick"`
	Took     string `json:"took"`
	// LoadAtEnd is the load average when the scenario ended: with the one at start, how busy
	// the shared machine was meanwhile.
	LoadAtEnd string      `json:"load_average_at_end,omitempty"`
	Env       environment `json:"environment"`
	// Problems lists what went wrong while the scenario ran (it still produced a result).
	Problems string `json:"problems,omitempty"`
	Result   any    `json:"result"`
}

func writeReport(dir string, r report) error {
	base := filepath.Join(dir, r.Date+"-"+r.Scenario)
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".json", append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(base+".md", []byte(markdown(r)), 0o644)
}
