package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"

	"github.com/imcol/imcol/components/imsemconv"

	"github.com/imcol/imcol/components/signal"
)

// Config is the im_loss processor's configuration.
type Config struct {
	// Attributes names the attributes read from lifecycle spans and log records.
	Attributes AttributesConfig `mapstructure:"attributes"`
	// StageConditions recognise stages by OTTL condition when a service sets no stage attribute.
	StageConditions StageConditionsConfig `mapstructure:"stage_conditions"`

	// AckTimeout is how long, in event time, a message may take from its send (else its
	// earliest event) to the last recipient's ack.
	AckTimeout time.Duration `mapstructure:"ack_timeout"`
	// OfflineTimeout replaces AckTimeout for messages with a recipient pushed offline; measured
	// from the same start, so it must be longer than AckTimeout.
	OfflineTimeout time.Duration `mapstructure:"offline_timeout"`
	// ReorderWindow is how long, in event time, a missing seq may take to show up before it is a gap.
	ReorderWindow time.Duration `mapstructure:"reorder_window"`
	// AllowedLateness is how far out of order one source's events may arrive: a source's
	// watermark is the latest event time seen from it minus this.
	AllowedLateness time.Duration `mapstructure:"allowed_lateness"`
	// SourceIdleTimeout is how long a source (service.name + service.instance.id) may be silent
	// before it stops holding verdicts back; also how long after start nothing is decided by
	// watermark, so that every source is heard first.
	SourceIdleTimeout time.Duration `mapstructure:"source_idle_timeout"`
	// MaxSourceLag caps how long verdicts wait for the watermark, measured against the
	// freshest telemetry (the collector's clock less the least arrival lag of the sources
	// heard within it); decisions made at the cap are counted as forced.
	MaxSourceLag time.Duration `mapstructure:"max_source_lag"`
	// MaxClockSkew is how far in the collector's future an event may be stamped; later
	// timestamps are clamped to it.
	MaxClockSkew time.Duration `mapstructure:"max_clock_skew"`
	// MaxSources bounds the sources whose progress is followed; the least recently heard is evicted.
	MaxSources int `mapstructure:"max_sources"`
	// MaxGap is the largest gap reported seq by seq; larger jumps are one anomaly record.
	MaxGap uint64 `mapstructure:"max_gap"`
	// TickInterval is how often timeouts are checked; decisions are late by at most this much.
	TickInterval time.Duration `mapstructure:"tick_interval"`

	// MaxTrackedMessages bounds the messages in flight; the oldest is evicted first.
	MaxTrackedMessages int `mapstructure:"max_tracked_messages"`
	// MaxMessagesPerConversation bounds one conversation's messages in flight.
	MaxMessagesPerConversation int `mapstructure:"max_messages_per_conversation"`
	// MaxConversations bounds the conversations remembered (seq baselines and open gaps).
	MaxConversations int `mapstructure:"max_conversations"`
	// MaxDevicesPerMessage bounds the recipient devices followed for one (group) message.
	MaxDevicesPerMessage int `mapstructure:"max_devices_per_message"`
	// DecidedCacheSize is how many decided messages are remembered to recognise late events
	// and late duplicate deliveries.
	DecidedCacheSize int `mapstructure:"decided_cache_size"`

	// Shards is how many goroutines share the state: messages by a hash of their id,
	// conversations' seq gaps by a hash of the conversation id, each shard with its share of
	// the limits above (but max_messages_per_conversation). 0: GOMAXPROCS. Detection does not
	// depend on it.
	Shards int `mapstructure:"shards"`

	// DropDuplicates removes duplicate deliver events from the pipeline (they are reported either way).
	DropDuplicates bool `mapstructure:"drop_duplicates"`

	// Outcomes configures the outcome records.
	Outcomes OutcomesConfig `mapstructure:"outcomes"`

	// Storage is the id of a storage extension (file_storage) used to keep in-flight state across restarts.
	Storage *component.ID `mapstructure:"storage"`
	// CheckpointInterval is how often the state is also saved while running, so a crash
	// (no shutdown) loses at most this much of it. 0 saves only at shutdown. Used with Storage.
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval"`

	_ struct{}
}

// AttributesConfig names every attribute the processor reads. Defaults follow the IM conventions (components/imsemconv).
type AttributesConfig struct {
	MessageID       string `mapstructure:"message_id"`
	ConversationID  string `mapstructure:"conversation_id"`
	Stage           string `mapstructure:"stage"`
	Seq             string `mapstructure:"seq"`
	Fanout          string `mapstructure:"fanout"`
	RecipientDevice string `mapstructure:"recipient_device"`
	PushOffline     string `mapstructure:"push_offline"`
}

// StageConditionsConfig holds per-signal stage conditions.
type StageConditionsConfig struct {
	// Spans are OTTL span-context conditions.
	Spans StageConditions `mapstructure:"spans"`
	// Logs are OTTL log-context conditions.
	Logs StageConditions `mapstructure:"logs"`
}

// StageConditions lists, per stage, OTTL conditions of which any match marks the record as
// that stage. They are consulted only when the stage attribute is absent, in lifecycle order.
type StageConditions struct {
	Send    []string `mapstructure:"send"`
	Persist []string `mapstructure:"persist"`
	Push    []string `mapstructure:"push"`
	Deliver []string `mapstructure:"deliver"`
	Ack     []string `mapstructure:"ack"`
}

type stageConditionList struct {
	stage imsemconv.Stage
	conds []string
}

// byStage lists the conditions in lifecycle order, the order they are tried in.
func (s StageConditions) byStage() []stageConditionList {
	return []stageConditionList{
		{imsemconv.StageSend, s.Send},
		{imsemconv.StagePersist, s.Persist},
		{imsemconv.StagePush, s.Push},
		{imsemconv.StageDeliver, s.Deliver},
		{imsemconv.StageAck, s.Ack},
	}
}

func (s StageConditions) empty() bool {
	return len(s.Send)+len(s.Persist)+len(s.Push)+len(s.Deliver)+len(s.Ack) == 0
}

// EmitMode selects which outcome records are emitted.
type EmitMode string

const (
	// EmitModeAll emits every outcome record.
	EmitModeAll EmitMode = "all"
	// EmitModeFailures emits everything except delivered.
	EmitModeFailures EmitMode = "failures"
	// EmitModeNone emits nothing (the metrics still count every outcome).
	EmitModeNone EmitMode = "none"
)

// UnmarshalText rejects unknown modes when the config is loaded.
func (m *EmitMode) UnmarshalText(text []byte) error {
	switch v := EmitMode(text); v {
	case EmitModeAll, EmitModeFailures, EmitModeNone:
		*m = v
		return nil
	}
	return fmt.Errorf("unknown emit mode %q (want all, failures or none)", text)
}

// Signal is a pipeline signal outcome records can be emitted into: traces or logs.
type Signal = signal.Signal

// The signals a config may name.
const (
	SignalTraces = signal.Traces
	SignalLogs   = signal.Logs
)

// OutcomesConfig configures the outcome records.
type OutcomesConfig struct {
	// Emit is all, failures (everything but delivered) or none.
	Emit EmitMode `mapstructure:"emit"`
	// Signals lists the signals outcome records are emitted as, into every pipeline of that
	// signal this instance is part of (default both: spans for trace views, log records for
	// log stores and the slo connector). An empty list sends each outcome only back into the
	// pipeline its message's first event came through.
	Signals []Signal `mapstructure:"signals"`
	// ServiceName is the service.name resource attribute of outcome records.
	ServiceName string `mapstructure:"service_name"`
}

var (
	_ component.Config  = (*Config)(nil)
	_ confmap.Validator = (*Config)(nil)
)

func createDefaultConfig() component.Config {
	return &Config{
		Attributes: AttributesConfig{
			MessageID:       imsemconv.AttrMessageID,
			ConversationID:  imsemconv.AttrConversationID,
			Stage:           imsemconv.AttrStage,
			Seq:             imsemconv.AttrSeq,
			Fanout:          imsemconv.AttrFanout,
			RecipientDevice: imsemconv.AttrRecipientDevice,
			PushOffline:     imsemconv.AttrPushOffline,
		},
		AckTimeout:                 30 * time.Second,
		OfflineTimeout:             10 * time.Minute,
		ReorderWindow:              10 * time.Second,
		AllowedLateness:            2 * time.Second,
		SourceIdleTimeout:          time.Minute,
		MaxSourceLag:               2 * time.Minute,
		MaxClockSkew:               time.Minute,
		MaxSources:                 10_000,
		MaxGap:                     1000,
		TickInterval:               time.Second,
		MaxTrackedMessages:         1_000_000,
		MaxMessagesPerConversation: 10_000,
		MaxConversations:           200_000,
		MaxDevicesPerMessage:       2_048,
		DecidedCacheSize:           250_000,
		CheckpointInterval:         10 * time.Second,
		Outcomes: OutcomesConfig{
			Emit:        EmitModeAll,
			Signals:     []Signal{SignalTraces, SignalLogs},
			ServiceName: "imcol",
		},
	}
}

// maxShards bounds the shards option: far more goroutines than cores only cost memory.
const maxShards = 256

// shardCount is the shards option with 0 resolved to GOMAXPROCS, at most max_tracked_messages
// (every shard holds at least one message).
func (cfg *Config) shardCount() int {
	n := cfg.Shards
	if n == 0 {
		n = min(runtime.GOMAXPROCS(0), maxShards)
	}
	return max(1, min(n, cfg.MaxTrackedMessages))
}

// Validate checks the processor's own keys. The collector validates attributes and outcomes
// itself (they have their own Validate) and puts their YAML path in front of their errors.
func (cfg *Config) Validate() error {
	return errors.Join(
		cfg.validateDurations(),
		cfg.validateLimits(),
		cfg.validateStageConditions(),
	)
}

func (cfg *Config) validateDurations() error {
	var errs []error
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"ack_timeout", cfg.AckTimeout},
		{"offline_timeout", cfg.OfflineTimeout},
		{"reorder_window", cfg.ReorderWindow},
		{"tick_interval", cfg.TickInterval},
		{"source_idle_timeout", cfg.SourceIdleTimeout},
		{"max_source_lag", cfg.MaxSourceLag},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", d.key, d.v))
		}
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"allowed_lateness", cfg.AllowedLateness},
		{"max_clock_skew", cfg.MaxClockSkew},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %s", d.key, d.v))
		}
	}
	// The comparisons only make sense between valid durations, already reported above if not.
	if cfg.OfflineTimeout > 0 && cfg.AckTimeout > 0 && cfg.OfflineTimeout <= cfg.AckTimeout {
		errs = append(errs, fmt.Errorf("offline_timeout: must be longer than ack_timeout (%s), got %s", cfg.AckTimeout, cfg.OfflineTimeout))
	}
	if cfg.TickInterval > 0 && cfg.AckTimeout > 0 && cfg.TickInterval > cfg.AckTimeout {
		errs = append(errs, fmt.Errorf("tick_interval: must not exceed ack_timeout (%s), got %s", cfg.AckTimeout, cfg.TickInterval))
	}
	if cfg.CheckpointInterval < 0 {
		errs = append(errs, fmt.Errorf("checkpoint_interval: must not be negative (0 disables checkpoints), got %s", cfg.CheckpointInterval))
	}
	return errors.Join(errs...)
}

func (cfg *Config) validateLimits() error {
	var errs []error
	if cfg.MaxGap == 0 {
		errs = append(errs, errors.New("max_gap: must be at least 1, got 0"))
	}
	for _, l := range []struct {
		key string
		v   int
	}{
		{"max_tracked_messages", cfg.MaxTrackedMessages},
		{"max_messages_per_conversation", cfg.MaxMessagesPerConversation},
		{"max_conversations", cfg.MaxConversations},
		{"max_devices_per_message", cfg.MaxDevicesPerMessage},
		{"max_sources", cfg.MaxSources},
	} {
		if l.v < 1 {
			errs = append(errs, fmt.Errorf("%s: must be at least 1, got %d", l.key, l.v))
		}
	}
	if cfg.MaxTrackedMessages >= 1 && cfg.MaxMessagesPerConversation > cfg.MaxTrackedMessages {
		errs = append(errs, fmt.Errorf("max_messages_per_conversation: must not exceed max_tracked_messages (%d), got %d", cfg.MaxTrackedMessages, cfg.MaxMessagesPerConversation))
	}
	if cfg.DecidedCacheSize < 0 {
		errs = append(errs, fmt.Errorf("decided_cache_size: must not be negative, got %d", cfg.DecidedCacheSize))
	}
	if cfg.Shards < 0 || cfg.Shards > maxShards {
		errs = append(errs, fmt.Errorf("shards: must be between 0 (GOMAXPROCS) and %d, got %d", maxShards, cfg.Shards))
	}
	return errors.Join(errs...)
}

// validateStageConditions compiles every condition (the result is discarded) so bad OTTL fails
// at start-up. It is done here rather than in a Validate of StageConditionsConfig because the
// compiler names each failing list by its path from this config (stage_conditions::spans::push).
func (cfg *Config) validateStageConditions() error {
	_, err := newStageMatchers(&cfg.StageConditions, component.TelemetrySettings{Logger: nopLogger})
	return err
}

// Validate checks that every attribute name is set.
func (a *AttributesConfig) Validate() error {
	var errs []error
	for _, f := range []struct{ key, v string }{
		{"message_id", a.MessageID},
		{"conversation_id", a.ConversationID},
		{"stage", a.Stage},
		{"seq", a.Seq},
		{"fanout", a.Fanout},
		{"recipient_device", a.RecipientDevice},
		{"push_offline", a.PushOffline},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", f.key))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the outcome settings. Unknown modes and signals are already refused when
// the YAML is loaded; the checks here cover configs built in code.
func (o *OutcomesConfig) Validate() error {
	var errs []error
	switch o.Emit {
	case EmitModeAll, EmitModeFailures, EmitModeNone:
	default:
		errs = append(errs, fmt.Errorf("emit: unknown mode %q (want all, failures or none)", o.Emit))
	}
	first := map[Signal]int{}
	for i, s := range o.Signals {
		if s != SignalTraces && s != SignalLogs {
			errs = append(errs, fmt.Errorf("signals::%d: unknown signal %q (want traces or logs)", i, s))
			continue
		}
		if j, dup := first[s]; dup {
			errs = append(errs, fmt.Errorf("signals::%d: %q is already signals::%d", i, s, j))
			continue
		}
		first[s] = i
	}
	if o.ServiceName == "" {
		errs = append(errs, errors.New("service_name: must not be empty"))
	}
	return errors.Join(errs...)
}
