package envoy

import (
	"errors"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

func checkReq(h *authv3.AttributeContext_HttpRequest) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Principal:   "spiffe://example.org/agent",
			Certificate: "-----BEGIN%20CERTIFICATE-----",
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40123}}}},
		},
		Request:           &authv3.AttributeContext_Request{Http: h},
		ContextExtensions: map[string]string{"mcp_server": "docs"},
	}}
}

func TestFromCheckRequest(t *testing.T) {
	tests := []struct {
		name    string
		req     *authv3.CheckRequest
		wantErr error
		check   func(t *testing.T, r *Request)
	}{
		{name: "nil", req: nil, wantErr: ErrNilRequest},
		{name: "no attributes", req: &authv3.CheckRequest{}, wantErr: ErrNoAttributes},
		{name: "no request", req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}, wantErr: ErrNoRequest},
		{name: "no http", req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}, wantErr: ErrNoHTTPAttribute},
		{
			name: "raw body, path with query",
			req: checkReq(&authv3.AttributeContext_HttpRequest{
				Id: "123", Method: "POST", Scheme: "https", Host: "mcp.example.com", Protocol: "HTTP/2",
				Path:    "/docs/mcp?session=abc&x=1",
				Headers: map[string]string{"content-type": "application/json", PartialBodyHeader: "false"},
				RawBody: []byte(`{"jsonrpc":"2.0"}`),
			}),
			check: func(t *testing.T, r *Request) {
				want := Request{ID: "123", Method: "POST", Scheme: "https", Host: "mcp.example.com", Protocol: "HTTP/2",
					Path: "/docs/mcp", Query: "session=abc&x=1", RawPath: "/docs/mcp?session=abc&x=1",
					SourcePrincipal: "spiffe://example.org/agent", SourceAddress: "10.0.0.7:40123",
					PeerCertificate: "-----BEGIN%20CERTIFICATE-----"}
				got := *r
				got.Headers, got.Body, got.ContextExtensions = nil, nil, nil
				if got.String() != want.String() || got.Path != want.Path || got.Query != want.Query ||
					got.RawPath != want.RawPath || got.Scheme != want.Scheme || got.Protocol != want.Protocol ||
					got.PeerCertificate != want.PeerCertificate || got.Partial {
					t.Errorf("got %+v\nwant %+v", got, want)
				}
				if string(r.Body) != `{"jsonrpc":"2.0"}` {
					t.Errorf("body = %q", r.Body)
				}
				if r.ContextExtensions["mcp_server"] != "docs" {
					t.Errorf("context extensions = %v", r.ContextExtensions)
				}
			},
		},
		{
			name: "string body, partial, no query",
			req: checkReq(&authv3.AttributeContext_HttpRequest{
				Method: "POST", Path: "/mcp", Body: "abc",
				Headers: map[string]string{PartialBodyHeader: "true"},
			}),
			check: func(t *testing.T, r *Request) {
				if string(r.Body) != "abc" || !r.Partial || r.Path != "/mcp" || r.Query != "" || r.RawPath != "/mcp" {
					t.Errorf("got body=%q partial=%v path=%q query=%q", r.Body, r.Partial, r.Path, r.Query)
				}
			},
		},
		{
			name: "raw body wins over body; empty query after ?",
			req:  checkReq(&authv3.AttributeContext_HttpRequest{Path: "/mcp?", Body: "str", RawBody: []byte("raw")}),
			check: func(t *testing.T, r *Request) {
				if string(r.Body) != "raw" || r.Path != "/mcp" || r.Query != "" || r.Partial {
					t.Errorf("got body=%q path=%q query=%q", r.Body, r.Path, r.Query)
				}
			},
		},
		{
			name: "no body, no source",
			req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/.well-known/oauth-protected-resource"}}}},
			check: func(t *testing.T, r *Request) {
				if r.Body != nil || r.SourcePrincipal != "" || r.SourceAddress != "" || r.Path != "/.well-known/oauth-protected-resource" {
					t.Errorf("got %+v", r)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := FromCheckRequest(tt.req)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || r != nil {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "envoy: ") {
					t.Errorf("error %q lacks package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

func TestFromCheckRequestSharesHeaderMap(t *testing.T) {
	req := checkReq(&authv3.AttributeContext_HttpRequest{Path: "/", Headers: map[string]string{"a": "1"}})
	r, err := FromCheckRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	req.Attributes.Request.Http.Headers["b"] = "2"
	if r.Headers["b"] != "2" {
		t.Fatal("Headers was copied; want the CheckRequest's map")
	}
}

func TestRequestHeader(t *testing.T) {
	r := &Request{Headers: map[string]string{"authorization": "Bearer x", ":authority": "h"}}
	for _, tt := range []struct{ name, want string }{
		{"authorization", "Bearer x"}, {"Authorization", "Bearer x"}, {":authority", "h"}, {"missing", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.Header(tt.name); got != tt.want {
				t.Errorf("Header(%q) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
	if (*Request)(nil).Header("x") != "" {
		t.Error("nil request")
	}
}

func TestRequestStringHasNoSecrets(t *testing.T) {
	req := checkReq(&authv3.AttributeContext_HttpRequest{Path: "/mcp", RawBody: []byte("secret-body"),
		Headers: map[string]string{"authorization": "Bearer secret-token"}})
	r, err := FromCheckRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	s := r.String()
	for _, secret := range []string{"secret-token", "secret-body", "BEGIN"} {
		if strings.Contains(s, secret) {
			t.Errorf("String() %q leaks %q", s, secret)
		}
	}
}

func FuzzFromCheckRequest(f *testing.F) {
	seed, _ := proto.Marshal(checkReq(&authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/mcp?a=b",
		Headers: map[string]string{PartialBodyHeader: "true"}, RawBody: []byte("{}")}))
	f.Add(seed, "")
	f.Add([]byte{}, "body")
	f.Add([]byte{0x0a, 0x00}, "")
	f.Fuzz(func(t *testing.T, data []byte, body string) {
		var cr authv3.CheckRequest
		if err := proto.Unmarshal(data, &cr); err != nil {
			return
		}
		if h := cr.GetAttributes().GetRequest().GetHttp(); h != nil && body != "" {
			h.Body = body
		}
		r, err := FromCheckRequest(&cr)
		if err != nil {
			if r != nil {
				t.Fatal("non-nil Request with error")
			}
			return
		}
		h := cr.GetAttributes().GetRequest().GetHttp()
		if strings.Contains(r.Path, "?") {
			t.Fatalf("path %q contains '?'", r.Path)
		}
		if raw := h.GetPath(); !strings.Contains(raw, "#") {
			rebuilt := r.Path
			if strings.Contains(raw, "?") {
				rebuilt += "?" + r.Query
			}
			if rebuilt != raw {
				t.Fatalf("path %q + query %q != %q", r.Path, r.Query, raw)
			}
		}
		if r.RawPath != h.GetPath() {
			t.Fatalf("RawPath %q != %q", r.RawPath, h.GetPath())
		}
		if r.Partial != (h.GetHeaders()[PartialBodyHeader] == "true") {
			t.Fatal("partial flag mismatch")
		}
		want := h.GetRawBody()
		if len(want) == 0 {
			want = []byte(h.GetBody())
		}
		if string(r.Body) != string(want) {
			t.Fatalf("body %q != %q", r.Body, want)
		}
		_ = r.String()
	})
}

// TestFromCheckRequestHeaderMap: with encode_raw_headers Envoy sends
// header_map instead of headers; both read the same.
func TestFromCheckRequestHeaderMap(t *testing.T) {
	req := checkReq(&authv3.AttributeContext_HttpRequest{
		Method: "POST", Path: "/mcp",
		HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "Authorization", RawValue: []byte("Bearer abc")},
			{Key: "x-dup", Value: "a"},
			{Key: "X-Dup", RawValue: []byte("b")},
		}},
	})
	r, err := FromCheckRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if r.Headers["authorization"] != "Bearer abc" || r.Headers["x-dup"] != "a,b" {
		t.Fatalf("headers = %v", r.Headers)
	}
}
