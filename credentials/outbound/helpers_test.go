package outbound

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
)

const (
	testClientID     = "mcpauthz-client"
	testClientSecret = "cs_TOPSECRET_42"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock = fakeclock.Clock

func newFakeClock() *fakeClock { return fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// tokenServer is an RFC 6749 section 4.4 token endpoint that checks each
// request and counts hits.
type tokenServer struct {
	t   testing.TB
	srv *httptest.Server

	authStyle    string // "basic" or "post"
	wantScope    string // "" = scope must be absent
	wantAudience string // "" = audience must be absent
	wantResource string // "" = resource must be absent
	expiresIn    int
	grantedScope string

	hits atomic.Int32
	// gate, when non-nil, is waited on before answering.
	gate chan struct{}
	// arrived, when non-nil, receives (without blocking) on each request.
	arrived chan struct{}
	// stop is closed at test cleanup to release blocked handlers.
	stop chan struct{}
	// respond, when set, replaces the success response.
	respond func(w http.ResponseWriter, r *http.Request)
}

func newTokenServer(t testing.TB) *tokenServer {
	ts := &tokenServer{t: t, authStyle: "basic", expiresIn: 3600, stop: make(chan struct{})}
	ts.srv = httptest.NewServer(http.HandlerFunc(ts.handle))
	t.Cleanup(ts.srv.Close)
	t.Cleanup(func() { close(ts.stop) }) // runs before srv.Close
	return ts
}

func (ts *tokenServer) url() string { return ts.srv.URL + "/oauth2/token" }

func (ts *tokenServer) handle(w http.ResponseWriter, r *http.Request) {
	n := ts.hits.Add(1)
	if ts.arrived != nil {
		select {
		case ts.arrived <- struct{}{}:
		default:
		}
	}
	if ts.gate != nil {
		select {
		case <-ts.gate:
		case <-r.Context().Done():
			return
		case <-ts.stop:
			return
		}
	}
	if ts.respond != nil {
		ts.respond(w, r)
		return
	}
	fail := func(status int, code, format string, args ...any) {
		ts.t.Errorf("token endpoint: "+format, args...)
		writeJSON(w, status, map[string]any{"error": code})
	}
	if r.Method != http.MethodPost || r.URL.Path != "/oauth2/token" {
		fail(400, "invalid_request", "got %s %s", r.Method, r.URL.Path)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		fail(400, "invalid_request", "content-type %q", ct)
		return
	}
	if err := r.ParseForm(); err != nil {
		fail(400, "invalid_request", "parse form: %v", err)
		return
	}
	f := r.PostForm
	if got := f.Get("grant_type"); got != "client_credentials" {
		fail(400, "unsupported_grant_type", "grant_type %q", got)
		return
	}
	var id, sec string
	switch ts.authStyle {
	case "basic":
		u, p, ok := r.BasicAuth()
		if !ok || f.Has("client_secret") {
			fail(401, "invalid_client", "want HTTP Basic only (basic=%v, form secret=%v)", ok, f.Has("client_secret"))
			return
		}
		// RFC 6749 2.3.1: form-urlencoded before Basic encoding.
		id, _ = url.QueryUnescape(u)
		sec, _ = url.QueryUnescape(p)
	case "post":
		if r.Header.Get("Authorization") != "" {
			fail(401, "invalid_client", "want client_secret_post, got an Authorization header")
			return
		}
		id, sec = f.Get("client_id"), f.Get("client_secret")
	}
	if id != testClientID || sec != testClientSecret {
		fail(401, "invalid_client", "wrong client credentials (id %q)", id)
		return
	}
	for param, want := range map[string]string{"scope": ts.wantScope, "audience": ts.wantAudience, "resource": ts.wantResource} {
		if got := f.Get(param); got != want || (want == "" && f.Has(param)) {
			fail(400, "invalid_request", "%s = %q, want %q", param, got, want)
			return
		}
	}
	resp := map[string]any{
		"access_token": fmt.Sprintf("tok-%d", n),
		"token_type":   "Bearer",
		"expires_in":   ts.expiresIn,
	}
	if ts.grantedScope != "" {
		resp["scope"] = ts.grantedScope
	}
	writeJSON(w, 200, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// assertNoSecret fails if s contains any of the secrets.
func assertNoSecret(t *testing.T, where, s string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(s, sec) {
			t.Errorf("%s leaks secret %q: %s", where, sec, s)
		}
	}
}
