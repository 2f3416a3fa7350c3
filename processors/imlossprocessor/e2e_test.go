package imlossprocessor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/internal/testcollector"
)

// The end-to-end test runs the real bin/imcol with im_loss in a traces and a logs pipeline,
// sends the lifecycles of a few hundred messages with known injected faults over OTLP, and
// requires the outcome records, in both signals, to be exactly the injected ones.

const e2eConfig = `
extensions:
  health_check:
    endpoint: ${env:E2E_HEALTH}
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${env:E2E_OTLP}
processors:
  im_loss:
    ack_timeout: 3s
    offline_timeout: 8s
    reorder_window: 3s
    tick_interval: 100ms
    # Each phase is one burst followed by silence: its last verdicts come from the
    # max_source_lag cap, which must leave the offline device time to return before 8s.
    allowed_lateness: 200ms
    source_idle_timeout: 3s
    max_source_lag: 2s
  batch:
    timeout: 100ms
exporters:
  otlp_http:
    endpoint: http://${env:E2E_SINK}
    compression: none
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: [im_loss, batch]
      exporters: [otlp_http]
    logs:
      receivers: [otlp]
      processors: [im_loss, batch]
      exporters: [otlp_http]
`

// outcomeSink is an OTLP/HTTP server collecting the outcome records the collector exports.
type outcomeSink struct {
	mu     sync.Mutex
	traces []string
	logs   []string
}

func (s *outcomeSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var resp []byte
	switch r.URL.Path {
	case "/v1/traces":
		req := ptraceotlp.NewExportRequest()
		if err = req.UnmarshalProto(body); err == nil {
			s.addTraces(req.Traces())
			resp, err = ptraceotlp.NewExportResponse().MarshalProto()
		}
	case "/v1/logs":
		req := plogotlp.NewExportRequest()
		if err = req.UnmarshalProto(body); err == nil {
			s.addLogs(req.Logs())
			resp, err = plogotlp.NewExportResponse().MarshalProto()
		}
	default:
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(resp)
}

func (s *outcomeSink) addTraces(td ptrace.Traces) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range td.ResourceSpans().All() {
		for _, ss := range rs.ScopeSpans().All() {
			for _, span := range ss.Spans().All() {
				if span.Name() == imsemconv.OutcomeEventName {
					s.traces = append(s.traces, recordKey(span.Attributes()))
				}
			}
		}
	}
}

func (s *outcomeSink) addLogs(ld plog.Logs) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rl := range ld.ResourceLogs().All() {
		for _, sl := range rl.ScopeLogs().All() {
			for _, lr := range sl.LogRecords().All() {
				if lr.EventName() == imsemconv.OutcomeEventName {
					s.logs = append(s.logs, recordKey(lr.Attributes()))
				}
			}
		}
	}
}

func (s *outcomeSink) snapshot() (traces, logs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.traces), slices.Clone(s.logs)
}

// recordKey identifies an outcome record by everything the test injects.
func recordKey(m pcommon.Map) string {
	return strings.Join([]string{
		attr(m, imsemconv.AttrOutcome), attr(m, imsemconv.AttrMessageID), attr(m, imsemconv.AttrConversationID),
		attr(m, imsemconv.AttrLossReason), attr(m, imsemconv.AttrLossStage), attr(m, imsemconv.AttrStage),
		attr(m, imsemconv.AttrRecipientDevice), attr(m, imsemconv.AttrSeq),
	}, "|")
}

func key(outcome, msg, conv, reason, lossStage, stage, dev string, seq int64) string {
	s := ""
	if seq > 0 {
		s = strconv.FormatInt(seq, 10)
	}
	return strings.Join([]string{outcome, msg, conv, reason, lossStage, stage, dev, s}, "|")
}

// scenario holds the events to send in each phase and the outcomes they must produce.
type scenario struct {
	phases   [3][]lc // baselines; the shuffled bulk; events after losses were declared
	expected [3][]string
	seq      map[string]int64
}

func (sc *scenario) nextSeq(conv string) int64 {
	sc.seq[conv]++
	return sc.seq[conv]
}

func delivered(msg, conv string) string { return key("delivered", msg, conv, "", "", "", "", 0) }

func lost(msg, conv, reason string, stage imsemconv.Stage, dev string) string {
	return key("lost", msg, conv, reason, stage.String(), "", dev, 0)
}

// buildScenario injects one of each fault in turn over 20 single chats and 5 groups.
func buildScenario(messages int) *scenario {
	sc := &scenario{seq: map[string]int64{}}
	var convs []string
	for i := range 20 {
		convs = append(convs, fmt.Sprintf("s%02d", i))
	}
	for i := range 5 {
		convs = append(convs, fmt.Sprintf("g%d", i))
	}
	full := func(phase int, msg, conv string, seq int64) {
		sc.phases[phase] = append(sc.phases[phase],
			lc{stage: send, msg: msg, conv: conv},
			lc{stage: persist, msg: msg, conv: conv, seq: seq, at: time.Millisecond},
			lc{stage: push, msg: msg, conv: conv, fanout: 1, at: 2 * time.Millisecond},
			lc{stage: deliver, msg: msg, conv: conv, dev: "d1", at: 3 * time.Millisecond},
			lc{stage: ack, msg: msg, conv: conv, dev: "d1", at: 4 * time.Millisecond})
	}
	// Phase 0: a baseline seq per conversation, so that gaps in the shuffled bulk are visible.
	for _, c := range convs {
		msg := c + "-base"
		full(0, msg, c, sc.nextSeq(c))
		sc.expected[0] = append(sc.expected[0], delivered(msg, c))
	}
	singles := []string{"ok", "reversed", "lost-send", "lost-persist", "lost-push", "lost-deliver", "dup", "gap",
		"persist-failed", "persist-retried", "offline-later", "offline-never", "late", "ok"}
	groups := []string{"group-ok", "group-partial", "gap", "group-ok"}
	add := func(evs ...lc) { sc.phases[1] = append(sc.phases[1], evs...) }
	expect := func(phase int, k string) { sc.expected[phase] = append(sc.expected[phase], k) }
	for i := range messages {
		c := convs[i%len(convs)]
		kind := singles[(i/len(convs))%len(singles)]
		if strings.HasPrefix(c, "g") {
			kind = groups[(i/len(convs))%len(groups)]
		}
		msg := fmt.Sprintf("%s-%03d-%s", c, i, kind)
		switch kind {
		case "ok":
			full(1, msg, c, sc.nextSeq(c))
			expect(1, delivered(msg, c))
		case "reversed":
			start := len(sc.phases[1])
			full(1, msg, c, sc.nextSeq(c))
			slices.Reverse(sc.phases[1][start:])
			expect(1, delivered(msg, c))
		case "lost-send":
			add(lc{stage: send, msg: msg, conv: c})
			expect(1, lost(msg, c, "ack_timeout", send, ""))
		case "lost-persist":
			add(lc{stage: send, msg: msg, conv: c}, lc{stage: persist, msg: msg, conv: c, seq: sc.nextSeq(c)})
			expect(1, lost(msg, c, "ack_timeout", persist, ""))
		case "lost-push":
			add(lc{stage: send, msg: msg, conv: c}, lc{stage: persist, msg: msg, conv: c, seq: sc.nextSeq(c)},
				lc{stage: push, msg: msg, conv: c, fanout: 1})
			expect(1, lost(msg, c, "ack_timeout", push, ""))
		case "lost-deliver":
			add(lc{stage: send, msg: msg, conv: c}, lc{stage: persist, msg: msg, conv: c, seq: sc.nextSeq(c)},
				lc{stage: push, msg: msg, conv: c, fanout: 1}, lc{stage: deliver, msg: msg, conv: c, dev: "d1"})
			expect(1, lost(msg, c, "ack_timeout", deliver, "d1"))
		case "dup":
			full(1, msg, c, sc.nextSeq(c))
			add(lc{stage: deliver, msg: msg, conv: c, dev: "d1", at: 5 * time.Millisecond})
			expect(1, delivered(msg, c))
			expect(1, key("duplicate", msg, c, "", "", "deliver", "d1", 0))
		case "gap":
			// Never reported anywhere: only the seq it took shows the loss.
			seq := sc.nextSeq(c)
			expect(1, key("lost", "", c, "seq_gap", "persist", "", "", seq))
		case "persist-failed":
			add(lc{stage: send, msg: msg, conv: c}, lc{stage: persist, msg: msg, conv: c, seq: sc.nextSeq(c), failed: true})
			expect(1, lost(msg, c, "stage_failed", persist, ""))
		case "persist-retried":
			seq := sc.nextSeq(c)
			add(lc{stage: persist, msg: msg, conv: c, seq: seq, failed: true})
			full(1, msg, c, seq)
			expect(1, delivered(msg, c))
		case "offline-later":
			add(lc{stage: send, msg: msg, conv: c}, lc{stage: persist, msg: msg, conv: c, seq: sc.nextSeq(c)},
				lc{stage: push, msg: msg, conv: c, fanout: 1, dev: "d1", offline: true})
			sc.phases[2] = append(sc.phases[2], lc{stage: deliver, msg: msg, conv: c, dev: "d1"}, lc{stage: ack, msg: msg, conv: c, dev: "d1"})
			expect(2, delivered(msg, c))
		case "offline-never":
			add(lc{stage: send, msg: msg, conv: c}, lc{stage: persist, msg: msg, conv: c, seq: sc.nextSeq(c)},
				lc{stage: push, msg: msg, conv: c, fanout: 1, dev: "d1", offline: true})
			expect(2, lost(msg, c, "ack_timeout", push, "d1"))
		case "late":
			add(lc{stage: send, msg: msg, conv: c}, lc{stage: persist, msg: msg, conv: c, seq: sc.nextSeq(c)},
				lc{stage: push, msg: msg, conv: c, fanout: 1})
			expect(1, lost(msg, c, "ack_timeout", push, ""))
			// One late event: with several, which arrives first (and names the stage) would
			// depend on which pipeline delivers first.
			sc.phases[2] = append(sc.phases[2], lc{stage: ack, msg: msg, conv: c, dev: "d1"})
			expect(2, key("late", msg, c, "ack_timeout", "push", "ack", "d1", 0))
		case "group-ok", "group-partial":
			add(lc{stage: send, msg: msg, conv: c}, lc{stage: persist, msg: msg, conv: c, seq: sc.nextSeq(c)})
			for _, d := range []string{"a", "b", "c"} {
				add(lc{stage: push, msg: msg, conv: c, fanout: 3, dev: d}, lc{stage: deliver, msg: msg, conv: c, dev: d})
				if kind == "group-ok" || d != "c" {
					add(lc{stage: ack, msg: msg, conv: c, dev: d, at: 20 * time.Millisecond})
				}
			}
			if kind == "group-ok" {
				expect(1, delivered(msg, c))
			} else {
				expect(1, lost(msg, c, "ack_timeout", deliver, "c"))
			}
		}
	}
	// Close every conversation with a delivered message so no gap sits at the end.
	for _, c := range convs {
		msg := c + "-close"
		full(1, msg, c, sc.nextSeq(c))
		expect(1, delivered(msg, c))
	}
	return sc
}

// sendMixed sends events in batches, each event as a span or a log record at random: one
// message's stages arrive through both pipelines.
func sendMixed(ctx context.Context, t *testing.T, endpoint string, r *rand.Rand, evs []lc) {
	t.Helper()
	sendMixedAt(ctx, t, endpoint, r, time.Now(), evs)
}

// sendMixedAt is sendMixed with the events stamped relative to base.
func sendMixedAt(ctx context.Context, t *testing.T, endpoint string, r *rand.Rand, base time.Time, evs []lc) {
	t.Helper()
	for len(evs) > 0 {
		n := min(len(evs), 60)
		var spans, logs []lc
		for _, e := range evs[:n] {
			if r.IntN(2) == 0 {
				spans = append(spans, e)
			} else {
				logs = append(logs, e)
			}
		}
		evs = evs[n:]
		if len(spans) > 0 {
			body, err := ptraceotlp.NewExportRequestFromTraces(spansOf(base, spans...)).MarshalProto()
			require.NoError(t, err)
			post(ctx, t, "http://"+endpoint+"/v1/traces", body)
		}
		if len(logs) > 0 {
			body, err := plogotlp.NewExportRequestFromLogs(logsOf(base, logs...)).MarshalProto()
			require.NoError(t, err)
			post(ctx, t, "http://"+endpoint+"/v1/logs", body)
		}
	}
}

func post(ctx context.Context, t *testing.T, url string, body []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-protobuf")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, url)
}

// waitForOutcomes polls the sink until both signals hold exactly want (as multisets),
// failing at once on any record that is not in want.
func waitForOutcomes(ctx context.Context, t *testing.T, proc *testcollector.Process, sink *outcomeSink, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	err := testcollector.Eventually(ctx, 50*time.Millisecond, func() error {
		traces, logs := sink.snapshot()
		for name, got := range map[string][]string{"traces": traces, "logs": logs} {
			sort.Strings(got)
			if extra := missing(got, want); len(extra) > 0 {
				return testcollector.Permanent(fmt.Errorf("unexpected %s outcome records: %q", name, extra))
			}
			if absent := missing(want, got); len(absent) > 0 {
				return fmt.Errorf("%d %s outcome records still missing, e.g. %q", len(absent), name, absent[0])
			}
		}
		return nil
	})
	require.NoError(t, err, "collector output:\n%s", proc.Output())
}

// missing returns the elements of a (sorted) not matched one-to-one in b (sorted).
func missing(a, b []string) []string {
	var out []string
	i := 0
	for _, x := range a {
		for i < len(b) && b[i] < x {
			i++
		}
		if i < len(b) && b[i] == x {
			i++
			continue
		}
		out = append(out, x)
	}
	return out
}

func TestEndToEndInjectedFaults(t *testing.T) {
	sink := &outcomeSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()

	otlpEndpoint := testcollector.FreeEndpoint(t)
	health := testcollector.FreeEndpoint(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(e2eConfig), 0o600))
	proc := testcollector.Start(t, testcollector.Options{
		Config:         cfgPath,
		Env:            map[string]string{"E2E_HEALTH": health, "E2E_OTLP": otlpEndpoint, "E2E_SINK": strings.TrimPrefix(srv.URL, "http://")},
		HealthEndpoint: health,
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sc := buildScenario(400)
	r := rand.New(rand.NewPCG(3, 14))

	sendMixed(ctx, t, otlpEndpoint, r, sc.phases[0])
	want := slices.Clone(sc.expected[0])
	waitForOutcomes(ctx, t, proc, sink, want)

	bulk := slices.Clone(sc.phases[1])
	r.Shuffle(len(bulk), func(i, j int) { bulk[i], bulk[j] = bulk[j], bulk[i] })
	sendMixed(ctx, t, otlpEndpoint, r, bulk)
	want = append(want, sc.expected[1]...)
	waitForOutcomes(ctx, t, proc, sink, want) // every ack_timeout loss and seq gap is in

	// Late events and the offline recipient's return, after the losses were declared and
	// before offline_timeout.
	sendMixed(ctx, t, otlpEndpoint, r, sc.phases[2])
	want = append(want, sc.expected[2]...)
	waitForOutcomes(ctx, t, proc, sink, want)

	// A sentinel lost after every other deadline: nothing else may have turned up by then.
	sendMixed(ctx, t, otlpEndpoint, r, []lc{{stage: send, msg: "sentinel", conv: "s00"}})
	want = append(want, lost("sentinel", "s00", "ack_timeout", send, ""))
	waitForOutcomes(ctx, t, proc, sink, want)

	traces, logs := sink.snapshot()
	require.Len(t, traces, len(want))
	require.Len(t, logs, len(want))
	t.Logf("%d outcome records in each signal, exactly the injected ones", len(want))
}

// The end-to-end tests wait testcollector.StartupSettle after health before sending what they
// judge: it must cover the events im_loss distrusts after a fresh start.
func TestStartupSettleCoversStartupUncertainty(t *testing.T) {
	require.GreaterOrEqual(t, testcollector.StartupSettle, StartupUncertainty)
}
