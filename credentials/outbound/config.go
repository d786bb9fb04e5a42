package outbound

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/fielderr"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Defaults and limits for ServiceAccountConfig.
const (
	DefaultHeader        = "Authorization"
	DefaultTimeout       = 5 * time.Second
	DefaultRefreshBefore = 60 * time.Second
	MaxTimeout           = time.Minute
)

// Config selects and configures the credential mode of one upstream MCP
// server. Exactly the block matching Mode is set (none for public).
//
//	mode: static
//	static:
//	  headers:
//	    - name: X-API-Key
//	      value: {env: UPSTREAM_API_KEY}
type Config struct {
	Mode           Mode                  `yaml:"mode"`
	Static         *StaticConfig         `yaml:"static"`
	ServiceAccount *ServiceAccountConfig `yaml:"service_account"`
	Delegated      *DelegatedConfig      `yaml:"delegated"`
	Individual     *IndividualConfig     `yaml:"individual"`
}

// StaticConfig lists fixed headers sent on every upstream call.
type StaticConfig struct {
	Headers []StaticHeader `yaml:"headers"`
}

// StaticHeader is one fixed header: Prefix (for example "Bearer ")
// followed by the resolved secret.
type StaticHeader struct {
	Name   string     `yaml:"name"`
	Value  secret.Ref `yaml:"value"`
	Prefix string     `yaml:"prefix"`
}

// ServiceAccountConfig configures one organisation-wide credential: either
// Secret (a static secret, sent as "Bearer <secret>" when Header is
// Authorization and raw otherwise) or an OAuth 2.0 client-credentials grant
// (TokenURL, ClientID, ClientSecret, ...).
//
//	mode: service_account
//	service_account:
//	  token_url: https://idp.example.com/oauth2/token
//	  client_id: mcpauthz-github
//	  client_secret: {file: /run/secrets/github-client-secret}
//	  scopes: [repo.read]
//	  audience: https://mcp.github.example.com/
type ServiceAccountConfig struct {
	// Header is the upstream header; default "Authorization". A token sent
	// in another header is sent raw (no "Bearer " prefix).
	Header string `yaml:"header"`

	Secret *secret.Ref `yaml:"secret"`

	TokenURL     string      `yaml:"token_url"`
	ClientID     string      `yaml:"client_id"`
	ClientSecret *secret.Ref `yaml:"client_secret"`
	Scopes       []string    `yaml:"scopes"`
	// Audience is sent to the token endpoint as "audience" and, when it is
	// an absolute URI, also as the RFC 8707 "resource" parameter.
	Audience string `yaml:"audience"`
	// AuthStyle is how the client authenticates: "basic" (HTTP Basic,
	// default) or "post" (client_id/client_secret in the form body).
	AuthStyle string `yaml:"auth_style"`
	// RefreshBefore is the minimum time before expiry at which the token is
	// refreshed (default 60s). The token is also refreshed once less than
	// 20% of its lifetime remains, and never later than half-life.
	RefreshBefore time.Duration `yaml:"refresh_before"`
	// Timeout bounds one token endpoint call (default 5s, at most 1m).
	Timeout time.Duration `yaml:"timeout"`

	// OAuth, instead of Secret or client credentials: an admin authorizes
	// the organization once through the provider's OAuth flow (the
	// connections manager stores and refreshes that one connection).
	OAuth *OAuthServiceAccount `yaml:"oauth"`
}

// clientCredentials reports whether c uses the client-credentials grant.
func (c *ServiceAccountConfig) clientCredentials() bool { return c.Secret == nil }

// Validate checks cfg without I/O. It returns the errors joined, each
// prefixed with its field path relative to this Config (for example
// "service_account.token_url: must be https (or http on loopback)"), so a
// caller can prefix its own path.
func (c Config) Validate() error {
	var v validator
	switch c.Mode {
	case "":
		v.add("mode", "required (one of public, static, service_account, delegated, individual)")
	case ModePublic:
		v.forbid(c.Static != nil, "static", c.Mode)
		v.forbid(c.ServiceAccount != nil, "service_account", c.Mode)
		v.forbid(c.Delegated != nil, "delegated", c.Mode)
		v.forbid(c.Individual != nil, "individual", c.Mode)
	case ModeStatic:
		v.forbid(c.ServiceAccount != nil, "service_account", c.Mode)
		v.forbid(c.Delegated != nil, "delegated", c.Mode)
		v.forbid(c.Individual != nil, "individual", c.Mode)
		if c.Static == nil {
			v.add("static", "required with mode static")
		} else {
			c.Static.validate(&v, "static")
		}
	case ModeServiceAccount:
		v.forbid(c.Static != nil, "static", c.Mode)
		v.forbid(c.Delegated != nil, "delegated", c.Mode)
		v.forbid(c.Individual != nil, "individual", c.Mode)
		if c.ServiceAccount == nil {
			v.add("service_account", "required with mode service_account")
		} else {
			c.ServiceAccount.validate(&v, "service_account")
		}
	case ModeDelegated:
		v.forbid(c.Static != nil, "static", c.Mode)
		v.forbid(c.ServiceAccount != nil, "service_account", c.Mode)
		v.forbid(c.Individual != nil, "individual", c.Mode)
		if c.Delegated == nil {
			v.add("delegated", "required with mode delegated")
		} else {
			c.Delegated.validate(&v, "delegated")
		}
	case ModeIndividual:
		v.forbid(c.Static != nil, "static", c.Mode)
		v.forbid(c.ServiceAccount != nil, "service_account", c.Mode)
		v.forbid(c.Delegated != nil, "delegated", c.Mode)
		if c.Individual == nil {
			v.add("individual", "required with mode individual (individual.provider: the upstream's OAuth provider)")
		} else {
			validateConnection(&v, "individual", c.Individual.Provider, c.Individual.Header, c.Individual.Format)
		}
	default:
		v.add("mode", fmt.Sprintf("unknown mode %q (want public, static, service_account, delegated or individual)", urlcheck.Truncate(string(c.Mode), 32)))
	}
	return v.err()
}

func (s *StaticConfig) validate(v *validator, path string) {
	if len(s.Headers) == 0 {
		v.add(path+".headers", "at least one header is required")
	}
	seen := map[string]bool{}
	for i, h := range s.Headers {
		p := fmt.Sprintf("%s.headers[%d]", path, i)
		if v.headerName(p+".name", h.Name) {
			if seen[strings.ToLower(h.Name)] {
				v.add(p+".name", fmt.Sprintf("duplicate header %q", h.Name))
			}
			seen[strings.ToLower(h.Name)] = true
		}
		v.ref(p+".value", h.Value)
		if h.Prefix != "" && !httpguts.ValidHeaderFieldValue(h.Prefix) {
			v.add(p+".prefix", "contains characters not allowed in a header value")
		}
	}
}

func (s *ServiceAccountConfig) validate(v *validator, path string) {
	if s.Header != "" {
		v.headerName(path+".header", s.Header)
	}
	if s.RefreshBefore < 0 {
		v.add(path+".refresh_before", "must not be negative")
	}
	if s.Timeout < 0 || s.Timeout > MaxTimeout {
		v.add(path+".timeout", fmt.Sprintf("must be between 0 (default %s) and %s", DefaultTimeout, MaxTimeout))
	}
	if s.OAuth != nil {
		forbid := func(set bool, field string) {
			if set {
				v.add(path+"."+field, "not allowed together with oauth (set it under oauth.provider or oauth)")
			}
		}
		forbid(s.Header != "", "header")
		forbid(s.Secret != nil, "secret")
		forbid(s.TokenURL != "", "token_url")
		forbid(s.ClientID != "", "client_id")
		forbid(s.ClientSecret != nil, "client_secret")
		forbid(len(s.Scopes) > 0, "scopes")
		forbid(s.Audience != "", "audience")
		forbid(s.AuthStyle != "", "auth_style")
		forbid(s.RefreshBefore != 0, "refresh_before")
		forbid(s.Timeout != 0, "timeout")
		validateConnection(v, path+".oauth", s.OAuth.Provider, s.OAuth.Header, s.OAuth.Format)
		return
	}
	if s.Secret != nil {
		v.ref(path+".secret", *s.Secret)
		v.forbidWith(s.TokenURL != "", path+".token_url")
		v.forbidWith(s.ClientID != "", path+".client_id")
		v.forbidWith(s.ClientSecret != nil, path+".client_secret")
		v.forbidWith(len(s.Scopes) > 0, path+".scopes")
		v.forbidWith(s.Audience != "", path+".audience")
		v.forbidWith(s.AuthStyle != "", path+".auth_style")
		v.forbidWith(s.RefreshBefore != 0, path+".refresh_before")
		v.forbidWith(s.Timeout != 0, path+".timeout")
		return
	}
	if s.TokenURL == "" && s.ClientID == "" && s.ClientSecret == nil {
		v.add(path, "one of secret, token_url (client credentials) or oauth (admin-authorized) is required")
		return
	}
	if s.TokenURL == "" {
		v.add(path+".token_url", "required for client credentials")
	} else if msg := urlcheck.Endpoint(s.TokenURL); msg != "" {
		v.add(path+".token_url", msg)
	}
	if s.ClientID == "" {
		v.add(path+".client_id", "required for client credentials")
	} else if strings.ContainsFunc(s.ClientID, urlcheck.IsControl) {
		v.add(path+".client_id", "contains control characters")
	}
	if s.ClientSecret == nil {
		v.add(path+".client_secret", "required for client credentials")
	} else {
		v.ref(path+".client_secret", *s.ClientSecret)
	}
	seen := map[string]bool{}
	for i, sc := range s.Scopes {
		p := fmt.Sprintf("%s.scopes[%d]", path, i)
		switch {
		case !urlcheck.ScopeToken(sc):
			v.add(p, "not a valid scope token (RFC 6749 section 3.3)")
		case seen[sc]:
			v.add(p, fmt.Sprintf("duplicate scope %q", sc))
		}
		seen[sc] = true
	}
	if s.Audience != "" && strings.ContainsFunc(s.Audience, urlcheck.IsControl) {
		v.add(path+".audience", "contains control characters")
	}
	switch s.AuthStyle {
	case "", "basic", "post":
	default:
		v.add(path+".auth_style", fmt.Sprintf("unknown auth style %q (want basic or post)", urlcheck.Truncate(s.AuthStyle, 32)))
	}
}

// forbiddenHeaders may not be set by configuration: they are hop-by-hop,
// framing, routing or Envoy-internal headers.
var forbiddenHeaders = map[string]bool{
	"host": true, "content-length": true, "transfer-encoding": true,
	"connection": true, "keep-alive": true, "proxy-connection": true,
	"te": true, "trailer": true, "upgrade": true,
}

// validator collects the problems found, with the checks the modes share.
type validator struct{ l fielderr.List }

func (v *validator) add(path, msg string) { v.l.Add(path, msg) }

func (v *validator) forbid(set bool, path string, m Mode) {
	if set {
		v.add(path, fmt.Sprintf("not allowed with mode %s", m))
	}
}

func (v *validator) forbidWith(set bool, path string) {
	if set {
		v.add(path, "not allowed together with secret")
	}
}

// headerName reports whether name is an allowed header name.
func (v *validator) headerName(path, name string) bool {
	switch {
	case name == "":
		v.add(path, "required")
	case !httpguts.ValidHeaderFieldName(name):
		v.add(path, "not a valid HTTP header name")
	case forbiddenHeaders[strings.ToLower(name)] || strings.HasPrefix(strings.ToLower(name), "x-envoy-"):
		v.add(path, fmt.Sprintf("header %q may not be set", name))
	default:
		return true
	}
	return false
}

func (v *validator) ref(path string, r secret.Ref) {
	if r.IsZero() {
		v.add(path, "required ({env: NAME} or {file: PATH})")
		return
	}
	if err := r.Validate(); err != nil {
		v.add(path, strings.TrimPrefix(err.Error(), "secret: "))
	}
}

// addErr adds each error joined in err, prefixed with path.
func (v *validator) addErr(path string, err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			v.l = append(v.l, errors.New(path+"."+e.Error()))
		}
		return
	}
	v.l = append(v.l, errors.New(path+"."+err.Error()))
}

func (v *validator) err() error { return v.l.Err() }
