// Package config is the mcpauthz configuration file: one YAML document,
// decoded strictly (unknown keys are errors that name their field path) and
// validated in full before anything listens. Secrets appear only as
// {env: NAME} or {file: PATH} references (see credentials/secret).
//
// Each subsystem owns its part of the file (policy.Config, identity.Config,
// outbound.Config); this package composes them, adds the catalog of MCP
// servers behind Envoy, and prefixes their errors with field paths.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/mint"
	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/fielderr"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/connect"
	"github.com/mcpauthz/mcpauthz/server/decisionlog"
	"github.com/mcpauthz/mcpauthz/server/mcp"
)

// Config is the whole mcpauthz configuration file.
type Config struct {
	// Version of the file format; only 1 exists.
	Version  int             `yaml:"version"`
	Listen   Listen          `yaml:"listen"`
	Identity identity.Config `yaml:"identity"`
	Policy   policy.Config   `yaml:"policy"`
	MCP      MCP             `yaml:"mcp"`
	Headers  Headers         `yaml:"headers"`
	Audit    Audit           `yaml:"audit"`
	// Issuer enables mcpauthz's built-in token issuer: delegated
	// credentials with issuer builtin, and signed attribution headers. Its
	// discovery document and JWKS are served on the HTTP listener below
	// the issuer URL's path.
	Issuer *mint.Config `yaml:"issuer"`
	// Store is the state replicas share (the built-in issuer's generated
	// keys; per-user connections): memory (default, one process) or
	// sqlite, encrypted at rest under its key ring.
	Store store.Config `yaml:"store"`
	// Connections keeps users' (and organizations') OAuth connections to
	// upstream providers for servers whose credential is `individual` or
	// `service_account` with `oauth`.
	Connections connections.Config `yaml:"connections"`
	// Connect configures the connect pages' browser sign-in (needed with
	// connection-backed servers).
	Connect *connect.Config `yaml:"connect"`
	Servers []Server        `yaml:"servers"`
}

// Listen names the addresses mcpauthz serves.
type Listen struct {
	// GRPC is the Envoy ext_authz (and grpc.health.v1) listener.
	GRPC string `yaml:"grpc"`
	// HTTP serves /healthz, /readyz, /metrics and RFC 9728 metadata.
	HTTP string `yaml:"http"`
	// ShutdownTimeout bounds graceful shutdown (in-flight Checks finish).
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// GRPCReflection serves gRPC server reflection on the gRPC listener, so
	// grpcurl and grpcui can call Check without Envoy's proto files (as
	// OPA-Envoy's grpc reflection option). Off by default: it tells anyone
	// who reaches the port which services it serves.
	GRPCReflection bool `yaml:"grpc_reflection"`
}

// MCP tunes request parsing and session binding.
type MCP struct {
	// MaxBodyBytes is the largest body accepted; keep it equal to Envoy's
	// with_request_body.max_request_bytes.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// SessionTTL is how long an Mcp-Session-Id stays bound to the
	// principal that first presented it.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// MaxSessions bounds the session binding table. When it is full, new
	// sessions are refused (503) rather than live bindings forgotten.
	MaxSessions int `yaml:"max_sessions"`
	// MaxSessionsPerPrincipal bounds the live sessions one principal may
	// hold, so one caller flooding fresh session ids cannot fill the table.
	// Beyond it the caller's new sessions are refused (429) until old ones
	// expire. Default 1000.
	MaxSessionsPerPrincipal int `yaml:"max_sessions_per_principal"`
	// MaxAnonymousSessions bounds the live sessions of all anonymous callers
	// together (servers with allow_anonymous). Default max_sessions / 4.
	MaxAnonymousSessions int `yaml:"max_anonymous_sessions"`
	// LegacySessionParams are the query parameter names under which the
	// legacy HTTP+SSE transport (2024-11-05) carries the session id; the
	// MCP SDKs use different ones. Every name is bound to its principal,
	// compared case-insensitively; a request carrying one twice, or two of
	// them, is refused. Default [sessionId, sessionid, session_id].
	LegacySessionParams []string `yaml:"legacy_session_params"`
	// SessionStore is where bindings live: "memory" (default; this process
	// only, bounded by max_sessions) or "shared" (the top-level store, so
	// every replica sharing it enforces the same bindings; max_sessions
	// does not apply there).
	SessionStore string `yaml:"session_store"`
}

// Headers controls identity headers on the upstream request.
type Headers struct {
	// Prefix of the attribution headers mcpauthz sets (default "x-mcp-").
	// Client-sent headers with this prefix are always stripped.
	Prefix string `yaml:"prefix"`
	// Strip lists further client-sent headers that must never reach an
	// upstream (for example x-user-id or x-forwarded-user).
	Strip []string `yaml:"strip"`
	// Sign adds <prefix>attribution: a JWT signed by the built-in issuer
	// (typ mcpauthz-attribution+jwt, aud = the server's resource) carrying
	// the same attribution, so an upstream can trust it without trusting
	// the network. Needs the issuer block.
	Sign bool `yaml:"sign"`
}

// Audit configures the decision log.
type Audit struct {
	// Output is "stdout" (default), "stderr", "off" or a file path.
	Output string `yaml:"output"`
	// Buffer is the queue length between Check and the writer; when full,
	// entries are dropped and counted rather than slowing Checks.
	Buffer int `yaml:"buffer"`
	// OPA additionally writes OPA-format decision logs (EventV1: decision
	// id, path, masked input, result, bundle revisions, timestamp,
	// metrics) to a file or an HTTP endpoint, batched and gzipped.
	OPA *decisionlog.Config `yaml:"opa"`
}

// Server is one MCP server behind Envoy.
type Server struct {
	// ID names the server in Envoy's route context_extensions
	// (key "mcp_server") and in policy input (input.server.id).
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// Resource is the server's public URL; RFC 9728 metadata names it and
	// tokens must carry it in aud.
	Resource string `yaml:"resource"`
	// Match is the fallback mapping when the route carries no
	// context_extensions: host and path prefix.
	Match Match `yaml:"match"`
	// Issuers restricts which identity issuers (by name) may call this
	// server; empty means all configured issuers.
	Issuers []string `yaml:"issuers"`
	// AuthorizationServers are advertised in RFC 9728 metadata; default:
	// the issuer URLs of the accepted issuers.
	AuthorizationServers []string `yaml:"authorization_servers"`
	// Scopes supported by the server (advertised, and sent in 401
	// challenges).
	Scopes []string `yaml:"scopes"`
	// AllowedOrigins for browser clients; a request whose Origin header is
	// not listed is refused with 403. Default: the resource's own origin.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// AllowAnonymous lets requests without credentials reach the policy
	// (which still decides); by default they get 401 before policy runs.
	AllowAnonymous bool `yaml:"allow_anonymous"`
	// Credential is what the upstream receives by default.
	Credential outbound.Config `yaml:"credential"`
	// CredentialOptions are further modes the policy may choose per call
	// (decision.credential names the mode), e.g. delegated tokens for
	// agents acting for users and a service account for agents alone.
	CredentialOptions []outbound.Config `yaml:"credential_options"`
	// Labels are free-form values for policy (input.server.labels).
	Labels map[string]string `yaml:"labels"`
	// ParamHeaders declares, per tool, which top-level argument each MCP
	// 2026-07-28 Mcp-Param-{Name} header mirrors (the tool's x-mcp-header
	// annotations): {tool: {Header-Name: argument}}. A declared mirror must
	// be present and equal to its argument. An undeclared Mcp-Param header
	// is accepted only when exactly one argument has its name (ignoring
	// case) and equals it; otherwise the request is refused (400, -32020).
	ParamHeaders map[string]map[string]string `yaml:"param_headers"`
	// ProtocolVersions restricts the MCP protocol versions this server
	// accepts (a subset of the ones mcpauthz parses strictly); default all
	// of them. Others are refused with -32022 naming the supported ones.
	ProtocolVersions []string `yaml:"protocol_versions"`
	// AllowNewerProtocolVersions is a named relaxation: a well-formed
	// version newer than any mcpauthz knows is let through and parsed by the
	// newest rules it knows (logged at start-up). Default false.
	AllowNewerProtocolVersions bool `yaml:"allow_newer_protocol_versions"`
}

// Match maps a request to a server by host and path prefix.
type Match struct {
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"`
}

// Defaults applied by Load before Validate.
const (
	DefaultGRPC            = "127.0.0.1:9191"
	DefaultHTTP            = "127.0.0.1:8181"
	DefaultShutdownTimeout = 15 * time.Second
	DefaultMaxBodyBytes    = 1 << 20
	DefaultSessionTTL      = 24 * time.Hour
	DefaultMaxSessions     = 1 << 20
	// DefaultMaxSessionsPerPrincipal is mcp.max_sessions_per_principal.
	DefaultMaxSessionsPerPrincipal = 1000
	DefaultHeaderPrefix            = "x-mcp-"
	DefaultAuditBuffer             = 8192
)

// Load reads, strictly decodes, defaults and validates a config file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, &fileError{path: path, err: err}
	}
	return cfg, nil
}

// fileError names the file of a config error; several problems are listed
// one per line below it.
type fileError struct {
	path string
	err  error
}

func (e *fileError) Error() string {
	msg := e.err.Error()
	if strings.Contains(msg, "\n") {
		return "config " + e.path + ":\n  " + strings.ReplaceAll(msg, "\n", "\n  ")
	}
	return "config " + e.path + ": " + msg
}

func (e *fileError) Unwrap() error { return e.err }

// Parse decodes, defaults and validates a config document.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, errors.New("empty document")
	}
	c := checker{lines: lines{}}
	c.check(&root, reflect.TypeFor[Config](), "")
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cfg Config
	if err := dec.Decode(&cfg); err != nil {
		return nil, c.lines.fieldErrors(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, c.lines.withLines(err)
	}
	return &cfg, nil
}

// ApplyDefaults fills unset fields with their documented defaults.
func (c *Config) ApplyDefaults() {
	if c.Listen.GRPC == "" {
		c.Listen.GRPC = DefaultGRPC
	}
	if c.Listen.HTTP == "" {
		c.Listen.HTTP = DefaultHTTP
	}
	if c.Listen.ShutdownTimeout == 0 {
		c.Listen.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.MCP.MaxBodyBytes == 0 {
		c.MCP.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MCP.SessionTTL == 0 {
		c.MCP.SessionTTL = DefaultSessionTTL
	}
	if c.MCP.MaxSessions == 0 {
		c.MCP.MaxSessions = DefaultMaxSessions
	}
	if c.MCP.MaxSessionsPerPrincipal == 0 {
		c.MCP.MaxSessionsPerPrincipal = DefaultMaxSessionsPerPrincipal
	}
	if c.MCP.MaxAnonymousSessions == 0 {
		c.MCP.MaxAnonymousSessions = max(c.MCP.MaxSessions/4, 1)
	}
	if c.MCP.SessionStore == "" {
		c.MCP.SessionStore = "memory"
	}
	if len(c.MCP.LegacySessionParams) == 0 {
		c.MCP.LegacySessionParams = []string{"sessionId", "sessionid", "session_id"}
	}
	if c.Headers.Prefix == "" {
		c.Headers.Prefix = DefaultHeaderPrefix
	}
	c.Headers.Prefix = strings.ToLower(c.Headers.Prefix)
	for i := range c.Headers.Strip {
		c.Headers.Strip[i] = strings.ToLower(c.Headers.Strip[i])
	}
	if c.Audit.Output == "" {
		c.Audit.Output = "stdout"
	}
	if c.Audit.Buffer == 0 {
		c.Audit.Buffer = DefaultAuditBuffer
	}
	for i := range c.Servers {
		s := &c.Servers[i]
		if len(s.AuthorizationServers) == 0 {
			for _, is := range c.Identity.Issuers {
				if len(s.Issuers) == 0 || slices.Contains(s.Issuers, is.Name) {
					s.AuthorizationServers = append(s.AuthorizationServers, is.Issuer)
				}
			}
		}
		if len(s.AllowedOrigins) == 0 {
			if u, err := url.Parse(s.Resource); err == nil && u.Host != "" {
				s.AllowedOrigins = []string{strings.ToLower(u.Scheme + "://" + u.Host)}
			}
		}
		if s.Match.Host != "" {
			s.Match.Host = CanonicalHost(s.Match.Host, "")
		}
		for tool, m := range s.ParamHeaders {
			lm := make(map[string]string, len(m))
			for h, arg := range m {
				lm[strings.ToLower(h)] = arg
			}
			s.ParamHeaders[tool] = lm
		}
	}
}

// CanonicalHost lower-cases host and drops the default port of scheme
// (":443" for https, ":80" for http; with scheme "" either), so
// "Docs.Example.com:443" and "docs.example.com" compare equal.
func CanonicalHost(host, scheme string) string {
	h := strings.ToLower(host)
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.HasSuffix(h, "]") { // no port, or a bare IPv6 literal
		return h
	}
	switch port := h[i+1:]; {
	case port == "443" && (scheme == "" || strings.EqualFold(scheme, "https")),
		port == "80" && (scheme == "" || strings.EqualFold(scheme, "http")),
		port == "":
		return h[:i]
	}
	return h
}

var (
	idPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	headerPattern = regexp.MustCompile(`^[a-z0-9!#$%&'*+.^_|~-]+$`)
)

// Validate checks the whole configuration and reports every problem, each
// prefixed with its field path. It does no I/O.
func (c *Config) Validate() error {
	var errs fielderr.List
	if c.Version != 1 {
		errs.Addf("version", "must be 1, got %d", c.Version)
	}
	c.validateListen(&errs)
	errs = append(errs, prefixErr("identity", c.Identity.Validate()))
	errs = append(errs, prefixErr("policy", c.Policy.Validate()))
	c.validateMCP(&errs)
	if !headerPattern.MatchString(c.Headers.Prefix) {
		errs.Addf("headers.prefix", "%q is not a valid header name prefix", c.Headers.Prefix)
	}
	for i, h := range c.Headers.Strip {
		if !headerPattern.MatchString(h) {
			errs.Addf(fmt.Sprintf("headers.strip[%d]", i), "%q is not a valid header name", h)
		}
	}
	if c.Issuer != nil {
		errs = append(errs, prefixErr("issuer", c.Issuer.Validate()))
	}
	errs = append(errs, prefixErr("store", c.Store.Validate()))
	if c.usesConnections() {
		c.validateConnect(&errs)
	}
	if c.Headers.Sign && c.Issuer == nil {
		errs.Add("headers.sign", "needs the top-level issuer block (the attribution is signed with its keys)")
	}
	if c.Audit.OPA != nil {
		errs = append(errs, prefixErr("audit.opa", c.Audit.OPA.Validate()))
	}
	if c.Audit.Buffer < 1 {
		errs.Add("audit.buffer", "must be positive")
	}
	if len(c.Servers) == 0 {
		errs.Add("servers", "at least one MCP server is required")
	}
	errs = append(errs, c.validateServers()...)
	return errs.Err()
}

// validateListen checks the listen block: two distinct valid addresses
// (unless both pick a free port) and a non-negative shutdown timeout.
func (c *Config) validateListen(errs *fielderr.List) {
	if err := validAddr(c.Listen.GRPC); err != nil {
		errs.Addf("listen.grpc", "%v", err)
	}
	if err := validAddr(c.Listen.HTTP); err != nil {
		errs.Addf("listen.http", "%v", err)
	}
	if c.Listen.GRPC == c.Listen.HTTP && !strings.HasSuffix(c.Listen.GRPC, ":0") {
		errs.Add("listen.http", "must differ from listen.grpc")
	}
	if c.Listen.ShutdownTimeout < 0 {
		errs.Add("listen.shutdown_timeout", "must not be negative")
	}
}

// validateMCP checks the mcp block: body limit, session bounds and store,
// and the legacy session query parameter names.
func (c *Config) validateMCP(errs *fielderr.List) {
	m := &c.MCP
	if m.MaxBodyBytes < 1024 || m.MaxBodyBytes > 64<<20 {
		errs.Addf("mcp.max_body_bytes", "must be between 1024 and 67108864, got %d", m.MaxBodyBytes)
	}
	if m.SessionTTL < time.Minute {
		errs.Add("mcp.session_ttl", "must be at least 1m")
	}
	if m.MaxSessions < 1 {
		errs.Add("mcp.max_sessions", "must be positive")
	}
	if m.MaxSessionsPerPrincipal < 1 {
		errs.Add("mcp.max_sessions_per_principal", "must be positive")
	}
	if m.MaxAnonymousSessions < 1 || m.MaxAnonymousSessions > m.MaxSessions {
		errs.Addf("mcp.max_anonymous_sessions", "must be between 1 and mcp.max_sessions (%d)", m.MaxSessions)
	}
	switch m.SessionStore {
	case "memory", "shared":
	default:
		errs.Addf("mcp.session_store", "%q must be memory or shared", m.SessionStore)
	}
	for i, n := range m.LegacySessionParams {
		if n == "" || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r > '~' || strings.ContainsRune("&=%+#;", r) }) {
			errs.Addf(fmt.Sprintf("mcp.legacy_session_params[%d]", i), "%q is not a plain query parameter name", n)
		}
	}
}

// validateConnect checks the connections and connect blocks, which servers
// using per-user connections need; connect.login.issuer must name an
// identity issuer.
func (c *Config) validateConnect(errs *fielderr.List) {
	*errs = append(*errs, prefixErr("connections", c.Connections.Validate()))
	if c.Connect == nil {
		errs.Add("connect", "required: servers use per-user connections (credential individual or service_account.oauth), and users sign in to connect their accounts")
		return
	}
	*errs = append(*errs, prefixErr("connect", c.Connect.Validate()))
	found := false
	for _, is := range c.Identity.Issuers {
		found = found || is.Name == c.Connect.Login.Issuer
	}
	if !found {
		errs.Addf("connect.login.issuer", "no identity issuer named %q", c.Connect.Login.Issuer)
	}
}

// validateServers checks servers[]: what must be unique across servers,
// and each server's own fields (validateServer).
func (c *Config) validateServers() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	issuerNames := map[string]bool{}
	for _, is := range c.Identity.Issuers {
		issuerNames[is.Name] = true
	}
	seenID := map[string]int{}
	seenRes := map[string]int{}
	seenMatch := map[string]int{}
	for i, s := range c.Servers {
		p := fmt.Sprintf("servers[%d]", i)
		if !idPattern.MatchString(s.ID) {
			add("%s.id: %q must match %s", p, s.ID, idPattern)
		} else if j, dup := seenID[s.ID]; dup {
			add("%s.id: %q already used by servers[%d]", p, s.ID, j)
		} else {
			seenID[s.ID] = i
		}
		if err := validResource(s.Resource); err != nil {
			add("%s.resource: %v", p, err)
		} else if j, dup := seenRes[CanonicalURL(s.Resource)]; dup {
			add("%s.resource: already used by servers[%d]", p, j)
		} else {
			seenRes[CanonicalURL(s.Resource)] = i
		}
		if s.Match.Host != "" || s.Match.PathPrefix != "" {
			k := s.Match.Host + " " + s.Match.PathPrefix
			if j, dup := seenMatch[k]; dup {
				add("%s.match: same host and path_prefix as servers[%d]", p, j)
			}
			seenMatch[k] = i
		}
		errs = append(errs, c.validateServer(p, s, issuerNames)...)
	}
	return errs
}

// validateServer checks one server's own fields; p is its path
// (servers[2]).
func (c *Config) validateServer(p string, s Server, issuerNames map[string]bool) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if pp := s.Match.PathPrefix; pp != "" {
		switch {
		case !strings.HasPrefix(pp, "/"):
			add("%s.match.path_prefix: must start with /", p)
		case strings.ContainsAny(pp, "?#%\\") || strings.Contains(pp, "//") || hasDotSegment(pp):
			add("%s.match.path_prefix: %q must be a normalized path (no query, fragment, percent-encoding, backslash, empty or dot segments)", p, pp)
		}
	}
	if h := s.Match.Host; h != "" {
		if u, err := url.Parse("http://" + h); err != nil || u.Host != h || u.User != nil || u.Path != "" || strings.HasSuffix(h, ".") {
			add("%s.match.host: %q must be host[:port]", p, h)
		}
	}
	for j, v := range s.ProtocolVersions {
		if !slices.Contains(mcp.SupportedVersions, v) {
			add("%s.protocol_versions[%d]: %q is not a version mcpauthz parses (%s)", p, j, v, strings.Join(mcp.SupportedVersions, ", "))
		}
	}
	for tool, m := range s.ParamHeaders {
		if tool == "" {
			add("%s.param_headers: tool name must not be empty", p)
		}
		for h, arg := range m {
			if h == "" || !headerPattern.MatchString(h) {
				add("%s.param_headers.%s: %q is not a valid header name (the part after Mcp-Param-)", p, tool, h)
			}
			if arg == "" {
				add("%s.param_headers.%s.%s: the argument name must not be empty", p, tool, h)
			}
		}
	}
	for j, n := range s.Issuers {
		if !issuerNames[n] {
			add("%s.issuers[%d]: no identity issuer named %q", p, j, n)
		}
	}
	if len(s.AuthorizationServers) == 0 {
		add("%s.authorization_servers: at least one is required (RFC 9728); configure identity.issuers or list them", p)
	}
	for j, a := range s.AuthorizationServers {
		if err := validResource(a); err != nil {
			add("%s.authorization_servers[%d]: %v", p, j, err)
		}
	}
	for j, sc := range s.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \"\\") {
			add("%s.scopes[%d]: %q is not a valid scope", p, j, sc)
		}
		if sc == "offline_access" {
			add("%s.scopes[%d]: offline_access must not be advertised by a protected resource", p, j)
		}
	}
	for j, o := range s.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			add("%s.allowed_origins[%d]: %q must be scheme://host[:port]", p, j, o)
		}
	}
	errs = append(errs, prefixErr(p+".credential", s.Credential.Validate()))
	if needsIssuer(s.Credential) && c.Issuer == nil {
		add("%s.credential.delegated.issuer: builtin needs the top-level issuer block", p)
	}
	modes := map[outbound.Mode]string{s.Credential.Mode: p + ".credential"}
	for j, o := range s.CredentialOptions {
		op := fmt.Sprintf("%s.credential_options[%d]", p, j)
		errs = append(errs, prefixErr(op, o.Validate()))
		if needsIssuer(o) && c.Issuer == nil {
			add("%s.delegated.issuer: builtin needs the top-level issuer block", op)
		}
		if prev, dup := modes[o.Mode]; dup && o.Mode != "" {
			add("%s.mode: %q is already offered by %s (one configuration per mode)", op, o.Mode, prev)
		}
		modes[o.Mode] = op
	}
	return errs
}

// hasDotSegment reports a "." or ".." path segment.
func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// usesConnections reports a server credential backed by a stored OAuth
// connection.
func (c *Config) usesConnections() bool {
	for _, sc := range c.Servers {
		for _, oc := range append([]outbound.Config{sc.Credential}, sc.CredentialOptions...) {
			if _, _, ok := oc.Connection(); ok {
				return true
			}
		}
	}
	return false
}

func needsIssuer(c outbound.Config) bool {
	return c.Mode == outbound.ModeDelegated && c.Delegated != nil && c.Delegated.Issuer == outbound.IssuerBuiltin
}

func validAddr(a string) error {
	if _, _, err := net.SplitHostPort(a); err != nil {
		return fmt.Errorf("%q is not host:port: %w", a, err)
	}
	return nil
}

func validResource(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", s, err)
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q must be an absolute https URL", s)
	case u.Host == "":
		return fmt.Errorf("%q has no host", s)
	case u.Fragment != "" || u.RawQuery != "":
		return fmt.Errorf("%q must not carry a query or fragment", s)
	case u.Scheme == "http" && !urlcheck.IsLoopback(u.Hostname()):
		return fmt.Errorf("%q must use https (http only on loopback)", s)
	}
	return nil
}

// CanonicalURL lower-cases the scheme and host of u, leaving the rest exact.
func CanonicalURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return u
	}
	host, path, _ := strings.Cut(rest, "/")
	out := strings.ToLower(scheme) + "://" + strings.ToLower(host)
	if path != "" || strings.Contains(rest, "/") {
		out += "/" + path
	}
	return out
}
