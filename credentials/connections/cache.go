package connections

import (
	"sync"
	"sync/atomic"
	"time"
)

// cacheTTL bounds how long a replica trusts what it read from the store: a
// revocation on another replica is seen within this time.
const cacheTTL = time.Second

// cacheMaxEntries bounds the cache (a few hundred bytes per entry).
const cacheMaxEntries = 1 << 18

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

// cache maps keys to entries with expiry. Reads are lock-free (sync.Map:
// the hot path is one hash and a few atomic loads). At most
// cacheMaxEntries are kept; expired entries go at each sweep. Safe for
// concurrent use.
type cache struct {
	m    sync.Map // Key -> *entry
	size atomic.Int64
}

func newCache() *cache { return &cache{} }

// get returns the live entry for k at now, or nil.
func (c *cache) get(k Key, now time.Time) *entry {
	v, ok := c.m.Load(k)
	if !ok {
		return nil
	}
	e := v.(*entry)
	if !now.Before(e.until) {
		return nil
	}
	return e
}

func (c *cache) put(k Key, e *entry) {
	if _, loaded := c.m.Swap(k, e); !loaded {
		if c.size.Add(1) > cacheMaxEntries {
			// Full: keep the store as the source for this key.
			if c.m.CompareAndDelete(k, e) {
				c.size.Add(-1)
			}
		}
	}
}

func (c *cache) del(k Key) {
	if _, loaded := c.m.LoadAndDelete(k); loaded {
		c.size.Add(-1)
	}
}

// purge drops expired entries.
func (c *cache) purge(now time.Time) {
	c.m.Range(func(k, v any) bool {
		if !now.Before(v.(*entry).until) && c.m.CompareAndDelete(k, v) {
			c.size.Add(-1)
		}
		return true
	})
}
