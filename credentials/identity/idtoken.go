package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// ErrIDTokenRequest reports a PrincipalFromIDToken call without a client
// id or nonce: a programming error, not a property of the token.
var ErrIDTokenRequest = errors.New("identity: PrincipalFromIDToken needs a client id and a nonce")

// PrincipalFromIDToken verifies an OpenID Connect ID token issued by the
// configured issuer named issuerName (IssuerConfig.Name) to clientID, in
// answer to the authentication request that carried nonce, and builds its
// Principal with the same claim rules as an access token from that issuer
// ([Verifier.VerifyToken]). The same person therefore gets the same
// Principal.UserKey here as on the Check path, provided the ID token carries
// the issuer's user id and org claims (claims.user_id, claims.org) as its
// access tokens do. It is for sign-in flows (the connect flow), not for
// requests: an ID token is never accepted as a bearer token by VerifyToken
// when the issuer sets token_types.
//
// Checks (OpenID Connect Core 1.0 section 3.1.3.7):
//   - the signature, by the issuer's keys with an allowed algorithm; a JWS
//     typ naming an access token (at+jwt) is refused, the issuer's
//     token_types allow-list does not apply;
//   - iss is the issuer;
//   - aud contains clientID; with several audiences azp is required, and
//     azp, when present, must be clientID;
//   - the nonce claim equals nonce (compared in constant time);
//   - exp is required and not past, iat and nbf not in the future (the
//     issuer's leeway).
//
// The result is not cached. Principal.Method is "id_token". Errors are
// *TokenError as for VerifyToken (unknown_issuer when no issuer is named
// issuerName; ErrUnavailable when its keys cannot be fetched), or
// ErrIDTokenRequest when clientID or nonce is empty. It is safe for
// concurrent use.
func (v *Verifier) PrincipalFromIDToken(ctx context.Context, issuerName, rawIDToken, clientID, nonce string) (*Principal, error) {
	if clientID == "" || nonce == "" {
		return nil, ErrIDTokenRequest
	}
	var is *issuerState
	for _, st := range v.issuers {
		if st.cfg.Name == issuerName {
			is = st
			break
		}
	}
	if is == nil {
		return nil, tokenErr(ReasonUnknownIssuer, "no issuer is named "+quoteDetail(issuerName))
	}
	if rawIDToken == "" || len(rawIDToken) > maxTokenBytes {
		return nil, tokenErr(ReasonMalformed, "empty or oversized")
	}
	j, claims, err := parseJWT(rawIDToken)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(is.cfg.Algorithms, j.Header.Alg) {
		return nil, tokenErr(ReasonAlgNotAllowed, "")
	}
	if typAllowed([]string{"at+jwt"}, j.Header.Typ) {
		return nil, tokenErr(ReasonTypNotAllowed, "an access token (at+jwt) is not an ID token")
	}
	if iss, err := issClaim(claims); err != nil {
		return nil, err
	} else if iss != is.cfg.Issuer {
		return nil, tokenErr(ReasonUnknownIssuer, "iss is not issuer "+quoteDetail(issuerName))
	}
	exp, err := v.checkSigned(ctx, is, &j, claims, v.now())
	if err != nil {
		return nil, err
	}
	aud, ok := stringOrArray(claims["aud"])
	if !ok || !slices.Contains(aud, clientID) {
		return nil, tokenErr(ReasonInvalidClaim, "aud: the ID token was not issued to this client")
	}
	azp, azpPresent := claims["azp"]
	switch {
	case azpPresent && azp != clientID:
		return nil, tokenErr(ReasonInvalidClaim, "azp: not this client")
	case !azpPresent && len(aud) > 1:
		return nil, tokenErr(ReasonMissingClaim, "azp (required with several audiences)")
	}
	// Keycloak writes the token type into the payload: its access and
	// refresh tokens say so.
	if typ, _ := claims["typ"].(string); strings.EqualFold(typ, "Bearer") || slices.ContainsFunc(refreshTokenTypes, func(r string) bool { return strings.EqualFold(typ, r) }) {
		return nil, tokenErr(ReasonInvalidClaim, "typ: not an ID token")
	}
	got, _ := claims["nonce"].(string)
	if subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
		return nil, tokenErr(ReasonInvalidClaim, "nonce: not the one sent")
	}
	p, err := buildPrincipal(v.subjects, is.cfg, claims, exp)
	if err != nil {
		return nil, err
	}
	p.Method = "id_token"
	p.TokenHash = sha256.Sum256([]byte(rawIDToken))
	return p, nil
}

// quoteDetail quotes a configuration name for an error detail, shortened.
func quoteDetail(s string) string { return strconv.Quote(urlcheck.Truncate(s, 64)) }
