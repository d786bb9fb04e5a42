package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
)

var allTools = []string{"createDocument", "readDocument", "updateDocument", "deleteDocument", "shareDocument"}

func toolArgs(tool string) map[string]any {
	switch tool {
	case "createDocument":
		return map[string]any{"title": "plan", "content": "v1"}
	case "updateDocument":
		return map[string]any{"id": "doc-seed", "content": "v2"}
	case "shareDocument":
		return map[string]any{"id": "doc-seed", "with": "bob"}
	default:
		return map[string]any{"id": "doc-seed"}
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRolesPerTool: viewer/editor/admin, an agent acting for a viewer and an
// agent alone, each calling every tool through the SDK client. For every
// allowed call the upstream must have received the service-account
// credential and the verified attribution, never the client's token.
func TestRolesPerTool(t *testing.T) {
	e := newEnv(t)
	type who struct {
		name    string
		claims  map[string]any
		allowed []string
		kind    string
		actor   string
	}
	people := []who{
		{"viewer", map[string]any{"sub": "vera", "roles": []string{"viewer"}}, []string{"readDocument"}, "human", ""},
		{"editor", map[string]any{"sub": "eddie", "roles": []string{"editor"}}, []string{"createDocument", "readDocument", "updateDocument"}, "human", ""},
		{"admin", map[string]any{"sub": "ada", "roles": []string{"admin"}}, allTools, "human", ""},
		{"agent for viewer", map[string]any{"sub": "vera", "roles": []string{"viewer"}, "act": map[string]any{"sub": "summarizer-agent"}}, []string{"readDocument"}, "agent_for_user", "summarizer-agent"},
		{"agent for admin (never destructive)", map[string]any{"sub": "ada", "roles": []string{"admin"}, "act": map[string]any{"sub": "summarizer-agent"}}, []string{"createDocument", "readDocument", "updateDocument"}, "agent_for_user", "summarizer-agent"},
		{"agent alone", map[string]any{"sub": "summarizer-agent", "client_id": "summarizer-agent", "roles": []string{"admin"}}, []string{"readDocument"}, "agent", ""},
	}
	for _, p := range people {
		for _, proto := range []string{"", "2025-06-18"} { // SDK default (2026-07-28) and a session-based version
			t.Run(p.name+"/"+orLatest(proto), func(t *testing.T) {
				ctx := ctxT(t)
				e.upstream.Put(docserver.Document{ID: "doc-seed", Title: "seed", Content: "v0"})
				tok := e.token(t, p.claims)
				c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.endpoint, Token: tok, ProtocolVersion: proto})
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer c.Close()
				for _, tool := range allTools {
					e.upstream.Put(docserver.Document{ID: "doc-seed", Title: "seed", Content: "v0"})
					e.upstream.Reset()
					want := slices.Contains(p.allowed, tool)
					res, err := c.CallTool(ctx, tool, toolArgs(tool))
					calls := e.upstream.ToolCalls()
					if !want {
						var he *docserver.HTTPError
						if !errors.As(err, &he) || he.Status != http.StatusForbidden {
							t.Errorf("%s: want HTTP 403, got res=%v err=%v", tool, res, err)
						}
						if len(calls) != 0 {
							t.Errorf("%s: denied call reached the upstream: %+v", tool, calls)
						}
						continue
					}
					if err != nil || res.IsError {
						t.Errorf("%s: want success, got res=%+v err=%v", tool, res, err)
						continue
					}
					if len(calls) != 1 || calls[0].Tool != tool {
						t.Fatalf("%s: upstream saw %+v", tool, calls)
					}
					h := calls[0].Header
					if got := h.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+saSecret {
						t.Errorf("%s: upstream Authorization = %q, want only the service account", tool, got)
					}
					actor := p.actor
					if actor != "" {
						actor = "dev/" + actor // qualified by the issuer's user namespace
					}
					wantHdr := map[string]string{"X-Mcp-Subject": "dev/" + p.claims["sub"].(string), "X-Mcp-Kind": p.kind, "X-Mcp-Actor": actor, "X-Mcp-Server": "docs", "X-Mcp-Org": "acme"}
					for k, v := range wantHdr {
						if got := h.Values(k); (v == "" && len(got) != 0) || (v != "" && (len(got) != 1 || got[0] != v)) {
							t.Errorf("%s: upstream %s = %q, want %q", tool, k, got, v)
						}
					}
					if h.Get("X-Mcp-Decision-Id") == "" {
						t.Errorf("%s: no decision id upstream", tool)
					}
					assertNoToken(t, e.upstream.Received(), tok)
				}
			})
		}
	}
}

func orLatest(p string) string {
	if p == "" {
		return "sdk-default"
	}
	return p
}

// assertNoToken fails if any header value the upstream received carries the
// client's token.
func assertNoToken(t *testing.T, recs []docserver.Received, tok string) {
	t.Helper()
	for _, r := range recs {
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.Contains(v, tok) || strings.Contains(v, tok[len(tok)-20:]) {
					t.Fatalf("client token reached the upstream in header %s", k)
				}
			}
		}
	}
}

// TestRejectedTokens: every bad token is stopped with 401 and an RFC 6750 /
// RFC 9728 challenge, and nothing reaches the upstream.
func TestRejectedTokens(t *testing.T) {
	e := newEnv(t)
	other, err := devidp.New(devidp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	viewer := map[string]any{"sub": "vera", "roles": []string{"viewer"}, "aud": e.resource, "scope": "docs:read"}
	md := `resource_metadata="` + e.base + `/.well-known/oauth-protected-resource/docs/mcp"`
	tests := []struct {
		name     string
		token    string
		errParam bool
	}{
		{"missing", "", false},
		{"expired", e.token(t, viewer, devidp.WithExpiry(-10*time.Minute)), true},
		{"wrong audience", e.token(t, map[string]any{"sub": "vera", "aud": "http://127.0.0.1:1/other/mcp"}), true},
		{"wrong issuer", other.MustMint(viewer), true},
		{"alg none", e.idp.MintNone(viewer), true},
		{"hs256 keyed with the public key", e.idp.MintHS256WithPublicKey(viewer), true},
		{"garbage", "not-a-jwt", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.upstream.Reset()
			_, err := docserver.Connect(ctxT(t), docserver.ClientOptions{Endpoint: e.endpoint, Token: tt.token, ProtocolVersion: "2025-06-18"})
			var he *docserver.HTTPError
			if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
				t.Fatalf("want 401, got %v", err)
			}
			wa := he.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, "Bearer ") || !strings.Contains(wa, md) || !strings.Contains(wa, `scope="docs:read docs:write docs:admin"`) {
				t.Errorf("WWW-Authenticate = %q", wa)
			}
			if got := strings.Contains(wa, `error="invalid_token"`); got != tt.errParam {
				t.Errorf("error=invalid_token present=%v, want %v (%q)", got, tt.errParam, wa)
			}
			if n := len(e.upstream.Received()); n != 0 {
				t.Errorf("upstream received %d requests", n)
			}
		})
	}
	// The challenge's resource_metadata URL is reachable without a token and
	// names exactly this resource (RFC 9728).
	resp, err := http.Get(e.base + "/.well-known/oauth-protected-resource/docs/mcp")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md9728 struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		Scopes               []string `json:"scopes_supported"`
		Bearer               []string `json:"bearer_methods_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md9728); err != nil || resp.StatusCode != 200 {
		t.Fatalf("metadata: status %d err %v", resp.StatusCode, err)
	}
	if md9728.Resource != e.resource || len(md9728.AuthorizationServers) != 1 || md9728.AuthorizationServers[0] != e.idp.URL() ||
		len(md9728.Bearer) != 1 || md9728.Bearer[0] != "header" || len(md9728.Scopes) != 3 {
		t.Errorf("metadata = %+v", md9728)
	}
}

// TestSpoofedIdentityHeaders: identity headers a client sends are stripped;
// the upstream sees only what mcpauthz verified.
func TestSpoofedIdentityHeaders(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.upstream.Put(docserver.Document{ID: "doc-seed", Content: "x"})
	tok := e.token(t, map[string]any{"sub": "vera", "roles": []string{"viewer"}})
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.endpoint, Token: tok, ProtocolVersion: "2025-06-18", ExtraHeaders: map[string]string{
		"X-Mcp-Subject": "root", "X-Mcp-Kind": "human", "X-Mcp-Actor": "nobody", "X-Mcp-Role": "admin", "X-User-Id": "root",
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e.upstream.Reset()
	if res, err := c.CallTool(ctx, "readDocument", toolArgs("readDocument")); err != nil || res.IsError {
		t.Fatalf("read: %v %v", res, err)
	}
	calls := e.upstream.ToolCalls()
	if len(calls) != 1 {
		t.Fatalf("calls = %d", len(calls))
	}
	h := calls[0].Header
	if got := h.Values("X-Mcp-Subject"); len(got) != 1 || got[0] != "dev/vera" {
		t.Errorf("X-Mcp-Subject = %q", got)
	}
	for _, k := range []string{"X-Mcp-Actor", "X-Mcp-Role", "X-User-Id"} {
		if v := h.Values(k); len(v) != 0 {
			t.Errorf("spoofed %s reached upstream: %q", k, v)
		}
	}
	// Denied tools stay denied whatever the client claims.
	if _, err := c.CallTool(ctx, "deleteDocument", toolArgs("deleteDocument")); err == nil {
		t.Error("spoofed admin headers allowed deleteDocument")
	}
}

// TestBodyAttacks: a batch hiding a forbidden call and a header/body
// mismatch never reach the upstream.
func TestBodyAttacks(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, map[string]any{"sub": "vera", "roles": []string{"viewer"}})
	read := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"doc-seed"}}}`
	del := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deleteDocument","arguments":{"id":"doc-seed"}}}`
	base := map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name    string
		headers map[string]string
		body    string
		status  int
		code    int
	}{
		{"batch hiding deleteDocument", with(map[string]string{"MCP-Protocol-Version": "2025-03-26"}), "[" + read + "," + del + "]", 403, -32051},
		{"Mcp-Name says read, body deletes", with(map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "readDocument"}), del, 400, -32020},
		{"base64 Mcp-Name mismatch", with(map[string]string{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "=?base64?cmVhZERvY3VtZW50?="}), del, 400, -32020},
		{"duplicate name key", with(map[string]string{"MCP-Protocol-Version": "2025-06-18"}), `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"readDocument","name":"deleteDocument","arguments":{"id":"doc-seed"}}}`, 400, 0},
		{"case-variant method key", with(map[string]string{"MCP-Protocol-Version": "2025-06-18"}), `{"jsonrpc":"2.0","id":3,"method":"tools/call","Method":"x","params":{"name":"readDocument"}}`, 400, 0},
		{"trailing data", with(map[string]string{"MCP-Protocol-Version": "2025-06-18"}), read + `{"jsonrpc":"2.0"}`, 400, -32700},
		{"batch on 2025-06-18", with(map[string]string{"MCP-Protocol-Version": "2025-06-18"}), "[" + read + "]", 400, 0},
		{"token in query", with(map[string]string{"MCP-Protocol-Version": "2025-06-18"}), read, 400, 0},
		{"foreign origin", with(map[string]string{"MCP-Protocol-Version": "2025-06-18", "Origin": "https://evil.example"}), read, 403, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.upstream.Reset()
			url := e.endpoint
			if tt.name == "token in query" {
				url += "?access_token=" + tok
			}
			status, hdr, body, err := docserver.PostJSONRPC(ctxT(t), http.DefaultClient, url, tt.headers, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.status {
				t.Fatalf("status = %d, want %d: %s", status, tt.status, body)
			}
			var rpc struct {
				JSONRPC string `json:"jsonrpc"`
				Error   struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &rpc); err != nil || rpc.JSONRPC != "2.0" || rpc.Error.Message == "" {
				t.Fatalf("body is not a JSON-RPC error (%s): %s", hdr.Get("Content-Type"), body)
			}
			if tt.code != 0 && rpc.Error.Code != tt.code {
				t.Errorf("code = %d, want %d", rpc.Error.Code, tt.code)
			}
			if n := len(e.upstream.Received()); n != 0 {
				t.Errorf("upstream received %d requests", n)
			}
		})
	}
}

// TestDecisionLog: one line per Check with the fields auditors need and no
// token anywhere.
func TestDecisionLog(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	e.upstream.Put(docserver.Document{ID: "doc-seed"})
	tok := e.token(t, map[string]any{"sub": "vera", "roles": []string{"viewer"}, "act": map[string]any{"sub": "summarizer-agent"}})
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.endpoint, Token: tok, ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.CallTool(ctx, "readDocument", toolArgs("readDocument"))
	_, _ = c.CallTool(ctx, "deleteDocument", toolArgs("deleteDocument"))
	_ = c.Close()
	if err := e.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(e.audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, _ := io.ReadAll(f)
	if strings.Contains(string(raw), tok) || strings.Contains(string(raw), saSecret) || strings.Contains(string(raw), "eyJ") {
		t.Fatal("decision log contains a token or secret")
	}
	var sawAllow, sawDeny bool
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not JSON: %s", line)
		}
		for _, k := range []string{"decision_id", "time", "server", "kind", "allow", "reason", "latency_us", "bundle_revision"} {
			if _, ok := r[k]; !ok && r["server"] == "docs" && r["tool"] != nil {
				t.Errorf("decision log line lacks %s: %s", k, line)
			}
		}
		if r["tool"] == "readDocument" && r["allow"] == true && r["subject"] == "vera" && r["actor"] == "summarizer-agent" {
			sawAllow = true
		}
		if r["tool"] == "deleteDocument" && r["allow"] == false && r["kind"] == "agent_for_user" {
			sawDeny = true
		}
	}
	if !sawAllow || !sawDeny {
		t.Errorf("decision log lacks the allow/deny entries (allow=%v deny=%v):\n%s", sawAllow, sawDeny, raw)
	}
}

// TestSPIFFEAgentOverMTLS: an agent with no token but a SPIFFE client
// certificate is an agent principal: the allow-listed tool works, others
// are denied, an untrusted trust domain is refused, and the upstream sees
// the workload identity.
func TestSPIFFEAgentOverMTLS(t *testing.T) {
	e := newEnvWith(t, envOptions{mtls: true})
	ctx := ctxT(t)
	const agent = "spiffe://agents.example.org/ns/prod/sa/summarizer"
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.endpoint, HTTPClient: e.pki.client(t, agent), ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close()
	e.upstream.Put(docserver.Document{ID: "doc-seed", Content: "x"})
	e.upstream.Reset()
	if res, err := c.CallTool(ctx, "readDocument", toolArgs("readDocument")); err != nil || res.IsError {
		t.Fatalf("read: %v %v", res, err)
	}
	calls := e.upstream.ToolCalls()
	if len(calls) != 1 {
		t.Fatalf("calls = %+v", calls)
	}
	h := calls[0].Header
	if h.Get("X-Mcp-Subject") != agent || h.Get("X-Mcp-Kind") != "agent" || h.Get("Authorization") != "Bearer "+saSecret {
		t.Errorf("upstream headers: subject %q kind %q authorization-is-sa %v", h.Get("X-Mcp-Subject"), h.Get("X-Mcp-Kind"), h.Get("Authorization") == "Bearer "+saSecret)
	}
	var he *docserver.HTTPError
	if _, err := c.CallTool(ctx, "createDocument", toolArgs("createDocument")); !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Errorf("createDocument by an agent: %v", err)
	}
	// Untrusted trust domain and no certificate at all: 401.
	for _, id := range []string{"spiffe://evil.example.org/ns/x/sa/y", ""} {
		_, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.endpoint, HTTPClient: e.pki.client(t, id), ProtocolVersion: "2025-06-18"})
		if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
			t.Errorf("identity %q: want 401, got %v", id, err)
		}
	}
}

// TestSessionHijackRefused: another principal presenting a live session id
// is refused and nothing reaches the upstream.
func TestSessionHijackRefused(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	alice := e.token(t, map[string]any{"sub": "alice", "roles": []string{"admin"}})
	mallory := e.token(t, map[string]any{"sub": "mallory", "roles": []string{"admin"}})
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.endpoint, Token: alice, ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sid := c.Session().ID()
	if sid == "" {
		t.Fatal("no session id")
	}
	e.upstream.Reset()
	body := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"doc-seed"}}}`
	status, _, resp, err := docserver.PostJSONRPC(ctx, http.DefaultClient, e.endpoint, map[string]string{
		"Authorization": "Bearer " + mallory, "Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-06-18",
		"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
	}, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusForbidden || !strings.Contains(string(resp), "another principal") {
		t.Fatalf("hijack: status %d body %s", status, resp)
	}
	if n := len(e.upstream.Received()); n != 0 {
		t.Fatalf("upstream received %d requests from the hijacker", n)
	}
	// Alice's own session still works.
	e.upstream.Put(docserver.Document{ID: "doc-seed"})
	if res, err := c.CallTool(ctx, "readDocument", toolArgs("readDocument")); err != nil || res.IsError {
		t.Fatalf("alice after hijack attempt: %v %v", res, err)
	}
}
