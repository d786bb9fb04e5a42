// Package extproc is mcpauthz's Envoy external processor
// (envoy.service.ext_proc.v3.ExternalProcessor), the response side of
// ext_authz: it keeps in tools/list, prompts/list, resources/list and
// resources/templates/list results only the entries the caller may use,
// learns what MCP sessions declared at initialize, and reports upstream 401s
// to stored credentials.
//
// It never authenticates: everything about the caller comes from the
// metadata mcpauthz's ext_authz decision put in Envoy dynamic metadata
// (Metadata), and a request without it fails closed. Envoy's filter is
// configured with request and response headers SEND, bodies NONE and
// allow_mode_override (see envoy.RenderBootstrap); the processor switches
// the response body to BUFFERED (application/json) or STREAMED
// (text/event-stream) only for 2xx answers that can carry a list:
//
//   - POST of a single list request (Streamable HTTP): the result's list is
//     filtered. JSON is edited in place (array elements and their separator
//     cut from the bytes; nextCursor and every other field untouched) and
//     content-length set to the new length; SSE events are re-assembled
//     across chunks, each JSON-RPC response filtered, every other event
//     passed as it came, content-length removed.
//   - GET streams (Streamable HTTP resumption, legacy HTTP+SSE): every
//     JSON-RPC response on the stream is filtered. Legacy HTTP+SSE answers
//     POST /messages?sessionId= with 202 and sends the result on the GET
//     stream: the POST's list request is remembered (session key + id) and
//     its response on the GET stream, recognised by id, is filtered for the
//     principal who asked; any other response there is filtered for the
//     GET stream's own principal (the session is bound to one user).
//
// Anything not understood fails closed with an immediate JSON-RPC error
// (before the headers went out) or a reset stream (after): a compressed or
// unknown content type, a batch, invalid JSON or an undecodable event, a
// duplicate or case-variant key, a body or event over the size cap, an
// Evaluator error. The list is hygiene, not the boundary: every call is
// still authorized by ext_authz.
package extproc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Evaluator decides whether the caller described by meta may use one list
// entry: the policy evaluated with the input the real call would have
// (tools/call of the tool, prompts/get of the prompt, resources/read of the
// URI; for a resource template, its uriTemplate as the URI), minus the
// arguments. An entry allowed for some arguments is allowed. It must be
// safe for concurrent use; an error fails the whole response closed.
type Evaluator interface {
	Allowed(ctx context.Context, meta *Metadata, kind EntryKind, name string) (bool, error)
}

// Learner hears upstream answers that say a stored credential no longer
// works: status 401 (with the upstream's WWW-Authenticate) to a request
// ext_authz sent with meta.Credential / meta.Connection. It must not block
// (Process waits for it): queue the refresh or revocation.
type Learner interface {
	UpstreamRejected(ctx context.Context, meta *Metadata, status int, wwwAuthenticate string)
}

// Deps are a Server's collaborators; Evaluator is required.
type Deps struct {
	Evaluator Evaluator
	Learner   Learner         // optional
	Sessions  SessionRecorder // optional: initialize capabilities per session
	Logger    *slog.Logger
}

// Options tune a Server; zero values take the defaults.
type Options struct {
	// MaxBodyBytes caps a buffered application/json list response
	// (default 8 MiB); Envoy's own buffer limit (per_connection_buffer_limit_bytes,
	// 1 MiB by default) applies first.
	MaxBodyBytes int
	// MaxEventBytes caps one server-sent event (default 8 MiB).
	MaxEventBytes int
	// LegacySessionParams are the query parameter names of the session id
	// in a legacy "endpoint" event (default sessionId, sessionid,
	// session_id: mcpauthz's mcp.legacy_session_params).
	LegacySessionParams []string
	// PendingTTL and MaxPending bound the legacy list requests awaiting
	// their response on a GET stream (defaults 10m, 100000).
	PendingTTL time.Duration
	MaxPending int
	Now        func() time.Time
}

// Stats are counters since New.
type Stats struct {
	Streams            uint64 // ext_proc streams
	Lists              uint64 // list results filtered
	EntriesRemoved     uint64
	FailedClosed       uint64 // immediate error answers or reset streams
	MissingMetadata    uint64 // requests without a usable ext_authz hand-off
	UpstreamRejections uint64 // 401s reported to the Learner
}

// Server implements envoy.service.ext_proc.v3.ExternalProcessor. Safe for
// concurrent use: each Process call owns its state; the pending table is
// locked.
type Server struct {
	extprocv3.UnimplementedExternalProcessorServer

	eval         Evaluator
	learner      Learner
	sessions     SessionRecorder
	log          *slog.Logger
	maxBody      int
	maxEvent     int
	legacyParams []string
	pending      *pendingLists

	streams, lists, removed, failed, missing, rejections atomic.Uint64
}

var _ extprocv3.ExternalProcessorServer = (*Server)(nil)

// New builds a Server.
func New(d Deps, o Options) (*Server, error) {
	if d.Evaluator == nil {
		return nil, errors.New("extproc: an Evaluator is required")
	}
	if o.MaxBodyBytes < 0 || o.MaxEventBytes < 0 || o.MaxPending < 0 || o.PendingTTL < 0 {
		return nil, errors.New("extproc: negative limit")
	}
	s := &Server{eval: d.Evaluator, learner: d.Learner, sessions: d.Sessions, log: d.Logger,
		maxBody: o.MaxBodyBytes, maxEvent: o.MaxEventBytes, legacyParams: o.LegacySessionParams}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBody == 0 {
		s.maxBody = 8 << 20
	}
	if s.maxEvent == 0 {
		s.maxEvent = 8 << 20
	}
	if len(s.legacyParams) == 0 {
		s.legacyParams = []string{"sessionId", "sessionid", "session_id"}
	}
	p := &pendingLists{ttl: o.PendingTTL, max: o.MaxPending, now: o.Now, m: map[string]pendingEntry{}}
	if p.ttl == 0 {
		p.ttl = 10 * time.Minute
	}
	if p.max == 0 {
		p.max = 100000
	}
	if p.now == nil {
		p.now = time.Now
	}
	s.pending = p
	return s, nil
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Streams: s.streams.Load(), Lists: s.lists.Load(), EntriesRemoved: s.removed.Load(),
		FailedClosed: s.failed.Load(), MissingMetadata: s.missing.Load(), UpstreamRejections: s.rejections.Load()}
}

// Process serves one HTTP stream: exactly one answer per message, in order.
// It never ends the stream early with OK (Envoy would let the rest through
// unprocessed): internal errors end it with a gRPC error, which Envoy
// (failure_mode_allow: false) turns into a 500 or a reset.
func (s *Server) Process(srv extprocv3.ExternalProcessor_ProcessServer) error {
	s.streams.Add(1)
	st := &stream{s: s, ctx: srv.Context()}
	for {
		req, err := srv.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		resp, err := st.handle(req)
		if err != nil {
			return status.Error(codes.Internal, "extproc: "+err.Error())
		}
		if err := srv.Send(resp); err != nil {
			return err
		}
		if resp.GetImmediateResponse() != nil {
			return nil // Envoy ignores the stream after an immediate response
		}
	}
}

const (
	bodyNone = iota
	bodyJSON
	bodySSE
)

// stream is the state of one Process call.
type stream struct {
	s          *Server
	ctx        context.Context
	meta       *Metadata
	sawRequest bool
	local      bool // a local reply (no request seen, no metadata): pass
	initCaps   *ClientCapabilities
	wantInit   bool
	body       int
	hadLength  bool
	session    string // session key of a GET stream
	sse        *sseFilter
	f          filterer
	scratch    []byte
	decide     decideFunc // for meta
}

func (st *stream) handle(req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	switch r := req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return st.requestHeaders(req), nil
	case *extprocv3.ProcessingRequest_RequestBody:
		if st.wantInit && r.RequestBody.GetEndOfStream() {
			if c, ok := initializeCapabilities(r.RequestBody.GetBody()); ok {
				st.initCaps = &c
			}
		}
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return st.responseHeaders(req, r.ResponseHeaders), nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return st.responseBody(r.ResponseBody), nil
	case *extprocv3.ProcessingRequest_RequestTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestTrailers{RequestTrailers: &extprocv3.TrailersResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseTrailers:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseTrailers{ResponseTrailers: &extprocv3.TrailersResponse{}}}, nil
	}
	return nil, fmt.Errorf("unexpected message %T", req.GetRequest())
}

func (st *stream) setMeta(m Metadata) {
	st.meta = &m
	st.session = m.Session
	st.decide = st.decider(st.meta)
}

func (st *stream) decider(m *Metadata) decideFunc {
	return func(kind EntryKind, name string) (bool, error) {
		return st.s.eval.Allowed(st.ctx, m, kind, name)
	}
}

func (st *stream) requestHeaders(req *extprocv3.ProcessingRequest) *extprocv3.ProcessingResponse {
	st.sawRequest = true
	m, err := ParseMetadata(req.GetMetadataContext())
	if err != nil {
		st.s.missing.Add(1)
		return st.fail(http.StatusInternalServerError, "metadata", err)
	}
	st.setMeta(m)
	if m.Batch {
		for _, bm := range m.BatchMethods {
			if isListMethod(bm) {
				return st.fail(http.StatusBadRequest, "batched_list", errors.New("list requests in a JSON-RPC batch are not filtered; send them alone"))
			}
		}
	}
	if m.Transport == TransportLegacySSE && isListMethod(m.Method) && m.Session != "" && m.RequestID != "" {
		st.s.pending.add(m.Session, []byte(m.RequestID), st.meta)
	}
	resp := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}
	if m.Method == "initialize" && st.s.sessions != nil && !req.GetRequestHeaders().GetEndOfStream() {
		st.wantInit = true
		resp.ModeOverride = &filterv3.ProcessingMode{
			RequestHeaderMode: filterv3.ProcessingMode_SEND, ResponseHeaderMode: filterv3.ProcessingMode_SEND,
			RequestBodyMode: filterv3.ProcessingMode_BUFFERED, RequestTrailerMode: filterv3.ProcessingMode_SKIP,
			ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
		}
	}
	return resp
}

func continueResponseHeaders() *extprocv3.ProcessingResponse {
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}
}

func (st *stream) responseHeaders(req *extprocv3.ProcessingRequest, h *extprocv3.HttpHeaders) *extprocv3.ProcessingResponse {
	if !st.sawRequest {
		m, err := ParseMetadata(req.GetMetadataContext())
		if err != nil {
			// Envoy sends its local replies (an ext_authz denial, a CORS
			// preflight) through every encoder filter, ext_proc included,
			// without the request: not an upstream answer, nothing to filter.
			st.local = true
			return continueResponseHeaders()
		}
		st.setMeta(m) // request headers are not sent to us (request_header_mode SKIP)
	}
	hm := h.GetHeaders()
	code, _ := strconv.Atoi(headerValue(hm, ":status"))
	m := st.meta
	if code == http.StatusUnauthorized && st.s.learner != nil {
		st.s.rejections.Add(1)
		st.s.learner.UpstreamRejected(st.ctx, m, code, headerValue(hm, "www-authenticate"))
	}
	ok2xx := code >= 200 && code <= 299
	if st.initCaps != nil && ok2xx && st.s.sessions != nil {
		if sids := headerValues(hm, "mcp-session-id"); len(sids) == 1 && sids[0] != "" {
			st.s.sessions.RecordInitialize(st.ctx, SessionKey(m.Server, sids[0]), *st.initCaps)
		}
	}
	listPost := m.RPCKind == "request" && isListMethod(m.Method) && m.Transport != TransportLegacySSE
	getStream := m.RPCKind == "stream"
	if !ok2xx || h.GetEndOfStream() || (!listPost && !getStream) {
		return continueResponseHeaders()
	}
	for _, ce := range headerValues(hm, "content-encoding") {
		for _, c := range strings.Split(ce, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				return st.fail(http.StatusBadGateway, "compressed", fmt.Errorf("content-encoding %q is not filtered", c))
			}
		}
	}
	var mt string
	if cts := headerValues(hm, "content-type"); len(cts) == 1 {
		mt, _, _ = mime.ParseMediaType(cts[0])
	}
	resp := continueResponseHeaders()
	switch {
	case mt == "application/json" && listPost:
		st.body = bodyJSON
		st.hadLength = len(headerValues(hm, "content-length")) > 0
		resp.ModeOverride = responseMode(filterv3.ProcessingMode_BUFFERED)
	case mt == "text/event-stream":
		st.body = bodySSE
		st.sse = &sseFilter{max: st.s.maxEvent, onData: st.onData}
		if getStream {
			st.sse.onEndpoint = st.onEndpoint
		}
		resp.ModeOverride = responseMode(filterv3.ProcessingMode_STREAMED)
		// Envoy drops content-length itself only when STREAMED is the
		// configured mode, not when a processor switches to it.
		resp.GetResponseHeaders().Response = &extprocv3.CommonResponse{
			HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: []string{"content-length"}},
		}
	default:
		return st.fail(http.StatusBadGateway, "content_type", fmt.Errorf("a list answered with content-type %q is not filtered", mt))
	}
	return resp
}

func responseMode(body filterv3.ProcessingMode_BodySendMode) *filterv3.ProcessingMode {
	return &filterv3.ProcessingMode{
		RequestHeaderMode: filterv3.ProcessingMode_SEND, ResponseHeaderMode: filterv3.ProcessingMode_SEND,
		ResponseBodyMode: body, RequestTrailerMode: filterv3.ProcessingMode_SKIP, ResponseTrailerMode: filterv3.ProcessingMode_SKIP,
	}
}

func bodyResponse(mut *extprocv3.BodyMutation, hm *extprocv3.HeaderMutation) *extprocv3.ProcessingResponse {
	br := &extprocv3.BodyResponse{}
	if mut != nil || hm != nil {
		br.Response = &extprocv3.CommonResponse{BodyMutation: mut, HeaderMutation: hm}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: br}}
}

func (st *stream) responseBody(b *extprocv3.HttpBody) *extprocv3.ProcessingResponse {
	switch st.body {
	case bodyJSON:
		body := b.GetBody()
		if len(body) > st.s.maxBody {
			return st.fail(http.StatusBadGateway, "too_large", errTooLarge)
		}
		trimmed := bytes.TrimPrefix(body, utf8BOM)
		out, fs, err := st.f.filterMessage(trimmed, st.pickStream, nil)
		if err != nil {
			return st.fail(http.StatusBadGateway, "unfilterable", err)
		}
		st.count(fs)
		if !fs.changedMessage && len(trimmed) == len(body) {
			return bodyResponse(nil, nil)
		}
		var hm *extprocv3.HeaderMutation
		if st.hadLength {
			hm = &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-length", strconv.Itoa(len(out)))}}
		}
		return bodyResponse(&extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: out}}, hm)
	case bodySSE:
		out, err := st.sse.write(b.GetBody(), b.GetEndOfStream())
		if err != nil {
			return st.fail(http.StatusBadGateway, "unfilterable_event", err)
		}
		return bodyResponse(&extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: bytes.Clone(out)}}, nil)
	}
	return bodyResponse(nil, nil)
}

func (st *stream) count(fs filterStats) {
	if fs.lists > 0 {
		st.s.lists.Add(1)
		st.s.removed.Add(uint64(fs.removed))
	}
}

// pickStream filters every response for the stream's own caller.
func (st *stream) pickStream([]byte) decideFunc { return st.decide }

// pickGet filters a response on a GET stream for the caller whose legacy
// list request it answers, else for the stream's caller.
func (st *stream) pickGet(id []byte) decideFunc {
	if st.session != "" && id != nil {
		if m := st.s.pending.take(st.session, id); m != nil {
			return st.decider(m)
		}
	}
	return st.decide
}

func (st *stream) onData(data []byte) ([]byte, bool, error) {
	pick := st.pickStream
	if st.meta.RPCKind == "stream" {
		pick = st.pickGet
	}
	out, fs, err := st.f.filterMessage(data, pick, st.scratch)
	if err != nil {
		return nil, false, err
	}
	st.count(fs)
	if !fs.changedMessage {
		return data, false, nil
	}
	st.scratch = out
	return out, true, nil
}

// onEndpoint learns the legacy session of a GET stream from its endpoint
// event ("/messages?sessionId=...").
func (st *stream) onEndpoint(data []byte) {
	if st.session != "" {
		return
	}
	_, q, ok := strings.Cut(string(data), "?")
	if !ok {
		return
	}
	vals, err := url.ParseQuery(q)
	if err != nil {
		return
	}
	for _, p := range st.s.legacyParams {
		if v := vals[p]; len(v) == 1 && v[0] != "" {
			st.session = SessionKey(st.meta.Server, v[0])
			return
		}
	}
}

// fail answers with a JSON-RPC error (Envoy sends it, or resets the stream
// when the response headers already went out).
func (st *stream) fail(code int, reason string, err error) *extprocv3.ProcessingResponse {
	st.s.failed.Add(1)
	id := json.RawMessage("null")
	attrs := []any{"reason", reason, "err", err}
	if st.meta != nil {
		if st.meta.RequestID != "" {
			id = json.RawMessage(st.meta.RequestID)
		}
		attrs = append(attrs, "server", st.meta.Server, "method", st.meta.Method, "decision_id", st.meta.DecisionID)
	}
	st.s.log.WarnContext(st.ctx, "ext_proc failed closed", attrs...)
	body, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{-32603, "mcpauthz: " + err.Error()}})
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
		Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{setHeader("content-type", "application/json")}},
		Body:    body,
		Details: "mcpauthz_" + reason,
	}}}
}

func setHeader(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, RawValue: []byte(v)},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// headerValues returns every value of the (lower-case) header name; Envoy
// sends raw_value, older versions value.
func headerValues(hm *corev3.HeaderMap, name string) []string {
	var out []string
	for _, h := range hm.GetHeaders() {
		if h.GetKey() != name {
			continue
		}
		if rv := h.GetRawValue(); len(rv) > 0 {
			out = append(out, string(rv))
		} else {
			out = append(out, h.GetValue())
		}
	}
	return out
}

func headerValue(hm *corev3.HeaderMap, name string) string {
	if v := headerValues(hm, name); len(v) == 1 {
		return v[0]
	}
	return ""
}

// initializeCapabilities reads params.capabilities.elicitation of an
// initialize request. ok is false when the body is not understood.
func initializeCapabilities(body []byte) (ClientCapabilities, bool) {
	var c ClientCapabilities
	params, ok := member(body, skipWS(body, 0), "params")
	if !ok {
		return c, false
	}
	caps, ok := member(body, params, "capabilities")
	if !ok {
		return c, false
	}
	el, ok := member(body, caps, "elicitation")
	if !ok || body[el] != '{' {
		return c, true // declared nothing usable
	}
	c.Elicitation = true
	_, c.ElicitationURL = member(body, el, "url")
	_, c.ElicitationForm = member(body, el, "form")
	if !c.ElicitationURL && !c.ElicitationForm {
		c.ElicitationForm = true // 2025-06-18: an empty object means form mode
	}
	return c, true
}

// member returns where the value of the exact key starts in the object at
// b[i]; a duplicate or case-variant key counts as absent.
func member(b []byte, i int, key string) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	at, n, bad := 0, 0, false
	_, err := members(b, i, 0, func(k0, k1, v0 int) (int, error) {
		if exact, fold := keyMatch(b[k0:k1], key); fold {
			n++
			bad = bad || !exact
			at = v0
		}
		return scanValue(b, v0, 1)
	})
	return at, err == nil && n == 1 && !bad
}
