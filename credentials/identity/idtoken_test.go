package identity

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

// The connect flow's sign-in, end to end: a browser login at devidp (code +
// PKCE), the ID token judged by PrincipalFromIDToken, and the access token
// from the same login judged by VerifyToken give the same user key.
func TestPrincipalFromIDTokenSignIn(t *testing.T) {
	clk := newClock()
	idp, err := devidp.New(devidp.Options{Now: clk.Now, Clients: map[string]string{"mcpauthz-connect": "cs"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{{Name: "dev", Issuer: idp.URL(), UserNamespace: "people"}}})
	ctx := context.Background()

	cfg := &oauth2.Config{
		ClientID: "mcpauthz-connect", ClientSecret: "cs",
		Endpoint:    oauth2.Endpoint{AuthURL: idp.URL() + "/authorize", TokenURL: idp.URL() + "/token", AuthStyle: oauth2.AuthStyleInHeader},
		RedirectURL: "http://127.0.0.1:43210/connect/login/callback", Scopes: []string{oidc.ScopeOpenID, "profile"},
	}
	pkce := oauth2.GenerateVerifier()
	cb, err := oauthtest.Authorize(ctx, cfg.AuthCodeURL("st", oidc.Nonce("n-123"), oauth2.S256ChallengeOption(pkce)), "carol", "carol")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, cb.Query().Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatal(err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		t.Fatal("no id_token")
	}
	p, err := v.PrincipalFromIDToken(ctx, "dev", rawID, "mcpauthz-connect", "n-123")
	if err != nil {
		t.Fatal(err)
	}
	if p.Method != "id_token" || p.Kind != KindHuman || p.Subject != "carol" || p.UserKey != "people|acme|carol" ||
		p.QualifiedSubject != "people/carol" || len(p.Roles) != 1 || p.Roles[0] != "admin" {
		t.Fatalf("principal %+v", p)
	}
	at, err := v.VerifyToken(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if at.UserKey != p.UserKey || at.QualifiedSubject != p.QualifiedSubject {
		t.Fatalf("access token key %q subject %q, ID token key %q subject %q", at.UserKey, at.QualifiedSubject, p.UserKey, p.QualifiedSubject)
	}
	// The ID token is bound to its nonce and client.
	if _, err := v.PrincipalFromIDToken(ctx, "dev", rawID, "mcpauthz-connect", "n-124"); reason(err) != ReasonInvalidClaim {
		t.Fatalf("other nonce: %v", err)
	}
	if _, err := v.PrincipalFromIDToken(ctx, "dev", rawID, "other-client", "n-123"); reason(err) != ReasonInvalidClaim {
		t.Fatalf("other client: %v", err)
	}
	// And it is not an access token: the access token is not an ID token.
	if _, err := v.PrincipalFromIDToken(ctx, "dev", tok.AccessToken, "mcpauthz-connect", "n-123"); err == nil {
		t.Fatal("access token accepted as an ID token")
	}
}

func TestPrincipalFromIDToken(t *testing.T) {
	clk := newClock()
	idp := startIdP(t, clk)
	other := startIdP(t, clk)
	rogue := startIdP(t, clk)
	v := newVerifier(t, clk, Config{Issuers: []IssuerConfig{
		// token_types governs access tokens only.
		{Name: "main", Issuer: idp.URL(), UserNamespace: "people", TokenTypes: []string{"at+jwt"}, Claims: ClaimsConfig{UserID: "oid"}},
		{Name: "other", Issuer: other.URL()},
	}})
	const client, nonce = "connect", "n0nce"
	jwt := devidp.WithHeader("typ", "JWT")
	idClaims := func(extra map[string]any) map[string]any {
		m := map[string]any{"sub": "pairwise-1", "oid": json.Number("9007199254740993"), "aud": client, "nonce": nonce,
			"org_id": "acme", "typ": "ID", "azp": nil}
		for k, x := range extra {
			m[k] = x
		}
		return m
	}
	forged := idClaims(map[string]any{"iss": idp.URL()})
	tests := []struct {
		name, issuer, token string
		clientID, nonce     string
		reason              string // "" = success
	}{
		{name: "valid", token: idp.MustMint(idClaims(nil), jwt)},
		{name: "several audiences with azp", token: idp.MustMint(idClaims(map[string]any{"aud": []string{"api", client}, "azp": client}), jwt)},
		{name: "no typ header", token: idp.MustMint(idClaims(nil), devidp.WithHeader("typ", ""))},
		{name: "other nonce", token: idp.MustMint(idClaims(map[string]any{"nonce": "x"}), jwt), reason: ReasonInvalidClaim},
		{name: "no nonce", token: idp.MustMint(idClaims(map[string]any{"nonce": nil}), jwt), reason: ReasonInvalidClaim},
		{name: "nonce not a string", token: idp.MustMint(idClaims(map[string]any{"nonce": []string{nonce}}), jwt), reason: ReasonInvalidClaim},
		{name: "other audience", token: idp.MustMint(idClaims(map[string]any{"aud": "someone-else"}), jwt), reason: ReasonInvalidClaim},
		{name: "several audiences without azp", token: idp.MustMint(idClaims(map[string]any{"aud": []string{client, "api"}}), jwt), reason: ReasonMissingClaim},
		{name: "azp of another client", token: idp.MustMint(idClaims(map[string]any{"azp": "someone-else"}), jwt), reason: ReasonInvalidClaim},
		{name: "an access token (typ at+jwt)", token: idp.MustMint(idClaims(nil)), reason: ReasonTypNotAllowed},
		{name: "a Keycloak access token (typ Bearer)", token: idp.MustMint(idClaims(map[string]any{"typ": "Bearer"}), jwt), reason: ReasonInvalidClaim},
		{name: "a Keycloak refresh token", token: idp.MustMint(idClaims(map[string]any{"typ": "Refresh"}), jwt), reason: ReasonInvalidClaim},
		{name: "expired", token: idp.MustMint(idClaims(nil), jwt, devidp.WithExpiry(-time.Hour)), reason: ReasonExpired},
		{name: "issued in the future", token: idp.MustMint(idClaims(map[string]any{"iat": clk.Now().Add(time.Hour).Unix()}), jwt), reason: ReasonNotYetValid},
		{name: "another configured issuer's token", token: other.MustMint(idClaims(nil), jwt), reason: ReasonUnknownIssuer},
		{name: "forged with another key", token: rogue.MustMint(forged, jwt), reason: "untrusted key"},
		{name: "HS256 with the public key", token: idp.MintHS256WithPublicKey(idClaims(nil)), reason: ReasonAlgNotAllowed},
		{name: "alg none", token: idp.MintNone(idClaims(nil)), reason: ReasonAlgNotAllowed},
		{name: "unknown issuer name", issuer: "nope", token: idp.MustMint(idClaims(nil), jwt), reason: ReasonUnknownIssuer},
		{name: "user id of the wrong type", token: idp.MustMint(idClaims(map[string]any{"oid": json.Number("1.5")}), jwt), reason: ReasonInvalidClaim},
		{name: "not a JWS", token: "abc", reason: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			issuer := tc.issuer
			if issuer == "" {
				issuer = "main"
			}
			p, err := v.PrincipalFromIDToken(context.Background(), issuer, tc.token, client, nonce)
			switch {
			case tc.reason == "untrusted key":
				if r := reason(err); r != ReasonUnknownKid && r != ReasonBadSignature {
					t.Fatalf("reason %q (%v)", r, err)
				}
			case reason(err) != tc.reason:
				t.Fatalf("reason %q (%v), want %q", reason(err), err, tc.reason)
			case err == nil:
				if p.Method != "id_token" || p.UserID != "9007199254740993" || p.UserKey != "people|acme|9007199254740993" || p.Kind != KindHuman {
					t.Fatalf("principal %+v", p)
				}
			}
		})
	}
	for _, args := range [][2]string{{"", nonce}, {client, ""}} {
		if _, err := v.PrincipalFromIDToken(context.Background(), "main", idp.MustMint(idClaims(nil), jwt), args[0], args[1]); !errors.Is(err, ErrIDTokenRequest) {
			t.Fatalf("client %q nonce %q: %v", args[0], args[1], err)
		}
	}
	// An ID token is not a bearer token where token_types asks for at+jwt.
	if _, err := v.VerifyToken(context.Background(), idp.MustMint(idClaims(nil), jwt)); reason(err) != ReasonTypNotAllowed {
		t.Fatalf("ID token as bearer: %v", err)
	}
}
