package emulator

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/mcpauthz/mcpauthz/envoy"
)

func (h *harness) calls() int {
	h.authz.mu.Lock()
	defer h.authz.mu.Unlock()
	return h.authz.calls
}

func (h *harness) respond(fn func(*authv3.CheckRequest) *authv3.CheckResponse) {
	h.authz.mu.Lock()
	h.authz.respond = fn
	h.authz.mu.Unlock()
}

// corsHarness serves /docs/ with the generated MCP policy for
// https://chat.example.com (plus extra), /plain/ without a policy.
func corsHarness(t *testing.T, extra func(*CORSPolicy)) *harness {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "https://upstream-says.example") // Envoy overwrites it
		w.Header().Set("Mcp-Session-Id", "s-1")
		_, _ = w.Write([]byte("upstream ok"))
	}))
	t.Cleanup(up.Close)
	pol := MCPCORS("https://chat.example.com")
	if extra != nil {
		extra(pol)
	}
	return newHarness(t, "", Config{Routes: []Route{
		{Name: "docs", PathPrefix: "/docs/", Upstream: up.URL, ContextExtensions: map[string]string{"mcp_server": "docs"}, CORS: pol},
		{Name: "plain", PathPrefix: "/plain/", Upstream: up.URL, ContextExtensions: map[string]string{"mcp_server": "plain"}},
	}})
}

func TestCORSFilter(t *testing.T) {
	const allowed, foreign = "https://chat.example.com", "https://evil.example"
	preflight := func(origin string) map[string][]string {
		return map[string][]string{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"authorization,content-type"}}
	}
	deny401 := func(*authv3.CheckRequest) *authv3.CheckResponse {
		return envoy.Deny(401, []envoy.Header{{Name: "www-authenticate", Value: `Bearer resource_metadata="m"`}}, []byte(`{"error":"no token"}`))
	}
	tests := []struct {
		name       string
		policy     func(*CORSPolicy)
		method     string
		path       string
		hdr        map[string][]string
		authz      func(*authv3.CheckRequest) *authv3.CheckResponse
		wantStatus int
		wantChecks int
		wantHeader map[string]string // "" = must be absent
		wantBody   string
	}{
		{name: "preflight from an allowed origin is answered by Envoy", method: "OPTIONS", path: "/docs/mcp", hdr: preflight(allowed),
			wantStatus: 200, wantChecks: 0, wantBody: "",
			wantHeader: map[string]string{
				"Access-Control-Allow-Origin": allowed, "Access-Control-Allow-Methods": envoy.CORSAllowMethods,
				"Access-Control-Allow-Headers": envoy.CORSAllowHeaders, "Access-Control-Expose-Headers": envoy.CORSExposeHeaders,
				"Access-Control-Allow-Credentials": "", "Access-Control-Max-Age": "", "Content-Length": "0",
			}},
		{name: "allowed origin in another case", method: "OPTIONS", path: "/docs/mcp", hdr: preflight("HTTPS://Chat.Example.com"),
			wantStatus: 200, wantChecks: 0, wantHeader: map[string]string{"Access-Control-Allow-Origin": "HTTPS://Chat.Example.com"}},
		{name: "preflight from a foreign origin goes on to ext_authz", method: "OPTIONS", path: "/docs/mcp", hdr: preflight(foreign),
			authz: func(*authv3.CheckRequest) *authv3.CheckResponse {
				return envoy.Deny(403, nil, []byte("origin not allowed"))
			},
			wantStatus: 403, wantChecks: 1, wantBody: "origin not allowed",
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Access-Control-Expose-Headers": ""}},
		{name: "foreign preflight answered when forward_not_matching_preflights is false", policy: func(p *CORSPolicy) { p.AnswerForeignPreflights = true },
			method: "OPTIONS", path: "/docs/mcp", hdr: preflight(foreign), wantStatus: 200, wantChecks: 0,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": envoy.CORSAllowMethods}},
		{name: "OPTIONS without Access-Control-Request-Method is no preflight", method: "OPTIONS", path: "/docs/mcp",
			hdr: map[string][]string{"Origin": {allowed}}, wantStatus: 200, wantChecks: 1, wantBody: "upstream ok",
			wantHeader: map[string]string{"Access-Control-Allow-Origin": allowed, "Access-Control-Allow-Methods": ""}},
		{name: "route without a CORS policy", method: "OPTIONS", path: "/plain/mcp", hdr: preflight(allowed), authz: deny401,
			wantStatus: 401, wantChecks: 1, wantHeader: map[string]string{"Access-Control-Allow-Origin": ""}},
		{name: "allowed origin: upstream response gets the CORS headers", method: "POST", path: "/docs/mcp",
			hdr: map[string][]string{"Origin": {allowed}, "Content-Type": {"application/json"}}, wantStatus: 200, wantChecks: 1, wantBody: "upstream ok",
			wantHeader: map[string]string{"Access-Control-Allow-Origin": allowed, "Access-Control-Expose-Headers": envoy.CORSExposeHeaders, "Mcp-Session-Id": "s-1"}},
		{name: "allowed origin: ext_authz's refusal gets them too", method: "POST", path: "/docs/mcp",
			hdr: map[string][]string{"Origin": {allowed}}, authz: deny401, wantStatus: 401, wantChecks: 1, wantBody: `{"error":"no token"}`,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": allowed, "Access-Control-Expose-Headers": envoy.CORSExposeHeaders,
				"Www-Authenticate": `Bearer resource_metadata="m"`}},
		{name: "foreign origin: no CORS headers", method: "POST", path: "/docs/mcp", hdr: map[string][]string{"Origin": {foreign}},
			wantStatus: 200, wantChecks: 1, wantHeader: map[string]string{"Access-Control-Allow-Origin": "https://upstream-says.example", "Access-Control-Expose-Headers": ""}},
		{name: "no Origin: untouched", method: "GET", path: "/docs/mcp", wantStatus: 200, wantChecks: 1,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "https://upstream-says.example"}},
		{name: "credentials and a wildcard entry", policy: func(p *CORSPolicy) { p.AllowOrigins = []string{"*"}; p.AllowCredentials = true; p.MaxAge = "600" },
			method: "OPTIONS", path: "/docs/mcp", hdr: preflight(foreign), wantStatus: 200, wantChecks: 0,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": foreign, "Access-Control-Allow-Credentials": "true", "Access-Control-Max-Age": "600"}},
		{name: "methods and headers echoed for *", policy: func(p *CORSPolicy) { p.AllowMethods, p.AllowHeaders = "*", "*" },
			method: "OPTIONS", path: "/docs/mcp", hdr: preflight(allowed), wantStatus: 200, wantChecks: 0,
			wantHeader: map[string]string{"Access-Control-Allow-Methods": "POST", "Access-Control-Allow-Headers": "authorization,content-type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := corsHarness(t, tt.policy)
			if tt.authz != nil {
				h.respond(tt.authz)
			}
			res, body := do(t, nil, tt.method, h.front.URL+tt.path, tt.hdr, "")
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d (%s)", res.StatusCode, tt.wantStatus, body)
			}
			if tt.wantBody != "" || tt.wantChecks == 0 {
				if body != tt.wantBody {
					t.Errorf("body %q, want %q", body, tt.wantBody)
				}
			}
			if got := h.calls(); got != tt.wantChecks {
				t.Errorf("%d Check calls, want %d", got, tt.wantChecks)
			}
			for k, v := range tt.wantHeader {
				if got := res.Header.Values(k); (v == "" && len(got) != 0) || (v != "" && !slices.Equal(got, []string{v})) {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if tt.wantChecks == 0 && h.upstream.count() != 0 {
				t.Error("a preflight answered by Envoy reached the upstream")
			}
		})
	}
}

func TestCORSConfigValidate(t *testing.T) {
	_, err := New(t.Context(), Config{AuthzAddr: "x:1", Routes: []Route{{PathPrefix: "/", Upstream: "http://x", CORS: &CORSPolicy{}}}})
	if err == nil || !strings.Contains(err.Error(), "routes[0].cors.allow_origins") {
		t.Fatalf("err = %v", err)
	}
}

func TestHeadersWithUnderscores(t *testing.T) {
	tests := []struct {
		action     string
		wantStatus int
		wantChecks int
		wantSeen   bool // x_mcp_subject reaches the CheckRequest and the upstream
	}{
		{"", 400, 0, false},
		{"REJECT_REQUEST", 400, 0, false},
		{"DROP_HEADER", 200, 1, false},
		{"ALLOW", 200, 1, true},
	}
	for _, tt := range tests {
		t.Run("action="+tt.action, func(t *testing.T) {
			h := newHarness(t, "", Config{HeadersWithUnderscoresAction: tt.action})
			var seen []string
			h.respond(func(c *authv3.CheckRequest) *authv3.CheckResponse {
				if v, ok := c.GetAttributes().GetRequest().GetHttp().GetHeaders()["x_mcp_subject"]; ok {
					seen = append(seen, v)
				}
				return envoy.Allow(nil, nil)
			})
			res, _ := do(t, nil, "GET", h.front.URL+"/docs/mcp", map[string][]string{"X_mcp_subject": {"root"}}, "")
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.wantStatus)
			}
			if got := h.calls(); got != tt.wantChecks {
				t.Errorf("%d Check calls, want %d", got, tt.wantChecks)
			}
			if tt.wantChecks == 0 {
				if h.upstream.count() != 0 {
					t.Error("upstream reached")
				}
				return
			}
			up := h.upstream.last(t).Header
			if got := (len(seen) == 1 && seen[0] == "root") && up.Get("X_mcp_subject") == "root"; got != tt.wantSeen {
				t.Errorf("header passed on = %v, want %v (check %q, upstream %q)", got, tt.wantSeen, seen, up.Values("X_mcp_subject"))
			}
			if !tt.wantSeen && (len(seen) != 0 || len(up.Values("X_mcp_subject")) != 0) {
				t.Errorf("dropped header still seen: check %q upstream %q", seen, up.Values("X_mcp_subject"))
			}
		})
	}
	if _, err := New(t.Context(), Config{AuthzAddr: "x:1", HeadersWithUnderscoresAction: "drop"}); err == nil ||
		!strings.Contains(err.Error(), "headers_with_underscores_action") {
		t.Errorf("bad action accepted: %v", err)
	}
}

// TestRepeatedHeaders: Envoy joins repeated lines with "," in headers and,
// with encode_raw_headers, sends each in header_map; envoy.FromCheckRequest
// reads both the same way.
func TestRepeatedHeaders(t *testing.T) {
	hdr := map[string][]string{"Mcp-Session-Id": {"sess-a", "sess-b"}, "X-Bin": {"a\xffb"}, "Authorization": {"Bearer t"}}
	for _, raw := range []bool{false, true} {
		t.Run(map[bool]string{false: "headers", true: "header_map"}[raw], func(t *testing.T) {
			h := newHarness(t, "", Config{EncodeRawHeaders: raw})
			do(t, nil, "POST", h.front.URL+"/docs/mcp", hdr, `{"jsonrpc":"2.0"}`)
			c := <-h.checks
			hr := c.GetAttributes().GetRequest().GetHttp()
			var sessions []string
			if raw {
				if len(hr.GetHeaders()) != 0 {
					t.Errorf("headers set with encode_raw_headers: %v", hr.GetHeaders())
				}
				var last string
				for _, hv := range hr.GetHeaderMap().GetHeaders() {
					if hv.GetValue() != "" {
						t.Errorf("%s: value %q set, Envoy sends raw_value", hv.GetKey(), hv.GetValue())
					}
					if hv.GetKey() == "mcp-session-id" {
						sessions = append(sessions, string(hv.GetRawValue()))
					}
					if hv.GetKey() == "x-bin" && string(hv.GetRawValue()) != "a\xffb" {
						t.Errorf("x-bin = %q, want the raw bytes", hv.GetRawValue())
					}
					last = hv.GetKey()
				}
				if last != envoy.PartialBodyHeader {
					t.Errorf("last header_map entry %q, want %s", last, envoy.PartialBodyHeader)
				}
				if !slices.Equal(sessions, []string{"sess-a", "sess-b"}) {
					t.Errorf("header_map mcp-session-id lines = %q", sessions)
				}
			} else {
				if hr.GetHeaderMap() != nil {
					t.Error("header_map set without encode_raw_headers")
				}
				if got := hr.GetHeaders()["mcp-session-id"]; got != "sess-a,sess-b" {
					t.Errorf("headers[mcp-session-id] = %q", got)
				}
				if got := hr.GetHeaders()["x-bin"]; got != "a!b" {
					t.Errorf("headers[x-bin] = %q, want invalid UTF-8 as '!'", got)
				}
			}
			r, err := envoy.FromCheckRequest(c)
			if err != nil {
				t.Fatal(err)
			}
			if r.Header("mcp-session-id") != "sess-a,sess-b" || r.Header("authorization") != "Bearer t" || r.Partial ||
				r.Header(":path") != "/docs/mcp" || r.Header("x-envoy-auth-partial-body") != "false" {
				t.Errorf("FromCheckRequest headers = %v", r.Headers)
			}
			if got := h.upstream.last(t).Header.Values("Mcp-Session-Id"); !slices.Equal(got, []string{"sess-a", "sess-b"}) {
				t.Errorf("upstream Mcp-Session-Id lines = %q", got)
			}
		})
	}
}

func TestRoutesFrom(t *testing.T) {
	routes, err := RoutesFrom(envoy.ExampleParams())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Route{}
	for _, r := range routes {
		byName[r.Name] = r
	}
	meta, docs := byName["metadata.docs"], byName["docs"]
	if meta.Path != "/.well-known/oauth-protected-resource/docs/mcp" || meta.PathPrefix != "" || !meta.DisableExtAuthz || meta.CORS != nil ||
		meta.Upstream != "http://mcpauthz:8181" {
		t.Errorf("metadata route = %+v", meta)
	}
	if docs.PathPrefix != "/docs/" || docs.ContextExtensions["mcp_server"] != "docs" || docs.DisableExtAuthz || docs.Upstream != "http://docs-mcp:8000" ||
		docs.CORS == nil || !slices.Equal(docs.CORS.AllowOrigins, []string{"https://mcp.example.com", "https://chat.example.com"}) ||
		docs.CORS.AllowHeaders != envoy.CORSAllowHeaders || docs.CORS.AllowCredentials {
		t.Errorf("docs route = %+v (cors %+v)", docs, docs.CORS)
	}
	p := envoy.ExampleParams()
	p.Routes[len(p.Routes)-1].PrefixRewrite = "/"
	if _, err := RoutesFrom(p); err == nil || !strings.Contains(err.Error(), "prefix_rewrite") {
		t.Errorf("prefix_rewrite accepted: %v", err)
	}
}

func TestExactPathRoute(t *testing.T) {
	h := newHarness(t, "", Config{})
	up := h.proxy.routes[0].Upstream
	h2 := newHarness(t, "", Config{Routes: []Route{
		{Name: "meta", Path: "/.well-known/oauth-protected-resource/docs/mcp", Upstream: up, DisableExtAuthz: true},
	}})
	if res, _ := do(t, nil, "GET", h2.front.URL+"/.well-known/oauth-protected-resource/docs/mcp?x=1", nil, ""); res.StatusCode != 200 {
		t.Errorf("exact path: %d", res.StatusCode)
	}
	if res, _ := do(t, nil, "GET", h2.front.URL+"/.well-known/oauth-protected-resource/docs/mcp/more", nil, ""); res.StatusCode != 404 {
		t.Errorf("below the exact path: %d, want 404", res.StatusCode)
	}
	if _, err := New(t.Context(), Config{AuthzAddr: "x:1", Routes: []Route{{Path: "/a", PathPrefix: "/", Upstream: "http://x"}}}); err == nil {
		t.Error("path and path_prefix together accepted")
	}
}
