package connections

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// cacheTTL bounds how long a replica trusts what it read from the store: a
// revocation on another replica is seen within this time.
const cacheTTL = 2 * time.Second

const (
	cacheShards     = 32
	cacheMaxEntries = 1 << 18
)

// entry is what one replica knows about one key, for at most cacheTTL. It
// is immutable once published, except touched.
type entry struct {
	conn        Connection
	tok         *Token    // nil: no usable token (not AUTHORIZED, or sealed part unreadable)
	usableUntil time.Time // for tok; zero: no expiry
	nextAttempt time.Time // refresh back-off
	hasRefresh  bool
	openErr     error     // the sealed tokens of an AUTHORIZED record do not open
	until       time.Time // cache expiry
	touched     atomic.Bool
}

// usable reports whether e's token may be handed out at now.
func (e *entry) usable(now time.Time) bool {
	return e.tok != nil && (e.usableUntil.IsZero() || now.Before(e.usableUntil))
}

// cache is a sharded map of entries with expiry. Safe for concurrent use.
type cache struct {
	seed   maphash.Seed
	shards [cacheShards]struct {
		mu sync.RWMutex
		m  map[Key]*entry
	}
}

func newCache() *cache {
	c := &cache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].m = make(map[Key]*entry)
	}
	return c
}

func (c *cache) shard(k Key) int { return int(maphash.Comparable(c.seed, k) % cacheShards) }

// get returns the live entry for k at now, or nil.
func (c *cache) get(k Key, now time.Time) *entry {
	s := &c.shards[c.shard(k)]
	s.mu.RLock()
	e := s.m[k]
	s.mu.RUnlock()
	if e == nil || !now.Before(e.until) {
		return nil
	}
	return e
}

func (c *cache) put(k Key, e *entry) {
	s := &c.shards[c.shard(k)]
	s.mu.Lock()
	if len(s.m) >= cacheMaxEntries/cacheShards {
		for kk := range s.m { // make room: drop an arbitrary entry
			delete(s.m, kk)
			break
		}
	}
	s.m[k] = e
	s.mu.Unlock()
}

func (c *cache) del(k Key) {
	s := &c.shards[c.shard(k)]
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

// purge drops expired entries.
func (c *cache) purge(now time.Time) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.m {
			if !now.Before(e.until) {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}
