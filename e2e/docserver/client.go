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
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// maxErrorBody bounds how much of a non-2xx response body is captured.
const maxErrorBody = 64 << 10

// HTTPError reports that the server (or a proxy in front of it) answered a
// request of the operation with a non-2xx HTTP status. Err is the error the
// SDK returned for the operation.
type HTTPError struct {
	Status int
	Header http.Header
	Body   string
	Err    error
}

// Error returns the status and a prefix of the body. It never contains
// request credentials.
func (e *HTTPError) Error() string {
	body := e.Body
	if len(body) > 200 {
		body = body[:200] + "..."
	}
	return fmt.Sprintf("docserver: HTTP %d %s: %q", e.Status, http.StatusText(e.Status), body)
}

// Unwrap returns the SDK error.
func (e *HTTPError) Unwrap() error { return e.Err }

// ClientOptions configures Connect.
type ClientOptions struct {
	// Endpoint is the MCP endpoint URL (e.g. http://127.0.0.1:10000/mcp).
	Endpoint string
	// Token, if set, is sent as "Authorization: Bearer <Token>" on every request.
	Token string
	// ExtraHeaders are set on every request after Authorization, so they may
	// override it (e.g. a malformed Authorization, or a spoofed x-mcp-subject).
	ExtraHeaders map[string]string
	// HTTPClient is the base client; nil means a zero http.Client. It is not
	// modified: Connect wraps a copy's Transport.
	HTTPClient *http.Client
	// ProtocolVersion, if set, is requested instead of the SDK's latest
	// ("2026-07-28", server/discover). Use "2025-11-25" for the legacy
	// initialize + session flow.
	ProtocolVersion string
	// DisableStandaloneSSE suppresses the SDK's standalone GET SSE stream.
	DisableStandaloneSSE bool
}

// Client is an MCP client session with request recording.
// It is safe for concurrent use.
type Client struct {
	session *mcp.ClientSession
	rt      *recordingTransport
}

// Connect performs the MCP handshake against o.Endpoint. If any HTTP request
// of the handshake got a non-2xx answer and the handshake failed, the error is
// an *HTTPError carrying the last such response.
func Connect(ctx context.Context, o ClientOptions) (*Client, error) {
	if o.Endpoint == "" {
		return nil, errors.New("docserver: empty endpoint")
	}
	hc := http.Client{}
	if o.HTTPClient != nil {
		hc = *o.HTTPClient
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	rt := &recordingTransport{base: base, token: o.Token, extra: o.ExtraHeaders}
	hc.Transport = rt
	transport := &mcp.StreamableClientTransport{
		Endpoint:             o.Endpoint,
		HTTPClient:           &hc,
		MaxRetries:           -1, // no 1s-backoff reconnects in tests
		DisableStandaloneSSE: o.DisableStandaloneSSE,
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "docserver-e2e", Version: "v0.0.1"}, nil)
	var sopts *mcp.ClientSessionOptions
	if o.ProtocolVersion != "" {
		sopts = &mcp.ClientSessionOptions{ProtocolVersion: o.ProtocolVersion}
	}
	tctx, tr := withTrace(ctx)
	session, err := client.Connect(tctx, transport, sopts)
	if err != nil {
		return nil, tr.wrap(fmt.Errorf("docserver: connect: %w", err))
	}
	return &Client{session: session, rt: rt}, nil
}

// Session returns the underlying SDK session (for ListTools etc.).
func (c *Client) Session() *mcp.ClientSession { return c.session }

// CallTool calls the tool name with args. A tool error is a result with
// IsError set, not an error. If the HTTP exchange of this call got a non-2xx
// answer, the error is an *HTTPError.
func (c *Client) CallTool(ctx context.Context, name string, args map[string]any) (*mcp.CallToolResult, error) {
	tctx, tr := withTrace(ctx)
	res, err := c.session.CallTool(tctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return nil, tr.wrap(fmt.Errorf("docserver: call %s: %w", name, err))
	}
	return res, nil
}

// Close ends the session (sending DELETE for stateful sessions).
func (c *Client) Close() error { return c.session.Close() }

// Statuses returns the HTTP status of every response received, in order,
// including the standalone SSE GET and the closing DELETE.
func (c *Client) Statuses() []int {
	c.rt.mu.Lock()
	defer c.rt.mu.Unlock()
	return slices.Clone(c.rt.statuses)
}

// recordingTransport adds credentials/headers and records response statuses.
type recordingTransport struct {
	base  http.RoundTripper
	token string
	extra map[string]string

	mu       sync.Mutex
	statuses []int
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	if t.token != "" {
		r.Header.Set("Authorization", "Bearer "+t.token)
	}
	for k, v := range t.extra {
		r.Header.Set(k, v)
	}
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	t.statuses = append(t.statuses, resp.StatusCode)
	t.mu.Unlock()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if tr, ok := req.Context().Value(traceKey{}).(*trace); ok && req.Method == http.MethodPost {
		tr.set(&HTTPError{Status: resp.StatusCode, Header: resp.Header.Clone(), Body: string(body)})
	}
	return resp, nil
}

type traceKey struct{}

// trace collects the last non-2xx POST response of one SDK operation.
type trace struct {
	mu   sync.Mutex
	last *HTTPError
}

func withTrace(ctx context.Context) (context.Context, *trace) {
	tr := &trace{}
	return context.WithValue(ctx, traceKey{}, tr), tr
}

func (tr *trace) set(e *HTTPError) {
	tr.mu.Lock()
	tr.last = e
	tr.mu.Unlock()
}

// wrap returns err as an *HTTPError if a non-2xx response was traced.
func (tr *trace) wrap(err error) error {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.last == nil {
		return err
	}
	e := *tr.last
	e.Err = err
	return &e
}

// PostJSONRPC sends body as a raw MCP POST to endpoint, for requests the SDK
// cannot produce (batches, header/body mismatches, forged sessions). It sets
// Content-Type: application/json and Accept: application/json,
// text/event-stream, then headers (which may override them). client nil means
// http.DefaultClient. The whole response body is returned.
func PostJSONRPC(ctx context.Context, client *http.Client, endpoint string, headers map[string]string, body []byte) (status int, respHeader http.Header, respBody []byte, err error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("docserver: post: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("docserver: post: %w", err)
	}
	defer resp.Body.Close()
	respBody, err = io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, respBody, fmt.Errorf("docserver: post: reading body: %w", err)
	}
	return resp.StatusCode, resp.Header, respBody, nil
}

// JSONRPCMessages returns the JSON-RPC messages of a response body: the body
// itself for application/json, or the data of each SSE event for
// text/event-stream.
func JSONRPCMessages(contentType string, body []byte) ([]json.RawMessage, error) {
	ct, _, _ := strings.Cut(contentType, ";")
	switch strings.TrimSpace(strings.ToLower(ct)) {
	case "application/json":
		if !json.Valid(body) {
			return nil, errors.New("docserver: invalid JSON body")
		}
		return []json.RawMessage{body}, nil
	case "text/event-stream":
		var out []json.RawMessage
		var data []string
		flush := func() error {
			if len(data) == 0 {
				return nil
			}
			msg := []byte(strings.Join(data, "\n"))
			data = nil
			if len(msg) == 0 {
				return nil // e.g. a resumability priming event
			}
			if !json.Valid(msg) {
				return errors.New("docserver: invalid JSON in SSE event")
			}
			out = append(out, msg)
			return nil
		}
		for line := range strings.Lines(string(body)) {
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				if err := flush(); err != nil {
					return nil, err
				}
				continue
			}
			if v, ok := strings.CutPrefix(line, "data:"); ok {
				data = append(data, strings.TrimPrefix(v, " "))
			}
		}
		if err := flush(); err != nil {
			return nil, err
		}
		return out, nil
	default:
		return nil, fmt.Errorf("docserver: unexpected content type %q", contentType)
	}
}
