package envoy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
)

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in   string
		want Upstream
		err  string
	}{
		{in: "docs-mcp:8000", want: Upstream{Host: "docs-mcp", Port: 8000}},
		{in: "http://docs-mcp:8000", want: Upstream{Host: "docs-mcp", Port: 8000}},
		{in: "http://docs-mcp", want: Upstream{Host: "docs-mcp", Port: 80}},
		{in: "https://mcp.example.com", want: Upstream{Host: "mcp.example.com", Port: 443, TLS: true}},
		{in: "https://mcp.example.com:8443/", want: Upstream{Host: "mcp.example.com", Port: 8443, TLS: true, Path: "/"}},
		{in: "http://demo-mcp:8081/mcp", want: Upstream{Host: "demo-mcp", Port: 8081, Path: "/mcp"}},
		{in: "http://u:p@demo-mcp:8081", err: "want HOST:PORT"},
		{in: "http://demo-mcp:8081/?q=1", err: "want HOST:PORT"},
		{in: "[::1]:9000", want: Upstream{Host: "::1", Port: 9000}},
		{in: "docs-mcp", err: "want HOST:PORT"},
		{in: "docs-mcp:0", err: "1-65535"},
		{in: "docs-mcp:http", err: "1-65535"},
		{in: ":8000", err: "1-65535"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseUpstream(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func routeSummary(p BootstrapParams) string {
	var s []string
	for _, r := range p.Routes {
		m := r.PathPrefix + "*"
		if r.Path != "" {
			m = r.Path
		}
		up := fmt.Sprintf("%s:%d", r.UpstreamHost, r.UpstreamPort)
		if r.UpstreamTLS {
			up = "tls:" + up
		}
		if r.PrefixRewrite != "" {
			up += r.PrefixRewrite
		}
		auth := "mcp_server=" + r.ContextExtensions["mcp_server"]
		if r.DisableExtAuthz {
			auth = "noauthz"
		}
		s = append(s, fmt.Sprintf("%s|%s|%s|%s|%s", r.Name, r.Host, m, up, auth))
	}
	return strings.Join(s, "\n")
}

func TestCatalogParams(t *testing.T) {
	opts := GenerateOptions{AuthzHost: "mcpauthz", AuthzPort: 9191, MetadataPort: 8181}
	tests := []struct {
		name    string
		servers []CatalogServer
		ups     map[string]string
		want    string
	}{
		{
			name: "defaults from resource URLs",
			servers: []CatalogServer{
				{ID: "docs", Resource: "https://mcp.example.com/docs/mcp"},
				{ID: "search", Resource: "http://search.internal:8080/mcp/", PathPrefix: "/search/"},
			},
			want: "metadata.well-known||/.well-known/oauth-protected-resource|mcpauthz:8181|noauthz\n" +
				"metadata.docs||/.well-known/oauth-protected-resource/docs/mcp|mcpauthz:8181|noauthz\n" +
				"metadata.search||/.well-known/oauth-protected-resource/mcp|mcpauthz:8181|noauthz\n" +
				"docs||/docs/mcp*|tls:mcp.example.com:443|mcp_server=docs\n" +
				"search||/search/*|search.internal:8080|mcp_server=search",
		},
		{
			name: "overrides, longest prefix first, root resource",
			servers: []CatalogServer{
				{ID: "root", Resource: "https://mcp.example.com"},
				{ID: "docs", Resource: "https://mcp.example.com/docs/mcp", PathPrefix: "/docs/"},
			},
			ups: map[string]string{"root": "root-mcp:8000", "docs": "https://docs.internal/"},
			want: "metadata.root||/.well-known/oauth-protected-resource|mcpauthz:8181|noauthz\n" +
				"metadata.docs||/.well-known/oauth-protected-resource/docs/mcp|mcpauthz:8181|noauthz\n" +
				"docs||/docs/*|tls:docs.internal:443/|mcp_server=docs\n" +
				"root||/*|root-mcp:8000|mcp_server=root",
		},
		{
			name: "hosts get their own routes",
			servers: []CatalogServer{
				{ID: "a", Resource: "https://a.example.com/mcp", Host: "A.example.com"},
				{ID: "b", Resource: "https://b.example.com/mcp", Host: "b.example.com"},
			},
			ups: map[string]string{"a": "a:1", "b": "b:2"},
			want: "metadata.well-known.a.example.com|a.example.com|/.well-known/oauth-protected-resource|mcpauthz:8181|noauthz\n" +
				"metadata.a|a.example.com|/.well-known/oauth-protected-resource/mcp|mcpauthz:8181|noauthz\n" +
				"a|a.example.com|/mcp*|a:1|mcp_server=a\n" +
				"metadata.well-known.b.example.com|b.example.com|/.well-known/oauth-protected-resource|mcpauthz:8181|noauthz\n" +
				"metadata.b|b.example.com|/.well-known/oauth-protected-resource/mcp|mcpauthz:8181|noauthz\n" +
				"b|b.example.com|/mcp*|b:2|mcp_server=b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts
			o.Upstreams = tt.ups
			p, err := CatalogParams(tt.servers, o)
			if err != nil {
				t.Fatal(err)
			}
			if got := routeSummary(p); got != tt.want {
				t.Fatalf("routes:\n%s\nwant:\n%s", got, tt.want)
			}
			if p.ListenPort != 10000 || p.AdminPort != 9901 {
				t.Errorf("ports %d %d", p.ListenPort, p.AdminPort)
			}
			y, err := GenerateFromCatalog(tt.servers, o)
			if err != nil {
				t.Fatal(err)
			}
			b := parseBootstrap(t, y)
			if issues := SecurityIssues(b); len(issues) > 0 {
				t.Errorf("SecurityIssues = %v", issues)
			}
		})
	}
}

func TestCatalogParamsErrors(t *testing.T) {
	opts := GenerateOptions{AuthzHost: "mcpauthz", AuthzPort: 9191, MetadataPort: 8181}
	docs := CatalogServer{ID: "docs", Resource: "https://mcp.example.com/docs/mcp"}
	tests := []struct {
		name    string
		servers []CatalogServer
		mutate  func(*GenerateOptions)
		want    string
	}{
		{"empty catalog", nil, nil, "no servers"},
		{"unknown upstream id", []CatalogServer{docs}, func(o *GenerateOptions) {
			o.Upstreams = map[string]string{"dcos": "x:1", "zzz": "y:2"}
		}, "upstream for unknown server id(s) dcos, zzz (servers: docs)"},
		{"bad upstream", []CatalogServer{docs}, func(o *GenerateOptions) { o.Upstreams = map[string]string{"docs": "nope"} }, "servers[0] (docs): envoy: upstream"},
		{"relative resource", []CatalogServer{{ID: "x", Resource: "/mcp"}}, nil, "not an absolute http(s) URL"},
		{"same prefix twice", []CatalogServer{docs, {ID: "docs2", Resource: "https://mcp.example.com/docs/mcp/"}}, nil, "never match"},
		{"no metadata port", []CatalogServer{docs}, func(o *GenerateOptions) { o.MetadataPort = 0 }, "upstream_port"},
		{"no authz", []CatalogServer{docs}, func(o *GenerateOptions) { o.AuthzHost = "" }, "authz_host"},
		{"wildcard origin", []CatalogServer{{ID: "docs", Resource: docs.Resource, AllowedOrigins: []string{"https://ok.example", "*"}}}, nil,
			`servers[0] (docs): allowed_origins[1]: "*" is not an origin`},
		{"origin with a path", []CatalogServer{{ID: "docs", Resource: docs.Resource, AllowedOrigins: []string{"https://chat.example.com/app"}}}, nil,
			"allowed_origins[0]"},
		{"origin without scheme", []CatalogServer{{ID: "docs", Resource: docs.Resource, AllowedOrigins: []string{"chat.example.com"}}}, nil,
			"allowed_origins[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts
			if tt.mutate != nil {
				tt.mutate(&o)
			}
			_, err := GenerateFromCatalog(tt.servers, o)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "envoy: ") {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func BenchmarkValidateBootstrapYAML(b *testing.B) {
	y, err := RenderBootstrap(ExampleMTLSParams())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(y)))
	for b.Loop() {
		if err := ValidateBootstrapYAML(y); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGeneratedCORS: the CORS filter comes before ext_authz, and each MCP
// route (only MCP routes) carries its server's origins, normalised, with
// the MCP methods and headers and no credentials.
func TestGeneratedCORS(t *testing.T) {
	servers := []CatalogServer{
		{ID: "docs", Resource: "https://mcp.example.com/docs/mcp", AllowedOrigins: []string{"https://Chat.Example.com/", "https://chat.example.com", "http://localhost:3000"}},
		{ID: "notes", Resource: "http://notes.internal:8080/mcp"},
	}
	y, err := GenerateFromCatalog(servers, GenerateOptions{AuthzHost: "mcpauthz", AuthzPort: 9191, MetadataPort: 8181})
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseBootstrapDocument(y)
	if err != nil {
		t.Fatal(err)
	}
	if issues := d.SecurityIssues(StrictOptions{}); len(issues) > 0 {
		t.Fatalf("generated config fails --strict: %v", issues)
	}
	hcm, _, _ := inspect(t, d.Bootstrap)
	if a := hcm.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction().String(); a != "REJECT_REQUEST" {
		t.Errorf("headers_with_underscores_action = %s", a)
	}
	want := map[string][]string{"docs": {"https://chat.example.com", "http://localhost:3000"}, "notes": {"http://notes.internal:8080"}}
	seen := 0
	for _, r := range hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes() {
		a, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.cors"]
		if perRoute(t, r).GetDisabled() {
			if ok {
				t.Errorf("metadata route %s has a CORS policy", r.GetName())
			}
			continue
		}
		var cp corsv3.CorsPolicy
		if !ok || a.UnmarshalTo(&cp) != nil {
			t.Fatalf("route %s: no CorsPolicy", r.GetName())
		}
		seen++
		var got []string
		for _, m := range cp.GetAllowOriginStringMatch() {
			if !m.GetIgnoreCase() {
				t.Errorf("route %s: origin %v is case-sensitive", r.GetName(), m)
			}
			got = append(got, m.GetExact())
		}
		if !slices.Equal(got, want[r.GetName()]) {
			t.Errorf("route %s: origins %q, want %q", r.GetName(), got, want[r.GetName()])
		}
		if cp.GetAllowMethods() != "GET, POST, DELETE, OPTIONS" || cp.GetExposeHeaders() != "mcp-session-id, www-authenticate" ||
			cp.GetAllowHeaders() != "authorization, content-type, mcp-session-id, mcp-protocol-version, mcp-method, mcp-name, last-event-id" ||
			cp.GetAllowCredentials() != nil || cp.GetMaxAge() != "" {
			t.Errorf("route %s: policy %v", r.GetName(), &cp)
		}
	}
	if seen != 2 {
		t.Errorf("%d MCP routes with CORS, want 2", seen)
	}
}
