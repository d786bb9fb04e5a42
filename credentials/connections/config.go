package connections

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/fielderr"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Defaults and limits.
const (
	DefaultFlowTTL         = 10 * time.Minute
	MinFlowTTL             = time.Minute
	MaxFlowTTL             = time.Hour
	DefaultRefreshInterval = time.Minute
	MinRefreshInterval     = time.Second
	MaxRefreshInterval     = time.Hour
	DefaultMaxFailures     = 5
	MaxMaxFailures         = 100
	DefaultRefreshBefore   = 10 * time.Minute
	DefaultTimeout         = 10 * time.Second
	MaxTimeout             = time.Minute
)

// Modes a server registers with.
const (
	ModeIndividual     = "individual"
	ModeServiceAccount = "service_account"
)

// Auth styles of ProviderConfig.AuthStyle.
const (
	AuthStyleBasic = "basic"
	AuthStylePost  = "post"
	AuthStyleNone  = "none"
)

// ProviderConfig is one server's upstream OAuth provider (YAML under
// servers[].credential.individual.provider or
// service_account.oauth.provider):
//
//	provider:
//	  issuer: https://accounts.example.com          # RFC 8414 discovery (optional)
//	  authorization_url: https://example.com/oauth/authorize
//	  token_url: https://example.com/oauth/token
//	  revocation_url: https://example.com/oauth/revoke  # RFC 7009 (optional)
//	  client_id: mcpauthz
//	  client_secret: {env: EXAMPLE_CLIENT_SECRET}
//	  auth_style: basic                              # basic | post | none
//	  scopes: [repo, read:user]
//	  authorize_params: {access_type: offline, prompt: consent}
//	  resource: https://api.example.com/             # RFC 8707 (optional)
//	  refresh_before: 10m
//	  timeout: 10s
type ProviderConfig struct {
	Issuer           string            `yaml:"issuer"`
	AuthorizationURL string            `yaml:"authorization_url"`
	TokenURL         string            `yaml:"token_url"`
	RevocationURL    string            `yaml:"revocation_url"`
	ClientID         string            `yaml:"client_id"`
	ClientSecret     *secret.Ref       `yaml:"client_secret"`
	AuthStyle        string            `yaml:"auth_style"`
	Scopes           []string          `yaml:"scopes"`
	AuthorizeParams  map[string]string `yaml:"authorize_params"`
	Resource         string            `yaml:"resource"`
	RefreshBefore    time.Duration     `yaml:"refresh_before"`
	Timeout          time.Duration     `yaml:"timeout"`
}

// reservedParams are set by the connect flow and may not be overridden by
// authorize_params.
var reservedParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state",
	"code_challenge", "code_challenge_method", "resource", "code_verifier", "request", "request_uri"}

// Validate checks c without I/O. Problems are joined, each prefixed with its
// field path relative to the provider block (e.g. "token_url: required").
func (c ProviderConfig) Validate() error {
	var errs fielderr.List
	if c.Issuer != "" {
		if msg := urlcheck.Endpoint(c.Issuer); msg != "" {
			errs.Add("issuer", msg)
		} else if u, _ := url.Parse(c.Issuer); u.RawQuery != "" {
			errs.Add("issuer", "must not contain a query")
		}
	}
	checkEndpoint(&errs, "authorization_url", c.AuthorizationURL, c.Issuer == "")
	checkEndpoint(&errs, "token_url", c.TokenURL, c.Issuer == "")
	checkEndpoint(&errs, "revocation_url", c.RevocationURL, false)
	c.checkClient(&errs)
	c.checkScopes(&errs)
	c.checkAuthorizeParams(&errs)
	if c.Resource != "" && !urlcheck.AbsoluteURI(c.Resource) {
		errs.Add("resource", "must be an absolute URI without a fragment (RFC 8707)")
	}
	if c.RefreshBefore < 0 {
		errs.Add("refresh_before", "must not be negative")
	}
	if c.Timeout < 0 || c.Timeout > MaxTimeout {
		errs.Add("timeout", fmt.Sprintf("must be between 0 (default %s) and %s", DefaultTimeout, MaxTimeout))
	}
	return errs.Err()
}

// checkEndpoint checks the endpoint URL v of field; an empty one is a
// problem when required (no issuer to discover it from).
func checkEndpoint(errs *fielderr.List, field, v string, required bool) {
	switch {
	case v == "" && required:
		errs.Add(field, "required (or set issuer for RFC 8414 discovery)")
	case v != "":
		if msg := urlcheck.Endpoint(v); msg != "" {
			errs.Add(field, msg)
		}
	}
}

// checkClient checks client_id and the client_secret that auth_style needs.
func (c ProviderConfig) checkClient(errs *fielderr.List) {
	switch {
	case c.ClientID == "":
		errs.Add("client_id", "required")
	case strings.ContainsFunc(c.ClientID, urlcheck.IsControl):
		errs.Add("client_id", "contains control characters")
	}
	switch c.AuthStyle {
	case "", AuthStyleBasic, AuthStylePost:
		if c.ClientSecret == nil || c.ClientSecret.IsZero() {
			errs.Add("client_secret", "required ({env: NAME} or {file: PATH}) unless auth_style is none")
		} else if err := c.ClientSecret.Validate(); err != nil {
			errs.Add("client_secret", strings.TrimPrefix(err.Error(), "secret: "))
		}
	case AuthStyleNone:
		if c.ClientSecret != nil {
			errs.Add("client_secret", "not allowed with auth_style none (a public client)")
		}
	default:
		errs.Add("auth_style", fmt.Sprintf("unknown auth style %q (want basic, post or none)", urlcheck.Truncate(c.AuthStyle, 32)))
	}
}

// checkScopes checks that scopes are distinct RFC 6749 scope tokens.
func (c ProviderConfig) checkScopes(errs *fielderr.List) {
	seen := map[string]bool{}
	for i, s := range c.Scopes {
		p := fmt.Sprintf("scopes[%d]", i)
		switch {
		case !urlcheck.ScopeToken(s):
			errs.Add(p, "not a valid scope token (RFC 6749 section 3.3)")
		case seen[s]:
			errs.Add(p, fmt.Sprintf("duplicate scope %q", s))
		}
		seen[s] = true
	}
}

// checkAuthorizeParams checks authorize_params in name order: visible ASCII
// names, none the connect flow sets itself, values without control
// characters.
func (c ProviderConfig) checkAuthorizeParams(errs *fielderr.List) {
	keys := make([]string, 0, len(c.AuthorizeParams))
	for k := range c.AuthorizeParams {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		p := "authorize_params." + k
		switch {
		case k == "" || strings.ContainsFunc(k, func(r rune) bool { return r <= 0x20 || r >= 0x7f }):
			errs.Add("authorize_params", "parameter names must be visible ASCII")
		case slices.Contains(reservedParams, strings.ToLower(k)):
			errs.Add(p, "set by mcpauthz; it cannot be overridden")
		case strings.ContainsFunc(c.AuthorizeParams[k], urlcheck.IsControl):
			errs.Add(p, "contains control characters")
		}
	}
}

func (c ProviderConfig) refreshBefore() time.Duration {
	if c.RefreshBefore == 0 {
		return DefaultRefreshBefore
	}
	return c.RefreshBefore
}

func (c ProviderConfig) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// Config is the top-level `connections:` block:
//
//	connections:
//	  public_url: https://mcpauthz.example.com  # as browsers reach mcpauthz
//	  flow_ttl: 10m          # connect link and pending flow lifetime (1m..1h)
//	  refresh_interval: 1m   # background refresh sweep (1s..1h)
//	  max_failures: 5        # transient refresh failures in a row before ERROR
type Config struct {
	PublicURL       string        `yaml:"public_url"`
	FlowTTL         time.Duration `yaml:"flow_ttl"`
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	MaxFailures     int           `yaml:"max_failures"`
}

// Validate checks c without I/O; errors are prefixed with their field.
func (c Config) Validate() error {
	var errs []error
	add := func(field, msg string) { errs = append(errs, errors.New(field+": "+msg)) }
	if c.PublicURL == "" {
		add("public_url", "required: the base URL of mcpauthz's HTTP listener as browsers reach it (e.g. https://mcpauthz.example.com)")
	} else if msg := urlcheck.Endpoint(c.PublicURL); msg != "" {
		add("public_url", msg)
	} else if u, _ := url.Parse(c.PublicURL); u.RawQuery != "" || u.ForceQuery {
		add("public_url", "must not contain a query")
	}
	if c.FlowTTL != 0 && (c.FlowTTL < MinFlowTTL || c.FlowTTL > MaxFlowTTL) {
		add("flow_ttl", fmt.Sprintf("must be between %s and %s (default %s)", MinFlowTTL, MaxFlowTTL, DefaultFlowTTL))
	}
	if c.RefreshInterval != 0 && (c.RefreshInterval < MinRefreshInterval || c.RefreshInterval > MaxRefreshInterval) {
		add("refresh_interval", fmt.Sprintf("must be between %s and %s (default %s)", MinRefreshInterval, MaxRefreshInterval, DefaultRefreshInterval))
	}
	if c.MaxFailures < 0 || c.MaxFailures > MaxMaxFailures {
		add("max_failures", fmt.Sprintf("must be between 0 (default %d) and %d", DefaultMaxFailures, MaxMaxFailures))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.FlowTTL == 0 {
		c.FlowTTL = DefaultFlowTTL
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = DefaultRefreshInterval
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	return c
}
