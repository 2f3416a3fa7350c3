package imsemconv

// Outcome is the verdict on one message (for one recipient device when the loss is per device).
type Outcome string

const (
	OutcomeDelivered Outcome = "delivered"
	OutcomeLost      Outcome = "lost"
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeLate marks events that arrived after their message had been declared lost.
	OutcomeLate Outcome = "late"
)

// LossReason says why a message was declared lost.
type LossReason string

const (
	ReasonAckTimeout  LossReason = "ack_timeout"
	ReasonSeqGap      LossReason = "seq_gap"
	ReasonStageFailed LossReason = "stage_failed"
	// ReasonEvicted marks messages dropped from tracking because a state limit was reached.
	ReasonEvicted LossReason = "evicted"
)
