package outbound

import (
	"net/http"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// maxResponseBytes bounds a token endpoint response body.
const maxResponseBytes = 1 << 20

// newHTTPClient copies base (or a default client) and enforces the
// outbound rules: a timeout, no redirects, responses of at most 1 MiB.
func newHTTPClient(base *http.Client, timeout time.Duration) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	c.Transport = &urlcheck.LimitTransport{Base: rt, Max: maxResponseBytes, TooLarge: ErrResponseTooLarge}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return ErrRedirect }
	if c.Timeout <= 0 || c.Timeout > timeout {
		c.Timeout = timeout
	}
	return &c
}
