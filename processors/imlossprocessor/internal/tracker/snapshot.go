package tracker

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/seqgap"
)

// The snapshot is a compact binary encoding (varints, length-prefixed strings): a million
// in-flight messages must be written within the shutdown deadline.
var snapshotMagic = []byte("IMLOSS\x01")

// ErrCorruptSnapshot is returned for snapshots that cannot be decoded.
var ErrCorruptSnapshot = errors.New("corrupt im_loss snapshot")

// Snapshot encodes the in-flight state at tracker time now. The decided-cache is not
// included: its keys are hashes with a per-process seed.
func (t *Tracker) Snapshot(now int64) []byte {
	b := make([]byte, 0, 64+t.Len()*96)
	b = append(b, snapshotMagic...)
	b = binary.AppendVarint(b, now)

	var convs []*conversation
	for c := t.lruHead; c != nil; c = c.lruNext {
		if _, init := c.seq.State(); init {
			convs = append(convs, c)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(convs)))
	for _, c := range convs {
		maxSeq, _ := c.seq.State()
		b = appendString(b, c.id)
		b = binary.AppendVarint(b, maxSeq)
		ranges := c.seq.OpenRanges()
		b = binary.AppendUvarint(b, uint64(len(ranges)))
		for _, r := range ranges {
			b = binary.AppendVarint(b, r.Lo)
			b = binary.AppendVarint(b, r.Hi)
			b = binary.AppendVarint(b, r.Deadline)
			b = append(b, r.Sink)
		}
	}

	b = binary.AppendUvarint(b, uint64(t.Len()))
	for _, q := range [...]*queue{&t.main, &t.offline} {
		for m := q.head; m != nil; m = m.next {
			b = appendString(b, m.id)
			if m.conv != nil {
				b = appendString(b, m.conv.id)
			} else {
				b = appendString(b, "")
			}
			b = append(b, m.traceID[:]...)
			b = binary.AppendVarint(b, m.firstSeen)
			b = binary.AppendVarint(b, m.sendTime())
			b = binary.AppendVarint(b, m.lastAck())
			b = binary.AppendUvarint(b, uint64(m.fanout))
			b = append(b, m.seen, m.failed, m.flags&(msgOffline|msgInOfflineQueue), m.sink)
			var devs []device
			t.forEachDevice(m, func(id string, f uint8) { devs = append(devs, device{id: id, flags: f}) })
			b = binary.AppendUvarint(b, uint64(len(devs)))
			for _, d := range devs {
				b = appendString(b, d.id)
				b = append(b, d.flags)
			}
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Restore loads a snapshot into an empty tracker at tracker time now. The time the
// collector was down is not counted against any deadline: every timestamp of the tracker
// clock is shifted by now - savedAt, so a restart reports no false losses. Limits of the
// current config apply; what does not fit is evicted and reported like any eviction.
func (t *Tracker) Restore(data []byte, now int64) (restored int, err error) {
	if len(data) < len(snapshotMagic) || string(data[:len(snapshotMagic)]) != string(snapshotMagic) {
		return 0, fmt.Errorf("%w: unknown format", ErrCorruptSnapshot)
	}
	r := reader{b: data[len(snapshotMagic):]}
	savedAt := r.varint()
	offset := max(now-savedAt, 0)

	nConvs := r.count(1 << 32)
	for i := 0; i < nConvs && r.err == nil; i++ {
		id := r.str()
		maxSeq := r.varint()
		nRanges := r.count(seqgap.MaxRanges)
		ranges := make([]seqgap.Range, 0, nRanges)
		for j := 0; j < nRanges && r.err == nil; j++ {
			ranges = append(ranges, seqgap.Range{Lo: r.varint(), Hi: r.varint(), Deadline: r.varint(), Sink: r.byte()})
		}
		if r.err != nil || id == "" || maxSeq < 0 {
			break
		}
		c := t.conversation(id, now)
		c.seq = seqgap.Restore(maxSeq, true, ranges, offset, t.cfg.MaxGap)
		if c.seq.Pending() {
			t.linkGap(c)
		}
	}

	nMsgs := r.count(1 << 32)
	for i := 0; i < nMsgs && r.err == nil; i++ {
		var ev event.Event
		ev.MessageID = r.str()
		ev.ConversationID = r.str()
		copy(ev.TraceID[:], r.bytes(16))
		firstSeen, sendTime, lastAck := r.varint(), r.varint(), r.varint()
		fanout := r.uvarint()
		seen, failed, flags, sink := r.byte(), r.byte(), r.byte(), r.byte()
		nDevs := r.count(t.cfg.MaxDevicesPerMessage)
		devs := make([]device, 0, nDevs)
		for j := 0; j < nDevs && r.err == nil; j++ {
			devs = append(devs, device{id: r.str(), flags: r.byte()})
		}
		if r.err != nil || ev.MessageID == "" || fanout > event.MaxFanout {
			break
		}
		if t.lookup(ev.MessageID) != nil {
			continue
		}
		ev.Sink = sink
		m := t.insert(firstSeen+offset, &ev)
		m.traceID = ev.TraceID
		// Event times are absolute; only the tracker clock is shifted by the downtime.
		m.noteSend(sendTime)
		m.noteAck(lastAck)
		m.fanout = uint32(fanout)
		m.seen, m.failed = seen, failed
		m.flags |= flags & msgOffline
		for _, d := range devs {
			if h, ok := t.device(m, d.id); ok {
				t.addDevFlags(m, h, d.flags&(devPushed|devOffline|devDelivered|devAcked))
			}
		}
		if flags&msgInOfflineQueue != 0 {
			t.main.remove(m)
			m.flags |= msgInOfflineQueue
			t.offline.push(m)
		}
		restored++
	}
	if r.err != nil {
		return restored, fmt.Errorf("%w: %w", ErrCorruptSnapshot, r.err)
	}
	return restored, nil
}

var errTruncated = errors.New("truncated")

// reader decodes untrusted bytes: every read is bounds-checked and the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.b = nil
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(errTruncated)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) count(limit int) int {
	v := r.uvarint()
	if v > uint64(limit) {
		r.fail(fmt.Errorf("count %d over limit %d", v, limit))
		return 0
	}
	return int(v)
}

func (r *reader) byte() byte {
	if len(r.b) < 1 {
		r.fail(errTruncated)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if len(r.b) < n {
		r.fail(errTruncated)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string {
	n := r.count(event.MaxIDLength)
	return string(r.bytes(n))
}
