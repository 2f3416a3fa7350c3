// Package workload generates an instant-messaging workload: users with devices, single and
// group conversations, and a paced stream of messages whose lifecycle (components/imsemconv:
// send, persist, push, deliver, ack) is emitted by several simulated services.
//
// Everything is deterministic from Config.Seed: the population, the order of messages, and
// each message's timings (every message draws from its own random stream, so the result does
// not depend on how fast or in what order a consumer asks for messages).
package workload // import "github.com/imcol/imcol/testbed/workload"

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/imcol/imcol/components/imsemconv"
)

// Limits that keep a hostile or mistyped flag from allocating the machine away.
const (
	MaxUsers          = 1_000_000
	MaxDevicesPerUser = 16
	MaxConversations  = 1_000_000
	MaxGroupSize      = 500
)

// Config describes the population and the message stream.
type Config struct {
	// Seed makes the whole workload reproducible.
	Seed uint64
	// Users is the number of users; each has MinDevices..MaxDevices devices.
	Users                  int
	MinDevices, MaxDevices int
	// SingleConversations and GroupConversations are created up front; members are drawn
	// at random from the users.
	SingleConversations, GroupConversations int
	// MinGroupSize..MaxGroupSize members per group conversation (sender included).
	MinGroupSize, MaxGroupSize int
	// GroupShare is the probability that a message goes to a group conversation.
	GroupShare float64
	// OfflineShare is the probability that a recipient device is offline when a message is
	// pushed; it reconnects after OfflineReconnectMin..OfflineReconnectMax.
	OfflineShare                             float64
	OfflineReconnectMin, OfflineReconnectMax time.Duration
	// Rate is the target in messages per second; Messages the number of messages to generate.
	Rate     float64
	Messages int64
}

// DefaultConfig is a small but varied population: 500 users with 1-3 devices, 300 single
// and 40 group conversations of 3-8 members, a quarter of messages in groups.
func DefaultConfig() Config {
	return Config{
		Seed:                1,
		Users:               500,
		MinDevices:          1,
		MaxDevices:          3,
		SingleConversations: 300,
		GroupConversations:  40,
		MinGroupSize:        3,
		MaxGroupSize:        8,
		GroupShare:          0.25,
		OfflineShare:        0.02,
		OfflineReconnectMin: 3 * time.Second,
		OfflineReconnectMax: 5 * time.Second,
		Rate:                100,
		Messages:            1000,
	}
}

// Validate names the offending field.
func (c *Config) Validate() error {
	var errs []error
	if c.Users < 2 || c.Users > MaxUsers {
		errs = append(errs, fmt.Errorf("users: want 2..%d, got %d", MaxUsers, c.Users))
	}
	if c.MinDevices < 1 || c.MaxDevices < c.MinDevices || c.MaxDevices > MaxDevicesPerUser {
		errs = append(errs, fmt.Errorf("devices: want 1 <= min (%d) <= max (%d) <= %d", c.MinDevices, c.MaxDevices, MaxDevicesPerUser))
	}
	if c.SingleConversations < 0 || c.GroupConversations < 0 || c.SingleConversations+c.GroupConversations == 0 ||
		c.SingleConversations+c.GroupConversations > MaxConversations {
		errs = append(errs, fmt.Errorf("conversations: want 1..%d in total, got %d single and %d group",
			MaxConversations, c.SingleConversations, c.GroupConversations))
	}
	if c.GroupConversations > 0 && (c.MinGroupSize < 3 || c.MaxGroupSize < c.MinGroupSize || c.MaxGroupSize > MaxGroupSize || c.MaxGroupSize > c.Users) {
		errs = append(errs, fmt.Errorf("group size: want 3 <= min (%d) <= max (%d) <= min(%d, users)", c.MinGroupSize, c.MaxGroupSize, MaxGroupSize))
	}
	if !(c.GroupShare >= 0 && c.GroupShare <= 1) {
		errs = append(errs, fmt.Errorf("group share: want 0..1, got %v", c.GroupShare))
	}
	if c.GroupShare > 0 && c.GroupConversations == 0 || c.GroupShare < 1 && c.SingleConversations == 0 {
		errs = append(errs, errors.New("group share: needs conversations of the kind it selects"))
	}
	if !(c.OfflineShare >= 0 && c.OfflineShare <= 1) {
		errs = append(errs, fmt.Errorf("offline share: want 0..1, got %v", c.OfflineShare))
	}
	if c.OfflineReconnectMin < 0 || c.OfflineReconnectMax < c.OfflineReconnectMin {
		errs = append(errs, fmt.Errorf("offline reconnect: want 0 <= min (%s) <= max (%s)", c.OfflineReconnectMin, c.OfflineReconnectMax))
	}
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate: want > 0 messages/s, got %v", c.Rate))
	}
	if c.Messages < 0 {
		errs = append(errs, fmt.Errorf("messages: want >= 0, got %d", c.Messages))
	}
	return errors.Join(errs...)
}

// User is one user and the ids of their devices.
type User struct {
	ID      string
	Devices []string
}

// Conversation is a single (two members) or group conversation.
type Conversation struct {
	Index   int
	ID      string
	Type    string // imsemconv.ConversationSingle or ConversationGroup
	Members []int32
}

// Recipient is one device a message is pushed to.
type Recipient struct {
	Device  string
	Offline bool
	// Reconnect is how long after the push an offline device comes back; zero when online.
	Reconnect time.Duration
}

// Message is one message of the stream.
type Message struct {
	Index        int64
	ID           string
	Conversation *Conversation
	Sender       int32
	SenderDevice string
	Recipients   []Recipient
	// Start is when the sender's client sends it, relative to the start of the run.
	Start   time.Duration
	TraceID pcommon.TraceID
}

// Generator produces the population and the message stream.
type Generator struct {
	cfg     Config
	users   []User
	singles []Conversation
	groups  []Conversation
	next    int64
	// extra counts messages asked for with MessageIn beyond cfg.Messages; they follow the
	// regular stream in index and time.
	extra int64
	// rng draws the message-level choices (conversation, sender) in stream order.
	rng *rand.Rand
}

// NewGenerator builds the population from cfg.Seed.
func NewGenerator(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed))}
	pop := rand.New(rand.NewPCG(cfg.Seed, 0x9090))
	g.users = make([]User, cfg.Users)
	for i := range g.users {
		n := cfg.MinDevices + pop.IntN(cfg.MaxDevices-cfg.MinDevices+1)
		u := User{ID: "u" + strconv.Itoa(i), Devices: make([]string, n)}
		for d := range u.Devices {
			u.Devices[d] = u.ID + "-d" + strconv.Itoa(d)
		}
		g.users[i] = u
	}
	// Conversation ids carry the seed, so runs with different seeds against one collector
	// never share a conversation's sequence numbers (OpenIM names them si_… and sg_…).
	tag := strconv.FormatUint(cfg.Seed, 36)
	g.singles = make([]Conversation, cfg.SingleConversations)
	for i := range g.singles {
		a := int32(pop.IntN(cfg.Users))
		b := int32(pop.IntN(cfg.Users - 1))
		if b >= a {
			b++
		}
		g.singles[i] = Conversation{Index: i, ID: "si-" + tag + "-" + strconv.Itoa(i), Type: imsemconv.ConversationSingle, Members: []int32{a, b}}
	}
	g.groups = make([]Conversation, cfg.GroupConversations)
	for i := range g.groups {
		size := cfg.MinGroupSize + pop.IntN(cfg.MaxGroupSize-cfg.MinGroupSize+1)
		members := make([]int32, 0, size)
		for _, u := range pop.Perm(cfg.Users)[:size] {
			members = append(members, int32(u))
		}
		g.groups[i] = Conversation{Index: len(g.singles) + i, ID: "sg-" + tag + "-" + strconv.Itoa(i), Type: imsemconv.ConversationGroup, Members: members}
	}
	return g, nil
}

// Config returns the configuration the generator was built with.
func (g *Generator) Config() Config { return g.cfg }

// Conversations returns the number of conversations; Conversation(i) returns one.
func (g *Generator) Conversations() int { return len(g.singles) + len(g.groups) }

// Conversation returns conversation i (singles first, then groups).
func (g *Generator) Conversation(i int) *Conversation {
	if i < len(g.singles) {
		return &g.singles[i]
	}
	return &g.groups[i-len(g.singles)]
}

// Remaining reports how many messages of the regular stream are left.
func (g *Generator) Remaining() int64 { return g.cfg.Messages - g.next }

// Next returns the next message of the regular stream; ok is false when it is exhausted.
func (g *Generator) Next() (m *Message, ok bool) {
	if g.next >= g.cfg.Messages {
		return nil, false
	}
	var c *Conversation
	if g.rng.Float64() < g.cfg.GroupShare {
		c = &g.groups[g.rng.IntN(len(g.groups))]
	} else {
		c = &g.singles[g.rng.IntN(len(g.singles))]
	}
	sender := c.Members[g.rng.IntN(len(c.Members))]
	m = g.message(g.next, c, sender)
	g.next++
	return m, true
}

// MessageIn returns an extra message in conversation c, after the regular stream. The fault
// planner uses it to close sequence gaps that no later message would reveal.
func (g *Generator) MessageIn(c *Conversation) *Message {
	idx := g.cfg.Messages + g.extra
	g.extra++
	return g.message(idx, c, c.Members[int(uint64(idx)%uint64(len(c.Members)))])
}

func (g *Generator) message(idx int64, c *Conversation, sender int32) *Message {
	r := g.MessageRand(idx, streamRecipients)
	su := &g.users[sender]
	m := &Message{
		Index:        idx,
		ID:           MessageID(g.cfg.Seed, idx),
		Conversation: c,
		Sender:       sender,
		SenderDevice: su.Devices[r.IntN(len(su.Devices))],
		Start:        time.Duration(float64(idx) / g.cfg.Rate * float64(time.Second)),
		TraceID:      TraceID(g.cfg.Seed, idx),
	}
	for _, u := range c.Members {
		if u == sender {
			continue
		}
		for _, d := range g.users[u].Devices {
			rc := Recipient{Device: d}
			if r.Float64() < g.cfg.OfflineShare {
				rc.Offline = true
				rc.Reconnect = g.cfg.OfflineReconnectMin + time.Duration(r.Int64N(int64(g.cfg.OfflineReconnectMax-g.cfg.OfflineReconnectMin)+1))
			}
			m.Recipients = append(m.Recipients, rc)
		}
	}
	return m
}

// Random streams of one message; separate streams keep one choice from shifting another.
const (
	streamRecipients uint64 = iota + 1
	streamTimings
	// StreamFaults is the stream the fault planner draws from.
	StreamFaults
)

// MessageRand returns the random stream number stream of message idx.
func (g *Generator) MessageRand(idx int64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(g.cfg.Seed^uint64(idx)*0x9e3779b97f4a7c15, stream))
}

// MessageID is the id of message idx of a run seeded with seed.
func MessageID(seed uint64, idx int64) string {
	return "msg-" + strconv.FormatUint(seed, 36) + "-" + strconv.FormatInt(idx, 10)
}

// ParseMessageID returns the index of a message id produced with seed.
func ParseMessageID(seed uint64, id string) (int64, bool) {
	prefix := "msg-" + strconv.FormatUint(seed, 36) + "-"
	if !strings.HasPrefix(id, prefix) {
		return 0, false
	}
	idx, err := strconv.ParseInt(id[len(prefix):], 10, 64)
	return idx, err == nil && idx >= 0
}

// TraceID derives a message's trace id from the seed and its index.
func TraceID(seed uint64, idx int64) pcommon.TraceID {
	var id pcommon.TraceID
	binary.BigEndian.PutUint64(id[:8], splitmix(seed^0x1e7e))
	binary.BigEndian.PutUint64(id[8:], splitmix(seed+uint64(idx)*0x9e3779b97f4a7c15))
	return id
}

// SpanID derives the id of span n of message idx.
func SpanID(seed uint64, idx int64, n int) pcommon.SpanID {
	var id pcommon.SpanID
	v := splitmix(seed ^ splitmix(uint64(idx)) ^ uint64(n+1)*0xbf58476d1ce4e5b9)
	if v == 0 {
		v = 1 // the all-zero span id is invalid
	}
	binary.BigEndian.PutUint64(id[:], v)
	return id
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// BelongsTo reports whether a message id or conversation id was produced by a run seeded
// with seed (outcome records of seq gaps carry only the conversation).
func BelongsTo(seed uint64, messageID, conversationID string) bool {
	if _, ok := ParseMessageID(seed, messageID); ok {
		return true
	}
	tag := "-" + strconv.FormatUint(seed, 36) + "-"
	return messageID == "" && (strings.HasPrefix(conversationID, "si"+tag) || strings.HasPrefix(conversationID, "sg"+tag))
}
