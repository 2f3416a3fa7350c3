package configs

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/internal/testcollector"
)

// TestConfigsValidate checks every scenario config with the real binary's `validate`, so a
// renamed component option fails here, naming the config, rather than deep in a scenario.
func TestConfigsValidate(t *testing.T) {
	bin := testcollector.Binary(t)
	names := Names()
	require.Contains(t, names, "correctness")
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			cfg, err := Get(name)
			require.NoError(t, err)
			path := filepath.Join(t.TempDir(), name+".yaml")
			require.NoError(t, os.WriteFile(path, cfg, 0o600))
			cmd := exec.Command(bin, "validate", "--config", path)
			cmd.Env = append(os.Environ(),
				"IMCOL_TB_OTLP_GRPC_ENDPOINT=127.0.0.1:1", "IMCOL_TB_OTLP_HTTP_ENDPOINT=127.0.0.1:2",
				"IMCOL_TB_HEALTH_ENDPOINT=127.0.0.1:3", "IMCOL_TB_TELEMETRY_PORT=4",
				"IMCOL_TB_PROMETHEUS_ENDPOINT=127.0.0.1:5", "IMCOL_TB_SINK_ENDPOINT=127.0.0.1:6",
				"IMCOL_TB_PPROF_ENDPOINT=127.0.0.1:7",
				"IMCOL_TB_STORAGE_DIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			assert.NoError(t, err, "%s", out)
		})
	}
	_, err := Get("nope")
	assert.ErrorContains(t, err, "correctness")
	for _, n := range names {
		assert.False(t, strings.HasSuffix(n, ".yaml"))
	}
}
