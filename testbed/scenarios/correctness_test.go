package scenarios

import (
	"testing"

	"github.com/imcol/imcol/testbed/sender"
)

// TestCorrectness runs the correctness scenario against the real bin/imcol: every fault
// class, spans over gRPC in one run and a mix of spans and log records over HTTP in the
// other (so every message crosses both pipelines of one shared im_loss). Detection must be
// exact: precision = recall = 1 for every outcome label.
func TestCorrectness(t *testing.T) {
	for _, tc := range []struct {
		name, signals, protocol string
		seed                    uint64
	}{
		{"traces-grpc", "traces", "grpc", 42},
		{"mixed-http", "mixed", "http", 43},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig, err := sender.ParseSignals(tc.signals)
			if err != nil {
				t.Fatal(err)
			}
			o := DefaultCorrectness()
			o.Name, o.Signals, o.Protocol, o.Seed = "correctness-"+tc.name, sig, tc.protocol, tc.seed
			res := Correctness(t, o)
			t.Logf("%s", res.Validations.Summary())
			res.Check(t)
		})
	}
}
