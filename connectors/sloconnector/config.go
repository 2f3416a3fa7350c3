package sloconnector // import "github.com/imcol/imcol/connectors/sloconnector"

import (
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/confmap"

	"github.com/imcol/imcol/connectors/sloconnector/sloconfig"
)

const defaultFlushInterval = 15 * time.Second

var (
	_ component.Config  = (*Config)(nil)
	_ confmap.Validator = (*Config)(nil)
)

// Config configures the slo connector.
type Config struct {
	// FlushInterval is how often SLO metrics are emitted (default 15s).
	FlushInterval time.Duration `mapstructure:"flush_interval"`
	// Storage is the id of a storage extension (file_storage) that keeps the rolling windows
	// across restarts. Without it, windows start empty on every start.
	Storage *component.ID `mapstructure:"storage"`
	// SLOs are the objectives this connector evaluates; each validates itself.
	SLOs []sloconfig.SLOConfig `mapstructure:"slos"`
}

// Validate checks the connector's own keys and that SLO names are unique, which no single
// SLO can check.
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("flush_interval: must be positive, got %s", cfg.FlushInterval))
	}
	if len(cfg.SLOs) == 0 {
		errs = append(errs, errors.New("slos: at least one SLO is required"))
	}
	first := make(map[string]int, len(cfg.SLOs))
	for i, slo := range cfg.SLOs {
		if slo.Name == "" {
			continue // reported by the SLO itself
		}
		if j, dup := first[slo.Name]; dup {
			errs = append(errs, fmt.Errorf("slos::%d::name: %q is already the name of slos::%d", i, slo.Name, j))
			continue
		}
		first[slo.Name] = i
	}
	return errors.Join(errs...)
}
