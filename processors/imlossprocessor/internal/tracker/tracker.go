// Package tracker holds the loss-detection state machine. It is single-threaded by design
// (one goroutine owns it, as in the tail sampling processor) and driven by explicit
// timestamps, so every rule can be stepped through in tests without a clock.
//
// Verdicts are made on event time: a message's deadline is its send time (else its earliest
// event's time) plus the timeout, and it is judged only once the watermark — how far in event
// time every active source's telemetry has arrived — has passed that deadline. So a verdict is
// a function of the events' own timestamps, not of when the collector received them. The
// collector's clock (the now arguments) only measures how long sources have been silent and
// caps how long a verdict may wait (MaxSourceLag).
package tracker // import "github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"

import (
	"math"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/seqgap"
)

// Config bounds and times the tracker. All limits must be >= 1.
type Config struct {
	AckTimeout     time.Duration
	OfflineTimeout time.Duration
	ReorderWindow  time.Duration
	MaxGap         uint64

	// AllowedLateness is how far out of order one source's events may arrive.
	AllowedLateness time.Duration
	// SourceIdleTimeout is how long a silent source keeps holding the watermark back.
	SourceIdleTimeout time.Duration
	// MaxSourceLag caps how far verdicts may lag behind the freshest telemetry (see
	// Timeline.forcedLimit).
	MaxSourceLag time.Duration
	// MaxClockSkew is how far in the collector's future an event may be stamped.
	MaxClockSkew time.Duration
	MaxSources   int

	MaxMessages          int
	MaxPerConversation   int
	MaxConversations     int
	MaxDevicesPerMessage int
	DecidedCacheSize     int
}

// Outcome is one outcome record, before it is turned into a span or a log record.
type Outcome struct {
	Outcome imsemconv.Outcome
	// Stage is the loss stage of a lost message, the event's stage for duplicates and late
	// events, and ack for delivered messages.
	Stage imsemconv.Stage
	// Reason is why the message was lost (for late events: why it had been declared lost).
	Reason imsemconv.LossReason
	// LossStage is, for late events, the stage at which the message had been declared lost.
	LossStage imsemconv.Stage
	// Retracted is set on the late record whose event completed the proof that a message
	// declared lost was acked by every missing device before its deadline, or that a seq
	// reported missing was persisted within its gap's reorder window.
	Retracted bool

	MessageID      string
	ConversationID string
	DeviceID       string
	TraceID        pcommon.TraceID

	// Start and End (unix ns) span the message's life: send (or first sighting) to last ack
	// (or the decision).
	Start, End int64
	LatencyMs  float64
	HasLatency bool

	Seq         int64
	HasSeq      bool
	GapSize     uint64
	Anomaly     bool
	LostDevices int

	Sink uint8
}

// EvictedState names the bounded structure an eviction came from.
type EvictedState int

const (
	EvictedMessage EvictedState = iota
	EvictedConversation
	EvictedSeqGap
	EvictedDecided
	EvictedSource
	// EvictedRetraction: a loss not followed for retraction, its devices over the budget.
	EvictedRetraction
	// NumEvictedStates is the number of states above.
	NumEvictedStates
)

// Counters are what the tracker counted since the last TakeCounters.
type Counters struct {
	SeqGaps        int64
	Evicted        [NumEvictedStates]int64
	Orphans        int64
	TooManyDevices int64
	// Unjudged counts messages whose deadline passed without the evidence of delivery,
	// part of which may have been applied before a restart and lost with it (see
	// DistrustEventsBefore), so they are neither delivered nor lost.
	Unjudged int64
	// UnjudgedPastMemory counts late messages whose deadline passed incomplete but which may
	// be messages decided and forgotten by the decided memory (see pastMemory): neither
	// delivered nor lost.
	UnjudgedPastMemory int64
	// Forced counts verdicts (messages and seq gaps) made before the watermark passed their
	// deadline because it lagged the freshest telemetry by more than MaxSourceLag.
	Forced int64
	// HoldFull counts events applied at once, on what was known, because too many events
	// were already waiting for their message's deadline.
	HoldFull int64
}

const (
	devPushed uint8 = 1 << iota
	devOffline
	devDelivered
	devAcked
)

const (
	msgHasDev0 uint8 = 1 << iota
	msgOffline
	msgInOfflineQueue
	msgHasExtra // devices beyond the first live in Tracker.extra
	// The high nibble holds the first device's dev* flags.
	dev0Shift = 4
)

type device struct {
	id    string
	flags uint8
	// tag is 8 bits of id's hash: a lookup compares the ids of tagged devices only, not every
	// device's (each id a cache miss and a byte comparison). It fits the struct's padding.
	tag uint8
	ack int32 // its first ack, µs after the message's firstSeen (noTime: unknown)
}

// noTime marks an unknown event time in message.sendDelta and message.ackDelta.
const noTime = math.MinInt32

// message is exactly 112 bytes, a Go size class: a million of them must fit in the memory
// budget, so event times are stored as microsecond offsets from firstSeen (±35 minutes;
// beyond that the latency is reported unknown), the first device's flags share a byte
// with the message flags, and further devices of group messages live in Tracker.extra.
type message struct {
	id        string
	conv      *conversation
	inConv    links[message] // its conversation's messages, oldest first
	traceID   pcommon.TraceID
	dev0      string
	firstSeen int64 // earliest event time, unix ns
	// deadline is when the watermark decides m (event time, unix ns): deadlineOf(m), which
	// judges its acks, or later for a late message (see turnLate).
	deadline     int64
	sendDelta    int32 // send event time - firstSeen, µs
	ackDelta     int32 // last ack event time - firstSeen, µs
	fanout       uint32
	hidx         int32 // position in Tracker.due
	dev0Ack      int32 // the first device's first ack, like device.ack
	seen, failed uint8 // bit per Stage
	flags        uint8
	sink         uint8
}

func (m *message) toDelta(t int64) (int32, bool) {
	if t <= 0 {
		return 0, false
	}
	d := (t - m.firstSeen) / 1e3
	if d <= math.MinInt32 || d > math.MaxInt32 {
		return 0, false
	}
	return int32(d), true
}

func (m *message) fromDelta(d int32) int64 {
	if d == noTime {
		return 0
	}
	return m.firstSeen + int64(d)*1e3
}

// sendTime is the earliest send event time (unix ns), 0 when unknown.
func (m *message) sendTime() int64 { return m.fromDelta(m.sendDelta) }

// lastAck is the latest ack event time (unix ns), 0 when unknown.
func (m *message) lastAck() int64 { return m.fromDelta(m.ackDelta) }

func (m *message) noteSend(t int64) {
	if d, ok := m.toDelta(t); ok && (m.sendDelta == noTime || d < m.sendDelta) {
		m.sendDelta = d
	}
}

func (m *message) noteAck(t int64) {
	if d, ok := m.toDelta(t); ok && (m.ackDelta == noTime || d > m.ackDelta) {
		m.ackDelta = d
	}
}

type deviceSet struct {
	list  []device
	index map[string]int32 // built once the list is long enough for scans to hurt
}

const deviceIndexThreshold = 16

type conversation struct {
	id        string
	msgs      list[message]
	count     int
	lru       links[conversation] // Tracker.lru
	gaps      links[conversation] // Tracker.gaps
	inGapList bool
	seq       seqgap.Detector
}

type decided struct {
	outcome uint8 // decidedDelivered or decidedLost
	stage   imsemconv.Stage
	reason  uint8
	late    bool
	// undelivered counts devices that acked before their deliver event arrived: that many
	// deliver events after the decision are out-of-order originals, not duplicates.
	undelivered uint8
}

const (
	decidedDelivered uint8 = iota + 1
	decidedLost
	// decidedUntracked: evicted at a state limit, or left unjudged (pastMemory). Its later
	// events are ignored: they must neither start a new message (which its deadline would
	// judge) nor count as late.
	decidedUntracked
)

var reasons = [...]imsemconv.LossReason{"", imsemconv.ReasonAckTimeout, imsemconv.ReasonSeqGap, imsemconv.ReasonStageFailed, imsemconv.ReasonEvicted}

func reasonCode(r imsemconv.LossReason) uint8 {
	for i, v := range reasons {
		if v == r {
			return uint8(i)
		}
	}
	return 0
}

// Tracker follows messages from send to ack. It is not safe for concurrent use.
type Tracker struct {
	cfg Config
	// key keys the decided-message hashes; it is saved with them (see sipHash24).
	key [2]uint64

	ids   index
	extra map[*message]*deviceSet
	// extraMsg and extraSet are the last extra lookup: an event asks for its message's
	// devices several times (find the device, set its flags, its ack, check completion).
	extraMsg *message
	extraSet *deviceSet
	due      deadlines
	// Timeline is this tracker's own watermark, used by Apply and Tick. A shard (see
	// Dispatcher) is given the shared one's in each Stamp instead.
	Timeline
	// shard and shards place a shard among its siblings (shards 0: not sharded).
	shard, shards int
	// retract holds, for recent ack-timeout losses, what late acks must show to take the
	// loss back (see retraction); keyed like decided and dropped with its entry.
	retract map[uint64]*retraction
	// retractDevices counts the devices the retractions follow, against retractionBudget.
	retractDevices int
	// waiting holds the events that wait for their message's deadline (see hold);
	// nWaiting counts them against maxWaiting.
	waiting    map[*message][]held
	nWaiting   int
	maxWaiting int

	convs map[string]*conversation
	lru   list[conversation] // least recently active first
	gaps  list[conversation] // those with open seq gaps

	decided     map[uint64]decided
	decidedRing []uint64
	ringStart   int
	ringLen     int
	// ringUpTo[i] is rememberedUpTo when decidedRing[i] was remembered: rememberedUpTo is the
	// latest deadline of a message remembered, forgottenUpTo the latest of one forgotten (see
	// pastMemory). Deadlines roughly follow the order of decisions, and the running maximum
	// keeps forgottenUpTo an upper bound.
	ringUpTo                      []int64
	rememberedUpTo, forgottenUpTo int64

	out      []Outcome
	counters Counters
	scratch  []seqgap.Range
}

// New returns an empty tracker.
func New(cfg Config) *Tracker {
	return &Tracker{
		cfg:         cfg,
		key:         [2]uint64{rand.Uint64(), rand.Uint64()},
		ids:         newIndex(),
		extra:       make(map[*message]*deviceSet),
		convs:       make(map[string]*conversation),
		lru:         list[conversation]{at: func(c *conversation) *links[conversation] { return &c.lru }},
		gaps:        list[conversation]{at: func(c *conversation) *links[conversation] { return &c.gaps }},
		decided:     make(map[uint64]decided),
		decidedRing: make([]uint64, cfg.DecidedCacheSize),
		ringUpTo:    make([]int64, cfg.DecidedCacheSize),
		retract:     make(map[uint64]*retraction),
		waiting:     make(map[*message][]held),
		maxWaiting:  max(1024, cfg.MaxMessages/16),
		Timeline:    newTimeline(cfg),
	}
}

// Len is the number of messages in flight.
func (t *Tracker) Len() int { return t.ids.n }

// TakeOutcomes returns the outcomes decided since the last call; the caller owns the slice.
func (t *Tracker) TakeOutcomes() []Outcome {
	out := t.out
	t.out = nil
	return out
}

// ReuseOutcomes hands the tracker an emptied slice TakeOutcomes returned, to append the next
// outcomes to instead of growing a new one (most of the tracker's allocation otherwise). It
// keeps the slice it has, if any.
func (t *Tracker) ReuseOutcomes(buf []Outcome) {
	if t.out == nil {
		t.out = buf[:0]
	}
}

// TakeCounters returns and resets the counters.
func (t *Tracker) TakeCounters() Counters {
	t.counters.Evicted[EvictedSource] += t.TakeEvictedSources()
	c := t.counters
	t.counters = Counters{}
	return c
}

func (t *Tracker) hash(id string) uint64 { return sipHash24(t.key[0], t.key[1], id) }

func (t *Tracker) lookup(id string) *message { return t.ids.get(id) }

// Apply feeds one event that arrived at collector time now. It reports whether the event is a
// duplicate delivery (which the caller may drop).
func (t *Tracker) Apply(now int64, ev *event.Event) (duplicate bool) {
	st := t.Stamp(now, ev)
	if st.FeedsSeq(ev) {
		t.observeSeq(st.At, ev)
	}
	return t.route(ev, st.At, st.BeforeCrash, false)
}

// route applies an event to its message. A message whose deadline the watermark has passed is
// decided first, as the next tick would: the event is late data then, whenever the tick comes.
// An event stamped after its message's (not yet final) deadline waits for it (see hold).
// released says the event waited for its message's deadline (see hold).
func (t *Tracker) route(ev *event.Event, at int64, beforeCrash, released bool) (duplicate bool) {
	m := t.lookup(ev.MessageID)
	// A released event arrived before the watermark passed its message's deadline, whatever
	// the watermark is now: it counts against the offline deadline its message moved on to,
	// even when the watermark passed that too meanwhile (in one step, as when the other
	// services fall idle at the end of a stream).
	for m != nil && !released && m.deadline <= t.wm.current {
		t.expire(m)
		m = t.lookup(ev.MessageID)
	}
	if m != nil && ev.Stage != imsemconv.StageSend && at > t.deadlineOf(m) && t.hold(m, ev, at, beforeCrash) {
		return false
	}
	if m != nil && ev.Stage != imsemconv.StageSend {
		// Only when the hold is full: decide on what is known, as if the watermark had passed.
		// Moving to the offline deadline releases the waiting events, which may decide m:
		// look it up again.
		for m != nil && at > t.deadlineOf(m) {
			t.expire(m)
			m = t.lookup(ev.MessageID)
		}
	}
	inserted := false
	if m == nil {
		hash := t.hash(ev.MessageID)
		if d, ok := t.decided[hash]; ok {
			return t.afterDecision(hash, d, ev, at)
		}
		if released {
			// Its message was decided and forgotten at once (decided_cache_size 0): a new
			// message would be judged on one stray event.
			return false
		}
		m = t.insert(at, ev)
		inserted = true
	} else if m.conv == nil && ev.ConversationID != "" {
		t.attach(m, t.conversation(ev.ConversationID))
	}
	if m.conv != nil {
		t.touch(m.conv)
	}
	if beforeCrash {
		// Other events of it may have been applied and lost in the crash: never judge
		// it lost on missing evidence.
		m.seen |= seenUncertain
	}
	before := t.deadlineOf(m)
	dup := t.update(m, ev, at)
	after := t.deadlineOf(m)
	if (inserted || after < before) && after <= t.wm.current && m.failed&lateMessage == 0 {
		t.turnLate(m)
		if inserted && m.firstSeen <= t.forgottenUpTo {
			m.failed |= pastMemory
		}
	}
	// ackedInTime implies allAcked: it counts the acked devices whose ack was in time.
	if m.seen&evidence == evidence && t.ackedInTime(m) {
		// Decide as soon as the evidence is complete: send gives the latency, the
		// message-level push the expected fan-out. A per-device push (an offline push) is
		// not enough: deciding on the devices seen so far would call the message delivered
		// before the other recipients ack, and make their deliveries look like duplicates.
		// An ack after ack_timeout is not enough either: an offline push still on its way
		// would give it offline_timeout. Without the evidence the deadline decides.
		t.decide(m)
	} else if after > before {
		// A later send moved the deadline: events that waited for the old one may count now.
		t.release(m)
	}
	return dup
}

// deadlineOf is the event time at which m is due: its send time, else its earliest event's,
// plus ack_timeout, or offline_timeout once it waits for an offline recipient.
func (t *Tracker) deadlineOf(m *message) int64 {
	base := m.sendTime()
	if base == 0 {
		base = m.firstSeen
	}
	if m.flags&msgInOfflineQueue != 0 {
		return base + int64(t.cfg.OfflineTimeout)
	}
	return base + int64(t.cfg.AckTimeout)
}

func (t *Tracker) reschedule(m *message) {
	d := t.deadlineOf(m)
	if m.failed&lateMessage != 0 {
		d = max(d, m.deadline)
	}
	if d != m.deadline {
		m.deadline = d
		t.due.update(m)
	}
}

// Bits of message.failed above every stage's.
const (
	// lateMessage marks a late message (turnLate).
	lateMessage uint8 = 1 << 7
	// pastMemory marks a late message new to the tracker whose events are no later than the
	// deadline of a message the decided memory forgot: it may be such a message, its other
	// events decided and forgotten (a send from a service that stalled for longer than
	// decided_cache_size messages take to decide). Missing evidence then proves nothing, so
	// it is never judged lost (UnjudgedPastMemory), only delivered on complete evidence.
	pastMemory uint8 = 1 << 6
	// notFailures are the bits of message.failed that are not failed stages.
	notFailures = lateMessage | pastMemory
)

// turnLate is for a message whose deadline is behind the watermark as soon as an event gives
// it: its first event, or an event earlier than those before (a send from a stalled service),
// arrived after the watermark had passed the deadline they set. Events released after a
// deadline was applied do not make it late: the watermark judged it in time. Its telemetry is late data (its services stalled longer
// than source_idle_timeout while others went on, or their backlog drains after an outage).
// Decided at once, it would be lost on whichever of its events happened to arrive first. So
// its windows count from then in watermark time instead: it is decided once the watermark has
// moved ack_timeout (offline_timeout for an offline recipient) on, and judged as any message
// by its events' own times.
func (t *Tracker) turnLate(m *message) {
	m.failed |= lateMessage
	t.lateWindow(m, t.wm.current)
}

// lateWindow decides the late message m no earlier than its timeout after from.
func (t *Tracker) lateWindow(m *message, from int64) {
	timeout := t.cfg.AckTimeout
	if m.flags&msgInOfflineQueue != 0 {
		timeout = t.cfg.OfflineTimeout
	}
	m.deadline = max(t.deadlineOf(m), from+int64(timeout))
	t.due.update(m)
}

// expire applies m's passed deadline: a message waiting for an offline recipient moves on to
// the offline deadline (false); any other is decided (true).
func (t *Tracker) expire(m *message) (decided bool) {
	if !t.waitsOffline(m) {
		t.decide(m)
		return true
	}
	t.toOfflineDeadline(m)
	// Events stamped before the offline deadline count now; the rest wait for it.
	t.release(m)
	if t.lookup(m.id) != m {
		return true // a released event completed it
	}
	if m.seen&evidence == evidence && t.allAcked(m) {
		// Every ack was in already, some of them after ack_timeout: nothing more to wait for.
		t.decide(m)
		return true
	}
	return false
}

func (t *Tracker) toOfflineDeadline(m *message) {
	m.flags |= msgInOfflineQueue
	if m.failed&lateMessage != 0 {
		// Its window began ack_timeout before its deadline.
		t.lateWindow(m, m.deadline-int64(t.cfg.AckTimeout))
		return
	}
	t.reschedule(m)
}

func bit(s imsemconv.Stage) uint8 { return 1 << s }

// seenFanout, a bit of message.seen above every stage's, marks a push that announced the
// fan-out or concerned the whole message (no device): only then are the expected devices known.
const seenFanout uint8 = 1 << 7

// seenUncertain, another bit of message.seen above every stage's, marks a message restored
// from a checkpoint: events of it may have been taken in after the checkpoint and lost in
// a crash, so missing evidence at its deadline proves nothing.
const seenUncertain uint8 = 1 << 6

const evidence = 1<<imsemconv.StageSend | seenFanout

func (t *Tracker) insert(at int64, ev *event.Event) *message {
	for t.Len() >= t.cfg.MaxMessages {
		if !t.evictEarliest() {
			break
		}
	}
	var c *conversation
	if ev.ConversationID != "" {
		c = t.conversation(ev.ConversationID)
		if c.count >= t.cfg.MaxPerConversation {
			t.evict(c.msgs.head)
			// The eviction may have dropped an empty conversation without a seq baseline.
			c = t.conversation(ev.ConversationID)
		}
	}
	m := &message{id: ev.MessageID, firstSeen: at, sink: ev.Sink, sendDelta: noTime, ackDelta: noTime, dev0Ack: noTime}
	m.deadline = t.deadlineOf(m)
	t.ids.put(m)
	t.due.push(m)
	if c != nil {
		t.attach(m, c)
	}
	return m
}

func (t *Tracker) attach(m *message, c *conversation) {
	m.conv = c
	c.msgs.pushBack(m)
	c.count++
}

func (t *Tracker) detach(m *message) {
	c := m.conv
	if c == nil {
		return
	}
	c.msgs.remove(m)
	m.conv = nil
	c.count--
	if c.count == 0 {
		// A conversation is kept only while it has messages in flight or a seq
		// baseline worth remembering.
		if _, initialised := c.seq.State(); !initialised {
			t.dropConversation(c)
		}
	}
}

// noteTime moves m's firstSeen back to an earlier event time at, keeping the stored offsets.
func (t *Tracker) noteTime(m *message, at int64) {
	if at <= 0 || at >= m.firstSeen {
		return
	}
	send, ack := m.sendTime(), m.lastAck()
	var devAcks [8]int64
	acks := devAcks[:0]
	t.forEachDevice(m, func(dv device) { acks = append(acks, m.fromDelta(dv.ack)) })
	m.firstSeen = at
	m.sendDelta, m.ackDelta = noTime, noTime
	m.noteSend(send)
	m.noteAck(ack)
	for i, a := range acks {
		d, ok := m.toDelta(a)
		if !ok {
			d = noTime
		}
		t.setDevAck(m, i-1, d)
	}
}

func (t *Tracker) update(m *message, ev *event.Event, at int64) (duplicate bool) {
	t.noteTime(m, at)
	if ev.Stage == imsemconv.StageSend {
		t.noteTime(m, ev.Start)
		m.noteSend(ev.Start)
	}
	t.reschedule(m)
	b := bit(ev.Stage)
	m.seen |= b
	if ev.Failed {
		m.failed |= b
	} else {
		// A later success of the same stage supersedes a failed attempt (retries).
		m.failed &^= b
	}
	if m.traceID.IsEmpty() && !ev.TraceID.IsEmpty() {
		m.traceID = ev.TraceID
	}
	switch ev.Stage {
	case imsemconv.StagePush:
		if ev.Fanout > m.fanout {
			m.fanout = ev.Fanout
		}
		if ev.Fanout > 0 || ev.DeviceID == "" {
			m.seen |= seenFanout
		}
		if ev.DeviceID == "" {
			if ev.Offline {
				m.flags |= msgOffline
			}
			return false
		}
		d, ok := t.device(m, ev.DeviceID)
		if !ok {
			return false
		}
		f := devPushed
		if ev.Offline {
			f |= devOffline
		}
		t.addDevFlags(m, d, f)
	case imsemconv.StageDeliver:
		if ev.Failed {
			return false
		}
		d, ok := t.device(m, ev.DeviceID)
		if !ok {
			return false
		}
		if t.devFlags(m, d)&devDelivered != 0 {
			t.out = append(t.out, Outcome{
				Outcome: imsemconv.OutcomeDuplicate, Stage: imsemconv.StageDeliver,
				MessageID: m.id, ConversationID: t.convID(m, ev), DeviceID: ev.DeviceID,
				TraceID: m.traceID, Start: ev.Start, End: ev.End, Sink: ev.Sink,
			})
			return true
		}
		t.addDevFlags(m, d, devDelivered)
	case imsemconv.StageAck:
		if ev.Failed {
			return false
		}
		d, ok := t.device(m, ev.DeviceID)
		if !ok {
			return false
		}
		t.addDevFlags(m, d, devAcked)
		t.noteDevAck(m, d, at)
		m.noteAck(ev.End)
	}
	return false
}

func (t *Tracker) convID(m *message, ev *event.Event) string {
	if m.conv != nil {
		return m.conv.id
	}
	return ev.ConversationID
}

// device finds or adds the recipient device and returns its handle: -1 for the first
// device (stored inline), else its index in Tracker.extra. ok is false when the
// per-message limit is reached.
func (t *Tracker) device(m *message, id string) (handle int, ok bool) {
	if m.flags&msgHasDev0 == 0 {
		m.flags |= msgHasDev0
		m.dev0 = id
		return -1, true
	}
	if m.dev0 == id {
		return -1, true
	}
	ds := t.extraOf(m)
	tag := t.deviceTag(id)
	if ds != nil {
		if i, found := ds.find(id, tag); found {
			return i, true
		}
	}
	if 1+ds.len()+1 > t.cfg.MaxDevicesPerMessage {
		t.counters.TooManyDevices++
		return 0, false
	}
	if ds == nil {
		// Sized for the announced fan-out (bounded: it is input), so a group message's list
		// is not grown and copied device by device.
		ds = &deviceSet{list: make([]device, 0, min(max(int(m.fanout)-1, 1), deviceIndexThreshold))}
		t.extra[m] = ds
		t.extraMsg, t.extraSet = m, ds
		m.flags |= msgHasExtra
	}
	ds.list = append(ds.list, device{id: id, tag: tag, ack: noTime})
	if ds.index != nil {
		ds.index[id] = int32(len(ds.list) - 1)
	} else if len(ds.list) > deviceIndexThreshold {
		ds.index = make(map[string]int32, len(ds.list)*2)
		for i := range ds.list {
			ds.index[ds.list[i].id] = int32(i)
		}
	}
	return len(ds.list) - 1, true
}

func (ds *deviceSet) find(id string, tag uint8) (int, bool) {
	if ds.index != nil {
		i, found := ds.index[id]
		return int(i), found
	}
	for i := range ds.list {
		if ds.list[i].tag == tag && ds.list[i].id == id {
			return i, true
		}
	}
	return 0, false
}

func (t *Tracker) deviceTag(id string) uint8 { return uint8(t.ids.hash(id)) }

// extraOf is m's devices beyond the first, nil when it has none.
func (t *Tracker) extraOf(m *message) *deviceSet {
	if m.flags&msgHasExtra == 0 {
		return nil
	}
	if t.extraMsg != m {
		t.extraMsg, t.extraSet = m, t.extra[m]
	}
	return t.extraSet
}

func (ds *deviceSet) len() int {
	if ds == nil {
		return 0
	}
	return len(ds.list)
}

func (t *Tracker) devFlags(m *message, handle int) uint8 {
	if handle < 0 {
		return m.flags >> dev0Shift
	}
	return t.extraOf(m).list[handle].flags
}

func (t *Tracker) addDevFlags(m *message, handle int, f uint8) {
	if handle < 0 {
		m.flags |= f << dev0Shift
		return
	}
	t.extraOf(m).list[handle].flags |= f
}

// noteDevAck keeps the earliest ack of a device: a repeated ack after the deadline does not
// make a device that acked in time late.
func (t *Tracker) noteDevAck(m *message, handle int, at int64) {
	d, ok := m.toDelta(at)
	if !ok {
		return
	}
	if old := t.devAckDelta(m, handle); old == noTime || d < old {
		t.setDevAck(m, handle, d)
	}
}

func (t *Tracker) devAckDelta(m *message, handle int) int32 {
	if handle < 0 {
		return m.dev0Ack
	}
	return t.extraOf(m).list[handle].ack
}

func (t *Tracker) setDevAck(m *message, handle int, d int32) {
	if handle < 0 {
		m.dev0Ack = d
		return
	}
	t.extraOf(m).list[handle].ack = d
}

// forEachDevice calls fn with every recipient device of m, the first (handle -1) first.
func (t *Tracker) forEachDevice(m *message, fn func(dv device)) {
	dv, ok := m.firstDevice()
	if !ok {
		return
	}
	fn(dv)
	if ds := t.extraOf(m); ds != nil {
		for i := range ds.list {
			fn(ds.list[i])
		}
	}
}

// expected is the number of recipient devices that must ack: the announced fan-out, or
// else every device seen (at least one).
func (t *Tracker) expected(m *message) (expected, known, acked int) {
	t.forEachDevice(m, func(dv device) {
		known++
		if dv.flags&devAcked != 0 {
			acked++
		}
	})
	return expectedOf(m, known), known, acked
}

// expectedOf is the announced fan-out of m, or else known, the devices seen (at least one).
func expectedOf(m *message, known int) int {
	if m.fanout != 0 {
		return int(m.fanout)
	}
	return max(1, known)
}

func (t *Tracker) allAcked(m *message) bool {
	expected, _, acked := t.expected(m)
	return acked >= expected
}

// firstDevice is m's first recipient device, ok false when it has none.
func (m *message) firstDevice() (dv device, ok bool) {
	return device{id: m.dev0, flags: m.flags >> dev0Shift, ack: m.dev0Ack}, m.flags&msgHasDev0 != 0
}

// ackedInTime reports whether every expected device acked by m's deadline (event time). A
// device's ack counts by its own timestamp, whenever it arrived: an ack applied while a later
// send still stood as the earliest event may be past the deadline the send sets.
// It is what route asks after every event, so it walks the devices once, without a closure.
func (t *Tracker) ackedInTime(m *message) bool {
	dv, ok := m.firstDevice()
	if !ok {
		return false // at least one device must ack
	}
	deadline := t.deadlineOf(m)
	known, inTime := 1, 0
	if dv.flags&devAcked != 0 && t.ackTime(m, dv) <= deadline {
		inTime++
	}
	if ds := t.extraOf(m); ds != nil {
		known += len(ds.list)
		for i := range ds.list {
			if ds.list[i].flags&devAcked != 0 && t.ackTime(m, ds.list[i]) <= deadline {
				inTime++
			}
		}
	}
	return inTime >= expectedOf(m, known)
}

// ackTime is a device's first ack (event time); the message's last when unknown (restored
// from a snapshot that did not keep it).
func (t *Tracker) ackTime(m *message, dv device) int64 {
	if dv.ack == noTime {
		return m.lastAck()
	}
	return m.fromDelta(dv.ack)
}

// waitsOffline reports whether m, at its ack_timeout deadline, waits for an offline recipient
// (a device pushed offline that had not acked by then, or a message-level offline push while
// a device had not): offline_timeout applies then.
func (t *Tracker) waitsOffline(m *message) bool {
	if m.flags&msgInOfflineQueue != 0 || t.ackedInTime(m) {
		return false
	}
	if m.flags&msgOffline != 0 {
		return true
	}
	pending := false
	t.forEachDevice(m, func(dv device) {
		if dv.flags&devOffline != 0 && (dv.flags&devAcked == 0 || t.ackTime(m, dv) > t.deadlineOf(m)) {
			pending = true
		}
	})
	return pending
}

// TickBudget bounds the outcomes one Tick call produces, so a mass expiry (a recipient
// service down for ack_timeout) is emitted in batches instead of one huge allocation.
const TickBudget = 4096

// Tick decides, at collector time now, the messages and gaps whose deadline the watermark
// (or, when it lags the freshest telemetry by more than MaxSourceLag, the cap) has passed. It
// stops once TickBudget outcomes are pending and reports whether more are due: call
// TakeOutcomes and Tick again.
func (t *Tracker) Tick(now int64) (more bool) {
	w, limit := t.Limits(now)
	return t.TickTo(w, limit)
}

// TickTo decides the messages and gaps due by limit; w is the watermark, which verdicts
// beyond it are counted as forced against (see Tick, and Timeline.Limits).
func (t *Tracker) TickTo(w, limit int64) (more bool) {
	t.wm.current = max(t.wm.current, w)
	for m := t.due.min(); m != nil && m.deadline <= limit; m = t.due.min() {
		if len(t.out) >= TickBudget {
			return true
		}
		forced := m.deadline > w
		if t.expire(m) && forced {
			t.counters.Forced++
		}
	}
	for c := t.gaps.head; c != nil; {
		if len(t.out) >= TickBudget {
			return true
		}
		next := c.gaps.next
		t.confirmGaps(c, limit)
		for _, r := range t.scratch {
			if r.Deadline > w {
				t.counters.Forced++
			}
			t.emitGap(c, r)
		}
		if !c.seq.Pending() {
			t.unlinkGap(c)
		}
		c = next
	}
	return false
}

const originStages = 1<<imsemconv.StageSend | 1<<imsemconv.StagePersist | 1<<imsemconv.StagePush

// decide settles a message whose evidence is complete or whose deadline passed.
func (t *Tracker) decide(m *message) {
	if m.seen&originStages == 0 {
		// Only deliver/ack were seen: the message's history began before we could see it
		// (a restart without storage, or events older than the decided-cache memory).
		// There is nothing to judge, and judging would invent outcomes.
		t.counters.Orphans++
		t.remove(m)
		return
	}
	// Moving to the offline deadline below changes which acks were in time, not which came.
	allAcked := t.allAcked(m)
	if allAcked && m.fanout == 0 && m.seen&seenUncertain != 0 {
		// Every device seen acked, but the push that says how many to expect may have been
		// applied before a restart and lost with it: "delivered" would be a guess.
		t.counters.Unjudged++
		t.remove(m)
		return
	}
	if allAcked && t.waitsOffline(m) {
		// Decided on complete evidence before the deadline passed, with acks after
		// ack_timeout from a recipient that was offline: as expire would have done.
		t.toOfflineDeadline(m)
	}
	if allAcked && !t.ackedInTime(m) {
		t.ackedTooLate(m)
		return
	}
	if allAcked {
		o := t.base(m, imsemconv.OutcomeDelivered, imsemconv.StageAck, "")
		send, lastAck := m.sendTime(), m.lastAck()
		o.End = lastAck
		if send > 0 && lastAck >= send {
			o.LatencyMs = float64(lastAck-send) / 1e6
			o.HasLatency = true
		}
		if o.End == 0 {
			o.End = t.deadlineOf(m)
		}
		t.out = append(t.out, o)
		undelivered := 0
		t.forEachDevice(m, func(dv device) {
			if dv.flags&(devAcked|devDelivered) == devAcked {
				undelivered++
			}
		})
		t.remember(m, decided{outcome: decidedDelivered, stage: imsemconv.StageAck, undelivered: uint8(min(undelivered, 255))})
		t.remove(m)
		return
	}
	if m.seen&seenUncertain != 0 {
		// Its acks may have been applied before a restart and lost with it (and its outcome
		// emitted then). Judging it lost could be a false loss: it is counted as unjudged.
		t.counters.Unjudged++
		t.remove(m)
		return
	}
	if m.failed&pastMemory != 0 {
		// Remembered as untracked, so its next late events are ignored rather than counted again.
		t.counters.UnjudgedPastMemory++
		t.remember(m, decided{outcome: decidedUntracked})
		t.remove(m)
		return
	}
	reason := imsemconv.ReasonAckTimeout
	stage, lostDevices, dev := t.lossStage(m)
	if m.failed&^notFailures != 0 {
		reason = imsemconv.ReasonStageFailed
		for s := imsemconv.StageAck; s > imsemconv.StageUnknown; s-- {
			if m.failed&bit(s) != 0 {
				stage = s
				break
			}
		}
	}
	if reason == imsemconv.ReasonAckTimeout {
		t.noteRetractable(m)
	}
	t.lose(m, imsemconv.OutcomeLost, stage, reason, lostDevices, dev)
}

// ackedTooLate settles a message whose last ack came after its deadline although it was
// counted: it arrived while the deadline still stood later, before an earlier send moved it.
// Like any ack past the deadline, the message is lost (a device had not acked in time) and the
// ack is late.
func (t *Tracker) ackedTooLate(m *message) {
	lastAck, id, conv, trace, sink := m.lastAck(), m.id, "", m.traceID, m.sink
	if m.conv != nil {
		conv = m.conv.id
	}
	t.lose(m, imsemconv.OutcomeLost, imsemconv.StageDeliver, imsemconv.ReasonAckTimeout, 1, "")
	h := t.hash(id)
	d, ok := t.decided[h]
	if ok && d.late {
		return // an event waiting for the deadline was reported late already
	}
	if ok {
		d.late = true
		t.decided[h] = d
	}
	t.out = append(t.out, Outcome{
		Outcome: imsemconv.OutcomeLate, Stage: imsemconv.StageAck, LossStage: imsemconv.StageDeliver,
		Reason: imsemconv.ReasonAckTimeout, MessageID: id, ConversationID: conv, TraceID: trace,
		Start: lastAck, End: lastAck, Sink: sink,
	})
}

func (t *Tracker) lose(m *message, outcome imsemconv.Outcome, stage imsemconv.Stage, reason imsemconv.LossReason, lostDevices int, dev string) {
	o := t.base(m, outcome, stage, reason)
	o.End = t.deadlineOf(m)
	o.LostDevices = lostDevices
	o.DeviceID = dev
	t.out = append(t.out, o)
	code := decidedLost
	if outcome == imsemconv.OutcomeUntracked {
		code = decidedUntracked
	}
	t.remember(m, decided{outcome: code, stage: stage, reason: reasonCode(reason)})
	t.remove(m)
}

func (t *Tracker) base(m *message, outcome imsemconv.Outcome, stage imsemconv.Stage, reason imsemconv.LossReason) Outcome {
	o := Outcome{
		Outcome: outcome, Stage: stage, Reason: reason,
		MessageID: m.id, TraceID: m.traceID, Start: m.sendTime(), Sink: m.sink,
	}
	if m.conv != nil {
		o.ConversationID = m.conv.id
	}
	if o.Start == 0 {
		o.Start = m.firstSeen
	}
	return o
}

// lossStage is the last stage reached by the least advanced recipient device that did not
// ack, how many devices did not ack, and that device's id when exactly one known device is missing.
func (t *Tracker) lossStage(m *message) (imsemconv.Stage, int, string) {
	msgLevel := imsemconv.StageUnknown
	for _, s := range [...]imsemconv.Stage{imsemconv.StagePush, imsemconv.StagePersist, imsemconv.StageSend} {
		if m.seen&bit(s) != 0 {
			msgLevel = s
			break
		}
	}
	lowest := imsemconv.StageAck
	missing := 0
	var dev string
	expected, known, acked := t.expected(m)
	t.forEachDevice(m, func(dv device) {
		if dv.flags&devAcked != 0 {
			return
		}
		s := msgLevel
		if dv.flags&devPushed != 0 && s < imsemconv.StagePush {
			s = imsemconv.StagePush
		}
		if dv.flags&devDelivered != 0 {
			s = imsemconv.StageDeliver
		}
		lowest = min(lowest, s)
		missing++
		dev = dv.id
	})
	if unseen := expected - known; unseen > 0 {
		lowest = min(lowest, msgLevel)
		missing += unseen
		dev = ""
	}
	if missing != 1 {
		dev = ""
	}
	if missing == 0 {
		missing = expected - acked
		lowest = msgLevel
	}
	return lowest, missing, dev
}

// evict stops following m at a state limit: the collector's limit, not the customer's loss,
// so it is reported as untracked.
func (t *Tracker) evict(m *message) {
	t.counters.Evicted[EvictedMessage]++
	stage, lostDevices, dev := t.lossStage(m)
	t.lose(m, imsemconv.OutcomeUntracked, stage, imsemconv.ReasonEvicted, lostDevices, dev)
}

// evictEarliest evicts the message due first; false when none is in flight.
func (t *Tracker) evictEarliest() bool {
	m := t.due.min()
	if m == nil {
		return false
	}
	t.evict(m)
	return true
}

func (t *Tracker) remove(m *message) {
	t.due.remove(m)
	t.detach(m)
	t.ids.remove(m)
	if m.flags&msgHasExtra != 0 {
		delete(t.extra, m)
		if t.extraMsg == m {
			t.extraMsg, t.extraSet = nil, nil
		}
	}
	// Decided: what waited for the deadline is late (or a retraction, or a duplicate) now.
	t.release(m)
}

// ForgottenUpTo is the latest deadline of a decided message the decided memory forgot (0:
// none yet): late events of messages due no later are not recognised.
func (t *Tracker) ForgottenUpTo() int64 { return t.forgottenUpTo }

// remember keeps a bounded memory of decisions so late events and late duplicates are
// recognised instead of starting a new message.
func (t *Tracker) remember(m *message, d decided) {
	if t.cfg.DecidedCacheSize == 0 {
		return
	}
	t.rememberHash(t.hash(m.id), d, max(m.deadline, t.deadlineOf(m)))
}

// rememberHash remembers decision d of the message hashed h, whose deadline was deadline.
func (t *Tracker) rememberHash(h uint64, d decided, deadline int64) {
	t.rememberedUpTo = max(t.rememberedUpTo, deadline)
	if len(t.decidedRing) == 0 {
		t.counters.Evicted[EvictedDecided]++
		t.forgottenUpTo = t.rememberedUpTo
		return
	}
	if _, ok := t.decided[h]; ok {
		t.decided[h] = d
		return
	}
	if t.ringLen == len(t.decidedRing) {
		oldest := t.decidedRing[t.ringStart]
		delete(t.decided, oldest)
		t.dropRetraction(oldest)
		t.forgottenUpTo = max(t.forgottenUpTo, t.ringUpTo[t.ringStart])
		t.ringStart = (t.ringStart + 1) % len(t.decidedRing)
		t.ringLen--
		t.counters.Evicted[EvictedDecided]++
	}
	i := (t.ringStart + t.ringLen) % len(t.decidedRing)
	t.decidedRing[i], t.ringUpTo[i] = h, t.rememberedUpTo
	t.ringLen++
	t.decided[h] = d
}

func (t *Tracker) afterDecision(h uint64, d decided, ev *event.Event, at int64) bool {
	switch d.outcome {
	case decidedDelivered:
		if ev.Stage == imsemconv.StageDeliver && !ev.Failed {
			if d.undelivered > 0 {
				d.undelivered--
				t.decided[h] = d
				return false
			}
			// Every expected device had acked, so another delivery repeats one of them.
			t.out = append(t.out, Outcome{
				Outcome: imsemconv.OutcomeDuplicate, Stage: imsemconv.StageDeliver,
				MessageID: ev.MessageID, ConversationID: ev.ConversationID, DeviceID: ev.DeviceID,
				TraceID: ev.TraceID, Start: ev.Start, End: ev.End, Sink: ev.Sink,
			})
			return true
		}
	case decidedLost:
		retracted := t.lateAck(h, ev, at)
		if !d.late || retracted {
			d.late = true
			t.decided[h] = d
			t.out = append(t.out, Outcome{
				Outcome: imsemconv.OutcomeLate, Stage: ev.Stage, LossStage: d.stage, Reason: reasons[d.reason],
				Retracted: retracted,
				MessageID: ev.MessageID, ConversationID: ev.ConversationID, DeviceID: ev.DeviceID,
				TraceID: ev.TraceID, Start: ev.Start, End: ev.End, Sink: ev.Sink,
			})
		}
	}
	return false
}

// conversation returns the conversation, creating it (and evicting the least recently
// active one when full) if needed, and marks it active.
func (t *Tracker) conversation(id string) *conversation {
	if c := t.convs[id]; c != nil {
		t.touch(c)
		return c
	}
	if len(t.convs) >= t.cfg.MaxConversations && t.lru.head != nil {
		t.evictConversation(t.lru.head)
	}
	c := &conversation{id: id, msgs: list[message]{at: inConversation}}
	t.convs[id] = c
	t.lru.pushBack(c)
	return c
}

func (t *Tracker) evictConversation(c *conversation) {
	t.counters.Evicted[EvictedConversation]++
	if n := len(c.seq.OpenRanges()); n > 0 {
		t.counters.Evicted[EvictedSeqGap] += int64(n)
	}
	t.counters.Evicted[EvictedDecided] += int64(len(c.seq.ConfirmedGaps()))
	// Its messages cannot stay: the per-conversation bookkeeping is going away. They are
	// the least recently active anyway.
	for c.msgs.head != nil {
		t.evict(c.msgs.head)
		if t.convs[c.id] != c {
			return // evict dropped the conversation already
		}
	}
	t.dropConversation(c)
}

func (t *Tracker) dropConversation(c *conversation) {
	if t.convs[c.id] != c {
		return
	}
	delete(t.convs, c.id)
	t.lru.remove(c)
	t.unlinkGap(c)
}

func (t *Tracker) touch(c *conversation) { t.lru.moveToBack(c) }

func (t *Tracker) linkGap(c *conversation) {
	if !c.inGapList {
		c.inGapList = true
		t.gaps.pushBack(c)
	}
}

func (t *Tracker) unlinkGap(c *conversation) {
	if c.inGapList {
		c.inGapList = false
		t.gaps.remove(c)
	}
}

// inConversation is the links of a conversation's list of messages.
func inConversation(m *message) *links[message] { return &m.inConv }

// observeSeq feeds a persisted seq, stamped at, to its conversation's gap detector: a gap it
// opens is confirmed once the watermark passes at + reorder_window.
func (t *Tracker) observeSeq(at int64, ev *event.Event) {
	c := t.conversation(ev.ConversationID)
	if c.seq.Pending() {
		// Gaps the watermark has passed are confirmed first, as the next tick would: a seq
		// arriving after that is late, whenever the tick comes.
		t.confirmGaps(c, t.wm.current)
		for _, r := range t.scratch {
			t.emitGap(c, r)
		}
	}
	res := c.seq.Observe(ev.Seq, at, int64(t.cfg.ReorderWindow), t.cfg.MaxGap, ev.Sink)
	t.counters.Evicted[EvictedDecided] += int64(res.Forgotten)
	if res.Late {
		t.lateSeq(c, at, ev, res.LateOf)
	}
	if res.Anomaly {
		t.counters.SeqGaps++
		t.out = append(t.out, Outcome{
			Outcome: imsemconv.OutcomeLost, Stage: imsemconv.StagePersist, Reason: imsemconv.ReasonSeqGap,
			ConversationID: c.id, Seq: res.AnomalyLo, HasSeq: true, GapSize: res.AnomalySize, Anomaly: true,
			Start: ev.Start, End: ev.End, Sink: ev.Sink,
		})
	}
	if res.HasConfirmed {
		t.emitGap(c, res.Confirmed)
	}
	if res.Opened {
		t.linkGap(c)
	}
	if !c.seq.Pending() {
		t.unlinkGap(c)
	}
}

// confirmGaps moves c's gaps due by limit into t.scratch, counting the confirmed gaps
// that pushed out of c's memory.
func (t *Tracker) confirmGaps(c *conversation, limit int64) {
	var forgotten int
	t.scratch, forgotten = c.seq.Expire(limit, t.scratch[:0])
	t.counters.Evicted[EvictedDecided] += int64(forgotten)
}

// lateSeq reports the persist, stamped at, of a seq reported lost in gap g: a late record
// that takes the loss back when the seq was persisted within g's reorder window (its
// telemetry was merely late), so the verdict does not depend on when the persist arrived.
// It has the lost record's keys (conversation, seq) and goes where that record went.
func (t *Tracker) lateSeq(c *conversation, at int64, ev *event.Event, g seqgap.Confirmed) {
	t.out = append(t.out, Outcome{
		Outcome: imsemconv.OutcomeLate, Stage: imsemconv.StagePersist,
		Reason: imsemconv.ReasonSeqGap, LossStage: imsemconv.StagePersist, Retracted: at <= g.Deadline,
		ConversationID: c.id, Seq: ev.Seq, HasSeq: true, GapSize: g.Gap, Sink: g.Sink,
		Start: ev.Start, End: ev.End,
	})
}

// emitGap reports each missing seq of a confirmed gap as a lost message: the message was
// never reported anywhere, and one record per missing seq keeps loss counts exact.
// A gap holds at most max_gap numbers, so this is bounded.
func (t *Tracker) emitGap(c *conversation, r seqgap.Range) {
	t.counters.SeqGaps++
	size := r.Size()
	for s := r.Lo; ; s++ {
		t.out = append(t.out, Outcome{
			Outcome: imsemconv.OutcomeLost, Stage: imsemconv.StagePersist, Reason: imsemconv.ReasonSeqGap,
			ConversationID: c.id, Seq: s, HasSeq: true, GapSize: size, Sink: r.Sink,
			Start: r.Deadline - int64(t.cfg.ReorderWindow), End: r.Deadline,
		})
		if s == r.Hi {
			break
		}
	}
}
