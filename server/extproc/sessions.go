package extproc

import (
	"context"
	"sync"
	"time"
)

// ClientCapabilities is what a client declared at initialize that the
// Check path needs later.
type ClientCapabilities struct {
	Elicitation     bool // capabilities.elicitation present
	ElicitationForm bool // form mode: elicitation.form, or an empty elicitation object (2025-06-18)
	// ElicitationURL is elicitation.url (2025-11-25): only then may mcpauthz
	// answer with a -32042 URL elicitation.
	ElicitationURL bool
}

// SessionRecorder learns what each MCP session's initialize declared, keyed
// by SessionKey(server, Mcp-Session-Id of the initialize response).
// Implementations must not block (Process waits for them).
type SessionRecorder interface {
	RecordInitialize(ctx context.Context, sessionKey string, caps ClientCapabilities)
}

// CapabilityStore is an in-memory SessionRecorder the Check path can read
// (Lookup). Entries live for ttl after their last write; at most max are
// kept (the oldest go first when full). Safe for concurrent use. It is per
// process: with several mcpauthz replicas behind one Envoy, a lookup on
// another replica misses, which must mean "not declared".
type CapabilityStore struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[string]capEntry
}

type capEntry struct {
	caps ClientCapabilities
	at   time.Time
}

var _ SessionRecorder = (*CapabilityStore)(nil)

// NewCapabilityStore returns a store (ttl default 24h, max default 100000);
// now defaults to time.Now.
func NewCapabilityStore(ttl time.Duration, max int, now func() time.Time) *CapabilityStore {
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	if max <= 0 {
		max = 100000
	}
	if now == nil {
		now = time.Now
	}
	return &CapabilityStore{ttl: ttl, max: max, now: now, m: map[string]capEntry{}}
}

// RecordInitialize implements SessionRecorder.
func (c *CapabilityStore) RecordInitialize(_ context.Context, key string, caps ClientCapabilities) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		var oldest string
		var at time.Time
		for k, e := range c.m {
			if now.Sub(e.at) > c.ttl {
				delete(c.m, k)
				continue
			}
			if oldest == "" || e.at.Before(at) {
				oldest, at = k, e.at
			}
		}
		if len(c.m) >= c.max {
			delete(c.m, oldest)
		}
	}
	c.m[key] = capEntry{caps, now}
}

// Lookup returns what the session's initialize declared; ok is false when
// unknown (treat as declaring nothing).
func (c *CapabilityStore) Lookup(key string) (ClientCapabilities, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || c.now().Sub(e.at) > c.ttl {
		return ClientCapabilities{}, false
	}
	return e.caps, true
}

// pendingLists remembers list requests sent over legacy HTTP+SSE, whose
// responses arrive on the session's GET stream: session key + request id
// -> the request's metadata (whose principal the response is filtered
// for). Bounded by ttl and max; safe for concurrent use.
type pendingLists struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[string]pendingEntry
}

type pendingEntry struct {
	meta *Metadata
	at   time.Time
}

func pendingKey(session string, id []byte) string {
	return session + "\x00" + idKey(id)
}

// idKey canonicalizes a raw JSON-RPC id: strings by their decoded value,
// numbers by their text.
func idKey(id []byte) string {
	if len(id) > 1 && id[0] == '"' {
		if s, ok := decodeString(id); ok {
			return "s" + s
		}
	}
	return "n" + string(id)
}

func (p *pendingLists) add(session string, id []byte, meta *Metadata) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.m) >= p.max {
		for k, e := range p.m {
			if now.Sub(e.at) > p.ttl {
				delete(p.m, k)
			}
		}
		if len(p.m) >= p.max {
			return // the GET stream then filters for its own principal
		}
	}
	p.m[pendingKey(session, id)] = pendingEntry{meta, now}
}

func (p *pendingLists) take(session string, id []byte) *Metadata {
	k := pendingKey(session, id)
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[k]
	if !ok {
		return nil
	}
	delete(p.m, k)
	if p.now().Sub(e.at) > p.ttl {
		return nil
	}
	return e.meta
}
