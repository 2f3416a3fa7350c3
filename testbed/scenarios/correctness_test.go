package scenarios

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/sender"
	"github.com/imcol/imcol/testbed/workload"
)

// TestCorrectness runs the correctness scenario against the real bin/imcol: every fault
// class, spans over gRPC in one run and a mix of spans and log records over HTTP in the
// other (so every message crosses both pipelines of one shared im_loss). Detection must be
// exact: precision = recall = 1 for every outcome label.
func TestCorrectness(t *testing.T) {
	for _, tc := range []correctnessRun{
		{"traces-grpc", "traces", "grpc", 42},
		{"mixed-http", "mixed", "http", 43},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, "correctness-", DefaultCorrectness()).Check(t)
		})
	}
}

// TestCorrectnessThroughGateway is the scale-out proof: the shipped configs/gateway.yaml
// spreads the correctness load over two imcol backends with load_balancing, and detection
// must stay exact. A conversation split between backends would show as false seq gaps (each
// backend sees only part of the seq range) and false ack timeouts (a message's ack reaching
// the backend that never saw its send); mixed signals also prove that a message's log
// records and spans meet on one backend.
func TestCorrectnessThroughGateway(t *testing.T) {
	for _, tc := range []correctnessRun{
		{"mixed-grpc", "mixed", "grpc", 44},
		{"traces-http", "traces", "http", 45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.run(t, "scale-out-", DefaultScaleOut())
			for _, c := range res.Collectors {
				t.Logf("%s %s: %.0f items accepted, %.0f outcomes", c.Role, c.Name, c.Accepted, c.Outcomes)
			}
			res.Check(t)
		})
	}
}

// correctnessRun is one subtest of the correctness tests.
type correctnessRun struct {
	name, signals, protocol string
	seed                    uint64
}

// run runs the correctness scenario on top of o with the run's signals, protocol and seed,
// logging the validation summary before the caller checks the result.
func (tc correctnessRun) run(t *testing.T, namePrefix string, o CorrectnessOptions) *CorrectnessResult {
	t.Helper()
	sig, err := sender.ParseSignals(tc.signals)
	if err != nil {
		t.Fatal(err)
	}
	o.Name, o.Signals, o.Protocol, o.Seed = namePrefix+tc.name, sig, tc.protocol, tc.seed
	res := Correctness(t, o)
	t.Logf("%s", res.Validations.Summary())
	return res
}

// TestCheckRequiresEveryBackendToOwnConversations: exact detection alone would pass if the
// gateway sent every conversation to one backend, so Check must fail that run.
func TestCheckRequiresEveryBackendToOwnConversations(t *testing.T) {
	const complaint = "got no share of the load"
	check := func(r *CorrectnessResult) string {
		err := harness.RunSession(context.Background(), "check", io.Discard, func(tb testing.TB) { r.Check(tb) })
		if err == nil {
			return ""
		}
		return err.Error()
	}
	gateway := CollectorShare{Name: "gw", Role: "gateway", Accepted: 100}
	shared := &CorrectnessResult{Options: DefaultScaleOut(), Collectors: []CollectorShare{
		gateway, {Name: "b1", Role: "backend", Accepted: 50, Outcomes: 5}, {Name: "b2", Role: "backend", Accepted: 50, Outcomes: 5},
	}}
	assert.NotContains(t, check(shared), complaint)
	assert.NotContains(t, check(shared), "collectors described")
	oneSided := &CorrectnessResult{Options: DefaultScaleOut(), Collectors: []CollectorShare{
		gateway, {Name: "b1", Role: "backend", Accepted: 100, Outcomes: 10}, {Name: "b2", Role: "backend"},
	}}
	assert.Contains(t, check(oneSided), "backend b2 "+complaint)
	assert.NotContains(t, check(oneSided), "backend b1 "+complaint)
	missing := &CorrectnessResult{Options: DefaultScaleOut(), Collectors: []CollectorShare{gateway, shared.Collectors[1]}}
	assert.Contains(t, check(missing), "2 collectors described, want a gateway and 2 backends")
}

// TestSLOTruthCountsALateMessageTwice: a late message is two events of the delivery SLO (its
// delivery, and its seq's loss) and two good ones (its delivery, and the retraction of the
// seq's loss), so with only clean and late messages every event is good.
func TestSLOTruthCountsALateMessageTwice(t *testing.T) {
	wc := workload.DefaultConfig()
	wc.Messages, wc.OfflineShare = 600, 0
	gen, err := workload.NewGenerator(wc)
	require.NoError(t, err)
	book := faults.NewBook()
	p, err := faults.NewPlanner(gen, faults.Config{Probability: map[faults.Class]float64{faults.ClassLateMessage: 0.5}, Timeouts: ShortTimeouts()}, book)
	require.NoError(t, err)
	for {
		if _, _, ok := p.Next(); !ok {
			break
		}
	}
	late := book.Counts()[faults.ClassLateMessage]
	require.Positive(t, late)
	want := sloTruth(book)
	assert.Equal(t, want.WantEvents, book.Len()+late)
	assert.Equal(t, want.WantGood, book.Len()+late)
}
