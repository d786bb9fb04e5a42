//go:build race

package server

// raceEnabled: the race detector makes sync.Pool drop items at random, and
// ristretto records uses through pooled buffers, so its admission works
// on fewer samples under -race.
const raceEnabled = true
