package extproc

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	filterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/mcpauthz/mcpauthz/envoy"
)

// fakePolicy allows, per principal handle, the names listed; it records
// what it was asked. It fails the test when asked about an exchange whose
// metadata does not say UsesPrincipal: ext_authz registers the principal's
// handle only for those, so any other evaluation would find no principal.
type fakePolicy struct {
	t     *testing.T
	mu    sync.Mutex
	allow map[string][]string
	asked []string
	err   error
}

func (p *fakePolicy) Allowed(_ context.Context, m *Metadata, kind EntryKind, name string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !m.UsesPrincipal() {
		p.t.Errorf("evaluated %s for an exchange that does not use its principal: %+v", name, m)
	}
	p.asked = append(p.asked, m.Principal+"/"+string(kind)+":"+name)
	if p.err != nil {
		return false, p.err
	}
	for _, n := range p.allow[m.Principal] {
		if n == name {
			return true, nil
		}
	}
	return false, nil
}

type rejection struct {
	meta   Metadata
	status int
	www    string
}

type fakeLearner struct {
	mu  sync.Mutex
	got []rejection
}

func (l *fakeLearner) UpstreamRejected(_ context.Context, m *Metadata, status int, www string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, rejection{*m, status, www})
}

type testProc struct {
	srv    *Server
	client extprocv3.ExternalProcessorClient
	policy *fakePolicy
	learn  *fakeLearner
	caps   *CapabilityStore
}

func newTestProc(t *testing.T) *testProc {
	t.Helper()
	tp := &testProc{
		policy: &fakePolicy{t: t, allow: map[string][]string{"alice": {"readDocument", "shareDocument"}, "bob": {"readDocument"}}},
		learn:  &fakeLearner{}, caps: NewCapabilityStore(0, 0, nil),
	}
	var err error
	tp.srv, err = New(Deps{Evaluator: tp.policy, Learner: tp.learn, Sessions: tp.caps}, Options{MaxBodyBytes: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(gs, tp.srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	tp.client = extprocv3.NewExternalProcessorClient(conn)
	return tp
}

// exchange opens a stream and sends each request, returning the answers.
func (tp *testProc) exchange(t *testing.T, reqs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := tp.client.Process(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*extprocv3.ProcessingResponse
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			t.Fatal(err)
		}
		resp, err := s.Recv()
		if err != nil {
			t.Fatalf("recv after %v: %v", r.GetRequest(), err)
		}
		out = append(out, resp)
		if resp.GetImmediateResponse() != nil {
			break
		}
	}
	_ = s.CloseSend()
	return out
}

func mdContext(m *Metadata) *corev3.Metadata {
	if m == nil {
		return nil
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpbStruct{envoy.ExtAuthzMetadataNamespace: m.Struct()}}
}

func hdrs(kv ...string) *corev3.HeaderMap {
	hm := &corev3.HeaderMap{}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	return hm
}

func reqHeaders(m *Metadata, eos bool, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{MetadataContext: mdContext(m),
		Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{Headers: hdrs(kv...), EndOfStream: eos}}}
}

func reqBody(b string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{RequestBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: true}}}
}

func respHeaders(m *Metadata, eos bool, kv ...string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{MetadataContext: mdContext(m),
		Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{Headers: hdrs(kv...), EndOfStream: eos}}}
}

func respBody(b string, eos bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: eos}}}
}

func listMeta(principal string) *Metadata {
	return &Metadata{Principal: principal, Kind: "human", Server: "docs", Method: "tools/list", RPCKind: "request",
		RequestID: "7", Transport: TransportStreamable, DecisionID: "d1", Credential: "service_account"}
}

const toolsJSON = `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"readDocument"},{"name":"deleteDocument"},{"name":"shareDocument"}],"nextCursor":"p2"}}`

func bodyOf(r *extprocv3.ProcessingResponse) (string, bool) {
	bm := r.GetResponseBody().GetResponse().GetBodyMutation()
	if bm == nil {
		return "", false
	}
	return string(bm.GetBody()), true
}

func setHeaders(hm *extprocv3.HeaderMutation) map[string]string {
	out := map[string]string{}
	for _, h := range hm.GetSetHeaders() {
		out[h.GetHeader().GetKey()] = string(h.GetHeader().GetRawValue())
	}
	return out
}

func TestProcessJSONList(t *testing.T) {
	tp := newTestProc(t)
	m := listMeta("bob")
	rs := tp.exchange(t,
		reqHeaders(m, false, ":method", "POST", ":path", "/docs/mcp"),
		respHeaders(nil, false, ":status", "200", "content-type", "application/json; charset=utf-8", "content-length", "160"),
		respBody("\ufeff"+toolsJSON, true))
	if len(rs) != 3 {
		t.Fatalf("%d answers", len(rs))
	}
	if rs[0].GetRequestHeaders() == nil || rs[0].GetModeOverride() != nil {
		t.Fatalf("request headers answer %v", rs[0])
	}
	if mo := rs[1].GetModeOverride(); mo.GetResponseBodyMode() != filterv3.ProcessingMode_BUFFERED || mo.GetResponseHeaderMode() != filterv3.ProcessingMode_SEND {
		t.Fatalf("mode override %v", mo)
	}
	body, ok := bodyOf(rs[2])
	want := `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"readDocument"}],"nextCursor":"p2"}}`
	if !ok || body != want {
		t.Fatalf("body %q", body)
	}
	if got := setHeaders(rs[2].GetResponseBody().GetResponse().GetHeaderMutation())["content-length"]; got != strconv.Itoa(len(want)) {
		t.Fatalf("content-length %q for %d bytes", got, len(want))
	}
	if st := tp.srv.Stats(); st.Lists != 1 || st.EntriesRemoved != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestProcessSSEList(t *testing.T) {
	tp := newTestProc(t)
	m := listMeta("alice")
	ev := "event: message\ndata: " + toolsJSON + "\n\n"
	rs := tp.exchange(t,
		reqHeaders(m, false),
		respHeaders(nil, false, ":status", "200", "content-type", "text/event-stream", "content-length", "999"),
		respBody(ev[:20], false), respBody(ev[20:], false), respBody("", true))
	if len(rs) != 5 {
		t.Fatalf("%d answers", len(rs))
	}
	if mo := rs[1].GetModeOverride(); mo.GetResponseBodyMode() != filterv3.ProcessingMode_STREAMED {
		t.Fatalf("mode override %v", mo)
	}
	if rm := rs[1].GetResponseHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders(); len(rm) != 1 || rm[0] != "content-length" {
		t.Fatalf("content-length not removed: %v", rm)
	}
	var all string
	for i, r := range rs[2:] {
		b, ok := bodyOf(r)
		if !ok {
			t.Fatalf("chunk %d: no body mutation (the original chunk would pass)", i)
		}
		all += b
	}
	want := "event: message\ndata: " + `{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"readDocument"},{"name":"shareDocument"}],"nextCursor":"p2"}}` + "\n\n"
	if all != want {
		t.Fatalf("stream %q", all)
	}
}

func TestProcessFailsClosed(t *testing.T) {
	m := listMeta("bob")
	tests := []struct {
		name   string
		reqs   []*extprocv3.ProcessingRequest
		status int32
	}{
		{"no metadata", []*extprocv3.ProcessingRequest{reqHeaders(nil, false)}, 500},
		{"bad metadata version", []*extprocv3.ProcessingRequest{{MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpbStruct{
			envoy.ExtAuthzMetadataNamespace: mustStruct(t, map[string]any{"mcpauthz": map[string]any{"v": "0", "server": "docs"}})}},
			Request: &extprocv3.ProcessingRequest_RequestHeaders{RequestHeaders: &extprocv3.HttpHeaders{}}}}, 500},
		{"batched list", []*extprocv3.ProcessingRequest{reqHeaders(&Metadata{Server: "docs", Batch: true, BatchMethods: []string{"ping", "tools/list"}}, false)}, 400},
		{"compressed", []*extprocv3.ProcessingRequest{reqHeaders(m, false), respHeaders(nil, false, ":status", "200", "content-type", "application/json", "content-encoding", "gzip")}, 502},
		{"unknown content type", []*extprocv3.ProcessingRequest{reqHeaders(m, false), respHeaders(nil, false, ":status", "200", "content-type", "text/plain")}, 502},
		{"no content type", []*extprocv3.ProcessingRequest{reqHeaders(m, false), respHeaders(nil, false, ":status", "200")}, 502},
		{"two content types", []*extprocv3.ProcessingRequest{reqHeaders(m, false), respHeaders(nil, false, ":status", "200", "content-type", "application/json", "content-type", "text/event-stream")}, 502},
		{"batch body", []*extprocv3.ProcessingRequest{reqHeaders(m, false), respHeaders(nil, false, ":status", "200", "content-type", "application/json"), respBody("["+toolsJSON+"]", true)}, 502},
		{"too large", []*extprocv3.ProcessingRequest{reqHeaders(m, false), respHeaders(nil, false, ":status", "200", "content-type", "application/json"), respBody(strings.Repeat(" ", 1<<16)+toolsJSON, true)}, 502},
		{"malformed event", []*extprocv3.ProcessingRequest{reqHeaders(m, false), respHeaders(nil, false, ":status", "200", "content-type", "text/event-stream"), respBody("data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"tools\":[{\"name\":\"deleteDocument\"}]}\n\n", false)}, 502},
		{"GET stream as JSON", []*extprocv3.ProcessingRequest{reqHeaders(&Metadata{Server: "docs", RPCKind: "stream"}, true), respHeaders(nil, false, ":status", "200", "content-type", "application/json")}, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestProc(t)
			rs := tp.exchange(t, tt.reqs...)
			ir := rs[len(rs)-1].GetImmediateResponse()
			if ir == nil {
				t.Fatalf("no immediate response: %v", rs[len(rs)-1])
			}
			if int32(ir.GetStatus().GetCode()) != tt.status {
				t.Fatalf("status %d, want %d", ir.GetStatus().GetCode(), tt.status)
			}
			var e struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   struct{ Code int }
			}
			if err := json.Unmarshal(ir.GetBody(), &e); err != nil || e.JSONRPC != "2.0" || e.Error.Code != -32603 {
				t.Fatalf("body %s: %v", ir.GetBody(), err)
			}
			if setHeaders(ir.GetHeaders())["content-type"] != "application/json" {
				t.Fatalf("headers %v", ir.GetHeaders())
			}
		})
	}
}

func TestProcessEvaluatorErrorFailsClosed(t *testing.T) {
	tp := newTestProc(t)
	tp.policy.err = context.DeadlineExceeded
	rs := tp.exchange(t, reqHeaders(listMeta("bob"), false), respHeaders(nil, false, ":status", "200", "content-type", "application/json"), respBody(toolsJSON, true))
	if ir := rs[len(rs)-1].GetImmediateResponse(); ir == nil || ir.GetStatus().GetCode() != 502 || !strings.Contains(string(ir.GetBody()), `"id":7`) {
		t.Fatalf("want a 502 JSON-RPC error echoing the id, got %v", rs[len(rs)-1])
	}
}

func TestProcessPassesWhatIsNotAList(t *testing.T) {
	tp := newTestProc(t)
	call := listMeta("bob")
	call.Method = "tools/call"
	tests := []struct {
		name string
		reqs []*extprocv3.ProcessingRequest
	}{
		{"local reply (ext_authz denial)", []*extprocv3.ProcessingRequest{respHeaders(nil, false, ":status", "401", "content-type", "application/json")}},
		{"tools/call", []*extprocv3.ProcessingRequest{reqHeaders(call, false), respHeaders(nil, false, ":status", "200", "content-type", "application/json")}},
		{"list error status", []*extprocv3.ProcessingRequest{reqHeaders(listMeta("bob"), false), respHeaders(nil, false, ":status", "404", "content-type", "text/html")}},
		{"list without body", []*extprocv3.ProcessingRequest{reqHeaders(listMeta("bob"), false), respHeaders(nil, true, ":status", "204")}},
		{"legacy POST", []*extprocv3.ProcessingRequest{reqHeaders(&Metadata{Server: "docs", Method: "tools/list", RPCKind: "request", RequestID: "1", Transport: TransportLegacySSE, Session: "s"}, false),
			respHeaders(nil, false, ":status", "202", "content-type", "text/plain")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := tp.exchange(t, tt.reqs...)
			last := rs[len(rs)-1]
			if last.GetResponseHeaders() == nil || last.GetModeOverride() != nil || last.GetResponseHeaders().GetResponse() != nil {
				t.Fatalf("want a plain CONTINUE, got %v", last)
			}
		})
	}
}

// TestOnlyPrincipalUsersEvaluate sends every kind of exchange a list
// answer, as JSON and as SSE: the processor evaluates only those whose
// metadata says UsesPrincipal (fakePolicy fails the test otherwise), and
// does evaluate list requests.
func TestOnlyPrincipalUsersEvaluate(t *testing.T) {
	tp := newTestProc(t)
	methods := []string{"tools/list", "prompts/list", "resources/list", "resources/templates/list", "tools/call", "initialize", "ping", "notifications/initialized", ""}
	answers := []struct{ ct, body string }{
		{"application/json", toolsJSON},
		{"text/event-stream", "event: message\ndata: " + toolsJSON + "\n\n"},
	}
	for _, method := range methods {
		for _, kind := range []string{"request", "notification", "stream"} {
			for _, tr := range []string{TransportStreamable, TransportLegacySSE} {
				for _, a := range answers {
					m := &Metadata{Principal: "alice", Server: "docs", Method: method, RPCKind: kind, RequestID: "7", Transport: tr, Session: SessionKey("docs", "s-"+method)}
					if kind == "stream" {
						m.Method, m.RequestID = "", ""
					}
					tp.policy.mu.Lock()
					tp.policy.asked = nil
					tp.policy.mu.Unlock()
					tp.exchange(t, reqHeaders(m, false), respHeaders(nil, false, ":status", "200", "content-type", a.ct), respBody(a.body, true))
					tp.policy.mu.Lock()
					asked := len(tp.policy.asked)
					tp.policy.mu.Unlock()
					if want := kind == "request" && tr == TransportStreamable && isListMethod(method); want && asked == 0 {
						t.Errorf("%s %s %s (%s): a list answer was not evaluated", method, kind, tr, a.ct)
					}
				}
			}
		}
	}
	batch := &Metadata{Principal: "alice", Server: "docs", RPCKind: "request", Batch: true, BatchMethods: []string{"tools/call", "ping"}, Transport: TransportStreamable}
	tp.exchange(t, reqHeaders(batch, false), respHeaders(nil, false, ":status", "200", "content-type", "application/json"), respBody("["+toolsJSON+"]", true))
}

func TestProcessLearnsUpstream401(t *testing.T) {
	tp := newTestProc(t)
	call := listMeta("bob")
	call.Method, call.Connection = "tools/call", "conn-1"
	tp.exchange(t, reqHeaders(call, false), respHeaders(nil, false, ":status", "401", "www-authenticate", `Bearer error="invalid_token"`))
	if len(tp.learn.got) != 1 {
		t.Fatalf("learner saw %d", len(tp.learn.got))
	}
	g := tp.learn.got[0]
	if g.status != 401 || g.www != `Bearer error="invalid_token"` || g.meta.Connection != "conn-1" || g.meta.Credential != "service_account" || g.meta.Server != "docs" {
		t.Fatalf("learner got %+v", g)
	}
	// An ext_authz denial (a local reply) is not an upstream answer.
	tp.exchange(t, respHeaders(nil, false, ":status", "401"))
	if len(tp.learn.got) != 1 {
		t.Fatal("a local 401 was reported")
	}
}

func TestProcessRecordsInitializeCapabilities(t *testing.T) {
	for _, tt := range []struct {
		name, caps string
		want       ClientCapabilities
		recorded   bool
	}{
		{"url", `{"elicitation":{"url":{},"form":{}}}`, ClientCapabilities{Elicitation: true, ElicitationURL: true, ElicitationForm: true}, true},
		{"empty elicitation is form", `{"elicitation":{}}`, ClientCapabilities{Elicitation: true, ElicitationForm: true}, true},
		{"none", `{"roots":{}}`, ClientCapabilities{}, true},
		{"case-variant key is not a declaration", `{"elicitation":{"URL":{}}}`, ClientCapabilities{Elicitation: true, ElicitationForm: true}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTestProc(t)
			m := &Metadata{Principal: "alice", Server: "docs", Method: "initialize", RPCKind: "request", RequestID: "0"}
			body := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":` + tt.caps + `}}`
			rs := tp.exchange(t, reqHeaders(m, false), reqBody(body), respHeaders(nil, false, ":status", "200", "mcp-session-id", "sess-9", "content-type", "text/event-stream"))
			if mo := rs[0].GetModeOverride(); mo.GetRequestBodyMode() != filterv3.ProcessingMode_BUFFERED || mo.GetResponseHeaderMode() == filterv3.ProcessingMode_SKIP {
				t.Fatalf("mode override %v", mo)
			}
			if rs[1].GetRequestBody() == nil || rs[2].GetResponseHeaders() == nil || rs[2].GetModeOverride() != nil {
				t.Fatalf("answers %v", rs)
			}
			got, ok := tp.caps.Lookup(SessionKey("docs", "sess-9"))
			if ok != tt.recorded || got != tt.want {
				t.Fatalf("caps %+v %v, want %+v", got, ok, tt.want)
			}
		})
	}
}

// Legacy HTTP+SSE: the POST is answered 202, the result arrives on the GET
// stream, and is filtered for whoever asked.
func TestProcessLegacyGETStream(t *testing.T) {
	tp := newTestProc(t)
	sk := SessionKey("docs", "abc")
	post := &Metadata{Principal: "alice", Server: "docs", Method: "tools/list", RPCKind: "request", RequestID: `"q1"`, Transport: TransportLegacySSE, Session: sk}
	tp.exchange(t, reqHeaders(post, false), respHeaders(nil, false, ":status", "202"))

	get := &Metadata{Principal: "bob", Server: "docs", RPCKind: "stream", Transport: TransportLegacySSE}
	resp := func(id string) string {
		return "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":" + id + ",\"result\":{\"tools\":[{\"name\":\"readDocument\"},{\"name\":\"shareDocument\"},{\"name\":\"deleteDocument\"}]}}\n\n"
	}
	rs := tp.exchange(t, reqHeaders(get, true, ":method", "GET"),
		respHeaders(nil, false, ":status", "200", "content-type", "text/event-stream"),
		respBody("event: endpoint\ndata: /messages?sessionId=abc\n\n", false),
		respBody(resp(`"\u00711"`), false), // the same id, escaped
		respBody(resp("8"), false))
	b1, _ := bodyOf(rs[2])
	b2, _ := bodyOf(rs[3])
	b3, _ := bodyOf(rs[4])
	if b1 != "event: endpoint\ndata: /messages?sessionId=abc\n\n" {
		t.Fatalf("endpoint event changed: %q", b1)
	}
	if !strings.Contains(b2, "shareDocument") || strings.Contains(b2, "deleteDocument") {
		t.Fatalf("response to alice's request not filtered for alice: %q", b2)
	}
	if strings.Contains(b3, "shareDocument") || !strings.Contains(b3, "readDocument") {
		t.Fatalf("other response not filtered for the stream's caller: %q", b3)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	m := Metadata{Principal: "h1", Kind: "agent_for_user", Server: "docs", Method: "tools/list", RPCKind: "request", RequestID: `"a\"b"`,
		Batch: true, BatchMethods: []string{"ping"}, Protocol: "2025-06-18", Transport: TransportStreamable, Session: "sk",
		Revision: "rbac-1", DecisionID: "d", Credential: "individual", Connection: "c"}
	got, err := ParseMetadata(mdContext(&m))
	if err != nil {
		t.Fatal(err)
	}
	if !equalMeta(got, m) {
		t.Fatalf("got %+v", got)
	}
	bad := []map[string]any{
		{"v": "1"},                   // no server
		{"v": 1.0, "server": "docs"}, // wrong type
		{"v": "1", "server": "docs", "batch": "yes"},
		{"v": "1", "server": "docs", "batch_methods": []any{"x"}},
		{"v": "1", "server": "docs", "id": "{}"},
		{"v": "1", "server": "docs", "transport": "ws"},
	}
	for i, b := range bad {
		md := &corev3.Metadata{FilterMetadata: map[string]*structpbStruct{envoy.ExtAuthzMetadataNamespace: mustStruct(t, map[string]any{"mcpauthz": b})}}
		if _, err := ParseMetadata(md); err == nil {
			t.Errorf("bad[%d] accepted", i)
		}
	}
	if _, err := ParseMetadata(nil); err != ErrNoMetadata {
		t.Errorf("nil: %v", err)
	}
	if s := SessionKey("docs", "secret-session"); strings.Contains(s, "secret") || len(s) != 32 || s == SessionKey("other", "secret-session") {
		t.Errorf("session key %q", s)
	}
}

// TestStructWithSharedValues: the hand-off built with shared values is
// the same as the plain one, repeating fields share one value across
// Checks, a Check's own fields never do, and the set stays bounded.
func TestStructWithSharedValues(t *testing.T) {
	var vals Values
	m1 := Metadata{Principal: "h1", Kind: "human", Server: "docs", Method: "tools/call", RPCKind: "request", RequestID: "1",
		Protocol: "2025-06-18", Transport: TransportStreamable, Session: "s1", Revision: "r1", DecisionID: "d1", Credential: "static", Connection: "c1"}
	m2 := m1
	m2.Principal, m2.RequestID, m2.Session, m2.DecisionID, m2.Connection = "h2", "2", "s2", "d2", "c2"
	s1, s2 := m1.StructWith(&vals), m2.StructWith(&vals)
	if !proto.Equal(s1, m1.Struct()) || !proto.Equal(s2, m2.Struct()) {
		t.Fatal("StructWith differs from Struct")
	}
	for _, m := range []*Metadata{&m1, &m2} {
		got, err := ParseMetadata(mdContext(m))
		if err != nil || !equalMeta(got, *m) {
			t.Fatalf("round trip: %+v %v", got, err)
		}
	}
	f1 := s1.Fields[metadataKey].GetStructValue().Fields
	f2 := s2.Fields[metadataKey].GetStructValue().Fields
	for _, k := range []string{"v", "kind", "server", "method", "rpc_kind", "protocol", "transport", "revision", "credential"} {
		if f1[k] != f2[k] {
			t.Errorf("%s: not shared", k)
		}
	}
	for _, k := range []string{"principal", "id", "session", "decision", "connection"} {
		if f1[k] == f2[k] {
			t.Errorf("%s: shared between Checks", k)
		}
	}
	for i := range 2 * maxSharedValues {
		m := Metadata{Server: "docs", Method: "m" + strconv.Itoa(i)}
		if got := m.StructWith(&vals).Fields[metadataKey].GetStructValue().Fields["method"].GetStringValue(); got != m.Method {
			t.Fatalf("method %q, want %q", got, m.Method)
		}
	}
	if len(vals.m) > maxSharedValues {
		t.Errorf("%d shared values, bound %d", len(vals.m), maxSharedValues)
	}
}

func equalMeta(a, b Metadata) bool {
	return proto.Equal(a.Struct(), b.Struct())
}

type structpbStruct = structpb.Struct

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
