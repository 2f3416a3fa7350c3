package sender

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcol/imcol/testbed/workload"
)

// Config configures a load run.
type Config struct {
	// Endpoint is the collector's OTLP host:port. Only loopback addresses are accepted: the
	// testbed never sends load over a network.
	Endpoint string
	// Protocol is grpc (default) or http.
	Protocol string
	// Signals says which services emit spans and which emit log records.
	Signals Signals
	// MaxBatch is the most items per export request (default 512).
	MaxBatch int
	// Workers is the number of concurrent export requests (default 1, which keeps the order
	// of arrival equal to the order of emission).
	Workers int
	// RetryTimeout bounds the retries of one request before its items count as failed
	// (default 30s). It covers a collector restart.
	RetryTimeout time.Duration
	// Tick is the pacing resolution (default 5ms).
	Tick time.Duration
	// Lags hold every event of a lagged service back on its way to the exporter (a backed-up
	// pipeline between the service and the collector); the events keep their timestamps.
	// Tell the fault planner the same lags (faults.Config.Lags).
	Lags workload.Lags
}

// Validate checks the settings.
func (c *Config) Validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Endpoint)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("endpoint: %w", err))
	case host != "localhost" && !isLoopback(host):
		errs = append(errs, fmt.Errorf("endpoint: %q is not a loopback address; the testbed only sends to this machine", c.Endpoint))
	}
	if c.Protocol != "" && c.Protocol != "grpc" && c.Protocol != "http" {
		errs = append(errs, fmt.Errorf("protocol: want grpc or http, got %q", c.Protocol))
	}
	if c.MaxBatch < 0 || c.MaxBatch > 100_000 {
		errs = append(errs, fmt.Errorf("max batch: want 1..100000 (0 for the default), got %d", c.MaxBatch))
	}
	if c.Workers < 0 || c.Workers > 256 {
		errs = append(errs, fmt.Errorf("workers: want 1..256 (0 for the default), got %d", c.Workers))
	}
	if c.RetryTimeout < 0 || c.Tick < 0 {
		errs = append(errs, errors.New("retry timeout and tick must not be negative"))
	}
	for i, l := range c.Lags {
		if l.Delay < 0 || l.Ramp < 0 || l.Delay > workload.MaxLag || l.Ramp > workload.MaxLag {
			errs = append(errs, fmt.Errorf("lag of %s: delay %s and ramp %s must be in 0..%s", workload.Service(i).Name(), l.Delay, l.Ramp, workload.MaxLag))
		}
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) withDefaults() Config {
	d := *c
	if d.MaxBatch == 0 {
		d.MaxBatch = 512
	}
	if d.Workers == 0 {
		d.Workers = 1
	}
	if d.RetryTimeout == 0 {
		d.RetryTimeout = 30 * time.Second
	}
	if d.Tick == 0 {
		d.Tick = 5 * time.Millisecond
	}
	return d
}

// Stats are the counters of a run. Items are spans or log records.
type Stats struct {
	Messages int64
	// Sent counts items per signal handed to the exporter, Accepted the ones the collector
	// took, Rejected the ones it refused in a partial success, Failed the ones given up after
	// RetryTimeout or a permanent error.
	Sent, Accepted, Rejected, Failed [numSignals]int64
	Requests, Retries                int64
	// MaxLag is how far behind schedule the emission fell at worst.
	MaxLag time.Duration
	// LastStart is when the last message started, relative to the start of the run.
	LastStart time.Duration
	// Elapsed is the duration of the run.
	Elapsed time.Duration
	// LastError is the last failure, if any.
	LastError string
}

// Rate is the achieved message rate: messages over the time it took to start them all.
func (s Stats) Rate() float64 {
	if s.Messages < 2 || s.LastStart <= 0 {
		return 0
	}
	return float64(s.Messages-1) / s.LastStart.Seconds()
}

// Items returns the totals over both signals.
func (s Stats) Items() (sent, accepted, rejected, failed int64) {
	for i := range s.Sent {
		sent += s.Sent[i]
		accepted += s.Accepted[i]
		rejected += s.Rejected[i]
		failed += s.Failed[i]
	}
	return
}

// Run is a load run in progress.
type Run struct {
	cfg   Config
	sched *workload.Schedule
	exp   exporter
	start time.Time
	work  chan request
	done  chan struct{}
	err   error

	messages, requests, retries, maxLag, lastStart atomic.Int64
	sent, accepted, rejected, failed               [numSignals]atomic.Int64
	elapsed                                        atomic.Int64
	mu                                             sync.Mutex
	lastErr                                        string
}

type request struct {
	signal Signal
	evts   []workload.Event
}

// Start begins emitting src to cfg.Endpoint and returns at once. Event times are relative
// to the returned Run's Start.
func Start(ctx context.Context, cfg Config, src workload.Source) (*Run, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	exp, err := newExporter(cfg.Protocol, cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	r := &Run{
		cfg:   cfg,
		sched: workload.NewSchedule(workload.Lagged(src, cfg.Lags)),
		exp:   exp,
		start: time.Now(),
		work:  make(chan request, 2*cfg.Workers),
		done:  make(chan struct{}),
	}
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(ctx)
		}()
	}
	go func() {
		r.err = r.pace(ctx)
		close(r.work)
		wg.Wait()
		r.elapsed.Store(int64(time.Since(r.start)))
		_ = r.exp.close()
		close(r.done)
	}()
	return r, nil
}

// StartTime is the wall-clock origin of every event time of the run.
func (r *Run) StartTime() time.Time { return r.start }

// Done is closed when every event has been sent (or given up).
func (r *Run) Done() <-chan struct{} { return r.done }

// Wait blocks until the run is over and returns its statistics; the error is set when the
// run was cancelled before every event was emitted.
func (r *Run) Wait() (Stats, error) {
	<-r.done
	return r.Stats(), r.err
}

// Stats is a snapshot of the counters.
func (r *Run) Stats() Stats {
	s := Stats{
		Messages:  r.messages.Load(),
		Requests:  r.requests.Load(),
		Retries:   r.retries.Load(),
		MaxLag:    time.Duration(r.maxLag.Load()),
		LastStart: time.Duration(r.lastStart.Load()),
		Elapsed:   time.Duration(r.elapsed.Load()),
	}
	if s.Elapsed == 0 {
		s.Elapsed = time.Since(r.start)
	}
	for i := range s.Sent {
		s.Sent[i] = r.sent[i].Load()
		s.Accepted[i] = r.accepted[i].Load()
		s.Rejected[i] = r.rejected[i].Load()
		s.Failed[i] = r.failed[i].Load()
	}
	r.mu.Lock()
	s.LastError = r.lastErr
	r.mu.Unlock()
	return s
}

// pace releases due events every tick and hands them to the workers in batches.
func (r *Run) pace(ctx context.Context) error {
	ticker := time.NewTicker(r.cfg.Tick)
	defer ticker.Stop()
	var due []workload.Event
	for {
		elapsed := time.Since(r.start)
		due = r.sched.Advance(elapsed, due[:0])
		if n := r.sched.Started(); n != r.messages.Load() {
			r.messages.Store(n)
			r.lastStart.Store(int64(elapsed))
		}
		if len(due) > 0 {
			if lag := elapsed - due[0].Due; lag > time.Duration(r.maxLag.Load()) {
				r.maxLag.Store(int64(lag))
			}
			if err := r.dispatch(ctx, due); err != nil {
				return err
			}
		}
		if r.sched.Done() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// dispatch splits due events by signal into requests of at most MaxBatch items. Each
// request gets its own copy: the schedule reuses its buffer.
func (r *Run) dispatch(ctx context.Context, due []workload.Event) error {
	for sig := range numSignals {
		var batch []workload.Event
		for i := range due {
			if r.cfg.Signals[due[i].Service] != sig {
				continue
			}
			batch = append(batch, due[i])
			if len(batch) == r.cfg.MaxBatch {
				if err := r.enqueue(ctx, sig, batch); err != nil {
					return err
				}
				batch = nil
			}
		}
		if len(batch) > 0 {
			if err := r.enqueue(ctx, sig, batch); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Run) enqueue(ctx context.Context, sig Signal, evts []workload.Event) error {
	select {
	case r.work <- request{signal: sig, evts: evts}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Run) worker(ctx context.Context) {
	for req := range r.work {
		n := int64(len(req.evts))
		r.sent[req.signal].Add(n)
		var rejected int64
		retries, err := retry(ctx, r.cfg.RetryTimeout, func(ctx context.Context) error {
			var err error
			// Timestamps are rebuilt on every attempt from the same offsets, so a retry
			// carries the same data.
			if req.signal == SignalLogs {
				rejected, err = r.exp.logs(ctx, buildLogs(req.evts, r.start))
			} else {
				rejected, err = r.exp.traces(ctx, buildTraces(req.evts, r.start))
			}
			return err
		})
		r.requests.Add(1)
		r.retries.Add(int64(retries))
		if err != nil {
			r.failed[req.signal].Add(n)
			r.mu.Lock()
			r.lastErr = err.Error()
			r.mu.Unlock()
			continue
		}
		r.accepted[req.signal].Add(n - rejected)
		r.rejected[req.signal].Add(rejected)
	}
}
