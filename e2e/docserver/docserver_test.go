package docserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const testToken = "s3cret-token-value"

func startServer(t *testing.T, o Options, wrap func(http.Handler) http.Handler) (*Server, string) {
	t.Helper()
	s := NewWithOptions(o)
	var h http.Handler = s.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return s, ts.URL + "/mcp"
}

func connect(t *testing.T, o ClientOptions) *Client {
	t.Helper()
	c, err := Connect(t.Context(), o)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// structured decodes the structured content of a successful tool result.
func structured(t *testing.T, res *mcp.CallToolResult) Result {
	t.Helper()
	if res.IsError {
		t.Fatalf("tool error: %s", resultText(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return r
}

func resultText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func TestDocumentToolsEndToEnd(t *testing.T) {
	modes := []struct {
		name     string
		opts     Options
		protocol string
	}{
		{"stateful", Options{}, ""},
		{"stateful-legacy-initialize", Options{}, "2025-11-25"},
		{"stateless", Options{Stateless: true}, ""},
		{"stateless-json", Options{Stateless: true, JSONResponse: true}, ""},
		{"stateless-legacy-initialize", Options{Stateless: true}, "2025-11-25"},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s, endpoint := startServer(t, m.opts, nil)
			c := connect(t, ClientOptions{
				Endpoint:        endpoint,
				Token:           testToken,
				ExtraHeaders:    map[string]string{"X-Mcp-Subject": "mallory"},
				ProtocolVersion: m.protocol,
			})
			ctx := t.Context()

			res, err := c.CallTool(ctx, ToolCreate, map[string]any{"title": "Plan", "content": "v1"})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			created := structured(t, res)
			if created.ID != "doc-1" || created.Status != "created" || created.Title != "Plan" {
				t.Fatalf("create result = %+v", created)
			}
			id := created.ID

			steps := []struct {
				tool string
				args map[string]any
				want Result
			}{
				{ToolRead, map[string]any{"id": id}, Result{ID: id, Title: "Plan", Content: "v1", Status: "read"}},
				{ToolUpdate, map[string]any{"id": id, "content": "v2"}, Result{ID: id, Title: "Plan", Content: "v2", Status: "updated"}},
				{ToolShare, map[string]any{"id": id, "with": "bob"}, Result{ID: id, Title: "Plan", SharedWith: []string{"bob"}, Status: "shared"}},
				{ToolRead, map[string]any{"id": id}, Result{ID: id, Title: "Plan", Content: "v2", SharedWith: []string{"bob"}, Status: "read"}},
				{ToolDelete, map[string]any{"id": id}, Result{ID: id, Status: "deleted"}},
			}
			for _, st := range steps {
				res, err := c.CallTool(ctx, st.tool, st.args)
				if err != nil {
					t.Fatalf("%s: %v", st.tool, err)
				}
				got := structured(t, res)
				if got.ID != st.want.ID || got.Title != st.want.Title || got.Content != st.want.Content ||
					got.Status != st.want.Status || !slices.Equal(got.SharedWith, st.want.SharedWith) {
					t.Fatalf("%s = %+v, want %+v", st.tool, got, st.want)
				}
			}
			if _, ok := s.Document(id); ok {
				t.Fatalf("document %s still stored after delete", id)
			}

			// Unknown ids are tool errors, not protocol errors.
			unknown := map[string]map[string]any{
				ToolRead:   {"id": "nope"},
				ToolUpdate: {"id": "nope", "content": "x"},
				ToolDelete: {"id": "nope"},
				ToolShare:  {"id": "nope", "with": "bob"},
			}
			for _, tool := range []string{ToolRead, ToolUpdate, ToolDelete, ToolShare} {
				res, err := c.CallTool(ctx, tool, unknown[tool])
				if err != nil {
					t.Fatalf("%s unknown id: %v", tool, err)
				}
				if !res.IsError || !strings.Contains(resultText(res), "document not found") {
					t.Fatalf("%s unknown id: IsError=%v text=%q", tool, res.IsError, resultText(res))
				}
			}

			// HTTP level: every request carried the token and the spoofed header.
			recs := s.Received()
			if len(recs) == 0 {
				t.Fatal("nothing recorded")
			}
			for _, r := range recs {
				if got := r.Header.Get("Authorization"); got != "Bearer "+testToken {
					t.Fatalf("%s %s (%s): Authorization = %q", r.Method, r.Path, r.RPCMethod, got)
				}
				if got := r.Header.Get("X-Mcp-Subject"); got != "mallory" {
					t.Fatalf("X-Mcp-Subject = %q", got)
				}
				if r.Path != "/mcp" {
					t.Fatalf("path = %q", r.Path)
				}
			}
			var tools []string
			for _, r := range s.ToolCalls() {
				if r.Method != http.MethodPost || r.RPCMethod != "tools/call" {
					t.Fatalf("ToolCalls entry %+v", r)
				}
				tools = append(tools, r.Tool)
			}
			wantTools := []string{ToolCreate, ToolRead, ToolUpdate, ToolShare, ToolRead, ToolDelete, ToolRead, ToolUpdate, ToolDelete, ToolShare}
			if !slices.Equal(tools, wantTools) {
				t.Fatalf("ToolCalls tools = %v, want %v", tools, wantTools)
			}
			firstRPC := recs[0].RPCMethod
			wantFirst := "server/discover"
			if m.protocol != "" {
				wantFirst = "initialize"
			}
			if firstRPC != wantFirst {
				t.Fatalf("first RPC = %q, want %q", firstRPC, wantFirst)
			}

			// Handler level: headers seen by the tool handlers.
			invs := s.Invocations()
			if len(invs) != len(wantTools) {
				t.Fatalf("%d invocations, want %d", len(invs), len(wantTools))
			}
			for i, inv := range invs {
				if inv.Tool != wantTools[i] {
					t.Fatalf("invocation %d tool = %q, want %q", i, inv.Tool, wantTools[i])
				}
				if got := inv.Header.Get("Authorization"); got != "Bearer "+testToken {
					t.Fatalf("invocation %d Authorization = %q", i, got)
				}
			}
			var args IDArgs
			if err := json.Unmarshal(invs[1].Arguments, &args); err != nil || args.ID != id {
				t.Fatalf("invocation args = %s (%v)", invs[1].Arguments, err)
			}

			for _, st := range c.Statuses() {
				if st < 200 || st >= 300 {
					if m.opts.Stateless && st == http.StatusMethodNotAllowed {
						continue // standalone GET on a stateless server
					}
					t.Fatalf("unexpected status %d in %v", st, c.Statuses())
				}
			}

			s.Reset()
			if len(s.Received()) != 0 || len(s.Invocations()) != 0 || len(s.ToolCalls()) != 0 {
				t.Fatal("Reset left records behind")
			}
		})
	}
}

// denyTools answers tools/call for the named tools with status and body,
// like an authorization proxy would. "$ID" in body is replaced by the raw
// JSON-RPC id of the request.
func denyTools(status int, contentType, body string, tools ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var env struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
				Params struct {
					Name string `json:"name"`
				} `json:"params"`
			}
			if r.Method == http.MethodPost {
				raw, _ := readAndRestore(r)
				_ = json.Unmarshal(raw, &env)
			}
			if env.Method == "tools/call" && slices.Contains(tools, env.Params.Name) {
				w.Header().Set("Content-Type", contentType)
				w.Header().Set("X-Denied-By", "test")
				w.WriteHeader(status)
				_, _ = w.Write([]byte(strings.ReplaceAll(body, "$ID", string(env.ID))))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestHTTPErrorOnToolCall(t *testing.T) {
	const (
		rpcBody     = `{"jsonrpc":"2.0","id":$ID,"error":{"code":-32001,"message":"forbidden: deleteDocument requires admin"}}`
		rpcNullBody = `{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"forbidden"}}`
	)
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		// rpcError: the SDK error wraps the decoded *jsonrpc.Error and the
		// session stays usable. Otherwise the SDK fails the whole session.
		rpcError bool
	}{
		{"403-jsonrpc-body-echoed-id", http.StatusForbidden, "application/json", rpcBody, true},
		{"401-jsonrpc-body-echoed-id", http.StatusUnauthorized, "application/json", rpcBody, true},
		{"403-jsonrpc-body-null-id", http.StatusForbidden, "application/json", rpcNullBody, false},
		{"403-plain-body", http.StatusForbidden, "text/plain", "RBAC: access denied", false},
		{"403-empty-body", http.StatusForbidden, "text/plain", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, endpoint := startServer(t, Options{}, denyTools(tc.status, tc.contentType, tc.body, ToolDelete))
			c := connect(t, ClientOptions{Endpoint: endpoint, Token: testToken})
			ctx := t.Context()
			if res, err := c.CallTool(ctx, ToolCreate, map[string]any{"title": "t"}); err != nil || structured(t, res).ID != "doc-1" {
				t.Fatalf("create: %v", err)
			}

			_, err := c.CallTool(ctx, ToolDelete, map[string]any{"id": "doc-1"})
			var he *HTTPError
			if !errors.As(err, &he) {
				t.Fatalf("error %v (%T) is not *HTTPError", err, err)
			}
			if he.Status != tc.status || he.Header.Get("X-Denied-By") != "test" || !strings.HasPrefix(he.Body, tc.body[:min(len(tc.body), 20)]) {
				t.Fatalf("HTTPError = {%d %q %v}", he.Status, he.Body, he.Header)
			}
			if he.Err == nil {
				t.Fatal("HTTPError.Err is nil")
			}
			if strings.Contains(err.Error(), testToken) || strings.Contains(he.Err.Error(), testToken) {
				t.Fatalf("error leaks the token: %v / %v", err, he.Err)
			}
			if _, ok := s.Document("doc-1"); !ok {
				t.Fatal("denied delete removed the document")
			}
			if n := len(s.Invocations()); n != 1 {
				t.Fatalf("%d tool invocations, want 1 (create only)", n)
			}
			if !slices.Contains(c.Statuses(), tc.status) {
				t.Fatalf("Statuses %v lack %d", c.Statuses(), tc.status)
			}

			t.Logf("SDK error: %v", he.Err)
			var werr *jsonrpc.Error
			if got := errors.As(err, &werr) && werr.Code == -32001; got != tc.rpcError {
				t.Fatalf("SDK error wraps JSON-RPC error -32001: %v, want %v (err %v)", got, tc.rpcError, he.Err)
			}
			res, err := c.CallTool(ctx, ToolRead, map[string]any{"id": "doc-1"})
			if tc.rpcError {
				if err != nil {
					t.Fatalf("read after denial: %v", err)
				}
				if got := structured(t, res); got.ID != "doc-1" {
					t.Fatalf("read after denial = %+v", got)
				}
			} else {
				if err == nil {
					t.Fatal("SDK session survived a non-JSON-RPC denial; package doc is stale")
				}
				if errors.As(err, &he) {
					t.Fatalf("follow-up call on a failed session made an HTTP request: %v", err)
				}
			}
		})
	}
}

func TestHTTPErrorOnConnect(t *testing.T) {
	var denied atomic.Int32
	deny := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer good" {
				denied.Add(1)
				w.Header().Set("WWW-Authenticate", `Bearer resource_metadata="http://example/.well-known/oauth-protected-resource"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = w.Write([]byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"unauthorized"}}`))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	cases := []struct {
		name     string
		token    string
		protocol string
		wantErr  bool
		want401s int // discover + initialize fallback, or initialize only
	}{
		{"no-token", "", "", true, 2},
		{"bad-token", "bad", "", true, 2},
		{"bad-token-legacy", "bad", "2025-11-25", true, 1},
		{"good-token", "good", "", false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			denied.Store(0)
			s, endpoint := startServer(t, Options{}, deny)
			c, err := Connect(t.Context(), ClientOptions{Endpoint: endpoint, Token: tc.token, ProtocolVersion: tc.protocol})
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				_ = c.Close()
				return
			}
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != http.StatusUnauthorized {
				t.Fatalf("Connect error = %v (%T), want *HTTPError 401", err, err)
			}
			if !strings.Contains(he.Header.Get("WWW-Authenticate"), "resource_metadata") || !strings.Contains(he.Body, "unauthorized") {
				t.Fatalf("HTTPError header/body = %v / %q", he.Header, he.Body)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Fatalf("error leaks token: %v", err)
			}
			if n := len(s.Received()); n != 0 {
				t.Fatalf("upstream received %d requests despite denial", n)
			}
			if got := int(denied.Load()); got != tc.want401s {
				t.Fatalf("%d requests denied, want %d", got, tc.want401s)
			}
		})
	}
}

func TestPostJSONRPC(t *testing.T) {
	s, endpoint := startServer(t, Options{Stateless: true}, nil)
	body := []byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"createDocument","arguments":{"title":"raw"}}}`)
	status, hdr, resp, err := PostJSONRPC(t.Context(), nil, endpoint, map[string]string{
		"Authorization":        "Bearer raw",
		"Mcp-Protocol-Version": "2025-11-25",
	}, body)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK {
		t.Fatalf("status %d body %s", status, resp)
	}
	msgs, err := JSONRPCMessages(hdr.Get("Content-Type"), resp)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("messages %q err %v", msgs, err)
	}
	var out struct {
		ID     int `json:"id"`
		Result struct {
			StructuredContent Result `json:"structuredContent"`
		} `json:"result"`
	}
	if err := json.Unmarshal(msgs[0], &out); err != nil {
		t.Fatal(err)
	}
	if out.ID != 7 || out.Result.StructuredContent.ID != "doc-1" {
		t.Fatalf("response %s", msgs[0])
	}
	calls := s.ToolCalls()
	if len(calls) != 1 || calls[0].Tool != ToolCreate || calls[0].Header.Get("Authorization") != "Bearer raw" || string(calls[0].Body) != string(body) {
		t.Fatalf("ToolCalls = %+v", calls)
	}
}

func TestParseRPC(t *testing.T) {
	cases := []struct {
		body         string
		method, tool string
		batch        bool
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"readDocument"}}`, "tools/call", "readDocument", false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "tools/list", "", false},
		{`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}`, "prompts/get", "", false},
		{` [{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deleteDocument"}},{"method":"x"}]`, "tools/call", "deleteDocument", true},
		{`[]`, "", "", true},
		{`not json`, "", "", false},
		{``, "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			m, tool, batch := parseRPC([]byte(tc.body))
			if m != tc.method || tool != tc.tool || batch != tc.batch {
				t.Fatalf("parseRPC = %q %q %v, want %q %q %v", m, tool, batch, tc.method, tc.tool, tc.batch)
			}
		})
	}
}

func TestJSONRPCMessages(t *testing.T) {
	cases := []struct {
		name, ct, body string
		want           []string
		wantErr        bool
	}{
		{"json", "application/json; charset=utf-8", `{"id":1}`, []string{`{"id":1}`}, false},
		{"sse", "text/event-stream", "id: 1\nevent: message\ndata: {\"id\":1}\n\ndata: {\"id\":2}\r\n\r\n", []string{`{"id":1}`, `{"id":2}`}, false},
		{"sse-priming-event", "text/event-stream", "id: 0\ndata:\n\ndata: {\"id\":3}", []string{`{"id":3}`}, false},
		{"bad-json", "application/json", `{`, nil, true},
		{"bad-ct", "text/plain", `x`, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := JSONRPCMessages(tc.ct, []byte(tc.body))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			var s []string
			for _, m := range got {
				s = append(s, string(m))
			}
			if !slices.Equal(s, tc.want) {
				t.Fatalf("got %q, want %q", s, tc.want)
			}
		})
	}
}

func readAndRestore(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b, err
}

func TestConcurrentClients(t *testing.T) {
	s, endpoint := startServer(t, Options{Stateless: true, JSONResponse: true}, nil)
	const n = 8
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			c, err := Connect(t.Context(), ClientOptions{Endpoint: endpoint, Token: "tok-" + strconv.Itoa(i), DisableStandaloneSSE: true})
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			res, err := c.CallTool(t.Context(), ToolCreate, map[string]any{"title": "t" + strconv.Itoa(i)})
			if err != nil {
				errs[i] = err
				return
			}
			b, _ := json.Marshal(res.StructuredContent)
			var r Result
			errs[i] = json.Unmarshal(b, &r)
			ids[i] = r.ID
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	slices.Sort(ids)
	if len(slices.Compact(slices.Clone(ids))) != n {
		t.Fatalf("ids not unique: %v", ids)
	}
	for _, id := range ids {
		if _, ok := s.Document(id); !ok {
			t.Fatalf("document %s missing", id)
		}
	}
	if got := len(s.ToolCalls()); got != n {
		t.Fatalf("%d tool calls recorded, want %d", got, n)
	}
	tokens := map[string]bool{}
	for _, inv := range s.Invocations() {
		tokens[inv.Header.Get("Authorization")] = true
	}
	if len(tokens) != n {
		t.Fatalf("handler saw %d distinct Authorization headers, want %d", len(tokens), n)
	}
}

func TestPutAndDocumentCopy(t *testing.T) {
	s := New()
	s.Put(Document{ID: "doc-1", Title: "seed", SharedWith: []string{"a"}})
	d, ok := s.Document("doc-1")
	if !ok || d.Title != "seed" {
		t.Fatalf("Document = %+v, %v", d, ok)
	}
	d.SharedWith[0] = "mutated"
	if d2, _ := s.Document("doc-1"); d2.SharedWith[0] != "a" {
		t.Fatal("Document returned an alias of the stored slice")
	}
	if _, ok := s.Document("doc-2"); ok {
		t.Fatal("unexpected doc-2")
	}
	_, r, err := s.createDocument(t.Context(), nil, CreateArgs{Title: "new"})
	if err != nil || r.ID != "doc-2" {
		t.Fatalf("create after Put = %+v, %v; want doc-2", r, err)
	}
	if _, _, err := s.createDocument(t.Context(), nil, CreateArgs{}); err == nil {
		t.Fatal("create without title succeeded")
	}
}
