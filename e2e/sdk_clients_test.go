package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Stock MCP clients against mcpauthz, start to finish, through the Envoy
// stand-in: the official TypeScript SDK client (npm, run by Node) and the
// official Go SDK client each sign in with no pasted token (401 -> RFC
// 9728 metadata -> RFC 8414 metadata -> RFC 7591 registration -> login and
// consent forms -> code + PKCE -> token), list tools, make an allowed and a
// denied call on one session, step up to a wider scope, and refresh an
// expired token. The tests also pin down what each SDK surfaces for
// mcpauthz's answers (README "What clients see").

// tsConnect is the result of the driver's connect command.
type tsConnect struct {
	Surfaced        []tsError `json:"surfaced"`
	SessionID       string    `json:"sessionId"`
	ProtocolVersion string    `json:"protocolVersion"`
	Server          string    `json:"server"`
}

// is reports whether the SDK threw an error of class name with code.
func (e tsError) is(name string, code int) bool {
	return e.Name == name && e.Code != nil && *e.Code == code
}

// tsCall is the result of the driver's callTool and callWithHeaders commands.
type tsCall struct {
	OK            bool           `json:"ok"`
	Surfaced      []tsError      `json:"surfaced"`
	IsError       bool           `json:"isError"`
	Structured    map[string]any `json:"structured"`
	SessionBefore string         `json:"sessionBefore"`
	SessionAfter  string         `json:"sessionAfter"`
}

type tsTokens struct {
	Access  string `json:"access_token"`
	Refresh string `json:"refresh_token"`
	Scope   string `json:"scope"`
}

func sdkCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func seedDocs(e *signInEnv) {
	e.upstream.Put(docserver.Document{ID: "doc-1", Title: "plan", Content: "v1"})
}

// rpcBody decodes a JSON-RPC error body.
type rpcBody struct {
	ID    json.RawMessage `json:"id"`
	Error struct {
		Code    int            `json:"code"`
		Message string         `json:"message"`
		Data    map[string]any `json:"data"`
	} `json:"error"`
}

func decodeRPC(t *testing.T, b []byte) rpcBody {
	t.Helper()
	var r rpcBody
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("not a JSON-RPC body: %q", b)
	}
	return r
}

// challengeScope returns the scope parameter of a WWW-Authenticate value.
func challengeScope(ch string) string {
	_, rest, ok := strings.Cut(ch, `scope="`)
	if !ok {
		return ""
	}
	s, _, _ := strings.Cut(rest, `"`)
	return s
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// lastWith returns the last exchange matching f.
func lastWith(xs []exchange, f func(exchange) bool) (exchange, bool) {
	for i := len(xs) - 1; i >= 0; i-- {
		if f(xs[i]) {
			return xs[i], true
		}
	}
	return exchange{}, false
}

func TestSDKTypeScriptClient(t *testing.T) {
	dir := requireTSClient(t)
	e := newSignInEnv(t)
	seedDocs(e)
	ctx := sdkCtx(t)
	as := e.idp.AuthServer()
	b := &browser{user: viewerUser}
	c := startTSClient(t, dir, e.endpoint, b)
	metadataURL := e.base + "/.well-known/oauth-protected-resource/docs/mcp"

	t.Run("viewer signs in, reads, is denied a delete and keeps the session", func(t *testing.T) {
		mark, reg := e.front.len(), as.Requests("/register")
		var conn tsConnect
		c.must(ctx, "connect", nil, &conn)
		t.Logf("connect surfaced %v", conn.Surfaced)
		if len(conn.Surfaced) != 1 || conn.Surfaced[0].Name != "UnauthorizedError" {
			t.Fatalf("connect surfaced %v, want one UnauthorizedError (the SDK sent the user to sign in)", conn.Surfaced)
		}
		if conn.SessionID == "" || conn.Server != "docs" {
			t.Fatalf("connect = %+v", conn)
		}
		if n := as.Requests("/register") - reg; n != 1 {
			t.Errorf("%d dynamic registrations, want 1", n)
		}
		urls := b.opened()
		if len(urls) != 1 {
			t.Fatalf("%d authorization URLs, want 1", len(urls))
		}
		q := urls[0].Query()
		if q.Get("resource") != e.endpoint || q.Get("code_challenge_method") != "S256" || q.Get("scope") != "docs:read docs:write docs:admin" {
			t.Errorf("authorization request %v", q)
		}
		xs := e.front.since(mark)
		first := xs[0]
		if first.RPCMethod != "initialize" || first.Status != http.StatusUnauthorized || first.Token != "" ||
			first.Challenge != `Bearer resource_metadata="`+metadataURL+`", scope="docs:read docs:write docs:admin"` {
			t.Errorf("first exchange %+v", first)
		}
		if _, ok := lastWith(xs, func(x exchange) bool {
			return x.Method == http.MethodGet && x.Path == "/.well-known/oauth-protected-resource/docs/mcp" && x.Status == 200
		}); !ok {
			t.Error("the client never read the RFC 9728 metadata through the front door")
		}

		var tok tsTokens
		c.must(ctx, "tokens", nil, &tok)
		claims := tokenClaims(t, tok.Access)
		if claims["sub"] != viewerUser || claims["aud"] != e.endpoint || claims["iss"] != e.issuer || tok.Refresh == "" {
			t.Errorf("token claims sub=%v aud=%v iss=%v, refresh token %v", claims["sub"], claims["aud"], claims["iss"], tok.Refresh != "")
		}

		var list struct {
			Tools     []string `json:"tools"`
			SessionID string   `json:"sessionId"`
		}
		c.must(ctx, "listTools", nil, &list)
		if !slices.Equal(sorted(list.Tools), sorted(docserver.ToolNames())) {
			t.Errorf("tools/list = %v", list.Tools)
		}

		e.upstream.Reset()
		var read tsCall
		c.must(ctx, "callTool", map[string]any{"name": "readDocument", "args": map[string]any{"id": "doc-1"}}, &read)
		if !read.OK || read.IsError || read.Structured["content"] != "v1" {
			t.Fatalf("readDocument = %+v", read)
		}

		var del tsCall
		c.must(ctx, "callTool", map[string]any{"name": "deleteDocument", "args": map[string]any{"id": "doc-1"}}, &del)
		t.Logf("403 denied surfaced %v", del.Surfaced)
		if del.OK || len(del.Surfaced) != 1 || !del.Surfaced[0].is("StreamableHTTPError", 403) ||
			!strings.HasPrefix(del.Surfaced[0].Message, "Streamable HTTP error: Error POSTing to endpoint: {") {
			t.Fatalf("deleteDocument surfaced %v", del)
		}
		if del.SessionBefore != conn.SessionID || del.SessionAfter != conn.SessionID {
			t.Errorf("session %q -> %q, want %q throughout", del.SessionBefore, del.SessionAfter, conn.SessionID)
		}
		if _, ok := e.upstream.Document("doc-1"); !ok {
			t.Fatal("the denied delete happened")
		}
		var again tsCall
		c.must(ctx, "callTool", map[string]any{"name": "readDocument", "args": map[string]any{"id": "doc-1"}}, &again)
		if !again.OK || again.SessionAfter != conn.SessionID {
			t.Fatalf("read after the denial = %+v", again)
		}
		for _, r := range e.upstream.ToolCalls() {
			if r.Tool != "readDocument" || r.Header.Get("Mcp-Session-Id") != conn.SessionID {
				t.Errorf("upstream tools/call %s on session %q", r.Tool, r.Header.Get("Mcp-Session-Id"))
			}
		}

		// Answers the SDK never provokes itself, through an intermediary
		// rewriting its headers on the same session.
		var ver tsCall
		c.must(ctx, "callWithHeaders", map[string]any{"name": "readDocument", "args": map[string]any{"id": "doc-1"},
			"headers": map[string]string{"mcp-protocol-version": "2099-01-01"}}, &ver)
		t.Logf("400 version error surfaced %v", ver.Surfaced)
		if ver.OK || len(ver.Surfaced) != 1 || !ver.Surfaced[0].is("StreamableHTTPError", 400) ||
			!strings.Contains(ver.Surfaced[0].Message, `"code":-32022`) || !strings.Contains(ver.Surfaced[0].Message, `"requested":"2099-01-01"`) {
			t.Errorf("version error surfaced %v", ver.Surfaced)
		}
		var mism tsCall
		c.must(ctx, "callWithHeaders", map[string]any{"name": "readDocument", "args": map[string]any{"id": "doc-1"},
			"headers": map[string]string{"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "deleteDocument"}}, &mism)
		t.Logf("header mismatch surfaced %v", mism.Surfaced)
		if mism.OK || len(mism.Surfaced) != 1 || !mism.Surfaced[0].is("StreamableHTTPError", 400) || !strings.Contains(mism.Surfaced[0].Message, `"code":-32020`) {
			t.Errorf("header mismatch surfaced %v", mism.Surfaced)
		}

		xs = e.front.since(mark)
		for _, x := range xs {
			if x.Method == http.MethodPost && x.Token != "" && x.RPCMethod != "initialize" && x.SessionID != conn.SessionID {
				t.Errorf("%s %s sent on session %q, want %q", x.RPCMethod, x.Tool, x.SessionID, conn.SessionID)
			}
		}
		denialsEchoIDs(t, xs)
		upstreamClean(t, e.upstream.Received(), viewerUser, []string{tok.Access, tok.Refresh})
		c.must(ctx, "close", nil, nil)
	})

	// Step-up as the SDK designed it: bob (an editor) signed in with
	// docs:read only; updateDocument answers 403 insufficient_scope naming
	// docs:read and docs:write; the SDK starts a new authorization with that
	// scope (UnauthorizedError), the application finishes it and retries
	// the call on the same session. The IdP issues no refresh tokens here,
	// see the next test for why.
	t.Run("editor steps up from docs:read to docs:write", func(t *testing.T) {
		as.SetFault(oauthtest.FaultNoRefreshToken)
		defer as.SetFault(oauthtest.FaultNone)
		b.setUser(editorUser)
		c.must(ctx, "reset", map[string]any{"firstScope": "docs:read"}, nil)
		var conn tsConnect
		c.must(ctx, "connect", nil, &conn)
		var tok tsTokens
		c.must(ctx, "tokens", nil, &tok)
		if got := scopesOf(t, tok.Access); !slices.Equal(got, []string{"docs:read"}) {
			t.Fatalf("first token scopes %v, want [docs:read]", got)
		}
		mark, opened := e.front.len(), len(b.opened())
		e.upstream.Reset()
		var up tsCall
		c.must(ctx, "callTool", map[string]any{"name": "updateDocument", "args": map[string]any{"id": "doc-1", "content": "v2"}}, &up)
		t.Logf("403 insufficient_scope surfaced %v", up.Surfaced)
		if !up.OK || up.IsError || len(up.Surfaced) != 1 || up.Surfaced[0].Name != "UnauthorizedError" {
			t.Fatalf("updateDocument = %+v, want success after one UnauthorizedError", up)
		}
		if up.SessionBefore != conn.SessionID || up.SessionAfter != conn.SessionID {
			t.Errorf("session %q -> %q, want %q", up.SessionBefore, up.SessionAfter, conn.SessionID)
		}
		xs := e.front.since(mark)
		denied, ok := lastWith(xs, func(x exchange) bool { return x.Status == http.StatusForbidden })
		if !ok || denied.Challenge != `Bearer error="insufficient_scope", scope="docs:read docs:write", resource_metadata="`+metadataURL+`"` {
			t.Errorf("step-up challenge %q", denied.Challenge)
		}
		urls := b.opened()[opened:]
		if len(urls) != 1 || urls[0].Query().Get("scope") != "docs:read docs:write" || urls[0].Query().Get("resource") != e.endpoint {
			t.Fatalf("step-up authorization URLs %v", urls)
		}
		var tok2 tsTokens
		c.must(ctx, "tokens", nil, &tok2)
		if got := scopesOf(t, tok2.Access); !slices.Equal(got, []string{"docs:read", "docs:write"}) {
			t.Errorf("stepped-up token scopes %v, want [docs:read docs:write]", got)
		}
		var read tsCall
		c.must(ctx, "callTool", map[string]any{"name": "readDocument", "args": map[string]any{"id": "doc-1"}}, &read)
		if !read.OK || read.Structured["content"] != "v2" || read.SessionAfter != conn.SessionID {
			t.Fatalf("read after step-up = %+v", read)
		}
		denialsEchoIDs(t, xs)
		upstreamClean(t, e.upstream.Received(), editorUser, []string{tok.Access, tok2.Access})
		c.must(ctx, "close", nil, nil)
	})

	// With a refresh token the SDK (1.32.2) answers insufficient_scope by
	// refreshing, which cannot widen the scope (RFC 6749 section 6); the
	// retry gets the same challenge and the SDK gives up
	// (typescript-sdk issue #2255). The application can step up itself:
	// drop the tokens and run the SDK's auth() with the challenged scope.
	t.Run("editor steps up while holding a refresh token", func(t *testing.T) {
		b.setUser(editorUser)
		c.must(ctx, "reset", map[string]any{"firstScope": "docs:read"}, nil)
		e.upstream.Reset()
		var conn tsConnect
		c.must(ctx, "connect", nil, &conn)
		var tok0 tsTokens
		c.must(ctx, "tokens", nil, &tok0)
		mark, opened, refreshes := e.front.len(), len(b.opened()), as.Requests("/token")
		var up tsCall
		c.must(ctx, "callTool", map[string]any{"name": "updateDocument", "args": map[string]any{"id": "doc-1", "content": "v3"}}, &up)
		t.Logf("403 insufficient_scope with a refresh token surfaced %v", up.Surfaced)
		if up.OK || len(up.Surfaced) != 1 || !up.Surfaced[0].is("StreamableHTTPError", 403) ||
			up.Surfaced[0].Message != "Streamable HTTP error: Server returned 403 after trying upscoping" {
			t.Fatalf("updateDocument = %+v", up)
		}
		if n := as.Requests("/token") - refreshes; n != 1 || len(b.opened()) != opened {
			t.Errorf("%d token requests and %d new authorizations, want one refresh and none", n, len(b.opened())-opened)
		}
		denied, _ := lastWith(e.front.since(mark), func(x exchange) bool { return x.Status == http.StatusForbidden })
		scope := challengeScope(denied.Challenge)
		if scope != "docs:read docs:write" {
			t.Errorf("step-up challenge %q", denied.Challenge)
		}
		c.must(ctx, "reauthorize", map[string]any{"scope": scope}, nil)
		var tok tsTokens
		c.must(ctx, "tokens", nil, &tok)
		if got := scopesOf(t, tok.Access); !slices.Contains(got, "docs:read") || !slices.Contains(got, "docs:write") {
			t.Errorf("token scopes %v after re-authorization", got)
		}
		var again tsCall
		c.must(ctx, "callTool", map[string]any{"name": "updateDocument", "args": map[string]any{"id": "doc-1", "content": "v3"}}, &again)
		if !again.OK || again.IsError || again.SessionAfter != conn.SessionID {
			t.Fatalf("updateDocument after re-authorization = %+v", again)
		}
		denialsEchoIDs(t, e.front.since(mark))
		upstreamClean(t, e.upstream.Received(), editorUser, []string{tok0.Access, tok0.Refresh, tok.Access})
		c.must(ctx, "close", nil, nil)
	})

	// The access token expires (3s, mcpauthz's leeway 1s): the next call
	// gets 401 invalid_token, the SDK redeems its refresh token and
	// retries; the application sees nothing and the session stays.
	t.Run("expired token is refreshed", func(t *testing.T) {
		as.SetAccessTTL(3 * time.Second)
		defer as.SetAccessTTL(5 * time.Minute)
		b.setUser(viewerUser)
		c.must(ctx, "reset", nil, nil)
		e.upstream.Reset()
		var conn tsConnect
		c.must(ctx, "connect", nil, &conn)
		var tok tsTokens
		c.must(ctx, "tokens", nil, &tok)
		time.Sleep(time.Until(expiryOf(t, tok.Access).Add(1500 * time.Millisecond)))
		mark, opened, tokens := e.front.len(), len(b.opened()), as.Requests("/token")
		var read tsCall
		c.must(ctx, "callTool", map[string]any{"name": "readDocument", "args": map[string]any{"id": "doc-1"}}, &read)
		if !read.OK || len(read.Surfaced) != 0 || read.SessionAfter != conn.SessionID {
			t.Fatalf("read with an expired token = %+v", read)
		}
		var tok2 tsTokens
		c.must(ctx, "tokens", nil, &tok2)
		if tok2.Access == tok.Access {
			t.Fatal("the access token was not replaced")
		}
		if n := as.Requests("/token") - tokens; n != 1 || len(b.opened()) != opened {
			t.Errorf("%d token requests and %d authorizations, want one refresh and no sign-in", n, len(b.opened())-opened)
		}
		xs := e.front.since(mark)
		if len(xs) < 2 || xs[0].Status != http.StatusUnauthorized || !strings.HasPrefix(xs[0].Challenge, `Bearer error="invalid_token", resource_metadata="`+metadataURL+`"`) ||
			xs[0].Token != fingerprint(tok.Access) || xs[1].Token != fingerprint(tok2.Access) || xs[1].Status != http.StatusOK {
			for _, x := range xs {
				t.Logf("front: %s %s %s -> %d %s", x.Method, x.RPCMethod, x.Tool, x.Status, x.Challenge)
			}
			t.Error("want 401 invalid_token for the expired token, then the call with the refreshed token")
		}
		denialsEchoIDs(t, xs)
		upstreamClean(t, e.upstream.Received(), viewerUser, []string{tok.Access, tok2.Access, tok.Refresh})
		c.must(ctx, "close", nil, nil)
	})
}

func TestSDKGoClient(t *testing.T) {
	e := newSignInEnv(t)
	seedDocs(e)
	ctx := sdkCtx(t)
	as := e.idp.AuthServer()
	b := &browser{user: viewerUser}
	metadataURL := e.base + "/.well-known/oauth-protected-resource/docs/mcp"
	read := map[string]any{"id": "doc-1"}

	t.Run("viewer signs in, reads, is denied a delete and keeps the session", func(t *testing.T) {
		mark, reg := e.front.len(), as.Requests("/register")
		c, err := connectGoSDK(ctx, e.endpoint, b, goClientOptions{protocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer c.session.Close()
		sid := c.session.ID()
		if sid == "" || c.fetches.Load() != 1 || as.Requests("/register")-reg != 1 {
			t.Fatalf("session %q, %d sign-ins, %d registrations", sid, c.fetches.Load(), as.Requests("/register")-reg)
		}
		q := b.opened()[0].Query()
		t.Logf("authorization request scope=%q resource=%q", q.Get("scope"), q.Get("resource"))
		if q.Get("resource") != e.endpoint || q.Get("code_challenge_method") != "S256" {
			t.Errorf("authorization request %v", q)
		}
		xs := e.front.since(mark)
		if xs[0].Status != http.StatusUnauthorized || xs[0].Token != "" ||
			xs[0].Challenge != `Bearer resource_metadata="`+metadataURL+`", scope="docs:read docs:write docs:admin"` {
			t.Errorf("first exchange %+v", xs[0])
		}
		tok, err := c.token()
		if err != nil {
			t.Fatal(err)
		}
		claims := tokenClaims(t, tok.AccessToken)
		if claims["sub"] != viewerUser || claims["aud"] != e.endpoint || tok.RefreshToken == "" {
			t.Errorf("token sub=%v aud=%v refresh=%v", claims["sub"], claims["aud"], tok.RefreshToken != "")
		}

		tools, err := c.session.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tl := range tools.Tools {
			names = append(names, tl.Name)
		}
		if !slices.Equal(sorted(names), sorted(docserver.ToolNames())) {
			t.Errorf("tools/list = %v", names)
		}
		e.upstream.Reset()
		if res, err := c.session.CallTool(ctx, &mcp.CallToolParams{Name: "readDocument", Arguments: read}); err != nil || res.IsError {
			t.Fatalf("readDocument: %v %+v", err, res)
		}
		dmark := e.front.len()
		_, err = c.session.CallTool(ctx, &mcp.CallToolParams{Name: "deleteDocument", Arguments: read})
		t.Logf("403 denied surfaced %v", err)
		if err == nil || !strings.Contains(err.Error(), "access denied: role viewer may not call deleteDocument") {
			t.Fatalf("deleteDocument error %v", err)
		}
		if errors.Is(err, mcp.ErrConnectionClosed) {
			t.Errorf("the Go SDK reports mcpauthz's 403 as mcp.ErrConnectionClosed (%v): the denial's JSON-RPC code -32003 equals the SDK's "+
				"internal jsonrpc2.ErrClientClosing code and WireError.Is compares codes, so the application cannot tell a denial from a closed connection", err)
		} else if je := rpcError(err); je == nil || !strings.Contains(err.Error(), "rejected by transport") {
			t.Errorf("deleteDocument error %v does not wrap the denial's JSON-RPC error", err)
		}
		// With an OAuthHandler the SDK answers any 403 that is not
		// insufficient_scope by retrying the request once (Authorize returns
		// nil), so a denial reaches mcpauthz twice.
		posts := 0
		for _, x := range e.front.since(dmark) {
			if x.Tool == "deleteDocument" {
				posts++
			}
		}
		if posts != 2 {
			t.Errorf("deleteDocument reached the front door %d times, want 2 (the SDK's retry after Authorize)", posts)
		}
		if _, ok := e.upstream.Document("doc-1"); !ok {
			t.Fatal("the denied delete happened")
		}
		for _, r := range e.upstream.ToolCalls() {
			if r.Tool != "readDocument" || r.Header.Get("Mcp-Session-Id") != sid {
				t.Errorf("upstream tools/call %s on session %q", r.Tool, r.Header.Get("Mcp-Session-Id"))
			}
		}
		if res, err := c.session.CallTool(ctx, &mcp.CallToolParams{Name: "readDocument", Arguments: read}); err != nil || res.IsError || c.session.ID() != sid {
			t.Fatalf("read after the denial: %v, session %q -> %q", err, sid, c.session.ID())
		}

		// Answers the SDK never provokes itself, through an intermediary
		// rewriting its headers on the same session.
		c.tamper.rewrite(map[string]string{"Mcp-Protocol-Version": "2099-01-01"})
		_, err = c.session.CallTool(ctx, &mcp.CallToolParams{Name: "readDocument", Arguments: read})
		c.tamper.rewrite(nil)
		t.Logf("400 version error surfaced %v", err)
		if je := rpcError(err); je == nil || je.Code != -32022 || !strings.Contains(string(je.Data), `"requested":"2099-01-01"`) {
			t.Errorf("version error %v", err)
		}
		c.tamper.rewrite(map[string]string{"Mcp-Name": "deleteDocument"})
		_, err = c.session.CallTool(ctx, &mcp.CallToolParams{Name: "readDocument", Arguments: read})
		c.tamper.rewrite(nil)
		t.Logf("-32020 header mismatch surfaced %v", err)
		if je := rpcError(err); je == nil || je.Code != -32020 {
			t.Errorf("header mismatch error %v", err)
		}
		if res, err := c.session.CallTool(ctx, &mcp.CallToolParams{Name: "readDocument", Arguments: read}); err != nil || res.IsError || c.session.ID() != sid {
			t.Fatalf("read after the refusals: %v", err)
		}
		for _, x := range e.front.since(mark) {
			if x.Method == http.MethodPost && x.Token != "" && x.RPCMethod != "initialize" && x.SessionID != sid {
				t.Errorf("%s %s sent on session %q, want %q", x.RPCMethod, x.Tool, x.SessionID, sid)
			}
		}
		denialsEchoIDs(t, e.front.since(mark))
		upstreamClean(t, e.upstream.Received(), viewerUser, []string{tok.AccessToken, tok.RefreshToken})
	})

	// The SDK's default protocol starts with the stateless server/discover:
	// its 401 starts the sign-in as initialize's does. (The docs server is
	// stateful, so the SDK then falls back to initialize, 2025-11-25.)
	t.Run("viewer signs in on server/discover", func(t *testing.T) {
		mark := e.front.len()
		c, err := connectGoSDK(ctx, e.endpoint, b, goClientOptions{})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer c.session.Close()
		xs := e.front.since(mark)
		if len(xs) < 3 || xs[0].RPCMethod != "server/discover" || xs[0].Status != http.StatusUnauthorized ||
			xs[2].RPCMethod != "server/discover" || xs[2].Token == "" || xs[2].Status != http.StatusOK {
			for _, x := range xs {
				t.Logf("front: %s %s %s v=%s -> %d", x.Method, x.Path, x.RPCMethod, x.Version, x.Status)
			}
			t.Error("want server/discover 401, the metadata, server/discover 200 with the token")
		}
		if res, err := c.session.CallTool(ctx, &mcp.CallToolParams{Name: "readDocument", Arguments: read}); err != nil || res.IsError {
			t.Fatalf("readDocument: %v %+v", err, res)
		}
		denialsEchoIDs(t, e.front.since(mark))
	})

	t.Run("editor steps up from docs:read to docs:write", func(t *testing.T) {
		b.setUser(editorUser)
		c, err := connectGoSDK(ctx, e.endpoint, b, goClientOptions{protocolVersion: "2025-11-25", firstScope: []string{"docs:read"}})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer c.session.Close()
		sid := c.session.ID()
		tok, err := c.token()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("first token scopes %v", scopesOf(t, tok.AccessToken))
		if got := scopesOf(t, tok.AccessToken); slices.Contains(got, "docs:write") || !slices.Contains(got, "docs:read") {
			t.Fatalf("first token scopes %v", got)
		}
		mark, opened := e.front.len(), len(b.opened())
		e.upstream.Reset()
		res, err := c.session.CallTool(ctx, &mcp.CallToolParams{Name: "updateDocument", Arguments: map[string]any{"id": "doc-1", "content": "go-v2"}})
		if err != nil || res.IsError {
			t.Fatalf("updateDocument: %v %+v", err, res)
		}
		if c.session.ID() != sid || c.fetches.Load() != 2 {
			t.Errorf("session %q -> %q, %d sign-ins (want 2)", sid, c.session.ID(), c.fetches.Load())
		}
		denied, ok := lastWith(e.front.since(mark), func(x exchange) bool { return x.Status == http.StatusForbidden })
		t.Logf("step-up challenge %q", denied.Challenge)
		if !ok || !strings.HasPrefix(denied.Challenge, `Bearer error="insufficient_scope", scope="`) || !strings.HasSuffix(denied.Challenge, `", resource_metadata="`+metadataURL+`"`) {
			t.Errorf("step-up challenge %q", denied.Challenge)
		}
		urls := b.opened()[opened:]
		if len(urls) != 1 {
			t.Fatalf("%d step-up authorizations", len(urls))
		}
		t.Logf("step-up authorization scope %q", urls[0].Query().Get("scope"))
		tok2, err := c.token()
		if err != nil {
			t.Fatal(err)
		}
		if got := scopesOf(t, tok2.AccessToken); !slices.Contains(got, "docs:read") || !slices.Contains(got, "docs:write") || slices.Contains(got, "docs:admin") {
			t.Errorf("stepped-up token scopes %v", got)
		}
		if res, err := c.session.CallTool(ctx, &mcp.CallToolParams{Name: "readDocument", Arguments: read}); err != nil || res.IsError || c.session.ID() != sid {
			t.Fatalf("read after step-up: %v", err)
		}
		denialsEchoIDs(t, e.front.since(mark))
		upstreamClean(t, e.upstream.Received(), editorUser, []string{tok.AccessToken, tok2.AccessToken})
	})

	// x/oauth2 (the SDK's token source) refreshes a token 10s before its
	// exp, so with a 12s token the call 3s after sign-in carries a refreshed
	// token and mcpauthz never sees the old one expire.
	t.Run("expiring token is refreshed", func(t *testing.T) {
		as.SetAccessTTL(12 * time.Second)
		defer as.SetAccessTTL(5 * time.Minute)
		b.setUser(viewerUser)
		c, err := connectGoSDK(ctx, e.endpoint, b, goClientOptions{protocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer c.session.Close()
		sid := c.session.ID()
		tok, err := c.token()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(expiryOf(t, tok.AccessToken).Add(-9 * time.Second)))
		mark, tokens := e.front.len(), as.Requests("/token")
		if res, err := c.session.CallTool(ctx, &mcp.CallToolParams{Name: "readDocument", Arguments: read}); err != nil || res.IsError {
			t.Fatalf("readDocument: %v", err)
		}
		if n := as.Requests("/token") - tokens; n != 1 || c.fetches.Load() != 1 || c.session.ID() != sid {
			t.Errorf("%d token requests (want one refresh), %d sign-ins (want 1), session %q -> %q", n, c.fetches.Load(), sid, c.session.ID())
		}
		x, ok := lastWith(e.front.since(mark), func(x exchange) bool { return x.Tool == "readDocument" })
		if !ok || x.Token == "" || x.Token == fingerprint(tok.AccessToken) || x.Status != http.StatusOK {
			t.Errorf("the call carried the old token or none (status %d)", x.Status)
		}
		denialsEchoIDs(t, e.front.since(mark))
	})
}
