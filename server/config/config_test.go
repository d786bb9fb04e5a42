package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const validDoc = `
version: 1
listen: {grpc: "127.0.0.1:9191", http: "127.0.0.1:8181"}
identity:
  issuers:
    - name: corp
      issuer: https://idp.example.com
policy:
  bundles: [{path: BUNDLE}]
servers:
  - id: docs
    resource: https://mcp.example.com/docs/mcp
    match: {host: mcp.example.com, path_prefix: /docs/}
    scopes: [docs:read, docs:write]
    credential:
      mode: static
      static:
        headers:
          - name: X-API-Key
            value: {env: DOCS_API_KEY}
`

func doc(t *testing.T, s string) []byte {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package mcpauthz\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(s, "BUNDLE", dir))
}

func TestParseValid(t *testing.T) {
	cfg, err := Parse(doc(t, validDoc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	s := cfg.Servers[0]
	if got, want := s.AuthorizationServers, []string{"https://idp.example.com"}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("authorization_servers default = %v, want %v", got, want)
	}
	if got := s.AllowedOrigins; len(got) != 1 || got[0] != "https://mcp.example.com" {
		t.Errorf("allowed_origins default = %v", got)
	}
	if cfg.MCP.MaxBodyBytes != DefaultMaxBodyBytes || cfg.Headers.Prefix != "x-mcp-" || cfg.Audit.Output != "stdout" {
		t.Errorf("defaults not applied: %+v %+v %+v", cfg.MCP, cfg.Headers, cfg.Audit)
	}
	if s.Credential.Static == nil || s.Credential.Static.Headers[0].Value.Env != "DOCS_API_KEY" {
		t.Errorf("static header secret ref not decoded: %+v", s.Credential.Static)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want []string // every substring must appear in the error
	}{
		{"unknown top-level key", func(s string) string { return s + "extra: 1\n" }, []string{"extra (line 21): unknown field; known fields: audit, "}},
		{"unknown nested key names its path", func(s string) string {
			return strings.Replace(s, "    scopes: [docs:read, docs:write]", "    scopes: [docs:read, docs:write]\n    scopez: [x]", 1)
		}, []string{"servers[0].scopez (line 15): unknown field"}},
		{"unknown key deep in credential", func(s string) string {
			return strings.Replace(s, "      mode: static", "      mode: static\n      modus: x", 1)
		}, []string{"servers[0].credential.modus (line 17): unknown field; known fields: delegated, individual, mode, service_account, static"}},
		{"case-variant key is unknown", func(s string) string { return strings.Replace(s, "version: 1", "Version: 1", 1) }, []string{"Version (line 2): unknown field"}},
		{"inline secret refused", func(s string) string {
			return strings.Replace(s, "value: {env: DOCS_API_KEY}", "value: hunter2-secret", 1)
		}, []string{"servers[0].credential.static.headers[0].value (line 20): inline secrets are not allowed: use {env: NAME} or {file: PATH}"}},
		{"duplicate server ids", func(s string) string {
			return s + "  - id: docs\n    resource: https://mcp.example.com/other\n    credential: {mode: public}\n"
		}, []string{`servers[1].id (line 21): "docs" already used by servers[0]`}},
		{"http resource off loopback", func(s string) string {
			return strings.Replace(s, "https://mcp.example.com/docs/mcp", "http://mcp.example.com/docs/mcp", 1)
		}, []string{"servers[0].resource", "https"}},
		{"offline_access advertised", func(s string) string {
			return strings.Replace(s, "[docs:read, docs:write]", "[docs:read, offline_access]", 1)
		}, []string{"servers[0].scopes[1] (line 14): offline_access"}},
		{"no servers", func(s string) string { return s[:strings.Index(s, "servers:")] }, []string{"servers: at least one"}},
		{"wrong version", func(s string) string { return strings.Replace(s, "version: 1", "version: 2", 1) }, []string{"version (line 2): must be 1, got 2"}},
		{"unknown issuer name", func(s string) string {
			return strings.Replace(s, "    scopes: [docs:read, docs:write]", "    scopes: [docs:read]\n    issuers: [nope]", 1)
		}, []string{`servers[0].issuers[0] (line 15): no identity issuer named "nope"`}},
		{"bad path prefix", func(s string) string { return strings.Replace(s, "path_prefix: /docs/", "path_prefix: docs", 1) }, []string{"servers[0].match.path_prefix (line 13): must start with /"}},
		{"several errors reported at once", func(s string) string {
			s = strings.Replace(s, "version: 1", "version: 3", 1)
			return strings.Replace(s, "path_prefix: /docs/", "path_prefix: docs", 1)
		}, []string{"version (line 2): must be 1", "servers[0].match.path_prefix (line 13)"}},
		{"two documents", func(s string) string { return s + "---\nversion: 1\n" }, []string{"more than one YAML document"}},
		{"alias refused", func(s string) string {
			return strings.Replace(s, "    scopes: [docs:read, docs:write]", "    scopes: &s [docs:read]\n    labels: *s", 1)
		}, []string{"servers[0].labels (line 15): YAML aliases are not supported"}},
		{"type error", func(s string) string { return strings.Replace(s, "version: 1", "version: one", 1) }, []string{`version (line 2): want a whole number, got "one"`}},
		{"yes is not a boolean", func(s string) string {
			return s[:strings.Index(s, "    scopes:")] + "    allow_anonymous: yes\n" + s[strings.Index(s, "    scopes:"):]
		},
			[]string{`servers[0].allow_anonymous (line 14): want a boolean (true or false), got "yes"`}},
		{"quoted boolean", func(s string) string { return s + "headers: {sign: \"true\"}\n" }, []string{`headers.sign (line 21): want a boolean (true or false), got "true"`}},
		{"fraction is not an integer", func(s string) string { return s + "mcp: {max_sessions: 1.5}\n" }, []string{"mcp.max_sessions (line 21): want a whole number, got 1.5"}},
		{"duration without unit", func(s string) string {
			return strings.Replace(s, `http: "127.0.0.1:8181"}`, `http: "127.0.0.1:8181", shutdown_timeout: "15"}`, 1)
		}, []string{`listen.shutdown_timeout (line 3): want a duration such as 500ms, 30s, 5m or 24h, got "15"`}},
		{"bare number duration", func(s string) string {
			return strings.Replace(s, `http: "127.0.0.1:8181"}`, `http: "127.0.0.1:8181", shutdown_timeout: 15}`, 1)
		}, []string{"listen.shutdown_timeout (line 3): want a duration such as 500ms, 30s, 5m or 24h, got 15"}},
		{"overflow named by the decoder with its path", func(s string) string { return s + "mcp: {max_sessions: 9223372036854775808}\n" },
			[]string{"mcp.max_sessions (line 21): cannot unmarshal !!int `9223372...` into int"}},
		{"scalar for a list", func(s string) string { return strings.Replace(s, "[docs:read, docs:write]", "docs:read", 1) }, []string{`servers[0].scopes (line 14): want a list, got "docs:read"`}},
		{"list for a mapping", func(s string) string {
			return strings.Replace(s, "match: {host: mcp.example.com, path_prefix: /docs/}", "match: [mcp.example.com]", 1)
		}, []string{"servers[0].match (line 13): want a mapping, got a list"}},
		{"mapping for a string", func(s string) string { return strings.Replace(s, "id: docs", "id: {name: docs}", 1) }, []string{"servers[0].id (line 11): want a string, got a mapping"}},
		{"identity errors named once", func(s string) string { return strings.Replace(s, "- name: corp", "- name: \"\"", 1) }, []string{"identity.issuers[0].name (line 6): required"}},
		{"policy errors named once", func(s string) string { return strings.Replace(s, "bundles: [{path: BUNDLE}]", "bundles: []", 1) }, []string{"policy.bundles (line 9): at least one bundle is required"}},
		{"connect errors named once", func(s string) string {
			return strings.Replace(s, "      mode: static\n      static:\n        headers:\n          - name: X-API-Key\n            value: {env: DOCS_API_KEY}\n",
				"      mode: individual\n      individual: {provider: {token_url: https://gh.example.com/t, authorization_url: https://gh.example.com/a, client_id: c, auth_style: none}}\n", 1) +
				"connections: {public_url: https://mcpauthz.example.com}\nconnect: {login: {issuer: corp}}\n"
		}, []string{"connect.login.client_id (line 19): required"}},
		{"builtin issuer field issuer.issuer", func(s string) string { return s + "issuer: {issuer: ftp://x}\n" }, []string{"issuer.issuer (line 21): "}},
		{"secret errors named by field", func(s string) string {
			return strings.Replace(s, "{env: DOCS_API_KEY}", "{env: DOCS_API_KEY, vault: x}", 1)
		}, []string{"servers[0].credential.static.headers[0].value (line 20): unknown key in secret reference"}},
		{"duplicate key", func(s string) string { return strings.Replace(s, "version: 1", "version: 1\nversion: 1", 1) }, []string{"already defined"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(doc(t, tt.edit(validDoc)))
			if err == nil {
				t.Fatal("Parse succeeded, want error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\n does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2-secret") {
				t.Errorf("error leaks the inline secret: %v", err)
			}
			assertFieldErrors(t, err)
		})
	}
}

// fieldLine is one config error: a field path, its line when the field is
// written in the file, and the message.
var fieldLine = regexp.MustCompile(`^(\(root\)|[A-Za-z0-9_]+(?:\[\d+\]|\.[^:\s]+)*)(?: \(line \d+\))?: \S`)

// assertFieldErrors: every line of a config error starts with one field
// path (and its line), and names neither a block twice nor the decoder.
func assertFieldErrors(t *testing.T, err error) {
	t.Helper()
	for _, l := range strings.Split(err.Error(), "\n") {
		if l == "more than one YAML document" {
			continue
		}
		if !fieldLine.MatchString(l) {
			t.Errorf("error line does not start with a field path: %q", l)
		}
		for _, bad := range []string{"yaml: unmarshal errors", "decode:", "invalid config", "identity.identity", "policy: policy", "store.store", "connect.connect", "connections.connections"} {
			if strings.Contains(l, bad) {
				t.Errorf("error line contains %q: %q", bad, l)
			}
		}
		if strings.Count(l, "(line ") > 1 {
			t.Errorf("error line names two lines: %q", l)
		}
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "   \n", "# only a comment\n"} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%q) succeeded", in)
		}
	}
}

func TestCanonicalURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"HTTPS://Example.COM/Docs/MCP", "https://example.com/Docs/MCP"},
		{"https://example.com", "https://example.com"},
		{"https://example.com/", "https://example.com/"},
		{"not a url", "not a url"},
	}
	for _, tt := range tests {
		if got := CanonicalURL(tt.in); got != tt.want {
			t.Errorf("CanonicalURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExampleConfigsValid(t *testing.T) {
	t.Setenv("DOCS_API_KEY", "x")
	matches, _ := filepath.Glob("../../cmd/mcpauthz/*.example.yaml")
	for _, m := range matches {
		t.Run(filepath.Base(m), func(t *testing.T) {
			b, err := os.ReadFile(m)
			if err != nil {
				t.Fatal(err)
			}
			// example bundle paths are relative to the repository root
			s := strings.ReplaceAll(string(b), "path: bundles/", "path: ../../bundles/")
			if _, err := Parse([]byte(s)); err != nil {
				t.Fatalf("example config invalid: %v", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(validDoc))
	f.Add([]byte("version: 1\nservers: [{id: a}]\n"))
	f.Add([]byte("servers:\n  - credential: {mode: static, static: {headers: [{name: a, value: {file: /x}}]}}\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		if err == nil {
			// anything accepted must re-validate cleanly
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("accepted config fails Validate: %v", verr)
			}
		}
	})
}

func TestLoadNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(p, []byte("version: 2\nlisten: {grpc: x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil {
		t.Fatal("Load succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	if lines[0] != "config "+p+":" || len(lines) < 3 {
		t.Fatalf("want the file on its own line, then one problem per line:\n%v", err)
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "  ") {
			t.Errorf("problem not indented: %q", l)
		}
	}
	if !strings.Contains(err.Error(), "  version (line 1): must be 1, got 2") {
		t.Errorf("no version problem:\n%v", err)
	}
}
