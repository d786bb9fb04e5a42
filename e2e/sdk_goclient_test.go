package e2e

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"
)

// goRedirect is the loopback redirect URI the Go SDK client registers; the
// browser stand-in never follows it.
const goRedirect = "http://127.0.0.1:33419/callback"

// goSDKClient is the official Go SDK client (v1.8.0) signing in with the
// SDK's own OAuth support: auth.AuthorizationCodeHandler as the streamable
// transport's OAuthHandler, RFC 7591 registration, and an
// AuthorizationCodeFetcher that hands the authorization URL to the browser
// stand-in, as a desktop client opens the system browser.
type goSDKClient struct {
	handler *auth.AuthorizationCodeHandler
	session *mcp.ClientSession
	tamper  *tamperTransport
	fetches atomic.Int32 // AuthorizationCodeFetcher calls
}

type goClientOptions struct {
	// protocolVersion is requested at connect ("" = the SDK's latest,
	// 2026-07-28, stateless).
	protocolVersion string
	// firstScope replaces the scopes of the first authorization only (the
	// handler's ScopeFilter): a client asking for the least it needs.
	firstScope []string
}

func connectGoSDK(ctx context.Context, endpoint string, b *browser, o goClientOptions) (*goSDKClient, error) {
	c := &goSDKClient{tamper: &tamperTransport{base: http.DefaultTransport}}
	var filtered sync.Once
	cfg := &auth.AuthorizationCodeHandlerConfig{
		DynamicClientRegistrationConfig: &auth.DynamicClientRegistrationConfig{Metadata: &oauthex.ClientRegistrationMetadata{
			RedirectURIs: []string{goRedirect}, ClientName: "mcpauthz e2e Go SDK client",
			GrantTypes: []string{"authorization_code", "refresh_token"}, TokenEndpointAuthMethod: "none",
		}},
		RequestRefreshToken: true,
		ScopeFilter: func(discovered []string) []string {
			out := discovered
			filtered.Do(func() {
				if o.firstScope != nil {
					out = o.firstScope
				}
			})
			return out
		},
		AuthorizationCodeFetcher: func(ctx context.Context, args *auth.AuthorizationArgs) (*auth.AuthorizationResult, error) {
			c.fetches.Add(1)
			cb, err := b.open(ctx, args.URL)
			if err != nil {
				return nil, err
			}
			q := cb.Query()
			if e := q.Get("error"); e != "" {
				return nil, errors.New("authorization failed: " + e)
			}
			return &auth.AuthorizationResult{Code: q.Get("code"), State: q.Get("state"), Iss: q.Get("iss")}, nil
		},
	}
	h, err := auth.NewAuthorizationCodeHandler(cfg)
	if err != nil {
		return nil, err
	}
	c.handler = h
	transport := &mcp.StreamableClientTransport{
		Endpoint:     endpoint,
		HTTPClient:   &http.Client{Transport: c.tamper},
		OAuthHandler: h,
		MaxRetries:   -1,
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcpauthz-e2e-go", Version: "v0.0.1"}, nil)
	var sopts *mcp.ClientSessionOptions
	if o.protocolVersion != "" {
		sopts = &mcp.ClientSessionOptions{ProtocolVersion: o.protocolVersion}
	}
	c.session, err = client.Connect(ctx, transport, sopts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// token returns the token the handler's token source holds now (refreshing
// it when oauth2 considers it expired, as the transport does per request).
func (c *goSDKClient) token() (*oauth2.Token, error) {
	ts, err := c.handler.TokenSource(context.Background())
	if err != nil || ts == nil {
		return nil, errors.Join(err, errors.New("no token source"))
	}
	return ts.Token()
}

// rpcError returns the JSON-RPC error the SDK wrapped into err, if any.
func rpcError(err error) *jsonrpc.Error {
	var je *jsonrpc.Error
	if errors.As(err, &je) {
		return je
	}
	return nil
}

// tamperTransport rewrites request headers while set: an intermediary
// changing MCP-Protocol-Version or Mcp-Name, to see what the SDK surfaces
// for answers it never provokes itself.
type tamperTransport struct {
	base http.RoundTripper
	mu   sync.Mutex
	set  map[string]string
}

func (t *tamperTransport) rewrite(h map[string]string) {
	t.mu.Lock()
	t.set = h
	t.mu.Unlock()
}

func (t *tamperTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.mu.Lock()
	set := t.set
	t.mu.Unlock()
	if len(set) > 0 && r.Method == http.MethodPost {
		r = r.Clone(r.Context())
		for k, v := range set {
			r.Header.Set(k, v)
		}
	}
	return t.base.RoundTrip(r)
}
