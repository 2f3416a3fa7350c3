// Package faults injects faults into a workload and records, per message, the ground truth:
// which outcome records (outcome, reason, stage) the im_loss processor must produce for it.
//
// Each message gets at most one fault class, drawn from the message's own random stream, so
// the truth of every message is unambiguous. Faults are placed relative to the timeouts of
// the collector under test (ack_timeout, offline_timeout, reorder_window, tick_interval):
// a delay meant to be tolerated stays well inside them, and an event meant to be late
// arrives well after the loss must have been decided.
package faults // import "github.com/imcol/imcol/testbed/faults"

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/testbed/workload"
)

// Class is a fault class.
type Class string

// Fault classes. ClassNone and ClassOffline are not faults: they are the clean cases whose
// truth is "delivered" (ClassOffline: through the offline queue).
const (
	ClassNone    Class = "none"
	ClassOffline Class = "offline"

	// ClassLossSend..ClassLossDeliver stop the lifecycle after that stage: later events are
	// never emitted (loss at deliver: every device got the message, none acked).
	ClassLossSend    Class = "loss_send"
	ClassLossPersist Class = "loss_persist"
	ClassLossPush    Class = "loss_push"
	ClassLossDeliver Class = "loss_deliver"
	// ClassSeqGap is a message persisted with a seq but never reported by any service.
	ClassSeqGap Class = "seq_gap"
	// ClassPersistFailed fails persist with no retry; ClassPersistRetry fails the first
	// storage sub-step and succeeds on the retry.
	ClassPersistFailed Class = "persist_failed"
	ClassPersistRetry  Class = "persist_retry"
	// ClassDuplicate delivers the message a second time to one device after its ack.
	ClassDuplicate Class = "duplicate"
	// ClassReorder gives each service its own export delay, so the services' events arrive
	// out of lifecycle order (each service's own events stay in order).
	ClassReorder Class = "reorder"
	// ClassDelay holds all events of one service for up to half of min(ack_timeout -
	// tick_interval, reorder_window) minus the margin: late, but within the limits.
	ClassDelay Class = "delay"
	// ClassAckDelay: the recipients ack after the ack timeout (their acks carry late times).
	ClassAckDelay Class = "ack_delay"
	// ClassLateEvents: deliver and ack happened on time but their telemetry reaches the
	// collector after the ack timeout.
	ClassLateEvents Class = "late_events"
	// ClassOfflineExpired: a recipient is offline and never reconnects before offline_timeout.
	ClassOfflineExpired Class = "offline_expired"
	// ClassLateMessage: the whole lifecycle happened on time, but every event of it reaches
	// the collector after the watermark passed the message's own deadline and the deadline of
	// the seq gap its persist leaves (a later seq of the conversation was persisted on time):
	// a late message, judged on its own events, whose late persist takes the seq loss back.
	ClassLateMessage Class = "late_message"

	// ClassServiceDown is not injected by probability: it marks a message some of whose events
	// were never sent because their service had stopped (Config.Stop). Its truth follows from
	// the events that were sent.
	ClassServiceDown Class = "service_down"
)

// Faults lists the injectable classes in a stable order.
var Faults = []Class{
	ClassLossSend, ClassLossPersist, ClassLossPush, ClassLossDeliver, ClassSeqGap,
	ClassPersistFailed, ClassPersistRetry, ClassDuplicate, ClassReorder, ClassDelay,
	ClassAckDelay, ClassLateEvents, ClassOfflineExpired, ClassLateMessage,
}

// ParseClass accepts a fault class name.
func ParseClass(v string) (Class, bool) {
	c := Class(v)
	return c, slices.Contains(Faults, c)
}

// Label is one outcome record the processor must emit for a message.
type Label struct {
	Outcome imsemconv.Outcome
	// Reason is the loss reason; on a late record, the reason of the loss it follows, which
	// the label's name leaves out (a late record is named by its event's stage).
	Reason imsemconv.LossReason
	Stage  imsemconv.Stage
	// Retracted marks the late record that takes a loss back (im.loss.retracted=true): late
	// events proved that every missing device acked before the deadline, or a late persist
	// that the seq reported lost was persisted in time.
	Retracted bool
}

// String is "outcome/reason@stage" ("delivered@ack" when there is no reason; late and
// duplicate records without it), with "(retracted)" appended to a retraction record:
// "late@ack(retracted)".
func (l Label) String() string {
	var b strings.Builder
	b.WriteString(string(l.Outcome))
	if l.Reason != "" && l.Outcome != imsemconv.OutcomeLate && l.Outcome != imsemconv.OutcomeDuplicate {
		b.WriteByte('/')
		b.WriteString(string(l.Reason))
	}
	b.WriteByte('@')
	b.WriteString(l.Stage.String())
	if l.Retracted {
		b.WriteString("(retracted)")
	}
	return b.String()
}

// Primary reports whether the label is a message's verdict (delivered or lost), as opposed
// to a record about one event (duplicate, late).
func (l Label) Primary() bool {
	return l.Outcome == imsemconv.OutcomeDelivered || l.Outcome == imsemconv.OutcomeLost
}

// BySeq reports whether the record names the conversation and seq instead of the message: a
// seq gap's loss and the retraction of one (im_loss never saw the message's id when it
// reported the seq missing).
func (l Label) BySeq() bool { return l.Reason == imsemconv.ReasonSeqGap }

var (
	labelDelivered = Label{Outcome: imsemconv.OutcomeDelivered, Stage: imsemconv.StageAck}
	labelDuplicate = Label{Outcome: imsemconv.OutcomeDuplicate, Stage: imsemconv.StageDeliver}
	labelRetracted = Label{Outcome: imsemconv.OutcomeLate, Stage: imsemconv.StageAck, Retracted: true}
	// labelSeqGapRetracted takes a seq gap's loss back: the missing seq's persist arrived
	// late, stamped before the gap's deadline ("late@persist(retracted)").
	labelSeqGapRetracted = Label{Outcome: imsemconv.OutcomeLate, Reason: imsemconv.ReasonSeqGap, Stage: imsemconv.StagePersist, Retracted: true}
)

// SeqGapLoss is the label of a seq reported missing: "lost/seq_gap@persist".
func SeqGapLoss() Label { return lost(imsemconv.ReasonSeqGap, imsemconv.StagePersist) }

// SeqGapRetraction is the label of the record that takes a seq gap's loss back: a message
// whose truth has both was not lost, whatever the seq record said.
func SeqGapRetraction() Label { return labelSeqGapRetracted }

func lost(reason imsemconv.LossReason, stage imsemconv.Stage) Label {
	return Label{Outcome: imsemconv.OutcomeLost, Reason: reason, Stage: stage}
}

// late is the record of the first event of a lost message that arrives after the loss was
// decided; its stage is that event's stage.
func late(stage imsemconv.Stage) Label {
	return Label{Outcome: imsemconv.OutcomeLate, Stage: stage}
}

// Timeouts are the settings of the collector under test that decide when a fault is
// tolerated and when it is a loss.
type Timeouts struct {
	AckTimeout     time.Duration
	OfflineTimeout time.Duration
	ReorderWindow  time.Duration
	TickInterval   time.Duration
	// AllowedLateness is how far out of order one source's events may arrive (a source's
	// watermark is its latest event time minus this); default 2s, im_loss's.
	AllowedLateness time.Duration
	// SourceIdleTimeout is how long a silent source holds the watermark back; default 1m.
	SourceIdleTimeout time.Duration
	// MaxSourceLag caps how far verdicts wait behind the freshest telemetry: a message whose
	// deadline is older than now − the freshest sources' arrival lag − MaxSourceLag is decided
	// anyway; default 2m.
	MaxSourceLag time.Duration
	// Margin separates "within" from "beyond" a timeout, covering transport and batching
	// delays between the generator and the processor's clock (default 1s).
	Margin time.Duration
}

// WithDefaults fills the event-time settings left zero with im_loss's defaults.
func (t Timeouts) WithDefaults() Timeouts {
	if t.AllowedLateness == 0 {
		t.AllowedLateness = 2 * time.Second
	}
	if t.SourceIdleTimeout == 0 {
		t.SourceIdleTimeout = time.Minute
	}
	if t.MaxSourceLag == 0 {
		t.MaxSourceLag = 2 * time.Minute
	}
	return t
}

// Config says how often each fault class is injected.
type Config struct {
	// Probability per class; their sum must not exceed 1, the rest of the messages are clean.
	Probability map[Class]float64
	Timeouts    Timeouts
	// Lags are the export lags the sender applies per service (sender.Config.Lags): the truth
	// of late_events and late_message depends on them (their events must arrive after the
	// slowest source's watermark passed the deadline).
	Lags workload.Lags
	// Stop, when set, makes one service stop sending for good: none of its events due at or
	// after Stop.At is emitted. Messages that lose events to it get class service_down. It
	// needs every fault probability to be zero, so each message's truth has one cause.
	Stop *Stop
}

// Stop is a service that stops sending for good at At (relative to the start of the run).
type Stop struct {
	Service workload.Service
	At      time.Duration
}

// Validate checks the probabilities and that the timeouts leave room for every class.
func (c *Config) Validate() error {
	var errs []error
	sum := 0.0
	for cl, p := range c.Probability {
		if _, ok := ParseClass(string(cl)); !ok {
			errs = append(errs, fmt.Errorf("faults: unknown class %q", cl))
		}
		if !(p >= 0 && p <= 1) {
			errs = append(errs, fmt.Errorf("faults: %s probability must be in 0..1, got %v", cl, p))
		}
		sum += p
	}
	if sum > 1+1e-9 {
		errs = append(errs, fmt.Errorf("faults: probabilities add up to %v, more than 1", sum))
	}
	t := c.Timeouts
	if t.AckTimeout <= 0 || t.OfflineTimeout <= t.AckTimeout || t.ReorderWindow <= 0 || t.TickInterval <= 0 || t.Margin < 0 {
		errs = append(errs, fmt.Errorf("faults: timeouts need 0 < ack_timeout (%s) < offline_timeout (%s), reorder_window (%s) > 0, tick_interval (%s) > 0, margin (%s) >= 0",
			t.AckTimeout, t.OfflineTimeout, t.ReorderWindow, t.TickInterval, t.Margin))
	}
	if t.AllowedLateness < 0 || t.SourceIdleTimeout < 0 || t.MaxSourceLag < 0 {
		errs = append(errs, fmt.Errorf("faults: allowed_lateness (%s), source_idle_timeout (%s) and max_source_lag (%s) must not be negative",
			t.AllowedLateness, t.SourceIdleTimeout, t.MaxSourceLag))
	}
	if c.Stop != nil {
		if c.Stop.Service >= workload.NumServices || c.Stop.At < 0 {
			errs = append(errs, fmt.Errorf("faults: stop: unknown service %d or negative time %s", c.Stop.Service, c.Stop.At))
		}
		for cl, p := range c.Probability {
			if p > 0 {
				errs = append(errs, fmt.Errorf("faults: stop: needs every fault probability zero, %s has %v", cl, p))
			}
		}
	}
	return errors.Join(errs...)
}

// ParseProbabilities reads "class=p,class=p" (the imload -faults flag); "all=p" gives every
// fault class probability p.
func ParseProbabilities(v string) (map[Class]float64, error) {
	out := map[Class]float64{}
	if strings.TrimSpace(v) == "" {
		return out, nil
	}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return nil, fmt.Errorf("faults: %q is not class=probability", kv)
		}
		p, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsNaN(p) {
			return nil, fmt.Errorf("faults: %q: probability %q is not a number", k, val)
		}
		if k == "all" {
			for _, c := range Faults {
				out[c] = p
			}
			continue
		}
		c, ok := ParseClass(k)
		if !ok {
			return nil, fmt.Errorf("faults: unknown class %q (known: %s)", k, classList())
		}
		out[c] = p
	}
	return out, nil
}

func classList() string {
	names := make([]string, len(Faults))
	for i, c := range Faults {
		names[i] = string(c)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
