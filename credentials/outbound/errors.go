package outbound

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"golang.org/x/oauth2"
)

// Reasons carried by *Error. They are short, stable and double as metric
// labels.
const (
	// ReasonTokenRejected: the token endpoint refused the request (4xx or
	// an RFC 6749 error such as invalid_client). Permanent.
	ReasonTokenRejected = "token_endpoint_rejected"
	// ReasonTokenUnavailable: 5xx, 429 or temporarily_unavailable. Transient.
	ReasonTokenUnavailable = "token_endpoint_unavailable"
	// ReasonTokenTimeout: the call exceeded its timeout. Transient.
	ReasonTokenTimeout = "token_endpoint_timeout"
	// ReasonTokenUnreachable: network failure. Transient.
	ReasonTokenUnreachable = "token_endpoint_unreachable"
	// ReasonTokenRedirect: the endpoint answered with a redirect, which is
	// never followed. Permanent.
	ReasonTokenRedirect = "token_endpoint_redirect"
	// ReasonTokenInvalidResponse: oversized, malformed or unusable token
	// response. Permanent.
	ReasonTokenInvalidResponse = "token_endpoint_invalid_response"
	// ReasonCanceled: the caller's context ended while waiting. Transient.
	ReasonCanceled = "canceled"
)

// Sentinel errors, reachable with errors.Is through *Error.
var (
	ErrResponseTooLarge = errors.New("token endpoint response exceeds 1 MiB")
	ErrRedirect         = errors.New("token endpoint redirects are not followed")
)

// Error is the error every Provider returns. Transient errors (5xx,
// timeouts, network) should make the server answer 503; permanent ones
// (4xx such as invalid_client) 403. Error never contains secrets, tokens
// or token endpoint response bodies.
type Error struct {
	Reason    string // one of the Reason* constants
	Transient bool
	Err       error // sanitized cause
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "outbound: " + e.Reason
	}
	return "outbound: " + e.Reason + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// EndpointError is the sanitized form of a token endpoint error response:
// the HTTP status and the RFC 6749 error code (only registered codes are
// kept; anything else becomes "unrecognized"). error_description and the
// body are dropped because they may echo request data.
type EndpointError struct {
	StatusCode int
	Code       string
}

func (e *EndpointError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("token endpoint answered HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("token endpoint answered HTTP %d (%s)", e.StatusCode, e.Code)
}

// knownCodes are the error codes of RFC 6749 5.2, RFC 8707 and the
// authorization endpoint's transient codes.
var knownCodes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true,
	"unauthorized_client": true, "unsupported_grant_type": true,
	"invalid_scope": true, "invalid_target": true, "access_denied": true,
	"server_error": true, "temporarily_unavailable": true,
}

// classify turns an error from the oauth2 library into a sanitized *Error.
func classify(err error) *Error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		code := re.ErrorCode
		if code != "" && !knownCodes[code] {
			code = "unrecognized"
		}
		ee := &EndpointError{StatusCode: status, Code: code}
		switch {
		case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout,
			code == "temporarily_unavailable", code == "server_error":
			return &Error{Reason: ReasonTokenUnavailable, Transient: true, Err: ee}
		case status >= 300 && status < 400:
			return &Error{Reason: ReasonTokenRedirect, Err: ee}
		default:
			return &Error{Reason: ReasonTokenRejected, Err: ee}
		}
	}
	var ne net.Error
	switch {
	case errors.Is(err, ErrResponseTooLarge):
		return &Error{Reason: ReasonTokenInvalidResponse, Err: ErrResponseTooLarge}
	case errors.Is(err, ErrRedirect):
		return &Error{Reason: ReasonTokenRedirect, Err: ErrRedirect}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &Error{Reason: ReasonTokenTimeout, Transient: true, Err: context.DeadlineExceeded}
	case errors.Is(err, context.Canceled):
		return &Error{Reason: ReasonCanceled, Transient: true, Err: context.Canceled}
	}
	var ue *url.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		// Network failure. *url.Error names the method and token URL
		// (validated to hold no credentials) and the dial error.
		return &Error{Reason: ReasonTokenUnreachable, Transient: true, Err: err}
	}
	// The oauth2 library formats parse failures with %v; do not pass its
	// text on, it may quote the response.
	return &Error{Reason: ReasonTokenInvalidResponse, Err: errors.New("malformed token response")}
}
