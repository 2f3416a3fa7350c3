package imsemconv

import "fmt"

// Stage is a step of a message's lifecycle. Stages are ordered: a later stage
// implies every earlier one happened, even when its events arrive first.
type Stage uint8

const (
	StageUnknown Stage = iota
	StageSend
	StagePersist
	StagePush
	StageDeliver
	StageAck
)

// Stages lists the known stages in lifecycle order.
var Stages = [...]Stage{StageSend, StagePersist, StagePush, StageDeliver, StageAck}

var stageNames = [...]string{
	StageUnknown: "unknown",
	StageSend:    "send",
	StagePersist: "persist",
	StagePush:    "push",
	StageDeliver: "deliver",
	StageAck:     "ack",
}

// String returns the stage's attribute value.
func (s Stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return stageNames[StageUnknown]
}

// ParseStage maps an attribute value to its Stage; it reports false for anything else.
func ParseStage(v string) (Stage, bool) {
	for _, s := range Stages {
		if stageNames[s] == v {
			return s, true
		}
	}
	return StageUnknown, false
}

// UnmarshalText lets YAML configs name stages.
func (s *Stage) UnmarshalText(text []byte) error {
	st, ok := ParseStage(string(text))
	if !ok {
		return fmt.Errorf("unknown stage %q (want one of send, persist, push, deliver, ack)", text)
	}
	*s = st
	return nil
}

// MarshalText writes the stage as its attribute value.
func (s Stage) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
