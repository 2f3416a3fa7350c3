// Package configs holds the collector configurations of the testbed scenarios. They read
// every address from IMCOL_TB_* environment variables (see testbed/harness), so the harness
// can run each on free loopback ports.
package configs // import "github.com/imcol/imcol/testbed/configs"

import (
	"embed"
	"fmt"
	"sort"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Get returns the config named name (the file name without .yaml).
func Get(name string) ([]byte, error) {
	b, err := files.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("no scenario config %q (have %s)", name, strings.Join(Names(), ", "))
	}
	return b, nil
}

// Names lists the configs.
func Names() []string {
	entries, _ := files.ReadDir(".")
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(out)
	return out
}
