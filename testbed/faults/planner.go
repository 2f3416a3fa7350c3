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
	// FirstDue is when the message's first event was handed to the exporter (for a seq gap:
	// when it would have been), relative to the start of the run. Detection latency counts
	// from here.
	FirstDue time.Duration
	// Events is the number of lifecycle events emitted for it.
	Events int
}

// Book keeps the truth of every planned message, indexed by message index. It is safe for
// concurrent use: the planner writes while a progress reporter reads.
type Book struct {
	mu     sync.Mutex
	truths []Truth
	counts map[Class]int64
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
	// gapOpen is set while a seq gap waits for a later seq of the conversation to reveal it.
	gapOpen bool
}

// Planner draws messages from a workload generator, applies faults and records the truth.
// It implements workload.Source.
type Planner struct {
	gen   *workload.Generator
	cfg   Config
	book  *Book
	convs []convState
	cum   []classP
	// closing lists conversations whose open gap the regular stream did not reveal; after
	// the stream one extra clean message per conversation reveals it.
	closing []int
	closed  bool
	last    time.Duration
}

type classP struct {
	c Class
	p float64
}

// NewPlanner checks cfg against the generator's configuration.
func NewPlanner(gen *workload.Generator, cfg Config, book *Book) (*Planner, error) {
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
				if p.convs[i].gapOpen {
					p.closing = append(p.closing, i)
				}
			}
		}
		if len(p.closing) == 0 {
			return 0, nil, false
		}
		c := p.gen.Conversation(p.closing[0])
		p.closing = p.closing[1:]
		m = p.gen.MessageIn(c)
		// Extra messages follow the regular stream at its pace, but never before the last
		// message planned (their index puts them after it anyway).
		m.Start = max(m.Start, p.last)
		class = ClassNone
	}
	p.last = m.Start
	evts, truth := p.plan(m, class)
	p.book.record(truth)
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
	if class == ClassSeqGap && !(cs.hasBaseline && cs.baselineDue+t.Margin < m.Start) {
		// Without a seq seen earlier in the conversation, the gap is invisible to anyone.
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
		spread := min(300*time.Millisecond, t.ReorderWindow/2, t.AckTimeout/4)
		var offset [workload.NumServices]time.Duration
		for s := range offset {
			offset[s] = between(r, 0, spread)
		}
		for i := range evts {
			evts[i].Due += offset[evts[i].Service]
		}
		truth.Labels = delivered
	case ClassDelay:
		limit := max((min(t.AckTimeout-t.TickInterval, t.ReorderWindow)-t.Margin)/2, 10*time.Millisecond)
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
		shift := t.AckTimeout + t.TickInterval + t.Margin
		for i := range evts {
			if evts[i].Stage == imsemconv.StageDeliver || evts[i].Stage == imsemconv.StageAck {
				evts[i].Due += shift
			}
		}
		truth.Labels = []Label{lost(imsemconv.ReasonAckTimeout, imsemconv.StagePush), late(imsemconv.StageDeliver)}
	case ClassOfflineExpired:
		dev := m.Recipients[0].Device
		evts = slices.DeleteFunc(evts, func(e workload.Event) bool {
			return e.Device == dev && (e.Stage == imsemconv.StageDeliver || e.Stage == imsemconv.StageAck)
		})
		truth.Labels = []Label{lost(imsemconv.ReasonAckTimeout, imsemconv.StagePush)}
	default:
		panic("faults: unhandled class " + string(class))
	}

	truth.Events = len(evts)
	truth.FirstDue = m.Start
	if len(evts) > 0 {
		truth.FirstDue = evts[0].Due
		for _, e := range evts[1:] {
			truth.FirstDue = min(truth.FirstDue, e.Due)
		}
	}
	if seq > 0 {
		if class == ClassSeqGap {
			cs.gapOpen = true
		} else {
			cs.gapOpen = false
			if !cs.hasBaseline {
				persistDue := truth.FirstDue
				for _, e := range evts {
					if e.Stage == imsemconv.StagePersist {
						persistDue = max(persistDue, e.Due)
					}
				}
				cs.hasBaseline, cs.baselineDue = true, persistDue
			}
		}
	}
	return evts, truth
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
