package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mcpauthz/mcpauthz/credentials/mint"
	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/server/config"
	"github.com/mcpauthz/mcpauthz/server/decisionlog"
)

// steeringPolicy grants per-tool downstream scopes (updateDocument asks for
// one beyond the server's maximum) and chooses the credential mode by kind:
// agents alone get the service account, everyone else a delegated token;
// deleteDocument asks for a mode the server does not offer.
const steeringPolicy = `package mcpauthz
import rego.v1

tool_scopes := {"readDocument": ["docs:read"], "updateDocument": ["docs:write", "docs:admin"]}

default mode := "delegated"
mode := "service_account" if input.principal.kind == "agent"

decision := {"allowed": true, "scopes": tool_scopes[input.mcp.tool], "credential": mode} if input.mcp.tool in object.keys(tool_scopes)
decision := {"allowed": true, "credential": "static"} if input.mcp.tool == "deleteDocument"
decision := {"allowed": true, "credential": mode} if {
	not input.mcp.tool in object.keys(tool_scopes)
	input.mcp.tool != "deleteDocument"
}
`

func delegatedFixture(t *testing.T, sign bool) *fixture {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.rego"), []byte(steeringPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	return newFixtureWith(t, func(c *config.Config) {
		c.Policy.Bundles[0].Path = dir
		c.Issuer = &mint.Config{Issuer: "http://127.0.0.1:1/mcpauthz"}
		c.Headers.Sign = sign
		docs := &c.Servers[0]
		sa := docs.Credential
		docs.Credential = outbound.Config{Mode: outbound.ModeDelegated, Delegated: &outbound.DelegatedConfig{
			Issuer: outbound.IssuerBuiltin, Scopes: []string{"docs:read", "docs:write"},
		}}
		docs.CredentialOptions = []outbound.Config{sa}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

// verifyMinted checks tok against the issuer's published JWKS and returns
// its header typ and claims.
func verifyMinted(t *testing.T, is *mint.Issuer, tok string) (string, map[string]any) {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("upstream token is not a JWS: %v", err)
	}
	set := is.JWKS()
	keys := set.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q is not published in the JWKS", parsed.Headers[0].KeyID)
	}
	claims := map[string]any{}
	if err := parsed.Claims(keys[0].Key, &claims); err != nil {
		t.Fatalf("signature: %v", err)
	}
	typ, _ := parsed.Headers[0].ExtraHeaders["typ"].(string)
	return typ, claims
}

func TestCheckDelegatedBuiltin(t *testing.T) {
	f := delegatedFixture(t, false)
	const all = "docs:read docs:write docs:admin"
	tests := []struct {
		name      string
		claims    map[string]any
		tool      string
		wantSub   string
		wantAct   string // "" = no act claim
		wantChain string // nested act.act.sub
		wantScope string
	}{
		{"human reads", map[string]any{"sub": "alice", "roles": []string{"viewer"}, "scope": all},
			"readDocument", "dev/alice", "", "", "docs:read"},
		{"agent for user updates: admin scope descoped away", map[string]any{"sub": "bob", "scope": all,
			"act": map[string]any{"sub": "assistant", "client_id": "assistant-app", "act": map[string]any{"sub": "orchestrator"}}},
			"updateDocument", "dev/bob", "dev/assistant", "dev/orchestrator", "docs:write"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			callerTok := f.token(t, tc.claims)
			o := f.do(t, req{body: toolCall(tc.tool), headers: bearer(callerTok)})
			if !o.allowed {
				t.Fatalf("denied %d %s", o.status, o.body)
			}
			v, ok := strings.CutPrefix(o.set["authorization"], "Bearer ")
			if !ok || v == callerTok || strings.Contains(v, callerTok) {
				t.Fatal("upstream must get a minted token, never the caller's")
			}
			typ, c := verifyMinted(t, f.svc.issuer, v)
			if typ != "at+jwt" {
				t.Errorf("typ = %q", typ)
			}
			if c["iss"] != "http://127.0.0.1:1/mcpauthz" || c["aud"] != docsResource || c["sub"] != tc.wantSub || c["scope"] != tc.wantScope {
				t.Errorf("claims iss=%v aud=%v sub=%v scope=%v", c["iss"], c["aud"], c["sub"], c["scope"])
			}
			act, _ := c["act"].(map[string]any)
			if tc.wantAct == "" {
				if act != nil {
					t.Errorf("unexpected act %v", act)
				}
			} else {
				inner, _ := act["act"].(map[string]any)
				if act["sub"] != tc.wantAct || act["client_id"] != "assistant-app" || inner["sub"] != tc.wantChain {
					t.Errorf("act = %v", act)
				}
			}
			if c["org"] != "acme" || c["mcp_kind"] == nil {
				t.Errorf("attribution claims missing: %v", c)
			}
		})
	}

	t.Run("agent alone gets the service account the policy chose", func(t *testing.T) {
		tok := f.token(t, map[string]any{"sub": "bot", "client_id": "agent-bot", "scope": all})
		o := f.do(t, req{body: toolCall("readDocument"), headers: bearer(tok)})
		if !o.allowed || o.set["authorization"] != "Bearer "+upstreamSecret {
			t.Fatalf("allowed=%v authorization=%q", o.allowed, o.set["authorization"])
		}
	})
	t.Run("a mode the server does not offer is refused", func(t *testing.T) {
		tok := f.token(t, map[string]any{"sub": "alice", "scope": all})
		o := f.do(t, req{body: toolCall("deleteDocument"), headers: bearer(tok)})
		if o.allowed || o.status != 403 || !strings.Contains(o.body, "does not offer") {
			t.Fatalf("got %d %s", o.status, o.body)
		}
	})
	t.Run("cached per subject token, audience and scopes", func(t *testing.T) {
		tok := f.token(t, map[string]any{"sub": "carol", "scope": all})
		a := f.do(t, req{body: toolCall("readDocument"), headers: bearer(tok)})
		b := f.do(t, req{body: toolCall("readDocument"), headers: bearer(tok)})
		c := f.do(t, req{body: toolCall("updateDocument"), headers: bearer(tok)})
		if a.set["authorization"] != b.set["authorization"] {
			t.Error("the same call minted twice")
		}
		if a.set["authorization"] == c.set["authorization"] {
			t.Error("a token for docs:read was reused for docs:write")
		}
	})
	t.Run("decision log records the credential, never the token", func(t *testing.T) {
		f.svc.Close()
		raw, err := os.ReadFile(f.audit)
		if err != nil {
			t.Fatal(err)
		}
		log := string(raw)
		if !strings.Contains(log, `"credential":{"mode":"delegated","subject":"dev/bob","actor":"dev/assistant","audience":"`+docsResource+`","scopes":["docs:write"]}`) {
			t.Errorf("decision log lacks the delegated credential record:\n%s", log)
		}
		if strings.Contains(log, "eyJ") {
			t.Error("decision log contains a JWT")
		}
	})
}

func TestCheckSignedAttribution(t *testing.T) {
	f := delegatedFixture(t, true)
	tok := f.token(t, map[string]any{"sub": "bob", "scope": "docs:read",
		"act": map[string]any{"sub": "assistant"}})
	o := f.do(t, req{body: toolCall("readDocument"), headers: bearer(tok)})
	if !o.allowed {
		t.Fatalf("denied %d %s", o.status, o.body)
	}
	attr := o.set["x-mcp-attribution"]
	typ, c := verifyMinted(t, f.svc.issuer, attr)
	if typ != AttributionType {
		t.Fatalf("typ = %q", typ)
	}
	act, _ := c["act"].(map[string]any)
	if c["sub"] != "dev/bob" || c["aud"] != docsResource || c["mcp_kind"] != "agent_for_user" || act["sub"] != "dev/assistant" || c["org"] != "acme" {
		t.Fatalf("attribution claims = %v", c)
	}
	// A client cannot supply its own.
	o2 := f.do(t, req{body: toolCall("readDocument"), headers: map[string]string{
		"authorization": "Bearer " + tok, "x-mcp-attribution": "forged"}})
	if got := o2.set["x-mcp-attribution"]; got == "forged" || got == "" {
		t.Fatalf("client-sent attribution survived: %q", got)
	}
	verifyMinted(t, f.svc.issuer, o2.set["x-mcp-attribution"])
}

func TestConfigCredentialOptions(t *testing.T) {
	ref := secret.Ref{Env: "X"}
	sa := outbound.Config{Mode: outbound.ModeServiceAccount, ServiceAccount: &outbound.ServiceAccountConfig{Secret: &ref}}
	builtin := outbound.Config{Mode: outbound.ModeDelegated, Delegated: &outbound.DelegatedConfig{Issuer: outbound.IssuerBuiltin}}
	tests := []struct {
		name    string
		edit    func(*config.Config)
		wantErr string
	}{
		{"duplicate mode", func(c *config.Config) {
			c.Servers[0].Credential = sa
			c.Servers[0].CredentialOptions = []outbound.Config{sa}
		}, `credential_options[0].mode: "service_account" is already offered`},
		{"builtin without issuer", func(c *config.Config) {
			c.Servers[0].CredentialOptions = []outbound.Config{builtin}
		}, "builtin needs the top-level issuer block"},
		{"sign without issuer", func(c *config.Config) { c.Headers.Sign = true }, "headers.sign: needs the top-level issuer block"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse([]byte(`version: 1
identity: {issuers: [{name: a, issuer: "https://idp.example.com"}]}
policy: {bundles: [{path: x}]}
servers: [{id: docs, resource: "https://mcp.example.com/docs", credential: {mode: public}}]
`))
			if err != nil {
				t.Fatal(err)
			}
			tc.edit(c)
			err = c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestOPADecisionLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "opa-decisions.jsonl")
	f := newFixtureWith(t, func(c *config.Config) {
		c.Audit.OPA = &decisionlog.Config{Output: decisionlog.OutputFile, File: path,
			Mask: []string{"/input/mcp/arguments", "/input/principal/claims"}, Labels: map[string]string{"env": "test"}}
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
	})
	tok := f.token(t, map[string]any{"sub": "vera", "roles": []string{"viewer"}, "scope": "docs:read"})
	allow := f.do(t, req{body: toolCall("readDocument"), headers: bearer(tok)})
	deny := f.do(t, req{body: toolCall("deleteDocument"), headers: bearer(tok)})
	if !allow.allowed || deny.allowed {
		t.Fatalf("allow=%v deny=%v", allow.allowed, deny.allowed)
	}
	rr := httptest.NewRecorder()
	f.svc.Handler().ServeHTTP(rr, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{"mcpauthz_opa_decision_log_logged_total 2", "mcpauthz_opa_decision_log_dropped_total 0"} {
		if !strings.Contains(rr.Body.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	f.svc.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), tok) || strings.Contains(string(raw), `"d1"`) {
		t.Fatal("OPA decision log holds the token or masked arguments")
	}
	var events []map[string]any
	for line := range strings.Lines(string(raw)) {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not JSON: %v: %s", err, line)
		}
		events = append(events, ev)
	}
	if len(events) != 2 {
		t.Fatalf("%d events, want 2", len(events))
	}
	for i, want := range []struct {
		allowed bool
		tool    string
	}{{true, "readDocument"}, {false, "deleteDocument"}} {
		ev := events[i]
		in, _ := ev["input"].(map[string]any)
		mcpIn, _ := in["mcp"].(map[string]any)
		principal, _ := in["principal"].(map[string]any)
		result, _ := ev["result"].(map[string]any)
		bundles, _ := ev["bundles"].(map[string]any)
		labels, _ := ev["labels"].(map[string]any)
		if ev["path"] != "mcpauthz/decision" || ev["decision_id"] == "" || result["allowed"] != want.allowed ||
			mcpIn["tool"] != want.tool || principal["subject"] != "vera" || labels["env"] != "test" || len(bundles) != 1 {
			t.Errorf("event %d = %v", i, ev)
		}
		for _, b := range bundles {
			if b.(map[string]any)["revision"] != "rbac-1" {
				t.Errorf("bundles = %v", bundles)
			}
		}
		if _, present := mcpIn["arguments"]; present {
			t.Errorf("masked arguments present: %v", mcpIn)
		}
		if erased, _ := ev["erased"].([]any); len(erased) != 2 {
			t.Errorf("erased = %v", ev["erased"])
		}
	}
}

// Item: tokens never outlive their source. A caller token expiring in 90s
// (less than the issuer's 5m token_ttl) yields a delegated token and a
// signed attribution that expire with it, not later.
func TestDelegatedAndAttributionNeverOutliveCallerToken(t *testing.T) {
	f := delegatedFixture(t, true)
	callerExp := time.Now().Add(90 * time.Second).Unix()
	tok := f.token(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}, "scope": "docs:read", "exp": callerExp})
	o := f.do(t, req{body: toolCall("readDocument"), headers: bearer(tok)})
	if !o.allowed {
		t.Fatalf("denied %d %s", o.status, o.body)
	}
	minted, _ := strings.CutPrefix(o.set["authorization"], "Bearer ")
	for name, jwt := range map[string]string{"delegated token": minted, "attribution": o.set["x-mcp-attribution"]} {
		_, c := verifyMinted(t, f.svc.issuer, jwt)
		exp, _ := c["exp"].(float64)
		if int64(exp) > callerExp || int64(exp) < callerExp-5 {
			t.Errorf("%s exp = %d, caller token exp = %d: must not outlive it", name, int64(exp), callerExp)
		}
	}
}
