package outbound

import (
	"bytes"
	"io"
	"net/http"
	"time"
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
	c.Transport = &limitTransport{base: rt, max: maxResponseBytes}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return ErrRedirect }
	if c.Timeout <= 0 || c.Timeout > timeout {
		c.Timeout = timeout
	}
	return &c
}

// limitTransport buffers response bodies up to max bytes and fails the
// round trip with ErrResponseTooLarge beyond that, so the failure is typed
// (the oauth2 library would otherwise truncate silently or stringify).
type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, ErrResponseTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, t.max+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > t.max {
		return nil, ErrResponseTooLarge
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return resp, nil
}
