// Package restarttest runs the restart scenario in go test. It is a package of its own so
// that go test runs it beside the longer scenarios package: it mostly waits for deadlines.
package restarttest

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/imcol/imcol/testbed/scenarios"
)

// TestRestartWithoutStorageInventsNoLoss restarts bin/imcol without storage a third of the
// way through a stream whose persists lag 2 s: persists of messages the first instance
// decided reach the second, which must not declare them lost (before the start-up distrust
// it declared hundreds lost at persist). What was in flight is forgotten, so some messages
// have no verdict: that proves the restart came mid-stream.
func TestRestartWithoutStorageInventsNoLoss(t *testing.T) {
	o := scenarios.DefaultRestart(scenarios.RestartNoStorage)
	o.Messages = 3000
	res := scenarios.Restart(t, o)
	assert.Zero(t, res.FalseLosses, "false losses after a restart without storage")
	assert.Positive(t, res.Undecided, "nothing was in flight at the restart")
}
