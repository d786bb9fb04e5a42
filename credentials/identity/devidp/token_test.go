package devidp

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// devTokenServer serves the issuer's Handler plus the mint endpoint at
// /dev/token, with the issuer URL fixed to the test server's URL.
func devTokenServer(t *testing.T, o DevTokenOptions) (*Issuer, *httptest.Server) {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	idp, err := New(Options{IssuerURL: srv.URL, TokenTTL: 30 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/", idp.Handler())
	mux.Handle("/dev/token", idp.DevTokenHandler(o))
	return idp, srv
}

func postForm(t *testing.T, u string, form string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(u, "application/x-www-form-urlencoded", strings.NewReader(form))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// verifyWithJWKS checks tok's signature against the JWKS served over HTTP
// and returns its claims.
func verifyWithJWKS(t *testing.T, base, tok string) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	getJSON(t, base+"/jwks", &set)
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	if typ := jws.Signatures[0].Protected.ExtraHeaders["typ"]; typ != "at+jwt" {
		t.Errorf("typ = %v, want at+jwt", typ)
	}
	keys := set.Key(jws.Signatures[0].Protected.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in JWKS", jws.Signatures[0].Protected.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("verify against JWKS: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func TestDevTokenHandlerMintsVerifiableTokens(t *testing.T) {
	tests := []struct {
		name       string
		defaultAud string
		form       url.Values
		want       map[string]any // claims that must be present with these values
		absent     []string
	}{
		{
			name:   "human with roles and org",
			form:   url.Values{"sub": {"alice"}, "roles": {"viewer, editor ,"}, "org": {"acme"}, "aud": {"http://127.0.0.1:10000/docs/mcp"}, "scope": {" docs:read   docs:write "}},
			want:   map[string]any{"sub": "alice", "roles": []any{"viewer", "editor"}, "org_id": "acme", "aud": "http://127.0.0.1:10000/docs/mcp", "scope": "docs:read docs:write"},
			absent: []string{"act", "client_id"},
		},
		{
			name:       "agent for a user, default audience",
			defaultAud: "http://mcp.example/docs/mcp",
			form:       url.Values{"sub": {"bob"}, "act": {"assistant"}, "client_id": {"assistant"}},
			want:       map[string]any{"sub": "bob", "act": map[string]any{"sub": "assistant"}, "client_id": "assistant", "aud": "http://mcp.example/docs/mcp"},
			absent:     []string{"roles", "org_id", "scope"},
		},
		{
			name:       "explicit aud wins over the default",
			defaultAud: "http://default/mcp",
			form:       url.Values{"sub": {"batch-bot"}, "client_id": {"batch-bot"}, "aud": {"http://other/mcp"}},
			want:       map[string]any{"sub": "batch-bot", "client_id": "batch-bot", "aud": "http://other/mcp"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp, srv := devTokenServer(t, DevTokenOptions{DefaultAudience: tt.defaultAud})
			status, hdr, body := postForm(t, srv.URL+"/dev/token", tt.form.Encode())
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			if cc := hdr.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			var resp DevTokenResponse
			if err := json.Unmarshal(body, &resp); err != nil {
				t.Fatal(err)
			}
			if resp.TokenType != "Bearer" || resp.ExpiresIn != 1800 || resp.AccessToken == "" {
				t.Fatalf("response = type %q expires_in %d token %d bytes", resp.TokenType, resp.ExpiresIn, len(resp.AccessToken))
			}
			claims := verifyWithJWKS(t, srv.URL, resp.AccessToken)
			for k, v := range tt.want {
				if !reflect.DeepEqual(claims[k], v) {
					t.Errorf("claim %s = %#v, want %#v", k, claims[k], v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := claims[k]; ok {
					t.Errorf("claim %s present: %#v", k, claims[k])
				}
			}
			if claims["iss"] != idp.URL() {
				t.Errorf("iss = %v, want %s", claims["iss"], idp.URL())
			}
			iat, _ := claims["iat"].(float64)
			exp, _ := claims["exp"].(float64)
			if exp-iat != 1800 {
				t.Errorf("exp-iat = %v, want 1800", exp-iat)
			}
			if jti, _ := claims["jti"].(string); len(jti) != 32 {
				t.Errorf("jti = %q", jti)
			}
		})
	}
}

func TestDevTokenHandlerRejectsBadInput(t *testing.T) {
	_, srv := devTokenServer(t, DevTokenOptions{})
	_, srvDefault := devTokenServer(t, DevTokenOptions{DefaultAudience: "http://a/mcp"})
	tests := []struct {
		name     string
		base     string
		method   string
		ctype    string
		body     string
		status   int
		descPart string
	}{
		{"missing sub", srvDefault.URL, "POST", "", "roles=viewer", 400, "sub is required"},
		{"blank sub", srvDefault.URL, "POST", "", "sub=+++", 400, "sub is required"},
		{"missing aud without default", srv.URL, "POST", "", "sub=alice", 400, "aud is required"},
		{"unknown field", srvDefault.URL, "POST", "", "sub=alice&role=admin", 400, `unknown field "role"`},
		{"duplicate field", srvDefault.URL, "POST", "", "sub=alice&sub=root", 400, "sub given more than once"},
		{"empty roles", srvDefault.URL, "POST", "", "sub=alice&roles=,,", 400, "roles must list"},
		{"empty org", srvDefault.URL, "POST", "", "sub=alice&org=", 400, "org must not be empty"},
		{"act equals sub", srvDefault.URL, "POST", "", "sub=alice&act=alice", 400, "act must differ"},
		{"control characters", srvDefault.URL, "POST", "", "sub=al%0Aice", 400, "control characters"},
		{"field too long", srvDefault.URL, "POST", "", "sub=" + strings.Repeat("a", 1025), 400, "longer than 1024"},
		{"malformed form", srvDefault.URL, "POST", "", "sub=%zz", 400, "malformed form"},
		{"json body", srvDefault.URL, "POST", "application/json", `{"sub":"alice"}`, 400, "content type"},
		{"oversized body", srvDefault.URL, "POST", "", "sub=alice&scope=" + strings.Repeat("x", MaxDevTokenForm), 413, "larger than"},
		{"GET", srvDefault.URL, "GET", "", "", 405, "only POST"},
		{"query string is not read", srvDefault.URL, "POST", "", "", 400, "sub is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := tt.base + "/dev/token"
			if tt.name == "query string is not read" {
				target += "?sub=alice"
			}
			req, err := http.NewRequest(tt.method, target, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			ct := tt.ctype
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			req.Header.Set("Content-Type", ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			var e devTokenError
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("error body is not JSON: %v", err)
			}
			if e.Error != "invalid_request" || !strings.Contains(e.Description, tt.descPart) {
				t.Errorf("error = %+v, want invalid_request containing %q", e, tt.descPart)
			}
			if strings.Contains(e.Description, "root") || strings.Contains(e.Description, "xxxxxxxx") {
				t.Errorf("error echoes a field value: %q", e.Description)
			}
			if tt.method == "GET" && resp.Header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q", resp.Header.Get("Allow"))
			}
		})
	}
}
