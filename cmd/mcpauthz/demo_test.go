package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
)

// demoTestCtx bounds one test; it is a safety net, not a timing assertion.
func demoTestCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// jwtLike matches anything that looks like a compact JWS.
var jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`)

func TestDemoTranscript(t *testing.T) {
	var out, errb lockedBuffer
	if err := cmdDemo(demoTestCtx(t), nil, &out, &errb); err != nil {
		t.Fatalf("demo failed: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	got := out.String()
	t.Log("\n" + got)
	for _, want := range []string{
		"development stand-in for Envoy, applying the ext_authz contract; use real Envoy in production",
		"policy bundle rbac (revision rbac-1)",
		"document server, 5 tools",
		"all outcomes as expected",
		// The delegated token the upstream received names the user, the
		// agent acting for them and only the scope this tool needs.
		// Subjects are qualified by the issuer's user namespace ("dev").
		`sub="dev/bob" act={"sub":"dev/docs-assistant"} scope="docs:write"`,
		`sub="dev/alice" scope="docs:read"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("transcript lacks %q", want)
		}
	}
	// One line per scripted call, with the outcome the client actually saw.
	lines := []struct {
		who, op string
		want    *regexp.Regexp
	}{
		{"alice (human, viewer)", "tools/list", regexp.MustCompile(`ALLOW  5 tools; upstream got Authorization: Bearer eyJ[\w-]{3}… \(\d+ bytes\) — delegated credential`)},
		{"alice (human, viewer)", "tools/call readDocument", regexp.MustCompile(`ALLOW  upstream got Authorization: Bearer eyJ[\w-]{3}… \(\d+ bytes\) — delegated credential, not the caller's token`)},
		{"alice (human, viewer)", "tools/call deleteDocument", regexp.MustCompile(`DENY 403 role_not_allowed: "access denied: role viewer may not call deleteDocument"`)},
		{"assistant for bob (agent→editor)", "tools/call updateDocument", regexp.MustCompile(`ALLOW  upstream got Authorization: Bearer eyJ[\w-]{3}… \(\d+ bytes\) — delegated credential`)},
		{"assistant for root (agent→admin)", "tools/call deleteDocument", regexp.MustCompile(`DENY 403 agent_destructive_tool: ".*deleteDocument"`)},
		{"batch-bot (agent alone)", "tools/call readDocument", regexp.MustCompile(`ALLOW  upstream got Authorization: Bearer`)},
		{"batch-bot (agent alone)", "tools/call createDocument", regexp.MustCompile(`DENY 403 agent_tool_not_allowed: ".*createDocument"`)},
		{"no token", "connect", regexp.MustCompile(`DENY 401 no_credentials: WWW-Authenticate: Bearer resource_metadata="http://127\.0\.0\.1:\d+/\.well-known/oauth-protected-resource/docs/mcp"`)},
		// The tracker (mode individual): mcpauthz's own connect link
		// before alice connects, her own provider token afterwards.
		{"alice (human, viewer)", "tracker: initialize", regexp.MustCompile(`AUTHORIZE NEEDS_AUTHORIZATION: "connect your Issue Tracker account at http://127\.0\.0\.1:\d+/connect/start\?link=…" \(upstream not reached\)`)},
		{"alice (human, viewer)", "connects tracker", regexp.MustCompile(`AUTHORIZED \(signed in at the dev IdP, consented at the provider\)`)},
		{"alice (human, viewer)", "tracker: readDocument", regexp.MustCompile(`ALLOW  upstream got Authorization: Bearer … \(\d+ bytes\) — alice's own provider token \(the provider verifies it\), not the caller's token`)},
		{"alice (human, viewer)", "revokes tracker", regexp.MustCompile(`REVOKED \(on /connect/: a form POST with its CSRF token\)`)},
	}
	for _, l := range lines {
		t.Run(l.who+" "+l.op, func(t *testing.T) {
			for line := range strings.Lines(got) {
				if strings.HasPrefix(line, "✓ "+l.who) && strings.Contains(line, " "+l.op+" ") {
					if !l.want.MatchString(line) {
						t.Errorf("line %q does not match %s", line, l.want)
					}
					return
				}
			}
			t.Errorf("no ✓ line for %s %s", l.who, l.op)
		})
	}
	if !strings.Contains(got, "verified identity headers: x-mcp-subject=dev/bob x-mcp-kind=agent_for_user x-mcp-actor=dev/docs-assistant") {
		t.Error("no attribution line for the agent acting for bob")
	}
	// After revoking, alice's next tracker call gets the link again.
	if !regexp.MustCompile(`(?m)^✓ alice \(human, viewer\) +tracker: readDocument +AUTHORIZE REVOKED: "connect your Issue Tracker account at http://127\.0\.0\.1:\d+/connect/start\?link=…" \(upstream not reached\)$`).MatchString(got) {
		t.Error("no line for alice's tracker call after revoking")
	}
	// 5 denials of the document server; 4 of the tracker: server/discover
	// and initialize before alice connects, the call after she revoked and
	// the session's end.
	if m := regexp.MustCompile(`decision log: (\d+) decisions \((\d+) allowed, (\d+) denied\)`).FindStringSubmatch(got); m == nil || m[3] != "9" {
		t.Errorf("decision log summary missing or wrong: %v", m)
	}
	if jwtLike.MatchString(got) || jwtLike.MatchString(errb.String()) {
		t.Error("the transcript contains a raw token")
	}
	if regexp.MustCompile(`[0-9a-f]{20,}`).MatchString(got) {
		t.Error("the transcript contains a long hex string (the upstream secret?)")
	}
	if _, ok := os.LookupEnv(demoSecretEnv); ok {
		t.Errorf("%s still set after the demo", demoSecretEnv)
	}
	assertReadmeTranscript(t, got)
}

func TestDemoVerboseShowsTheDecisionLog(t *testing.T) {
	var out, errb lockedBuffer
	if err := cmdDemo(demoTestCtx(t), []string{"--verbose"}, &out, &errb); err != nil {
		t.Fatalf("demo failed: %v\n%s", err, errb.String())
	}
	got := out.String()
	_, after, ok := strings.Cut(got, "decision log (JSON lines")
	if !ok {
		t.Fatalf("no decision log section:\n%s", got)
	}
	var n, denied int
	for line := range strings.Lines(after) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, `{"decision_id"`) {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("bad decision line %q: %v", line, err)
		}
		n++
		if rec["allow"] == false {
			denied++
		}
	}
	if n < 8 || denied != 9 {
		t.Errorf("decision lines = %d, denied = %d; want >= 8 and 9", n, denied)
	}
	if !strings.Contains(got, "mcpauthz log:") || !strings.Contains(got, `"msg":"mcpauthz serving"`) {
		t.Error("verbose output lacks mcpauthz's own log")
	}
	if jwtLike.MatchString(got) {
		t.Error("verbose output contains a raw token")
	}
}

// TestDemoReportsUnexpectedOutcomes: a call whose outcome differs from the
// script is reported as a failure naming the call.
func TestDemoReportsUnexpectedOutcomes(t *testing.T) {
	ctx := demoTestCtx(t)
	d, err := startDemo(ctx, io.Discard, false)
	if d != nil {
		defer d.close()
	}
	if err != nil {
		t.Fatal(err)
	}
	principals, steps := demoScript()
	var wrong []demoStep
	for _, s := range steps {
		switch {
		case s.tool == docserver.ToolDelete && s.who != nil && s.who.key == "ALICE":
			s.wantAllow, s.wantStatus = true, 0 // the policy denies this
		case s.method == "connect":
			s.wantStatus = http.StatusForbidden // it is a 401
		}
		wrong = append(wrong, s)
	}
	var out lockedBuffer
	failures := d.runScript(ctx, &out, principals, wrong)
	if len(failures) != 2 {
		t.Fatalf("failures = %q, want 2\n%s", failures, out.String())
	}
	if !strings.Contains(failures[0], "alice (human, viewer) tools/call deleteDocument: want ALLOW, got DENY 403") ||
		!strings.Contains(failures[1], "no token connect: want DENY 403, got DENY 401") {
		t.Errorf("failures = %q", failures)
	}
	if !strings.Contains(out.String(), "✗ alice (human, viewer)") || !strings.Contains(out.String(), "expected ALLOW") {
		t.Errorf("transcript does not flag the mismatch:\n%s", out.String())
	}
}

// TestDemoTrackerReportsFailures: when alice cannot connect (the tracker's
// OAuth provider is down), the tracker steps stop with a failure naming
// the step, and nothing reaches the tracker.
func TestDemoTrackerReportsFailures(t *testing.T) {
	ctx := demoTestCtx(t)
	d, err := startDemo(ctx, io.Discard, false)
	if d != nil {
		defer d.close()
	}
	if err != nil {
		t.Fatal(err)
	}
	d.provider.Close()
	var out lockedBuffer
	failures := d.runTracker(ctx, &out)
	if len(failures) != 1 || !strings.Contains(failures[0], "alice (human, viewer) connects tracker: ") {
		t.Fatalf("failures = %q\n%s", failures, out.String())
	}
	if !strings.Contains(out.String(), "✓ alice (human, viewer)              tracker: initialize         AUTHORIZE NEEDS_AUTHORIZATION") ||
		!strings.Contains(out.String(), "✗ alice (human, viewer)              connects tracker") {
		t.Errorf("transcript:\n%s", out.String())
	}
	if n := len(d.tracker.Received()); n != 0 {
		t.Errorf("the tracker received %d requests", n)
	}
	if jwtLike.MatchString(out.String()) || jwtLike.MatchString(strings.Join(failures, " ")) {
		t.Error("a raw token in the transcript or failures")
	}
}

func TestDemoKeepRunningServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(demoTestCtx(t))
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan error, 1)
	go func() { done <- cmdDemo(ctx, []string{"--keep-running"}, &out, &errb) }()
	waitForOutput(t, &out, "Everything keeps running", done)

	got := out.String()
	endpoint := regexp.MustCompile(`MCP endpoint \(through the Envoy stand-in\):\s+(\S+)`).FindStringSubmatch(got)
	alice := regexp.MustCompile(`export ALICE=(\S+)`).FindStringSubmatch(got)
	mint := regexp.MustCompile(`curl -s (\S+/dev/token)`).FindStringSubmatch(got)
	if endpoint == nil || alice == nil || mint == nil {
		t.Fatalf("no endpoint/token/mint URL in:\n%s", got)
	}
	// The printed token works through the printed endpoint, and is denied deleteDocument.
	status, _, body, err := docserver.PostJSONRPC(ctx, nil, endpoint[1],
		map[string]string{"Authorization": "Bearer " + alice[1], "Mcp-Protocol-Version": "2025-11-25"},
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deleteDocument","arguments":{"id":"doc-1"}}}`))
	if err != nil || status != http.StatusForbidden || !strings.Contains(string(body), "role viewer may not call deleteDocument") {
		t.Errorf("delete as alice: status %d body %s err %v", status, body, err)
	}
	// The mint endpoint defaults aud to the endpoint.
	resp, err := http.PostForm(mint[1], url.Values{"sub": {"carol"}, "roles": {"editor"}})
	if err != nil {
		t.Fatal(err)
	}
	var tr devidp.DevTokenResponse
	_ = json.NewDecoder(resp.Body).Decode(&tr)
	resp.Body.Close()
	if claims := jwtClaims("Bearer " + tr.AccessToken); claims == nil || claims["aud"] != endpoint[1] || claims["sub"] != "carol" {
		t.Errorf("minted claims = %v", claims)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop after cancel")
	}
	if !strings.Contains(out.String(), "stopping.") {
		t.Error("no stopping line")
	}
}

func TestDemoUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"extra argument", []string{"now"}},
		{"unknown flag", []string{"--fast"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb lockedBuffer
			err := cmdDemo(context.Background(), tt.args, &out, &errb)
			if err == nil || (!errors.Is(err, flag.ErrHelp) && !strings.Contains(err.Error(), "flag provided but not defined")) {
				t.Errorf("err = %v", err)
			}
			if out.String() != "" {
				t.Errorf("stdout = %q, want nothing started", out.String())
			}
		})
	}
}

func TestRenderDemoConfigQuotesValues(t *testing.T) {
	p := demoConfigParams{
		IssuerURL:   "http://127.0.0.1:1234",
		BundleDir:   `/tmp/a dir: with "quotes" #and hash`,
		DecisionLog: "/tmp/x/decisions.log",
		Resource:    "http://127.0.0.1:5678/docs/mcp",
		SecretEnv:   demoSecretEnv,
		HTTPAddr:    "127.0.0.1:8181",
		MintIssuer:  "http://127.0.0.1:8181/issuer",

		PublicURL: "http://127.0.0.1:8181", LoginClient: demoLoginClient, LoginSecretFile: "/tmp/x/login secret",
		TrackerResource: "http://127.0.0.1:5678/tracker/mcp", ProviderURL: "http://127.0.0.1:9999",
		TrackerClient: demoTrackerClient, TrackerSecretFile: "/tmp/x/tracker: secret",
	}
	b, err := renderDemoConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Identity struct {
			Issuers []struct {
				Issuer string `yaml:"issuer"`
			} `yaml:"issuers"`
		} `yaml:"identity"`
		Policy struct {
			Bundles []struct {
				Path string `yaml:"path"`
			} `yaml:"bundles"`
		} `yaml:"policy"`
		Audit struct {
			Output string `yaml:"output"`
		} `yaml:"audit"`
		Issuer struct {
			Issuer string `yaml:"issuer"`
		} `yaml:"issuer"`
		Servers []struct {
			Resource   string `yaml:"resource"`
			Credential struct {
				Mode string `yaml:"mode"`
			} `yaml:"credential"`
			Options []struct {
				Mode           string `yaml:"mode"`
				ServiceAccount struct {
					Secret map[string]string `yaml:"secret"`
				} `yaml:"service_account"`
			} `yaml:"credential_options"`
		} `yaml:"servers"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("rendered config is not YAML: %v\n%s", err, b)
	}
	if doc.Identity.Issuers[0].Issuer != p.IssuerURL || doc.Policy.Bundles[0].Path != p.BundleDir ||
		doc.Audit.Output != p.DecisionLog || doc.Servers[0].Resource != p.Resource ||
		doc.Issuer.Issuer != p.MintIssuer || doc.Servers[0].Credential.Mode != "delegated" ||
		doc.Servers[0].Options[0].ServiceAccount.Secret["env"] != demoSecretEnv ||
		len(doc.Servers) != 2 || doc.Servers[1].Resource != p.TrackerResource || doc.Servers[1].Credential.Mode != "individual" {
		t.Errorf("round trip = %+v", doc)
	}
}

func TestAbbreviateCredential(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Bearer 3f9a1c0123456789", "Bearer 3f9a1c… (16 bytes)"},
		{"Bearer abc", "Bearer abc… (3 bytes)"},
		{"rawtoken-value", "rawtok… (14 bytes)"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := abbreviateCredential(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestJWTClaimsAndRPCErrorMessage(t *testing.T) {
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"aud":"x","act":{"sub":"a"}}`))
	if c := jwtClaims("Bearer hdr." + payload + ".sig"); c == nil || c["aud"] != "x" {
		t.Errorf("jwtClaims = %v", c)
	}
	for _, notJWT := range []string{"Bearer abcdef", "Bearer a.b", "Bearer a.!!!.c", "Bearer a." + base64.RawURLEncoding.EncodeToString([]byte("[1]")) + ".c"} {
		if c := jwtClaims(notJWT); c != nil {
			t.Errorf("jwtClaims(%q) = %v, want nil", notJWT, c)
		}
	}
	if m := rpcErrorMessage(`{"jsonrpc":"2.0","id":1,"error":{"code":-32003,"message":"access denied: x"}}`); m != "access denied: x" {
		t.Errorf("message = %q", m)
	}
	if m := rpcErrorMessage("plain text"); m != "plain text" {
		t.Errorf("message = %q", m)
	}
}

// waitForOutput polls buf until it contains s; it fails if the command
// returned first.
func waitForOutput(t *testing.T, buf *lockedBuffer, s string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(buf.String(), s) {
		select {
		case err := <-done:
			t.Fatalf("command returned %v before printing %q:\n%s", err, s, buf.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output:\n%s", s, buf.String())
		}
	}
}

func TestDevIDPCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(demoTestCtx(t))
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdDevIDP(ctx, []string{"--listen", "127.0.0.1:0", "--audience", "http://mcp.test/docs/mcp", "--token-ttl", "20m"}, &out, &errb)
	}()
	waitForOutput(t, &out, "agent for bob", done)
	got := out.String()
	if !strings.Contains(got, "development identity provider — mints tokens for anyone; never use in production") {
		t.Errorf("no loud warning:\n%s", got)
	}
	m := regexp.MustCompile(`issuer (http://127\.0\.0\.1:\d+) `).FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("no issuer URL in:\n%s", got)
	}
	iss := m[1]
	if n := len(jwtLike.FindAllString(got, -1)); n != 3 {
		t.Errorf("ready tokens printed = %d, want 3", n)
	}

	resp, err := http.PostForm(iss+"/dev/token", url.Values{"sub": {"dana"}, "roles": {"admin"}, "act": {"helper"}})
	if err != nil {
		t.Fatal(err)
	}
	var tr devidp.DevTokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 {
		t.Fatalf("mint: status %d err %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if tr.ExpiresIn != 1200 || tr.TokenType != "Bearer" {
		t.Errorf("token response = %+v", tr)
	}
	// The token verifies against the served JWKS and carries the claims.
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSONT(t, iss+"/.well-known/openid-configuration", &disc)
	var set jose.JSONWebKeySet
	getJSONT(t, disc.JWKSURI, &set)
	jws, err := jose.ParseSigned(tr.AccessToken, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	keys := set.Key(jws.Signatures[0].Protected.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid not in JWKS")
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	var claims map[string]any
	_ = json.Unmarshal(payload, &claims)
	if disc.Issuer != iss || claims["iss"] != iss || claims["aud"] != "http://mcp.test/docs/mcp" || claims["sub"] != "dana" {
		t.Errorf("discovery issuer %q, claims %v", disc.Issuer, claims)
	}
	if act, _ := claims["act"].(map[string]any); act["sub"] != "helper" {
		t.Errorf("act = %v", claims["act"])
	}
	// Bad input is a 400 with a JSON error.
	resp, err = http.PostForm(iss+"/dev/token", url.Values{"roles": {"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("missing sub: status %d", resp.StatusCode)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("dev-idp returned %v", err)
	}
}

func TestDevIDPIssuerFlag(t *testing.T) {
	ctx, cancel := context.WithCancel(demoTestCtx(t))
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdDevIDP(ctx, []string{"--listen", "127.0.0.1:0", "--issuer", "http://idp:9000/"}, &out, &errb)
	}()
	waitForOutput(t, &out, "mint a token", done)
	got := out.String()
	if !strings.Contains(got, "issuer http://idp:9000 (listening on 127.0.0.1:") || !strings.Contains(got, "-d aud=RESOURCE-URL") {
		t.Errorf("output:\n%s", got)
	}
	if jwtLike.MatchString(got) {
		t.Error("ready tokens printed without an audience")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := cmdDevIDP(context.Background(), []string{"--token-ttl", "0s"}, io.Discard, io.Discard); err == nil {
		t.Error("--token-ttl 0s accepted")
	}
}

func TestDemoMCPCommandLogsHeaderNamesOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(demoTestCtx(t))
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan error, 1)
	go func() { done <- cmdDemoMCP(ctx, []string{"--listen", "127.0.0.1:0"}, &out, &errb) }()
	waitForOutput(t, &out, "/mcp", done)
	m := regexp.MustCompile(`at (http://127\.0\.0\.1:\d+/mcp)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no URL in %q", out.String())
	}
	const secretValue = "s3cret-value-never-logged"
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: m[1], Token: secretValue,
		ExtraHeaders: map[string]string{"X-Api-Key": secretValue}, DisableStandaloneSSE: true})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.CallTool(ctx, docserver.ToolRead, map[string]any{"id": "doc-1"})
	if err != nil || res.IsError {
		t.Fatalf("readDocument: %v %v", res, err)
	}
	_ = c.Close()
	logs := errb.String()
	if !strings.Contains(logs, `"rpc_method":"tools/call","tool":"readDocument"`) {
		t.Errorf("tool call not logged:\n%s", logs)
	}
	if !regexp.MustCompile(`"header_names":"\S*Authorization\S*X-Api-Key`).MatchString(logs) {
		t.Errorf("header names not logged:\n%s", logs)
	}
	if strings.Contains(logs, secretValue) {
		t.Error("a header value reached the log")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRPCSummary(t *testing.T) {
	tests := []struct{ body, method, tool string }{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"readDocument"}}`, "tools/call", "readDocument"},
		{` [{"method":"tools/call","params":{"name":"deleteDocument"}},{"method":"ping"}]`, "tools/call", "deleteDocument"},
		{`{"method":"initialize","params":{"name":"x"}}`, "initialize", ""},
		{`not json`, "", ""},
		{`[]`, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			m, tool := rpcSummary([]byte(tt.body))
			if m != tt.method || tool != tt.tool {
				t.Errorf("got %q %q, want %q %q", m, tool, tt.method, tt.tool)
			}
		})
	}
}

func getJSONT(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
