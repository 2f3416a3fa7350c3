package imsemconv

// Outcome is the verdict on one message (for one recipient device when the loss is per device).
type Outcome string

const (
	OutcomeDelivered Outcome = "delivered"
	OutcomeLost      Outcome = "lost"
	OutcomeDuplicate Outcome = "duplicate"
	// OutcomeLate marks events that arrived after their message had been declared lost. A late
	// record with AttrLossRetracted=true says the late events proved the message delivered in
	// time: consumers counting losses should take that loss back.
	OutcomeLate Outcome = "late"
	// OutcomeUntracked marks messages the collector stopped following because one of its own
	// state limits was reached (reason evicted): the collector's limit, not a customer's loss,
	// so delivery SLOs and loss alerts do not count it.
	OutcomeUntracked Outcome = "untracked"
)

// Outcomes lists every outcome.
var Outcomes = [...]Outcome{OutcomeDelivered, OutcomeLost, OutcomeDuplicate, OutcomeLate, OutcomeUntracked}

// LossReason says why a message was declared lost.
type LossReason string

const (
	ReasonAckTimeout  LossReason = "ack_timeout"
	ReasonSeqGap      LossReason = "seq_gap"
	ReasonStageFailed LossReason = "stage_failed"
	// ReasonEvicted marks messages dropped from tracking because a state limit was reached
	// (outcome untracked).
	ReasonEvicted LossReason = "evicted"
)

// LossReasons lists every loss reason.
var LossReasons = [...]LossReason{ReasonAckTimeout, ReasonSeqGap, ReasonStageFailed, ReasonEvicted}
