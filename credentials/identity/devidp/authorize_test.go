package devidp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

func startIdP(t *testing.T, o Options) (*Issuer, string) {
	t.Helper()
	idp, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	u, err := idp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	return idp, u
}

// accessClaims verifies an access token against the issuer's published
// JWKS, as a resource server would, and returns its claims.
func accessClaims(t *testing.T, idp *Issuer, tok string) map[string]any {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	h := jws.Signatures[0].Header
	if h.ExtraHeaders["typ"] != "at+jwt" || h.KeyID != idp.Kid("RS256") {
		t.Fatalf("access token header typ=%v kid=%q", h.ExtraHeaders["typ"], h.KeyID)
	}
	set := idp.JWKS()
	payload, err := jws.Verify(set.Key(h.KeyID)[0].Key)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSignInMetadataForMCPClients(t *testing.T) {
	_, u := startIdP(t, Options{})
	var md map[string]any
	getJSON(t, u+"/.well-known/oauth-authorization-server", &md)
	for k, want := range map[string]any{
		"issuer": u, "authorization_endpoint": u + "/authorize", "token_endpoint": u + "/token",
		"registration_endpoint": u + "/register", "revocation_endpoint": u + "/revoke", "jwks_uri": u + "/jwks",
		"introspection_endpoint": u + "/introspect", "authorization_response_iss_parameter_supported": true,
	} {
		if md[k] != want {
			t.Errorf("%s = %v, want %v", k, md[k], want)
		}
	}
	for k, want := range map[string][]string{
		"code_challenge_methods_supported":      {"S256"},
		"response_types_supported":              {"code"},
		"grant_types_supported":                 {"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported": {"client_secret_basic", "client_secret_post", "none"},
		"scopes_supported":                      {"openid", "profile", "email", "offline_access"},
	} {
		raw, _ := json.Marshal(md[k])
		want, _ := json.Marshal(want)
		if string(raw) != string(want) {
			t.Errorf("%s = %s, want %s", k, raw, want)
		}
	}
	// The Go MCP SDK fetches and validates it the way it does before signing in.
	asm, err := auth.GetAuthServerMetadata(t.Context(), u, http.DefaultClient)
	if err != nil || asm == nil || asm.RegistrationEndpoint != u+"/register" {
		t.Fatalf("MCP SDK metadata: %+v, %v", asm, err)
	}
	var oidcMD map[string]any
	getJSON(t, u+"/.well-known/openid-configuration", &oidcMD)
	if oidcMD["authorization_endpoint"] != u+"/authorize" {
		t.Fatalf("openid-configuration = %v", oidcMD)
	}
}

// TestBrowserLoginWithPreregisteredClient is the connect pages' login: a
// pre-registered client on a loopback redirect, no consent page, an ID
// token verified by go-oidc.
func TestBrowserLoginWithPreregisteredClient(t *testing.T) {
	idp, u := startIdP(t, Options{Clients: map[string]string{"mcpauthz-connect": "cs", "pub": ""}})
	op, err := oidc.NewProvider(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, secret string
		style            oauth2.AuthStyle
	}{
		{"client_secret_basic", "mcpauthz-connect", "cs", oauth2.AuthStyleInHeader},
		{"client_secret_post", "mcpauthz-connect", "cs", oauth2.AuthStyleInParams},
		{"public", "pub", "", oauth2.AuthStyleInParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &oauth2.Config{
				ClientID: tc.id, ClientSecret: tc.secret, Endpoint: op.Endpoint(),
				RedirectURL: "http://127.0.0.1:43210/connect/login/callback", Scopes: []string{oidc.ScopeOpenID, "profile"},
			}
			cfg.Endpoint.AuthStyle = tc.style
			verifier := oauth2.GenerateVerifier()
			before := idp.AuthServer().Requests("/authorize")
			cb, err := oauthtest.Authorize(t.Context(), cfg.AuthCodeURL("st", oidc.Nonce("n1"), oauth2.S256ChallengeOption(verifier)), "carol", "carol")
			if err != nil {
				t.Fatal(err)
			}
			if n := idp.AuthServer().Requests("/authorize") - before; n != 2 {
				t.Fatalf("%d requests to /authorize, want 2 (form, login; no consent for a pre-registered client)", n)
			}
			if cb.Query().Get("iss") != u || cb.Query().Get("state") != "st" {
				t.Fatalf("callback %v", cb)
			}
			tok, err := cfg.Exchange(t.Context(), cb.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := op.Verifier(&oidc.Config{ClientID: tc.id}).Verify(t.Context(), raw)
			if err != nil {
				t.Fatal(err)
			}
			var claims struct {
				Org   string   `json:"org_id"`
				Roles []string `json:"roles"`
			}
			_ = idt.Claims(&claims)
			if idt.Subject != "carol" || idt.Nonce != "n1" || idt.Issuer != u || claims.Org != "acme" || !slices.Equal(claims.Roles, []string{"admin"}) {
				t.Fatalf("id token sub=%q nonce=%q iss=%q claims=%+v", idt.Subject, idt.Nonce, idt.Issuer, claims)
			}
			at := accessClaims(t, idp, tok.AccessToken)
			if at["aud"] != tc.id || at["sub"] != "carol" || at["client_id"] != tc.id || at["org_id"] != "acme" {
				t.Fatalf("access token claims without resource %v", at)
			}
		})
	}
	t.Run("non-loopback redirect must be configured", func(t *testing.T) {
		cfg := &oauth2.Config{ClientID: "pub", Endpoint: op.Endpoint(), RedirectURL: "https://mcpauthz.example.com/connect/login/callback"}
		if _, err := oauthtest.Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice"); err == nil {
			t.Fatal("an unregistered https redirect was accepted")
		}
		_, u := startIdP(t, Options{Clients: map[string]string{"pub": ""},
			ClientRedirectURIs: map[string][]string{"pub": {"https://mcpauthz.example.com/connect/login/callback"}}})
		cfg.Endpoint = oauth2.Endpoint{AuthURL: u + "/authorize"}
		if _, err := oauthtest.Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		cfg := &oauth2.Config{ClientID: "pub", Endpoint: op.Endpoint(), RedirectURL: "http://127.0.0.1:1/cb"}
		_, err := oauthtest.Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "bob")
		if err == nil || !strings.Contains(err.Error(), "Wrong username or password") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestMCPSDKClientSignsIn runs the Go MCP SDK's own authorization code
// handler against the IdP, as an MCP client does on a 401: protected
// resource metadata, authorization server metadata, client registration
// (RFC 7591, or a Client ID Metadata Document), login and consent, code
// exchange with PKCE and resource, then a refresh.
func TestMCPSDKClientSignsIn(t *testing.T) {
	const redirect = "http://127.0.0.1:49152/callback"
	docs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"client_id": "https://" + r.Host + r.URL.Path, "client_name": "sdk doc client", "redirect_uris": []string{redirect},
			"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
		})
	}))
	defer docs.Close()
	for _, tc := range []struct {
		name string
		cfg  auth.AuthorizationCodeHandlerConfig
	}{
		{"dynamic registration", auth.AuthorizationCodeHandlerConfig{
			DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
				RedirectURIs: []string{redirect}, ClientName: "sdk test client",
				GrantTypes: []string{"authorization_code", "refresh_token"}, TokenEndpointAuthMethod: "none",
			}},
		}},
		{"client ID metadata document", auth.AuthorizationCodeHandlerConfig{
			ClientIDMetadataDocumentConfig: &auth.ClientIDMetadataDocumentConfig{URL: docs.URL + "/client.json"},
			RedirectURL:                    redirect,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp, iss := startIdP(t, Options{TokenTTL: time.Minute, ClientMetadataHTTPClient: docs.Client()})
			mux := http.NewServeMux()
			rs := httptest.NewServer(mux)
			defer rs.Close()
			resource := rs.URL + "/mcp"
			mux.Handle("/.well-known/oauth-protected-resource/mcp", auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
				Resource: resource, AuthorizationServers: []string{iss}, ScopesSupported: []string{"docs:read", "docs:write"},
			}))
			var consented bool
			cfg := tc.cfg
			cfg.RequestRefreshToken = true
			cfg.AuthorizationCodeFetcher = func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
				cb, err := oauthtest.Authorize(ctx, args.URL, "bob", "bob")
				if err != nil {
					return nil, err
				}
				consented = idp.AuthServer().Requests("/authorize") == 3 // form, login, consent
				q := cb.Query()
				return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
			}
			h, err := auth.NewAuthorizationCodeHandler(&cfg)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, resource, nil)
			resp := &http.Response{StatusCode: http.StatusUnauthorized, Body: io.NopCloser(strings.NewReader("")), Header: http.Header{
				"Www-Authenticate": {`Bearer resource_metadata="` + rs.URL + `/.well-known/oauth-protected-resource/mcp"`},
			}}
			if err := h.Authorize(t.Context(), req, resp); err != nil {
				t.Fatal(err)
			}
			if !consented {
				t.Fatal("no consent page for a client that registered itself")
			}
			ts, _ := h.TokenSource(t.Context())
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			c := accessClaims(t, idp, tok.AccessToken)
			scopes := strings.Fields(c["scope"].(string))
			slices.Sort(scopes)
			if c["aud"] != resource || c["sub"] != "bob" || !slices.Equal(scopes, []string{"docs:read", "docs:write", "offline_access"}) || c["org_id"] != "acme" || c["iss"] != iss {
				t.Fatalf("access token claims %v", c)
			}
			if tok.RefreshToken == "" {
				t.Fatal("no refresh token")
			}
			// An expired token is refreshed by the client's token source.
			oc := &oauth2.Config{ClientID: c["client_id"].(string), Endpoint: oauth2.Endpoint{TokenURL: iss + "/token", AuthStyle: oauth2.AuthStyleInParams}}
			tok.Expiry = time.Now().Add(-time.Second)
			fresh, err := oc.TokenSource(t.Context(), tok).Token()
			if err != nil || fresh.AccessToken == tok.AccessToken {
				t.Fatalf("refresh: %v", err)
			}
			if c := accessClaims(t, idp, fresh.AccessToken); c["aud"] != resource || c["sub"] != "bob" {
				t.Fatalf("refreshed claims %v", c)
			}
		})
	}
}

func TestSignInOptions(t *testing.T) {
	idp, u := startIdP(t, Options{
		Clients: map[string]string{"app": ""},
		Users: map[string]User{
			"dora": {Password: "pw", Claims: map[string]any{"org_id": "globex", "roles": []string{"editor"}}},
			"eve":  {Password: "pw2"},
		},
		Scopes: []string{"docs:read"},
	})
	cfg := &oauth2.Config{ClientID: "app", RedirectURL: "http://localhost:5000/cb",
		Endpoint: oauth2.Endpoint{AuthURL: u + "/authorize", TokenURL: u + "/token", AuthStyle: oauth2.AuthStyleInParams}}
	login := func(user, pass string, scopes ...string) url.Values {
		cfg.Scopes = scopes
		v := oauth2.GenerateVerifier()
		cb, err := oauthtest.Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v),
			oauth2.SetAuthURLParam("resource", "https://mcp.example.com/docs")), user, pass)
		if err != nil {
			t.Fatal(err)
		}
		q := cb.Query()
		q.Set("verifier", v)
		return q
	}
	q := login("dora", "pw", "docs:read")
	tok, err := cfg.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(q.Get("verifier")))
	if err != nil {
		t.Fatal(err)
	}
	c := accessClaims(t, idp, tok.AccessToken)
	if c["org_id"] != "globex" || c["aud"] != "https://mcp.example.com/docs" || c["scope"] != "docs:read" {
		t.Fatalf("dora's claims %v", c)
	}
	q = login("eve", "pw2")
	tok, err = cfg.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(q.Get("verifier")))
	if err != nil {
		t.Fatal(err)
	}
	if c := accessClaims(t, idp, tok.AccessToken); c["org_id"] != "acme" || c["scope"] != nil {
		t.Fatalf("eve's claims %v (org_id defaults to acme)", c)
	}
	if q := login("dora", "pw", "docs:write"); q.Get("error") != "invalid_scope" {
		t.Fatalf("unsupported scope: %v", q)
	}
	cfg.Scopes = nil
	if _, err := oauthtest.Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice"); err == nil {
		t.Fatal("a default user signed in although Options.Users replaced them")
	}
}

func TestSignInSurvivesRestartAndKeepsMint(t *testing.T) {
	idp, u := startIdP(t, Options{Clients: map[string]string{"app": "s"}})
	cfg := &oauth2.Config{ClientID: "app", ClientSecret: "s", RedirectURL: "http://127.0.0.1:1/cb",
		Endpoint: oauth2.Endpoint{AuthURL: u + "/authorize", TokenURL: u + "/token", AuthStyle: oauth2.AuthStyleInHeader}}
	v := oauth2.GenerateVerifier()
	cb, err := oauthtest.Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), "alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(t.Context(), cb.Query().Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	idp.Close()
	if u2, err := idp.Start(); err != nil || u2 != u {
		t.Fatalf("restart: %q %v", u2, err)
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections() // connections to the stopped server
	tok.Expiry = time.Now().Add(-time.Second)
	if _, err := cfg.TokenSource(t.Context(), tok).Token(); err != nil {
		t.Fatalf("refresh after restart: %v", err)
	}
	// Mint and RotateKey still work beside sign-in; sign-in tokens follow the rotation.
	idp.RotateKey()
	if c := accessClaims(t, idp, idp.MustMint(map[string]any{"sub": "x"})); c["sub"] != "x" {
		t.Fatalf("minted claims %v", c)
	}
	tok.Expiry = time.Now().Add(-time.Second)
	fresh, err := cfg.TokenSource(t.Context(), tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if c := accessClaims(t, idp, fresh.AccessToken); c["sub"] != "alice" {
		t.Fatalf("claims after rotation %v", c)
	}
}
