package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/internal/testcollector"
)

// imageEnv names the image the container tests run; `make image` builds the default.
const imageEnv = "IMCOL_IMAGE"

func imageRef() string {
	if ref := os.Getenv(imageEnv); ref != "" {
		return ref
	}
	return "localhost/imcol:latest"
}

// podmanCmd runs podman with the repository's settings for this kind of machine
// (scripts/image/containers.conf) unless the caller's environment names its own.
func podmanCmd(ctx context.Context, t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = os.Environ()
	if os.Getenv("CONTAINERS_CONF") == "" {
		conf := filepath.Join(testcollector.RepoRoot(t), "scripts", "image", "containers.conf")
		cmd.Env = append(cmd.Env, "CONTAINERS_CONF="+conf)
	}
	return cmd
}

// podman runs one podman command and returns its trimmed stdout.
func podman(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := podmanCmd(ctx, t, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func mustPodman(t *testing.T, args ...string) string {
	t.Helper()
	out, err := podman(t, args...)
	require.NoError(t, err)
	return out
}

// requireImage fails the test with the command that builds the image when it is missing.
func requireImage(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatal("podman is not installed: run make deps")
	}
	ref := imageRef()
	if _, err := podman(t, "image", "exists", ref); err != nil {
		t.Fatalf("image %s is missing: build it with make image (%v)", ref, err)
	}
	return ref
}

// container is one imcol container on the host network.
type container struct {
	name   string
	health string // host:port of its health_check extension
}

// containerSpec is how a container is run: a shipped config inside the image, the addresses it
// listens on (loopback ports, since containers share the host network) and its state volume.
type containerSpec struct {
	role   string // sidecar, gateway or backend: names the container and its volume
	config string // path inside the image
	volume string // named volume mounted at /var/lib/imcol
	env    map[string]string
}

// runContainer starts an imcol container as a user would in production: read-only root
// filesystem, the image's own user, state on a named volume. It waits until the health endpoint
// answers and removes the container and its volume when the test ends.
func runContainer(t *testing.T, image string, spec containerSpec) *container {
	t.Helper()
	c := &container{name: fmt.Sprintf("imcol-e2e-%d-%s", os.Getpid(), spec.role), health: spec.env["IMCOL_HEALTH_ENDPOINT"]}
	_, _ = podman(t, "rm", "--force", "--time", "0", c.name) // a leftover of an aborted run
	args := []string{"run", "--detach", "--name", c.name,
		"--read-only", "--read-only-tmpfs=false", "--volume", spec.volume + ":/var/lib/imcol"}
	for k, v := range spec.env {
		args = append(args, "--env", k+"="+v)
	}
	args = append(args, image, "--config", spec.config)
	mustPodman(t, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s logs:\n%s", c.name, tail(c.logs(t), 6000))
		}
		_, _ = podman(t, "rm", "--force", "--time", "0", c.name)
		_, _ = podman(t, "volume", "rm", "--force", spec.volume)
	})
	c.waitHealthy(t)
	return c
}

func (c *container) waitHealthy(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := testcollector.Eventually(ctx, 200*time.Millisecond, func() error {
		if state, err := podman(t, "inspect", "--format", "{{.State.Status}}", c.name); err != nil || state != "running" {
			return testcollector.Permanent(fmt.Errorf("container %s is %q (%w)", c.name, state, err))
		}
		_, err := testcollector.Get("http://" + c.health + "/")
		return err
	})
	require.NoError(t, err, "%s never became healthy:\n%s", c.name, tail(c.logs(t), 6000))
}

func (c *container) logs(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := podmanCmd(ctx, t, "logs", c.name).CombinedOutput()
	return string(out)
}

// pid is the container's main process as the host sees it.
func (c *container) pid(t *testing.T) int {
	t.Helper()
	pid, err := strconv.Atoi(mustPodman(t, "inspect", "--format", "{{.State.Pid}}", c.name))
	require.NoError(t, err)
	require.Positive(t, pid, "%s is not running", c.name)
	return pid
}

// stop sends SIGTERM and waits up to grace for the container to exit; it returns how long the exit
// took and the exit code.
func (c *container) stop(t *testing.T, grace time.Duration) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	mustPodman(t, "stop", "--time", strconv.Itoa(int(grace.Seconds())), c.name)
	took := time.Since(start)
	code, err := strconv.Atoi(mustPodman(t, "inspect", "--format", "{{.State.ExitCode}}", c.name))
	require.NoError(t, err)
	return took, code
}

// processUIDs returns the real, effective, saved and filesystem uids of a host process.
func processUIDs(t *testing.T, pid int) []string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(rest)
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return nil
}

// mountOptions returns the options of the mount at path in a process's mount namespace.
func mountOptions(t *testing.T, pid int, path string) []string {
	t.Helper()
	info, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	require.NoError(t, err)
	var opts []string
	for _, line := range strings.Split(string(info), "\n") {
		// id parent major:minor root mount-point options ...
		if f := strings.Fields(line); len(f) > 5 && f[4] == path {
			opts = strings.Split(f[5], ",") // the last mount on a path is the one in effect
		}
	}
	require.NotNil(t, opts, "no mount at %s in /proc/%d/mountinfo", path, pid)
	return opts
}
