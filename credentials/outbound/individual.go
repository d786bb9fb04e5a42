package outbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http/httpguts"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
)

// Defaults of IndividualConfig and OAuthServiceAccount.
const (
	DefaultConnectionFormat = "Bearer {token}"
	tokenPlaceholder        = "{token}"
)

// Reasons of the connection-backed modes (individual, service_account.oauth).
const (
	// ReasonNoUser: an agent acting on its own (or an anonymous caller) has
	// no user whose connection could be used. Permanent (403).
	ReasonNoUser = "no_user_for_individual"
	// ReasonNeedsAuthorization: the user (or, for service_account.oauth,
	// an admin) must connect or reconnect; the error wraps a
	// *connections.NeedsAuthorizationError.
	ReasonNeedsAuthorization = "needs_authorization"
	// ReasonConnectionUnavailable: the provider or the store is having
	// trouble (refresh failing, backing off). Transient (503).
	ReasonConnectionUnavailable = "connection_unavailable"
	// ReasonConnectionError: anything else (server not registered with the
	// connections manager, a stored token unusable in a header).
	ReasonConnectionError = "connection_error"
)

// IndividualConfig configures mode individual: the upstream receives the
// calling user's own provider access token, obtained once through the
// connect flow and refreshed by the connections manager.
//
//	mode: individual
//	individual:
//	  provider: {...}            # connections.ProviderConfig
//	  header: authorization      # default
//	  format: "Bearer {token}"   # default; must contain {token} once
type IndividualConfig struct {
	Provider connections.ProviderConfig `yaml:"provider"`
	Header   string                     `yaml:"header"`
	Format   string                     `yaml:"format"`
}

// OAuthServiceAccount is service_account.oauth: an admin completes the
// provider's OAuth flow once and that organization-wide connection serves
// every caller of the organization.
//
//	mode: service_account
//	service_account:
//	  oauth:
//	    provider: {...}
//	    header: authorization
//	    format: "Bearer {token}"
type OAuthServiceAccount struct {
	Provider connections.ProviderConfig `yaml:"provider"`
	Header   string                     `yaml:"header"`
	Format   string                     `yaml:"format"`
}

// ConnectionSource hands out stored connection tokens
// (*connections.Manager implements it).
type ConnectionSource interface {
	Token(ctx context.Context, key connections.Key) (connections.Token, error)
}

var _ ConnectionSource = (*connections.Manager)(nil)

// Connection returns what the connections manager must register for this
// server (Manager.Register(serverID, mode, provider)); ok is false for
// modes that use no connection.
func (c Config) Connection() (mode string, provider connections.ProviderConfig, ok bool) {
	switch {
	case c.Mode == ModeIndividual && c.Individual != nil:
		return connections.ModeIndividual, c.Individual.Provider, true
	case c.Mode == ModeServiceAccount && c.ServiceAccount != nil && c.ServiceAccount.OAuth != nil:
		return connections.ModeServiceAccount, c.ServiceAccount.OAuth.Provider, true
	}
	return "", connections.ProviderConfig{}, false
}

func validateConnection(v *validator, path string, p connections.ProviderConfig, header, format string) {
	if err := p.Validate(); err != nil {
		v.addErr(path+".provider", err)
	}
	if header != "" {
		v.headerName(path+".header", header)
	}
	if format != "" {
		switch n := strings.Count(format, tokenPlaceholder); {
		case n != 1:
			v.add(path+".format", "must contain {token} exactly once (e.g. \"Bearer {token}\")")
		case !httpguts.ValidHeaderFieldValue(strings.Replace(format, tokenPlaceholder, "x", 1)):
			v.add(path+".format", "contains characters not allowed in a header value")
		}
	}
}

// connectionProvider attaches a stored connection's access token. Safe for
// concurrent use; it never reads the caller's own token. The returned
// *Credential may be shared between calls (read-only, as for every mode).
type connectionProvider struct {
	mode           Mode
	src            ConnectionSource
	header         string
	prefix, suffix string

	// built keeps the last *Credential per key, reused while the token and
	// the request's names are the same (no allocation on the warm path).
	built     sync.Map // connections.Key -> *builtCredential
	builtSize atomic.Int64
}

type builtCredential struct {
	access, subject, actor, audience string
	cred                             *Credential
}

// maxBuilt bounds the reuse cache (one small entry per active key).
const maxBuilt = 1 << 17

var _ Provider = (*connectionProvider)(nil)

func newConnectionProvider(mode Mode, header, format string, src ConnectionSource) (Provider, error) {
	if src == nil {
		return nil, fmt.Errorf("mode %s needs Options.Connections (the connections manager)", mode)
	}
	if header == "" {
		header = DefaultHeader
	}
	if format == "" {
		format = DefaultConnectionFormat
	}
	prefix, suffix, _ := strings.Cut(format, tokenPlaceholder)
	return &connectionProvider{mode: mode, src: src, header: strings.ToLower(header), prefix: prefix, suffix: suffix}, nil
}

// String describes the provider without tokens.
func (p *connectionProvider) String() string {
	return fmt.Sprintf("outbound.Provider{mode=%s connection header=%s}", p.mode, p.header)
}

// Format prints String for every verb.
func (p *connectionProvider) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

// Credential returns the connection's token for the caller: the user's own
// (individual; an agent acting for a user uses that user's) or the
// organization's (service_account.oauth).
func (p *connectionProvider) Credential(ctx context.Context, req *Request) (*Credential, error) {
	if req.ServerID == "" {
		return nil, &Error{Reason: ReasonConnectionError, Err: errors.New("request names no server")}
	}
	key := connections.Key{Org: req.Org, Server: req.ServerID}
	if p.mode == ModeIndividual {
		switch {
		case req.Kind == "agent":
			return nil, &Error{Reason: ReasonNoUser, Err: errors.New("an agent acting on its own has no user whose connection this server (mode individual) could use; call it on behalf of a user")}
		case req.Kind == "anonymous" || req.UserKey == "":
			return nil, &Error{Reason: ReasonNoUser, Err: errors.New("anonymous callers have no connection to this server (mode individual); sign in")}
		}
		key.UserKey = req.UserKey
	}
	tok, err := p.src.Token(ctx, key)
	if err != nil {
		if _, ok := p.built.LoadAndDelete(key); ok {
			p.builtSize.Add(-1)
		}
		var na *connections.NeedsAuthorizationError
		switch {
		case errors.As(err, &na):
			return nil, &Error{Reason: ReasonNeedsAuthorization, Err: err}
		case errors.Is(err, connections.ErrUnavailable):
			return nil, &Error{Reason: ReasonConnectionUnavailable, Transient: true, Err: err}
		default:
			return nil, &Error{Reason: ReasonConnectionError, Err: err}
		}
	}
	subject, actor := req.upstreamSubject(), req.upstreamActor()
	if p.mode == ModeServiceAccount {
		subject = ""
	}
	if v, ok := p.built.Load(key); ok {
		if b := v.(*builtCredential); b.access == tok.AccessToken && b.subject == subject && b.actor == actor && b.audience == req.Audience {
			return b.cred, nil
		}
	}
	if checkHeaderSecret(tok.AccessToken) != nil || tok.AccessToken == "" {
		return nil, &Error{Reason: ReasonConnectionError, Err: errors.New("the stored access token is not usable in a header")}
	}
	cred := &Credential{
		Mode:      p.mode,
		Headers:   []Header{{Name: p.header, Value: p.prefix + tok.AccessToken + p.suffix}},
		Subject:   subject,
		Actor:     actor,
		Audience:  req.Audience,
		Scopes:    tok.Scopes,
		ExpiresAt: tok.ExpiresAt,
	}
	b := &builtCredential{access: tok.AccessToken, subject: subject, actor: actor, audience: req.Audience, cred: cred}
	if _, loaded := p.built.Swap(key, b); !loaded && p.builtSize.Add(1) > maxBuilt {
		if p.built.CompareAndDelete(key, b) {
			p.builtSize.Add(-1)
		}
	}
	return cred, nil
}
