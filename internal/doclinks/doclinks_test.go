package doclinks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// skipped are folders of generated or local output, never documentation of the repository.
var skipped = []string{".git/", ".tools/", ".build/", "bin/", "data/"}

// TestRepositoryLinks checks every relative link of every Markdown file of the repository:
// its target must be a file or folder of the repository (not merely of this machine, and
// never outside the repository's root), and an anchor must name a heading of the Markdown
// file it points at, as GitHub renders it.
func TestRepositoryLinks(t *testing.T) {
	root := repoRoot(t)
	files := repoFiles(t, root)
	dirs := map[string]bool{"": true}
	for f := range files {
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}

	parsed := map[string]map[string]bool{} // Markdown file → its anchors
	anchorsOf := func(file string) map[string]bool {
		if a, ok := parsed[file]; ok {
			return a
		}
		f, err := os.Open(filepath.Join(root, filepath.FromSlash(file)))
		require.NoError(t, err)
		defer f.Close()
		_, a, err := Parse(f)
		require.NoError(t, err, file)
		parsed[file] = a
		return a
	}

	var mdFiles []string
	for f := range files {
		if strings.EqualFold(path.Ext(f), ".md") {
			mdFiles = append(mdFiles, f)
		}
	}
	require.NotEmpty(t, mdFiles, "no Markdown file found under %s", root)

	checked := 0
	for _, md := range mdFiles {
		f, err := os.Open(filepath.Join(root, filepath.FromSlash(md)))
		require.NoError(t, err)
		links, anchors, err := Parse(f)
		f.Close()
		require.NoError(t, err, md)
		parsed[md] = anchors

		for _, l := range links {
			p, anchor, external, err := l.Target()
			if external {
				continue
			}
			checked++
			fail := func(format string, args ...any) {
				t.Errorf("%s:%d: link %q: %s", md, l.Line, l.Dest, fmt.Sprintf(format, args...))
			}
			if err != nil {
				fail("%v", err)
				continue
			}
			target := md // a pure "#anchor" points into the file itself
			switch {
			case p == "" && anchor == "":
				fail("empty destination")
				continue
			case strings.HasPrefix(p, "/"): // GitHub resolves these from the repository's root
				target = path.Clean(strings.TrimPrefix(p, "/"))
			case p != "":
				target = path.Join(path.Dir(md), p)
			}
			if target == ".." || strings.HasPrefix(target, "../") {
				fail("points outside the repository (%s)", target)
				continue
			}
			isDir := dirs[target]
			if !files[target] && !isDir {
				fail("no such file or folder in the repository: %s", target)
				continue
			}
			if anchor == "" || isDir || !strings.EqualFold(path.Ext(target), ".md") {
				continue
			}
			if !anchorsOf(target)[strings.ToLower(anchor)] {
				fail("%s has no heading with anchor #%s", target, anchor)
			}
		}
	}
	t.Logf("%d relative links checked in %d Markdown files", checked, len(mdFiles))
}

// repoRoot is the folder holding go.mod, above this package's folder.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "go.mod not found above the test's folder")
		dir = parent
	}
}

// repoFiles lists the repository's files as slash-separated paths from its root: what git
// tracks plus what it would (untracked but not ignored), so a link to a git-ignored file that
// happens to exist on this machine fails as it would on any other. Without git (a source
// archive) it walks the folder instead.
func repoFiles(t *testing.T, root string) map[string]bool {
	t.Helper()
	files := map[string]bool{}
	keep := func(p string) bool {
		for _, s := range skipped {
			if strings.HasPrefix(p+"/", s) {
				return false
			}
		}
		return true
	}
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		for _, p := range strings.Split(string(out), "\x00") {
			// --cached lists files deleted from the work tree too: they are gone.
			if p != "" && keep(p) && exists(filepath.Join(root, filepath.FromSlash(p))) {
				files[p] = true
			}
		}
		return files
	}
	t.Logf("git ls-files failed, walking %s instead", root)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !keep(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() {
			files[rel] = true
		}
		return nil
	})
	require.NoError(t, err)
	return files
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return !errors.Is(err, fs.ErrNotExist)
}
