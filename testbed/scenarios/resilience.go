package scenarios

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/testbed/configs"
	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/sender"
	"github.com/imcol/imcol/testbed/workload"
)

// RestartMode is how the collector is taken down mid-stream.
type RestartMode string

const (
	// RestartGraceful sends SIGTERM: im_loss saves its state to file_storage on shutdown.
	RestartGraceful RestartMode = "graceful"
	// RestartCrash sends SIGKILL: only what im_loss had saved before survives.
	RestartCrash RestartMode = "crash"
	// RestartNoStorage sends SIGTERM to a collector whose im_loss has no storage: everything
	// in flight is forgotten, and the restarted one cannot tell the restart from a first start.
	RestartNoStorage RestartMode = "no-storage"
)

// RestartModes are the restart scenario's modes, in the order imbench runs them.
var RestartModes = []RestartMode{RestartGraceful, RestartCrash, RestartNoStorage}

// storageLine is how the restart config hands im_loss its storage (RestartNoStorage removes it).
const storageLine = "    storage: file_storage\n"

// RestartOptions configure the restart scenario.
type RestartOptions struct {
	Mode     RestartMode
	Messages int64
	Rate     float64
	Seed     uint64
	// FaultProbability is given to every fault class but late_events, ack_delay and
	// late_message, whose "late" truth assumes the processor's clock runs through the
	// downtime (late_message: that the gap its persist leaves is confirmed before the late
	// persist arrives, which the watermark's hold after a restart can delay past it: the
	// persist then fills an open gap, with no loss to take back).
	FaultProbability float64
	// At is the share of the messages started when the collector goes down.
	At       float64
	Timeouts faults.Timeouts
	// Lags delay services' telemetry (timestamps unchanged): events of messages decided
	// before the restart then arrive after it.
	Lags     workload.Lags
	Deadline time.Duration
}

// DefaultRestart restarts a third of the way through a 30 s stream. ack_timeout (15 s) is
// far longer than the downtime, so no message is due while the collector is away. The
// persists (im-transfer) lag 2 s: a message is decided on its send, push and acks, so the
// persists of the last 2 s before the restart come after it, for messages decided before.
func DefaultRestart(mode RestartMode) RestartOptions {
	var lags workload.Lags
	lags[workload.ServiceTransfer] = workload.Lag{Delay: 2 * time.Second, Ramp: 2 * time.Second}
	return RestartOptions{
		Lags: lags,
		Mode: mode, Messages: 6000, Rate: 200, Seed: 3000, FaultProbability: 0.01, At: 1.0 / 3,
		Timeouts: eventTime(faults.Timeouts{
			AckTimeout: 15 * time.Second, OfflineTimeout: 30 * time.Second, ReorderWindow: 10 * time.Second,
			TickInterval: 100 * time.Millisecond, Margin: 2 * time.Second,
		}),
		Deadline: 90 * time.Second,
	}
}

// RestartResult is what the restart scenario measured.
type RestartResult struct {
	Mode        RestartMode         `json:"mode"`
	Validations harness.Validations `json:"validations"`
	Sender      sender.Stats        `json:"sender"`
	Settle      settleState         `json:"settle"`
	// FalseLosses counts messages declared lost that the truth says were delivered or lost
	// differently: the scenario's criterion is zero.
	FalseLosses int64 `json:"false_losses"`
	// Undecided counts messages with no verdict at all (their state did not survive).
	Undecided int64 `json:"undecided"`
	// Downtime is from the stop to the restarted collector being healthy.
	Downtime string `json:"downtime"`
	// Lags are the services' lags (RestartOptions.Lags).
	Lags string `json:"lags"`
}

// Restart takes the collector down mid-stream and brings it back on the same ports and
// storage; the sender retries through the downtime.
func Restart(tb testing.TB, o RestartOptions) *RestartResult {
	tb.Helper()
	ctx := context.Background()
	sink, col := startRestartCollector(tb, o)
	wc := workload.DefaultConfig()
	wc.Seed, wc.Messages, wc.Rate = o.Seed, o.Messages, o.Rate
	wc.OfflineReconnectMin, wc.OfflineReconnectMax = offlineReconnect(o.Timeouts)
	probs := map[faults.Class]float64{}
	for _, c := range faults.Faults {
		if c != faults.ClassLateEvents && c != faults.ClassAckDelay && c != faults.ClassLateMessage {
			probs[c] = o.FaultProbability
		}
	}
	lr := startLoad(ctx, tb, Load{
		Workload: wc, Faults: probs, Timeouts: o.Timeouts, Lags: o.Lags,
		Sender: sender.Config{Endpoint: col.Endpoints.OTLPGRPC, Workers: 1, RetryTimeout: 2 * time.Minute},
	})
	wctx, cancel := context.WithTimeout(ctx, o.Deadline)
	defer cancel()
	if err := waitMessages(wctx, lr, int64(float64(o.Messages)*o.At)); err != nil {
		tb.Fatalf("restart: %v", err)
	}
	down := time.Now()
	switch o.Mode {
	case RestartCrash:
		col.Kill()
	default:
		if err := col.Stop(); err != nil {
			tb.Errorf("restart: %v", err)
		}
	}
	col.Restart()
	res := &RestartResult{Mode: o.Mode, Lags: o.Lags.String(), Downtime: time.Since(down).Round(time.Millisecond).String()}
	stats, err := lr.run.Wait()
	if err != nil {
		tb.Fatalf("restart: load: %v", err)
	}
	res.Sender = stats
	res.Settle = settle(ctx, single(col), sink, settleCondition{minRecords: expectedAllSignals(lr.book), idle: true}, o.Deadline)
	res.Validations = harness.ValidateSignals(lr.book, lr.seed, lr.run.StartTime(), sink.Records(), outcomeSignals)
	// Both signals carry the same verdicts; the worse one counts.
	for _, v := range res.Validations {
		var falseLosses, undecided int64
		for _, c := range v.Classes {
			if strings.HasPrefix(c.Label, string(imsemconv.OutcomeLost)+"/") {
				falseLosses += c.FP
			}
		}
		for _, row := range v.Confusion {
			undecided += row["none"]
		}
		res.FalseLosses, res.Undecided = max(res.FalseLosses, falseLosses), max(res.Undecided, undecided)
	}
	tb.Logf("restart %s: downtime %s, %d false losses, %d undecided;\n%s", o.Mode, res.Downtime, res.FalseLosses, res.Undecided, res.Validations.Summary())
	return res
}

// startRestartCollector starts the sink and the collector of the restart scenario: the
// restart config, without im_loss's storage in RestartNoStorage.
func startRestartCollector(tb testing.TB, o RestartOptions) (*harness.Sink, *harness.Collector) {
	tb.Helper()
	cfg, err := configs.Get("restart")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	if o.Mode == RestartNoStorage {
		if !bytes.Contains(cfg, []byte(storageLine)) {
			tb.Fatalf("restart config: no %q to remove", storageLine)
		}
		cfg = bytes.Replace(cfg, []byte(storageLine), nil, 1)
	}
	return startSinkAndCollectorSpec(tb, "restart", harness.Spec{Name: "restart-" + string(o.Mode), Env: timeoutEnv(o.Timeouts), Config: cfg},
		harness.SinkOptions{KeepRecords: true})
}

// OutageOptions configure the backend-outage scenario.
type OutageOptions struct {
	Messages int64
	Rate     float64
	Seed     uint64
	// FaultProbability is given to every fault class.
	FaultProbability float64
	// Down and Up are the shares of the messages started when the sink goes down and comes back.
	Down, Up float64
	Timeouts faults.Timeouts
	Deadline time.Duration
}

// DefaultOutage takes the backend down from 20% to 60% of a 30 s stream.
func DefaultOutage() OutageOptions {
	return OutageOptions{
		Messages: 6000, Rate: 200, Seed: 4000, FaultProbability: 0.01, Down: 0.2, Up: 0.6,
		Timeouts: ShortTimeouts(), Deadline: 120 * time.Second,
	}
}

// OutageResult is what the backend-outage scenario measured.
type OutageResult struct {
	// Accepted is the lifecycle items the collector accepted; Delivered the distinct ones the
	// backend got; Lost the difference (the criterion: zero); Duplicates the repeats
	// (at-least-once delivery may repeat, never lose).
	Accepted    int64               `json:"accepted_items"`
	Delivered   int64               `json:"delivered_items"`
	Lost        int64               `json:"lost_items"`
	Duplicates  int64               `json:"duplicate_items"`
	Outage      string              `json:"outage"`
	Sender      sender.Stats        `json:"sender"`
	Validations harness.Validations `json:"validations"`
	Settle      settleState         `json:"settle"`
	Drops       map[string]float64  `json:"collector_drops"`
}

// BackendOutage stops the sink mid-stream and brings it back; the collector's persistent
// sending queue must deliver every item.
func BackendOutage(tb testing.TB, o OutageOptions) *OutageResult {
	tb.Helper()
	ctx := context.Background()
	sink, col := startSinkAndCollector(tb, "backend-outage", "backend-outage", timeoutEnv(o.Timeouts), harness.SinkOptions{KeepRecords: true, TrackUnique: true})
	wc := workload.DefaultConfig()
	wc.Seed, wc.Messages, wc.Rate = o.Seed, o.Messages, o.Rate
	wc.OfflineReconnectMin, wc.OfflineReconnectMax = offlineReconnect(o.Timeouts)
	probs := map[faults.Class]float64{}
	for _, c := range faults.Faults {
		probs[c] = o.FaultProbability
	}
	lr := startLoad(ctx, tb, Load{
		Workload: wc, Faults: probs, Timeouts: o.Timeouts,
		Sender: sender.Config{Endpoint: col.Endpoints.OTLPGRPC, Workers: 1},
	})
	wctx, cancel := context.WithTimeout(ctx, o.Deadline)
	defer cancel()
	if err := waitMessages(wctx, lr, int64(float64(o.Messages)*o.Down)); err != nil {
		tb.Fatalf("backend-outage: %v", err)
	}
	down := time.Now()
	sink.Stop()
	if err := waitMessages(wctx, lr, int64(float64(o.Messages)*o.Up)); err != nil {
		tb.Fatalf("backend-outage: %v", err)
	}
	if err := sink.Start(); err != nil {
		tb.Fatalf("backend-outage: the sink cannot come back: %v", err)
	}
	res := &OutageResult{Outage: time.Since(down).Round(time.Millisecond).String()}
	stats, err := lr.run.Wait()
	if err != nil {
		tb.Fatalf("backend-outage: load: %v", err)
	}
	_, accepted, _, _ := stats.Items()
	res.Accepted, res.Sender = accepted, stats
	res.Settle = settle(ctx, single(col), sink, settleCondition{minRecords: expectedAllSignals(lr.book), idle: true, lifecycle: accepted}, o.Deadline)
	distinct, repeats, _ := sink.Unique()
	res.Delivered, res.Duplicates = int64(distinct), repeats
	res.Lost = res.Accepted - res.Delivered
	res.Validations = harness.ValidateSignals(lr.book, lr.seed, lr.run.StartTime(), sink.Records(), outcomeSignals)
	fams, err := col.Telemetry(ctx)
	if err != nil {
		tb.Fatalf("backend-outage: %v", err)
	}
	res.Drops = fams.Drops()
	tb.Logf("backend-outage: outage %s, %d items accepted, %d delivered, %d lost, %d duplicated;\n%s",
		res.Outage, res.Accepted, res.Delivered, res.Lost, res.Duplicates, res.Validations.Summary())
	return res
}
