// Package emulator is an in-process stand-in for Envoy's HTTP connection
// manager + ext_authz filter + router, for end-to-end tests and a local
// development mode when no envoy binary is available.
//
// It applies the ext_authz contract the way Envoy (v1.3x) does, as read from
// source/extensions/filters/http/ext_authz/ext_authz.cc,
// source/extensions/filters/common/ext_authz/{check_request_utils,ext_authz_grpc_impl}.cc
// and source/extensions/filters/http/cors/cors_filter.cc:
//
//   - A header name containing '_' gets 400 before anything else
//     (headers_with_underscores_action: REJECT_REQUEST, the default here as
//     in generated configurations; DROP_HEADER and ALLOW are options).
//   - The CORS filter runs first, on routes with a CORSPolicy: a preflight
//     (OPTIONS with Origin and Access-Control-Request-Method) from an
//     allowed origin is answered 200 with the Access-Control-Allow-* headers
//     and reaches neither ext_authz nor the upstream; from another origin it
//     continues to ext_authz. Every response to an allowed origin (upstream
//     or local reply, ext_authz denials included) gets
//     Access-Control-Allow-Origin and -Expose-Headers.
//   - :path is normalised (RFC 3986 dot segments, unreserved %XX decoded) and
//     slashes merged; %2F/%5C in the path is rejected with 400
//     (path_with_escaped_slashes_action: REJECT_REQUEST). No route: 404.
//   - The CheckRequest carries lower-case header keys, the pseudo headers
//     :authority, :method, :path (with query), :scheme, duplicate headers joined
//     with "," (invalid UTF-8 bytes as '!'), or with EncodeRawHeaders
//     (encode_raw_headers: true) every header line on its own in header_map
//     as raw_value; x-request-id (generated when absent, also sent upstream) and
//     x-forwarded-proto (set when absent). A client-sent
//     x-envoy-auth-partial-body is dropped. http.id is Envoy's stream id: the
//     first 8 hex digits of x-request-id as a decimal number.
//   - with_request_body{pack_as_bytes: true, allow_partial_message: false}:
//     bodies over MaxRequestBytes get 413 without a Check; a request with a
//     body carries raw_body and x-envoy-auth-partial-body: "false"; a request
//     without a body carries neither (Envoy does not buffer then).
//   - OK: OkHttpResponse.headers are applied in order, each per append_action
//     (default APPEND_IF_EXISTS_OR_ADD adds a second value beside the client's;
//     the deprecated append bool, when set, means append-with-"," or
//     overwrite); then headers_to_remove (pseudo headers and host ignored);
//     then query_parameters_to_set/remove (query re-encoded sorted by key);
//     response_headers_to_add go on the upstream response. OK without
//     ok_response just allows.
//   - Denied: denied_response status (403 if unset), headers (replacing
//     same-named local-reply headers, repeats kept) and body go to the client;
//     the upstream is not contacted. A non-OK status without denied_response is
//     403 with an empty body. error_response is an error with its own status
//     (else 403), headers and body.
//   - gRPC failure or timeout: 403, empty body (failure_mode_allow: false,
//     status_on_error default).
//
// Differences from Envoy, by design: request header mutations with invalid
// names or values, and mutations of pseudo headers other than :authority,
// are skipped (Go cannot send them); upstream errors are a plain 503.
package emulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpauthz/mcpauthz/envoy"
)

// Route is one Envoy route; the first matching route wins.
type Route struct {
	Name              string
	Host              string // optional exact :authority match, port-insensitive, case-insensitive
	PathPrefix        string // case-sensitive prefix of the normalised path
	Path              string // instead of PathPrefix: the exact normalised path (query ignored)
	Upstream          string // base URL of the upstream, e.g. http://127.0.0.1:8081 (its path is ignored, like an Envoy cluster)
	ContextExtensions map[string]string
	DisableExtAuthz   bool // ExtAuthzPerRoute{disabled: true}
	DisableExtProc    bool // ExtProcPerRoute{disabled: true}
	// RequestHeadersToSet are the route's request_headers_to_add with
	// append_action OVERWRITE_IF_EXISTS_OR_ADD, applied by the router
	// after every filter (e.g. accept-encoding: identity).
	RequestHeadersToSet []envoy.Header
	// CORS is the route's envoy.filters.http.cors policy
	// (typed_per_filter_config); nil leaves the CORS filter, which runs
	// before ext_authz, inactive on this route.
	CORS *CORSPolicy
}

// CORSPolicy is an envoy.extensions.filters.http.cors.v3.CorsPolicy.
type CORSPolicy struct {
	// AllowOrigins are allow_origin_string_match entries, each an exact
	// match with ignore_case: true (as `mcpauthz envoy generate` writes
	// them); an entry "*" matches every origin, as in Envoy.
	AllowOrigins []string
	// AllowMethods, AllowHeaders, ExposeHeaders and MaxAge are sent
	// verbatim; AllowMethods/AllowHeaders "*" echo the request's
	// Access-Control-Request-Method/-Headers.
	AllowMethods, AllowHeaders, ExposeHeaders, MaxAge string
	AllowCredentials                                  bool
	// AnswerForeignPreflights is forward_not_matching_preflights: false: a
	// preflight from an origin not allowed gets a bare 200 from Envoy
	// instead of going on to ext_authz (Envoy's default forwards it).
	AnswerForeignPreflights bool
}

// MCPCORS is the policy `mcpauthz envoy generate` gives every MCP route.
func MCPCORS(origins ...string) *CORSPolicy {
	return &CORSPolicy{
		AllowOrigins: origins, AllowMethods: envoy.CORSAllowMethods,
		AllowHeaders: envoy.CORSAllowHeaders, ExposeHeaders: envoy.CORSExposeHeaders,
	}
}

// Config configures a Proxy.
type Config struct {
	AuthzAddr              string        // gRPC address of the ext_authz server
	Timeout                time.Duration // ext_authz timeout, default 1s
	MaxRequestBytes        int           // with_request_body.max_request_bytes, default 1 MiB
	IncludePeerCertificate bool
	// EncodeRawHeaders is ext_authz's encode_raw_headers: true sends every
	// request header line on its own in header_map (raw_value, repeats
	// kept); false (Envoy's default) sends headers, repeated headers joined
	// with "," and invalid UTF-8 bytes replaced with '!'.
	EncodeRawHeaders bool
	// AllowedHeaders is ext_authz's allowed_headers (exact, lower-case
	// names): when set, only these request headers reach the CheckRequest,
	// plus those Envoy always adds (:authority/host, :method, :path,
	// content-length, authorization). Envoy still forwards the others
	// upstream. It models a deployment that hides headers from mcpauthz;
	// `mcpauthz envoy validate --strict` flags it.
	AllowedHeaders []string
	// HeadersWithUnderscoresAction is the HTTP connection manager's
	// common_http_protocol_options.headers_with_underscores_action:
	// "" or "REJECT_REQUEST" (what generated configurations set) answers
	// 400 to a request with an underscore in a header name, before any
	// filter runs; "DROP_HEADER" removes such headers; "ALLOW" keeps them.
	HeadersWithUnderscoresAction string
	Routes                       []Route
	// ExtProc, when set, adds envoy.filters.http.ext_proc after ext_authz.
	ExtProc *ExtProc
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.AuthzAddr == "" {
		errs = append(errs, errors.New("authz_addr: required"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: negative"))
	}
	if c.MaxRequestBytes < 0 {
		errs = append(errs, errors.New("max_request_bytes: negative"))
	}
	switch c.HeadersWithUnderscoresAction {
	case "", "REJECT_REQUEST", "DROP_HEADER", "ALLOW":
	default:
		errs = append(errs, fmt.Errorf("headers_with_underscores_action: %q is not ALLOW, REJECT_REQUEST or DROP_HEADER", c.HeadersWithUnderscoresAction))
	}
	for i, r := range c.Routes {
		switch {
		case r.Path != "" && r.PathPrefix != "":
			errs = append(errs, fmt.Errorf("routes[%d]: path and path_prefix are exclusive", i))
		case r.Path != "" && !strings.HasPrefix(r.Path, "/"):
			errs = append(errs, fmt.Errorf("routes[%d].path: %q must start with /", i, r.Path))
		case r.Path == "" && !strings.HasPrefix(r.PathPrefix, "/"):
			errs = append(errs, fmt.Errorf("routes[%d].path_prefix: %q must start with /", i, r.PathPrefix))
		}
		u, err := url.Parse(r.Upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("routes[%d].upstream: %q is not an http(s) base URL", i, r.Upstream))
		}
		if r.CORS != nil && len(r.CORS.AllowOrigins) == 0 {
			errs = append(errs, fmt.Errorf("routes[%d].cors.allow_origins: at least one origin required", i))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("emulator: config: %w", err)
	}
	return nil
}

type route struct {
	Route
	host  string // lower-case, port stripped
	proxy *httputil.ReverseProxy
}

// Proxy is the emulated Envoy. It is an http.Handler, safe for concurrent
// use; serve it with TLS (requesting client certificates) to exercise mTLS.
type Proxy struct {
	cfg      Config
	conn     *grpc.ClientConn
	client   authv3.AuthorizationClient
	routes   []route
	onCheck  atomic.Pointer[func(*authv3.CheckRequest)]
	xp       *ExtProc // with defaults; nil without ext_proc
	xpConn   *grpc.ClientConn
	xpClient extprocv3.ExternalProcessorClient
}

// New builds a Proxy and its (lazily connecting, insecure) gRPC client.
func New(ctx context.Context, cfg Config) (*Proxy, error) {
	_ = ctx // the gRPC client connects lazily; kept for API symmetry
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.MaxRequestBytes == 0 {
		cfg.MaxRequestBytes = 1 << 20
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.AuthzAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("emulator: dial %s: %w", cfg.AuthzAddr, err)
	}
	p := &Proxy{cfg: cfg, conn: conn, client: authv3.NewAuthorizationClient(conn)}
	if cfg.ExtProc != nil {
		p.xp = cfg.ExtProc.withDefaults()
		p.xpConn = conn
		if p.xp.Addr != "" && p.xp.Addr != cfg.AuthzAddr {
			if p.xpConn, err = grpc.NewClient(p.xp.Addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
				_ = conn.Close()
				return nil, fmt.Errorf("emulator: dial %s: %w", p.xp.Addr, err)
			}
		}
		p.xpClient = extprocv3.NewExternalProcessorClient(p.xpConn)
	}
	for _, r := range cfg.Routes {
		u, _ := url.Parse(r.Upstream)
		p.routes = append(p.routes, route{Route: r, host: stripPort(strings.ToLower(r.Host)), proxy: newReverseProxy(u)})
	}
	return p, nil
}

// OnCheck registers fn to observe every CheckRequest before it is sent
// (nil unregisters). fn must not modify the request.
func (p *Proxy) OnCheck(fn func(*authv3.CheckRequest)) {
	if fn == nil {
		p.onCheck.Store(nil)
		return
	}
	p.onCheck.Store(&fn)
}

// Close closes the gRPC connections.
func (p *Proxy) Close() error {
	if p.xpConn != nil && p.xpConn != p.conn {
		_ = p.xpConn.Close()
	}
	return p.conn.Close()
}

type ctxKey struct{}

// respState carries what the response path needs to ModifyResponse:
// ext_authz's response_headers_to_add and the ext_proc stream.
type respState struct {
	mut []*corev3.HeaderValueOption
	xp  *xproc
}

func newReverseProxy(target *url.URL) *httputil.ReverseProxy {
	// Envoy never decompresses on its own: no transparent gzip here either.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableCompression = true
	return &httputil.ReverseProxy{
		Transport:     tr,
		FlushInterval: -1, // SSE: flush every write
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = target.Scheme, target.Host
			pr.Out.Host = pr.In.Host // Envoy keeps :authority (no auto_host_rewrite)
			for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
				if v, ok := pr.In.Header[k]; ok {
					pr.Out.Header[k] = v
				}
			}
		},
		// Filters see the response in reverse order: ext_proc, then ext_authz.
		ModifyResponse: func(res *http.Response) error {
			st, _ := res.Request.Context().Value(ctxKey{}).(*respState)
			if st == nil {
				return nil
			}
			if st.xp != nil {
				if err := st.xp.encode(res); err != nil {
					return err
				}
			}
			if len(st.mut) > 0 {
				applyResponseMutations(res.Header, st.mut)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			var lr *localResponse
			if errors.As(err, &lr) {
				localReply(w, lr.status, lr.headers, lr.body)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "upstream connect error or disconnect/reset before headers")
		},
	}
}

// httpStream is one downstream request on its way through the HTTP
// connection manager, the filters and the router.
type httpStream struct {
	r                  *http.Request
	rt                 *route
	hdr                http.Header // the request headers as mutated so far
	scheme             string
	normPath, fullPath string // the normalised path; with the client's query
	rawQuery           string
	hasQuery           bool
	body               []byte
	hasBody, bodyRead  bool
	meta               map[string]*structpb.Struct // the stream's dynamic metadata
	resp               respState
}

// ServeHTTP handles one downstream request as Envoy would.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := p.newStream(w, r)
	if s == nil {
		return
	}
	defer s.close()
	// envoy.filters.http.cors, the first HTTP filter.
	if s.rt.CORS != nil {
		var answered bool
		if w, answered = corsDecode(w, r, s.rt.CORS); answered {
			return
		}
	}
	if !s.rt.DisableExtAuthz && !p.extAuthz(w, s) {
		return
	}
	if p.xp != nil && !s.rt.DisableExtProc && !p.extProc(w, s) {
		return
	}
	for _, h := range s.rt.RequestHeadersToSet { // the router's route-level header additions
		s.hdr.Set(h.Name, h.Value)
	}
	s.rt.proxy.ServeHTTP(w, s.upstreamRequest())
}

// newStream does the HTTP connection manager's part: the codec's header
// name check, path normalisation, the route match and the request header
// mutation. It returns nil when it has replied.
func (p *Proxy) newStream(w http.ResponseWriter, r *http.Request) *httpStream {
	dropped, ok := p.underscoreHeaders(r.Header)
	if !ok {
		localReply(w, http.StatusBadRequest, nil, "")
		return nil
	}
	rawPath, rawQuery, hasQuery := splitRequestURI(r)
	if hasEscapedSlash(rawPath) {
		localReply(w, http.StatusBadRequest, nil, "")
		return nil
	}
	normPath, ok := normalizePath(rawPath)
	if !ok {
		localReply(w, http.StatusBadRequest, nil, "")
		return nil
	}
	rt := p.match(r.Host, normPath)
	if rt == nil {
		localReply(w, http.StatusNotFound, nil, "")
		return nil
	}
	s := &httpStream{
		r: r, rt: rt, scheme: "http",
		normPath: normPath, fullPath: normPath, rawQuery: rawQuery, hasQuery: hasQuery,
		hasBody: r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0,
	}
	if r.TLS != nil {
		s.scheme = "https"
	}
	if hasQuery {
		s.fullPath += "?" + rawQuery
	}
	s.hdr = hcmRequestHeaders(r.Header, s.scheme, dropped)
	return s
}

// underscoreHeaders applies headers_with_underscores_action to h: it
// returns the names to drop, or false when the request is to be rejected.
func (p *Proxy) underscoreHeaders(h http.Header) (dropped []string, ok bool) {
	for k := range h {
		if !strings.Contains(k, "_") {
			continue
		}
		switch p.cfg.HeadersWithUnderscoresAction {
		case "ALLOW":
		case "DROP_HEADER":
			dropped = append(dropped, k)
		default:
			return nil, false
		}
	}
	return dropped, true
}

// hcmRequestHeaders is the HCM's request header mutation
// (use_remote_address: false) on a copy of in.
func hcmRequestHeaders(in http.Header, scheme string, dropped []string) http.Header {
	hdr := in.Clone()
	if hdr == nil {
		hdr = http.Header{}
	}
	if hdr.Get("X-Request-Id") == "" {
		hdr.Set("X-Request-Id", newUUID())
	}
	if hdr.Get("X-Forwarded-Proto") == "" {
		hdr.Set("X-Forwarded-Proto", scheme)
	}
	for _, h := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"} {
		hdr.Del(h)
	}
	for _, k := range dropped {
		delete(hdr, k)
	}
	return hdr
}

// extAuthz is envoy.filters.http.ext_authz: it buffers the body, sends the
// Check and applies the answer. It returns false when it has replied.
func (p *Proxy) extAuthz(w http.ResponseWriter, s *httpStream) bool {
	s.bodyRead = true
	if s.hasBody {
		b, err := io.ReadAll(io.LimitReader(s.r.Body, int64(p.cfg.MaxRequestBytes)+1))
		if err != nil {
			localReply(w, http.StatusBadRequest, nil, "")
			return false
		}
		if len(b) > p.cfg.MaxRequestBytes {
			localReply(w, http.StatusRequestEntityTooLarge, nil, "Payload Too Large")
			return false
		}
		s.body = b
	}
	creq := p.checkRequest(s)
	if fn := p.onCheck.Load(); fn != nil {
		(*fn)(creq)
	}
	ctx, cancel := context.WithTimeout(s.r.Context(), p.cfg.Timeout)
	resp, err := p.client.Check(ctx, creq)
	cancel()
	if err != nil {
		localReply(w, http.StatusForbidden, nil, "") // status_on_error: 403
		return false
	}
	if dm := resp.GetDynamicMetadata(); dm != nil {
		s.meta = map[string]*structpb.Struct{envoy.ExtAuthzMetadataNamespace: dm}
	}
	if resp.GetStatus().GetCode() != int32(code.Code_OK) {
		status, hs, b := deniedReply(resp)
		p.reply(w, s.r, s.rt, s.meta, status, hs, b)
		return false
	}
	if ok := resp.GetOkResponse(); ok != nil {
		s.applyOK(ok)
	}
	return true
}

// deniedReply is the local reply for a CheckResponse that is not OK:
// error_response, else denied_response, else a bare 403.
func deniedReply(resp *authv3.CheckResponse) (status int, hs []*corev3.HeaderValueOption, body string) {
	status = http.StatusForbidden
	if er := resp.GetErrorResponse(); er != nil {
		hs, body = er.GetHeaders(), er.GetBody()
		if c := int(er.GetStatus().GetCode()); c > 0 {
			status = c
		}
	} else if d := resp.GetDeniedResponse(); d != nil {
		hs, body = d.GetHeaders(), d.GetBody()
		if c := int(d.GetStatus().GetCode()); c > 0 {
			status = c
		}
	}
	return status, hs, body
}

// applyOK applies an OkHttpResponse: request header mutations and removals,
// query parameters, and the response headers to add later.
func (s *httpStream) applyOK(ok *authv3.OkHttpResponse) {
	s.r = s.r.WithContext(s.r.Context()) // shallow copy before touching Host
	applyRequestMutations(s.r, s.hdr, ok.GetHeaders())
	for _, k := range ok.GetHeadersToRemove() {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, ":") || lk == "host" {
			continue
		}
		s.hdr.Del(k)
	}
	if len(ok.GetQueryParametersToSet()) > 0 || len(ok.GetQueryParametersToRemove()) > 0 {
		s.rawQuery, s.hasQuery = mutateQuery(s.rawQuery, ok)
	}
	s.resp.mut = ok.GetResponseHeadersToAdd()
}

// extProc is envoy.filters.http.ext_proc on the request path; the stream
// it opens stays open for the response path. It returns false when it has
// replied.
func (p *Proxy) extProc(w http.ResponseWriter, s *httpStream) bool {
	if s.hasBody && !s.bodyRead && p.xp.ProcessingMode.GetRequestBodyMode() != filterv3.ProcessingMode_NONE {
		b, err := io.ReadAll(s.r.Body)
		if err != nil {
			localReply(w, http.StatusBadRequest, nil, "")
			return false
		}
		s.body, s.bodyRead = b, true
	}
	s.resp.xp = p.newXProc(s.r.Context(), s.meta)
	if lr := s.resp.xp.decode(s); lr != nil {
		localReply(w, lr.status, lr.headers, lr.body)
		return false
	}
	return true
}

// close ends the ext_proc stream, if one was opened.
func (s *httpStream) close() {
	if s.resp.xp != nil {
		s.resp.xp.close()
	}
}

// upstreamRequest is the request the router sends upstream.
func (s *httpStream) upstreamRequest() *http.Request {
	out := s.r.Clone(context.WithValue(s.r.Context(), ctxKey{}, &s.resp))
	out.Header = s.hdr
	out.URL.Path, out.URL.RawPath = decodedPath(s.normPath), s.normPath
	out.URL.RawQuery = s.rawQuery
	out.URL.ForceQuery = s.hasQuery && s.rawQuery == ""
	out.RequestURI = ""
	if s.bodyRead && s.hasBody {
		out.Body = io.NopCloser(bytes.NewReader(s.body))
		out.ContentLength = int64(len(s.body))
		out.TransferEncoding = nil
	}
	return out
}

func (p *Proxy) match(host, path string) *route {
	h := stripPort(strings.ToLower(host))
	for i := range p.routes {
		rt := &p.routes[i]
		if rt.host != "" && rt.host != h {
			continue
		}
		if (rt.Path != "" && path == rt.Path) || (rt.Path == "" && strings.HasPrefix(path, rt.PathPrefix)) {
			return rt
		}
	}
	return nil
}

// headerLines lists the request header lines as Envoy's header map holds
// them: pseudo headers first, then lower-case names (sorted, as Go keeps no
// order across names), each repeated line on its own.
func headerLines(r *http.Request, hdr http.Header, scheme, fullPath string, hasBody bool) [][2]string {
	lines := [][2]string{{":authority", r.Host}, {":path", fullPath}, {":method", r.Method}, {":scheme", scheme}}
	keys := make([]string, 0, len(hdr))
	for k := range hdr {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hasLength := false
	for _, k := range keys {
		lk := strings.ToLower(k)
		// A client's x-envoy-auth-partial-body never reaches the check.
		if lk == envoy.PartialBodyHeader || lk == "host" {
			continue
		}
		if lk == "content-length" {
			hasLength = true
		}
		for _, v := range hdr[k] {
			lines = append(lines, [2]string{lk, v})
		}
	}
	if hasBody && r.ContentLength > 0 && !hasLength {
		lines = append(lines, [2]string{"content-length", strconv.FormatInt(r.ContentLength, 10)})
	}
	return lines
}

// sanitizeUTF8 is Envoy's MessageUtil::sanitizeUtf8String: every byte of
// an invalid UTF-8 sequence becomes '!'.
func sanitizeUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			b = append(b, '!')
			i++
			continue
		}
		b = append(b, s[i:i+n]...)
		i += n
	}
	return string(b)
}

func (p *Proxy) checkRequest(s *httpStream) *authv3.CheckRequest {
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       streamID(s.hdr.Get("X-Request-Id")),
		Method:   s.r.Method,
		Path:     s.fullPath,
		Host:     s.r.Host,
		Scheme:   s.scheme,
		Protocol: protocol(s.r),
	}
	lines := p.allowedLines(headerLines(s.r, s.hdr, s.scheme, s.fullPath, s.hasBody))
	if p.cfg.EncodeRawHeaders {
		httpReq.HeaderMap = rawHeaderMap(lines, s.hasBody)
	} else {
		httpReq.Headers = joinedHeaders(lines, s.hasBody)
	}
	if s.hasBody {
		httpReq.RawBody = s.body
		httpReq.Size = int64(len(s.body))
	}
	r := s.r
	src := &authv3.AttributeContext_Peer{Address: socketAddress(r.RemoteAddr)}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cert := r.TLS.PeerCertificates[0]
		src.Principal = certPrincipal(cert)
		if p.cfg.IncludePeerCertificate {
			src.Certificate = urlEncodedPEM(cert)
		}
	}
	dst := &authv3.AttributeContext_Peer{}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		dst.Address = socketAddress(la.String())
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            src,
		Destination:       dst,
		Request:           &authv3.AttributeContext_Request{Http: httpReq},
		ContextExtensions: s.rt.ContextExtensions,
	}}
}

// allowedLines applies allowed_headers to lines, keeping the headers Envoy
// always sends.
func (p *Proxy) allowedLines(lines [][2]string) [][2]string {
	if len(p.cfg.AllowedHeaders) == 0 {
		return lines
	}
	kept := lines[:0:0]
	for _, l := range lines {
		switch {
		case l[0] == ":authority" || l[0] == ":method" || l[0] == ":path" || l[0] == ":scheme" || l[0] == "host" ||
			l[0] == "content-length" || l[0] == "authorization":
		case !slices.Contains(p.cfg.AllowedHeaders, l[0]):
			continue
		}
		kept = append(kept, l)
	}
	return kept
}

// rawHeaderMap is header_map under encode_raw_headers: every line on its own.
func rawHeaderMap(lines [][2]string, hasBody bool) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for _, l := range lines {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: l[0], RawValue: []byte(l[1])})
	}
	if hasBody {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: envoy.PartialBodyHeader, RawValue: []byte("false")})
	}
	return hm
}

// joinedHeaders is the headers map: repeated lines joined with ",", invalid
// UTF-8 sanitised.
func joinedHeaders(lines [][2]string, hasBody bool) map[string]string {
	headers := make(map[string]string, len(lines)+1)
	for _, l := range lines {
		v := sanitizeUTF8(l[1])
		if prev, ok := headers[l[0]]; ok {
			v = prev + "," + v
		}
		headers[l[0]] = v
	}
	if hasBody {
		headers[envoy.PartialBodyHeader] = "false"
	}
	return headers
}

// localReply mimics Envoy's sendLocalReply plus ext_authz's header callback:
// a non-empty body gets content-type text/plain; authz headers first remove
// same-named headers, then are all added (so repeats such as Set-Cookie stay).
func localReply(w http.ResponseWriter, status int, hs []*corev3.HeaderValueOption, body string) {
	h := w.Header()
	for k, v := range localReplyHeader(hs, body) {
		h[k] = v
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// localReplyHeader is the header of a local reply with body and hs.
func localReplyHeader(hs []*corev3.HeaderValueOption, body string) http.Header {
	h := http.Header{}
	if body != "" {
		h.Set("Content-Type", "text/plain")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	for _, o := range hs {
		if k := o.GetHeader().GetKey(); validHeader(k, headerValue(o)) {
			h.Del(k)
		}
	}
	for _, o := range hs {
		if k, v := o.GetHeader().GetKey(), headerValue(o); validHeader(k, v) {
			h.Add(k, v)
		}
	}
	return h
}

func headerValue(o *corev3.HeaderValueOption) string {
	if v := o.GetHeader().GetValue(); v != "" {
		return v
	}
	return string(o.GetHeader().GetRawValue())
}

func validHeader(k, v string) bool {
	return httpguts.ValidHeaderFieldName(k) && httpguts.ValidHeaderFieldValue(v)
}

type action int

const (
	actAdd         action = iota // APPEND_IF_EXISTS_OR_ADD: another entry
	actAddIfAbsent               // ADD_IF_ABSENT
	actOverwrite                 // OVERWRITE_IF_EXISTS
	actSet                       // OVERWRITE_IF_EXISTS_OR_ADD
	actAppend                    // deprecated append=true on request headers: join with ","
)

func requestAction(o *corev3.HeaderValueOption) action {
	if a := o.GetAppend(); a != nil {
		if a.GetValue() {
			return actAppend
		}
		return actSet
	}
	return fromAppendAction(o.GetAppendAction())
}

func responseAction(o *corev3.HeaderValueOption) action {
	if a := o.GetAppend(); a != nil {
		if a.GetValue() {
			return actAdd
		}
		return actSet
	}
	return fromAppendAction(o.GetAppendAction())
}

func fromAppendAction(a corev3.HeaderValueOption_HeaderAppendAction) action {
	switch a {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		return actAdd
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		return actAddIfAbsent
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		return actOverwrite
	default: // OVERWRITE_IF_EXISTS_OR_ADD and unknown values (Envoy falls back to set)
		return actSet
	}
}

func apply(h http.Header, act action, k, v string) {
	ck := http.CanonicalHeaderKey(k)
	_, exists := h[ck]
	switch act {
	case actAdd:
		h.Add(ck, v)
	case actAddIfAbsent:
		if !exists {
			h.Add(ck, v)
		}
	case actOverwrite:
		if exists {
			h.Set(ck, v)
		}
	case actSet:
		h.Set(ck, v)
	case actAppend:
		if exists && len(h[ck]) > 0 {
			h[ck][0] += "," + v
		} else {
			h.Add(ck, v)
		}
	}
}

func applyRequestMutations(r *http.Request, h http.Header, hs []*corev3.HeaderValueOption) {
	for _, o := range hs {
		k, v := strings.ToLower(o.GetHeader().GetKey()), headerValue(o)
		if k == ":authority" || k == "host" {
			switch act := requestAction(o); act {
			case actSet, actOverwrite, actAppend, actAdd:
				if httpguts.ValidHostHeader(v) && v != "" {
					r.Host = v
				}
			}
			continue
		}
		if strings.HasPrefix(k, ":") || !validHeader(k, v) {
			continue
		}
		apply(h, requestAction(o), k, v)
	}
}

func applyResponseMutations(h http.Header, hs []*corev3.HeaderValueOption) {
	for _, o := range hs {
		k, v := o.GetHeader().GetKey(), headerValue(o)
		if strings.HasPrefix(k, ":") || !validHeader(k, v) {
			continue
		}
		apply(h, responseAction(o), k, v)
	}
}

// mutateQuery applies query_parameters_to_set/remove like Envoy's
// QueryParamsMulti: values stay as sent (no decoding), keys come out sorted.
func mutateQuery(raw string, ok *authv3.OkHttpResponse) (string, bool) {
	params := map[string][]string{}
	if raw != "" {
		for _, kv := range strings.Split(raw, "&") {
			if kv == "" {
				continue
			}
			k, v, _ := strings.Cut(kv, "=")
			params[k] = append(params[k], v)
		}
	}
	for _, q := range ok.GetQueryParametersToSet() {
		params[q.GetKey()] = []string{q.GetValue()}
	}
	for _, k := range ok.GetQueryParametersToRemove() {
		delete(params, k)
	}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range params[k] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(v)
		}
	}
	return b.String(), b.Len() > 0
}

func splitRequestURI(r *http.Request) (path, query string, hasQuery bool) {
	uri := r.RequestURI
	if uri == "" {
		uri = r.URL.RequestURI()
	}
	// Absolute-form request targets (proxy style) become origin-form, as in
	// Envoy's HTTP/1 codec.
	for _, sch := range []string{"http://", "https://"} {
		if len(uri) > len(sch) && strings.EqualFold(uri[:len(sch)], sch) {
			rest := uri[len(sch):]
			if i := strings.IndexAny(rest, "/?"); i >= 0 {
				uri = rest[i:]
				if uri[0] == '?' {
					uri = "/" + uri
				}
			} else {
				uri = "/"
			}
			break
		}
	}
	if i := strings.IndexByte(uri, '#'); i >= 0 {
		uri = uri[:i]
	}
	path, query, hasQuery = strings.Cut(uri, "?")
	return path, query, hasQuery
}

func hasEscapedSlash(p string) bool {
	for i := 0; i+2 < len(p); i++ {
		if p[i] == '%' {
			s := strings.ToUpper(p[i+1 : i+3])
			if s == "2F" || s == "5C" {
				return true
			}
		}
	}
	return false
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// normalizePath emulates normalize_path (percent-decoding of unreserved
// characters, upper-case hex for the rest, RFC 3986 dot-segment removal) and
// merge_slashes. ok is false for paths Envoy rejects.
func normalizePath(p string) (string, bool) {
	if p == "" || p[0] != '/' {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) {
			h, ok1 := unhex(p[i+1])
			l, ok2 := unhex(p[i+2])
			if ok1 && ok2 {
				d := h<<4 | l
				if isUnreserved(d) {
					b.WriteByte(d)
				} else {
					b.WriteByte('%')
					b.WriteString(strings.ToUpper(p[i+1 : i+3]))
				}
				i += 2
				continue
			}
		}
		if c == '\\' {
			c = '/'
		}
		b.WriteByte(c)
	}
	segs := strings.Split(b.String()[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		case "":
			if last { // keep a trailing slash; merge_slashes drops inner empties
				out = append(out, "")
			}
		default:
			out = append(out, s)
		}
	}
	return "/" + strings.Join(out, "/"), true
}

func decodedPath(p string) string {
	if d, err := url.PathUnescape(p); err == nil {
		return d
	}
	return p
}

func stripPort(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.Trim(h, "[]")
}

func protocol(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return "HTTP/2"
	case 3:
		return "HTTP/3"
	}
	if r.ProtoMinor == 0 {
		return "HTTP/1.0"
	}
	return "HTTP/1.1"
}

func socketAddress(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	pv, _ := strconv.ParseUint(port, 10, 32)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(pv)},
	}}}
}

// certPrincipal follows Envoy: first URI SAN, else first DNS SAN, else subject.
func certPrincipal(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

func urlEncodedPEM(c *x509.Certificate) string {
	p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	return strings.ReplaceAll(url.QueryEscape(string(p)), "+", "%20")
}

// streamID mirrors Envoy's UUID request-id extension: the first 8 hex
// digits of x-request-id as a decimal integer, else a random number.
func streamID(requestID string) string {
	if len(requestID) >= 8 {
		if v, err := strconv.ParseUint(requestID[:8], 16, 64); err == nil {
			return strconv.FormatUint(v, 10)
		}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return strconv.FormatUint(v, 10)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
