package identity

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
)

type clock = fakeclock.Clock

func newClock() *clock { return fakeclock.New(time.Unix(1_800_000_000, 0)) }

func startIdP(t testing.TB, clk *clock) *devidp.Issuer {
	t.Helper()
	idp, err := devidp.New(devidp.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	return idp
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newVerifier(t testing.TB, clk *clock, cfg Config) *Verifier {
	t.Helper()
	v, err := NewVerifier(context.Background(), cfg, Options{Now: clk.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func reason(err error) string {
	var te *TokenError
	if errors.As(err, &te) {
		return te.Reason
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestVerifyToken(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)   // trusted, RS256/ES256
	esIdP := startIdP(t, clk) // trusted, ES256 only
	rogue := startIdP(t, clk) // not configured
	var jkuHits atomic.Int64
	jku := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { jkuHits.Add(1) }))
	defer jku.Close()

	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{
		{
			Name: "main", Issuer: idp.URL(), UserNamespace: "acme",
			Agent: AgentConfig{ClientIDs: []string{"ci-bot"}, Claim: "token_use", Values: []string{"agent"}},
		},
		{Name: "es", Issuer: esIdP.URL(), Algorithms: []string{"ES256"}},
	}})

	base := func(extra map[string]any) map[string]any {
		m := map[string]any{"sub": "alice", "client_id": "web-app", "aud": "https://mcp.example.com/mcp",
			"scope": "tools:read tools:call", "org_id": "org-1"}
		for k, val := range extra {
			m[k] = val
		}
		return m
	}
	mint := func(i *devidp.Issuer, claims map[string]any, opts ...devidp.MintOption) string {
		return i.MustMint(claims, opts...)
	}
	tamperSig := func(tok string) string {
		// Flip a bit in the middle of the signature (the last base64 char
		// may carry padding bits that decode identically).
		parts := strings.Split(tok, ".")
		s := []byte(parts[2])
		mid := len(s) / 2
		if s[mid] == 'A' {
			s[mid] = 'B'
		} else {
			s[mid] = 'A'
		}
		return parts[0] + "." + parts[1] + "." + string(s)
	}
	swapPayload := func(tok, other string) string {
		a, b := strings.Split(tok, "."), strings.Split(other, ".")
		return a[0] + "." + b[1] + "." + a[2]
	}

	tests := []struct {
		name   string
		token  string
		reason string // "" = success
		check  func(t *testing.T, p *Principal)
	}{
		{
			name:  "valid human",
			token: mint(idp, base(nil)),
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindHuman || p.Method != "jwt" || p.Subject != "alice" || p.UserID != "alice" ||
					p.Org != "org-1" || p.UserKey != "acme|org-1|alice" || p.ClientID != "web-app" ||
					p.Issuer != idp.URL() || p.Actor != nil || p.Chain != nil {
					t.Fatalf("principal = %+v", p)
				}
				if strings.Join(p.Scopes, ",") != "tools:read,tools:call" ||
					strings.Join(p.Audience, ",") != "https://mcp.example.com/mcp" {
					t.Fatalf("scopes=%v aud=%v", p.Scopes, p.Audience)
				}
				if !p.ExpiresAt.Equal(clk.Now().Add(5*time.Minute)) || p.Claims["jti"] == nil {
					t.Fatalf("exp=%v claims=%v", p.ExpiresAt, p.Claims)
				}
			},
		},
		{
			name:  "ES256 human, scp array, azp fallback",
			token: mint(idp, map[string]any{"sub": "bob", "azp": "spa", "scp": []string{"a", "b"}}, devidp.WithAlg("ES256")),
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindHuman || p.ClientID != "spa" || strings.Join(p.Scopes, ",") != "a,b" || p.UserKey != "acme||bob" {
					t.Fatalf("principal = %+v", p)
				}
			},
		},
		{
			name: "agent for user with nested act",
			token: mint(idp, base(map[string]any{"act": map[string]any{
				"sub": "agent-7", "client_id": "assistant", "iss": "https://agents.example",
				"act": map[string]any{"sub": "orchestrator", "act": map[string]any{"client_id": "cli"}},
			}})),
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindAgentForUser || p.Subject != "alice" || !p.HumanPresent() {
					t.Fatalf("principal = %+v", p)
				}
				// The actor's issuer is not configured: its subject is
				// qualified by the issuer itself.
				if p.Actor == nil || *p.Actor != (Actor{Subject: "agent-7", ClientID: "assistant", Issuer: "https://agents.example",
					QualifiedSubject: "iss:https:%2F%2Fagents.example/agent-7"}) {
					t.Fatalf("actor = %+v", p.Actor)
				}
				if p.QualifiedSubject != "acme/alice" {
					t.Fatalf("qualified subject = %q", p.QualifiedSubject)
				}
				// Nested actors without iss belong to the token's issuer.
				want := []Actor{{Subject: "orchestrator", QualifiedSubject: "acme/orchestrator"}, {ClientID: "cli"}}
				if len(p.Chain) != 2 || p.Chain[0] != want[0] || p.Chain[1] != want[1] {
					t.Fatalf("chain = %+v", p.Chain)
				}
			},
		},
		{
			name:  "client credentials agent (sub == client_id)",
			token: mint(idp, map[string]any{"sub": "billing-svc", "client_id": "billing-svc"}),
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindAgent || p.UserID != "billing-svc" || p.HumanPresent() {
					t.Fatalf("principal = %+v", p)
				}
			},
		},
		{
			name:  "gty client-credentials agent",
			token: mint(idp, map[string]any{"sub": "abc@clients", "azp": "abc", "gty": "client-credentials"}),
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindAgent {
					t.Fatalf("kind = %v", p.Kind)
				}
			},
		},
		{
			name:  "configured agent claim",
			token: mint(idp, base(map[string]any{"token_use": "agent"})),
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindAgent {
					t.Fatalf("kind = %v", p.Kind)
				}
			},
		},
		{
			name:  "configured agent client id",
			token: mint(idp, base(map[string]any{"client_id": "ci-bot"})),
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindAgent || p.ClientID != "ci-bot" {
					t.Fatalf("principal = %+v", p)
				}
			},
		},
		{
			name:  "expired within leeway accepted",
			token: mint(idp, base(nil), devidp.WithExpiry(-20*time.Second)),
			check: func(t *testing.T, p *Principal) {
				if p.Subject != "alice" {
					t.Fatalf("principal = %+v", p)
				}
			},
		},
		{
			name:  "jku header is never fetched",
			token: mint(idp, base(nil), devidp.WithHeader("jku", jku.URL)),
			check: func(t *testing.T, p *Principal) {
				if jkuHits.Load() != 0 {
					t.Fatal("jku URL was fetched")
				}
			},
		},
		{name: "expired beyond leeway", token: mint(idp, base(nil), devidp.WithExpiry(-31*time.Second)), reason: ReasonExpired},
		{name: "no exp", token: mint(idp, base(map[string]any{"exp": nil})), reason: ReasonMissingClaim},
		{name: "nbf in future", token: mint(idp, base(map[string]any{"nbf": clk.Now().Add(2 * time.Minute).Unix()})), reason: ReasonNotYetValid},
		{name: "nbf far in future", token: mint(idp, base(map[string]any{"nbf": clk.Now().Add(2 * time.Hour).Unix()})), reason: ReasonNotYetValid},
		{name: "nbf within leeway", token: mint(idp, base(map[string]any{"nbf": clk.Now().Add(10 * time.Second).Unix()}))},
		{name: "iat in future", token: mint(idp, base(map[string]any{"iat": clk.Now().Add(time.Hour).Unix()})), reason: ReasonNotYetValid},
		{name: "no sub", token: mint(idp, base(map[string]any{"sub": nil})), reason: ReasonMissingClaim},
		{name: "bad act", token: mint(idp, base(map[string]any{"act": "agent"})), reason: ReasonInvalidClaim},
		{name: "unknown issuer", token: mint(rogue, base(nil)), reason: ReasonUnknownIssuer},
		{name: "wrong issuer (rogue key, trusted iss)", token: mint(rogue, base(map[string]any{"iss": idp.URL()})), reason: ReasonUnknownKid},
		{name: "wrong issuer (trusted kid, rogue key)", token: mint(rogue, base(map[string]any{"iss": idp.URL()}), devidp.WithKid(idp.Kid("RS256"))), reason: ReasonBadSignature},
		{name: "alg none", token: idp.MintNone(base(nil)), reason: ReasonAlgNotAllowed},
		{name: "HS256 with public key as secret", token: idp.MintHS256WithPublicKey(base(nil)), reason: ReasonAlgNotAllowed},
		{name: "RS256 when only ES256 allowed", token: mint(esIdP, base(nil)), reason: ReasonAlgNotAllowed},
		{name: "ES256 on ES-only issuer", token: mint(esIdP, base(nil), devidp.WithAlg("ES256"))},
		{name: "tampered signature", token: tamperSig(mint(idp, base(nil))), reason: ReasonBadSignature},
		{name: "tampered payload", token: swapPayload(mint(idp, base(nil)), mint(idp, base(map[string]any{"sub": "root"}))), reason: ReasonBadSignature},
		{name: "malformed: two parts", token: "abc.def", reason: ReasonMalformed},
		{name: "malformed: garbage", token: "a.b.c", reason: ReasonMalformed},
		{name: "malformed: empty", token: "", reason: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := v.VerifyToken(context.Background(), tc.token)
			if got := reason(err); got != tc.reason {
				t.Fatalf("reason = %q, want %q", got, tc.reason)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrUnavailable) {
					t.Fatalf("error %v does not wrap ErrInvalidToken only", err)
				}
				assertNoSecret(t, err.Error(), tc.token)
				return
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

// assertNoSecret fails if msg contains the token or any of its segments.
func assertNoSecret(t *testing.T, msg, token string) {
	t.Helper()
	if token == "" {
		return
	}
	if strings.Contains(msg, token) {
		t.Fatalf("error contains the token: %s", msg)
	}
	for _, seg := range strings.Split(token, ".") {
		if len(seg) >= 8 && strings.Contains(msg, seg) {
			t.Fatalf("error contains a token segment: %s", msg)
		}
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}, JWKSMinRefresh: 30 * time.Second})
	ctx := context.Background()

	if _, err := v.VerifyToken(ctx, idp.MustMint(map[string]any{"sub": "a"})); err != nil {
		t.Fatal(err)
	}
	if n := idp.JWKSFetches(); n != 1 {
		t.Fatalf("fetches after first verify = %d, want 1", n)
	}
	steps := []struct {
		advance time.Duration
		fetches int
	}{
		{0, 1},                // the initial fetch was just now: rate limited
		{31 * time.Second, 2}, // unknown kid: one refresh
		{0, 2},                // again immediately: rate limited
		{10 * time.Second, 2}, // still inside the interval
		{25 * time.Second, 3}, // interval elapsed: one more refresh
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		_, err := v.VerifyToken(ctx, idp.MustMint(map[string]any{"sub": "a"}, devidp.WithKid("no-such-kid")))
		if reason(err) != ReasonUnknownKid {
			t.Fatalf("step %d: reason = %q", i, reason(err))
		}
		if n := idp.JWKSFetches(); n != s.fetches {
			t.Fatalf("step %d: fetches = %d, want %d", i, n, s.fetches)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}})
	ctx := context.Background()
	old := idp.MustMint(map[string]any{"sub": "a"}, devidp.WithAlg("ES256"))
	if _, err := v.VerifyToken(ctx, old); err != nil {
		t.Fatal(err)
	}
	idp.RotateKey()
	clk.Advance(time.Minute) // past JWKSMinRefresh
	fresh := idp.MustMint(map[string]any{"sub": "b"}, devidp.WithAlg("ES256"))
	p, err := v.VerifyToken(ctx, fresh)
	if err != nil {
		t.Fatalf("token with rotated key: %v", err)
	}
	if p.Subject != "b" || idp.JWKSFetches() != 2 {
		t.Fatalf("subject=%q fetches=%d", p.Subject, idp.JWKSFetches())
	}
	// A token from the previous generation (still published) still verifies.
	if _, err := v.VerifyToken(ctx, old); err != nil {
		t.Fatalf("old-generation token: %v", err)
	}
}

func TestConcurrentFirstUseFetchesOnce(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		tok := idp.MustMint(map[string]any{"sub": "u", "n": i})
		wg.Go(func() {
			if _, err := v.VerifyToken(context.Background(), tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := idp.JWKSFetches(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}

	// A burst of unknown kids after the interval costs one refresh.
	clk.Advance(time.Minute)
	for range 16 {
		tok := idp.MustMint(map[string]any{"sub": "u"}, devidp.WithKid("rotated-away"))
		wg.Go(func() {
			if _, err := v.VerifyToken(context.Background(), tok); reason(err) != ReasonUnknownKid {
				t.Errorf("reason = %q", reason(err))
			}
		})
	}
	wg.Wait()
	if n := idp.JWKSFetches(); n != 2 {
		t.Fatalf("fetches after burst = %d, want 2", n)
	}
}

func TestCache(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}})
	ctx := context.Background()
	tok := idp.MustMint(map[string]any{"sub": "a"}, devidp.WithExpiry(2*time.Minute))

	p1, err := v.VerifyToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	v.cache.Wait()
	p2, err := v.VerifyToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Fatal("second verify was not served from the cache")
	}
	if p1.TokenHash != sha256.Sum256([]byte(tok)) {
		t.Fatal("TokenHash is not SHA-256 of the verified token")
	}
	if m := v.Metrics(); m.Hits != 1 || m.Misses != 1 || m.Ratio() != 0.5 {
		t.Fatalf("metrics = %+v", m)
	}

	// At exp the cached entry is not served; a fresh verification still
	// accepts within leeway but is not cached.
	clk.Advance(2*time.Minute + time.Second)
	p3, err := v.VerifyToken(ctx, tok)
	if err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	if p3 == p1 {
		t.Fatal("cached principal served past exp")
	}
	clk.Advance(30 * time.Second)
	if _, err := v.VerifyToken(ctx, tok); reason(err) != ReasonExpired {
		t.Fatalf("past exp+leeway: reason = %q", reason(err))
	}
	if m := v.Metrics(); m.Hits != 1 || m.Misses != 3 {
		t.Fatalf("metrics = %+v", m)
	}
	// Failures are not cached.
	bad := idp.MintNone(map[string]any{"sub": "a"})
	for range 2 {
		if _, err := v.VerifyToken(ctx, bad); err == nil {
			t.Fatal("alg none accepted")
		}
		v.cache.Wait()
	}
	if m := v.Metrics(); m.Hits != 1 {
		t.Fatalf("failure served from cache: %+v", m)
	}
}

func TestSamePersonTwoIssuersSameUserKey(t *testing.T) {
	clk := newClock()
	oauthIdP := startIdP(t, clk) // external OAuth path: sub is the app user id
	appIdP := startIdP(t, clk)   // embedded app tokens: sub is a session, user in app_user_id
	other := startIdP(t, clk)    // unrelated directory
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{
		{Name: "oauth", Issuer: oauthIdP.URL(), UserNamespace: "acme-users"},
		{Name: "app", Issuer: appIdP.URL(), UserNamespace: "acme-users",
			Claims: ClaimsConfig{UserID: "app_user_id", Org: "organization_id"}},
		{Name: "other", Issuer: other.URL()},
	}})
	ctx := context.Background()
	verify := func(i *devidp.Issuer, c map[string]any) *Principal {
		t.Helper()
		p, err := v.VerifyToken(ctx, i.MustMint(c))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := verify(oauthIdP, map[string]any{"sub": "user-42", "org_id": "org-7"})
	b := verify(appIdP, map[string]any{"sub": "sess-9f1", "app_user_id": "user-42", "organization_id": "org-7", "sid": "s1"})
	c := verify(appIdP, map[string]any{"sub": "sess-0aa", "app_user_id": "user-42", "organization_id": "org-8"})
	d := verify(other, map[string]any{"sub": "user-42", "org_id": "org-7"})
	if a.UserKey != "acme-users|org-7|user-42" || b.UserKey != a.UserKey {
		t.Fatalf("keys differ: %q vs %q", a.UserKey, b.UserKey)
	}
	if b.Subject != "sess-9f1" || b.UserID != "user-42" {
		t.Fatalf("app principal = %+v", b)
	}
	if c.UserKey == a.UserKey || d.UserKey == a.UserKey {
		t.Fatalf("different org or namespace shares the key: %q %q", c.UserKey, d.UserKey)
	}
	// A human token lacking the configured user id claim is refused.
	if _, err := v.VerifyToken(ctx, appIdP.MustMint(map[string]any{"sub": "sess-1"})); reason(err) != ReasonMissingClaim {
		t.Fatalf("missing user id: reason = %q", reason(err))
	}
}

func TestUserKeyEscaping(t *testing.T) {
	if UserKey("a|b", "c", "d") == UserKey("a", "b|c", "d") {
		t.Fatal("separator in a part collides")
	}
	if got := UserKey("n", "o%|", "u"); got != "n|o%25%7C|u" {
		t.Fatalf("UserKey = %q", got)
	}
}

func TestJWKSUnavailable(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	redirect := httptest.NewServer(http.RedirectHandler(idp.URL()+"/jwks", http.StatusFound))
	defer redirect.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"keys":[`+strings.Repeat(" ", 2<<20)+`]}`)
	}))
	defer huge.Close()

	for _, tc := range []struct{ name, jwksURL string }{
		{"unreachable", deadURL + "/jwks"},
		{"redirect not followed", redirect.URL + "/jwks"},
		{"oversized body", huge.URL + "/jwks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL(), JWKSURL: tc.jwksURL}}})
			tok := idp.MustMint(map[string]any{"sub": "a"})
			_, err := v.VerifyToken(context.Background(), tok)
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) || reason(err) != ReasonJWKSUnavailable {
				t.Fatalf("err = %v", err)
			}
			assertNoSecret(t, err.Error(), tok)
		})
	}
	if n := idp.JWKSFetches(); n != 0 {
		t.Fatalf("redirect was followed: %d fetches", n)
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	// Configure a different issuer string served by the same discovery doc.
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{
		Name: "i", Issuer: "http://localhost:1/other", DiscoveryURL: idp.URL() + "/.well-known/openid-configuration",
	}}})
	_, err := v.VerifyToken(context.Background(), idp.MustMint(map[string]any{"sub": "a", "iss": "http://localhost:1/other"}))
	if reason(err) != ReasonJWKSUnavailable || idp.JWKSFetches() != 0 {
		t.Fatalf("reason = %q fetches = %d", reason(err), idp.JWKSFetches())
	}
}

func TestFromSPIFFE(t *testing.T) {
	v := newVerifier(t, newClock(), Config{SPIFFE: SPIFFEConfig{TrustDomains: []string{"prod.example.org"}, Org: "org-infra"}})
	tests := []struct {
		id, reason string
	}{
		{"spiffe://prod.example.org/ns/default/sa/agent", ""},
		{"spiffe://dev.example.org/ns/default/sa/agent", ReasonUntrustedDomain},
		{"spiffe://prod.example.org", ReasonInvalidSPIFFEID},
		{"spiffe://prod.example.org/", ReasonInvalidSPIFFEID},
		{"spiffe://Prod.example.org/x", ReasonInvalidSPIFFEID},
		{"spiffe://prod.example.org:443/x", ReasonInvalidSPIFFEID},
		{"spiffe://user@prod.example.org/x", ReasonInvalidSPIFFEID},
		{"spiffe://prod.example.org/a//b", ReasonInvalidSPIFFEID},
		{"spiffe://prod.example.org/a/../b", ReasonInvalidSPIFFEID},
		{"spiffe://prod.example.org/a?x=1", ReasonInvalidSPIFFEID},
		{"spiffe://prod.example.org/a#f", ReasonInvalidSPIFFEID},
		{"SPIFFE://prod.example.org/a", ReasonInvalidSPIFFEID},
		{"https://prod.example.org/a", ReasonInvalidSPIFFEID},
		{"", ReasonInvalidSPIFFEID},
		{"spiffe://prod.example.org/" + strings.Repeat("a", 2100), ReasonInvalidSPIFFEID},
	}
	for _, tc := range tests {
		t.Run(tc.id, func(t *testing.T) {
			p, err := v.FromSPIFFE(tc.id)
			if got := reason(err); got != tc.reason {
				t.Fatalf("reason = %q, want %q", got, tc.reason)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidToken) {
					t.Fatalf("error does not wrap ErrInvalidToken: %v", err)
				}
				return
			}
			if p.Kind != KindAgent || p.Method != "mtls" || p.SPIFFEID != tc.id || p.Subject != tc.id ||
				p.Org != "org-infra" || p.Issuer != "spiffe://prod.example.org" || p.UserKey != "spiffe|org-infra|"+tc.id {
				t.Fatalf("principal = %+v", p)
			}
		})
	}
}

func TestAudienceContains(t *testing.T) {
	p := &Principal{Audience: []string{"HTTPS://Example.COM/mcp", "urn:Thing", "https://api.example.com:8443/v1/"}}
	tests := []struct {
		resource string
		want     bool
	}{
		{"https://example.com/mcp", true},
		{"HTTPS://EXAMPLE.com/mcp", true},
		{"https://example.com/mcp/", false},
		{"https://example.com/MCP", false},
		{"https://example.com/mcp2", false},
		{"https://example.com", false},
		{"http://example.com/mcp", false},
		{"https://example.com:443/mcp", false},
		{"https://api.example.com:8443/v1/", true},
		{"https://api.example.com:8443/v1", false},
		{"urn:Thing", true},
		{"urn:thing", false},
		{"", false},
	}
	for _, tc := range tests {
		t.Run(tc.resource, func(t *testing.T) {
			if got := AudienceContains(p, tc.resource); got != tc.want {
				t.Fatalf("AudienceContains(%q) = %v, want %v", tc.resource, got, tc.want)
			}
		})
	}
	if AudienceContains(nil, "https://example.com/mcp") || AudienceContains(&Principal{}, "https://example.com/mcp") {
		t.Fatal("empty principal matched")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := IssuerConfig{Name: "a", Issuer: "https://idp.example.com"}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; nil = valid
	}{
		{"valid", Config{Issuers: []IssuerConfig{ok}}, nil},
		{"valid spiffe only", Config{SPIFFE: SPIFFEConfig{TrustDomains: []string{"td.example"}}}, nil},
		{"valid loopback http", Config{Issuers: []IssuerConfig{{Name: "d", Issuer: "http://127.0.0.1:8080"}}}, nil},
		{"empty", Config{}, []string{"issuers: at least one"}},
		{"algorithms", Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://i", Algorithms: []string{"RS256", "HS256", "none", "XX1"}}}},
			[]string{"issuers[0].algorithms[1]: HS256 not allowed", "issuers[0].algorithms[2]: none not allowed", `issuers[0].algorithms[3]: unknown algorithm "XX1"`}},
		{"missing fields", Config{Issuers: []IssuerConfig{{}}}, []string{"issuers[0].name: required", "issuers[0].issuer: required"}},
		{"duplicates", Config{Issuers: []IssuerConfig{ok, ok}}, []string{"issuers[1].name: duplicate of issuers[0]", "issuers[1].issuer: duplicate of issuers[0]"}},
		{"plain http", Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "http://idp.example.com", JWKSURL: "ftp://x/jwks"}}},
			[]string{"issuers[0].issuer: http is allowed only for loopback", "issuers[0].jwks_url: scheme must be https"}},
		{"leeway", Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://i", Leeway: 6 * time.Minute}}}, []string{"issuers[0].leeway: 6m0s exceeds"}},
		{"agent claim without values", Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://i", Agent: AgentConfig{Claim: "x"}}}}, []string{"issuers[0].agent: claim and values"}},
		{"spiffe and negatives", Config{Issuers: []IssuerConfig{ok}, SPIFFE: SPIFFEConfig{TrustDomains: []string{"Bad.TD"}}, CacheSize: -1, HTTPTimeout: -1},
			[]string{"spiffe.trust_domains[0]: invalid trust domain character", "cache_size: must not be negative", "http_timeout: must not be negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("expected an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	if _, err := NewVerifier(context.Background(), Config{}, Options{}); err == nil {
		t.Fatal("NewVerifier accepted an invalid config")
	}
}

func TestWithDefaultsDoesNotAlias(t *testing.T) {
	algs := []string{"ES256"}
	cfg := Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://i/", Algorithms: algs}}}
	d := cfg.withDefaults()
	d.Issuers[0].Algorithms[0] = "RS256"
	if algs[0] != "ES256" {
		t.Fatal("withDefaults aliased the caller's slice")
	}
	is := d.Issuers[0]
	if is.DiscoveryURL != "https://i/.well-known/openid-configuration" || is.Leeway != DefaultLeeway ||
		is.UserNamespace != "a" || is.Claims.UserID != "sub" || is.Claims.Org != "org_id" ||
		is.Claims.ClientID != "client_id" || is.Claims.Scope != "scope" || !*is.Agent.SubjectEqualsClientID ||
		d.CacheSize != DefaultCacheSize || d.JWKSMinRefresh != DefaultJWKSMinRefresh || d.HTTPTimeout != DefaultHTTPTimeout {
		t.Fatalf("defaults = %+v", d)
	}
}

func TestSubjectEqualsClientIDDisabled(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	no := false
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL(), Agent: AgentConfig{SubjectEqualsClientID: &no}}}})
	p, err := v.VerifyToken(context.Background(), idp.MustMint(map[string]any{"sub": "svc", "client_id": "svc"}))
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindHuman {
		t.Fatalf("kind = %v, want human", p.Kind)
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	clk := newClock()
	idp := startIdP(b, clk)
	v := newVerifier(b, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}})
	tok := idp.MustMint(map[string]any{"sub": "alice", "client_id": "web", "aud": "https://mcp.example.com/mcp",
		"scope": "tools:read tools:call", "org_id": "org-1"})
	ctx := context.Background()
	if _, err := v.VerifyToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	v.cache.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := v.VerifyToken(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if m := v.Metrics(); m.Hits == 0 {
		b.Fatal("benchmark never hit the cache")
	}
}

func BenchmarkVerifyUncached(b *testing.B) {
	clk := newClock()
	idp := startIdP(b, clk)
	v := newVerifier(b, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL()}}, CacheSize: 1})
	toks := make([]string, 64)
	for i := range toks {
		toks[i] = idp.MustMint(map[string]any{"sub": "alice", "n": i}, devidp.WithAlg("ES256"))
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		v.cache.Clear()
		v.recent.clear()
		if _, err := v.VerifyToken(ctx, toks[i%len(toks)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func TestPrincipalFromClaims(t *testing.T) {
	cfg := Config{Issuers: []IssuerConfig{{Name: "a", Issuer: "https://idp.example.com"}}}
	tests := []struct {
		name    string
		claims  map[string]any
		kind    Kind
		actor   string
		wantErr string
	}{
		{"human", map[string]any{"iss": "https://idp.example.com", "sub": "alice"}, KindHuman, "", ""},
		{"agent for user", map[string]any{"iss": "https://idp.example.com", "sub": "alice", "act": map[string]any{"sub": "bot"}}, KindAgentForUser, "bot", ""},
		{"unknown issuer", map[string]any{"iss": "https://evil.example.com", "sub": "alice"}, "", "", ReasonUnknownIssuer},
		{"no sub", map[string]any{"iss": "https://idp.example.com"}, "", "", ReasonMissingClaim},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PrincipalFromClaims(cfg, tc.claims)
			if tc.wantErr != "" {
				var te *TokenError
				if !errors.As(err, &te) || te.Reason != tc.wantErr {
					t.Fatalf("err = %v, want reason %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Kind != tc.kind || p.Subject != "alice" {
				t.Fatalf("got kind %s subject %s", p.Kind, p.Subject)
			}
			if tc.actor != "" && (p.Actor == nil || p.Actor.Subject != tc.actor) {
				t.Fatalf("actor = %+v", p.Actor)
			}
		})
	}
}

func TestTokenTypes(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "i", Issuer: idp.URL(), TokenTypes: []string{"at+jwt"}}}})
	tests := []struct {
		typ    any // nil: no typ header
		reason string
	}{
		{"at+jwt", ""},
		{"application/AT+JWT", ""},
		{nil, ""}, // devidp writes at+jwt
		{"JWT", ReasonTypNotAllowed},
		{"", ReasonTypNotAllowed},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.typ), func(t *testing.T) {
			opts := []devidp.MintOption{}
			if tc.typ != nil {
				opts = append(opts, devidp.WithHeader("typ", tc.typ))
			}
			tok := idp.MustMint(map[string]any{"sub": "a"}, opts...)
			_, err := v.VerifyToken(context.Background(), tok)
			if got := reason(err); got != tc.reason {
				t.Fatalf("typ %v: reason %q (err %v), want %q", tc.typ, got, err, tc.reason)
			}
		})
	}
	if err := (Config{Issuers: []IssuerConfig{{Name: "i", Issuer: "https://x", TokenTypes: []string{"at jwt"}}}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "token_types[0]") {
		t.Fatalf("Validate = %v", err)
	}
}
