package imlossprocessor

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap/confmaptest"
	"go.opentelemetry.io/collector/confmap/xconfmap"

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
		MaxDevicesPerMessage: 16, DecidedCacheSize: 0, DropDuplicates: true,
		Outcomes: OutcomesConfig{Emit: EmitModeFailures, Signals: []Signal{SignalLogs}, ServiceName: "imcol-gateway"},
		Storage:  &storageID, CheckpointInterval: 30 * time.Second,
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
		{
			id: component.NewIDWithName(metadata.Type, "bad_timeouts"),
			wantErr: "ack_timeout must be positive, got 0s\n" +
				"reorder_window must be positive, got -1s",
		},
		{
			id: component.NewIDWithName(metadata.Type, "offline_not_longer"),
			wantErr: "offline_timeout (30s) must be longer than ack_timeout (30s)\n" +
				"tick_interval (1m0s) must not exceed ack_timeout (30s)",
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_time_model"),
			wantErr: "source_idle_timeout must be positive, got 0s\n" +
				"allowed_lateness must not be negative, got -1s\n" +
				"max_clock_skew must not be negative, got -1s\n" +
				"max_sources must be at least 1, got 0",
		},
		{
			id: component.NewIDWithName(metadata.Type, "bad_limits"),
			wantErr: "max_gap must be at least 1\n" +
				"max_tracked_messages must be at least 1, got 0\n" +
				"max_devices_per_message must be at least 1, got -1\n" +
				"checkpoint_interval must not be negative (0 disables checkpoints), got -1s\n" +
				"decided_cache_size must not be negative, got -5",
		},
		{
			id:      component.NewIDWithName(metadata.Type, "per_conversation_over_total"),
			wantErr: "max_messages_per_conversation (11) must not exceed max_tracked_messages (10)",
		},
		{
			id:      component.NewIDWithName(metadata.Type, "empty_attribute"),
			wantErr: "attributes::message_id must not be empty",
		},
		{
			id:      component.NewIDWithName(metadata.Type, "bad_ottl"),
			wantErr: "stage_conditions::spans::push: ",
		},
		{
			id:      component.NewIDWithName(metadata.Type, "duplicate_signal"),
			wantErr: "outcomes::signals: \"logs\" listed twice\noutcomes::service_name must not be empty",
		},
	}
	for _, tt := range tests {
		t.Run(tt.id.String(), func(t *testing.T) {
			cfg := createDefaultConfig()
			sub, err := cm.Sub(tt.id.String())
			require.NoError(t, err)
			require.NoError(t, sub.Unmarshal(cfg))
			err = xconfmap.Validate(cfg)
			if tt.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, tt.want, cfg)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestBadOTTLNamesBothSignals(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	cfg := createDefaultConfig()
	sub, err := cm.Sub("im_loss/bad_ottl")
	require.NoError(t, err)
	require.NoError(t, sub.Unmarshal(cfg))
	err = xconfmap.Validate(cfg)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stage_conditions::spans::push")
	assert.Contains(t, err.Error(), "stage_conditions::logs::deliver")
	assert.Contains(t, err.Error(), "nosuchfunc")
}

func TestEnumsRejectUnknownValuesAtLoad(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	for id, want := range map[string]string{
		"im_loss/bad_emit":   `unknown emit mode "sometimes" (want all, failures or none)`,
		"im_loss/bad_signal": `unknown signal "metrics" (want traces or logs)`,
	} {
		cfg := createDefaultConfig()
		sub, err := cm.Sub(id)
		require.NoError(t, err)
		err = sub.Unmarshal(cfg)
		require.Error(t, err, id)
		assert.Contains(t, err.Error(), want)
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
	require.NoError(t, xconfmap.Validate(cfg))
}

func TestReadmeExamplesValidate(t *testing.T) {
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	for _, id := range []string{"im_loss/readme_spans", "im_loss/readme_logs"} {
		cfg := createDefaultConfig()
		sub, err := cm.Sub(id)
		require.NoError(t, err)
		require.NoError(t, sub.Unmarshal(cfg))
		require.NoError(t, xconfmap.Validate(cfg), id)
	}
}
