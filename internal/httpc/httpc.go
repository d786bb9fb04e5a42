// Package httpc builds the HTTP clients mcpauthz uses to call out (token
// endpoints, STS, OAuth providers): a copy of the operator's client, so
// its transport (proxy, TLS roots) is kept, with a capped timeout, no
// redirects followed, and optionally response bodies bounded in size.
package httpc

import (
	"fmt"
	"net/http"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Rules are the limits New applies.
type Rules struct {
	// Timeout caps the client's timeout: the base client's own timeout
	// is kept when positive and shorter.
	Timeout time.Duration
	// Redirect is what CheckRedirect returns for every redirect:
	// http.ErrUseLastResponse hands the 3xx response to the caller (who
	// refuses it); any other error fails the call with it. Nil means
	// http.ErrUseLastResponse: a redirect is never followed.
	Redirect error
	// MaxBody, when positive, buffers each response body up to MaxBody
	// bytes and fails the round trip with TooLarge beyond that (see
	// urlcheck.LimitTransport). Zero leaves bodies to the caller.
	MaxBody int64
	// TooLarge is the error of an oversized response; nil means one
	// naming the limit.
	TooLarge error
}

// New returns a copy of base (or of a zero http.Client when base is nil)
// with r applied. base itself is never modified.
func New(base *http.Client, r Rules) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	}
	if r.MaxBody > 0 {
		rt := c.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		tooLarge := r.TooLarge
		if tooLarge == nil {
			tooLarge = fmt.Errorf("response exceeds %d bytes", r.MaxBody)
		}
		c.Transport = &urlcheck.LimitTransport{Base: rt, Max: r.MaxBody, TooLarge: tooLarge}
	}
	redirect := r.Redirect
	if redirect == nil {
		redirect = http.ErrUseLastResponse
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return redirect }
	if c.Timeout <= 0 || c.Timeout > r.Timeout {
		c.Timeout = r.Timeout
	}
	return &c
}
