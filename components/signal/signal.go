// Package signal names the pipeline signals imcol's components let users choose in config
// (which signal an SLO reads, which signals outcome records go to).
package signal

import "fmt"

// Signal is a pipeline signal that carries IM lifecycle events: traces or logs.
type Signal string

const (
	// Traces is spans.
	Traces Signal = "traces"
	// Logs is log records.
	Logs Signal = "logs"
)

// UnmarshalText rejects unknown signals when the config is loaded.
func (s *Signal) UnmarshalText(text []byte) error {
	switch v := Signal(text); v {
	case Traces, Logs:
		*s = v
		return nil
	}
	return fmt.Errorf("unknown signal %q (want traces or logs)", text)
}
