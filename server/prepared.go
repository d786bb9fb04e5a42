package server

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/policy"
)

// preparedPrincipals memoizes the policy engine's converted form of each
// verified principal, so a warm Check does not convert claims again. The
// identity verifier returns the same immutable *Principal for every request
// with the same token; the entry is attached to that Principal
// (Principal.AttachMemo), so it lives exactly as long as the token cache
// keeps the Principal: no second cache to size, look up or keep in step.
// Safe for concurrent use.
type preparedPrincipals struct {
	// handles finds an entry by the handle ext_authz hands to ext_proc. A
	// plain bounded map: a cache that may drop writes would make list
	// filtering fail for a principal the Check just allowed.
	handles handleTable
	now     func() time.Time
	ids     atomic.Uint64
	// dropHandle is dropHandleKey as a func value, made once.
	dropHandle func(handleKey)
}

// handleTable maps ext_proc handles to prepared entries until their
// principal expires. It holds the entries weakly: an entry lives as long as
// the token cache keeps its Principal (or a request in flight uses it), so
// the table never keeps evicted callers' claims in memory; a collected
// entry's handle is removed by a cleanup (runtime.AddCleanup), and a handle
// whose entry is gone resolves to nothing, so ext_proc fails closed for it
// until a later Check of the principal publishes it again. Bounded: when full,
// expired entries go first, then arbitrary ones, a sixteenth of the table
// at once so the sweep is paid once per many insertions, not on each.
//
// The Check path never turns a weak pointer into a strong one: has compares
// entry ids. weak.Pointer.Value parks the goroutine while the garbage
// collector finishes marking (work.strongFromWeak.block), which stalled a
// warm Check for milliseconds. Only ext_proc's lookup (get) pays that.
// Safe for concurrent use.
type handleTable struct {
	mu  sync.RWMutex
	max int
	m   map[string]handleEntry
}

type handleEntry struct {
	e   weak.Pointer[preparedEntry]
	id  uint64 // preparedEntry.id
	exp time.Time
}

func (t *handleTable) put(h string, e *preparedEntry, exp time.Time, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[h]; !ok && len(t.m) >= t.max {
		for k, v := range t.m {
			if !now.Before(v.exp) {
				delete(t.m, k)
			}
		}
		for k := range t.m {
			if len(t.m) <= t.max-max(1, t.max/16) {
				break
			}
			delete(t.m, k)
		}
	}
	t.m[h] = handleEntry{e: weak.Make(e), id: e.id, exp: exp}
}

// drop removes h if it still names the entry with id (a collected entry's
// cleanup).
func (t *handleTable) drop(h string, id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.m[h]; ok && v.id == id {
		delete(t.m, h)
	}
}

// len is the number of handles held.
func (t *handleTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

// has reports whether h names e, under the read lock only.
func (t *handleTable) has(h string, e *preparedEntry) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	v, ok := t.m[h]
	return ok && v.id == e.id
}

func (t *handleTable) get(h string, now time.Time) *preparedEntry {
	t.mu.RLock()
	v, ok := t.m[h]
	t.mu.RUnlock()
	if !ok || !now.Before(v.exp) {
		return nil
	}
	return v.e.Value()
}

type preparedEntry struct {
	p     *identity.Principal
	pp    *policy.PreparedPrincipal // converted by its first evaluation
	owner string                    // principalKey(p), the session owner
	attr  signedAttributions        // headers.sign: per-server signed attribution
	chain []outbound.Actor          // p.Chain for credential requests, converted once
	// handle names the entry in ext_proc metadata (principalHandle).
	handle string
	id     uint64 // unique within its table (handleTable.has)
	// cleanup is set once the entry's handle cleanup is added (publish).
	cleanup atomic.Bool
	// from is the table that made the entry: a Principal shared by two
	// Services (one verifier) is attached to the first one's entry, and
	// the other, whose signing keys differ, must not use it.
	from *preparedPrincipals
}

func newPreparedPrincipals(size int64, now func() time.Time) *preparedPrincipals {
	c := &preparedPrincipals{handles: handleTable{max: int(size), m: map[string]handleEntry{}}, now: now}
	c.dropHandle = c.dropHandleKey
	return c
}

// get returns what the hot path derives from p. The entry's handle is not
// registered for ext_proc: publish does that, for the exchanges ext_proc
// evaluates.
func (c *preparedPrincipals) get(p *identity.Principal) *preparedEntry {
	if e, ok := p.Memo().(*preparedEntry); ok && e.from == c {
		return e
	}
	e := &preparedEntry{p: p, owner: principalKey(p), from: c, id: c.ids.Add(1)}
	e.handle = principalHandle(p, e.owner)
	for _, a := range p.Chain {
		e.chain = append(e.chain, outbound.Actor{Subject: actorSubject(&a), ClientID: a.ClientID, Issuer: a.Issuer})
	}
	e.pp = policy.PreparePrincipal(policyPrincipal(p)) // converted on first evaluation
	if won, ok := p.AttachMemo(e).(*preparedEntry); ok && won != e && won.from == c {
		return won // a concurrent Check prepared it first
	}
	return e
}

// publish registers e's handle, so ext_proc resolves it, unless it is
// already registered. Only exchanges whose response ext_proc evaluates
// (extproc.Metadata.UsesPrincipal) publish: most calls never pay for the
// table or the cleanup.
func (c *preparedPrincipals) publish(e *preparedEntry) {
	if e.from != c || c.handles.has(e.handle, e) {
		return
	}
	if e.cleanup.CompareAndSwap(false, true) {
		runtime.AddCleanup(e, c.dropHandle, handleKey{e.handle, e.id})
	}
	c.register(e, c.now())
}

// dropHandleKey is the cleanup of a collected entry.
func (c *preparedPrincipals) dropHandleKey(k handleKey) { c.handles.drop(k.h, k.id) }

// handleKey is what the cleanup of a collected entry needs (not the entry).
type handleKey struct {
	h  string
	id uint64
}

// register names e's handle for ext_proc until its principal expires.
func (c *preparedPrincipals) register(e *preparedEntry, now time.Time) {
	exp := e.p.ExpiresAt
	if exp.IsZero() {
		exp = now.Add(5 * time.Minute) // mTLS principals: re-registered when seen after that
	}
	if exp.After(now) {
		c.handles.put(e.handle, e, exp, now)
	}
}

// byHandle returns the entry ext_authz named in ext_proc metadata, nil when
// unknown (evicted, expired, or prepared by another replica).
func (c *preparedPrincipals) byHandle(h string) *preparedEntry {
	return c.handles.get(h, c.now())
}
