package scenarios

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/internal/testcollector"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/sender"
	"github.com/imcol/imcol/testbed/workload"
)

// TestPerformanceHarnessOnUpstreamPipelines runs the throughput machinery, small, on the two
// reference pipelines, which need nothing but upstream components: the load reaches the
// sink whole, the resource monitor sees the child, and the peer's span_metrics connector
// produces its RED metrics.
func TestPerformanceHarnessOnUpstreamPipelines(t *testing.T) {
	o := DefaultThroughput()
	o.Rates, o.StepDuration, o.Variants = []float64{300}, 3*time.Second, []Variant{VariantBaseline, VariantPeer}
	// Offline devices come back within seconds, so the step's tail is short.
	o.Timeouts = ShortTimeouts()
	res := Throughput(t, o)
	require.Len(t, res.Variants, 2)
	for _, v := range res.Variants {
		require.Len(t, v.Steps, 1, v.Variant.Name)
		s := v.Steps[0]
		assert.True(t, s.Settle.Settled, "%s: %s", v.Variant.Name, s.Settle.LastProblem)
		assert.Zero(t, s.Drops, "%s: %v", v.Variant.Name, s.DropDetail)
		assert.Equal(t, int64(900), s.Messages)
		assert.Positive(t, s.Items)
		// Pacing never runs ahead of the schedule; how far behind it falls depends on the machine.
		assert.Positive(t, s.Achieved, v.Variant.Name)
		assert.LessOrEqual(t, s.Achieved, 310.0, v.Variant.Name)
		assert.GreaterOrEqual(t, s.Usage.Samples, 2, v.Variant.Name)
		assert.Positive(t, s.Usage.RSSMax, v.Variant.Name)
		assert.Positive(t, s.CPUPerMessage, v.Variant.Name)
		assert.Empty(t, v.Validations, "only the IM pipeline is validated")
	}
	assert.Empty(t, res.Ratios, "ratios need the IM pipeline")
}

func TestPeerPipelineProducesSpanMetrics(t *testing.T) {
	_, col := startSinkAndCollector(t, "peer-red", VariantPeer.Config, nil, harness.SinkOptions{})
	wc := workload.DefaultConfig()
	wc.Messages, wc.Rate = 50, 100
	lr := startLoad(context.Background(), t, Load{Workload: wc, Timeouts: ShortTimeouts(), Sender: sender.Config{Endpoint: col.Endpoints.OTLPGRPC}})
	_, err := lr.run.Wait()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var names []string
	err = testcollector.Eventually(ctx, 250*time.Millisecond, func() error {
		fams, perr := col.Pipeline(ctx)
		if perr != nil {
			return perr
		}
		names = fams.Names()
		if fams.Sum("traces_span_metrics_calls_total", map[string]string{"im_message_stage": "ack"}) == 0 {
			return errors.New("no span_metrics calls for the ack stage yet")
		}
		return nil
	})
	require.NoError(t, err, "families: %v", names)
}
