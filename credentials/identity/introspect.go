package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/httpc"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Client authentication methods of an introspection endpoint (RFC 7662
// section 2.1 defers to RFC 6749 section 2.3).
const (
	IntrospectionAuthBasic = "client_secret_basic"
	IntrospectionAuthPost  = "client_secret_post"
	IntrospectionAuthNone  = "none"
)

// Introspection defaults and limits.
const (
	// DefaultIntrospectionTimeout stays below Envoy's default 1s ext_authz
	// timeout, so a hanging IdP yields a 503 from mcpauthz rather than
	// Envoy's own error status.
	DefaultIntrospectionTimeout     = 800 * time.Millisecond
	MaxIntrospectionTimeout         = 30 * time.Second
	DefaultIntrospectionCacheMaxAge = time.Minute
	// inactiveCacheTTL is how long a refusal (inactive, invalid response)
	// is remembered, to absorb floods of one bad token.
	inactiveCacheTTL = 5 * time.Second
	// maxIntrospectionBytes bounds an introspection response.
	maxIntrospectionBytes = 64 << 10
	maxTokenPrefixLen     = 64
)

// IntrospectionConfig configures RFC 7662 introspection of opaque access
// tokens for one issuer. A bearer token that is not a JWS compact
// serialization is sent to the introspecting issuer whose TokenPrefix it
// starts with (or to the only introspecting issuer, when it has no
// prefix), never to any other.
//
//	introspection:
//	  endpoint: https://idp.example.com/oauth2/introspect
//	  client_id: mcpauthz
//	  client_secret: {env: MCPAUTHZ_INTROSPECTION_SECRET}
type IntrospectionConfig struct {
	// Endpoint is the introspection endpoint: https, or http on loopback;
	// no query, fragment or userinfo. Redirects are not followed.
	Endpoint string `yaml:"endpoint"`
	// ClientAuth is client_secret_basic (default), client_secret_post or
	// none (client_id, when set, is sent in the form).
	ClientAuth string `yaml:"client_auth"`
	// ClientID identifies mcpauthz to the endpoint; required unless
	// client_auth is none.
	ClientID string `yaml:"client_id"`
	// ClientSecret is required with client_secret_basic and
	// client_secret_post: {env: NAME} or {file: PATH}. It is never printed.
	ClientSecret *secret.Ref `yaml:"client_secret"`
	// Timeout bounds one introspection call. Default 800ms, at most 30s.
	Timeout time.Duration `yaml:"timeout"`
	// CacheMaxAge bounds how long an active result is served from the
	// cache (the token's exp bounds it too), i.e. how long a revoked token
	// keeps working. Default 1m, between 1s and 1h.
	CacheMaxAge time.Duration `yaml:"cache_max_age"`
	// TokenPrefix routes opaque tokens starting with it to this issuer.
	// Required on every introspecting issuer when more than one is
	// configured; no prefix may be a prefix of another.
	TokenPrefix string `yaml:"token_prefix"`
}

func (c IntrospectionConfig) clientAuth() string {
	if c.ClientAuth == "" {
		return IntrospectionAuthBasic
	}
	return c.ClientAuth
}

// validate reports problems prefixed with path (e.g. "issuers[0].introspection").
func (c IntrospectionConfig) validate(path string) []error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, args...)))
	}
	if c.Endpoint == "" {
		add("endpoint", "required")
	} else if err := checkFetchURL(c.Endpoint); err != nil {
		add("endpoint", "%v", err)
	}
	auth := c.clientAuth()
	switch auth {
	case IntrospectionAuthBasic, IntrospectionAuthPost, IntrospectionAuthNone:
	default:
		add("client_auth", "unknown method %q (want client_secret_basic, client_secret_post or none)", urlcheck.Truncate(c.ClientAuth, 32))
	}
	switch {
	case c.ClientID == "" && auth != IntrospectionAuthNone:
		add("client_id", "required with client_auth %s", auth)
	case strings.ContainsFunc(c.ClientID, urlcheck.IsControl):
		add("client_id", "contains control characters")
	}
	needSecret := auth == IntrospectionAuthBasic || auth == IntrospectionAuthPost
	switch {
	case needSecret && c.ClientSecret == nil:
		add("client_secret", "required with client_auth %s", auth)
	case needSecret:
		if err := c.ClientSecret.Validate(); err != nil {
			add("client_secret", "%v", err)
		}
	case c.ClientSecret != nil:
		add("client_secret", "only used with client_secret_basic or client_secret_post")
	}
	if c.Timeout < 0 || c.Timeout > MaxIntrospectionTimeout {
		add("timeout", "%v is outside [0, %v]", c.Timeout, MaxIntrospectionTimeout)
	}
	if err := checkMaxAge(c.CacheMaxAge); err != nil {
		add("cache_max_age", "%v", err)
	}
	if c.TokenPrefix != "" && (len(c.TokenPrefix) > maxTokenPrefixLen || !isTokenChars(c.TokenPrefix)) {
		add("token_prefix", "must be at most %d characters of A-Z a-z 0-9 - . _ ~ + /", maxTokenPrefixLen)
	}
	return errs
}

func (c IntrospectionConfig) withDefaults() IntrospectionConfig {
	c.ClientAuth = c.clientAuth()
	if c.Timeout == 0 {
		c.Timeout = DefaultIntrospectionTimeout
	}
	if c.CacheMaxAge == 0 {
		c.CacheMaxAge = DefaultIntrospectionCacheMaxAge
	}
	if c.ClientSecret != nil {
		r := *c.ClientSecret
		c.ClientSecret = &r
	}
	return c
}

// validateIntrospectionRouting makes the choice of the introspecting issuer
// deterministic: with more than one, each needs a token_prefix and none
// may be a prefix of another, so no token can match two issuers.
func validateIntrospectionRouting(issuers []IssuerConfig) []error {
	var idx []int
	for i, is := range issuers {
		if is.Introspection != nil {
			idx = append(idx, i)
		}
	}
	if len(idx) < 2 {
		return nil
	}
	var errs []error
	for _, i := range idx {
		if issuers[i].Introspection.TokenPrefix == "" {
			errs = append(errs, fmt.Errorf("issuers[%d].introspection.token_prefix: required when several issuers introspect (an opaque token is never sent to an issuer that may not have issued it)", i))
		}
	}
	for _, i := range idx {
		for _, j := range idx {
			pi, pj := issuers[i].Introspection.TokenPrefix, issuers[j].Introspection.TokenPrefix
			if i != j && pi != "" && pj != "" && strings.HasPrefix(pj, pi) && (pi != pj || i < j) {
				errs = append(errs, fmt.Errorf("issuers[%d].introspection.token_prefix: a token of issuers[%d] (prefix %q) would also match %q", i, j, pj, pi))
			}
		}
	}
	return errs
}

// isTokenChars reports whether s is made of RFC 6750 b64token characters
// (ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/"), ignoring the
// trailing "=" padding rule.
func isTokenChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// isB64Token reports whether s is an RFC 6750 b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	return body != "" && isTokenChars(body)
}

// looksLikeJWS reports whether raw has the shape of a JWS compact
// serialization: three dot-separated segments whose first decodes to a JSON
// object naming an alg. Such tokens are verified as JWTs, never introspected.
func looksLikeJWS(raw string) bool {
	h, rest, ok := strings.Cut(raw, ".")
	if !ok || strings.Count(rest, ".") != 1 {
		return false
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	return decodeSegment(h, &hdr) == nil && hdr.Alg != ""
}

// introspector calls one issuer's introspection endpoint. It is safe for
// concurrent use; concurrent calls for one token share one request.
type introspector struct {
	name     string
	endpoint string
	auth     string
	clientID string
	secret   secret.Value
	prefix   string
	timeout  time.Duration
	maxAge   time.Duration
	client   *http.Client
	log      *slog.Logger
	sf       singleflight.Group
}

func newIntrospector(path, name string, c IntrospectionConfig, base *http.Client, log *slog.Logger) (*introspector, error) {
	in := &introspector{
		name: name, endpoint: c.Endpoint, auth: c.ClientAuth, clientID: c.ClientID,
		prefix: c.TokenPrefix, timeout: c.Timeout, maxAge: c.CacheMaxAge, log: log,
	}
	if c.ClientSecret != nil {
		v, err := c.ClientSecret.Resolve()
		if err != nil {
			return nil, fmt.Errorf("identity: %s.client_secret: %w", path, err)
		}
		in.secret = v
	}
	// A redirect is answered as the endpoint's response (a refusal), never
	// followed: the token must not travel anywhere else.
	in.client = httpc.New(base, httpc.Rules{Timeout: c.Timeout, Redirect: http.ErrUseLastResponse})
	in.client.Timeout = c.Timeout // introspection.timeout, even when longer than http_timeout
	return in, nil
}

// errTooLarge marks an oversized introspection response.
var errTooLarge = errors.New("identity: introspection response too large")

// call introspects raw. It returns the response members, or a *TokenError:
// introspection_unavailable (wrapping ErrUnavailable) when the endpoint
// could not answer, introspection_failed when it refused or answered
// nonsense.
func (in *introspector) call(ctx context.Context, raw string) (map[string]any, error) {
	form := url.Values{"token": {raw}, "token_type_hint": {"access_token"}}
	switch in.auth {
	case IntrospectionAuthPost:
		form.Set("client_id", in.clientID)
		form.Set("client_secret", in.secret.Reveal())
	case IntrospectionAuthNone:
		if in.clientID != "" {
			form.Set("client_id", in.clientID)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, tokenErr(ReasonIntrospectionFailed, in.name)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if in.auth == IntrospectionAuthBasic {
		// RFC 6749 section 2.3.1: both parts form-urlencoded first.
		req.SetBasicAuth(url.QueryEscape(in.clientID), url.QueryEscape(in.secret.Reveal()))
	}
	resp, err := in.client.Do(req)
	if err != nil {
		// *url.Error names the endpoint and the cause, never the form.
		in.log.WarnContext(ctx, "identity: introspection failed", "issuer", in.name, "error", err)
		return nil, tokenErr(ReasonIntrospectionUnavailable, in.name)
	}
	body, rerr := urlcheck.ReadLimited(resp, maxIntrospectionBytes, errTooLarge)
	switch {
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		in.log.WarnContext(ctx, "identity: introspection endpoint unavailable", "issuer", in.name, "status", resp.StatusCode)
		return nil, tokenErr(ReasonIntrospectionUnavailable, in.name)
	case resp.StatusCode != http.StatusOK:
		in.log.WarnContext(ctx, "identity: introspection refused", "issuer", in.name, "status", resp.StatusCode)
		return nil, tokenErr(ReasonIntrospectionFailed, fmt.Sprintf("%s: status %d", in.name, resp.StatusCode))
	case errors.Is(rerr, errTooLarge):
		in.log.WarnContext(ctx, "identity: introspection response too large", "issuer", in.name)
		return nil, tokenErr(ReasonIntrospectionFailed, in.name+": response too large")
	case rerr != nil:
		in.log.WarnContext(ctx, "identity: introspection response unreadable", "issuer", in.name, "error", rerr)
		return nil, tokenErr(ReasonIntrospectionUnavailable, in.name)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		in.log.WarnContext(ctx, "identity: introspection response is not JSON", "issuer", in.name)
		return nil, tokenErr(ReasonIntrospectionFailed, in.name+": content type")
	}
	members, err := DecodeClaims(body)
	if err != nil {
		in.log.WarnContext(ctx, "identity: introspection response malformed", "issuer", in.name)
		return nil, tokenErr(ReasonIntrospectionFailed, in.name+": malformed JSON")
	}
	return members, nil
}

// refreshTokenTypes are token_type / typ values of refresh tokens (RFC 8693
// URN, RFC 6749 name, Keycloak's "Refresh" and "Offline").
var refreshTokenTypes = []string{"refresh", "refresh_token", "offline", "urn:ietf:params:oauth:token-type:refresh_token"}

// judgeIntrospection builds the Principal from an introspection response
// with the same rules as for a JWT from the same issuer.
func (v *Verifier) judgeIntrospection(ic IssuerConfig, m map[string]any, now time.Time) (*Principal, error) {
	if active, _ := m["active"].(bool); !active {
		return nil, tokenErr(ReasonInactive, "")
	}
	for _, f := range []string{"token_type", "typ"} {
		raw, present := m[f]
		if !present {
			continue
		}
		s, ok := raw.(string)
		if !ok {
			return nil, tokenErr(ReasonInvalidClaim, f)
		}
		for _, r := range refreshTokenTypes {
			if strings.EqualFold(s, r) {
				return nil, tokenErr(ReasonInvalidClaim, f+" names a refresh token")
			}
		}
		if strings.EqualFold(s, "DPoP") {
			return nil, tokenErr(ReasonInvalidClaim, f+": sender-constrained tokens are not accepted as bearer tokens")
		}
	}
	if _, present := m["cnf"]; present {
		// A sender-constrained token (RFC 8705, RFC 9449) whose proof
		// mcpauthz cannot check must not work as a bearer token.
		return nil, tokenErr(ReasonInvalidClaim, "cnf: sender-constrained tokens are not accepted as bearer tokens")
	}
	if raw, present := m["iss"]; present {
		if s, _ := raw.(string); s != ic.Issuer {
			return nil, tokenErr(ReasonInvalidClaim, "iss")
		}
	} else {
		m["iss"] = ic.Issuer
	}
	if raw, present := m["scope"]; present {
		// RFC 7662 section 2.2: a space-separated string.
		if _, ok := raw.(string); !ok {
			return nil, tokenErr(ReasonInvalidClaim, "scope: must be a space-separated string, not "+jsonKind(raw))
		}
	}
	exp, err := checkTimes(m, now, ic.Leeway)
	if err != nil {
		return nil, err
	}
	p, err := buildPrincipal(v.subjects, ic, m, exp)
	if err != nil {
		return nil, err
	}
	p.Method = "introspection"
	return p, nil
}

// introspect judges an opaque token through st's introspection endpoint.
// Concurrent misses for one token share one call; the result (an active
// Principal, or briefly a refusal) is cached under key before the call
// returns, and the cache is checked again inside the call, so a token is
// introspected once per cache lifetime.
func (v *Verifier) introspect(ctx context.Context, st *issuerState, raw string, sum [32]byte, key uint64) (*Principal, error) {
	in := st.intro
	ch := in.sf.DoChan(string(sum[:]), func() (any, error) {
		now := v.now()
		if e, ok := v.cache.Get(key); ok && e.sum == sum && now.Before(e.until) {
			return e, nil
		}
		// Detach from the caller's cancellation: the result is shared.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.timeout)
		defer cancel()
		m, err := in.call(cctx, raw)
		var p *Principal
		if err == nil {
			p, err = v.judgeIntrospection(st.cfg, m, now)
		}
		var e *cacheEntry
		var te *TokenError
		switch {
		case err == nil:
			p.TokenHash = sum
			e = &cacheEntry{sum: sum, p: p, until: minTime(p.ExpiresAt, now.Add(in.maxAge))}
		case errors.As(err, &te) && !errors.Is(err, ErrUnavailable):
			e = &cacheEntry{sum: sum, err: te, until: now.Add(min(inactiveCacheTTL, in.maxAge))}
		default:
			return nil, err // never cache an unavailable endpoint
		}
		if e.until.After(now) {
			// Get finds it at once (entrycache.Batched), so the next miss
			// after this flight ends is a hit. e.until is checked on every
			// hit (entrycache: no TTL).
			v.cache.Set(key, e)
		}
		return e, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		e := r.Val.(*cacheEntry)
		if e.err != nil {
			return nil, e.err
		}
		return e.p, nil
	case <-ctx.Done():
		return nil, tokenErr(ReasonIntrospectionUnavailable, "request cancelled")
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
