package identity

import "errors"

// ErrInvalidToken is wrapped by every *TokenError: the credential is
// malformed, untrusted or out of its validity window (HTTP 401 invalid_token).
var ErrInvalidToken = errors.New("identity: invalid token")

// ErrUnavailable reports that an issuer's discovery document, JWKS or
// introspection endpoint could not be reached, so the token could not be
// judged (the server answers 503).
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
	// ReasonAmbiguousSubject: a globally unique issuer's subject has the
	// form of another issuer's qualified subject or of a SPIFFE id.
	ReasonAmbiguousSubject = "ambiguous_subject"
	// ReasonInactive: the introspection endpoint answered "active": false
	// (revoked, expired or unknown token).
	ReasonInactive = "inactive"
	// ReasonIntrospectionFailed: the introspection endpoint refused the
	// request (4xx) or answered with something other than a JSON object.
	ReasonIntrospectionFailed = "introspection_failed"
	// ReasonIntrospectionUnavailable: the introspection endpoint could not
	// be reached, timed out or answered 5xx/429. Wraps ErrUnavailable.
	ReasonIntrospectionUnavailable = "introspection_unavailable"
)

// TokenError describes why a credential was refused. Reason is a short
// snake_case word suitable for metrics labels. The error text never contains
// the token itself. It wraps ErrInvalidToken, except for Reasons
// "jwks_unavailable" and "introspection_unavailable", which wrap
// ErrUnavailable.
type TokenError struct {
	Reason string
	// Detail is an optional extra explanation composed by this package; it
	// never contains the token.
	Detail string
}

func (e *TokenError) Error() string {
	s := "identity: invalid token: " + e.Reason
	if e.unavailable() {
		s = "identity: identity provider unavailable: " + e.Reason
	}
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

func (e *TokenError) unavailable() bool {
	return e.Reason == ReasonJWKSUnavailable || e.Reason == ReasonIntrospectionUnavailable
}

// Unwrap returns ErrInvalidToken, or ErrUnavailable for jwks_unavailable
// and introspection_unavailable.
func (e *TokenError) Unwrap() error {
	if e.unavailable() {
		return ErrUnavailable
	}
	return ErrInvalidToken
}

func tokenErr(reason, detail string) *TokenError {
	return &TokenError{Reason: reason, Detail: detail}
}
