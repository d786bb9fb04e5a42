package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// maxResponseBytes bounds discovery documents and JWKS.
const maxResponseBytes = 1 << 20

// verifyStateKey carries a *verifyState through go-oidc into the key set so
// the precise failure reason survives go-oidc's string-formatted errors.
type verifyStateKey struct{}

type verifyState struct {
	err      *TokenError
	verified bool // the signature was verified
}

func setState(ctx context.Context, e *TokenError) error {
	if st, ok := ctx.Value(verifyStateKey{}).(*verifyState); ok {
		st.err = e
	}
	return e
}

// remoteKeySet is an oidc.KeySet backed by an issuer's JWKS. It is safe for
// concurrent use. Keys are fetched lazily; on an unknown kid the set is
// refreshed at most once per minRefresh, concurrent fetches are collapsed,
// and a failed refresh keeps the previous keys.
type remoteKeySet struct {
	issuer       string // configured issuer, for discovery checks and logs
	name         string
	jwksURL      string // configured; empty means discover
	discoveryURL string
	algs         []jose.SignatureAlgorithm
	client       *http.Client
	timeout      time.Duration
	minRefresh   time.Duration
	now          func() time.Time
	log          *slog.Logger

	sf singleflight.Group

	mu             sync.RWMutex
	keys           []jose.JSONWebKey
	loaded         bool
	lastRefresh    time.Time // last fetch attempt (success or failure)
	discoveredJWKS string
}

// VerifySignature implements oidc.KeySet.
func (k *remoteKeySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, setState(ctx, tokenErr(ReasonMalformed, "jws"))
	}
	if len(jws.Signatures) != 1 {
		return nil, setState(ctx, tokenErr(ReasonMalformed, "exactly one signature required"))
	}
	hdr := jws.Signatures[0].Header
	keys, loaded := k.snapshot()
	if !loaded {
		if err := k.refresh(ctx, true); err != nil {
			return nil, setState(ctx, tokenErr(ReasonJWKSUnavailable, k.name))
		}
		keys, _ = k.snapshot()
	}
	cands := candidates(keys, hdr.KeyID, hdr.Algorithm)
	if len(cands) == 0 {
		// Unknown kid: the issuer may have rotated. Refresh, rate-limited.
		if !k.mayRefresh() {
			return nil, setState(ctx, tokenErr(ReasonUnknownKid, ""))
		}
		if err := k.refresh(ctx, false); err != nil {
			if errors.Is(err, errRateLimited) {
				return nil, setState(ctx, tokenErr(ReasonUnknownKid, ""))
			}
			return nil, setState(ctx, tokenErr(ReasonJWKSUnavailable, k.name))
		}
		keys, _ = k.snapshot()
		cands = candidates(keys, hdr.KeyID, hdr.Algorithm)
		if len(cands) == 0 {
			return nil, setState(ctx, tokenErr(ReasonUnknownKid, ""))
		}
	}
	for i := range cands {
		if payload, err := jws.Verify(&cands[i]); err == nil {
			if st, ok := ctx.Value(verifyStateKey{}).(*verifyState); ok {
				st.verified = true
			}
			return payload, nil
		}
	}
	return nil, setState(ctx, tokenErr(ReasonBadSignature, ""))
}

// candidates returns the keys that may have produced a signature with kid
// and alg. A key that declares its own alg is pinned to it.
func candidates(keys []jose.JSONWebKey, kid, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, key := range keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Algorithm != "" && key.Algorithm != alg {
			continue
		}
		out = append(out, key)
	}
	return out
}

func (k *remoteKeySet) snapshot() ([]jose.JSONWebKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.keys, k.loaded
}

func (k *remoteKeySet) mayRefresh() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.now().Sub(k.lastRefresh) >= k.minRefresh
}

var errRateLimited = errors.New("identity: jwks refresh rate limited")

// refresh fetches the JWKS. Concurrent callers share one fetch. initial
// fetches (no keys yet) are not rate limited; refreshes are, re-checked
// inside the singleflight so a burst of unknown kids costs one request.
func (k *remoteKeySet) refresh(ctx context.Context, initial bool) error {
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
			k.log.WarnContext(ctx, "identity: jwks fetch failed", "issuer", k.name, "error", err)
			return nil, err
		}
		k.mu.Lock()
		k.keys = keys
		k.loaded = true
		k.mu.Unlock()
		k.log.DebugContext(ctx, "identity: jwks refreshed", "issuer", k.name, "keys", len(keys))
		return nil, nil
	})
	return err
}

func (k *remoteKeySet) fetchKeys(ctx context.Context) ([]jose.JSONWebKey, error) {
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
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("identity: decode jwks: %w", err)
	}
	var keys []jose.JSONWebKey
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
		keys = append(keys, key.Public())
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("identity: jwks from %s has no usable signing keys", jwksURL)
	}
	return keys, nil
}

func (k *remoteKeySet) discover(ctx context.Context) (string, error) {
	body, err := k.get(ctx, k.discoveryURL)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("identity: decode discovery document: %w", err)
	}
	if doc.Issuer != k.issuer {
		return "", fmt.Errorf("identity: discovery issuer %q does not match configured %q", doc.Issuer, k.issuer)
	}
	if err := checkFetchURL(doc.JWKSURI); err != nil {
		return "", fmt.Errorf("identity: discovery jwks_uri: %w", err)
	}
	return doc.JWKSURI, nil
}

func (k *remoteKeySet) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("identity: build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("identity: fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
		return nil, fmt.Errorf("identity: fetch %s: status %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("identity: read %s: %w", u, err)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("identity: %s: response exceeds %d bytes", u, maxResponseBytes)
	}
	return body, nil
}

func toJoseAlgs(algs []string) []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, 0, len(algs))
	for _, a := range algs {
		if slices.Contains(asymmetricAlgorithms, a) {
			out = append(out, jose.SignatureAlgorithm(a))
		}
	}
	return out
}
