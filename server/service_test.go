package server

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/config"
)

const (
	docsResource    = "https://mcp.example.com/docs/mcp"
	ticketsResource = "https://mcp.example.com/tickets/mcp"
	upstreamSecret  = "sa-secret-value-123"
)

type fixture struct {
	t     *testing.T
	svc   *Service
	idp   *devidp.Issuer
	audit string
}

func newFixture(t testing.TB) *fixture { return newFixtureWith(t, nil) }

// newFixtureWith lets a test adjust the parsed config before the service
// is built.
func newFixtureWith(t testing.TB, edit func(*config.Config)) *fixture {
	t.Helper()
	idp, err := devidp.New(devidp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := idp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "sa")
	if err := os.WriteFile(secretFile, []byte(upstreamSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(dir, "decisions.log")
	doc := `
version: 1
listen: {grpc: "127.0.0.1:0", http: "127.0.0.1:0"}
identity:
  issuers:
    - name: dev
      issuer: ` + issuer + `
      agent: {client_ids: [agent-bot]}
  spiffe: {trust_domains: [agents.example.org]}
policy:
  bundles: [{path: ../bundles/rbac}]
headers:
  strip: [x-user-id]
audit: {output: ` + auditPath + `}
servers:
  - id: docs
    resource: ` + docsResource + `
    match: {path_prefix: /docs/}
    scopes: [docs:read, docs:write, docs:admin]
    allowed_origins: [https://app.example.com]
    credential:
      mode: service_account
      service_account:
        secret: {file: ` + secretFile + `}
  - id: tickets
    resource: ` + ticketsResource + `
    match: {path_prefix: /tickets/}
    credential: {mode: public}
`
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if edit != nil {
		edit(cfg)
	}
	svc, err := NewService(context.Background(), cfg, Deps{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	t.Cleanup(svc.Close)
	return &fixture{svc: svc, idp: idp, audit: auditPath}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (f *fixture) token(t testing.TB, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"aud": docsResource, "org_id": "acme"}
	for k, v := range claims {
		c[k] = v
	}
	tok, err := f.idp.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// req builds a CheckRequest the way Envoy does for an HTTP request.
type req struct {
	method, path, body string
	headers            map[string]string
	ext                map[string]string
	principal          string
	partial            bool
}

func (r req) check() *authv3.CheckRequest {
	if r.method == "" {
		r.method = "POST"
	}
	if r.path == "" {
		r.path = "/docs/mcp"
	}
	h := map[string]string{
		":authority": "mcp.example.com", ":method": r.method, ":path": r.path, ":scheme": "https",
		"x-request-id": "rid-1", "x-envoy-auth-partial-body": "false",
	}
	if r.method == "POST" {
		h["content-type"] = "application/json"
		h["mcp-protocol-version"] = "2025-06-18"
	}
	if r.partial {
		h["x-envoy-auth-partial-body"] = "true"
	}
	for k, v := range r.headers {
		if v == "" {
			delete(h, k)
			continue
		}
		h[k] = v
	}
	if r.ext == nil {
		r.ext = map[string]string{ContextExtensionKey: "docs"}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: r.principal, Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 4000}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "rid-1", Method: r.method, Path: r.path, Host: "mcp.example.com", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: h, RawBody: []byte(r.body),
		}},
		ContextExtensions: r.ext,
	}}
}

func toolCall(name string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + name + `","arguments":{"id":"d1"}}}`
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

// outcome is a CheckResponse reduced to what Envoy acts on.
type outcome struct {
	allowed bool
	status  int
	set     map[string]string
	remove  map[string]bool
	body    string
}

func decode(t testing.TB, resp *authv3.CheckResponse) outcome {
	t.Helper()
	o := outcome{set: map[string]string{}, remove: map[string]bool{}}
	if ok := resp.GetOkResponse(); ok != nil {
		o.allowed, o.status = true, 200
		for _, h := range ok.GetHeaders() {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("header %s uses append action %v; identity headers must overwrite", h.GetHeader().GetKey(), h.GetAppendAction())
			}
			o.set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		for _, r := range ok.GetHeadersToRemove() {
			o.remove[r] = true
		}
		return o
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("response is neither OK nor denied: %v", resp)
	}
	o.status = int(d.GetStatus().GetCode())
	for _, h := range d.GetHeaders() {
		o.set[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
	}
	o.body = d.GetBody()
	return o
}

func (f *fixture) do(t testing.TB, r req) outcome {
	t.Helper()
	resp, err := f.svc.Check(context.Background(), r.check())
	if err != nil {
		t.Fatalf("Check returned a gRPC error: %v", err)
	}
	return decode(t, resp)
}

func TestCheckRBACMatrix(t *testing.T) {
	f := newFixture(t)
	scopes := "docs:read docs:write docs:admin"
	tests := []struct {
		name   string
		claims map[string]any
		tool   string
		status int
	}{
		{"viewer reads", map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": scopes}, "readDocument", 200},
		{"viewer cannot update", map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": scopes}, "updateDocument", 403},
		{"editor updates", map[string]any{"sub": "e", "roles": []string{"editor"}, "scope": scopes}, "updateDocument", 200},
		{"editor cannot delete", map[string]any{"sub": "e", "roles": []string{"editor"}, "scope": scopes}, "deleteDocument", 403},
		{"admin deletes", map[string]any{"sub": "a", "roles": []string{"admin"}, "scope": scopes}, "deleteDocument", 200},
		{"admin shares", map[string]any{"sub": "a", "roles": []string{"admin"}, "scope": scopes}, "shareDocument", 200},
		{"agent for viewer reads", map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": scopes, "act": map[string]any{"sub": "agent-bot"}}, "readDocument", 200},
		{"agent for admin may not delete", map[string]any{"sub": "a", "roles": []string{"admin"}, "scope": scopes, "act": map[string]any{"sub": "agent-bot"}}, "deleteDocument", 403},
		{"agent alone reads", map[string]any{"sub": "agent-bot", "client_id": "agent-bot", "scope": scopes}, "readDocument", 200},
		{"agent alone cannot create", map[string]any{"sub": "agent-bot", "client_id": "agent-bot", "roles": []string{"admin"}, "scope": scopes}, "createDocument", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := f.do(t, req{body: toolCall(tt.tool), headers: bearer(f.token(t, tt.claims))})
			if o.status != tt.status {
				t.Fatalf("status = %d, want %d (body %s)", o.status, tt.status, o.body)
			}
			if o.allowed {
				if o.set["authorization"] != "Bearer "+upstreamSecret {
					t.Errorf("upstream authorization = %q, want the service account", o.set["authorization"])
				}
				// Subjects are qualified by the issuer's user namespace ("dev").
				if o.set["x-mcp-subject"] != "dev/"+tt.claims["sub"].(string) {
					t.Errorf("x-mcp-subject = %q, want %v", o.set["x-mcp-subject"], tt.claims["sub"])
				}
				if o.set["x-mcp-decision-id"] == "" || o.set["x-mcp-server"] != "docs" {
					t.Errorf("attribution headers missing: %v", o.set)
				}
				return
			}
			var body rpcErrorBody
			if err := json.Unmarshal([]byte(o.body), &body); err != nil {
				t.Fatalf("deny body is not JSON-RPC: %v: %s", err, o.body)
			}
			if body.JSONRPC != "2.0" || string(body.ID) != "1" || body.Error.Code != codeForbidden || !strings.Contains(body.Error.Message, "denied") {
				t.Errorf("deny body = %+v", body)
			}
		})
	}
}

func TestCheckActorAttribution(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}, "scope": "docs:read",
		"act": map[string]any{"sub": "agent-bot", "act": map[string]any{"sub": "orchestrator"}}})
	o := f.do(t, req{body: toolCall("readDocument"), headers: bearer(tok)})
	if !o.allowed {
		t.Fatalf("denied: %d %s", o.status, o.body)
	}
	want := map[string]string{"x-mcp-subject": "dev/alice", "x-mcp-actor": "dev/agent-bot", "x-mcp-actor-chain": "dev/orchestrator",
		"x-mcp-kind": "agent_for_user", "x-mcp-org": "acme"}
	for k, v := range want {
		if o.set[k] != v {
			t.Errorf("%s = %q, want %q", k, o.set[k], v)
		}
	}
}

func TestCheckAuthenticationFailures(t *testing.T) {
	f := newFixture(t)
	good := map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": "docs:read"}
	expired, err := f.idp.Mint(map[string]any{"sub": "v", "aud": docsResource, "roles": []string{"viewer"}}, devidp.WithExpiry(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	wrongAud := f.token(t, map[string]any{"sub": "v", "aud": "https://other.example.com/mcp"})
	other, err := devidp.New(devidp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	wrongIss := other.MustMint(map[string]any{"sub": "v", "aud": docsResource})
	md := `resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/docs/mcp"`
	tests := []struct {
		name      string
		headers   map[string]string
		reason    string
		challenge []string
		noError   bool
	}{
		{"missing token", nil, "no_credentials", []string{md, `scope="docs:read docs:write docs:admin"`}, true},
		{"expired", bearer(expired), "invalid_token_expired", []string{md, `error="invalid_token"`}, false},
		{"wrong audience", bearer(wrongAud), "invalid_token_audience", []string{md, `error="invalid_token"`}, false},
		{"wrong issuer", bearer(wrongIss), "invalid_token_unknown_issuer", []string{`error="invalid_token"`}, false},
		{"alg none", bearer(f.idp.MintNone(good)), "invalid_token", []string{`error="invalid_token"`}, false},
		{"hs256 with public key", bearer(f.idp.MintHS256WithPublicKey(good)), "invalid_token", []string{`error="invalid_token"`}, false},
		{"basic auth", map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, "invalid_token", []string{`error="invalid_token"`}, false},
		{"two bearer values", map[string]string{"authorization": "Bearer a, Bearer b"}, "invalid_token", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := f.do(t, req{body: toolCall("readDocument"), headers: tt.headers})
			if o.status != http.StatusUnauthorized {
				t.Fatalf("status = %d, want 401 (%s)", o.status, o.body)
			}
			wa := o.set["www-authenticate"]
			if !strings.HasPrefix(wa, "Bearer ") {
				t.Fatalf("WWW-Authenticate = %q", wa)
			}
			for _, c := range tt.challenge {
				if !strings.Contains(wa, c) {
					t.Errorf("WWW-Authenticate %q lacks %q", wa, c)
				}
			}
			if tt.noError && strings.Contains(wa, "error=") {
				t.Errorf("challenge for a missing token must not carry error=: %q", wa)
			}
			if !strings.Contains(o.body, `"code":-32050`) {
				t.Errorf("body = %s", o.body)
			}
		})
	}
	f.svc.Close()
	logs, _ := os.ReadFile(f.audit)
	if !strings.Contains(string(logs), `"reason":"invalid_token_audience"`) {
		t.Errorf("decision log lacks the audience reason:\n%s", logs)
	}
	if strings.Contains(string(logs), expired) || strings.Contains(string(logs), wrongAud) || strings.Contains(string(logs), "eyJ") {
		t.Errorf("decision log contains a token:\n%s", logs)
	}
}

func TestCheckInsufficientScope(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "e", "roles": []string{"editor"}, "scope": "docs:read"})
	o := f.do(t, req{body: toolCall("updateDocument"), headers: bearer(tok)})
	if o.status != http.StatusForbidden {
		t.Fatalf("status = %d, want 403: %s", o.status, o.body)
	}
	wa := o.set["www-authenticate"]
	// Step-up: the challenge names the scopes the token has and those still
	// needed, so a client that replaces its scope set keeps what it had.
	for _, want := range []string{`error="insufficient_scope"`, `scope="docs:read docs:write"`, `resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/docs/mcp"`} {
		if !strings.Contains(wa, want) {
			t.Errorf("WWW-Authenticate %q lacks %s", wa, want)
		}
	}
	if !strings.Contains(o.body, "docs:write") {
		t.Errorf("body does not name the scope: %s", o.body)
	}
}

func TestCheckRequestRefusals(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "a", "roles": []string{"admin"}, "scope": "docs:read docs:write docs:admin"})
	h := func(extra map[string]string) map[string]string {
		m := bearer(tok)
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name   string
		r      req
		status int
		reason string
	}{
		{"unknown server by extension", req{body: toolCall("readDocument"), headers: h(nil), ext: map[string]string{ContextExtensionKey: "nope"}}, 404, "unknown_server"},
		{"no route match", req{path: "/other/mcp", body: toolCall("readDocument"), headers: h(nil), ext: map[string]string{}}, 404, "unknown_server"},
		{"partial body", req{body: toolCall("readDocument"), headers: h(nil), partial: true}, 413, "partial_body"},
		{"token in query", req{path: "/docs/mcp?access_token=abc", body: toolCall("readDocument"), headers: h(nil)}, 400, "token_in_query"},
		{"encoded token in query", req{path: "/docs/mcp?x=1&Access%5Ftoken=abc", body: toolCall("readDocument"), headers: h(nil)}, 400, "token_in_query"},
		{"bad origin", req{body: toolCall("readDocument"), headers: h(map[string]string{"origin": "https://evil.example"})}, 403, "invalid_origin"},
		{"duplicate keys", req{body: `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"readDocument","name":"deleteDocument"}}`, headers: h(nil)}, 400, "duplicate_key"},
		{"batch on 2025-06-18", req{body: "[" + toolCall("readDocument") + "]", headers: h(nil)}, 400, "batch_not_allowed"},
		{"header body mismatch", req{body: toolCall("deleteDocument"), headers: h(map[string]string{"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "readDocument"})}, 400, "header_mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := f.svc.Check(context.Background(), tt.r.check())
			if err != nil {
				t.Fatal(err)
			}
			o := decode(t, resp)
			if o.status != tt.status {
				t.Fatalf("status = %d, want %d: %s", o.status, tt.status, o.body)
			}
			if !json.Valid([]byte(o.body)) || !strings.Contains(o.body, `"jsonrpc":"2.0"`) {
				t.Errorf("body is not a JSON-RPC error: %s", o.body)
			}
		})
	}
}

func TestCheckBatchHidingForbiddenCall(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": "docs:read docs:write docs:admin"})
	body := `[` + toolCall("readDocument") + `,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deleteDocument","arguments":{"id":"d1"}}}]`
	o := f.do(t, req{body: body, headers: map[string]string{"authorization": "Bearer " + tok, "mcp-protocol-version": "2025-03-26"}})
	if o.status != http.StatusForbidden || !strings.Contains(o.body, "batch element 1") || !strings.Contains(o.body, `"id":2`) {
		t.Fatalf("status %d body %s", o.status, o.body)
	}
	ok := f.do(t, req{body: `[` + toolCall("readDocument") + `]`, headers: map[string]string{"authorization": "Bearer " + tok, "mcp-protocol-version": "2025-03-26"}})
	if !ok.allowed {
		t.Fatalf("an all-allowed batch was denied: %s", ok.body)
	}
}

func TestCheckStripsSpoofedIdentity(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": "docs:read"})
	o := f.do(t, req{body: toolCall("readDocument"), headers: map[string]string{
		"authorization": "Bearer " + tok, "x-mcp-subject": "root", "x-mcp-kind": "human", "x-mcp-role": "admin", "x-user-id": "root",
	}})
	if !o.allowed {
		t.Fatalf("denied: %s", o.body)
	}
	if o.set["x-mcp-subject"] != "dev/v" || o.set["x-mcp-kind"] != "human" {
		t.Errorf("verified identity not set: %v", o.set)
	}
	for _, h := range []string{"x-mcp-role", "x-user-id"} {
		if !o.remove[h] {
			t.Errorf("client header %s not removed (remove=%v)", h, o.remove)
		}
	}
	if o.remove["authorization"] {
		t.Errorf("authorization both set and removed; the credential would be lost")
	}
	if o.set["authorization"] == "Bearer "+tok {
		t.Fatal("client token forwarded upstream")
	}
}

func TestCheckPublicServerRemovesClientToken(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "v", "aud": ticketsResource, "roles": []string{"viewer"}, "scope": "docs:read"})
	o := f.do(t, req{path: "/tickets/mcp", ext: map[string]string{}, body: toolCall("readDocument"), headers: bearer(tok)})
	if !o.allowed {
		t.Fatalf("denied: %d %s", o.status, o.body)
	}
	if !o.remove["authorization"] {
		t.Errorf("client Authorization not removed for a public upstream: %v", o.remove)
	}
	if _, set := o.set["authorization"]; set {
		t.Errorf("public mode set an authorization header")
	}
}

func TestCheckSessionBinding(t *testing.T) {
	f := newFixture(t)
	alice := f.token(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}, "scope": "docs:read"})
	mallory := f.token(t, map[string]any{"sub": "mallory", "roles": []string{"viewer"}, "scope": "docs:read"})
	hdr := func(tok string) map[string]string {
		return map[string]string{"authorization": "Bearer " + tok, "mcp-session-id": "sess-42"}
	}
	if o := f.do(t, req{body: toolCall("readDocument"), headers: hdr(alice)}); !o.allowed {
		t.Fatalf("alice denied on her session: %s", o.body)
	}
	if o := f.do(t, req{body: toolCall("readDocument"), headers: hdr(alice)}); !o.allowed {
		t.Fatalf("alice denied on second use: %s", o.body)
	}
	o := f.do(t, req{body: toolCall("readDocument"), headers: hdr(mallory)})
	if o.status != http.StatusForbidden || !strings.Contains(o.body, "another principal") {
		t.Fatalf("mallory reused alice's session: %d %s", o.status, o.body)
	}
	if !strings.Contains(o.body, `"id":1`) {
		t.Errorf("the denial does not echo the request id (MCP clients need it): %s", o.body)
	}
	// Legacy HTTP+SSE: the sessionId query parameter is bound the same way.
	legacy := func(tok string) req {
		return req{path: "/docs/messages?sessionId=legacy-1", body: toolCall("readDocument"),
			headers: map[string]string{"authorization": "Bearer " + tok, "mcp-protocol-version": ""}}
	}
	if o := f.do(t, legacy(alice)); !o.allowed {
		t.Fatalf("legacy alice denied: %s", o.body)
	}
	if o := f.do(t, legacy(mallory)); o.allowed {
		t.Fatal("mallory reused alice's legacy sessionId")
	}
}

func TestCheckMetadataPathWithoutToken(t *testing.T) {
	f := newFixture(t)
	o := f.do(t, req{method: "GET", path: "/.well-known/oauth-protected-resource/docs/mcp"})
	if !o.allowed {
		t.Fatalf("metadata path denied: %d", o.status)
	}
	if o := f.do(t, req{method: "GET", path: "/docs/mcp"}); o.status != 401 {
		t.Fatalf("GET stream without token: status %d", o.status)
	}
}

func TestCheckSPIFFEAgent(t *testing.T) {
	f := newFixture(t)
	o := f.do(t, req{body: toolCall("readDocument"), principal: "spiffe://agents.example.org/ns/prod/sa/summarizer"})
	if !o.allowed || o.set["x-mcp-kind"] != "agent" || o.set["x-mcp-subject"] != "spiffe://agents.example.org/ns/prod/sa/summarizer" {
		t.Fatalf("SPIFFE agent: %+v", o)
	}
	if o := f.do(t, req{body: toolCall("createDocument"), principal: "spiffe://agents.example.org/ns/prod/sa/summarizer"}); o.allowed {
		t.Fatal("SPIFFE agent allowed a write tool outside the agent allow-list")
	}
	if o := f.do(t, req{body: toolCall("readDocument"), principal: "spiffe://evil.example.org/x"}); o.status != 401 {
		t.Fatalf("untrusted trust domain: status %d", o.status)
	}
}

// failingPolicy proves every internal error denies.
type failingPolicy struct{}

func (failingPolicy) Evaluate(context.Context, *policy.Input) (policy.Decision, error) {
	return policy.Decision{}, errors.New("boom")
}
func (failingPolicy) Status() policy.Status { return policy.Status{Ready: true} }

func TestCheckPolicyErrorDenies(t *testing.T) {
	f := newFixture(t)
	svc, err := NewService(context.Background(), f.svc.cfg, Deps{Policy: failingPolicy{}, Verifier: f.svc.verifier, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	tok := f.token(t, map[string]any{"sub": "a", "roles": []string{"admin"}, "scope": "docs:read"})
	resp, err := svc.Check(context.Background(), req{body: toolCall("readDocument"), headers: bearer(tok)}.check())
	if err != nil {
		t.Fatal(err)
	}
	if o := decode(t, resp); o.allowed || o.status != 403 || !strings.Contains(o.body, "policy failed") {
		t.Fatalf("policy error did not deny: %+v", o)
	}
}

func TestSanitizeHeaderValue(t *testing.T) {
	tests := map[string]string{"alice": "alice", "a\r\nx-evil: 1": "a%0D%0Ax-evil: 1", "é": "%C3%A9", "50%": "50%25"}
	for in, want := range tests {
		if got := sanitizeHeaderValue(in); got != want {
			t.Errorf("sanitizeHeaderValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckDenialCarriesPolicyReason: the client sees the policy's reason in
// the JSON-RPC error, with the request id echoed so MCP SDK sessions survive.
func TestCheckDenialCarriesPolicyReason(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": "docs:read docs:write"})
	o := f.do(t, req{body: `{"jsonrpc":"2.0","id":"call-9","method":"tools/call","params":{"name":"updateDocument","arguments":{}}}`, headers: bearer(tok)})
	var body rpcErrorBody
	if err := json.Unmarshal([]byte(o.body), &body); err != nil {
		t.Fatal(err)
	}
	if o.status != 403 || string(body.ID) != `"call-9"` || body.Error.Message != "access denied: role viewer may not call updateDocument" {
		t.Fatalf("status %d body %s", o.status, o.body)
	}
}

// fixedPolicy returns one decision for every input.
type fixedPolicy struct{ d policy.Decision }

func (p fixedPolicy) Evaluate(context.Context, *policy.Input) (policy.Decision, error) {
	return p.d, nil
}
func (fixedPolicy) Status() policy.Status { return policy.Status{Ready: true} }

// TestCheckOPAEnvoyDecisionShape: an OPA-Envoy style decision's headers,
// request_headers_to_remove and response_headers_to_add are applied, but a
// policy can neither forge identity headers nor replace the credential.
func TestCheckOPAEnvoyDecisionShape(t *testing.T) {
	f := newFixture(t)
	svc, err := NewService(context.Background(), f.svc.cfg, Deps{Verifier: f.svc.verifier, Logger: slog.New(slog.DiscardHandler), Policy: fixedPolicy{policy.Decision{
		Allow:                  true,
		Headers:                map[string]string{"X-Tenant": "acme", "x-mcp-subject": "forged", "Authorization": "Bearer forged"},
		RequestHeadersToRemove: []string{"x-debug"},
		ResponseHeadersToAdd:   map[string]string{"X-Policy": "rbac"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	tok := f.token(t, map[string]any{"sub": "v", "scope": "docs:read"})
	resp, err := svc.Check(context.Background(), req{body: toolCall("readDocument"), headers: map[string]string{"authorization": "Bearer " + tok, "x-debug": "1"}}.check())
	if err != nil {
		t.Fatal(err)
	}
	o := decode(t, resp)
	if !o.allowed || o.set["x-tenant"] != "acme" || o.set["x-mcp-subject"] != "dev/v" || o.set["authorization"] != "Bearer "+upstreamSecret || !o.remove["x-debug"] {
		t.Fatalf("outcome %+v", o)
	}
	rh := resp.GetOkResponse().GetResponseHeadersToAdd()
	if len(rh) != 1 || rh[0].GetHeader().GetKey() != "x-policy" || rh[0].GetHeader().GetValue() != "rbac" {
		t.Fatalf("response headers = %v", rh)
	}
}
