// Package identity establishes who is calling: it verifies bearer JWT access
// tokens (RFC 9068) against configured OIDC/OAuth issuers, judges opaque
// access tokens through RFC 7662 introspection, checks mTLS SPIFFE ids, and
// classifies each caller as a human, an agent acting for a user (RFC 8693
// delegation via `act`), or an agent acting on its own.
//
// Security properties:
//   - the issuer is picked by exact match of the unverified `iss` against
//     configuration; keys are fetched only from configured or discovered
//     URLs, never from URLs inside a token (jku, x5u are ignored);
//   - the JWS `alg` must be in the issuer's asymmetric allow-list, so "none"
//     and HMAC (including the public-key-as-secret attack) are refused;
//   - exp is required; exp, nbf and iat are checked with a small leeway;
//   - outbound HTTP has a timeout, a 1 MiB body limit and no redirects;
//   - errors and logs never contain the token or a client secret;
//   - an opaque token goes to exactly one issuer's introspection endpoint,
//     chosen by configuration (token_prefix), never to any other.
//
// Claims are read exactly (claims.go): numbers stay json.Number, the
// claims that name someone must be strings or integers, scopes and roles
// have one accepted shape each. Agents are recognised from `act`, from
// configuration and from the token shapes of the major IdPs (agent.go,
// AgentRules). [Verifier.PrincipalFromIDToken] judges OIDC ID tokens for
// sign-in flows with the same claim rules.
//
// The JWS `typ` header is not enforced: RFC 9068 asks for at+jwt, but
// several IdPs (Auth0, Keycloak) issue access tokens typed "JWT".
//
// A JWT is split once, its header and payload decoded once (the payload
// exactly), the issuer picked by iss, alg and typ checked and exp, nbf and
// iat judged before any cryptography; then the signature is checked over
// header.payload with the issuer's keys (credentials/jwks), without go-oidc.
// Concurrent misses for one token share one verification.
//
// Keys are fetched lazily (credentials/jwks). Until an issuer's first JWKS
// fetch succeeds every verification retries it (concurrent attempts
// collapsed into one request); afterwards an unknown kid triggers a refresh
// at most once per Config.JWKSMinRefresh (measured from the previous fetch,
// with Options.Now).
//
// The same person reaching the service through two issuers that share a
// user namespace gets the same Principal.UserKey (namespace|org|user id),
// never a session id. The subject sent upstream, Principal.QualifiedSubject,
// is qualified by that namespace (subject.go), so the same sub from two
// unrelated issuers never names one user.
//
// Verified tokens are cached by SHA-256 for at most Config.CacheMaxAge (JWTs)
// or the issuer's introspection.cache_max_age, and never past exp.
package identity

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sync/singleflight"

	"github.com/mcpauthz/mcpauthz/credentials/jwks"
	"github.com/mcpauthz/mcpauthz/internal/entrycache"
	"github.com/mcpauthz/mcpauthz/internal/httpc"
)

// maxTokenBytes bounds the size of a token the verifier will look at.
const maxTokenBytes = 16 << 10

// Options carries the verifier's collaborators. All fields are optional.
type Options struct {
	// HTTPClient is used for discovery and JWKS. It is copied; the copy
	// refuses redirects and its timeout is capped at Config.HTTPTimeout.
	HTTPClient *http.Client
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now. It drives token validity, cache expiry and
	// JWKS refresh rate limiting.
	Now func() time.Time
}

// CacheMetrics counts verified-token cache lookups.
type CacheMetrics struct {
	Hits   uint64
	Misses uint64
	// Verifications counts signature verifications (one per candidate key
	// tried), of access tokens and ID tokens.
	Verifications uint64
}

// Ratio is Hits / (Hits + Misses), 0 when nothing was looked up.
func (m CacheMetrics) Ratio() float64 {
	if m.Hits+m.Misses == 0 {
		return 0
	}
	return float64(m.Hits) / float64(m.Hits+m.Misses)
}

type issuerState struct {
	cfg   IssuerConfig
	keys  *jwks.KeySet
	intro *introspector // nil unless the issuer introspects opaque tokens
}

// cacheEntry is a cached verification result, served while now < until.
// Exactly one of p and err is set; err (a refusal) is cached only for
// introspected tokens, briefly.
type cacheEntry struct {
	sum   [sha256.Size]byte
	until time.Time
	p     *Principal
	err   *TokenError
}

// Verifier verifies credentials and builds Principals. It is safe for
// concurrent use by multiple goroutines. Call Close to release the cache.
type Verifier struct {
	cfg      Config
	issuers  map[string]*issuerState // by exact iss
	subjects *subjectSpace
	// introspecting lists the issuers that introspect opaque tokens, in
	// configuration order (validated so at most one matches a token).
	introspecting []*issuerState
	now           func() time.Time
	log           *slog.Logger
	cache         *entrycache.Batched[uint64, *cacheEntry]
	// flight collapses concurrent misses for one JWT (keyed by its full
	// SHA-256); recent hands a flight's result to callers arriving before
	// the asynchronous cache Set is visible.
	flight        singleflight.Group
	recent        recentSet
	hits          atomic.Uint64
	misses        atomic.Uint64
	verifications atomic.Uint64
}

// errRedirect fails a discovery, JWKS or introspection call answered with
// a redirect: keys and verdicts come only from the configured URLs.
var errRedirect = errors.New("identity: redirects are not followed")

// NewVerifier validates cfg and builds a Verifier. It performs no network
// I/O: discovery documents and JWKS are fetched lazily on first use.
func NewVerifier(ctx context.Context, cfg Config, opts Options) (*Verifier, error) {
	_ = ctx
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	client := httpc.New(opts.HTTPClient, httpc.Rules{Timeout: cfg.HTTPTimeout, Redirect: errRedirect})
	cache, err := entrycache.NewBatched[uint64, *cacheEntry](cfg.CacheSize)
	if err != nil {
		return nil, fmt.Errorf("identity: create cache: %w", err)
	}
	v := &Verifier{
		cfg:      cfg,
		issuers:  make(map[string]*issuerState, len(cfg.Issuers)),
		subjects: newSubjectSpace(cfg.Issuers),
		now:      now,
		log:      log,
		cache:    cache,
	}
	for i, ic := range cfg.Issuers {
		ks, err := jwks.New(jwks.Config{
			Issuer:       ic.Issuer,
			Name:         ic.Name,
			JWKSURL:      ic.JWKSURL,
			DiscoveryURL: ic.DiscoveryURL,
			Algorithms:   ic.Algorithms,
			HTTPClient:   client,
			Timeout:      cfg.HTTPTimeout,
			MinRefresh:   cfg.JWKSMinRefresh,
			Now:          now,
			Logger:       log,
		})
		if err != nil {
			cache.Close()
			return nil, fmt.Errorf("identity: issuers[%d]: %w", i, err)
		}
		st := &issuerState{cfg: ic, keys: ks}
		if ic.Introspection != nil {
			in, err := newIntrospector(fmt.Sprintf("issuers[%d].introspection", i), ic.Name, *ic.Introspection, client, log)
			if err != nil {
				cache.Close()
				return nil, err
			}
			st.intro = in
			v.introspecting = append(v.introspecting, st)
		}
		v.issuers[ic.Issuer] = st
	}
	return v, nil
}

// Close releases the token cache. The Verifier must not be used afterwards.
func (v *Verifier) Close() { v.cache.Close() }

// Metrics reports token-cache hits and misses and the signature
// verifications performed.
func (v *Verifier) Metrics() CacheMetrics {
	return CacheMetrics{Hits: v.hits.Load(), Misses: v.misses.Load(), Verifications: v.verifications.Load()}
}

// VerifyToken verifies a bearer access token and returns its Principal.
//
// A token shaped as a JWS compact serialization is verified as a JWT;
// successful results are cached by the token's SHA-256 for at most
// min(exp-now, Config.CacheMaxAge). Any other token is introspected (RFC
// 7662) by the one introspecting issuer it is routed to (token_prefix);
// active results are cached for at most min(exp-now,
// introspection.cache_max_age), refusals for a few seconds, and concurrent
// misses for one token share one introspection call. Nothing is served at or
// after exp. The returned Principal may be shared with other callers and
// must not be modified.
//
// Errors are *TokenError wrapping ErrInvalidToken, or ErrUnavailable when the
// issuer's keys or introspection endpoint could not be reached.
func (v *Verifier) VerifyToken(ctx context.Context, raw string) (*Principal, error) {
	if raw == "" || len(raw) > maxTokenBytes {
		return nil, tokenErr(ReasonMalformed, "empty or oversized")
	}
	// Hash the string's bytes in place: the copy []byte(raw) would escape.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(raw), len(raw)))
	key := binary.LittleEndian.Uint64(sum[:8])
	now := v.now()
	if e, ok := v.cache.Get(key); ok && e.sum == sum && now.Before(e.until) {
		v.hits.Add(1)
		if e.err != nil {
			return nil, e.err
		}
		return e.p, nil
	}
	v.misses.Add(1)

	if len(v.introspecting) > 0 && !looksLikeJWS(raw) {
		if !isB64Token(raw) {
			return nil, tokenErr(ReasonMalformed, "not a b64token")
		}
		st := v.introspectorFor(raw)
		if st == nil {
			return nil, tokenErr(ReasonUnknownIssuer, "no introspecting issuer for this token")
		}
		return v.introspect(ctx, st, raw, sum, key)
	}
	return v.verifyShared(ctx, raw, sum, key, now)
}

// verifyShared verifies a JWT missing from the cache. Concurrent callers
// with the same token (the same full SHA-256) share one verification, and
// callers arriving after it but before the cache shows its entry are served
// from the recent handoff.
func (v *Verifier) verifyShared(ctx context.Context, raw string, sum [sha256.Size]byte, key uint64, now time.Time) (*Principal, error) {
	r, err, _ := v.flight.Do(string(sum[:]), func() (any, error) {
		if e := v.recent.get(sum, now); e != nil {
			return e.p, nil
		}
		// Detach from the caller's cancellation: the result is shared.
		p, err := v.verify(context.WithoutCancel(ctx), raw, now)
		if err != nil {
			return nil, err
		}
		p.TokenHash = sum
		until := minTime(p.ExpiresAt, now.Add(v.cfg.CacheMaxAge))
		if until.After(now) {
			e := &cacheEntry{sum: sum, until: until, p: p}
			v.recent.put(e, now)
			v.cache.Set(key, e) // e.until is checked on every hit (entrycache: no TTL)
		}
		return p, nil
	})
	if err != nil {
		return nil, err
	}
	return r.(*Principal), nil
}

// introspectorFor returns the introspecting issuer an opaque token is
// routed to: the one whose token_prefix it starts with, or the only one
// when it has no prefix. Validation guarantees at most one matches.
func (v *Verifier) introspectorFor(raw string) *issuerState {
	for _, st := range v.introspecting {
		if strings.HasPrefix(raw, st.intro.prefix) {
			return st
		}
	}
	return nil
}

func (v *Verifier) verify(ctx context.Context, raw string, now time.Time) (*Principal, error) {
	j, claims, err := parseJWT(raw)
	if err != nil {
		return nil, err
	}
	iss, err := issClaim(claims)
	if err != nil {
		return nil, err
	}
	is, ok := v.issuers[iss]
	if !ok {
		return nil, tokenErr(ReasonUnknownIssuer, "")
	}
	if !slices.Contains(is.cfg.Algorithms, j.Header.Alg) {
		return nil, tokenErr(ReasonAlgNotAllowed, "")
	}
	if len(is.cfg.TokenTypes) > 0 && !typAllowed(is.cfg.TokenTypes, j.Header.Typ) {
		return nil, tokenErr(ReasonTypNotAllowed, "")
	}
	exp, err := v.checkSigned(ctx, is, &j, claims, now)
	if err != nil {
		return nil, err
	}
	return buildPrincipal(v.subjects, is.cfg, claims, exp)
}

// parseJWT splits a compact JWS once, decoding its header and its payload
// (exactly, DecodeClaims). Nothing is verified.
func parseJWT(raw string) (jwks.JWS, map[string]any, error) {
	j, err := jwks.Parse(raw)
	if err != nil {
		return j, nil, tokenErr(ReasonMalformed, strings.TrimPrefix(err.Error(), jwks.ErrMalformed.Error()+": "))
	}
	b, err := j.DecodePayload()
	if err != nil {
		return j, nil, tokenErr(ReasonMalformed, "payload")
	}
	claims, err := decodeClaimsOwned(b) // b is ours: nothing else holds it
	if err != nil {
		return j, nil, tokenErr(ReasonMalformed, "claims")
	}
	return j, claims, nil
}

// issClaim reads iss: absent is "" (no issuer has it), another type than
// a string is malformed.
func issClaim(claims map[string]any) (string, error) {
	v, present := claims["iss"]
	if !present {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", tokenErr(ReasonMalformed, "iss is not a string")
	}
	return s, nil
}

// checkSigned checks the times of a token whose issuer, alg and typ were
// accepted (cheap, before any cryptography), then its signature with is's
// keys. The caller has picked is by exact iss. It returns exp.
func (v *Verifier) checkSigned(ctx context.Context, is *issuerState, j *jwks.JWS, claims map[string]any, now time.Time) (time.Time, error) {
	exp, err := checkTimes(claims, now, is.cfg.Leeway)
	if err != nil {
		return time.Time{}, err
	}
	keys, err := is.keys.Keys(ctx, j.Header.Kid, j.Header.Alg)
	switch {
	case errors.Is(err, jwks.ErrUnknownKid):
		return time.Time{}, tokenErr(ReasonUnknownKid, "")
	case err != nil:
		return time.Time{}, tokenErr(ReasonJWKSUnavailable, is.cfg.Name)
	}
	for _, key := range keys {
		v.verifications.Add(1)
		if jwks.VerifyWithKey(key, j.Header.Alg, j.SigningInput, j.Signature) == nil {
			return exp, nil
		}
	}
	return time.Time{}, tokenErr(ReasonBadSignature, "")
}

// checkTimes requires exp and checks exp, nbf and iat against now with
// leeway. It returns exp.
func checkTimes(claims map[string]any, now time.Time, leeway time.Duration) (time.Time, error) {
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return time.Time{}, tokenErr(ReasonMissingClaim, "exp")
	}
	if !now.Before(exp.Add(leeway)) {
		return time.Time{}, tokenErr(ReasonExpired, "")
	}
	if raw, present := claims["nbf"]; present {
		nbf, ok := numericDate(raw)
		if !ok {
			return time.Time{}, tokenErr(ReasonInvalidClaim, "nbf")
		}
		if now.Add(leeway).Before(nbf) {
			return time.Time{}, tokenErr(ReasonNotYetValid, "nbf")
		}
	}
	if raw, present := claims["iat"]; present {
		iat, ok := numericDate(raw)
		if !ok {
			return time.Time{}, tokenErr(ReasonInvalidClaim, "iat")
		}
		if now.Add(leeway).Before(iat) {
			return time.Time{}, tokenErr(ReasonNotYetValid, "iat")
		}
	}
	return exp, nil
}

// typAllowed compares a JWS typ with the allow-list as RFC 7515 section
// 4.1.9 says media types compare: case-insensitively, "application/"
// optional.
func typAllowed(allowed []string, typ string) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		return strings.TrimPrefix(s, "application/")
	}
	t := norm(typ)
	for _, a := range allowed {
		if norm(a) == t {
			return true
		}
	}
	return false
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// numericDate converts a JSON NumericDate (jwks.NumericDate).
func numericDate(v any) (time.Time, bool) { return jwks.NumericDate(v) }
