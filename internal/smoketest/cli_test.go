package smoketest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/imcol/imcol/internal/testcollector"
)

func runImcol(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testcollector.Binary(t), args...)
	cmd.Dir = testcollector.RepoRoot(t)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestVersionNamesCollectorLine(t *testing.T) {
	out, err := runImcol(t, "--version")
	require.NoError(t, err, out)
	manifest := readManifest(t)
	assert.Equal(t, "imcol version "+manifest.Dist.Version+"\n", out)
	assert.Contains(t, out, "otelcol v0.157.0")
}

func TestValidateAcceptsShippedConfigs(t *testing.T) {
	out, err := runImcol(t, "validate", "--config", filepath.Join(testcollector.RepoRoot(t), "configs", "default.yaml"))
	require.NoError(t, err, out)
}

func TestValidateNamesTheProblem(t *testing.T) {
	cases := map[string]struct {
		config   string
		want     []string
		wantOnce []string
	}{
		"unknown component": {
			config: `
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:0"}}
exporters:
  no_such_exporter:
service:
  pipelines:
    traces: {receivers: [otlp], exporters: [no_such_exporter]}
`,
			want: []string{"no_such_exporter", "unknown type"},
		},
		"bad key": {
			config: `
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:0"}}
processors:
  batch:
    send_batch_sizee: 10
exporters:
  debug:
service:
  pipelines:
    traces: {receivers: [otlp], processors: [batch], exporters: [debug]}
`,
			want: []string{`error reading configuration for "batch"`, "invalid keys: send_batch_sizee"},
		},
		// Each mistake in our components is reported once, after the YAML path the collector puts in front.
		"bad values in imcol components": {
			config: `
receivers:
  otlp:
    protocols: {grpc: {endpoint: "127.0.0.1:0"}}
processors:
  im_loss:
    attributes: {message_id: ""}
connectors:
  slo:
    slos:
      - name: a
        objective: 2
        sli: {ratio: {bad: "false"}}
exporters:
  debug:
service:
  pipelines:
    traces: {receivers: [otlp], processors: [im_loss], exporters: [slo]}
    metrics: {receivers: [slo], exporters: [debug]}
`,
			wantOnce: []string{
				"processors::im_loss::attributes: message_id: must not be empty\n",
				"connectors::slo::slos::0: objective: must be a ratio strictly between 0 and 1 (0.9995 for 99.95%), got 2\n",
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			require.NoError(t, os.WriteFile(path, []byte(tc.config), 0o600))
			out, err := runImcol(t, "validate", "--config", path)
			require.Error(t, err, "validate must refuse this config:\n%s", out)
			for _, w := range tc.want {
				assert.Contains(t, out, w)
			}
			for _, w := range tc.wantOnce {
				assert.Equal(t, 1, strings.Count(out, w), "want %q once in:\n%s", w, out)
			}
		})
	}
}

type manifest struct {
	Dist struct {
		Version string `yaml:"version"`
	} `yaml:"dist"`
	Receivers  []module `yaml:"receivers"`
	Processors []module `yaml:"processors"`
	Exporters  []module `yaml:"exporters"`
	Connectors []module `yaml:"connectors"`
	Extensions []module `yaml:"extensions"`
	Providers  []module `yaml:"providers"`
}

type module struct {
	GoMod string `yaml:"gomod"`
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testcollector.RepoRoot(t), "builder-config.yaml"))
	require.NoError(t, err)
	var m manifest
	require.NoError(t, yaml.Unmarshal(raw, &m))
	return m
}

// TestComponentsListsManifest checks that `imcol components` reports every module of the
// manifest, and nothing else, so the binary cannot silently lag behind builder-config.yaml.
func TestComponentsListsManifest(t *testing.T) {
	out, err := runImcol(t, "components")
	require.NoError(t, err, out)
	listed := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		if mod, ok := strings.CutPrefix(strings.TrimSpace(line), "module: "); ok {
			listed[mod]++
		}
	}
	m := readManifest(t)
	want := map[string]int{}
	for _, kind := range [][]module{m.Receivers, m.Processors, m.Exporters, m.Connectors, m.Extensions, m.Providers} {
		for _, mod := range kind {
			want[mod.GoMod]++ // imcol's own components all share the root module's line
		}
	}
	assert.Equal(t, want, listed)
	assert.GreaterOrEqual(t, len(want), 35)
}
