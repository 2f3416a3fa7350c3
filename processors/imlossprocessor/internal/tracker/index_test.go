package tracker

import (
	"fmt"
	"math/rand/v2"
	"testing"

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
