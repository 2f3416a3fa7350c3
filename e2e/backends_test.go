package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/imcol/imcol/internal/testcollector"
)

// backendBinDir is where scripts/e2e/install-backends.sh caches the Loki and Jaeger builds.
func backendBinDir(t *testing.T) string {
	if dir := os.Getenv("IMCOL_E2E_CACHE"); dir != "" {
		return filepath.Join(dir, "bin")
	}
	home, err := os.UserHomeDir()
	require.NoError(t, err)
	return filepath.Join(home, ".cache", "imcol-e2e", "bin")
}

// lookBackend finds a backend binary, failing with the install command when it is missing.
func lookBackend(t *testing.T, name string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	path := filepath.Join(backendBinDir(t), name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("backend %s is not installed: run scripts/e2e/install-backends.sh (make e2e does)", name)
	}
	return path
}

// server is one real backend process on loopback.
type server struct {
	name string
	addr string // host:port of its HTTP API
	proc *testcollector.Process
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

// startServer launches bin with args and waits until readyPath answers 200.
func startServer(t *testing.T, name, bin, addr, readyPath string, args ...string) *server {
	t.Helper()
	s := &server{name: name, addr: addr, proc: testcollector.Launch(t, bin, args, nil)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s output:\n%s", name, tail(s.proc.Output(), 4000))
		}
		_ = s.proc.Stop(20 * time.Second)
	})
	if err := s.proc.WaitHealthy(s.url(readyPath), 90*time.Second); err != nil {
		t.Fatalf("%s did not become ready: %v\n%s", name, err, tail(s.proc.Output(), 4000))
	}
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// loadYAML reads one of the shipped configs as a generic document so a test can point its
// addresses and folders at its own loopback ports and temp dirs while keeping everything else.
func loadYAML(t *testing.T, rel string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testcollector.RepoRoot(t), rel))
	require.NoError(t, err)
	doc := map[string]any{}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	return doc
}

func writeYAML(t *testing.T, dir, name string, doc any) string {
	t.Helper()
	raw, err := yaml.Marshal(doc)
	require.NoError(t, err)
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	return path
}

// at walks a YAML document along keys, creating maps where missing, and returns the innermost map.
func at(doc map[string]any, keys ...string) map[string]any {
	cur := doc
	for _, k := range keys {
		next, ok := cur[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[k] = next
		}
		cur = next
	}
	return cur
}

// startPrometheus runs Debian's Prometheus with configs/prometheus/prometheus.yml, scraping the given
// targets every second and evaluating the given rule files.
func startPrometheus(t *testing.T, jobs map[string]string, ruleFiles []string, alertmanager string) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := loadYAML(t, "configs/prometheus/prometheus.yml")
	at(cfg, "global")["scrape_interval"] = "1s"
	at(cfg, "global")["evaluation_interval"] = "1s"
	cfg["rule_files"] = ruleFiles
	cfg["alerting"] = map[string]any{"alertmanagers": []any{
		map[string]any{"static_configs": []any{map[string]any{"targets": []string{alertmanager}}}},
	}}
	var scrapes []any
	for job, target := range jobs {
		scrapes = append(scrapes, map[string]any{
			"job_name":       job,
			"static_configs": []any{map[string]any{"targets": []string{target}}},
		})
	}
	cfg["scrape_configs"] = scrapes
	path := writeYAML(t, dir, "prometheus.yml", cfg)
	addr := testcollector.FreeEndpoint(t)
	return startServer(t, "prometheus", lookBackend(t, "prometheus"), addr, "/-/ready",
		"--config.file="+path, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.enable-remote-write-receiver",
		"--rules.alert.resend-delay=1s", "--log.level=warn")
}

// startAlertmanager runs Debian's Alertmanager with configs/alertmanager/alertmanager.yml, its SMTP
// smarthost and webhooks pointed at the test's sinks and its grouping waits shortened.
func startAlertmanager(t *testing.T, smtpAddr, webhookURL string) *server {
	t.Helper()
	dir := t.TempDir()
	root := testcollector.RepoRoot(t)
	cfg := loadYAML(t, "configs/alertmanager/alertmanager.yml")
	at(cfg, "global")["smtp_smarthost"] = smtpAddr
	cfg["templates"] = []string{filepath.Join(root, "configs", "alertmanager", "templates", "*.tmpl")}
	shortenRoute(at(cfg, "route"))
	for _, r := range cfg["receivers"].([]any) {
		for _, wh := range asList(r.(map[string]any)["webhook_configs"]) {
			wh.(map[string]any)["url"] = webhookURL
		}
	}
	path := writeYAML(t, dir, "alertmanager.yml", cfg)
	addr := testcollector.FreeEndpoint(t)
	return startServer(t, "alertmanager", lookBackend(t, "prometheus-alertmanager"), addr, "/-/ready",
		"--config.file="+path, "--storage.path="+dir, "--web.listen-address="+addr,
		"--cluster.listen-address=", "--log.level=warn")
}

func shortenRoute(route map[string]any) {
	route["group_wait"], route["group_interval"] = "1s", "1s"
	for _, r := range asList(route["routes"]) {
		shortenRoute(r.(map[string]any))
	}
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// startLoki runs Loki single-binary with configs/loki/loki.yaml on free ports and a temp dir.
func startLoki(t *testing.T) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := loadYAML(t, "configs/loki/loki.yaml")
	httpPort, grpcPort := testcollector.FreePort(t), testcollector.FreePort(t)
	srv := at(cfg, "server")
	srv["http_listen_port"], srv["grpc_listen_port"] = httpPort, grpcPort
	common := at(cfg, "common")
	common["path_prefix"] = dir
	fs := at(common, "storage", "filesystem")
	fs["chunks_directory"], fs["rules_directory"] = filepath.Join(dir, "chunks"), filepath.Join(dir, "rules")
	path := writeYAML(t, dir, "loki.yaml", cfg)
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	return startServer(t, "loki", lookBackend(t, "loki"), addr, "/ready", "-config.file="+path)
}

// jaeger is Jaeger v2: its OTLP gRPC receiver and its query API.
type jaeger struct {
	*server
	otlp string
}

// startJaeger runs Jaeger v2 with configs/jaeger/jaeger.yaml on free ports.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	dir := t.TempDir()
	cfg := loadYAML(t, "configs/jaeger/jaeger.yaml")
	health, query := testcollector.FreeEndpoint(t), testcollector.FreeEndpoint(t)
	otlp := testcollector.FreeEndpoint(t)
	at(cfg, "extensions", "healthcheckv2", "http")["endpoint"] = health
	at(cfg, "extensions", "jaeger_query", "http")["endpoint"] = query
	at(cfg, "extensions", "jaeger_query", "grpc")["endpoint"] = testcollector.FreeEndpoint(t)
	at(cfg, "receivers", "otlp", "protocols", "grpc")["endpoint"] = otlp
	at(cfg, "receivers", "otlp", "protocols", "http")["endpoint"] = testcollector.FreeEndpoint(t)
	path := writeYAML(t, dir, "jaeger.yaml", cfg)
	s := startServer(t, "jaeger", lookBackend(t, "jaeger"), health, "/status", "--config", path)
	s.addr = query // the API the assertions query; health only gated the start
	return &jaeger{server: s, otlp: otlp}
}

// getJSON fetches url and decodes its JSON body into out.
func getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return decodeJSON(resp, out)
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
