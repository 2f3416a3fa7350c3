// Package testcollector runs the real bin/imcol binary for end-to-end tests: free loopback
// ports, a config file plus environment, readiness through the health_check extension, and
// a graceful SIGTERM on cleanup that must end in exit status 0.
package testcollector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BinaryEnv overrides the path of the binary under test.
const BinaryEnv = "IMCOL_BIN"

// Ports handed out by FreePort come from below Linux's ephemeral range (32768-60999), which
// the kernel gives both to ":0" listeners and to every outgoing connection's local end: a port
// chosen there can be taken by any client in the meantime. Within this range only another test
// process choosing the same port at the same moment can, and the ports this process handed
// out are not handed out again.
const (
	freePortLow  = 10000
	freePortHigh = 32000
)

var handedOut sync.Map // int -> struct{}

// FreePort returns a TCP port on 127.0.0.1 that was free when asked.
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		port := freePortLow + rand.IntN(freePortHigh-freePortLow)
		if _, taken := handedOut.LoadOrStore(port, struct{}{}); taken {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeEndpoint returns "127.0.0.1:PORT" for a free port.
func FreeEndpoint(tb testing.TB) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
}

// DefaultConfigEnv points every address of the shipped configs (configs/default.yaml,
// backends.yaml, ...) at a free loopback port and their data at a fresh temp dir.
func DefaultConfigEnv(tb testing.TB) map[string]string {
	return map[string]string{
		"IMCOL_OTLP_GRPC_ENDPOINT":  FreeEndpoint(tb),
		"IMCOL_OTLP_HTTP_ENDPOINT":  FreeEndpoint(tb),
		"IMCOL_PROMETHEUS_ENDPOINT": FreeEndpoint(tb),
		"IMCOL_HEALTH_ENDPOINT":     FreeEndpoint(tb),
		"IMCOL_PPROF_ENDPOINT":      FreeEndpoint(tb),
		"IMCOL_ZPAGES_ENDPOINT":     FreeEndpoint(tb),
		"IMCOL_TELEMETRY_HOST":      "127.0.0.1",
		"IMCOL_TELEMETRY_PORT":      strconv.Itoa(FreePort(tb)),
		"IMCOL_DATA_DIR":            tb.TempDir(),
	}
}

// RepoRoot returns the repository root: the nearest folder at or above the working directory
// that holds go.mod (go test runs each package in its own folder).
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatalf("working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Binary returns the path of bin/imcol, or of $IMCOL_BIN when set, failing the test when it is missing.
func Binary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv(BinaryEnv)
	if bin == "" {
		bin = filepath.Join(RepoRoot(tb), "bin", "imcol")
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("the collector binary %s is missing (build it with `make build`): %v", bin, err)
	}
	return bin
}

// Process is a running bin/imcol.
type Process struct {
	cmd    *exec.Cmd
	output *syncBuffer
	done   chan struct{}
	err    error
}

// Options describe how to start the collector.
type Options struct {
	// Config is the --config argument: a file path or any URI the collector resolves.
	Config string
	// Env is added to the test process's environment.
	Env map[string]string
	// HealthEndpoint is the health_check extension's host:port; Start waits until it answers 200.
	HealthEndpoint string
	// StartTimeout bounds the wait for health; default 60 s.
	StartTimeout time.Duration
}

// StartupSettle is how long Start waits after health: a fresh im_loss distrusts events stamped
// this soon after its start (they may be a previous instance's; imlossprocessor's
// StartupUncertainty, which a test there keeps below this), and tests expect verdicts on what
// they send.
const StartupSettle = time.Second

// Start runs the binary and waits for health, then StartupSettle. Cleanup sends SIGTERM and fails the test unless the
// collector exits 0 within 30 s. The collector's output is attached to the test log on failure.
func Start(tb testing.TB, opts Options) *Process {
	tb.Helper()
	p := Launch(tb, Binary(tb), []string{"--config", opts.Config}, opts.Env)
	tb.Cleanup(func() {
		if err := p.Stop(30 * time.Second); err != nil {
			tb.Errorf("collector did not stop cleanly: %v\n%s", err, p.Output())
		}
	})
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	if opts.HealthEndpoint != "" {
		if err := p.WaitHealthy("http://"+opts.HealthEndpoint+"/", timeout); err != nil {
			tb.Fatalf("collector not healthy: %v\n%s", err, p.Output())
		}
		time.Sleep(StartupSettle)
	}
	return p
}

// Launch starts bin with args and extra environment, in the repository root, without waiting for anything. The caller
// stops it; a Process still running when the test ends is killed.
func Launch(tb testing.TB, bin string, args []string, env map[string]string) *Process {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	// Relative paths in shipped configs (rule files, data dirs) resolve as under `make run`.
	cmd.Dir = RepoRoot(tb)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", bin, err)
	}
	p := &Process{cmd: cmd, output: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// WaitHealthy polls url until it answers 200, the process exits, or timeout passes.
func (p *Process) WaitHealthy(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Eventually(ctx, 100*time.Millisecond, func() error {
		select {
		case <-p.done:
			return Permanent(fmt.Errorf("collector exited early: %w", p.err))
		default:
		}
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %s", url, resp.Status)
		}
		return nil
	})
}

// Stop sends SIGTERM and waits up to timeout for the exit, which must be status 0.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.exitError()
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.exitError()
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("no exit within %s of SIGTERM", timeout)
	}
}

// Kill ends the collector at once, as a crash would.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Wait blocks until the process exits and returns its error (nil for status 0).
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

func (p *Process) exitError() error {
	if p.err != nil {
		return fmt.Errorf("collector exit: %w", p.err)
	}
	return nil
}

// Output returns everything the collector printed so far.
func (p *Process) Output() string { return p.output.String() }

// Get returns the body of a GET of url (a metrics page, a health endpoint).
func Get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// Eventually calls check every interval until it returns nil, returns a Permanent error, or ctx ends;
// it returns the last error seen. Tests wait with it instead of sleeping fixed times.
func Eventually(ctx context.Context, interval time.Duration, check func() error) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		err := check()
		var perm permanentError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &perm):
			return perm.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-ticker.C:
		}
	}
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }

// Permanent marks an error that Eventually should not retry.
func Permanent(err error) error { return permanentError{err} }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
