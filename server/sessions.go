package server

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"time"
)

// sessionStore binds MCP session ids (Mcp-Session-Id, the legacy query
// parameter) to the principal that first presented them, so a session id is
// never a bearer credential for somebody else. ext_authz never sees the
// upstream's response, so the binding is made on first use.
//
// Implementations must be exact (a binding is never lost to an eventually
// consistent cache) and must refuse rather than forget: a live binding
// leaves only when it expires. With several replicas the store must be
// shared (the PostgreSQL store); memSessions serves one process.
type sessionStore interface {
	// Bind records owner for key when the key is new or expired and reports
	// whether owner may use the session: ErrSessionOwned when another
	// principal holds it, ErrSessionQuota / ErrSessionsFull when a new
	// binding would exceed a bound; any other error means the store failed
	// (the caller denies).
	Bind(ctx context.Context, key string, owner sessionOwner, now time.Time) error
}

// sessionOwner identifies who owns a session: the principal key, and
// whether it is the shared anonymous principal (counted against its own
// bound).
type sessionOwner struct {
	key       string
	anonymous bool
}

// Errors of sessionStore.Bind.
var (
	errSessionOwned = errors.New("server: session bound to another principal")
	errSessionQuota = errors.New("server: principal holds too many sessions")
	errSessionsFull = errors.New("server: session table full")
)

var _ sessionStore = (*memSessions)(nil)

// memSessions is the in-process sessionStore. Safe for concurrent use:
// lookups of existing bindings take one shard lock; creating a binding also
// takes the owner's counter lock (always after the shard lock).
type memSessions struct {
	seed       maphash.Seed
	ttl        time.Duration
	perShard   int // capacity of one shard
	perOwner   int // live sessions one principal may hold
	anonymous  int // live sessions all anonymous callers may hold
	shards     [64]sessionShard
	ownerLocks [64]ownerShard
}

type sessionShard struct {
	mu sync.Mutex
	m  map[string]sessionEntry
}

type sessionEntry struct {
	owner   string
	expires time.Time
}

// ownerShard tracks, per owner, the expiry of each session it holds, so a
// quota counts only live sessions without scanning the table.
type ownerShard struct {
	mu sync.Mutex
	m  map[string]map[string]time.Time
}

func newMemSessions(ttl time.Duration, capacity, perOwner, anonymous int) *memSessions {
	t := &memSessions{
		seed: maphash.MakeSeed(), ttl: ttl, perShard: max(capacity/64, 16),
		perOwner: perOwner, anonymous: anonymous,
	}
	for i := range t.shards {
		t.shards[i].m = map[string]sessionEntry{}
		t.ownerLocks[i].m = map[string]map[string]time.Time{}
	}
	return t
}

func (t *memSessions) ownerShard(owner string) *ownerShard {
	return &t.ownerLocks[maphash.String(t.seed, owner)%uint64(len(t.ownerLocks))]
}

// Bind implements sessionStore.
func (t *memSessions) Bind(_ context.Context, key string, o sessionOwner, now time.Time) error {
	sh := &t.shards[maphash.String(t.seed, key)%uint64(len(t.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[key]
	if ok && now.Before(e.expires) {
		if e.owner != o.key {
			return errSessionOwned
		}
		if e.expires.Sub(now) < t.ttl/2 { // sliding expiry, refreshed rarely
			exp := now.Add(t.ttl)
			sh.m[key] = sessionEntry{owner: o.key, expires: exp}
			os := t.ownerShard(o.key)
			os.mu.Lock()
			if keys := os.m[o.key]; keys != nil {
				keys[key] = exp
			}
			os.mu.Unlock()
		}
		return nil
	}
	if ok { // expired: release it from its previous owner's count
		t.release(e.owner, key)
		delete(sh.m, key)
	}
	if len(sh.m) >= t.perShard {
		t.sweep(sh, now)
		if len(sh.m) >= t.perShard {
			return errSessionsFull
		}
	}
	limit := t.perOwner
	if o.anonymous {
		limit = t.anonymous
	}
	exp := now.Add(t.ttl)
	os := t.ownerShard(o.key)
	os.mu.Lock()
	keys := os.m[o.key]
	if len(keys) >= limit {
		for k, x := range keys { // forget only what has expired
			if !now.Before(x) {
				delete(keys, k)
			}
		}
		if len(keys) >= limit {
			os.mu.Unlock()
			return errSessionQuota
		}
	}
	if keys == nil {
		keys = map[string]time.Time{}
		os.m[o.key] = keys
	}
	keys[key] = exp
	os.mu.Unlock()
	sh.m[key] = sessionEntry{owner: o.key, expires: exp}
	return nil
}

// release forgets key from owner's live set. Called with the key's shard
// lock held (lock order: session shard, then owner shard).
func (t *memSessions) release(owner, key string) {
	os := t.ownerShard(owner)
	os.mu.Lock()
	if keys := os.m[owner]; keys != nil {
		delete(keys, key)
		if len(keys) == 0 {
			delete(os.m, owner)
		}
	}
	os.mu.Unlock()
}

// sweep drops the expired entries of a shard (never a live one) and
// releases them from their owners, so the owner sets stay bounded by the
// table. Called with the shard lock held.
func (t *memSessions) sweep(sh *sessionShard, now time.Time) {
	for k, e := range sh.m {
		if !now.Before(e.expires) {
			t.release(e.owner, k)
			delete(sh.m, k)
		}
	}
}

func (t *memSessions) len() int {
	n := 0
	for i := range t.shards {
		t.shards[i].mu.Lock()
		n += len(t.shards[i].m)
		t.shards[i].mu.Unlock()
	}
	return n
}

// sessionCount is the number of bindings a store holds, -1 when it cannot
// tell cheaply (a shared store).
func sessionCount(st sessionStore) int {
	if c, ok := st.(interface{ len() int }); ok {
		return c.len()
	}
	return -1
}
