// Package urlcheck holds the small validation and outbound-HTTP rules that
// every mcpauthz package calling out to a URL applies the same way: https
// (or http on loopback) endpoints without credentials or fragments, RFC
// 6749 scope tokens, and response bodies bounded in size. Messages never
// echo the checked value, which may carry secrets.
package urlcheck

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// IsLoopback reports whether host is "localhost" or a loopback IP.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Endpoint returns what is wrong with raw as an outbound endpoint, or "":
// it must be an absolute https URL (http only on loopback) with no user
// info and no fragment. It never echoes raw.
func Endpoint(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "must be an absolute URL"
	}
	if u.User != nil {
		return "must not contain credentials"
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return "must not contain a fragment"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			return "must be https (or http on loopback)"
		}
	default:
		return "must be https (or http on loopback)"
	}
	return ""
}

// AbsoluteURI reports whether s is an absolute URI without a fragment or
// control characters (an RFC 8707 resource or RFC 8693 audience).
func AbsoluteURI(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme != "" && u.Fragment == "" && !strings.Contains(s, "#") && !strings.ContainsFunc(s, IsControl)
}

// ScopeToken reports whether s is an RFC 6749 section 3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ).
func ScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

// IsControl reports ASCII control characters.
func IsControl(r rune) bool { return r < 0x20 || r == 0x7f }

// Truncate shortens s to n bytes plus "..." for error messages.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// LimitTransport buffers each response body up to Max bytes and fails the
// round trip with TooLarge beyond that, so an oversized answer is a typed
// error rather than a silent truncation.
type LimitTransport struct {
	Base     http.RoundTripper
	Max      int64
	TooLarge error
}

// RoundTrip implements http.RoundTripper.
func (t *LimitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.Base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := ReadLimited(resp, t.Max, t.TooLarge)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	return resp, nil
}

// ReadLimited reads and closes resp.Body, failing with tooLarge beyond max.
func ReadLimited(resp *http.Response, max int64, tooLarge error) ([]byte, error) {
	defer resp.Body.Close()
	if resp.ContentLength > max {
		return nil, tooLarge
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, tooLarge
	}
	return b, nil
}
