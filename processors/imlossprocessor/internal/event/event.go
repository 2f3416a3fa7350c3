// Package event turns the attributes of a lifecycle span or log record into an Event, the
// only thing the loss tracker consumes. Decoding is total: hostile input yields a Reason,
// never a panic, and never a value larger than the documented limits.
package event // import "github.com/imcol/imcol/processors/imlossprocessor/internal/event"

import (
	"math"
	"strconv"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/imcol/imcol/components/imsemconv"
)

// MaxIDLength bounds message, conversation and device ids. Real ids are UUIDs or
// snowflakes; anything longer is hostile or a bug, and would be kept in memory for
// the whole ack timeout.
const MaxIDLength = 256

// MaxFanout bounds the number of recipient devices a push may announce.
const MaxFanout = 1 << 20

// Event is one lifecycle step of one message as seen in a span or a log record.
type Event struct {
	MessageID      string
	ConversationID string
	// DeviceID is the recipient device; empty means "the recipient" (single chats that do not name devices).
	DeviceID string
	TraceID  pcommon.TraceID
	Stage    imsemconv.Stage
	// Start and End are the event's own timestamps (unix ns): a span's start and end, a log's timestamp twice.
	Start, End int64
	Seq        int64
	HasSeq     bool
	// Fanout is the number of recipient devices announced at push; 0 when not given.
	Fanout  uint32
	Offline bool
	// Failed is set for span status Error or log severity >= ERROR.
	Failed bool
	// Source names the service instance that reported the event (resource service.name and
	// service.instance.id): each source's progress in event time is followed on its own.
	Source string
	// Sink is the index of the pipeline the event came through; outcomes return there.
	Sink uint8
	// Ref is the position of the span or log record in its batch, used to drop duplicates.
	Ref int32
}

// Reason says why an event could not be used. The empty Reason means success.
type Reason string

// Reasons, as they appear in the unrecognized_events metric.
const (
	ReasonNone                  Reason = ""
	ReasonMissingMessageID      Reason = "missing_message_id"
	ReasonInvalidMessageID      Reason = "invalid_message_id"
	ReasonInvalidConversationID Reason = "invalid_conversation_id"
	ReasonInvalidStage          Reason = "invalid_stage"
	ReasonInvalidSeq            Reason = "invalid_seq"
	ReasonMissingSeqContext     Reason = "seq_without_conversation"
	ReasonInvalidFanout         Reason = "invalid_fanout"
	ReasonInvalidDevice         Reason = "invalid_device"
	ReasonInvalidOffline        Reason = "invalid_offline"
	ReasonOversizedValue        Reason = "oversized_value"
	ReasonConditionError        Reason = "stage_condition_error"
	ReasonOverload              Reason = "overload"
	ReasonOrphan                Reason = "orphan_message"
	ReasonTooManyDevices        Reason = "too_many_devices"
	// ReasonUnjudgedAfterRestart counts messages whose deadline passed incomplete but whose
	// missing events may have been applied by a previous instance and lost with it (restored
	// from a checkpoint, or with events stamped before a start that restored no exact
	// snapshot): neither delivered nor lost.
	ReasonUnjudgedAfterRestart Reason = "unjudged_after_restart"
	// ReasonUnjudgedPastMemory counts late messages whose deadline passed incomplete but that
	// may be messages decided and forgotten by the decided memory (decided_cache_size):
	// neither delivered nor lost.
	ReasonUnjudgedPastMemory Reason = "unjudged_past_memory"
)

// Reasons lists every reason but ReasonNone.
var Reasons = []Reason{
	ReasonMissingMessageID, ReasonInvalidMessageID, ReasonInvalidConversationID, ReasonInvalidStage,
	ReasonInvalidSeq, ReasonMissingSeqContext, ReasonInvalidFanout, ReasonInvalidDevice, ReasonInvalidOffline,
	ReasonOversizedValue, ReasonConditionError, ReasonOverload, ReasonOrphan, ReasonTooManyDevices,
	ReasonUnjudgedAfterRestart, ReasonUnjudgedPastMemory,
}

// Names are the attribute keys to read; every one is configurable.
type Names struct {
	MessageID      string
	ConversationID string
	Stage          string
	Seq            string
	Fanout         string
	Device         string
	Offline        string
}

// DefaultNames follow the IM conventions (components/imsemconv).
func DefaultNames() Names {
	return Names{
		MessageID:      imsemconv.AttrMessageID,
		ConversationID: imsemconv.AttrConversationID,
		Stage:          imsemconv.AttrStage,
		Seq:            imsemconv.AttrSeq,
		Fanout:         imsemconv.AttrFanout,
		Device:         imsemconv.AttrRecipientDevice,
		Offline:        imsemconv.AttrPushOffline,
	}
}

// StageFromAttributes reads the stage attribute. found is false when the attribute is
// absent (the record is not a lifecycle event unless a stage condition matches it).
func StageFromAttributes(attrs pcommon.Map, n *Names) (stage imsemconv.Stage, found bool, reason Reason) {
	v, ok := attrs.Get(n.Stage)
	if !ok {
		return imsemconv.StageUnknown, false, ReasonNone
	}
	if v.Type() != pcommon.ValueTypeStr {
		return imsemconv.StageUnknown, true, ReasonInvalidStage
	}
	s, ok := imsemconv.ParseStage(v.Str())
	if !ok {
		return imsemconv.StageUnknown, true, ReasonInvalidStage
	}
	return s, true, ReasonNone
}

// Decode fills ev from attrs for a record already known to be at stage. It leaves the
// timestamps, trace id, failure flag, sink and ref to the caller.
func Decode(attrs pcommon.Map, n *Names, stage imsemconv.Stage, ev *Event) Reason {
	ev.Stage = stage
	id, present, r := readID(attrs, n.MessageID, ReasonInvalidMessageID)
	if r != ReasonNone {
		return r
	}
	if !present || id == "" {
		return ReasonMissingMessageID
	}
	ev.MessageID = id
	if ev.ConversationID, _, r = readID(attrs, n.ConversationID, ReasonInvalidConversationID); r != ReasonNone {
		return r
	}
	if ev.DeviceID, _, r = readID(attrs, n.Device, ReasonInvalidDevice); r != ReasonNone {
		return r
	}
	// Stage-specific attributes are only read where the conventions place them, so a
	// stray attribute on another stage cannot make a valid event invalid.
	switch stage {
	case imsemconv.StagePersist:
		seq, present, ok := readInt(attrs, n.Seq)
		if !ok || (present && seq < 0) {
			return ReasonInvalidSeq
		}
		if present {
			if ev.ConversationID == "" {
				return ReasonMissingSeqContext
			}
			ev.Seq, ev.HasSeq = seq, true
		}
	case imsemconv.StagePush:
		fanout, present, ok := readInt(attrs, n.Fanout)
		if !ok || (present && (fanout < 0 || fanout > MaxFanout)) {
			return ReasonInvalidFanout
		}
		ev.Fanout = uint32(fanout)
		offline, ok := readBool(attrs, n.Offline)
		if !ok {
			return ReasonInvalidOffline
		}
		ev.Offline = offline
	}
	return ReasonNone
}

func readID(attrs pcommon.Map, key string, invalid Reason) (string, bool, Reason) {
	v, ok := attrs.Get(key)
	if !ok {
		return "", false, ReasonNone
	}
	var s string
	switch v.Type() {
	case pcommon.ValueTypeStr:
		s = v.Str()
	case pcommon.ValueTypeInt:
		// Snowflake ids are often recorded as integers; they are still ids.
		s = strconv.FormatInt(v.Int(), 10)
	default:
		return "", true, invalid
	}
	if len(s) > MaxIDLength {
		return "", true, ReasonOversizedValue
	}
	return s, true, ReasonNone
}

// readInt accepts an int, an integral double, or a decimal string (log pipelines often
// stringify numbers). ok is false for anything else.
func readInt(attrs pcommon.Map, key string) (val int64, present, ok bool) {
	v, found := attrs.Get(key)
	if !found {
		return 0, false, true
	}
	switch v.Type() {
	case pcommon.ValueTypeInt:
		return v.Int(), true, true
	case pcommon.ValueTypeDouble:
		d := v.Double()
		if d != math.Trunc(d) || d < math.MinInt64 || d >= math.MaxInt64 {
			return 0, true, false
		}
		return int64(d), true, true
	case pcommon.ValueTypeStr:
		s := v.Str()
		if len(s) > 20 {
			return 0, true, false
		}
		i, err := strconv.ParseInt(s, 10, 64)
		return i, true, err == nil
	default:
		return 0, true, false
	}
}

func readBool(attrs pcommon.Map, key string) (val, ok bool) {
	v, found := attrs.Get(key)
	if !found {
		return false, true
	}
	switch v.Type() {
	case pcommon.ValueTypeBool:
		return v.Bool(), true
	case pcommon.ValueTypeStr:
		switch v.Str() {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	return false, false
}
