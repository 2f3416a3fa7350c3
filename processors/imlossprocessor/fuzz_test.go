package imlossprocessor

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"
)

func fuzzExtractor(tb testing.TB) *extractor {
	cfg := defaultCfg()
	cfg.StageConditions.Spans.Push = []string{`name == "push"`}
	cfg.StageConditions.Logs.Ack = []string{`IsMatch(body, "^ack")`}
	m, err := newStageMatchers(&cfg.StageConditions, nopTelemetrySettings())
	if err != nil {
		tb.Fatal(err)
	}
	return &extractor{names: event.DefaultNames(), matchers: m, unrecognized: func(context.Context, event.Reason) {}}
}

func fuzzTracker() *tracker.Tracker {
	return tracker.New(tracker.Config{
		AckTimeout: time.Second, OfflineTimeout: 2 * time.Second, ReorderWindow: time.Second, MaxGap: 64,
		MaxMessages: 32, MaxPerConversation: 8, MaxConversations: 8, MaxDevicesPerMessage: 8, DecidedCacheSize: 16,
	})
}

// checkRemove drops every extracted record by its ref and requires exactly those to be gone.
func checkRemove(t *testing.T, evs []event.Event, count func() int, remove func(refs []int32), noun string) {
	t.Helper()
	var refs []int32
	for _, ev := range evs {
		refs = append(refs, ev.Ref)
	}
	before := count()
	remove(refs)
	if count() != before-len(refs) {
		t.Fatalf("removed %d %s, want %d", before-count(), noun, len(refs))
	}
}

// checkEvents asserts what every decoded event guarantees the tracker, then feeds them to
// a tracker with tiny limits and checks it stays inside them.
func checkEvents(t *testing.T, evs []event.Event, records int) {
	tr := fuzzTracker()
	for i := range evs {
		ev := &evs[i]
		if ev.MessageID == "" || len(ev.MessageID) > event.MaxIDLength || len(ev.ConversationID) > event.MaxIDLength || len(ev.DeviceID) > event.MaxIDLength {
			t.Fatalf("id out of bounds: %+v", ev)
		}
		if ev.Stage < imsemconv.StageSend || ev.Stage > imsemconv.StageAck {
			t.Fatalf("invalid stage %d", ev.Stage)
		}
		if ev.Fanout > event.MaxFanout || (ev.HasSeq && (ev.Seq < 0 || ev.ConversationID == "")) {
			t.Fatalf("invalid numbers: %+v", ev)
		}
		if int(ev.Ref) >= records {
			t.Fatalf("ref %d beyond %d records", ev.Ref, records)
		}
		tr.Apply(int64(i), ev)
		if tr.Len() > 32 {
			t.Fatalf("tracker over its limit: %d", tr.Len())
		}
	}
	tr.Tick(int64(time.Hour))
	if tr.Len() != 0 {
		t.Fatalf("messages left after every deadline: %d", tr.Len())
	}
}

func FuzzExtractTraces(f *testing.F) {
	seed := spansOf(time.Time{},
		lc{stage: send, msg: "m1", conv: "c"},
		lc{stage: persist, msg: "m1", conv: "c", seq: 9},
		lc{stage: push, msg: "m1", conv: "c", fanout: 2, offline: true, dev: "d"},
		lc{stage: deliver, msg: "m1", conv: "c", dev: "d"},
		lc{stage: ack, msg: "m1", conv: "c", dev: "d", failed: true},
	)
	b, err := (&ptrace.ProtoMarshaler{}).MarshalTraces(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 0x12, 0x00})
	x := fuzzExtractor(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(data)
		if err != nil {
			return
		}
		evs := x.traces(context.Background(), td, 0, nil)
		checkEvents(t, evs, td.SpanCount())
		checkRemove(t, evs, td.SpanCount, func(refs []int32) { removeSpans(td, refs) }, "spans")
	})
}

func FuzzExtractLogs(f *testing.F) {
	seed := logsOf(time.Time{},
		lc{stage: send, msg: "m1", conv: "c", trace: 3},
		lc{stage: persist, msg: "m1", conv: "c", seq: 1 << 62},
		lc{stage: push, msg: "m1", conv: "c", fanout: 1 << 30},
		lc{stage: ack, msg: "m1", dev: "d"},
	)
	b, err := (&plog.ProtoMarshaler{}).MarshalLogs(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{})
	x := fuzzExtractor(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		ld, err := (&plog.ProtoUnmarshaler{}).UnmarshalLogs(data)
		if err != nil {
			return
		}
		evs := x.logs(context.Background(), ld, 0, nil)
		checkEvents(t, evs, ld.LogRecordCount())
		checkRemove(t, evs, ld.LogRecordCount, func(refs []int32) { removeLogs(ld, refs) }, "records")
	})
}

func FuzzSnapshotRestore(f *testing.F) {
	tr := fuzzTracker()
	for i, e := range []lc{
		{stage: send, msg: "a", conv: "c"}, {stage: persist, msg: "a", conv: "c", seq: 1},
		{stage: persist, msg: "b", conv: "c", seq: 4}, {stage: push, msg: "b", dev: "x", offline: true},
	} {
		ev := event.Event{MessageID: e.msg, ConversationID: e.conv, Stage: e.stage, Seq: e.seq, HasSeq: e.seq > 0, DeviceID: e.dev, Offline: e.offline}
		tr.Apply(int64(i), &ev)
	}
	f.Add(tr.Snapshot(10, tracker.Final))
	f.Add(tr.Snapshot(10, tracker.Checkpoint))
	done := event.Event{MessageID: "a", Stage: imsemconv.StageAck, DeviceID: "x"}
	tr.Apply(11, &done)
	tr.Tick(int64(time.Hour))
	f.Add(tr.Snapshot(int64(time.Hour), tracker.Final)) // with decided messages
	f.Fuzz(func(t *testing.T, data []byte) {
		tr := fuzzTracker()
		_, _ = tr.Restore(data, 100)
		if tr.Len() > 32 {
			t.Fatalf("restore exceeded limits: %d", tr.Len())
		}
		tr.Tick(int64(time.Hour) * 24)
		_ = tr.Snapshot(0, tracker.Final)
	})
}
