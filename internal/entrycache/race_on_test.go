//go:build race

package entrycache

// raceEnabled: under the race detector sync.Pool drops items at random,
// and ristretto records uses through pooled buffers, so its admission
// sees too few of them for frequency-based assertions to hold.
const raceEnabled = true
