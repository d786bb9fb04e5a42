package server

import (
	"sync"
	"time"
	"unsafe"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/policy"
)

// preparedPrincipals memoizes the policy engine's converted form of each
// verified principal, so a warm Check does not convert claims again. The
// identity verifier returns the same immutable *Principal for every request
// with the same token; entries are keyed by that pointer and hold it, so the
// address cannot be reused by another principal while the entry lives.
// Safe for concurrent use.
type preparedPrincipals struct {
	c *ristretto.Cache[uint64, *preparedEntry]
	// handles finds an entry by the handle ext_authz hands to ext_proc. A
	// plain bounded map: a cache that may drop writes would make list
	// filtering fail for a principal the Check just allowed.
	handles handleTable
	now     func() time.Time
}

// handleTable maps ext_proc handles to prepared entries until their
// principal expires. Bounded: when full, expired entries go first, then
// arbitrary ones (that principal's lists then fail closed until its token
// is seen anew). Safe for concurrent use.
type handleTable struct {
	mu  sync.Mutex
	max int
	m   map[string]handleEntry
}

type handleEntry struct {
	e   *preparedEntry
	exp time.Time
}

func (t *handleTable) put(h string, e *preparedEntry, exp time.Time, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= t.max {
		for k, v := range t.m {
			if !now.Before(v.exp) {
				delete(t.m, k)
			}
		}
		for k := range t.m {
			if len(t.m) < t.max {
				break
			}
			delete(t.m, k)
		}
	}
	t.m[h] = handleEntry{e: e, exp: exp}
}

func (t *handleTable) get(h string, now time.Time) *preparedEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[h]
	if !ok || !now.Before(v.exp) {
		return nil
	}
	return v.e
}

type preparedEntry struct {
	p     *identity.Principal
	pp    *policy.PreparedPrincipal // nil when the principal cannot be prepared
	owner string                    // principalKey(p), the session owner
	attr  signedAttributions        // headers.sign: per-server signed attribution
	chain []outbound.Actor          // p.Chain for credential requests, converted once
	// handle names the entry in ext_proc metadata (principalHandle).
	handle string
}

func newPreparedPrincipals(size int64, now func() time.Time) (*preparedPrincipals, error) {
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *preparedEntry]{
		NumCounters: 10 * size, MaxCost: size, BufferItems: 64,
	})
	if err != nil {
		return nil, err
	}
	return &preparedPrincipals{c: c, handles: handleTable{max: int(size), m: map[string]handleEntry{}}, now: now}, nil
}

// get returns what the hot path derives from p. Its pp is nil when p cannot
// be prepared (the caller then converts on the fly and gets the error).
func (c *preparedPrincipals) get(p *identity.Principal) *preparedEntry {
	key := uint64(uintptr(unsafe.Pointer(p)))
	if e, ok := c.c.Get(key); ok && e.p == p {
		return e
	}
	e := &preparedEntry{p: p, owner: principalKey(p)}
	e.handle = principalHandle(p, e.owner)
	for _, a := range p.Chain {
		e.chain = append(e.chain, outbound.Actor{Subject: actorSubject(&a), ClientID: a.ClientID, Issuer: a.Issuer})
	}
	if pp, err := policy.PreparePrincipal(policyPrincipal(p)); err == nil {
		e.pp = pp
		now := c.now()
		exp := p.ExpiresAt
		if exp.IsZero() {
			exp = now.Add(5 * time.Minute) // mTLS principals: re-registered when seen after that
		}
		if ttl := p.ExpiresAt.Sub(now); ttl > 0 {
			c.c.SetWithTTL(key, e, 1, ttl)
		}
		if exp.After(now) {
			c.handles.put(e.handle, e, exp, now)
		}
	}
	return e
}

func (c *preparedPrincipals) close() { c.c.Close() }

// byHandle returns the entry ext_authz named in ext_proc metadata, nil when
// unknown (evicted, expired, or prepared by another replica).
func (c *preparedPrincipals) byHandle(h string) *preparedEntry {
	return c.handles.get(h, c.now())
}
