package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/envoy/emulator"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
	"github.com/mcpauthz/mcpauthz/server"
)

// signInEnv is the deployment stock MCP clients sign in to: the Envoy
// stand-in in front of mcpauthz and the docs server, mcpauthz advertising
// the development IdP as the docs server's authorization server (RFC
// 9728), and the IdP serving login and consent forms, code + PKCE,
// refresh tokens and dynamic registration. Every exchange at the front
// door is recorded (frontLog), so tests see what the client sent and got
// whatever SDK they drive.
type signInEnv struct {
	idp      *devidp.Issuer
	issuer   string
	upstream *docserver.Server
	base     string
	endpoint string // the docs MCP endpoint (= its RFC 8707 resource)
	front    *frontLog
}

// Users of the development IdP (devidp.DefaultUsers): alice is a viewer,
// bob an editor, carol an admin; each password is the username.
const (
	viewerUser = "alice"
	editorUser = "bob"
)

// newSignInEnv starts the deployment. The access-token leeway is 1s so a
// test can let a token expire quickly (AuthServer().SetAccessTTL).
func newSignInEnv(t *testing.T) *signInEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &signInEnv{front: &frontLog{}}
	e.idp, e.issuer = startIdP(t)

	e.upstream = docserver.New()
	up := httptest.NewServer(e.upstream.Handler())
	t.Cleanup(up.Close)

	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.base = "http://" + front.Addr().String()
	e.endpoint = e.base + "/docs/mcp"

	dir := t.TempDir()
	bundle, err := filepath.Abs("../bundles/rbac")
	if err != nil {
		t.Fatal(err)
	}
	saFile := filepath.Join(dir, "sa-secret")
	if err := os.WriteFile(saFile, []byte(saSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgDoc := fmt.Sprintf(`version: 1
listen: {grpc: "127.0.0.1:0", http: "127.0.0.1:0", shutdown_timeout: 5s}
identity:
  issuers:
    - name: dev
      issuer: %s
      algorithms: [RS256, ES256]
      leeway: 1s
policy:
  bundles: [{path: %s}]
audit: {output: %s}
servers:
  - id: docs
    name: Documents
    resource: %s
    authorization_servers: [%s]
    scopes: [docs:read, docs:write, docs:admin]
    credential:
      mode: service_account
      service_account:
        secret: {file: %s}
`, e.issuer, bundle, filepath.Join(dir, "decisions.log"), e.endpoint, e.issuer, saFile)
	srv := startMCPAuthz(ctx, t, filepath.Join(dir, "mcpauthz.yaml"), cfgDoc)

	proxy, err := emulator.New(ctx, emulator.Config{
		AuthzAddr: srv.GRPCAddr(),
		Timeout:   5 * time.Second, // -race on two shared cores
		Routes: []emulator.Route{
			{Name: "metadata", PathPrefix: "/.well-known/oauth-protected-resource", Upstream: "http://" + srv.HTTPAddr(), DisableExtAuthz: true},
			{Name: "docs", PathPrefix: "/docs/", Upstream: up.URL, ContextExtensions: map[string]string{server.ContextExtensionKey: "docs"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	fs := &httptest.Server{Listener: front, Config: &http.Server{Handler: e.front.wrap(proxy)}}
	fs.Start()
	t.Cleanup(fs.Close)
	return e
}

// exchange is one request at the front door and its answer. Tokens are
// kept only as fingerprints.
type exchange struct {
	Method, Path string
	Token        string // fingerprint of the bearer token ("" without one)
	SessionID    string // Mcp-Session-Id the client sent
	Version      string // MCP-Protocol-Version the client sent
	RPCMethod    string
	RPCID        json.RawMessage // id of the request body ("" for notifications and bodiless requests)
	Tool         string
	Status       int
	Challenge    string // WWW-Authenticate of the answer
	Body         []byte // the answer's body when the status is not 2xx (bounded)
}

// frontLog records every exchange at the front door. An exchange is
// logged when its request arrives and completed as its answer is written,
// before the client can read it. Safe for concurrent use.
type frontLog struct {
	mu  sync.Mutex
	all []*exchange
}

func (l *frontLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &exchange{Method: r.Method, Path: r.URL.Path, SessionID: r.Header.Get("Mcp-Session-Id"), Version: r.Header.Get("Mcp-Protocol-Version")}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			x.Token = fingerprint(tok)
		}
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
			_ = r.Body.Close()
			if err == nil {
				var m struct {
					Method string          `json:"method"`
					ID     json.RawMessage `json:"id"`
					Params struct {
						Name string `json:"name"`
					} `json:"params"`
				}
				if json.Unmarshal(body, &m) == nil {
					x.RPCMethod, x.RPCID = m.Method, m.ID
					if m.Method == "tools/call" {
						x.Tool = m.Params.Name
					}
				}
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		l.mu.Lock()
		l.all = append(l.all, x)
		l.mu.Unlock()
		h.ServeHTTP(&recWriter{ResponseWriter: w, log: l, x: x}, r)
	})
}

// since returns the exchanges recorded after the first n.
func (l *frontLog) since(n int) []exchange {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]exchange, 0, len(l.all))
	for _, x := range l.all[min(n, len(l.all)):] {
		c := *x
		c.Body = slices.Clone(x.Body)
		out = append(out, c)
	}
	return out
}

func (l *frontLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.all)
}

// recWriter passes the answer through, recording its status, challenge
// and, for non-2xx answers, its body (bounded); it flushes (SSE) and
// unwraps for http.ResponseController.
type recWriter struct {
	http.ResponseWriter
	log *frontLog
	x   *exchange
}

func (w *recWriter) WriteHeader(code int) {
	w.log.mu.Lock()
	if w.x.Status == 0 {
		w.x.Status, w.x.Challenge = code, w.Header().Get("WWW-Authenticate")
	}
	w.log.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
}

func (w *recWriter) Write(b []byte) (int, error) {
	w.log.mu.Lock()
	if w.x.Status == 0 {
		w.x.Status = http.StatusOK
	}
	if w.x.Status/100 != 2 && len(w.x.Body) < 64<<10 {
		w.x.Body = append(w.x.Body, b...)
	}
	w.log.mu.Unlock()
	return w.ResponseWriter.Write(b)
}

func (w *recWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

func (w *recWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func fingerprint(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:8])
}

// browser is the person at the login and consent pages: it opens the
// authorization URLs a client hands out, signs in as user at the
// development IdP (oauthtest.Authorize fills the forms) and returns the
// redirect the client receives. It records the URLs it was given.
type browser struct {
	mu   sync.Mutex
	user string
	urls []*url.URL
}

func (b *browser) setUser(u string) {
	b.mu.Lock()
	b.user = u
	b.mu.Unlock()
}

func (b *browser) open(ctx context.Context, authURL string) (*url.URL, error) {
	u, err := url.Parse(authURL)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	b.urls = append(b.urls, u)
	user := b.user
	b.mu.Unlock()
	return oauthtest.Authorize(ctx, authURL, user, user)
}

// opened returns the authorization URLs opened so far.
func (b *browser) opened() []*url.URL {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.urls)
}

// tokenClaims decodes an access token's payload without verifying it
// (mcpauthz verified it; the test reads what the IdP granted).
func tokenClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWS (%d parts)", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// scopesOf returns the sorted scopes of an access token.
func scopesOf(t *testing.T, tok string) []string {
	t.Helper()
	s, _ := tokenClaims(t, tok)["scope"].(string)
	out := strings.Fields(s)
	slices.Sort(out)
	return out
}

// expiryOf returns an access token's exp.
func expiryOf(t *testing.T, tok string) time.Time {
	t.Helper()
	exp, ok := tokenClaims(t, tok)["exp"].(float64)
	if !ok {
		t.Fatal("access token without exp")
	}
	return time.Unix(int64(exp), 0)
}

// denialsEchoIDs checks every non-2xx answer to a JSON-RPC request with an
// id: its body is a JSON-RPC error with the same id.
func denialsEchoIDs(t *testing.T, xs []exchange) {
	t.Helper()
	for _, x := range xs {
		if x.Status/100 == 2 || len(x.RPCID) == 0 || string(x.RPCID) == "null" {
			continue
		}
		var body struct {
			ID    json.RawMessage `json:"id"`
			Error *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(x.Body, &body); err != nil || body.Error == nil {
			t.Errorf("%d answer to %s (id %s) is not a JSON-RPC error: %q", x.Status, x.RPCMethod, x.RPCID, x.Body)
			continue
		}
		if !bytes.Equal(body.ID, x.RPCID) {
			t.Errorf("%d answer to %s: id %s, want the request's id %s (body %s)", x.Status, x.RPCMethod, body.ID, x.RPCID, x.Body)
		}
	}
}

// upstreamClean checks what the docs server received: only the service
// account's credential, the verified attribution of user, never a client
// token (fingerprints in toks are compared against every header value).
func upstreamClean(t *testing.T, recs []docserver.Received, user string, toks []string) {
	t.Helper()
	if len(recs) == 0 {
		t.Fatal("the upstream received nothing")
	}
	for _, r := range recs {
		if got := r.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+saSecret {
			t.Errorf("upstream %s %s: Authorization = %d values, want only the service account", r.Method, r.RPCMethod, len(got))
		}
		if r.Method == http.MethodPost {
			if got := r.Header.Get("X-Mcp-Subject"); got != "dev/"+user {
				t.Errorf("upstream %s: X-Mcp-Subject = %q, want dev/%s", r.RPCMethod, got, user)
			}
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				for _, tok := range toks {
					if tok != "" && (strings.Contains(v, tok) || strings.Contains(v, tok[len(tok)-16:])) {
						t.Fatalf("a client token reached the upstream in header %s", k)
					}
				}
			}
		}
	}
}
