package imlossprocessor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/imcol/imcol/processors/imlossprocessor/internal/metadata"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)

	storageID := component.MustNewIDWithName("file_storage", "im_loss")
	custom := &Config{
		Attributes: AttributesConfig{
			MessageID: "msg.id", ConversationID: "conv.id", Stage: "msg.stage", Seq: "msg.seq",
			Fanout: "msg.fanout", RecipientDevice: "device.id", PushOffline: "push.offline",
		},
		StageConditions: StageConditionsConfig{
			Spans: StageConditions{
				Send:    []string{`name == "gateway.SendMsg"`},
				Persist: []string{`name == "msg.insert" and attributes["db"] == "mongo"`},
			},
			Logs: StageConditions{Ack: []string{`body == "acked"`}},
		},
		AckTimeout: 5 * time.Second, OfflineTimeout: time.Hour, ReorderWindow: 2 * time.Second,
		MaxGap: 50, TickInterval: 250 * time.Millisecond,
		AllowedLateness: 500 * time.Millisecond, SourceIdleTimeout: 20 * time.Second,
		MaxSourceLag: 45 * time.Second, MaxClockSkew: 5 * time.Second, MaxSources: 50,
		MaxTrackedMessages: 5000, MaxMessagesPerConversation: 100, MaxConversations: 1000,
		MaxDevicesPerMessage: 16, DecidedCacheSize: 0, Shards: 4, DropDuplicates: true,
		Outcomes: OutcomesConfig{Emit: EmitModeFailures, Signals: []Signal{SignalLogs}, ServiceName: "imcol-gateway"},
		Storage:  &storageID, CheckpointInterval: 30 * time.Second,
	}

	// The examples of README.md.
	readmeSpans := createDefaultConfig().(*Config)
	readmeSpans.Attributes.MessageID = "client_msg_id"
	readmeSpans.Attributes.ConversationID = "conversation_id"
	readmeSpans.StageConditions.Spans = StageConditions{
		Send:    []string{`name == "/msg/send_msg" and kind == SPAN_KIND_SERVER`},
		Persist: []string{`name == "BatchInsertChat2DB"`, `name == "BatchInsertChat2Cache"`},
		Push:    []string{`name == "push.Push"`},
	}
	readmeLogs := createDefaultConfig().(*Config)
	readmeLogs.StageConditions.Logs = StageConditions{
		Deliver: []string{`IsMatch(body, "^write to conn ok")`},
		Ack:     []string{`attributes["event"] == "msg_ack"`},
	}

	tests := []struct {
		id      component.ID
		want    *Config
		wantErr string
	}{
		{id: component.NewID(metadata.Type), want: createDefaultConfig().(*Config)},
		{id: component.NewIDWithName(metadata.Type, "custom"), want: custom},
		{id: component.NewIDWithName(metadata.Type, "origin"), want: func() *Config {
			c := createDefaultConfig().(*Config)
			c.Outcomes.Signals = []Signal{}
			return c
		}()},
		{id: component.NewIDWithName(metadata.Type, "readme_spans"), want: readmeSpans},
		{id: component.NewIDWithName(metadata.Type, "readme_logs"), want: readmeLogs},
		{
			id: component.NewIDWithName(metadata.Type, "bad_timeouts"),
			wantErr: "ack_timeout: must be positive, got 0s\n" +
				"offline_timeout: must be positive, got 0s\n" +
				"reorder_window: must be positive, got -1s\n" +
				"tick_interval: must be positive, got 0s\n" +
				"source_idle_timeout: must be positive, got 0s\n" +
				"max_source_lag: must be positive, got -1s",
		},
		{
			id: component.NewIDWithName(metadata.Type, "offline_not_longer"),
			wantErr: "offline_timeout: must be longer than ack_timeout (30s), got 30s\n" +
				"tick_interval: must not exceed ack_timeout (30s), got 1m0s",
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_time_model"),
			wantErr: "allowed_lateness: must not be negative, got -1s\n" +
				"max_clock_skew: must not be negative, got -1s",
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_limits"),
			wantErr: "checkpoint_interval: must not be negative (0 disables checkpoints), got -1s\n" +
				"max_gap: must be at least 1, got 0\n" +
				"max_tracked_messages: must be at least 1, got 0\n" +
				"max_messages_per_conversation: must be at least 1, got 0\n" +
				"max_conversations: must be at least 1, got 0\n" +
				"max_devices_per_message: must be at least 1, got -1\n" +
				"max_sources: must be at least 1, got 0\n" +
				"decided_cache_size: must not be negative, got -5\n" +
				"shards: must be between 0 (GOMAXPROCS) and 256, got -1",
		},
		{
			id:      component.NewIDWithName(metadata.Type, "per_conversation_over_total"),
			wantErr: "max_messages_per_conversation: must not exceed max_tracked_messages (10), got 11",
		},
		{
			id:      component.NewIDWithName(metadata.Type, "empty_attribute"),
			wantErr: "attributes: message_id: must not be empty",
		},
		{
			id: component.NewIDWithName(metadata.Type, "empty_attributes"),
			wantErr: "attributes: message_id: must not be empty\n" +
				"conversation_id: must not be empty\n" +
				"stage: must not be empty\n" +
				"seq: must not be empty\n" +
				"fanout: must not be empty\n" +
				"recipient_device: must not be empty\n" +
				"push_offline: must not be empty",
		},
		{
			// Each signal's conditions are compiled in its own OTTL context.
			id: component.NewIDWithName(metadata.Type, "bad_ottl"),
			wantErr: "stage_conditions::spans::push: " + badSpanConditionErr + "\n" +
				"stage_conditions::logs::deliver: " + badLogConditionErr,
		},
		{
			id: component.NewIDWithName(metadata.Type, "duplicate_signal"),
			wantErr: `outcomes: signals::1: "logs" is already signals::0` + "\n" +
				"service_name: must not be empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			t.Parallel()
			cfg := createDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			err = confmap.Validate(cfg)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, cfg)
		})
	}
}

// The OTTL compiler's messages for the conditions of im_loss/bad_ottl.
const (
	badSpanConditionErr = `unable to parse OTTL condition "name == ": condition has invalid syntax: 1:9: unexpected token "<EOF>" (expected Field ("." Field)*)`
	badLogConditionErr  = `unable to parse OTTL condition "nosuchfunc(body)": condition has invalid syntax: 1:17: unexpected token "<EOF>" (expected <opcomparison> Value)`
)

// A config built in code skips UnmarshalText, so Validate checks the enums again.
func TestValidateChecksEnumsOfConfigsBuiltInCode(t *testing.T) {
	t.Parallel()
	cfg := createDefaultConfig().(*Config)
	cfg.Outcomes.Emit = "sometimes"
	cfg.Outcomes.Signals = []Signal{"metrics", SignalLogs}
	require.EqualError(t, confmap.Validate(cfg),
		`outcomes: emit: unknown mode "sometimes" (want all, failures or none)`+"\n"+
			`signals::0: unknown signal "metrics" (want traces or logs)`)
}

// Enums are refused when the YAML is loaded, before validation, with the decoder's path.
func TestEnumsRejectUnknownValuesAtLoad(t *testing.T) {
	t.Parallel()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	for id, want := range map[string]string{
		"im_loss/bad_emit":   `'outcomes.emit' unknown emit mode "sometimes" (want all, failures or none)`,
		"im_loss/bad_signal": `'outcomes.signals[0]' unknown signal "metrics" (want traces or logs)`,
	} {
		cfg := createDefaultConfig()
		sub, err := cm.Sub(id)
		require.NoError(t, err)
		require.EqualError(t, sub.Unmarshal(cfg), "decoding failed due to the following error(s):\n\n"+want, id)
	}
}

func TestEmptyConfigIsDefault(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	cfg := createDefaultConfig()
	sub, err := cm.Sub("im_loss")
	require.NoError(t, err)
	require.NoError(t, sub.Unmarshal(cfg))
	assert.Equal(t, createDefaultConfig(), cfg)
	require.NoError(t, confmap.Validate(cfg))
}
