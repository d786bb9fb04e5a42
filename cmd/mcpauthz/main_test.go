package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunUsage(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		contains string
	}{
		{nil, 2, "Usage:"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"validate"}, 1, "--config is required"},
		{[]string{"validate", "--config", "/nonexistent.yaml"}, 1, "no such file"},
		{[]string{"version"}, 0, "mcpauthz"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(context.Background(), tt.args, &out, &errOut); code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %s)", code, tt.code, errOut.String())
			}
			if !strings.Contains(out.String()+errOut.String(), tt.contains) {
				t.Fatalf("output lacks %q: %s%s", tt.contains, out.String(), errOut.String())
			}
		})
	}
}

func TestValidateExampleConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := t.TempDir()
	b, err := os.ReadFile("config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("../../bundles/rbac")
	cfg := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(cfg, bytes.ReplaceAll(b, []byte("path: bundles/rbac"), []byte("path: "+abs)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := run(context.Background(), []string{"validate", "--config", cfg}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "valid (5 MCP servers, 3 issuers, 2 policy bundles)") {
		t.Fatalf("stdout = %s", out.String())
	}
}

// TestEmbeddedDefaultsAllowAViewer: the `make run` environment is complete:
// its config validates and a viewer's readDocument is allowed end to end.
func TestEmbeddedDefaultsAllowAViewer(t *testing.T) {
	var out, errOut bytes.Buffer
	// loadtest drives exactly this environment and fails on any denial.
	if code := run(context.Background(), []string{"loadtest", "--duration", "200ms", "--concurrency", "2", "--rounds", "1"}, &out, &errOut); code != 0 {
		t.Fatalf("loadtest exit %d: %s %s", code, out.String(), errOut.String())
	}
	for _, want := range []string{"empty-ext_authz", "mcpauthz-rego", "throughput ratio"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("loadtest output lacks %q:\n%s", want, out.String())
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestServeStopsOnSIGTERM runs the real binary from a config file, waits
// for it to be ready, sends SIGTERM and expects a clean exit.
func TestServeStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mcpauthz")
	if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// The binary says what it was built from.
	vout, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.Contains(string(vout), "  go     go1.") {
		t.Errorf("version: %v\n%s", err, vout)
	}
	if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil {
		if want := strings.TrimSpace(string(head)); !strings.Contains(string(vout), "  commit "+want) {
			t.Errorf("version does not name commit %s:\n%s", want, vout)
		}
	}
	bundle, _ := filepath.Abs("../../bundles/rbac")
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	cfg := filepath.Join(dir, "mcpauthz.yaml")
	doc := fmt.Sprintf(`version: 1
listen: {grpc: "%s", http: "%s", shutdown_timeout: 5s}
identity:
  issuers: [{name: dev, issuer: "http://127.0.0.1:1"}]
policy: {bundles: [{path: %s}]}
audit: {output: off}
servers:
  - id: docs
    resource: http://127.0.0.1:10000/docs/mcp
    credential: {mode: public}
`, grpcAddr, httpAddr, bundle)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("did not stop after SIGTERM:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "mcpauthz shutting down") {
		t.Errorf("no shutdown log:\n%s", stderr.String())
	}
}

func TestValidateDeep(t *testing.T) {
	dir := t.TempDir()
	bundle, _ := filepath.Abs("../../bundles/rbac")
	broken := filepath.Join(dir, "broken")
	if err := os.MkdirAll(broken, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(broken, "policy.rego"), []byte("package mcpauthz\ndecision := {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const value = "s3cr3t-value-never-printed"
	t.Setenv("VALIDATE_DEEP_KEY", value)
	doc := func(bundles string) string {
		return `version: 1
identity: {issuers: [{name: a, issuer: "https://idp.example.com"}]}
policy: {bundles: [` + bundles + `]}
servers:
  - id: docs
    resource: https://mcp.example.com/docs/mcp
    credential: {mode: static, static: {headers: [{name: X-Api-Key, value: {env: VALIDATE_DEEP_KEY}}]}}
  - id: search
    resource: https://mcp.example.com/search/mcp
    credential: {mode: static, static: {headers: [{name: X-Api-Key, value: {file: ` + filepath.Join(dir, "missing") + `}}]}}
`
	}
	tests := []struct {
		name    string
		bundles string
		code    int
		out     []string
		errOut  []string
	}{
		{"missing secret and broken bundle", "{path: " + bundle + "}, {path: " + broken + "}", 1,
			[]string{"secrets: 1 of 2 references resolve", "policy.bundles[0]: " + bundle + " compiles (revision rbac-1)"},
			[]string{"servers[1].credential.static.headers[0].value: secret: file", "policy.bundles[1].path: bundle " + broken + ": ", "policy.rego:3: rego_parse_error", "2 problem(s) found with --deep"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "c.yaml")
			if err := os.WriteFile(cfg, []byte(doc(tc.bundles)), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			if code := run(context.Background(), []string{"validate", "--deep", "--config", cfg}, &out, &errOut); code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out.String(), errOut.String())
			}
			for _, w := range tc.out {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			for _, w := range tc.errOut {
				if !strings.Contains(errOut.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut.String())
				}
			}
			if strings.Contains(out.String()+errOut.String(), value) {
				t.Fatal("a secret value was printed")
			}
		})
	}
	// Without --deep nothing is resolved or compiled.
	var out, errOut bytes.Buffer
	cfg := filepath.Join(dir, "c.yaml")
	if code := run(context.Background(), []string{"validate", "--config", cfg}, &out, &errOut); code != 0 || strings.Contains(out.String(), "secrets:") {
		t.Fatalf("plain validate: exit %d %s %s", code, out.String(), errOut.String())
	}
}
