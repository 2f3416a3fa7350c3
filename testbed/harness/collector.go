package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/imcol/imcol/internal/testcollector"
)

// Environment variables every scenario config reads its addresses from. The harness points
// them at free loopback ports, so scenarios run side by side and never leave the machine.
const (
	EnvOTLPGRPC      = "IMCOL_TB_OTLP_GRPC_ENDPOINT"
	EnvOTLPHTTP      = "IMCOL_TB_OTLP_HTTP_ENDPOINT"
	EnvHealth        = "IMCOL_TB_HEALTH_ENDPOINT"
	EnvTelemetryPort = "IMCOL_TB_TELEMETRY_PORT"
	EnvPrometheus    = "IMCOL_TB_PROMETHEUS_ENDPOINT"
	EnvSink          = "IMCOL_TB_SINK_ENDPOINT"
	EnvStorageDir    = "IMCOL_TB_STORAGE_DIR"
	// EnvPprof is the pprof extension's endpoint (configs that enable it: im.yaml).
	EnvPprof = "IMCOL_TB_PPROF_ENDPOINT"
)

// Endpoints are the addresses of one collector under test.
type Endpoints struct {
	OTLPGRPC, OTLPHTTP, Health, Prometheus, Pprof string
	TelemetryPort                                 int
	StorageDir                                    string
}

// TelemetryURL is the collector's own metrics endpoint.
func (e Endpoints) TelemetryURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(e.TelemetryPort) + "/metrics"
}

// PrometheusURL is the prometheus exporter's endpoint (pipeline metrics, e.g. SLO series).
func (e Endpoints) PrometheusURL() string { return "http://" + e.Prometheus + "/metrics" }

// PprofURL is a net/http/pprof path on the pprof extension, e.g. "profile?seconds=10".
func (e Endpoints) PprofURL(path string) string { return "http://" + e.Pprof + "/debug/pprof/" + path }

// Spec describes the collector of a scenario.
type Spec struct {
	// Name labels the run in logs and file names.
	Name string
	// Config is the collector's YAML; it reads the IMCOL_TB_* variables.
	Config []byte
	// Env adds variables (e.g. the im_loss timeouts a config reads).
	Env map[string]string
	// EndpointEnv adds variables computed from the collector's own addresses, for configs
	// that do not read the IMCOL_TB_* names (the shipped configs/*.yaml read IMCOL_*).
	EndpointEnv func(Endpoints) map[string]string
	// Sink is the endpoint imcol exports to.
	Sink string
	// MonitorInterval is the resource sampling period (default 1s).
	MonitorInterval time.Duration
	// CPUs pins the collector to these CPUs, a taskset list such as "0" or "0,1", by starting
	// it through `taskset -c`; empty: no pinning. StartCollector fails when taskset is missing
	// (TasksetPath says so beforehand) or the process does not end up with exactly this set.
	CPUs string
	// GOMAXPROCS, when positive, is set in the collector's environment.
	GOMAXPROCS int
}

// Collector is bin/imcol running a scenario config.
type Collector struct {
	Endpoints Endpoints
	// Monitor samples the current process; Restart replaces it (Usage covers them all).
	Monitor  *Monitor
	monitors []*Monitor

	t          testing.TB
	spec       Spec
	configPath string
	env        map[string]string
	proc       *testcollector.Process
	pid        int32
	cancelMon  context.CancelFunc
	affinity   string
}

// StartCollector writes the config, starts the binary on free ports and waits for health.
// The collector is stopped (SIGTERM, must exit 0) when the test ends unless the scenario
// stopped or killed it itself.
func StartCollector(tb testing.TB, spec Spec) *Collector {
	tb.Helper()
	dir := tb.TempDir()
	c := &Collector{
		t:          tb,
		spec:       spec,
		configPath: filepath.Join(dir, sanitize(spec.Name)+".yaml"),
	}
	if err := os.WriteFile(c.configPath, spec.Config, 0o600); err != nil {
		tb.Fatalf("writing the %s config: %v", spec.Name, err)
	}
	// A free port can be taken between choosing it and the collector binding it (other test
	// packages run at the same time): then the collector is started again on other ports.
	for attempt := 1; ; attempt++ {
		c.allocate(filepath.Join(dir, fmt.Sprint("storage-", attempt)))
		err := c.launch()
		if err == nil {
			// A fresh im_loss distrusts events stamped this soon after its start (they may
			// be a previous instance's), and the scenarios' truth expects every verdict.
			time.Sleep(testcollector.StartupSettle)
			return c
		}
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			tb.Fatalf("%s: %v", spec.Name, err)
		}
		tb.Logf("%s: a chosen port was taken meanwhile, starting again on others", spec.Name)
	}
}

// allocate chooses free ports and a storage directory and sets the environment for them.
func (c *Collector) allocate(storage string) {
	t, spec := c.t, c.spec
	c.Endpoints = Endpoints{
		OTLPGRPC:      testcollector.FreeEndpoint(t),
		OTLPHTTP:      testcollector.FreeEndpoint(t),
		Health:        testcollector.FreeEndpoint(t),
		Prometheus:    testcollector.FreeEndpoint(t),
		Pprof:         testcollector.FreeEndpoint(t),
		TelemetryPort: testcollector.FreePort(t),
		StorageDir:    storage,
	}
	if err := os.MkdirAll(c.Endpoints.StorageDir, 0o700); err != nil {
		t.Fatalf("storage dir: %v", err)
	}
	c.env = map[string]string{
		EnvOTLPGRPC:      c.Endpoints.OTLPGRPC,
		EnvOTLPHTTP:      c.Endpoints.OTLPHTTP,
		EnvHealth:        c.Endpoints.Health,
		EnvTelemetryPort: strconv.Itoa(c.Endpoints.TelemetryPort),
		EnvPrometheus:    c.Endpoints.Prometheus,
		EnvPprof:         c.Endpoints.Pprof,
		EnvSink:          spec.Sink,
		EnvStorageDir:    c.Endpoints.StorageDir,
	}
	for k, v := range spec.Env {
		c.env[k] = v
	}
	if spec.GOMAXPROCS > 0 {
		c.env["GOMAXPROCS"] = strconv.Itoa(spec.GOMAXPROCS)
	}
	if spec.EndpointEnv != nil {
		for k, v := range spec.EndpointEnv(c.Endpoints) {
			c.env[k] = v
		}
	}
}

// launch starts the binary and waits until it is healthy; the error says why it is not.
func (c *Collector) launch() error {
	c.t.Helper()
	bin, args := testcollector.Binary(c.t), []string{"--config", c.configPath}
	if c.spec.CPUs != "" {
		taskset, err := TasksetPath()
		if err != nil {
			c.t.Fatalf("%s: pinning to CPUs %s: %v", c.spec.Name, c.spec.CPUs, err)
		}
		bin, args = pinnedCommand(taskset, c.spec.CPUs, bin, args)
	}
	proc := testcollector.Launch(c.t, bin, args, c.env)
	c.proc = proc
	// Registered after Launch's own cleanup (which kills), so it runs first: each process
	// gets a graceful stop whose exit status is checked, unless the scenario ended it.
	c.t.Cleanup(func() {
		if c.proc != proc {
			return
		}
		if err := c.Stop(); err != nil {
			c.t.Errorf("%s: %v", c.spec.Name, err)
		}
	})
	if err := c.proc.WaitHealthy("http://"+c.Endpoints.Health+"/", 90*time.Second); err != nil {
		out := c.proc.Output()
		c.proc = nil // exited or hung: Launch's cleanup kills it
		return fmt.Errorf("collector not healthy: %w\n%s", err, out)
	}
	pid, err := childPid(c.configPath)
	if err != nil {
		c.t.Fatalf("%s: %v", c.spec.Name, err)
	}
	c.pid = pid
	// taskset execs the collector in place, so the pid is the collector's; its affinity
	// proves the pinning took.
	c.affinity, err = Affinity(pid)
	if err != nil {
		c.affinity = "unknown (" + err.Error() + ")"
	}
	if c.spec.CPUs != "" {
		want, werr := ParseCPUList(c.spec.CPUs)
		got, gerr := ParseCPUList(c.affinity)
		if werr != nil || gerr != nil || !slices.Equal(want, got) {
			c.t.Fatalf("%s: pinned to CPUs %s, but the process may run on %s", c.spec.Name, c.spec.CPUs, c.affinity)
		}
	}
	mon, err := NewMonitor(pid)
	if err != nil {
		c.t.Fatalf("%s: %v", c.spec.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.Monitor, c.cancelMon = mon, cancel
	c.monitors = append(c.monitors, mon)
	interval := c.spec.MonitorInterval
	if interval == 0 {
		interval = time.Second
	}
	mon.Start(ctx, interval)
	return nil
}

// childPid finds the collector among this process's children by its unique config path:
// testcollector does not expose the pid, and the config file name is ours alone.
func childPid(configPath string) (int32, error) {
	self, err := process.NewProcess(int32(os.Getpid()))
	if err != nil {
		return 0, err
	}
	children, err := self.Children()
	if err != nil {
		return 0, fmt.Errorf("listing child processes: %w", err)
	}
	for _, ch := range children {
		args, err := ch.CmdlineSlice()
		if err != nil {
			continue
		}
		for _, a := range args {
			if a == configPath {
				return ch.Pid, nil
			}
		}
	}
	return 0, fmt.Errorf("no child process runs --config %s", configPath)
}

// Usage summarises the collector's resources in [from, to] over every process it ran as:
// CPU seconds add up, maxima are the largest, averages weigh each process by its samples.
func (c *Collector) Usage(from, to time.Time) Usage {
	var total Usage
	var cpuWeighted, rssWeighted float64
	for _, m := range c.monitors {
		u := m.Usage(from, to)
		if u.Samples == 0 {
			continue
		}
		total.Samples += u.Samples
		total.CPUSeconds += u.CPUSeconds
		total.CPUMax = max(total.CPUMax, u.CPUMax)
		total.RSSMax = max(total.RSSMax, u.RSSMax)
		cpuWeighted += u.CPUAvg * float64(u.Samples)
		rssWeighted += float64(u.RSSAvg) * float64(u.Samples)
	}
	if total.Samples > 0 {
		total.CPUAvg = cpuWeighted / float64(total.Samples)
		total.RSSAvg = uint64(rssWeighted / float64(total.Samples))
	}
	return total
}

// Pid is the current process id.
func (c *Collector) Pid() int32 { return c.pid }

// Affinity is the CPU list the current process may run on (Cpus_allowed_list), read once it
// was healthy.
func (c *Collector) Affinity() string { return c.affinity }

// Output is what the collector printed.
func (c *Collector) Output() string {
	if c.proc == nil {
		return ""
	}
	return c.proc.Output()
}

// Stop sends SIGTERM and waits for a clean exit (status 0).
func (c *Collector) Stop() error {
	if c.proc == nil {
		return nil
	}
	if c.Monitor != nil {
		c.Monitor.Record(time.Now())
		c.cancelMon()
	}
	err := c.proc.Stop(30 * time.Second)
	c.proc = nil
	if err != nil {
		return fmt.Errorf("collector did not stop cleanly: %w", err)
	}
	return nil
}

// Kill ends the collector with SIGKILL, as a crash would.
func (c *Collector) Kill() {
	if c.proc == nil {
		return
	}
	c.cancelMon()
	c.proc.Kill()
	c.proc = nil
}

// Restart starts the collector again with the same config, ports and storage directory,
// after a Kill or a Stop.
func (c *Collector) Restart() {
	c.t.Helper()
	if c.proc != nil {
		c.t.Fatalf("%s: restart while running", c.spec.Name)
	}
	if err := c.launch(); err != nil {
		c.t.Fatalf("%s: %v", c.spec.Name, err)
	}
}

// Telemetry scrapes the collector's own metrics.
func (c *Collector) Telemetry(ctx context.Context) (Families, error) {
	return Scrape(ctx, c.Endpoints.TelemetryURL())
}

// Pipeline scrapes the prometheus exporter.
func (c *Collector) Pipeline(ctx context.Context) (Families, error) {
	return Scrape(ctx, c.Endpoints.PrometheusURL())
}

func sanitize(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
}

// Name is the name the collector was started with.
func (c *Collector) Name() string { return c.spec.Name }
