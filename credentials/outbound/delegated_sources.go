package outbound

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/exchange"
	"github.com/mcpauthz/mcpauthz/credentials/mint"
)

// Minter mints delegated tokens; *mint.Issuer implements it.
type Minter interface {
	Mint(ctx context.Context, c mint.Claims) (token string, expiresAt time.Time, err error)
}

var _ Minter = (*mint.Issuer)(nil)

// builtinSource mints the delegated token with mcpauthz's own issuer:
// sub = the user (or the agent alone), act = the current actor with the
// prior chain nested, aud = the upstream, scope = the descoped scopes.
type builtinSource struct{ m Minter }

func (builtinSource) name() string { return IssuerBuiltin }

func (b builtinSource) obtain(ctx context.Context, d *delegation) (string, time.Time, error) {
	r := d.req
	// RFC 9068 requires client_id: the caller's client, else the agent's,
	// else mcpauthz itself (which requested the token).
	clientID := r.ClientID
	if clientID == "" {
		clientID = r.ActorClientID
	}
	if clientID == "" {
		clientID = "mcpauthz"
	}
	c := mint.Claims{Audience: d.audience, Subject: r.upstreamSubject(), ClientID: clientID, Scopes: d.scopes, NotAfter: r.SubjectExpiresAt}
	if r.Actor != "" {
		actors := make([]mint.Actor, 0, 1+len(r.Chain))
		actors = append(actors, mint.Actor{Subject: r.upstreamActor(), ClientID: r.ActorClientID, Issuer: r.ActorIssuer})
		for _, a := range r.Chain {
			actors = append(actors, mint.Actor{Subject: a.Subject, ClientID: a.ClientID, Issuer: a.Issuer})
		}
		c.Actor = mint.ActorChain(actors)
	}
	// Attribution folded into the token: the upstream can trust it as far
	// as it trusts mcpauthz's signature.
	extra := map[string]any{}
	if r.Org != "" {
		extra["org"] = r.Org
	}
	if r.UserKey != "" {
		extra["user_key"] = r.UserKey
	}
	if r.Kind != "" {
		extra["mcp_kind"] = r.Kind
	}
	if r.ServerID != "" {
		extra["mcp_server"] = r.ServerID
	}
	c.Extra = extra
	tok, exp, err := b.m.Mint(ctx, c)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return "", time.Time{}, &Error{Reason: ReasonTokenTimeout, Transient: true, Err: err}
		}
		return "", time.Time{}, &Error{Reason: "mint_failed", Err: fmt.Errorf("built-in issuer: %w", err)}
	}
	return tok, exp, nil
}

// tokenExchanger performs one RFC 8693 exchange (or Entra OBO);
// *exchange.Client implements it.
type tokenExchanger interface {
	Exchange(ctx context.Context, req exchange.Request) (*exchange.Token, error)
}

var _ tokenExchanger = (*exchange.Client)(nil)

// stsSource exchanges the caller's verified token at an external STS. The
// issued token's audience, and its act.sub when an actor is involved, are
// checked by the exchange client before use.
type stsSource struct {
	c            tokenExchanger
	requireActor bool
}

func (stsSource) name() string { return IssuerSTS }

func (s stsSource) obtain(ctx context.Context, d *delegation) (string, time.Time, error) {
	r := d.req
	if r.SubjectToken == "" {
		return "", time.Time{}, &Error{Reason: ReasonNoSubject,
			Err: errors.New("token exchange needs the caller's bearer token (mTLS callers have none)")}
	}
	er := exchange.Request{SubjectToken: r.SubjectToken, ActorToken: d.actorToken, Scopes: d.scopes, Audience: d.audience}
	switch {
	case !s.requireActor:
	case d.actorToken != "":
		er.ExpectedActor = unverifiedSubject(d.actorToken)
	case r.Actor != "":
		er.ExpectedActor = r.Actor // the subject token's own act names the agent
	}
	tok, err := s.c.Exchange(ctx, er)
	if err != nil {
		var ee *exchange.Error
		if errors.As(err, &ee) {
			return "", time.Time{}, &Error{Reason: ee.Reason, Transient: ee.Transient, Err: err}
		}
		return "", time.Time{}, &Error{Reason: ReasonTokenInvalidResponse, Err: err}
	}
	return tok.AccessToken, tok.ExpiresAt, nil
}
