package oauthtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func registerClient(t *testing.T, iss string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, iss+"/register", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	status, m, _ := do(t, req)
	return status, m
}

func TestDynamicRegistration(t *testing.T) {
	e := start(t, Options{Registration: true, RequireConsent: new(false)})

	t.Run("public client, loopback on any port", func(t *testing.T) {
		status, md := registerClient(t, e.iss, map[string]any{
			"redirect_uris": []string{"http://127.0.0.1:33333/callback"}, "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code", "refresh_token"}, "client_name": "Test <CLI>",
		})
		id, _ := md["client_id"].(string)
		if status != http.StatusCreated || id == "" || md["client_secret"] != nil || md["token_endpoint_auth_method"] != "none" {
			t.Fatalf("register: %d %v", status, md)
		}
		cfg := e.config(id, "")
		cfg.RedirectURL = "http://127.0.0.1:44444/callback" // RFC 8252 section 7.3: the port may differ
		before := e.p.Requests("/authorize")
		if tok := e.tokens(cfg, "alice"); tok.AccessToken == "" {
			t.Fatal("no token")
		}
		if got := e.p.Requests("/authorize") - before; got != 3 {
			t.Fatalf("authorize requests = %d, want 3: a registered client always gets the consent page", got)
		}
		cfg.RedirectURL = "http://127.0.0.1:44444/other"
		if _, err := Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice"); err == nil {
			t.Fatal("an unregistered path was accepted")
		}
	})
	t.Run("confidential client by default", func(t *testing.T) {
		status, md := registerClient(t, e.iss, map[string]any{"redirect_uris": []string{"https://app.example.com/cb", redirectURI}})
		secret, _ := md["client_secret"].(string)
		if status != http.StatusCreated || secret == "" || md["token_endpoint_auth_method"] != "client_secret_basic" || md["client_secret_expires_at"] != float64(0) {
			t.Fatalf("register: %d %v", status, md)
		}
		if tok := e.tokens(e.config(md["client_id"].(string), secret), "bob"); tok.AccessToken == "" {
			t.Fatal("no token")
		}
	})
	for _, tc := range []struct {
		name string
		body string
		code string
	}{
		{"no redirect", `{"token_endpoint_auth_method":"none"}`, "invalid_redirect_uri"},
		{"http non-loopback", `{"redirect_uris":["http://example.com/cb"]}`, "invalid_redirect_uri"},
		{"custom scheme", `{"redirect_uris":["myapp:/cb"]}`, "invalid_redirect_uri"},
		{"fragment", `{"redirect_uris":["https://a.example/cb#x"]}`, "invalid_redirect_uri"},
		{"userinfo", `{"redirect_uris":["https://u:p@a.example/cb"]}`, "invalid_redirect_uri"},
		{"relative", `{"redirect_uris":["/cb"]}`, "invalid_redirect_uri"},
		{"auth method", `{"redirect_uris":["https://a.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, "invalid_client_metadata"},
		{"grant type", `{"redirect_uris":["https://a.example/cb"],"grant_types":["implicit"]}`, "invalid_client_metadata"},
		{"response type", `{"redirect_uris":["https://a.example/cb"],"response_types":["token"]}`, "invalid_client_metadata"},
		{"scope", `{"redirect_uris":["https://a.example/cb"],"scope":"a\"b"}`, "invalid_client_metadata"},
		{"not JSON", `redirect_uris=x`, "invalid_client_metadata"},
		{"long name", `{"redirect_uris":["https://a.example/cb"],"client_name":"` + strings.Repeat("x", 300) + `"}`, "invalid_client_metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.iss+"/register", strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			status, body, _ := do(t, req)
			wantError(t, status, body, http.StatusBadRequest, tc.code)
		})
	}
	t.Run("disabled", func(t *testing.T) {
		e := start(t, Options{})
		resp, err := http.Post(e.iss+"/register", "application/json", strings.NewReader(`{"redirect_uris":["`+redirectURI+`"]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("register without Options.Registration: %d", resp.StatusCode)
		}
	})
}

// TestLoginClientThroughAnApplication drives a whole browser flow: an
// application redirects to the provider, the login client signs in and
// consents, the application's callback exchanges the code and shows a page.
// The application's cookie must survive the trip.
func TestLoginClientThroughAnApplication(t *testing.T) {
	e := start(t, Options{Clients: map[string]string{"app": "s3cret"}, AnyLoopbackRedirect: true})
	verifier := oauth2.GenerateVerifier()
	var cfg *oauth2.Config
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/start":
			http.SetCookie(w, &http.Cookie{Name: "flow", Value: "f1", Path: "/", HttpOnly: true})
			http.Redirect(w, r, cfg.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier)), http.StatusFound)
		case "/callback":
			if ck, err := r.Cookie("flow"); err != nil || ck.Value != "f1" {
				http.Error(w, "flow cookie lost", http.StatusBadRequest)
				return
			}
			if r.URL.Query().Get("error") != "" {
				http.Error(w, "provider said "+r.URL.Query().Get("error"), http.StatusForbidden)
				return
			}
			tok, err := cfg.Exchange(r.Context(), r.URL.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			user, _, _ := e.p.VerifyAccessToken(tok.AccessToken)
			fmt.Fprintf(w, "connected as %s", user)
		}
	}))
	defer app.Close()
	cfg = e.config("app", "s3cret")
	cfg.RedirectURL = app.URL + "/callback"

	for _, tc := range []struct {
		name   string
		c      *http.Client
		status int
		body   string
	}{
		{"allow", LoginClient("bob", "bob"), 200, "connected as bob"},
		{"deny", LoginClient("bob", "bob", Deny()), 403, "provider said access_denied"},
		{"wrong password", LoginClient("bob", "nope"), 401, "Wrong username or password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := tc.c.Get(app.URL + "/start")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.body) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, b, tc.status, tc.body)
			}
		})
	}
}
