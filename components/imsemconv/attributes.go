package imsemconv

// Default attribute names on message lifecycle spans and log records.
const (
	AttrMessageID        = "im.message.id"
	AttrConversationID   = "im.conversation.id"
	AttrConversationType = "im.conversation.type"
	AttrStage            = "im.message.stage"
	AttrSeq              = "im.message.seq"
	AttrFanout           = "im.message.fanout"
	AttrRecipientDevice  = "im.recipient.device.id"
	AttrPushOffline      = "im.push.offline"
)

// Attributes of the outcome records emitted by the im_loss processor.
const (
	// OutcomeEventName is the span name, and the log record event name, of an outcome record.
	OutcomeEventName = "im.message.outcome"

	AttrOutcome         = "im.outcome"
	AttrLossStage       = "im.loss.stage"
	AttrLossReason      = "im.loss.reason"
	AttrDeliveryLatency = "im.delivery.latency_ms"
)

// Values of AttrConversationType.
const (
	ConversationSingle = "single"
	ConversationGroup  = "group"
)

// Attributes that the im_loss processor adds to outcome records beyond the ones above, so a loss
// can be read without the lifecycle events.
const (
	// AttrLossDevices is the number of expected recipient devices that never acked a lost message.
	AttrLossDevices = "im.loss.devices"
	// AttrSeqGapSize is the number of consecutive sequence numbers missing in a conversation.
	AttrSeqGapSize = "im.seq.gap.size"
	// AttrLossRetracted, true on a late record, says the late events proved that the message
	// declared lost was acked by every missing device before its deadline: the loss is taken back.
	AttrLossRetracted = "im.loss.retracted"
	// AttrSeqGapAnomaly marks a sequence jump larger than max_gap: reported once, not per missing seq.
	AttrSeqGapAnomaly = "im.seq.gap.anomaly"
)
