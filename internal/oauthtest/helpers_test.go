package oauthtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
	"golang.org/x/oauth2"
)

// redirectURI is where the test client says it listens; nothing does:
// Authorize stops before following the provider's redirect.
const redirectURI = "http://127.0.0.1:9/callback"

type env struct {
	t   *testing.T
	p   *Provider
	iss string
	clk *fakeclock.Clock
}

// start runs a provider with a confidential client "app" (secret "s3cret")
// and a public client "cli", both registered for redirectURI, unless o
// names its own clients.
func start(t *testing.T, o Options) *env {
	t.Helper()
	clk := fakeclock.New(time.Now())
	if o.Now == nil {
		o.Now = clk.Now
	}
	if o.Clients == nil {
		o.Clients = map[string]string{"app": "s3cret", "cli": ""}
		o.RedirectURIs = map[string][]string{"app": {redirectURI}, "cli": {redirectURI}}
	}
	p := New(o)
	iss, err := p.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &env{t: t, p: p, iss: iss, clk: clk}
}

// config is an x/oauth2 client of the provider, the way a real client is built.
func (e *env) config(clientID, secret string, scopes ...string) *oauth2.Config {
	style := oauth2.AuthStyleInHeader
	if secret == "" {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID: clientID, ClientSecret: secret, RedirectURL: redirectURI, Scopes: scopes,
		Endpoint: oauth2.Endpoint{AuthURL: e.iss + "/authorize", TokenURL: e.iss + "/token", AuthStyle: style},
	}
}

// login runs the authorization request of cfg as user (password = user)
// and returns the redirect's query and the PKCE verifier used.
func (e *env) login(cfg *oauth2.Config, user string, opts ...oauth2.AuthCodeOption) (url.Values, string) {
	e.t.Helper()
	verifier := oauth2.GenerateVerifier()
	opts = append(opts, oauth2.S256ChallengeOption(verifier))
	cb, err := Authorize(e.t.Context(), cfg.AuthCodeURL("st-1", opts...), user, user)
	if err != nil {
		e.t.Fatal(err)
	}
	return cb.Query(), verifier
}

// tokens signs user in and exchanges the code.
func (e *env) tokens(cfg *oauth2.Config, user string, opts ...oauth2.AuthCodeOption) *oauth2.Token {
	e.t.Helper()
	q, verifier := e.login(cfg, user, opts...)
	if q.Get("code") == "" {
		e.t.Fatalf("no code in the redirect: %v", q)
	}
	tok, err := cfg.Exchange(e.t.Context(), q.Get("code"), append(opts, oauth2.VerifierOption(verifier))...)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// post sends a form to an endpoint, with basic auth when id != "".
func (e *env) post(path string, form url.Values, id, secret string) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.t.Context(), http.MethodPost, e.iss+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return do(e.t, req)
}

func do(t *testing.T, req *http.Request) (int, map[string]any, http.Header) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %d, body is not JSON: %q", req.Method, req.URL.Path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func getJSON(t *testing.T, u string) map[string]any {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, u, nil)
	code, m, _ := do(t, req)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d", u, code)
	}
	return m
}

// wantError checks an RFC 6749 error answer.
func wantError(t *testing.T, status int, body map[string]any, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus || body["error"] != wantCode {
		t.Fatalf("got %d %v, want %d error=%s", status, body, wantStatus, wantCode)
	}
}

// codeFor signs user in with cfg and returns a fresh code and its verifier.
func (e *env) codeFor(cfg *oauth2.Config, user string) (string, string) {
	e.t.Helper()
	q, v := e.login(cfg, user)
	if q.Get("code") == "" {
		e.t.Fatalf("no code: %v", q)
	}
	return q.Get("code"), v
}

func codeForm(code, verifier string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {redirectURI}}
}
