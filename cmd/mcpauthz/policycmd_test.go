package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeBundle(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const tinyPolicy = `package mcpauthz

decision := {"allow": true} if input.ok
else := {"allow": false, "reason": "nope"}
`

func TestPolicyCmdTest(t *testing.T) {
	failing := writeBundle(t, map[string]string{
		"policy.rego": tinyPolicy,
		"policy_test.rego": `package mcpauthz_test

test_ok if data.mcpauthz.decision.allow with input as {"ok": true}

test_wrong if {
	trace("checking the denial")
	data.mcpauthz.decision.reason == "other" with input as {}
}
`,
	})
	broken := writeBundle(t, map[string]string{
		"policy.rego":      "package mcpauthz\n\ndecision := {\"allow\": true} if {\n\tinput.x ==\n}\n",
		"policy_test.rego": "package mcpauthz_test\n\ntest_x if true\n",
	})
	noTests := writeBundle(t, map[string]string{"policy.rego": tinyPolicy})
	// partial leaves the else branch of tinyPolicy uncovered.
	partial := writeBundle(t, map[string]string{
		"policy.rego":      tinyPolicy,
		"policy_test.rego": "package mcpauthz_test\n\ntest_ok if data.mcpauthz.decision.allow with input as {\"ok\": true}\n",
	})

	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    []string // substrings or /regexp/
		stderr    []string
		notStdout []string
	}{
		{"passing bundle with coverage", []string{"test", "--coverage", "../../bundles/scopes"}, 0,
			[]string{`/PASS: (\d+)/\d+/`, "coverage:", "bundles/scopes/policy.rego", "100.0%", "total (policy files)"}, nil,
			[]string{"FAIL", "test_housekeeping: PASS"}},
		{"flags after DIR, verbose lists tests", []string{"test", "../../bundles/guardrails", "-v", "--run", "test_chain_depth$"}, 0,
			[]string{"data.mcpauthz.guardrails_test.test_chain_depth: PASS", "guardrails/policy_test.rego:", "PASS: 1/1"}, nil, nil},
		{"failure shows location, note and failing expression", []string{"test", failing}, 1,
			[]string{"test_wrong: FAIL", "policy_test.rego:5", "checking the denial", "failed at ", `data.mcpauthz.decision.reason == "other"`, "PASS: 1/2", "FAIL: 1/2"},
			[]string{"mcpauthz test: 1 of 2 tests failed"}, []string{"test_ok: PASS"}},
		{"verbose failure prints the trace", []string{"test", "-v", failing}, 1,
			[]string{"test_ok: PASS", "test_wrong: FAIL", "| Note \"checking the denial\""}, nil, nil},
		{"syntax error with file:line:col", []string{"test", broken}, 1, nil,
			[]string{`/policy\.rego:\d+:\d+: rego_parse_error/`}, nil},
		{"threshold not met", []string{"test", "--threshold", "99.5", partial}, 1,
			[]string{"coverage:", "policy.rego"}, []string{"is below --threshold 99.5%"}, nil},
		{"uncovered lines with -v", []string{"test", "--coverage", "-v", partial}, 0,
			[]string{"not covered: lines "}, nil, nil},
		{"no tests", []string{"test", noTests}, 1, []string{"no tests ran"}, []string{"no tests found"}, nil},
		{"run filter matches nothing", []string{"test", "--run", "^nothing$", "../../bundles/abac"}, 1, nil, []string{`no tests match --run "^nothing$"`}, nil},
		{"bad run regexp", []string{"test", "--run", "(", "../../bundles/abac"}, 1, nil, []string{"run filter"}, nil},
		{"missing DIR", []string{"test", "--coverage"}, 2, nil, []string{"at least one bundle DIR"}, nil},
		{"missing directory", []string{"test", filepath.Join(t.TempDir(), "nope")}, 1, nil, []string{"nope"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			assertContains(t, "stdout", stdout, tc.stdout)
			assertContains(t, "stderr", stderr, tc.stderr)
			for _, s := range tc.notStdout {
				if strings.Contains(stdout, s) {
					t.Errorf("stdout contains %q:\n%s", s, stdout)
				}
			}
		})
	}
}

func assertContains(t *testing.T, what, got string, wants []string) {
	t.Helper()
	for _, w := range wants {
		if strings.HasPrefix(w, "/") && strings.HasSuffix(w, "/") {
			if !regexp.MustCompile(w[1 : len(w)-1]).MatchString(got) {
				t.Errorf("%s does not match %s:\n%s", what, w, got)
			}
			continue
		}
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}

func TestPolicyCmdEval(t *testing.T) {
	const td = "testdata/eval/"
	tmp := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	scopesCall := write("scopes.json", `{"server": "docs",
		"claims": {"iss": "https://idp.example.com", "sub": "alice", "scope": "docs:read"},
		"mcp": {"method": "tools/call", "tool": "deleteDocument", "arguments": {"id": "d1"}}}`)
	workload := write("workload.json", `{"server": "docs", "source_principal": "spiffe://prod.example.org/ns/jobs/sa/indexer",
		"mcp": {"method": "tools/call", "tool": "readDocument", "arguments": {"id": "d1"}}}`)
	cfgFile := write("config.yaml", `version: 1
identity:
  issuers:
    - name: corp
      issuer: https://idp.example.com
policy:
  bundles:
    - path: /nonexistent/replaced/by/--bundle
headers:
  strip: [x-user-id]
servers:
  - id: docs
    resource: https://mcp.example.com/docs/mcp
    match: {path_prefix: /docs/}
    credential: {mode: public}
`)
	garbageToken := write("garbage.json", `{"attributes": {"request": {"http": {"method": "POST", "path": "/docs/mcp", "host": "eval.local",
		"headers": {":path": "/docs/mcp", "content-type": "application/json", "authorization": "Bearer not-a-jwt"},
		"body": "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}"}}, "contextExtensions": {"mcp_server": "docs"}}}`)

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
		absent []string
	}{
		{"short call allowed", []string{"eval", "--bundle", "../../bundles/rbac", "--request", td + "viewer-read.json"}, 0,
			[]string{"signature not verified (eval is offline)", "== input ==", `"kind": "agent_for_user"`, `"user-agent": "eval-example/1.0"`,
				`"roles": [`, "== decision ==", "allow: true", "reason: allowed", "revision: rbac-1",
				"ALLOWED (HTTP 200)", "x-mcp-actor: eval/agent-1", "x-mcp-org: acme", "upstream headers removed: authorization"},
			nil, []string{"== trace ==", "Bearer", "eyJ"}},
		{"short call denied with explain", []string{"eval", "--explain", "--bundle", "../../bundles/rbac", "--request", td + "viewer-delete.json"}, 0,
			[]string{"allow: false", "reason: role_not_allowed", "message: role viewer may not call deleteDocument", "http_status: 403",
				"== trace ==", "Enter data.mcpauthz.decision", "bundles/rbac/policy.rego:", "DENIED (HTTP 403)",
				`"message":"access denied: role viewer may not call deleteDocument"`},
			nil, nil},
		{"insufficient scope challenge", []string{"eval", "--bundle", "../../bundles/scopes", "--request", scopesCall}, 0,
			[]string{"reason: insufficient_scope", "required_scopes: docs:write docs:admin", "DENIED (HTTP 403)",
				`www-authenticate: Bearer error="insufficient_scope"`, `scope="docs:read docs:write docs:admin"`},
			nil, nil},
		{"decided before policy", []string{"eval", "--bundle", "../../bundles/rbac", "--request", garbageToken}, 0,
			[]string{"the policy was not evaluated", "credential refused: eval: bearer token is not a JWT", "DENIED (HTTP 401)", "www-authenticate: Bearer error=\"invalid_token\""},
			nil, []string{"== input ==", "not-a-jwt"}},
		{"mTLS workload", []string{"eval", "--bundle", "../../bundles/scopes", "--request", workload}, 0,
			[]string{`"method": "mtls"`, "scopes: documents.read", "ALLOWED (HTTP 200)", "x-mcp-kind: agent"}, nil, nil},
		{"with --config", []string{"eval", "--config", cfgFile, "--bundle", "../../bundles/rbac", "--request", td + "viewer-read.json"}, 0,
			[]string{"claims.aud set to the server's resource https://mcp.example.com/docs/mcp", `"host": "mcp.example.com"`,
				`"user_key": "corp|acme|alice"`, "ALLOWED (HTTP 200)"}, nil, nil},
		{"not JSON", []string{"eval", "--bundle", "../../bundles/rbac", "--request", write("bad.json", "{nope")}, 1,
			nil, []string{"mcpauthz eval: ", "bad.json: not a JSON object"}, nil},
		{"unknown field", []string{"eval", "--bundle", "../../bundles/rbac", "--request", write("unknown.json", `{"mcp": {"method": "ping"}, "tokn": "x"}`)}, 1,
			nil, []string{`invalid short call`, `unknown field "tokn"`}, nil},
		{"missing method", []string{"eval", "--bundle", "../../bundles/rbac", "--request", write("nomethod.json", `{"mcp": {"tool": "readDocument"}}`)}, 1,
			nil, []string{"mcp.method is required"}, nil},
		{"claims without iss", []string{"eval", "--bundle", "../../bundles/rbac", "--request", write("noiss.json", `{"claims": {"sub": "a"}, "mcp": {"method": "ping"}}`)}, 1,
			nil, []string{"claims.iss (a string) is required"}, nil},
		{"bad CheckRequest", []string{"eval", "--bundle", "../../bundles/rbac", "--request", write("badcr.json", `{"attributes": {"request": {"http": {"method": 7}}}}`)}, 1,
			nil, []string{"invalid CheckRequest (protojson)"}, nil},
		{"CheckRequest without http", []string{"eval", "--bundle", "../../bundles/rbac", "--request", write("nohttp.json", `{"attributes": {}}`)}, 1,
			nil, []string{"no attributes.request.http"}, nil},
		{"missing request file", []string{"eval", "--bundle", "../../bundles/rbac", "--request", filepath.Join(tmp, "absent.json")}, 1,
			nil, []string{"absent.json"}, nil},
		{"bad bundle", []string{"eval", "--bundle", filepath.Join(tmp, "nobundle"), "--request", td + "viewer-read.json"}, 1,
			nil, []string{"nobundle"}, nil},
		{"usage: no request", []string{"eval", "--bundle", "../../bundles/rbac"}, 2, nil, []string{"Usage: mcpauthz eval"}, nil},
		{"usage: bad format", []string{"eval", "--format", "xml", "--bundle", "x", "--request", "y"}, 2, nil, []string{"Usage: mcpauthz eval"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			assertContains(t, "stdout", stdout, tc.stdout)
			assertContains(t, "stderr", stderr, tc.stderr)
			for _, s := range tc.absent {
				if strings.Contains(stdout, s) || strings.Contains(stderr, s) {
					t.Errorf("output contains %q:\n%s\n%s", s, stdout, stderr)
				}
			}
		})
	}
}

// The CheckRequest form in JSON output: the decision, the outcome, and the
// bearer token nowhere in the output.
func TestPolicyCmdEvalCheckRequestJSON(t *testing.T) {
	const file = "testdata/eval/checkrequest-editor-update.json"
	code, stdout, stderr := runCmd(t, "eval", "--bundle", "../../bundles/rbac", "--request", file, "--format", "json", "--explain")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res evalResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	if len(res.Evaluations) != 1 {
		t.Fatalf("evaluations = %d, want 1", len(res.Evaluations))
	}
	ev := res.Evaluations[0]
	if d := ev.Decision; !d.Allow || d.Reason != "allowed" || strings.Join(d.Scopes, " ") != "docs:write" {
		t.Errorf("decision = %+v", d)
	}
	in, _ := ev.Input.(map[string]any)
	mcp, _ := in["mcp"].(map[string]any)
	principal, _ := in["principal"].(map[string]any)
	if mcp["tool"] != "updateDocument" || principal["subject"] != "bob" || principal["kind"] != "human" {
		t.Errorf("input mcp=%v principal=%v", mcp, principal)
	}
	if !strings.Contains(ev.Trace, "Exit data.mcpauthz.decision") {
		t.Errorf("trace lacks the decision exit:\n%.1000s", ev.Trace)
	}
	if !res.Outcome.Allowed || res.Outcome.Status != 200 {
		t.Errorf("outcome = %+v", res.Outcome)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tok := regexp.MustCompile(`Bearer ([A-Za-z0-9_.-]+)`).FindSubmatch(raw)
	if tok == nil {
		t.Fatal("test premise: the request file carries a bearer token")
	}
	if strings.Contains(stdout, string(tok[1])) {
		t.Errorf("the bearer token appears in the output")
	}
}

func TestEvalRedactHeader(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"authorization", "Bearer abc.def.ghi", "[redacted, 18 bytes]"},
		{"x-upstream-token", "s3cr3t", "[redacted, 6 bytes]"},
		{"x-api-key", "k", "[redacted, 1 bytes]"},
		{"x-mcp-attribution", "whatever", "[redacted, 8 bytes]"},
		{"x-custom", "Basic dXNlcjpwYXNz", "[redacted, 18 bytes]"},
		{"x-custom", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.sig", "[redacted, 39 bytes]"},
		{"x-mcp-subject", "alice", "alice"},
		{"x-mcp-user", "eval|acme|alice", "eval|acme|alice"},
		{"authorization", "", ""},
	}
	for _, tc := range tests {
		if got := evalRedactHeader(tc.name, tc.value); got != tc.want {
			t.Errorf("evalRedactHeader(%q, %q) = %q, want %q", tc.name, tc.value, got, tc.want)
		}
	}
}
