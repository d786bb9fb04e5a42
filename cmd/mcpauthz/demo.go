package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"golang.org/x/net/html"

	"github.com/mcpauthz/mcpauthz/bundles"
	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/e2e/docserver"
	"github.com/mcpauthz/mcpauthz/envoy/emulator"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
	"github.com/mcpauthz/mcpauthz/internal/randid"
	"github.com/mcpauthz/mcpauthz/server"
	"github.com/mcpauthz/mcpauthz/server/config"
)

//go:embed demo.yaml
var demoTemplate string

// demoSecretEnv names the environment variable that carries the demo's
// upstream service-account secret (generated per run) into the config.
const demoSecretEnv = "MCPAUTHZ_DEMO_UPSTREAM_KEY"

// standInNote labels the emulator wherever the demo mentions it.
const standInNote = "development stand-in for Envoy, applying the ext_authz contract; use real Envoy in production"

// cmdDemo runs the whole stack in-process and a scripted set of MCP calls
// through it, printing a transcript. It sets (and finally unsets) the
// process environment variable demoSecretEnv, so two demos must not run
// concurrently in one process.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("demo", flag.ContinueOnError)
	fl.SetOutput(stderr)
	verbose := fl.Bool("verbose", false, "also print the decision log and mcpauthz's own log")
	keep := fl.Bool("keep-running", false, "leave everything running (with curl-able URLs and tokens) until Ctrl-C")
	fl.Usage = printUsage(fl, stderr, "Usage: mcpauthz demo [--verbose] [--keep-running]\n\n"+
		"Runs a development IdP, mcpauthz, an MCP document server and an Envoy stand-in\n"+
		"in-process on loopback, and shows who may call which tool.\n\n")
	if err := parseNoArgs(fl, args); err != nil {
		return err
	}
	ctx, stop := signalContext(ctx)
	defer stop()

	fmt.Fprintln(stdout, "mcpauthz demo — everything in-process on loopback; the Envoy in this demo is a development stand-in")
	d, err := startDemo(ctx, stdout, *keep)
	if d != nil {
		defer d.close()
	}
	if err != nil {
		if d != nil {
			d.dumpLogs(stderr)
		}
		return err
	}
	fmt.Fprintln(stdout)
	principals, steps := demoScript()
	failures := d.runScript(ctx, stdout, principals, steps)
	failures = append(failures, d.runTracker(ctx, stdout)...)
	d.closeClients()

	if !*keep {
		// Shutting mcpauthz down flushes the decision log completely.
		if err := d.stopAuthz(); err != nil {
			failures = append(failures, fmt.Sprintf("stop mcpauthz: %v", err))
		}
	}
	failures = append(failures, d.summarize(stdout)...)
	if *verbose {
		d.printVerbose(stdout)
	}
	if len(failures) > 0 {
		if !*verbose {
			d.dumpLogs(stderr)
		}
		return fmt.Errorf("%d check(s) failed:\n  %s", len(failures), strings.Join(failures, "\n  "))
	}
	if !*keep {
		fmt.Fprintln(stdout, "\nall outcomes as expected. Run with --keep-running to try it yourself with curl.")
		return nil
	}
	d.printTryIt(stdout)
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping.")
	return nil
}

// demo is the running in-process stack. Its methods are called from one
// goroutine (cmdDemo); the servers it owns run their own goroutines.
type demo struct {
	dir      string
	idp      *devidp.Issuer
	idpURL   string
	upstream *docserver.Server
	cfg      *config.Config
	authz    *server.Server
	proxy    *emulator.Proxy
	front    string // base URL of the Envoy stand-in
	resource string // public URL of the docs MCP server
	upURL    string
	log      *decisionLog
	srvLog   *lockedBuffer // mcpauthz's own slog output
	hc       *http.Client
	secret   string

	// The tracker: an MCP server taking its own OAuth provider's tokens,
	// reached with each user's own connection (credential mode individual).
	provider        *oauthtest.Provider
	provURL         string
	tracker         *docserver.Server
	trackerResource string
	httpAddr        string // mcpauthz's HTTP listener (connections.public_url)

	httpServers []*http.Server
	authzUp     bool
	clients     map[string]*docserver.Client
	tokens      map[string]string // principal key -> raw token (never printed in the transcript)
	principals  []*demoPrincipal
}

// startDemo starts every component, printing one progress line each. On
// error the returned demo (possibly nil) still needs close.
func startDemo(ctx context.Context, stdout io.Writer, keep bool) (*demo, error) {
	d := &demo{srvLog: &lockedBuffer{}, clients: map[string]*docserver.Client{}, tokens: map[string]string{}}
	var err error
	if d.dir, err = os.MkdirTemp("", "mcpauthz-demo-"); err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	d.hc = &http.Client{Transport: tr, Timeout: 10 * time.Second}

	// 1. Development IdP: discovery + JWKS + the dev mint endpoint.
	frontLn, err := d.startIdP(stdout, keep)
	if err != nil {
		return d, err
	}
	fail := func(err error) (*demo, error) {
		_ = frontLn.Close()
		return d, err
	}
	// 2. The MCP document server (official MCP Go SDK).
	if err := d.startDocServer(stdout); err != nil {
		return fail(err)
	}
	// 3. The issue tracker and its own OAuth provider.
	trURL, err := d.startTracker(stdout)
	if err != nil {
		return fail(err)
	}
	// 4. mcpauthz on the rendered demo config.
	if err := d.startAuthz(ctx); err != nil {
		return fail(fmt.Errorf("start mcpauthz: %w", err))
	}
	rev, err := d.policyRevision(ctx)
	if err != nil {
		return fail(fmt.Errorf("start mcpauthz: %w", err))
	}
	fmt.Fprintf(stdout, "✓ mcpauthz         ext_authz gRPC %s, HTTP http://%s, policy bundle rbac (revision %s)\n",
		d.authz.GRPCAddr(), d.authz.HTTPAddr(), rev)
	// 5. The Envoy stand-in in front of the MCP servers.
	if err := d.startStandIn(ctx, trURL); err != nil {
		return fail(fmt.Errorf("start Envoy stand-in: %w", err))
	}
	d.serve(frontLn, d.proxy)
	fmt.Fprintf(stdout, "✓ Envoy stand-in   %s and %s → ext_authz → MCP servers\n", d.resource, d.trackerResource)
	fmt.Fprintf(stdout, "                   (%s)\n", standInNote)
	return d, nil
}

// startIdP starts the development IdP and binds the stand-in's front
// listener, whose address is the public resource URL.
func (d *demo) startIdP(stdout io.Writer, keep bool) (frontLn net.Listener, err error) {
	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start dev IdP: %w", err)
	}
	d.idpURL = "http://" + idpLn.Addr().String()
	ttl := 10 * time.Minute
	if keep {
		ttl = 8 * time.Hour
	}
	// Its sign-in endpoints log users in to mcpauthz's connect pages.
	d.idp, err = devidp.New(devidp.Options{IssuerURL: d.idpURL, TokenTTL: ttl,
		Clients: map[string]string{demoLoginClient: demoLoginSecret}})
	if err != nil {
		_ = idpLn.Close()
		return nil, fmt.Errorf("start dev IdP: %w", err)
	}
	if frontLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		_ = idpLn.Close()
		return nil, fmt.Errorf("start Envoy stand-in: %w", err)
	}
	d.front = "http://" + frontLn.Addr().String()
	d.resource = d.front + "/docs/mcp"
	d.serve(idpLn, devIDPHandler(d.idp, d.resource))
	fmt.Fprintf(stdout, "✓ dev IdP          %s (development identity provider: issues test tokens)\n", d.idpURL)
	return frontLn, nil
}

// startDocServer starts the document MCP server.
func (d *demo) startDocServer(stdout io.Writer) error {
	d.upstream = docserver.New()
	d.upstream.Put(docserver.Document{ID: "doc-1", Title: "Q3 plan", Content: "ship the demo"})
	d.upstream.Put(docserver.Document{ID: "doc-2", Title: "Old notes", Content: "obsolete"})
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("start MCP server: %w", err)
	}
	d.upURL = "http://" + upLn.Addr().String()
	d.serve(upLn, d.upstream.Handler())
	fmt.Fprintf(stdout, "✓ MCP server       document server, %d tools (official MCP Go SDK) on %s, reached only through the stand-in below\n", len(docserver.ToolNames()), d.upURL)
	return nil
}

// startTracker starts the issue tracker and its OAuth provider and returns
// the tracker's URL. The provider accepts exactly mcpauthz's connect
// callback as redirect URI, so mcpauthz's HTTP port is chosen here.
func (d *demo) startTracker(stdout io.Writer) (string, error) {
	var err error
	if d.httpAddr, err = freeLoopbackAddr(); err != nil {
		return "", fmt.Errorf("pick an HTTP port: %w", err)
	}
	d.provider = oauthtest.New(oauthtest.Options{
		Clients:      map[string]string{demoTrackerClient: demoTrackerSecret},
		RedirectURIs: map[string][]string{demoTrackerClient: {"http://" + d.httpAddr + "/connect/callback"}},
		Users:        map[string]string{"alice": "alice"},
		Scopes:       []string{"issues:read"},
	})
	if d.provURL, err = d.provider.Start(); err != nil {
		return "", fmt.Errorf("start the tracker's OAuth provider: %w", err)
	}
	d.tracker = docserver.New()
	d.tracker.Put(docserver.Document{ID: "issue-7", Title: "Login page slow", Content: "p95 is 3s"})
	trLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("start the tracker: %w", err)
	}
	trURL := "http://" + trLn.Addr().String()
	d.serve(trLn, d.tracker.Handler())
	d.trackerResource = d.front + "/tracker/mcp"
	fmt.Fprintf(stdout, "✓ MCP server       issue tracker (official MCP Go SDK) on %s; its users' accounts are at an OAuth provider, %s\n", trURL, d.provURL)
	return trURL, nil
}

// startStandIn builds the Envoy stand-in (served on the front listener
// by the caller).
func (d *demo) startStandIn(ctx context.Context, trURL string) error {
	var err error
	d.proxy, err = emulator.New(ctx, emulator.Config{
		AuthzAddr: d.authz.GRPCAddr(),
		Timeout:   2 * time.Second,
		Routes: []emulator.Route{
			{Name: "metadata", PathPrefix: "/.well-known/oauth-protected-resource", Upstream: "http://" + d.authz.HTTPAddr(), DisableExtAuthz: true},
			{Name: "docs", PathPrefix: "/docs/", Upstream: d.upURL, ContextExtensions: map[string]string{server.ContextExtensionKey: "docs"}},
			{Name: "tracker", PathPrefix: "/tracker/", Upstream: trURL, ContextExtensions: map[string]string{server.ContextExtensionKey: "tracker"}},
		},
	})
	return err
}

// serve runs h on ln until close.
func (d *demo) serve(ln net.Listener, h http.Handler) {
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	d.httpServers = append(d.httpServers, s)
	go func() { _ = s.Serve(ln) }()
}

func (d *demo) startAuthz(ctx context.Context) error {
	bundleDir := filepath.Join(d.dir, "rbac")
	if err := writeFS(bundles.FS, "rbac", bundleDir); err != nil {
		return fmt.Errorf("unpack the rbac bundle: %w", err)
	}
	d.secret = randid.Hex(32)
	if err := os.Setenv(demoSecretEnv, d.secret); err != nil {
		return fmt.Errorf("set %s: %w", demoSecretEnv, err)
	}
	logPath := filepath.Join(d.dir, "decisions.log")
	loginSecret, trackerSecret := filepath.Join(d.dir, "login-secret"), filepath.Join(d.dir, "tracker-secret")
	for path, v := range map[string]string{loginSecret: demoLoginSecret, trackerSecret: demoTrackerSecret} {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			return fmt.Errorf("write a client secret: %w", err)
		}
	}
	// The built-in issuer's URL and the connect callback name the HTTP
	// listener, whose port startDemo chose.
	httpAddr := d.httpAddr
	doc, err := renderDemoConfig(demoConfigParams{
		IssuerURL: d.idpURL, BundleDir: bundleDir, DecisionLog: logPath, Resource: d.resource, SecretEnv: demoSecretEnv,
		HTTPAddr: httpAddr, MintIssuer: "http://" + httpAddr + "/issuer",
		PublicURL: "http://" + httpAddr, LoginClient: demoLoginClient, LoginSecretFile: loginSecret,
		TrackerResource: d.trackerResource, ProviderURL: d.provURL, TrackerClient: demoTrackerClient, TrackerSecretFile: trackerSecret,
	})
	if err != nil {
		return err
	}
	if d.cfg, err = config.Parse(doc); err != nil {
		return fmt.Errorf("demo config: %w", err)
	}
	d.log = &decisionLog{path: logPath}
	logger := mustLogger(d.srvLog, slog.LevelInfo)
	if d.authz, err = server.New(ctx, d.cfg, server.Deps{Logger: logger}); err != nil {
		return err
	}
	d.authz.Start(ctx)
	d.authzUp = true
	return nil
}

// demoConfigParams fill demo.yaml.
type demoConfigParams struct {
	IssuerURL, BundleDir, DecisionLog, Resource, SecretEnv string
	HTTPAddr, MintIssuer                                   string
	// The tracker (mode individual) and the connect pages.
	PublicURL, LoginClient, LoginSecretFile                        string
	TrackerResource, ProviderURL, TrackerClient, TrackerSecretFile string
}

// Development-only clients of the demo: mcpauthz's connect sign-in at the
// dev IdP, and mcpauthz at the tracker's OAuth provider.
const (
	demoLoginClient   = "mcpauthz-connect"
	demoLoginSecret   = "demo-connect-secret"
	demoTrackerClient = "mcpauthz"
	demoTrackerSecret = "demo-tracker-secret"
)

// freeLoopbackAddr returns a loopback address with a port that was free a
// moment ago.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// renderDemoConfig renders demo.yaml; every value is emitted as a quoted
// YAML scalar.
func renderDemoConfig(p demoConfigParams) ([]byte, error) {
	q := func(s string) (string, error) {
		b, err := json.Marshal(s) // a JSON string is a valid double-quoted YAML scalar
		return string(b), err
	}
	tmpl, err := template.New("demo.yaml").Funcs(template.FuncMap{"q": q}).Option("missingkey=error").Parse(demoTemplate)
	if err != nil {
		return nil, fmt.Errorf("demo config template: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, p); err != nil {
		return nil, fmt.Errorf("demo config template: %w", err)
	}
	return buf.Bytes(), nil
}

// policyRevision waits for /readyz and returns the serving bundle revision.
func (d *demo) policyRevision(ctx context.Context) (string, error) {
	deadline := time.Now().Add(5 * time.Second)
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.authz.HTTPAddr()+"/readyz", nil)
		if err != nil {
			return "", err
		}
		resp, err := d.hc.Do(req)
		if err == nil {
			var body struct {
				Ready  bool `json:"ready"`
				Policy struct {
					Revision  string `json:"revision"`
					LastError string `json:"last_error"`
				} `json:"policy"`
			}
			derr := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
			_ = resp.Body.Close()
			if derr == nil && body.Ready {
				return body.Policy.Revision, nil
			}
			last = fmt.Sprintf("not ready (status %d, %s)", resp.StatusCode, body.Policy.LastError)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("readiness: %s", last)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopAuthz shuts mcpauthz down, which flushes the decision log.
func (d *demo) stopAuthz() error {
	if !d.authzUp {
		return nil
	}
	d.authzUp = false
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return d.authz.Shutdown(ctx)
}

func (d *demo) closeClients() {
	for k, c := range d.clients {
		_ = c.Close()
		delete(d.clients, k)
	}
}

// close stops everything and removes the temporary directory. Safe to call
// on a partially started demo.
func (d *demo) close() {
	d.closeClients()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range slices.Backward(d.httpServers) {
		_ = s.Shutdown(ctx)
	}
	if d.proxy != nil {
		_ = d.proxy.Close()
	}
	if d.provider != nil {
		d.provider.Close()
	}
	_ = d.stopAuthz()
	if d.hc != nil {
		d.hc.CloseIdleConnections()
	}
	if d.secret != "" {
		_ = os.Unsetenv(demoSecretEnv)
	}
	if d.dir != "" {
		_ = os.RemoveAll(d.dir)
	}
}

// dumpLogs prints mcpauthz's own log, for diagnosing a failed run.
func (d *demo) dumpLogs(w io.Writer) {
	if s := d.srvLog.String(); s != "" {
		fmt.Fprintf(w, "mcpauthz log:\n%s", s)
	}
}

// ---- the scripted calls ----

// demoPrincipal is one caller of the script.
type demoPrincipal struct {
	key    string
	label  string
	claims map[string]any
}

// demoStep is one scripted call and its expected outcome.
type demoStep struct {
	who        *demoPrincipal // nil: no token
	method     string         // "tools/list", "tools/call" or "connect"
	tool       string
	args       map[string]any
	wantAllow  bool
	wantStatus int // for denials
}

func (s demoStep) op() string {
	if s.tool != "" {
		return s.method + " " + s.tool
	}
	return s.method
}

func (s demoStep) label() string {
	if s.who == nil {
		return "no token"
	}
	return s.who.label
}

func (s demoStep) want() string {
	if s.wantAllow {
		return "ALLOW"
	}
	return fmt.Sprintf("DENY %d", s.wantStatus)
}

// demoScript returns the callers and the calls: a human, an agent acting
// for a user, an agent on its own, and no token at all; allow, 403 and 401.
func demoScript() ([]*demoPrincipal, []demoStep) {
	alice := &demoPrincipal{key: "ALICE", label: "alice (human, viewer)", claims: map[string]any{
		"sub": "alice", "roles": []string{"viewer"}, "org_id": "acme", "scope": "docs:read"}}
	bobAssistant := &demoPrincipal{key: "BOB_ASSISTANT", label: "assistant for bob (agent→editor)", claims: map[string]any{
		"sub": "bob", "roles": []string{"editor"}, "org_id": "acme", "scope": "docs:read docs:write",
		"act": map[string]any{"sub": "docs-assistant"}, "client_id": "docs-assistant"}}
	rootAssistant := &demoPrincipal{key: "ROOT_ASSISTANT", label: "assistant for root (agent→admin)", claims: map[string]any{
		"sub": "root", "roles": []string{"admin"}, "org_id": "acme", "scope": "docs:read docs:write docs:admin",
		"act": map[string]any{"sub": "docs-assistant"}, "client_id": "docs-assistant"}}
	bot := &demoPrincipal{key: "BATCH_BOT", label: "batch-bot (agent alone)", claims: map[string]any{
		"sub": "batch-bot", "client_id": "batch-bot", "roles": []string{"editor"}, "org_id": "acme", "scope": "docs:read docs:write"}}
	steps := []demoStep{
		{who: alice, method: "tools/list", wantAllow: true},
		{who: alice, method: "tools/call", tool: docserver.ToolRead, args: map[string]any{"id": "doc-1"}, wantAllow: true},
		{who: alice, method: "tools/call", tool: docserver.ToolDelete, args: map[string]any{"id": "doc-1"}, wantStatus: http.StatusForbidden},
		{who: bobAssistant, method: "tools/call", tool: docserver.ToolUpdate, args: map[string]any{"id": "doc-1", "content": "ship the demo, then the docs"}, wantAllow: true},
		{who: rootAssistant, method: "tools/call", tool: docserver.ToolDelete, args: map[string]any{"id": "doc-2"}, wantStatus: http.StatusForbidden},
		{who: bot, method: "tools/call", tool: docserver.ToolRead, args: map[string]any{"id": "doc-1"}, wantAllow: true},
		{who: bot, method: "tools/call", tool: docserver.ToolCreate, args: map[string]any{"title": "nightly report"}, wantStatus: http.StatusForbidden},
		{who: nil, method: "connect", wantStatus: http.StatusUnauthorized},
	}
	// Tokens for the people themselves, printed by --keep-running.
	bob := &demoPrincipal{key: "BOB", label: "bob (human, editor)", claims: map[string]any{
		"sub": "bob", "roles": []string{"editor"}, "org_id": "acme", "scope": "docs:read docs:write"}}
	root := &demoPrincipal{key: "ROOT", label: "root (human, admin)", claims: map[string]any{
		"sub": "root", "roles": []string{"admin"}, "org_id": "acme", "scope": "docs:read docs:write docs:admin"}}
	return []*demoPrincipal{alice, bob, root, bobAssistant, rootAssistant, bot}, steps
}

// stepResult is what actually happened.
type stepResult struct {
	allowed bool
	status  int    // HTTP status of a denial
	message string // JSON-RPC error message of a denial
	header  http.Header
	detail  string // e.g. "5 tools"
	err     error  // a failure that is neither allow nor a clean denial
	up      *docserver.Received
}

// runScript runs every step, printing one transcript line (plus details)
// per step, and returns the mismatches.
func (d *demo) runScript(ctx context.Context, w io.Writer, principals []*demoPrincipal, steps []demoStep) []string {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var failures []string
	d.principals = principals
	for _, p := range principals {
		tok, err := d.mint(p)
		if err != nil {
			return []string{fmt.Sprintf("mint a token for %s: %v", p.label, err)}
		}
		d.tokens[p.key] = tok
	}
	for _, s := range steps {
		res := d.runStep(ctx, s)
		line := fmt.Sprintf("%-34s %-27s", s.label(), s.op())
		switch {
		case res.err != nil:
			fmt.Fprintf(w, "✗ %s ERROR %v\n", line, d.redact(res.err.Error()))
			failures = append(failures, fmt.Sprintf("%s %s: want %s, got error: %v", s.label(), s.op(), s.want(), d.redact(res.err.Error())))
			continue
		case res.allowed != s.wantAllow || (!res.allowed && res.status != s.wantStatus):
			got := "ALLOW"
			if !res.allowed {
				got = fmt.Sprintf("DENY %d %q", res.status, res.message)
			}
			fmt.Fprintf(w, "✗ %s %s — expected %s\n", line, got, s.want())
			failures = append(failures, fmt.Sprintf("%s %s: want %s, got %s", s.label(), s.op(), s.want(), got))
			continue
		}
		if res.allowed {
			fmt.Fprintf(w, "✓ %s ALLOW  %s\n", line, d.describeUpstream(ctx, s, res))
			if res.up != nil {
				for _, extra := range d.upstreamDetails(res.up) {
					fmt.Fprintf(w, "  %-34s %-27s        %s\n", "", "", extra)
				}
			}
			if f := d.leakCheck(res.up); f != "" {
				fmt.Fprintf(w, "✗ %s\n", f)
				failures = append(failures, f)
			}
			continue
		}
		fmt.Fprintf(w, "✓ %s DENY %d %s\n", line, res.status, d.describeDenial(ctx, s, res))
	}
	if f := d.leakCheckAll(); f != "" {
		failures = append(failures, f)
	}
	return failures
}

func (d *demo) mint(p *demoPrincipal) (string, error) {
	c := map[string]any{"aud": d.resource}
	for k, v := range p.claims {
		c[k] = v
	}
	return d.idp.Mint(c)
}

// client returns p's MCP session, connecting through the stand-in on first use.
func (d *demo) client(ctx context.Context, p *demoPrincipal) (*docserver.Client, error) {
	if c := d.clients[p.key]; c != nil {
		return c, nil
	}
	c, err := docserver.Connect(ctx, docserver.ClientOptions{Endpoint: d.resource, Token: d.tokens[p.key], HTTPClient: d.hc, DisableStandaloneSSE: true})
	if err != nil {
		return nil, err
	}
	d.clients[p.key] = c
	return c, nil
}

func (d *demo) runStep(ctx context.Context, s demoStep) stepResult {
	before := len(d.upstream.Received())
	var res stepResult
	var err error
	switch s.method {
	case "connect":
		var c *docserver.Client
		c, err = docserver.Connect(ctx, docserver.ClientOptions{Endpoint: d.resource, HTTPClient: d.hc, DisableStandaloneSSE: true})
		if err == nil {
			_ = c.Close()
			res.allowed = true
		}
	case "tools/list":
		var c *docserver.Client
		if c, err = d.client(ctx, s.who); err == nil {
			lt, lerr := c.Session().ListTools(ctx, nil)
			if err = lerr; err == nil {
				res.allowed = true
				res.detail = fmt.Sprintf("%d tools", len(lt.Tools))
			}
		}
	case "tools/call":
		var c *docserver.Client
		if c, err = d.client(ctx, s.who); err == nil {
			out, cerr := c.CallTool(ctx, s.tool, s.args)
			if err = cerr; err == nil {
				if out.IsError {
					return stepResult{err: fmt.Errorf("allowed, but the tool failed: %s", toolText(out.Content))}
				}
				res.allowed = true
			}
		}
	default:
		return stepResult{err: fmt.Errorf("unknown step method %q", s.method)}
	}
	if err != nil {
		var he *docserver.HTTPError
		if !errors.As(err, &he) {
			return stepResult{err: err}
		}
		res.status, res.header, res.message = he.Status, he.Header, rpcErrorMessage(he.Body)
		return res
	}
	// The request the upstream received for this call.
	recs := d.upstream.Received()
	for i := len(recs) - 1; i >= before; i-- {
		r := recs[i]
		if r.RPCMethod == s.method && r.Tool == s.tool {
			res.up = &r
			break
		}
	}
	if res.up == nil && s.method != "connect" {
		return stepResult{err: errors.New("allowed, but the MCP server did not record the request")}
	}
	return res
}

// describeUpstream tells what the upstream received for an allowed call:
// the Authorization header (abbreviated) and the credential mode from the
// decision log.
func (d *demo) describeUpstream(ctx context.Context, s demoStep, res stepResult) string {
	var parts []string
	if res.detail != "" {
		parts = append(parts, res.detail+";")
	}
	if res.up == nil {
		return strings.Join(parts, " ")
	}
	auth := res.up.Header.Values("Authorization")
	switch len(auth) {
	case 0:
		parts = append(parts, "upstream got no Authorization header")
	case 1:
		parts = append(parts, "upstream got Authorization: "+abbreviateCredential(auth[0]))
	default:
		parts = append(parts, fmt.Sprintf("upstream got %d Authorization headers", len(auth)))
	}
	id := res.up.Header.Get(d.cfg.Headers.Prefix + "decision-id")
	if rec, ok := d.log.waitFor(ctx, func(r decisionRecord) bool { return id != "" && r.ID == id }); ok && rec.Credential != nil {
		parts = append(parts, "— "+strings.ReplaceAll(rec.Credential.Mode, "_", " ")+" credential, not the caller's token")
	}
	return strings.Join(parts, " ")
}

// upstreamDetails lists the claims of a JWT credential and the verified
// attribution headers the upstream received.
func (d *demo) upstreamDetails(up *docserver.Received) []string {
	var out []string
	if auth := up.Header.Get("Authorization"); auth != "" {
		if claims := jwtClaims(auth); claims != nil {
			var kv []string
			for _, k := range []string{"aud", "sub", "act", "scope"} {
				if v, ok := claims[k]; ok {
					b, _ := json.Marshal(v)
					kv = append(kv, k+"="+string(b))
				}
			}
			out = append(out, "upstream token claims: "+strings.Join(kv, " "))
		}
	}
	var kv []string
	for _, h := range []string{"subject", "kind", "actor"} {
		if v := up.Header.Get(d.cfg.Headers.Prefix + h); v != "" {
			kv = append(kv, d.cfg.Headers.Prefix+h+"="+v)
		}
	}
	if len(kv) > 0 {
		out = append(out, "verified identity headers: "+strings.Join(kv, " "))
	}
	return out
}

// describeDenial shows the reason code (from the decision log) and what the
// client got: the JSON-RPC error message, or the WWW-Authenticate challenge.
func (d *demo) describeDenial(ctx context.Context, s demoStep, res stepResult) string {
	sub := ""
	if s.who != nil {
		sub, _ = s.who.claims["sub"].(string)
	}
	rec, ok := d.log.waitFor(ctx, func(r decisionRecord) bool {
		return !r.Allow && r.Status == res.status && r.Subject == sub && r.Tool == s.tool
	})
	var b strings.Builder
	if ok && rec.Reason != "" {
		b.WriteString(rec.Reason)
		b.WriteString(": ")
	}
	if res.status == http.StatusUnauthorized {
		if wa := res.header.Get("WWW-Authenticate"); wa != "" {
			b.WriteString("WWW-Authenticate: " + wa)
			return b.String()
		}
	}
	fmt.Fprintf(&b, "%q", res.message)
	return b.String()
}

// leakCheck reports if the upstream request carried any caller's token.
func (d *demo) leakCheck(up *docserver.Received) string {
	if up == nil {
		return ""
	}
	for k, vs := range up.Header {
		for _, v := range vs {
			for pk, tok := range d.tokens {
				sig := tok[strings.LastIndexByte(tok, '.')+1:]
				if strings.Contains(v, tok) || (len(sig) > 16 && strings.Contains(v, sig)) {
					return fmt.Sprintf("the caller's token (%s) reached the MCP server in header %s", pk, k)
				}
			}
		}
	}
	return ""
}

func (d *demo) leakCheckAll() string {
	for _, r := range d.upstream.Received() {
		if f := d.leakCheck(&r); f != "" {
			return f
		}
	}
	return ""
}

// redact replaces any token of the script in s.
func (d *demo) redact(s string) string {
	for k, tok := range d.tokens {
		s = strings.ReplaceAll(s, tok, "$"+k)
	}
	return s
}

// summarize reports the decision log and checks every record is complete.
func (d *demo) summarize(w io.Writer) []string {
	recs, err := d.log.read()
	if err != nil {
		return []string{fmt.Sprintf("read the decision log: %v", err)}
	}
	var allowed, denied int
	var failures []string
	for _, r := range recs {
		if r.Allow {
			allowed++
		} else {
			denied++
		}
		var missing []string
		if r.ID == "" {
			missing = append(missing, "decision_id")
		}
		if r.Kind == "" {
			missing = append(missing, "kind")
		}
		if r.Reason == "" {
			missing = append(missing, "reason")
		}
		if r.Kind != "anonymous" && r.Subject == "" {
			missing = append(missing, "subject")
		}
		if r.Method == "tools/call" && r.Tool == "" {
			missing = append(missing, "tool")
		}
		if len(missing) > 0 {
			failures = append(failures, fmt.Sprintf("decision %q lacks %s", r.ID, strings.Join(missing, ", ")))
		}
	}
	if len(recs) == 0 {
		failures = append(failures, "the decision log is empty")
	}
	fmt.Fprintf(w, "\ndecision log: %d decisions (%d allowed, %d denied), every one with decision id, principal, method/tool and reason",
		len(recs), allowed, denied)
	if len(failures) > 0 {
		fmt.Fprintf(w, " — %d incomplete\n", len(failures))
	} else {
		fmt.Fprintln(w, " (see --verbose)")
	}
	return failures
}

func (d *demo) printVerbose(w io.Writer) {
	recs, _ := d.log.read()
	fmt.Fprintln(w, "\ndecision log (JSON lines as mcpauthz writes them to audit.output):")
	for _, r := range recs {
		fmt.Fprintf(w, "  %s\n", r.raw)
	}
	fmt.Fprintln(w, "\nmcpauthz log:")
	for line := range strings.Lines(d.srvLog.String()) {
		fmt.Fprintf(w, "  %s", line)
	}
}

// printTryIt prints curl-able URLs and tokens for --keep-running.
func (d *demo) printTryIt(w io.Writer) {
	fmt.Fprintf(w, `
Everything keeps running until Ctrl-C. Tokens below are valid for 8h (development IdP only):
`)
	for _, p := range d.principals {
		fmt.Fprintf(w, "  export %s=%s    # %s\n", p.key, d.tokens[p.key], p.label)
	}
	fmt.Fprintf(w, `
  MCP endpoint (through the Envoy stand-in):  %[1]s
  RFC 9728 metadata:                          %[2]s/.well-known/oauth-protected-resource/docs/mcp
  dev IdP discovery:                          %[3]s/.well-known/openid-configuration
  mcpauthz readiness / metrics:               http://%[4]s/readyz  http://%[4]s/metrics
  decision log (JSON lines):                  %[5]s

Try it (H sets the MCP content headers):
  H='-H Content-Type:application/json -H Accept:application/json,text/event-stream -H Mcp-Protocol-Version:2025-11-25'
  # no token: 401 with a WWW-Authenticate challenge pointing at the RFC 9728 metadata
  curl -si %[1]s $H -d '{"jsonrpc":"2.0","id":1,"method":"ping"}'
  # alice (viewer) may not delete: 403 with a JSON-RPC error, decided before the MCP server sees anything
  curl -s %[1]s $H -H "Authorization: Bearer $ALICE" \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deleteDocument","arguments":{"id":"doc-1"}}}'
  # alice may read: open a session, then call the tool in it
  SID=$(curl -s -D - -o /dev/null %[1]s $H -H "Authorization: Bearer $ALICE" \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}' \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id"{print $2}')
  curl -s %[1]s $H -H "Authorization: Bearer $ALICE" -H "Mcp-Session-Id: $SID" -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  curl -s %[1]s $H -H "Authorization: Bearer $ALICE" -H "Mcp-Session-Id: $SID" \
    -d '{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"doc-1"}}}'
  # the session is bound to alice: another principal cannot use it (403)
  curl -s %[1]s $H -H "Authorization: Bearer $BATCH_BOT" -H "Mcp-Session-Id: $SID" \
    -d '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"readDocument","arguments":{"id":"doc-1"}}}'
  # mint your own token (development IdP only; aud defaults to the MCP endpoint)
  curl -s %[3]s/dev/token -d sub=carol -d roles=editor -d scope='docs:read docs:write'
  # or point any MCP client (Streamable HTTP) at the endpoint with one of the tokens above
`, d.resource, d.front, d.idpURL, d.authz.HTTPAddr(), d.log.path)
}

// ---- decision log reading ----

// decisionRecord is the subset of a decision log entry the demo reads.
type decisionRecord struct {
	ID         string `json:"decision_id"`
	Method     string `json:"mcp_method"`
	Tool       string `json:"tool"`
	Subject    string `json:"subject"`
	Actor      string `json:"actor"`
	Kind       string `json:"kind"`
	Allow      bool   `json:"allow"`
	Status     int    `json:"status"`
	Reason     string `json:"reason"`
	Credential *struct {
		Mode string `json:"mode"`
	} `json:"credential"`
	raw string
}

// decisionLog reads the decision log file mcpauthz appends to. Used from
// one goroutine.
type decisionLog struct {
	path string
	used map[string]bool // records already matched by waitFor
}

func (l *decisionLog) read() ([]decisionRecord, error) {
	f, err := os.Open(l.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	var out []decisionRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var r decisionRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil {
			continue // a line still being written
		}
		r.raw = sc.Text()
		out = append(out, r)
	}
	return out, sc.Err()
}

// waitFor returns the first not yet matched record satisfying match,
// polling while mcpauthz flushes (every 20ms), for at most 3s.
func (l *decisionLog) waitFor(ctx context.Context, match func(decisionRecord) bool) (decisionRecord, bool) {
	if l.used == nil {
		l.used = map[string]bool{}
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		recs, _ := l.read()
		for _, r := range recs {
			if !l.used[r.ID] && match(r) {
				l.used[r.ID] = true
				return r, true
			}
		}
		if time.Now().After(deadline) {
			return decisionRecord{}, false
		}
		select {
		case <-ctx.Done():
			return decisionRecord{}, false
		case <-time.After(15 * time.Millisecond):
		}
	}
}

// ---- helpers ----

// abbreviateCredential shows a header value without revealing it: the
// scheme, the first 6 characters and the length of the credential.
func abbreviateCredential(v string) string {
	scheme, cred, ok := strings.Cut(v, " ")
	if !ok {
		scheme, cred = "", v
	}
	shown := cred
	if len(shown) > 6 {
		shown = shown[:6]
	}
	out := fmt.Sprintf("%s… (%d bytes)", shown, len(cred))
	if scheme != "" {
		out = scheme + " " + out
	}
	return out
}

// jwtClaims decodes the payload of a "Bearer <JWT>" value (without
// verifying it); nil if it is not a JWT.
func jwtClaims(v string) map[string]any {
	_, tok, ok := strings.Cut(v, " ")
	if !ok {
		tok = v
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims map[string]any
	if json.Unmarshal(payload, &claims) != nil {
		return nil
	}
	return claims
}

// rpcErrorMessage extracts error.message from a JSON-RPC error body.
func rpcErrorMessage(body string) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(body), &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	if len(body) > 120 {
		body = body[:120] + "…"
	}
	return body
}

func toolText(content any) string {
	b, _ := json.Marshal(content)
	if len(b) > 200 {
		b = append(b[:200], "…"...)
	}
	return string(b)
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ---- the tracker: per-user connections (credential mode individual) ----

// trackerLabel is how the transcript names the tracker's caller.
const trackerLabel = "alice (human, viewer)"

// runTracker shows mode individual on the tracker: alice's client gets
// mcpauthz's "authorize at <link>" answer; she connects (signs in at the
// dev IdP, consents at the tracker's provider; no browser needed here); her
// call then reaches the tracker with her own provider token; she revokes
// on the connect page; her next call gets the link again. It prints one
// line per step and returns the mismatches.
//
// The rbac bundle picks no credential mode (decision.credential), so every
// request to the tracker, initialize included, uses its only mode,
// individual: before alice connects, her client cannot open a session. A
// policy choosing mode public for housekeeping would let it (e2e does).
func (d *demo) runTracker(ctx context.Context, w io.Writer) []string {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	t := &trackerRun{d: d, ctx: ctx, w: w, public: "http://" + d.httpAddr, browser: oauthtest.LoginClient("alice", "alice")}
	defer t.close()
	for _, step := range []func() *stepFailure{t.mintToken, t.expectLinkOnOpen, t.followLink, t.callWithProviderToken, t.revoke, t.expectLinkOnCall} {
		if f := step(); f != nil {
			msg := d.redact(f.msg)
			fmt.Fprintf(w, "✗ %-34s %-27s %s\n", trackerLabel, f.op, msg)
			return []string{fmt.Sprintf("%s %s: %s", trackerLabel, f.op, msg)}
		}
	}
	var failures []string
	for _, r := range d.tracker.Received() {
		if f := d.leakCheck(&r); f != "" {
			failures = append(failures, "tracker: "+f)
		}
	}
	return failures
}

// stepFailure is a tracker step that did not go as expected.
type stepFailure struct{ op, msg string }

// trackerCall is the tracker's tool call in the transcript.
const trackerCall = "tracker: readDocument"

// trackerRun is alice's walk through the tracker's connection, one step
// (method) at a time.
type trackerRun struct {
	d       *demo
	ctx     context.Context
	w       io.Writer
	public  string       // mcpauthz's HTTP base URL
	browser *http.Client // alice's browser: signs in, consents
	tok     string       // alice's token for the tracker
	client  *docserver.Client
	link    string // the connect link of the last "authorize" answer
}

func (t *trackerRun) close() {
	if t.client != nil {
		_ = t.client.Close()
	}
}

// open opens an MCP session to the tracker with alice's token.
func (t *trackerRun) open() (*docserver.Client, error) {
	return docserver.Connect(t.ctx, docserver.ClientOptions{Endpoint: t.d.trackerResource, Token: t.tok, HTTPClient: t.d.hc, DisableStandaloneSSE: true})
}

func (t *trackerRun) mintToken() *stepFailure {
	tok, err := t.d.idp.Mint(map[string]any{"aud": t.d.trackerResource, "sub": "alice", "roles": []string{"viewer"}, "org_id": "acme", "scope": "docs:read"})
	if err != nil {
		return &stepFailure{trackerCall, "mint a token: " + err.Error()}
	}
	t.d.tokens["ALICE_TRACKER"] = tok
	t.tok = tok
	return nil
}

// expectLinkOnOpen: not connected yet, the JSON-RPC error carries
// mcpauthz's link.
func (t *trackerRun) expectLinkOnOpen() *stepFailure {
	const op = "tracker: initialize"
	link, status, err := t.d.trackerNeedsLink(t.public, connections.StatusNeedsAuthorization, func() error {
		c, err := t.open()
		if err == nil {
			_ = c.Close()
			return errors.New("the session opened")
		}
		return err
	})
	if err != nil {
		return &stepFailure{op, err.Error() + " — expected AUTHORIZE"}
	}
	t.link = link
	fmt.Fprintf(t.w, "✓ %-34s %-27s AUTHORIZE %s: \"connect your Issue Tracker account at %s\" (upstream not reached)\n",
		trackerLabel, op, status, shortLink(link))
	return nil
}

// followLink: alice follows the link: dev IdP sign-in, provider consent,
// back to mcpauthz's callback page.
func (t *trackerRun) followLink() *stepFailure {
	const op = "connects tracker"
	page, at, err := t.d.browse(t.ctx, t.browser, http.MethodGet, t.link, nil, "")
	switch {
	case err != nil:
		return &stepFailure{op, err.Error()}
	case !strings.HasPrefix(at, t.public+"/connect/callback") ||
		!strings.Contains(pageText(page), "Status: AUTHORIZED"):
		return &stepFailure{op, fmt.Sprintf("the link ended at %s: %.200s", at, pageText(page))}
	}
	fmt.Fprintf(t.w, "✓ %-34s %-27s AUTHORIZED (signed in at the dev IdP, consented at the provider)\n", trackerLabel, op)
	return nil
}

// callWithProviderToken: her client now opens a session and its call
// reaches the tracker with alice's provider token.
func (t *trackerRun) callWithProviderToken() *stepFailure {
	c, err := t.open()
	if err != nil {
		return &stepFailure{trackerCall, fmt.Sprintf("after connecting: %v — expected ALLOW", err)}
	}
	t.client = c
	before := len(t.d.tracker.Received())
	if out, err := c.CallTool(t.ctx, docserver.ToolRead, map[string]any{"id": "issue-7"}); err != nil || out.IsError {
		return &stepFailure{trackerCall, fmt.Sprintf("after connecting: %v %v — expected ALLOW", err, out)}
	}
	var auth string
	for _, r := range t.d.tracker.Received()[before:] {
		if r.RPCMethod == "tools/call" {
			auth = r.Header.Get("Authorization")
		}
	}
	provTok, _ := strings.CutPrefix(auth, "Bearer ")
	if user, _, ok := t.d.provider.VerifyAccessToken(provTok); !ok || user != "alice" {
		return &stepFailure{trackerCall, fmt.Sprintf("the tracker got Authorization %q, not alice's provider token", abbreviateCredential(auth))}
	}
	for k, tok := range t.d.tokens {
		if strings.Contains(auth, tok) {
			return &stepFailure{trackerCall, "the tracker got the caller's token " + k}
		}
	}
	fmt.Fprintf(t.w, "✓ %-34s %-27s ALLOW  upstream got Authorization: Bearer … (%d bytes) — alice's own provider token (the provider verifies it), not the caller's token\n",
		trackerLabel, trackerCall, len(provTok))
	return nil
}

// revoke: alice revokes on her connections page (a form POST with its
// CSRF token).
func (t *trackerRun) revoke() *stepFailure {
	const op = "revokes tracker"
	connPage, _, err := t.d.browse(t.ctx, t.browser, http.MethodGet, t.public+"/connect/", nil, "")
	if err != nil {
		return &stepFailure{op, err.Error()}
	}
	form, err := formFields(connPage, "/connect/tracker/revoke")
	if err != nil {
		return &stepFailure{op, err.Error()}
	}
	page, _, err := t.d.browse(t.ctx, t.browser, http.MethodPost, t.public+"/connect/tracker/revoke", form, t.public)
	if err != nil || !strings.Contains(pageText(page), "Status: REVOKED") {
		return &stepFailure{op, fmt.Sprintf("%v: %.200s", err, pageText(page))}
	}
	fmt.Fprintf(t.w, "✓ %-34s %-27s REVOKED (on /connect/: a form POST with its CSRF token)\n", trackerLabel, op)
	return nil
}

// expectLinkOnCall: the next call gets the link again.
func (t *trackerRun) expectLinkOnCall() *stepFailure {
	link, status, err := t.d.trackerNeedsLink(t.public, connections.StatusRevoked, func() error {
		out, err := t.client.CallTool(t.ctx, docserver.ToolRead, map[string]any{"id": "issue-7"})
		if err == nil {
			return fmt.Errorf("the call succeeded: %v", out)
		}
		return err
	})
	if err != nil {
		return &stepFailure{trackerCall, err.Error() + " — expected AUTHORIZE"}
	}
	fmt.Fprintf(t.w, "✓ %-34s %-27s AUTHORIZE %s: \"connect your Issue Tracker account at %s\" (upstream not reached)\n",
		trackerLabel, trackerCall, status, shortLink(link))
	return nil
}

// trackerNeedsLink runs try, which must fail with mcpauthz's "authorize
// at <link>" JSON-RPC error; the tracker must receive nothing.
func (d *demo) trackerNeedsLink(public string, want connections.Status, try func() error) (link, status string, err error) {
	before := len(d.tracker.Received())
	err = try()
	var je *jsonrpc.Error
	if !errors.As(err, &je) {
		return "", "", fmt.Errorf("got %v", err)
	}
	var data struct{ URL, Server, Status string }
	if json.Unmarshal(je.Data, &data) != nil || data.Server != "tracker" || data.Status != string(want) || !strings.HasPrefix(data.URL, public+"/connect/start?link=") ||
		!strings.Contains(je.Message, data.URL) {
		return "", "", fmt.Errorf("got JSON-RPC error %d %q %s", je.Code, je.Message, je.Data)
	}
	if n := len(d.tracker.Received()); n != before {
		return "", "", errors.New("a refused request reached the tracker")
	}
	return data.URL, data.Status, nil
}

// browse sends one request as alice's browser (following redirects) and
// returns the text of the page it ended on and its URL.
func (d *demo) browse(ctx context.Context, c *http.Client, method, u string, form url.Values, origin string) (string, string, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return "", "", err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("%s %s: status %d", method, resp.Request.URL.Path, resp.StatusCode)
	}
	return string(b), resp.Request.URL.String(), nil
}

// pageText is the text of an HTML page, whitespace-normalized (head,
// style and script skipped).
func pageText(page string) string {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return ""
	}
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "head" || n.Data == "style" || n.Data == "script") {
			return
		}
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
			b.WriteByte(' ')
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return strings.Join(strings.Fields(b.String()), " ")
}

// formFields returns the hidden fields of the form posting to action.
func formFields(page, action string) (url.Values, error) {
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		return nil, err
	}
	var form *html.Node
	var walk func(n *html.Node, f func(*html.Node))
	walk = func(n *html.Node, f func(*html.Node)) {
		if n.Type == html.ElementNode {
			f(n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, f)
		}
	}
	attr := func(n *html.Node, k string) string {
		for _, a := range n.Attr {
			if a.Key == k {
				return a.Val
			}
		}
		return ""
	}
	walk(doc, func(n *html.Node) {
		if form == nil && n.Data == "form" && attr(n, "action") == action {
			form = n
		}
	})
	if form == nil {
		return nil, fmt.Errorf("no form posting to %s on the page", action)
	}
	vals := url.Values{}
	walk(form, func(n *html.Node) {
		if n.Data == "input" && attr(n, "type") == "hidden" {
			vals.Set(attr(n, "name"), attr(n, "value"))
		}
	})
	return vals, nil
}

// shortLink shows a connect link without its link id (random per link).
func shortLink(link string) string {
	base, _, ok := strings.Cut(link, "?link=")
	if !ok {
		return link
	}
	return base + "?link=…"
}
