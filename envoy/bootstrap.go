package envoy

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
)

//go:embed bootstrap.tmpl.yaml
var bootstrapTemplate string

var bootstrapTmpl = template.Must(template.New("bootstrap").Funcs(template.FuncMap{
	"quote": func(s string) string { b, _ := json.Marshal(s); return string(b) },
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
	// DefaultStreamIdleTimeout closes an SSE stream (or any stream) that
	// carried no bytes for this long. MCP servers that keep streams open
	// longer should send SSE comments as keep-alives.
	DefaultStreamIdleTimeout = time.Hour
	// DefaultExtProcMessageTimeout bounds each ext_proc exchange (a list
	// body is filtered in one); Envoy's own default, 200ms, is short for a
	// cold policy over a long list.
	DefaultExtProcMessageTimeout = 2 * time.Second
	// DefaultUpstreamCAFile is the CA bundle for TLS to upstream MCP
	// servers; the path exists in the official Envoy images.
	DefaultUpstreamCAFile = "/etc/ssl/certs/ca-certificates.crt"
)

// MetadataPathPrefix is the RFC 9728 protected resource metadata path; a
// resource at https://host/docs/mcp publishes its metadata at
// /.well-known/oauth-protected-resource/docs/mcp.
const MetadataPathPrefix = "/.well-known/oauth-protected-resource"

// IsMetadataPath reports whether p is an RFC 9728 metadata path: the
// well-known path itself or a path below it.
func IsMetadataPath(p string) bool {
	return p == MetadataPathPrefix || strings.HasPrefix(p, MetadataPathPrefix+"/")
}

// BootstrapRoute is one MCP server (or one unauthenticated RFC 9728
// metadata path) behind Envoy.
type BootstrapRoute struct {
	Name string // route name: [A-Za-z0-9_.-]+, unique
	// Exactly one of PathPrefix and Path: a prefix match (MCP servers) or
	// an exact path match (metadata documents).
	PathPrefix string
	Path       string
	// PrefixRewrite, with PathPrefix, replaces the matched prefix before
	// the request goes upstream (Envoy prefix_rewrite): PathPrefix
	// "/docs/" and PrefixRewrite "/" send /docs/mcp to /mcp. ext_authz and
	// mcpauthz see the original path.
	PrefixRewrite string
	// Host restricts the route to requests for this host (an Envoy virtual
	// host with domains [Host, Host:*]); "" matches any host.
	Host         string
	UpstreamHost string // IP (STATIC cluster) or DNS name (STRICT_DNS)
	UpstreamPort int
	// Cluster names the upstream cluster (default "upstream_<Name>").
	// Routes to the same upstream share one cluster either way.
	Cluster string
	// UpstreamTLS makes Envoy talk TLS to the upstream, verifying its
	// certificate against BootstrapParams.UpstreamCAFile and the DNS name
	// UpstreamSNI (default UpstreamHost).
	UpstreamTLS       bool
	UpstreamSNI       string
	ContextExtensions map[string]string // e.g. {"mcp_server": "docs"}
	// DisableExtAuthz turns ext_authz off for this route
	// (ExtAuthzPerRoute{disabled: true}). Allowed only for exact RFC 9728
	// metadata paths, which clients must fetch before they have a token.
	DisableExtAuthz bool
	// CORSOrigins, when set, gives the route a CorsPolicy for Envoy's CORS
	// filter (typed_per_filter_config, which runs before ext_authz): a
	// browser's preflight from one of these origins ("scheme://host[:port]",
	// compared case-insensitively) is answered by Envoy with
	// CORSAllowMethods, CORSAllowHeaders and CORSExposeHeaders; preflights
	// from other origins go on to mcpauthz, which refuses them. Never with
	// credentials, never a wildcard.
	CORSOrigins []string
}

// The CORS policy of generated MCP routes: what a browser-based MCP client
// (Streamable HTTP) sends and must read.
const (
	CORSAllowMethods  = "GET, POST, DELETE, OPTIONS"
	CORSAllowHeaders  = "authorization, content-type, mcp-session-id, mcp-protocol-version, mcp-method, mcp-name, last-event-id"
	CORSExposeHeaders = "mcp-session-id, www-authenticate"
)

// NormalizeOrigin checks a browser origin "scheme://host[:port]" (http or
// https, no path, query, user info or wildcard) and returns it lower-cased
// without a trailing slash.
func NormalizeOrigin(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" ||
		strings.Contains(u.Host, "*") || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
		return "", fmt.Errorf("%q is not an origin (scheme://host[:port])", o)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// MTLS turns the listener into a TLS listener that requires client
// certificates (agents and workloads with SPIFFE X.509 SVIDs).
type MTLS struct {
	CertChainFile  string // server certificate chain (PEM)
	PrivateKeyFile string // server private key (PEM)
	ClientCAFile   string // CA bundle client certificates must chain to
	// TrustDomains, when set, additionally require a URI SAN
	// spiffe://<domain>/... from one of them.
	TrustDomains []string
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
	// StreamIdleTimeout, default DefaultStreamIdleTimeout.
	StreamIdleTimeout time.Duration
	// UpstreamCAFile, default DefaultUpstreamCAFile; used by UpstreamTLS routes.
	UpstreamCAFile string
	// MTLS, when set, requires client certificates on the listener.
	MTLS *MTLS
	// DisableExtProc leaves out the ext_proc filter (list filtering and
	// learning from upstream answers) and the identity accept-encoding of
	// MCP routes; `envoy validate --strict` then needs
	// StrictOptions.ExtProcOptional.
	DisableExtProc bool
	// ExtProcMessageTimeout is ext_proc's message_timeout, default
	// DefaultExtProcMessageTimeout.
	ExtProcMessageTimeout time.Duration
}

var (
	routeName   = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	hostPattern = regexp.MustCompile(`^(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$`)
	tdPattern   = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$`)
)

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
	if p.StreamIdleTimeout < 0 {
		errs = append(errs, errors.New("stream_idle_timeout: negative"))
	}
	if p.ExtProcMessageTimeout < 0 {
		errs = append(errs, errors.New("ext_proc_message_timeout: negative"))
	}
	if p.MTLS != nil {
		errs = append(errs, p.MTLS.problems()...)
	}
	if len(p.Routes) == 0 {
		errs = append(errs, errors.New("routes: at least one route required"))
	}
	rc := routeChecker{names: map[string]bool{}, matches: map[routeMatch]string{}, clusterUp: map[string]string{}}
	for i, r := range p.Routes {
		rc.check(fmt.Sprintf("routes[%d]", i), r)
	}
	errs = append(errs, rc.errs...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("envoy: bootstrap: %w", err)
	}
	return nil
}

// problems lists what is wrong with m.
func (m *MTLS) problems() []error {
	var errs []error
	if m.CertChainFile == "" || m.PrivateKeyFile == "" || m.ClientCAFile == "" {
		errs = append(errs, errors.New("mtls: cert_chain_file, private_key_file and client_ca_file are required"))
	}
	for i, td := range m.TrustDomains {
		if !tdPattern.MatchString(td) {
			errs = append(errs, fmt.Errorf("mtls.trust_domains[%d]: %q is not a SPIFFE trust domain", i, td))
		}
	}
	return errs
}

// routeMatch is what a route matches on.
type routeMatch struct{ host, kind, path string }

// routeChecker checks each route, and against the routes before it:
// unique names, no shadowed matches, one upstream per cluster.
type routeChecker struct {
	names     map[string]bool
	matches   map[routeMatch]string // route name by match
	clusterUp map[string]string     // upstream by cluster
	errs      []error
}

func (c *routeChecker) add(format string, a ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, a...))
}

// check checks route r, whose field path is f.
func (c *routeChecker) check(f string, r BootstrapRoute) {
	if !routeName.MatchString(r.Name) {
		c.add("%s.name: %q must match %s", f, r.Name, routeName)
	} else if c.names[r.Name] {
		c.add("%s.name: duplicate %q", f, r.Name)
	}
	c.names[r.Name] = true
	c.checkMatch(f, r)
	if r.PrefixRewrite != "" && (r.PathPrefix == "" || !strings.HasPrefix(r.PrefixRewrite, "/")) {
		c.add("%s.prefix_rewrite: %q needs path_prefix and must start with /", f, r.PrefixRewrite)
	}
	if r.Host != "" && !hostPattern.MatchString(r.Host) {
		c.add("%s.host: %q is not a lower-case host[:port]", f, r.Host)
	}
	if r.UpstreamHost == "" {
		c.add("%s.upstream_host: required", f)
	}
	if !validPort(r.UpstreamPort) {
		c.add("%s.upstream_port: %d out of range", f, r.UpstreamPort)
	}
	if r.Cluster != "" {
		c.checkCluster(f, r)
	}
	for j, o := range r.CORSOrigins {
		if n, err := NormalizeOrigin(o); err != nil || n != o {
			c.add("%s.cors_origins[%d]: %q must be a lower-case scheme://host[:port]", f, j, o)
		}
	}
	if r.DisableExtAuthz && len(r.CORSOrigins) > 0 {
		c.add("%s.cors_origins: only for MCP routes (ext_authz enabled)", f)
	}
	if r.DisableExtAuthz {
		if r.Path == "" || !IsMetadataPath(r.Path) {
			c.add("%s.disable_ext_authz: only allowed on an exact path under %s (RFC 9728 metadata)", f, MetadataPathPrefix)
		}
		if len(r.ContextExtensions) > 0 {
			c.add("%s.context_extensions: unused when ext_authz is disabled", f)
		}
	}
}

// checkMatch: exactly one of path and path_prefix, starting with /, and
// not the same as an earlier route's.
func (c *routeChecker) checkMatch(f string, r BootstrapRoute) {
	switch {
	case (r.Path == "") == (r.PathPrefix == ""):
		c.add("%s: exactly one of path and path_prefix is required", f)
	case r.PathPrefix != "" && !strings.HasPrefix(r.PathPrefix, "/"):
		c.add("%s.path_prefix: %q must start with /", f, r.PathPrefix)
	case r.Path != "" && !strings.HasPrefix(r.Path, "/"):
		c.add("%s.path: %q must start with /", f, r.Path)
	default:
		m := routeMatch{r.Host, "prefix", r.PathPrefix}
		if r.Path != "" {
			m = routeMatch{r.Host, "path", r.Path}
		}
		if prev, dup := c.matches[m]; dup {
			c.add("%s: same host and %s %q as route %q (it would never match)", f, m.kind, m.path, prev)
		}
		c.matches[m] = r.Name
	}
}

// checkCluster: a valid name, other than mcpauthz's, naming one upstream.
func (c *routeChecker) checkCluster(f string, r BootstrapRoute) {
	up := fmt.Sprintf("%s:%d tls=%v sni=%s", r.UpstreamHost, r.UpstreamPort, r.UpstreamTLS, r.UpstreamSNI)
	if !routeName.MatchString(r.Cluster) || r.Cluster == "mcpauthz" {
		c.add("%s.cluster: %q must match %s and not be \"mcpauthz\"", f, r.Cluster, routeName)
	} else if prev, ok := c.clusterUp[r.Cluster]; ok && prev != up {
		c.add("%s.cluster: %q already names upstream %s", f, r.Cluster, prev)
	}
	c.clusterUp[r.Cluster] = up
}

// Template data derived from BootstrapParams.
type (
	renderData struct {
		BootstrapParams
		VirtualHosts []vhostData
		Clusters     []clusterData
		// The CORS constants, for the template.
		CORSAllowMethods, CORSAllowHeaders, CORSExposeHeaders string
	}
	vhostData struct {
		Name    string
		Domains []string
		Routes  []routeData
	}
	routeData struct {
		BootstrapRoute
		Cluster string
	}
	clusterData struct {
		Name string
		Host string
		Port int
		TLS  bool
		SNI  string
	}
)

func buildRenderData(p BootstrapParams) renderData {
	d := renderData{BootstrapParams: p, CORSAllowMethods: CORSAllowMethods, CORSAllowHeaders: CORSAllowHeaders, CORSExposeHeaders: CORSExposeHeaders}
	type ckey struct {
		host string
		port int
		tls  bool
		sni  string
	}
	clusters := map[ckey]string{}
	vhosts := map[string]int{}
	for _, r := range p.Routes {
		sni := ""
		if r.UpstreamTLS {
			sni = r.UpstreamSNI
			if sni == "" {
				sni = r.UpstreamHost
			}
		}
		k := ckey{r.UpstreamHost, r.UpstreamPort, r.UpstreamTLS, sni}
		name, ok := clusters[k]
		if !ok {
			name = r.Cluster
			if name == "" {
				name = "upstream_" + r.Name
			}
			clusters[k] = name
			d.Clusters = append(d.Clusters, clusterData{Name: name, Host: r.UpstreamHost, Port: r.UpstreamPort, TLS: r.UpstreamTLS, SNI: sni})
		}
		vi, ok := vhosts[r.Host]
		if !ok {
			vh := vhostData{Name: "mcp", Domains: []string{"*"}}
			if r.Host != "" {
				vh.Name = "mcp_" + strings.NewReplacer(":", "_", "*", "wildcard").Replace(r.Host)
				vh.Domains = []string{r.Host}
				if !strings.Contains(r.Host, ":") {
					vh.Domains = append(vh.Domains, r.Host+":*")
				}
			}
			vi = len(d.VirtualHosts)
			vhosts[r.Host] = vi
			d.VirtualHosts = append(d.VirtualHosts, vh)
		}
		d.VirtualHosts[vi].Routes = append(d.VirtualHosts[vi].Routes, routeData{BootstrapRoute: r, Cluster: name})
	}
	return d
}

// RenderBootstrap renders a static Envoy v3 bootstrap (YAML): one listener
// (TLS with required client certificates when p.MTLS is set) whose HTTP
// connection manager runs CORS, ext_authz and ext_proc (both gRPC, cluster
// "mcpauthz"; ext_proc off on metadata routes, MCP routes asking upstreams
// for identity encoding) and the router; one virtual host per distinct route Host; one upstream cluster
// per distinct upstream; an admin listener on 127.0.0.1:AdminPort.
// Routes keep their order within a virtual host (Envoy takes the first
// match). The output is not re-validated here: see GenerateFromCatalog and
// ValidateBootstrapYAML.
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
	if p.StreamIdleTimeout == 0 {
		p.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if p.UpstreamCAFile == "" {
		p.UpstreamCAFile = DefaultUpstreamCAFile
	}
	if p.ExtProcMessageTimeout == 0 {
		p.ExtProcMessageTimeout = DefaultExtProcMessageTimeout
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := bootstrapTmpl.Execute(&buf, buildRenderData(p)); err != nil {
		return nil, fmt.Errorf("envoy: render bootstrap: %w", err)
	}
	return buf.Bytes(), nil
}

// exampleCatalog is the two-server catalog the shipped examples use.
func exampleCatalog() ([]CatalogServer, map[string]string) {
	return []CatalogServer{
			{ID: "docs", Resource: "https://mcp.example.com/docs/mcp", PathPrefix: "/docs/", AllowedOrigins: []string{"https://mcp.example.com", "https://chat.example.com"}},
			{ID: "tickets", Resource: "https://mcp.example.com/tickets/mcp", PathPrefix: "/tickets/"},
		}, map[string]string{
			"docs":    "docs-mcp:8000",
			"tickets": "tickets-mcp:8000",
		}
}

// ExampleParams returns the parameters envoy.yaml (the commented example in
// this directory) is rendered from: Envoy on :10000 in front of two MCP
// servers, "docs" (https://mcp.example.com/docs/mcp) and "tickets", with
// mcpauthz on mcpauthz:9191 (ext_authz) and mcpauthz:8181 (RFC 9728
// protected resource metadata, the only paths without ext_authz).
func ExampleParams() BootstrapParams {
	servers, ups := exampleCatalog()
	p, err := CatalogParams(servers, GenerateOptions{
		ListenPort: 10000, AdminPort: 9901,
		AuthzHost: "mcpauthz", AuthzPort: 9191, MetadataHost: "mcpauthz", MetadataPort: 8181,
		Upstreams: ups, MaxRequestBytes: DefaultMaxRequestBytes, Timeout: DefaultAuthzTimeout,
	})
	if err != nil {
		panic(err) // static input; covered by tests
	}
	p.ListenAddr = "0.0.0.0"
	return p
}

// ExampleMTLSParams is ExampleParams with a TLS listener that requires
// client certificates from the SPIFFE trust domain agents.example.org
// (envoy-mtls.yaml).
func ExampleMTLSParams() BootstrapParams {
	p := ExampleParams()
	p.ListenPort = 10443
	p.MTLS = &MTLS{
		CertChainFile:  "/etc/envoy/tls/server.crt",
		PrivateKeyFile: "/etc/envoy/tls/server.key",
		ClientCAFile:   "/etc/envoy/tls/client-ca.crt",
		TrustDomains:   []string{"agents.example.org"},
	}
	return p
}
