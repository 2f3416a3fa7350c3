package workload

import (
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/imcol/imcol/components/imsemconv"
)

// Service is one of the simulated IM backend services. Each emits its own part of a
// message's lifecycle under its own resource (service.name), as in OpenIM's split into
// gateway, msg, msgtransfer and push.
type Service uint8

const (
	// ServiceGateway holds the clients' connections: it receives, delivers and sees acks.
	ServiceGateway Service = iota
	// ServiceMsg accepts a message from the gateway (stage send).
	ServiceMsg
	// ServiceTransfer persists it and assigns the conversation seq (stage persist).
	ServiceTransfer
	// ServicePush dispatches it to the recipients' devices (stage push).
	ServicePush
	// NumServices is the number of simulated services.
	NumServices
)

var serviceNames = [NumServices]string{"im-gateway", "im-msg", "im-transfer", "im-push"}

// Name is the service.name resource attribute.
func (s Service) Name() string {
	if s < NumServices {
		return serviceNames[s]
	}
	return "unknown"
}

// ParseService accepts the service.name or its short form (gateway, msg, transfer, push).
func ParseService(v string) (Service, bool) {
	for i, n := range serviceNames {
		if v == n || "im-"+v == n {
			return Service(i), true
		}
	}
	return 0, false
}

// Event is one span or log record of a message's lifecycle.
type Event struct {
	Msg *Message
	// Stage is StageUnknown for events that are not lifecycle steps (the gateway's receive).
	Stage   imsemconv.Stage
	Service Service
	// Name is the span name, and the log record's event name.
	Name    string
	Device  string
	Seq     int64
	HasSeq  bool
	Fanout  int
	Offline bool
	// Failed marks a failed step: span status Error, log severity ERROR. StatusMessage says why.
	Failed        bool
	StatusMessage string
	// Start and End are the event's own timestamps; Due is when it is handed to the
	// exporter. All three are relative to the start of the run.
	Start, End, Due time.Duration
	SpanID          pcommon.SpanID
	ParentSpanID    pcommon.SpanID
}

// Lifecycle returns the events of a message that runs its whole course: the gateway's
// receive, send, persist with seq, push with the fan-out (plus one offline push per offline
// recipient), and deliver and ack per recipient device, offline ones after they reconnect.
// Each event is due when it ends, as a span is exported once it ends. Timings are drawn from
// the message's own random stream.
func (g *Generator) Lifecycle(m *Message, seq int64) []Event {
	r := g.MessageRand(m.Index, streamTimings)
	b := builder{seed: g.cfg.Seed, m: m, events: make([]Event, 0, 5+2*len(m.Recipients))}
	t := m.Start
	recv := b.add(ServiceGateway, imsemconv.StageUnknown, "gateway.receive", t, between(r, 200*time.Microsecond, time.Millisecond), pcommon.SpanID{})
	t += 300 * time.Microsecond
	send := b.add(ServiceMsg, imsemconv.StageSend, "msg.SendMessage", t, between(r, time.Millisecond, 3*time.Millisecond), recv.SpanID)
	// The message crosses a queue (Kafka in OpenIM) between msg and transfer.
	t = send.End + between(r, time.Millisecond, 5*time.Millisecond)
	persist := b.add(ServiceTransfer, imsemconv.StagePersist, "transfer.msg_insert_mongo", t, between(r, time.Millisecond, 4*time.Millisecond), send.SpanID)
	persist.Seq, persist.HasSeq = seq, true
	t = persist.End + between(r, time.Millisecond, 3*time.Millisecond)
	push := b.add(ServicePush, imsemconv.StagePush, "push.Push", t, between(r, 500*time.Microsecond, 2*time.Millisecond), persist.SpanID)
	push.Fanout = len(m.Recipients)
	pushEnd, pushID := push.End, push.SpanID
	for _, rc := range m.Recipients {
		start := pushEnd + between(r, time.Millisecond, 20*time.Millisecond)
		if rc.Offline {
			off := b.add(ServicePush, imsemconv.StagePush, "push.OfflinePush", pushEnd, 200*time.Microsecond, pushID)
			off.Device, off.Offline = rc.Device, true
			start = pushEnd + rc.Reconnect
		}
		d := b.add(ServiceGateway, imsemconv.StageDeliver, "gateway.PushToDevice", start, between(r, 200*time.Microsecond, time.Millisecond), pushID)
		d.Device = rc.Device
		dEnd, dID := d.End, d.SpanID
		a := b.add(ServiceGateway, imsemconv.StageAck, "gateway.Ack", dEnd+between(r, 5*time.Millisecond, 60*time.Millisecond), 100*time.Microsecond, dID)
		a.Device = rc.Device
	}
	return b.events
}

type builder struct {
	seed   uint64
	m      *Message
	events []Event
}

// add appends an event and returns a pointer to it, valid until the next add.
func (b *builder) add(s Service, stage imsemconv.Stage, name string, start, dur time.Duration, parent pcommon.SpanID) *Event {
	b.events = append(b.events, Event{
		Msg: b.m, Stage: stage, Service: s, Name: name,
		Start: start, End: start + dur, Due: start + dur,
		SpanID: SpanID(b.seed, b.m.Index, len(b.events)), ParentSpanID: parent,
	})
	return &b.events[len(b.events)-1]
}

// NewSpanID returns a span id for an extra event of m (a retry, a duplicate) that does not
// collide with the ids Lifecycle gave out.
func (g *Generator) NewSpanID(m *Message, n int) pcommon.SpanID {
	return SpanID(g.cfg.Seed, m.Index, 1<<20+n)
}

func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}
