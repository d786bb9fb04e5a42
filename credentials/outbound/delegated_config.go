package outbound

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/exchange"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Where a delegated token comes from.
const (
	// IssuerBuiltin: mcpauthz mints the token itself (see package mint and
	// the top-level `issuer` config block).
	IssuerBuiltin = "builtin"
	// IssuerSTS: an external security token service (RFC 8693 token
	// exchange, or Entra on-behalf-of).
	IssuerSTS = "sts"
)

// Where the RFC 8693 actor_token comes from.
const (
	ActorNone       = "none"
	ActorFromConfig = "config"
	ActorFromCaller = "caller"
	// DefaultActorTokenHeader carries the caller's actor token with source
	// "caller". It is removed before the request goes upstream.
	DefaultActorTokenHeader = "x-mcp-actor-token"
)

// DelegatedConfig configures mode delegated: a short-lived token for this
// upstream that names the user (sub) and the agent acting for them (act),
// limited to the scopes the policy granted for the call.
//
//	mode: delegated
//	delegated:
//	  issuer: builtin            # or sts (then the sts block)
//	  scopes: [docs:read, docs:write]   # the most this upstream may ever get
//	  default_scopes: [docs:read]       # when the policy grants none
type DelegatedConfig struct {
	Issuer string `yaml:"issuer"`
	// STS configures the external token service (issuer sts).
	STS *exchange.Config `yaml:"sts"`
	// Audience of the issued token; default: the server's resource URL.
	Audience string `yaml:"audience"`
	// Scopes is the maximum: scopes the policy grants beyond it are dropped.
	// Empty means no maximum beyond what the policy grants.
	Scopes []string `yaml:"scopes"`
	// DefaultScopes are requested when the policy grants no scopes.
	DefaultScopes []string `yaml:"default_scopes"`
	// ActorToken configures the RFC 8693 actor_token (sts only).
	ActorToken *ActorTokenConfig `yaml:"actor_token"`
	// RequireActor (sts only, default true): when an agent acts for the
	// user, the issued token's act.sub must name that agent. Set false only
	// for token services that cannot express the actor (Entra on-behalf-of,
	// Keycloak standard token exchange); the agent then travels only in the
	// attribution headers (consider headers.sign).
	RequireActor *bool `yaml:"require_actor"`
	// Header is the upstream header (default Authorization, "Bearer " prefix).
	Header string `yaml:"header"`
	// CacheSize bounds cached tokens (default 100000).
	CacheSize int64 `yaml:"cache_size"`
	// Timeout bounds one issuance, including the token service call
	// (default 5s, at most 1m).
	Timeout time.Duration `yaml:"timeout"`
}

// ActorTokenConfig says which actor_token accompanies an exchange.
type ActorTokenConfig struct {
	// Source: none (default; the subject token's own act claim names the
	// agent), config (a fixed token naming this deployment's agent
	// platform), caller (the agent sends its own token in Header).
	Source string      `yaml:"source"`
	Token  *secret.Ref `yaml:"token"`
	Header string      `yaml:"header"`
}

func (c *DelegatedConfig) validate(v *validator, path string) {
	switch c.Issuer {
	case IssuerBuiltin:
		if c.ActorToken != nil && c.ActorToken.Source != "" && c.ActorToken.Source != ActorNone {
			v.add(path+".actor_token", "only used with issuer sts (the built-in issuer writes act from the verified caller)")
		}
		v.forbidWith(c.STS != nil, path+".sts")
		v.forbidWith(c.RequireActor != nil, path+".require_actor")
	case IssuerSTS:
		if c.STS == nil {
			v.add(path+".sts", "required with issuer sts")
		} else if err := c.STS.Validate(); err != nil {
			v.addErr(path+".sts", err)
		} else if c.STS.Flavor == exchange.FlavorEntraOBO && (c.RequireActor == nil || *c.RequireActor) {
			v.add(path+".require_actor", "Entra on-behalf-of tokens carry no act claim: set require_actor: false explicitly (and consider headers.sign)")
		}
	case "":
		v.add(path+".issuer", "required (builtin or sts)")
	default:
		v.add(path+".issuer", fmt.Sprintf("unknown issuer %q (want builtin or sts)", urlcheck.Truncate(c.Issuer, 32)))
	}
	if c.Audience != "" && !urlcheck.AbsoluteURI(c.Audience) {
		v.add(path+".audience", "must be an absolute URI")
	}
	for i, s := range c.Scopes {
		if !urlcheck.ScopeToken(s) {
			v.add(fmt.Sprintf("%s.scopes[%d]", path, i), "invalid scope token")
		}
	}
	for i, s := range c.DefaultScopes {
		switch {
		case !urlcheck.ScopeToken(s):
			v.add(fmt.Sprintf("%s.default_scopes[%d]", path, i), "invalid scope token")
		case len(c.Scopes) > 0 && !slices.Contains(c.Scopes, s):
			v.add(fmt.Sprintf("%s.default_scopes[%d]", path, i), fmt.Sprintf("%q is not within scopes (the maximum)", s))
		}
	}
	if c.Header != "" {
		v.headerName(path+".header", c.Header)
	}
	if c.CacheSize < 0 {
		v.add(path+".cache_size", "must not be negative")
	}
	if c.Timeout < 0 || c.Timeout > MaxTimeout {
		v.add(path+".timeout", fmt.Sprintf("must be between 0 (default %s) and %s", defaultDelegatedTimeout, MaxTimeout))
	}
	if a := c.ActorToken; a != nil {
		switch a.Source {
		case "", ActorNone:
			v.forbidWith(a.Token != nil, path+".actor_token.token")
		case ActorFromConfig:
			if a.Token == nil {
				v.add(path+".actor_token.token", "required with source config")
			} else {
				v.ref(path+".actor_token.token", *a.Token)
			}
		case ActorFromCaller:
			v.forbidWith(a.Token != nil, path+".actor_token.token")
			if a.Header != "" {
				v.headerName(path+".actor_token.header", a.Header)
			}
		default:
			v.add(path+".actor_token.source", fmt.Sprintf("unknown source %q (want none, config or caller)", urlcheck.Truncate(a.Source, 32)))
		}
	}
}

// newDelegated builds the delegated Provider for cfg.
func newDelegated(ctx context.Context, cfg *DelegatedConfig, opts Options) (Provider, error) {
	var src delegationSource
	c := *cfg
	switch cfg.Issuer {
	case IssuerBuiltin:
		if opts.Minter == nil {
			return nil, errors.New("delegated.issuer: builtin needs the top-level issuer block (mcpauthz's own token issuer)")
		}
		src = builtinSource{m: opts.Minter}
	case IssuerSTS:
		sts := *cfg.STS
		if sts.Timeout == 0 && cfg.Timeout != 0 {
			sts.Timeout = cfg.Timeout
		}
		client, err := exchange.New(ctx, sts, exchange.Options{HTTPClient: opts.HTTPClient, Now: opts.Now, Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("delegated.sts: %w", err)
		}
		src = stsSource{c: client, requireActor: cfg.RequireActor == nil || *cfg.RequireActor}
		if c.Audience == "" {
			c.Audience = sts.Audience
		}
	default:
		return nil, fmt.Errorf("delegated.issuer: unknown issuer %q", cfg.Issuer)
	}
	return newDelegatedCore(src, &c, opts)
}
