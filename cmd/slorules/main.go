// Command slorules writes Prometheus recording and multiwindow multi-burn-rate alerting rules
// for the SLOs of every slo connector in an imcol configuration. It reads the same file(s) the
// collector runs with, through the collector's own configuration loading (file and env
// providers, merging of several --config files), the connector's default config and
// validation, and the alerting policy of package sloconfig that the connector evaluates,
// so the rules cannot drift from what the connector does.
//
// Usage:
//
//	slorules --config configs/default.yaml [--config more.yaml] [--out rules.yaml]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/provider/envprovider"
	"go.opentelemetry.io/collector/confmap/provider/fileprovider"

	"github.com/imcol/imcol/connectors/sloconnector"
)

type configFlags []string

func (c *configFlags) String() string     { return strings.Join(*c, ",") }
func (c *configFlags) Set(v string) error { *c = append(*c, v); return nil }

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "slorules:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("slorules", flag.ContinueOnError)
	var configs configFlags
	fs.Var(&configs, "config", "collector configuration file or URI (repeatable, merged in order like the collector's --config)")
	out := fs.String("out", "", "write the rules to this file instead of standard output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(configs) == 0 {
		return errors.New("at least one --config is required")
	}
	slos, err := loadSLOs(context.Background(), configs)
	if err != nil {
		return err
	}
	rules, err := generate(slos, configs)
	if err != nil {
		return err
	}
	if *out == "" {
		_, err = stdout.Write(rules)
		return err
	}
	return os.WriteFile(*out, rules, 0o644) //nolint:gosec // a rules file for Prometheus to read, committed to the repository
}

// loadSLOs resolves the configuration like the collector does and returns the SLOs of every
// slo connector, in connector id order.
func loadSLOs(ctx context.Context, uris []string) ([]namedSLO, error) {
	resolver, err := confmap.NewResolver(confmap.ResolverSettings{
		URIs:              uris,
		ProviderFactories: []confmap.ProviderFactory{fileprovider.NewFactory(), envprovider.NewFactory()},
		DefaultScheme:     "env",
	})
	if err != nil {
		return nil, err
	}
	conf, err := resolver.Resolve(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resolver.Shutdown(ctx) }()
	connectors, err := conf.Sub("connectors")
	if err != nil {
		return nil, err
	}
	factory := sloconnector.NewFactory()
	var ids []component.ID
	for key := range connectors.ToStringMap() {
		var id component.ID
		if err := id.UnmarshalText([]byte(key)); err != nil {
			return nil, fmt.Errorf("connectors::%s: %w", key, err)
		}
		if id.Type() == factory.Type() {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("no %s connector in %s", factory.Type(), strings.Join(uris, ", "))
	}
	slices.SortFunc(ids, func(a, b component.ID) int { return strings.Compare(a.String(), b.String()) })

	var slos []namedSLO
	owner := map[string]string{}
	for _, id := range ids {
		sub, err := connectors.Sub(id.String())
		if err != nil {
			return nil, err
		}
		cfg := factory.CreateDefaultConfig().(*sloconnector.Config)
		if err := sub.Unmarshal(cfg); err != nil {
			return nil, fmt.Errorf("connectors::%s: %w", id, err)
		}
		// Validated under the path the collector gives it, so errors read as in `imcol validate`.
		if err := confmap.Validate(map[string]map[component.ID]*sloconnector.Config{"connectors": {id: cfg}}); err != nil {
			return nil, err
		}
		for _, s := range cfg.SLOs {
			// Every connector exports into the same metric names: slo_name must be unique.
			if other, dup := owner[s.Name]; dup {
				return nil, fmt.Errorf("connectors::%s: SLO %q is also defined by connector %s; slo_name must be unique across connectors", id, s.Name, other)
			}
			owner[s.Name] = id.String()
			slos = append(slos, namedSLO{connector: id.String(), slo: s})
		}
	}
	return slos, nil
}
