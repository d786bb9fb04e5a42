package envoy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// CatalogServer is the part of an mcpauthz servers[] entry Envoy needs.
// (Package envoy does not import server/config; callers copy the fields.)
type CatalogServer struct {
	ID         string // context_extensions mcp_server value
	Resource   string // public URL, e.g. https://mcp.example.com/docs/mcp
	Host       string // match.host ("" = any host)
	PathPrefix string // match.path_prefix ("" = the resource URL's path)
	// AllowedOrigins is servers[].allowed_origins: browser origins whose
	// CORS preflights Envoy answers (BootstrapRoute.CORSOrigins). Empty
	// means the resource URL's own origin, as in mcpauthz's config.
	AllowedOrigins []string
}

// Upstream is where Envoy sends one MCP server's traffic.
type Upstream struct {
	Host string
	Port int
	TLS  bool
	// Path, when set, replaces the route's path prefix upstream
	// (BootstrapRoute.PrefixRewrite).
	Path string
}

// ParseUpstream parses "HOST:PORT", "http://HOST[:PORT][/PATH]" or
// "https://HOST[:PORT][/PATH]" (TLS). Default ports are 80 and 443; a PATH
// replaces the route's prefix upstream.
func ParseUpstream(s string) (Upstream, error) {
	var up Upstream
	hostport := s
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return Upstream{}, fmt.Errorf("envoy: upstream %q: want HOST:PORT or http(s)://HOST[:PORT][/PATH]", s)
		}
		up.TLS = u.Scheme == "https"
		up.Path = u.EscapedPath()
		hostport = u.Host
		if u.Port() == "" {
			port := "80"
			if up.TLS {
				port = "443"
			}
			hostport = net.JoinHostPort(u.Hostname(), port)
		}
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return Upstream{}, fmt.Errorf("envoy: upstream %q: want HOST:PORT or http(s)://HOST[:PORT][/PATH]", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || !validPort(p) || host == "" {
		return Upstream{}, fmt.Errorf("envoy: upstream %q: want HOST:PORT with a port in 1-65535", s)
	}
	up.Host, up.Port = host, p
	return up, nil
}

// GenerateOptions parameterises CatalogParams and GenerateFromCatalog.
type GenerateOptions struct {
	ListenAddr string // default "0.0.0.0"
	ListenPort int    // default 10000
	AdminPort  int    // default 9901
	// AuthzHost/AuthzPort: mcpauthz's gRPC (ext_authz) listener.
	AuthzHost string
	AuthzPort int
	// MetadataHost/MetadataPort: mcpauthz's HTTP listener, which serves
	// RFC 9728 metadata. MetadataHost defaults to AuthzHost.
	MetadataHost string
	MetadataPort int
	// Upstreams overrides the upstream per server ID
	// (ParseUpstream syntax). Without an entry, a server's upstream is its
	// resource URL's host and port (TLS for https). Unknown IDs are errors.
	Upstreams       map[string]string
	MaxRequestBytes int
	Timeout         time.Duration
	MTLS            *MTLS
	// DisableExtProc: see BootstrapParams.DisableExtProc.
	DisableExtProc bool
}

// CatalogParams derives bootstrap parameters from an mcpauthz server
// catalog: for every server a prefix route (match.path_prefix, else the
// resource path) carrying context_extensions {mcp_server: ID}, and exact
// routes without ext_authz for its RFC 9728 metadata path and the bare
// well-known path, sent to mcpauthz's HTTP listener. Routes are grouped by
// host; within a host, metadata routes come first, then MCP routes by
// descending prefix length, so the most specific prefix wins.
func CatalogParams(servers []CatalogServer, o GenerateOptions) (BootstrapParams, error) {
	if o.ListenPort == 0 {
		o.ListenPort = 10000
	}
	if o.AdminPort == 0 {
		o.AdminPort = 9901
	}
	if o.MetadataHost == "" {
		o.MetadataHost = o.AuthzHost
	}
	p := BootstrapParams{
		ListenAddr: o.ListenAddr, ListenPort: o.ListenPort, AdminPort: o.AdminPort,
		AuthzHost: o.AuthzHost, AuthzPort: o.AuthzPort,
		MaxRequestBytes: o.MaxRequestBytes, Timeout: o.Timeout, MTLS: o.MTLS,
		DisableExtProc: o.DisableExtProc,
	}
	var errs []error
	if len(servers) == 0 {
		errs = append(errs, errors.New("no servers in the catalog"))
	}
	if err := unknownUpstreams(servers, o.Upstreams); err != nil {
		errs = append(errs, err)
	}
	rs := catalogRoutes{o: o, byHost: map[string]*hostRoutes{}}
	for i, s := range servers {
		if err := rs.add(s); err != nil {
			errs = append(errs, fmt.Errorf("servers[%d] (%s): %w", i, s.ID, err))
		}
	}
	p.Routes = rs.routes()
	if err := errors.Join(errs...); err != nil {
		return BootstrapParams{}, fmt.Errorf("envoy: catalog: %w", err)
	}
	if err := p.Validate(); err != nil {
		return BootstrapParams{}, err
	}
	return p, nil
}

// unknownUpstreams reports upstream overrides for IDs not in servers.
func unknownUpstreams(servers []CatalogServer, upstreams map[string]string) error {
	known := map[string]bool{}
	for _, s := range servers {
		known[s.ID] = true
	}
	var unknown []string
	for id := range upstreams {
		if !known[id] {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	ids := make([]string, 0, len(servers))
	for _, s := range servers {
		ids = append(ids, s.ID)
	}
	return fmt.Errorf("upstream for unknown server id(s) %s (servers: %s)", strings.Join(unknown, ", "), strings.Join(ids, ", "))
}

// catalogRoutes collects a catalog's routes by host, hosts in the order
// they first appear.
type catalogRoutes struct {
	o      GenerateOptions
	hosts  []string
	byHost map[string]*hostRoutes
}

// hostRoutes are one host's routes.
type hostRoutes struct {
	meta []BootstrapRoute
	mcp  []BootstrapRoute
	seen map[string]bool // metadata paths
}

func (c *catalogRoutes) group(h string) *hostRoutes {
	g, ok := c.byHost[h]
	if !ok {
		g = &hostRoutes{seen: map[string]bool{}}
		c.byHost[h] = g
		c.hosts = append(c.hosts, h)
	}
	return g
}

// metaRoute is an exact route without ext_authz to mcpauthz's HTTP listener.
func (c *catalogRoutes) metaRoute(name, host, path string) BootstrapRoute {
	return BootstrapRoute{Name: name, Path: path, Host: host, UpstreamHost: c.o.MetadataHost, UpstreamPort: c.o.MetadataPort, Cluster: "mcpauthz_http", DisableExtAuthz: true}
}

// add adds s's MCP route and, once per host and path, its metadata route.
func (c *catalogRoutes) add(s CatalogServer) error {
	u, err := url.Parse(s.Resource)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("resource %q is not an absolute http(s) URL", s.Resource)
	}
	host := strings.ToLower(s.Host)
	g := c.group(host)
	resPath := strings.TrimSuffix(u.EscapedPath(), "/")
	prefix := s.PathPrefix
	if prefix == "" {
		prefix = resPath
		if prefix == "" {
			prefix = "/"
		}
	}
	raw, ok := c.o.Upstreams[s.ID]
	if !ok {
		raw = u.Scheme + "://" + u.Host
	}
	up, err := ParseUpstream(raw)
	if err != nil {
		return err
	}
	origins, err := catalogOrigins(u, s.AllowedOrigins)
	if err != nil {
		return err
	}
	g.mcp = append(g.mcp, BootstrapRoute{
		Name: s.ID, PathPrefix: prefix, Host: host,
		UpstreamHost: up.Host, UpstreamPort: up.Port, UpstreamTLS: up.TLS, PrefixRewrite: up.Path,
		ContextExtensions: map[string]string{"mcp_server": s.ID},
		CORSOrigins:       origins,
	})
	mp := MetadataPathPrefix + resPath
	if !g.seen[mp] {
		g.seen[mp] = true
		g.meta = append(g.meta, c.metaRoute("metadata."+s.ID, host, mp))
	}
	return nil
}

// routes lists every host's routes: the bare well-known metadata route
// (unless a server's metadata path is that), the metadata routes, then the
// MCP routes by descending prefix length.
func (c *catalogRoutes) routes() []BootstrapRoute {
	var out []BootstrapRoute
	for _, h := range c.hosts {
		g := c.byHost[h]
		if !g.seen[MetadataPathPrefix] {
			// Route names use "." so they cannot clash with server IDs.
			name := "metadata.well-known"
			if h != "" {
				name += "." + strings.NewReplacer(":", "_", "*", "wildcard").Replace(h)
			}
			g.meta = slices.Insert(g.meta, 0, c.metaRoute(name, h, MetadataPathPrefix))
		}
		sort.SliceStable(g.mcp, func(i, j int) bool { return len(g.mcp[i].PathPrefix) > len(g.mcp[j].PathPrefix) })
		out = append(out, g.meta...)
		out = append(out, g.mcp...)
	}
	return out
}

// GenerateFromCatalog renders the bootstrap for a server catalog
// (CatalogParams) and validates the result with ValidateBootstrapYAML
// before returning it, so a caller never prints a config Envoy would
// refuse for a schema reason.
func GenerateFromCatalog(servers []CatalogServer, o GenerateOptions) ([]byte, error) {
	p, err := CatalogParams(servers, o)
	if err != nil {
		return nil, err
	}
	y, err := RenderBootstrap(p)
	if err != nil {
		return nil, err
	}
	if err := ValidateBootstrapYAML(y); err != nil {
		return nil, fmt.Errorf("envoy: generated bootstrap does not validate (a bug): %w", err)
	}
	return y, nil
}

// catalogOrigins normalises a server's allowed origins (default: the
// resource's own origin) and drops duplicates, keeping their order.
func catalogOrigins(resource *url.URL, allowed []string) ([]string, error) {
	if len(allowed) == 0 {
		allowed = []string{resource.Scheme + "://" + resource.Host}
	}
	var out []string
	var errs []error
	for j, o := range allowed {
		n, err := NormalizeOrigin(o)
		if err != nil {
			errs = append(errs, fmt.Errorf("allowed_origins[%d]: %w", j, err))
			continue
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, errors.Join(errs...)
}
