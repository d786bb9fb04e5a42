// Package jwks holds the one JSON Web Key Set client of mcpauthz and the
// JWS verification it serves: the identity verifier (bearer tokens, ID
// tokens) and the token-exchange client (tokens issued by an STS) both use
// it.
//
// A [KeySet] fetches an issuer's keys lazily, from a configured jwks_uri or
// from the issuer's discovery document (whose issuer must equal the
// configured one). Until the first fetch succeeds every lookup retries it,
// concurrent attempts collapsed into one request; afterwards an unknown kid
// triggers a refresh at most once per Config.MinRefresh (measured from the
// previous fetch attempt, with Config.Now), a burst of unknown kids costs
// one request, and a failed refresh keeps the previous keys. Responses are
// bounded to 1 MiB, redirects are not followed, and symmetric or otherwise
// unusable keys are skipped. Keys are never taken from a token (jku, x5u,
// jwk and x5c headers are ignored).
//
// [Parse] splits a compact JWS once and decodes its header strictly;
// [VerifyWithKey] checks a signature over the signing input directly with
// crypto/rsa, crypto/ecdsa or crypto/ed25519, so a token is parsed once on
// the hot path. [KeySet.VerifySignature] implements go-oidc's oidc.KeySet
// for callers that keep oidc.NewVerifier.
package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Defaults for zero Config fields.
const (
	DefaultMinRefresh = 30 * time.Second
	DefaultTimeout    = 5 * time.Second
	// MaxResponseBytes bounds discovery documents and key sets.
	MaxResponseBytes = 1 << 20
)

// Sentinel errors. Errors returned by this package wrap one of them.
var (
	// ErrUnknownKid: no key of the set matches the token's kid and alg,
	// even after a refresh (or the refresh was rate limited).
	ErrUnknownKid = errors.New("jwks: unknown key id")
	// ErrUnavailable: the discovery document or key set could not be
	// fetched, or holds no usable signing key.
	ErrUnavailable = errors.New("jwks: key set unavailable")
	// ErrMalformed: the token is not a well-formed compact JWS.
	ErrMalformed = errors.New("jwks: malformed JWS")
	// ErrAlgNotAllowed: the JWS alg is not in the allow-list.
	ErrAlgNotAllowed = errors.New("jwks: algorithm not allowed")
	// ErrBadSignature: no candidate key verified the signature.
	ErrBadSignature = errors.New("jwks: signature did not verify")
)

// errRateLimited is internal: a refresh asked for within MinRefresh.
var errRateLimited = errors.New("jwks: refresh rate limited")

// Config configures a KeySet.
type Config struct {
	// Issuer is the expected issuer of the discovery document. Required
	// when JWKSURL is empty.
	Issuer string
	// Name identifies the key set in logs and errors (an issuer name).
	Name string
	// JWKSURL, when set, is fetched directly and discovery is skipped.
	JWKSURL string
	// DiscoveryURL is the OpenID Connect / RFC 8414 document naming
	// jwks_uri. Used only when JWKSURL is empty.
	DiscoveryURL string
	// Algorithms is the JWS allow-list of VerifySignature. Only asymmetric
	// algorithms (RS*, PS*, ES*, EdDSA) are honoured; empty allows all of
	// them.
	Algorithms []string
	// HTTPClient is copied; the copy refuses redirects and gets Timeout
	// when it has none. Default: a new http.Client.
	HTTPClient *http.Client
	// Timeout bounds each fetch. Default 5s.
	Timeout time.Duration
	// MinRefresh is the minimum interval between refreshes triggered by
	// unknown key ids. Default 30s.
	MinRefresh time.Duration
	// Now defaults to time.Now; it drives refresh rate limiting.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// KeySet is an issuer's JSON Web Key Set. It is safe for concurrent use.
type KeySet struct {
	issuer       string
	name         string
	jwksURL      string
	discoveryURL string
	algs         []string
	client       *http.Client
	timeout      time.Duration
	minRefresh   time.Duration
	now          func() time.Time
	log          *slog.Logger

	sf singleflight.Group

	mu             sync.RWMutex
	keys           []*jose.JSONWebKey
	byKid          map[string][]*jose.JSONWebKey
	loaded         bool
	lastRefresh    time.Time // last fetch attempt (success or failure)
	discoveredJWKS string
}

// New builds a KeySet. It performs no I/O. It fails when neither JWKSURL
// nor DiscoveryURL is set, or when discovery has no Issuer to check.
func New(cfg Config) (*KeySet, error) {
	switch {
	case cfg.JWKSURL == "" && cfg.DiscoveryURL == "":
		return nil, errors.New("jwks: JWKSURL or DiscoveryURL is required")
	case cfg.JWKSURL == "" && cfg.Issuer == "":
		return nil, errors.New("jwks: Issuer is required with DiscoveryURL")
	}
	for _, a := range cfg.Algorithms {
		if !Asymmetric(a) {
			return nil, fmt.Errorf("jwks: algorithm %q is not an asymmetric JWS algorithm", a)
		}
	}
	k := &KeySet{
		issuer:       cfg.Issuer,
		name:         cfg.Name,
		jwksURL:      cfg.JWKSURL,
		discoveryURL: cfg.DiscoveryURL,
		algs:         append([]string(nil), cfg.Algorithms...),
		timeout:      cfg.Timeout,
		minRefresh:   cfg.MinRefresh,
		now:          cfg.Now,
		log:          cfg.Logger,
	}
	if len(k.algs) == 0 {
		k.algs = append(k.algs, asymmetric...)
	}
	if k.name == "" {
		k.name = cfg.Issuer
	}
	if k.timeout <= 0 {
		k.timeout = DefaultTimeout
	}
	if k.minRefresh <= 0 {
		k.minRefresh = DefaultMinRefresh
	}
	if k.now == nil {
		k.now = time.Now
	}
	if k.log == nil {
		k.log = slog.Default()
	}
	c := &http.Client{}
	if cfg.HTTPClient != nil {
		cc := *cfg.HTTPClient
		c = &cc
	}
	if c.Timeout == 0 {
		c.Timeout = k.timeout
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error {
		return errors.New("jwks: redirects are not followed")
	}
	k.client = c
	return k, nil
}

// Keys returns the keys that may have produced a signature with kid and
// alg: those with that kid (any kid when kid is empty) whose own alg, when
// they declare one, is alg. The first call fetches the set; when no key
// matches, the set is refreshed, at most once per MinRefresh. Errors wrap
// ErrUnknownKid or ErrUnavailable. The returned slice and keys are shared
// and must not be modified.
func (k *KeySet) Keys(ctx context.Context, kid, alg string) ([]*jose.JSONWebKey, error) {
	k.mu.RLock()
	loaded := k.loaded
	cands := k.candidatesLocked(kid, alg)
	k.mu.RUnlock()
	if !loaded {
		if err := k.refresh(ctx, true); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrUnavailable, k.name)
		}
		k.mu.RLock()
		cands = k.candidatesLocked(kid, alg)
		k.mu.RUnlock()
	}
	if len(cands) > 0 {
		return cands, nil
	}
	// Unknown kid: the issuer may have rotated. Refresh, rate-limited.
	if !k.mayRefresh() {
		return nil, ErrUnknownKid
	}
	if err := k.refresh(ctx, false); err != nil {
		if errors.Is(err, errRateLimited) {
			return nil, ErrUnknownKid
		}
		return nil, fmt.Errorf("%w: %s", ErrUnavailable, k.name)
	}
	k.mu.RLock()
	cands = k.candidatesLocked(kid, alg)
	k.mu.RUnlock()
	if len(cands) == 0 {
		return nil, ErrUnknownKid
	}
	return cands, nil
}

// candidatesLocked filters the keys for kid and alg. It allocates only
// when a key with the kid is pinned to another alg.
func (k *KeySet) candidatesLocked(kid, alg string) []*jose.JSONWebKey {
	all := k.keys
	if kid != "" {
		all = k.byKid[kid]
	}
	fits := func(key *jose.JSONWebKey) bool { return key.Algorithm == "" || key.Algorithm == alg }
	n := 0
	for _, key := range all {
		if fits(key) {
			n++
		}
	}
	if n == len(all) {
		return all
	}
	out := make([]*jose.JSONWebKey, 0, n)
	for _, key := range all {
		if fits(key) {
			out = append(out, key)
		}
	}
	return out
}

func (k *KeySet) mayRefresh() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.now().Sub(k.lastRefresh) >= k.minRefresh
}

// refresh fetches the key set. Concurrent callers share one fetch. Initial
// fetches (no keys yet) are not rate limited; refreshes are, re-checked
// inside the singleflight so a burst of unknown kids costs one request.
func (k *KeySet) refresh(ctx context.Context, initial bool) error {
	key := "refresh"
	if initial {
		key = "initial"
	}
	_, err, _ := k.sf.Do(key, func() (any, error) {
		k.mu.Lock()
		if initial && k.loaded {
			k.mu.Unlock()
			return nil, nil
		}
		if !initial && k.now().Sub(k.lastRefresh) < k.minRefresh {
			k.mu.Unlock()
			return nil, errRateLimited
		}
		k.lastRefresh = k.now()
		k.mu.Unlock()

		// Detach from the caller's cancellation: the result is shared.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), k.timeout)
		defer cancel()
		keys, err := k.fetchKeys(fctx)
		if err != nil {
			k.log.WarnContext(ctx, "jwks: fetch failed", "issuer", k.name, "error", err)
			return nil, err
		}
		byKid := make(map[string][]*jose.JSONWebKey, len(keys))
		for _, key := range keys {
			byKid[key.KeyID] = append(byKid[key.KeyID], key)
		}
		k.mu.Lock()
		k.keys, k.byKid, k.loaded = keys, byKid, true
		k.mu.Unlock()
		k.log.DebugContext(ctx, "jwks: refreshed", "issuer", k.name, "keys", len(keys))
		return nil, nil
	})
	return err
}

func (k *KeySet) fetchKeys(ctx context.Context) ([]*jose.JSONWebKey, error) {
	jwksURL := k.jwksURL
	if jwksURL == "" {
		k.mu.RLock()
		jwksURL = k.discoveredJWKS
		k.mu.RUnlock()
	}
	if jwksURL == "" {
		u, err := k.discover(ctx)
		if err != nil {
			return nil, err
		}
		jwksURL = u
		k.mu.Lock()
		k.discoveredJWKS = u
		k.mu.Unlock()
	}
	body, err := k.get(ctx, jwksURL)
	if err != nil {
		return nil, err
	}
	return parseKeys(body, jwksURL)
}

// parseKeys decodes a JWKS document, keeping the public signing keys of
// supported asymmetric types.
func parseKeys(body []byte, from string) ([]*jose.JSONWebKey, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("jwks: decode %s: %w", from, err)
	}
	var keys []*jose.JSONWebKey
	for _, rk := range raw.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(rk); err != nil {
			continue // unsupported key types are skipped, not fatal
		}
		if !key.Valid() || !key.IsPublic() || (key.Use != "" && key.Use != "sig") {
			continue
		}
		if _, sym := key.Key.([]byte); sym {
			continue
		}
		pub := key.Public()
		keys = append(keys, &pub)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("jwks: %s has no usable signing keys", from)
	}
	return keys, nil
}

func (k *KeySet) discover(ctx context.Context) (string, error) {
	body, err := k.get(ctx, k.discoveryURL)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("jwks: decode discovery document: %w", err)
	}
	if doc.Issuer != k.issuer {
		return "", fmt.Errorf("jwks: discovery issuer %q does not match configured %q", doc.Issuer, k.issuer)
	}
	if msg := urlcheck.Endpoint(doc.JWKSURI); msg != "" {
		return "", errors.New("jwks: discovery jwks_uri " + msg)
	}
	return doc.JWKSURI, nil
}

func (k *KeySet) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks: build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxResponseBytes))
		return nil, fmt.Errorf("jwks: fetch %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwks: read %s: %w", u, err)
	}
	if len(body) > MaxResponseBytes {
		return nil, fmt.Errorf("jwks: %s: response exceeds %d bytes", u, MaxResponseBytes)
	}
	return body, nil
}
