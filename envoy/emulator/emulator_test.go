package emulator

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/mcpauthz/mcpauthz/envoy"
)

// fakeAuthz is a real gRPC Authorization server answering with respond.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	mu      sync.Mutex
	respond func(*authv3.CheckRequest) *authv3.CheckResponse
	calls   int
}

func (f *fakeAuthz) Check(_ context.Context, r *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.respond(r), nil
}

func startAuthz(t *testing.T, f *fakeAuthz) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, f)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

type seen struct {
	Host   string
	URI    string
	Header http.Header
	Body   string
}

// recorder is an upstream that records what it received.
type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, seen{Host: r.Host, URI: r.RequestURI, Header: r.Header.Clone(), Body: string(b)})
	rc.mu.Unlock()
	w.Header().Set("X-Upstream", "u")
	_, _ = io.WriteString(w, "upstream ok")
}

func (rc *recorder) last(t *testing.T) seen {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reqs) == 0 {
		t.Fatal("upstream not called")
	}
	return rc.reqs[len(rc.reqs)-1]
}

func (rc *recorder) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.reqs)
}

type harness struct {
	authz    *fakeAuthz
	upstream *recorder
	proxy    *Proxy
	front    *httptest.Server
	checks   chan *authv3.CheckRequest
}

func newHarness(t *testing.T, authzAddr string, cfg Config) *harness {
	t.Helper()
	h := &harness{authz: &fakeAuthz{respond: func(*authv3.CheckRequest) *authv3.CheckResponse { return envoy.Allow(nil, nil) }},
		upstream: &recorder{}, checks: make(chan *authv3.CheckRequest, 16)}
	up := httptest.NewServer(h.upstream)
	t.Cleanup(up.Close)
	if authzAddr == "" {
		authzAddr = startAuthz(t, h.authz)
	}
	cfg.AuthzAddr = authzAddr
	if cfg.Routes == nil {
		cfg.Routes = []Route{
			{Name: "meta", PathPrefix: "/.well-known/", Upstream: up.URL, DisableExtAuthz: true},
			{Name: "docs", PathPrefix: "/docs/", Upstream: up.URL, ContextExtensions: map[string]string{"mcp_server": "docs"}},
		}
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	p.OnCheck(func(c *authv3.CheckRequest) {
		select {
		case h.checks <- c:
		default:
		}
	})
	h.proxy = p
	h.front = httptest.NewServer(p)
	t.Cleanup(h.front.Close)
	return h
}

func do(t *testing.T, c *http.Client, method, u string, hdr map[string][]string, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func hvo(k, v string, act corev3.HeaderValueOption_HeaderAppendAction, appendFlag *bool) *corev3.HeaderValueOption {
	o := &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, AppendAction: act}
	if appendFlag != nil {
		o.Append = wrapperspb.Bool(*appendFlag)
	}
	return o
}

func okWith(hs ...*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: hs}}}
}

func TestHeaderMutations(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		name   string
		client []string // client's x-user values
		resp   *authv3.CheckResponse
		want   []string // upstream's x-user values
	}{
		{"default append keeps client value", []string{"evil"}, okWith(hvo("x-user", "alice", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, nil)), []string{"evil", "alice"}},
		{"overwrite replaces", []string{"evil"}, okWith(hvo("x-user", "alice", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, nil)), []string{"alice"}},
		{"overwrite adds when absent", nil, okWith(hvo("X-User", "alice", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, nil)), []string{"alice"}},
		{"add if absent keeps client", []string{"evil"}, okWith(hvo("x-user", "alice", corev3.HeaderValueOption_ADD_IF_ABSENT, nil)), []string{"evil"}},
		{"add if absent adds", nil, okWith(hvo("x-user", "alice", corev3.HeaderValueOption_ADD_IF_ABSENT, nil)), []string{"alice"}},
		{"overwrite if exists skips absent", nil, okWith(hvo("x-user", "alice", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS, nil)), nil},
		{"overwrite if exists", []string{"evil", "evil2"}, okWith(hvo("x-user", "alice", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS, nil)), []string{"alice"}},
		{"deprecated append=true joins", []string{"evil"}, okWith(hvo("x-user", "alice", 0, &yes)), []string{"evil,alice"}},
		{"deprecated append=false sets", []string{"evil"}, okWith(hvo("x-user", "alice", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, &no)), []string{"alice"}},
		{"remove after set wins", []string{"evil"}, func() *authv3.CheckResponse {
			r := envoy.Allow([]envoy.Header{{Name: "x-user", Value: "alice"}}, []string{"X-User"})
			return r
		}(), nil},
		{"ok without http_response allows", []string{"evil"}, &authv3.CheckResponse{Status: &rpcstatus.Status{}}, []string{"evil"}},
		{"envoy.Allow overwrites", []string{"evil"}, envoy.Allow([]envoy.Header{{Name: "x-user", Value: "alice"}}, nil), []string{"alice"}},
	}
	h := newHarness(t, "", Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.authz.mu.Lock()
			h.authz.respond = func(*authv3.CheckRequest) *authv3.CheckResponse { return tt.resp }
			h.authz.mu.Unlock()
			res, body := do(t, nil, "GET", h.front.URL+"/docs/mcp", map[string][]string{"X-User": tt.client}, "")
			if res.StatusCode != 200 || body != "upstream ok" {
				t.Fatalf("status %d body %q", res.StatusCode, body)
			}
			if got := h.upstream.last(t).Header["X-User"]; !slices.Equal(got, tt.want) {
				t.Errorf("upstream x-user = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHeadersToRemoveAndQuery(t *testing.T) {
	h := newHarness(t, "", Config{})
	h.authz.respond = func(*authv3.CheckRequest) *authv3.CheckResponse {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			HeadersToRemove:         []string{"authorization", "host", ":path", "cookie"},
			QueryParametersToSet:    []*corev3.QueryParameter{{Key: "tenant", Value: "acme"}},
			QueryParametersToRemove: []string{"token"},
			ResponseHeadersToAdd:    []*corev3.HeaderValueOption{hvo("x-upstream", "authz", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, nil), hvo("x-extra", "1", 0, nil)},
		}}}
	}
	res, _ := do(t, nil, "GET", h.front.URL+"/docs/mcp?z=1&token=secret&a=2", map[string][]string{"Authorization": {"Bearer t"}, "Cookie": {"c=1"}}, "")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	got := h.upstream.last(t)
	if got.Header.Get("Authorization") != "" || got.Header.Get("Cookie") != "" {
		t.Errorf("credentials reached upstream: %v", got.Header)
	}
	if got.Host != strings.TrimPrefix(h.front.URL, "http://") {
		t.Errorf("upstream host = %q (host must be kept, not removed or rewritten)", got.Host)
	}
	if got.URI != "/docs/mcp?a=2&tenant=acme&z=1" {
		t.Errorf("upstream uri = %q", got.URI)
	}
	if res.Header.Get("X-Upstream") != "authz" || res.Header.Get("X-Extra") != "1" {
		t.Errorf("response headers = %v", res.Header)
	}
}

func TestDenied(t *testing.T) {
	tests := []struct {
		name       string
		resp       *authv3.CheckResponse
		wantStatus int
		wantBody   string
		wantHeader map[string][]string
	}{
		{"denied with status headers body", envoy.Deny(401, []envoy.Header{{Name: "www-authenticate", Value: `Bearer resource_metadata="x"`}, {Name: "content-type", Value: "application/json"}}, []byte(`{"error":"no"}`)),
			401, `{"error":"no"}`, map[string][]string{"Www-Authenticate": {`Bearer resource_metadata="x"`}, "Content-Type": {"application/json"}}},
		{"denied default status", &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Body: "nope",
				Headers: []*corev3.HeaderValueOption{hvo("set-cookie", "a=1", 0, nil), hvo("set-cookie", "b=2", 0, nil)}}}},
			403, "nope", map[string][]string{"Set-Cookie": {"a=1", "b=2"}, "Content-Type": {"text/plain"}}},
		{"non-OK without denied_response", &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_UNAUTHENTICATED)}}, 403, "", nil},
		{"error_response", &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_UNAVAILABLE)},
			HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable}, Body: "down"}}},
			503, "down", nil},
	}
	h := newHarness(t, "", Config{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.authz.mu.Lock()
			h.authz.respond = func(*authv3.CheckRequest) *authv3.CheckResponse { return tt.resp }
			h.authz.mu.Unlock()
			before := h.upstream.count()
			res, body := do(t, nil, "POST", h.front.URL+"/docs/mcp", nil, `{"jsonrpc":"2.0"}`)
			if res.StatusCode != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			for k, v := range tt.wantHeader {
				if !slices.Equal(res.Header[k], v) {
					t.Errorf("header %s = %q, want %q", k, res.Header[k], v)
				}
			}
			if h.upstream.count() != before {
				t.Error("upstream was contacted")
			}
		})
	}
}

func TestLocalReplies(t *testing.T) {
	h := newHarness(t, "", Config{MaxRequestBytes: 16})
	down := newHarness(t, "127.0.0.1:1", Config{Timeout: 200 * time.Millisecond})
	tests := []struct {
		name, method, url, body string
		wantStatus              int
		wantBody                string
		wantChecks              int
	}{
		{"body over limit", "POST", h.front.URL + "/docs/mcp", strings.Repeat("x", 17), 413, "Payload Too Large", 0},
		{"body at limit", "POST", h.front.URL + "/docs/mcp", strings.Repeat("x", 16), 200, "upstream ok", 1},
		{"no route", "GET", h.front.URL + "/other", "", 404, "", 0},
		{"escaped slash", "GET", h.front.URL + "/docs/a%2Fb", "", 400, "", 0},
		{"escaped backslash", "GET", h.front.URL + "/docs/a%5cb", "", 400, "", 0},
		{"dot segments escape the route", "GET", h.front.URL + "/docs/../other", "", 404, "", 0},
		{"ext_authz disabled route", "GET", h.front.URL + "/.well-known/oauth-protected-resource", "", 200, "upstream ok", 0},
		{"authz down", "GET", down.front.URL + "/docs/mcp", "", 403, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.authz.mu.Lock()
			before := h.authz.calls
			h.authz.mu.Unlock()
			// Use a raw request so Go's client does not clean the path.
			req, _ := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			if tt.body == "" {
				req.Body = nil
			}
			u, _ := url.Parse(tt.url)
			req.URL.Opaque = "//" + u.Host + strings.SplitN(strings.TrimPrefix(tt.url, "http://"+u.Host), "?", 2)[0]
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.wantStatus || string(b) != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", res.StatusCode, b, tt.wantStatus, tt.wantBody)
			}
			h.authz.mu.Lock()
			calls := h.authz.calls - before
			h.authz.mu.Unlock()
			if calls != tt.wantChecks {
				t.Errorf("%d Check calls, want %d", calls, tt.wantChecks)
			}
		})
	}
}

func TestNormalizePath(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/docs/mcp", "/docs/mcp"},
		{"/docs//mcp", "/docs/mcp"},
		{"/docs/./a/../mcp", "/docs/mcp"},
		{"/docs/%6Dcp", "/docs/mcp"},
		{"/docs/%2e%2e/admin", "/admin"},
		{"/a%20b", "/a%20b"},
		{"/a%3fb", "/a%3Fb"},
		{"/docs/", "/docs/"},
		{"/../..", "/"},
	} {
		if got, ok := normalizePath(tt.in); !ok || got != tt.want {
			t.Errorf("normalizePath(%q) = %q, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := normalizePath("docs"); ok {
		t.Error("relative path accepted")
	}
}

func TestCheckRequestShape(t *testing.T) {
	h := newHarness(t, "", Config{})
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	res, _ := do(t, nil, "POST", h.front.URL+"/docs//mcp?session=1", map[string][]string{
		"X-Multi": {"a", "b"}, "Content-Type": {"application/json"}, "X-Envoy-Auth-Partial-Body": {"true"}, "Authorization": {"Bearer t"},
	}, body)
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	c := <-h.checks
	hr := c.GetAttributes().GetRequest().GetHttp()
	host := strings.TrimPrefix(h.front.URL, "http://")
	wantHeaders := map[string]string{
		":authority": host, ":method": "POST", ":path": "/docs/mcp?session=1", ":scheme": "http",
		"x-multi": "a,b", "content-type": "application/json", "authorization": "Bearer t",
		"x-envoy-auth-partial-body": "false", "content-length": "46", "x-forwarded-proto": "http",
	}
	for k, v := range wantHeaders {
		if hr.GetHeaders()[k] != v {
			t.Errorf("headers[%q] = %q, want %q", k, hr.GetHeaders()[k], v)
		}
	}
	for k := range hr.GetHeaders() {
		if k != strings.ToLower(k) {
			t.Errorf("header key %q not lower-case", k)
		}
	}
	rid := hr.GetHeaders()["x-request-id"]
	if len(rid) != 36 || hr.GetId() == "" || hr.GetId() == rid {
		t.Errorf("x-request-id %q id %q", rid, hr.GetId())
	}
	if got := h.upstream.last(t).Header.Get("X-Request-Id"); got != rid {
		t.Errorf("upstream x-request-id %q, want %q", got, rid)
	}
	if hr.GetMethod() != "POST" || hr.GetPath() != "/docs/mcp?session=1" || hr.GetHost() != host ||
		hr.GetScheme() != "http" || hr.GetProtocol() != "HTTP/1.1" || string(hr.GetRawBody()) != body || hr.GetBody() != "" {
		t.Errorf("http = %v", hr)
	}
	if c.GetAttributes().GetContextExtensions()["mcp_server"] != "docs" {
		t.Errorf("context_extensions = %v", c.GetAttributes().GetContextExtensions())
	}
	if a := envoy.FormatAddress(c.GetAttributes().GetSource().GetAddress()); !strings.HasPrefix(a, "127.0.0.1:") {
		t.Errorf("source address %q", a)
	}
	if a := envoy.FormatAddress(c.GetAttributes().GetDestination().GetAddress()); a != host {
		t.Errorf("destination address %q, want %q", a, host)
	}
	if c.GetAttributes().GetSource().GetPrincipal() != "" {
		t.Error("principal without TLS")
	}
	// The request round-trips through envoy.FromCheckRequest.
	r, err := envoy.FromCheckRequest(c)
	if err != nil || r.Path != "/docs/mcp" || r.Query != "session=1" || r.Partial || string(r.Body) != body {
		t.Errorf("FromCheckRequest = %+v, %v", r, err)
	}
	if got := h.upstream.last(t); got.Body != body || got.URI != "/docs/mcp?session=1" {
		t.Errorf("upstream got %q %q", got.URI, got.Body)
	}

	// A request without a body carries neither raw_body nor the partial header.
	do(t, nil, "GET", h.front.URL+"/docs/mcp", nil, "")
	c = <-h.checks
	if _, ok := c.GetAttributes().GetRequest().GetHttp().GetHeaders()["x-envoy-auth-partial-body"]; ok || c.GetAttributes().GetRequest().GetHttp().GetRawBody() != nil {
		t.Errorf("bodiless request: %v", c.GetAttributes().GetRequest().GetHttp())
	}
}

func TestMTLSPrincipal(t *testing.T) {
	ca, caKey := newCert(t, nil, nil, "", true)
	srvCert, srvKey := newCert(t, ca, caKey, "", false)
	cliCert, cliKey := newCert(t, ca, caKey, "spiffe://example.org/ns/agents/sa/bot", false)
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	h := newHarness(t, "", Config{IncludePeerCertificate: true})
	h.front.Close()
	front := httptest.NewUnstartedServer(h.proxy)
	front.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}}}
	front.StartTLS()
	t.Cleanup(front.Close)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cliCert.Raw}, PrivateKey: cliKey}}}}}

	res, _ := do(t, client, "GET", front.URL+"/docs/mcp", nil, "")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	c := <-h.checks
	src := c.GetAttributes().GetSource()
	if src.GetPrincipal() != "spiffe://example.org/ns/agents/sa/bot" {
		t.Errorf("principal = %q", src.GetPrincipal())
	}
	if hr := c.GetAttributes().GetRequest().GetHttp(); hr.GetScheme() != "https" || hr.GetHeaders()[":scheme"] != "https" {
		t.Errorf("scheme = %q", hr.GetScheme())
	}
	pemText, err := url.QueryUnescape(src.GetCertificate())
	if err != nil || !strings.HasPrefix(pemText, "-----BEGIN CERTIFICATE-----\n") || strings.Contains(src.GetCertificate(), "\n") {
		t.Errorf("certificate not URL-encoded PEM: %q", src.GetCertificate())
	}
}

func newCert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, uri string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestSSEStreaming(t *testing.T) {
	release := make(chan struct{})
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "data: two\n\n")
	}))
	t.Cleanup(sse.Close)
	defer close(release) // unblock the handler before sse.Close waits for it
	h := newHarness(t, "", Config{Routes: []Route{{Name: "docs", PathPrefix: "/docs/", Upstream: sse.URL}}})
	res, err := http.Get(h.front.URL + "/docs/mcp")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	// The first event must arrive while the upstream is still blocked.
	line, err := br.ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no authz", Config{}, "authz_addr"},
		{"bad upstream", Config{AuthzAddr: "x:1", Routes: []Route{{PathPrefix: "/", Upstream: "ftp://x"}}}, "routes[0].upstream"},
		{"bad prefix", Config{AuthzAddr: "x:1", Routes: []Route{{PathPrefix: "x", Upstream: "http://x"}}}, "routes[0].path_prefix"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(context.Background(), tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
