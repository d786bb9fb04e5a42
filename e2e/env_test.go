// Package e2e proves mcpauthz end to end: a real MCP server and client
// (the official Go SDK, see e2e/docserver), a real OIDC issuer over HTTP
// (devidp: discovery + JWKS, tokens signed per test), mcpauthz started from
// a config file as in production, and in front of it either the in-process
// Envoy stand-in (envoy/emulator, which applies the ext_authz contract as
// Envoy's filter does) or, when ENVOY_BIN names an envoy binary, a real
// Envoy rendered from envoy.RenderBootstrap.
package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/envoy/emulator"
	"github.com/mcpauthz/mcpauthz/server"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// saSecret is the organization service-account credential the docs
// upstream must receive instead of any client token.
const saSecret = "org-service-account-7f3a"

type env struct {
	idp      *devidp.Issuer
	upstream *docserver.Server
	srv      *server.Server
	base     string // what clients talk to: emulator or envoy
	resource string // the docs MCP server's public URL
	endpoint string
	audit    string
	pki      *pki // set with envOptions.mtls
}

func newEnv(t *testing.T) *env { return newEnvWith(t, envOptions{}) }

// envOptions vary the deployment under test.
type envOptions struct {
	// mtls serves the front door over TLS requiring client certificates;
	// the client certificate's URI SAN (a SPIFFE ID) reaches mcpauthz as
	// Envoy's source principal.
	mtls bool
	// policy, when set, replaces the config's policy block (YAML, indented
	// by two spaces), e.g. to load bundles from a bundle server.
	policy string
	// allowedHeaders sets the ext_authz filter's allowed_headers in the
	// Envoy stand-in (headers hidden from mcpauthz are still forwarded).
	allowedHeaders []string
}

func newEnvWith(t *testing.T, opts envOptions) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &env{}
	var issuer string
	e.idp, issuer = startIdP(t)

	e.upstream = docserver.New()
	up := httptest.NewServer(e.upstream.Handler())
	t.Cleanup(up.Close)

	// The front listener is bound first: its address is the public resource URL.
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + front.Addr().String()
	if opts.mtls {
		if os.Getenv("ENVOY_BIN") != "" {
			t.Skip("the rendered Envoy bootstrap has no downstream TLS context; mTLS runs through the emulator only")
		}
		e.base = "https://" + front.Addr().String()
	}
	e.resource = e.base + "/docs/mcp"
	e.endpoint = e.resource

	dir := t.TempDir()
	bundle, err := filepath.Abs("../bundles/rbac")
	if err != nil {
		t.Fatal(err)
	}
	policyBlock := "  bundles: [{path: " + bundle + "}]"
	if opts.policy != "" {
		policyBlock = opts.policy
	}
	saFile := filepath.Join(dir, "sa-secret")
	if err := os.WriteFile(saFile, []byte(saSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	e.audit = filepath.Join(dir, "decisions.log")
	cfgPath := filepath.Join(dir, "mcpauthz.yaml")
	cfgDoc := fmt.Sprintf(`version: 1
listen: {grpc: "127.0.0.1:0", http: "127.0.0.1:0", shutdown_timeout: 5s}
identity:
  issuers:
    - name: dev
      issuer: %s
      algorithms: [RS256, ES256]
      agent: {client_ids: [summarizer-agent]}
  spiffe: {trust_domains: [agents.example.org]}
policy:
%s
headers:
  strip: [x-user-id]
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
`, issuer, policyBlock, e.audit, e.resource, saFile)
	e.srv = startMCPAuthz(ctx, t, cfgPath, cfgDoc)

	upHost, upPort := splitHostPort(t, strings.TrimPrefix(up.URL, "http://"))
	mdHost, mdPort := splitHostPort(t, e.srv.HTTPAddr())
	if bin := os.Getenv("ENVOY_BIN"); bin != "" {
		_ = front.Close()
		authzHost, authzPort := splitHostPort(t, e.srv.GRPCAddr())
		_, frontPort := splitHostPort(t, strings.TrimPrefix(e.base, "http://"))
		adminPort := freePort(t)
		boot, err := envoy.RenderBootstrap(envoy.BootstrapParams{
			ListenAddr: "127.0.0.1", ListenPort: frontPort, AdminPort: adminPort, AuthzHost: authzHost, AuthzPort: authzPort,
			Routes: []envoy.BootstrapRoute{
				{Name: "metadata", Path: "/.well-known/oauth-protected-resource/docs/mcp", UpstreamHost: mdHost, UpstreamPort: mdPort, DisableExtAuthz: true},
				{Name: "docs", PathPrefix: "/docs/", UpstreamHost: upHost, UpstreamPort: upPort, ContextExtensions: map[string]string{server.ContextExtensionKey: "docs"}},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		bootPath := filepath.Join(dir, "envoy.yaml")
		if err := os.WriteFile(bootPath, boot, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, bin, "-c", bootPath, "--log-level", "warn", "--base-id", strconv.Itoa(frontPort))
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/ready", adminPort))
		return e
	}
	proxy, err := emulator.New(ctx, emulator.Config{
		AuthzAddr:      e.srv.GRPCAddr(),
		Timeout:        2 * time.Second,
		AllowedHeaders: opts.allowedHeaders,
		Routes: []emulator.Route{
			{Name: "metadata", PathPrefix: "/.well-known/oauth-protected-resource", Upstream: "http://" + e.srv.HTTPAddr(), DisableExtAuthz: true},
			{Name: "docs", PathPrefix: "/docs/", Upstream: up.URL, ContextExtensions: map[string]string{server.ContextExtensionKey: "docs"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	fs := &httptest.Server{Listener: front, Config: &http.Server{Handler: proxy}}
	if opts.mtls {
		e.pki = newPKI(t)
		fs.TLS = e.pki.serverTLS(t)
		fs.StartTLS()
	} else {
		fs.Start()
	}
	t.Cleanup(fs.Close)
	return e
}

// startIdP starts a development OIDC issuer over HTTP for the test.
func startIdP(t *testing.T) (*devidp.Issuer, string) {
	t.Helper()
	idp, err := devidp.New(devidp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	url, err := idp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	return idp, url
}

// startMCPAuthz writes doc to path and starts mcpauthz from it, as in
// production (config.Load), until the test ends.
func startMCPAuthz(ctx context.Context, t *testing.T, path, doc string) *server.Server {
	t.Helper()
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	srv, err := server.New(ctx, cfg, server.Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	srv.Start(ctx)
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return srv
}

func splitHostPort(t *testing.T, hp string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, n
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("envoy not ready at %s", url)
}

// token mints an access token for the docs server; claims override defaults.
func (e *env) token(t *testing.T, claims map[string]any, opts ...devidp.MintOption) string {
	t.Helper()
	c := map[string]any{"aud": e.resource, "org_id": "acme", "scope": "docs:read docs:write docs:admin"}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	tok, err := e.idp.Mint(c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
