package tracker

import (
	"unsafe"

	"github.com/dchest/siphash"
)

// sipHash24 is SipHash-2-4 (Aumasson and Bernstein) of s under the 128-bit key k0, k1.
// The decided-message memory is keyed by this hash instead of hash/maphash because it is
// saved with the snapshot and must mean the same after a restart: maphash seeds cannot be
// exported. SipHash is a keyed PRF, so with the key secret (random per tracker, kept only
// in the process and its own storage) message ids cannot be chosen to collide.
func sipHash24(k0, k1 uint64, s string) uint64 {
	// Hash only reads its input: viewing the id's bytes in place saves a copy of every id
	// longer than the compiler's 32-byte stack buffer (a UUID is 36).
	return siphash.Hash(k0, k1, unsafe.Slice(unsafe.StringData(s), len(s))) //nolint:gosec // read only, not kept
}
