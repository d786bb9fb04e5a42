package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/envoy/emulator"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server"
	"github.com/mcpauthz/mcpauthz/server/extproc"
)

// The lead's wiring (mcpauthz's ext_authz putting extproc.Metadata in its
// OK answers, ExternalProcessor on mcpauthz's gRPC listener) is not in
// server/ yet. Until it is, these tests put a stand-in between Envoy and
// mcpauthz: its Authorization forwards every Check to the real mcpauthz
// and, when mcpauthz allows, adds the metadata the wiring will add (method,
// id, session key and an opaque principal handle, derived here from the
// request mcpauthz has just verified); its ExternalProcessor is
// extproc.Server with an Evaluator over a real policy engine loaded from
// bundles/rbac, asking for each entry what the real call would ask.

// handoff is the stand-in for the lead's wiring.
type handoff struct {
	authv3.UnimplementedAuthorizationServer
	next authv3.AuthorizationClient

	mu         sync.Mutex
	principals map[string]policy.Principal
}

func (h *handoff) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	resp, err := h.next.Check(ctx, req)
	if err != nil || resp.GetStatus().GetCode() != int32(code.Code_OK) {
		return resp, err
	}
	m, err := h.metadata(req)
	if err != nil {
		return nil, err
	}
	resp.DynamicMetadata = m.Struct()
	return resp, nil
}

// metadata derives the hand-off from a request mcpauthz allowed.
func (h *handoff) metadata(req *authv3.CheckRequest) (*extproc.Metadata, error) {
	hr := req.GetAttributes().GetRequest().GetHttp()
	hd := hr.GetHeaders()
	m := &extproc.Metadata{Server: req.GetAttributes().GetContextExtensions()[server.ContextExtensionKey],
		Protocol: hd["mcp-protocol-version"], Transport: extproc.TransportStreamable, Credential: "service_account", DecisionID: hd["x-request-id"]}
	if sid := hd["mcp-session-id"]; sid != "" {
		m.Session = extproc.SessionKey(m.Server, sid)
	}
	if _, q, ok := strings.Cut(hr.GetPath(), "?"); ok {
		if v, err := url.ParseQuery(q); err == nil && v.Get("sessionid") != "" { // the Go SDK's legacy name
			m.Transport, m.Session = extproc.TransportLegacySSE, extproc.SessionKey(m.Server, v.Get("sessionid"))
		}
	}
	switch hr.GetMethod() {
	case http.MethodGet:
		m.RPCKind = "stream"
	case http.MethodDelete:
		m.RPCKind = "end_session"
	default:
		var msg struct {
			Method string          `json:"method"`
			ID     json.RawMessage `json:"id"`
		}
		body := hr.GetRawBody()
		if len(body) > 0 && body[0] == '[' {
			var batch []struct {
				Method string `json:"method"`
			}
			_ = json.Unmarshal(body, &batch)
			m.Batch = true
			for _, b := range batch {
				m.BatchMethods = append(m.BatchMethods, b.Method)
			}
			break
		}
		if err := json.Unmarshal(body, &msg); err != nil {
			return nil, err
		}
		m.Method, m.RequestID = msg.Method, string(msg.ID)
		switch {
		case msg.Method != "" && msg.ID != nil:
			m.RPCKind = "request"
		case msg.Method != "":
			m.RPCKind = "notification"
		default:
			m.RPCKind = "response"
		}
	}
	if tok, ok := strings.CutPrefix(hd["authorization"], "Bearer "); ok {
		p, err := principalFromJWT(tok)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256([]byte(tok))
		m.Principal, m.Kind = hex.EncodeToString(sum[:12]), p.Kind
		h.mu.Lock()
		h.principals[m.Principal] = p
		h.mu.Unlock()
	}
	return m, nil
}

// principalFromJWT reads the claims of a token mcpauthz has verified, the
// way identity classifies them for the dev issuer of these tests.
func principalFromJWT(tok string) (policy.Principal, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return policy.Principal{}, errors.New("not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return policy.Principal{}, err
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		return policy.Principal{}, err
	}
	sub, _ := c["sub"].(string)
	cid, _ := c["client_id"].(string)
	scope, _ := c["scope"].(string)
	p := policy.Principal{Authenticated: true, Kind: "human", Subject: sub, Method: "jwt", ClientID: cid, Scopes: strings.Fields(scope), Claims: c}
	switch act, _ := c["act"].(map[string]any); {
	case act != nil:
		p.Kind = "agent_for_user"
		as, _ := act["sub"].(string)
		p.Actor = &policy.Actor{Subject: as}
	case cid != "" && cid == sub:
		p.Kind = "agent"
	}
	return p, nil
}

// ruleEvaluator asks the policy what the real call would: tools/call of
// the tool, prompts/get of the prompt, resources/read of the URI.
type ruleEvaluator struct {
	engine *policy.Engine
	h      *handoff
}

func (r *ruleEvaluator) Allowed(ctx context.Context, m *extproc.Metadata, kind extproc.EntryKind, name string) (bool, error) {
	r.h.mu.Lock()
	p, ok := r.h.principals[m.Principal]
	r.h.mu.Unlock()
	if !ok {
		return false, fmt.Errorf("unknown principal handle %q", m.Principal)
	}
	in := policy.Input{Version: policy.InputVersion, Principal: p, Server: policy.Server{ID: m.Server},
		MCP: policy.MCP{ProtocolVersion: m.Protocol, Transport: m.Transport, Kind: "request"}}
	switch kind {
	case extproc.Tool:
		in.MCP.Method, in.MCP.Tool = "tools/call", name
	case extproc.Prompt:
		in.MCP.Method, in.MCP.Prompt = "prompts/get", name
	default:
		in.MCP.Method, in.MCP.URI = "resources/read", name
	}
	d, err := r.engine.Evaluate(ctx, &in)
	return d.Allow, err
}

type learned struct {
	mu  sync.Mutex
	got []extproc.Metadata
	st  []int
}

func (l *learned) UpstreamRejected(_ context.Context, m *extproc.Metadata, status int, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got, l.st = append(l.got, *m), append(l.st, status)
}

type xpEnv struct {
	*env
	proc  *extproc.Server
	learn *learned
	raw   *rawUpstream
}

// newXPEnv starts mcpauthz (rbac, the docs server), the hand-off stand-in,
// the Envoy stand-in with ext_proc, and an upstream serving the same MCP
// server (5 tools, a prompt, a resource; 2 tools a page) as SSE on
// /docs/mcp and as JSON on /json/mcp, and hand-written answers on /raw/.
func newXPEnv(t *testing.T) *xpEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &xpEnv{env: &env{}, learn: &learned{}, raw: &rawUpstream{}}
	var issuer string
	e.idp, issuer = startIdP(t)

	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + front.Addr().String()
	e.resource = e.base + "/docs/mcp"
	e.endpoint = e.resource

	dir := t.TempDir()
	bundle, err := filepath.Abs("../bundles/rbac")
	if err != nil {
		t.Fatal(err)
	}
	saFile := filepath.Join(dir, "sa-secret")
	if err := os.WriteFile(saFile, []byte(saSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	e.srv = startMCPAuthz(ctx, t, filepath.Join(dir, "mcpauthz.yaml"), fmt.Sprintf(`version: 1
listen: {grpc: "127.0.0.1:0", http: "127.0.0.1:0", shutdown_timeout: 5s}
identity:
  issuers:
    - name: dev
      issuer: %s
      algorithms: [RS256, ES256]
      agent: {client_ids: [summarizer-agent]}
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
`, issuer, bundle, filepath.Join(dir, "decisions.log"), e.resource, saFile))

	engine, err := policy.New(ctx, policy.Config{Bundles: []policy.BundleSource{{Path: bundle}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(e.srv.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	h := &handoff{next: authv3.NewAuthorizationClient(conn), principals: map[string]policy.Principal{}}
	e.proc, err = extproc.New(extproc.Deps{Evaluator: &ruleEvaluator{engine: engine, h: h}, Learner: e.learn}, extproc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, h)
	extprocv3.RegisterExternalProcessorServer(gs, e.proc)
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)

	mux := http.NewServeMux()
	mux.Handle("/docs/mcp", docsHandler(false))
	mux.Handle("/json/mcp", docsHandler(true))
	mux.Handle("/raw/", e.raw)
	mux.Handle("/sse/mcp", mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return docsServer() }, &mcp.SSEOptions{DisableLocalhostProtection: true}))
	up := httptest.NewServer(mux)
	t.Cleanup(up.Close)

	xp := emulator.MCPExtProc()
	xp.MessageTimeout = 5 * time.Second // -race on a shared machine
	proxy, err := emulator.New(ctx, emulator.Config{
		AuthzAddr: gl.Addr().String(), Timeout: 5 * time.Second, ExtProc: xp,
		Routes: []emulator.Route{
			{Name: "metadata", PathPrefix: "/.well-known/oauth-protected-resource", Upstream: "http://" + e.srv.HTTPAddr(), DisableExtAuthz: true, DisableExtProc: true},
			{Name: "mcp", PathPrefix: "/", Upstream: up.URL, ContextExtensions: map[string]string{server.ContextExtensionKey: "docs"},
				RequestHeadersToSet: []envoy.Header{{Name: "accept-encoding", Value: "identity"}}},
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

// docsHandler is the document server's MCP surface, paginated by 2.
func docsHandler(jsonResponse bool) http.Handler {
	s := docsServer()
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{JSONResponse: jsonResponse, DisableLocalhostProtection: true})
}

func docsServer() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "docs", Version: "v0"}, &mcp.ServerOptions{PageSize: 2})
	for _, name := range allTools {
		mcp.AddTool(s, &mcp.Tool{Name: name, Description: "tool " + name},
			func(context.Context, *mcp.CallToolRequest, map[string]any) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil, nil
			})
	}
	s.AddPrompt(&mcp.Prompt{Name: "summarize"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{}, nil
	})
	s.AddResource(&mcp.Resource{Name: "readme", URI: "docs://readme"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{}, nil
	})
	return s
}

// listAll pages through a list with the SDK client, checking that every
// page but the last carried a nextCursor.
func listAll(ctx context.Context, t *testing.T, cs *mcp.ClientSession) (tools, prompts, resources []string, pages int) {
	t.Helper()
	cursor := ""
	for {
		res, err := cs.ListTools(ctx, &mcp.ListToolsParams{Cursor: cursor})
		if err != nil {
			t.Fatalf("tools/list: %v", err)
		}
		pages++
		for _, tl := range res.Tools {
			tools = append(tools, tl.Name)
		}
		if cursor = res.NextCursor; cursor == "" {
			break
		}
	}
	pr, err := cs.ListPrompts(ctx, nil)
	if err != nil {
		t.Fatalf("prompts/list: %v", err)
	}
	for _, p := range pr.Prompts {
		prompts = append(prompts, p.Name)
	}
	rr, err := cs.ListResources(ctx, nil)
	if err != nil {
		t.Fatalf("resources/list: %v", err)
	}
	for _, r := range rr.Resources {
		resources = append(resources, r.URI)
	}
	slices.Sort(tools)
	return tools, prompts, resources, pages
}

// TestListsShowWhatEachCallerMayUse: viewer, editor, admin, agents for a
// user and an agent alone list tools, prompts and resources through the
// Envoy stand-in with ext_proc, over SSE and JSON answers and every
// protocol version the SDK speaks over Streamable HTTP. Each sees exactly
// the tools rbac lets it call (pagination intact: 3 pages of 2) and no
// prompt or resource (rbac grants neither prompts/get nor resources/read).
func TestListsShowWhatEachCallerMayUse(t *testing.T) {
	e := newXPEnv(t)
	type who struct {
		name    string
		claims  map[string]any
		allowed []string
	}
	people := []who{
		{"viewer", map[string]any{"sub": "vera", "roles": []string{"viewer"}}, []string{"readDocument"}},
		{"editor", map[string]any{"sub": "eddie", "roles": []string{"editor"}}, []string{"createDocument", "readDocument", "updateDocument"}},
		{"admin", map[string]any{"sub": "ada", "roles": []string{"admin"}}, allTools},
		{"agent for viewer", map[string]any{"sub": "vera", "roles": []string{"viewer"}, "act": map[string]any{"sub": "summarizer-agent"}}, []string{"readDocument"}},
		{"agent for admin", map[string]any{"sub": "ada", "roles": []string{"admin"}, "act": map[string]any{"sub": "summarizer-agent"}}, []string{"createDocument", "readDocument", "updateDocument"}},
		{"agent alone", map[string]any{"sub": "summarizer-agent", "client_id": "summarizer-agent", "roles": []string{"admin"}}, []string{"readDocument"}},
		{"admin with read scope only", map[string]any{"sub": "ada", "roles": []string{"admin"}, "scope": "docs:read"}, []string{"readDocument"}},
	}
	for _, p := range people {
		for _, path := range []string{"/docs/mcp", "/json/mcp"} {
			for _, proto := range []string{"2025-03-26", "2025-06-18", "2025-11-25", ""} {
				t.Run(p.name+path+"/"+orLatest(proto), func(t *testing.T) {
					ctx := ctxT(t)
					c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.base + path, Token: e.token(t, p.claims), ProtocolVersion: proto})
					if err != nil {
						t.Fatalf("connect: %v", err)
					}
					defer c.Close()
					tools, prompts, resources, pages := listAll(ctx, t, c.Session())
					want := slices.Clone(p.allowed)
					slices.Sort(want)
					if !slices.Equal(tools, want) {
						t.Errorf("tools %v, want %v", tools, want)
					}
					if pages != 3 {
						t.Errorf("%d pages of tools, want 3 (nextCursor lost?)", pages)
					}
					if len(prompts) != 0 || len(resources) != 0 {
						t.Errorf("prompts %v, resources %v: rbac grants none", prompts, resources)
					}
				})
			}
		}
	}
	if st := e.proc.Stats(); st.Lists == 0 || st.EntriesRemoved == 0 || st.FailedClosed != 0 || st.MissingMetadata != 0 {
		t.Errorf("ext_proc stats %+v", st)
	}
}

// rawUpstream answers /raw/<case> by hand.
type rawUpstream struct{}

const rawList = `{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"readDocument","x-vendor":{"a":[1,2]}},{"name":"deleteDocument","inputSchema":{"type":"object"}},{"name":"shareDocument"}],"nextCursor":"opaque\u00e9==","_meta":{"k":"v"}},"extra":[true,null]}`

func (rawUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/raw/json":
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(rawList))
	case "/raw/split": // one byte per write: an event spread over many chunks
		w.Header().Set("Content-Type", "text/event-stream")
		stream := "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n" +
			"id: 2\ndata: " + rawList + "\n\n"
		for i := range len(stream) {
			_, _ = w.Write([]byte{stream[i]})
			w.(http.Flusher).Flush()
		}
	case "/raw/malformed":
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n"))
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"tools\":[{\"name\":\"deleteDocument\"}]},\"result\":{\"tools\":[]}}\n\n"))
	case "/raw/gzip":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write([]byte{0x1f, 0x8b})
	case "/raw/401":
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
	default:
		http.NotFound(w, r)
	}
}

func (e *xpEnv) post(t *testing.T, path, tok, body string) (int, http.Header, string, error) {
	t.Helper()
	status, h, b, err := docserver.PostJSONRPC(ctxT(t), nil, e.base+path,
		map[string]string{"Authorization": "Bearer " + tok, "Mcp-Protocol-Version": "2025-06-18"}, []byte(body))
	return status, h, string(b), err
}

// TestListRawAnswers: what the filter keeps is the upstream's bytes minus
// the refused entries (unknown fields and nextCursor as they were), with
// a correct content-length; an SSE list split into one-byte chunks is
// filtered the same; anything ext_proc cannot read fails closed.
func TestListRawAnswers(t *testing.T) {
	e := newXPEnv(t)
	viewer := e.token(t, map[string]any{"sub": "vera", "roles": []string{"viewer"}})
	list := `{"jsonrpc":"2.0","id":5,"method":"tools/list"}`
	want := `{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"readDocument","x-vendor":{"a":[1,2]}}],"nextCursor":"opaque\u00e9==","_meta":{"k":"v"}},"extra":[true,null]}`

	status, h, body, err := e.post(t, "/raw/json", viewer, list)
	if err != nil || status != 200 || body != want {
		t.Fatalf("json: %d %v\n%s\nwant\n%s", status, err, body, want)
	}
	if h.Get("Content-Length") != fmt.Sprint(len(want)) {
		t.Errorf("content-length %q for %d bytes", h.Get("Content-Length"), len(want))
	}

	status, h, body, err = e.post(t, "/raw/split", viewer, list)
	wantSSE := "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\nid: 2\ndata: " + want + "\n\n"
	if err != nil || status != 200 || body != wantSSE || h.Get("Content-Length") != "" {
		t.Fatalf("split SSE: %d %v %v\n%q", status, err, h, body)
	}

	for _, c := range []struct{ path, name string }{{"/raw/malformed", "duplicate result in an SSE event"}, {"/raw/gzip", "compressed JSON"}} {
		status, _, body, err := e.post(t, c.path, viewer, list)
		if strings.Contains(body, "deleteDocument") || (err == nil && status == 200) {
			t.Errorf("%s: got %d %v %q, want a failure without the list", c.name, status, err, body)
		}
	}
	if st := e.proc.Stats(); st.FailedClosed < 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestUpstream401Learned: an upstream 401 to the stored service-account
// credential reaches the Learner with the request's metadata.
func TestUpstream401Learned(t *testing.T) {
	e := newXPEnv(t)
	tok := e.token(t, map[string]any{"sub": "ada", "roles": []string{"admin"}})
	status, _, _, err := e.post(t, "/raw/401", tok, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"d"}}}`)
	if err != nil || status != http.StatusUnauthorized {
		t.Fatalf("status %d %v", status, err)
	}
	e.learn.mu.Lock()
	defer e.learn.mu.Unlock()
	if len(e.learn.got) != 1 || e.learn.st[0] != 401 || e.learn.got[0].Server != "docs" || e.learn.got[0].Credential != "service_account" ||
		e.learn.got[0].Method != "tools/call" || e.learn.got[0].RequestID != "9" {
		t.Fatalf("learner saw %+v %v", e.learn.got, e.learn.st)
	}
	// A 401 from mcpauthz itself (a bad token) is not the upstream's.
	if status, _, _, _ := e.post(t, "/raw/401", "not-a-token", `{"jsonrpc":"2.0","id":1,"method":"ping"}`); status != http.StatusUnauthorized || len(e.learn.got) != 1 {
		t.Fatalf("mcpauthz's own 401 (status %d) reached the learner: %d", status, len(e.learn.got))
	}
}

// tokenPerMethod authenticates GET requests with one token and the others
// with another.
type tokenPerMethod struct{ get, post string }

func (tp tokenPerMethod) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	tok := tp.post
	if r.Method == http.MethodGet {
		tok = tp.get
	}
	r.Header.Set("Authorization", "Bearer "+tok)
	return http.DefaultTransport.RoundTrip(r)
}

// TestLegacySSEListFilteredOnTheGETStream: over HTTP+SSE (2024-11-05) the
// POST is answered 202 and the list arrives on the GET stream. It is
// filtered there for whoever sent the list request: here the GET stream
// was opened with vera's admin token and the POSTs carry her viewer token
// (one user, so one session), and she sees what a viewer may use. The
// client asks for 2024-11-05: with the SDK's default (2026-07-28 in
// params._meta over the legacy transport) mcpauthz's ext_authz refuses the
// initialize (-32020, "params._meta protocol version differs from the
// effective protocol version").
func TestLegacySSEListFilteredOnTheGETStream(t *testing.T) {
	e := newXPEnv(t)
	ctx := ctxT(t)
	hc := &http.Client{Transport: tokenPerMethod{
		get:  e.token(t, map[string]any{"sub": "vera", "roles": []string{"admin"}}),
		post: e.token(t, map[string]any{"sub": "vera", "roles": []string{"viewer"}}),
	}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "legacy", Version: "v0"}, nil).
		Connect(ctx, &mcp.SSEClientTransport{Endpoint: e.base + "/sse/mcp", HTTPClient: hc}, &mcp.ClientSessionOptions{ProtocolVersion: "2024-11-05"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	tools, prompts, resources, pages := listAll(ctx, t, cs)
	if !slices.Equal(tools, []string{"readDocument"}) || pages != 3 || len(prompts)+len(resources) != 0 {
		t.Fatalf("tools %v (%d pages), prompts %v, resources %v", tools, pages, prompts, resources)
	}
}
