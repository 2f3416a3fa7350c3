package e2e

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/internal/testcollector"
)

// imageFile is one entry of the image's filesystem.
type imageFile struct {
	dir  bool
	uid  int
	mode int64
}

// imageFiles lists the image's filesystem by exporting a container created from it.
func imageFiles(t *testing.T, image string) map[string]imageFile {
	t.Helper()
	name := fmt.Sprintf("imcol-e2e-%d-files", os.Getpid())
	_, _ = podman(t, "rm", "--force", name)
	mustPodman(t, "create", "--name", name, image)
	defer func() { _, _ = podman(t, "rm", "--force", name) }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := podmanCmd(ctx, t, "export", name)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	files := map[string]imageFile{}
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		p := path.Clean("/" + h.Name)
		files[p] = imageFile{dir: h.Typeflag == tar.TypeDir, uid: h.Uid, mode: h.Mode}
	}
	require.NoError(t, cmd.Wait())
	return files
}

// imageTag is the version `make image` tags the image with: builder-config.yaml's dist.version.
func imageTag(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testcollector.RepoRoot(t), "builder-config.yaml"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^ {2}version: "([^ "]+)`).FindSubmatch(raw)
	require.NotNil(t, m, "no dist.version in builder-config.yaml")
	return string(m[1])
}

// deployment is what one deployment file asks of the image.
type deployment struct {
	file   string
	images []string // image references
	paths  []string // absolute paths it passes to imcol (args, env, config)
	mounts []string // where it mounts volumes
	ports  []int    // container ports it publishes or probes
	users  []int    // uids it runs the container as
	cmds   []string // entrypoints it runs (Helm's command.name)
}

var absPath = regexp.MustCompile(`(?:^|[=\s"'])(/(?:etc|var)/[A-Za-z0-9_.*/-]+)`)

// collect walks a YAML value and records every absolute path, mount, port and uid it names.
func (d *deployment) collect(key string, v any) {
	switch v := v.(type) {
	case map[string]any:
		if enabled, ok := v["enabled"].(bool); ok && !enabled {
			return // a disabled Helm port
		}
		for k, child := range v {
			d.collect(k, child)
		}
	case []any:
		for _, child := range v {
			if s, ok := child.(string); ok && key == "volumes" {
				if parts := strings.Split(s, ":"); len(parts) >= 2 {
					d.mounts = append(d.mounts, parts[1])
				}
				continue
			}
			if s, ok := child.(string); ok && key == "ports" {
				if parts := strings.Split(s, ":"); len(parts) == 2 {
					port, err := strconv.Atoi(parts[1])
					if err == nil {
						d.ports = append(d.ports, port)
					}
				}
				continue
			}
			d.collect(key, child)
		}
	case string:
		switch key {
		case "mountPath":
			d.mounts = append(d.mounts, v)
		case "image":
			d.images = append(d.images, v)
		}
		for _, m := range absPath.FindAllStringSubmatch(v, -1) {
			d.paths = append(d.paths, m[1])
		}
	case int:
		switch key {
		case "containerPort", "port":
			d.ports = append(d.ports, v)
		case "runAsUser", "fsGroup":
			d.users = append(d.users, v)
		}
	}
}

func loadDeployment(t *testing.T, rel string, pick func(doc map[string]any) any) *deployment {
	t.Helper()
	d := &deployment{file: rel}
	d.collect("", pick(loadYAML(t, rel)))
	return d
}

// TestDeploymentFilesMatchImage checks that docker-compose.yaml and the Kubernetes/Helm files name
// the image `make image` builds, and only paths, ports and users that image has.
func TestDeploymentFilesMatchImage(t *testing.T) {
	t.Parallel()
	image := requireImage(t)
	files := imageFiles(t, image)
	var exposed map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustPodman(t, "image", "inspect", "--format", "{{json .Config.ExposedPorts}}", image)), &exposed))
	assert.Equal(t, imageUID+":"+imageUID, mustPodman(t, "image", "inspect", "--format", "{{.Config.User}}", image))
	tag := imageTag(t)

	t.Run("the image holds what the Dockerfile promises", func(t *testing.T) {
		for _, p := range []string{"/imcol", "/imcol-healthcheck"} {
			assert.NotZero(t, files[p].mode&0o111, "%s is not executable", p)
		}
		for _, p := range []string{"/etc/imcol/config.yaml", "/etc/imcol/sidecar.yaml", "/etc/imcol/gateway.yaml",
			"/etc/imcol/backends.yaml", "/etc/ssl/certs/ca-certificates.crt", "/etc/passwd", "/etc/group"} {
			assert.Contains(t, files, p)
		}
		rules, _ := filepath.Glob(filepath.Join(testcollector.RepoRoot(t), "configs", "rules", "*.yaml"))
		require.NotEmpty(t, rules)
		for _, r := range rules {
			assert.Contains(t, files, "/etc/imcol/rules/"+filepath.Base(r))
		}
		state := files["/var/lib/imcol"]
		assert.True(t, state.dir && state.uid == 10001, "/var/lib/imcol must be a folder of uid 10001: %+v", state)
	})

	deployments := []*deployment{
		loadDeployment(t, "configs/docker-compose.yaml", func(doc map[string]any) any {
			return at(doc, "services", "imcol")
		}),
		loadDeployment(t, "configs/kubernetes/sidecar-pod.yaml", func(doc map[string]any) any {
			spec := at(doc, "spec", "template", "spec")
			for _, c := range asList(spec["containers"]) {
				if c.(map[string]any)["name"] == "imcol" {
					return map[string]any{"container": c, "securityContext": spec["securityContext"]}
				}
			}
			return nil
		}),
		loadDeployment(t, "configs/kubernetes/values-gateway.yaml", func(doc map[string]any) any { return doc }),
		loadDeployment(t, "configs/kubernetes/values-backends.yaml", func(doc map[string]any) any { return doc }),
	}
	for _, rel := range []string{"configs/kubernetes/values-gateway.yaml", "configs/kubernetes/values-backends.yaml"} {
		doc := loadYAML(t, rel)
		repo, _ := at(doc, "image")["repository"].(string)
		deployments = append(deployments, &deployment{file: rel + " (image)", images: []string{repo + ":" + fmt.Sprint(at(doc, "image")["tag"])},
			cmds: []string{"/" + fmt.Sprint(at(doc, "command")["name"])}})
	}

	for _, d := range deployments {
		t.Run(d.file, func(t *testing.T) {
			for _, ref := range d.images {
				assert.True(t, ref == "localhost/imcol:"+tag || strings.HasSuffix(ref, "/imcol:"+tag),
					"image %q is not the imcol:%s that make image builds", ref, tag)
			}
			for _, p := range d.paths {
				assert.True(t, underAny(p, d.mounts) || inImage(files, p), "%s is neither in the image nor mounted", p)
			}
			for _, m := range d.mounts {
				if f, ok := files[m]; ok && strings.HasPrefix(m, "/var/lib/imcol") {
					assert.Equal(t, 10001, f.uid, "the state mount %s is not the image user's", m)
				}
			}
			for _, port := range d.ports {
				assert.Contains(t, exposed, fmt.Sprintf("%d/tcp", port), "port %d is not exposed by the image", port)
			}
			for _, uid := range d.users {
				assert.Equal(t, 10001, uid, "runs as a user the image does not have")
			}
			for _, c := range d.cmds {
				assert.Contains(t, files, c, "the entrypoint %s is not in the image", c)
			}
		})
	}
}

func underAny(p string, mounts []string) bool {
	for _, m := range mounts {
		if p == m || strings.HasPrefix(p, strings.TrimSuffix(m, "/")+"/") {
			return true
		}
	}
	return false
}

// inImage reports whether p exists in the image; a glob (rules/*.yaml) must match something.
func inImage(files map[string]imageFile, p string) bool {
	if !strings.Contains(p, "*") {
		_, ok := files[path.Clean(p)]
		return ok
	}
	for f := range files {
		if ok, _ := path.Match(p, f); ok {
			return true
		}
	}
	return false
}
