package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/mcpauthz/mcpauthz/e2e/docserver"
)

// rawPost sends one JSON-RPC POST with exactly the header lines given
// (repeats kept), through the front door.
func rawPost(t *testing.T, url string, lines [][2]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for _, l := range lines {
		req.Header.Add(l[0], l[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Two Mcp-Session-Id lines: Envoy joins them with ",", the Go SDK upstream
// reads the first (the victim's). mcpauthz must refuse, not bind the
// joined value as a fresh session.
func TestSessionIDRepeatedHeaderRefused(t *testing.T) {
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
	e.upstream.Reset()
	body := `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"doc-seed"}}}`
	for _, order := range [][2]string{{sid, "mallory-fresh"}, {"mallory-fresh", sid}} {
		status, resp := rawPost(t, e.endpoint, [][2]string{
			{"Authorization", "Bearer " + mallory}, {"MCP-Protocol-Version", "2025-06-18"},
			{"Mcp-Session-Id", order[0]}, {"Mcp-Session-Id", order[1]},
		}, body)
		if status != http.StatusBadRequest || !strings.Contains(resp, "Mcp-Session-Id") {
			t.Fatalf("two session lines %v: status %d body %s", order, status, resp)
		}
	}
	if n := len(e.upstream.Received()); n != 0 {
		t.Fatalf("upstream received %d requests carrying an ambiguous session id", n)
	}
	e.upstream.Put(docserver.Document{ID: "doc-seed"})
	if res, err := c.CallTool(ctx, "readDocument", toolArgs("readDocument")); err != nil || res.IsError {
		t.Fatalf("alice's session broken: %v %v", res, err)
	}
}

// Legacy HTTP+SSE ids: the same id under another SDK's parameter name or
// percent-encoded is the same session and stays alice's.
func TestLegacySessionIDSpellingsBound(t *testing.T) {
	e := newEnv(t)
	alice := e.token(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}})
	mallory := e.token(t, map[string]any{"sub": "mallory", "roles": []string{"viewer"}})
	body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"doc-1"}}}`
	base := e.base + "/docs/messages?"
	if status, resp := rawPost(t, base+"sessionId=leg-1", [][2]string{{"Authorization", "Bearer " + alice}}, body); status == http.StatusForbidden || status == http.StatusBadRequest {
		t.Fatalf("alice on her legacy session: %d %s", status, resp)
	}
	e.upstream.Reset()
	for _, q := range []string{"sessionid=leg-1", "session_id=leg-1", "sessionId=leg%2D1", "SessionID=leg-1"} {
		status, resp := rawPost(t, base+q, [][2]string{{"Authorization", "Bearer " + mallory}}, body)
		if status != http.StatusForbidden || !strings.Contains(resp, "another principal") {
			t.Errorf("%s: status %d body %s", q, status, resp)
		}
	}
	for _, q := range []string{"sessionId=mine&sessionid=leg-1", "sessionId=mine&sessionId=leg-1"} {
		if status, resp := rawPost(t, base+q, [][2]string{{"Authorization", "Bearer " + mallory}}, body); status != http.StatusBadRequest {
			t.Errorf("%s: status %d body %s", q, status, resp)
		}
	}
	if n := len(e.upstream.Received()); n != 0 {
		t.Fatalf("upstream received %d of mallory's requests", n)
	}
}

// A comma inside a claim cannot make the upstream read two subjects or
// forge an actor chain entry.
func TestCommaInClaimsCannotForgeIdentity(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	tok := e.token(t, map[string]any{"sub": "alice,root", "roles": []string{"viewer"},
		"act": map[string]any{"sub": "bot,admin", "act": map[string]any{"sub": "planner,root"}}})
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.endpoint, Token: tok, ProtocolVersion: "2025-06-18"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e.upstream.Put(docserver.Document{ID: "doc-seed"})
	e.upstream.Reset()
	if _, err := c.CallTool(ctx, "readDocument", toolArgs("readDocument")); err != nil {
		t.Fatal(err)
	}
	calls := e.upstream.ToolCalls()
	if len(calls) != 1 {
		t.Fatalf("upstream got %d tool calls", len(calls))
	}
	h := calls[0].Header
	for name, want := range map[string]string{
		"X-Mcp-Subject": "dev/alice%2Croot", "X-Mcp-Actor": "dev/bot%2Cadmin", "X-Mcp-Actor-Chain": "dev/planner%2Croot",
	} {
		if v := h.Values(name); len(v) != 1 || v[0] != want {
			t.Errorf("upstream %s = %q, want exactly %q", name, v, want)
		}
	}
}

// An operator who sets allowed_headers on the ext_authz filter hides the
// client's x-mcp-* copies from mcpauthz, while Envoy still forwards them:
// mcpauthz must remove every identity header it does not set anyway.
func TestHiddenIdentityHeadersStillStripped(t *testing.T) {
	if os.Getenv("ENVOY_BIN") != "" {
		t.Skip("allowed_headers is modelled by the stand-in; the rendered bootstrap never sets it")
	}
	e := newEnvWith(t, envOptions{allowedHeaders: []string{"content-type", "mcp-protocol-version", "mcp-session-id", "accept"}})
	ctx := ctxT(t)
	tok := e.token(t, map[string]any{"sub": "vera", "roles": []string{"viewer"}})
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.endpoint, Token: tok, ProtocolVersion: "2025-06-18",
		ExtraHeaders: map[string]string{"X-Mcp-Actor": "root-agent", "X-Mcp-Actor-Chain": "a,b", "X-Mcp-Attribution": "forged", "X-User-Id": "root"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	e.upstream.Put(docserver.Document{ID: "doc-seed"})
	e.upstream.Reset()
	if res, err := c.CallTool(ctx, "readDocument", toolArgs("readDocument")); err != nil || res.IsError {
		t.Fatalf("read: %v %v", res, err)
	}
	calls := e.upstream.ToolCalls()
	if len(calls) != 1 {
		t.Fatalf("upstream got %d tool calls", len(calls))
	}
	h := calls[0].Header
	for _, name := range []string{"X-Mcp-Actor", "X-Mcp-Actor-Chain", "X-Mcp-Attribution", "X-User-Id"} {
		if v := h.Values(name); len(v) != 0 {
			t.Errorf("client's %s reached the upstream: %q", name, v)
		}
	}
	if v := h.Values("X-Mcp-Subject"); len(v) != 1 || v[0] != "dev/vera" {
		t.Errorf("X-Mcp-Subject = %q", v)
	}
}
