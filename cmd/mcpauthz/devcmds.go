package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
)

// devIDPHandler serves the issuer's discovery document and JWKS plus the
// development-only mint endpoint POST /dev/token.
func devIDPHandler(idp *devidp.Issuer, defaultAudience string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", idp.Handler())
	mux.Handle("/dev/token", idp.DevTokenHandler(devidp.DevTokenOptions{DefaultAudience: defaultAudience}))
	return mux
}

// cmdDevIDP serves the development identity provider (for docker compose):
// discovery, JWKS and a mint endpoint, with the issuer URL as other
// containers see it.
func cmdDevIDP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("dev-idp", flag.ContinueOnError)
	fl.SetOutput(stderr)
	listen := fl.String("listen", "127.0.0.1:9000", "address to listen on")
	issuer := fl.String("issuer", "", "issuer URL as clients and mcpauthz reach it, e.g. http://idp:9000 (default: http://LISTEN-ADDRESS)")
	audience := fl.String("audience", "", "default aud of minted tokens (the MCP server's resource URL); without it, aud is a required form field")
	ttl := fl.Duration("token-ttl", time.Hour, "lifetime of minted tokens")
	fl.Usage = printUsage(fl, stderr, "Usage: mcpauthz dev-idp [--listen ADDR] [--issuer URL] [--audience URL] [--token-ttl 1h]\n\n"+
		"DEVELOPMENT ONLY: an OIDC issuer (discovery + JWKS) that mints tokens for anyone via\n"+
		"POST /dev/token (form fields sub, roles, org, act, aud, scope, client_id).\n\n")
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	if *ttl <= 0 {
		return errors.New("--token-ttl must be positive")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	iss := strings.TrimSuffix(*issuer, "/")
	if iss == "" {
		iss = "http://" + ln.Addr().String()
	}
	idp, err := devidp.New(devidp.Options{IssuerURL: iss, TokenTTL: *ttl})
	if err != nil {
		_ = ln.Close()
		return err
	}
	fmt.Fprintln(stdout, "!!! development identity provider — mints tokens for anyone; never use in production !!!")
	fmt.Fprintf(stdout, "issuer %s (listening on %s); discovery %s/.well-known/openid-configuration, JWKS %s/jwks\n",
		iss, ln.Addr(), iss, iss)
	fmt.Fprintf(stdout, "mint a token:\n  curl -s %s/dev/token -d sub=alice -d roles=viewer -d scope=docs:read", iss)
	if *audience == "" {
		fmt.Fprint(stdout, " -d aud=RESOURCE-URL")
	}
	fmt.Fprintln(stdout)
	if *audience != "" {
		fmt.Fprintf(stdout, "ready tokens (aud %s, valid %s):\n", *audience, *ttl)
		for _, p := range []struct {
			name   string
			claims map[string]any
		}{
			{"viewer alice", map[string]any{"sub": "alice", "roles": []string{"viewer"}, "scope": "docs:read"}},
			{"admin root", map[string]any{"sub": "root", "roles": []string{"admin"}, "scope": "docs:read docs:write docs:admin"}},
			{"agent for bob (editor)", map[string]any{"sub": "bob", "roles": []string{"editor"}, "scope": "docs:read docs:write", "act": map[string]any{"sub": "docs-assistant"}, "client_id": "docs-assistant"}},
		} {
			p.claims["aud"], p.claims["org_id"] = *audience, "acme"
			tok, err := idp.Mint(p.claims)
			if err != nil {
				_ = ln.Close()
				return err
			}
			fmt.Fprintf(stdout, "  %-24s %s\n", p.name+":", tok)
		}
	}
	return serveUntilDone(ctx, ln, devIDPHandler(idp, *audience))
}

// cmdDemoMCP serves the demo document MCP server (official MCP Go SDK) at
// /mcp over Streamable HTTP, logging each request's method, tool and header
// names (never header values).
func cmdDemoMCP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("demo-mcp", flag.ContinueOnError)
	fl.SetOutput(stderr)
	listen := fl.String("listen", "127.0.0.1:8080", "address to listen on")
	fl.Usage = printUsage(fl, stderr, "Usage: mcpauthz demo-mcp [--listen ADDR]\n\n"+
		"Serves the demo document MCP server (tools createDocument, readDocument,\n"+
		"updateDocument, deleteDocument, shareDocument) at /mcp. It does no\n"+
		"authorization itself: put it behind Envoy + mcpauthz.\n\n")
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ds := docserver.New()
	ds.Put(docserver.Document{ID: "doc-1", Title: "Q3 plan", Content: "ship the demo"})
	ds.Put(docserver.Document{ID: "doc-2", Title: "Old notes", Content: "obsolete"})
	log := mustLogger(stderr, slog.LevelInfo)
	mux := http.NewServeMux()
	mux.Handle("/mcp", logMCPRequests(log, ds.Handler()))
	fmt.Fprintf(stdout, "demo MCP server (documents doc-1, doc-2) at http://%s/mcp — no authorization of its own; put it behind Envoy + mcpauthz\n", ln.Addr())
	return serveUntilDone(ctx, ln, mux)
}

// maxLoggedBody bounds how much of a request body logMCPRequests buffers.
const maxLoggedBody = 4 << 20

// logMCPRequests logs each request's HTTP method, JSON-RPC method, tool and
// header NAMES, then passes it on unchanged.
func logMCPRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rpcMethod, tool string
		if r.Body != nil && r.Body != http.NoBody {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxLoggedBody+1))
			_ = r.Body.Close()
			if err != nil {
				http.Error(w, "reading body failed", http.StatusBadRequest)
				return
			}
			if len(body) > maxLoggedBody {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			rpcMethod, tool = rpcSummary(body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		names := make([]string, 0, len(r.Header))
		for k := range r.Header {
			names = append(names, k)
		}
		slices.Sort(names)
		log.Info("mcp request", "http_method", r.Method, "path", r.URL.Path, "rpc_method", rpcMethod, "tool", tool,
			"header_names", strings.Join(names, ","))
		next.ServeHTTP(w, r)
	})
}

// rpcSummary returns the JSON-RPC method and tools/call name of a body (of
// the first element of a batch).
func rpcSummary(body []byte) (method, tool string) {
	var msg struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var batch []json.RawMessage
		if json.Unmarshal(trimmed, &batch) != nil || len(batch) == 0 {
			return "", ""
		}
		trimmed = batch[0]
	}
	if json.Unmarshal(trimmed, &msg) != nil {
		return "", ""
	}
	if msg.Method == "tools/call" {
		tool = msg.Params.Name
	}
	return msg.Method, tool
}

// serveUntilDone serves h on ln until ctx is cancelled or SIGTERM/SIGINT
// arrives, then shuts down gracefully.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler) error {
	ctx, stop := signalContext(ctx)
	defer stop()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("shutdown: %w", err)
		}
		// Streams a client left open (SSE) do not end by themselves: after
		// the grace period they are closed, which is what a development
		// server stopping should do.
		_ = srv.Close()
	}
	return nil
}
