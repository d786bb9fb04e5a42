// Package server is mcpauthz's Envoy ext_authz service: the Check pipeline
// (Envoy request -> MCP call -> principal -> Rego decision -> upstream
// credential -> Envoy response -> decision log), the gRPC and HTTP
// listeners, health, metrics and RFC 9728 metadata. It is the only package
// that turns internal outcomes into Envoy responses.
package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/mint"
	"github.com/mcpauthz/mcpauthz/credentials/outbound"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/envoy"
	"github.com/mcpauthz/mcpauthz/policy"
	"github.com/mcpauthz/mcpauthz/server/config"
	"github.com/mcpauthz/mcpauthz/server/connect"
	"github.com/mcpauthz/mcpauthz/server/decisionlog"
	"github.com/mcpauthz/mcpauthz/server/extproc"
	"github.com/mcpauthz/mcpauthz/server/mcp"
)

// tokenVerifier authenticates callers. *identity.Verifier implements it.
type tokenVerifier interface {
	VerifyToken(ctx context.Context, raw string) (*identity.Principal, error)
	FromSPIFFE(id string) (*identity.Principal, error)
	Metrics() identity.CacheMetrics
}

// policyEvaluator decides. *policy.Engine implements it.
type policyEvaluator interface {
	Evaluate(ctx context.Context, in *policy.Input) (policy.Decision, error)
	Status() policy.Status
}

var (
	_ tokenVerifier   = (*identity.Verifier)(nil)
	_ policyEvaluator = (*policy.Engine)(nil)
)

// Service implements envoy.service.auth.v3.Authorization. Everything it
// holds is immutable after New or safe for concurrent use (the policy
// engine swaps its prepared query atomically), so Check takes no locks on
// the hot path beyond the session table's shard lock.
type Service struct {
	authv3.UnimplementedAuthorizationServer

	cfg      *config.Config
	log      *slog.Logger
	catalog  *catalog
	verifier tokenVerifier
	// ownVerifier is the verifier NewService built (nil when Deps brought
	// one): Close releases its cache.
	ownVerifier *identity.Verifier
	policy      policyEvaluator
	sessions    sessionStore
	// sessionParams are the legacy session query parameter names.
	sessionParams []string
	prepared      *preparedPrincipals
	audit         *auditLog
	metrics       *metrics
	issuer        *mint.Issuer // built-in token issuer; nil unless configured
	store         store.Store  // shared state (generated issuer keys); closed by Close
	// connections keeps per-user (and organization) OAuth connections; nil
	// when no server uses them. connect serves their pages.
	connections *connections.Manager
	connect     *connect.Handler
	// caps records what each MCP session's initialize declared (learnt by
	// ext_proc); extproc filters list responses.
	caps    *extproc.CapabilityStore
	extproc *extproc.Server
	// mdValues shares the ext_proc hand-off values that repeat across
	// Checks (server, kind, protocol, revision, …).
	mdValues extproc.Values
	opa      opaLogger // OPA-format decision log; nil unless configured
	opaPath  string
	// bundleNames name the policy sources in config order (decision-log
	// bundles map).
	bundleNames []string
	strip       map[string]bool // client headers never forwarded (lower-case)
	// alwaysRemove is every attribution header name and every stripped
	// header, sorted: removed from each allowed request unless set.
	alwaysRemove []string
	prefix       string
	hdr          attributionHeaders
	// keepHeaderFn is s.keepHeader bound once (a method value allocates).
	keepHeaderFn func(string) bool
	now          func() time.Time
}

// Deps are the collaborators of a Service; New builds the defaults from the
// config when a field is nil.
type Deps struct {
	Logger     *slog.Logger
	Verifier   tokenVerifier
	Policy     policyEvaluator
	HTTPClient *http.Client
	Now        func() time.Time
}

// NewService wires a Service from a validated config. The policy engine,
// if built here, is not watching for changes: Run starts that.
func NewService(ctx context.Context, cfg *config.Config, deps Deps) (*Service, error) {
	s := &Service{cfg: cfg, log: deps.Logger, verifier: deps.Verifier, policy: deps.Policy, now: deps.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.buildDecisionCore(ctx, deps); err != nil {
		return nil, err
	}
	built := false
	defer func() {
		if !built {
			s.Close() // what was opened so far: verifier, store, audit logs
		}
	}()
	var ring *store.KeyRing
	var err error
	if s.store, ring, err = store.Open(ctx, cfg.Store, store.Options{Now: deps.Now, Logger: s.log}); err != nil {
		return nil, fmt.Errorf("server: store: %w", err)
	}
	if err := s.buildUpstreams(ctx, deps, ring); err != nil {
		return nil, err
	}
	if cfg.MCP.SessionStore == "shared" {
		s.sessions = newSharedSessions(s.store, cfg.MCP.SessionTTL, cfg.MCP.MaxSessionsPerPrincipal, cfg.MCP.MaxAnonymousSessions)
	} else {
		s.sessions = newMemSessions(cfg.MCP.SessionTTL, cfg.MCP.MaxSessions, cfg.MCP.MaxSessionsPerPrincipal, cfg.MCP.MaxAnonymousSessions)
	}
	s.sessionParams = cfg.MCP.LegacySessionParams
	s.prepared = newPreparedPrincipals(max(cfg.Identity.CacheSize, 10000), s.now)
	if err := s.buildAudit(ctx, deps); err != nil {
		return nil, err
	}
	s.buildHeaders()
	if err := s.buildResponseSide(ctx, deps); err != nil {
		return nil, err
	}
	for _, sc := range cfg.Servers {
		if sc.AllowNewerProtocolVersions {
			s.log.Warn("relaxation allow_newer_protocol_versions: MCP protocol versions newer than mcpauthz knows are let through and parsed by the newest rules it knows",
				"server", sc.ID, "newest_known", mcp.SupportedVersions[len(mcp.SupportedVersions)-1])
		}
	}
	s.metrics = newMetrics(s)
	built = true
	return s, nil
}

// buildDecisionCore builds the token verifier and the policy engine unless
// Deps brought them.
func (s *Service) buildDecisionCore(ctx context.Context, deps Deps) error {
	if s.verifier == nil {
		v, err := identity.NewVerifier(ctx, s.cfg.Identity, identity.Options{HTTPClient: deps.HTTPClient, Logger: s.log})
		if err != nil {
			return fmt.Errorf("server: identity: %w", err)
		}
		s.verifier, s.ownVerifier = v, v
	}
	if s.policy == nil {
		p, err := policy.New(ctx, s.cfg.Policy, s.log)
		if err != nil {
			if s.ownVerifier != nil {
				s.ownVerifier.Close()
			}
			return fmt.Errorf("server: %w", err) // policy errors name their package
		}
		s.policy = p
	}
	return nil
}

// buildUpstreams builds what upstream credentials need (per-user
// connections, the built-in issuer) and the server catalog.
func (s *Service) buildUpstreams(ctx context.Context, deps Deps, ring *store.KeyRing) error {
	oopts := outbound.Options{HTTPClient: deps.HTTPClient, Logger: s.log, Now: deps.Now}
	var err error
	if needsConnections(s.cfg) {
		if s.connections, err = newConnections(ctx, s.cfg, s.store, ring, deps, s); err != nil {
			return err
		}
		oopts.Connections = s.connections
	}
	if s.cfg.Issuer != nil {
		if s.issuer, err = mint.New(ctx, *s.cfg.Issuer, mint.Options{Now: deps.Now, Logger: s.log, Store: s.store, Cipher: ring}); err != nil {
			return fmt.Errorf("server: issuer: %w", err)
		}
		oopts.Minter = s.issuer
	}
	s.catalog, err = newCatalog(ctx, s.cfg, oopts)
	return err
}

// buildAudit opens the decision log and, when configured, the OPA-format
// decision log.
func (s *Service) buildAudit(ctx context.Context, deps Deps) error {
	var err error
	if s.audit, err = newAuditLog(s.cfg.Audit.Output, s.cfg.Audit.Buffer); err != nil {
		return err
	}
	if s.cfg.Audit.OPA == nil {
		return nil
	}
	l, err := decisionlog.New(ctx, *s.cfg.Audit.OPA, decisionlog.Options{Logger: s.log, HTTPClient: deps.HTTPClient, Now: deps.Now})
	if err != nil {
		return fmt.Errorf("server: audit.opa: %w", err)
	}
	s.opa, s.opaPath = l, opaPath(s.cfg.Policy.Query)
	for _, src := range s.policy.Status().Sources {
		s.bundleNames = append(s.bundleNames, src.Name)
	}
	return nil
}

// buildHeaders fixes the attribution header names and the headers never
// forwarded upstream (credentials, configured ones, those a server's
// parameter headers consume).
func (s *Service) buildHeaders() {
	s.prefix = s.cfg.Headers.Prefix
	s.hdr = newAttributionHeaders(s.prefix)
	s.keepHeaderFn = s.keepHeader
	s.strip = map[string]bool{"authorization": true, "proxy-authorization": true}
	for _, h := range s.cfg.Headers.Strip {
		s.strip[h] = true
	}
	for _, srv := range s.catalog.byID {
		for _, h := range srv.consumedHeaders() {
			s.strip[h] = true
		}
	}
	s.alwaysRemove = alwaysRemoved(s.hdr, s.strip)
}

// buildResponseSide builds the connect pages (per-user connections) and
// the ext_proc response processor.
func (s *Service) buildResponseSide(ctx context.Context, deps Deps) error {
	var err error
	if s.connections != nil {
		if s.connect, err = newConnectHandler(ctx, s.cfg, s.connections, s.verifier, deps, s); err != nil {
			return err
		}
	}
	s.caps = extproc.NewCapabilityStore(s.cfg.MCP.SessionTTL, s.cfg.MCP.MaxSessions, s.now)
	if s.extproc, err = extproc.New(extproc.Deps{Evaluator: listEvaluator{s}, Learner: upstreamLearner{s}, Sessions: s.caps, Logger: s.log},
		extproc.Options{LegacySessionParams: s.cfg.MCP.LegacySessionParams}); err != nil {
		return fmt.Errorf("server: extproc: %w", err)
	}
	return nil
}

// Close flushes the decision logs and closes what NewService opened. Call
// it after the gRPC server stopped. It also releases a partly built
// Service (NewService calls it on failure).
func (s *Service) Close() {
	if s.audit != nil {
		s.audit.close()
	}
	if s.opa != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.opa.Close(ctx); err != nil {
			s.log.Warn("OPA decision log not fully delivered at shutdown", "err", err)
		}
		cancel()
	}
	if s.store != nil {
		if err := s.store.Close(); err != nil {
			s.log.Warn("state store close", "err", err)
		}
	}
	if s.ownVerifier != nil {
		s.ownVerifier.Close()
	}
}

// Check implements the Envoy ext_authz v3 Authorization service. It never
// returns a gRPC error: every failure is an explicit denial, so the outcome
// does not depend on Envoy's failure_mode_allow.
func (s *Service) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := s.now()
	rec := &record{ID: newDecisionID(), Time: start}
	resp := s.check(ctx, req, rec)
	rec.LatencyUS = s.now().Sub(start).Microseconds()
	s.metrics.observe(rec)
	s.audit.log(rec)
	if s.opa != nil {
		s.opa.Log(s.opaEvent(rec))
	}
	return resp, nil
}

func (s *Service) check(ctx context.Context, req *authv3.CheckRequest, rec *record) *authv3.CheckResponse {
	r, err := envoy.FromCheckRequest(req)
	if err != nil {
		return s.deny(rec, &denial{status: http.StatusBadRequest, reason: "bad_check_request", message: "malformed authorization request"})
	}
	rec.HTTPMethod, rec.Path = r.Method, r.Path
	srv, d := s.routeOf(r)
	if d != nil {
		return s.deny(rec, d)
	}
	rec.Server = srv.id
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.Path == srv.metadataPath {
		// RFC 9728 metadata is the one thing reachable without a token.
		rec.Kind, rec.Reason = string(identity.KindAnonymous), "metadata"
		return s.allow(rec, srv, r, nil, nil, nil, "", nil)
	}
	if d := s.screen(r, srv); d != nil {
		return s.deny(rec, d)
	}

	p, d := s.authenticate(ctx, r, srv)
	if d != nil {
		d.id = requestID(r) // a 401 the client can correlate with its request
		return s.deny(rec, d)
	}
	notePrincipal(rec, p)
	var derived *preparedEntry
	if p != nil {
		derived = s.prepared.get(p)
	}

	sid, legacy, d := s.sessionID(r)
	if d != nil {
		return s.deny(rec, d)
	}
	call, d := s.parseCall(r, srv, legacy)
	if d != nil {
		return s.deny(rec, d)
	}
	noteCall(rec, call)
	if d := s.bindSession(ctx, rec, srv, sid, derived, call); d != nil {
		return s.deny(rec, d)
	}

	dec, d := s.decide(ctx, r, srv, p, derived, call, sid, rec)
	if d != nil {
		if d.required != nil && p != nil {
			// Step-up (MCP 2025-11-25): name every scope the operation
			// needs, those the token has included, so a client that
			// replaces its scope set with the challenge's keeps them.
			d.challenge = insufficientScope(srv, stepUpScopes(srv.ownScopes(p.Scopes), d.required))
		}
		return s.deny(rec, withCallID(d, call))
	}
	rec.Reason = orDefault(dec.Reason, "allowed")
	return s.forward(ctx, rec, srv, r, p, derived, call, sid, &dec)
}

// routeOf finds the MCP server a request is for, after refusing paths an
// upstream could read differently.
func (s *Service) routeOf(r *envoy.Request) (*mcpServer, *denial) {
	if !normalizedPath(r.Path) {
		return nil, &denial{status: http.StatusBadRequest, reason: "non_normalized_path",
			message: "the request path must be normalized (no dot or empty segments, backslashes or encoded separators)"}
	}
	srv := s.catalog.route(r.ContextExtensions, r.Scheme, r.Host, r.Path)
	if srv == nil {
		return nil, &denial{status: http.StatusNotFound, reason: "unknown_server", message: "no MCP server is configured for this route"}
	}
	return srv, nil
}

// screen refuses, before any token work, what no caller may send: a
// truncated or oversized body, a token in the query, a foreign Origin.
func (s *Service) screen(r *envoy.Request, srv *mcpServer) *denial {
	switch {
	case r.Partial:
		return &denial{status: http.StatusRequestEntityTooLarge, reason: "partial_body", message: "request body was truncated before authorization; refusing to guess"}
	case len(r.Body) > s.cfg.MCP.MaxBodyBytes:
		return &denial{status: http.StatusRequestEntityTooLarge, reason: "body_too_large", message: "request body too large"}
	case tokenInQuery(r.Query):
		return &denial{status: http.StatusBadRequest, reason: "token_in_query", message: "access tokens in the query string are not accepted; use the Authorization header"}
	}
	if origin := r.Headers["origin"]; origin != "" && !srv.origins[strings.ToLower(strings.TrimSuffix(origin, "/"))] {
		return &denial{status: http.StatusForbidden, reason: "invalid_origin", message: "origin not allowed"}
	}
	return nil
}

// parseCall parses the MCP request strictly, with the server's protocol
// versions and parameter headers.
func (s *Service) parseCall(r *envoy.Request, srv *mcpServer, legacy bool) (*mcp.Call, *denial) {
	in := mcp.Input{
		HTTPMethod:      r.Method,
		ContentType:     r.Headers["content-type"],
		ProtocolVersion: r.Headers["mcp-protocol-version"],
		Legacy:          legacy && r.Method == http.MethodPost,
		Body:            r.Body,
		ParamHeaders:    paramHeaders(r.Headers),
		Versions:        srv.versions,
		AllowNewer:      srv.cfg.AllowNewerProtocolVersions,
	}
	if len(srv.cfg.ParamHeaders) > 0 {
		in.ParamArguments = srv.paramArguments
	}
	if v, ok := r.Headers["mcp-method"]; ok {
		in.HeaderMethod = &v
	}
	if v, ok := r.Headers["mcp-name"]; ok {
		in.HeaderName = &v
	}
	call, err := mcp.Parse(in)
	if err != nil {
		var me *mcp.Error
		if errors.As(err, &me) {
			return nil, &denial{status: me.Status, reason: me.Reason, message: me.Msg, code: me.Code, id: me.ID, data: me.Data}
		}
		return nil, &denial{status: http.StatusBadRequest, reason: "malformed", message: "malformed MCP request"}
	}
	return call, nil
}

// noteCall records what the call asks for in the decision log.
func noteCall(rec *record, call *mcp.Call) {
	rec.Protocol, rec.BatchSize = call.Version, len(call.Messages)
	if len(call.Messages) > 0 {
		m := call.Messages[0]
		rec.Method, rec.Tool, rec.URI = m.Method, m.Name, m.URI
		if m.Method == "prompts/get" {
			rec.Tool, rec.Prompt = "", m.Name
		}
	}
}

// bindSession binds the MCP session (if any) to its first caller and
// refuses it to anyone else.
func (s *Service) bindSession(ctx context.Context, rec *record, srv *mcpServer, sid string, derived *preparedEntry, call *mcp.Call) *denial {
	if sid == "" {
		return nil
	}
	rec.Session = shortHash(sid)
	owner := sessionOwner{key: "anonymous", anonymous: true}
	if derived != nil {
		owner = sessionOwner{key: derived.owner}
	}
	if err := s.sessions.Bind(ctx, srv.id+"\x00"+sid, owner, s.now()); err != nil {
		d := sessionDenial(err)
		if len(call.Messages) == 1 {
			d.id = call.Messages[0].ID // keep the client's request correlatable
		}
		return d
	}
	return nil
}

// forward builds what the upstream receives for an allowed call: the
// credential the policy chose, the signed attribution, the ext_proc
// hand-off and the headers.
func (s *Service) forward(ctx context.Context, rec *record, srv *mcpServer, r *envoy.Request, p *identity.Principal, derived *preparedEntry, call *mcp.Call, sid string, dec *policy.Decision) *authv3.CheckResponse {
	prov, ok := srv.provider(dec.Credential)
	if !ok {
		return s.deny(rec, withCallID(&denial{status: http.StatusForbidden, reason: "credential_mode_not_allowed",
			message: fmt.Sprintf("policy chose credential mode %q, which server %s does not offer", dec.Credential, srv.id)}, call))
	}
	cred, err := prov.Credential(ctx, credentialRequest(srv, p, derived, r, dec.Scopes))
	if err != nil {
		rec.CredentialError = err.Error()
		if d := s.connectionDenial(ctx, err, srv, dec.Credential, p, sid); d != nil {
			return s.deny(rec, withCallID(d, call))
		}
		return s.deny(rec, withCallID(credentialDenial(err), call))
	}
	rec.Credential = &credLog{Mode: string(cred.Mode), Subject: cred.Subject, Actor: cred.Actor, Audience: cred.Audience, Scopes: cred.Scopes}
	var attr string
	if s.cfg.Headers.Sign && p != nil {
		if attr, err = s.attribution(ctx, derived, srv, p); err != nil {
			s.log.ErrorContext(ctx, "attribution signing failed", "decision_id", rec.ID, "err", err)
			return s.deny(rec, withCallID(&denial{status: http.StatusServiceUnavailable, reason: "attribution_unavailable",
				message: "the signed attribution could not be produced right now; try again"}, call))
		}
	}
	var connKey string
	if k, ok := srv.connectionKey(dec.Credential, p); ok {
		connKey = connKeyString(k)
	}
	md := s.handoff(rec, srv, derived, call, sid, string(cred.Mode), connKey)
	return s.allow(rec, srv, r, p, dec, cred, attr, md)
}

// authenticate turns the bearer token or mTLS peer into a Principal. A nil
// principal with a nil denial means anonymous and allowed to reach policy.
func (s *Service) authenticate(ctx context.Context, r *envoy.Request, srv *mcpServer) (*identity.Principal, *denial) {
	authz, hasAuthz := r.Headers["authorization"]
	if hasAuthz {
		scheme, tok, ok := strings.Cut(authz, " ")
		if !ok || !strings.EqualFold(scheme, "bearer") || tok == "" || strings.ContainsAny(tok, " ,") {
			return nil, &denial{status: http.StatusUnauthorized, reason: "invalid_token", challenge: srv.challengeBad,
				message: "Authorization must be a single Bearer token", code: codeUnauthorized}
		}
		p, err := s.verifier.VerifyToken(ctx, tok)
		if err != nil {
			if errors.Is(err, identity.ErrUnavailable) {
				return nil, &denial{status: http.StatusServiceUnavailable, reason: "idp_unavailable", message: "identity provider unavailable; try again", code: codeUnavailable}
			}
			reason := "invalid_token"
			var te *identity.TokenError
			if errors.As(err, &te) {
				reason = "invalid_token_" + te.Reason
			}
			return nil, &denial{status: http.StatusUnauthorized, reason: reason, challenge: srv.challengeBad,
				message: "the access token is invalid or expired", code: codeUnauthorized}
		}
		if srv.issuers != nil && !srv.issuers[p.Issuer] {
			return nil, &denial{status: http.StatusUnauthorized, reason: "invalid_token_issuer_not_accepted", challenge: srv.challengeBad,
				message: "tokens from this issuer are not accepted by this MCP server", code: codeUnauthorized}
		}
		if !identity.AudienceContains(p, srv.resource) {
			return nil, &denial{status: http.StatusUnauthorized, reason: "invalid_token_audience", challenge: srv.challengeBad,
				message: "the access token was not issued for this MCP server (audience)", code: codeUnauthorized}
		}
		return p, nil
	}
	if sp := r.SourcePrincipal; sp != "" && strings.HasPrefix(sp, "spiffe://") {
		p, err := s.verifier.FromSPIFFE(sp)
		if err != nil {
			return nil, &denial{status: http.StatusUnauthorized, reason: "invalid_spiffe_id", challenge: srv.challenge,
				message: "the client certificate identity is not trusted", code: codeUnauthorized}
		}
		return p, nil
	}
	if !srv.cfg.AllowAnonymous {
		return nil, &denial{status: http.StatusUnauthorized, reason: "no_credentials", challenge: srv.challenge,
			message: "authentication required", code: codeUnauthorized}
	}
	return nil, nil
}

// decide evaluates the policy for every message of the call (a batch is
// allowed only if every element is) and merges the decisions.
func (s *Service) decide(ctx context.Context, r *envoy.Request, srv *mcpServer, p *identity.Principal, derived *preparedEntry, call *mcp.Call, sid string, rec *record) (policy.Decision, *denial) {
	in := policy.Input{
		Version:        policy.InputVersion,
		Request:        s.policyRequest(r, rec),
		PreparedServer: srv.prepared,
		MCP: policy.MCP{
			ProtocolVersion: call.Version,
			Transport:       transportName(call.Transport),
			SessionID:       sid,
			Batch:           call.Batch,
			BatchSize:       len(call.Messages),
		},
	}
	if derived != nil {
		in.PreparedPrincipal = derived.pp
	}
	in.Connection = s.connectionInput(ctx, srv, p)
	if in.PreparedPrincipal == nil {
		in.Principal = policyPrincipal(p)
	} else {
		in.Principal.Kind = string(p.Kind) // read by evaluate
	}
	if len(call.Messages) == 0 {
		in.MCP.Kind = "stream"
		if r.Method == http.MethodDelete {
			in.MCP.Kind = "end_session"
		}
		dec, d := s.evaluate(ctx, srv, &in, nil, rec)
		s.noteInput(rec, &in)
		return dec, d
	}
	var merged policy.Decision
	for i := range call.Messages {
		m := &call.Messages[i]
		setMessageInput(&in.MCP, m)
		dec, d := s.evaluate(ctx, srv, &in, m, rec)
		if d != nil {
			s.noteInput(rec, &in)
			if call.Batch && len(call.Messages) > 1 {
				rec.Method, rec.Tool, rec.URI, rec.Prompt = m.Method, in.MCP.Tool, m.URI, in.MCP.Prompt
				d.message = fmt.Sprintf("batch element %d denied: %s", i, d.message)
			}
			return policy.Decision{}, d
		}
		if i == 0 {
			merged = dec
			continue
		}
		if i == 1 { // decisions may be shared (memoized): merge into copies
			merged.Scopes = slices.Clone(merged.Scopes)
			merged.RequestHeadersToRemove = slices.Clone(merged.RequestHeadersToRemove)
			merged.Headers = maps.Clone(merged.Headers)
		}
		if !mergeDecision(&merged, &dec) {
			s.noteInput(rec, &in)
			return policy.Decision{}, &denial{status: http.StatusForbidden, reason: "conflicting_credential_choice",
				message: "batch elements require different credential modes"}
		}
	}
	s.noteInput(rec, &in)
	return merged, nil
}

// setMessageInput fills the per-message part of the policy input.
func setMessageInput(in *policy.MCP, m *mcp.Message) {
	in.Kind, in.Method, in.URI, in.Arguments = m.Kind.String(), m.Method, m.URI, m.Arguments
	in.Tool, in.Prompt = "", ""
	switch m.Method {
	case "tools/call":
		in.Tool = m.Name
	case "prompts/get":
		in.Prompt = m.Name
	default:
		if m.Name != "" {
			in.Prompt = m.Name // completion/complete ref/prompt
		}
	}
}

// mergeDecision merges a batch element's decision into merged (a copy the
// caller owns): scopes, headers and removals unite; it reports false when
// the two chose different credential modes.
func mergeDecision(merged, dec *policy.Decision) bool {
	merged.Scopes = unionStrings(merged.Scopes, dec.Scopes)
	merged.RequestHeadersToRemove = unionStrings(merged.RequestHeadersToRemove, dec.RequestHeadersToRemove)
	for k, v := range dec.Headers {
		if merged.Headers == nil {
			merged.Headers = map[string]string{}
		}
		merged.Headers[k] = v
	}
	if merged.Credential == "" {
		merged.Credential = dec.Credential
	} else if dec.Credential != "" && dec.Credential != merged.Credential {
		return false
	}
	return true
}

func (s *Service) evaluate(ctx context.Context, srv *mcpServer, in *policy.Input, m *mcp.Message, rec *record) (policy.Decision, *denial) {
	dec, err := s.policy.Evaluate(ctx, in)
	rec.Revision = dec.Revision
	if err != nil {
		if ctx.Err() != nil {
			return dec, &denial{status: http.StatusServiceUnavailable, reason: "canceled", message: "authorization canceled"}
		}
		s.log.ErrorContext(ctx, "policy evaluation failed", "decision_id", rec.ID, "server", srv.id, "err", err)
		return dec, &denial{status: http.StatusForbidden, reason: "policy_error", message: "authorization policy failed; access denied"}
	}
	if dec.Allow {
		return dec, nil
	}
	d := &denial{reason: orDefault(dec.Reason, "denied"), headers: dec.Headers, body: dec.Body}
	if m != nil {
		d.id = m.ID
	}
	switch {
	case dec.Message != "":
		d.message = "access denied: " + dec.Message
	case dec.Reason != "":
		d.message = "access denied: " + dec.Reason
	default:
		d.message = "access denied"
	}
	switch {
	case dec.HTTPStatus == http.StatusUnauthorized || in.Principal.Kind == string(identity.KindAnonymous) && dec.HTTPStatus == 0:
		d.status, d.challenge = http.StatusUnauthorized, srv.challenge
	case len(dec.RequiredScopes) > 0:
		d.status, d.challenge = http.StatusForbidden, insufficientScope(srv, dec.RequiredScopes)
		d.required = dec.RequiredScopes
		d.data = map[string]any{"required_scopes": dec.RequiredScopes}
		if dec.Reason == "" {
			d.reason = "insufficient_scope"
		}
		d.message = "insufficient scope: this call needs " + strings.Join(dec.RequiredScopes, " ")
	case dec.HTTPStatus >= 400 && dec.HTTPStatus <= 599:
		d.status = dec.HTTPStatus
	default:
		d.status = http.StatusForbidden
	}
	d.code = rpcCodeForStatus(d.status)
	return dec, d
}

// allow builds the OK response: credential and attribution headers set with
// OVERWRITE_IF_EXISTS_OR_ADD; the client's Authorization and every
// client-sent identity header removed.
func (s *Service) allow(rec *record, srv *mcpServer, r *envoy.Request, p *identity.Principal, dec *policy.Decision, cred *outbound.Credential, attr string, md *extproc.Metadata) *authv3.CheckResponse {
	rec.Allow, rec.Status = true, http.StatusOK
	hs := make(headerSet, 0, 12)
	if cred != nil {
		for _, h := range cred.Headers {
			hs = hs.add(h.Name, h.Value)
		}
	}
	if attr != "" {
		hs = hs.add(s.hdr.attribution, attr)
	}
	hs = hs.add(s.hdr.decisionID, rec.ID)
	hs = hs.add(s.hdr.server, srv.id)
	hs = hs.add(s.hdr.kind, orDefault(rec.Kind, string(identity.KindAnonymous)))
	if p != nil {
		hs = s.identityHeaders(hs, p)
	}
	if dec != nil {
		for k, v := range dec.Headers {
			lk := strings.ToLower(k)
			if s.strip[lk] || strings.HasPrefix(lk, s.prefix) || hs.isSet(lk) {
				continue // policy may not forge identity or replace the credential
			}
			hs = hs.add(lk, sanitizeHeaderValue(v))
		}
	}
	remove := s.removals(hs, r, dec)
	var resp *authv3.CheckResponse
	if md != nil {
		resp = envoy.AllowWithMetadata(hs, remove, md.StructWith(&s.mdValues))
	} else {
		resp = envoy.Allow(hs, remove)
	}
	if dec != nil && len(dec.ResponseHeadersToAdd) > 0 {
		ok := resp.GetOkResponse()
		for k, v := range dec.ResponseHeadersToAdd {
			ok.ResponseHeadersToAdd = append(ok.ResponseHeadersToAdd, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: strings.ToLower(k), Value: sanitizeHeaderValue(v)},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
	}
	return resp
}

// headerSet collects the headers an allowed request gets; the first value
// set for a (lower-cased) name wins.
type headerSet []envoy.Header

func (hs headerSet) isSet(name string) bool {
	for i := range hs {
		if hs[i].Name == name {
			return true
		}
	}
	return false
}

func (hs headerSet) add(name, value string) headerSet {
	if name = lowerASCII(name); !hs.isSet(name) {
		hs = append(hs, envoy.Header{Name: name, Value: value})
	}
	return hs
}

// identityHeaders adds the attribution headers naming p.
func (s *Service) identityHeaders(hs headerSet, p *identity.Principal) headerSet {
	hs = hs.add(s.hdr.subject, identityHeaderValue(upstreamSubject(p)))
	if p.UserKey != "" {
		hs = hs.add(s.hdr.user, identityHeaderValue(p.UserKey))
	}
	if p.Org != "" {
		hs = hs.add(s.hdr.org, identityHeaderValue(p.Org))
	}
	if p.ClientID != "" {
		hs = hs.add(s.hdr.clientID, identityHeaderValue(p.ClientID))
	}
	if p.Actor != nil {
		hs = hs.add(s.hdr.actor, identityHeaderValue(actorSubject(p.Actor)))
	}
	if len(p.Chain) > 0 {
		// Each element is encoded on its own (',' and '%' escaped), so a
		// claim value containing the separator cannot forge an entry.
		var b strings.Builder
		for i := range p.Chain {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(identityHeaderValue(actorSubject(&p.Chain[i])))
		}
		hs = hs.add(s.hdr.actorChain, b.String())
	}
	return hs
}

// removals lists the headers removed from an allowed request: every header
// mcpauthz could set, and every header that must never reach an upstream,
// unless set — whether or not the client's copy was in the CheckRequest (an
// ext_authz allowed_headers list can hide it from mcpauthz while Envoy
// still forwards it) — plus any under the attribution prefix and those the
// policy names.
func (s *Service) removals(hs headerSet, r *envoy.Request, dec *policy.Decision) []string {
	remove := make([]string, 0, len(s.alwaysRemove)+4)
	for _, name := range s.alwaysRemove {
		if !hs.isSet(name) {
			remove = append(remove, name)
		}
	}
	for name := range r.Headers {
		if name == "" || name[0] == ':' || hs.isSet(name) || s.strip[name] {
			continue
		}
		if strings.HasPrefix(name, s.prefix) {
			remove = append(remove, name)
		}
	}
	if dec != nil {
		for _, h := range dec.RequestHeadersToRemove {
			if lh := strings.ToLower(h); lh != "" && lh[0] != ':' && !hs.isSet(lh) && !slices.Contains(remove, lh) {
				remove = append(remove, lh)
			}
		}
	}
	return remove
}

func (s *Service) deny(rec *record, d *denial) *authv3.CheckResponse {
	if d.code == 0 {
		d.code = rpcCodeForStatus(d.status)
	}
	rec.Allow, rec.Status, rec.Reason, rec.Message = false, d.status, d.reason, d.message
	if rec.Kind == "" {
		rec.Kind = string(identity.KindAnonymous)
	}
	return d.response()
}

// requestID is the id of a single JSON-RPC request in r's body, nil when
// the body does not parse strictly (only on the denial path).
func requestID(r *envoy.Request) json.RawMessage {
	if r.Method != http.MethodPost || len(r.Body) == 0 {
		return nil
	}
	return mcp.ProbeID(r.Headers["content-type"], r.Body)
}

// withCallID echoes the request id of a single-message call in a denial
// made after the body parsed, so the client can correlate it.
func withCallID(d *denial, call *mcp.Call) *denial {
	if d.id == nil && call != nil && len(call.Messages) == 1 {
		d.id = call.Messages[0].ID
	}
	return d
}

// stepUpScopes is the scope of an insufficient_scope challenge: the scopes
// the token already has, then those the operation still needs.
func stepUpScopes(granted, required []string) []string {
	out := make([]string, 0, len(granted)+len(required))
	out = append(out, granted...)
	return unionStrings(out, required)
}

func credentialDenial(err error) *denial {
	var oe *outbound.Error
	if errors.As(err, &oe) && oe.Transient {
		return &denial{status: http.StatusServiceUnavailable, reason: "credential_unavailable_" + oe.Reason,
			message: "the upstream credential could not be obtained right now; try again"}
	}
	reason := "credential_refused"
	if oe != nil && oe.Reason != "" {
		reason = "credential_refused_" + oe.Reason
	}
	if oe != nil && oe.Reason == outbound.ReasonNoUser {
		return &denial{status: http.StatusForbidden, reason: reason, data: map[string]any{"reason": oe.Reason},
			message: "this MCP server uses each user's own connected account, and an agent acting on its own has no user whose account it could use"}
	}
	return &denial{status: http.StatusForbidden, reason: reason, message: "the upstream credential could not be obtained"}
}

func credentialRequest(srv *mcpServer, p *identity.Principal, e *preparedEntry, r *envoy.Request, scopes []string) *outbound.Request {
	req := &outbound.Request{ServerID: srv.id, Audience: srv.cfg.Resource, Scopes: scopes, Kind: string(identity.KindAnonymous)}
	if p != nil {
		req.Subject, req.UserKey, req.Org, req.Kind, req.ClientID = p.Subject, p.UserKey, p.Org, string(p.Kind), p.ClientID
		req.QualifiedSubject, req.SubjectExpiresAt = upstreamSubject(p), p.ExpiresAt
		if p.Actor != nil {
			req.Actor, req.ActorClientID, req.ActorIssuer = p.Actor.Subject, p.Actor.ClientID, p.Actor.Issuer
			req.QualifiedActor = actorSubject(p.Actor)
		}
		if e != nil {
			req.Chain = e.chain
		}
		if p.Method == "jwt" || p.Method == "introspection" {
			_, req.SubjectToken, _ = strings.Cut(r.Headers["authorization"], " ")
			req.SubjectTokenHash = p.TokenHash
		}
		req.Headers = r.Headers
	}
	return req
}

func notePrincipal(rec *record, p *identity.Principal) {
	if p == nil {
		rec.Kind = string(identity.KindAnonymous)
		return
	}
	rec.Kind, rec.Subject, rec.UserKey, rec.Org, rec.ClientID, rec.AuthMethod = string(p.Kind), p.Subject, p.UserKey, p.Org, p.ClientID, p.Method
	if p.Actor != nil {
		rec.Actor = p.Actor.Subject
	}
}

// principalKey identifies who owns a session: the same user through the
// same agent (or none). The stable user key, never a session id.
func principalKey(p *identity.Principal) string {
	k := string(p.Kind) + "|" + p.UserKey
	if p.Actor != nil {
		k += "|" + p.Actor.Issuer + "|" + p.Actor.Subject
	}
	if p.Kind == identity.KindAgent {
		k += "|" + p.ClientID + "|" + p.SPIFFEID
	}
	return k
}

func policyPrincipal(p *identity.Principal) policy.Principal {
	if p == nil {
		return policy.Principal{Kind: string(identity.KindAnonymous), Method: "none"}
	}
	pp := policy.Principal{
		Authenticated: true, Kind: string(p.Kind), Subject: p.Subject, UserID: p.UserID, UserKey: p.UserKey,
		Org: p.Org, Issuer: p.Issuer, ClientID: p.ClientID, Scopes: p.Scopes, SPIFFEID: p.SPIFFEID,
		Method: p.Method, Claims: p.Claims,
	}
	if p.Actor != nil {
		pp.Actor = &policy.Actor{Subject: p.Actor.Subject, ClientID: p.Actor.ClientID, Issuer: p.Actor.Issuer}
	}
	if len(p.Chain) > 0 {
		pp.Chain = make([]policy.Actor, len(p.Chain))
		for i, a := range p.Chain {
			pp.Chain[i] = policy.Actor{Subject: a.Subject, ClientID: a.ClientID, Issuer: a.Issuer}
		}
	}
	return pp
}

// policyRequest is the request as policy sees it. Its headers exclude
// credentials, cookies, session ids and client-sent identity headers; they
// are filtered lazily, only for policies that read them.
func (s *Service) policyRequest(r *envoy.Request, rec *record) policy.Request {
	return policy.Request{
		ID: rec.ID, Time: rec.Time, Method: r.Method, Scheme: r.Scheme, Host: r.Host, Path: r.Path,
		RawHeaders: r.Headers, KeepHeader: s.keepHeaderFn, SourcePrincipal: r.SourcePrincipal, Origin: r.Headers["origin"],
	}
}

func (s *Service) keepHeader(k string) bool {
	return !s.strip[k] && !strings.HasPrefix(k, s.prefix) && k != "cookie" && k != "mcp-session-id" && (k == "" || k[0] != ':')
}

func transportName(t mcp.Transport) string {
	if t == mcp.TransportLegacySSE {
		return "sse"
	}
	return "streamable_http"
}

// tokenInQuery reports an access_token query parameter (RFC 6750 §2.3),
// whatever its case or percent-encoding.
func tokenInQuery(q string) bool {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, _, _ := strings.Cut(kv, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if strings.EqualFold(k, "access_token") {
			return true
		}
	}
	return false
}

func unionStrings(a, b []string) []string {
	for _, v := range b {
		found := false
		for _, w := range a {
			if v == w {
				found = true
				break
			}
		}
		if !found {
			a = append(a, v)
		}
	}
	return a
}

// attributionHeaders are the names of the headers carrying the verified
// identity upstream, built once from the configured prefix.
type attributionHeaders struct {
	decisionID, server, kind, subject, user, org, clientID, actor, actorChain, attribution string
}

// names lists every attribution header name.
func (h attributionHeaders) names() []string {
	return []string{h.decisionID, h.server, h.kind, h.subject, h.user, h.org, h.clientID, h.actor, h.actorChain, h.attribution}
}

// alwaysRemoved is the sorted set of header names removed from every
// allowed request unless mcpauthz sets them.
func alwaysRemoved(h attributionHeaders, strip map[string]bool) []string {
	out := h.names()
	for name := range strip {
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// upstreamSubject is the subject mcpauthz names to upstreams: qualified by
// the issuer's user namespace unless the issuer's subjects are globally
// unique.
func upstreamSubject(p *identity.Principal) string {
	if p.QualifiedSubject != "" {
		return p.QualifiedSubject
	}
	return p.Subject
}

func actorSubject(a *identity.Actor) string {
	if a.QualifiedSubject != "" {
		return a.QualifiedSubject
	}
	return a.Subject
}

func newAttributionHeaders(prefix string) attributionHeaders {
	return attributionHeaders{
		decisionID: prefix + "decision-id", server: prefix + "server", kind: prefix + "kind",
		subject: prefix + "subject", user: prefix + "user", org: prefix + "org",
		clientID: prefix + "client-id", actor: prefix + "actor", actorChain: prefix + "actor-chain",
		attribution: prefix + "attribution",
	}
}

// lowerASCII lower-cases header names without allocating when they already
// are (the common case).
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:6])
}

// newDecisionID returns 128 random bits in hex.
func newDecisionID() string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i], b[8+i] = byte(a>>(8*i)), byte(c>>(8*i))
	}
	return hex.EncodeToString(b[:])
}
