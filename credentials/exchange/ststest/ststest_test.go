package ststest_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/credentials/exchange/ststest"
	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
)

const secret = "ststest-secret"

func setup(t *testing.T) (*ststest.Server, *devidp.Issuer, *ecdsa.PrivateKey) {
	t.Helper()
	idp, err := devidp.New(devidp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := ststest.New(t, ststest.Options{
		Trusted: []ststest.Trust{{Issuer: idp.URL()}},
		Clients: []ststest.Client{
			{ID: "c", Auth: ststest.AuthPost, Secret: secret},
			{ID: "k", Auth: ststest.AuthPrivateKeyJWT, PublicKey: key.Public()},
		},
		Audiences: []string{"https://mcp.example/"},
		Scopes:    []string{"read"},
	})
	return s, idp, key
}

type answer struct {
	status int
	body   map[string]any
}

func post(t *testing.T, s *ststest.Server, form url.Values) answer {
	t.Helper()
	resp, err := http.PostForm(s.TokenURL(), form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return answer{resp.StatusCode, m}
}

func TestTokenEndpointValidation(t *testing.T) {
	s, idp, _ := setup(t)
	user := idp.MustMint(map[string]any{"sub": "alice", "may_act": map[string]any{"sub": "agent-1"}})
	agent := idp.MustMint(map[string]any{"sub": "agent-1"})
	rogue := idp.MustMint(map[string]any{"sub": "agent-2"})
	ok := func() url.Values {
		return url.Values{
			"grant_type": {ststest.GrantTokenExchange}, "client_id": {"c"}, "client_secret": {secret},
			"subject_token": {user}, "subject_token_type": {ststest.TokenTypeAccess},
			"audience": {"https://mcp.example/"},
		}
	}
	tests := []struct {
		name     string
		mod      func(url.Values)
		status   int
		code     string
		checkTok func(t *testing.T, claims map[string]any)
	}{
		{name: "ok", mod: func(url.Values) {}, status: 200, checkTok: func(t *testing.T, c map[string]any) {
			if c["sub"] != "alice" || c["aud"] != "https://mcp.example/" || c["client_id"] != "c" || c["act"] != nil {
				t.Errorf("claims = %v", c)
			}
		}},
		{name: "actor nests", mod: func(v url.Values) {
			v.Set("actor_token", agent)
			v.Set("actor_token_type", ststest.TokenTypeJWT)
			v.Set("scope", "read")
		}, status: 200, checkTok: func(t *testing.T, c map[string]any) {
			act, _ := c["act"].(map[string]any)
			if act["sub"] != "agent-1" || c["scope"] != "read" {
				t.Errorf("claims = %v", c)
			}
		}},
		{name: "may_act refuses other actor", mod: func(v url.Values) {
			v.Set("actor_token", rogue)
			v.Set("actor_token_type", ststest.TokenTypeAccess)
		}, status: 400, code: "invalid_request"},
		{name: "no grant type", mod: func(v url.Values) { v.Del("grant_type") }, status: 400, code: "invalid_request"},
		{name: "unsupported grant", mod: func(v url.Values) { v.Set("grant_type", "password") }, status: 400, code: "unsupported_grant_type"},
		{name: "no subject token", mod: func(v url.Values) { v.Del("subject_token") }, status: 400, code: "invalid_request"},
		{name: "no subject token type", mod: func(v url.Values) { v.Del("subject_token_type") }, status: 400, code: "invalid_request"},
		{name: "bad subject token type", mod: func(v url.Values) { v.Set("subject_token_type", "access_token") }, status: 400, code: "invalid_request"},
		{name: "actor token without type", mod: func(v url.Values) { v.Set("actor_token", agent) }, status: 400, code: "invalid_request"},
		{name: "actor type without token", mod: func(v url.Values) { v.Set("actor_token_type", ststest.TokenTypeAccess) }, status: 400, code: "invalid_request"},
		{name: "repeated parameter", mod: func(v url.Values) { v.Add("subject_token", user) }, status: 400, code: "invalid_request"},
		{name: "forged subject token", mod: func(v url.Values) { v.Set("subject_token", idp.MintNone(map[string]any{"sub": "alice"})) }, status: 400, code: "invalid_request"},
		{name: "audience not allowed", mod: func(v url.Values) { v.Set("audience", "https://evil/") }, status: 400, code: "invalid_target"},
		{name: "relative resource", mod: func(v url.Values) { v.Set("resource", "/x") }, status: 400, code: "invalid_target"},
		{name: "scope not allowed", mod: func(v url.Values) { v.Set("scope", "read write") }, status: 400, code: "invalid_scope"},
		{name: "bad requested type", mod: func(v url.Values) { v.Set("requested_token_type", "urn:x") }, status: 400, code: "invalid_request"},
		{name: "wrong secret", mod: func(v url.Values) { v.Set("client_secret", "nope") }, status: 401, code: "invalid_client"},
		{name: "unknown client", mod: func(v url.Values) { v.Set("client_id", "zz") }, status: 401, code: "invalid_client"},
		{name: "no client", mod: func(v url.Values) { v.Del("client_id"); v.Del("client_secret") }, status: 401, code: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			form := ok()
			tt.mod(form)
			before := s.Exchanges()
			a := post(t, s, form)
			if a.status != tt.status || (tt.code != "" && a.body["error"] != tt.code) {
				t.Fatalf("answer %d %v, want %d %s", a.status, a.body, tt.status, tt.code)
			}
			if tt.checkTok == nil {
				if s.Exchanges() != before {
					t.Errorf("a failed request counted as exchange")
				}
				return
			}
			if a.body["issued_token_type"] != ststest.TokenTypeAccess || a.body["token_type"] != "Bearer" || a.body["expires_in"] != 300.0 {
				t.Errorf("response = %v", a.body)
			}
			tok, _ := a.body["access_token"].(string)
			verifyIssued(t, s, tok)
			tt.checkTok(t, s.LastIssued())
		})
	}
	if s.Requests() != len(tests) {
		t.Errorf("Requests() = %d, want %d", s.Requests(), len(tests))
	}
	form := ok()
	form.Set("actor_token", agent)
	form.Set("actor_token_type", ststest.TokenTypeAccess)
	post(t, s, form)
	last := s.LastRequest()
	for _, k := range []string{"subject_token", "actor_token", "client_secret"} {
		if last.Get(k) != ststest.Redacted {
			t.Errorf("LastRequest %s = %q, want redacted", k, last.Get(k))
		}
	}
	if last.Get("client_id") != "c" || last.Get("actor_token_type") != ststest.TokenTypeAccess {
		t.Errorf("LastRequest = %v", last)
	}
}

// verifyIssued checks the issued token against the STS's discovery + JWKS.
func verifyIssued(t *testing.T, s *ststest.Server, tok string) {
	t.Helper()
	p, err := oidc.NewProvider(context.Background(), s.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verifier(&oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: []string{"ES256"}}).Verify(context.Background(), tok); err != nil {
		t.Fatalf("issued token does not verify: %v", err)
	}
}

func TestPrivateKeyJWTReplay(t *testing.T) {
	s, idp, key := setup(t)
	user := idp.MustMint(map[string]any{"sub": "alice"})
	assertion := func(mod func(map[string]any)) string {
		c := map[string]any{"iss": "k", "sub": "k", "aud": s.TokenURL(), "jti": "j-1", "exp": time.Now().Add(time.Minute).Unix()}
		if mod != nil {
			mod(c)
		}
		sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(c)
		jws, err := sig.Sign(b)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := jws.CompactSerialize()
		return out
	}
	form := func(a string) url.Values {
		return url.Values{"grant_type": {ststest.GrantTokenExchange}, "client_id": {"k"},
			"client_assertion_type": {ststest.ClientAssertionJWT}, "client_assertion": {a},
			"subject_token": {user}, "subject_token_type": {ststest.TokenTypeAccess}}
	}
	tests := []struct {
		name   string
		a      string
		status int
	}{
		{"first use", assertion(nil), 200},
		{"replayed jti", assertion(nil), 401},
		{"wrong aud", assertion(func(c map[string]any) { c["jti"], c["aud"] = "j-2", "https://other/" }), 401},
		{"iss not client", assertion(func(c map[string]any) { c["jti"], c["iss"] = "j-3", "x" }), 401},
		{"expired", assertion(func(c map[string]any) { c["jti"], c["exp"] = "j-4", time.Now().Add(-time.Minute).Unix() }), 401},
		{"no jti", assertion(func(c map[string]any) { delete(c, "jti") }), 401},
		{"issuer aud accepted", assertion(func(c map[string]any) { c["jti"], c["aud"] = "j-5", s.URL() }), 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := post(t, s, form(tt.a))
			if a.status != tt.status {
				t.Fatalf("status %d %v, want %d", a.status, a.body, tt.status)
			}
			if s.LastClientAuth() != ststest.AuthPrivateKeyJWT {
				t.Errorf("LastClientAuth = %q", s.LastClientAuth())
			}
		})
	}
}

func TestOnBehalfOf(t *testing.T) {
	s, idp, _ := setup(t)
	user := idp.MustMint(map[string]any{"sub": "alice", "oid": "0000-1"})
	base := url.Values{"grant_type": {ststest.GrantJWTBearer}, "client_id": {"c"}, "client_secret": {secret},
		"assertion": {user}, "requested_token_use": {"on_behalf_of"}, "scope": {"read"}}
	a := post(t, s, base)
	if a.status != 400 || a.body["error"] != "invalid_scope" {
		t.Fatalf("unqualified scope: %d %v", a.status, a.body)
	}
	// A server whose scopes are Entra-style.
	s2 := ststest.New(t, ststest.Options{Trusted: []ststest.Trust{{Issuer: idp.URL(), JWKSURL: idp.URL() + "/jwks"}}})
	base.Set("scope", "api://docs/.default")
	a = post(t, s2, base)
	if a.status != 200 || a.body["issued_token_type"] != nil {
		t.Fatalf("obo: %d %v", a.status, a.body)
	}
	if c := s2.LastIssued(); c["aud"] != "api://docs" || c["sub"] != "alice" || c["oid"] != "0000-1" || c["azp"] != "c" {
		t.Fatalf("claims = %v", c)
	}
	base.Set("requested_token_use", "other")
	if a = post(t, s2, base); a.status != 400 || a.body["error"] != "invalid_request" {
		t.Fatalf("requested_token_use: %d %v", a.status, a.body)
	}
	base.Set("requested_token_use", "on_behalf_of")
	base.Set("scope", "api://a/x api://b/y")
	if a = post(t, s2, base); a.status != 400 || a.body["error"] != "invalid_scope" {
		t.Fatalf("two resources: %d %v", a.status, a.body)
	}
}

func TestFaultsAndDiscovery(t *testing.T) {
	s, _, _ := setup(t)
	resp, err := http.Get(s.URL() + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if d["token_endpoint"] != s.TokenURL() || d["issuer"] != s.URL() || d["jwks_uri"] != s.JWKSURL() {
		t.Fatalf("discovery = %v", d)
	}
	s.SetFault(ststest.Fault{Status: 503})
	if a := post(t, s, url.Values{}); a.status != 503 {
		t.Fatalf("forced 503: %d", a.status)
	}
	s.SetFault(ststest.Fault{Error: "invalid_target", Description: "nope"})
	if a := post(t, s, url.Values{}); a.status != 400 || a.body["error"] != "invalid_target" || a.body["error_description"] != "nope" {
		t.Fatalf("forced error: %d %v", a.status, a.body)
	}
	s.SetFault(ststest.Fault{})
	resp, err = http.Get(s.TokenURL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /token = %d", resp.StatusCode)
	}
	r, _ := http.NewRequest(http.MethodPost, s.TokenURL(), strings.NewReader(`{"grant_type":"x"}`))
	r.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("JSON body = %d", resp.StatusCode)
	}
}
