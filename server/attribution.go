package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/mint"
)

// AttributionType is the typ header of the signed attribution JWT sent in
// <prefix>attribution when headers.sign is on. It can never pass for an
// access token (typ at+jwt).
const AttributionType = "mcpauthz-attribution+jwt"

// signedAttributions caches one signed attribution per (principal, server):
// signing costs far more than a warm Check, and the content only changes
// with the principal. It lives in the principal's preparedEntry.
type signedAttributions struct{ m sync.Map } // server id -> *signedAttribution

type signedAttribution struct {
	jwt   string
	until time.Time
}

// attribution returns the signed attribution JWT for p calling srv:
// aud = the server's resource, sub, mcp_kind, user_key, org, client_id and
// act (the current actor with the prior chain nested), as verified.
func (s *Service) attribution(ctx context.Context, e *preparedEntry, srv *mcpServer, p *identity.Principal) (string, error) {
	now := s.now()
	if v, ok := e.attr.m.Load(srv.id); ok {
		if a := v.(*signedAttribution); now.Before(a.until) {
			return a.jwt, nil
		}
	}
	claims := map[string]any{
		"aud":        srv.cfg.Resource,
		"sub":        upstreamSubject(p),
		"mcp_kind":   string(p.Kind),
		"mcp_server": srv.id,
	}
	if p.UserKey != "" {
		claims["user_key"] = p.UserKey
	}
	if p.Org != "" {
		claims["org"] = p.Org
	}
	if p.ClientID != "" {
		claims["client_id"] = p.ClientID
	}
	if p.SPIFFEID != "" {
		claims["spiffe_id"] = p.SPIFFEID
	}
	if p.Actor != nil {
		actors := make([]mint.Actor, 0, 1+len(p.Chain))
		for _, a := range append([]identity.Actor{*p.Actor}, p.Chain...) {
			actors = append(actors, mint.Actor{Subject: actorSubject(&a), ClientID: a.ClientID, Issuer: a.Issuer})
		}
		claims["act"] = mint.ActorChain(actors)
	}
	if !p.ExpiresAt.IsZero() {
		// Never outlive the caller's own token.
		if !p.ExpiresAt.After(now) {
			return "", fmt.Errorf("server: sign attribution: the caller's token has expired")
		}
		if p.ExpiresAt.Before(now.Add(s.issuer.TokenTTL())) {
			claims["exp"] = p.ExpiresAt.Unix()
		}
	}
	tok, err := s.issuer.Sign(ctx, AttributionType, claims)
	if err != nil {
		return "", fmt.Errorf("server: sign attribution: %w", err)
	}
	// Re-sign well before the JWT expires, and never serve it past the
	// principal's own expiry.
	until := now.Add(s.issuer.TokenTTL() * 4 / 5)
	if !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(until) {
		until = p.ExpiresAt
	}
	e.attr.m.Store(srv.id, &signedAttribution{jwt: tok, until: until})
	return tok, nil
}
