// Package docserver is end-to-end test infrastructure for mcpauthz: a real MCP
// server (built on github.com/modelcontextprotocol/go-sdk) exposing the
// document-management tools createDocument, readDocument, updateDocument,
// deleteDocument and shareDocument over an in-memory store, which records
// every HTTP request it receives, plus client helpers that talk to it (directly
// or through Envoy + mcpauthz) with the SDK's streamable HTTP client transport.
//
// The upstream side lets tests assert what actually reached the MCP server
// (headers, JSON-RPC methods, tool names) and what a tool handler saw. The
// client side injects credentials and arbitrary (possibly spoofed) headers,
// records HTTP statuses, and turns non-2xx answers into *HTTPError values.
//
// How the SDK (v1.8.0) client surfaces HTTP errors (mcp/streamable.go,
// streamableClientConn.Write and checkResponse), which shapes the helpers here:
//
//   - A non-2xx answer whose body decodes as a JSON-RPC *response* with an
//     error becomes an error wrapping the decoded *jsonrpc.Error, the SDK's
//     internal ErrRejected ("rejected by transport", code -32005) and the
//     status text, e.g. `calling "tools/call": sending "tools/call":
//     forbidden: deleteDocument requires admin: rejected by transport:
//     Forbidden`. Because it wraps ErrRejected, the session stays usable.
//   - The body only decodes as a response if "id" is a number or string:
//     with "id": null (or a plain-text or empty body) the error is just
//     `sending "tools/call": Forbidden` and the SDK permanently fails the
//     client connection; every later call on that session fails without any
//     HTTP request. So a denying proxy must echo the request's id for SDK
//     clients to keep their session. 429/502/503/504 are always treated as
//     transient (session kept, body ignored).
//   - No form exposes the numeric status, headers or body, so Connect and
//     CallTool recover them from the recording RoundTripper (per operation,
//     via a context value that reaches the SDK's http.Request) and return an
//     *HTTPError wrapping the SDK error.
//   - The SDK defaults to protocol 2026-07-28: Connect first sends the
//     stateless "server/discover" request (with Mcp-Method/Mcp-Name standard
//     headers, which the server checks against the body) and falls back to
//     the legacy "initialize" handshake on any failure, so a denied Connect
//     costs two POSTs. Set ClientOptions.ProtocolVersion (e.g. "2025-11-25")
//     to force the legacy initialize + Mcp-Session-Id flow.
//   - A 4xx on the standalone GET SSE stream is ignored by the SDK (treated
//     like 405), so it is only visible in Client.Statuses.
package docserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Tool names served by the document server.
const (
	ToolCreate = "createDocument"
	ToolRead   = "readDocument"
	ToolUpdate = "updateDocument"
	ToolDelete = "deleteDocument"
	ToolShare  = "shareDocument"
)

// ToolNames lists every tool the server exposes, in a stable order.
func ToolNames() []string {
	return []string{ToolCreate, ToolRead, ToolUpdate, ToolDelete, ToolShare}
}

// Received is one HTTP request as seen by the upstream HTTP server.
type Received struct {
	Method    string      // HTTP method
	Path      string      // URL path
	Header    http.Header // clone of exactly what the upstream received
	Body      []byte      // raw request body (nil for bodiless requests)
	RPCMethod string      // JSON-RPC method of the body ("" for GET/DELETE or unparsable bodies)
	Tool      string      // params.name of a tools/call, if any
	Batch     bool        // the body was a JSON array; RPCMethod/Tool describe its first element
}

// Invocation is one execution of a tool handler, with the headers the SDK
// handed to it (mcp.RequestExtra.Header).
type Invocation struct {
	Tool      string
	Header    http.Header
	Arguments json.RawMessage
	// Token is what Options.Verifier returned for this call's bearer token
	// (nil without a Verifier).
	Token *auth.TokenInfo
}

// Document is a stored document.
type Document struct {
	ID         string   `json:"id"`
	Title      string   `json:"title"`
	Content    string   `json:"content"`
	SharedWith []string `json:"sharedWith"`
}

// Options configures the upstream streamable HTTP handler.
type Options struct {
	// Stateless selects mcp.StreamableHTTPOptions.Stateless: no Mcp-Session-Id,
	// GET and DELETE answer 405.
	Stateless bool
	// JSONResponse makes POST responses application/json instead of SSE.
	JSONResponse bool
	// Verifier, when set, makes the server a protected resource: every
	// request must carry a bearer token the verifier accepts (the SDK's
	// auth.RequireBearerToken middleware), or it is refused with 401
	// before reaching MCP. Tool handlers record the verified TokenInfo.
	Verifier auth.TokenVerifier
}

// Server is an MCP document server that records what it receives.
// It is safe for concurrent use.
type Server struct {
	mcpServer *mcp.Server
	handler   http.Handler

	mu          sync.Mutex
	received    []Received
	invocations []Invocation
	docs        map[string]*Document
	nextID      int
}

// New returns a stateful server (sessions, SSE responses).
func New() *Server { return NewWithOptions(Options{}) }

// NewWithOptions returns a server whose streamable handler uses o.
//
// DNS-rebinding (localhost Host header) protection of the SDK is disabled,
// because in end-to-end tests requests arrive through a proxy with an
// arbitrary Host header.
func NewWithOptions(o Options) *Server {
	s := &Server{docs: make(map[string]*Document)}
	ms := mcp.NewServer(&mcp.Implementation{Name: "docs", Version: "v0.0.1"}, nil)
	mcp.AddTool(ms, &mcp.Tool{Name: ToolCreate, Description: "Create a document"}, s.createDocument)
	mcp.AddTool(ms, &mcp.Tool{Name: ToolRead, Description: "Read a document"}, s.readDocument)
	mcp.AddTool(ms, &mcp.Tool{Name: ToolUpdate, Description: "Replace a document's content"}, s.updateDocument)
	mcp.AddTool(ms, &mcp.Tool{Name: ToolDelete, Description: "Delete a document"}, s.deleteDocument)
	mcp.AddTool(ms, &mcp.Tool{Name: ToolShare, Description: "Share a document with a user"}, s.shareDocument)
	s.mcpServer = ms
	s.handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return ms }, &mcp.StreamableHTTPOptions{
		Stateless:                  o.Stateless,
		JSONResponse:               o.JSONResponse,
		DisableLocalhostProtection: true,
	})
	if o.Verifier != nil {
		s.handler = auth.RequireBearerToken(o.Verifier, nil)(s.handler)
	}
	return s
}

// MCPServer returns the underlying SDK server.
func (s *Server) MCPServer() *mcp.Server { return s.mcpServer }

// Handler returns the streamable HTTP handler wrapped by the recorder.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := Received{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()}
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(r.Body)
			_ = r.Body.Close()
			if err != nil {
				http.Error(w, "docserver: reading body failed", http.StatusBadRequest)
				return
			}
			rec.Body = body
			rec.RPCMethod, rec.Tool, rec.Batch = parseRPC(body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		s.mu.Lock()
		s.received = append(s.received, rec)
		s.mu.Unlock()
		s.handler.ServeHTTP(w, r)
	})
}

type rpcEnvelope struct {
	Method string `json:"method"`
	Params struct {
		Name string `json:"name"`
	} `json:"params"`
}

// parseRPC extracts the JSON-RPC method and tools/call name from a body.
func parseRPC(body []byte) (method, tool string, batch bool) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	var env rpcEnvelope
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var arr []rpcEnvelope
		if json.Unmarshal(trimmed, &arr) != nil || len(arr) == 0 {
			return "", "", true
		}
		env, batch = arr[0], true
	} else if json.Unmarshal(trimmed, &env) != nil {
		return "", "", false
	}
	if env.Method == "tools/call" {
		tool = env.Params.Name
	}
	return env.Method, tool, batch
}

// Received returns a copy of every recorded HTTP request, oldest first.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.received)
}

// ToolCalls returns the recorded HTTP requests whose JSON-RPC method is tools/call.
func (s *Server) ToolCalls() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Received
	for _, r := range s.received {
		if r.RPCMethod == "tools/call" {
			out = append(out, r)
		}
	}
	return out
}

// Invocations returns a copy of every tool handler execution, oldest first.
// Unlike ToolCalls, only calls the SDK actually dispatched to a handler appear.
func (s *Server) Invocations() []Invocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.invocations)
}

// Reset clears the recorded requests and invocations. Documents are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received = nil
	s.invocations = nil
}

// Document returns a copy of the stored document id.
func (s *Server) Document(id string) (Document, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	if !ok {
		return Document{}, false
	}
	c := *d
	c.SharedWith = slices.Clone(d.SharedWith)
	return c, true
}

// Put stores d (replacing any document with the same ID), for seeding tests.
func (s *Server) Put(d Document) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := d
	c.SharedWith = slices.Clone(d.SharedWith)
	s.docs[d.ID] = &c
}

func (s *Server) record(req *mcp.CallToolRequest) {
	inv := Invocation{}
	if req != nil && req.Params != nil {
		inv.Tool = req.Params.Name
		inv.Arguments = slices.Clone(req.Params.Arguments)
	}
	if req != nil && req.Extra != nil && req.Extra.Header != nil {
		inv.Header = req.Extra.Header.Clone()
	}
	if req != nil && req.Extra != nil {
		inv.Token = req.Extra.TokenInfo
	}
	s.mu.Lock()
	s.invocations = append(s.invocations, inv)
	s.mu.Unlock()
}

// ErrNotFound is wrapped by tool errors for unknown document ids.
var ErrNotFound = errors.New("docserver: document not found")

// CreateArgs are the arguments of createDocument. Like all argument types,
// its inferred input schema is strict: unknown properties are rejected by the
// SDK as a tool error before the handler runs (and no Invocation is recorded).
type CreateArgs struct {
	Title   string `json:"title" jsonschema:"document title"`
	Content string `json:"content,omitempty" jsonschema:"document body (optional)"`
}

// IDArgs are the arguments of readDocument and deleteDocument.
type IDArgs struct {
	ID string `json:"id" jsonschema:"document id"`
}

// UpdateArgs are the arguments of updateDocument.
type UpdateArgs struct {
	ID      string `json:"id" jsonschema:"document id"`
	Content string `json:"content" jsonschema:"new document body"`
}

// ShareArgs are the arguments of shareDocument.
type ShareArgs struct {
	ID   string `json:"id" jsonschema:"document id"`
	With string `json:"with" jsonschema:"user to share the document with"`
}

// Result is the structured output of every tool.
type Result struct {
	ID         string   `json:"id"`
	Title      string   `json:"title,omitempty"`
	Content    string   `json:"content,omitempty"`
	SharedWith []string `json:"sharedWith,omitempty"`
	Status     string   `json:"status"` // created, read, updated, deleted, shared
}

func notFound(id string) error { return fmt.Errorf("%w: %q", ErrNotFound, id) }

func (s *Server) createDocument(_ context.Context, req *mcp.CallToolRequest, in CreateArgs) (*mcp.CallToolResult, Result, error) {
	s.record(req)
	if in.Title == "" {
		return nil, Result{}, errors.New("docserver: title is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := "doc-" + strconv.Itoa(s.nextID)
	for s.docs[id] != nil { // skip ids taken by Put
		s.nextID++
		id = "doc-" + strconv.Itoa(s.nextID)
	}
	s.docs[id] = &Document{ID: id, Title: in.Title, Content: in.Content}
	return nil, Result{ID: id, Title: in.Title, Status: "created"}, nil
}

func (s *Server) readDocument(_ context.Context, req *mcp.CallToolRequest, in IDArgs) (*mcp.CallToolResult, Result, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[in.ID]
	if !ok {
		return nil, Result{}, notFound(in.ID)
	}
	return nil, Result{ID: d.ID, Title: d.Title, Content: d.Content, SharedWith: slices.Clone(d.SharedWith), Status: "read"}, nil
}

func (s *Server) updateDocument(_ context.Context, req *mcp.CallToolRequest, in UpdateArgs) (*mcp.CallToolResult, Result, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[in.ID]
	if !ok {
		return nil, Result{}, notFound(in.ID)
	}
	d.Content = in.Content
	return nil, Result{ID: d.ID, Title: d.Title, Content: d.Content, Status: "updated"}, nil
}

func (s *Server) deleteDocument(_ context.Context, req *mcp.CallToolRequest, in IDArgs) (*mcp.CallToolResult, Result, error) {
	s.record(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.docs[in.ID]; !ok {
		return nil, Result{}, notFound(in.ID)
	}
	delete(s.docs, in.ID)
	return nil, Result{ID: in.ID, Status: "deleted"}, nil
}

func (s *Server) shareDocument(_ context.Context, req *mcp.CallToolRequest, in ShareArgs) (*mcp.CallToolResult, Result, error) {
	s.record(req)
	if in.With == "" {
		return nil, Result{}, errors.New("docserver: with is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[in.ID]
	if !ok {
		return nil, Result{}, notFound(in.ID)
	}
	if !slices.Contains(d.SharedWith, in.With) {
		d.SharedWith = append(d.SharedWith, in.With)
	}
	return nil, Result{ID: d.ID, Title: d.Title, SharedWith: slices.Clone(d.SharedWith), Status: "shared"}, nil
}
