// Package tsdbstore keeps the samples the alerting rules read in a Prometheus
// TSDB head held in memory (no WAL, no blocks, nothing compacted), bounded in
// series and truncated to what the rules can read. The PromQL engine queries
// it through Prometheus's own block querier; OTLP metrics are written to it by
// Prometheus's OTLP translator (the code behind Prometheus's OTLP receiver).
package tsdbstore // import "github.com/imcol/imcol/connectors/alerteventsconnector/internal/tsdbstore"

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// DropReason says why a sample was not stored.
type DropReason int

const (
	// DropSeriesLimit: the sample would have created a series beyond MaxSeries.
	DropSeriesLimit DropReason = iota
	// DropOutOfOrder: older than (or a different value at the time of) the
	// newest sample of its series.
	DropOutOfOrder
	// DropTooOld: older than what the store still holds (the truncation point).
	DropTooOld
	// DropUnsupported: a native histogram (from an OTLP exponential histogram,
	// which the prometheus exporter does not expose either).
	DropUnsupported
	// DropInvalid: any other refusal by the TSDB (e.g. an invalid label set).
	DropInvalid
	numDropReasons
)

// Drops counts samples by DropReason.
type Drops [numDropReasons]int64

// errSeriesLimit is returned by the head's pre-creation hook.
var errSeriesLimit = errors.New("series limit reached")

// Options configure a Store.
type Options struct {
	// MaxSeries bounds the series held; new series beyond it are refused.
	MaxSeries int
	// Retention is how much history the rules read; Truncate keeps at least that.
	Retention time.Duration
	// Dir is where the head's private directory is created. Empty: the
	// system's temporary directory, else the working directory (a container
	// from scratch has no /tmp; its working directory is the state volume).
	Dir string
	// Logger receives the head's warnings and errors; its start-up lines
	// (chunk replay, which has nothing to replay here) are left out.
	Logger *slog.Logger
}

// Store is safe for concurrent use: the head synchronises appends and
// queries itself (per-series locks, isolation), and nothing here holds a lock
// across a query.
type Store struct {
	head      *tsdb.Head
	dir       string
	reg       *prometheus.Registry
	maxSeries uint64
	retention int64 // ms

	drops [numDropReasons]atomic.Int64

	truncMu sync.Mutex
}

// New returns an empty store. The TSDB head needs a directory for its chunk
// mapper even though nothing is written there (there is no WAL, and chunks are
// m-mapped only by the DB's compaction loop, which is not run, and by
// Head.Close, which Close prevents by emptying the head first): a private
// directory is created under Options.Dir and removed by Close.
func New(opts Options) (*Store, error) {
	if opts.MaxSeries <= 0 {
		return nil, fmt.Errorf("max series must be positive, got %d", opts.MaxSeries)
	}
	dir, err := makeDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	s := &Store{
		dir:       dir,
		reg:       prometheus.NewRegistry(),
		maxSeries: uint64(opts.MaxSeries),
		retention: opts.Retention.Milliseconds(),
	}
	ho := tsdb.DefaultHeadOptions()
	ho.ChunkDirRoot = dir
	// Chunks are cut every 120 samples or at chunk-range boundaries; samples
	// older than half the chunk range behind the newest are refused as out of
	// bounds, so the range must cover the retention twice.
	ho.ChunkRange = max(tsdb.DefaultBlockDuration, 2*s.retention)
	ho.SeriesCallback = seriesLimiter{s}
	// A counter's start time becomes a zero sample before its first sample, as
	// Prometheus's created-timestamp zero ingestion does, so increase() counts
	// what it gained before it was first seen.
	ho.EnableSTAsZeroSample = true
	// Out-of-order samples are refused, as Prometheus does by default (the
	// block querier used here reads only in-order chunks).
	ho.StripeSize = 1 << 10
	logger := slog.New(slog.DiscardHandler)
	if opts.Logger != nil {
		logger = slog.New(warnAndAbove{opts.Logger.Handler()})
	}
	head, err := tsdb.NewHead(s.reg, logger, nil, nil, ho, nil)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("creating the TSDB head: %w", err)
	}
	if err := head.Init(math.MinInt64); err != nil {
		_ = head.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("initialising the TSDB head: %w", err)
	}
	s.head = head
	return s, nil
}

// seriesLimiter refuses new series beyond MaxSeries. The head counts its
// series atomically; concurrent creations may overshoot by the number of
// concurrent appenders, never more.
type seriesLimiter struct{ s *Store }

func (l seriesLimiter) PreCreation(labels.Labels) error {
	if l.s.head != nil && l.s.head.NumSeries() >= l.s.maxSeries {
		return errSeriesLimit
	}
	return nil
}
func (seriesLimiter) PostCreation(labels.Labels)                          {}
func (seriesLimiter) PostDeletion(map[chunks.HeadSeriesRef]labels.Labels) {}

// Querier implements storage.Queryable with Prometheus's own block querier
// over the head.
func (s *Store) Querier(mint, maxt int64) (storage.Querier, error) {
	return tsdb.NewBlockQuerier(tsdb.NewRangeHead(s.head, mint, maxt), mint, maxt)
}

// Truncate drops the samples older than mint once the head holds more than a
// quarter of the retention beyond it (the head's garbage collection visits
// every series, so it runs every few minutes, not on every evaluation), and
// from then on refuses samples older than mint.
func (s *Store) Truncate(mint int64) error {
	s.truncMu.Lock()
	defer s.truncMu.Unlock()
	headMin := s.head.MinTime()
	if headMin == math.MaxInt64 || headMin >= mint-s.retention/4 {
		return nil
	}
	return s.head.Truncate(mint)
}

// NumSeries is the number of series held.
func (s *Store) NumSeries() int64 { return int64(s.head.NumSeries()) }

// NumChunks is the number of chunks held (each up to 120 samples).
func (s *Store) NumChunks() int64 {
	mfs, err := s.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == "prometheus_tsdb_head_chunks" && len(mf.GetMetric()) > 0 {
			return int64(mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return 0
}

// TakeDrops returns the drops counted since the previous call and resets them.
func (s *Store) TakeDrops() Drops {
	var d Drops
	for i := range s.drops {
		d[i] = s.drops[i].Swap(0)
	}
	return d
}

// countRefusal counts an append error by reason.
func (s *Store) countRefusal(err error) {
	s.drops[reasonOf(err)].Add(1)
}

func reasonOf(err error) DropReason {
	switch {
	case errors.Is(err, errSeriesLimit):
		return DropSeriesLimit
	case errors.Is(err, storage.ErrOutOfOrderSample), errors.Is(err, storage.ErrDuplicateSampleForTimestamp):
		return DropOutOfOrder
	case errors.Is(err, storage.ErrOutOfBounds), errors.Is(err, storage.ErrTooOldSample):
		return DropTooOld
	case errors.Is(err, errNativeHistogram):
		return DropUnsupported
	}
	return DropInvalid
}

// Close releases the head and removes its directory. The head is emptied
// first: Head.Close would otherwise write every full chunk to the directory.
func (s *Store) Close() error {
	s.truncMu.Lock()
	defer s.truncMu.Unlock()
	return errors.Join(s.head.Truncate(math.MaxInt64), s.head.Close(), os.RemoveAll(s.dir))
}

func makeDir(parent string) (string, error) {
	const pattern = "imcol-alert-events-"
	if parent != "" {
		dir, err := os.MkdirTemp(parent, pattern)
		if err != nil {
			return "", fmt.Errorf("creating the TSDB head's directory: %w", err)
		}
		return dir, nil
	}
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		return dir, nil
	}
	dir, err2 := os.MkdirTemp(".", "."+pattern)
	if err2 != nil {
		return "", fmt.Errorf("creating the TSDB head's directory in the temporary directory (%w) or the working directory (%w)", err, err2)
	}
	return filepath.Abs(dir)
}

var _ storage.Queryable = (*Store)(nil)

// Appender implements storage.Appendable for rule evaluation: recording rule
// results and the ALERTS / ALERTS_FOR_STATE series are written to the head,
// as in Prometheus. A refused sample is counted, not returned: the rules
// package would log every one of them.
func (s *Store) Appender(ctx context.Context) storage.Appender {
	return &ruleAppender{Appender: s.head.Appender(ctx), s: s}
}

type ruleAppender struct {
	storage.Appender
	s *Store
}

func (a *ruleAppender) Append(ref storage.SeriesRef, l labels.Labels, t int64, v float64) (storage.SeriesRef, error) {
	r, err := a.Appender.Append(ref, l, t, v)
	if err != nil {
		a.s.countRefusal(err)
		return 0, nil
	}
	return r, nil
}

var _ storage.Appendable = (*Store)(nil)

// warnAndAbove passes on warnings and errors only.
type warnAndAbove struct{ slog.Handler }

func (h warnAndAbove) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && h.Handler.Enabled(ctx, l)
}

func (h warnAndAbove) WithAttrs(attrs []slog.Attr) slog.Handler {
	return warnAndAbove{h.Handler.WithAttrs(attrs)}
}

func (h warnAndAbove) WithGroup(name string) slog.Handler {
	return warnAndAbove{h.Handler.WithGroup(name)}
}
