package envoy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
)

//go:embed bootstrap.tmpl.yaml
var bootstrapTemplate string

var bootstrapTmpl = template.Must(template.New("bootstrap").Funcs(template.FuncMap{
	"quote":   func(s string) string { b, _ := json.Marshal(s); return string(b) },
	"cluster": func(name string) string { return "upstream_" + name },
	"discovery": func(host string) string {
		if _, err := netip.ParseAddr(host); err == nil {
			return "STATIC"
		}
		return "STRICT_DNS"
	},
	"dur": func(d time.Duration) string {
		return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
	},
}).Parse(bootstrapTemplate))

// Defaults used by RenderBootstrap for zero BootstrapParams fields.
const (
	DefaultMaxRequestBytes = 1 << 20
	DefaultAuthzTimeout    = time.Second
)

// BootstrapRoute is one MCP server (or one unauthenticated path such as the
// RFC 9728 metadata document) behind Envoy.
type BootstrapRoute struct {
	Name              string // route and cluster name suffix: [A-Za-z0-9_.-]+
	PathPrefix        string // must start with "/"
	UpstreamHost      string // IP (STATIC cluster) or DNS name (STRICT_DNS)
	UpstreamPort      int
	ContextExtensions map[string]string // e.g. {"mcp_server": "docs"}
	DisableExtAuthz   bool              // ExtAuthzPerRoute{disabled: true}
}

// BootstrapParams parameterises RenderBootstrap.
type BootstrapParams struct {
	ListenAddr      string // default "0.0.0.0"
	ListenPort      int
	AdminPort       int
	AuthzHost       string
	AuthzPort       int
	Routes          []BootstrapRoute
	MaxRequestBytes int           // default DefaultMaxRequestBytes
	Timeout         time.Duration // ext_authz gRPC timeout, default DefaultAuthzTimeout
}

var routeName = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func validPort(p int) bool { return p > 0 && p < 65536 }

// Validate reports every invalid field, each prefixed with its name.
func (p BootstrapParams) Validate() error {
	var errs []error
	if !validPort(p.ListenPort) {
		errs = append(errs, fmt.Errorf("listen_port: %d out of range", p.ListenPort))
	}
	if !validPort(p.AdminPort) {
		errs = append(errs, fmt.Errorf("admin_port: %d out of range", p.AdminPort))
	}
	if p.AuthzHost == "" {
		errs = append(errs, errors.New("authz_host: required"))
	}
	if !validPort(p.AuthzPort) {
		errs = append(errs, fmt.Errorf("authz_port: %d out of range", p.AuthzPort))
	}
	if p.MaxRequestBytes < 0 {
		errs = append(errs, errors.New("max_request_bytes: negative"))
	}
	if p.Timeout < 0 {
		errs = append(errs, errors.New("timeout: negative"))
	}
	if len(p.Routes) == 0 {
		errs = append(errs, errors.New("routes: at least one route required"))
	}
	seen := map[string]bool{}
	for i, r := range p.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		if !routeName.MatchString(r.Name) {
			errs = append(errs, fmt.Errorf("%s.name: %q must match %s", f, r.Name, routeName))
		} else if seen[r.Name] {
			errs = append(errs, fmt.Errorf("%s.name: duplicate %q", f, r.Name))
		}
		seen[r.Name] = true
		if !strings.HasPrefix(r.PathPrefix, "/") {
			errs = append(errs, fmt.Errorf("%s.path_prefix: %q must start with /", f, r.PathPrefix))
		}
		if r.UpstreamHost == "" {
			errs = append(errs, fmt.Errorf("%s.upstream_host: required", f))
		}
		if !validPort(r.UpstreamPort) {
			errs = append(errs, fmt.Errorf("%s.upstream_port: %d out of range", f, r.UpstreamPort))
		}
		if r.DisableExtAuthz && len(r.ContextExtensions) > 0 {
			errs = append(errs, fmt.Errorf("%s.context_extensions: unused when ext_authz is disabled", f))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("envoy: bootstrap: %w", err)
	}
	return nil
}

// RenderBootstrap renders a static Envoy v3 bootstrap (YAML) with one
// listener whose HTTP connection manager runs ext_authz (gRPC, cluster
// "mcpauthz") and the router, one route and upstream cluster per
// BootstrapRoute, and an admin listener on 127.0.0.1:AdminPort.
func RenderBootstrap(p BootstrapParams) ([]byte, error) {
	if p.ListenAddr == "" {
		p.ListenAddr = "0.0.0.0"
	}
	if p.MaxRequestBytes == 0 {
		p.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if p.Timeout == 0 {
		p.Timeout = DefaultAuthzTimeout
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := bootstrapTmpl.Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("envoy: render bootstrap: %w", err)
	}
	return buf.Bytes(), nil
}

// ExampleParams returns the parameters envoy.yaml (the commented example in
// this directory) is rendered from: Envoy on :10000 in front of two MCP
// servers, "docs" and "tickets", with mcpauthz on mcpauthz:9191 (ext_authz)
// and mcpauthz:8181 (RFC 9728 protected resource metadata, no ext_authz).
func ExampleParams() BootstrapParams {
	return BootstrapParams{
		ListenAddr: "0.0.0.0", ListenPort: 10000, AdminPort: 9901,
		AuthzHost: "mcpauthz", AuthzPort: 9191,
		MaxRequestBytes: DefaultMaxRequestBytes, Timeout: DefaultAuthzTimeout,
		Routes: []BootstrapRoute{
			{Name: "protected_resource_metadata", PathPrefix: "/.well-known/oauth-protected-resource",
				UpstreamHost: "mcpauthz", UpstreamPort: 8181, DisableExtAuthz: true},
			{Name: "docs", PathPrefix: "/docs/", UpstreamHost: "docs-mcp", UpstreamPort: 8000,
				ContextExtensions: map[string]string{"mcp_server": "docs"}},
			{Name: "tickets", PathPrefix: "/tickets/", UpstreamHost: "tickets-mcp", UpstreamPort: 8000,
				ContextExtensions: map[string]string{"mcp_server": "tickets"}},
		},
	}
}
