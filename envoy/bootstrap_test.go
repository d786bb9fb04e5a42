package envoy

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

var update = flag.Bool("update", false, "rewrite envoy.yaml from ExampleParams")

// parseBootstrap converts YAML to JSON and decodes it strictly (unknown
// fields are errors) into a Bootstrap, then runs its PGV validation.
func parseBootstrap(t *testing.T, y []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		t.Fatalf("yaml: %v\n%s", err, y)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &b); err != nil {
		t.Fatalf("protojson: %v\n%s", err, y)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll: %v", err)
	}
	return &b
}

func testParams() BootstrapParams {
	return BootstrapParams{
		ListenPort: 10000, AdminPort: 9901, AuthzHost: "127.0.0.1", AuthzPort: 9191,
		MaxRequestBytes: 65536, Timeout: 500 * time.Millisecond,
		Routes: []BootstrapRoute{
			{Name: "metadata", PathPrefix: "/.well-known/oauth-protected-resource", UpstreamHost: "mcpauthz", UpstreamPort: 8080, DisableExtAuthz: true},
			{Name: "docs", PathPrefix: "/docs/", UpstreamHost: "127.0.0.1", UpstreamPort: 8081, ContextExtensions: map[string]string{"mcp_server": "docs", "tier": `we"ird: {x}`}},
		},
	}
}

// inspect decodes the HCM, ext_authz filter and per-route configs.
func inspect(t *testing.T, b *bootstrapv3.Bootstrap) (*hcmv3.HttpConnectionManager, *extauthzv3.ExtAuthz, []*routev3.Route) {
	t.Helper()
	ls := b.GetStaticResources().GetListeners()
	if len(ls) != 1 {
		t.Fatalf("%d listeners", len(ls))
	}
	var hcm hcmv3.HttpConnectionManager
	if err := ls[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var ea extauthzv3.ExtAuthz
	if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(&ea); err != nil {
		t.Fatal(err)
	}
	if got := hcm.GetHttpFilters()[len(hcm.GetHttpFilters())-1].GetName(); got != "envoy.filters.http.router" {
		t.Errorf("last filter = %q", got)
	}
	return &hcm, &ea, hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
}

func TestRenderBootstrap(t *testing.T) {
	y, err := RenderBootstrap(testParams())
	if err != nil {
		t.Fatal(err)
	}
	b := parseBootstrap(t, y)
	hcm, ea, routes := inspect(t, b)
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		t.Errorf("path handling: normalize=%v merge=%v escaped=%v", hcm.GetNormalizePath(), hcm.GetMergeSlashes(), hcm.GetPathWithEscapedSlashesAction())
	}
	if ea.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "mcpauthz" || ea.GetGrpcService().GetTimeout().AsDuration() != 500*time.Millisecond {
		t.Errorf("grpc_service = %v", ea.GetGrpcService())
	}
	wb := ea.GetWithRequestBody()
	if wb.GetMaxRequestBytes() != 65536 || wb.GetAllowPartialMessage() || !wb.GetPackAsBytes() {
		t.Errorf("with_request_body = %v", wb)
	}
	if ea.GetFailureModeAllow() || !ea.GetIncludePeerCertificate() || ea.GetTransportApiVersion().String() != "V3" {
		t.Errorf("ext_authz = %v", ea)
	}
	if len(routes) != 2 {
		t.Fatalf("%d routes", len(routes))
	}
	var meta, docs extauthzv3.ExtAuthzPerRoute
	if err := routes[0].GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"].UnmarshalTo(&meta); err != nil {
		t.Fatal(err)
	}
	if !meta.GetDisabled() {
		t.Error("metadata route: ext_authz not disabled")
	}
	if err := routes[1].GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"].UnmarshalTo(&docs); err != nil {
		t.Fatal(err)
	}
	ce := docs.GetCheckSettings().GetContextExtensions()
	if ce["mcp_server"] != "docs" || ce["tier"] != `we"ird: {x}` {
		t.Errorf("context_extensions = %v", ce)
	}
	if routes[1].GetMatch().GetPrefix() != "/docs/" || routes[1].GetRoute().GetCluster() != "upstream_docs" ||
		routes[1].GetRoute().GetTimeout().AsDuration() != 0 || routes[1].GetRoute().GetTimeout() == nil {
		t.Errorf("docs route = %v", routes[1])
	}
	cl := b.GetStaticResources().GetClusters()
	if len(cl) != 3 || cl[0].GetName() != "mcpauthz" || cl[0].GetType().String() != "STATIC" ||
		cl[1].GetType().String() != "STRICT_DNS" || cl[0].GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
		t.Errorf("clusters = %v", cl)
	}
}

func TestRenderBootstrapDefaults(t *testing.T) {
	p := testParams()
	p.MaxRequestBytes, p.Timeout, p.ListenAddr = 0, 0, ""
	y, err := RenderBootstrap(p)
	if err != nil {
		t.Fatal(err)
	}
	_, ea, _ := inspect(t, parseBootstrap(t, y))
	if ea.GetWithRequestBody().GetMaxRequestBytes() != DefaultMaxRequestBytes || ea.GetGrpcService().GetTimeout().AsDuration() != DefaultAuthzTimeout {
		t.Errorf("defaults not applied: %v", ea)
	}
}

func TestRenderBootstrapInvalid(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*BootstrapParams)
		wantErr string
	}{
		{"bad listen port", func(p *BootstrapParams) { p.ListenPort = 0 }, "listen_port"},
		{"no authz host", func(p *BootstrapParams) { p.AuthzHost = "" }, "authz_host"},
		{"no routes", func(p *BootstrapParams) { p.Routes = nil }, "routes"},
		{"bad route name", func(p *BootstrapParams) { p.Routes[0].Name = "a b\n" }, "routes[0].name"},
		{"duplicate route", func(p *BootstrapParams) { p.Routes[1].Name = p.Routes[0].Name }, "routes[1].name: duplicate"},
		{"relative prefix", func(p *BootstrapParams) { p.Routes[1].PathPrefix = "docs" }, "routes[1].path_prefix"},
		{"bad upstream port", func(p *BootstrapParams) { p.Routes[1].UpstreamPort = 70000 }, "routes[1].upstream_port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testParams()
			tt.mutate(&p)
			_, err := RenderBootstrap(p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "envoy: ") {
				t.Fatalf("err = %v, want mention of %q", err, tt.wantErr)
			}
		})
	}
}

// TestParseBootstrapRejectsBrokenConfig proves the validation used above can
// fail: a typo'd field and an invalid enum must not parse.
func TestParseBootstrapRejectsBrokenConfig(t *testing.T) {
	y, err := RenderBootstrap(testParams())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, old, new string }{
		{"unknown field", "merge_slashes: true", "merge_slashs: true"},
		{"bad enum", "REJECT_REQUEST", "REJECT_ALWAYS"},
		{"bad type url", "ext_authz.v3.ExtAuthz\n", "ext_authz.v3.ExtAuth\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			broken := strings.Replace(string(y), tt.old, tt.new, 1)
			if broken == string(y) {
				t.Fatalf("%q not found in template output", tt.old)
			}
			var v any
			if err := yaml.Unmarshal([]byte(broken), &v); err != nil {
				return
			}
			j, _ := json.Marshal(v)
			var b bootstrapv3.Bootstrap
			if err := protojson.Unmarshal(j, &b); err == nil {
				if err := b.ValidateAll(); err == nil {
					t.Fatal("broken config accepted")
				}
			}
		})
	}
}

// TestExampleEnvoyYAML validates the committed envoy.yaml and checks it is
// what RenderBootstrap produces for the documented parameters.
func TestExampleEnvoyYAML(t *testing.T) {
	rendered, err := RenderBootstrap(ExampleParams())
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// envoy.yaml = its own comment header + the rendered config from "admin:" on.
	tail := func(s string) string {
		if i := strings.Index(s, "\nadmin:"); i >= 0 {
			return s[i+1:]
		}
		return ""
	}
	if *update {
		header := string(y)
		if i := strings.Index(header, "\nadmin:"); i >= 0 {
			header = header[:i+1]
		}
		y = []byte(header + tail(string(rendered)))
		if err := os.WriteFile("envoy.yaml", y, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if tail(string(y)) != tail(string(rendered)) {
		t.Error("envoy.yaml is stale; regenerate: go test ./envoy -run TestExampleEnvoyYAML -update")
	}
	_, ea, routes := inspect(t, parseBootstrap(t, y))
	if ea.GetFailureModeAllow() || !ea.GetWithRequestBody().GetPackAsBytes() {
		t.Errorf("ext_authz = %v", ea)
	}
	names := []string{}
	for _, r := range routes {
		names = append(names, r.GetName())
	}
	if strings.Join(names, ",") != "protected_resource_metadata,docs,tickets" {
		t.Errorf("routes = %v", names)
	}
}
