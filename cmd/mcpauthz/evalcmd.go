package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server"
	"github.com/mcpauthz/mcpauthz/server/config"
)

const evalUsage = `Usage: mcpauthz eval --bundle DIR --request FILE [--config FILE] [--explain] [--format text|json]

Runs one request through the real Check pipeline (request parsing, identity,
policy, credential, Envoy response) offline and prints the policy input
document, the decision, with --explain OPA's evaluation trace, and the Envoy
outcome. Bearer tokens are decoded WITHOUT verifying signatures or expiry.

--request FILE is either an Envoy CheckRequest in protojson (a JSON object
with an "attributes" key) or a short call:

  {
    "server": "docs",                          server id (default: the first configured)
    "claims": {"iss": "https://idp.example.com", "sub": "alice",
               "roles": ["viewer"], "scope": "docs:read",
               "act": {"sub": "agent-1"}},     token claims; omit for no token
    "mcp": {"method": "tools/call", "tool": "readDocument",
            "arguments": {"id": "d1"}},         also "uri" (resources/*), "prompt"
                                               (prompts/get), "id", "protocol_version"
    "headers": {"origin": "..."},              extra request headers
    "source_principal": "spiffe://..."         mTLS peer instead of a token
  }

The claims become an unsigned JWT (header.payload.) sent as the bearer
token; "aud" defaults to the server's resource. Without --config the eval
config has one issuer (the claims' iss), the server id with resource
http://eval.local/<id>/mcp (path prefix /<id>/) and credential mode public.
With --config, --bundle (if given) replaces the configured bundles.

Flags:
`

func cmdEval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("eval", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = printUsage(fl, stderr, evalUsage)
	bundleDir := fl.String("bundle", "", "policy bundle directory or .tar.gz")
	reqPath := fl.String("request", "", "request file (CheckRequest protojson or short call JSON)")
	cfgPath := fl.String("config", "", "mcpauthz config file (default: a built-in eval config)")
	explain := fl.Bool("explain", false, "print OPA's evaluation trace")
	format := fl.String("format", "text", "output format: text or json")
	if err := fl.Parse(args); err != nil {
		return flag.ErrHelp // the flag package printed the problem and the usage
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments %q\n", fl.Args())
		fl.Usage()
		return flag.ErrHelp
	}
	if *reqPath == "" || (*bundleDir == "" && *cfgPath == "") || (*format != "text" && *format != "json") {
		fl.Usage()
		return flag.ErrHelp
	}
	raw, err := os.ReadFile(*reqPath)
	if err != nil {
		return err
	}
	req, err := parseEvalRequest(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", *reqPath, err)
	}
	res, err := runEval(ctx, req, evalOptions{bundle: *bundleDir, config: *cfgPath, trace: *explain})
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	return res.writeText(stdout, *explain)
}

// --- request files ----------------------------------------------------------

// evalShortCall is the short request form (see evalUsage).
type evalShortCall struct {
	Server          string            `json:"server"`
	Claims          map[string]any    `json:"claims"`
	MCP             evalShortMCP      `json:"mcp"`
	Headers         map[string]string `json:"headers"`
	SourcePrincipal string            `json:"source_principal"`
}

type evalShortMCP struct {
	Method          string          `json:"method"`
	Tool            string          `json:"tool"`
	Prompt          string          `json:"prompt"`
	URI             string          `json:"uri"`
	Arguments       json.RawMessage `json:"arguments"`
	ID              json.RawMessage `json:"id"`
	ProtocolVersion string          `json:"protocol_version"`
}

// evalRequest is a parsed request file: exactly one field is set.
type evalRequest struct {
	check *authv3.CheckRequest
	short *evalShortCall
}

func parseEvalRequest(raw []byte) (*evalRequest, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if _, ok := top["attributes"]; ok {
		var cr authv3.CheckRequest
		if err := protojson.Unmarshal(raw, &cr); err != nil {
			return nil, fmt.Errorf("invalid CheckRequest (protojson): %w", err)
		}
		if cr.GetAttributes().GetRequest().GetHttp() == nil {
			return nil, errors.New("CheckRequest has no attributes.request.http")
		}
		return &evalRequest{check: &cr}, nil
	}
	var sc evalShortCall
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("invalid short call (or a CheckRequest without \"attributes\"): %w", err)
	}
	if sc.MCP.Method == "" {
		return nil, errors.New(`short call: mcp.method is required (e.g. "tools/call")`)
	}
	if sc.MCP.Method == "tools/call" && sc.MCP.Tool == "" {
		return nil, errors.New("short call: mcp.tool is required for tools/call")
	}
	if len(sc.MCP.Arguments) > 0 && !json.Valid(sc.MCP.Arguments) {
		return nil, errors.New("short call: mcp.arguments is not valid JSON")
	}
	if sc.Claims != nil {
		if iss, _ := sc.Claims["iss"].(string); iss == "" {
			return nil, errors.New(`short call: claims.iss (a string) is required`)
		}
	}
	return &evalRequest{short: &sc}, nil
}

// --- running ----------------------------------------------------------------

type evalOptions struct {
	bundle, config string
	trace          bool
}

// evalResult is everything eval reports; its JSON form is --format json.
type evalResult struct {
	Notes       []string         `json:"notes"`
	Evaluations []evalEvaluation `json:"evaluations"`
	Outcome     evalOutcome      `json:"outcome"`
}

type evalEvaluation struct {
	Input    any          `json:"input"`
	Decision evalDecision `json:"decision"`
	Error    string       `json:"error,omitempty"`
	Trace    string       `json:"trace,omitempty"`
}

type evalDecision struct {
	Allow                  bool              `json:"allow"`
	Reason                 string            `json:"reason,omitempty"`
	Message                string            `json:"message,omitempty"`
	HTTPStatus             int               `json:"http_status,omitempty"`
	Headers                map[string]string `json:"headers,omitempty"`
	Body                   string            `json:"body,omitempty"`
	RequestHeadersToRemove []string          `json:"request_headers_to_remove,omitempty"`
	ResponseHeadersToAdd   map[string]string `json:"response_headers_to_add,omitempty"`
	RequiredScopes         []string          `json:"required_scopes,omitempty"`
	Scopes                 []string          `json:"scopes,omitempty"`
	Credential             string            `json:"credential,omitempty"`
	Revision               string            `json:"revision,omitempty"`
}

// evalOutcome is the Envoy-level result of Check.
type evalOutcome struct {
	Allowed bool `json:"allowed"`
	Status  int  `json:"http_status"`
	// Upstream headers set (allowed) or response headers (denied), with
	// secret values redacted.
	Headers              []evalHeader `json:"headers,omitempty"`
	HeadersToRemove      []string     `json:"headers_to_remove,omitempty"`
	ResponseHeadersToAdd []evalHeader `json:"response_headers_to_add,omitempty"`
	Body                 string       `json:"body,omitempty"`
}

type evalHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func runEval(ctx context.Context, req *evalRequest, o evalOptions) (*evalResult, error) {
	res := &evalResult{Notes: []string{"signature not verified (eval is offline): token claims are taken as they are, expiry included"}}
	var (
		cfg *config.Config
		err error
	)
	if o.config != "" {
		if cfg, err = config.Load(o.config); err != nil {
			return nil, err
		}
		if o.bundle != "" {
			cfg.Policy.Bundles = []policy.BundleSource{{Path: o.bundle}}
		}
	} else {
		cfg = evalConfig(req, o.bundle)
	}
	cfg.Audit.Output = "off"
	cfg.Policy.DecisionCacheSize = -1

	check := req.check
	if check == nil {
		var notes []string
		if check, notes, err = evalShortCheckRequest(cfg, req.short); err != nil {
			return nil, err
		}
		res.Notes = append(res.Notes, notes...)
	}

	eng, err := policy.New(ctx, cfg.Policy, nil)
	if err != nil {
		return nil, err
	}
	pol := &evalExplainingPolicy{eng: eng, trace: o.trace}
	ver := newEvalOfflineVerifier(cfg.Identity)
	defer ver.close()
	svc, err := server.NewService(ctx, cfg, server.Deps{
		Verifier: ver,
		Policy:   pol,
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	resp, err := svc.Check(ctx, check)
	svc.Close()
	if err != nil {
		return nil, err
	}
	for _, ev := range pol.records() {
		e := evalEvaluation{Input: ev.ex.Input, Decision: toEvalDecision(ev.ex.Decision), Trace: ev.ex.Trace}
		if ev.err != nil {
			e.Error = ev.err.Error()
		}
		res.Evaluations = append(res.Evaluations, e)
	}
	for _, r := range ver.refusals() {
		res.Notes = append(res.Notes, "credential refused: "+r)
	}
	if len(res.Evaluations) == 0 {
		res.Notes = append(res.Notes, "the policy was not evaluated: the request was decided before policy (see outcome)")
	}
	res.Outcome = evalOutcomeOf(resp)
	return res, nil
}

// evalConfig is the built-in config: one issuer (the claims' iss), one
// server, the given bundle.
func evalConfig(req *evalRequest, bundle string) *config.Config {
	id := "docs"
	iss := "https://eval.invalid"
	if sc := req.short; sc != nil {
		if sc.Server != "" {
			id = sc.Server
		}
		if s, _ := sc.Claims["iss"].(string); s != "" {
			iss = s
		}
	} else {
		attrs := req.check.GetAttributes()
		if ext := attrs.GetContextExtensions()[server.ContextExtensionKey]; ext != "" {
			id = ext
		}
		if s, _ := evalBearerClaims(attrs.GetRequest().GetHttp().GetHeaders()["authorization"])["iss"].(string); s != "" {
			iss = s
		}
	}
	cfg := &config.Config{
		Version: 1,
		Identity: identity.Config{
			Issuers: []identity.IssuerConfig{{Name: "eval", Issuer: iss}},
		},
		Policy: policy.Config{Bundles: []policy.BundleSource{{Path: bundle}}},
		Servers: []config.Server{{
			ID:         id,
			Name:       "eval " + id,
			Resource:   "http://eval.local/" + id + "/mcp",
			Match:      config.Match{PathPrefix: "/" + id + "/"},
			Credential: outbound.Config{Mode: outbound.ModePublic},
		}},
	}
	if sc := req.short; sc != nil && strings.HasPrefix(sc.SourcePrincipal, "spiffe://") {
		td, _, _ := strings.Cut(strings.TrimPrefix(sc.SourcePrincipal, "spiffe://"), "/")
		cfg.Identity.SPIFFE.TrustDomains = []string{td}
	}
	cfg.ApplyDefaults()
	return cfg
}

// evalShortCheckRequest builds the CheckRequest Envoy would send for sc.
func evalShortCheckRequest(cfg *config.Config, sc *evalShortCall) (*authv3.CheckRequest, []string, error) {
	var notes []string
	srv := &cfg.Servers[0]
	if sc.Server != "" {
		i := slices.IndexFunc(cfg.Servers, func(s config.Server) bool { return s.ID == sc.Server })
		if i < 0 {
			return nil, nil, fmt.Errorf("short call: server %q is not in the config", sc.Server)
		}
		srv = &cfg.Servers[i]
	}
	u, err := url.Parse(srv.Resource)
	if err != nil {
		return nil, nil, fmt.Errorf("server %s: resource: %w", srv.ID, err)
	}
	body, err := evalRPCBody(&sc.MCP)
	if err != nil {
		return nil, nil, err
	}
	proto := sc.MCP.ProtocolVersion
	if proto == "" {
		proto = "2025-06-18"
	}
	headers := map[string]string{
		":authority":                u.Host,
		":method":                   "POST",
		":path":                     u.EscapedPath(),
		":scheme":                   u.Scheme,
		"content-type":              "application/json",
		"accept":                    "application/json, text/event-stream",
		"mcp-protocol-version":      proto,
		"content-length":            fmt.Sprint(len(body)),
		"x-envoy-auth-partial-body": "false",
	}
	for k, v := range sc.Headers {
		headers[strings.ToLower(k)] = v
	}
	if sc.Claims != nil {
		claims := sc.Claims
		if _, ok := claims["aud"]; !ok {
			claims = make(map[string]any, len(sc.Claims)+1)
			for k, v := range sc.Claims {
				claims[k] = v
			}
			claims["aud"] = srv.Resource
			notes = append(notes, fmt.Sprintf("claims.aud set to the server's resource %s", srv.Resource))
		}
		tok, err := evalUnsignedJWT(claims)
		if err != nil {
			return nil, nil, err
		}
		headers["authorization"] = "Bearer " + tok
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:   &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}}}},
			Principal: sc.SourcePrincipal,
		},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       "eval",
			Method:   "POST",
			Headers:  headers,
			Path:     u.EscapedPath(),
			Host:     u.Host,
			Scheme:   u.Scheme,
			Protocol: "HTTP/1.1",
			RawBody:  body,
			Size:     int64(len(body)),
		}},
		ContextExtensions: map[string]string{server.ContextExtensionKey: srv.ID},
	}}, notes, nil
}

// evalRPCBody renders the MCP message: a request with id 1 (or mcp.id),
// or a notification for notifications/*.
func evalRPCBody(m *evalShortMCP) ([]byte, error) {
	params := map[string]any{}
	args := m.Arguments
	switch m.Method {
	case "tools/call":
		params["name"] = m.Tool
		if len(args) > 0 {
			params["arguments"] = args
		}
	case "prompts/get":
		params["name"] = m.Prompt
		if len(args) > 0 {
			params["arguments"] = args
		}
	default:
		if m.URI != "" {
			params["uri"] = m.URI
		}
	}
	msg := map[string]any{"jsonrpc": "2.0", "method": m.Method, "params": params}
	if !strings.HasPrefix(m.Method, "notifications/") {
		msg["id"] = json.RawMessage("1")
		if len(m.ID) > 0 {
			msg["id"] = m.ID
		}
	}
	return json.Marshal(msg)
}

// evalUnsignedJWT is header.payload. with alg "none": it only ever reaches the
// offline verifier.
func evalUnsignedJWT(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("claims: %w", err)
	}
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + ".", nil
}

// --- collaborators ------------------------------------------------------------

// evalOfflineVerifier decodes bearer tokens without verifying them and builds
// the principal the configured issuer would. Safe for concurrent use.
type evalOfflineVerifier struct {
	cfg    identity.Config
	spiffe *identity.Verifier // nil if the identity config does not validate

	mu     sync.Mutex
	errors []string // why tokens were refused, for the report
}

func (v *evalOfflineVerifier) refused(err error) error {
	if err != nil {
		v.mu.Lock()
		v.errors = append(v.errors, err.Error())
		v.mu.Unlock()
	}
	return err
}

func (v *evalOfflineVerifier) refusals() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.errors)
}

func newEvalOfflineVerifier(cfg identity.Config) *evalOfflineVerifier {
	v := &evalOfflineVerifier{cfg: cfg}
	// NewVerifier does no I/O; only its SPIFFE check is used.
	v.spiffe, _ = identity.NewVerifier(context.Background(), cfg, identity.Options{Logger: slog.New(slog.DiscardHandler)})
	return v
}

func (v *evalOfflineVerifier) close() {
	if v.spiffe != nil {
		v.spiffe.Close()
	}
}

func (v *evalOfflineVerifier) VerifyToken(_ context.Context, raw string) (*identity.Principal, error) {
	claims, err := evalJWTClaims(raw)
	if err != nil {
		return nil, v.refused(err)
	}
	p, err := identity.PrincipalFromClaims(v.cfg, claims)
	if err != nil {
		return nil, v.refused(fmt.Errorf("eval: token claims: %w", err))
	}
	p.TokenHash = sha256.Sum256([]byte(raw))
	return p, nil
}

// evalJWTClaims decodes a JWT's payload without verifying anything.
func evalJWTClaims(raw string) (map[string]any, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("eval: bearer token is not a JWT (header.payload.signature)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, fmt.Errorf("eval: token payload: %w", err)
	}
	claims, err := identity.DecodeClaims(payload) // numbers exact, as the verifier reads them
	if err != nil {
		return nil, fmt.Errorf("eval: token payload: %w", err)
	}
	return claims, nil
}

// evalBearerClaims returns the claims of an "Authorization: Bearer JWT" value,
// nil if there are none.
func evalBearerClaims(authz string) map[string]any {
	scheme, tok, ok := strings.Cut(authz, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return nil
	}
	c, _ := evalJWTClaims(tok)
	return c
}

func (v *evalOfflineVerifier) FromSPIFFE(id string) (*identity.Principal, error) {
	if v.spiffe == nil {
		return nil, v.refused(errors.New("eval: no SPIFFE trust domain configured"))
	}
	p, err := v.spiffe.FromSPIFFE(id)
	return p, v.refused(err)
}

func (v *evalOfflineVerifier) Metrics() identity.CacheMetrics { return identity.CacheMetrics{} }

// evalExplainingPolicy evaluates with Engine.Explain and records every
// evaluation (one per JSON-RPC message). Safe for concurrent use.
type evalExplainingPolicy struct {
	eng   *policy.Engine
	trace bool

	mu  sync.Mutex
	log []evalExplained
}

type evalExplained struct {
	ex  policy.Explanation
	err error
}

func (p *evalExplainingPolicy) Evaluate(ctx context.Context, in *policy.Input) (policy.Decision, error) {
	ex, err := p.eng.Explain(ctx, in, p.trace)
	p.mu.Lock()
	p.log = append(p.log, evalExplained{ex, err})
	p.mu.Unlock()
	return ex.Decision, err
}

func (p *evalExplainingPolicy) Status() policy.Status { return p.eng.Status() }

func (p *evalExplainingPolicy) records() []evalExplained {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// --- output -------------------------------------------------------------------

func toEvalDecision(d policy.Decision) evalDecision {
	return evalDecision{
		Allow: d.Allow, Reason: d.Reason, Message: d.Message, HTTPStatus: d.HTTPStatus,
		Headers: d.Headers, Body: d.Body, RequestHeadersToRemove: d.RequestHeadersToRemove,
		ResponseHeadersToAdd: d.ResponseHeadersToAdd, RequiredScopes: d.RequiredScopes,
		Scopes: d.Scopes, Credential: d.Credential, Revision: d.Revision,
	}
}

func evalOutcomeOf(resp *authv3.CheckResponse) evalOutcome {
	var o evalOutcome
	if ok := resp.GetOkResponse(); ok != nil && resp.GetStatus().GetCode() == 0 {
		o.Allowed, o.Status = true, 200
		o.Headers = evalRedactedHeaders(ok.GetHeaders())
		o.HeadersToRemove = slices.Sorted(slices.Values(ok.GetHeadersToRemove()))
		o.ResponseHeadersToAdd = evalRedactedHeaders(ok.GetResponseHeadersToAdd())
		return o
	}
	d := resp.GetDeniedResponse()
	o.Status = int(d.GetStatus().GetCode())
	if o.Status == 0 {
		o.Status = 403 // Envoy's default for a denial without a status
	}
	o.Headers = evalRedactedHeaders(d.GetHeaders())
	o.Body = d.GetBody()
	return o
}

func evalRedactedHeaders(hs []*corev3.HeaderValueOption) []evalHeader {
	out := make([]evalHeader, 0, len(hs))
	for _, h := range hs {
		k, v := h.GetHeader().GetKey(), h.GetHeader().GetValue()
		if v == "" && len(h.GetHeader().GetRawValue()) > 0 {
			v = string(h.GetHeader().GetRawValue())
		}
		out = append(out, evalHeader{Name: k, Value: evalRedactHeader(k, v)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// evalSecretHeaderWords mark header names whose values are credentials.
var evalSecretHeaderWords = []string{"auth", "token", "secret", "key", "password", "cookie", "credential", "session", "signature", "attribution"}

// evalRedactHeader hides credential values: by header name, and any value that
// looks like a bearer/basic credential or a JWT.
func evalRedactHeader(name, value string) string {
	ln := strings.ToLower(name)
	if ln == "www-authenticate" {
		return value // a challenge, never a credential
	}
	secret := false
	for _, w := range evalSecretHeaderWords {
		if strings.Contains(ln, w) {
			secret = true
			break
		}
	}
	lv := strings.ToLower(value)
	if strings.HasPrefix(lv, "bearer ") || strings.HasPrefix(lv, "basic ") || evalLooksLikeJWT(value) {
		secret = true
	}
	if !secret || value == "" {
		return value
	}
	return fmt.Sprintf("[redacted, %d bytes]", len(value))
}

func evalLooksLikeJWT(v string) bool {
	parts := strings.Split(v, ".")
	return len(parts) == 3 && len(parts[0]) > 8 && len(parts[1]) > 8 && strings.HasPrefix(parts[0], "eyJ")
}

func (r *evalResult) writeText(w io.Writer, explain bool) error {
	var b strings.Builder
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	for i, ev := range r.Evaluations {
		label := ""
		if len(r.Evaluations) > 1 {
			label = fmt.Sprintf(" (message %d of %d)", i+1, len(r.Evaluations))
		}
		in, err := json.MarshalIndent(ev.Input, "", "  ")
		if err != nil {
			return fmt.Errorf("input: %w", err)
		}
		fmt.Fprintf(&b, "\n== input%s ==\n%s\n", label, in)
		fmt.Fprintf(&b, "\n== decision%s ==\n", label)
		if ev.Error != "" {
			fmt.Fprintf(&b, "error: %s (the request is denied)\n", ev.Error)
		}
		d := ev.Decision
		fmt.Fprintf(&b, "allow: %t\n", d.Allow)
		for _, kv := range [][2]string{
			{"reason", d.Reason}, {"message", d.Message}, {"credential", d.Credential}, {"revision", d.Revision},
		} {
			if kv[1] != "" {
				fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
			}
		}
		if d.HTTPStatus != 0 {
			fmt.Fprintf(&b, "http_status: %d\n", d.HTTPStatus)
		}
		if len(d.RequiredScopes) > 0 {
			fmt.Fprintf(&b, "required_scopes: %s\n", strings.Join(d.RequiredScopes, " "))
		}
		if len(d.Scopes) > 0 {
			fmt.Fprintf(&b, "scopes: %s\n", strings.Join(d.Scopes, " "))
		}
		if explain {
			fmt.Fprintf(&b, "\n== trace%s ==\n%s", label, ev.Trace)
		}
	}
	o := r.Outcome
	verdict := "DENIED"
	if o.Allowed {
		verdict = "ALLOWED"
	}
	fmt.Fprintf(&b, "\n== envoy outcome ==\n%s (HTTP %d)\n", verdict, o.Status)
	what := "response headers"
	if o.Allowed {
		what = "upstream headers set"
	}
	if len(o.Headers) > 0 {
		fmt.Fprintf(&b, "%s:\n", what)
		for _, h := range o.Headers {
			fmt.Fprintf(&b, "  %s: %s\n", h.Name, h.Value)
		}
	}
	if len(o.HeadersToRemove) > 0 {
		fmt.Fprintf(&b, "upstream headers removed: %s\n", strings.Join(o.HeadersToRemove, ", "))
	}
	if len(o.ResponseHeadersToAdd) > 0 {
		fmt.Fprintf(&b, "client response headers added:\n")
		for _, h := range o.ResponseHeadersToAdd {
			fmt.Fprintf(&b, "  %s: %s\n", h.Name, h.Value)
		}
	}
	if o.Body != "" {
		fmt.Fprintf(&b, "body: %s\n", strings.TrimSpace(o.Body))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
