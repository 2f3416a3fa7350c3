//go:generate go tool mdatagen metadata.yaml

// Package sloconnector implements the slo connector: it evaluates service level objectives
// over spans and log records where the data flows, and emits SLO counters, error budgets and
// multiwindow burn rates as metrics.
package sloconnector // import "github.com/imcol/imcol/connectors/sloconnector"
