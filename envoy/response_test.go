package envoy

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
)

func TestAllow(t *testing.T) {
	tests := []struct {
		name   string
		set    []Header
		remove []string
	}{
		{name: "empty"},
		{name: "headers and removals", set: []Header{{"x-mcpauthz-subject", "alice"}, {"authorization", "Bearer down"}},
			remove: []string{"x-mcpauthz-subject", "cookie"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := Allow(tt.set, tt.remove)
			if resp.GetStatus().GetCode() != int32(code.Code_OK) {
				t.Fatalf("status = %v", resp.GetStatus())
			}
			ok := resp.GetOkResponse()
			if ok == nil {
				t.Fatal("no ok_response")
			}
			if len(ok.GetHeaders()) != len(tt.set) {
				t.Fatalf("%d headers, want %d", len(ok.GetHeaders()), len(tt.set))
			}
			for i, h := range ok.GetHeaders() {
				if h.GetHeader().GetKey() != tt.set[i].Name || h.GetHeader().GetValue() != tt.set[i].Value {
					t.Errorf("header %d = %v", i, h.GetHeader())
				}
				if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend() != nil {
					t.Errorf("header %d append_action = %v append = %v", i, h.GetAppendAction(), h.GetAppend())
				}
			}
			if len(ok.GetHeadersToRemove()) != len(tt.remove) {
				t.Fatalf("remove = %v", ok.GetHeadersToRemove())
			}
			for i := range tt.remove {
				if ok.GetHeadersToRemove()[i] != tt.remove[i] {
					t.Errorf("remove[%d] = %q", i, ok.GetHeadersToRemove()[i])
				}
			}
			if err := resp.ValidateAll(); err != nil {
				t.Errorf("ValidateAll: %v", err)
			}
		})
	}
}

func TestDeny(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		headers    []Header
		body       string
		wantRPC    code.Code
		wantStatus int
	}{
		{"401", 401, []Header{{"www-authenticate", `Bearer resource_metadata="https://x/.well-known/oauth-protected-resource"`}}, `{"error":"x"}`, code.Code_UNAUTHENTICATED, 401},
		{"403", 403, nil, "", code.Code_PERMISSION_DENIED, 403},
		{"413", 413, []Header{{"content-type", "application/json"}}, "{}", code.Code_PERMISSION_DENIED, 413},
		{"unset", 0, nil, "", code.Code_PERMISSION_DENIED, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := Deny(tt.status, tt.headers, []byte(tt.body))
			if resp.GetStatus().GetCode() != int32(tt.wantRPC) {
				t.Errorf("rpc code = %v, want %v", resp.GetStatus().GetCode(), tt.wantRPC)
			}
			d := resp.GetDeniedResponse()
			if d == nil {
				t.Fatal("no denied_response")
			}
			if int(d.GetStatus().GetCode()) != tt.wantStatus {
				t.Errorf("http status = %d, want %d", d.GetStatus().GetCode(), tt.wantStatus)
			}
			if (d.Status == nil) != (tt.wantStatus == 0) {
				t.Errorf("status presence = %v", d.Status)
			}
			if d.GetBody() != tt.body {
				t.Errorf("body = %q", d.GetBody())
			}
			if len(d.GetHeaders()) != len(tt.headers) {
				t.Fatalf("headers = %v", d.GetHeaders())
			}
			for i, h := range d.GetHeaders() {
				if h.GetHeader().GetKey() != tt.headers[i].Name || h.GetHeader().GetValue() != tt.headers[i].Value ||
					h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
					t.Errorf("header %d = %v", i, h)
				}
			}
			if tt.wantStatus != 0 {
				if err := resp.ValidateAll(); err != nil {
					t.Errorf("ValidateAll: %v", err)
				}
			}
		})
	}
}

func TestAllocs(t *testing.T) {
	set := []Header{{"a", "1"}, {"b", "2"}, {"c", "3"}}
	remove := []string{"authorization"}
	// CheckResponse, Status, oneof wrapper, OkHttpResponse, 3 backing slices.
	if n := testing.AllocsPerRun(100, func() { _ = Allow(set, remove) }); n > 7 {
		t.Errorf("Allow: %v allocs, want <= 7", n)
	}
	body := []byte("{}")
	if n := testing.AllocsPerRun(100, func() { _ = Deny(401, set, body) }); n > 9 {
		t.Errorf("Deny: %v allocs, want <= 9", n)
	}
}

func BenchmarkAllow(b *testing.B) {
	set := []Header{{"x-mcpauthz-subject", "alice"}, {"authorization", "Bearer t"}, {"x-mcpauthz-org", "o"}}
	remove := []string{"authorization", "x-mcpauthz-subject"}
	b.ReportAllocs()
	for b.Loop() {
		_ = Allow(set, remove)
	}
}

func BenchmarkDeny(b *testing.B) {
	hs := []Header{{"www-authenticate", `Bearer error="invalid_token"`}, {"content-type", "application/json"}}
	body := []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"denied"}}`)
	b.ReportAllocs()
	for b.Loop() {
		_ = Deny(401, hs, body)
	}
}

func BenchmarkFromCheckRequest(b *testing.B) {
	req := checkReq(&authv3.AttributeContext_HttpRequest{Method: "POST", Path: "/docs/mcp?x=1",
		Headers: map[string]string{"authorization": "Bearer t", PartialBodyHeader: "false"}, RawBody: []byte("{}")})
	b.ReportAllocs()
	for b.Loop() {
		_, _ = FromCheckRequest(req)
	}
}
