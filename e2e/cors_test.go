package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/envoy/emulator"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// TestCORSPreflightFromBrowsers: Envoy's CORS filter (before ext_authz, with
// the server's allowed_origins, as `mcpauthz envoy generate` configures it)
// answers a browser's preflight from an allowed origin without a Check; a
// preflight from a foreign origin goes on to mcpauthz, which refuses it
// (403 invalid_origin); the browser's real POST from the allowed origin
// reaches the MCP server and carries the CORS response headers. The Envoy
// routes come from envoy.CatalogParams over the loaded config, and run in
// the emulator or, with ENVOY_BIN, in a real Envoy.
func TestCORSPreflightFromBrowsers(t *testing.T) {
	const app, foreign = "https://chat.example.com", "https://evil.example"
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	idp, issuer := startIdP(t)
	upstream := docserver.New()
	up := httptest.NewServer(upstream.Handler())
	t.Cleanup(up.Close)
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + front.Addr().String()
	resource := base + "/docs/mcp"

	dir := t.TempDir()
	bundle, err := filepath.Abs("../bundles/rbac")
	if err != nil {
		t.Fatal(err)
	}
	audit := filepath.Join(dir, "decisions.log")
	cfgPath := filepath.Join(dir, "mcpauthz.yaml")
	srv := startMCPAuthz(ctx, t, cfgPath, fmt.Sprintf(`version: 1
listen: {grpc: "127.0.0.1:0", http: "127.0.0.1:0", shutdown_timeout: 5s}
identity:
  issuers:
    - {name: dev, issuer: %s, algorithms: [RS256, ES256]}
policy:
  bundles: [{path: %s}]
audit: {output: %s}
servers:
  - id: docs
    resource: %s
    scopes: [docs:read, docs:write, docs:admin]
    allowed_origins: [%s]
    credential: {mode: public}
`, issuer, bundle, audit, resource, app))

	// The Envoy side, derived from the same config as `envoy generate`.
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var servers []envoy.CatalogServer
	for _, s := range cfg.Servers {
		servers = append(servers, envoy.CatalogServer{ID: s.ID, Resource: s.Resource, Host: s.Match.Host, PathPrefix: s.Match.PathPrefix, AllowedOrigins: s.AllowedOrigins})
	}
	authzHost, authzPort := splitHostPort(t, srv.GRPCAddr())
	mdHost, mdPort := splitHostPort(t, srv.HTTPAddr())
	_, frontPort := splitHostPort(t, front.Addr().String())
	params, err := envoy.CatalogParams(servers, envoy.GenerateOptions{
		ListenAddr: "127.0.0.1", ListenPort: frontPort, AdminPort: 9901,
		AuthzHost: authzHost, AuthzPort: authzPort, MetadataHost: mdHost, MetadataPort: mdPort,
		Upstreams: map[string]string{"docs": up.URL},
	})
	if err != nil {
		t.Fatal(err)
	}
	var checks atomic.Int32 // emulator only: Check calls as Envoy makes them
	if bin := os.Getenv("ENVOY_BIN"); bin != "" {
		_ = front.Close()
		params.AdminPort = freePort(t)
		boot, err := envoy.RenderBootstrap(params)
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
		waitReady(t, fmt.Sprintf("http://127.0.0.1:%d/ready", params.AdminPort))
	} else {
		routes, err := emulator.RoutesFrom(params)
		if err != nil {
			t.Fatal(err)
		}
		proxy, err := emulator.New(ctx, emulator.Config{AuthzAddr: srv.GRPCAddr(), Timeout: 2 * time.Second, Routes: routes})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = proxy.Close() })
		proxy.OnCheck(func(*authv3.CheckRequest) { checks.Add(1) })
		fs := &httptest.Server{Listener: front, Config: &http.Server{Handler: proxy}}
		fs.Start()
		t.Cleanup(fs.Close)
	}
	emulated := os.Getenv("ENVOY_BIN") == ""

	preflight := func(origin string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, resource, nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,mcp-protocol-version")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res, string(b)
	}

	// 1. Allowed origin: Envoy answers; neither mcpauthz nor the MCP server sees it.
	res, body := preflight(app)
	if res.StatusCode != http.StatusOK || body != "" {
		t.Fatalf("allowed preflight: %d %q", res.StatusCode, body)
	}
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":  app,
		"Access-Control-Allow-Methods": envoy.CORSAllowMethods,
		"Access-Control-Allow-Headers": envoy.CORSAllowHeaders,
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("allowed preflight %s = %q, want %q", k, got, want)
		}
	}
	if v := res.Header.Values("Access-Control-Allow-Credentials"); len(v) != 0 {
		t.Errorf("credentials allowed: %q", v)
	}
	if emulated && checks.Load() != 0 {
		t.Errorf("allowed preflight made %d Check calls", checks.Load())
	}
	if n := len(upstream.Received()); n != 0 {
		t.Fatalf("allowed preflight reached the MCP server (%d requests)", n)
	}

	// 2. Foreign origin: on to mcpauthz, refused.
	res, body = preflight(foreign)
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "origin not allowed") {
		t.Fatalf("foreign preflight: %d %q", res.StatusCode, body)
	}
	if v := res.Header.Values("Access-Control-Allow-Origin"); len(v) != 0 {
		t.Errorf("foreign preflight got Access-Control-Allow-Origin %q", v)
	}
	if emulated && checks.Load() != 1 {
		t.Errorf("foreign preflight: %d Check calls in all, want 1", checks.Load())
	}

	// 3. The browser's real request from the allowed origin.
	tok, err := idp.Mint(map[string]any{"aud": resource, "sub": "vera", "roles": []string{"viewer"}, "scope": "docs:read"})
	if err != nil {
		t.Fatal(err)
	}
	status, hdr, rbody, err := docserver.PostJSONRPC(ctx, nil, resource, map[string]string{
		"Authorization": "Bearer " + tok, "Origin": app, "MCP-Protocol-Version": "2025-06-18",
	}, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"browser","version":"1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK {
		t.Fatalf("POST from the allowed origin: %d %s", status, rbody)
	}
	if got := hdr.Get("Access-Control-Allow-Origin"); got != app {
		t.Errorf("POST: Access-Control-Allow-Origin = %q, want %q", got, app)
	}
	if got := hdr.Get("Access-Control-Expose-Headers"); got != envoy.CORSExposeHeaders {
		t.Errorf("POST: Access-Control-Expose-Headers = %q", got)
	}
	recs := upstream.Received()
	if len(recs) != 1 || recs[0].Method != http.MethodPost || recs[0].Header.Get("Origin") != app {
		t.Fatalf("MCP server received %+v, want the one POST", recs)
	}
	if emulated && checks.Load() != 2 {
		t.Errorf("%d Check calls in all, want 2", checks.Load())
	}

	// The decision log agrees, with or without the emulator: mcpauthz
	// decided the foreign preflight and the POST, nothing else.
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r struct {
			Allow  bool   `json:"allow"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("decision log line: %v: %s", err, line)
		}
		got = append(got, fmt.Sprintf("%v/%s", r.Allow, r.Reason))
	}
	if len(got) != 2 || got[0] != "false/invalid_origin" || !strings.HasPrefix(got[1], "true/") {
		t.Errorf("decisions = %q, want [false/invalid_origin true/...]", got)
	}
}
