package tracker

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcol/imcol/components/imsemconv"
	"github.com/imcol/imcol/processors/imlossprocessor/internal/event"
)

func shardConfig() Config {
	cfg := eventTimeConfig()
	cfg.AckTimeout, cfg.OfflineTimeout, cfg.ReorderWindow = 5*time.Second, 20*time.Second, 3*time.Second
	cfg.AllowedLateness, cfg.SourceIdleTimeout, cfg.MaxSourceLag = time.Second, 10*time.Second, time.Minute
	return cfg
}

// mixedStream is n messages, one every 200 ms, in 12 conversations with seqs, each with one
// of the fault classes the testbed injects, reported by four services with their own lag and
// some disorder within each (below allowed_lateness).
func mixedStream(seed uint64, n int) []arrival {
	rng := rand.New(rand.NewPCG(seed, 1))
	lags := map[string]int64{}
	for _, s := range []string{"im-msg", "im-transfer", "im-push", "im-gateway"} {
		lags[s] = rng.Int64N(2 * sec)
	}
	cfg := shardConfig()
	seqs := map[string]int64{}
	var out []arrival
	add := func(src string, stage imsemconv.Stage, id string, at int64, opts ...func(*event.Event)) {
		opts = append(opts, from(src))
		jitter := rng.Int64N(400 * ms)
		out = append(out, arrival{at + lags[src] + jitter, ev(stage, id, at, opts...)})
	}
	for i := range n {
		id, c := fmt.Sprintf("m%04d", i), fmt.Sprintf("c%02d", i%12)
		send := t0 + int64(i)*200*ms
		fault := rng.IntN(10)
		seqs[c]++
		add("im-msg", imsemconv.StageSend, id, send, conv(c))
		if fault == 1 {
			continue // lost at send
		}
		if fault != 2 || seqs[c]%2 == 0 { // 2: a seq gap unless revealed otherwise
			add("im-transfer", imsemconv.StagePersist, id, send+10*ms, conv(c), seq(seqs[c]))
		}
		if fault == 3 {
			continue // lost at persist
		}
		devices := 1 + rng.IntN(3)
		add("im-push", imsemconv.StagePush, id, send+20*ms, conv(c), fanout(uint32(devices)))
		for d := range devices {
			dv := fmt.Sprintf("d%d", d)
			back := send + 30*ms + int64(d)*ms
			switch {
			case fault == 4 && d == 0: // offline, back within offline_timeout
				add("im-push", imsemconv.StagePush, id, send+20*ms, conv(c), dev(dv), offline())
				back = send + int64(cfg.AckTimeout) + rng.Int64N(int64(cfg.OfflineTimeout-cfg.AckTimeout)-sec)
			case fault == 5 && d == 0: // offline, never back
				add("im-push", imsemconv.StagePush, id, send+20*ms, conv(c), dev(dv), offline())
				continue
			case fault == 6 && d == 0: // acks after ack_timeout
				back = send + int64(cfg.AckTimeout) + sec
			}
			add("im-gateway", imsemconv.StageDeliver, id, back, dev(dv))
			if fault == 7 && d == 0 {
				continue // lost at deliver
			}
			add("im-gateway", imsemconv.StageAck, id, back+5*ms, dev(dv))
			if fault == 8 && d == 0 { // delivered again
				add("im-gateway", imsemconv.StageDeliver, id, back+50*ms, dev(dv))
			}
		}
	}
	return out
}

// sharded is the runtime's sharded tracker stepped in one goroutine: the dispatcher stamps
// each event, its shards apply what it sends them in that order.
type sharded struct {
	d      *Dispatcher
	shards []*Tracker
}

func newSharded(cfg Config, n int) *sharded {
	d, shards := NewShards(cfg, n)
	return &sharded{d, shards}
}

func (s *sharded) apply(now int64, e *event.Event) {
	st, msgShard, seqShard := s.d.Dispatch(now, e)
	s.shards[msgShard].ApplyStamped(e, st, true, seqShard == msgShard)
	if seqShard >= 0 && seqShard != msgShard {
		s.shards[seqShard].ApplyStamped(e, st, false, true)
	}
}

func (s *sharded) tick(now int64) {
	w, limit := s.d.Limits(now)
	for _, t := range s.shards {
		for t.TickTo(w, limit) {
		}
	}
}

func (s *sharded) take() (out []Outcome, c Counters) {
	for _, t := range s.shards {
		out = append(out, t.TakeOutcomes()...)
		tc := t.TakeCounters()
		c.SeqGaps += tc.SeqGaps
		c.Forced += tc.Forced
		c.Orphans += tc.Orphans
		c.Unjudged += tc.Unjudged
		c.HoldFull += tc.HoldFull
	}
	return out, c
}

func (s *sharded) snapshot(now int64) []byte {
	parts := make([][]byte, len(s.shards))
	for i, t := range s.shards {
		parts[i] = t.SnapshotShard(now, Final, s.d.Timeline)
	}
	return JoinSnapshots(parts)
}

// run feeds arrivals (sorted by arrival) to one tracker (n 0) or n shards, ticking every
// 100 ms until end; when restartAt is set, everything is saved there and restored into a new
// tracker of restartShards shards. It returns every outcome and the counters.
func run(t *testing.T, arrivals []arrival, n int, restartAt int64, restartShards int, end int64) ([]Outcome, Counters) {
	cfg := shardConfig()
	var one *Tracker
	var many *sharded
	if n == 0 {
		one = New(cfg)
	} else {
		many = newSharded(cfg, n)
	}
	var all []Outcome
	var total Counters
	collect := func() {
		var out []Outcome
		var c Counters
		if one != nil {
			out, c = one.TakeOutcomes(), one.TakeCounters()
		} else {
			out, c = many.take()
		}
		all = append(all, out...)
		total.SeqGaps += c.SeqGaps
		total.Forced += c.Forced
		total.Orphans += c.Orphans
		total.Unjudged += c.Unjudged
		total.HoldFull += c.HoldFull
	}
	for now := t0; now <= end; now += 100 * ms {
		for len(arrivals) > 0 && arrivals[0].at <= now {
			e := *arrivals[0].ev
			if one != nil {
				one.Apply(arrivals[0].at, &e)
			} else {
				many.apply(arrivals[0].at, &e)
			}
			arrivals = arrivals[1:]
		}
		if now == restartAt {
			collect()
			if one != nil {
				snap := one.Snapshot(now, Final)
				one = New(cfg)
				_, err := one.Restore(snap, now)
				require.NoError(t, err)
			} else {
				snap := many.snapshot(now)
				many = newSharded(cfg, restartShards)
				_, err := RestoreShards(many.d, many.shards, snap, now)
				require.NoError(t, err)
			}
		}
		if one != nil {
			for one.Tick(now) {
			}
		} else {
			many.tick(now)
		}
		collect()
	}
	slices.SortFunc(all, func(a, b Outcome) int {
		return cmp.Or(cmp.Compare(a.MessageID, b.MessageID), cmp.Compare(a.ConversationID, b.ConversationID),
			cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.Outcome, b.Outcome), cmp.Compare(a.Stage, b.Stage),
			cmp.Compare(a.DeviceID, b.DeviceID), cmp.Compare(a.End, b.End))
	})
	return all, total
}

// TestShardsDecideAsOneTracker: whatever the shard count, every outcome (and every count of
// gaps, forced verdicts, orphans) is the one a single tracker gives, across a restart that
// changes the shard count too.
func TestShardsDecideAsOneTracker(t *testing.T) {
	for seed := range uint64(3) {
		arrivals := mixedStream(seed, 600)
		slices.SortStableFunc(arrivals, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
		end := t0 + 120*sec + int64(shardConfig().OfflineTimeout)
		restartAt := t0 + 60*sec
		want, wantCounters := run(t, arrivals, 0, 0, 0, end)
		wantRestarted, wantRestartedCounters := run(t, arrivals, 0, restartAt, 0, end)
		require.NotEmpty(t, want)
		labels := map[string]int{}
		for _, o := range want {
			labels[string(o.Outcome)+"/"+string(o.Reason)+"@"+o.Stage.String()]++
		}
		t.Logf("seed %d: %d outcomes %v; counters %+v", seed, len(want), labels, wantCounters)
		for _, n := range []int{1, 2, 3, 8} {
			got, counters := run(t, arrivals, n, 0, 0, end)
			assert.Equal(t, want, got, "seed %d, %d shards", seed, n)
			assert.Equal(t, wantCounters, counters, "seed %d, %d shards", seed, n)
			got, counters = run(t, arrivals, n, restartAt, 5-n%4, end)
			assert.Equal(t, wantRestarted, got, "seed %d, %d shards, restarted with %d", seed, n, 5-n%4)
			assert.Equal(t, wantRestartedCounters, counters, "seed %d, %d shards, restarted with %d", seed, n, 5-n%4)
		}
	}
}

// TestRestoreShardsReadsOneTrackersSnapshot: a snapshot of an unsharded tracker (an older
// imcol) is spread over the shards.
func TestRestoreShardsReadsOneTrackersSnapshot(t *testing.T) {
	tr := New(testConfig())
	for i := range 50 {
		lifecycle(tr, msgID(i), t0, imsemconv.StagePush)
	}
	d, shards := NewShards(testConfig(), 3)
	st, err := RestoreShards(d, shards, tr.Snapshot(t0, Final), t0)
	require.NoError(t, err)
	assert.Equal(t, 50, st.Messages)
	total := 0
	for i, s := range shards {
		assert.NotZero(t, s.Len(), "shard %d", i)
		total += s.Len()
		for id := range 50 {
			if s.lookup(msgID(id)) != nil {
				assert.Equal(t, i, d.Shard(msgID(id)))
			}
		}
	}
	assert.Equal(t, 50, total)
}
