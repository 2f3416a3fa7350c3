package tracker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/seqgap"
)

// The snapshot is a compact binary encoding (varints, length-prefixed strings): a million
// in-flight messages must be written within the shutdown deadline.
//
// Version 2 adds, after the magic and the time, a kind byte (final or checkpoint) and the
// decided-message memory's hash key, and after the messages that memory's entries, oldest first.
// Version 3 keeps version 2's layout with event-time meanings — a message's first-seen time
// and the gaps' deadlines are event times, so nothing is shifted by the downtime on restore —
// and appends the pending retractions. Version 4 adds, after the messages, the active
// sources of every pipeline (see appendSources). Version 5 adds each device's first ack time
// after its flags (before it, a device's ack is taken to be the message's last), and after a
// message's devices the events waiting for its deadline (see appendHeld). Version 6 adds, after
// a conversation's open gaps, the confirmed gaps it remembers (see seqgap.MaxConfirmed) with
// their reported sizes, and before the decided memory the latest deadlines of the messages it
// forgot and remembered (see pastMemory). Versions 1 (no kind: final; no decided
// memory) and 2 are still read: their collector-clock times are taken as event times, which
// is what they approximated; versions before 4 restore no sources.
var (
	snapshotMagicV1 = []byte("IMLOSS\x01")
	snapshotMagicV2 = []byte("IMLOSS\x02")
	snapshotMagicV3 = []byte("IMLOSS\x03")
	snapshotMagicV4 = []byte("IMLOSS\x04")
	snapshotMagicV5 = []byte("IMLOSS\x05")
	snapshotMagic   = []byte("IMLOSS\x06")
)

// Kind says when a snapshot was taken, which decides how much of it can be trusted.
type Kind uint8

const (
	// Final is written at shutdown, after the last event was applied: it is exact.
	Final Kind = iota
	// Checkpoint is written periodically while events keep arriving. After a crash, the
	// events applied since were lost: restored messages are uncertain (never judged lost)
	// and seq baselines are not restored (they would report the seqs seen since as gaps).
	Checkpoint
)

// decidedEntrySize is the encoded size of one decided-memory entry: hash, outcome,
// stage, reason, late, undelivered.
const decidedEntrySize = 8 + 5

// ErrCorruptSnapshot is returned for snapshots that cannot be decoded.
var ErrCorruptSnapshot = errors.New("corrupt im_loss snapshot")

// Snapshot encodes the state at tracker time now: in-flight messages, seq baselines and open
// gaps, and the decided-message memory (so late events and late duplicates of messages
// decided before a restart are still recognised).
func (t *Tracker) Snapshot(now int64, kind Kind) []byte { return t.snapshot(now, kind, &t.Timeline) }

func (t *Tracker) snapshot(now int64, kind Kind, tl *Timeline) []byte {
	b := make([]byte, 0, 64+t.Len()*128+t.ringLen*decidedEntrySize)
	b = append(b, snapshotMagic...)
	b = binary.AppendVarint(b, now)
	b = append(b, byte(kind))
	b = binary.LittleEndian.AppendUint64(b, t.key[0])
	b = binary.LittleEndian.AppendUint64(b, t.key[1])

	var convs []*conversation
	for c := t.lru.head; c != nil; c = c.lru.next {
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
			b = appendRange(b, r)
		}
		confirmed := c.seq.ConfirmedGaps()
		b = binary.AppendUvarint(b, uint64(len(confirmed)))
		for _, g := range confirmed {
			b = appendRange(b, g.Range)
			b = binary.AppendUvarint(b, g.Gap)
		}
	}

	b = binary.AppendUvarint(b, uint64(t.Len()))
	for _, m := range t.due {
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
		nDevs := 0
		if m.flags&msgHasDev0 != 0 {
			nDevs = 1
			if m.flags&msgHasExtra != 0 {
				nDevs += t.extra[m].len()
			}
		}
		b = binary.AppendUvarint(b, uint64(nDevs))
		t.forEachDevice(m, func(dv device) {
			b = appendString(b, dv.id)
			b = append(b, dv.flags)
			b = binary.AppendVarint(b, m.fromDelta(dv.ack))
		})
		b = t.appendHeld(b, m)
	}
	b = tl.appendSources(b, now)

	b = binary.AppendVarint(b, t.forgottenUpTo)
	b = binary.AppendVarint(b, t.rememberedUpTo)
	b = binary.AppendUvarint(b, uint64(t.ringLen))
	for i := range t.ringLen {
		h := t.decidedRing[(t.ringStart+i)%len(t.decidedRing)]
		d := t.decided[h]
		late := byte(0)
		if d.late {
			late = 1
		}
		b = binary.LittleEndian.AppendUint64(b, h)
		b = append(b, d.outcome, byte(d.stage), d.reason, late, d.undelivered)
	}
	return t.appendRetractions(b)
}

// appendRetractions writes the pending retractions in decided-memory order (deterministic).
func (t *Tracker) appendRetractions(b []byte) []byte {
	var hashes []uint64
	for i := range t.ringLen {
		if h := t.decidedRing[(t.ringStart+i)%len(t.decidedRing)]; t.retract[h] != nil {
			hashes = append(hashes, h)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(hashes)))
	for _, h := range hashes {
		r := t.retract[h]
		b = binary.LittleEndian.AppendUint64(b, h)
		b = binary.AppendVarint(b, r.deadline)
		b = binary.AppendUvarint(b, uint64(r.need))
		b = binary.AppendUvarint(b, uint64(r.unknown))
		b = binary.AppendUvarint(b, uint64(len(r.devices)))
		for _, d := range r.devices {
			acked := byte(0)
			if d.acked {
				acked = 1
			}
			b = binary.LittleEndian.AppendUint64(b, d.hash)
			b = append(b, acked)
		}
	}
	return b
}

// appendSources writes, for every pipeline, the age at now of its last event (-1: none) and
// its active sources, least recently heard first: name, latest event time, and the ages of
// lastHeard and heardAt. Without them a restart would forget the sources whose telemetry is
// still queued upstream, and the first source heard again would move the watermark alone.
func (tl *Timeline) appendSources(b []byte, now int64) []byte {
	w := &tl.wm
	b = binary.AppendUvarint(b, uint64(len(w.sinks)))
	for i := range w.sinks {
		p := &w.sinks[i]
		b = binary.AppendVarint(b, ageAt(now, p.lastEvent))
		var active []*source
		for s := p.heard.tail; s != nil && w.holds(p, s, now); s = s.prev {
			active = append(active, s)
		}
		b = binary.AppendUvarint(b, uint64(len(active)))
		for j := len(active) - 1; j >= 0; j-- {
			s := active[j]
			b = appendString(b, s.name)
			b = binary.AppendVarint(b, s.latest)
			b = binary.AppendVarint(b, ageAt(now, s.lastHeard))
			b = binary.AppendVarint(b, ageAt(now, s.heardAt))
		}
	}
	return b
}

// maxSinks and maxSourceName bound what a snapshot may claim: a sink is a byte, a source
// name a service name and an instance id.
const (
	maxSinks      = 256
	maxSourceName = 2*event.MaxIDLength + 1
)

// ageAt is how long before now collector time at was; -1 for none (0).
func ageAt(now, at int64) int64 {
	if at == 0 {
		return -1
	}
	return max(now-at, 0)
}

// restoreSources loads what appendSources wrote, the ages counted back from now: the
// downtime is a silence of every pipeline, which their sources outlast (see watermarks).
func (t *Tracker) restoreSources(r *reader, now int64) {
	w := &t.wm
	nSinks := r.count(maxSinks)
	for i := 0; i < nSinks && r.err == nil; i++ {
		p := w.pipeline(uint8(i))
		if age := r.varint(); age >= 0 && r.err == nil {
			p.lastEvent = max(p.lastEvent, now-age)
		}
		n := r.count(len(r.b))
		for j := 0; j < n && r.err == nil; j++ {
			key := sourceKey{name: r.strUpTo(maxSourceName), sink: uint8(i)}
			latest, heard, heardAt := r.varint(), r.varint(), r.varint()
			if r.err != nil || w.byKey[key] != nil || heard < 0 || heardAt < 0 {
				continue
			}
			s := w.add(key, latest)
			s.lastHeard, s.heardAt = now-heard, now-heardAt
		}
	}
}

func appendRange(b []byte, r seqgap.Range) []byte {
	b = binary.AppendVarint(b, r.Lo)
	b = binary.AppendVarint(b, r.Hi)
	b = binary.AppendVarint(b, r.Deadline)
	return append(b, r.Sink)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// RestoreStats describes what Restore loaded.
type RestoreStats struct {
	Kind     Kind
	Version  int
	Messages int
	Decided  int
}

// Restore loads a snapshot into an empty tracker at collector time now. Deadlines are event
// times, so the time the collector was down does not count against them: the services'
// telemetry of that time arrives after the restart with its own timestamps. Limits of the
// current config apply; what does not fit is evicted and reported like any eviction.
// See Kind for what a checkpoint restores.
func (t *Tracker) Restore(data []byte, now int64) (st RestoreStats, err error) {
	switch {
	case bytes.HasPrefix(data, snapshotMagic):
		st.Version = 6
	case bytes.HasPrefix(data, snapshotMagicV5):
		st.Version = 5
	case bytes.HasPrefix(data, snapshotMagicV4):
		st.Version = 4
	case bytes.HasPrefix(data, snapshotMagicV3):
		st.Version = 3
	case bytes.HasPrefix(data, snapshotMagicV2):
		st.Version = 2
	case bytes.HasPrefix(data, snapshotMagicV1):
		st.Version = 1
	default:
		return st, fmt.Errorf("%w: unknown format", ErrCorruptSnapshot)
	}
	r := reader{b: data[len(snapshotMagic):]}
	_ = r.varint() // saved at: event times need no shifting
	adoptKey := false
	if st.Version >= 2 {
		st.Kind = Kind(r.byte())
		if st.Kind > Checkpoint {
			return st, fmt.Errorf("%w: unknown kind %d", ErrCorruptSnapshot, st.Kind)
		}
		// The saved hashes mean something only under the saved key. A tracker that
		// remembers decisions of its own keeps its key and skips the saved ones.
		k0, k1 := r.uint64(), r.uint64()
		if t.ringLen == 0 {
			t.key = [2]uint64{k0, k1}
		}
		adoptKey = t.key == [2]uint64{k0, k1}
	}

	nConvs := r.count(1 << 32)
	for i := 0; i < nConvs && r.err == nil; i++ {
		id := r.str()
		maxSeq := r.varint()
		nRanges := r.count(seqgap.MaxRanges)
		ranges := make([]seqgap.Range, 0, nRanges)
		for j := 0; j < nRanges && r.err == nil; j++ {
			ranges = append(ranges, r.seqRange())
		}
		var confirmed []seqgap.Confirmed
		if st.Version >= 6 {
			nConfirmed := r.count(seqgap.MaxConfirmed)
			for j := 0; j < nConfirmed && r.err == nil; j++ {
				confirmed = append(confirmed, seqgap.Confirmed{Range: r.seqRange(), Gap: r.uvarint()})
			}
		}
		if r.err != nil || id == "" || maxSeq < 0 {
			break
		}
		if st.Kind == Checkpoint || !t.owns(t.hash(id)) {
			continue
		}
		c := t.conversation(id)
		c.seq = seqgap.Restore(maxSeq, true, ranges, confirmed, 0, t.cfg.MaxGap)
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
		var devAcks []int64
		for j := 0; j < nDevs && r.err == nil; j++ {
			d := device{id: r.str(), flags: r.byte()}
			if st.Version >= 5 {
				devAcks = append(devAcks, r.varint())
			}
			devs = append(devs, d)
		}
		var waiting []held
		if st.Version >= 5 {
			waiting = readHeld(&r, ev.MessageID, t.maxWaiting)
		}
		if r.err != nil || ev.MessageID == "" || fanout > event.MaxFanout {
			break
		}
		if !t.owns(t.hash(ev.MessageID)) || t.lookup(ev.MessageID) != nil {
			continue
		}
		ev.Sink = sink
		m := t.insert(firstSeen, &ev)
		m.traceID = ev.TraceID
		m.noteSend(sendTime)
		m.noteAck(lastAck)
		m.fanout = uint32(fanout)
		m.seen, m.failed = seen, failed
		if st.Kind == Checkpoint {
			m.seen |= seenUncertain
		}
		m.flags |= flags & msgOffline
		for j, d := range devs {
			if h, ok := t.device(m, d.id); ok {
				t.addDevFlags(m, h, d.flags&(devPushed|devOffline|devDelivered|devAcked))
				if j < len(devAcks) {
					t.noteDevAck(m, h, devAcks[j])
				}
			}
		}
		m.flags |= flags & msgInOfflineQueue
		t.reschedule(m)
		if m.failed&lateMessage != 0 {
			// Its window ran in watermark time, which the snapshot does not keep: a new one
			// from the restart.
			t.lateWindow(m, now)
		}
		t.rehold(m, waiting)
		st.Messages++
	}
	if st.Version >= 4 {
		t.restoreSources(&r, now)
	}
	if st.Kind == Checkpoint {
		t.DistrustEventsBefore(now)
	}
	// Before version 6 the decided memory's deadlines were not saved: those of messages
	// decided before the restart, give or take ack_timeout.
	forgotten, remembered := int64(0), now+int64(t.cfg.AckTimeout)
	if st.Version >= 6 {
		forgotten, remembered = r.varint(), r.varint()
	}
	t.forgottenUpTo = max(t.forgottenUpTo, forgotten)
	if !adoptKey {
		// The saved memory is dropped: forgotten.
		t.forgottenUpTo = max(t.forgottenUpTo, remembered)
	}
	if adoptKey && r.err == nil {
		st.Decided = t.restoreDecided(&r, st.Version, remembered)
		if st.Version >= 3 {
			t.restoreRetractions(&r)
		}
	}
	if r.err != nil {
		return st, fmt.Errorf("%w: %w", ErrCorruptSnapshot, r.err)
	}
	return st, nil
}

// restoreDecided loads the decided-message memory, oldest first, so it keeps evicting in the
// same order. When it holds more than decided_cache_size now allows, the oldest are dropped
// and counted as evicted.
func (t *Tracker) restoreDecided(r *reader, version int, upTo int64) int {
	maxOutcome := decidedLost
	if version >= 3 {
		maxOutcome = decidedUntracked
	}
	n := r.count(len(r.b) / decidedEntrySize)
	if r.err != nil {
		return 0
	}
	skip := 0
	if t.shards <= 1 {
		// A shard keeps only part of them: rememberHash evicts (and counts) the oldest.
		skip = max(n-t.cfg.DecidedCacheSize, 0)
		t.counters.Evicted[EvictedDecided] += int64(skip)
		if skip > 0 {
			t.forgottenUpTo = max(t.forgottenUpTo, upTo)
		}
	}
	restored := 0
	for i := 0; i < n && r.err == nil; i++ {
		h := r.uint64()
		e := r.bytes(5)
		if r.err != nil {
			break
		}
		d := decided{outcome: e[0], stage: imsemconv.Stage(e[1]), reason: e[2], late: e[3] != 0, undelivered: e[4]}
		if i < skip || !t.owns(h) || d.outcome < decidedDelivered || d.outcome > maxOutcome || int(d.reason) >= len(reasons) || d.stage > imsemconv.StageAck {
			continue
		}
		t.rememberHash(h, d, upTo)
		restored++
	}
	return restored
}

// restoreRetractions loads the pending retractions of decided messages still remembered.
func (t *Tracker) restoreRetractions(r *reader) {
	n := r.count(len(r.b) / 12)
	for i := 0; i < n && r.err == nil; i++ {
		h := r.uint64()
		rt := &retraction{deadline: r.varint()}
		need, unknown := r.count(math.MaxUint16), r.count(math.MaxUint16)
		nDevs := r.count(min(math.MaxUint16, len(r.b)/9))
		for j := 0; j < nDevs && r.err == nil; j++ {
			rt.devices = append(rt.devices, retractDevice{hash: r.uint64(), acked: r.byte() != 0})
		}
		// Snapshots written before the devices were sorted kept them in arrival order.
		slices.SortFunc(rt.devices, byHash)
		rt.need, rt.unknown = uint16(need), uint16(unknown)
		d, ok := t.decided[h]
		if r.err == nil && ok && d.outcome == decidedLost && need > 0 {
			t.addRetraction(h, rt)
		}
	}
}

var errTruncated = errors.New("truncated")

// reader decodes untrusted bytes: every read is bounds-checked and the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) seqRange() seqgap.Range {
	return seqgap.Range{Lo: r.varint(), Hi: r.varint(), Deadline: r.varint(), Sink: r.byte()}
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

func (r *reader) uint64() uint64 {
	v := r.bytes(8)
	if v == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(v)
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

func (r *reader) str() string { return r.strUpTo(event.MaxIDLength) }

func (r *reader) strUpTo(limit int) string {
	n := r.count(limit)
	return string(r.bytes(n))
}
