package tracker

import (
	"cmp"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

// scalingMessages is the stream of BenchmarkShardScaling: 8000 messages a second of event
// time for 6 s, so with a 1 s ack timeout about 8000 messages are in flight at any moment
// and most of the stream is decided while it runs.
const (
	scalingMessages = 48_000
	scalingRate     = 8000
	scalingConvs    = 2000
	scalingChunk    = 512 // events per hand-over to the shards, then a tick
)

func scalingConfig() Config {
	return Config{
		AckTimeout: time.Second, OfflineTimeout: 10 * time.Second, ReorderWindow: time.Second, MaxGap: 1000,
		MaxMessages: 1 << 20, MaxPerConversation: 10_000, MaxConversations: 1 << 16,
		MaxDevicesPerMessage: 64, DecidedCacheSize: 1 << 16,
		AllowedLateness: 100 * time.Millisecond, SourceIdleTimeout: 30 * time.Second,
		MaxSourceLag: time.Minute, MaxClockSkew: time.Minute, MaxSources: 16,
	}
}

// scalingStream is the testbed's message mix in arrival (event-time) order: 1:1 messages to 2
// devices and, a quarter of them, group messages to 2-21 devices; send and persist reported by
// the message service, push by the push service, deliver and ack by the gateway.
func scalingStream() []event.Event {
	type placed struct {
		at int64
		ev event.Event
	}
	ids := benchIDs(scalingMessages)
	gap := int64(time.Second) / scalingRate
	var stream []placed
	for m, id := range ids {
		conv := fmt.Sprintf("conv_%d", m%scalingConvs)
		at := t0 + int64(m)*gap
		devices := 2
		if m%4 == 3 {
			devices = 2 + m%20
		}
		add := func(delay time.Duration, ev event.Event) {
			ev.MessageID, ev.ConversationID = id, conv
			ev.Start = at + int64(delay)
			ev.End = ev.Start
			stream = append(stream, placed{at: ev.End, ev: ev})
		}
		add(0, event.Event{Stage: imsemconv.StageSend, Source: "im-msg"})
		add(2*time.Millisecond, event.Event{Stage: imsemconv.StagePersist, Source: "im-msg", Seq: int64(m/scalingConvs + 1), HasSeq: true})
		add(4*time.Millisecond, event.Event{Stage: imsemconv.StagePush, Source: "im-push", Fanout: uint32(devices)})
		for d := range devices {
			dev := fmt.Sprintf("device-%06d-%d", (m*7+d)%5000, d)
			add(time.Duration(6+d)*time.Millisecond, event.Event{Stage: imsemconv.StageDeliver, Source: "im-gateway", DeviceID: dev})
			add(time.Duration(30+d)*time.Millisecond, event.Event{Stage: imsemconv.StageAck, Source: "im-gateway", DeviceID: dev})
		}
	}
	slices.SortStableFunc(stream, func(a, b placed) int { return cmp.Compare(a.at, b.at) })
	out := make([]event.Event, len(stream))
	for i := range stream {
		out[i] = stream[i].ev
	}
	return out
}

// scalingOp is one event as a shard receives it from the dispatcher.
type scalingOp struct {
	ev         event.Event
	st         Stamp
	route, seq bool
}

// scalingChunkWork is what one shard does per hand-over: apply its events, then tick.
type scalingChunkWork struct {
	ops      []scalingOp
	w, limit int64
}

// dispatchScaling has the dispatcher of n shards stamp and route the whole stream, as the
// processor's loop does, and returns each shard's work: done before the clock starts, since
// the loop is one goroutine whatever the shard count.
func dispatchScaling(stream []event.Event, n int) ([]*Tracker, [][]scalingChunkWork) {
	d, shards := NewShards(scalingConfig(), n)
	work := make([][]scalingChunkWork, n)
	for start := 0; start < len(stream); start += scalingChunk {
		chunk := stream[start:min(start+scalingChunk, len(stream))]
		parts := make([][]scalingOp, n)
		var now int64
		for i := range chunk {
			ev := chunk[i]
			now = ev.End + int64(time.Millisecond) // arrives a millisecond after it happened
			st, msgShard, seqShard := d.Dispatch(now, &ev)
			parts[msgShard] = append(parts[msgShard], scalingOp{ev: ev, st: st, route: true, seq: seqShard == msgShard})
			if seqShard >= 0 && seqShard != msgShard {
				parts[seqShard] = append(parts[seqShard], scalingOp{ev: ev, st: st, seq: true})
			}
		}
		w, limit := d.Limits(now)
		for s := range n {
			work[s] = append(work[s], scalingChunkWork{ops: parts[s], w: w, limit: limit})
		}
	}
	return shards, work
}

// runShard is a shard goroutine's part: its events, its ticks, its outcomes taken.
func runShard(tr *Tracker, work []scalingChunkWork) (outcomes int) {
	for _, c := range work {
		for i := range c.ops {
			op := &c.ops[i]
			tr.ApplyStamped(&op.ev, op.st, op.route, op.seq)
		}
		for more := true; more; {
			more = tr.TickTo(c.w, c.limit)
			outcomes += len(tr.TakeOutcomes())
		}
	}
	return outcomes
}

// shardsWall applies the dispatched stream with one goroutine per shard and returns the wall
// time from the first event to the last shard's last tick, and the outcomes decided.
func shardsWall(b *testing.B, stream []event.Event, n int) (time.Duration, int) {
	b.StopTimer()
	shards, work := dispatchScaling(stream, n)
	runtime.GC() // the dispatching's garbage is not the shards'
	b.StartTimer()
	start := time.Now()
	outcomes := make([]int, n)
	var wg sync.WaitGroup
	for s := range n {
		wg.Go(func() { outcomes[s] = runShard(shards[s], work[s]) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	total := 0
	for _, o := range outcomes {
		total += o
	}
	return elapsed, total
}

// hashWall is the machine's own scaling, measured beside the shards': the wall time of
// hashing every id of the stream 20 times, split over n goroutines. No memory is written, so
// nothing but the cores limits it.
func hashWall(stream []event.Event, n int) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	sums := make([]uint64, n)
	for g := range n {
		wg.Go(func() {
			var sum uint64 // local: goroutines writing neighbouring words would slow each other
			for range 20 {
				for i := g; i < len(stream); i += n {
					sum += sipHash24(1, 2, stream[i].MessageID)
				}
			}
			sums[g] = sum
		})
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkShardScaling reports the shards' own scaling: the stream dispatched beforehand (the
// loop's stamping is one goroutine at any shard count), then applied and decided by one shard
// and by two shards in parallel goroutines, alternately in the same run. x_2shards_vs_1 is the
// ratio of their event rates (the goal: 1.8), x_machine the same ratio for a loop that only
// computes, the most two goroutines gain on this machine. BenchmarkShards (imlossprocessor)
// measures the whole processor, whose extraction, stamping and emission share the cores.
func BenchmarkShardScaling(b *testing.B) {
	stream := scalingStream()
	var one, two, hashOne, hashTwo time.Duration
	for range b.N {
		t1, out1 := shardsWall(b, stream, 1)
		t2, out2 := shardsWall(b, stream, 2)
		if out1 != out2 || out1 == 0 {
			b.Fatalf("1 shard decided %d outcomes, 2 shards %d", out1, out2)
		}
		one, two = one+t1, two+t2
		hashOne, hashTwo = hashOne+hashWall(stream, 1), hashTwo+hashWall(stream, 2)
	}
	events := float64(len(stream) * b.N)
	b.ReportMetric(events/one.Seconds(), "events/s_1shard")
	b.ReportMetric(events/two.Seconds(), "events/s_2shards")
	b.ReportMetric(one.Seconds()/two.Seconds(), "x_2shards_vs_1")
	b.ReportMetric(hashOne.Seconds()/hashTwo.Seconds(), "x_machine")
}
