package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

const introSecret = "intro-s3cret:/%+"

// introIdP is a devidp issuing opaque tokens, with introspection client
// "mcpauthz" (secret introSecret) and public client "pub".
func introIdP(t *testing.T, clk *clock, prefix string) *devidp.Issuer {
	t.Helper()
	idp, err := devidp.New(devidp.Options{Now: clk.Now, OpaqueTokenPrefix: prefix,
		IntrospectionClients: map[string]string{"mcpauthz": introSecret, "pub": ""}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	return idp
}

// introConfig introspects through idp with client_secret_basic, the secret
// read from an environment variable.
func introConfig(t *testing.T, idp *devidp.Issuer, mod func(*IntrospectionConfig)) IssuerConfig {
	t.Helper()
	t.Setenv("MCPAUTHZ_TEST_INTROSPECTION_SECRET", introSecret)
	in := &IntrospectionConfig{
		Endpoint: idp.URL() + "/introspect", ClientID: "mcpauthz",
		ClientSecret: &secret.Ref{Env: "MCPAUTHZ_TEST_INTROSPECTION_SECRET"},
	}
	if mod != nil {
		mod(in)
	}
	return IssuerConfig{Name: "opaque", Issuer: idp.URL(), UserNamespace: "people", Introspection: in,
		Agent: AgentConfig{ClientIDs: []string{"ci-bot"}}}
}

func TestIntrospectionPrincipal(t *testing.T) {
	clk := newClock()
	idp := introIdP(t, clk, "")
	jwtIdP := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{
		introConfig(t, idp, nil),
		{Name: "jwt", Issuer: jwtIdP.URL(), UserNamespace: "people"},
	}})
	ctx := context.Background()
	aud := []any{"https://mcp.example.com/mcp", "https://other"}
	tests := []struct {
		name   string
		claims map[string]any
		reason string
		check  func(*testing.T, *Principal)
	}{
		{name: "human", claims: map[string]any{"sub": "alice", "aud": aud, "scope": "docs:read docs:write", "client_id": "web", "org_id": "acme"},
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindHuman || p.Method != "introspection" || p.Subject != "alice" || p.QualifiedSubject != "people/alice" ||
					p.Issuer != idp.URL() || p.ClientID != "web" || p.UserKey != "people|acme|alice" ||
					strings.Join(p.Scopes, ",") != "docs:read,docs:write" || !AudienceContains(p, "HTTPS://MCP.example.com/mcp") ||
					!p.ExpiresAt.Equal(clk.Now().Add(5*time.Minute)) || p.Claims["iss"] != idp.URL() {
					t.Fatalf("principal = %+v", p)
				}
			}},
		{name: "agent by client id", claims: map[string]any{"sub": "svc", "client_id": "ci-bot", "aud": "x"},
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindAgent || p.QualifiedSubject != "people/svc" {
					t.Fatalf("principal = %+v", p)
				}
			}},
		{name: "agent for user", claims: map[string]any{"sub": "alice", "act": map[string]any{"sub": "bot", "iss": jwtIdP.URL()}},
			check: func(t *testing.T, p *Principal) {
				if p.Kind != KindAgentForUser || p.Actor == nil || p.Actor.QualifiedSubject != "people/bot" {
					t.Fatalf("principal = %+v actor %+v", p, p.Actor)
				}
			}},
		{name: "scope with a tab", claims: map[string]any{"sub": "a", "scope": "a\tb"}, reason: ReasonInvalidClaim},
		{name: "scope with two spaces", claims: map[string]any{"sub": "a", "scope": "a  b"}, reason: ReasonInvalidClaim},
		{name: "scope not a string", claims: map[string]any{"sub": "a", "scope": []string{"a"}}, reason: ReasonInvalidClaim},
		{name: "no sub", claims: map[string]any{"sub": nil, "client_id": "x"}, reason: ReasonMissingClaim},
		{name: "no exp", claims: map[string]any{"sub": "a", "exp": nil}, reason: ReasonMissingClaim},
		{name: "other iss", claims: map[string]any{"sub": "a", "iss": jwtIdP.URL()}, reason: ReasonInvalidClaim},
		{name: "refresh token_type", claims: map[string]any{"sub": "a", "token_type": "refresh_token"}, reason: ReasonInvalidClaim},
		{name: "refresh token_type URN", claims: map[string]any{"sub": "a", "token_type": "urn:ietf:params:oauth:token-type:refresh_token"}, reason: ReasonInvalidClaim},
		{name: "Keycloak refresh typ", claims: map[string]any{"sub": "a", "typ": "Refresh"}, reason: ReasonInvalidClaim},
		{name: "DPoP-bound", claims: map[string]any{"sub": "a", "token_type": "DPoP"}, reason: ReasonInvalidClaim},
		{name: "certificate-bound", claims: map[string]any{"sub": "a", "cnf": map[string]any{"x5t#S256": "abc"}}, reason: ReasonInvalidClaim},
		{name: "not yet valid", claims: map[string]any{"sub": "a", "nbf": clk.Now().Add(time.Hour).Unix()}, reason: ReasonNotYetValid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := idp.MustIssueOpaque(tc.claims)
			p, err := v.VerifyToken(ctx, tok)
			if got := reason(err); got != tc.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tc.reason)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrUnavailable) {
					t.Fatalf("error %v does not wrap ErrInvalidToken only", err)
				}
				assertNoSecret(t, err.Error(), tok)
				return
			}
			if p.TokenHash != sha256.Sum256([]byte(tok)) {
				t.Fatal("TokenHash is not SHA-256 of the token")
			}
			tc.check(t, p)
		})
	}
	// A JWT from a configured issuer is still verified, never introspected.
	before := idp.IntrospectionRequests()
	p, err := v.VerifyToken(ctx, jwtIdP.MustMint(map[string]any{"sub": "alice"}))
	if err != nil || p.Method != "jwt" || p.QualifiedSubject != "people/alice" {
		t.Fatalf("jwt: %+v %v", p, err)
	}
	// Malformed tokens are refused before anything is sent.
	for _, bad := range []string{"tok\x00en", "tok en", "tok%20en", "==", "a=b"} {
		if _, err := v.VerifyToken(ctx, bad); reason(err) != ReasonMalformed {
			t.Fatalf("%q: reason %q", bad, reason(err))
		}
	}
	if n := idp.IntrospectionRequests(); n != before {
		t.Fatalf("%d introspection requests for a JWT or malformed tokens", n-before)
	}
}

// TestIntrospectionCache: active results are served from the cache for at
// most min(exp-now, cache_max_age); refusals for a few seconds; a revoked
// token stops working once its entry ages out.
func TestIntrospectionCache(t *testing.T) {
	clk := newClock()
	idp := introIdP(t, clk, "")
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{introConfig(t, idp, func(c *IntrospectionConfig) { c.CacheMaxAge = 20 * time.Second })}})
	ctx := context.Background()
	calls := idp.IntrospectionRequests
	verify := func(tok string) (*Principal, error) {
		t.Helper()
		p, err := v.VerifyToken(ctx, tok)
		v.cache.Wait()
		return p, err
	}

	tok := idp.MustIssueOpaque(map[string]any{"sub": "alice"}, devidp.WithExpiry(time.Hour))
	p1, err := verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if p2, err := verify(tok); err != nil || p2 != p1 || calls() != 1 {
		t.Fatalf("second call not cached: %v, %d calls", err, calls())
	}
	idp.Revoke(tok)
	clk.Advance(19 * time.Second)
	if p2, err := verify(tok); err != nil || p2 != p1 || calls() != 1 {
		t.Fatalf("within cache_max_age: %v, %d calls", err, calls())
	}
	clk.Advance(time.Second)
	if _, err := verify(tok); reason(err) != ReasonInactive || calls() != 2 {
		t.Fatalf("after cache_max_age: %v, %d calls", err, calls())
	}
	// The refusal is remembered briefly, never as active.
	if _, err := verify(tok); reason(err) != ReasonInactive || calls() != 2 {
		t.Fatalf("inactive not cached: %v, %d calls", err, calls())
	}
	clk.Advance(inactiveCacheTTL)
	if _, err := verify(tok); reason(err) != ReasonInactive || calls() != 3 {
		t.Fatalf("inactive cached too long: %v, %d calls", err, calls())
	}

	// exp bounds the entry before cache_max_age does.
	short := idp.MustIssueOpaque(map[string]any{"sub": "bob"}, devidp.WithExpiry(5*time.Second))
	if _, err := verify(short); err != nil || calls() != 4 {
		t.Fatalf("short: %v, %d calls", err, calls())
	}
	clk.Advance(5 * time.Second)
	if _, err := verify(short); reason(err) != ReasonInactive || calls() != 5 {
		t.Fatalf("served past exp: %v, %d calls", err, calls())
	}

	// The default max age is 1m.
	d := Config{Issuers: []IssuerConfig{{Name: "i", Issuer: "https://i", Introspection: &IntrospectionConfig{Endpoint: "https://i/x", ClientAuth: "none"}}}}.withDefaults()
	if in := d.Issuers[0].Introspection; in.CacheMaxAge != time.Minute || in.Timeout != DefaultIntrospectionTimeout || in.ClientAuth != "none" {
		t.Fatalf("defaults = %+v", in)
	}
}

// TestIntrospectionSingleflight: N concurrent misses for one token cause
// exactly one introspection call and share its Principal.
func TestIntrospectionSingleflight(t *testing.T) {
	clk := newClock()
	idp := introIdP(t, clk, "")
	const n = 32
	var started sync.WaitGroup
	started.Add(n)
	var hits atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		started.Wait() // hold the first call until every caller is running
		r.URL.Path = "/introspect"
		idp.Handler().ServeHTTP(w, r)
	}))
	defer front.Close()
	ic := introConfig(t, idp, func(c *IntrospectionConfig) { c.Endpoint = front.URL + "/introspect"; c.Timeout = 10 * time.Second })
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{ic}})
	tok := idp.MustIssueOpaque(map[string]any{"sub": "alice"})

	ps := make([]*Principal, n)
	errs := make([]error, n)
	var done sync.WaitGroup
	for i := range n {
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			ps[i], errs[i] = v.VerifyToken(context.Background(), tok)
		}()
	}
	done.Wait()
	for i := range n {
		if errs[i] != nil || ps[i] != ps[0] {
			t.Fatalf("caller %d: %v (principal shared: %v)", i, errs[i], ps[i] == ps[0])
		}
	}
	if got := hits.Load(); got != 1 {
		t.Fatalf("%d introspection calls for %d concurrent misses, want 1", got, n)
	}
}

// fakeEndpoint is an introspection endpoint answering with respond and
// recording what it received.
type fakeEndpoint struct {
	*httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	last  *http.Request
	form  url.Values
}

func newFakeEndpoint(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) *fakeEndpoint {
	t.Helper()
	f := &fakeEndpoint{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		_ = r.ParseForm()
		f.mu.Lock()
		f.last, f.form = r, r.PostForm
		f.mu.Unlock()
		respond(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func jsonAnswer(status int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// TestIntrospectionFailures: an endpoint that cannot answer makes the token
// unjudgeable (ErrUnavailable, never cached); one that refuses or answers
// nonsense makes it invalid. Neither the token nor the secret appears in
// errors or logs.
func TestIntrospectionFailures(t *testing.T) {
	clk := newClock()
	const iss = "https://opaque.example"
	exp := clk.Now().Add(time.Hour).Unix()
	okBody := fmt.Sprintf(`{"active":true,"sub":"alice","exp":%d}`, exp)
	other := newFakeEndpoint(t, jsonAnswer(200, okBody))
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	unavailable := []struct {
		name    string
		respond func(http.ResponseWriter, *http.Request)
		url     string
	}{
		{name: "500", respond: jsonAnswer(500, `{}`)},
		{name: "503", respond: jsonAnswer(503, `{}`)},
		{name: "429", respond: jsonAnswer(429, `{}`)},
		{name: "timeout", respond: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}},
		{name: "connection refused", url: deadURL + "/introspect"},
	}
	invalid := []struct {
		name    string
		respond func(http.ResponseWriter, *http.Request)
		reason  string
	}{
		{"401", jsonAnswer(401, `{"error":"invalid_client"}`), ReasonIntrospectionFailed},
		{"400", jsonAnswer(400, `{"error":"invalid_request"}`), ReasonIntrospectionFailed},
		{"redirect not followed", http.RedirectHandler(other.URL, http.StatusTemporaryRedirect).ServeHTTP, ReasonIntrospectionFailed},
		{"html", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = io.WriteString(w, okBody)
		}, ReasonIntrospectionFailed},
		{"malformed JSON", jsonAnswer(200, `{"active":true,`), ReasonIntrospectionFailed},
		{"trailing data", jsonAnswer(200, okBody+`{}`), ReasonIntrospectionFailed},
		{"null", jsonAnswer(200, `null`), ReasonIntrospectionFailed},
		{"array", jsonAnswer(200, `[`+okBody+`]`), ReasonIntrospectionFailed},
		{"oversized", jsonAnswer(200, `{"active":true,"pad":"`+strings.Repeat("x", maxIntrospectionBytes)+`"}`), ReasonIntrospectionFailed},
		{"inactive", jsonAnswer(200, `{"active":false}`), ReasonInactive},
		{"active as a string", jsonAnswer(200, fmt.Sprintf(`{"active":"true","sub":"a","exp":%d}`, exp)), ReasonInactive},
		{"expired", jsonAnswer(200, fmt.Sprintf(`{"active":true,"sub":"a","exp":%d}`, clk.Now().Add(-time.Minute).Unix())), ReasonExpired},
	}

	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Setenv("MCPAUTHZ_TEST_INTROSPECTION_SECRET", introSecret)
	newV := func(t *testing.T, endpoint string) *Verifier {
		t.Helper()
		v, err := NewVerifier(context.Background(), Config{Issuers: []IssuerConfig{{Name: "o", Issuer: iss, Introspection: &IntrospectionConfig{
			Endpoint: endpoint, ClientID: "mcpauthz", Timeout: 300 * time.Millisecond,
			ClientSecret: &secret.Ref{Env: "MCPAUTHZ_TEST_INTROSPECTION_SECRET"},
		}}}}, Options{Now: clk.Now, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(v.Close)
		return v
	}
	tok := "opaque-Token_0123456789~+/="
	for _, tc := range unavailable {
		t.Run(tc.name, func(t *testing.T) {
			u := tc.url
			var f *fakeEndpoint
			if u == "" {
				f = newFakeEndpoint(t, tc.respond)
				u = f.URL + "/introspect"
			}
			v := newV(t, u)
			for range 2 {
				_, err := v.VerifyToken(context.Background(), tok)
				if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) || reason(err) != ReasonIntrospectionUnavailable {
					t.Fatalf("err = %v", err)
				}
				assertNoSecret(t, err.Error(), tok)
				v.cache.Wait()
			}
			if f != nil && f.calls.Load() != 2 {
				t.Fatalf("%d calls: an unavailable result was cached", f.calls.Load())
			}
		})
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeEndpoint(t, tc.respond)
			v := newV(t, f.URL+"/introspect")
			_, err := v.VerifyToken(context.Background(), tok)
			if !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrUnavailable) || reason(err) != tc.reason {
				t.Fatalf("err = %v, want reason %s", err, tc.reason)
			}
			assertNoSecret(t, err.Error(), tok)
		})
	}
	if n := other.calls.Load(); n != 0 {
		t.Fatalf("a redirect was followed (%d calls)", n)
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(logs.String(), "introspection") {
		t.Fatal("failures were not logged")
	}
	assertNoSecret(t, logs.String(), tok)
	if strings.Contains(logs.String(), introSecret) || strings.Contains(logs.String(), url.QueryEscape(introSecret)) {
		t.Fatal("the client secret was logged")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestIntrospectionClientAuth: what each client_auth method sends.
func TestIntrospectionClientAuth(t *testing.T) {
	clk := newClock()
	const iss = "https://opaque.example"
	body := fmt.Sprintf(`{"active":true,"sub":"alice","exp":%d}`, clk.Now().Add(time.Hour).Unix())
	t.Setenv("MCPAUTHZ_TEST_INTROSPECTION_SECRET", introSecret)
	ref := &secret.Ref{Env: "MCPAUTHZ_TEST_INTROSPECTION_SECRET"}
	tok := "tok-" + strings.Repeat("a", 20)
	for _, tc := range []struct {
		auth, clientID string
		secret         *secret.Ref
		wantBasic      bool
		wantForm       url.Values
	}{
		{"", "mcp authz", ref, true, url.Values{"token": {tok}, "token_type_hint": {"access_token"}}},
		{"client_secret_post", "mcpauthz", ref, false, url.Values{"token": {tok}, "token_type_hint": {"access_token"}, "client_id": {"mcpauthz"}, "client_secret": {introSecret}}},
		{"none", "pub", nil, false, url.Values{"token": {tok}, "token_type_hint": {"access_token"}, "client_id": {"pub"}}},
		{"none", "", nil, false, url.Values{"token": {tok}, "token_type_hint": {"access_token"}}},
	} {
		t.Run(tc.auth+"/"+tc.clientID, func(t *testing.T) {
			f := newFakeEndpoint(t, jsonAnswer(200, body))
			v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "o", Issuer: iss, Introspection: &IntrospectionConfig{
				Endpoint: f.URL + "/introspect", ClientAuth: tc.auth, ClientID: tc.clientID, ClientSecret: tc.secret,
			}}}})
			if _, err := v.VerifyToken(context.Background(), tok); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			r := f.last
			if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.Header.Get("Accept") != "application/json" {
				t.Fatalf("request %s %v", r.Method, r.Header)
			}
			user, pass, basic := r.BasicAuth()
			if basic != tc.wantBasic {
				t.Fatalf("basic auth = %v", basic)
			}
			if basic {
				u, _ := url.QueryUnescape(user)
				p, _ := url.QueryUnescape(pass)
				if u != tc.clientID || p != introSecret {
					t.Fatalf("basic credentials %q:%q", u, p)
				}
			}
			if fmt.Sprint(f.form) != fmt.Sprint(tc.wantForm) {
				t.Fatalf("form = %v, want %v", f.form, tc.wantForm)
			}
		})
	}
	// A secret that cannot be resolved fails NewVerifier, naming the field.
	_, err := NewVerifier(context.Background(), Config{Issuers: []IssuerConfig{{Name: "o", Issuer: iss, Introspection: &IntrospectionConfig{
		Endpoint: iss + "/introspect", ClientID: "x", ClientSecret: &secret.Ref{Env: "MCPAUTHZ_TEST_UNSET_SECRET_VAR"},
	}}}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "issuers[0].introspection.client_secret") {
		t.Fatalf("err = %v", err)
	}
	// The configuration prints the reference, never the secret.
	cfg := Config{Issuers: []IssuerConfig{{Introspection: &IntrospectionConfig{ClientSecret: ref}}}}
	if s := fmt.Sprintf("%+v %v", cfg, *cfg.Issuers[0].Introspection); strings.Contains(s, introSecret) {
		t.Fatalf("config prints the secret: %s", s)
	}
}

// TestIntrospectionRouting: an opaque token goes only to the issuer whose
// token_prefix it carries; JWS-shaped tokens are never introspected.
func TestIntrospectionRouting(t *testing.T) {
	clk := newClock()
	a, b := introIdP(t, clk, "aaa_"), introIdP(t, clk, "bbb_")
	cfgA := introConfig(t, a, func(c *IntrospectionConfig) { c.TokenPrefix = "aaa_" })
	cfgB := introConfig(t, b, func(c *IntrospectionConfig) { c.TokenPrefix = "bbb_" })
	cfgB.Name, cfgB.UserNamespace = "b", "partner"
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{cfgA, cfgB}})
	ctx := context.Background()

	pa, err := v.VerifyToken(ctx, a.MustIssueOpaque(map[string]any{"sub": "alice"}))
	if err != nil || pa.Issuer != a.URL() || pa.QualifiedSubject != "people/alice" {
		t.Fatalf("a: %+v %v", pa, err)
	}
	pb, err := v.VerifyToken(ctx, b.MustIssueOpaque(map[string]any{"sub": "alice"}))
	if err != nil || pb.Issuer != b.URL() || pb.QualifiedSubject != "partner/alice" {
		t.Fatalf("b: %+v %v", pb, err)
	}
	if a.IntrospectionRequests() != 1 || b.IntrospectionRequests() != 1 {
		t.Fatalf("requests a=%d b=%d", a.IntrospectionRequests(), b.IntrospectionRequests())
	}
	// A token of a carrying b's prefix is asked of b only, which does not
	// know it.
	if _, err := v.VerifyToken(ctx, "bbb_"+strings.TrimPrefix(a.MustIssueOpaque(map[string]any{"sub": "x"}), "aaa_")); reason(err) != ReasonInactive {
		t.Fatalf("cross prefix: %v", err)
	}
	for _, tok := range []string{"ccc_123", "aaa", "eyJhbGciOiJSUzI1NiJ9.e30.sig"} {
		_, err := v.VerifyToken(ctx, tok)
		if reason(err) != ReasonUnknownIssuer && reason(err) != ReasonMalformed {
			t.Fatalf("%q: %v", tok, err)
		}
	}
	if a.IntrospectionRequests() != 1 || b.IntrospectionRequests() != 2 {
		t.Fatalf("requests a=%d b=%d", a.IntrospectionRequests(), b.IntrospectionRequests())
	}
	if !looksLikeJWS("eyJhbGciOiJSUzI1NiJ9.e30.sig") || looksLikeJWS("a.b.c") || looksLikeJWS("eyJhbGciOiJSUzI1NiJ9.e30") || looksLikeJWS("e30.e30.x") {
		t.Fatal("looksLikeJWS")
	}
}

// TestIntrospectionCancelled: a caller whose request is cancelled gets an
// unavailable error at once, while the shared call completes for others.
func TestIntrospectionCancelled(t *testing.T) {
	clk := newClock()
	release := make(chan struct{})
	f := newFakeEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		jsonAnswer(200, fmt.Sprintf(`{"active":true,"sub":"a","exp":%d}`, clk.Now().Add(time.Hour).Unix()))(w, r)
	})
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "o", Issuer: "https://o.example", Introspection: &IntrospectionConfig{
		Endpoint: f.URL, ClientAuth: "none", Timeout: 10 * time.Second}}}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.VerifyToken(ctx, "tok123"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	close(release)
	if _, err := v.VerifyToken(context.Background(), "tok123"); err != nil {
		t.Fatal(err)
	}
	if n := f.calls.Load(); n != 1 {
		t.Fatalf("%d calls", n)
	}
}

func TestIntrospectionConfigValidate(t *testing.T) {
	ref := &secret.Ref{Env: "X"}
	ok := IntrospectionConfig{Endpoint: "https://idp.example/introspect", ClientID: "c", ClientSecret: ref}
	with := func(mod func(*IntrospectionConfig)) *IntrospectionConfig {
		c := ok
		mod(&c)
		return &c
	}
	one := func(in *IntrospectionConfig) []IssuerConfig {
		return []IssuerConfig{{Name: "a", Issuer: "https://a.example", Introspection: in}}
	}
	tests := []struct {
		name    string
		issuers []IssuerConfig
		want    []string
	}{
		{"valid", one(&ok), nil},
		{"valid none", one(&IntrospectionConfig{Endpoint: "http://127.0.0.1:9/i", ClientAuth: "none"}), nil},
		{"missing endpoint and client", one(&IntrospectionConfig{}),
			[]string{"issuers[0].introspection.endpoint: required", "issuers[0].introspection.client_id: required with client_auth client_secret_basic", "issuers[0].introspection.client_secret: required"}},
		{"plain http", one(with(func(c *IntrospectionConfig) { c.Endpoint = "http://idp.example/i" })), []string{"issuers[0].introspection.endpoint: http is allowed only for loopback"}},
		{"query", one(with(func(c *IntrospectionConfig) { c.Endpoint = "https://idp.example/i?x=1" })), []string{"issuers[0].introspection.endpoint: must be an absolute URL without userinfo, query or fragment"}},
		{"unknown auth", one(with(func(c *IntrospectionConfig) { c.ClientAuth = "private_key_jwt" })), []string{`issuers[0].introspection.client_auth: unknown method "private_key_jwt"`}},
		{"secret with none", one(with(func(c *IntrospectionConfig) { c.ClientAuth = "none" })), []string{"issuers[0].introspection.client_secret: only used with"}},
		{"bad secret ref", one(with(func(c *IntrospectionConfig) { c.ClientSecret = &secret.Ref{} })), []string{"issuers[0].introspection.client_secret: "}},
		{"control in client_id", one(with(func(c *IntrospectionConfig) { c.ClientID = "a\nb" })), []string{"issuers[0].introspection.client_id: contains control characters"}},
		{"timeout", one(with(func(c *IntrospectionConfig) { c.Timeout = time.Minute })), []string{"issuers[0].introspection.timeout: 1m0s is outside"}},
		{"negative timeout", one(with(func(c *IntrospectionConfig) { c.Timeout = -1 })), []string{"issuers[0].introspection.timeout: "}},
		{"cache_max_age", one(with(func(c *IntrospectionConfig) { c.CacheMaxAge = 2 * time.Hour })), []string{"issuers[0].introspection.cache_max_age: 2h0m0s is outside [1s, 1h0m0s]"}},
		{"token_prefix", one(with(func(c *IntrospectionConfig) { c.TokenPrefix = "a b" })), []string{"issuers[0].introspection.token_prefix: must be"}},
		{"two without prefixes", []IssuerConfig{
			{Name: "a", Issuer: "https://a.example", Introspection: &ok},
			{Name: "b", Issuer: "https://b.example", Introspection: with(func(c *IntrospectionConfig) { c.TokenPrefix = "b_" })},
		}, []string{"issuers[0].introspection.token_prefix: required when several issuers introspect"}},
		{"overlapping prefixes", []IssuerConfig{
			{Name: "a", Issuer: "https://a.example", Introspection: with(func(c *IntrospectionConfig) { c.TokenPrefix = "at_" })},
			{Name: "b", Issuer: "https://b.example", Introspection: with(func(c *IntrospectionConfig) { c.TokenPrefix = "at_x" })},
		}, []string{`issuers[0].introspection.token_prefix: a token of issuers[1] (prefix "at_x") would also match "at_"`}},
		{"equal prefixes", []IssuerConfig{
			{Name: "a", Issuer: "https://a.example", Introspection: with(func(c *IntrospectionConfig) { c.TokenPrefix = "at_" })},
			{Name: "b", Issuer: "https://b.example", Introspection: with(func(c *IntrospectionConfig) { c.TokenPrefix = "at_" })},
		}, []string{`issuers[0].introspection.token_prefix: a token of issuers[1] (prefix "at_") would also match "at_"`}},
		{"distinct prefixes", []IssuerConfig{
			{Name: "a", Issuer: "https://a.example", Introspection: with(func(c *IntrospectionConfig) { c.TokenPrefix = "a_" })},
			{Name: "b", Issuer: "https://b.example", Introspection: with(func(c *IntrospectionConfig) { c.TokenPrefix = "b_" })},
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, Config{Issuers: tc.issuers}.Validate(), tc.want)
		})
	}
}
