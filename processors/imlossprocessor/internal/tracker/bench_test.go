package tracker

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

// ids are 32 hex characters, the shape of OpenIM's client message ids.
func benchIDs(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, n)
	var b [16]byte
	for i := range ids {
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		ids[i] = hex.EncodeToString(b[:])
	}
	return ids
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryPerTrackedMessage fills the tracker with a million in-flight messages
// (send, persist with seq, push to one device; 100k conversations) and reports the live heap
// per message, next to a baseline measured in the same run: a bare set of the same ids, the
// least any tracker must keep. Run with -benchtime=1x.
func BenchmarkMemoryPerTrackedMessage(b *testing.B) {
	const n = 1_000_000
	const convs = 100_000
	ids := benchIDs(n)
	convIDs := make([]string, convs)
	for i := range convIDs {
		convIDs[i] = fmt.Sprintf("si_%08d_%08d", i, i*7)
	}
	devices := []string{"ios-7f3a9c21", "android-0b8e4d55", "web-c41d9e07", "pc-5a2f8b63"}
	cfg := Config{
		AckTimeout: ackTO, OfflineTimeout: offTO, ReorderWindow: window, MaxGap: 1000,
		MaxMessages: n, MaxPerConversation: 10_000, MaxConversations: 200_000,
		MaxDevicesPerMessage: 2048, DecidedCacheSize: 0,
	}
	b.ReportAllocs()
	for range b.N {
		// Baseline: the ids alone in a set.
		before := heapInUse()
		set := make(map[string]struct{})
		for _, id := range ids {
			set[string([]byte(id))] = struct{}{}
		}
		baseline := float64(heapInUse()-before) / n
		runtime.KeepAlive(set)

		before = heapInUse()
		tr := New(cfg)
		seqs := make([]int64, convs)
		for i, id := range ids {
			c := i % convs
			seqs[c]++
			at := t0 + int64(i)
			// Ids are copied as the OTLP decoder would hand them over: fresh strings.
			own := string([]byte(id))
			tr.Apply(at, &event.Event{MessageID: own, ConversationID: convIDs[c], Stage: imsemconv.StageSend, Start: at})
			tr.Apply(at, &event.Event{MessageID: own, ConversationID: convIDs[c], Stage: imsemconv.StagePersist, Seq: seqs[c], HasSeq: true})
			dev := string([]byte(devices[i%len(devices)]))
			tr.Apply(at, &event.Event{MessageID: own, ConversationID: convIDs[c], Stage: imsemconv.StagePush, Fanout: 1, DeviceID: dev})
		}
		if tr.Len() != n {
			b.Fatalf("tracked %d, want %d", tr.Len(), n)
		}
		perMsg := float64(heapInUse()-before) / n
		runtime.KeepAlive(tr)
		b.ReportMetric(perMsg, "B/tracked_msg")
		b.ReportMetric(perMsg*n/(1<<20), "MiB/1M_msgs")
		b.ReportMetric(baseline, "B/id_baseline")
		b.ReportMetric(perMsg/baseline, "x_baseline")
	}
}

// BenchmarkApply measures the tracker's per-event cost on complete lifecycles.
func BenchmarkApply(b *testing.B) {
	ids := benchIDs(b.N/len(imsemconv.Stages) + 1)
	cfg := testConfig()
	cfg.MaxMessages = 1 << 20
	cfg.MaxConversations = 1 << 16
	cfg.DecidedCacheSize = 1 << 16
	tr := New(cfg)
	stages := imsemconv.Stages
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		m := i / len(stages)
		s := stages[i%len(stages)]
		ev := event.Event{MessageID: ids[m], ConversationID: "c", Stage: s, Start: int64(i), End: int64(i)}
		switch s {
		case imsemconv.StagePush:
			ev.Fanout = 1
		case imsemconv.StageDeliver, imsemconv.StageAck:
			ev.DeviceID = "d"
		}
		tr.Apply(int64(i), &ev)
		if i%1024 == 0 {
			tr.TakeOutcomes()
		}
	}
}

// BenchmarkSnapshot measures what a checkpoint costs the tracker goroutine: encoding
// 100,000 in-flight messages (send, persist with seq, push to one device; 10,000
// conversations) and a full default decided memory of 250,000 entries. Events wait for
// this long once per checkpoint_interval; the storage write happens on another goroutine.
func BenchmarkSnapshot(b *testing.B) {
	const n, decidedN, convs = 100_000, 250_000, 10_000
	ids := benchIDs(n + decidedN)
	cfg := Config{
		AckTimeout: ackTO, OfflineTimeout: offTO, ReorderWindow: window, MaxGap: 1000,
		MaxMessages: n, MaxPerConversation: 10_000, MaxConversations: 200_000,
		MaxDevicesPerMessage: 2048, DecidedCacheSize: decidedN,
	}
	tr := New(cfg)
	for i, id := range ids[n:] {
		at := t0 + int64(i)
		tr.Apply(at, &event.Event{MessageID: id, Stage: imsemconv.StageSend, Start: at})
		tr.Apply(at, &event.Event{MessageID: id, Stage: imsemconv.StagePush, Fanout: 1})
		tr.Apply(at, &event.Event{MessageID: id, Stage: imsemconv.StageAck, DeviceID: "d", End: at})
		tr.TakeOutcomes()
	}
	seqs := make([]int64, convs)
	for i, id := range ids[:n] {
		c := i % convs
		seqs[c]++
		at := t0 + int64(i)
		conv := fmt.Sprintf("si_%08d", c)
		tr.Apply(at, &event.Event{MessageID: id, ConversationID: conv, Stage: imsemconv.StageSend, Start: at})
		tr.Apply(at, &event.Event{MessageID: id, ConversationID: conv, Stage: imsemconv.StagePersist, Seq: seqs[c], HasSeq: true})
		tr.Apply(at, &event.Event{MessageID: id, ConversationID: conv, Stage: imsemconv.StagePush, Fanout: 1, DeviceID: "ios-7f3a9c21"})
	}
	if tr.Len() != n {
		b.Fatalf("tracked %d, want %d", tr.Len(), n)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var size int
	for range b.N {
		size = len(tr.Snapshot(t0, Checkpoint))
	}
	b.ReportMetric(float64(size), "bytes")
}
