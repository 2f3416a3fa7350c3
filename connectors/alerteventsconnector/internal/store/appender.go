package store // import "github.com/imcol/imcol/connectors/alerteventsconnector/internal/store"

import (
	"context"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/storage"
)

var _ storage.Appendable = (*Store)(nil)

// Appender implements storage.Appendable for rule evaluation: recording rule
// results and the ALERTS / ALERTS_FOR_STATE series become queryable, as in
// Prometheus. Samples are buffered and applied on Commit.
func (s *Store) Appender(context.Context) storage.Appender {
	return &appender{s: s}
}

type pending struct {
	lset labels.Labels
	t    int64
	f    float64
}

type appender struct {
	s   *Store
	buf []pending
}

func (a *appender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	a.buf = append(a.buf, pending{lset: l.Copy(), t: t, f: v})
	return ref, nil
}

func (*appender) SetOptions(*storage.AppendOptions) {}

func (a *appender) Commit() error {
	// Refusals (limit, out of order) are counted by the store, as for ingested
	// data; rule results are never worth failing the evaluation for.
	for _, p := range a.buf {
		a.s.Append(p.lset, p.t, p.f)
	}
	a.buf = nil
	return nil
}

func (a *appender) Rollback() error {
	a.buf = nil
	return nil
}

func (*appender) AppendExemplar(ref storage.SeriesRef, _ labels.Labels, _ exemplar.Exemplar) (storage.SeriesRef, error) {
	return ref, nil
}

func (*appender) AppendHistogram(ref storage.SeriesRef, _ labels.Labels, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, errNativeHistograms
}

func (*appender) AppendHistogramSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64, _ *histogram.Histogram, _ *histogram.FloatHistogram) (storage.SeriesRef, error) {
	return ref, errNativeHistograms
}

func (*appender) UpdateMetadata(ref storage.SeriesRef, _ labels.Labels, _ metadata.Metadata) (storage.SeriesRef, error) {
	return ref, nil
}

func (*appender) AppendSTZeroSample(ref storage.SeriesRef, _ labels.Labels, _, _ int64) (storage.SeriesRef, error) {
	return ref, nil
}
