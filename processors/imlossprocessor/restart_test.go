package imlossprocessor

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/extension/storage/storagetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/imcol/imcol/components/imsemconv"
)

// memStorage is a storage extension whose content can be copied at any moment: the copy is
// what a crash at that moment leaves on disk (file_storage writes each batch in one
// transaction, and nothing else is written at shutdown by a collector that was killed).
type memStorage struct {
	mu   sync.Mutex
	data map[string][]byte
}

func newMemStorage() *memStorage { return &memStorage{data: map[string][]byte{}} }

func (*memStorage) Start(context.Context, component.Host) error { return nil }
func (*memStorage) Shutdown(context.Context) error              { return nil }

func (s *memStorage) GetClient(context.Context, component.Kind, component.ID, string) (storage.Client, error) {
	return s, nil
}

func (s *memStorage) crashCopy() *memStorage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &memStorage{data: maps.Clone(s.data)}
}

func (s *memStorage) Get(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[key], nil
}

func (s *memStorage) Set(_ context.Context, key string, value []byte) error {
	return s.Batch(context.Background(), storage.SetOperation(key, value))
}

func (s *memStorage) Delete(_ context.Context, key string) error {
	return s.Batch(context.Background(), storage.DeleteOperation(key))
}

func (s *memStorage) Batch(_ context.Context, ops ...*storage.Operation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range ops {
		switch op.Type {
		case storage.Get:
			op.Value = s.data[op.Key]
		case storage.Set:
			s.data[op.Key] = append([]byte(nil), op.Value...)
		case storage.Delete:
			delete(s.data, op.Key)
		}
	}
	return nil
}

func (*memStorage) Close(context.Context) error { return nil }

var memStorageID = component.MustNewIDWithName("file_storage", "mem")

func hostWith(s *memStorage) component.Host {
	return storagetest.NewStorageHost().WithExtension(memStorageID, s)
}

func storageCfg() *Config {
	cfg := defaultCfg()
	id := memStorageID
	cfg.Storage = &id
	return cfg
}

// TestGracefulRestartRemembersDecidedMessages is the testbed's false loss: a delayed event
// of a message decided before a graceful restart must not start a new message, which its
// deadline would declare lost at persist.
func TestGracefulRestartRemembersDecidedMessages(t *testing.T) {
	cfg := storageCfg()
	st := newMemStorage()
	clk := newFakeClock()
	h := newHarness(t, cfg, hostWith(st), clk)
	decideWithoutPersist(t, h)
	h.shutdown()

	clk.Advance(time.Minute)
	h2 := newHarness(t, cfg, hostWith(st), clk)
	defer h2.shutdown()
	h2.sendSpans(
		lc{stage: persist, msg: "m1", conv: "c", seq: 1},
		lc{stage: deliver, msg: "m1", conv: "c", dev: "d"}, // overtaken by its ack, not a duplicate
	)
	h2.advance(cfg.OfflineTimeout)
	assert.Empty(t, outcomeSpans(h2.tsink), "no new message, no false loss")
	assert.Equal(t, 0, h2.rt().tracked())
}

// TestCrashRestoresLastCheckpoint: without a shutdown, the last periodic checkpoint is all
// there is. Its messages come back, but the events applied after it are gone, so restored
// messages are never judged lost and seq gaps across the crash are not reported.
func TestCrashRestoresLastCheckpoint(t *testing.T) {
	cfg := storageCfg()
	st := newMemStorage()
	clk := newFakeClock()
	checkpointed := make(chan int, 1)
	h := newHarnessWithHook(t, cfg, hostWith(st), clk, checkpointed)
	h.sendSpans(
		lc{stage: send, msg: "m1", conv: "c"}, lc{stage: persist, msg: "m1", conv: "c", seq: 1},
		lc{stage: push, msg: "m1", conv: "c", fanout: 1},
		lc{stage: send, msg: "m2", conv: "c"}, lc{stage: persist, msg: "m2", conv: "c", seq: 2},
		lc{stage: push, msg: "m2", conv: "c", fanout: 1},
	)
	h.rt().forceTick() // the events are in before the clock moves
	clk.Advance(cfg.CheckpointInterval)
	select {
	case n := <-checkpointed:
		assert.Positive(t, n)
	case <-time.After(10 * time.Second):
		t.Fatal("no checkpoint after checkpoint_interval")
	}
	// After the checkpoint: m1 is acked, seq 3 persisted. Then the collector is killed.
	h.sendSpans(
		lc{stage: deliver, msg: "m1", conv: "c", dev: "d"}, lc{stage: ack, msg: "m1", conv: "c", dev: "d"},
		lc{stage: send, msg: "m3", conv: "c"}, lc{stage: persist, msg: "m3", conv: "c", seq: 3},
	)
	h.rt().forceTick()
	require.Len(t, outcomeSpans(h.tsink), 1, "m1 delivered before the crash")
	disk := st.crashCopy()
	h.shutdown() // writes into st, which the crash never let happen

	clk.Advance(time.Minute)
	h2 := newHarness(t, cfg, hostWith(disk), clk)
	defer h2.shutdown()
	require.Equal(t, 2, h2.rt().tracked(), "m1 and m2 restored from the checkpoint")
	h2.sendSpans(
		// In the service's own order: m2's acks and m5's persist, stamped before the crash,
		// were delayed (m5's send, push and acks may have been applied after the checkpoint
		// and lost); m4 began after the restart.
		lc{stage: deliver, msg: "m2", conv: "c", dev: "d"}, lc{stage: ack, msg: "m2", conv: "c", dev: "d"},
		lc{stage: persist, msg: "m5", conv: "c2", seq: 9, at: cfg.CheckpointInterval},
		lc{stage: persist, msg: "m4", conv: "c", seq: 4, at: cfg.CheckpointInterval + 2*time.Minute},
	)
	h2.advance(cfg.OfflineTimeout)
	var got []string
	for _, s := range outcomeSpans(h2.tsink) {
		got = append(got, attr(s.Attributes(), imsemconv.AttrOutcome)+"/"+attr(s.Attributes(), imsemconv.AttrMessageID)+
			"/"+attr(s.Attributes(), imsemconv.AttrLossReason)+"/"+attr(s.Attributes(), imsemconv.AttrLossStage))
	}
	// m1 (acked before the crash) and m5 are not lost, seq 3 is no gap; m4 (persist only,
	// begun after the restart) is judged as usual.
	assert.ElementsMatch(t, []string{"delivered/m2//", "lost/m4/ack_timeout/persist"}, got)
	assertCounter(t, h2.tel, "otelcol_processor_im_loss_unrecognized_events", []metricdata.DataPoint[int64]{
		{Value: 2, Attributes: attribute.NewSet(attribute.String("reason", "unjudged_after_restart"))},
	}, metricdatatest.IgnoreTimestamp())
}

// TestCheckpointsDisabled: checkpoint_interval 0 writes only at shutdown, so a crash leaves
// nothing to restore (the README's cost of a crash without checkpoints).
func TestCheckpointsDisabled(t *testing.T) {
	cfg := storageCfg()
	cfg.CheckpointInterval = 0
	st := newMemStorage()
	clk := newFakeClock()
	h := newHarness(t, cfg, hostWith(st), clk)
	h.sendSpans(lc{stage: send, msg: "m1", conv: "c"})
	h.advance(time.Hour)
	disk := st.crashCopy()
	h.shutdown()
	assert.Empty(t, disk.data)
	assert.NotEmpty(t, st.data, "saved at shutdown")
}
