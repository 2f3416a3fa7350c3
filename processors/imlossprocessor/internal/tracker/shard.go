package tracker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

// A sharded tracker spreads the state over several Trackers, each owned by its own goroutine:
// a message (its lifecycle, held events and the memory of its decision) lives in the shard of
// a hash of its id, a conversation's seq gap detection in the shard of a hash of the
// conversation id. One Dispatcher, fed every event in arrival order, stamps each with the
// watermark of all sources (a watermark over the sources one shard happens to see would pass
// messages a quieter source still has in flight) and says where it goes. A shard applying its
// events in the order dispatched, each with its stamp, and the ticks with the dispatcher's
// limits, sees for each of its messages exactly what a single tracker would: detection does
// not depend on the shard count. Only the limits are split.
type Dispatcher struct {
	*Timeline
	key [2]uint64
	n   uint64
}

// NewShards returns a dispatcher and n shards (n >= 1) with cfg's limits split between them:
// tracked messages, conversations and the decided-message memory. A conversation's messages
// spread over the shards, each of which allows MaxPerConversation of them.
func NewShards(cfg Config, n int) (*Dispatcher, []*Tracker) {
	n = max(n, 1)
	part := cfg
	part.MaxMessages = ceilDiv(cfg.MaxMessages, n)
	part.MaxConversations = ceilDiv(cfg.MaxConversations, n)
	part.DecidedCacheSize = ceilDiv(cfg.DecidedCacheSize, n)
	shards := make([]*Tracker, n)
	for i := range shards {
		shards[i] = New(part)
		shards[i].key = shards[0].key
		shards[i].shard, shards[i].shards = i, n
	}
	return &Dispatcher{Timeline: NewTimeline(cfg), key: shards[0].key, n: uint64(n)}, shards
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// Shard is the shard of a message or conversation id.
func (d *Dispatcher) Shard(id string) int {
	if d.n == 1 {
		return 0 // no hash per event when there is nothing to choose
	}
	return int(sipHash24(d.key[0], d.key[1], id) % d.n)
}

// Dispatch stamps ev, arrived at collector time now, and names its message's shard and, when
// it feeds seq gap detection (see Stamp.FeedsSeq), its conversation's (else -1).
func (d *Dispatcher) Dispatch(now int64, ev *event.Event) (st Stamp, msgShard, seqShard int) {
	st = d.Stamp(now, ev)
	seqShard = -1
	if st.FeedsSeq(ev) {
		seqShard = d.Shard(ev.ConversationID)
	}
	return st, d.Shard(ev.MessageID), seqShard
}

// ApplyStamped applies an event the Dispatcher stamped: to its message when route is set (this
// is the message's shard), to its conversation's seq gap detection when seq is set (this is
// the conversation's shard). It reports whether the event is a duplicate delivery.
func (t *Tracker) ApplyStamped(ev *event.Event, st Stamp, route, seq bool) (duplicate bool) {
	t.wm.current = max(t.wm.current, st.Watermark)
	if seq {
		t.observeSeq(st.At, ev)
	}
	if !route {
		return false
	}
	return t.route(ev, st.At, st.BeforeCrash, false)
}

// owns reports whether state keyed by hash h belongs to this shard.
func (t *Tracker) owns(h uint64) bool {
	return t.shards <= 1 || h%uint64(t.shards) == uint64(t.shard)
}

// SnapshotShard is Snapshot for a shard: the sources are those of the dispatcher's timeline
// tl, which must not change meanwhile (its goroutine waits for the shards' snapshots).
func (t *Tracker) SnapshotShard(now int64, kind Kind, tl *Timeline) []byte {
	return t.snapshot(now, kind, tl)
}

// shardedMagic starts a sharded snapshot: the shard count, then each shard's snapshot,
// length-prefixed. A snapshot of one tracker is read as one shard.
var shardedMagic = []byte("IMLOSSN\x01")

// JoinSnapshots writes the shards' snapshots as one.
func JoinSnapshots(shards [][]byte) []byte {
	size := len(shardedMagic) + binary.MaxVarintLen64
	for _, s := range shards {
		size += binary.MaxVarintLen64 + len(s)
	}
	b := append(make([]byte, 0, size), shardedMagic...)
	b = binary.AppendUvarint(b, uint64(len(shards)))
	for _, s := range shards {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

// maxSavedShards bounds the shard count a snapshot may claim.
const maxSavedShards = 1 << 12

func splitSnapshot(data []byte) ([][]byte, error) {
	if !bytes.HasPrefix(data, shardedMagic) {
		return [][]byte{data}, nil
	}
	r := reader{b: data[len(shardedMagic):]}
	n := r.count(maxSavedShards)
	parts := make([][]byte, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		parts = append(parts, r.bytes(r.count(len(r.b))))
	}
	if r.err != nil || n == 0 {
		return nil, fmt.Errorf("%w: sharded: %w", ErrCorruptSnapshot, errors.Join(r.err, errors.New("no shard")))
	}
	return parts, nil
}

// RestoreShards loads a snapshot — of any shard count, or of one tracker — into empty shards
// and their dispatcher at collector time now: each shard keeps what hashes to it. The
// dispatcher's timeline gets the saved sources (and, after a checkpoint, the distrust of
// events before the crash).
func RestoreShards(d *Dispatcher, shards []*Tracker, data []byte, now int64) (RestoreStats, error) {
	parts, err := splitSnapshot(data)
	if err != nil {
		return RestoreStats{}, err
	}
	var total RestoreStats
	for _, t := range shards {
		for _, p := range parts {
			st, err := t.Restore(p, now)
			if err != nil {
				return total, err
			}
			total.Kind, total.Version = st.Kind, st.Version
			total.Messages += st.Messages
			total.Decided += st.Decided
		}
	}
	d.key = shards[0].key
	// Every part holds the dispatcher's sources, which every shard's own timeline read: they
	// move to the dispatcher's (a shard's is only ever given the dispatcher's watermark).
	d.wm = shards[0].wm
	for _, t := range shards {
		t.Timeline = newTimeline(t.cfg)
	}
	if total.Kind == Checkpoint {
		d.DistrustEventsBefore(now)
	}
	return total, nil
}
