package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/internal/testcollector"
	"github.com/imcol/imcol/testbed/faults"
	"github.com/imcol/imcol/testbed/workload"
)

func exportTraces(t *testing.T, endpoint string, td ptrace.Traces) error {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = ptraceotlp.NewGRPCClient(conn).Export(ctx, ptraceotlp.NewExportRequestFromTraces(td))
	return err
}

func outcomeTraces() ptrace.Traces {
	td := ptrace.NewTraces()
	spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	life := spans.AppendEmpty()
	life.SetName("gateway.Ack")
	life.SetSpanID([8]byte{1})
	o := spans.AppendEmpty()
	o.SetName(imsemconv.OutcomeEventName)
	o.SetSpanID([8]byte{2})
	o.Attributes().PutStr(imsemconv.AttrOutcome, "late")
	o.Attributes().PutStr(imsemconv.AttrStage, "ack")
	o.Attributes().PutStr(imsemconv.AttrLossStage, "deliver")
	o.Attributes().PutStr(imsemconv.AttrLossReason, "ack_timeout")
	o.Attributes().PutStr(imsemconv.AttrMessageID, "m1")
	gap := spans.AppendEmpty()
	gap.SetName(imsemconv.OutcomeEventName)
	gap.Attributes().PutStr(imsemconv.AttrOutcome, "lost")
	gap.Attributes().PutStr(imsemconv.AttrLossStage, "persist")
	gap.Attributes().PutStr(imsemconv.AttrLossReason, "seq_gap")
	gap.Attributes().PutStr(imsemconv.AttrConversationID, "c1")
	gap.Attributes().PutInt(imsemconv.AttrSeq, 7)
	hostile := spans.AppendEmpty()
	hostile.SetName(imsemconv.OutcomeEventName)
	hostile.Attributes().PutInt(imsemconv.AttrOutcome, 3) // ill-typed: decoded as empty, never a crash
	return td
}

func TestSinkDecodesOutcomesAndSurvivesAnOutage(t *testing.T) {
	sink, err := NewSink("127.0.0.1:0", SinkOptions{KeepRecords: true, TrackUnique: true})
	require.NoError(t, err)
	defer sink.Stop()
	require.NoError(t, exportTraces(t, sink.Endpoint(), outcomeTraces()))

	recs := sink.Records()
	require.Len(t, recs, 3)
	assert.Equal(t, Record{Signal: "traces", Outcome: "late", Reason: "ack_timeout", Stage: "ack", MessageID: "m1", At: recs[0].At}, recs[0],
		"a late record is keyed by the late event's stage")
	assert.Equal(t, Record{Signal: "traces", Outcome: "lost", Reason: "seq_gap", Stage: "persist", ConversationID: "c1", Seq: 7, HasSeq: true, At: recs[1].At}, recs[1])
	assert.Empty(t, recs[2].Outcome)
	spans, logs, _, outcomes := sink.Counts()
	assert.Equal(t, int64(4), spans)
	assert.Zero(t, logs)
	assert.Equal(t, int64(3), outcomes)
	distinct, _, _ := sink.Unique()
	assert.Equal(t, 1, distinct, "only lifecycle items are tracked")
	assert.True(t, sink.Seen([8]byte{1}))

	addr := sink.Endpoint()
	sink.Stop()
	assert.Error(t, exportTraces(t, addr, outcomeTraces()), "a stopped sink refuses connections")
	require.NoError(t, sink.Start())
	assert.Equal(t, addr, sink.Endpoint(), "the sink comes back on the same address")
	require.NoError(t, exportTraces(t, addr, outcomeTraces()))
	distinct, repeats, _ := sink.Unique()
	assert.Equal(t, 1, distinct)
	assert.Equal(t, int64(1), repeats)

	ld := plog.NewLogs()
	lr := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty()
	lr.SetEventName(imsemconv.OutcomeEventName)
	lr.Attributes().PutStr(imsemconv.AttrOutcome, "delivered")
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	_, err = plogotlp.NewGRPCClient(conn).Export(context.Background(), plogotlp.NewExportRequestFromLogs(ld))
	require.NoError(t, err)
	recs = sink.Records()
	assert.Equal(t, "logs", recs[len(recs)-1].Signal)
	assert.Equal(t, imsemconv.OutcomeDelivered, recs[len(recs)-1].Outcome)
}

func TestSinkBoundsWhatItKeeps(t *testing.T) {
	sink, err := NewSink("127.0.0.1:0", SinkOptions{KeepRecords: true, TrackUnique: true, MaxTracked: 1})
	require.NoError(t, err)
	defer sink.Stop()
	require.NoError(t, exportTraces(t, sink.Endpoint(), outcomeTraces()))
	assert.Len(t, sink.Records(), 1)
	_, _, overflow := sink.Unique()
	assert.Equal(t, int64(2), overflow)
}

const exposition = `# HELP otelcol_exporter_send_failed_spans_total x
# TYPE otelcol_exporter_send_failed_spans_total counter
otelcol_exporter_send_failed_spans_total{exporter="otlp_grpc/sink"} 3
# TYPE otelcol_exporter_sent_spans_total counter
otelcol_exporter_sent_spans_total{exporter="a"} 10
otelcol_exporter_sent_spans_total{exporter="b"} 5
# TYPE otelcol_receiver_refused_log_records_total counter
otelcol_receiver_refused_log_records_total{receiver="otlp"} 0
# TYPE otelcol_processor_im_loss_outcomes_total counter
otelcol_processor_im_loss_outcomes_total{outcome="lost",reason="seq_gap",stage="persist"} 2
otelcol_processor_im_loss_outcomes_total{outcome="delivered",reason="",stage="ack"} 7
# TYPE lat histogram
lat_bucket{le="+Inf"} 4
lat_sum 1
lat_count 4
`

func TestScrape(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, exposition)
	}))
	defer ts.Close()
	fams, err := Scrape(context.Background(), ts.URL)
	require.NoError(t, err)
	assert.Equal(t, 15.0, fams.Sum("otelcol_exporter_sent_spans_total", nil))
	assert.Equal(t, 5.0, fams.Sum("otelcol_exporter_sent_spans_total", map[string]string{"exporter": "b"}))
	assert.Equal(t, 0.0, fams.Sum("missing", nil))
	assert.Equal(t, 4.0, fams.Sum("lat", nil))
	assert.Equal(t, map[string]float64{"lost": 2, "delivered": 7}, fams.ByLabel("otelcol_processor_im_loss_outcomes_total", "outcome", nil))
	assert.Equal(t, map[string]float64{"otelcol_exporter_send_failed_spans_total": 3}, fams.Drops(), "only non-zero drop counters")
	assert.Len(t, fams.Matching(regexp.MustCompile(`^otelcol_exporter_`)), 2)
	assert.True(t, fams.Has("lat"))

	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNotFound) }))
	defer bad.Close()
	_, err = Scrape(context.Background(), bad.URL)
	assert.ErrorContains(t, err, "404")
}

func TestMonitorSummarises(t *testing.T) {
	cpu := []float64{10, 10.5, 12, 12}
	rss := []uint64{100, 300, 200, 200}
	i := 0
	m := newMonitor(func() (float64, uint64, error) {
		if i >= len(cpu) {
			return 0, 0, errors.New("process gone")
		}
		c, r := cpu[i], rss[i]
		i++
		return c, r, nil
	})
	t0 := time.Unix(1000, 0)
	for k := range 5 {
		m.Record(t0.Add(time.Duration(k) * time.Second))
	}
	require.Len(t, m.Samples(), 4, "a failed reading adds nothing")
	u := m.Usage(t0, t0.Add(time.Hour))
	assert.Equal(t, Usage{Samples: 4, CPUSeconds: 2, CPUAvg: 100 * 2.0 / 3, CPUMax: 150, RSSAvg: 200, RSSMax: 300}, u)
	u = m.Usage(t0.Add(time.Second), t0.Add(2*time.Second))
	assert.Equal(t, Usage{Samples: 2, CPUSeconds: 1.5, CPUAvg: 150, CPUMax: 150, RSSAvg: 250, RSSMax: 300}, u)
	assert.Equal(t, Usage{}, m.Usage(t0.Add(time.Hour), t0.Add(2*time.Hour)))
}

func TestMonitorSamplesARealProcess(t *testing.T) {
	m, err := NewMonitor(int32(os.Getpid()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.Start(ctx, 10*time.Millisecond)
	wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	require.NoError(t, testcollector.Eventually(wait, 10*time.Millisecond, func() error {
		if n := len(m.Samples()); n < 3 {
			return fmt.Errorf("%d samples", n)
		}
		return nil
	}))
	s := m.Samples()
	assert.Positive(t, s[len(s)-1].RSS)
	assert.GreaterOrEqual(t, s[len(s)-1].CPU, s[0].CPU)
}

// book plans messages with every fault class and returns the truth.
func book(t *testing.T, seed uint64) *faults.Book {
	wc := workload.DefaultConfig()
	wc.Seed, wc.Messages, wc.OfflineShare = seed, 400, 0.05
	wc.OfflineReconnectMin, wc.OfflineReconnectMax = 4*time.Second, 5*time.Second
	g, err := workload.NewGenerator(wc)
	require.NoError(t, err)
	b := faults.NewBook()
	probs := map[faults.Class]float64{}
	for _, c := range faults.Faults {
		probs[c] = 0.05
	}
	p, err := faults.NewPlanner(g, faults.Config{Probability: probs, Timeouts: faults.Timeouts{
		AckTimeout: 3 * time.Second, OfflineTimeout: 9 * time.Second, ReorderWindow: 3 * time.Second, TickInterval: 100 * time.Millisecond, Margin: time.Second,
	}}, b)
	require.NoError(t, err)
	for {
		if _, _, ok := p.Next(); !ok {
			return b
		}
	}
}

// perfect returns the records a flawless processor would emit for the truth.
func perfect(b *faults.Book, start time.Time) []Record {
	var recs []Record
	for _, tr := range b.All() {
		for _, l := range tr.Labels {
			r := Record{Outcome: l.Outcome, Reason: l.Reason, Stage: l.Stage.String(), MessageID: tr.MessageID,
				ConversationID: tr.Conversation.ID, Retracted: l.Retracted, At: start.Add(tr.FirstDue + 3*time.Second)}
			if l.BySeq() {
				// A seq gap's loss and its retraction name the conversation and seq only.
				r.MessageID, r.Seq, r.HasSeq = "", tr.Seq, true
			}
			if l.Outcome == imsemconv.OutcomeLate && r.Reason == "" {
				r.Reason = imsemconv.ReasonAckTimeout // the earlier loss's reason, which the label ignores
			}
			recs = append(recs, r)
		}
	}
	return recs
}

func TestValidateExact(t *testing.T) {
	b := book(t, 7)
	start := time.Unix(2000, 0)
	v := Validate(b, 7, start, perfect(b, start))
	require.True(t, v.Exact(), "%s\n%v", v.Summary(), v.Examples)
	q, ok := v.Quality("lost/seq_gap@persist")
	require.True(t, ok)
	assert.Positive(t, q.TP)
	assert.Equal(t, 1.0, q.Precision)
	assert.Equal(t, 3000.0, q.Latency.P50)
	for _, f := range v.Faults {
		assert.Equal(t, f.Messages, f.Exact, "%s", f.Class)
	}
	var diag int64
	for exp, row := range v.Confusion {
		diag += row[exp]
	}
	assert.Equal(t, v.Messages, diag, "a perfect run is all on the diagonal")
}

func TestValidateCountsEveryKindOfMistake(t *testing.T) {
	b := book(t, 8)
	start := time.Unix(2000, 0)
	recs := perfect(b, start)
	// Miss the first delivered record, claim a loss for the message instead, repeat a
	// record, and add one for a message that was never planned.
	i := 0
	for recs[i].Outcome != imsemconv.OutcomeDelivered {
		i++
	}
	wrong := recs[i]
	wrong.Outcome, wrong.Reason, wrong.Stage = imsemconv.OutcomeLost, imsemconv.ReasonAckTimeout, "deliver"
	recs[i] = wrong
	recs = append(recs, recs[0], Record{Outcome: "lost", Reason: "ack_timeout", Stage: "send", MessageID: "msg-zz-1"})
	v := Validate(b, 8, start, recs)
	assert.False(t, v.Exact())
	d, _ := v.Quality("delivered@ack")
	assert.Equal(t, int64(1), d.FN)
	assert.Less(t, d.Recall, 1.0)
	l, _ := v.Quality("lost/ack_timeout@deliver")
	assert.Equal(t, int64(1), l.FP)
	assert.Less(t, l.Precision, 1.0)
	assert.Equal(t, int64(1), v.Repeats)
	assert.Equal(t, int64(1), v.Unmatched)
	assert.Equal(t, int64(1), v.Confusion["delivered@ack"]["lost/ack_timeout@deliver"])
	assert.NotEmpty(t, v.Examples)
}

func TestSessionBehavesLikeATest(t *testing.T) {
	var out bytes.Buffer
	var order []string
	var dir string
	err := RunSession(context.Background(), "demo", &out, func(tb testing.TB) {
		dir = tb.TempDir()
		tb.Cleanup(func() { order = append(order, "first") })
		tb.Cleanup(func() { order = append(order, "second") })
		tb.Logf("hello %d", 1)
		tb.Fatalf("boom %s", "here")
		order = append(order, "unreachable")
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "boom here")
	assert.Equal(t, []string{"second", "first"}, order, "cleanups run last-in first-out after Fatal")
	assert.Contains(t, out.String(), "demo: hello 1")
	_, statErr := os.Stat(dir)
	assert.True(t, os.IsNotExist(statErr), "temp dirs are removed")

	assert.NoError(t, RunSession(context.Background(), "ok", &out, func(tb testing.TB) {
		tb.Log("fine")
		assert.False(t, tb.Failed())
	}))
	assert.NoError(t, RunSession(context.Background(), "skip", &out, func(tb testing.TB) { tb.Skip("not here") }))
	assert.Contains(t, out.String(), "skip: not here")
}

func TestScrapeFindsCountersWithOrWithoutTotal(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# TYPE otelcol_exporter_sent_spans counter\notelcol_exporter_sent_spans 4\n# TYPE a_total counter\na_total 2\n")
	}))
	defer ts.Close()
	fams, err := Scrape(context.Background(), ts.URL)
	require.NoError(t, err)
	assert.Equal(t, 4.0, fams.Sum("otelcol_exporter_sent_spans_total", nil))
	assert.Equal(t, 2.0, fams.Sum("a", nil))
	assert.True(t, fams.Has("a_total"))
}

func TestValidateSignalsJudgesEachSignalAlone(t *testing.T) {
	b := book(t, 9)
	start := time.Unix(2000, 0)
	var recs []Record
	for _, r := range perfect(b, start) {
		r.Signal = "traces"
		recs = append(recs, r)
	}
	// The log records miss the last record.
	for _, r := range recs[:len(recs)-1] {
		r.Signal = "logs"
		recs = append(recs, r)
	}
	vs := ValidateSignals(b, 9, start, recs, []string{"traces", "logs"})
	require.Len(t, vs, 2)
	assert.Equal(t, "traces", vs[0].Signal)
	assert.True(t, vs[0].Exact(), vs[0].Summary())
	assert.False(t, vs[1].Exact())
	assert.False(t, vs.Exact())
	assert.Contains(t, vs.Summary(), "logs: ")
	assert.NotEmpty(t, vs.Examples())
	assert.False(t, Validations{}.Exact(), "no signal validated is not exact")
}

// TestRetractionRecordsAreTheirOwnLabel: a late record with im.loss.retracted=true is the
// retraction the truth of late_events expects, distinct from the ordinary late record.
func TestRetractionRecordsAreTheirOwnLabel(t *testing.T) {
	sink, err := NewSink("127.0.0.1:0", SinkOptions{KeepRecords: true})
	require.NoError(t, err)
	defer sink.Stop()
	td := outcomeTraces()
	o := td.ResourceSpans().At(0).ScopeSpans().At(0).Spans().At(1)
	o.Attributes().PutBool(imsemconv.AttrLossRetracted, true)
	require.NoError(t, exportTraces(t, sink.Endpoint(), td))
	recs := sink.Records()
	require.True(t, recs[0].Retracted)
	assert.Equal(t, "late@ack(retracted)", labelOf(recs[0]))
	assert.False(t, recs[1].Retracted)
	recs[0].Retracted = false
	assert.Equal(t, "late@ack", labelOf(recs[0]))

	b := book(t, 9)
	start := time.Unix(2000, 0)
	perf := perfect(b, start)
	retractions := 0
	for i := range perf {
		if labelOf(perf[i]) == "late@ack(retracted)" {
			retractions++
		}
	}
	require.Positive(t, retractions, "late_events expect retractions")
	v := Validate(b, 9, start, perf)
	require.True(t, v.Exact(), "%s", v.Summary())
	// A processor that forgets the flag misses every retraction and claims repeated late@ack
	// records instead.
	for i := range perf {
		perf[i].Retracted = false
	}
	v = Validate(b, 9, start, perf)
	q, ok := v.Quality("late@ack(retracted)")
	require.True(t, ok)
	assert.Equal(t, int64(retractions), q.FN)
	assert.False(t, v.Exact())
	det := Detections(b, 9, perfect(b, start))
	assert.Len(t, det, int(b.Len()))
}

// TestSinkStallHoldsRequestsAndDropsAbandonedOnes: while stalled the sink answers nothing; a
// request whose client gives up is not recorded; the held ones are recorded on Resume.
func TestSinkStallHoldsRequestsAndDropsAbandonedOnes(t *testing.T) {
	sink, err := NewSink("127.0.0.1:0", SinkOptions{KeepRecords: true})
	require.NoError(t, err)
	defer sink.Stop()
	sink.Stall()
	sink.Stall() // idempotent
	conn, err := grpc.NewClient(sink.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := ptraceotlp.NewGRPCClient(conn)

	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = client.Export(short, ptraceotlp.NewExportRequestFromTraces(outcomeTraces()))
	require.Error(t, err, "a stalled sink does not answer")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := client.Export(ctx, ptraceotlp.NewExportRequestFromTraces(outcomeTraces()))
		done <- err
	}()
	require.NoError(t, testcollector.Eventually(context.Background(), 10*time.Millisecond, func() error {
		if held, _, _ := sink.Stalls(); held != 1 {
			return fmt.Errorf("%d requests held", held)
		}
		return nil
	}))
	spans, _, _, outcomes := sink.Counts()
	assert.Zero(t, spans+outcomes, "nothing recorded while stalled")
	sink.Resume()
	require.NoError(t, <-done)
	spans, _, _, outcomes = sink.Counts()
	assert.Equal(t, int64(4), spans, "the held request is recorded once; the abandoned one never")
	assert.Equal(t, int64(3), outcomes)
	held, maxHeld, abandoned := sink.Stalls()
	assert.Zero(t, held)
	assert.Equal(t, int64(1), maxHeld)
	assert.Equal(t, int64(1), abandoned)
	require.NoError(t, exportTraces(t, sink.Endpoint(), outcomeTraces()), "a resumed sink answers at once")
}

// TestSeqGapRetractionIsMatchedBySeq: a late message's seq loss and its retraction name the
// conversation and seq only (no message id); with both, the message's verdict is its own
// delivery. A processor that never takes the seq loss back misses the retraction and shows
// as delivered and lost at once; one that forgets the flag reports a plain late record.
func TestSeqGapRetractionIsMatchedBySeq(t *testing.T) {
	b := book(t, 11)
	start := time.Unix(2000, 0)
	late := 0
	for _, tr := range b.All() {
		if tr.Class == faults.ClassLateMessage {
			late++
		}
	}
	require.Positive(t, late, "the book holds late messages")
	recs := perfect(b, start)
	retraction := faults.SeqGapRetraction().String()
	for _, r := range recs {
		if labelOf(r) == retraction {
			require.Empty(t, r.MessageID)
			require.True(t, r.HasSeq)
			require.Equal(t, imsemconv.ReasonSeqGap, r.Reason)
		}
	}
	v := Validate(b, 11, start, recs)
	require.True(t, v.Exact(), "%s\n%v", v.Summary(), v.Examples)
	q, ok := v.Quality(retraction)
	require.True(t, ok)
	assert.Equal(t, int64(late), q.TP)
	assert.Zero(t, v.Confusion["delivered@ack"]["conflicting"])

	var kept, unflagged []Record
	for _, r := range recs {
		if labelOf(r) != retraction {
			kept = append(kept, r)
			unflagged = append(unflagged, r)
			continue
		}
		r.Retracted = false
		unflagged = append(unflagged, r)
	}
	v = Validate(b, 11, start, kept)
	q, _ = v.Quality(retraction)
	assert.Equal(t, int64(late), q.FN)
	assert.Equal(t, int64(late), v.Confusion["delivered@ack"]["conflicting"], "delivered, and its seq lost for good")
	v = Validate(b, 11, start, unflagged)
	q, _ = v.Quality("late@persist")
	assert.Equal(t, int64(late), q.FP)
	assert.False(t, v.Exact())
}
