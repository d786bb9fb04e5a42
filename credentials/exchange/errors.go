package exchange

import (
	"fmt"
	"regexp"
	"strings"
)

// Reasons carried by *Error. They are short, stable and double as metric
// labels. A 4xx OAuth error from the STS has Reason "sts_rejected_" + Code
// for the registered codes (invalid_request, invalid_client, invalid_grant,
// unauthorized_client, unsupported_grant_type, invalid_scope,
// invalid_target, access_denied, interaction_required, consent_required,
// login_required) and ReasonRejected otherwise.
const (
	// ReasonRejected: the STS refused the request with an unrecognized or
	// missing OAuth error code. Permanent.
	ReasonRejected = "sts_rejected"
	// ReasonUnavailable: 5xx, 429, 408, server_error or
	// temporarily_unavailable. Transient.
	ReasonUnavailable = "sts_unavailable"
	// ReasonTimeout: the exchange exceeded its timeout. Transient.
	ReasonTimeout = "sts_timeout"
	// ReasonUnreachable: connection failure. Transient.
	ReasonUnreachable = "sts_unreachable"
	// ReasonCanceled: the caller's context was canceled. Transient.
	ReasonCanceled = "canceled"
	// ReasonRedirect: the STS answered with a redirect, which is never
	// followed. Permanent.
	ReasonRedirect = "sts_redirect"
	// ReasonBadResponse: a 200 response that is oversized (over 1 MiB),
	// not JSON, or lacks a required member (access_token, and
	// issued_token_type for RFC 8693), or whose token is not usable as a
	// bearer token, already expired or broader in scope than requested.
	// Permanent.
	ReasonBadResponse = "sts_bad_response"
	// ReasonIssuedWrongAudience: the issued JWT's aud lacks the expected
	// audience. Permanent.
	ReasonIssuedWrongAudience = "issued_wrong_audience"
	// ReasonIssuedWrongActor: the issued JWT's act.sub is not the expected
	// actor. Permanent.
	ReasonIssuedWrongActor = "issued_wrong_actor"
	// ReasonIssuedOpaque: the issued token is not a JWT, so it cannot be
	// checked, and allow_opaque is off. Permanent.
	ReasonIssuedOpaque = "issued_opaque"
	// ReasonIssuedInvalid: the issued JWT failed signature or issuer
	// verification (only with issued_issuer/jwks_url). Permanent.
	ReasonIssuedInvalid = "issued_invalid"
	// ReasonBadRequest: the Request itself is unusable (no subject token,
	// invalid scope token, no audience/resource known). Permanent; no call
	// was made.
	ReasonBadRequest = "exchange_request_invalid"
)

// Error is the error Exchange returns. It never contains the subject or
// actor token, the client secret or assertion, the issued token, or the
// response body. Description is the STS's error_description, restricted to
// the RFC 6749 character set, with anything token-like redacted and cut to
// 160 bytes.
type Error struct {
	Status      int    // HTTP status of the STS response; 0 when there was none
	Code        string // OAuth error code, e.g. "invalid_target"; "" when none
	Description string // sanitized error_description or a short explanation
	Transient   bool   // retrying later may succeed (answer 503 rather than 403)
	Reason      string // one of the Reason* constants or "sts_rejected_"+Code
	Err         error  // sanitized cause (e.g. context.DeadlineExceeded), may be nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("exchange: ")
	b.WriteString(e.Reason)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != "" {
		b.WriteString(" error=")
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %q", e.Description)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// knownCodes are the RFC 6749 5.2, RFC 8707 and OpenID Connect error codes.
var knownCodes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true,
	"unauthorized_client": true, "unsupported_grant_type": true,
	"invalid_scope": true, "invalid_target": true, "access_denied": true,
	"server_error": true, "temporarily_unavailable": true,
	// OpenID Connect Core 3.1.2.6; Entra returns interaction_required from
	// the on-behalf-of grant when conditional access needs the user.
	"interaction_required": true, "consent_required": true, "login_required": true,
}

const maxDescription = 160

// tokenLike matches JWT-like and long base64/hex-ish runs that could be a
// token or secret echoed by the STS.
var tokenLike = regexp.MustCompile(`[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*|[A-Za-z0-9+/_=~.\-]{32,}`)

// sanitize cleans an error_description: it drops characters outside RFC
// 6749's %x20-21 / %x23-5B / %x5D-7E, replaces each of secrets and anything
// token-like with [redacted] and truncates. When a secret can still be read
// in the result (a replacement next to a piece of it can form it again),
// the whole description is dropped.
func sanitize(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = descriptionChars(s)
	for _, sec := range secrets { // again, in case stripping joined pieces
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = tokenLike.ReplaceAllString(s, "[redacted]")
	if len(s) > maxDescription { // ASCII only by now: a byte cut is a character cut
		s = s[:maxDescription] + "..."
	}
	// Checked on exactly what is returned: the ellipsis, like a
	// replacement, can complete a piece of a secret ("000" + "...").
	for _, sec := range secrets {
		if len(sec) < 4 {
			continue
		}
		if clean := descriptionChars(sec); strings.Contains(s, sec) || (len(clean) >= 4 && strings.Contains(s, clean)) {
			return "[redacted]"
		}
	}
	return s
}

// descriptionChars keeps the characters RFC 6749 allows in an
// error_description.
func descriptionChars(s string) string {
	return strings.Map(func(r rune) rune {
		if r == 0x20 || r == 0x21 || (r >= 0x23 && r <= 0x5b) || (r >= 0x5d && r <= 0x7e) {
			return r
		}
		return -1
	}, s)
}

// codeOf keeps registered error codes and maps anything else to
// "unrecognized" (codes are echoed in errors and metrics).
func codeOf(c string) string {
	switch {
	case c == "":
		return ""
	case knownCodes[c]:
		return c
	default:
		return "unrecognized"
	}
}
