package tracker

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The reference vectors of the SipHash paper (appendix A and vectors.h): key 00..0f,
// messages 00..(n-1). Snapshots hold these hashes: a change of function would make every
// restored decided-memory entry unrecognisable.
func TestSipHash24ReferenceVectors(t *testing.T) {
	const k0, k1 = 0x0706050403020100, 0x0f0e0d0c0b0a0908
	msg := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		return string(b)
	}
	assert.Equal(t, uint64(0x726fdb47dd0e0e31), sipHash24(k0, k1, ""))
	assert.Equal(t, uint64(0xa129ca6149be45e5), sipHash24(k0, k1, msg(15)))
	assert.Equal(t, uint64(0x93f5f5799a932462), sipHash24(k0, k1, msg(8)))
	assert.Equal(t, uint64(0x3f2acc7f57c29bdb), sipHash24(k0, k1, msg(16)))
}

func TestSipHash24DoesNotAllocate(t *testing.T) {
	id := "0b6f7a52-6c1e-4d0f-9a4e-5b1f1c2d3e4f" // longer than the stack buffer of []byte(s)
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = sipHash24(1, 2, id) }))
}
