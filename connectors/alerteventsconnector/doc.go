// Package alerteventsconnector evaluates Prometheus alerting rules over the
// metrics of a pipeline and emits alert state changes as log records, and
// optionally notifies Alertmanager.
//
//go:generate go tool mdatagen metadata.yaml
package alerteventsconnector // import "github.com/imcol/imcol/connectors/alerteventsconnector"
