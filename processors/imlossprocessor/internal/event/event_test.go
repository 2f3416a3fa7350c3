package event

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/imcol/imcol/components/imsemconv"
)

func attrs(kv map[string]any) pcommon.Map {
	m := pcommon.NewMap()
	_ = m.FromRaw(kv)
	return m
}

func TestDecode(t *testing.T) {
	n := DefaultNames()
	tests := []struct {
		name   string
		stage  imsemconv.Stage
		attrs  map[string]any
		want   Event
		reason Reason
	}{
		{
			name:  "persist with seq",
			stage: imsemconv.StagePersist,
			attrs: map[string]any{"im.message.id": "m1", "im.conversation.id": "c1", "im.message.seq": int64(7)},
			want:  Event{MessageID: "m1", ConversationID: "c1", Stage: imsemconv.StagePersist, Seq: 7, HasSeq: true},
		},
		{
			name:  "seq as string from a log pipeline",
			stage: imsemconv.StagePersist,
			attrs: map[string]any{"im.message.id": "m1", "im.conversation.id": "c1", "im.message.seq": "42"},
			want:  Event{MessageID: "m1", ConversationID: "c1", Stage: imsemconv.StagePersist, Seq: 42, HasSeq: true},
		},
		{
			name:  "push offline with fanout",
			stage: imsemconv.StagePush,
			attrs: map[string]any{"im.message.id": int64(99), "im.message.fanout": 3.0, "im.push.offline": "true", "im.recipient.device.id": "d"},
			want:  Event{MessageID: "99", DeviceID: "d", Stage: imsemconv.StagePush, Fanout: 3, Offline: true},
		},
		{
			name:  "seq on another stage is ignored",
			stage: imsemconv.StageAck,
			attrs: map[string]any{"im.message.id": "m1", "im.message.seq": "garbage"},
			want:  Event{MessageID: "m1", Stage: imsemconv.StageAck},
		},
		{name: "missing id", stage: imsemconv.StageSend, attrs: map[string]any{}, reason: ReasonMissingMessageID},
		{name: "empty id", stage: imsemconv.StageSend, attrs: map[string]any{"im.message.id": ""}, reason: ReasonMissingMessageID},
		{name: "id ill-typed", stage: imsemconv.StageSend, attrs: map[string]any{"im.message.id": true}, reason: ReasonInvalidMessageID},
		{name: "id huge", stage: imsemconv.StageSend, attrs: map[string]any{"im.message.id": strings.Repeat("x", MaxIDLength+1)}, reason: ReasonOversizedValue},
		{name: "conversation ill-typed", stage: imsemconv.StageSend, attrs: map[string]any{"im.message.id": "m", "im.conversation.id": 1.5}, reason: ReasonInvalidConversationID},
		{name: "device ill-typed", stage: imsemconv.StageAck, attrs: map[string]any{"im.message.id": "m", "im.recipient.device.id": []any{1}}, reason: ReasonInvalidDevice},
		{name: "seq negative", stage: imsemconv.StagePersist, attrs: map[string]any{"im.message.id": "m", "im.conversation.id": "c", "im.message.seq": int64(-1)}, reason: ReasonInvalidSeq},
		{name: "seq fractional", stage: imsemconv.StagePersist, attrs: map[string]any{"im.message.id": "m", "im.conversation.id": "c", "im.message.seq": 1.5}, reason: ReasonInvalidSeq},
		{name: "seq huge double", stage: imsemconv.StagePersist, attrs: map[string]any{"im.message.id": "m", "im.conversation.id": "c", "im.message.seq": math.Inf(1)}, reason: ReasonInvalidSeq},
		{name: "seq without conversation", stage: imsemconv.StagePersist, attrs: map[string]any{"im.message.id": "m", "im.message.seq": int64(1)}, reason: ReasonMissingSeqContext},
		{name: "fanout too large", stage: imsemconv.StagePush, attrs: map[string]any{"im.message.id": "m", "im.message.fanout": int64(MaxFanout + 1)}, reason: ReasonInvalidFanout},
		{name: "offline ill-typed", stage: imsemconv.StagePush, attrs: map[string]any{"im.message.id": "m", "im.push.offline": int64(1)}, reason: ReasonInvalidOffline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Event
			r := Decode(attrs(tt.attrs), &n, tt.stage, &got)
			assert.Equal(t, tt.reason, r)
			if tt.reason == ReasonNone {
				assert.Equal(t, tt.want, got)
			}
		})
	}
}

func TestStageFromAttributes(t *testing.T) {
	n := DefaultNames()
	s, found, r := StageFromAttributes(attrs(map[string]any{"im.message.stage": "deliver"}), &n)
	assert.Equal(t, imsemconv.StageDeliver, s)
	assert.True(t, found)
	assert.Equal(t, ReasonNone, r)

	_, found, _ = StageFromAttributes(attrs(map[string]any{}), &n)
	assert.False(t, found)

	_, found, r = StageFromAttributes(attrs(map[string]any{"im.message.stage": "sent"}), &n)
	assert.True(t, found)
	assert.Equal(t, ReasonInvalidStage, r)

	_, _, r = StageFromAttributes(attrs(map[string]any{"im.message.stage": int64(2)}), &n)
	assert.Equal(t, ReasonInvalidStage, r)
}
