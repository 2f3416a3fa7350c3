package sloconnector

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"

	"github.com/imcol/imcol/connectors/sloconnector/sloconfig"
)

// memClient is an in-memory storage client that records its use.
type memClient struct {
	mu      sync.Mutex
	data    map[string][]byte
	batches int
	closed  bool
}

func (m *memClient) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data[key], nil
}

func (m *memClient) Set(_ context.Context, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[key] = value
	return nil
}

func (m *memClient) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, key)
	return nil
}

// Batch ignores ctx, as file_storage does.
func (m *memClient) Batch(_ context.Context, ops ...*storage.Operation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches++
	for _, op := range ops {
		switch op.Type {
		case storage.Get:
			op.Value = m.data[op.Key]
		case storage.Set:
			m.data[op.Key] = op.Value
		case storage.Delete:
			delete(m.data, op.Key)
		}
	}
	return nil
}

func (m *memClient) Close(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

func (m *memClient) state() (batches int, closed bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.batches, m.closed
}

type memStorage struct {
	component.StartFunc
	component.ShutdownFunc
	client *memClient
}

func (s memStorage) GetClient(context.Context, component.Kind, component.ID, string) (storage.Client, error) {
	return s.client, nil
}

// TestShutdownPastDeadlineStopsEverything: the next consumer blocks until its context is done,
// as an exporter with a full queue does, and holds the flush loop; Shutdown's context is short
// or already expired. Shutdown must return promptly with the context's error, the loop must
// have exited, and the state must be saved and the storage client closed.
func TestShutdownPastDeadlineStopsEverything(t *testing.T) {
	for name, deadline := range map[string]time.Duration{"short deadline": 50 * time.Millisecond, "expired deadline": -time.Second} {
		t.Run(name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			entered := make(chan struct{}, 1)
			var calls int
			var callsMu sync.Mutex
			next, err := consumer.NewMetrics(func(ctx context.Context, _ pmetric.Metrics) error {
				callsMu.Lock()
				calls++
				callsMu.Unlock()
				select {
				case entered <- struct{}{}:
				default:
				}
				<-ctx.Done()
				return ctx.Err()
			})
			require.NoError(t, err)
			client := &memClient{data: map[string][]byte{}}
			id := component.MustNewID("mem_storage")
			host := extHost{Host: nopHost(), ext: map[component.ID]component.Component{id: memStorage{client: client}}}
			cfg := &Config{FlushInterval: time.Minute, Storage: &id, SLOs: []sloconfig.SLOConfig{deliverySLO(true)}}
			require.NoError(t, confmap.Validate(cfg))
			clock := clockwork.NewFakeClockAt(t0)
			c, err := newFactoryWithClock(clock).CreateLogsToMetrics(context.Background(), nopSettings(), cfg, next)
			require.NoError(t, err)
			require.NoError(t, c.Start(context.Background(), host))
			require.NoError(t, c.ConsumeLogs(context.Background(), outcomeLogs(append(delivered(9), lostRecord, retractionLog)...)))

			// The loop's tick flush is stuck in the next consumer.
			require.NoError(t, clock.BlockUntilContext(context.Background(), 1))
			clock.Advance(time.Minute)
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("the tick flush never reached the next consumer")
			}

			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			defer cancel()
			start := time.Now()
			err = c.Shutdown(ctx)
			elapsed := time.Since(start)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Less(t, elapsed, 5*time.Second, "Shutdown must not wait beyond the cancelled calls")

			batches, closed := client.state()
			assert.True(t, closed, "the storage client must be closed when Shutdown returns")
			assert.GreaterOrEqual(t, batches, 2, "the load at start and at least the last save")
			st, err := client.Get(context.Background(), storageKeyPrefix+"delivery")
			require.NoError(t, err)
			assert.NotEmpty(t, st, "the state was saved")
			callsMu.Lock()
			defer callsMu.Unlock()
			if deadline < 0 {
				assert.Equal(t, 1, calls, "with its context expired, the last flush is not emitted")
			} else {
				assert.Equal(t, 2, calls, "the last flush is emitted with Shutdown's context")
			}
			// Safe twice, and then there is nothing left to wait for.
			require.NoError(t, c.Shutdown(context.Background()))
		})
	}
}
