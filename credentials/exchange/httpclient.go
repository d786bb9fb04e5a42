package exchange

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"time"
)

// maxResponseBytes bounds an STS or JWKS response body.
const maxResponseBytes = 1 << 20

// newHTTPClient copies base (or a default client) and enforces the rules
// for calls to the STS: a timeout and no redirects (a redirect response is
// returned as is and refused by the caller). Bodies are bounded where they
// are read.
func newHTTPClient(base *http.Client, timeout time.Duration) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if c.Timeout <= 0 || c.Timeout > timeout {
		c.Timeout = timeout
	}
	return &c
}

// errTooLarge fails a JWKS fetch whose body exceeds maxResponseBytes.
var errTooLarge = errors.New("response exceeds 1 MiB")

// limitTransport buffers response bodies up to max bytes and fails the
// round trip beyond that. It guards the JWKS client (go-oidc reads bodies
// without a bound).
type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := readLimited(resp, t.max)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return resp, nil
}

// readLimited reads and closes resp.Body, failing with errTooLarge beyond max.
func readLimited(resp *http.Response, max int64) ([]byte, error) {
	defer resp.Body.Close()
	if resp.ContentLength > max {
		return nil, errTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, errTooLarge
	}
	return b, nil
}
