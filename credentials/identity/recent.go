package identity

import (
	"crypto/sha256"
	"sync"
	"time"
)

// Recent handoff.
//
// The token cache (ristretto) applies a Set asynchronously: for a moment
// after a verification its entry is not visible yet, and a caller arriving
// then would verify the token again. recentSet bridges that moment: the
// verification flight puts its entry here before it ends, and the next
// flight for the same token finds it. Entries are served while the token's
// entry is valid (now < until) and for at most recentTTL after they were
// put (the verifier's clock), by which time the cache shows them; they are
// swept on put, oldest first, and at most recentMax are kept.
const (
	recentTTL = 500 * time.Millisecond
	recentMax = 4096
)

type recentSet struct {
	mu    sync.Mutex
	m     map[[sha256.Size]byte]recentItem
	order []recentKey // in put order
}

type recentItem struct {
	e  *cacheEntry
	at time.Time // the verifier's clock
}

type recentKey struct {
	sum [sha256.Size]byte
	at  time.Time
}

// get returns the entry put for sum, if it is still valid at now and young.
func (r *recentSet) get(sum [sha256.Size]byte, now time.Time) *cacheEntry {
	r.mu.Lock()
	it, ok := r.m[sum]
	r.mu.Unlock()
	if !ok || it.e.sum != sum || !now.Before(it.e.until) || now.Sub(it.at) >= recentTTL {
		return nil
	}
	return it.e
}

// put records e, put at now, and sweeps entries that are too old or too
// many.
func (r *recentSet) put(e *cacheEntry, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[[sha256.Size]byte]recentItem)
	}
	for len(r.order) > 0 && (len(r.order) >= recentMax || at.Sub(r.order[0].at) >= recentTTL) {
		old := r.order[0]
		r.order = r.order[1:]
		if it, ok := r.m[old.sum]; ok && it.at.Equal(old.at) {
			delete(r.m, old.sum)
		}
	}
	r.m[e.sum] = recentItem{e: e, at: at}
	r.order = append(r.order, recentKey{sum: e.sum, at: at})
}

// clear forgets every entry (benchmarks that clear the cache).
func (r *recentSet) clear() {
	r.mu.Lock()
	r.m, r.order = nil, nil
	r.mu.Unlock()
}
