package oauthtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"
)

// docServer serves Client ID Metadata Documents over TLS: path -> body
// (a string, or a func building it from the server URL).
func docServer(t *testing.T, docs map[string]func(base string) any) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	var ts *httptest.Server
	ts = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		f, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		switch v := f(ts.URL).(type) {
		case string:
			if strings.HasPrefix(v, "redirect:") {
				http.Redirect(w, r, strings.TrimPrefix(v, "redirect:"), http.StatusFound)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(v))
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		}
	}))
	t.Cleanup(ts.Close)
	return ts, &hits
}

func doc(path string, edit func(map[string]any)) func(string) any {
	return func(base string) any {
		d := map[string]any{
			"client_id": base + path, "client_name": "Doc Client", "redirect_uris": []string{redirectURI},
			"grant_types": []string{"authorization_code", "refresh_token"}, "token_endpoint_auth_method": "none",
		}
		if edit != nil {
			edit(d)
		}
		return d
	}
}

func TestClientIDMetadataDocuments(t *testing.T) {
	ts, hits := docServer(t, map[string]func(string) any{
		"/good.json":     doc("/good.json", nil),
		"/other-id.json": doc("/other-id.json", func(d map[string]any) { d["client_id"] = "https://elsewhere.example/c.json" }),
		"/secret.json":   doc("/secret.json", func(d map[string]any) { d["client_secret"] = "x" }),
		"/basic.json":    doc("/basic.json", func(d map[string]any) { d["token_endpoint_auth_method"] = "client_secret_basic" }),
		"/http.json":     doc("/http.json", func(d map[string]any) { d["redirect_uris"] = []string{"http://example.com/cb"} }),
		"/no-redirects":  doc("/no-redirects", func(d map[string]any) { delete(d, "redirect_uris") }),
		"/not-json.json": func(string) any { return "<html>" },
		"/large.json":    doc("/large.json", func(d map[string]any) { d["client_uri"] = strings.Repeat("x", 20<<10) }),
		"/redirect.json": func(base string) any { return "redirect:" + base + "/good.json" },
	})
	e := start(t, Options{ClientIDMetadataDocuments: true, MetadataHTTPClient: ts.Client(), RequireConsent: new(false)})
	if md := getJSON(t, e.iss+"/.well-known/oauth-authorization-server"); md["client_id_metadata_document_supported"] != true {
		t.Fatalf("metadata lacks client_id_metadata_document_supported: %v", md)
	}

	t.Run("sign in with a document", func(t *testing.T) {
		id := ts.URL + "/good.json"
		tok := e.tokens(e.config(id, ""), "alice")
		if u, _, ok := e.p.VerifyAccessToken(tok.AccessToken); !ok || u != "alice" {
			t.Fatal("token does not verify")
		}
		if e.p.Requests("/authorize") != 3 {
			t.Fatalf("authorize requests %d, want 3: a document client always gets the consent page", e.p.Requests("/authorize"))
		}
		if hits.Load() != 1 {
			t.Fatalf("document fetched %d times, want 1 (cached)", hits.Load())
		}
		cfg := e.config(id, "")
		cfg.RedirectURL = "http://127.0.0.1:9/elsewhere"
		if _, err := Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice"); err == nil {
			t.Fatal("a redirect URI outside the document was accepted")
		}
	})
	for _, tc := range []struct{ path, want string }{
		{"/other-id.json", "differs from its URL"},
		{"/secret.json", "client_secret"},
		{"/basic.json", "only token_endpoint_auth_method none"},
		{"/http.json", "redirect_uris"},
		{"/no-redirects", "redirect_uris is required"},
		{"/not-json.json", "not a JSON object"},
		{"/large.json", "too large"},
		{"/redirect.json", "redirects are not followed"},
		{"/missing.json", "answered 404"},
		{"/", "must have a path"},
		{"/a/../good.json", "dot segments"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			cfg := e.config(ts.URL+tc.path, "")
			_, err := Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice")
			if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a 400 page saying %q", err, tc.want)
			}
		})
	}
	t.Run("default client refuses non-public addresses", func(t *testing.T) {
		e := start(t, Options{ClientIDMetadataDocuments: true})
		cfg := e.config(ts.URL+"/good.json", "")
		_, err := Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice")
		if err == nil || !strings.Contains(err.Error(), "non-public address") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		e := start(t, Options{MetadataHTTPClient: ts.Client()})
		cfg := e.config(ts.URL+"/good.json", "")
		if _, err := Authorize(t.Context(), cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), "alice", "alice"); err == nil {
			t.Fatal("a document client_id was accepted with ClientIDMetadataDocuments off")
		}
	})
}

func TestIsPublic(t *testing.T) {
	for addr, want := range map[string]bool{
		"8.8.8.8": true, "2606:4700::1111": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "192.168.0.1": false, "172.16.0.1": false,
		"169.254.169.254": false, "100.64.0.1": false, "0.0.0.0": false, "0.1.2.3": false, "fd00::1": false,
		"fe80::1": false, "224.0.0.1": false, "::": false,
	} {
		if got := isPublic(netip.MustParseAddr(addr).Unmap()); got != want {
			t.Errorf("isPublic(%s) = %v, want %v", addr, got, want)
		}
	}
	if err := refuseNonPublic("tcp", "[::ffff:127.0.0.1]:443", nil); err == nil {
		t.Error("an IPv4-mapped loopback address was allowed")
	}
}
