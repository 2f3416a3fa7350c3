package scenarios

import (
	"testing"
)

// TestLag proves that im_loss's verdicts do not depend on how late telemetry arrives: every
// fault class, with im-gateway (deliver and ack), im-push (the fan-out) or every service
// lagged by twice ack_timeout on the way to the collector (every service also with
// max_source_lag below the lag: a backlog), or with the sink stalled for three
// times ack_timeout mid-run so the whole pipeline blocks. Each run must be exact (precision =
// recall = 1 for every label, in both outcome signals), drop nothing, keep the SLO counters
// equal to the truth, and detect every loss within lag + allowed_lateness + 2 ticks of its
// deadline in event time. A collector deciding on its own clock fails every one of them.
func TestLag(t *testing.T) {
	for _, mode := range LagModes {
		t.Run(string(mode), func(t *testing.T) {
			Lag(t, DefaultLag(mode)).Check(t)
		})
	}
}

// TestDeadService: im-gateway stops sending for good mid-run. Its in-flight messages and every
// later one must be lost at the stage the events sent prove (push, or deliver where a device
// got the message but its ack was never reported), within ack_timeout + source_idle_timeout +
// a tick of their first event; nothing else may be lost.
func TestDeadService(t *testing.T) {
	DeadService(t, DefaultDeadService()).Check(t)
}
