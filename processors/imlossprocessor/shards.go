package imlossprocessor // import "github.com/imcol/imcol/processors/imlossprocessor"

import (
	"sync"
	"sync/atomic"

	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/tracker"
)

// shard is one part of the state (see tracker.Dispatcher) and the goroutine that owns it. The
// loop goroutine stamps every event and hands it on; each shard applies what it is handed in
// that order, decides on the loop's ticks, and hands its outcomes to the emitter itself.
type shard struct {
	tr   *tracker.Tracker
	in   chan shardWork
	done chan struct{}
	// tracked is the shard's messages in flight after its last work, for the gauge.
	tracked atomic.Int64
	// forgottenUpTo is its tracker's ForgottenUpTo after its last work, for the gauge.
	forgottenUpTo atomic.Int64
}

// publish copies what the gauges read from the shard's tracker; only its goroutine (or start,
// before it runs) may call it.
func (s *shard) publish() {
	s.tracked.Store(int64(s.tr.Len()))
	s.forgottenUpTo.Store(s.tr.ForgottenUpTo())
}

// shardOp is one event for a shard: for its message (route), its conversation's seq (seq), or both.
type shardOp struct {
	ev         event.Event
	st         tracker.Stamp
	route, seq bool
}

// shardWork is one thing for a shard to do: apply ops, tick to (w, limit), or snapshot.
type shardWork struct {
	ops  *[]shardOp
	dups *dupCollector // set when the caller drops duplicates

	tick     bool
	w, limit int64

	snapshot chan<- []byte
	now      int64
	kind     tracker.Kind

	done *sync.WaitGroup // signalled once the work and its flush are done
}

// dupCollector gathers the duplicate deliveries one batch's shards found, and replies to the
// caller once every shard it went to has answered.
type dupCollector struct {
	mu      sync.Mutex
	refs    []int32
	pending atomic.Int32
	reply   chan []int32
}

func (d *dupCollector) add(refs []int32) {
	d.mu.Lock()
	d.refs = append(d.refs, refs...)
	d.mu.Unlock()
	if d.pending.Add(-1) == 0 {
		d.reply <- d.refs
	}
}

func newShards(cfg tracker.Config, n int) (*tracker.Dispatcher, []*shard) {
	d, trackers := tracker.NewShards(cfg, n)
	shards := make([]*shard, n)
	for i, tr := range trackers {
		// A little slack per shard lets the loop stamp the next batch while shards apply.
		shards[i] = &shard{tr: tr, in: make(chan shardWork, 4), done: make(chan struct{})}
	}
	return d, shards
}

func (r *lossRuntime) trackers() []*tracker.Tracker {
	out := make([]*tracker.Tracker, len(r.shards))
	for i, s := range r.shards {
		out[i] = s.tr
	}
	return out
}

// forgottenUpTo is the latest deadline any shard's decided memory forgot (0: none), as of
// their last work: the shortest reach of them all.
func (r *lossRuntime) forgottenUpTo() int64 {
	n := int64(0)
	for _, s := range r.shards {
		n = max(n, s.forgottenUpTo.Load())
	}
	return n
}

// tracked is the messages in flight over every shard, as of their last work.
func (r *lossRuntime) tracked() int {
	n := int64(0)
	for _, s := range r.shards {
		n += s.tracked.Load()
	}
	return int(n)
}

// shardLoop applies the work the loop hands s, in order, and flushes what it decided.
func (r *lossRuntime) shardLoop(s *shard) {
	defer close(s.done)
	for w := range s.in {
		switch {
		case w.ops != nil:
			r.applyOps(s, w)
		case w.tick:
			for s.tr.TickTo(w.w, w.limit) {
				r.flush(s.tr)
			}
		case w.snapshot != nil:
			// The loop waits for every shard's snapshot: its timeline does not change meanwhile.
			w.snapshot <- s.tr.SnapshotShard(w.now, w.kind, r.disp.Timeline)
		}
		r.flush(s.tr)
		s.publish()
		if w.done != nil {
			w.done.Done()
		}
	}
}

func (r *lossRuntime) applyOps(s *shard, w shardWork) {
	var dups []int32
	ops := *w.ops
	for i := range ops {
		op := &ops[i]
		if s.tr.ApplyStamped(&op.ev, op.st, op.route, op.seq) && w.dups != nil {
			dups = append(dups, op.ev.Ref)
		}
	}
	if w.dups != nil {
		w.dups.add(dups)
	}
	r.putOps(w.ops)
}

func (r *lossRuntime) getOps() *[]shardOp { return r.ops.Get().(*[]shardOp) }

func (r *lossRuntime) putOps(ops *[]shardOp) {
	if cap(*ops) > 4096 {
		return // let an unusually large batch's buffer go
	}
	clear(*ops) // drop string references so the pool does not keep ids alive
	*ops = (*ops)[:0]
	r.ops.Put(ops)
}

// dispatch stamps a batch of events and hands each shard its part. With reply set, the shards'
// duplicate deliveries are sent there once all have answered.
func (r *lossRuntime) dispatch(now int64, evs []event.Event, reply chan []int32) {
	for i := range evs {
		ev := &evs[i]
		st, msgShard, seqShard := r.disp.Dispatch(now, ev)
		r.part(msgShard, shardOp{ev: *ev, st: st, route: true, seq: seqShard == msgShard})
		if seqShard >= 0 && seqShard != msgShard {
			r.part(seqShard, shardOp{ev: *ev, st: st, seq: true})
		}
	}
	var dups *dupCollector
	if reply != nil {
		dups = &dupCollector{reply: reply}
		for _, p := range r.parts {
			if p != nil {
				dups.pending.Add(1)
			}
		}
		if dups.pending.Load() == 0 {
			reply <- nil
		}
	}
	for i, p := range r.parts {
		if p != nil {
			r.shards[i].in <- shardWork{ops: p, dups: dups}
			r.parts[i] = nil
		}
	}
}

// part adds op to shard i's part of the batch being dispatched.
func (r *lossRuntime) part(i int, op shardOp) {
	if r.parts[i] == nil {
		r.parts[i] = r.getOps()
	}
	*r.parts[i] = append(*r.parts[i], op)
}

// broadcast hands every shard w and, with wait, returns once all are done with it.
func (r *lossRuntime) broadcast(w shardWork, wait bool) {
	var wg sync.WaitGroup
	if wait {
		wg.Add(len(r.shards))
		w.done = &wg
	}
	for _, s := range r.shards {
		s.in <- w
	}
	wg.Wait()
}

// snapshotShards takes every shard's snapshot, as one, while their goroutines run.
func (r *lossRuntime) snapshotShards(now int64, kind tracker.Kind) []byte {
	chans := make([]chan []byte, len(r.shards))
	for i, s := range r.shards {
		chans[i] = make(chan []byte, 1)
		s.in <- shardWork{snapshot: chans[i], now: now, kind: kind}
	}
	parts := make([][]byte, len(chans))
	for i, c := range chans {
		parts[i] = <-c
	}
	return tracker.JoinSnapshots(parts)
}

// snapshotStopped is snapshotShards once no goroutine runs (at start and at shutdown).
func (r *lossRuntime) snapshotStopped(now int64, kind tracker.Kind) []byte {
	parts := make([][]byte, len(r.shards))
	for i, s := range r.shards {
		parts[i] = s.tr.SnapshotShard(now, kind, r.disp.Timeline)
	}
	return tracker.JoinSnapshots(parts)
}
