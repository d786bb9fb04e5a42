package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/modelcontextprotocol/go-sdk/auth"

	"github.com/mcpauthz/mcpauthz/credentials/exchange/ststest"
	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/envoy/emulator"
	"github.com/mcpauthz/mcpauthz/server"
)

// delegationPolicy allows every call, grants downstream scopes per tool
// and picks the credential by caller kind: an agent alone gets the
// organization's service account, a human or an agent acting for a user a
// delegated token.
const delegationPolicy = `package mcpauthz
import rego.v1

tool_scopes := {
	"readDocument": ["docs:read", "reports:read"],
	"updateDocument": ["docs:write", "reports:write"],
}

default mode := "delegated"
mode := "service_account" if input.principal.kind == "agent"

default granted := []
granted := tool_scopes[input.mcp.tool]

decision := {"allowed": true, "scopes": granted, "credential": mode}
`

// delegEnv runs two protected MCP servers behind the Envoy stand-in:
// docs takes tokens minted by mcpauthz's built-in issuer, reports takes
// tokens from an external RFC 8693 STS. Each upstream verifies every
// request's bearer token itself (the MCP SDK's RequireBearerToken) against
// the issuer's published JWKS; anything else gets 401 from the upstream.
type delegEnv struct {
	idp                *devidp.Issuer
	sts                *ststest.Server
	docs, reports      *docserver.Server
	docsURL, reportURL string // public resource URLs
	issuer             string // mcpauthz's built-in issuer URL
	srv                *server.Server
}

const delegSA = "org-service-account-for-agents"

func newDelegEnv(t *testing.T) *delegEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := &delegEnv{}
	var idpURL string
	d.idp, idpURL = startIdP(t)

	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + front.Addr().String()
	d.docsURL, d.reportURL = base+"/docs/mcp", base+"/reports/mcp"
	httpPort := freePort(t)
	d.issuer = fmt.Sprintf("http://127.0.0.1:%d/issuer", httpPort)

	// The external STS trusts the IdP's tokens as subject tokens and
	// authenticates mcpauthz with private_key_jwt.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "sts-client.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	d.sts = ststest.New(t, ststest.Options{
		Trusted:   []ststest.Trust{{Issuer: idpURL, JWKSURL: idpURL + "/jwks"}},
		Clients:   []ststest.Client{{ID: "mcpauthz", Auth: ststest.AuthPrivateKeyJWT, PublicKey: &key.PublicKey}},
		Audiences: []string{d.reportURL},
		Scopes:    []string{"reports:read", "reports:write"},
	})

	// Upstreams that verify what they receive.
	d.docs = docserver.NewWithOptions(docserver.Options{Verifier: oidcVerifier(t, d.issuer, d.docsURL, "at+jwt")})
	d.reports = docserver.NewWithOptions(docserver.Options{Verifier: oidcVerifier(t, d.sts.URL(), d.reportURL, "")})
	docsUp := httptest.NewServer(d.docs.Handler())
	t.Cleanup(docsUp.Close)
	reportsUp := httptest.NewServer(d.reports.Handler())
	t.Cleanup(reportsUp.Close)

	if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(delegationPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	saFile := filepath.Join(dir, "sa")
	if err := os.WriteFile(saFile, []byte(delegSA), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgDoc := fmt.Sprintf(`version: 1
listen: {grpc: "127.0.0.1:0", http: "127.0.0.1:%d", shutdown_timeout: 5s}
identity:
  issuers:
    - name: dev
      issuer: %s
      agent: {client_ids: [report-bot]}
policy:
  bundles: [{path: %s}]
audit: {output: off}
issuer:
  issuer: %s
servers:
  - id: docs
    resource: %s
    scopes: [docs:read, docs:write]
    credential:
      mode: delegated
      delegated:
        issuer: builtin
        scopes: [docs:read, docs:write]
    credential_options:
      - mode: service_account
        service_account: {secret: {file: %s}}
  - id: reports
    resource: %s
    scopes: [reports:read, reports:write]
    credential:
      mode: delegated
      delegated:
        issuer: sts
        scopes: [reports:read, reports:write]
        sts:
          token_url: %s
          client_id: mcpauthz
          client_auth: private_key_jwt
          private_key: {file: %s}
          audience: %s
          issued_issuer: %s
          jwks_url: %s
    credential_options:
      - mode: service_account
        service_account: {secret: {file: %s}}
`, httpPort, idpURL, dir, d.issuer, d.docsURL, saFile, d.reportURL,
		d.sts.TokenURL(), keyFile, d.reportURL, d.sts.URL(), d.sts.JWKSURL(), saFile)
	d.srv = startMCPAuthz(ctx, t, filepath.Join(dir, "mcpauthz.yaml"), cfgDoc)

	proxy, err := emulator.New(ctx, emulator.Config{
		AuthzAddr: d.srv.GRPCAddr(),
		Timeout:   20 * time.Second, // a bound for busy CI machines under -race, not a target
		Routes: []emulator.Route{
			{Name: "docs", PathPrefix: "/docs/", Upstream: docsUp.URL, ContextExtensions: map[string]string{server.ContextExtensionKey: "docs"}},
			{Name: "reports", PathPrefix: "/reports/", Upstream: reportsUp.URL, ContextExtensions: map[string]string{server.ContextExtensionKey: "reports"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	fs := &httptest.Server{Listener: front, Config: &http.Server{Handler: proxy}}
	fs.Start()
	t.Cleanup(fs.Close)
	return d
}

// oidcVerifier is what a real upstream does: discover the issuer, fetch its
// JWKS, verify signature, iss, aud and exp (go-oidc), and, for tokens from
// the built-in issuer, the RFC 9068 typ. The provider is discovered lazily
// because mcpauthz is not listening yet when the upstream is built.
func oidcVerifier(t *testing.T, issuer, audience, typ string) auth.TokenVerifier {
	var (
		once sync.Once
		v    *oidc.IDTokenVerifier
		verr error
	)
	return func(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		once.Do(func() {
			p, err := oidc.NewProvider(context.WithoutCancel(ctx), issuer)
			if err != nil {
				verr = err
				return
			}
			v = p.Verifier(&oidc.Config{ClientID: audience, SupportedSigningAlgs: []string{"ES256"}})
		})
		if verr != nil {
			return nil, fmt.Errorf("%w: discovery: %v", auth.ErrInvalidToken, verr)
		}
		idt, err := v.Verify(ctx, token)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
		}
		if typ != "" {
			var h struct {
				Typ string `json:"typ"`
			}
			seg, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
			if json.Unmarshal(seg, &h) != nil || h.Typ != typ {
				return nil, fmt.Errorf("%w: typ %q", auth.ErrInvalidToken, h.Typ)
			}
		}
		claims := map[string]any{}
		if err := idt.Claims(&claims); err != nil {
			return nil, fmt.Errorf("%w: %v", auth.ErrInvalidToken, err)
		}
		scope, _ := claims["scope"].(string)
		return &auth.TokenInfo{Scopes: strings.Fields(scope), Expiration: idt.Expiry, UserID: idt.Subject, Extra: claims}, nil
	}
}

func (d *delegEnv) callerToken(t *testing.T, aud string, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"aud": aud, "org_id": "acme", "scope": "docs:read docs:write reports:read reports:write"}
	for k, v := range claims {
		c[k] = v
	}
	tok, err := d.idp.Mint(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestDelegatedCredentialsReachUpstreams(t *testing.T) {
	d := newDelegEnv(t)
	type want struct {
		sub, act, scope string // act "" = no act claim; scope for readDocument
	}
	callers := []struct {
		name   string
		claims map[string]any
		docs   want
		report want
	}{
		// mcpauthz's own tokens name subjects qualified by the issuer's
		// user namespace ("dev"); the external STS issues its own.
		{"human", map[string]any{"sub": "alice"},
			want{sub: "dev/alice", scope: "docs:read"}, want{sub: "alice", scope: "reports:read"}},
		{"agent for a user", map[string]any{"sub": "bob", "act": map[string]any{"sub": "assistant", "client_id": "assistant-app"}},
			want{sub: "dev/bob", act: "dev/assistant", scope: "docs:read"}, want{sub: "bob", act: "assistant", scope: "reports:read"}},
	}
	for _, c := range callers {
		for _, target := range []string{"docs", "reports"} {
			t.Run(c.name+"/"+target, func(t *testing.T) {
				ctx := ctxT(t)
				resource, up, w, iss := d.docsURL, d.docs, c.docs, d.issuer
				if target == "reports" {
					resource, up, w, iss = d.reportURL, d.reports, c.report, d.sts.URL()
				}
				up.Put(docserver.Document{ID: "doc-seed", Title: "seed", Content: "v0"})
				tok := d.callerToken(t, resource, c.claims)
				cl, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: resource, Token: tok})
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer cl.Close()
				up.Reset()
				res, err := cl.CallTool(ctx, "readDocument", map[string]any{"id": "doc-seed"})
				if err != nil || res.IsError {
					t.Fatalf("readDocument: res=%+v err=%v", res, err)
				}
				inv := up.Invocations()
				if len(inv) != 1 || inv[0].Token == nil {
					t.Fatalf("the upstream did not verify a token for the call: %+v", inv)
				}
				got := inv[0].Token.Extra
				assertNoToken(t, up.Received(), tok)
				act, _ := got["act"].(map[string]any)
				if got["iss"] != iss || got["sub"] != w.sub || got["scope"] != w.scope || !audHas(got["aud"], resource) {
					t.Errorf("upstream verified iss=%v sub=%v aud=%v scope=%v; want iss=%s sub=%s aud=%s scope=%s",
						got["iss"], got["sub"], got["aud"], got["scope"], iss, w.sub, resource, w.scope)
				}
				switch {
				case w.act == "" && act != nil:
					t.Errorf("unexpected act %v", act)
				case w.act != "" && (act == nil || act["sub"] != w.act):
					t.Errorf("act = %v, want sub %s", act, w.act)
				}
			})
		}
	}
}

// An agent alone gets the service account the policy chose (see
// delegationPolicy); the protected
// upstream (which only accepts its issuer's tokens) answers 401, proving
// that no delegated token and no caller token reached it.
func TestDelegatedAgentAloneGetsServiceAccount(t *testing.T) {
	d := newDelegEnv(t)
	tok := d.callerToken(t, d.docsURL, map[string]any{"sub": "report-bot", "client_id": "report-bot"})
	status, _, _, err := docserver.PostJSONRPC(ctxT(t), http.DefaultClient, d.docsURL, map[string]string{
		"Authorization": "Bearer " + tok, "Mcp-Protocol-Version": "2025-06-18",
	}, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"x"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	recs := d.docs.Received()
	if len(recs) != 1 || recs[0].Header.Get("Authorization") != "Bearer "+delegSA {
		t.Fatalf("upstream received %+v", recs)
	}
	if status != http.StatusUnauthorized {
		t.Fatalf("status %d: the upstream should refuse the service account it cannot verify", status)
	}
}

// The STS failing must deny, never fall back to the caller's token.
func TestDelegatedSTSFailuresDeny(t *testing.T) {
	d := newDelegEnv(t)
	tests := []struct {
		name   string
		fault  ststest.Fault
		status int
	}{
		{"invalid_target", ststest.Fault{Status: 400, Error: "invalid_target"}, http.StatusForbidden},
		{"server error", ststest.Fault{Status: 503}, http.StatusServiceUnavailable},
		{"wrong audience issued", ststest.Fault{IssueAudience: "https://elsewhere.example.com"}, http.StatusForbidden},
		{"wrong actor issued", ststest.Fault{IssueActor: "mallory"}, http.StatusForbidden},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d.sts.SetFault(tc.fault)
			defer d.sts.SetFault(ststest.Fault{})
			d.reports.Reset()
			tok := d.callerToken(t, d.reportURL, map[string]any{"sub": fmt.Sprintf("user-%d", i),
				"act": map[string]any{"sub": "assistant"}})
			status, _, body, err := docserver.PostJSONRPC(ctxT(t), http.DefaultClient, d.reportURL, map[string]string{
				"Authorization": "Bearer " + tok, "Mcp-Protocol-Version": "2025-06-18",
			}, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"x"}}}`))
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			if n := len(d.reports.Received()); n != 0 {
				t.Fatalf("a denied call reached the upstream (%d requests)", n)
			}
			if strings.Contains(string(body), tok) {
				t.Fatal("denial body echoes the caller's token")
			}
		})
	}
}

// 200 Checks racing for one user and tool with a cold cache cause one
// exchange at the STS.
func TestDelegatedConcurrentColdExchangeOnce(t *testing.T) {
	d := newDelegEnv(t)
	tok := d.callerToken(t, d.reportURL, map[string]any{"sub": "zoe"})
	d.sts.SetFault(ststest.Fault{Delay: 200 * time.Millisecond}) // keep the flight open while the rest arrive
	defer d.sts.SetFault(ststest.Fault{})
	before := d.sts.Exchanges()
	var wg sync.WaitGroup
	var fails atomic.Int32
	var first atomic.Value
	for range 200 {
		wg.Go(func() {
			status, _, body, err := docserver.PostJSONRPC(context.Background(), http.DefaultClient, d.reportURL, map[string]string{
				"Authorization": "Bearer " + tok, "Mcp-Protocol-Version": "2025-06-18",
			}, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"x"}}}`))
			if err != nil || status != http.StatusOK {
				fails.Add(1)
				first.CompareAndSwap(nil, fmt.Sprintf("status %d err %v body %.200s", status, err, body))
			}
		})
	}
	wg.Wait()
	if fails.Load() != 0 {
		t.Fatalf("%d of 200 calls failed; first: %v", fails.Load(), first.Load())
	}
	if n := d.sts.Exchanges() - before; n != 1 {
		t.Fatalf("200 concurrent cold calls caused %d exchanges, want 1", n)
	}
}

func audHas(v any, want string) bool {
	switch a := v.(type) {
	case string:
		return a == want
	case []any:
		for _, x := range a {
			if x == want {
				return true
			}
		}
	}
	return false
}
