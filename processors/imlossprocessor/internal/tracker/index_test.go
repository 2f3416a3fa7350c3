package tracker

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestIndexMatchesMap drives the open-addressing index and a Go map with the same random
// inserts and removals, across growth and shrinking.
func TestIndexMatchesMap(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	x := newIndex()
	ref := map[string]*message{}
	for step := range 200_000 {
		id := fmt.Sprint("id", r.IntN(20_000))
		switch m := ref[id]; {
		case m == nil:
			m = &message{id: id}
			x.put(m)
			ref[id] = m
		case r.IntN(2) == 0:
			x.remove(m)
			delete(ref, id)
		}
		if step%10_000 == 0 {
			require.Equal(t, len(ref), x.n)
			for id, m := range ref {
				require.Same(t, m, x.get(id))
			}
		}
		require.Nil(t, x.get("absent"))
	}
	for id, m := range ref {
		x.remove(m)
		require.Nil(t, x.get(id))
	}
	require.Zero(t, x.n)
	require.Len(t, x.slots, minIndexSlots)
}

// BenchmarkIndexLookup looks up a million tracked ids (half of the lookups for ids not
// tracked, as every message's first event is) and reports the time per lookup as a ratio to
// a Go map of the same ids measured in the same run.
func BenchmarkIndexLookup(b *testing.B) {
	const n = 1_000_000
	ids := benchIDs(2 * n)
	x := newIndex()
	ref := make(map[string]*message, n)
	for _, id := range ids[:n] {
		m := &message{id: string([]byte(id))}
		x.put(m)
		ref[m.id] = m
	}
	// Probes in a random order, so that neither structure is read in the order it was filled.
	r := rand.New(rand.NewPCG(3, 4))
	probes := make([]string, 1<<16)
	for i := range probes {
		probes[i] = ids[r.IntN(len(ids))]
	}
	var found int
	mapNs := nsPerOp(func(i int) {
		if ref[probes[i&(len(probes)-1)]] != nil {
			found++
		}
	})
	b.ResetTimer()
	for i := range b.N {
		if x.get(probes[i&(len(probes)-1)]) != nil {
			found++
		}
	}
	b.StopTimer()
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(mapNs, "map_ns/op")
	b.ReportMetric(perOp/mapNs, "x_map")
	if found == 0 {
		b.Fatal("no probe found its id")
	}
}

// nsPerOp times f over enough calls to take about 200ms.
func nsPerOp(f func(i int)) float64 {
	n := 1 << 16
	for {
		start := time.Now()
		for i := range n {
			f(i)
		}
		if d := time.Since(start); d > 200*time.Millisecond {
			return float64(d.Nanoseconds()) / float64(n)
		}
		n *= 2
	}
}
