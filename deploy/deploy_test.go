package deploy

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/server/config"
)

// docs decodes every document of a (multi-document) YAML file.
func docs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var out []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(out)+1, err)
		}
		if d != nil {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no YAML documents", path)
	}
	return out
}

// get walks m by keys and list indexes ("spec", "extAuth", 0, ...).
func get(m any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			mm, ok := m.(map[string]any)
			if !ok {
				return nil
			}
			m = mm[k]
		case int:
			l, ok := m.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			m = l[k]
		}
	}
	return m
}

func byKind(t *testing.T, ds []map[string]any, kind string) map[string]any {
	t.Helper()
	for _, d := range ds {
		if d["kind"] == kind {
			return d
		}
	}
	t.Fatalf("no %s document", kind)
	return nil
}

func TestEveryYAMLParses(t *testing.T) {
	n := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || (!strings.HasSuffix(p, ".yaml") && !strings.HasSuffix(p, ".yml")) {
			return err
		}
		n++
		t.Run(p, func(t *testing.T) {
			for i, d := range docs(t, p) {
				// Kubernetes manifests name their type.
				if strings.HasPrefix(p, "kubernetes/") || strings.HasPrefix(p, "envoy-gateway/") || strings.HasPrefix(p, "istio/") {
					if d["apiVersion"] == nil || d["kind"] == nil || get(d, "metadata", "name") == nil {
						t.Errorf("document %d lacks apiVersion, kind or metadata.name", i+1)
					}
				}
			}
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 6 {
		t.Fatalf("only %d YAML files found", n)
	}
}

func TestComposeMcpauthzConfigLoads(t *testing.T) {
	cfg, err := config.Load("compose/mcpauthz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Servers) != 2 || cfg.Servers[0].ID != "docs" || cfg.Servers[1].ID != "notes" {
		t.Fatalf("servers = %+v", cfg.Servers)
	}
	if cfg.Identity.Issuers[0].Issuer != "http://localhost:9000" || cfg.Listen.GRPC != "0.0.0.0:9191" || cfg.Listen.HTTP != "0.0.0.0:8181" {
		t.Errorf("issuer/listen = %s %s %s", cfg.Identity.Issuers[0].Issuer, cfg.Listen.GRPC, cfg.Listen.HTTP)
	}
	// The Envoy config generated from it buffers exactly as much body as
	// mcpauthz accepts.
	y, err := os.ReadFile("compose/envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`max_request_bytes: (\d+)`).FindSubmatch(y)
	if m == nil || string(m[1]) != "1048576" || cfg.MCP.MaxBodyBytes != 1048576 {
		t.Errorf("max_request_bytes %q vs mcp.max_body_bytes %d", m, cfg.MCP.MaxBodyBytes)
	}
}

func TestComposeServices(t *testing.T) {
	d := docs(t, "compose/docker-compose.yaml")[0]
	cmd := func(svc string) string {
		var parts []string
		for _, p := range get(d, "services", svc, "command").([]any) {
			parts = append(parts, p.(string))
		}
		return strings.Join(parts, " ")
	}
	for svc, want := range map[string]string{
		"mcpauthz":       "serve --config /etc/mcpauthz/config/mcpauthz.yaml",
		"idp":            "dev-idp --listen :9000 --issuer http://localhost:9000",
		"demo-mcp-docs":  "demo-mcp --listen :8081",
		"demo-mcp-notes": "demo-mcp --listen :8081",
		"envoy":          "envoy -c /etc/envoy/envoy.yaml --log-level info",
	} {
		if got := cmd(svc); got != want {
			t.Errorf("%s command = %q, want %q", svc, got, want)
		}
	}
	if img, _ := get(d, "services", "envoy", "image").(string); !strings.HasPrefix(img, "envoyproxy/envoy:v1.") {
		t.Errorf("envoy image = %q", img)
	}
	if get(d, "services", "idp", "network_mode") != "service:mcpauthz" {
		t.Error("idp must share mcpauthz's network namespace (loopback issuer)")
	}
	if get(d, "services", "envoy", "volumes", 0) != "./envoy.yaml:/etc/envoy/envoy.yaml:ro" ||
		get(d, "services", "mcpauthz", "volumes", 0) != "./mcpauthz.yaml:/etc/mcpauthz/config/mcpauthz.yaml:ro" {
		t.Error("config mounts changed")
	}
}

func TestKubernetesManifests(t *testing.T) {
	ds := docs(t, "kubernetes/mcpauthz.yaml")
	cm := byKind(t, ds, "ConfigMap")
	raw, _ := get(cm, "data", "mcpauthz.yaml").(string)
	if _, err := config.Parse([]byte(raw)); err != nil {
		t.Fatalf("ConfigMap config: %v", err)
	}
	dep := byKind(t, ds, "Deployment")
	c := get(dep, "spec", "template", "spec", "containers", 0)
	checks := []struct {
		name string
		got  any
		want any
	}{
		{"runAsNonRoot", get(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot"), true},
		{"runAsUser", get(dep, "spec", "template", "spec", "securityContext", "runAsUser"), 65532},
		{"readOnlyRootFilesystem", get(c, "securityContext", "readOnlyRootFilesystem"), true},
		{"allowPrivilegeEscalation", get(c, "securityContext", "allowPrivilegeEscalation"), false},
		{"readiness path", get(c, "readinessProbe", "httpGet", "path"), "/readyz"},
		{"liveness path", get(c, "livenessProbe", "httpGet", "path"), "/healthz"},
		{"http port", get(c, "ports", 1, "containerPort"), 8181},
		{"grpc port", get(c, "ports", 0, "containerPort"), 9191},
		{"memory limit", get(c, "resources", "limits", "memory"), "512Mi"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
	svc := byKind(t, ds, "Service")
	if get(svc, "spec", "ports", 0, "port") != 9191 || get(svc, "spec", "ports", 1, "port") != 8181 {
		t.Errorf("service ports = %v", get(svc, "spec", "ports"))
	}
	byKind(t, ds, "PodDisruptionBudget")
	byKind(t, ds, "NetworkPolicy")
}

func TestEnvoyGatewaySecurityPolicy(t *testing.T) {
	ds := docs(t, "envoy-gateway/mcpauthz-extauth.yaml")
	sp := byKind(t, ds, "SecurityPolicy")
	ea := get(sp, "spec", "extAuth")
	if get(ea, "grpc", "backendRefs", 0, "name") != "mcpauthz" || get(ea, "grpc", "backendRefs", 0, "port") != 9191 {
		t.Errorf("grpc backendRefs = %v", get(ea, "grpc"))
	}
	if get(ea, "bodyToExtAuth", "maxRequestBytes") != 1048576 || get(ea, "failOpen") != false {
		t.Errorf("extAuth = %v", ea)
	}
	if get(ea, "headersToExtAuth") != nil {
		t.Error("headersToExtAuth would hide forged x-mcp-* headers from mcpauthz")
	}
	// The SecurityPolicy covers the MCP routes and never the metadata route.
	var targets []string
	for i := 0; get(sp, "spec", "targetRefs", i) != nil; i++ {
		targets = append(targets, get(sp, "spec", "targetRefs", i, "name").(string))
	}
	if strings.Join(targets, ",") != "mcp-docs,mcp-tickets" {
		t.Errorf("targetRefs = %v", targets)
	}
	routes := 0
	for _, d := range ds {
		if d["kind"] != "HTTPRoute" {
			continue
		}
		routes++
		name := get(d, "metadata", "name").(string)
		for i := 0; get(d, "spec", "rules", 0, "matches", i) != nil; i++ {
			typ := get(d, "spec", "rules", 0, "matches", i, "path", "type")
			val, _ := get(d, "spec", "rules", 0, "matches", i, "path", "value").(string)
			isMeta := strings.HasPrefix(val, "/.well-known/oauth-protected-resource")
			if isMeta != (name == "mcp-protected-resource-metadata") || (isMeta && typ != "Exact") {
				t.Errorf("route %s match %v %s", name, typ, val)
			}
		}
	}
	if routes != 3 {
		t.Errorf("%d HTTPRoutes", routes)
	}
}

func TestIstioProvider(t *testing.T) {
	ds := docs(t, "istio/mcpauthz-extauthz.yaml")
	op := byKind(t, ds, "IstioOperator")
	p := get(op, "spec", "meshConfig", "extensionProviders", 0)
	g := get(p, "envoyExtAuthzGrpc")
	b := get(g, "includeRequestBodyInCheck")
	if get(g, "failOpen") != false || get(g, "port") != 9191 || get(b, "allowPartialMessage") != false ||
		get(b, "packAsBytes") != true || get(b, "maxRequestBytes") != 1048576 {
		t.Errorf("provider = %v", p)
	}
	ap := byKind(t, ds, "AuthorizationPolicy")
	if get(ap, "spec", "action") != "CUSTOM" || get(ap, "spec", "provider", "name") != get(p, "name") {
		t.Errorf("AuthorizationPolicy = %v", ap)
	}
	for i := 0; get(ap, "spec", "rules", 0, "to", 0, "operation", "notPaths", i) != nil; i++ {
		np := get(ap, "spec", "rules", 0, "to", 0, "operation", "notPaths", i).(string)
		if !strings.HasPrefix(np, "/.well-known/oauth-protected-resource") || strings.Contains(np, "*") {
			t.Errorf("notPaths[%d] = %q: only exact metadata paths may skip mcpauthz", i, np)
		}
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		"CGO_ENABLED=0", "FROM gcr.io/distroless/static", "USER 65532:65532",
		"EXPOSE 9191 8181", `ENTRYPOINT ["/usr/local/bin/mcpauthz"]`, " AS build",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if n := strings.Count(s, "\nFROM "); n != 2 {
		t.Errorf("%d stages, want 2", n)
	}
	di, err := os.ReadFile("../.dockerignore")
	if err != nil || !strings.Contains(string(di), ".git") {
		t.Errorf(".dockerignore: %v", err)
	}
}
