package faults

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/testbed/workload"
)

// Truth is the ground truth of one message.
type Truth struct {
	Index        int64
	MessageID    string
	Conversation *workload.Conversation
	// Seq is the conversation sequence number assigned at persist; 0 when it never got one.
	Seq    int64
	Class  Class
	Labels []Label
	// FirstDue is when the message's first event was handed to the exporter (for a seq gap,
	// and a late message whose events are all held: when it would have been), relative to the
	// start of the run. Detection latency counts from here. It does not include the sender's
	// export lag (Config.Lags).
	FirstDue time.Duration
	// Deadline is the event time (relative to the start of the run) at which a lost message
	// is due: its send time plus ack_timeout (plus offline_timeout instead while an offline
	// recipient is pending); for a seq gap, and a late message (whose only loss is the seq
	// gap it leaves), the persist time of the seq that reveals it plus reorder_window (zero
	// until that seq is planned). Verdicts on event time come once the watermark passes it.
	Deadline time.Duration
	// Events is the number of lifecycle events emitted for it.
	Events int
}

// Book keeps the truth of every planned message, indexed by message index. It is safe for
// concurrent use: the planner writes while a progress reporter reads.
type Book struct {
	mu     sync.Mutex
	truths []Truth
	counts map[Class]int64
	// lastEvent is, per service, the latest event time (span end) of any event emitted.
	lastEvent [workload.NumServices]time.Duration
}

// NewBook returns an empty book.
func NewBook() *Book { return &Book{counts: map[Class]int64{}} }

func (b *Book) record(t Truth) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if int64(len(b.truths)) != t.Index {
		// The planner numbers messages densely; anything else is a bug in the planner.
		panic(fmt.Sprintf("faults: truth for message %d recorded at position %d", t.Index, len(b.truths)))
	}
	b.truths = append(b.truths, t)
	b.counts[t.Class]++
}

func (b *Book) noteEvents(evts []workload.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := range evts {
		if s := evts[i].Service; s < workload.NumServices {
			b.lastEvent[s] = max(b.lastEvent[s], evts[i].End)
		}
	}
}

func (b *Book) setDeadline(idx int64, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if idx >= 0 && idx < int64(len(b.truths)) {
		b.truths[idx].Deadline = d
	}
}

// LastEvent is the latest event time (relative to the start of the run) of any event of
// service s planned so far: once the stream is over, the point beyond which that source's
// watermark cannot move.
func (b *Book) LastEvent(s workload.Service) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s >= workload.NumServices {
		return 0
	}
	return b.lastEvent[s]
}

// Len is the number of messages recorded.
func (b *Book) Len() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(len(b.truths))
}

// Get returns the truth of message idx.
func (b *Book) Get(idx int64) (Truth, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if idx < 0 || idx >= int64(len(b.truths)) {
		return Truth{}, false
	}
	return b.truths[idx], true
}

// All returns every truth recorded so far; the caller must not modify them.
func (b *Book) All() []Truth {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.truths[:len(b.truths):len(b.truths)]
}

// Counts returns the number of messages per class.
func (b *Book) Counts() map[Class]int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[Class]int64, len(b.counts))
	for c, n := range b.counts {
		out[c] = n
	}
	return out
}

type convState struct {
	nextSeq int64
	// baselineDue is when the conversation's first seq was due at the collector; a gap is only
	// detectable once a seq before it has been seen.
	baselineDue time.Duration
	hasBaseline bool
	// gapOpen is set while a seq gap waits for a later seq of the conversation to reveal it;
	// gaps lists the messages of the open gap (their deadline is set by the revealing seq).
	gapOpen bool
	gaps    []int64
	// held are the events of a late_message (message heldIdx) waiting for a later seq of the
	// conversation to reveal the gap its persist leaves: they go out with that seq's message,
	// due once the watermark has passed the message's deadline and the gap's (release).
	held    []workload.Event
	heldIdx int64
}

// Planner draws messages from a workload generator, applies faults and records the truth.
// It implements workload.Source.
type Planner struct {
	gen   *workload.Generator
	cfg   Config
	book  *Book
	convs []convState
	cum   []classP
	// closing lists conversations whose open gap (or held late message) the regular stream
	// did not reveal; after the stream one extra clean message per conversation reveals it.
	closing []int
	closed  bool
	last    time.Duration
	// streamEnd is when the regular stream's last message starts; keepUntil is the event
	// time up to which the stream must go on (late_events and late_message need every
	// source's watermark to pass their deadlines before their late events arrive, and a late
	// message's own window to pass after): after the regular stream and the gap closers,
	// clean messages every keepAliveEvery keep it going until then.
	streamEnd, keepUntil time.Duration
	keepAlive            int
}

// keepAliveEvery is the spacing of the clean messages that keep the stream going after the
// regular stream, while late_events or late_message need it: a few per tick keep every
// source's watermark moving at little cost.
const keepAliveEvery = 50 * time.Millisecond

type classP struct {
	c Class
	p float64
}

// NewPlanner checks cfg against the generator's configuration.
func NewPlanner(gen *workload.Generator, cfg Config, book *Book) (*Planner, error) {
	cfg.Timeouts = cfg.Timeouts.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wc := gen.Config()
	t := cfg.Timeouts
	if wc.OfflineShare > 0 && wc.OfflineReconnectMax+t.Margin >= t.OfflineTimeout {
		return nil, fmt.Errorf("faults: offline devices reconnect up to %s after the push, too close to offline_timeout %s (margin %s): they would be counted lost",
			wc.OfflineReconnectMax, t.OfflineTimeout, t.Margin)
	}
	p := &Planner{gen: gen, cfg: cfg, book: book, convs: make([]convState, gen.Conversations())}
	if wc.Messages > 0 {
		p.streamEnd = time.Duration(float64(wc.Messages-1) / wc.Rate * float64(time.Second))
	}
	acc := 0.0
	for _, c := range Faults { // stable order keeps the draw reproducible
		if pr := cfg.Probability[c]; pr > 0 {
			acc += pr
			p.cum = append(p.cum, classP{c, acc})
		}
	}
	return p, nil
}

// Next plans the next message. It implements workload.Source.
func (p *Planner) Next() (time.Duration, []workload.Event, bool) {
	m, ok := p.gen.Next()
	var class Class
	if ok {
		class = p.draw(p.gen.MessageRand(m.Index, workload.StreamFaults))
	} else {
		if !p.closed {
			p.closed = true
			for i := range p.convs {
				if p.convs[i].gapOpen || p.convs[i].held != nil {
					p.closing = append(p.closing, i)
				}
			}
		}
		switch {
		case len(p.closing) > 0:
			c := p.gen.Conversation(p.closing[0])
			p.closing = p.closing[1:]
			m = p.gen.MessageIn(c)
			// Extra messages follow the regular stream at its pace, but never before the last
			// message planned (their index puts them after it anyway).
			m.Start = max(m.Start, p.last)
		case p.last < p.keepUntil:
			// Keep-alive: the stream goes on until the late events of the last late_events
			// message can only arrive after the watermark passed its deadline, and the last
			// late message's window has passed.
			m = p.gen.MessageIn(p.gen.Conversation(p.keepAlive % p.gen.Conversations()))
			p.keepAlive++
			m.Start = p.last + keepAliveEvery
			for i := range m.Recipients {
				m.Recipients[i].Offline, m.Recipients[i].Reconnect = false, 0
			}
		default:
			return 0, nil, false
		}
		class = ClassNone
	}
	p.last = m.Start
	evts, truth := p.plan(m, class)
	p.book.record(truth)
	p.book.noteEvents(evts)
	return m.Start, evts, true
}

func (p *Planner) draw(r *rand.Rand) Class {
	x := r.Float64()
	for _, cp := range p.cum {
		if x < cp.p {
			return cp.c
		}
	}
	return ClassNone
}

func (p *Planner) plan(m *workload.Message, class Class) ([]workload.Event, Truth) {
	cs := &p.convs[m.Conversation.Index]
	t := p.cfg.Timeouts
	switch {
	case class == ClassSeqGap && (!cs.hasBaseline || cs.baselineDue+t.Margin >= m.Start || cs.held != nil):
		// Without a seq seen earlier in the conversation, the gap is invisible to anyone.
		// Behind a held late message it would widen that message's gap: each seq lost or
		// taken back would no longer be a fault of its own.
		class = ClassNone
	case class == ClassLateMessage && (!cs.hasBaseline || cs.baselineDue+t.Margin >= m.Start || cs.gapOpen || cs.held != nil):
		// The gap a late message's persist leaves must be its own (one seq, revealed by a
		// later one after an earlier one was seen), so that it is opened and taken back alone.
		class = ClassNone
	}
	r := p.gen.MessageRand(m.Index, workload.StreamFaults)
	r.Float64() // the class draw
	switch class {
	case ClassNone:
		if slices.ContainsFunc(m.Recipients, func(rc workload.Recipient) bool { return rc.Offline }) {
			class = ClassOffline
		}
	case ClassOfflineExpired:
		for i := range m.Recipients {
			m.Recipients[i].Offline, m.Recipients[i].Reconnect = i == 0, 0
		}
	default:
		// Offline recipients would move the deadline to offline_timeout and blur the fault.
		for i := range m.Recipients {
			m.Recipients[i].Offline, m.Recipients[i].Reconnect = false, 0
		}
	}

	var seq int64
	if class != ClassLossSend {
		cs.nextSeq++
		seq = cs.nextSeq
	}
	evts := p.gen.Lifecycle(m, seq)
	truth := Truth{Index: m.Index, MessageID: m.ID, Conversation: m.Conversation, Seq: seq, Class: class}
	delivered := []Label{labelDelivered}

	switch class {
	case ClassNone, ClassOffline:
		truth.Labels = delivered
	case ClassLossSend:
		evts = upTo(evts, imsemconv.StageSend)
		truth.Labels = []Label{lost(imsemconv.ReasonAckTimeout, imsemconv.StageSend)}
	case ClassLossPersist:
		evts = upTo(evts, imsemconv.StagePersist)
		truth.Labels = []Label{lost(imsemconv.ReasonAckTimeout, imsemconv.StagePersist)}
	case ClassLossPush:
		evts = upTo(evts, imsemconv.StagePush)
		truth.Labels = []Label{lost(imsemconv.ReasonAckTimeout, imsemconv.StagePush)}
	case ClassLossDeliver:
		evts = upTo(evts, imsemconv.StageDeliver)
		truth.Labels = []Label{lost(imsemconv.ReasonAckTimeout, imsemconv.StageDeliver)}
	case ClassSeqGap:
		evts = nil
		truth.Labels = []Label{lost(imsemconv.ReasonSeqGap, imsemconv.StagePersist)}
	case ClassPersistFailed:
		evts = upTo(evts, imsemconv.StagePersist)
		ps := &evts[len(evts)-1]
		ps.Failed, ps.Name, ps.StatusMessage = true, "transfer.msg_insert_redis", "msg_insert_redis_failed"
		truth.Labels = []Label{lost(imsemconv.ReasonStageFailed, imsemconv.StagePersist)}
	case ClassPersistRetry:
		i := slices.IndexFunc(evts, func(e workload.Event) bool { return e.Stage == imsemconv.StagePersist })
		failed := evts[i]
		failed.Name, failed.Failed, failed.StatusMessage = "transfer.msg_insert_redis", true, "msg_insert_redis_failed"
		failed.End = failed.Start + (evts[i].End-evts[i].Start)/2
		failed.Due = failed.End
		failed.SpanID = p.gen.NewSpanID(m, 0)
		// The successful retry keeps the original event and stays after the failure.
		evts = slices.Insert(evts, i, failed)
		truth.Labels = delivered
	case ClassDuplicate:
		acks := indexes(evts, imsemconv.StageAck)
		k := acks[r.IntN(len(acks))]
		dup := evts[k-1] // the deliver this ack answers
		dup.Start = evts[k].End + between(r, 10*time.Millisecond, 100*time.Millisecond)
		dup.End = dup.Start + (evts[k-1].End - evts[k-1].Start)
		dup.Due = dup.End
		dup.SpanID = p.gen.NewSpanID(m, 1)
		evts = append(evts, dup)
		truth.Labels = []Label{labelDelivered, labelDuplicate}
	case ClassReorder:
		// Each service's events of this message arrive out of order with the same service's
		// events of other messages by up to the spread: within half of allowed_lateness.
		spread := max(min(300*time.Millisecond, t.ReorderWindow/2, t.AckTimeout/4, t.AllowedLateness/2), time.Millisecond)
		var offset [workload.NumServices]time.Duration
		for s := range offset {
			offset[s] = between(r, 0, spread)
		}
		for i := range evts {
			evts[i].Due += offset[evts[i].Service]
		}
		truth.Labels = delivered
	case ClassDelay:
		// The held service's events of this message arrive after its events of later
		// messages: a disorder within one source, which must stay within allowed_lateness
		// (half of it: the other half absorbs transport jitter) as well as the timeouts.
		limit := max(min((min(t.AckTimeout-t.TickInterval, t.ReorderWindow)-t.Margin)/2, t.AllowedLateness/2), 10*time.Millisecond)
		s := workload.Service(r.IntN(int(workload.NumServices)))
		d := between(r, limit/2, limit)
		for i := range evts {
			if evts[i].Service == s {
				evts[i].Due += d
			}
		}
		truth.Labels = delivered
	case ClassAckDelay:
		for _, k := range indexes(evts, imsemconv.StageAck) {
			a := &evts[k]
			a.Start = m.Start + t.AckTimeout + t.TickInterval + t.Margin + between(r, 0, 200*time.Millisecond)
			a.End = a.Start + 100*time.Microsecond
			a.Due = a.End
		}
		truth.Labels = []Label{lost(imsemconv.ReasonAckTimeout, imsemconv.StageDeliver), late(imsemconv.StageAck)}
	case ClassLateEvents:
		// The deliver and ack events (im-gateway's) are held until after every source's
		// watermark passed the deadline: the slowest source's events stamped beyond
		// deadline + allowed_lateness reach the collector by then, and a tick decides. The
		// gateway's own lag delays its late events too, so only the difference to the slowest
		// source counts. The keep-alive after the stream makes sure those later events exist.
		deadline := m.Start + t.AckTimeout
		shift := t.AckTimeout + t.AllowedLateness + t.TickInterval + t.Margin +
			max(p.cfg.Lags.Max()-p.cfg.Lags.Of(workload.ServiceGateway, deadline+t.AllowedLateness), 0)
		for i := range evts {
			if evts[i].Stage == imsemconv.StageDeliver || evts[i].Stage == imsemconv.StageAck {
				evts[i].Due += shift
			}
		}
		p.keepUntil = max(p.keepUntil, deadline+t.AllowedLateness+t.Margin)
		// The first late event (a deliver) is late; the acks, stamped before the deadline,
		// prove the message delivered in time once every device's arrived: the loss is retracted.
		truth.Labels = []Label{lost(imsemconv.ReasonAckTimeout, imsemconv.StagePush), late(imsemconv.StageDeliver), labelRetracted}
	case ClassOfflineExpired:
		dev := m.Recipients[0].Device
		evts = slices.DeleteFunc(evts, func(e workload.Event) bool {
			return e.Device == dev && (e.Stage == imsemconv.StageDeliver || e.Stage == imsemconv.StageAck)
		})
		truth.Labels = []Label{lost(imsemconv.ReasonAckTimeout, imsemconv.StagePush)}
	case ClassLateMessage:
		// Every event is held (below) until a later seq of the conversation, persisted on
		// time, has opened a gap at this seq and the watermark has passed both deadlines.
		// Judged on its own events the message is delivered; the seq is reported lost when
		// the gap is confirmed, and the late persist, stamped before the gap's deadline,
		// takes that loss back.
		truth.Labels = []Label{labelDelivered, SeqGapLoss(), labelSeqGapRetracted}
	default:
		panic("faults: unhandled class " + string(class))
	}

	if st := p.cfg.Stop; st != nil {
		n := len(evts)
		evts = slices.DeleteFunc(evts, func(e workload.Event) bool { return e.Service == st.Service && e.Due >= st.At })
		if len(evts) < n {
			truth.Class = ClassServiceDown
			truth.Labels = nil
			if l, ok := Verdict(evts); ok {
				truth.Labels = []Label{l}
			}
		}
	}

	truth.Events = len(evts)
	truth.Deadline = deadlineOf(evts, m, t)
	truth.FirstDue = m.Start
	if len(evts) > 0 {
		truth.FirstDue = evts[0].Due
		for _, e := range evts[1:] {
			truth.FirstDue = min(truth.FirstDue, e.Due)
		}
	}
	if seq > 0 {
		switch class {
		case ClassSeqGap:
			cs.gapOpen = true
			cs.gaps = append(cs.gaps, m.Index)
		case ClassLateMessage:
			// Its deadline is the gap's, known once the revealing seq is planned.
			truth.Deadline = 0
			cs.held, cs.heldIdx = evts, m.Index
			evts = nil
		default:
			reveal := truth.FirstDue
			for _, e := range evts {
				if e.Stage == imsemconv.StagePersist {
					reveal = max(reveal, e.End)
				}
			}
			if cs.gapOpen {
				for _, idx := range cs.gaps {
					p.book.setDeadline(idx, reveal+t.ReorderWindow)
				}
			}
			cs.gapOpen, cs.gaps = false, cs.gaps[:0]
			if !cs.hasBaseline {
				persistDue := truth.FirstDue
				for _, e := range evts {
					if e.Stage == imsemconv.StagePersist {
						persistDue = max(persistDue, e.Due)
					}
				}
				cs.hasBaseline, cs.baselineDue = true, persistDue
			}
			if cs.held != nil {
				// Sent with this message, each at its own due time.
				evts = append(evts, p.release(cs, reveal)...)
			}
		}
	}
	return evts, truth
}

// release returns the held events of the conversation's late message, whose gap the seq
// persisted at reveal (event time) opens: due once every source's watermark has passed the
// later of the gap's deadline (reveal + reorder_window) and the message's own (ack_timeout
// after its latest event, whichever of them arrives first), with the same margin as
// late_events: the slowest source's events stamped allowed_lateness beyond it reach the
// collector, and a tick confirms the gap. Each service's events are held longer by how much
// more the slowest source lags than it, so they all arrive after that; their order stays
// the lifecycle's. The keep-alive then carries the stream past the message's own window,
// which in watermark time starts when its first event arrives.
func (p *Planner) release(cs *convState, reveal time.Duration) []workload.Event {
	t := p.cfg.Timeouts
	evts := cs.held
	cs.held = nil
	gap := reveal + t.ReorderWindow
	deadline, first := gap, evts[0].Due
	for _, e := range evts {
		deadline = max(deadline, e.End+t.AckTimeout)
		first = min(first, e.Due)
	}
	at := deadline + t.AllowedLateness + t.TickInterval + t.Margin
	for i := range evts {
		evts[i].Due += at - first + max(p.cfg.Lags.Max()-p.cfg.Lags.Of(evts[i].Service, at), 0)
	}
	p.book.setDeadline(cs.heldIdx, gap)
	p.keepUntil = max(p.keepUntil, at+t.AckTimeout+t.AllowedLateness+t.Margin)
	return evts
}

// deadlineOf is the event time at which the processor decides a message lost: its send time
// (else its earliest event's) plus ack_timeout, or offline_timeout while an offline push is
// not followed by that device's ack.
func deadlineOf(evts []workload.Event, _ *workload.Message, t Timeouts) time.Duration {
	if len(evts) == 0 {
		return 0 // a seq gap: the revealing seq sets it
	}
	base, haveSend := time.Duration(0), false
	earliest := evts[0].Start
	acked := map[string]bool{}
	for _, e := range evts {
		earliest = min(earliest, e.Start)
		if e.Stage == imsemconv.StageSend && !haveSend {
			base, haveSend = e.Start, true
		}
		if e.Stage == imsemconv.StageAck {
			acked[e.Device] = true
		}
	}
	if !haveSend {
		base = earliest
	}
	for _, e := range evts {
		if e.Stage == imsemconv.StagePush && e.Offline && !acked[e.Device] {
			return base + t.OfflineTimeout
		}
	}
	return base + t.AckTimeout
}

// Verdict is the verdict im_loss must reach on a message from the lifecycle events that
// were sent, once its deadline passed: delivered when every expected device acked (the
// push's fan-out, else the devices seen), else lost on ack timeout at the last stage reached
// by the least advanced device that did not ack (a device never seen counts at the
// message's own last stage: send, persist or push). ok is false when no send, persist or
// push was sent: im_loss never judges a message whose origin it did not see.
func Verdict(evts []workload.Event) (l Label, ok bool) {
	msgLevel := imsemconv.StageUnknown
	fanout := 0
	type dev struct{ pushed, delivered, acked bool }
	devs := map[string]*dev{}
	get := func(id string) *dev {
		d := devs[id]
		if d == nil {
			d = &dev{}
			devs[id] = d
		}
		return d
	}
	for _, e := range evts {
		switch e.Stage {
		case imsemconv.StageSend, imsemconv.StagePersist, imsemconv.StagePush:
			if !e.Failed {
				msgLevel = max(msgLevel, e.Stage)
			}
		}
		switch {
		case e.Stage == imsemconv.StagePush && e.Device == "":
			fanout = max(fanout, e.Fanout)
		case e.Stage == imsemconv.StagePush:
			get(e.Device).pushed = true
		case e.Stage == imsemconv.StageDeliver && !e.Failed:
			get(e.Device).delivered = true
		case e.Stage == imsemconv.StageAck && !e.Failed:
			get(e.Device).acked = true
		}
	}
	expected, acked := fanout, 0
	if expected == 0 {
		expected = max(1, len(devs))
	}
	lowest := imsemconv.StageAck
	for _, d := range devs {
		if d.acked {
			acked++
			continue
		}
		s := msgLevel
		if d.pushed {
			s = max(s, imsemconv.StagePush)
		}
		if d.delivered {
			s = imsemconv.StageDeliver
		}
		lowest = min(lowest, s)
	}
	switch {
	case msgLevel == imsemconv.StageUnknown:
		return Label{}, false
	case acked >= expected:
		return labelDelivered, true
	case expected > len(devs):
		lowest = min(lowest, msgLevel)
	}
	return lost(imsemconv.ReasonAckTimeout, lowest), true
}

// upTo keeps the events up to and including stage (and the stageless receive).
func upTo(evts []workload.Event, stage imsemconv.Stage) []workload.Event {
	return slices.DeleteFunc(evts, func(e workload.Event) bool { return e.Stage > stage })
}

func indexes(evts []workload.Event, stage imsemconv.Stage) []int {
	var out []int
	for i, e := range evts {
		if e.Stage == stage {
			out = append(out, i)
		}
	}
	return out
}

func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}
