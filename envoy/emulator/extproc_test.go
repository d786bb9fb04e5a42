package emulator

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpauthz/mcpauthz/envoy"
)

// fakeProc is a programmable ExternalProcessor: answer sees every message
// of a stream (n counts from 0) and returns the answer; (nil, nil) closes
// the stream with OK, (nil, err) fails it.
type fakeProc struct {
	extprocv3.UnimplementedExternalProcessorServer
	mu     sync.Mutex
	seen   []*extprocv3.ProcessingRequest
	answer func(n int, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error)
}

func (f *fakeProc) Process(s extprocv3.ExternalProcessor_ProcessServer) error {
	for n := 0; ; n++ {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		f.mu.Lock()
		f.seen = append(f.seen, req)
		f.mu.Unlock()
		resp, err := f.answer(n, req)
		if err != nil {
			return err
		}
		if resp == nil {
			return nil
		}
		if err := s.Send(resp); err != nil {
			return err
		}
	}
}

func (f *fakeProc) messages() []*extprocv3.ProcessingRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*extprocv3.ProcessingRequest(nil), f.seen...)
}

// passThrough answers every message with an empty answer of its kind.
func passThrough(_ int, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
	switch req.GetRequest().(type) {
	case *extprocv3.ProcessingRequest_RequestHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{}}}, nil
	case *extprocv3.ProcessingRequest_RequestBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseHeaders:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}, nil
	case *extprocv3.ProcessingRequest_ResponseBody:
		return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}, nil
	}
	return nil, errors.New("unexpected")
}

func withOverride(resp *extprocv3.ProcessingResponse, body filterv3.ProcessingMode_BodySendMode, remove ...string) *extprocv3.ProcessingResponse {
	resp.ModeOverride = &filterv3.ProcessingMode{ResponseBodyMode: body}
	if len(remove) > 0 {
		resp.GetResponseHeaders().Response = &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{RemoveHeaders: remove}}
	}
	return resp
}

func bodyAnswer(body string, setHeaders ...string) *extprocv3.ProcessingResponse {
	cr := &extprocv3.CommonResponse{BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_Body{Body: []byte(body)}}}
	if len(setHeaders) > 0 {
		cr.HeaderMutation = &extprocv3.HeaderMutation{}
		for i := 0; i+1 < len(setHeaders); i += 2 {
			cr.HeaderMutation.SetHeaders = append(cr.HeaderMutation.SetHeaders, &corev3.HeaderValueOption{
				Header: &corev3.HeaderValue{Key: setHeaders[i], RawValue: []byte(setHeaders[i+1])}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD})
		}
	}
	return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: cr}}}
}

type xpHarness struct {
	proc     *fakeProc
	authz    *fakeAuthz
	front    string
	upstream http.HandlerFunc
	upSeen   chan http.Header
}

// newXPHarness: ext_authz allows with dynamic metadata {"who": "alice"}
// (denies /deny with 401); ext_proc as cfg; the upstream calls h.upstream.
func newXPHarness(t *testing.T, xp *ExtProc, mutate func(*Config)) *xpHarness {
	t.Helper()
	h := &xpHarness{proc: &fakeProc{answer: passThrough}, upSeen: make(chan http.Header, 16)}
	md, _ := structpb.NewStruct(map[string]any{"mcpauthz": map[string]any{"who": "alice"}})
	h.authz = &fakeAuthz{respond: func(r *authv3.CheckRequest) *authv3.CheckResponse {
		if strings.HasPrefix(r.GetAttributes().GetRequest().GetHttp().GetPath(), "/mcp/deny") {
			return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_UNAUTHENTICATED)},
				HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
					Status: &typev3.HttpStatus{Code: 401}, Body: "no"}}}
		}
		resp := envoy.AllowWithMetadata(nil, nil, md)
		return resp
	}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, h.authz)
	extprocv3.RegisterExternalProcessorServer(gs, h.proc)
	go func() { _ = gs.Serve(l) }()
	t.Cleanup(gs.Stop)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.upSeen <- r.Header.Clone()
		h.upstream(w, r)
	}))
	t.Cleanup(up.Close)
	cfg := Config{AuthzAddr: l.Addr().String(), Timeout: 2 * time.Second, ExtProc: xp, Routes: []Route{
		{Name: "meta", Path: "/.well-known/oauth-protected-resource/mcp", Upstream: up.URL, DisableExtAuthz: true, DisableExtProc: true},
		{Name: "mcp", PathPrefix: "/mcp", Upstream: up.URL, ContextExtensions: map[string]string{"mcp_server": "docs"},
			RequestHeadersToSet: []envoy.Header{{Name: "accept-encoding", Value: "identity"}}},
	}}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	fs := httptest.NewServer(p)
	t.Cleanup(fs.Close)
	h.front = fs.URL
	return h
}

func (h *xpHarness) get(t *testing.T, path string) (*http.Response, string, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.front+path, strings.NewReader(`{"x":1}`))
	req.Header.Set("Accept-Encoding", "gzip")
	res, err := http.DefaultTransport.(*http.Transport).Clone().RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, string(b), err
}

func writeChunks(w http.ResponseWriter, cl bool, chunks ...string) {
	w.Header().Set("Content-Type", "text/event-stream")
	if cl {
		n := 0
		for _, c := range chunks {
			n += len(c)
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
	}
	w.WriteHeader(200)
	for _, c := range chunks {
		_, _ = io.WriteString(w, c)
		w.(http.Flusher).Flush()
		time.Sleep(5 * time.Millisecond)
	}
}

func TestExtProcMetadataAndHeaders(t *testing.T) {
	h := newXPHarness(t, MCPExtProc(), nil)
	h.upstream = func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hello") }
	res, body, err := h.get(t, "/mcp/x")
	if err != nil || res.StatusCode != 200 || body != "hello" {
		t.Fatalf("%v %v %q", res, err, body)
	}
	up := <-h.upSeen
	if got := up.Values("Accept-Encoding"); len(got) != 1 || got[0] != "identity" {
		t.Errorf("upstream accept-encoding %q", got)
	}
	ms := h.proc.messages()
	if len(ms) != 2 || ms[0].GetRequestHeaders() == nil || ms[1].GetResponseHeaders() == nil {
		t.Fatalf("messages %v", ms)
	}
	for i, m := range ms {
		who := m.GetMetadataContext().GetFilterMetadata()[envoy.ExtAuthzMetadataNamespace].GetFields()["mcpauthz"].GetStructValue().GetFields()["who"].GetStringValue()
		if who != "alice" {
			t.Errorf("message %d: ext_authz metadata not forwarded: %v", i, m.GetMetadataContext())
		}
	}
	hv := map[string]string{}
	for _, x := range ms[0].GetRequestHeaders().GetHeaders().GetHeaders() {
		hv[x.GetKey()] = string(x.GetRawValue())
	}
	if hv[":method"] != "POST" || hv[":path"] != "/mcp/x" || hv[":authority"] == "" {
		t.Errorf("request headers %v", hv)
	}
	// Metadata route: no ext_proc at all.
	before := len(h.proc.messages())
	if res, _, err := h.get(t, "/.well-known/oauth-protected-resource/mcp"); err != nil || res.StatusCode != 200 {
		t.Fatalf("metadata: %v %v", res, err)
	}
	if len(h.proc.messages()) != before {
		t.Error("ext_proc ran on a route that disables it")
	}
}

func TestExtProcBuffered(t *testing.T) {
	for _, tt := range []struct {
		name       string
		setLength  bool // the processor sets the right content-length
		upLength   bool // the upstream sent one
		wantStatus int
	}{
		{"length corrected", true, true, 200},
		{"length left stale", false, true, 500},
		{"upstream without length", false, false, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newXPHarness(t, MCPExtProc(), nil)
			h.upstream = func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if !tt.upLength {
					w.Header().Set("Transfer-Encoding", "chunked")
				}
				_, _ = io.WriteString(w, `{"long":"original body"}`)
			}
			h.proc.answer = func(n int, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
				switch {
				case req.GetResponseHeaders() != nil:
					r, _ := passThrough(n, req)
					return withOverride(r, filterv3.ProcessingMode_BUFFERED), nil
				case req.GetResponseBody() != nil:
					if !req.GetResponseBody().GetEndOfStream() || string(req.GetResponseBody().GetBody()) != `{"long":"original body"}` {
						return nil, errors.New("not the whole body")
					}
					if tt.setLength {
						return bodyAnswer(`{"s":1}`, "content-length", "7"), nil
					}
					return bodyAnswer(`{"s":1}`), nil
				}
				return passThrough(n, req)
			}
			res, body, err := h.get(t, "/mcp/x")
			if err != nil || res.StatusCode != tt.wantStatus {
				t.Fatalf("status %v err %v body %q", res, err, body)
			}
			if tt.wantStatus == 200 && body != `{"s":1}` {
				t.Fatalf("body %q", body)
			}
		})
	}
}

func TestExtProcStreamed(t *testing.T) {
	upper := func(n int, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
		switch {
		case req.GetResponseHeaders() != nil:
			r, _ := passThrough(n, req)
			return withOverride(r, filterv3.ProcessingMode_STREAMED, "content-length"), nil
		case req.GetResponseBody() != nil:
			return bodyAnswer(strings.ToUpper(string(req.GetResponseBody().GetBody())) + "!"), nil
		}
		return passThrough(n, req)
	}
	t.Run("every chunk replaced, length removed", func(t *testing.T) {
		h := newXPHarness(t, MCPExtProc(), nil)
		h.upstream = func(w http.ResponseWriter, _ *http.Request) { writeChunks(w, true, "data: a\n\n", "data: b\n\n") }
		h.proc.answer = upper
		res, body, err := h.get(t, "/mcp/x")
		if err != nil || res.StatusCode != 200 || res.ContentLength != -1 {
			t.Fatalf("%v %v", res, err)
		}
		// One answer per upstream chunk, the last (end of stream) included.
		if !strings.HasPrefix(body, "DATA: A\n\n!DATA: B\n\n!") {
			t.Fatalf("body %q", body)
		}
		var bodies []*extprocv3.HttpBody
		for _, m := range h.proc.messages() {
			if b := m.GetResponseBody(); b != nil {
				bodies = append(bodies, b)
			}
		}
		if len(bodies) < 2 || !bodies[len(bodies)-1].GetEndOfStream() || bodies[0].GetEndOfStream() {
			t.Errorf("body messages %v", bodies)
		}
	})
	t.Run("length kept after the override breaks the response", func(t *testing.T) {
		h := newXPHarness(t, MCPExtProc(), nil)
		h.upstream = func(w http.ResponseWriter, _ *http.Request) { writeChunks(w, true, "data: a\n\n") }
		h.proc.answer = func(n int, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
			if req.GetResponseHeaders() != nil {
				r, _ := passThrough(n, req)
				return withOverride(r, filterv3.ProcessingMode_STREAMED), nil // content-length not removed
			}
			return upper(n, req)
		}
		res, body, err := h.get(t, "/mcp/x")
		if err == nil && res.StatusCode == 200 && body == "DATA: A\n\n!!" {
			t.Fatalf("a stale content-length must not deliver the whole rewritten body: %q", body)
		}
	})
	t.Run("mode override ignored without allow_mode_override", func(t *testing.T) {
		xp := MCPExtProc()
		xp.AllowModeOverride = false
		h := newXPHarness(t, xp, nil)
		h.upstream = func(w http.ResponseWriter, _ *http.Request) { writeChunks(w, false, "data: a\n\n") }
		h.proc.answer = upper
		_, body, err := h.get(t, "/mcp/x")
		if err != nil || body != "data: a\n\n" {
			t.Fatalf("body %q err %v", body, err)
		}
	})
	t.Run("immediate response mid-stream resets", func(t *testing.T) {
		h := newXPHarness(t, MCPExtProc(), nil)
		h.upstream = func(w http.ResponseWriter, _ *http.Request) { writeChunks(w, false, "data: a\n\n", "data: b\n\n") }
		h.proc.answer = func(n int, req *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
			if req.GetResponseBody() != nil && strings.Contains(string(req.GetResponseBody().GetBody()), "b") {
				return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
					Status: &typev3.HttpStatus{Code: 502}}}}, nil
			}
			return upper(n, req)
		}
		res, body, err := h.get(t, "/mcp/x")
		if err == nil || strings.Contains(body, "b") {
			t.Fatalf("want a reset stream without b: %v %q %v", res, body, err)
		}
	})
}

func TestExtProcFailures(t *testing.T) {
	imm := &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ImmediateResponse{ImmediateResponse: &extprocv3.ImmediateResponse{
		Status: &typev3.HttpStatus{Code: 403}, Body: []byte(`{"error":1}`),
		Headers: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "content-type", RawValue: []byte("application/json")}}}}}}}
	tests := []struct {
		name       string
		answer     func(int, *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error)
		xp         func(*ExtProc)
		wantStatus int
		wantBody   string
		upstream   bool // the upstream must be reached
	}{
		{"immediate at request headers", func(int, *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) { return imm, nil },
			nil, 403, `{"error":1}`, false},
		{"immediate at response headers", func(n int, r *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
			if r.GetResponseHeaders() != nil {
				return imm, nil
			}
			return passThrough(n, r)
		}, nil, 403, `{"error":1}`, true},
		{"gRPC error", func(int, *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
			return nil, status.Error(codes.Internal, "boom")
		}, nil, 500, "", false},
		{"gRPC error, failure mode allow", func(int, *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
			return nil, status.Error(codes.Internal, "boom")
		}, func(x *ExtProc) { x.FailureModeAllow = true }, 200, "up", true},
		{"timeout", func(n int, r *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
			time.Sleep(300 * time.Millisecond)
			return passThrough(n, r)
		}, func(x *ExtProc) { x.MessageTimeout = 50 * time.Millisecond }, 504, "", false},
		{"spurious answer", func(int, *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
			return &extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{}}}, nil
		}, nil, 500, "", false},
		{"clean close: the rest passes", func(int, *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) { return nil, nil },
			nil, 200, "up", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			xp := MCPExtProc()
			if tt.xp != nil {
				tt.xp(xp)
			}
			h := newXPHarness(t, xp, nil)
			h.upstream = func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up") }
			h.proc.answer = tt.answer
			res, body, err := h.get(t, "/mcp/x")
			if err != nil || res.StatusCode != tt.wantStatus || (tt.wantBody != "" && body != tt.wantBody) {
				t.Fatalf("got %v %q %v", res, body, err)
			}
			if tt.wantBody == `{"error":1}` && res.Header.Get("Content-Type") != "application/json" {
				t.Errorf("content-type %q", res.Header.Get("Content-Type"))
			}
			if reached := len(h.upSeen) > 0; reached != tt.upstream {
				t.Errorf("upstream reached: %v", reached)
			}
		})
	}
}

// An ext_authz denial is a local reply that still runs through ext_proc's
// response path, which never saw the request.
func TestExtProcSeesLocalReplies(t *testing.T) {
	h := newXPHarness(t, MCPExtProc(), nil)
	h.proc.answer = func(n int, r *extprocv3.ProcessingRequest) (*extprocv3.ProcessingResponse, error) {
		resp, _ := passThrough(n, r)
		if r.GetResponseHeaders() != nil {
			resp.GetResponseHeaders().Response = &extprocv3.CommonResponse{HeaderMutation: &extprocv3.HeaderMutation{
				SetHeaders: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-seen", RawValue: []byte("1")}}}}}
		}
		return resp, nil
	}
	res, body, err := h.get(t, "/mcp/deny")
	if err != nil || res.StatusCode != 401 || body != "no" || res.Header.Get("X-Seen") != "1" {
		t.Fatalf("%v %q %v", res, body, err)
	}
	ms := h.proc.messages()
	if len(ms) != 1 || ms[0].GetResponseHeaders() == nil {
		t.Fatalf("messages %v", ms)
	}
}
