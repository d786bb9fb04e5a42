package deploy

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
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
				if (strings.HasPrefix(p, "kubernetes/") || strings.HasPrefix(p, "envoy-gateway/") || strings.HasPrefix(p, "istio/")) &&
					!strings.HasSuffix(p, "-values.yaml") { // Helm values, not a manifest
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

// k8sServers is the server catalog of the Kubernetes ConfigMap, which the
// Envoy Gateway and Istio examples put behind their gateways.
func k8sServers(t *testing.T) []config.Server {
	t.Helper()
	raw, _ := get(byKind(t, docs(t, "kubernetes/mcpauthz.yaml"), "ConfigMap"), "data", "mcpauthz.yaml").(string)
	cfg, err := config.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("ConfigMap config: %v", err)
	}
	return cfg.Servers
}

// metadataPaths are the RFC 9728 paths of the servers' resources: the only
// paths that may skip mcpauthz.
func metadataPaths(t *testing.T, servers []config.Server) []string {
	t.Helper()
	var out []string
	for _, s := range servers {
		u, err := url.Parse(s.Resource)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, "/.well-known/oauth-protected-resource"+u.Path)
	}
	slices.Sort(out)
	return out
}

func TestEnvoyGatewaySecurityPolicy(t *testing.T) {
	ds := docs(t, "envoy-gateway/mcpauthz-extauth.yaml")
	servers := k8sServers(t)
	// One SecurityPolicy per MCP route, naming its server.
	routeServer := map[string]string{}
	for _, sp := range ds {
		if sp["kind"] != "SecurityPolicy" {
			continue
		}
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
		if get(sp, "spec", "targetRefs", 1) != nil || get(sp, "spec", "targetRefs", 0, "kind") != "HTTPRoute" {
			t.Errorf("%v: one HTTPRoute per policy, so that it can name the route's server", get(sp, "metadata", "name"))
		}
		if get(ea, "contextExtensions", 0, "name") != "mcp_server" || get(ea, "contextExtensions", 0, "type") != "Value" {
			t.Errorf("contextExtensions = %v", get(ea, "contextExtensions"))
		}
		route, _ := get(sp, "spec", "targetRefs", 0, "name").(string)
		routeServer[route], _ = get(ea, "contextExtensions", 0, "value").(string)
	}
	var ids []string
	for _, s := range servers {
		ids = append(ids, s.ID)
	}
	var named []string
	for _, id := range routeServer {
		named = append(named, id)
	}
	slices.Sort(named)
	if !slices.Equal(named, ids) {
		t.Errorf("the SecurityPolicies name servers %v; the mcpauthz config has %v", named, ids)
	}
	var meta []string
	for _, d := range ds {
		if d["kind"] != "HTTPRoute" {
			continue
		}
		name := get(d, "metadata", "name").(string)
		for i := 0; get(d, "spec", "rules", 0, "matches", i) != nil; i++ {
			typ := get(d, "spec", "rules", 0, "matches", i, "path", "type")
			val, _ := get(d, "spec", "rules", 0, "matches", i, "path", "value").(string)
			isMeta := strings.HasPrefix(val, "/.well-known/oauth-protected-resource")
			if isMeta != (name == "mcp-protected-resource-metadata") || (isMeta && typ != "Exact") {
				t.Errorf("route %s match %v %s", name, typ, val)
			}
			if isMeta {
				meta = append(meta, val)
			}
			if _, covered := routeServer[name]; !isMeta && !covered {
				t.Errorf("MCP route %s has no SecurityPolicy", name)
			}
		}
	}
	slices.Sort(meta)
	if want := metadataPaths(t, servers); !slices.Equal(meta, want) {
		t.Errorf("metadata route paths %v, want exactly the servers' %v", meta, want)
	}
	ctp := byKind(t, ds, "ClientTrafficPolicy")
	if get(ctp, "spec", "path", "escapedSlashesAction") != "RejectRequest" || get(ctp, "spec", "headers", "withUnderscoresAction") != "RejectRequest" {
		t.Errorf("ClientTrafficPolicy = %v", get(ctp, "spec"))
	}
}

// TestKubernetesServersMatchByHost: Istio sets no context_extensions, so
// every server of the Kubernetes config maps by host and path prefix.
func TestKubernetesServersMatchByHost(t *testing.T) {
	for _, s := range k8sServers(t) {
		if s.Match.Host == "" || s.Match.PathPrefix == "" {
			t.Errorf("server %s: match %+v, want host and path_prefix", s.ID, s.Match)
		}
	}
}

func TestIstioProvider(t *testing.T) {
	// istioctl install -f takes IstioOperator documents only.
	ops := docs(t, "istio/mesh-config.yaml")
	if len(ops) != 1 || ops[0]["kind"] != "IstioOperator" {
		t.Fatalf("mesh-config.yaml must hold the IstioOperator alone (istioctl install -f), got %d documents", len(ops))
	}
	mesh := get(ops[0], "spec", "meshConfig")
	values := docs(t, "istio/istiod-values.yaml")[0]
	if !reflect.DeepEqual(values["meshConfig"], mesh) {
		t.Error("istiod-values.yaml's meshConfig differs from mesh-config.yaml's")
	}
	p := get(mesh, "extensionProviders", 0)
	g := get(p, "envoyExtAuthzGrpc")
	b := get(g, "includeRequestBodyInCheck")
	if get(g, "failOpen") != false || get(g, "port") != 9191 || get(b, "allowPartialMessage") != false ||
		get(b, "packAsBytes") != true || get(b, "maxRequestBytes") != 1048576 {
		t.Errorf("provider = %v", p)
	}
	aps := docs(t, "istio/authorization-policy.yaml")
	if len(aps) != 1 {
		t.Fatalf("authorization-policy.yaml: %d documents", len(aps))
	}
	ap := byKind(t, aps, "AuthorizationPolicy")
	if get(ap, "spec", "action") != "CUSTOM" || get(ap, "spec", "provider", "name") != get(p, "name") {
		t.Errorf("AuthorizationPolicy = %v", ap)
	}
	var notPaths []string
	for i := 0; get(ap, "spec", "rules", 0, "to", 0, "operation", "notPaths", i) != nil; i++ {
		notPaths = append(notPaths, get(ap, "spec", "rules", 0, "to", 0, "operation", "notPaths", i).(string))
	}
	slices.Sort(notPaths)
	if want := metadataPaths(t, k8sServers(t)); !slices.Equal(notPaths, want) {
		t.Errorf("notPaths %v, want exactly the servers' metadata paths %v", notPaths, want)
	}
}

// TestComposeEnvoySupported: compose runs an Envoy release line that is
// still supported: within the four minor releases (a year) up to the one
// whose API mcpauthz validates bootstraps against (go-control-plane).
func TestComposeEnvoySupported(t *testing.T) {
	img, _ := get(docs(t, "compose/docker-compose.yaml")[0], "services", "envoy", "image").(string)
	m := regexp.MustCompile(`^envoyproxy/envoy:v1\.(\d+)[.-]`).FindStringSubmatch(img)
	gm, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	api := regexp.MustCompile(`github\.com/envoyproxy/go-control-plane/envoy v1\.(\d+)\.`).FindSubmatch(gm)
	if m == nil || api == nil {
		t.Fatalf("envoy image %q, go-control-plane in go.mod %q", img, api)
	}
	minor, _ := strconv.Atoi(m[1])
	apiMinor, _ := strconv.Atoi(string(api[1]))
	if minor < apiMinor-3 || minor > apiMinor {
		t.Errorf("compose runs Envoy 1.%d; bootstraps are validated against the 1.%d API: use 1.%d..1.%d", minor, apiMinor, apiMinor-3, apiMinor)
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
	gm, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gm)
	argVer := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindStringSubmatch(s)
	if goVer == nil || argVer == nil || argVer[1] != string(goVer[1]) {
		t.Errorf("Dockerfile builds with Go %v; go.mod requires %s", argVer, goVer)
	}
	di, err := os.ReadFile("../.dockerignore")
	if err != nil || !strings.Contains(string(di), ".git") {
		t.Errorf(".dockerignore: %v", err)
	}
}
