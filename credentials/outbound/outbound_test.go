package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

func ref(env string) *secret.Ref { return &secret.Ref{Env: env} }

func ccConfig(ts *tokenServer, envName string) Config {
	return Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{
		TokenURL:     ts.url(),
		ClientID:     testClientID,
		ClientSecret: ref(envName),
	}}
}

func mustNew(t *testing.T, cfg Config, opts Options) Provider {
	t.Helper()
	p, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func call(t *testing.T, p Provider) *Credential {
	t.Helper()
	c, err := p.Credential(context.Background(), &Request{ServerID: "srv"})
	if err != nil {
		t.Fatalf("Credential: %v", err)
	}
	return c
}

func headerMap(c *Credential) map[string]string {
	m := map[string]string{}
	for _, h := range c.Headers {
		m[h.Name] = h.Value
	}
	return m
}

func TestPublic(t *testing.T) {
	p := mustNew(t, Config{Mode: ModePublic}, Options{})
	c := call(t, p)
	if c.Mode != ModePublic || len(c.Headers) != 0 || c.Subject != "" || !c.ExpiresAt.IsZero() {
		t.Fatalf("public credential = %#v", c)
	}
}

func TestStatic(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_API_KEY", "ak_TOPSECRET_1")
	file := filepath.Join(t.TempDir(), "tenant")
	if err := os.WriteFile(file, []byte("tenant-7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Mode: ModeStatic, Static: &StaticConfig{Headers: []StaticHeader{
		{Name: "X-API-Key", Value: secret.Ref{Env: "OUTBOUND_TEST_API_KEY"}},
		{Name: "X-Tenant-Id", Value: secret.Ref{File: file}},
		{Name: "Authorization", Value: secret.Ref{Env: "OUTBOUND_TEST_API_KEY"}, Prefix: "Bearer "},
	}}}
	p := mustNew(t, cfg, Options{})
	c := call(t, p)
	want := []Header{
		{Name: "x-api-key", Value: "ak_TOPSECRET_1"},
		{Name: "x-tenant-id", Value: "tenant-7"},
		{Name: "authorization", Value: "Bearer ak_TOPSECRET_1"},
	}
	if c.Mode != ModeStatic || len(c.Headers) != len(want) {
		t.Fatalf("credential = %v", c)
	}
	for i := range want {
		if c.Headers[i] != want[i] {
			t.Errorf("header %d = %q=%q, want %q=%q", i, c.Headers[i].Name, c.Headers[i].Value, want[i].Name, want[i].Value)
		}
	}
	if c2 := call(t, p); c2 != c {
		t.Error("static provider did not return the pre-built credential")
	}
}

func TestNewResolveErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("line1_TOPSECRET\nline2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	padded := filepath.Join(dir, "padded")
	if err := os.WriteFile(padded, []byte(" pad_TOPSECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OUTBOUND_TEST_SET", "val_TOPSECRET")
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{
			name: "static env unset",
			cfg: Config{Mode: ModeStatic, Static: &StaticConfig{Headers: []StaticHeader{
				{Name: "X-API-Key", Value: secret.Ref{Env: "OUTBOUND_TEST_UNSET"}}}}},
			want: []string{"outbound: static.headers[0].value", `env var "OUTBOUND_TEST_UNSET" is not set`},
		},
		{
			name: "static multi-line secret",
			cfg: Config{Mode: ModeStatic, Static: &StaticConfig{Headers: []StaticHeader{
				{Name: "X-API-Key", Value: secret.Ref{Env: "OUTBOUND_TEST_SET"}},
				{Name: "X-Other", Value: secret.Ref{File: bad}}}}},
			want: []string{"static.headers[1].value", "file:" + bad, "not allowed in a header value"},
		},
		{
			name: "service account secret padded",
			cfg: Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{
				Secret: &secret.Ref{File: padded}}},
			want: []string{"service_account.secret", "leading or trailing whitespace"},
		},
		{
			name: "client secret missing file",
			cfg: Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{
				TokenURL: "https://idp.example.com/token", ClientID: "c",
				ClientSecret: &secret.Ref{File: filepath.Join(dir, "nope")}}},
			want: []string{"service_account.client_secret", filepath.Join(dir, "nope")},
		},
		{
			name: "invalid config",
			cfg:  Config{Mode: ModeDelegated},
			want: []string{"outbound: invalid config", `delegated: required with mode delegated`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(context.Background(), tt.cfg, Options{})
			if err == nil {
				t.Fatalf("New succeeded: %v", p)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			assertNoSecret(t, "error", err.Error(), "TOPSECRET")
		})
	}
}

func TestServiceAccountStaticSecret(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_SA", "sa_TOPSECRET")
	tests := []struct {
		header   string
		wantName string
		wantVal  string
	}{
		{"", "authorization", "Bearer sa_TOPSECRET"},
		{"authorization", "authorization", "Bearer sa_TOPSECRET"},
		{"X-Api-Key", "x-api-key", "sa_TOPSECRET"},
	}
	for _, tt := range tests {
		t.Run("header="+tt.header, func(t *testing.T) {
			p := mustNew(t, Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{
				Header: tt.header, Secret: ref("OUTBOUND_TEST_SA")}}, Options{})
			c := call(t, p)
			if c.Mode != ModeServiceAccount || len(c.Headers) != 1 {
				t.Fatalf("credential = %v", c)
			}
			if h := c.Headers[0]; h.Name != tt.wantName || h.Value != tt.wantVal {
				t.Fatalf("header = %q: %q, want %q: %q", h.Name, h.Value, tt.wantName, tt.wantVal)
			}
		})
	}
}

func TestClientCredentials(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	tests := []struct {
		name       string
		authStyle  string
		header     string
		scopes     []string
		audience   string
		granted    string
		wantAud    string
		wantRes    string
		wantName   string
		wantPrefix string
		wantScopes []string
	}{
		{name: "basic defaults", wantName: "authorization", wantPrefix: "Bearer "},
		{name: "explicit basic with scopes", authStyle: "basic", scopes: []string{"repo.read", "repo.write"},
			wantName: "authorization", wantPrefix: "Bearer ", wantScopes: []string{"repo.read", "repo.write"}},
		{name: "post with url audience", authStyle: "post", audience: "https://mcp.example.com/",
			wantAud: "https://mcp.example.com/", wantRes: "https://mcp.example.com/", wantName: "authorization", wantPrefix: "Bearer "},
		{name: "non-uri audience not sent as resource", audience: "upstream-api", wantAud: "upstream-api",
			wantName: "authorization", wantPrefix: "Bearer "},
		{name: "granted scope wins", scopes: []string{"a", "b"}, granted: "a",
			wantName: "authorization", wantPrefix: "Bearer ", wantScopes: []string{"a"}},
		{name: "custom header sends raw token", header: "X-Upstream-Token",
			wantName: "x-upstream-token", wantPrefix: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t)
			if tt.authStyle != "" {
				ts.authStyle = tt.authStyle
			}
			ts.wantScope = strings.Join(tt.scopes, " ")
			ts.wantAudience, ts.wantResource, ts.grantedScope = tt.wantAud, tt.wantRes, tt.granted
			clk := newFakeClock()
			cfg := ccConfig(ts, "OUTBOUND_TEST_CS")
			sa := cfg.ServiceAccount
			sa.AuthStyle, sa.Header, sa.Scopes, sa.Audience = tt.authStyle, tt.header, tt.scopes, tt.audience
			p := mustNew(t, cfg, Options{Now: clk.Now})
			c := call(t, p)
			if len(c.Headers) != 1 || c.Headers[0].Name != tt.wantName || c.Headers[0].Value != tt.wantPrefix+"tok-1" {
				t.Fatalf("headers = %q", headerMap(c))
			}
			if c.Mode != ModeServiceAccount || c.Subject != testClientID || c.Audience != tt.audience {
				t.Errorf("credential = %v", c)
			}
			if !c.ExpiresAt.Equal(clk.Now().Add(time.Hour)) {
				t.Errorf("ExpiresAt = %v, want %v", c.ExpiresAt, clk.Now().Add(time.Hour))
			}
			if fmt.Sprint(c.Scopes) != fmt.Sprint(tt.wantScopes) {
				t.Errorf("Scopes = %q, want %q", c.Scopes, tt.wantScopes)
			}
			if n := ts.hits.Load(); n != 1 {
				t.Errorf("token endpoint hits = %d, want 1", n)
			}
		})
	}
}

func TestClientCredentialsFormEncodedResponse(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	ts := newTokenServer(t)
	ts.respond = func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		fmt.Fprint(w, "access_token=form-tok&token_type=bearer&expires_in=600&scope=x+y")
	}
	clk := newFakeClock()
	c := call(t, mustNew(t, ccConfig(ts, "OUTBOUND_TEST_CS"), Options{Now: clk.Now}))
	if got := headerMap(c)["authorization"]; got != "Bearer form-tok" {
		t.Errorf("authorization = %q", got)
	}
	if want := clk.Now().Add(600 * time.Second); !c.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", c.ExpiresAt, want)
	}
	if fmt.Sprint(c.Scopes) != "[x y]" {
		t.Errorf("Scopes = %q", c.Scopes)
	}
}

func TestClientCredentialsCached(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	ts := newTokenServer(t)
	clk := newFakeClock()
	p := mustNew(t, ccConfig(ts, "OUTBOUND_TEST_CS"), Options{Now: clk.Now})
	c1 := call(t, p)
	clk.Advance(30 * time.Minute) // well before the refresh window (48m)
	c2 := call(t, p)
	if c1 != c2 || ts.hits.Load() != 1 {
		t.Fatalf("second call: same=%v hits=%d, want same credential and 1 hit", c1 == c2, ts.hits.Load())
	}
}

func TestClientCredentialsRefresh(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	tests := []struct {
		name          string
		refreshBefore time.Duration
		expiresIn     int
		beforeWindow  time.Duration // still cached, no refresh
		inWindow      time.Duration // background refresh starts
	}{
		// 1h token: 20% = 12m > 60s, so refresh from 48m.
		{name: "20 percent of lifetime", expiresIn: 3600, beforeWindow: 47 * time.Minute, inWindow: 49 * time.Minute},
		// 4m token: 20% = 48s < 60s, so refresh from 3m.
		{name: "60s floor", expiresIn: 240, beforeWindow: 2*time.Minute + 50*time.Second, inWindow: 3*time.Minute + time.Second},
		// configured 30m beats 20% (12m).
		{name: "configured refresh_before", refreshBefore: 30 * time.Minute, expiresIn: 3600, beforeWindow: 29 * time.Minute, inWindow: 31 * time.Minute},
		// 60s token: refresh_before capped at half-life.
		{name: "half-life cap", expiresIn: 60, beforeWindow: 29 * time.Second, inWindow: 31 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t)
			ts.expiresIn = tt.expiresIn
			clk := newFakeClock()
			cfg := ccConfig(ts, "OUTBOUND_TEST_CS")
			cfg.ServiceAccount.RefreshBefore = tt.refreshBefore
			p := mustNew(t, cfg, Options{Now: clk.Now})
			refreshed := make(chan struct{}, 1)
			p.(*clientCredentialsProvider).afterRefresh = func() { refreshed <- struct{}{} }
			t0 := clk.Now()

			c1 := call(t, p)
			clk.Advance(tt.beforeWindow)
			if c := call(t, p); c != c1 || ts.hits.Load() != 1 {
				t.Fatalf("before window: hits=%d", ts.hits.Load())
			}
			clk.Advance(tt.inWindow - tt.beforeWindow)
			// In the window the current token is still served while one
			// background refresh runs.
			if c := call(t, p); c != c1 {
				t.Fatalf("in window: got %q, want the current token", headerMap(c))
			}
			<-refreshed
			c2 := call(t, p)
			if got := headerMap(c2)["authorization"]; got != "Bearer tok-2" {
				t.Fatalf("after refresh: authorization = %q, want Bearer tok-2", got)
			}
			if want := t0.Add(tt.inWindow).Add(time.Duration(tt.expiresIn) * time.Second); !c2.ExpiresAt.Equal(want) {
				t.Errorf("refreshed ExpiresAt = %v, want %v", c2.ExpiresAt, want)
			}
			if n := ts.hits.Load(); n != 2 {
				t.Fatalf("hits = %d, want 2", n)
			}
		})
	}
}

func TestClientCredentialsExpiredFetchesSynchronously(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	ts := newTokenServer(t)
	clk := newFakeClock()
	p := mustNew(t, ccConfig(ts, "OUTBOUND_TEST_CS"), Options{Now: clk.Now})
	call(t, p)
	clk.Advance(time.Hour - 5*time.Second) // inside the 10s expiry skew: unusable
	if got := headerMap(call(t, p))["authorization"]; got != "Bearer tok-2" {
		t.Fatalf("authorization = %q, want Bearer tok-2", got)
	}
	if n := ts.hits.Load(); n != 2 {
		t.Fatalf("hits = %d, want 2", n)
	}
}

func TestClientCredentialsRefreshFailureKeepsToken(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	ts := newTokenServer(t)
	clk := newFakeClock()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := mustNew(t, ccConfig(ts, "OUTBOUND_TEST_CS"), Options{Now: clk.Now, Logger: logger})
	refreshed := make(chan struct{}, 1)
	p.(*clientCredentialsProvider).afterRefresh = func() { refreshed <- struct{}{} }
	c1 := call(t, p)

	ts.respond = func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 500, map[string]string{"error": "server_error", "error_description": testClientSecret})
	}
	clk.Advance(50 * time.Minute)
	if c := call(t, p); c != c1 {
		t.Fatal("in window: current token not served")
	}
	<-refreshed
	// The failed refresh backs off: calls within 5s start no new refresh.
	clk.Advance(time.Second)
	if c := call(t, p); c != c1 {
		t.Fatal("after failed refresh: current token not served")
	}
	if n := ts.hits.Load(); n != 2 {
		t.Fatalf("hits = %d, want 2 (initial + one failed refresh)", n)
	}
	if !strings.Contains(logs.String(), "background token refresh failed") {
		t.Errorf("refresh failure not logged: %s", logs.String())
	}
	assertNoSecret(t, "logs", logs.String(), testClientSecret, "tok-1")
}

func TestClientCredentialsConcurrentCold(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	ts := newTokenServer(t)
	ts.gate = make(chan struct{})
	p := mustNew(t, ccConfig(ts, "OUTBOUND_TEST_CS"), Options{})
	const n = 100
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	creds := make([]*Credential, n)
	errs := make([]error, n)
	for i := range n {
		go func() {
			defer done.Done()
			started.Done()
			creds[i], errs[i] = p.Credential(context.Background(), &Request{})
		}()
	}
	started.Wait()
	close(ts.gate)
	done.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if creds[i] != creds[0] {
			t.Fatalf("call %d got a different credential", i)
		}
	}
	if got := headerMap(creds[0])["authorization"]; got != "Bearer tok-1" {
		t.Errorf("authorization = %q", got)
	}
	if h := ts.hits.Load(); h != 1 {
		t.Fatalf("token endpoint hits = %d, want exactly 1", h)
	}
}

func TestClientCredentialsCallerCancel(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	ts := newTokenServer(t)
	ts.gate = make(chan struct{})
	ts.arrived = make(chan struct{}, 1)
	p := mustNew(t, ccConfig(ts, "OUTBOUND_TEST_CS"), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		_, err := p.Credential(ctx, &Request{})
		res <- err
	}()
	<-ts.arrived // the request reached the token endpoint
	cancel()
	err := <-res
	var oe *Error
	if !errors.As(err, &oe) || oe.Reason != ReasonCanceled || !oe.Transient || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want transient %s", err, ReasonCanceled)
	}
	// The detached fetch still completes and is cached for the next caller.
	close(ts.gate)
	if got := headerMap(call(t, p))["authorization"]; got != "Bearer tok-1" {
		t.Fatalf("authorization = %q, want Bearer tok-1", got)
	}
	if h := ts.hits.Load(); h != 1 {
		t.Fatalf("hits = %d, want 1", h)
	}
}

func TestClientCredentialsErrors(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	const leak = "BODY_MARKER_do_not_echo"
	tests := []struct {
		name      string
		respond   func(w http.ResponseWriter, r *http.Request)
		timeout   time.Duration
		closed    bool
		reason    string
		transient bool
		is        error
		contains  string
	}{
		{
			name: "400 invalid_client",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				writeJSON(w, 400, map[string]string{"error": "invalid_client", "error_description": "bad secret " + testClientSecret + " " + leak})
			},
			reason: ReasonTokenRejected, contains: "HTTP 400 (invalid_client)",
		},
		{
			name: "401 non-json body",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(401)
				fmt.Fprint(w, "<h1>"+leak+testClientSecret+"</h1>")
			},
			reason: ReasonTokenRejected, contains: "HTTP 401",
		},
		{
			name: "unregistered error code dropped",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				writeJSON(w, 400, map[string]string{"error": leak})
			},
			reason: ReasonTokenRejected, contains: "(unrecognized)",
		},
		{
			name: "500",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(500)
				fmt.Fprint(w, leak)
			},
			reason: ReasonTokenUnavailable, transient: true, contains: "HTTP 500",
		},
		{
			name: "503 temporarily_unavailable",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				writeJSON(w, 503, map[string]string{"error": "temporarily_unavailable"})
			},
			reason: ReasonTokenUnavailable, transient: true, contains: "temporarily_unavailable",
		},
		{
			name: "429",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				writeJSON(w, 429, map[string]string{"error": "slow_down"})
			},
			reason: ReasonTokenUnavailable, transient: true,
		},
		{
			name: "timeout",
			respond: func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body) // lets the server notice the client hanging up
				<-r.Context().Done()
			},
			timeout: 50 * time.Millisecond,
			reason:  ReasonTokenTimeout, transient: true, is: context.DeadlineExceeded,
		},
		{
			name:   "connection refused",
			closed: true,
			reason: ReasonTokenUnreachable, transient: true,
		},
		{
			name: "oversized with content-length",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				body := `{"access_token":"` + strings.Repeat("a", maxResponseBytes) + `"}`
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				fmt.Fprint(w, body)
			},
			reason: ReasonTokenInvalidResponse, is: ErrResponseTooLarge,
		},
		{
			name: "oversized chunked",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"access_token":"`)
				w.(http.Flusher).Flush()
				for range 17 {
					fmt.Fprint(w, strings.Repeat("a", 64<<10))
				}
				fmt.Fprint(w, `"}`)
			},
			reason: ReasonTokenInvalidResponse, is: ErrResponseTooLarge,
		},
		{
			name: "redirect refused",
			respond: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/elsewhere" {
					writeJSON(w, 200, map[string]any{"access_token": "redirected", "token_type": "Bearer"})
					return
				}
				http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
			},
			reason: ReasonTokenRedirect, is: ErrRedirect,
		},
		{
			name: "malformed json",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"access_token": "`+leak)
			},
			reason: ReasonTokenInvalidResponse, contains: "malformed token response",
		},
		{
			name: "missing access_token",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				writeJSON(w, 200, map[string]any{"token_type": "Bearer"})
			},
			reason: ReasonTokenInvalidResponse,
		},
		{
			name: "non-bearer token type",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				writeJSON(w, 200, map[string]any{"access_token": leak, "token_type": "mac"})
			},
			reason: ReasonTokenInvalidResponse, contains: "not Bearer",
		},
		{
			name: "token with newline",
			respond: func(w http.ResponseWriter, _ *http.Request) {
				writeJSON(w, 200, map[string]any{"access_token": leak + "\r\nX-Injected: 1", "token_type": "Bearer"})
			},
			reason: ReasonTokenInvalidResponse, contains: "not a valid header value",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t)
			ts.respond = tt.respond
			cfg := ccConfig(ts, "OUTBOUND_TEST_CS")
			cfg.ServiceAccount.Timeout = tt.timeout
			if tt.closed {
				ts.srv.Close()
			}
			p := mustNew(t, cfg, Options{})
			c, err := p.Credential(context.Background(), &Request{})
			if err == nil {
				t.Fatalf("want error, got %v", c)
			}
			var oe *Error
			if !errors.As(err, &oe) {
				t.Fatalf("err %T %v is not *Error", err, err)
			}
			if oe.Reason != tt.reason || oe.Transient != tt.transient {
				t.Errorf("Reason=%q Transient=%v, want %q %v (%v)", oe.Reason, oe.Transient, tt.reason, tt.transient, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "outbound: "+tt.reason) {
				t.Errorf("Error() = %q, want prefix %q", msg, "outbound: "+tt.reason)
			}
			if tt.contains != "" && !strings.Contains(msg, tt.contains) {
				t.Errorf("Error() = %q, want it to contain %q", msg, tt.contains)
			}
			assertNoSecret(t, "Error()", msg, testClientSecret, leak, "redirected")
			assertNoSecret(t, "%+v", fmt.Sprintf("%+v %#v", err, err), testClientSecret, leak)
			if tt.name == "redirect refused" && ts.hits.Load() != 1 {
				t.Errorf("redirect target was requested (hits=%d)", ts.hits.Load())
			}
		})
	}
}

func TestNoSecretsInOutput(t *testing.T) {
	t.Setenv("OUTBOUND_TEST_CS", testClientSecret)
	ts := newTokenServer(t)
	ts.wantAudience, ts.wantResource = "https://mcp.example.com/", "https://mcp.example.com/"
	ts.grantedScope = "repo.read"
	cfg := ccConfig(ts, "OUTBOUND_TEST_CS")
	cfg.ServiceAccount.Audience = "https://mcp.example.com/"
	var logs bytes.Buffer
	p := mustNew(t, cfg, Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c := call(t, p)
	const token = "tok-1"
	if headerMap(c)["authorization"] != "Bearer "+token {
		t.Fatalf("unexpected credential %v", c)
	}

	var slogOut bytes.Buffer
	slog.New(slog.NewJSONHandler(&slogOut, nil)).Info("decision", "credential", c)
	var got struct {
		Credential map[string]any `json:"credential"`
	}
	if err := json.Unmarshal(slogOut.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"mode": "service_account", "subject": testClientID, "audience": "https://mcp.example.com/",
		"scopes": []any{"repo.read"}, "headers": []any{"authorization"},
	}
	for k, v := range want {
		if fmt.Sprint(got.Credential[k]) != fmt.Sprint(v) {
			t.Errorf("LogValue %s = %v, want %v", k, got.Credential[k], v)
		}
	}
	if _, ok := got.Credential["expires_at"]; !ok {
		t.Error("LogValue lacks expires_at")
	}

	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"slog":      slogOut.String(),
		"logs":      logs.String(),
		"json":      string(js),
		"String":    c.String(),
		"provider":  fmt.Sprintf("%v %+v %#v", p, p, p),
		"header %d": fmt.Sprintf("%d %x %s", c.Headers[0], c.Headers, c.Headers),
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%d", "%x", "%q"} {
		outputs["ptr "+verb] = fmt.Sprintf(verb, c)
		outputs["value "+verb] = fmt.Sprintf(verb, *c)
	}
	for name, out := range outputs {
		assertNoSecret(t, name, out, testClientSecret, "Bearer "+token, `"`+token+`"`, "="+token)
		if strings.Contains(out, token) && !strings.Contains(out, "tok-1") {
			t.Errorf("%s leaks token", name)
		}
	}
	for name, out := range outputs {
		if strings.Contains(out, "tok-1") {
			t.Errorf("%s leaks the access token: %s", name, out)
		}
	}
	if !strings.Contains(outputs["value %+v"], "authorization: [redacted]") {
		t.Errorf("value %%+v = %s", outputs["value %+v"])
	}
}

func TestConfigYAML(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want func(t *testing.T, c Config)
		err  string
	}{
		{
			name: "static",
			in: `
mode: static
static:
  headers:
    - name: X-API-Key
      value: {env: UPSTREAM_API_KEY}
      prefix: "Key "`,
			want: func(t *testing.T, c Config) {
				h := c.Static.Headers[0]
				if c.Mode != ModeStatic || h.Name != "X-API-Key" || h.Value != (secret.Ref{Env: "UPSTREAM_API_KEY"}) || h.Prefix != "Key " {
					t.Errorf("decoded %+v", c.Static)
				}
			},
		},
		{
			name: "client credentials",
			in: `
mode: service_account
service_account:
  token_url: https://idp.example.com/token
  client_id: c1
  client_secret: {file: /run/secrets/cs}
  scopes: [a, b]
  audience: https://mcp.example.com/
  auth_style: post
  refresh_before: 2m
  timeout: 3s`,
			want: func(t *testing.T, c Config) {
				sa := c.ServiceAccount
				if sa.ClientSecret == nil || sa.ClientSecret.File != "/run/secrets/cs" || sa.RefreshBefore != 2*time.Minute ||
					sa.Timeout != 3*time.Second || sa.AuthStyle != "post" || len(sa.Scopes) != 2 {
					t.Errorf("decoded %+v", sa)
				}
				if err := c.Validate(); err != nil {
					t.Errorf("Validate: %v", err)
				}
			},
		},
		{
			name: "inline secret refused",
			in:   "mode: service_account\nservice_account:\n  secret: hunter2\n",
			err:  "line 3: inline secrets are not allowed",
		},
		{
			name: "unknown key refused",
			in:   "mode: public\nheaders: []\n",
			err:  "field headers not found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := yaml.NewDecoder(strings.NewReader(tt.in))
			dec.KnownFields(true)
			var c Config
			err := dec.Decode(&c)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				assertNoSecret(t, "error", err.Error(), "hunter2")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want(t, c)
		})
	}
}
