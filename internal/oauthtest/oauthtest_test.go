package oauthtest

import (
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

func TestMetadataAndDiscovery(t *testing.T) {
	for _, pfx := range []string{"", "/tenant1"} {
		t.Run("prefix="+pfx, func(t *testing.T) {
			e := start(t, Options{IssuerPathPrefix: pfx, Registration: true})
			root := strings.TrimSuffix(e.iss, pfx)
			if e.iss != e.p.URL() || !strings.HasSuffix(e.iss, pfx) {
				t.Fatalf("issuer %q, URL %q", e.iss, e.p.URL())
			}
			paths := []string{e.iss + "/.well-known/openid-configuration", e.iss + "/.well-known/oauth-authorization-server"}
			if pfx != "" {
				paths = append(paths, root+"/.well-known/oauth-authorization-server"+pfx, root+"/.well-known/openid-configuration"+pfx)
			}
			for _, u := range paths {
				md := getJSON(t, u)
				for k, want := range map[string]any{
					"issuer": e.iss, "authorization_endpoint": e.iss + "/authorize", "token_endpoint": e.iss + "/token",
					"revocation_endpoint": e.iss + "/revoke", "jwks_uri": e.iss + "/jwks", "registration_endpoint": e.iss + "/register",
					"authorization_response_iss_parameter_supported": true,
				} {
					if md[k] != want {
						t.Errorf("%s: %s = %v, want %v", u, k, md[k], want)
					}
				}
				for k, want := range map[string]string{
					"code_challenge_methods_supported": "S256", "response_types_supported": "code",
					"grant_types_supported": "refresh_token", "token_endpoint_auth_methods_supported": "none",
				} {
					if l, _ := md[k].([]any); !slices.Contains(l, any(want)) {
						t.Errorf("%s: %s = %v, want it to hold %s", u, k, md[k], want)
					}
				}
				if l := md["code_challenge_methods_supported"].([]any); len(l) != 1 {
					t.Errorf("code_challenge_methods_supported = %v, want only S256", l)
				}
			}
			// A stock OIDC client library discovers it (issuer must match).
			op, err := oidc.NewProvider(t.Context(), e.iss)
			if err != nil {
				t.Fatal(err)
			}
			if op.Endpoint().TokenURL != e.iss+"/token" {
				t.Fatalf("go-oidc token URL %q", op.Endpoint().TokenURL)
			}
			if got := e.p.Requests("/.well-known/openid-configuration"); got < 2 {
				t.Fatalf("Requests(openid-configuration) = %d", got)
			}
		})
	}
}

func TestCodeFlowWithOIDCClient(t *testing.T) {
	e := start(t, Options{UserClaims: map[string]map[string]any{"alice": {"email": "alice@example.com"}}})
	op, err := oidc.NewProvider(t.Context(), e.iss)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.config("app", "s3cret", oidc.ScopeOpenID, "repo")
	const resource = "https://mcp.example.com/mcp"
	q, verifier := e.login(cfg, "alice", oidc.Nonce("n-123"), oauth2.SetAuthURLParam("resource", resource))
	if q.Get("state") != "st-1" || q.Get("iss") != e.iss || q.Get("code") == "" {
		t.Fatalf("redirect query = %v", q)
	}
	tok, err := cfg.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", resource))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.Extra("scope") != "openid repo" {
		t.Fatalf("token = %+v scope=%v", tok, tok.Extra("scope"))
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := op.Verifier(&oidc.Config{ClientID: "app"}).Verify(t.Context(), raw)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Email string `json:"email"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != "alice" || idt.Nonce != "n-123" || idt.Issuer != e.iss || claims.Email != "alice@example.com" {
		t.Fatalf("id token sub=%q nonce=%q iss=%q email=%q", idt.Subject, idt.Nonce, idt.Issuer, claims.Email)
	}
	user, scopes, ok := e.p.VerifyAccessToken(tok.AccessToken)
	if !ok || user != "alice" || !slices.Equal(scopes, []string{"openid", "repo"}) {
		t.Fatalf("VerifyAccessToken = %q %v %v", user, scopes, ok)
	}
	ti, _ := e.p.AccessTokenInfo(tok.AccessToken)
	if ti.Resource != resource || ti.ClientID != "app" {
		t.Fatalf("AccessTokenInfo = %+v", ti)
	}
	if _, _, ok := e.p.VerifyAccessToken("oat_forged"); ok {
		t.Fatal("a forged token verified")
	}
	ui, err := op.UserInfo(t.Context(), oauth2.StaticTokenSource(tok))
	if err != nil || ui.Subject != "alice" || ui.Email != "alice@example.com" {
		t.Fatalf("userinfo = %+v, %v", ui, err)
	}
	if e.p.Requests("/authorize") != 3 || e.p.Requests("/token") != 1 { // GET form, POST login, POST consent
		t.Fatalf("Requests authorize=%d token=%d", e.p.Requests("/authorize"), e.p.Requests("/token"))
	}
}

func TestPublicClientAndAuthMethods(t *testing.T) {
	e := start(t, Options{})
	for _, tc := range []struct {
		name, id, secret string
		style            oauth2.AuthStyle
	}{
		{"client_secret_basic", "app", "s3cret", oauth2.AuthStyleInHeader},
		{"client_secret_post", "app", "s3cret", oauth2.AuthStyleInParams},
		{"none", "cli", "", oauth2.AuthStyleInParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.config(tc.id, tc.secret)
			cfg.Endpoint.AuthStyle = tc.style
			if tok := e.tokens(cfg, "bob"); tok.AccessToken == "" {
				t.Fatal("no access token")
			}
		})
	}
}

func TestLoginAndConsentPages(t *testing.T) {
	e := start(t, Options{})
	cfg := e.config("app", "s3cret", "repo")
	authURL := cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`<label for="username">`, `id="username" name="username"`, `<label for="password">`,
		`id="password" name="password" type="password"`, `id="login" type="submit"`,
	} {
		if !strings.Contains(string(page), want) {
			t.Errorf("login page lacks %s", want)
		}
	}
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") || strings.Contains(string(page), "<script") {
		t.Fatalf("login page status %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}

	t.Run("wrong password stays on the login page", func(t *testing.T) {
		_, err := Authorize(t.Context(), authURL, "alice", "wrong")
		if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "Wrong username or password") {
			t.Fatalf("err = %v", err)
		}
		if _, err := Authorize(t.Context(), authURL, "mallory", "mallory"); err == nil {
			t.Fatal("an unknown user signed in")
		}
		status, page, _ := postLogin(t, authURL, "alice", "hunter2-secret")
		if status != http.StatusUnauthorized || strings.Contains(page, "hunter2") || !strings.Contains(page, `value="alice"`) {
			t.Fatalf("wrong password page: %d, echoes the password or forgets the username: %s", status, page)
		}
	})
	t.Run("deny", func(t *testing.T) {
		cb, err := Authorize(t.Context(), authURL, "alice", "alice", Deny())
		if err != nil {
			t.Fatal(err)
		}
		q := cb.Query()
		if q.Get("error") != "access_denied" || q.Get("state") != "st" || q.Get("iss") != e.iss || q.Has("code") {
			t.Fatalf("deny redirect = %v", q)
		}
	})
	t.Run("consent page", func(t *testing.T) {
		// Log in by hand to see the consent page itself.
		_, page, f := postLogin(t, authURL, "alice", "alice")
		for _, want := range []string{`id="approve"`, `id="deny"`, `<li>repo</li>`, `id="user">alice<`} {
			if !strings.Contains(page, want) {
				t.Errorf("consent page lacks %s", want)
			}
		}
		// The login step's request id cannot be replayed.
		resp, err := http.PostForm(f.action.String(), f.values)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("replayed login form: %d", resp.StatusCode)
		}
	})
	t.Run("skip consent", func(t *testing.T) {
		e := start(t, Options{RequireConsent: new(false)})
		if tok := e.tokens(e.config("app", "s3cret"), "bob"); tok.AccessToken == "" {
			t.Fatal("no token")
		}
		if e.p.Requests("/authorize") != 2 {
			t.Fatalf("authorize requests = %d, want 2 (form, login)", e.p.Requests("/authorize"))
		}
	})
}

// postLogin opens the login page of authURL and posts it by hand.
func postLogin(t *testing.T, authURL, user, pass string) (int, string, *form) {
	t.Helper()
	resp, err := http.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := pageForm(resp)
	resp.Body.Close()
	if f == nil {
		t.Fatalf("no login form at %s", authURL)
	}
	f.values.Set("username", user)
	f.values.Set("password", pass)
	resp, err = http.PostForm(f.action.String(), f.values)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(page), f
}

func TestAuthorizeRequestErrors(t *testing.T) {
	e := start(t, Options{Scopes: []string{"repo"}})
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	good := url.Values{
		"response_type": {"code"}, "client_id": {"app"}, "redirect_uri": {redirectURI}, "state": {"s"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
	for _, tc := range []struct {
		name     string
		edit     func(url.Values)
		page     bool   // shown to the user, never redirected
		wantCode string // error in the redirect
	}{
		{"unknown client", func(v url.Values) { v.Set("client_id", "nope") }, true, ""},
		{"unregistered redirect", func(v url.Values) { v.Set("redirect_uri", "http://127.0.0.1:9/other") }, true, ""},
		{"redirect differs in query", func(v url.Values) { v.Set("redirect_uri", redirectURI+"?x=1") }, true, ""},
		{"missing redirect", func(v url.Values) { v.Del("redirect_uri") }, true, ""},
		{"repeated parameter", func(v url.Values) { v.Add("state", "t") }, true, ""},
		{"implicit flow", func(v url.Values) { v.Set("response_type", "token") }, false, "unsupported_response_type"},
		{"no PKCE", func(v url.Values) { v.Del("code_challenge"); v.Del("code_challenge_method") }, false, "invalid_request"},
		{"plain PKCE", func(v url.Values) { v.Set("code_challenge_method", "plain") }, false, "invalid_request"},
		{"no PKCE method", func(v url.Values) { v.Del("code_challenge_method") }, false, "invalid_request"},
		{"short challenge", func(v url.Values) { v.Set("code_challenge", "abc") }, false, "invalid_request"},
		{"unsupported scope", func(v url.Values) { v.Set("scope", "repo admin") }, false, "invalid_scope"},
		{"malformed scope", func(v url.Values) { v.Set("scope", "repo  x") }, false, "invalid_scope"},
		{"resource with fragment", func(v url.Values) { v.Set("resource", "https://x/#f") }, false, "invalid_target"},
		{"prompt none", func(v url.Values) { v.Set("prompt", "none") }, false, "login_required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := url.Values{}
			for k, vs := range good {
				v[k] = slices.Clone(vs)
			}
			tc.edit(v)
			c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := c.Get(e.iss + "/authorize?" + v.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if tc.page {
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
					t.Fatalf("status %d location %q, want a 400 page", resp.StatusCode, resp.Header.Get("Location"))
				}
				return
			}
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil || resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
			q := loc.Query()
			if q.Get("error") != tc.wantCode || q.Get("state") != "s" || q.Get("iss") != e.iss || !strings.HasPrefix(loc.String(), redirectURI+"?") {
				t.Fatalf("redirect %v, want error=%s", loc, tc.wantCode)
			}
		})
	}
	t.Run("any loopback option", func(t *testing.T) {
		e := start(t, Options{Clients: map[string]string{"app": "s"}, AnyLoopbackRedirect: true})
		for u, ok := range map[string]bool{
			"http://127.0.0.1:5555/cb": true, "http://localhost/x?y=1": true, "http://[::1]:1/": true,
			"https://127.0.0.1/cb": false, "http://example.com/cb": false, "http://127.0.0.1/cb#f": false,
		} {
			cfg := e.config("app", "s")
			cfg.RedirectURL = u
			_, err := Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice")
			if (err == nil) != ok {
				t.Errorf("redirect %s: err = %v, want accepted=%v", u, err, ok)
			}
		}
	})
}

func TestTokenEndpointErrors(t *testing.T) {
	e := start(t, Options{Clients: map[string]string{"app": "s3cret", "cli": "", "other": "o"},
		RedirectURIs: map[string][]string{"app": {redirectURI}, "cli": {redirectURI}, "other": {redirectURI}}})
	cfg := e.config("app", "s3cret")
	fresh := func() (string, string) { return e.codeFor(cfg, "alice") }

	t.Run("code reuse revokes what the code produced", func(t *testing.T) {
		code, v := fresh()
		status, body, _ := e.post("/token", codeForm(code, v), "app", "s3cret")
		if status != 200 {
			t.Fatalf("first exchange: %d %v", status, body)
		}
		at, rt := body["access_token"].(string), body["refresh_token"].(string)
		status, body, _ = e.post("/token", codeForm(code, v), "app", "s3cret")
		wantError(t, status, body, 400, "invalid_grant")
		if _, _, ok := e.p.VerifyAccessToken(at); ok {
			t.Fatal("access token from a replayed code still verifies")
		}
		status, body, _ = e.post("/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "app", "s3cret")
		wantError(t, status, body, 400, "invalid_grant")
	})
	cases := []struct {
		name       string
		form       func(code, v string) url.Values
		id, secret string
		status     int
		code       string
	}{
		{"wrong verifier", func(c, _ string) url.Values { return codeForm(c, oauth2.GenerateVerifier()) }, "app", "s3cret", 400, "invalid_grant"},
		{"no verifier", func(c, _ string) url.Values { f := codeForm(c, ""); f.Del("code_verifier"); return f }, "app", "s3cret", 400, "invalid_request"},
		{"short verifier", func(c, _ string) url.Values { return codeForm(c, "abc") }, "app", "s3cret", 400, "invalid_request"},
		{"wrong redirect_uri", func(c, v string) url.Values {
			f := codeForm(c, v)
			f.Set("redirect_uri", "http://127.0.0.1:9/other")
			return f
		}, "app", "s3cret", 400, "invalid_grant"},
		{"no redirect_uri", func(c, v string) url.Values { f := codeForm(c, v); f.Del("redirect_uri"); return f }, "app", "s3cret", 400, "invalid_grant"},
		{"other client's code", codeForm, "other", "o", 400, "invalid_grant"},
		{"unknown code", func(_, v string) url.Values { return codeForm("nope", v) }, "app", "s3cret", 400, "invalid_grant"},
		{"other resource", func(c, v string) url.Values {
			f := codeForm(c, v)
			f.Set("resource", "https://elsewhere/")
			return f
		}, "app", "s3cret", 400, "invalid_target"},
		{"wrong secret", codeForm, "app", "nope", 401, "invalid_client"},
		{"unknown client", codeForm, "ghost", "x", 401, "invalid_client"},
		{"public client with a secret", codeForm, "cli", "x", 401, "invalid_client"},
		{"no client authentication", codeForm, "", "", 401, "invalid_client"},
		{"unsupported grant", func(c, v string) url.Values {
			f := codeForm(c, v)
			f.Set("grant_type", "password")
			return f
		}, "app", "s3cret", 400, "unsupported_grant_type"},
		{"repeated parameter", func(c, v string) url.Values { f := codeForm(c, v); f.Add("code", c); return f }, "app", "s3cret", 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, v := fresh()
			status, body, hdr := e.post("/token", tc.form(code, v), tc.id, tc.secret)
			wantError(t, status, body, tc.status, tc.code)
			if status == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
				t.Fatalf("401 without WWW-Authenticate: %v", hdr)
			}
			if d, _ := body["error_description"].(string); strings.Contains(d, code) || strings.Contains(d, "s3cret") {
				t.Fatalf("error description echoes a secret: %q", d)
			}
			if hdr.Get("Cache-Control") != "no-store" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
				t.Fatalf("headers %v", hdr)
			}
		})
	}
	t.Run("expired code", func(t *testing.T) {
		code, v := fresh()
		e.clk.Advance(2 * time.Minute)
		status, body, _ := e.post("/token", codeForm(code, v), "app", "s3cret")
		wantError(t, status, body, 400, "invalid_grant")
	})
	t.Run("content type and query", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, e.iss+"/token", strings.NewReader(`{"grant_type":"authorization_code"}`))
		req.Header.Set("Content-Type", "application/json")
		status, body, _ := do(t, req)
		wantError(t, status, body, 400, "invalid_request")
		code, v := fresh()
		req, _ = http.NewRequest(http.MethodPost, e.iss+"/token?code="+code, strings.NewReader(codeForm(code, v).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", "s3cret")
		status, body, _ = do(t, req)
		wantError(t, status, body, 400, "invalid_request")
	})
	t.Run("GET is refused", func(t *testing.T) {
		resp, err := http.Get(e.iss + "/token")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("GET /token: %d", resp.StatusCode)
		}
	})
}

func refreshForm(rt string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
}

func TestRefresh(t *testing.T) {
	t.Run("not rotating", func(t *testing.T) {
		e := start(t, Options{})
		tok := e.tokens(e.config("app", "s3cret", "a", "b"), "alice")
		for range 2 {
			status, body, _ := e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret")
			if status != 200 || body["refresh_token"] != tok.RefreshToken || body["access_token"] == tok.AccessToken {
				t.Fatalf("refresh: %d %v", status, body)
			}
		}
		f := refreshForm(tok.RefreshToken)
		f.Set("scope", "a")
		status, body, _ := e.post("/token", f, "app", "s3cret")
		if status != 200 || body["scope"] != "a" {
			t.Fatalf("narrowed refresh: %d %v", status, body)
		}
		if _, scopes, _ := e.p.VerifyAccessToken(body["access_token"].(string)); !slices.Equal(scopes, []string{"a"}) {
			t.Fatalf("narrowed token scopes %v", scopes)
		}
		f.Set("scope", "a c")
		status, body, _ = e.post("/token", f, "app", "s3cret")
		wantError(t, status, body, 400, "invalid_scope")
		status, body, _ = e.post("/token", refreshForm(tok.RefreshToken), "cli", "")
		wantError(t, status, body, 400, "invalid_grant")
		e.clk.Advance(31 * 24 * time.Hour)
		status, body, _ = e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret")
		wantError(t, status, body, 400, "invalid_grant")
	})
	t.Run("rotating with reuse detection", func(t *testing.T) {
		e := start(t, Options{RotateRefresh: true})
		tok := e.tokens(e.config("app", "s3cret"), "alice")
		status, body, _ := e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret")
		next, _ := body["refresh_token"].(string)
		if status != 200 || next == "" || next == tok.RefreshToken {
			t.Fatalf("rotation: %d %v", status, body)
		}
		at := body["access_token"].(string)
		// The old token again: invalid_grant, and the whole family is revoked.
		status, body, _ = e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret")
		wantError(t, status, body, 400, "invalid_grant")
		if d := body["error_description"].(string); strings.Contains(d, tok.RefreshToken[4:]) {
			t.Fatalf("error description echoes the refresh token: %q", d)
		}
		status, body, _ = e.post("/token", refreshForm(next), "app", "s3cret")
		wantError(t, status, body, 400, "invalid_grant")
		if _, _, ok := e.p.VerifyAccessToken(at); ok {
			t.Fatal("access token of a revoked family verifies")
		}
	})
	t.Run("omit refresh on refresh", func(t *testing.T) {
		e := start(t, Options{OmitRefreshOnRefresh: true, RotateRefresh: true})
		tok := e.tokens(e.config("app", "s3cret"), "alice")
		for range 2 {
			status, body, _ := e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret")
			if _, has := body["refresh_token"]; status != 200 || has {
				t.Fatalf("refresh: %d %v", status, body)
			}
		}
	})
	t.Run("x/oauth2 refreshes an expired token", func(t *testing.T) {
		e := start(t, Options{AccessTTL: time.Minute, RotateRefresh: true})
		cfg := e.config("app", "s3cret")
		tok := e.tokens(cfg, "alice")
		tok.Expiry = time.Now().Add(-time.Second)
		fresh, err := cfg.TokenSource(t.Context(), tok).Token()
		if err != nil || fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == tok.RefreshToken {
			t.Fatalf("refresh via x/oauth2: %v", err)
		}
		if u, _, ok := e.p.VerifyAccessToken(fresh.AccessToken); !ok || u != "alice" {
			t.Fatal("refreshed token does not verify")
		}
	})
}

func TestFaults(t *testing.T) {
	e := start(t, Options{RotateRefresh: true, SlowDelay: 300 * time.Millisecond})
	cfg := e.config("app", "s3cret")
	tok := e.tokens(cfg, "alice")

	e.p.SetFault(FaultInvalidGrant)
	status, body, _ := e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret")
	wantError(t, status, body, 400, "invalid_grant")
	code, v := e.codeFor(cfg, "alice")
	status, body, _ = e.post("/token", codeForm(code, v), "app", "s3cret")
	wantError(t, status, body, 400, "invalid_grant")

	e.p.SetFault(Fault5xx)
	status, body, hdr := e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret")
	wantError(t, status, body, 503, "temporarily_unavailable")
	if hdr.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	status, body, _ = e.post("/revoke", url.Values{"token": {tok.AccessToken}}, "app", "s3cret")
	wantError(t, status, body, 503, "temporarily_unavailable")

	e.p.SetFault(FaultSlow)
	c := &http.Client{Timeout: 50 * time.Millisecond}
	_, err := c.PostForm(e.iss+"/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}, "client_id": {"app"}, "client_secret": {"s3cret"}})
	var ne interface{ Timeout() bool }
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("slow provider: err = %v, want a client timeout", err)
	}
	status, body, _ = e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret") // waits it out
	if status != 200 {
		t.Fatalf("slow refresh: %d %v", status, body)
	}
	rt := body["refresh_token"].(string)

	e.p.SetFault(FaultNoRefreshToken)
	status, body, _ = e.post("/token", refreshForm(rt), "app", "s3cret")
	if _, has := body["refresh_token"]; status != 200 || has {
		t.Fatalf("no-refresh-token refresh: %d %v", status, body)
	}
	code, v = e.codeFor(cfg, "alice")
	status, body, _ = e.post("/token", codeForm(code, v), "app", "s3cret")
	if _, has := body["refresh_token"]; status != 200 || has {
		t.Fatalf("no-refresh-token exchange: %d %v", status, body)
	}

	e.p.SetFault(FaultNone)
	status, body, _ = e.post("/token", refreshForm(rt), "app", "s3cret") // not rotated while the fault was on
	if status != 200 {
		t.Fatalf("after faults: %d %v", status, body)
	}
	if FaultSlow.String() != "slow" || Fault(42).String() != "Fault(42)" {
		t.Fatal("Fault.String")
	}
}

func TestAccessTTLAndRevokeUser(t *testing.T) {
	e := start(t, Options{})
	cfg := e.config("app", "s3cret")
	e.p.SetAccessTTL(2 * time.Second)
	alice := e.tokens(cfg, "alice")
	if got := time.Until(alice.Expiry); got > 3*time.Second {
		t.Fatalf("expires in %v, want about 2s", got)
	}
	bob := e.tokens(cfg, "bob")
	e.clk.Advance(3 * time.Second)
	if _, _, ok := e.p.VerifyAccessToken(alice.AccessToken); ok {
		t.Fatal("expired access token verifies")
	}
	status, body, _ := e.post("/token", refreshForm(alice.RefreshToken), "app", "s3cret")
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, body)
	}
	fresh := body["access_token"].(string)

	e.p.RevokeUser("alice")
	if _, _, ok := e.p.VerifyAccessToken(fresh); ok {
		t.Fatal("access token of a revoked user verifies")
	}
	status, body, _ = e.post("/token", refreshForm(alice.RefreshToken), "app", "s3cret")
	wantError(t, status, body, 400, "invalid_grant")
	status, _, _ = e.post("/token", refreshForm(bob.RefreshToken), "app", "s3cret")
	if status != 200 {
		t.Fatal("bob's grant was revoked with alice's")
	}
	if again := e.tokens(cfg, "alice"); again.AccessToken == "" {
		t.Fatal("alice cannot sign in again")
	}
}

func TestRevocationEndpoint(t *testing.T) {
	e := start(t, Options{Clients: map[string]string{"app": "s3cret", "other": "o"},
		RedirectURIs: map[string][]string{"app": {redirectURI}, "other": {redirectURI}}})
	cfg := e.config("app", "s3cret")
	tok := e.tokens(cfg, "alice")

	status, body, _ := e.post("/revoke", url.Values{"token": {tok.AccessToken}}, "other", "o")
	wantError(t, status, body, 400, "invalid_request")
	status, body, _ = e.post("/revoke", url.Values{"token": {tok.AccessToken}}, "app", "nope")
	wantError(t, status, body, 401, "invalid_client")
	status, body, _ = e.post("/revoke", url.Values{"token": {tok.AccessToken}, "token_type_hint": {"id_token"}}, "app", "s3cret")
	wantError(t, status, body, 400, "unsupported_token_type")
	status, body, _ = e.post("/revoke", url.Values{}, "app", "s3cret")
	wantError(t, status, body, 400, "invalid_request")

	status, _, _ = e.post("/revoke", url.Values{"token": {tok.AccessToken}, "token_type_hint": {"access_token"}}, "app", "s3cret")
	if _, _, ok := e.p.VerifyAccessToken(tok.AccessToken); status != 200 || ok {
		t.Fatalf("revoke access token: %d, still valid %v", status, ok)
	}
	status, _, _ = e.post("/revoke", url.Values{"token": {"unknown"}}, "app", "s3cret")
	if status != 200 {
		t.Fatalf("unknown token: %d, want 200 (RFC 7009 section 2.2)", status)
	}

	tok = e.tokens(cfg, "alice")
	status, _, _ = e.post("/revoke", url.Values{"token": {tok.RefreshToken}}, "app", "s3cret")
	if status != 200 {
		t.Fatalf("revoke refresh token: %d", status)
	}
	status, body, _ = e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret")
	wantError(t, status, body, 400, "invalid_grant")
	if _, _, ok := e.p.VerifyAccessToken(tok.AccessToken); ok {
		t.Fatal("revoking the refresh token left its access token valid")
	}
	if e.p.Requests("/revoke") != 7 {
		t.Fatalf("Requests(/revoke) = %d", e.p.Requests("/revoke"))
	}
}

func TestJWTAccessTokensAndUserinfo(t *testing.T) {
	e := start(t, Options{JWTAccessTokens: true, UserClaims: map[string]map[string]any{"alice": {"org_id": "acme"}}})
	cfg := e.config("app", "s3cret", "repo")
	tok := e.tokens(cfg, "alice", oauth2.SetAuthURLParam("resource", "https://mcp.example.com/mcp"))
	jws, err := jose.ParseSigned(tok.AccessToken, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if jws.Signatures[0].Header.ExtraHeaders["typ"] != "at+jwt" {
		t.Fatalf("typ = %v", jws.Signatures[0].Header.ExtraHeaders["typ"])
	}
	var set jose.JSONWebKeySet
	setJSON := getJSON(t, e.iss+"/jwks")
	if keys, _ := setJSON["keys"].([]any); len(keys) != 1 {
		t.Fatalf("jwks = %v", setJSON)
	}
	set = e.p.JWKS()
	payload, err := jws.Verify(set.Keys[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"aud":"https://mcp.example.com/mcp"`, `"sub":"alice"`, `"scope":"repo"`, `"org_id":"acme"`, `"client_id":"app"`, `"iss":"` + e.iss + `"`} {
		if !strings.Contains(string(payload), want) {
			t.Errorf("access token lacks %s: %s", want, payload)
		}
	}
	if u, _, ok := e.p.VerifyAccessToken(tok.AccessToken); !ok || u != "alice" {
		t.Fatal("JWT access token does not verify at the provider")
	}
	req, _ := http.NewRequest(http.MethodGet, e.iss+"/userinfo", nil)
	status, body, hdr := do(t, req)
	wantError(t, status, body, 401, "invalid_request")
	req.Header.Set("Authorization", "Bearer forged")
	status, body, hdr = do(t, req)
	wantError(t, status, body, 401, "invalid_token")
	if !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate %q", hdr.Get("WWW-Authenticate"))
	}
}

func TestRestartKeepsState(t *testing.T) {
	e := start(t, Options{})
	tok := e.tokens(e.config("app", "s3cret"), "alice")
	e.p.Close()
	if _, err := http.Get(e.iss + "/jwks"); err == nil {
		t.Fatal("closed provider still answers")
	}
	iss, err := e.p.Start()
	if err != nil || iss != e.iss {
		t.Fatalf("restart: %q %v", iss, err)
	}
	if _, err := e.p.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
	status, _, _ := e.post("/token", refreshForm(tok.RefreshToken), "app", "s3cret")
	if status != 200 {
		t.Fatalf("refresh after restart: %d", status)
	}
}
