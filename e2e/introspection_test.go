package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/envoy/emulator"
	"github.com/mcpauthz/mcpauthz/server"
)

// introspectionSecret is mcpauthz's client secret at the IdP's
// introspection endpoint.
const introspectionSecret = "introspection-client-secret-51c2"

type introspectionEnv struct {
	idp      *devidp.Issuer
	upstream *docserver.Server
	resource string
}

// newIntrospectionEnv runs mcpauthz with one issuer that hands out opaque
// tokens, judged through RFC 7662 introspection at the development IdP
// (client_secret_basic, secret from a file), behind the Envoy stand-in.
func newIntrospectionEnv(t *testing.T, cacheMaxAge time.Duration) *introspectionEnv {
	t.Helper()
	if os.Getenv("ENVOY_BIN") != "" {
		t.Log("introspection e2e runs through the Envoy stand-in only")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	idp, err := devidp.New(devidp.Options{
		OpaqueTokenPrefix:    "devat_",
		IntrospectionClients: map[string]string{"mcpauthz": introspectionSecret},
	})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := idp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)

	e := &introspectionEnv{idp: idp, upstream: docserver.New()}
	up := httptest.NewServer(e.upstream.Handler())
	t.Cleanup(up.Close)
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + front.Addr().String()
	e.resource = base + "/docs/mcp"

	dir := t.TempDir()
	bundle, err := filepath.Abs("../bundles/rbac")
	if err != nil {
		t.Fatal(err)
	}
	secretFile, saFile := filepath.Join(dir, "introspection-secret"), filepath.Join(dir, "sa-secret")
	for f, v := range map[string]string{secretFile: introspectionSecret + "\n", saFile: saSecret} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgDoc := fmt.Sprintf(`version: 1
listen: {grpc: "127.0.0.1:0", http: "127.0.0.1:0", shutdown_timeout: 5s}
identity:
  issuers:
    - name: dev
      issuer: %s
      introspection:
        endpoint: %s/introspect
        client_id: mcpauthz
        client_secret: {file: %s}
        token_prefix: devat_
        timeout: 500ms
        cache_max_age: %s
policy:
  bundles: [{path: %s}]
audit: {output: %s}
servers:
  - id: docs
    name: Documents
    resource: %s
    scopes: [docs:read, docs:write, docs:admin]
    credential:
      mode: service_account
      service_account:
        secret: {file: %s}
`, issuer, issuer, secretFile, cacheMaxAge, bundle, filepath.Join(dir, "decisions.log"), e.resource, saFile)
	srv := startMCPAuthz(ctx, t, filepath.Join(dir, "mcpauthz.yaml"), cfgDoc)

	proxy, err := emulator.New(ctx, emulator.Config{
		AuthzAddr: srv.GRPCAddr(),
		Timeout:   2 * time.Second,
		Routes: []emulator.Route{
			{Name: "metadata", PathPrefix: "/.well-known/oauth-protected-resource", Upstream: "http://" + srv.HTTPAddr(), DisableExtAuthz: true},
			{Name: "docs", PathPrefix: "/docs/", Upstream: up.URL, ContextExtensions: map[string]string{server.ContextExtensionKey: "docs"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	fs := &httptest.Server{Listener: front, Config: &http.Server{Handler: proxy}}
	fs.Start()
	t.Cleanup(fs.Close)
	return e
}

func (e *introspectionEnv) opaque(t *testing.T, sub string) string {
	t.Helper()
	tok, err := e.idp.IssueOpaque(map[string]any{
		"sub": sub, "roles": []string{"admin"}, "aud": e.resource, "org_id": "acme",
		"scope": "docs:read docs:write docs:admin", "client_id": "docs-app",
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wantStatus asserts err is an HTTP answer with status (and, for 401, the
// invalid_token challenge).
func wantStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	var he *docserver.HTTPError
	if !errors.As(err, &he) || he.Status != status {
		t.Fatalf("%s: want HTTP %d, got %v", what, status, err)
	}
	if status == http.StatusUnauthorized {
		if wa := he.Header.Get("WWW-Authenticate"); !strings.Contains(wa, `error="invalid_token"`) {
			t.Fatalf("%s: WWW-Authenticate = %q", what, wa)
		}
	}
}

// TestIntrospection: an MCP SDK client calls a tool with an opaque token
// that mcpauthz judges by introspection at the IdP; results are cached, so
// when the IdP goes down a token already seen keeps working until
// cache_max_age while a new token gets 503; a revoked token is refused with
// 401 invalid_token once its cache entry has aged out.
func TestIntrospection(t *testing.T) {
	const maxAge = 6 * time.Second
	e := newIntrospectionEnv(t, maxAge)
	ctx := ctxT(t)
	e.upstream.Put(docserver.Document{ID: "doc-seed", Title: "seed", Content: "v0"})
	connect := func(tok string) (*docserver.Client, error) {
		return docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.resource, Token: tok})
	}
	call := func(c *docserver.Client) error {
		res, err := c.CallTool(ctx, "readDocument", map[string]any{"id": "doc-seed"})
		if err == nil && res.IsError {
			return fmt.Errorf("tool error: %+v", res.Content)
		}
		return err
	}
	mustWork := func(what string, c *docserver.Client) {
		t.Helper()
		if err := call(c); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Two users with opaque tokens; every HTTP request of the SDK's
	// session reaches mcpauthz, but each token is introspected once.
	start := time.Now()
	vera, dora := e.opaque(t, "vera"), e.opaque(t, "dora")
	cv, err := connect(vera)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cv.Close()
	e.upstream.Reset()
	mustWork("vera", cv)
	calls := e.upstream.ToolCalls()
	if len(calls) != 1 {
		t.Fatalf("upstream saw %+v", calls)
	}
	h := calls[0].Header
	if got := h.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+saSecret {
		t.Fatalf("upstream Authorization = %q, want only the service account", got)
	}
	if sub := h.Get("X-Mcp-Subject"); sub != "vera" && sub != "dev/vera" {
		t.Fatalf("upstream X-Mcp-Subject = %q", sub)
	}
	if h.Get("X-Mcp-Kind") != "human" {
		t.Fatalf("upstream X-Mcp-Kind = %q", h.Get("X-Mcp-Kind"))
	}
	assertNoToken(t, e.upstream.Received(), vera)
	cd, err := connect(dora)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cd.Close()
	mustWork("dora", cd)
	lastCached := time.Now() // no cached result was made after this
	if n := e.idp.IntrospectionRequests(); n != 2 {
		t.Fatalf("%d introspection requests for two tokens, want 2 (results are cached)", n)
	}

	// Revoked at the IdP: still served from the cache for now.
	e.idp.Revoke(dora)
	mustWork("dora revoked, cached", cd)

	// The IdP goes down.
	e.idp.Close()
	mustWork("vera, IdP down, cached", cv)
	if _, err := connect(e.opaque(t, "nina")); err == nil {
		t.Fatal("new token accepted while the IdP is down")
	} else {
		wantStatus(t, "new token, IdP down", err, http.StatusServiceUnavailable)
	}
	if el := time.Since(start); el >= maxAge {
		t.Fatalf("setup took %v, longer than cache_max_age %v: the cached-token checks above prove nothing", el, maxAge)
	}

	// Past cache_max_age the cached results are gone: with the IdP still
	// down, even vera's token cannot be judged.
	time.Sleep(time.Until(lastCached.Add(maxAge + 500*time.Millisecond)))
	wantStatus(t, "vera, IdP down, cache expired", call(cv), http.StatusServiceUnavailable)

	// The IdP comes back: vera works again, dora's revocation takes effect,
	// and a token revoked before its first use is refused.
	if _, err := e.idp.Start(); err != nil {
		t.Fatal(err)
	}
	cv2, err := connect(vera)
	if err != nil {
		t.Fatalf("vera after restart: %v", err)
	}
	defer cv2.Close()
	mustWork("vera after restart", cv2)
	wantStatus(t, "dora revoked", call(cd), http.StatusUnauthorized)
	revoked := e.opaque(t, "rita")
	e.idp.Revoke(revoked)
	_, err = connect(revoked)
	wantStatus(t, "revoked before use", err, http.StatusUnauthorized)
	_, err = connect("devat_never-issued")
	wantStatus(t, "unknown opaque token", err, http.StatusUnauthorized)
}
