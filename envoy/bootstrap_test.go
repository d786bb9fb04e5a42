package envoy

import (
	"encoding/json"
	"flag"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

var update = flag.Bool("update", false, "rewrite the shipped Envoy YAMLs from their parameters")

// parseBootstrap validates y with ParseBootstrapYAML and, independently,
// with a plain YAML -> JSON -> strict protojson -> ValidateAll pass, so a
// bug in the validator cannot hide a bad template.
func parseBootstrap(t *testing.T, y []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	b, err := ParseBootstrapYAML(y)
	if err != nil {
		t.Fatalf("ParseBootstrapYAML: %v\n%s", err, y)
	}
	var v any
	if err := yaml.Unmarshal(y, &v); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	var b2 bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(j, &b2); err != nil {
		t.Fatalf("protojson: %v", err)
	}
	if err := b2.ValidateAll(); err != nil {
		t.Fatalf("ValidateAll: %v", err)
	}
	return b
}

func testParams() BootstrapParams {
	return BootstrapParams{
		ListenPort: 10000, AdminPort: 9901, AuthzHost: "127.0.0.1", AuthzPort: 9191,
		MaxRequestBytes: 65536, Timeout: 500 * time.Millisecond,
		Routes: []BootstrapRoute{
			{Name: "metadata", Path: "/.well-known/oauth-protected-resource/docs/mcp", UpstreamHost: "mcpauthz", UpstreamPort: 8080, DisableExtAuthz: true},
			{Name: "docs", PathPrefix: "/docs/", UpstreamHost: "127.0.0.1", UpstreamPort: 8081, ContextExtensions: map[string]string{"mcp_server": "docs", "tier": `we"ird: {x}`}},
		},
	}
}

// inspect decodes the HCM, ext_authz filter and the first virtual host's routes.
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
	fs := hcm.GetHttpFilters()
	if len(fs) < 3 || fs[0].GetName() != "envoy.filters.http.cors" || fs[1].GetName() != "envoy.filters.http.ext_authz" ||
		(len(fs) == 4) != (fs[2].GetName() == ExtProcFilterName) || len(fs) > 4 {
		t.Fatalf("http_filters = %v, want cors, ext_authz, [ext_proc,] router", fs)
	}
	if err := fs[1].GetTypedConfig().UnmarshalTo(&ea); err != nil {
		t.Fatal(err)
	}
	if got := hcm.GetHttpFilters()[len(hcm.GetHttpFilters())-1].GetName(); got != "envoy.filters.http.router" {
		t.Errorf("last filter = %q", got)
	}
	return &hcm, &ea, hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()
}

func perRoute(t *testing.T, r *routev3.Route) *extauthzv3.ExtAuthzPerRoute {
	t.Helper()
	var pr extauthzv3.ExtAuthzPerRoute
	if err := r.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"].UnmarshalTo(&pr); err != nil {
		t.Fatalf("route %s: %v", r.GetName(), err)
	}
	return &pr
}

func TestRenderBootstrap(t *testing.T) {
	y, err := RenderBootstrap(testParams())
	if err != nil {
		t.Fatal(err)
	}
	b := parseBootstrap(t, y)
	if issues := SecurityIssues(b); len(issues) > 0 {
		t.Errorf("SecurityIssues = %v", issues)
	}
	hcm, ea, routes := inspect(t, b)
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		t.Errorf("path handling: normalize=%v merge=%v escaped=%v", hcm.GetNormalizePath(), hcm.GetMergeSlashes(), hcm.GetPathWithEscapedSlashesAction())
	}
	if hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction().String() != "REJECT_REQUEST" ||
		!hcm.GetUseRemoteAddress().GetValue() || hcm.GetForwardClientCertDetails() != hcmv3.HttpConnectionManager_SANITIZE {
		t.Errorf("header hygiene: %v %v %v", hcm.GetCommonHttpProtocolOptions(), hcm.GetUseRemoteAddress(), hcm.GetForwardClientCertDetails())
	}
	if hcm.GetStreamIdleTimeout().AsDuration() != DefaultStreamIdleTimeout || hcm.GetRequestTimeout().AsDuration() != 0 {
		t.Errorf("timeouts: idle %v request %v", hcm.GetStreamIdleTimeout(), hcm.GetRequestTimeout())
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
	if !perRoute(t, routes[0]).GetDisabled() || routes[0].GetMatch().GetPath() != "/.well-known/oauth-protected-resource/docs/mcp" {
		t.Errorf("metadata route = %v", routes[0])
	}
	ce := perRoute(t, routes[1]).GetCheckSettings().GetContextExtensions()
	if ce["mcp_server"] != "docs" || ce["tier"] != `we"ird: {x}` {
		t.Errorf("context_extensions = %v", ce)
	}
	if routes[1].GetMatch().GetPrefix() != "/docs/" || routes[1].GetRoute().GetCluster() != "upstream_docs" ||
		routes[1].GetRoute().GetTimeout().AsDuration() != 0 || routes[1].GetRoute().GetTimeout() == nil {
		t.Errorf("docs route = %v", routes[1])
	}
	cl := b.GetStaticResources().GetClusters()
	if len(cl) != 3 || cl[0].GetName() != "mcpauthz" || cl[0].GetType().String() != "STATIC" ||
		cl[1].GetType().String() != "STRICT_DNS" || cl[2].GetType().String() != "STATIC" ||
		cl[0].GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"] == nil {
		t.Errorf("clusters = %v", cl)
	}
	if b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetTransportSocket() != nil {
		t.Error("plain listener has a transport socket")
	}
}

func TestRenderBootstrapHostsTLSAndSharedClusters(t *testing.T) {
	p := testParams()
	p.Routes = []BootstrapRoute{
		{Name: "meta_a", Path: MetadataPathPrefix, Host: "a.example.com", UpstreamHost: "mcpauthz", UpstreamPort: 8181, Cluster: "mcpauthz_http", DisableExtAuthz: true},
		{Name: "meta_b", Path: MetadataPathPrefix, Host: "b.example.com:8443", UpstreamHost: "mcpauthz", UpstreamPort: 8181, Cluster: "mcpauthz_http", DisableExtAuthz: true},
		{Name: "a", PathPrefix: "/mcp", PrefixRewrite: "/v1/mcp", Host: "a.example.com", UpstreamHost: "a.internal", UpstreamPort: 443, UpstreamTLS: true, ContextExtensions: map[string]string{"mcp_server": "a"}},
		{Name: "b", PathPrefix: "/mcp", Host: "b.example.com:8443", UpstreamHost: "10.0.0.7", UpstreamPort: 443, UpstreamTLS: true, UpstreamSNI: "b.internal", ContextExtensions: map[string]string{"mcp_server": "b"}},
	}
	y, err := RenderBootstrap(p)
	if err != nil {
		t.Fatal(err)
	}
	b := parseBootstrap(t, y)
	hcm, _, _ := inspect(t, b)
	vhs := hcm.GetRouteConfig().GetVirtualHosts()
	if len(vhs) != 2 || strings.Join(vhs[0].GetDomains(), ",") != "a.example.com,a.example.com:*" ||
		strings.Join(vhs[1].GetDomains(), ",") != "b.example.com:8443" || len(vhs[0].GetRoutes()) != 2 {
		t.Fatalf("virtual hosts = %v", vhs)
	}
	if rw := vhs[0].GetRoutes()[1].GetRoute().GetPrefixRewrite(); rw != "/v1/mcp" {
		t.Errorf("prefix_rewrite = %q", rw)
	}
	if rw := vhs[1].GetRoutes()[1].GetRoute().GetPrefixRewrite(); rw != "" {
		t.Errorf("unexpected prefix_rewrite %q", rw)
	}
	cl := b.GetStaticResources().GetClusters()
	names := []string{}
	for _, c := range cl {
		names = append(names, c.GetName())
	}
	if strings.Join(names, ",") != "mcpauthz,mcpauthz_http,upstream_a,upstream_b" {
		t.Fatalf("clusters = %v", names)
	}
	for i, want := range map[int]string{2: "a.internal", 3: "b.internal"} {
		var tc tlsv3.UpstreamTlsContext
		if err := cl[i].GetTransportSocket().GetTypedConfig().UnmarshalTo(&tc); err != nil {
			t.Fatal(err)
		}
		sans := tc.GetCommonTlsContext().GetValidationContext().GetMatchTypedSubjectAltNames()
		if tc.GetSni() != want || len(sans) != 1 || sans[0].GetMatcher().GetExact() != want ||
			tc.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename() != DefaultUpstreamCAFile {
			t.Errorf("cluster %s tls = %v", cl[i].GetName(), &tc)
		}
	}
}

func TestRenderBootstrapMTLS(t *testing.T) {
	y, err := RenderBootstrap(ExampleMTLSParams())
	if err != nil {
		t.Fatal(err)
	}
	b := parseBootstrap(t, y)
	hcm, ea, _ := inspect(t, b)
	if hcm.GetForwardClientCertDetails() != hcmv3.HttpConnectionManager_SANITIZE_SET || !hcm.GetSetCurrentClientCertDetails().GetUri() {
		t.Errorf("xfcc: %v %v", hcm.GetForwardClientCertDetails(), hcm.GetSetCurrentClientCertDetails())
	}
	if !ea.GetIncludePeerCertificate() {
		t.Error("include_peer_certificate off")
	}
	var dtc tlsv3.DownstreamTlsContext
	ts := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetTransportSocket()
	if err := ts.GetTypedConfig().UnmarshalTo(&dtc); err != nil {
		t.Fatal(err)
	}
	vc := dtc.GetCommonTlsContext().GetValidationContext()
	sans := vc.GetMatchTypedSubjectAltNames()
	if !dtc.GetRequireClientCertificate().GetValue() || vc.GetTrustedCa().GetFilename() != "/etc/envoy/tls/client-ca.crt" ||
		len(sans) != 1 || sans[0].GetSanType().String() != "URI" || sans[0].GetMatcher().GetPrefix() != "spiffe://agents.example.org/" {
		t.Errorf("downstream tls = %v", &dtc)
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
		{"path and prefix", func(p *BootstrapParams) { p.Routes[1].Path = "/docs" }, "routes[1]: exactly one of path and path_prefix"},
		{"neither path nor prefix", func(p *BootstrapParams) { p.Routes[1].PathPrefix = "" }, "routes[1]: exactly one"},
		{"bad upstream port", func(p *BootstrapParams) { p.Routes[1].UpstreamPort = 70000 }, "routes[1].upstream_port"},
		{"ext_authz off on an MCP route", func(p *BootstrapParams) {
			p.Routes[1].DisableExtAuthz, p.Routes[1].ContextExtensions = true, nil
		}, "routes[1].disable_ext_authz: only allowed"},
		{"ext_authz off on a metadata prefix", func(p *BootstrapParams) {
			p.Routes[0].Path, p.Routes[0].PathPrefix = "", MetadataPathPrefix
		}, "routes[0].disable_ext_authz"},
		{"ext_authz off on a look-alike path", func(p *BootstrapParams) { p.Routes[0].Path = MetadataPathPrefix + "-x" }, "routes[0].disable_ext_authz"},
		{"same match twice", func(p *BootstrapParams) {
			p.Routes = append(p.Routes, p.Routes[1])
			p.Routes[2].Name = "docs2"
		}, `routes[2]: same host and prefix "/docs/" as route "docs"`},
		{"bad host", func(p *BootstrapParams) { p.Routes[1].Host = "Docs.Example.com" }, "routes[1].host"},
		{"cluster name clash", func(p *BootstrapParams) { p.Routes[0].Cluster, p.Routes[1].Cluster = "x", "x" }, `routes[1].cluster: "x" already names`},
		{"mtls without files", func(p *BootstrapParams) { p.MTLS = &MTLS{CertChainFile: "/c"} }, "mtls: cert_chain_file"},
		{"mtls bad trust domain", func(p *BootstrapParams) {
			p.MTLS = &MTLS{CertChainFile: "/c", PrivateKeyFile: "/k", ClientCAFile: "/ca", TrustDomains: []string{"spiffe://x"}}
		}, "mtls.trust_domains[0]"},
		{"rewrite on an exact path", func(p *BootstrapParams) { p.Routes[0].PrefixRewrite = "/" }, "routes[0].prefix_rewrite"},
		{"relative rewrite", func(p *BootstrapParams) { p.Routes[1].PrefixRewrite = "mcp" }, "routes[1].prefix_rewrite"},
		{"negative idle timeout", func(p *BootstrapParams) { p.StreamIdleTimeout = -time.Second }, "stream_idle_timeout"},
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

// shippedGenerated are the Envoy YAMLs in this directory rendered from Go
// parameters; `go test ./envoy -run TestShippedEnvoyYAMLsAreGenerated -update`
// rewrites them (deploy/compose/envoy.yaml is regenerated by the CLI tests in
// cmd/mcpauthz).
var shippedGenerated = []struct {
	file   string
	params func() BootstrapParams
}{
	{"envoy.yaml", ExampleParams},
	{"envoy-mtls.yaml", ExampleMTLSParams},
}

// TestShippedEnvoyYAMLsAreGenerated checks each committed file is exactly
// its hand-written comment header plus RenderBootstrap's output from
// "admin:" on.
func TestShippedEnvoyYAMLsAreGenerated(t *testing.T) {
	tail := func(s string) string {
		if i := strings.Index(s, "\nadmin:"); i >= 0 {
			return s[i+1:]
		}
		return ""
	}
	for _, sf := range shippedGenerated {
		t.Run(sf.file, func(t *testing.T) {
			rendered, err := RenderBootstrap(sf.params())
			if err != nil {
				t.Fatal(err)
			}
			y, err := os.ReadFile(sf.file)
			if err != nil && !*update {
				t.Fatal(err)
			}
			if *update {
				header := string(y)
				if i := strings.Index(header, "\nadmin:"); i >= 0 {
					header = header[:i+1]
				}
				if header == "" {
					header = "# Generated by envoy.RenderBootstrap; regenerate with\n#   go test ./envoy -run TestShippedEnvoyYAMLsAreGenerated -update\n"
				}
				y = []byte(header + tail(string(rendered)))
				if err := os.WriteFile(sf.file, y, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tail(string(y)) != tail(string(rendered)) {
				t.Errorf("%s is stale; regenerate: go test ./envoy -run TestShippedEnvoyYAMLsAreGenerated -update", sf.file)
			}
			parseBootstrap(t, y)
		})
	}
}

func TestExampleParamsRoutes(t *testing.T) {
	y, err := RenderBootstrap(ExampleParams())
	if err != nil {
		t.Fatal(err)
	}
	_, _, routes := inspect(t, parseBootstrap(t, y))
	var got []string
	for _, r := range routes {
		m := r.GetMatch().GetPath()
		if m == "" {
			m = r.GetMatch().GetPrefix() + "*"
		}
		got = append(got, r.GetName()+"="+m)
	}
	want := "metadata.well-known=/.well-known/oauth-protected-resource," +
		"metadata.docs=/.well-known/oauth-protected-resource/docs/mcp," +
		"metadata.tickets=/.well-known/oauth-protected-resource/tickets/mcp," +
		"tickets=/tickets/*,docs=/docs/*"
	if strings.Join(got, ",") != want {
		t.Errorf("routes = %s\nwant     %s", strings.Join(got, ","), want)
	}
}

func TestRenderBootstrapExtProc(t *testing.T) {
	p := testParams()
	p.ExtProcMessageTimeout = 3 * time.Second
	y, err := RenderBootstrap(p)
	if err != nil {
		t.Fatal(err)
	}
	b := parseBootstrap(t, y)
	if issues := SecurityIssues(b); len(issues) > 0 {
		t.Fatalf("SecurityIssues = %v", issues)
	}
	hcm, _, routes := inspect(t, b)
	fs := hcm.GetHttpFilters()
	if len(fs) != 4 {
		t.Fatalf("%d filters", len(fs))
	}
	var x extprocv3.ExternalProcessor
	if err := fs[2].GetTypedConfig().UnmarshalTo(&x); err != nil {
		t.Fatal(err)
	}
	pm := x.GetProcessingMode()
	if x.GetGrpcService().GetEnvoyGrpc().GetClusterName() != "mcpauthz" || x.GetGrpcService().GetTimeout() != nil || x.GetFailureModeAllow() ||
		!x.GetAllowModeOverride() || x.GetMessageTimeout().AsDuration() != 3*time.Second ||
		pm.GetRequestHeaderMode() != extprocv3.ProcessingMode_SEND || pm.GetResponseHeaderMode() != extprocv3.ProcessingMode_SEND ||
		pm.GetRequestBodyMode() != extprocv3.ProcessingMode_NONE || pm.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE ||
		!slices.Equal(x.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(), []string{ExtAuthzMetadataNamespace}) {
		t.Errorf("ext_proc = %v", &x)
	}
	var pr extprocv3.ExtProcPerRoute
	if err := routes[0].GetTypedPerFilterConfig()[ExtProcFilterName].UnmarshalTo(&pr); err != nil || !pr.GetDisabled() {
		t.Errorf("metadata route ext_proc = %v, %v", &pr, err)
	}
	if _, ok := routes[1].GetTypedPerFilterConfig()[ExtProcFilterName]; ok {
		t.Error("MCP route overrides ext_proc")
	}
	if len(routes[0].GetRequestHeadersToAdd()) != 0 || !identityEncoding(routes[1].GetRequestHeadersToAdd(), nil) {
		t.Errorf("accept-encoding: metadata %v, MCP %v", routes[0].GetRequestHeadersToAdd(), routes[1].GetRequestHeadersToAdd())
	}

	p.DisableExtProc = true
	y, err = RenderBootstrap(p)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseBootstrapDocument(y)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(y), ExtProcFilterName) || strings.Contains(string(y), `key: "accept-encoding"`) {
		t.Error("DisableExtProc still renders ext_proc or accept-encoding")
	}
	if is := d.SecurityIssues(StrictOptions{ExtProcOptional: true}); len(is) > 0 {
		t.Errorf("without ext_proc, optional: %v", is)
	}
	if is := d.SecurityIssues(StrictOptions{}); len(is) != 1 || !strings.Contains(is[0].Message, "no envoy.filters.http.ext_proc") {
		t.Errorf("without ext_proc, required: %v", is)
	}
}
