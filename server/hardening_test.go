package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"hash/maphash"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// These tests reproduce the ways around session binding, routing and
// header stripping an outside review found, and show each refused.

func TestSessionIDAmbiguityRefused(t *testing.T) {
	f := newFixture(t)
	alice := f.token(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}, "scope": "docs:read"})
	mallory := f.token(t, map[string]any{"sub": "mallory", "roles": []string{"viewer"}, "scope": "docs:read"})
	with := func(tok string, h map[string]string) map[string]string {
		out := map[string]string{"authorization": "Bearer " + tok}
		for k, v := range h {
			out[k] = v
		}
		return out
	}
	legacy := func(tok, query string) req {
		return req{path: "/docs/messages?" + query, body: toolCall("readDocument"),
			headers: with(tok, map[string]string{"mcp-protocol-version": ""})}
	}
	// alice owns "sess-a" (header) and "leg-1" (legacy query).
	if o := f.do(t, req{body: toolCall("readDocument"), headers: with(alice, map[string]string{"mcp-session-id": "sess-a"})}); !o.allowed {
		t.Fatalf("alice denied: %s", o.body)
	}
	if o := f.do(t, legacy(alice, "sessionId=leg-1")); !o.allowed {
		t.Fatalf("alice legacy denied: %s", o.body)
	}
	tests := []struct {
		name   string
		r      req
		status int
		reason string
	}{
		// Envoy joins two Mcp-Session-Id lines with ","; the SDK reads the first.
		{"two header lines joined", req{body: toolCall("readDocument"), headers: with(mallory, map[string]string{"mcp-session-id": "sess-a,fresh"})}, 400, "ambiguous_session_id"},
		{"fresh first, victim second", req{body: toolCall("readDocument"), headers: with(mallory, map[string]string{"mcp-session-id": "fresh,sess-a"})}, 400, "ambiguous_session_id"},
		{"empty header", req{body: toolCall("readDocument"), headers: with(mallory, map[string]string{"mcp-session-id": " "})}, 400, "ambiguous_session_id"},
		{"non-ASCII header", req{body: toolCall("readDocument"), headers: with(mallory, map[string]string{"mcp-session-id": "sess-é"})}, 400, "ambiguous_session_id"},
		{"header and query", req{path: "/docs/mcp?sessionId=leg-1", body: toolCall("readDocument"), headers: with(mallory, map[string]string{"mcp-session-id": "x"})}, 400, "ambiguous_session_id"},
		// Legacy ids under every name, after percent-decoding, are the same session.
		{"renamed sessionid", legacy(mallory, "sessionid=leg-1"), 403, "session_bound_to_other_principal"},
		{"renamed session_id", legacy(mallory, "session_id=leg-1"), 403, "session_bound_to_other_principal"},
		{"case-variant name", legacy(mallory, "SESSIONID=leg-1"), 403, "session_bound_to_other_principal"},
		{"percent-encoded value", legacy(mallory, "sessionId=leg%2D1"), 403, "session_bound_to_other_principal"},
		{"percent-encoded name", legacy(mallory, "session%49d=leg-1"), 403, "session_bound_to_other_principal"},
		{"repeated parameter", legacy(mallory, "sessionId=mine&sessionId=leg-1"), 400, "ambiguous_session_id"},
		{"two names", legacy(mallory, "sessionId=mine&session_id=leg-1"), 400, "ambiguous_session_id"},
		{"plus decodes to space", legacy(mallory, "sessionId=leg+1"), 400, "ambiguous_session_id"},
		{"bad percent-encoding in a name", legacy(mallory, "sess%ZZ=1&sessionId=mine"), 400, "ambiguous_session_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, reason := f.doReason(t, tc.r)
			if o.allowed || o.status != tc.status || reason != tc.reason {
				t.Fatalf("got allowed=%v %d (%s), want %d %s: %s", o.allowed, o.status, reason, tc.status, tc.reason, o.body)
			}
		})
	}
	// alice still owns her sessions under every spelling.
	if o := f.do(t, legacy(alice, "session_id=leg%2D1")); !o.allowed {
		t.Fatalf("alice refused on her own session spelled differently: %s", o.body)
	}
}

// doReason runs one Check and returns its outcome and decision reason.
func (f *fixture) doReason(t testing.TB, r req) (outcome, string) {
	t.Helper()
	rec := &record{}
	return decode(t, f.svc.check(context.Background(), r.check(), rec)), rec.Reason
}

func TestSessionBindingCoversAnonymous(t *testing.T) {
	f := newFixtureWith(t, func(c *config.Config) { c.Servers[1].AllowAnonymous = true })
	alice := f.token(t, map[string]any{"sub": "alice", "aud": ticketsResource, "roles": []string{"viewer"}, "scope": "docs:read"})
	at := func(h map[string]string) req {
		return req{path: "/tickets/mcp", ext: map[string]string{ContextExtensionKey: "tickets"}, body: toolCall("readDocument"), headers: h}
	}
	// An anonymous client's session cannot be taken over by a principal.
	f.do(t, at(map[string]string{"mcp-session-id": "anon-1"}))
	if o := f.do(t, at(map[string]string{"mcp-session-id": "anon-1", "authorization": "Bearer " + alice})); o.status != http.StatusForbidden || !strings.Contains(o.body, "another principal") {
		t.Fatalf("principal took over an anonymous session: %d %s", o.status, o.body)
	}
	// An anonymous client cannot ride a principal's session.
	if o := f.do(t, at(map[string]string{"mcp-session-id": "alice-1", "authorization": "Bearer " + alice})); !o.allowed {
		t.Fatalf("alice denied: %d %s", o.status, o.body)
	}
	if o := f.do(t, at(map[string]string{"mcp-session-id": "alice-1"})); o.status != http.StatusForbidden || !strings.Contains(o.body, "another principal") {
		t.Fatalf("anonymous client rode alice's session: %d %s", o.status, o.body)
	}
}

func TestSessionFloodRefusedNotEvicted(t *testing.T) {
	f := newFixtureWith(t, func(c *config.Config) { c.MCP.MaxSessionsPerPrincipal = 5 })
	alice := f.token(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}, "scope": "docs:read"})
	mallory := f.token(t, map[string]any{"sub": "mallory", "roles": []string{"viewer"}, "scope": "docs:read"})
	sess := func(tok, id string) outcome {
		return f.do(t, req{body: toolCall("readDocument"), headers: map[string]string{"authorization": "Bearer " + tok, "mcp-session-id": id}})
	}
	if o := sess(alice, "alice-live"); !o.allowed {
		t.Fatalf("alice denied: %s", o.body)
	}
	for i := range 5 {
		if o := sess(mallory, "flood-"+string(rune('a'+i))); !o.allowed {
			t.Fatalf("mallory's session %d refused below the quota: %s", i, o.body)
		}
	}
	if o := sess(mallory, "flood-z"); o.status != http.StatusTooManyRequests {
		t.Fatalf("6th session of one principal: got %d %s, want 429", o.status, o.body)
	}
	if o := sess(mallory, "alice-live"); o.status != http.StatusForbidden {
		t.Fatalf("flooding let mallory take alice's live session: %d", o.status)
	}
	if o := sess(alice, "alice-2"); !o.allowed {
		t.Fatalf("another principal refused because of mallory's flood: %s", o.body)
	}
}

func TestMemSessionsExpiryAndCapacity(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	st := newMemSessions(time.Hour, 64*16, 2, 3) // 16 per shard
	a, b := sessionOwner{key: "a"}, sessionOwner{key: "b"}
	if err := st.Bind(ctx, "k1", a, now); err != nil {
		t.Fatal(err)
	}
	if err := st.Bind(ctx, "k2", a, now); err != nil {
		t.Fatal(err)
	}
	if err := st.Bind(ctx, "k3", a, now); !errors.Is(err, errSessionQuota) {
		t.Fatalf("quota: %v", err)
	}
	if err := st.Bind(ctx, "k1", b, now.Add(59*time.Minute)); !errors.Is(err, errSessionOwned) {
		t.Fatalf("live binding: %v", err)
	}
	// Expired bindings free the quota and may be bound anew.
	later := now.Add(2 * time.Hour)
	if err := st.Bind(ctx, "k1", b, later); err != nil {
		t.Fatalf("expired binding not reusable: %v", err)
	}
	if err := st.Bind(ctx, "k3", a, later); err != nil {
		t.Fatalf("quota not freed by expiry: %v", err)
	}
	// A full shard refuses rather than evicting a live binding.
	full := newMemSessions(time.Hour, 64*16, 1<<20, 1<<20)
	var keys []string
	for i := 0; len(keys) < 17; i++ {
		k := "s" + string(rune('0'+i%10)) + strings.Repeat("x", i/10)
		if maphash.String(full.seed, k)%uint64(len(full.shards)) == 0 {
			keys = append(keys, k)
		}
	}
	for i, k := range keys[:16] {
		if err := full.Bind(ctx, k, sessionOwner{key: "o" + string(rune('a'+i))}, now); err != nil {
			t.Fatalf("bind %d: %v", i, err)
		}
	}
	if err := full.Bind(ctx, keys[16], sessionOwner{key: "new"}, now); !errors.Is(err, errSessionsFull) {
		t.Fatalf("full shard: %v, want errSessionsFull", err)
	}
	if err := full.Bind(ctx, keys[0], sessionOwner{key: "new"}, now); !errors.Is(err, errSessionOwned) {
		t.Fatalf("a live binding was evicted: %v", err)
	}
}

func TestRouteFallbackBoundaries(t *testing.T) {
	mk := func(id, host, prefix string) *mcpServer {
		return &mcpServer{id: id, cfg: config.Server{ID: id, Match: config.Match{Host: config.CanonicalHost(host, ""), PathPrefix: prefix}}}
	}
	c := &catalog{byID: map[string]*mcpServer{}}
	for _, s := range []*mcpServer{mk("docs", "", "/docs/mcp"), mk("api", "Api.Example.com:443", "/v1/"), mk("plain", "plain.example.com:8443", "")} {
		c.byID[s.id] = s
		c.ordered = append(c.ordered, s)
	}
	tests := []struct {
		scheme, host, path, want string
	}{
		{"https", "x", "/docs/mcp", "docs"},
		{"https", "x", "/docs/mcp/", "docs"},
		{"https", "x", "/docs/mcp/messages", "docs"},
		{"https", "x", "/docs/mcp-evil", ""},
		{"https", "x", "/docs/mcpx", ""},
		{"https", "x", "/docs/MCP", ""},
		{"https", "x", "/docs", ""},
		{"https", "api.example.com", "/v1/mcp", "api"},
		{"https", "API.EXAMPLE.COM", "/v1/mcp", "api"},
		{"https", "api.example.com:443", "/v1/mcp", "api"},
		{"http", "api.example.com:443", "/v1/mcp", ""},
		{"https", "api.example.com:8443", "/v1/mcp", ""},
		{"https", "api.example.com.evil", "/v1/mcp", ""},
		{"https", "api.example.com", "/v1", ""},
		{"https", "plain.example.com:8443", "/anything", "plain"},
		{"https", "plain.example.com", "/anything", ""},
	}
	for _, tc := range tests {
		got := ""
		if s := c.route(nil, tc.scheme, tc.host, tc.path); s != nil {
			got = s.id
		}
		if got != tc.want {
			t.Errorf("route(%s://%s%s) = %q, want %q", tc.scheme, tc.host, tc.path, got, tc.want)
		}
	}
	// The route's context extension wins and is never re-routed.
	if s := c.route(map[string]string{ContextExtensionKey: "nope"}, "https", "x", "/docs/mcp"); s != nil {
		t.Errorf("unknown context extension re-routed to %s", s.id)
	}
}

func TestCheckRoutingFallbackThroughCheck(t *testing.T) {
	f := newFixtureWith(t, func(c *config.Config) {
		c.Servers[0].Match = config.Match{Host: config.CanonicalHost("MCP.Example.com:443", ""), PathPrefix: "/docs/mcp"}
	})
	tok := f.token(t, map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": "docs:read"})
	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/docs/mcp", 200}, {"/docs/mcp?x=1", 200}, {"/docs/mcp/sub", 200},
		{"/docs/mcp-evil", 404}, {"/docs/mcp/../admin", 400}, {"/docs//mcp", 400},
		{"/docs/mcp/%2e%2e/admin", 400}, {"/docs/mcp%2fx", 400}, {"/docs\\mcp", 400},
	} {
		o := f.do(t, req{path: tc.path, ext: map[string]string{}, body: toolCall("readDocument"), headers: bearer(tok)})
		if o.status != tc.status {
			t.Errorf("%s: got %d, want %d (%s)", tc.path, o.status, tc.status, o.body)
		}
	}
}

func TestCheckRemovesEveryIdentityHeaderItDoesNotSet(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "v", "aud": ticketsResource, "roles": []string{"viewer"}, "scope": "docs:read"})
	// The client's x-mcp-* copies are NOT in the CheckRequest (hidden by
	// allowed_headers), yet Envoy would forward them: remove them anyway.
	o := f.do(t, req{path: "/tickets/mcp", ext: map[string]string{ContextExtensionKey: "tickets"}, body: toolCall("readDocument"), headers: bearer(tok)})
	if !o.allowed {
		t.Fatalf("denied: %d %s", o.status, o.body)
	}
	for _, h := range []string{"x-mcp-actor", "x-mcp-actor-chain", "x-mcp-attribution", "x-user-id", "authorization", "proxy-authorization"} {
		if !o.remove[h] {
			t.Errorf("%s not in headers_to_remove: %v", h, o.remove)
		}
	}
	for h := range o.set {
		if o.remove[h] {
			t.Errorf("%s both set and removed", h)
		}
	}
}

func TestActorChainCannotBeForged(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}, "scope": "docs:read",
		"act": map[string]any{"sub": "bot,admin-bot", "act": map[string]any{"sub": "planner,root"}}})
	o := f.do(t, req{body: toolCall("readDocument"), headers: bearer(tok)})
	if !o.allowed {
		t.Fatalf("denied: %s", o.body)
	}
	if a := o.set["x-mcp-actor"]; strings.Contains(a, ",") || !strings.Contains(a, "%2C") {
		t.Errorf("actor header %q carries a raw separator", a)
	}
	chain := strings.Split(o.set["x-mcp-actor-chain"], ",")
	if len(chain) != 1 || !strings.Contains(chain[0], "planner%2Croot") {
		t.Errorf("actor chain %q: a comma in a claim forged an entry", o.set["x-mcp-actor-chain"])
	}
}

func TestCheckParamHeadersMustMatchBody(t *testing.T) {
	f := newFixture(t)
	tok := f.token(t, map[string]any{"sub": "v", "roles": []string{"viewer"}, "scope": "docs:read"})
	h := func(v string) map[string]string {
		return map[string]string{"authorization": "Bearer " + tok, "mcp-param-id": v}
	}
	if o := f.do(t, req{body: toolCall("readDocument"), headers: h("d1")}); !o.allowed {
		t.Fatalf("matching mirror refused: %s", o.body)
	}
	o := f.do(t, req{body: toolCall("readDocument"), headers: h("d2")})
	if o.status != 400 || !strings.Contains(o.body, "-32020") {
		t.Fatalf("mismatching Mcp-Param-Id: %d %s", o.status, o.body)
	}
}

// With mcp.session_store: shared, a session bound on one replica is
// refused to another principal on every replica sharing the store.
func TestSharedSessionsHoldAcrossReplicas(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "k1")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := func(c *config.Config) {
		c.MCP.SessionStore = "shared"
		c.MCP.MaxSessionsPerPrincipal = 3
		c.Store = store.Config{Driver: "sqlite", Path: filepath.Join(dir, "state.db"),
			Encryption: store.Encryption{Keys: []store.KeyConfig{{ID: "k1", Secret: secret.Ref{File: keyFile}}}}}
	}
	r1 := newFixtureWith(t, shared)
	r2 := newFixtureWith(t, func(c *config.Config) {
		shared(c)
		c.Identity.Issuers[0].Issuer = r1.idp.URL() // both replicas trust the same IdP
	})
	alice := r1.token(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}, "scope": "docs:read"})
	mallory := r1.token(t, map[string]any{"sub": "mallory", "roles": []string{"viewer"}, "scope": "docs:read"})
	call := func(f *fixture, tok, sid string) outcome {
		return f.do(t, req{body: toolCall("readDocument"), headers: map[string]string{"authorization": "Bearer " + tok, "mcp-session-id": sid}})
	}
	if o := call(r1, alice, "s-1"); !o.allowed {
		t.Fatalf("alice on replica 1: %d %s", o.status, o.body)
	}
	if o := call(r2, mallory, "s-1"); o.status != http.StatusForbidden {
		t.Fatalf("mallory took alice's session on replica 2: %d %s", o.status, o.body)
	}
	if o := call(r2, alice, "s-1"); !o.allowed {
		t.Fatalf("alice on replica 2: %d %s", o.status, o.body)
	}
	// The per-principal quota counts sessions on every replica.
	call(r1, mallory, "m-1")
	call(r2, mallory, "m-2")
	call(r1, mallory, "m-3")
	if o := call(r2, mallory, "m-4"); o.status != http.StatusTooManyRequests {
		t.Fatalf("4th session across replicas: %d, want 429", o.status)
	}
}

func TestBareMetadataPathPerHost(t *testing.T) {
	mk := func(id, res string) *mcpServer {
		return &mcpServer{id: id, cfg: config.Server{ID: id, Resource: res}, metadataPath: "/.well-known/oauth-protected-resource/" + id}
	}
	c := &catalog{ordered: []*mcpServer{mk("a", "https://one.example.com/a"), mk("b", "https://two.example.com/b"), mk("c", "https://two.example.com/c")}}
	const bare = "/.well-known/oauth-protected-resource"
	if s := c.byMetadataPath("One.Example.com:443", bare); s == nil || s.id != "a" {
		t.Fatalf("the only resource on its host: %v", s)
	}
	if s := c.byMetadataPath("two.example.com", bare); s != nil {
		t.Fatalf("two resources on a host must not pick one: %s", s.id)
	}
	if s := c.byMetadataPath("three.example.com", bare); s != nil {
		t.Fatalf("no resource on the host: %s", s.id)
	}
}
