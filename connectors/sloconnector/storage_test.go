package sloconnector

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/filestorage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/extension/extensiontest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/imcol/imcol/components/signal"
	"github.com/imcol/imcol/connectors/sloconnector/internal/metadatatest"
	"github.com/imcol/imcol/connectors/sloconnector/sloconfig"
)

// noTick is a flush interval these tests never reach: they flush directly with flushAt, and
// a ticker flush racing with it would add a second batch to the sink.
const noTick = 24 * time.Hour

// startFileStorage runs a real file_storage extension over dir.
func startFileStorage(t *testing.T, dir string) (component.ID, component.Host) {
	t.Helper()
	f := filestorage.NewFactory()
	cfg := f.CreateDefaultConfig().(*filestorage.Config)
	cfg.Directory = dir
	cfg.Compaction.Directory = dir
	ext, err := f.Create(context.Background(), extensiontest.NewNopSettings(f.Type()), cfg)
	require.NoError(t, err)
	require.NoError(t, ext.Start(context.Background(), componenttest.NewNopHost()))
	t.Cleanup(func() { require.NoError(t, ext.Shutdown(context.Background())) })
	id := component.NewID(f.Type())
	return id, extHost{Host: componenttest.NewNopHost(), ext: map[component.ID]component.Component{id: ext}}
}

func TestRestartWithStorage(t *testing.T) {
	t.Parallel()
	id, host := startFileStorage(t, t.TempDir())
	slo := oneDayWindows(ratioSLO("api", 0.99, "", "status.code == STATUS_CODE_ERROR"))
	slo.Dimensions = []string{"service.name"}
	cfg := &Config{FlushInterval: noTick, Storage: &id, SLOs: []sloconfig.SLOConfig{slo}}
	ctx := context.Background()

	first := newHarness(t, cfg, signal.Traces, nopSettings())
	require.NoError(t, first.conn.Start(ctx, host))
	first.at(5 * time.Minute)
	require.NoError(t, first.conn.ConsumeTraces(ctx, traces(append(
		repeat(90, spanSpec{service: "gateway"}),
		repeat(10, spanSpec{service: "gateway", err: true, kind: ptrace.SpanKindServer})...)...)))
	first.flushAt(6 * time.Minute)
	require.NoError(t, first.conn.Shutdown(ctx)) // saves the state

	// The collector restarts 20 minutes later: windows, budget and counters carry on.
	second := newHarness(t, cfg, signal.Traces, nopSettings())
	second.at(26 * time.Minute)
	require.NoError(t, second.conn.Start(ctx, host))
	t.Cleanup(func() { require.NoError(t, second.conn.Shutdown(ctx)) })
	require.NoError(t, second.conn.ConsumeTraces(ctx, traces(repeat(100, spanSpec{service: "gateway"})...)))
	m := second.flushAt(27 * time.Minute)
	s := "service.name=gateway,slo_name=api"
	// The restored series was already reported, so its counters continue at once.
	assert.Equal(t, 200.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 190.0, m["imcol.slo.good_events{"+s+"}"])
	// 30m (minutes -2..27) and 1h hold both batches: 10 bad of 200 → 0.05 / 0.01 = 5.
	assert.InDelta(t, 5, m["imcol.slo.burn_rate{"+s+",window=30m}"], 1e-9)
	assert.InDelta(t, 5, m["imcol.slo.burn_rate{"+s+",window=1h}"], 1e-9)
	// 5m holds only the new batch.
	assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window=5m}"])
	assert.InDelta(t, 1-5.0, m["imcol.slo.error_budget.remaining{"+s+"}"], 1e-9)
}

func TestRestartDiscardsUnusableState(t *testing.T) {
	t.Parallel()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	id, host := startFileStorage(t, t.TempDir())
	slo := oneDayWindows(ratioSLO("api", 0.99, "", "status.code == STATUS_CODE_ERROR"))
	ctx := context.Background()

	// Corrupt bytes under the SLO's key, as a crash during a write or a hostile file could leave.
	client, err := host.GetExtensions()[id].(storage.Extension).GetClient(ctx, component.KindConnector, nopSettings().ID, string(signal.Traces))
	require.NoError(t, err)
	require.NoError(t, client.Set(ctx, storageKeyPrefix+"api", []byte("SLO\x01\xff")))
	// Another SLO saved with different dimensions.
	require.NoError(t, client.Set(ctx, storageKeyPrefix+"other", []byte("SLO\x01\x01\x03env\x00")))
	require.NoError(t, client.Close(ctx))

	other := oneDayWindows(ratioSLO("other", 0.99, "", "false"))
	cfg := &Config{FlushInterval: noTick, Storage: &id, SLOs: []sloconfig.SLOConfig{slo, other}}
	set := metadatatest.NewSettings(tt)
	set.ID = nopSettings().ID
	h := newHarness(t, cfg, signal.Traces, set)
	h.start(host)
	m := h.flushAt(time.Minute)
	assert.Equal(t, 0.0, m["imcol.slo.events{slo_name=api}"])
	assert.Equal(t, 1.0, m["imcol.slo.error_budget.remaining{slo_name=other}"])
	metadatatest.AssertEqualConnectorSloStorageErrors(t, tt, []metricdata.DataPoint[int64]{
		{Value: 2, Attributes: attribute.NewSet(attribute.String("operation", "load"))},
	}, metricdatatest.IgnoreTimestamp())
}

func TestRestartWithLowerMaxSeriesMovesSeriesToOverflow(t *testing.T) {
	t.Parallel()
	tt := componenttest.NewTelemetry()
	t.Cleanup(func() { require.NoError(t, tt.Shutdown(context.Background())) })
	id, host := startFileStorage(t, t.TempDir())
	slo := oneDayWindows(ratioSLO("api", 0.99, "", "status.code == STATUS_CODE_ERROR"))
	slo.Dimensions = []string{"service.name"}
	ctx := context.Background()

	first := newHarness(t, &Config{FlushInterval: noTick, Storage: &id, SLOs: []sloconfig.SLOConfig{slo}}, signal.Traces, nopSettings())
	require.NoError(t, first.conn.Start(ctx, host))
	first.at(time.Minute)
	require.NoError(t, first.conn.ConsumeTraces(ctx, traces(append(append(
		repeat(10, spanSpec{service: "a"}),
		repeat(20, spanSpec{service: "b", err: true})...),
		repeat(30, spanSpec{service: "c"})...)...)))
	require.NoError(t, first.conn.Shutdown(ctx))

	// Restarted with room for one series: "a" (first in key order) stays, b and c are
	// merged into the overflow series, their events counted as dropped.
	slo.MaxSeries = 1
	set := metadatatest.NewSettings(tt)
	set.ID = nopSettings().ID
	second := newHarness(t, &Config{FlushInterval: noTick, Storage: &id, SLOs: []sloconfig.SLOConfig{slo}}, signal.Traces, set)
	second.at(2 * time.Minute)
	require.NoError(t, second.conn.Start(ctx, host))
	t.Cleanup(func() { require.NoError(t, second.conn.Shutdown(ctx)) })
	m := second.flushAt(3 * time.Minute)
	assert.Equal(t, 10.0, m["imcol.slo.events{service.name=a,slo_name=api}"])
	overflow := "otel.metric.overflow=true,slo_name=api"
	assert.Equal(t, 50.0, m["imcol.slo.events{"+overflow+"}"])
	assert.Equal(t, 30.0, m["imcol.slo.good_events{"+overflow+"}"])
	// 20 bad of 50 → 0.4 / 0.01.
	assert.InDelta(t, 40, m["imcol.slo.burn_rate{"+overflow+",window=1h}"], 1e-9)
	metadatatest.AssertEqualConnectorSloSeriesDropped(t, tt, []metricdata.DataPoint[int64]{{Value: 50}}, metricdatatest.IgnoreTimestamp())
	metadatatest.AssertEqualConnectorSloSeries(t, tt, []metricdata.DataPoint[int64]{{Value: 2}}, metricdatatest.IgnoreTimestamp())
}

func TestRestartKeepsRetractions(t *testing.T) {
	t.Parallel()
	id, host := startFileStorage(t, t.TempDir())
	cfg := &Config{FlushInterval: noTick, Storage: &id, SLOs: []sloconfig.SLOConfig{deliverySLO(true)}}
	ctx := context.Background()

	first := newHarness(t, cfg, signal.Logs, nopSettings())
	require.NoError(t, first.conn.Start(ctx, host))
	first.at(5 * time.Minute)
	require.NoError(t, first.conn.ConsumeLogs(ctx, outcomeLogs(append(delivered(8), lostRecord, lostRecord)...)))
	first.at(6 * time.Minute)
	require.NoError(t, first.conn.ConsumeLogs(ctx, outcomeLogs(retractionLog)))
	require.NoError(t, first.conn.Shutdown(ctx)) // saves the state

	second := newHarness(t, cfg, signal.Logs, nopSettings())
	second.at(8 * time.Minute)
	require.NoError(t, second.conn.Start(ctx, host))
	t.Cleanup(func() { require.NoError(t, second.conn.Shutdown(ctx)) })
	// The second retraction arrives after the restart, in a minute without its loss.
	require.NoError(t, second.conn.ConsumeLogs(ctx, outcomeLogs(retractionLog)))
	m := second.flushAt(9 * time.Minute)
	s := "slo_name=delivery"
	assert.Equal(t, 10.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 10.0, m["imcol.slo.good_events{"+s+"}"])
	assert.Equal(t, 2.0, m["imcol.slo.retracted_events{"+s+"}"])
	// The restored buckets still hold the losses; both are taken back.
	assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window=5m}"])
	assert.Equal(t, 1.0, m["imcol.slo.error_budget.remaining{"+s+"}"])
}

// TestRestoreVersion1State loads state saved before retractions existed:
// testdata/state_v1_api.bin was written by the version 1 encoder for the SLO below after 100
// spans, 10 of them failed, at t0+5m.
func TestRestoreVersion1State(t *testing.T) {
	t.Parallel()
	v1, err := os.ReadFile(filepath.Join("testdata", "state_v1_api.bin"))
	require.NoError(t, err)
	require.Equal(t, "SLO\x01", string(v1[:4]))
	id, host := startFileStorage(t, t.TempDir())
	ctx := context.Background()
	client, err := host.GetExtensions()[id].(storage.Extension).GetClient(ctx, component.KindConnector, nopSettings().ID, string(signal.Traces))
	require.NoError(t, err)
	require.NoError(t, client.Set(ctx, storageKeyPrefix+"api", v1))
	require.NoError(t, client.Close(ctx))

	slo := oneDayWindows(ratioSLO("api", 0.99, "", "status.code == STATUS_CODE_ERROR"))
	slo.SLI.Ratio.Retracted = `attributes["retracted"] == true`
	h := newHarness(t, &Config{FlushInterval: noTick, Storage: &id, SLOs: []sloconfig.SLOConfig{slo}}, signal.Traces, nopSettings())
	h.at(26 * time.Minute)
	h.start(host)
	m := h.flushAt(27 * time.Minute)
	s := "slo_name=api"
	assert.Equal(t, 100.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 90.0, m["imcol.slo.good_events{"+s+"}"])
	assert.Equal(t, 0.0, m["imcol.slo.retracted_events{"+s+"}"])
	assert.InDelta(t, 0.1/0.01, m["imcol.slo.burn_rate{"+s+",window=30m}"], 1e-9)

	// Retractions add to the restored counters and buckets.
	require.NoError(t, h.conn.ConsumeTraces(ctx, traces(repeat(10, spanSpec{attrs: map[string]any{"retracted": true}})...)))
	m = h.flushAt(28 * time.Minute)
	assert.Equal(t, 100.0, m["imcol.slo.events{"+s+"}"])
	assert.Equal(t, 100.0, m["imcol.slo.good_events{"+s+"}"])
	assert.Equal(t, 10.0, m["imcol.slo.retracted_events{"+s+"}"])
	assert.Equal(t, 0.0, m["imcol.slo.burn_rate{"+s+",window=30m}"])
	assert.Equal(t, 1.0, m["imcol.slo.error_budget.remaining{"+s+"}"])
}
