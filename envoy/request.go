// Package envoy translates Envoy ext_authz v3 messages to and from the plain
// structs the rest of mcpauthz works with, and renders Envoy bootstrap
// configurations that wire Envoy's HTTP ext_authz filter to mcpauthz.
//
// FromCheckRequest turns an authv3.CheckRequest into a Request without
// copying the header map; Allow and Deny build the two CheckResponse shapes
// mcpauthz emits. All functions are safe for concurrent use; a Request must
// not be mutated while other goroutines read it.
package envoy

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// PartialBodyHeader is the header Envoy adds to CheckRequest headers when
// with_request_body is configured and a body was buffered; "true" means the
// body was truncated at max_request_bytes.
const PartialBodyHeader = "x-envoy-auth-partial-body"

// Errors returned (wrapped) by FromCheckRequest.
var (
	ErrNilRequest      = errors.New("envoy: nil CheckRequest")
	ErrNoAttributes    = errors.New("envoy: CheckRequest has no attributes")
	ErrNoRequest       = errors.New("envoy: CheckRequest has no attributes.request")
	ErrNoHTTPAttribute = errors.New("envoy: CheckRequest has no attributes.request.http")
)

// Request is the HTTP request as Envoy described it in a CheckRequest.
//
// Headers references the CheckRequest's map (lower-case keys, multi-valued
// headers joined with ","; pseudo headers such as ":authority" included), so
// it must be treated as read-only and lives as long as the CheckRequest.
type Request struct {
	ID       string // attributes.request.http.id (Envoy's stream id)
	Method   string
	Scheme   string
	Host     string // :authority
	Path     string // :path without the query
	Query    string // query without '?', "" when absent
	Protocol string // "HTTP/1.1", "HTTP/2", ...

	RawPath string // the full :path as received, query included

	Headers map[string]string
	Body    []byte // raw_body (pack_as_bytes) or []byte(body)
	Partial bool   // header x-envoy-auth-partial-body == "true"

	SourcePrincipal string // attributes.source.principal (URI SAN / SPIFFE ID)
	SourceAddress   string // "ip:port" or a pipe path
	PeerCertificate string // attributes.source.certificate (URL-encoded PEM)

	ContextExtensions map[string]string
}

// FromCheckRequest converts req into a Request. It fails with a wrapped
// ErrNilRequest, ErrNoAttributes, ErrNoRequest or ErrNoHTTPAttribute when
// the HTTP attributes are missing. It never copies the header map.
func FromCheckRequest(req *authv3.CheckRequest) (*Request, error) {
	if req == nil {
		return nil, ErrNilRequest
	}
	attrs := req.GetAttributes()
	if attrs == nil {
		return nil, ErrNoAttributes
	}
	if attrs.GetRequest() == nil {
		return nil, ErrNoRequest
	}
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		return nil, ErrNoHTTPAttribute
	}
	r := &Request{
		ID:                h.GetId(),
		Method:            h.GetMethod(),
		Scheme:            h.GetScheme(),
		Host:              h.GetHost(),
		Protocol:          h.GetProtocol(),
		RawPath:           h.GetPath(),
		Headers:           h.GetHeaders(),
		ContextExtensions: attrs.GetContextExtensions(),
	}
	if len(r.Headers) == 0 && h.GetHeaderMap() != nil {
		r.Headers = fromHeaderMap(h.GetHeaderMap())
	}
	r.Path, r.Query = r.RawPath, h.GetQuery()
	if i := strings.IndexByte(r.RawPath, '?'); i >= 0 {
		r.Path, r.Query = r.RawPath[:i], r.RawPath[i+1:]
	}
	if i := strings.IndexByte(r.Path, '#'); i >= 0 { // fragments are never sent, but be safe
		r.Path = r.Path[:i]
	}
	if raw := h.GetRawBody(); len(raw) > 0 {
		r.Body = raw
	} else if b := h.GetBody(); b != "" {
		r.Body = []byte(b)
	}
	r.Partial = r.Headers[PartialBodyHeader] == "true"
	if src := attrs.GetSource(); src != nil {
		r.SourcePrincipal = src.GetPrincipal()
		r.PeerCertificate = src.GetCertificate()
		r.SourceAddress = FormatAddress(src.GetAddress())
	}
	return r, nil
}

// fromHeaderMap flattens header_map (sent instead of headers when Envoy's
// ext_authz has encode_raw_headers: true) the way the headers map is built:
// lower-case keys, repeated headers joined with ",".
func fromHeaderMap(hm *corev3.HeaderMap) map[string]string {
	out := make(map[string]string, len(hm.GetHeaders()))
	for _, hv := range hm.GetHeaders() {
		k := strings.ToLower(hv.GetKey())
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		if prev, ok := out[k]; ok {
			v = prev + "," + v
		}
		out[k] = v
	}
	return out
}

// Header returns the value of the named request header ("" if absent).
// name is lower-cased only when it contains upper-case ASCII letters.
func (r *Request) Header(name string) string {
	if r == nil || r.Headers == nil {
		return ""
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return r.Headers[strings.ToLower(name)]
		}
	}
	return r.Headers[name]
}

// String describes the request without headers or body, which may hold
// credentials.
func (r *Request) String() string {
	if r == nil {
		return "<nil>"
	}
	return fmt.Sprintf("envoy.Request{id=%q %s %s%s source=%q principal=%q}",
		r.ID, r.Method, r.Host, r.Path, r.SourceAddress, r.SourcePrincipal)
}

// FormatAddress renders an Envoy address as "ip:port" (socket) or the pipe
// path; "" for nil or unknown kinds.
func FormatAddress(a *corev3.Address) string {
	switch {
	case a == nil:
		return ""
	case a.GetSocketAddress() != nil:
		sa := a.GetSocketAddress()
		if p, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue); ok {
			return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(p.PortValue), 10))
		}
		if n := sa.GetNamedPort(); n != "" {
			return net.JoinHostPort(sa.GetAddress(), n)
		}
		return sa.GetAddress()
	case a.GetPipe() != nil:
		return a.GetPipe().GetPath()
	}
	return ""
}
