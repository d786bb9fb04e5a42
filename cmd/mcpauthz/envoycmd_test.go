package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpauthz/mcpauthz/envoy"
)

var updateEnvoy = flag.Bool("update-envoy", false, "rewrite deploy/compose/envoy.yaml from deploy/compose/mcpauthz.yaml")

// composeEnvoyArgs is how deploy/compose/envoy.yaml is generated.
var composeEnvoyArgs = []string{
	"envoy", "generate", "--config", "../../deploy/compose/mcpauthz.yaml",
	"--authz", "mcpauthz:9191",
	"--upstream", "docs=http://demo-mcp-docs:8081/",
	"--upstream", "notes=http://demo-mcp-notes:8081/",
}

func envoyRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestEnvoyGenerateComposeIsCurrent keeps deploy/compose/envoy.yaml equal to
// what the CLI generates from deploy/compose/mcpauthz.yaml; regenerate with
// go test ./cmd/mcpauthz -run TestEnvoyGenerateComposeIsCurrent -update-envoy
func TestEnvoyGenerateComposeIsCurrent(t *testing.T) {
	code, out, stderr := envoyRun(t, composeEnvoyArgs...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	const file = "../../deploy/compose/envoy.yaml"
	if *updateEnvoy {
		if err := os.WriteFile(file, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(committed) != out {
		t.Fatalf("%s is stale; regenerate: go test ./cmd/mcpauthz -run TestEnvoyGenerateComposeIsCurrent -update-envoy", file)
	}
	b, err := envoy.ParseBootstrapYAML(committed)
	if err != nil {
		t.Fatal(err)
	}
	if issues := envoy.SecurityIssues(b); len(issues) > 0 {
		t.Fatalf("SecurityIssues: %v", issues)
	}
	for _, want := range []string{
		`prefix_rewrite: "/"`, `"mcp_server": "notes"`, `address: "demo-mcp-docs", port_value: 8081`,
		`match: { path: "/.well-known/oauth-protected-resource/notes/mcp" }`,
		`address: "mcpauthz", port_value: 8181`, "max_request_bytes: 1048576",
		"# regenerate rather than edit", "--upstream docs=http://demo-mcp-docs:8081/",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// exampleConfig is config.example.yaml; generate needs no bundle or secret.
const exampleConfig = "config.example.yaml"

func TestEnvoyGenerateFromExampleConfig(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{
			name: "defaults",
			args: nil,
			want: []string{
				// resource https://mcp.example.com/... -> TLS upstream, SNI checked
				`sni: "mcp.example.com"`, `address: "mcp.example.com", port_value: 443`,
				// listen.grpc 0.0.0.0:9191 -> loopback
				`address: "127.0.0.1", port_value: 9191`, `address: "127.0.0.1", port_value: 8181`,
				// servers[0] has match.host: its own virtual host
				`domains: ["mcp.example.com", "mcp.example.com:*"]`,
				`"mcp_server": "docs"`, `"mcp_server": "search"`, `"mcp_server": "weather"`,
			},
			not: []string{"DownstreamTlsContext"},
		},
		{
			name: "mtls and overrides",
			args: []string{"--mtls", "--client-ca", "/ca.pem", "--authz", "authz.internal:7000", "--listen", ":8443",
				"--upstream", "search=search-mcp:9000", "--admin-port", "9902"},
			want: []string{
				"DownstreamTlsContext", `trusted_ca: { filename: "/ca.pem" }`,
				`prefix: "spiffe://agents.example.org/"`, // identity.spiffe.trust_domains
				`address: "authz.internal", port_value: 7000`, `address: "authz.internal", port_value: 8181`,
				`address: "search-mcp", port_value: 9000`, `address: "0.0.0.0", port_value: 8443`,
				"port_value: 9902", "#   --mtls",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"envoy", "generate", "--config", exampleConfig}, tt.args...)
			code, out, stderr := envoyRun(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if err := envoy.ValidateBootstrapYAML([]byte(out)); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(out, w) {
					t.Errorf("output has %q", w)
				}
			}
		})
	}
}

func TestEnvoyGenerateWritesFile(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "envoy.yaml")
	code, out, stderr := envoyRun(t, "envoy", "generate", "--config", exampleConfig, "-o", dst)
	if code != 0 || out != "" || !strings.Contains(stderr, "wrote "+dst) {
		t.Fatalf("exit %d stdout %q stderr %q", code, out, stderr)
	}
	code, out, _ = envoyRun(t, "envoy", "validate", "--strict", dst)
	if code != 0 || out != dst+": valid\n" {
		t.Fatalf("validate: exit %d %q", code, out)
	}
}

func TestEnvoyCommandErrors(t *testing.T) {
	dir := t.TempDir()
	good, err := os.ReadFile("../../envoy/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	goodFile := write("good.yaml", string(good))
	typo := write("typo.yaml", strings.Replace(string(good), "    connect_timeout: 1s", "    conect_timeout: 1s", 1))
	failOpen := write("open.yaml", strings.Replace(string(good), "failure_mode_allow: false\n", "failure_mode_allow: true\n", 1))

	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string // substring
		stderr   string // substring
		notInOut string
	}{
		{"no subcommand", []string{"envoy"}, 2, "", "Usage:", ""},
		{"unknown subcommand", []string{"envoy", "frob"}, 2, "", `unknown subcommand "frob"`, ""},
		{"help", []string{"envoy", "help"}, 0, "envoy generate --config FILE", "", ""},
		{"validate without files", []string{"envoy", "validate"}, 2, "", "no files given", ""},
		{"generate without config", []string{"envoy", "generate"}, 1, "", "--config is required", ""},
		{"generate bad flag", []string{"envoy", "generate", "--nope"}, 2, "", "flag provided but not defined", ""},
		{"generate stray args", []string{"envoy", "generate", "--config", exampleConfig, "extra"}, 2, "", "unexpected arguments", ""},
		{"unknown upstream id", []string{"envoy", "generate", "--config", exampleConfig, "--upstream", "dcos=x:1"}, 1, "",
			"upstream for unknown server id(s) dcos (servers: docs, ", ""},
		{"malformed upstream", []string{"envoy", "generate", "--config", exampleConfig, "--upstream", "docs"}, 2, "", "want ID=HOST:PORT", ""},
		{"duplicate upstream", []string{"envoy", "generate", "--config", exampleConfig, "--upstream", "docs=a:1", "--upstream", "docs=b:2"}, 2, "", `server "docs" given twice`, ""},
		{"bad listen", []string{"envoy", "generate", "--config", exampleConfig, "--listen", "10000"}, 1, "", "--listen:", ""},
		{"missing config file", []string{"envoy", "generate", "--config", "/nonexistent.yaml"}, 1, "", "no such file", ""},
		{"valid file", []string{"envoy", "validate", goodFile}, 0, goodFile + ": valid", "", ""},
		{"typo", []string{"envoy", "validate", goodFile, typo}, 1, goodFile + ": valid",
			typo + `: static_resources.clusters[0].conect_timeout (line `, typo + ": valid"},
		{"typo message", []string{"envoy", "validate", typo}, 1, "", "1 of 1 files invalid", ""},
		{"fail-open passes schema", []string{"envoy", "validate", failOpen}, 0, failOpen + ": valid", "", ""},
		{"fail-open fails --strict", []string{"envoy", "validate", "--strict", failOpen}, 1, "",
			"http_filters[1].typed_config.failure_mode_allow (line ", ""},
		{"missing file", []string{"envoy", "validate", filepath.Join(dir, "nope.yaml")}, 1, "", "no such file", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := envoyRun(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tt.code, out, stderr)
			}
			if !strings.Contains(out, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("stdout %q\nstderr %q\nwant %q / %q", out, stderr, tt.stdout, tt.stderr)
			}
			if tt.notInOut != "" && strings.Contains(out, tt.notInOut) {
				t.Fatalf("stdout has %q", tt.notInOut)
			}
		})
	}
}
