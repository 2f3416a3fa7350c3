// Package scenarios are the testbed's scenarios: correctness (part of `go test`), and the
// performance and resilience scenarios imbench runs (throughput, memory, restart,
// backend-outage), each against the real bin/imcol. Every scenario takes a testing.TB, so
// tests and the imbench command (through harness.RunSession) share the same code.
package scenarios // import "github.com/imcol/imcol/testbed/scenarios"

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imcol/imcol/internal/testcollector"
	"github.com/imcol/imcol/testbed/configs"
	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/sender"
	"github.com/imcol/imcol/testbed/workload"
)

// Environment variables the im_loss sections of the scenario configs read.
const (
	EnvAckTimeout     = "IMCOL_TB_ACK_TIMEOUT"
	EnvOfflineTimeout = "IMCOL_TB_OFFLINE_TIMEOUT"
	EnvReorderWindow  = "IMCOL_TB_REORDER_WINDOW"
	EnvTickInterval   = "IMCOL_TB_TICK_INTERVAL"
	EnvMaxTracked     = "IMCOL_TB_MAX_TRACKED"
	// The event-time settings: allowed_lateness, source_idle_timeout, max_source_lag.
	EnvAllowedLateness   = "IMCOL_TB_ALLOWED_LATENESS"
	EnvSourceIdleTimeout = "IMCOL_TB_SOURCE_IDLE_TIMEOUT"
	EnvMaxSourceLag      = "IMCOL_TB_MAX_SOURCE_LAG"
)

// timeoutEnv sets every im_loss setting a scenario config reads; event-time settings left
// zero get im_loss's defaults, as the planner assumes.
func timeoutEnv(t faults.Timeouts) map[string]string {
	t = t.WithDefaults()
	return map[string]string{
		EnvAckTimeout:        t.AckTimeout.String(),
		EnvOfflineTimeout:    t.OfflineTimeout.String(),
		EnvReorderWindow:     t.ReorderWindow.String(),
		EnvTickInterval:      t.TickInterval.String(),
		EnvAllowedLateness:   t.AllowedLateness.String(),
		EnvSourceIdleTimeout: t.SourceIdleTimeout.String(),
		EnvMaxSourceLag:      t.MaxSourceLag.String(),
	}
}

// eventTime gives timeouts the event-time settings the quick scenarios use: allowed_lateness
// 500 ms (the planner keeps tolerated disorder within half of it); source_idle_timeout equal
// to ack_timeout (a dead service is written off one timeout after it fell silent); and
// max_source_lag twice ack_timeout. At the end of every run all sources go idle and the
// watermark holds, so the last messages are decided only by the max_source_lag cap:
// settle waits for it (deadline + max_source_lag after the last message).
func eventTime(t faults.Timeouts) faults.Timeouts {
	t.AllowedLateness, t.SourceIdleTimeout, t.MaxSourceLag = 500*time.Millisecond, t.AckTimeout, 2*t.AckTimeout
	return t
}

// ShortTimeouts are the im_loss settings of the quick scenarios: every fault class is
// decided within seconds, with margins wide enough for a loaded two-core machine.
func ShortTimeouts() faults.Timeouts {
	return eventTime(faults.Timeouts{
		AckTimeout:     3 * time.Second,
		OfflineTimeout: 12 * time.Second,
		ReorderWindow:  3 * time.Second,
		TickInterval:   100 * time.Millisecond,
		Margin:         2 * time.Second,
	})
}

// offlineReconnect places offline devices' return after the ack timeout (so the offline
// queue is what saves them) and two margins before the offline timeout: the device's
// deliver and ack come seconds after the message's first event, so a stall of the machine
// at that moment is not absorbed by the rest of the message's events arriving late too.
func offlineReconnect(t faults.Timeouts) (lo, hi time.Duration) {
	return t.AckTimeout + t.Margin + t.TickInterval, t.OfflineTimeout - 2*t.Margin
}

// outcomeSignals are the signals the IM scenario configs emit every outcome record as
// (im_loss `outcomes: signals: [traces, logs]`); each is validated on its own.
var outcomeSignals = []string{"traces", "logs"}

// expectedAllSignals is the outcome records the sink must receive: every record in every signal.
func expectedAllSignals(book *faults.Book) int64 {
	return expectedRecords(book) * int64(len(outcomeSignals))
}

// Load is one planned stream of messages.
type Load struct {
	Workload workload.Config
	Faults   map[faults.Class]float64
	Timeouts faults.Timeouts
	// Lags are the per-service export lags, given to the sender and the planner alike.
	Lags workload.Lags
	// Stop makes one service stop sending for good (faults.Config.Stop).
	Stop   *faults.Stop
	Sender sender.Config
}

// loadRun is a load in progress.
type loadRun struct {
	book *faults.Book
	run  *sender.Run
	seed uint64
}

func startLoad(ctx context.Context, tb testing.TB, l Load) *loadRun {
	tb.Helper()
	gen, err := workload.NewGenerator(l.Workload)
	if err != nil {
		tb.Fatalf("workload: %v", err)
	}
	book := faults.NewBook()
	planner, err := faults.NewPlanner(gen, faults.Config{Probability: l.Faults, Timeouts: l.Timeouts, Lags: l.Lags, Stop: l.Stop}, book)
	if err != nil {
		tb.Fatalf("faults: %v", err)
	}
	sc := l.Sender
	sc.Lags = l.Lags
	run, err := sender.Start(ctx, sc, planner)
	if err != nil {
		tb.Fatalf("sender: %v", err)
	}
	return &loadRun{book: book, run: run, seed: l.Workload.Seed}
}

// expectedRecords is the number of outcome records the truth calls for.
func expectedRecords(book *faults.Book) int64 {
	var n int64
	for _, t := range book.All() {
		n += int64(len(t.Labels))
	}
	return n
}

// settleCondition says when a collector has finished with a load.
type settleCondition struct {
	// minRecords is the outcome records the sink must have (0: no requirement).
	minRecords int64
	// idle requires im_loss to follow no message any more.
	idle bool
	// lifecycle is the lifecycle items the sink must have received (0: no requirement).
	lifecycle int64
}

// settleState is what the last settle poll saw.
type settleState struct {
	Settled          bool    `json:"settled"`
	Records          int64   `json:"records"`
	Lifecycle        int64   `json:"lifecycle_items"`
	Exported         float64 `json:"exported_items"`
	Tracked          float64 `json:"tracked_messages"`
	HasTrackedMetric bool    `json:"has_tracked_metric"`
	// GatewayAccepted and GatewayForwarded are the items the gateway took in and handed to
	// the backends (scaled-out topologies only).
	GatewayAccepted  float64 `json:"gateway_accepted_items,omitempty"`
	GatewayForwarded float64 `json:"gateway_forwarded_items,omitempty"`
	Waited           string  `json:"waited"`
	LastProblem      string  `json:"last_problem,omitempty"`
}

// topology is the collectors of one scenario run: the backends export to the sink; the
// gateway, when there is one, takes the load and spreads it over the backends.
type topology struct {
	gateway  *harness.Collector
	backends []*harness.Collector
}

// single is the topology of one collector taking the load itself.
func single(col *harness.Collector) topology {
	return topology{backends: []*harness.Collector{col}}
}

// entry is the collector the load is sent to.
func (t topology) entry() *harness.Collector {
	if t.gateway != nil {
		return t.gateway
	}
	return t.backends[0]
}

// all is every collector, the gateway first.
func (t topology) all() []*harness.Collector {
	if t.gateway == nil {
		return t.backends
	}
	return append([]*harness.Collector{t.gateway}, t.backends...)
}

// drops sums the non-zero drop counters of every collector by metric name.
func (t topology) drops(ctx context.Context) (map[string]float64, error) {
	out := map[string]float64{}
	for _, c := range t.all() {
		fams, err := c.Telemetry(ctx)
		if err != nil {
			return nil, err
		}
		for name, v := range fams.Drops() {
			out[name] += v
		}
	}
	return out, nil
}

// acceptedItems and sentItems are the spans and log records a collector's receivers
// accepted and its exporters sent.
func acceptedItems(f harness.Families) float64 {
	return f.Sum("otelcol_receiver_accepted_spans_total", nil) + f.Sum("otelcol_receiver_accepted_log_records_total", nil)
}

func sentItems(f harness.Families) float64 {
	return f.Sum("otelcol_exporter_sent_spans_total", nil) + f.Sum("otelcol_exporter_sent_log_records_total", nil)
}

// settle polls until the collectors have exported everything they received to the sink
// (and a gateway has handed everything it accepted to the backends), the sink has what
// cond asks for, and nothing changed between two polls; or until deadline.
func settle(ctx context.Context, top topology, sink *harness.Sink, cond settleCondition, deadline time.Duration) settleState {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	begin := time.Now()
	var st settleState
	var prev [3]float64
	var since time.Time
	err := testcollector.Eventually(ctx, 250*time.Millisecond, func() error {
		var backendsAccepted float64
		st.Exported, st.Tracked, st.HasTrackedMetric = 0, 0, true
		for _, col := range top.backends {
			fams, err := col.Telemetry(ctx)
			if err != nil {
				return err
			}
			backendsAccepted += acceptedItems(fams)
			st.Exported += sentItems(fams)
			st.HasTrackedMetric = st.HasTrackedMetric && fams.Has(trackedMetric)
			st.Tracked += fams.Sum(trackedMetric, nil)
		}
		if top.gateway != nil {
			fams, err := top.gateway.Telemetry(ctx)
			if err != nil {
				return err
			}
			st.GatewayAccepted, st.GatewayForwarded = acceptedItems(fams), sentItems(fams)
		}
		spans, logs, _, outcomes := sink.Counts()
		st.Records = outcomes
		st.Lifecycle = spans + logs - outcomes
		cur := [3]float64{float64(spans), float64(logs), backendsAccepted}
		if cur != prev || since.IsZero() {
			prev, since = cur, time.Now()
		}
		stable := time.Since(since) >= settleQuiet
		switch {
		case cond.idle && !st.HasTrackedMetric:
			return fmt.Errorf("a collector exposes no %s: is im_loss in this binary and pipeline?", trackedMetric)
		case cond.idle && st.Tracked > 0:
			return fmt.Errorf("im_loss still follows %.0f messages", st.Tracked)
		case top.gateway != nil && st.GatewayForwarded < st.GatewayAccepted:
			return fmt.Errorf("the gateway forwarded %.0f of the %.0f items it accepted", st.GatewayForwarded, st.GatewayAccepted)
		case top.gateway != nil && backendsAccepted < st.GatewayForwarded:
			return fmt.Errorf("the backends accepted %.0f of the %.0f items the gateway forwarded", backendsAccepted, st.GatewayForwarded)
		case st.Records < cond.minRecords:
			return fmt.Errorf("%d of %d outcome records at the sink", st.Records, cond.minRecords)
		case st.Lifecycle < cond.lifecycle:
			return fmt.Errorf("%d of %d lifecycle items at the sink", st.Lifecycle, cond.lifecycle)
		case float64(spans+logs) < st.Exported:
			return fmt.Errorf("the collectors exported %.0f items, the sink has %d", st.Exported, spans+logs)
		case !stable:
			return fmt.Errorf("the sink received items less than %s ago", settleQuiet)
		}
		return nil
	})
	st.Settled = err == nil
	if err != nil {
		st.LastProblem = err.Error()
	}
	st.Waited = time.Since(begin).Round(time.Millisecond).String()
	return st
}

const trackedMetric = "otelcol_processor_im_loss_tracked_messages"

// settleQuiet is how long the sink's counts must stay unchanged before a run is settled. It
// outlasts the batch processor's timeout in testbed/configs (1s at most): the outcome records
// of im_loss's last verdicts wait there after tracked_messages fell to 0, and no collector
// counter shows them (a 250 ms pause once ended the throughput scenario's last step before
// its last records arrived, which then counted as missed).
const settleQuiet = 2 * time.Second

// startSinkAndCollector starts a sink and a collector running the named scenario config.
func startSinkAndCollector(tb testing.TB, name, config string, env map[string]string, opts harness.SinkOptions) (*harness.Sink, *harness.Collector) {
	tb.Helper()
	return startSinkAndCollectorSpec(tb, config, harness.Spec{Name: name, Env: env}, opts)
}

// startSinkAndCollectorSpec is startSinkAndCollector with the rest of the collector's spec
// (pinning, GOMAXPROCS, or the config's bytes instead of its name); its Sink is filled in.
func startSinkAndCollectorSpec(tb testing.TB, config string, spec harness.Spec, opts harness.SinkOptions) (*harness.Sink, *harness.Collector) {
	tb.Helper()
	sink, err := harness.NewSink("127.0.0.1:0", opts)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(sink.Stop)
	if spec.Config == nil {
		if spec.Config, err = configs.Get(config); err != nil {
			tb.Fatalf("%v", err)
		}
	}
	spec.Sink = sink.Endpoint()
	col := harness.StartCollector(tb, spec)
	return sink, col
}

// GatewayConfig is the shipped gateway config, relative to the repository root. The
// scaled-out scenarios run it byte for byte: what they prove is what ships.
const GatewayConfig = "configs/gateway.yaml"

// startScaledOut starts a sink, n backend collectors running the named scenario config
// (each on its own ports and storage, all exporting to the sink) and one gateway running the
// shipped configs/gateway.yaml with the backends' OTLP gRPC endpoints as IMCOL_BACKENDS.
func startScaledOut(tb testing.TB, name, config string, n int, env map[string]string, opts harness.SinkOptions) (*harness.Sink, topology) {
	tb.Helper()
	sink, err := harness.NewSink("127.0.0.1:0", opts)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(sink.Stop)
	cfg, err := configs.Get(config)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	var top topology
	backends := make([]string, n)
	for i := range n {
		col := harness.StartCollector(tb, harness.Spec{Name: fmt.Sprintf("%s-backend-%d", name, i+1), Config: cfg, Env: env, Sink: sink.Endpoint()})
		top.backends = append(top.backends, col)
		backends[i] = strconv.Quote(col.Endpoints.OTLPGRPC)
	}
	gw, err := os.ReadFile(filepath.Join(testcollector.RepoRoot(tb), GatewayConfig))
	if err != nil {
		tb.Fatalf("the gateway config: %v", err)
	}
	// Registered after the backends, so the gateway stops first (cleanups run last-in
	// first-out) and can flush its queues to backends that are still up.
	top.gateway = harness.StartCollector(tb, harness.Spec{
		Name: name + "-gateway", Config: gw,
		EndpointEnv: func(e harness.Endpoints) map[string]string {
			return map[string]string{
				"IMCOL_BACKENDS":           "[" + strings.Join(backends, ",") + "]",
				"IMCOL_OTLP_GRPC_ENDPOINT": e.OTLPGRPC,
				"IMCOL_OTLP_HTTP_ENDPOINT": e.OTLPHTTP,
				"IMCOL_HEALTH_ENDPOINT":    e.Health,
				"IMCOL_TELEMETRY_HOST":     "127.0.0.1",
				"IMCOL_TELEMETRY_PORT":     strconv.Itoa(e.TelemetryPort),
				"IMCOL_DATA_DIR":           e.StorageDir,
			}
		},
	})
	return sink, top
}

// waitMessages polls until the load has started at least n messages.
func waitMessages(ctx context.Context, lr *loadRun, n int64) error {
	return testcollector.Eventually(ctx, 20*time.Millisecond, func() error {
		select {
		case <-lr.run.Done():
			return testcollector.Permanent(fmt.Errorf("the load ended before %d messages", n))
		default:
		}
		if got := lr.run.Stats().Messages; got < n {
			return fmt.Errorf("%d of %d messages started", got, n)
		}
		return nil
	})
}

// sloCounts reads one delivery SLO's counters from the prometheus exporters of the
// backends, summed: each backend computes the SLO over the conversations it owns.
func sloCounts(ctx context.Context, top topology, slo string) (events, good float64, err error) {
	match := map[string]string{"slo_name": slo}
	for _, col := range top.backends {
		fams, err := col.Pipeline(ctx)
		if err != nil {
			return 0, 0, err
		}
		events += fams.Sum("imcol_slo_events_total", match)
		good += fams.Sum("imcol_slo_good_events_total", match)
	}
	return events, good, nil
}
