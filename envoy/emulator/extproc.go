package emulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpauthz/mcpauthz/envoy"
)

// ExtProc is the envoy.filters.http.ext_proc filter that runs after
// ext_authz (envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
// with a gRPC service). It is applied as Envoy's filter does, read from
// source/extensions/filters/http/ext_proc/{ext_proc,processor_state}.cc:
//
//   - One gRPC stream per HTTP stream; exactly one answer per message.
//     Request headers (pseudo headers included, raw_value), the request
//     body, response headers (with :status) and the response body are sent
//     as the current processing mode says. Every message carries
//     metadata_context with the stream's dynamic metadata of each
//     ForwardingNamespaces entry; ext_authz's CheckResponse.dynamic_metadata
//     is that metadata under envoy.ExtAuthzMetadataNamespace.
//   - mode_override is honoured only in a headers answer and only with
//     AllowModeOverride; it replaces the mode for the rest of the stream.
//   - BUFFERED: the whole body (over BufferLimit: 500) in one message;
//     header mutations in the answer apply; a body mutation whose length
//     differs from the content-length header then present is refused with
//     a 500. STREAMED: each chunk read from the upstream is one message and
//     is replaced by its answer's body mutation (none: kept).
//   - content-length is dropped right after the response headers are sent
//     only when the mode in force then (before the answer's override) is
//     STREAMED (or BUFFERED without response headers); after an override
//     to STREAMED it stays unless the processor removes it; in STREAMED mode
//     content-length set mutations are ignored.
//   - Header mutations: removals, then sets (append_action as for
//     ext_authz); host, :authority, :scheme, :method and x-envoy-* are
//     never changed; :status may be set on responses.
//   - An immediate_response before the response headers went out is a
//     local reply (status, default 200; header mutations; body); after, the
//     stream is reset. A gRPC error, a spurious message or a message timeout
//     (MessageTimeout, default 200ms) is a 500 (504 for a timeout) or a
//     reset; with FailureModeAllow processing just stops. A stream the
//     processor closes with OK ends processing: the rest passes unchanged.
//   - Local replies of earlier filters (an ext_authz denial) go through the
//     response path of ext_proc too, without the request ever having been
//     sent to the processor.
//
// Not modelled: trailers, BUFFERED_PARTIAL and FULL_DUPLEX_STREAMED
// (refused with a 500), attributes, observability mode, per-route
// overrides other than disabling, CORS preflight replies through ext_proc.
type ExtProc struct {
	Addr string // gRPC address of the processor; default Config.AuthzAddr
	// ProcessingMode is processing_mode; nil is the generated one: headers
	// SEND both ways, bodies NONE, trailers SKIP.
	ProcessingMode       *filterv3.ProcessingMode
	AllowModeOverride    bool
	MessageTimeout       time.Duration // message_timeout, default 200ms
	ForwardingNamespaces []string      // metadata_options.forwarding_namespaces.untyped
	FailureModeAllow     bool
	BufferLimit          int // the stream's buffer limit, default 1 MiB
}

// MCPExtProc is the ext_proc filter `mcpauthz envoy generate` renders.
func MCPExtProc() *ExtProc {
	return &ExtProc{AllowModeOverride: true, MessageTimeout: envoy.DefaultExtProcMessageTimeout,
		ForwardingNamespaces: []string{envoy.ExtAuthzMetadataNamespace}}
}

func (x *ExtProc) withDefaults() *ExtProc {
	c := *x
	if c.ProcessingMode == nil {
		c.ProcessingMode = &filterv3.ProcessingMode{RequestHeaderMode: filterv3.ProcessingMode_SEND, ResponseHeaderMode: filterv3.ProcessingMode_SEND,
			RequestTrailerMode: filterv3.ProcessingMode_SKIP, ResponseTrailerMode: filterv3.ProcessingMode_SKIP}
	}
	if c.MessageTimeout == 0 {
		c.MessageTimeout = 200 * time.Millisecond
	}
	if c.BufferLimit == 0 {
		c.BufferLimit = 1 << 20
	}
	return &c
}

// localResponse is a local reply the filter sends (or a reset, once the
// response started).
type localResponse struct {
	status  int
	headers []*corev3.HeaderValueOption
	body    string
	details string
}

func (l *localResponse) Error() string { return "ext_proc local reply: " + l.details }

var errReset = errors.New("ext_proc: stream reset after the response started")

// xproc is the filter's state for one HTTP stream.
type xproc struct {
	cfg      *ExtProc
	stream   extprocv3.ExternalProcessor_ProcessClient
	cancel   context.CancelFunc
	recv     chan recvd
	mode     *filterv3.ProcessingMode
	meta     map[string]*structpb.Struct // stream dynamic metadata by namespace
	complete bool                        // processing_complete_: the rest passes unprocessed
	openErr  error
}

type recvd struct {
	resp *extprocv3.ProcessingResponse
	err  error
}

func (p *Proxy) newXProc(ctx context.Context, meta map[string]*structpb.Struct) *xproc {
	x := &xproc{cfg: p.xp, mode: proto.Clone(p.xp.ProcessingMode).(*filterv3.ProcessingMode), meta: meta, recv: make(chan recvd)}
	ctx, x.cancel = context.WithCancel(ctx)
	x.stream, x.openErr = p.xpClient.Process(ctx)
	if x.openErr == nil {
		go func() {
			for {
				resp, err := x.stream.Recv()
				select {
				case x.recv <- recvd{resp, err}:
				case <-ctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	return x
}

func (x *xproc) close() {
	if x.stream != nil {
		_ = x.stream.CloseSend()
	}
	x.cancel()
}

// fail is a stream failure: a local reply (500, 504 for a timeout) unless
// failure_mode_allow, which just stops processing.
func (x *xproc) fail(status int, details string) *localResponse {
	x.complete = true
	if x.cfg.FailureModeAllow {
		return nil
	}
	return &localResponse{status: status, details: details}
}

// call sends one message and waits for its answer. It returns the answer
// of the expected kind, or (nil, nil) when processing is complete (the
// caller passes data unchanged), or a local reply.
func (x *xproc) call(req *extprocv3.ProcessingRequest, headers bool) (*extprocv3.ProcessingResponse, *localResponse) {
	if x.complete {
		return nil, nil
	}
	if x.openErr != nil {
		return nil, x.fail(http.StatusInternalServerError, "ext_proc_error_gRPC_error")
	}
	md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
	for _, ns := range x.cfg.ForwardingNamespaces {
		if s, ok := x.meta[ns]; ok {
			md.FilterMetadata[ns] = s
		}
	}
	req.MetadataContext = md
	if err := x.stream.Send(req); err != nil {
		return nil, x.fail(http.StatusInternalServerError, "ext_proc_error_gRPC_error")
	}
	t := time.NewTimer(x.cfg.MessageTimeout)
	defer t.Stop()
	var r recvd
	select {
	case r = <-x.recv:
	case <-t.C:
		return nil, x.fail(http.StatusGatewayTimeout, "ext_proc_error_per-message_timeout_exceeded")
	}
	if errors.Is(r.err, io.EOF) {
		x.complete = true // a clean close: the rest is not processed
		return nil, nil
	}
	if r.err != nil {
		return nil, x.fail(http.StatusInternalServerError, "ext_proc_error_gRPC_error")
	}
	resp := r.resp
	if x.cfg.AllowModeOverride && headers && resp.GetModeOverride() != nil {
		x.mode = proto.Clone(resp.GetModeOverride()).(*filterv3.ProcessingMode)
	}
	if ir := resp.GetImmediateResponse(); ir != nil {
		x.complete = true
		status := int(ir.GetStatus().GetCode())
		if status < 200 || status > 599 {
			status = http.StatusOK
		}
		return nil, &localResponse{status: status, headers: ir.GetHeaders().GetSetHeaders(), body: string(ir.GetBody()), details: ir.GetDetails()}
	}
	var ok bool
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		ok = resp.GetRequestHeaders() != nil
	case *extprocv3.ProcessingRequest_RequestBody:
		ok = resp.GetRequestBody() != nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		ok = resp.GetResponseHeaders() != nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		ok = resp.GetResponseBody() != nil
	}
	if !ok {
		return nil, x.fail(http.StatusInternalServerError, "spurious message")
	}
	return resp, nil
}

func sendsHeaders(m filterv3.ProcessingMode_HeaderSendMode) bool {
	return m != filterv3.ProcessingMode_SKIP
}

// dropsLength is shouldRemoveContentLength for the response side.
func (x *xproc) dropsLength() bool {
	b := x.mode.GetResponseBodyMode()
	return b == filterv3.ProcessingMode_STREAMED || b == filterv3.ProcessingMode_BUFFERED_PARTIAL ||
		b == filterv3.ProcessingMode_FULL_DUPLEX_STREAMED || (b == filterv3.ProcessingMode_BUFFERED && !sendsHeaders(x.mode.GetResponseHeaderMode()))
}

func headerMap(pseudo [][2]string, h http.Header) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for _, kv := range pseudo {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
	}
	for k, vs := range h {
		for _, v := range vs {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: strings.ToLower(k), RawValue: []byte(v)})
		}
	}
	return hm
}

// mutate applies a processor's header mutation: removals, then sets.
func mutate(h http.Header, m *extprocv3.HeaderMutation, response, lockLength bool) (status int) {
	allowed := func(k string) bool {
		return k != "host" && !strings.HasPrefix(k, "x-envoy-") && !strings.HasPrefix(k, ":")
	}
	for _, k := range m.GetRemoveHeaders() {
		if k = strings.ToLower(k); allowed(k) {
			h.Del(k)
		}
	}
	for _, o := range m.GetSetHeaders() {
		k, v := strings.ToLower(o.GetHeader().GetKey()), headerValue(o)
		if response && k == ":status" {
			if s, err := strconv.Atoi(v); err == nil && s >= 200 && s <= 599 {
				status = s
			}
			continue
		}
		if !allowed(k) || !validHeader(k, v) || (lockLength && k == "content-length") {
			continue
		}
		if response {
			apply(h, responseAction(o), k, v)
		} else {
			apply(h, requestAction(o), k, v)
		}
	}
	return status
}

func bodyMutation(m *extprocv3.BodyMutation, data []byte) []byte {
	switch b := m.GetMutation().(type) {
	case *extprocv3.BodyMutation_Body:
		return b.Body
	case *extprocv3.BodyMutation_ClearBody:
		if b.ClearBody {
			return nil
		}
	}
	return data
}

// decode runs the request side of s: headers, then the (already read)
// body, leaving in s.body the body to send upstream.
func (x *xproc) decode(s *httpStream) *localResponse {
	hdr, body, hasBody := s.hdr, s.body, s.hasBody
	if sendsHeaders(x.mode.GetRequestHeaderMode()) {
		pseudo := [][2]string{{":authority", s.r.Host}, {":path", s.fullPath}, {":method", s.r.Method}, {":scheme", s.scheme}}
		resp, lr := x.call(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{Headers: headerMap(pseudo, hdr), EndOfStream: !hasBody}}}, true)
		if lr != nil {
			return lr
		}
		mutate(hdr, resp.GetRequestHeaders().GetResponse().GetHeaderMutation(), false, false)
	}
	switch bm := x.mode.GetRequestBodyMode(); {
	case x.complete || !hasBody || bm == filterv3.ProcessingMode_NONE:
	case bm == filterv3.ProcessingMode_BUFFERED || bm == filterv3.ProcessingMode_STREAMED:
		resp, lr := x.call(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
			RequestBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}}, false)
		if lr != nil {
			return lr
		}
		if cr := resp.GetRequestBody().GetResponse(); cr != nil {
			if bm == filterv3.ProcessingMode_BUFFERED {
				mutate(hdr, cr.GetHeaderMutation(), false, false)
			}
			if cr.GetBodyMutation() != nil {
				body = bodyMutation(cr.GetBodyMutation(), body)
				hdr.Del("Content-Length")
			}
		}
	default:
		// Not an ext_proc failure but a limit of this emulator: refuse
		// whatever failure_mode_allow says rather than guess what Envoy
		// would send upstream.
		x.complete = true
		return &localResponse{status: http.StatusInternalServerError, details: fmt.Sprintf("request_body_mode %s is not emulated", bm)}
	}
	s.body = body
	return nil
}

// encode runs the response side on res before its headers go out: the
// header exchange, then the body as the mode says (BUFFERED here, STREAMED
// by wrapping res.Body). A *localResponse error replaces the response.
func (x *xproc) encode(res *http.Response) error {
	eos := res.ContentLength == 0 || res.Body == nil || res.Body == http.NoBody
	if !x.complete && sendsHeaders(x.mode.GetResponseHeaderMode()) {
		dropLength := x.dropsLength()
		resp, lr := x.call(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{
			ResponseHeaders: &extprocv3.HttpHeaders{Headers: headerMap([][2]string{{":status", strconv.Itoa(res.StatusCode)}}, res.Header), EndOfStream: eos}}}, true)
		if dropLength && lr == nil && !x.complete {
			res.Header.Del("Content-Length")
		}
		if lr != nil {
			return lr
		}
		if s := mutate(res.Header, resp.GetResponseHeaders().GetResponse().GetHeaderMutation(), true, x.dropsLength()); s != 0 {
			res.StatusCode = s
		}
	}
	if x.complete || eos {
		return nil
	}
	switch bm := x.mode.GetResponseBodyMode(); bm {
	case filterv3.ProcessingMode_NONE:
	case filterv3.ProcessingMode_BUFFERED:
		body, err := io.ReadAll(io.LimitReader(res.Body, int64(x.cfg.BufferLimit)+1))
		if err != nil {
			return err
		}
		if len(body) > x.cfg.BufferLimit {
			return &localResponse{status: http.StatusInternalServerError, details: "response_payload_too_large"}
		}
		resp, lr := x.call(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: body, EndOfStream: true}}}, false)
		if lr != nil {
			return lr
		}
		if cr := resp.GetResponseBody().GetResponse(); cr != nil {
			if s := mutate(res.Header, cr.GetHeaderMutation(), true, false); s != 0 {
				res.StatusCode = s
			}
			if cr.GetBodyMutation() != nil {
				nb := bodyMutation(cr.GetBodyMutation(), body)
				if cl := res.Header.Get("Content-Length"); cl != "" {
					if n, err := strconv.Atoi(cl); err == nil && n != len(nb) {
						x.complete = true
						return &localResponse{status: http.StatusInternalServerError, details: "mismatch between content length and the length of the mutated body"}
					}
				}
				body = nb
			}
		}
		res.Body, res.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	case filterv3.ProcessingMode_STREAMED:
		res.Body = &streamedBody{x: x, src: res.Body, buf: make([]byte, 32<<10)}
	default:
		x.complete = true // a limit of this emulator, refused as in decode
		return &localResponse{status: http.StatusInternalServerError, details: fmt.Sprintf("response_body_mode %s is not emulated", bm)}
	}
	if res.Header.Get("Content-Length") == "" {
		res.ContentLength = -1
	}
	return nil
}

// streamedBody sends each chunk read from the upstream to the processor
// and yields what it answers.
type streamedBody struct {
	x       *xproc
	src     io.ReadCloser
	buf     []byte
	pending []byte
	done    bool
}

func (s *streamedBody) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.done {
			return 0, io.EOF
		}
		n, err := s.src.Read(s.buf)
		eos := errors.Is(err, io.EOF)
		if err != nil && !eos {
			return 0, err
		}
		if n == 0 && !eos {
			continue
		}
		chunk := bytes.Clone(s.buf[:n])
		s.done = eos
		resp, lr := s.x.call(&extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
			ResponseBody: &extprocv3.HttpBody{Body: chunk, EndOfStream: eos}}}, false)
		if lr != nil {
			return 0, errReset // the response started: Envoy resets the stream
		}
		if m := resp.GetResponseBody().GetResponse().GetBodyMutation(); m != nil {
			chunk = bodyMutation(m, chunk)
		}
		s.pending = chunk
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

func (s *streamedBody) Close() error { return s.src.Close() }

// reply sends a local reply of an earlier filter (ext_authz) through
// ext_proc's response path when it runs on rt, else as it is.
func (p *Proxy) reply(w http.ResponseWriter, r *http.Request, rt *route, meta map[string]*structpb.Struct, status int, hs []*corev3.HeaderValueOption, body string) {
	if p.xp == nil || rt.DisableExtProc {
		localReply(w, status, hs, body)
		return
	}
	x := p.newXProc(r.Context(), meta)
	defer x.close()
	res := &http.Response{StatusCode: status, Header: localReplyHeader(hs, body), ContentLength: int64(len(body)),
		Body: io.NopCloser(strings.NewReader(body))}
	if err := x.encode(res); err != nil {
		var lr *localResponse
		if errors.As(err, &lr) {
			localReply(w, lr.status, lr.headers, lr.body)
			return
		}
		localReply(w, http.StatusInternalServerError, nil, "")
		return
	}
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	_, _ = io.Copy(w, res.Body)
}
