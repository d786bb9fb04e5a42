package server

import (
	"hash/maphash"
	"sync"
	"time"
)

// sessionTable binds MCP session ids (Mcp-Session-Id, the legacy sessionId
// query parameter) to the principal that first presented them, so a session
// id is never a bearer credential for somebody else. ext_authz never sees
// the upstream's response, so the binding is made on first use.
//
// Safe for concurrent use. Lookups are exact (a binding is never lost to
// an eventually-consistent cache): entries leave only when they expire or
// when a full shard must make room, oldest first.
type sessionTable struct {
	seed   maphash.Seed
	ttl    time.Duration
	perCap int
	shards [64]sessionShard
}

type sessionShard struct {
	mu sync.Mutex
	m  map[string]sessionEntry
}

type sessionEntry struct {
	owner   string
	expires time.Time
}

func newSessionTable(ttl time.Duration, capacity int) *sessionTable {
	t := &sessionTable{seed: maphash.MakeSeed(), ttl: ttl, perCap: max(capacity/64, 16)}
	for i := range t.shards {
		t.shards[i].m = map[string]sessionEntry{}
	}
	return t
}

// bind records owner for key if the key is new or expired, and reports
// whether owner may use the session.
func (t *sessionTable) bind(key, owner string, now time.Time) bool {
	sh := &t.shards[maphash.String(t.seed, key)%uint64(len(t.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e, ok := sh.m[key]; ok && now.Before(e.expires) {
		if e.owner != owner {
			return false
		}
		if e.expires.Sub(now) < t.ttl/2 { // sliding expiry, refreshed rarely
			sh.m[key] = sessionEntry{owner: owner, expires: now.Add(t.ttl)}
		}
		return true
	}
	if len(sh.m) >= t.perCap {
		sh.evict(now)
	}
	sh.m[key] = sessionEntry{owner: owner, expires: now.Add(t.ttl)}
	return true
}

// evict drops expired entries, or the oldest one when none has expired.
func (sh *sessionShard) evict(now time.Time) {
	var oldestKey string
	var oldest time.Time
	removed := false
	for k, e := range sh.m {
		if !now.Before(e.expires) {
			delete(sh.m, k)
			removed = true
			continue
		}
		if oldestKey == "" || e.expires.Before(oldest) {
			oldestKey, oldest = k, e.expires
		}
	}
	if !removed && oldestKey != "" {
		delete(sh.m, oldestKey)
	}
}

func (t *sessionTable) len() int {
	n := 0
	for i := range t.shards {
		t.shards[i].mu.Lock()
		n += len(t.shards[i].m)
		t.shards[i].mu.Unlock()
	}
	return n
}
