package outbound

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"golang.org/x/sync/singleflight"

	"github.com/mcpauthz/mcpauthz/internal/entrycache"
)

// Reasons specific to delegated credentials.
const (
	// ReasonNoSubject: the caller has no identity a delegated token could be
	// issued for (anonymous), or no token to exchange. Permanent.
	ReasonNoSubject = "delegation_no_subject"
	// ReasonScopeNotGrantable: the policy granted scopes, none of which the
	// server's configured maximum allows. Permanent.
	ReasonScopeNotGrantable = "scope_not_grantable"
	// ReasonNoActorToken: the server takes the actor token from the caller
	// and the caller sent none. Permanent.
	ReasonNoActorToken = "actor_token_missing"
	// ReasonActorMismatch: the caller's actor token names another agent
	// than the verified token's act claim (the one the policy decided
	// for). Permanent.
	ReasonActorMismatch = "actor_token_mismatch"
)

// Actor is one delegation hop as the verified principal carries it.
type Actor struct {
	Subject  string
	ClientID string
	Issuer   string
}

// delegation is one token the delegated provider needs: who for, through
// whom, for which audience and scopes.
type delegation struct {
	req        *Request
	audience   string
	scopes     []string
	actorToken string // RFC 8693 actor_token, when one is sent
}

// delegationSource issues delegated tokens: an external security token
// service (RFC 8693 / Entra OBO) or mcpauthz's built-in issuer. obtain runs
// at most once at a time per cache key.
type delegationSource interface {
	obtain(ctx context.Context, d *delegation) (token string, expiresAt time.Time, err error)
	name() string
}

// delegatedProvider caches delegated tokens per (subject token, actor,
// audience, scopes) and collapses concurrent misses.
//
// It is safe for concurrent use. A warm call hashes a few short strings,
// does one ristretto lookup and compares the full key; it does not touch
// the subject token (the verifier already hashed it).
type delegatedProvider struct {
	src      delegationSource
	header   string // lower-case upstream header
	bearer   bool
	audience string // configured audience; empty = the server's resource
	max      map[string]bool
	defaults []string
	actor    actorTokenSource
	now      func() time.Time
	timeout  time.Duration

	seed  maphash.Seed
	cache *ristretto.Cache[uint64, *delegatedEntry]
	sf    singleflight.Group
}

var _ Provider = (*delegatedProvider)(nil)

// delegatedEntry is one cached token with its full key, compared on every
// hit so a 64-bit hash collision can never serve another principal.
type delegatedEntry struct {
	key         delegationKey
	cred        *Credential
	usableUntil time.Time
}

type delegationKey struct {
	tokenHash [32]byte
	subject   string // for principals without a token (mTLS agents)
	actor     string // actor subject + hash of the actor token
	audience  string
	scopes    string // sorted, space-joined
}

func (k *delegationKey) hash(seed maphash.Seed) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.Write(k.tokenHash[:])
	for _, s := range [...]string{k.subject, k.actor, k.audience, k.scopes} {
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(s)))
		h.Write(n[:])
		h.WriteString(s)
	}
	return h.Sum64()
}

func (k *delegationKey) String() string {
	return fmt.Sprintf("%x|%s|%s|%s|%s", k.tokenHash, k.subject, k.actor, k.audience, k.scopes)
}

func (p *delegatedProvider) String() string {
	return "outbound.Provider{mode=delegated issuer=" + p.src.name() + "}"
}

// Credential returns the delegated token for req, from cache when a usable
// one exists.
func (p *delegatedProvider) Credential(ctx context.Context, req *Request) (*Credential, error) {
	if req.Kind == "anonymous" || req.Subject == "" {
		return nil, &Error{Reason: ReasonNoSubject, Err: errors.New("a delegated credential needs an authenticated caller")}
	}
	scopes, err := p.descope(req.Scopes)
	if err != nil {
		return nil, err
	}
	d := delegation{req: req, audience: p.audience, scopes: scopes}
	if d.audience == "" {
		d.audience = req.Audience
	}
	key := delegationKey{tokenHash: req.SubjectTokenHash, audience: d.audience, scopes: strings.Join(scopes, " ")}
	if req.SubjectTokenHash == ([32]byte{}) {
		key.subject = req.Kind + "|" + req.Subject
	}
	if d.actorToken, err = p.actor.token(req); err != nil {
		return nil, err
	}
	key.actor = req.Actor
	if d.actorToken != "" {
		sum := sha256.Sum256([]byte(d.actorToken))
		key.actor += "|" + base64.RawURLEncoding.EncodeToString(sum[:])
	}
	h := key.hash(p.seed)
	if e, ok := p.cache.Get(h); ok && e.key == key && p.now().Before(e.usableUntil) {
		return e.cred, nil
	}
	return p.issue(ctx, d, key, h) // by value: only a miss puts it on the heap
}

// issue obtains the token on a cache miss. Concurrent misses for the same
// key share one flight, which runs detached from the caller's
// cancellation but bounded by the configured timeout.
func (p *delegatedProvider) issue(ctx context.Context, d delegation, key delegationKey, h uint64) (*Credential, error) {
	ch := p.sf.DoChan(key.String(), func() (any, error) {
		// Re-check: a flight that just finished may have stored it.
		if e, ok := p.cache.Get(h); ok && e.key == key && p.now().Before(e.usableUntil) {
			return e, nil
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
		defer cancel()
		tok, exp, err := p.src.obtain(fctx, &d)
		if err != nil {
			return nil, err
		}
		e, err := p.entry(key, &d, tok, exp)
		if err != nil {
			return nil, err
		}
		if e.usableUntil.After(p.now()) {
			p.cache.Set(h, e, 1) // usableUntil is checked on every hit (entrycache: no TTL)
			p.cache.Wait()       // visible to the next caller before the flight ends
		}
		return e, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			var oe *Error
			if errors.As(r.Err, &oe) {
				return nil, r.Err
			}
			return nil, &Error{Reason: ReasonTokenInvalidResponse, Err: r.Err}
		}
		return r.Val.(*delegatedEntry).cred, nil
	case <-ctx.Done():
		return nil, &Error{Reason: ReasonCanceled, Transient: true, Err: ctx.Err()}
	}
}

// entry builds the cached credential; it is used until a margin before the
// token expires (a fifth of its lifetime, at most a minute).
func (p *delegatedProvider) entry(key delegationKey, d *delegation, tok string, exp time.Time) (*delegatedEntry, error) {
	now := p.now()
	if tok == "" {
		return nil, &Error{Reason: ReasonTokenInvalidResponse, Err: errors.New("empty delegated token")}
	}
	if !exp.After(now) {
		return nil, &Error{Reason: ReasonTokenInvalidResponse, Err: errors.New("delegated token already expired")}
	}
	margin := min(exp.Sub(now)/5, time.Minute)
	until := exp.Add(-margin)
	if se := d.req.SubjectExpiresAt; !se.IsZero() && se.Before(until) {
		// Never serve a delegated token once the caller's own token has
		// expired, whatever the token's own lifetime (an external STS may
		// issue longer-lived tokens).
		until = se
	}
	v := tok
	if p.bearer {
		v = "Bearer " + tok
	}
	return &delegatedEntry{
		key: key,
		cred: &Credential{
			Mode:      ModeDelegated,
			Headers:   []Header{{Name: p.header, Value: v}},
			Subject:   d.req.upstreamSubject(),
			Actor:     d.req.upstreamActor(),
			Audience:  d.audience,
			Scopes:    d.scopes,
			ExpiresAt: exp,
		},
		usableUntil: until,
	}, nil
}

// descope returns the scopes to request: those the policy granted (or the
// configured defaults when it granted none), limited to the configured
// maximum, sorted and without duplicates. Granted scopes of which none is
// allowed refuse the credential rather than widen or silently drop to none.
func (p *delegatedProvider) descope(granted []string) ([]string, error) {
	if len(granted) == 0 {
		return p.defaults, nil
	}
	if p.usable(granted) {
		return granted, nil // the common case: no copy (callers treat it as read-only)
	}
	out := make([]string, 0, len(granted))
	for _, s := range granted {
		if (p.max == nil || p.max[s]) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, &Error{Reason: ReasonScopeNotGrantable,
			Err: fmt.Errorf("none of the granted scopes %q is within the server's maximum", granted)}
	}
	slices.Sort(out)
	return out, nil
}

// usable reports whether granted can be requested as it is: every scope
// within the maximum, sorted, no duplicates.
func (p *delegatedProvider) usable(granted []string) bool {
	for i, s := range granted {
		if (p.max != nil && !p.max[s]) || (i > 0 && granted[i-1] >= s) {
			return false
		}
	}
	return true
}

// actorTokenSource says where the RFC 8693 actor_token comes from.
type actorTokenSource struct {
	static string // source: config
	header string // source: caller (lower-case)
}

func (a actorTokenSource) token(req *Request) (string, error) {
	switch {
	case a.static != "":
		return a.static, nil
	case a.header != "":
		if req.Kind != "agent_for_user" {
			return "", nil // only an agent acting for a user has an actor to prove
		}
		v := req.Headers[a.header]
		if v == "" {
			return "", &Error{Reason: ReasonNoActorToken,
				Err: fmt.Errorf("the caller acts for a user but sent no actor token in %s", a.header)}
		}
		if len(v) > len("bearer ") && strings.EqualFold(v[:len("bearer ")], "bearer ") {
			v = v[len("bearer "):]
		}
		// The policy decided for the agent named by the verified token's
		// act claim; an actor token for any other agent would make the STS
		// issue a token naming someone the policy never saw.
		if sub := unverifiedSubject(v); sub == "" || sub != req.Actor {
			return "", &Error{Reason: ReasonActorMismatch,
				Err: errors.New("the actor token does not name the agent in the caller's act claim")}
		}
		return v, nil
	}
	return "", nil
}

// unverifiedSubject reads "sub" from a JWT without verifying it. It is used
// only to know which actor to EXPECT in the issued token's act claim; the
// token service verifies the actor token itself.
func unverifiedSubject(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Sub string `json:"sub"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Sub
}

// Defaults for DelegatedConfig.
const (
	DefaultDelegatedCacheSize = 100000
	defaultDelegatedTimeout   = 5 * time.Second
)

// newDelegatedCore builds the caching/collapsing provider around src.
func newDelegatedCore(src delegationSource, cfg *DelegatedConfig, opts Options) (*delegatedProvider, error) {
	header := cfg.Header
	if header == "" {
		header = DefaultHeader
	}
	size := cfg.CacheSize
	if size == 0 {
		size = DefaultDelegatedCacheSize
	}
	cache, err := entrycache.New[uint64, *delegatedEntry](size)
	if err != nil {
		return nil, fmt.Errorf("delegated: cache: %w", err)
	}
	p := &delegatedProvider{
		src:      src,
		header:   strings.ToLower(header),
		bearer:   strings.EqualFold(header, DefaultHeader),
		audience: cfg.Audience,
		defaults: slices.Sorted(slices.Values(slices.Compact(slices.Sorted(slices.Values(cfg.DefaultScopes))))),
		now:      opts.Now,
		timeout:  cfg.Timeout,
		seed:     maphash.MakeSeed(),
		cache:    cache,
	}
	if p.timeout == 0 {
		p.timeout = defaultDelegatedTimeout
	}
	if len(cfg.Scopes) > 0 {
		p.max = make(map[string]bool, len(cfg.Scopes))
		for _, s := range cfg.Scopes {
			p.max[s] = true
		}
	}
	if a := cfg.ActorToken; a != nil {
		switch a.Source {
		case ActorFromConfig:
			v, err := a.Token.Resolve()
			if err != nil {
				return nil, fmt.Errorf("delegated.actor_token.token: %w", err)
			}
			p.actor.static = v.Reveal()
		case ActorFromCaller:
			p.actor.header = strings.ToLower(orDefault(a.Header, DefaultActorTokenHeader))
		}
	}
	return p, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// ConsumedHeaders names request headers this provider reads that must not
// reach the upstream (the caller's actor token).
func (p *delegatedProvider) ConsumedHeaders() []string {
	if p.actor.header == "" {
		return nil
	}
	return []string{p.actor.header}
}
