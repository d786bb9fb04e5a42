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
	if !strings.Contains(out.String(), "valid (4 MCP servers, 2 issuers, 2 policy bundles)") {
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
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
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
