package policy

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

func TestConfigValidate(t *testing.T) {
	ok := []BundleSource{{Path: "bundles/rbac"}}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings; nil means valid
	}{
		{"minimal", Config{Bundles: ok}, nil},
		{"full", Config{Bundles: []BundleSource{{Path: "a"}, {Path: "b.tar.gz"}}, Query: "data.envoy.authz.allow", PollInterval: time.Second}, nil},
		{"no bundles", Config{}, []string{"bundles: at least one bundle is required"}},
		{"empty path", Config{Bundles: []BundleSource{{Path: "a"}, {Path: " "}}}, []string{"bundles[1].path: must not be empty"}},
		{"duplicate path", Config{Bundles: []BundleSource{{Path: "a"}, {Path: "./a"}}}, []string{"bundles[1].path: duplicates bundles[0].path"}},
		{"query not ref", Config{Bundles: ok, Query: "1 + 1"}, []string{"query: "}},
		{"query not data", Config{Bundles: ok, Query: "input.x"}, []string{"query: must be a reference into data"}},
		{"query bare data", Config{Bundles: ok, Query: "data"}, []string{"query: must be a reference into data"}},
		{"query with var", Config{Bundles: ok, Query: "data.x[y]"}, []string{"query: must not contain variables"}},
		{"negative poll", Config{Bundles: ok, PollInterval: -time.Second}, []string{"poll_interval: must not be negative"}},
		{"tiny poll", Config{Bundles: ok, PollInterval: time.Millisecond}, []string{"poll_interval: must be at least 100ms"}},
		{"all at once", Config{Bundles: []BundleSource{{}}, Query: "input", PollInterval: -1},
			[]string{"bundles[0].path:", "query:", "poll_interval:"}},
		{"url", Config{Bundles: []BundleSource{{URL: "https://bundles.example.com/bundles/mcp.tar.gz", Persist: true,
			Credentials: &BundleCredentials{Bearer: &BearerCredentials{Token: secret.Ref{Env: "TOKEN"}}},
			Polling:     Polling{MinDelay: 10 * time.Second, MaxDelay: time.Minute}, Signing: &Signing{Keys: []VerificationKey{{ID: "k", PublicKey: KeySource{File: "/k.pem"}}}}}},
			PersistDir: "/var/lib/mcpauthz"}, nil},
		{"path and url", Config{Bundles: []BundleSource{{Path: "a", URL: "https://x/b.tar.gz"}}}, []string{"bundles[0]: set exactly one of path and url"}},
		{"blank url", Config{Bundles: []BundleSource{{URL: " "}}}, []string{"bundles[0].url: must not be empty"}},
		{"url scheme", Config{Bundles: []BundleSource{{URL: "ftp://x/b.tar.gz"}}}, []string{`bundles[0].url: scheme must be https or http, got "ftp"`}},
		{"url user info", Config{Bundles: []BundleSource{{URL: "https://u:p@x/b.tar.gz"}}}, []string{"bundles[0].url: must not contain user info"}},
		{"bearer over http", Config{Bundles: []BundleSource{{URL: "http://bundles.example.com/b.tar.gz",
			Credentials: &BundleCredentials{Bearer: &BearerCredentials{Token: secret.Ref{Env: "T"}}}}}}, []string{"bundles[0].credentials: a bearer token requires an https url"}},
		{"bearer over loopback http", Config{Bundles: []BundleSource{{URL: "http://127.0.0.1:8080/b.tar.gz",
			Credentials: &BundleCredentials{Bearer: &BearerCredentials{Token: secret.Ref{Env: "T"}}}}}}, nil},
		{"bad token ref", Config{Bundles: []BundleSource{{URL: "https://x/b.tar.gz",
			Credentials: &BundleCredentials{Bearer: &BearerCredentials{Token: secret.Ref{Env: "1bad"}}}}}}, []string{"bundles[0].credentials.bearer.token:"}},
		{"no bearer", Config{Bundles: []BundleSource{{URL: "https://x/b.tar.gz", Credentials: &BundleCredentials{}}}}, []string{"bundles[0].credentials: set bearer"}},
		{"min delay too small", Config{Bundles: []BundleSource{{URL: "https://x/b.tar.gz", Polling: Polling{MinDelay: time.Millisecond}}}}, []string{"bundles[0].polling.min_delay: must be at least 1s"}},
		{"max below min", Config{Bundles: []BundleSource{{URL: "https://x/b.tar.gz", Polling: Polling{MinDelay: time.Minute, MaxDelay: time.Second}}}}, []string{"bundles[0].polling.max_delay: must be at least min_delay"}},
		{"tiny size limit", Config{Bundles: []BundleSource{{URL: "https://x/b.tar.gz", SizeLimitBytes: 10}}}, []string{"bundles[0].size_limit_bytes: must be at least 1024"}},
		{"remote options on path", Config{Bundles: []BundleSource{{Path: "a", Persist: true, Timeout: time.Second}}, PersistDir: "/p"},
			[]string{"bundles[0].persist: only valid with url", "bundles[0].timeout: only valid with url"}},
		{"persist without dir", Config{Bundles: []BundleSource{{URL: "https://x/b.tar.gz", Persist: true}}}, []string{"bundles[0].persist: requires persist_dir"}},
		{"bad name", Config{Bundles: []BundleSource{{Path: "a", Name: "../etc"}}}, []string{"bundles[0].name: must match"}},
		{"duplicate name", Config{Bundles: []BundleSource{{Path: "a", Name: "n"}, {Path: "b", Name: "n"}}}, []string{`bundles[1].name: duplicates bundles[0].name "n"`}},
		{"signing problems", Config{Bundles: []BundleSource{{Path: "a", Signing: &Signing{KeyID: "zz", ExcludeFiles: []string{"["},
			Keys: []VerificationKey{{ID: "k", Algorithm: "HS256", PublicKey: KeySource{PEM: "not pem"}}, {ID: "k"}}}}}},
			[]string{`bundles[0].signing.keys[0].algorithm: unsupported "HS256"`, "bundles[0].signing.keys[0].public_key: no PEM block found",
				`bundles[0].signing.keys[1].id: duplicates`, "bundles[0].signing.keys[1].public_key: must be inline PEM or {file: PATH}",
				`bundles[0].signing.keyid: "zz" is not among the keys`, "bundles[0].signing.exclude_files[0]: bad pattern"}},
		{"signing without keys", Config{Bundles: []BundleSource{{Path: "a", Signing: &Signing{}}}}, []string{"bundles[0].signing.keys: at least one key is required"}},
		{"negative startup timeout", Config{Bundles: ok, StartupTimeout: -1}, []string{"startup_timeout: must not be negative"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if got := len(strings.Split(err.Error(), "\n")); got != len(tc.want) {
				t.Errorf("got %d joined errors, want %d: %v", got, len(tc.want), err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{Bundles: []BundleSource{{Path: "x"}}}.withDefaults()
	if c.Query != DefaultQuery || c.PollInterval != DefaultPollInterval || c.StartupTimeout != DefaultStartupTimeout {
		t.Fatalf("defaults = %+v", c)
	}
	c = Config{Bundles: []BundleSource{
		{URL: "https://b.example.com/bundles/mcp.tar.gz"},
		{Path: "/etc/mcp.tgz"},
		{URL: "https://b.example.com/"},
		{Path: "/x/a b"},
		{URL: "https://c.example.com/v1/mcp.tar.gz?sig=1", Polling: Polling{MaxDelay: 20 * time.Second}},
		{Path: "/y/other", Name: "mcp-2"},
	}}.withDefaults()
	var names []string
	for _, b := range c.Bundles {
		names = append(names, b.Name)
	}
	if want := []string{"mcp", "mcp-3", "b.example.com", "a_b", "mcp-4", "mcp-2"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("names = %v, want %v", names, want)
	}
	b := c.Bundles[0]
	if b.Polling != (Polling{MinDelay: DefaultMinDelay, MaxDelay: DefaultMaxDelay}) || b.Timeout != DefaultRequestTimeout || b.SizeLimitBytes != DefaultSizeLimitBytes {
		t.Fatalf("url defaults: polling %+v, timeout %s, size %d", b.Polling, b.Timeout, b.SizeLimitBytes)
	}
	if p := c.Bundles[4].Polling; p != (Polling{MinDelay: 20 * time.Second, MaxDelay: 20 * time.Second}) {
		t.Fatalf("min_delay default with a small max_delay = %+v", p)
	}
	if s := fmt.Sprintf("%v %+v %#v", c.Bundles[4], c.Bundles[4], c); strings.Contains(s, "sig=1") {
		t.Fatalf("printing a source shows its query: %s", s)
	}
}

// TestConfigYAML decodes the documented remote-bundle configuration.
func TestConfigYAML(t *testing.T) {
	const doc = `
bundles:
  - name: mcp
    url: https://bundles.example.com/bundles/mcp.tar.gz
    credentials:
      bearer:
        token: {env: BUNDLE_TOKEN}
    polling: {min_delay: 10s, max_delay: 60s}
    timeout: 20s
    size_limit_bytes: 33554432
    persist: true
    signing:
      keys:
        - id: release-2025
          algorithm: ES256
          public_key: {file: /etc/mcpauthz/bundle-signing.pem}
      scope: write
      exclude_files: ["README.md"]
  - path: bundles/local
persist_dir: /var/lib/mcpauthz/bundles
startup_timeout: 45s
`
	var c Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	b := c.Bundles[0]
	want := BundleSource{
		Name: "mcp", URL: "https://bundles.example.com/bundles/mcp.tar.gz",
		Credentials: &BundleCredentials{Bearer: &BearerCredentials{Token: secret.Ref{Env: "BUNDLE_TOKEN"}}},
		Polling:     Polling{MinDelay: 10 * time.Second, MaxDelay: time.Minute}, Timeout: 20 * time.Second,
		SizeLimitBytes: 32 << 20, Persist: true,
		Signing: &Signing{Keys: []VerificationKey{{ID: "release-2025", Algorithm: "ES256", PublicKey: KeySource{File: "/etc/mcpauthz/bundle-signing.pem"}}},
			Scope: "write", ExcludeFiles: []string{"README.md"}},
	}
	if !reflect.DeepEqual(b, want) || c.Bundles[1].Path != "bundles/local" || c.PersistDir != "/var/lib/mcpauthz/bundles" || c.StartupTimeout != 45*time.Second {
		t.Fatalf("decoded %+v, signing %+v", c.Bundles, c.Bundles[0].Signing)
	}
}
