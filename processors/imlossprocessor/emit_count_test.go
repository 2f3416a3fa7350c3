package imlossprocessor

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"
)

// TestOutcomeAttributeCount keeps the size putOutcomeAttributes allocates in step with what it
// writes, for every outcome and optional attribute.
func TestOutcomeAttributeCount(t *testing.T) {
	t.Parallel()
	ids := tracker.Outcome{MessageID: "m", ConversationID: "c", DeviceID: "d"}
	seq := func(o tracker.Outcome) tracker.Outcome {
		o.HasSeq, o.Seq, o.GapSize, o.Anomaly = true, 4, 2, true
		return o
	}
	var cases []tracker.Outcome
	for _, base := range []tracker.Outcome{{}, ids} {
		for _, outcome := range imsemconv.Outcomes {
			o := base
			o.Outcome = outcome
			all := o
			all.HasLatency, all.LostDevices, all.Retracted = true, 2, true
			cases = append(cases, o, all, seq(o), seq(all))
		}
	}
	for _, o := range cases {
		m := pcommon.NewMap()
		putOutcomeAttributes(m, &o)
		assert.Equal(t, m.Len(), outcomeAttributeCount(&o), "%+v", o)
	}
}
