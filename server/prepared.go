package server

import (
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
	c   *ristretto.Cache[uint64, *preparedEntry]
	now func() time.Time
}

type preparedEntry struct {
	p     *identity.Principal
	pp    *policy.PreparedPrincipal // nil when the principal cannot be prepared
	owner string                    // principalKey(p), the session owner
	attr  signedAttributions        // headers.sign: per-server signed attribution
	chain []outbound.Actor          // p.Chain for credential requests, converted once
}

func newPreparedPrincipals(size int64, now func() time.Time) (*preparedPrincipals, error) {
	c, err := ristretto.NewCache(&ristretto.Config[uint64, *preparedEntry]{
		NumCounters: 10 * size, MaxCost: size, BufferItems: 64,
	})
	if err != nil {
		return nil, err
	}
	return &preparedPrincipals{c: c, now: now}, nil
}

// get returns what the hot path derives from p. Its pp is nil when p cannot
// be prepared (the caller then converts on the fly and gets the error).
func (c *preparedPrincipals) get(p *identity.Principal) *preparedEntry {
	key := uint64(uintptr(unsafe.Pointer(p)))
	if e, ok := c.c.Get(key); ok && e.p == p {
		return e
	}
	e := &preparedEntry{p: p, owner: principalKey(p)}
	for _, a := range p.Chain {
		e.chain = append(e.chain, outbound.Actor{Subject: actorSubject(&a), ClientID: a.ClientID, Issuer: a.Issuer})
	}
	if pp, err := policy.PreparePrincipal(policyPrincipal(p)); err == nil {
		e.pp = pp
		if ttl := p.ExpiresAt.Sub(c.now()); ttl > 0 {
			c.c.SetWithTTL(key, e, 1, ttl)
		}
	}
	return e
}

func (c *preparedPrincipals) close() { c.c.Close() }
