package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/net/html"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/envoy/emulator"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
	"github.com/mcpauthz/mcpauthz/server"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// The individual-mode deployment: the Envoy stand-in in front of mcpauthz
// (started from a config file, SQLite store) and of an MCP server that
// takes the tokens of a third-party OAuth provider (internal/oauthtest);
// the development IdP issues the MCP clients' tokens and signs browsers in
// to mcpauthz's connect pages.

const (
	trackerID     = "tracker"
	trackerName   = "Issue Tracker"
	trackerClient = "tracker-client"
	trackerSecret = "tracker-SECRET-5d1e"
	loginClient   = "mcpauthz-connect"
	loginSecret   = "connect-SECRET-9a7c"
	agentClient   = "summarizer-agent"
)

// indivPolicy allows every authenticated call. Tool calls use the server's
// default credential (individual: the caller's own connection; after the
// mode switch the organization's); the protocol's own requests
// (discover, initialize, tools/list) carry no credential, so a client can
// open a session before its user has connected.
const indivPolicy = `package mcpauthz
import rego.v1

default decision := {"allowed": false, "reason": "unauthenticated", "http_status": 401}

decision := {"allowed": true} if {
	input.principal.authenticated == true
	input.mcp.method == "tools/call"
}

decision := {"allowed": true, "credential": "public"} if {
	input.principal.authenticated == true
	input.mcp.method != "tools/call"
}
`

type indivEnv struct {
	dir      string
	idp      *devidp.Issuer
	idpURL   string
	provider *oauthtest.Provider
	provURL  string
	upstream *trackerUpstream

	upstreamURL string
	public      string // mcpauthz's HTTP listener = connections.public_url
	httpPort    int
	grpcPort    int
	base        string // the front door (Envoy stand-in)
	endpoint    string // the tracker MCP endpoint (its resource URL)
	front       *swapHandler
	audit       string
	storeCfg    store.Config
	logs        *connectLogs // mcpauthz's logs, every instance

	mu   sync.Mutex
	stop func() // stops the running mcpauthz and its stand-in
}

// swapHandler lets the front door outlive one mcpauthz instance.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func (s *swapHandler) set(h http.Handler) { s.h.Store(&h) }
func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := s.h.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	http.Error(w, "no mcpauthz running", http.StatusServiceUnavailable)
}

func newIndivEnv(t *testing.T) *indivEnv {
	t.Helper()
	e := &indivEnv{dir: t.TempDir(), front: &swapHandler{}, logs: &connectLogs{}}
	e.httpPort, e.grpcPort = freePort(t), freePort(t)
	e.public = fmt.Sprintf("http://127.0.0.1:%d", e.httpPort)

	var err error
	e.idp, err = devidp.New(devidp.Options{Clients: map[string]string{loginClient: loginSecret}})
	if err != nil {
		t.Fatal(err)
	}
	if e.idpURL, err = e.idp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.idp.Close)

	// The provider accepts exactly mcpauthz's callback as redirect URI.
	e.provider = oauthtest.New(oauthtest.Options{
		Clients:      map[string]string{trackerClient: trackerSecret},
		RedirectURIs: map[string][]string{trackerClient: {e.public + "/connect/callback"}},
		Users:        map[string]string{"alice": "alice", "bob": "bob", "carol": "carol"},
		Scopes:       []string{"issues:read", "issues:write"},
	})
	if e.provURL, err = e.provider.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.provider.Close)

	e.upstream = newTrackerUpstream(e.provider)
	up := httptest.NewServer(e.upstream)
	t.Cleanup(up.Close)

	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + front.Addr().String()
	e.endpoint = e.base + "/tracker/mcp"
	fs := &httptest.Server{Listener: front, Config: &http.Server{Handler: e.front}}
	fs.Start()
	t.Cleanup(fs.Close)
	e.upstreamURL = up.URL

	for name, v := range map[string]string{
		"tracker-secret": trackerSecret, "login-secret": loginSecret,
		"store-k1": "Aq8m6zJ0o7qXc3m1s9bH0x5Vd2kL4tR8wY1uN6pE3fQ=",
	} {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.dir, "policy.rego"), []byte(indivPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.audit = filepath.Join(e.dir, "decisions.log")
	t.Cleanup(func() { e.stopMCPAuthz(t) })
	return e
}

// config is mcpauthz's config file with the tracker's credential in mode
// "individual" or "service_account" (admin-authorized OAuth); the same
// provider, store and listeners either way.
func (e *indivEnv) config(mode string) string {
	provider := fmt.Sprintf(`provider:
          issuer: %s
          client_id: %s
          client_secret: {file: %s}
          scopes: [issues:read]`, e.provURL, trackerClient, filepath.Join(e.dir, "tracker-secret"))
	cred := "mode: individual\n      individual:\n        " + provider
	if mode == connections.ModeServiceAccount {
		cred = "mode: service_account\n      service_account:\n        oauth:\n          " +
			strings.ReplaceAll(provider, "\n          ", "\n            ")
	}
	return fmt.Sprintf(`version: 1
listen: {grpc: "127.0.0.1:%d", http: "127.0.0.1:%d", shutdown_timeout: 5s}
identity:
  issuers:
    - name: dev
      issuer: %s
      algorithms: [RS256, ES256]
      agent: {client_ids: [%s]}
policy:
  bundles: [{path: %s}]
audit: {output: %s}
store:
  driver: sqlite
  path: %s
  encryption:
    keys: [{id: k1, secret: {file: %s}}]
connections:
  public_url: %s
  refresh_interval: 1s
connect:
  login:
    issuer: dev
    client_id: %s
    client_secret: {file: %s}
  insecure_cookies: true
servers:
  - id: %s
    name: %s
    resource: %s
    credential:
      %s
    credential_options:
      - mode: public
`, e.grpcPort, e.httpPort, e.idpURL, agentClient, e.dir, e.audit,
		filepath.Join(e.dir, "state.db"), filepath.Join(e.dir, "store-k1"), e.public,
		loginClient, filepath.Join(e.dir, "login-secret"),
		trackerID, trackerName, e.endpoint, cred)
}

// startMCPAuthz (re)starts mcpauthz from the config file for mode, on the
// same listeners and store, with a fresh Envoy stand-in behind the front.
func (e *indivEnv) startMCPAuthz(t *testing.T, mode string) {
	t.Helper()
	e.stopMCPAuthz(t)
	path := filepath.Join(e.dir, "mcpauthz.yaml")
	if err := os.WriteFile(path, []byte(e.config(mode)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	e.storeCfg = cfg.Store
	ctx, cancel := context.WithCancel(context.Background())
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var srv *server.Server
	// The previous instance's ports may linger for a moment.
	for i := 0; ; i++ {
		if srv, err = server.New(ctx, cfg, server.Deps{Logger: logger}); err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		cancel()
		t.Fatalf("server: %v", err)
	}
	srv.Start(ctx)
	// ext_proc as `mcpauthz envoy generate` renders it: it learns what a
	// session declared at initialize (URL elicitation) and filters lists.
	xp := emulator.MCPExtProc()
	xp.MessageTimeout = 5 * time.Second // -race on a shared machine
	proxy, err := emulator.New(ctx, emulator.Config{
		AuthzAddr: srv.GRPCAddr(),
		Timeout:   5 * time.Second,
		ExtProc:   xp,
		Routes: []emulator.Route{
			{Name: "metadata", PathPrefix: "/.well-known/oauth-protected-resource", Upstream: e.public, DisableExtAuthz: true, DisableExtProc: true},
			{Name: trackerID, PathPrefix: "/tracker/", Upstream: e.upstreamURL, ContextExtensions: map[string]string{server.ContextExtensionKey: trackerID},
				RequestHeadersToSet: []envoy.Header{{Name: "accept-encoding", Value: "identity"}}},
		},
	})
	if err != nil {
		cancel()
		_ = srv.Shutdown(context.Background())
		t.Fatal(err)
	}
	e.front.set(proxy)
	e.mu.Lock()
	e.stop = func() {
		_ = srv.Shutdown(context.Background())
		_ = proxy.Close()
		cancel()
	}
	e.mu.Unlock()
}

func (e *indivEnv) stopMCPAuthz(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	stop := e.stop
	e.stop = nil
	e.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// mcpToken mints an access token for the tracker MCP server.
func (e *indivEnv) mcpToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"aud": e.endpoint, "org_id": devidp.DefaultOrg, "scope": "issues:read"}
	for k, v := range claims {
		c[k] = v
	}
	tok, err := e.idp.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// userKey is the key mcpauthz files a devidp user's connections under.
func userKey(user string) string { return identity.UserKey("dev", devidp.DefaultOrg, user) }

// openStore opens the store mcpauthz uses (SQLite is shared by every
// process that opens the file), with a connections manager on it.
func (e *indivEnv) openStore(t *testing.T) (*connections.Manager, func()) {
	t.Helper()
	ctx := context.Background()
	st, ring, err := store.Open(ctx, e.storeCfg, store.Options{Logger: slog.New(slog.DiscardHandler), PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := connections.New(ctx, connections.Config{PublicURL: e.public}, connections.Options{Store: st, Cipher: ring})
	if err != nil {
		t.Fatal(err)
	}
	return m, func() { m.Wait(); _ = st.Close() }
}

// --- the upstream MCP server ---------------------------------------------

// trackerUpstream is an MCP server (official Go SDK) whose tool checks the
// bearer token it receives with the provider, as a GitHub-like MCP server
// does; it records the Authorization header of every request.
type trackerUpstream struct {
	provider *oauthtest.Provider
	handler  http.Handler

	mu   sync.Mutex
	seen []upstreamRequest
}

type upstreamRequest struct {
	RPCMethod     string
	Authorization string
}

// whoamiResult is the tracker's answer: whose provider account it acted for.
type whoamiResult struct {
	User   string   `json:"user"`
	Scopes []string `json:"scopes"`
}

func newTrackerUpstream(p *oauthtest.Provider) *trackerUpstream {
	u := &trackerUpstream{provider: p}
	ms := mcp.NewServer(&mcp.Implementation{Name: "tracker", Version: "v0.0.1"}, nil)
	mcp.AddTool(ms, &mcp.Tool{Name: "whoami", Description: "Who the tracker thinks you are"},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, whoamiResult, error) {
			var h string
			if req.Extra != nil && req.Extra.Header != nil {
				h = req.Extra.Header.Get("Authorization")
			}
			tok, ok := strings.CutPrefix(h, "Bearer ")
			if !ok {
				return nil, whoamiResult{}, errors.New("no provider token")
			}
			user, scopes, ok := p.VerifyAccessToken(tok)
			if !ok {
				return nil, whoamiResult{}, errors.New("the provider token is not valid")
			}
			return nil, whoamiResult{User: user, Scopes: scopes}, nil
		})
	u.handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return ms },
		&mcp.StreamableHTTPOptions{DisableLocalhostProtection: true})
	return u
}

func (u *trackerUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := upstreamRequest{Authorization: r.Header.Get("Authorization")}
	if r.Body != nil && r.Body != http.NoBody {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		var m struct {
			Method string `json:"method"`
		}
		_ = json.Unmarshal(body, &m)
		rec.RPCMethod = m.Method
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	u.mu.Lock()
	u.seen = append(u.seen, rec)
	u.mu.Unlock()
	u.handler.ServeHTTP(w, r)
}

// requests returns what the upstream received so far.
func (u *trackerUpstream) requests() []upstreamRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]upstreamRequest(nil), u.seen...)
}

// toolCalls returns the Authorization headers of the tools/call requests.
func (u *trackerUpstream) toolCalls() []string {
	var out []string
	for _, r := range u.requests() {
		if r.RPCMethod == "tools/call" {
			out = append(out, r.Authorization)
		}
	}
	return out
}

// --- the MCP client ------------------------------------------------------

// mcpClient is the official Go SDK client with a token, and a transport
// that keeps every JSON answer to a POST with the request it answered.
type mcpClient struct {
	*docserver.Client
	rec *exchangeRecorder
}

type rpcExchange struct {
	Request, Response []byte
	Status            int
}

type exchangeRecorder struct {
	token string // when set, sent as the bearer token
	mu    sync.Mutex
	all   []rpcExchange
}

func (r *exchangeRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if r.token != "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	var body []byte
	if req.Body != nil && req.Method == http.MethodPost {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(b))
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return resp, err
	}
	rb, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	r.mu.Lock()
	r.all = append(r.all, rpcExchange{Request: body, Response: rb, Status: resp.StatusCode})
	r.mu.Unlock()
	return resp, nil
}

// last returns the last recorded exchange whose request has method.
func (r *exchangeRecorder) last(method string) (rpcExchange, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.all) - 1; i >= 0; i-- {
		var m struct {
			Method string `json:"method"`
		}
		if json.Unmarshal(r.all[i].Request, &m) == nil && m.Method == method {
			return r.all[i], true
		}
	}
	return rpcExchange{}, false
}

func (e *indivEnv) client(t *testing.T, token string) *mcpClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec := &exchangeRecorder{}
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: e.endpoint, Token: token, HTTPClient: &http.Client{Transport: rec}})
	if err != nil {
		t.Fatalf("MCP connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &mcpClient{Client: c, rec: rec}
}

// elicitingClient is the official Go SDK client on the 2025-11-25
// protocol (initialize and a session) declaring URL-mode elicitation.
func (e *indivEnv) elicitingClient(t *testing.T, token string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	transport := &mcp.StreamableClientTransport{Endpoint: e.endpoint, HTTPClient: &http.Client{Transport: &exchangeRecorder{token: token}}, MaxRetries: -1}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpauthz-e2e-eliciting", Version: "v0.0.1"}, &mcp.ClientOptions{
		Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "decline"}, nil
		},
	})
	s, err := client.Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("MCP connect (2025-11-25, elicitation.url): %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// whoami calls the tracker's tool.
func (c *mcpClient) whoami(t *testing.T) (whoamiResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := c.CallTool(ctx, "whoami", map[string]any{})
	if err != nil {
		return whoamiResult{}, err
	}
	if res.IsError {
		return whoamiResult{}, fmt.Errorf("tool error: %s", toolText(res))
	}
	var out whoamiResult
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &out); err != nil {
		return whoamiResult{}, err
	}
	return out, nil
}

func toolText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// authorizeAnswer is the "authorize at <link>" JSON-RPC error.
type authorizeAnswer struct {
	Code    int64
	Message string
	URL     string `json:"url"`
	Server  string `json:"server"`
	Status  string `json:"status"`
}

// needsAuthorization returns the authorize-at-link error of a failed call
// and checks that its raw answer was HTTP 200 echoing the call's id.
func (c *mcpClient) needsAuthorization(t *testing.T, err error) authorizeAnswer {
	t.Helper()
	je := rpcError(err)
	if je == nil {
		t.Fatalf("want the authorize-at-link JSON-RPC error, got %v", err)
	}
	a := authorizeAnswer{Code: je.Code, Message: je.Message}
	if err := json.Unmarshal(je.Data, &a); err != nil {
		t.Fatalf("error data %s: %v", je.Data, err)
	}
	x, ok := c.rec.last("tools/call")
	if !ok {
		t.Fatal("no tools/call exchange recorded")
	}
	var req, resp struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(x.Request, &req) != nil || json.Unmarshal(x.Response, &resp) != nil {
		t.Fatalf("exchange not JSON: %s -> %s", x.Request, x.Response)
	}
	if x.Status != http.StatusOK || len(req.ID) == 0 || !bytes.Equal(req.ID, resp.ID) {
		t.Fatalf("answer HTTP %d id %s to request id %s (want 200 and the same id)", x.Status, resp.ID, req.ID)
	}
	return a
}

// --- a person at a browser without JavaScript -----------------------------

// person is oauthtest.LoginClient: it signs in at devidp and at the
// provider and consents, keeping mcpauthz's session cookie between pages.
type person struct {
	name string
	c    *http.Client
}

func newPerson(name string) *person {
	return &person{name: name, c: oauthtest.LoginClient(name, name)}
}

// get follows url to the page it ends on.
func (p *person) get(t *testing.T, u string) (int, string, *html.Node) {
	t.Helper()
	resp, err := p.c.Get(u)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", p.name, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	doc, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Request.URL.String(), doc
}

// post submits the form whose action is action on page, as a browser on
// that page does (its hidden CSRF field and Origin).
func (p *person) post(t *testing.T, page, action string) (int, *html.Node) {
	t.Helper()
	_, _, doc := p.get(t, page)
	f := findNode(doc, func(n *html.Node) bool { return n.Data == "form" && attrOf(n, "action") == action })
	if f == nil {
		t.Fatalf("%s: no form %s on %s: %s", p.name, action, page, nodeText(doc))
	}
	vals := url.Values{}
	walkNodes(f, func(n *html.Node) {
		if n.Data == "input" && attrOf(n, "type") == "hidden" {
			vals.Set(attrOf(n, "name"), attrOf(n, "value"))
		}
	})
	pu, err := url.Parse(page)
	if err != nil {
		t.Fatal(err)
	}
	base := pu.Scheme + "://" + pu.Host
	req, err := http.NewRequest(http.MethodPost, base+action, strings.NewReader(vals.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	resp, err := p.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out, err := html.Parse(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func walkNodes(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walkNodes(c, f)
	}
}

func findNode(n *html.Node, match func(*html.Node) bool) *html.Node {
	var found *html.Node
	walkNodes(n, func(x *html.Node) {
		if found == nil && match(x) {
			found = x
		}
	})
	return found
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// nodeText is n's text, whitespace-normalized (style and script skipped).
func nodeText(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "style" || n.Data == "script" || n.Data == "head") {
			return
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return strings.Join(strings.Fields(b.String()), " ")
}

// byID is the text of the element with id, or "".
func byID(doc *html.Node, id string) string {
	if n := findNode(doc, func(n *html.Node) bool { return attrOf(n, "id") == id }); n != nil {
		return nodeText(n)
	}
	return ""
}

// cardOf is the text of the connections page's card for a server.
func cardOf(doc *html.Node, name string) string {
	var out string
	walkNodes(doc, func(n *html.Node) {
		if out == "" && n.Data == "li" && strings.Contains(attrOf(n, "class"), "card") && strings.HasPrefix(nodeText(n), name+" ") {
			out = nodeText(n)
		}
	})
	return out
}

// chromiumPath is the browser connect_browser_test.go looks for, or "".
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}
