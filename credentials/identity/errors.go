package identity

import "errors"

// ErrInvalidToken is wrapped by every *TokenError: the credential is
// malformed, untrusted or out of its validity window (HTTP 401 invalid_token).
var ErrInvalidToken = errors.New("identity: invalid token")

// ErrUnavailable reports that an issuer's discovery document or JWKS could
// not be fetched, so the token could not be judged (the server answers 503).
var ErrUnavailable = errors.New("identity: identity provider unavailable")

// Reasons carried by TokenError.
const (
	ReasonMalformed       = "malformed"
	ReasonUnknownIssuer   = "unknown_issuer"
	ReasonAlgNotAllowed   = "alg_not_allowed"
	ReasonTypNotAllowed   = "typ_not_allowed"
	ReasonBadSignature    = "bad_signature"
	ReasonExpired         = "expired"
	ReasonNotYetValid     = "not_yet_valid"
	ReasonUnknownKid      = "unknown_kid"
	ReasonJWKSUnavailable = "jwks_unavailable"
	ReasonMissingClaim    = "missing_claim"
	ReasonInvalidClaim    = "invalid_claim"
	ReasonInvalidSPIFFEID = "invalid_spiffe_id"
	ReasonUntrustedDomain = "untrusted_trust_domain"
)

// TokenError describes why a credential was refused. Reason is a short
// snake_case word suitable for metrics labels. The error text never contains
// the token itself. It wraps ErrInvalidToken, except for Reason
// "jwks_unavailable", which wraps ErrUnavailable.
type TokenError struct {
	Reason string
	// Detail is an optional extra explanation composed by this package; it
	// never contains the token.
	Detail string
}

func (e *TokenError) Error() string {
	s := "identity: invalid token: " + e.Reason
	if e.Reason == ReasonJWKSUnavailable {
		s = "identity: identity provider unavailable: " + e.Reason
	}
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Unwrap returns ErrInvalidToken, or ErrUnavailable for jwks_unavailable.
func (e *TokenError) Unwrap() error {
	if e.Reason == ReasonJWKSUnavailable {
		return ErrUnavailable
	}
	return ErrInvalidToken
}

func tokenErr(reason, detail string) *TokenError {
	return &TokenError{Reason: reason, Detail: detail}
}
