package sender

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/harness"
	"github.com/imcol/imcol/testbed/workload"
)

func planner(t *testing.T, messages int64, rate float64) (*faults.Planner, *faults.Book) {
	wc := workload.DefaultConfig()
	wc.Messages, wc.Rate, wc.OfflineShare = messages, rate, 0
	g, err := workload.NewGenerator(wc)
	require.NoError(t, err)
	book := faults.NewBook()
	p, err := faults.NewPlanner(g, faults.Config{Timeouts: faults.Timeouts{
		AckTimeout: time.Second, OfflineTimeout: 10 * time.Second, ReorderWindow: time.Second, TickInterval: 10 * time.Millisecond,
	}}, book)
	require.NoError(t, err)
	return p, book
}

func totalEvents(book *faults.Book) int64 {
	var n int64
	for _, tr := range book.All() {
		n += int64(tr.Events)
	}
	return n
}

func TestSendsEveryEventOverGRPC(t *testing.T) {
	sink, err := harness.NewSink("127.0.0.1:0", harness.SinkOptions{TrackUnique: true})
	require.NoError(t, err)
	defer sink.Stop()
	sig, err := ParseSignals("mixed")
	require.NoError(t, err)
	p, book := planner(t, 300, 3000)
	run, err := Start(context.Background(), Config{Endpoint: sink.Endpoint(), Signals: sig, Workers: 3, MaxBatch: 50}, p)
	require.NoError(t, err)
	stats, err := run.Wait()
	require.NoError(t, err)

	want := totalEvents(book)
	sent, accepted, rejected, failed := stats.Items()
	assert.Equal(t, want, sent)
	assert.Equal(t, want, accepted)
	assert.Zero(t, rejected+failed)
	assert.Equal(t, int64(300), stats.Messages)
	assert.Positive(t, stats.Sent[SignalTraces])
	assert.Positive(t, stats.Sent[SignalLogs])
	spans, logs, _, outcomes := sink.Counts()
	assert.Equal(t, stats.Sent[SignalTraces], spans)
	assert.Equal(t, stats.Sent[SignalLogs], logs)
	assert.Zero(t, outcomes)
	distinct, repeats, _ := sink.Unique()
	assert.Equal(t, want, int64(distinct), "every event has its own span id")
	assert.Zero(t, repeats)
}

// otlpHTTP is a minimal OTLP/HTTP server that can refuse requests.
type otlpHTTP struct {
	spans, logs atomic.Int64
	// status answers the n-th request (from 0) with a code; 200 when absent.
	status   func(n int64) int
	requests atomic.Int64
}

func (o *otlpHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := o.requests.Add(1) - 1
	body, _ := io.ReadAll(r.Body)
	if code := o.status(n); code != http.StatusOK {
		w.WriteHeader(code)
		return
	}
	switch r.URL.Path {
	case "/v1/traces":
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		o.spans.Add(int64(req.Traces().SpanCount()))
		out, _ := ptraceotlp.NewExportResponse().MarshalProto()
		_, _ = w.Write(out)
	case "/v1/logs":
		req := plogotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		o.logs.Add(int64(req.Logs().LogRecordCount()))
		out, _ := plogotlp.NewExportResponse().MarshalProto()
		_, _ = w.Write(out)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestHTTPRetriesUntilAccepted(t *testing.T) {
	srv := &otlpHTTP{status: func(n int64) int {
		if n < 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	p, book := planner(t, 50, 1000)
	sig, _ := ParseSignals("logs")
	run, err := Start(context.Background(), Config{Endpoint: strings.TrimPrefix(ts.URL, "http://"), Protocol: "http", Signals: sig}, p)
	require.NoError(t, err)
	stats, err := run.Wait()
	require.NoError(t, err)
	_, accepted, _, failed := stats.Items()
	assert.Equal(t, totalEvents(book), accepted)
	assert.Zero(t, failed)
	assert.Equal(t, int64(3), stats.Retries)
	assert.Equal(t, totalEvents(book), srv.logs.Load())
}

func TestPermanentErrorsAreNotRetried(t *testing.T) {
	srv := &otlpHTTP{status: func(int64) int { return http.StatusBadRequest }}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	p, book := planner(t, 20, 1000)
	run, err := Start(context.Background(), Config{Endpoint: strings.TrimPrefix(ts.URL, "http://"), Protocol: "http"}, p)
	require.NoError(t, err)
	stats, err := run.Wait()
	require.NoError(t, err)
	_, _, _, failed := stats.Items()
	assert.Equal(t, totalEvents(book), failed)
	assert.Zero(t, stats.Retries)
	assert.Contains(t, stats.LastError, "400")
}

func TestRetryGivesUpAfterTimeout(t *testing.T) {
	calls := 0
	n, err := retry(context.Background(), 50*time.Millisecond, func(context.Context) error {
		calls++
		return io.ErrUnexpectedEOF
	})
	require.ErrorContains(t, err, "gave up after 50ms")
	assert.Equal(t, calls-1, n)
	assert.Greater(t, calls, 1)
}

func TestCancelStopsTheRun(t *testing.T) {
	sink, err := harness.NewSink("127.0.0.1:0", harness.SinkOptions{})
	require.NoError(t, err)
	defer sink.Stop()
	p, _ := planner(t, 1_000_000, 10)
	ctx, cancel := context.WithCancel(context.Background())
	run, err := Start(ctx, Config{Endpoint: sink.Endpoint()}, p)
	require.NoError(t, err)
	cancel()
	_, err = run.Wait()
	assert.ErrorIs(t, err, context.Canceled)
}

func TestConfigValidate(t *testing.T) {
	for _, ep := range []string{"10.0.0.1:4317", "example.com:4317", "nohost"} {
		c := Config{Endpoint: ep}
		assert.Error(t, c.Validate(), ep)
	}
	for _, ep := range []string{"127.0.0.1:4317", "localhost:4317", "[::1]:4317"} {
		c := Config{Endpoint: ep}
		assert.NoError(t, c.Validate(), ep)
	}
	c := Config{Endpoint: "127.0.0.1:1", Protocol: "udp", Workers: -1}
	err := c.Validate()
	assert.ErrorContains(t, err, "protocol")
	assert.ErrorContains(t, err, "workers")
}

func TestParseSignals(t *testing.T) {
	s, err := ParseSignals("mixed")
	require.NoError(t, err)
	assert.Equal(t, "gateway=logs,msg=traces,transfer=traces,push=logs", s.String())
	back, err := ParseSignals(s.String())
	require.NoError(t, err)
	assert.Equal(t, s, back)
	_, err = ParseSignals("gateway=metrics")
	assert.ErrorContains(t, err, "want traces or logs")
	_, err = ParseSignals("db=logs")
	assert.ErrorContains(t, err, "is not service=")
}

func TestBuildCarriesTheConventions(t *testing.T) {
	p, _ := planner(t, 1, 1)
	_, evts, ok := p.Next()
	require.True(t, ok)
	base := time.Unix(1_700_000_000, 0)
	evts[2].Failed, evts[2].StatusMessage = true, "msg_insert_redis_failed"
	td := buildTraces(evts, base)
	ld := buildLogs(evts, base)
	require.Equal(t, len(evts), td.SpanCount())
	require.Equal(t, len(evts), ld.LogRecordCount())

	services := map[string]bool{}
	i := 0
	for _, rs := range td.ResourceSpans().All() {
		name, _ := rs.Resource().Attributes().Get("service.name")
		services[name.Str()] = true
		for _, sp := range rs.ScopeSpans().At(0).Spans().All() {
			assert.Equal(t, evts[0].Msg.TraceID, sp.TraceID(), "a message's spans share its trace")
			assert.False(t, sp.SpanID().IsEmpty())
			id, _ := sp.Attributes().Get(imsemconv.AttrMessageID)
			assert.Equal(t, evts[0].Msg.ID, id.Str())
			if st, ok := sp.Attributes().Get(imsemconv.AttrStage); ok && st.Str() == "persist" {
				seq, ok := sp.Attributes().Get(imsemconv.AttrSeq)
				require.True(t, ok)
				assert.Equal(t, pcommon.ValueTypeInt, seq.Type())
				assert.Equal(t, ptrace.StatusCodeError, sp.Status().Code())
			}
			i++
		}
	}
	assert.Equal(t, len(evts), i)
	assert.True(t, services["im-gateway"] && services["im-msg"] && services["im-transfer"] && services["im-push"], "%v", services)

	errors := 0
	for _, rl := range ld.ResourceLogs().All() {
		for _, lr := range rl.ScopeLogs().At(0).LogRecords().All() {
			assert.NotEmpty(t, lr.EventName())
			assert.False(t, lr.SpanID().IsEmpty(), "log records carry their event's span id")
			if lr.SeverityNumber() == plog.SeverityNumberError {
				errors++
				assert.Equal(t, "msg_insert_redis_failed", lr.Body().Str())
			}
		}
	}
	assert.Equal(t, 1, errors)
}

func TestStatsRate(t *testing.T) {
	assert.Equal(t, 100.0, Stats{Messages: 101, LastStart: time.Second}.Rate())
	assert.Zero(t, Stats{Messages: 1, LastStart: time.Second}.Rate())
}

// TestLagHoldsOneServiceBack: with the push service lagged, its events reach the collector
// that much later than the others, with their own timestamps.
func TestLagHoldsOneServiceBack(t *testing.T) {
	sink, err := harness.NewSink("127.0.0.1:0", harness.SinkOptions{TrackUnique: true})
	require.NoError(t, err)
	defer sink.Stop()
	p, book := planner(t, 20, 200)
	lags, err := workload.ParseLags("push=400ms/0s")
	require.NoError(t, err)
	begin := time.Now()
	run, err := Start(context.Background(), Config{Endpoint: sink.Endpoint(), Lags: lags}, p)
	require.NoError(t, err)
	stats, err := run.Wait()
	require.NoError(t, err)
	_, accepted, _, _ := stats.Items()
	assert.Equal(t, totalEvents(book), accepted)
	// The last message starts at 95ms; its push leaves 400ms later.
	assert.GreaterOrEqual(t, time.Since(begin), 450*time.Millisecond)
	assert.Error(t, (&Config{Endpoint: "127.0.0.1:1", Lags: workload.Lags{{Delay: -time.Second}}}).Validate())
}
