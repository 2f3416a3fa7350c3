// Package harness runs bin/imcol as a child process for testbed scenarios: it writes the
// scenario config, starts the collector on free loopback ports through internal/testcollector,
// receives everything the collector exports in an in-process OTLP sink, scrapes its Prometheus
// endpoints, samples its CPU and RSS, and validates the outcome records against the ground
// truth recorded by the fault planner.
package harness // import "github.com/imcol/imcol/testbed/harness"

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	// Collector exporters compress with gzip by default; a real backend accepts it.
	_ "google.golang.org/grpc/encoding/gzip"

	"github.com/imcol/imcol/components/imsemconv"
)

// Record is one outcome record the sink received.
type Record struct {
	Signal         string // traces or logs
	Outcome        imsemconv.Outcome
	Reason         imsemconv.LossReason
	Stage          string
	MessageID      string
	ConversationID string
	Device         string
	Seq            int64
	HasSeq         bool
	// Retracted is im.loss.retracted on a late record: the loss it follows is taken back.
	Retracted bool
	// At is when the sink received it.
	At time.Time
}

// SinkOptions configure what the sink keeps besides its counters.
type SinkOptions struct {
	// KeepRecords keeps every outcome record (for validation).
	KeepRecords bool
	// TrackUnique remembers the span id of every lifecycle span and log record (every item
	// but outcome records), so lost and duplicated items can be counted exactly (the
	// backend-outage scenario: the generator gives every event its own span id).
	TrackUnique bool
	// MaxTracked bounds the records kept and the ids remembered (default 20M each); what
	// does not fit is counted in Overflow.
	MaxTracked int
}

// Sink is an in-process OTLP gRPC server standing in for imcol's backend. It can be taken
// down and brought back on the same address to simulate a backend outage, or stalled: it
// keeps the connections but answers no request until resumed, as an overloaded backend does.
type Sink struct {
	opts SinkOptions
	addr string
	now  func() time.Time

	mu      sync.Mutex
	srv     *grpc.Server
	serving chan struct{}
	records []Record
	unique  map[pcommon.SpanID]struct{}
	// stalled, while not nil, holds every request until it is closed (Resume).
	stalled chan struct{}

	spans, logs, points, outcomes, repeats, overflow atomic.Int64
	held, abandoned, maxHeld                         atomic.Int64
}

// Stall makes the sink hold every request without answering until Resume. A request whose
// client gives up meanwhile (its deadline passes, or it cancels) is answered with an error
// and not recorded: the client will send it again. Stalling a stalled sink does nothing.
func (s *Sink) Stall() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled == nil {
		s.stalled = make(chan struct{})
	}
}

// Resume answers the requests held since Stall, and every later one at once.
func (s *Sink) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalled != nil {
		close(s.stalled)
		s.stalled = nil
	}
}

// Stalls reports the requests held right now, the most held at once, and the requests
// abandoned by their client while held (answered with an error, not recorded).
func (s *Sink) Stalls() (held, maxHeld, abandoned int64) {
	return s.held.Load(), s.maxHeld.Load(), s.abandoned.Load()
}

// resumeGrace is how much of its deadline a held request must have left when the sink
// resumes to be recorded: closer to its deadline, the client may already have given up and
// will retry, so recording it too would count its items twice.
const resumeGrace = 100 * time.Millisecond

// hold blocks while the sink is stalled; it fails when the request's client gave up.
func (s *Sink) hold(ctx context.Context) error {
	s.mu.Lock()
	ch := s.stalled
	s.mu.Unlock()
	if ch == nil {
		return nil
	}
	n := s.held.Add(1)
	defer s.held.Add(-1)
	for {
		m := s.maxHeld.Load()
		if n <= m || s.maxHeld.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-ch:
	case <-ctx.Done():
		s.abandoned.Add(1)
		return status.Error(codes.Unavailable, "sink stalled; the client gave up")
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < resumeGrace {
		s.abandoned.Add(1)
		return status.Error(codes.Unavailable, "sink resumed too close to the request's deadline")
	}
	return nil
}

// NewSink listens on addr ("127.0.0.1:0" picks a port).
func NewSink(addr string, opts SinkOptions) (*Sink, error) {
	if opts.MaxTracked == 0 {
		opts.MaxTracked = 20_000_000
	}
	s := &Sink{opts: opts, addr: addr, now: time.Now}
	if opts.TrackUnique {
		s.unique = make(map[pcommon.SpanID]struct{})
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// Endpoint is the sink's host:port.
func (s *Sink) Endpoint() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Start (re)opens the listener on the sink's address.
func (s *Sink) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("sink: already serving")
	}
	lis, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	s.addr = lis.Addr().String()
	srv := grpc.NewServer()
	ptraceotlp.RegisterGRPCServer(srv, &traceService{s: s})
	plogotlp.RegisterGRPCServer(srv, &logService{s: s})
	pmetricotlp.RegisterGRPCServer(srv, &metricService{s: s})
	s.srv = srv
	done := make(chan struct{})
	s.serving = done
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	return nil
}

// Stop closes the listener and every connection, as a crashed backend would.
func (s *Sink) Stop() {
	s.mu.Lock()
	srv, done := s.srv, s.serving
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		srv.Stop()
		<-done
	}
}

// Counts returns the items received so far: spans, log records, metric data points, and the
// outcome records among the spans and log records.
func (s *Sink) Counts() (spans, logs, points, outcomes int64) {
	return s.spans.Load(), s.logs.Load(), s.points.Load(), s.outcomes.Load()
}

// Unique returns the distinct lifecycle span ids seen (TrackUnique), the items that repeated one, and
// the items not tracked because MaxTracked was reached.
func (s *Sink) Unique() (distinct int, repeats, overflow int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.unique), s.repeats.Load(), s.overflow.Load()
}

// Seen reports whether an item with this span id arrived (TrackUnique).
func (s *Sink) Seen(id pcommon.SpanID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.unique[id]
	return ok
}

// Records returns a copy of the outcome records kept so far.
func (s *Sink) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.records...)
}

func (s *Sink) keep(recs []Record, ids []pcommon.SpanID) {
	if len(recs) == 0 && len(ids) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		if len(s.records) >= s.opts.MaxTracked {
			s.overflow.Add(1)
			continue
		}
		s.records = append(s.records, r)
	}
	for _, id := range ids {
		if _, dup := s.unique[id]; dup {
			s.repeats.Add(1)
			continue
		}
		if len(s.unique) >= s.opts.MaxTracked {
			s.overflow.Add(1)
			continue
		}
		s.unique[id] = struct{}{}
	}
}

type traceService struct {
	ptraceotlp.UnimplementedGRPCServer
	s *Sink
}

func (t *traceService) Export(ctx context.Context, req ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	if err := t.s.hold(ctx); err != nil {
		return ptraceotlp.NewExportResponse(), err
	}
	r := t.s.receive("traces")
	td := req.Traces()
	t.s.spans.Add(int64(td.SpanCount()))
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, sp := range ss.Spans().All() {
				r.add(sp.Name(), sp.SpanID(), sp.Attributes())
			}
		}
	}
	r.done()
	return ptraceotlp.NewExportResponse(), nil
}

type logService struct {
	plogotlp.UnimplementedGRPCServer
	s *Sink
}

func (l *logService) Export(ctx context.Context, req plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	if err := l.s.hold(ctx); err != nil {
		return plogotlp.NewExportResponse(), err
	}
	r := l.s.receive("logs")
	ld := req.Logs()
	l.s.logs.Add(int64(ld.LogRecordCount()))
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				r.add(lr.EventName(), lr.SpanID(), lr.Attributes())
			}
		}
	}
	r.done()
	return plogotlp.NewExportResponse(), nil
}

// received gathers what one export request carries, spans or log records alike, so the
// sink's lock is taken once per request in done rather than once per item.
type received struct {
	s      *Sink
	signal string
	at     time.Time
	recs   []Record
	ids    []pcommon.SpanID
}

func (s *Sink) receive(signal string) received {
	return received{s: s, signal: signal, at: s.now()}
}

// add takes one span or log record: an outcome record is counted (and decoded when records
// are kept); any other item is remembered by span ID when uniqueness is tracked.
func (r *received) add(eventName string, id pcommon.SpanID, attrs pcommon.Map) {
	if eventName != imsemconv.OutcomeEventName {
		if r.s.opts.TrackUnique {
			r.ids = append(r.ids, id)
		}
		return
	}
	r.s.outcomes.Add(1)
	if r.s.opts.KeepRecords {
		r.recs = append(r.recs, decodeRecord(r.signal, attrs, r.at))
	}
}

func (r *received) done() { r.s.keep(r.recs, r.ids) }

type metricService struct {
	pmetricotlp.UnimplementedGRPCServer
	s *Sink
}

func (m *metricService) Export(ctx context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	if err := m.s.hold(ctx); err != nil {
		return pmetricotlp.NewExportResponse(), err
	}
	m.s.points.Add(int64(req.Metrics().DataPointCount()))
	return pmetricotlp.NewExportResponse(), nil
}

// decodeRecord reads an outcome record's attributes; a missing or ill-typed attribute
// yields an empty field, which validation reports as a mismatch rather than a crash.
func decodeRecord(signal string, a pcommon.Map, at time.Time) Record {
	r := Record{Signal: signal, At: at}
	str := func(k string) string {
		if v, ok := a.Get(k); ok && v.Type() == pcommon.ValueTypeStr {
			return v.Str()
		}
		return ""
	}
	r.Outcome = imsemconv.Outcome(str(imsemconv.AttrOutcome))
	r.Reason = imsemconv.LossReason(str(imsemconv.AttrLossReason))
	r.Stage = str(imsemconv.AttrLossStage)
	if r.Outcome == imsemconv.OutcomeDuplicate || r.Outcome == imsemconv.OutcomeLate {
		// For records about one event the event's own stage is the one that matters;
		// im.loss.stage, when present, keeps the stage at which the message was lost.
		if st := str(imsemconv.AttrStage); st != "" {
			r.Stage = st
		}
	}
	r.MessageID = str(imsemconv.AttrMessageID)
	r.ConversationID = str(imsemconv.AttrConversationID)
	r.Device = str(imsemconv.AttrRecipientDevice)
	if v, ok := a.Get(imsemconv.AttrSeq); ok && v.Type() == pcommon.ValueTypeInt {
		r.Seq, r.HasSeq = v.Int(), true
	}
	if v, ok := a.Get(imsemconv.AttrLossRetracted); ok && v.Type() == pcommon.ValueTypeBool {
		r.Retracted = v.Bool()
	}
	return r
}
