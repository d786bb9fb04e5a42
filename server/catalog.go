package server

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/config"
)

// ContextExtensionKey is the route context_extensions key naming the MCP
// server a request is for.
const ContextExtensionKey = "mcp_server"

// mcpServer is one catalog entry with everything the hot path needs
// precomputed. Immutable after construction.
type mcpServer struct {
	cfg          config.Server
	id           string
	resource     string // canonical resource URL
	metadataURL  string
	metadataPath string
	challenge    string // WWW-Authenticate for a missing token
	challengeBad string // WWW-Authenticate for a rejected token
	origins      map[string]bool
	issuers      map[string]bool // accepted iss values; nil = all
	cred         outbound.Provider
	credMode     outbound.Mode
	credOptions  map[string]outbound.Provider // further modes the policy may choose
	policy       policy.Server
	prepared     *policy.PreparedServer
	versions     []string // protocol versions allowed (nil: every supported one)
	// connModes maps each credential mode backed by a stored connection to
	// its connections mode (individual | service_account).
	connModes map[string]string
}

// catalog maps requests to MCP servers. Immutable after construction; safe
// for concurrent use.
type catalog struct {
	byID    map[string]*mcpServer
	ordered []*mcpServer // by descending path prefix length, for fallback matching
}

func newCatalog(ctx context.Context, cfg *config.Config, opts outbound.Options) (*catalog, error) {
	c := &catalog{byID: map[string]*mcpServer{}}
	issuerURL := map[string]string{}
	for _, is := range cfg.Identity.Issuers {
		issuerURL[is.Name] = is.Issuer
	}
	for i, sc := range cfg.Servers {
		s, err := newMCPServer(ctx, i, sc, opts, issuerURL)
		if err != nil {
			return nil, err
		}
		c.byID[sc.ID] = s
		c.ordered = append(c.ordered, s)
	}
	sort.SliceStable(c.ordered, func(i, j int) bool {
		return len(c.ordered[i].cfg.Match.PathPrefix) > len(c.ordered[j].cfg.Match.PathPrefix)
	})
	return c, nil
}

// newMCPServer builds servers[i]: its credential providers, challenges,
// origins, accepted issuers (issuerURL maps issuer names to URLs) and
// prepared policy input.
func newMCPServer(ctx context.Context, i int, sc config.Server, opts outbound.Options, issuerURL map[string]string) (*mcpServer, error) {
	u, err := url.Parse(sc.Resource)
	if err != nil {
		return nil, fmt.Errorf("server: servers[%d].resource: %w", i, err)
	}
	s := &mcpServer{
		cfg:      sc,
		id:       sc.ID,
		resource: config.CanonicalURL(sc.Resource),
		origins:  map[string]bool{},
		credMode: sc.Credential.Mode,
	}
	modes, err := s.buildProviders(ctx, i, opts)
	if err != nil {
		return nil, err
	}
	s.metadataPath = "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.EscapedPath(), "/")
	s.metadataURL = strings.ToLower(u.Scheme) + "://" + u.Host + s.metadataPath
	scope := ""
	if len(sc.Scopes) > 0 {
		scope = `, scope="` + strings.Join(sc.Scopes, " ") + `"`
	}
	s.challenge = `Bearer resource_metadata="` + s.metadataURL + `"` + scope
	s.challengeBad = `Bearer error="invalid_token", resource_metadata="` + s.metadataURL + `"` + scope
	for _, o := range sc.AllowedOrigins {
		s.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
	}
	if len(sc.Issuers) > 0 {
		s.issuers = map[string]bool{}
		for _, n := range sc.Issuers {
			s.issuers[issuerURL[n]] = true
		}
	}
	s.policy = policy.Server{
		ID:              sc.ID,
		Resource:        sc.Resource,
		Scopes:          sc.Scopes,
		CredentialMode:  string(sc.Credential.Mode),
		CredentialModes: modes,
		Labels:          sc.Labels,
	}
	s.prepared = policy.PrepareServer(s.policy)
	if len(sc.ProtocolVersions) > 0 {
		s.versions = sc.ProtocolVersions
	}
	return s, nil
}

// buildProviders builds servers[i]'s credential provider and its
// credential_options, notes which modes use per-user or organization
// connections, and returns every mode offered, the default first.
func (s *mcpServer) buildProviders(ctx context.Context, i int, opts outbound.Options) ([]string, error) {
	sc := s.cfg
	prov, err := outbound.New(ctx, sc.Credential, opts)
	if err != nil {
		return nil, fmt.Errorf("server: servers[%d] (%s) credential: %w", i, sc.ID, err)
	}
	s.cred = prov
	modes := []string{string(sc.Credential.Mode)}
	for j, oc := range sc.CredentialOptions {
		op, err := outbound.New(ctx, oc, opts)
		if err != nil {
			return nil, fmt.Errorf("server: servers[%d] (%s) credential_options[%d]: %w", i, sc.ID, j, err)
		}
		if s.credOptions == nil {
			s.credOptions = map[string]outbound.Provider{}
		}
		s.credOptions[string(oc.Mode)] = op
		modes = append(modes, string(oc.Mode))
	}
	for _, oc := range append([]outbound.Config{sc.Credential}, sc.CredentialOptions...) {
		if m, _, ok := oc.Connection(); ok {
			if s.connModes == nil {
				s.connModes = map[string]string{}
			}
			s.connModes[string(oc.Mode)] = m
		}
	}
	return modes, nil
}

// ownScopes keeps the scopes of granted this server advertises (all of
// them when it advertises none), so a step-up challenge never asks for
// another resource's scopes or offline_access.
func (s *mcpServer) ownScopes(granted []string) []string {
	if len(s.cfg.Scopes) == 0 {
		return slices.DeleteFunc(slices.Clone(granted), func(sc string) bool { return sc == "offline_access" })
	}
	out := make([]string, 0, len(granted))
	for _, sc := range granted {
		if slices.Contains(s.cfg.Scopes, sc) {
			out = append(out, sc)
		}
	}
	return out
}

// paramArguments returns the configured Mcp-Param header mirrors of tool.
func (s *mcpServer) paramArguments(tool string) map[string]string {
	return s.cfg.ParamHeaders[tool]
}

// provider returns the credential provider for the mode the policy chose
// ("" = the server's default), or false when the server does not offer it.
func (s *mcpServer) provider(mode string) (outbound.Provider, bool) {
	if mode == "" || mode == string(s.credMode) {
		return s.cred, true
	}
	p, ok := s.credOptions[mode]
	return p, ok
}

// consumedHeaders lists request headers the server's credential providers
// read (e.g. a caller's actor token); they never reach the upstream.
func (s *mcpServer) consumedHeaders() []string {
	var out []string
	for _, p := range append([]outbound.Provider{s.cred}, slices.Collect(maps.Values(s.credOptions))...) {
		if c, ok := p.(interface{ ConsumedHeaders() []string }); ok {
			out = append(out, c.ConsumedHeaders()...)
		}
	}
	return out
}

// route finds the server for a request: the route's context_extensions
// first (an unknown name is not silently re-routed), then host + path
// prefix, the fallback Envoy Gateway and Istio deployments rely on. Hosts
// compare case-insensitively with the scheme's default port ignored; a
// path prefix matches whole segments ("/docs/mcp" covers "/docs/mcp" and
// "/docs/mcp/…", never "/docs/mcp-evil"). It returns nil when nothing
// matches.
func (c *catalog) route(ext map[string]string, scheme, host, path string) *mcpServer {
	if id, ok := ext[ContextExtensionKey]; ok {
		return c.byID[id]
	}
	h := config.CanonicalHost(host, scheme)
	for _, s := range c.ordered {
		m := s.cfg.Match
		if m.Host == "" && m.PathPrefix == "" {
			continue
		}
		if m.Host != "" && m.Host != h {
			continue
		}
		if m.PathPrefix != "" && !segmentPrefix(path, m.PathPrefix) {
			continue
		}
		return s
	}
	return nil
}

// segmentPrefix reports whether prefix covers path on segment boundaries.
func segmentPrefix(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || prefix[len(prefix)-1] == '/' || path[len(prefix)] == '/'
}

// byMetadataPath finds the server whose RFC 9728 document lives at path.
func (c *catalog) byMetadataPath(host, path string) *mcpServer {
	var found *mcpServer
	for _, s := range c.ordered {
		if s.metadataPath != path {
			continue
		}
		if found != nil { // same path on two hosts: disambiguate by host
			u, _ := url.Parse(s.cfg.Resource)
			if u != nil && strings.EqualFold(u.Host, host) {
				found = s
			}
			continue
		}
		found = s
	}
	if found == nil && path == "/.well-known/oauth-protected-resource" {
		// RFC 9728's root document: served for a host with exactly one
		// protected resource (the only server overall, or the only one
		// whose resource is on the request's host).
		if len(c.ordered) == 1 {
			return c.ordered[0]
		}
		var onHost *mcpServer
		for _, s := range c.ordered {
			u, err := url.Parse(s.cfg.Resource)
			if err != nil || config.CanonicalHost(u.Host, u.Scheme) != config.CanonicalHost(host, u.Scheme) {
				continue
			}
			if onHost != nil {
				return nil // several resources on this host: ambiguous
			}
			onHost = s
		}
		return onHost
	}
	return found
}
