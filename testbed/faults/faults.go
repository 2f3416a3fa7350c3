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
)

// Faults lists the injectable classes in a stable order.
var Faults = []Class{
	ClassLossSend, ClassLossPersist, ClassLossPush, ClassLossDeliver, ClassSeqGap,
	ClassPersistFailed, ClassPersistRetry, ClassDuplicate, ClassReorder, ClassDelay,
	ClassAckDelay, ClassLateEvents, ClassOfflineExpired,
}

// ParseClass accepts a fault class name.
func ParseClass(v string) (Class, bool) {
	c := Class(v)
	return c, slices.Contains(Faults, c)
}

// Label is one outcome record the processor must emit for a message.
type Label struct {
	Outcome imsemconv.Outcome
	Reason  imsemconv.LossReason
	Stage   imsemconv.Stage
}

// String is "outcome/reason@stage" ("delivered@ack" when there is no reason).
func (l Label) String() string {
	var b strings.Builder
	b.WriteString(string(l.Outcome))
	if l.Reason != "" {
		b.WriteByte('/')
		b.WriteString(string(l.Reason))
	}
	b.WriteByte('@')
	b.WriteString(l.Stage.String())
	return b.String()
}

// Primary reports whether the label is a message's verdict (delivered or lost), as opposed
// to a record about one event (duplicate, late).
func (l Label) Primary() bool {
	return l.Outcome == imsemconv.OutcomeDelivered || l.Outcome == imsemconv.OutcomeLost
}

var (
	labelDelivered = Label{Outcome: imsemconv.OutcomeDelivered, Stage: imsemconv.StageAck}
	labelDuplicate = Label{Outcome: imsemconv.OutcomeDuplicate, Stage: imsemconv.StageDeliver}
)

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
	// Margin separates "within" from "beyond" a timeout, covering transport and batching
	// delays between the generator and the processor's clock (default 1s).
	Margin time.Duration
}

// Config says how often each fault class is injected.
type Config struct {
	// Probability per class; their sum must not exceed 1, the rest of the messages are clean.
	Probability map[Class]float64
	Timeouts    Timeouts
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
