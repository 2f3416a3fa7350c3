package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.uber.org/zap"

	"github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"
)

// The snapshot is split into chunks so no single value is too large for the storage
// backend; the meta key is written last, so a half-written snapshot is never read.
const (
	storageMetaKey     = "im_loss.state.meta"
	storageChunkPrefix = "im_loss.state.chunk."
	storageChunkSize   = 1 << 20
	maxStorageChunks   = 1 << 16
)

func storageClient(ctx context.Context, host component.Host, storageID, self component.ID) (storage.Client, error) {
	ext, ok := host.GetExtensions()[storageID]
	if !ok {
		return nil, fmt.Errorf("storage: extension %q not found", storageID)
	}
	se, ok := ext.(storage.Extension)
	if !ok {
		return nil, fmt.Errorf("storage: extension %q is not a storage extension", storageID)
	}
	client, err := se.GetClient(ctx, component.KindProcessor, self, "")
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	return client, nil
}

func chunkKey(i int) string { return storageChunkPrefix + strconv.Itoa(i) }

// restore loads the saved state into the (not yet running) tracker. Without checkpoints
// the saved copy is deleted, so a crash later cannot resurrect stale state; with them, start
// overwrites it with a checkpoint at once. A corrupt snapshot is logged, not fatal: the cost
// is the same as a restart without storage. It reports whether the state restored is exact
// (a complete final snapshot).
func (r *lossRuntime) restore(ctx context.Context) (exact bool) {
	meta, err := r.client.Get(ctx, storageMetaKey)
	if err != nil {
		r.logger.Warn("Cannot read saved in-flight state", zap.Error(err))
		return false
	}
	if meta == nil {
		return false
	}
	n, k := binary.Uvarint(meta)
	if k <= 0 || n > maxStorageChunks {
		r.logger.Warn("Ignoring corrupt saved in-flight state")
		r.deleteSaved(ctx, 0)
		return false
	}
	r.savedChunks = int(n)
	ops := make([]*storage.Operation, int(n))
	for i := range ops {
		ops[i] = storage.GetOperation(chunkKey(i))
	}
	if err = r.client.Batch(ctx, ops...); err != nil {
		r.logger.Warn("Cannot read saved in-flight state", zap.Error(err))
		return false
	}
	var data []byte
	for _, op := range ops {
		data = append(data, op.Value...)
	}
	st, err := tracker.RestoreShards(r.disp, r.trackers(), data, r.now())
	fields := []zap.Field{
		zap.Int("messages", st.Messages), zap.Int("decided", st.Decided), zap.Int("format_version", st.Version),
		zap.Bool("from_checkpoint", st.Kind == tracker.Checkpoint),
	}
	switch {
	case err != nil:
		r.logger.Warn("Saved in-flight state partly unreadable", append(fields, zap.Error(err))...)
	case st.Kind == tracker.Checkpoint:
		r.logger.Warn("Restored in-flight state from a checkpoint (the collector did not shut down cleanly): "+
			"these messages are never judged lost, and sequence gaps across the crash are not reported", fields...)
	default:
		r.logger.Info("Restored in-flight state", fields...)
	}
	if !r.checkpointing() {
		r.deleteSaved(ctx, int(n))
		r.savedChunks = 0
	}
	for _, s := range r.shards {
		r.flush(s.tr) // restoring into smaller limits may have evicted
		s.publish()
	}
	return err == nil && st.Kind == tracker.Final
}

func (r *lossRuntime) deleteSaved(ctx context.Context, chunks int) {
	ops := []*storage.Operation{storage.DeleteOperation(storageMetaKey)}
	for i := range chunks {
		ops = append(ops, storage.DeleteOperation(chunkKey(i)))
	}
	if err := r.client.Batch(ctx, ops...); err != nil {
		r.logger.Warn("Cannot delete saved in-flight state", zap.Error(err))
	}
}

// save writes the final snapshot at shutdown, after the last event was applied.
func (r *lossRuntime) save(ctx context.Context) error {
	if err := r.writeSnapshot(ctx, r.snapshotStopped(r.now(), tracker.Final)); err != nil {
		return err
	}
	r.logger.Info("Saved in-flight messages", zap.Int("messages", r.tracked()))
	return nil
}

// writeSnapshot replaces the saved snapshot in one storage batch (one transaction in
// file_storage): the chunks, the deletion of chunks a larger previous snapshot left behind,
// and the meta key last. Callers never overlap: start, then checkpointLoop, then shutdown.
func (r *lossRuntime) writeSnapshot(ctx context.Context, data []byte) error {
	var ops []*storage.Operation
	for i := 0; len(data) > 0; i++ {
		n := min(len(data), storageChunkSize)
		ops = append(ops, storage.SetOperation(chunkKey(i), data[:n]))
		data = data[n:]
	}
	chunks := len(ops)
	if chunks > maxStorageChunks {
		return errors.New("in-flight state too large to save")
	}
	for i := chunks; i < r.savedChunks; i++ {
		ops = append(ops, storage.DeleteOperation(chunkKey(i)))
	}
	ops = append(ops, storage.SetOperation(storageMetaKey, binary.AppendUvarint(nil, uint64(chunks))))
	if err := r.client.Batch(ctx, ops...); err != nil {
		return fmt.Errorf("saving in-flight state: %w", err)
	}
	r.savedChunks = chunks
	return nil
}
