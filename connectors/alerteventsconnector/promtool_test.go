package alerteventsconnector

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestShippedRulesWithPromtool checks the shipped rule files and runs their
// unit tests with Prometheus's own promtool, so the catalogue stays valid for
// users who load it into Prometheus too.
func TestShippedRulesWithPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool is required: run `make deps` (scripts/e2e/install-backends.sh), "+
		"which installs the Debian package prometheus")

	rulesDir := filepath.Join("..", "..", "configs", "rules")
	ruleFiles, err := filepath.Glob(filepath.Join(rulesDir, "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, ruleFiles)
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, ruleFiles...)...).CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)

	testFiles, err := filepath.Glob(filepath.Join(rulesDir, "tests", "*.test.yaml"))
	require.NoError(t, err)
	require.Len(t, testFiles, len(ruleFiles), "one promtool test file per rule file")
	out, err = exec.Command(promtool, append([]string{"test", "rules"}, testFiles...)...).CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
}
