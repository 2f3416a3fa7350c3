package workload

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/components/imsemconv"
)

func testConfig() Config {
	c := DefaultConfig()
	c.Messages = 300
	c.OfflineShare = 0.2
	return c
}

func TestGeneratorIsDeterministic(t *testing.T) {
	a, err := NewGenerator(testConfig())
	require.NoError(t, err)
	b, err := NewGenerator(testConfig())
	require.NoError(t, err)
	for {
		ma, okA := a.Next()
		mb, okB := b.Next()
		require.Equal(t, okA, okB)
		if !okA {
			break
		}
		require.Equal(t, ma, mb)
		require.Equal(t, a.Lifecycle(ma, 7), b.Lifecycle(mb, 7))
	}
	other := testConfig()
	other.Seed = 2
	c, err := NewGenerator(other)
	require.NoError(t, err)
	m1, _ := c.Next()
	a2, _ := NewGenerator(testConfig())
	m2, _ := a2.Next()
	assert.NotEqual(t, m1.ID, m2.ID)
	assert.NotEqual(t, m1.Conversation.ID, m2.Conversation.ID, "conversation ids carry the seed")
}

func TestMessagesFollowTheRateAndPopulation(t *testing.T) {
	cfg := testConfig()
	g, err := NewGenerator(cfg)
	require.NoError(t, err)
	var n, groups int64
	for {
		m, ok := g.Next()
		if !ok {
			break
		}
		assert.Equal(t, n, m.Index)
		assert.Equal(t, time.Duration(float64(n)/cfg.Rate*float64(time.Second)), m.Start)
		idx, ok := ParseMessageID(cfg.Seed, m.ID)
		require.True(t, ok)
		assert.Equal(t, m.Index, idx)
		require.NotEmpty(t, m.Recipients)
		for _, r := range m.Recipients {
			assert.NotContains(t, g.users[m.Sender].Devices, r.Device, "the sender's devices are not recipients")
			if r.Offline {
				assert.GreaterOrEqual(t, r.Reconnect, cfg.OfflineReconnectMin)
				assert.LessOrEqual(t, r.Reconnect, cfg.OfflineReconnectMax)
			}
		}
		if m.Conversation.Type == imsemconv.ConversationGroup {
			groups++
			assert.GreaterOrEqual(t, len(m.Conversation.Members), cfg.MinGroupSize)
		} else {
			assert.Len(t, m.Conversation.Members, 2)
		}
		n++
	}
	assert.Equal(t, cfg.Messages, n)
	assert.InDelta(t, cfg.GroupShare*float64(n), float64(groups), 0.1*float64(n))
	_, ok := ParseMessageID(cfg.Seed+1, MessageID(cfg.Seed, 3))
	assert.False(t, ok, "ids of another seed do not parse")
	extra := g.MessageIn(g.Conversation(0))
	assert.Equal(t, cfg.Messages, extra.Index)
	assert.Equal(t, g.Conversation(0), extra.Conversation)
}

func TestLifecycle(t *testing.T) {
	g, err := NewGenerator(testConfig())
	require.NoError(t, err)
	m, _ := g.Next()
	m.Recipients = []Recipient{{Device: "a"}, {Device: "b", Offline: true, Reconnect: 4 * time.Second}}
	evts := g.Lifecycle(m, 5)
	var stages []imsemconv.Stage
	ids := map[[8]byte]bool{}
	for _, e := range evts {
		stages = append(stages, e.Stage)
		assert.Equal(t, e.End, e.Due, "spans are exported when they end")
		assert.GreaterOrEqual(t, e.End, e.Start)
		assert.GreaterOrEqual(t, e.Start, m.Start)
		assert.False(t, ids[e.SpanID], "span ids are unique")
		ids[e.SpanID] = true
		switch e.Stage {
		case imsemconv.StagePersist:
			assert.True(t, e.HasSeq)
			assert.Equal(t, int64(5), e.Seq)
		case imsemconv.StagePush:
			if e.Device == "" {
				assert.Equal(t, 2, e.Fanout)
			} else {
				assert.Equal(t, "b", e.Device)
				assert.True(t, e.Offline)
			}
		case imsemconv.StageDeliver:
			if e.Device == "b" {
				assert.GreaterOrEqual(t, e.Start, 4*time.Second, "offline devices get the message after they reconnect")
			}
		}
	}
	assert.Equal(t, []imsemconv.Stage{
		imsemconv.StageUnknown, imsemconv.StageSend, imsemconv.StagePersist, imsemconv.StagePush,
		imsemconv.StageDeliver, imsemconv.StageAck, imsemconv.StagePush, imsemconv.StageDeliver, imsemconv.StageAck,
	}, stages)
	assert.NotEqual(t, g.NewSpanID(m, 0), evts[0].SpanID)
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	require.NoError(t, c.Validate())
	c.Users, c.Rate, c.GroupShare = 1, 0, 2
	err := c.Validate()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "users: want 2..")
	assert.Contains(t, err.Error(), "rate: want > 0")
	assert.Contains(t, err.Error(), "group share: want 0..1")
	c = DefaultConfig()
	c.MaxDevices = MaxDevicesPerUser + 1
	assert.ErrorContains(t, c.Validate(), "devices:")
	c = DefaultConfig()
	c.OfflineReconnectMax = c.OfflineReconnectMin - 1
	assert.ErrorContains(t, c.Validate(), "offline reconnect")
}

// fixedSource yields messages at given starts, each with events due at the given offsets.
type fixedSource struct {
	starts []time.Duration
	dues   [][]time.Duration
	i      int
}

func (f *fixedSource) Next() (time.Duration, []Event, bool) {
	if f.i >= len(f.starts) {
		return 0, nil, false
	}
	var evts []Event
	for k, d := range f.dues[f.i] {
		evts = append(evts, Event{Due: d, Seq: int64(f.i*10 + k)})
	}
	s := f.starts[f.i]
	f.i++
	return s, evts, true
}

func TestScheduleReleasesEventsInDueOrder(t *testing.T) {
	src := &fixedSource{
		starts: []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond},
		dues: [][]time.Duration{
			{1 * time.Millisecond, 50 * time.Millisecond},
			{11 * time.Millisecond, 15 * time.Millisecond},
			{20 * time.Millisecond},
		},
	}
	s := NewSchedule(src)
	seqs := func(evts []Event) []int64 {
		var out []int64
		for _, e := range evts {
			out = append(out, e.Seq)
		}
		return out
	}
	assert.Empty(t, s.Advance(0, nil))
	next, ok := s.NextDue()
	require.True(t, ok)
	assert.Equal(t, time.Millisecond, next)
	assert.Equal(t, []int64{0, 10}, seqs(s.Advance(12*time.Millisecond, nil)))
	assert.Equal(t, []int64{11}, seqs(s.Advance(15*time.Millisecond, nil)))
	assert.Equal(t, int64(2), s.Started())
	assert.Equal(t, []int64{20}, seqs(s.Advance(49*time.Millisecond, nil)))
	assert.False(t, s.Done())
	assert.Equal(t, []int64{1}, seqs(s.Advance(time.Second, nil)))
	assert.True(t, s.Done())
	_, ok = s.NextDue()
	assert.False(t, ok)
}

func TestScheduleBoundsPending(t *testing.T) {
	src := &fixedSource{starts: []time.Duration{0, 0, 0}, dues: [][]time.Duration{{time.Hour}, {time.Hour}, {time.Hour}}}
	s := NewSchedule(src)
	s.MaxPending = 2
	s.Advance(time.Second, nil)
	assert.Equal(t, 2, s.Pending(), "no new message is started while the pending limit is reached")
	assert.Equal(t, int64(2), s.Started())
}

func TestServices(t *testing.T) {
	for s := range NumServices {
		got, ok := ParseService(s.Name())
		require.True(t, ok)
		assert.Equal(t, s, got)
	}
	got, ok := ParseService("transfer")
	require.True(t, ok)
	assert.Equal(t, ServiceTransfer, got)
	_, ok = ParseService("nope")
	assert.False(t, ok)
	assert.Equal(t, "unknown", Service(99).Name())
}

func TestBelongsTo(t *testing.T) {
	g, err := NewGenerator(testConfig())
	require.NoError(t, err)
	m, _ := g.Next()
	assert.True(t, BelongsTo(1, m.ID, m.Conversation.ID))
	assert.True(t, BelongsTo(1, "", m.Conversation.ID), "a seq gap record names only the conversation")
	assert.False(t, BelongsTo(2, m.ID, m.Conversation.ID))
	assert.False(t, BelongsTo(2, "", m.Conversation.ID))
	assert.False(t, BelongsTo(1, "other", m.Conversation.ID), "a foreign message id is not ours even in our conversation")
}
