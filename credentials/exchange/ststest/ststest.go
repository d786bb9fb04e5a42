// Package ststest is a fake security token service (STS) served over real
// HTTP, for tests of token exchange clients. It is strict: its token
// endpoint validates every RFC 8693 parameter, the Entra on-behalf-of
// grant, and client authentication (client_secret_basic,
// client_secret_post, private_key_jwt with jti replay detection, none), and
// verifies subject and actor tokens against trusted issuers' JWKS (for
// example a devidp). It issues ES256 JWTs and publishes discovery and JWKS
// documents, so issued tokens can be verified.
//
// Faults (forced errors, delays, redirects, oversized or malformed bodies,
// missing members, wrong aud or act in the issued token) are injected with
// [Server.SetFault].
//
// It is for tests only and must never protect production traffic. A Server
// is safe for concurrent use.
package ststest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/internal/httpjson"
	"github.com/mcpauthz/mcpauthz/internal/randid"
)

// Grant types and token types, as in RFC 8693 and RFC 7523.
const (
	GrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	GrantJWTBearer     = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	ClientAssertionJWT = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	TokenTypeAccess    = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT       = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken   = "urn:ietf:params:oauth:token-type:id_token"
)

// Client authentication methods.
const (
	AuthBasic         = "client_secret_basic"
	AuthPost          = "client_secret_post"
	AuthPrivateKeyJWT = "private_key_jwt"
	AuthNone          = "none"
)

// Redacted replaces secrets in LastRequest.
const Redacted = "[redacted]"

var tokenTypes = map[string]bool{
	TokenTypeAccess: true, TokenTypeJWT: true, TokenTypeIDToken: true,
	"urn:ietf:params:oauth:token-type:refresh_token": true,
	"urn:ietf:params:oauth:token-type:saml1":         true,
	"urn:ietf:params:oauth:token-type:saml2":         true,
}

// jwtTokenTypes are the token types this STS can verify.
var jwtTokenTypes = map[string]bool{TokenTypeAccess: true, TokenTypeJWT: true, TokenTypeIDToken: true}

// Trust is an issuer whose JWTs are accepted as subject, actor and OBO
// assertion tokens.
type Trust struct {
	Issuer string
	// JWKSURL defaults to the jwks_uri of the issuer's OpenID discovery
	// document (fetched once, by Start).
	JWKSURL string
}

// Client is a registered client of the STS.
type Client struct {
	ID     string
	Auth   string // AuthBasic, AuthPost, AuthPrivateKeyJWT or AuthNone
	Secret string // for AuthBasic and AuthPost
	// PublicKey verifies private_key_jwt client assertions.
	PublicKey crypto.PublicKey
}

// Options configures a Server. All fields are optional.
type Options struct {
	// Trusted issuers of subject/actor/assertion tokens.
	Trusted []Trust
	// AcceptUnverified accepts any well-formed, unexpired JWT with a sub
	// as subject or actor token, without checking signature or issuer.
	AcceptUnverified bool
	// SubjectAudience, when set, must be in the subject token's aud.
	SubjectAudience string
	// Clients that may call the token endpoint. Empty: client
	// authentication is not required (a client_id, if sent, is recorded).
	Clients []Client
	// Audiences allow-lists RFC 8693 audience and resource values and OBO
	// scope resources; others are refused with invalid_target. Empty: any.
	Audiences []string
	// Scopes allow-lists requested scopes (invalid_scope). Empty: any.
	Scopes []string
	// TokenTTL is the lifetime of issued tokens; default 5m.
	TokenTTL time.Duration
	// Now defaults to time.Now.
	Now func() time.Time
}

// Fault alters the answers of the token endpoint, for failure tests. The
// zero Fault is normal operation.
type Fault struct {
	// Status and Error force an error answer before any validation:
	// Status (default 400 when Error is set) with the OAuth error JSON
	// {error, error_description}; a Status without Error answers a plain
	// text body.
	Status      int
	Error       string
	Description string
	// Delay holds the answer back (cut short when the client goes away).
	Delay time.Duration
	// RedirectTo answers 302 with this Location.
	RedirectTo string
	// Oversized answers 200 with a body larger than 1 MiB.
	Oversized bool
	// MalformedJSON answers 200 with a body that is not JSON.
	MalformedJSON bool
	// The following apply to successful exchanges only.
	OmitIssuedTokenType bool
	OmitExpiresIn       bool
	OmitAccessToken     bool
	Opaque              bool   // issue an opaque token instead of a JWT
	IssueAudience       string // aud of the issued token instead of the requested one
	IssueActor          string // act.sub of the issued token instead of the actor's
	TokenType           string // token_type instead of "Bearer"
	ExtraScope          string // appended to the response's scope
}

// Server is a running fake STS.
type Server struct {
	opts     Options
	srv      *httptest.Server
	key      *ecdsa.PrivateKey
	kid      string
	verifier map[string]*oidc.IDTokenVerifier
	clients  map[string]Client

	requests  atomic.Int64
	exchanges atomic.Int64

	mu         sync.Mutex
	fault      Fault
	last       url.Values
	lastAuth   string
	seenJTI    map[string]time.Time
	lastIssued map[string]any
}

// New starts a Server and closes it when the test ends.
func New(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatalf("ststest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts a Server on a loopback address.
func Start(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 5 * time.Minute
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ststest: generate key: %w", err)
	}
	s := &Server{
		opts:     opts,
		key:      key,
		kid:      "sts-" + randid.Hex(4),
		verifier: map[string]*oidc.IDTokenVerifier{},
		clients:  map[string]Client{},
		seenJTI:  map[string]time.Time{},
	}
	for _, c := range opts.Clients {
		switch c.Auth {
		case AuthBasic, AuthPost:
			if c.Secret == "" {
				return nil, fmt.Errorf("ststest: client %q: secret required with %s", c.ID, c.Auth)
			}
		case AuthPrivateKeyJWT:
			if c.PublicKey == nil {
				return nil, fmt.Errorf("ststest: client %q: public key required with %s", c.ID, c.Auth)
			}
		case AuthNone:
		default:
			return nil, fmt.Errorf("ststest: client %q: unknown auth %q", c.ID, c.Auth)
		}
		s.clients[c.ID] = c
	}
	cfg := &oidc.Config{
		SkipClientIDCheck:    true,
		SupportedSigningAlgs: []string{"RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "ES512", "EdDSA"},
		Now:                  opts.Now,
	}
	ctx := context.Background()
	for _, tr := range opts.Trusted {
		if tr.JWKSURL != "" {
			s.verifier[tr.Issuer] = oidc.NewVerifier(tr.Issuer, oidc.NewRemoteKeySet(ctx, tr.JWKSURL), cfg)
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		p, err := oidc.NewProvider(dctx, tr.Issuer)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("ststest: discover %s: %w", tr.Issuer, err)
		}
		s.verifier[tr.Issuer] = p.Verifier(cfg)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.discovery)
	mux.HandleFunc("GET /jwks", s.jwks)
	mux.HandleFunc("/token", s.token)
	s.srv = httptest.NewServer(mux)
	return s, nil
}

// URL is the STS's issuer URL.
func (s *Server) URL() string { return s.srv.URL }

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.srv.URL + "/token" }

// JWKSURL is where the STS publishes its signing key.
func (s *Server) JWKSURL() string { return s.srv.URL + "/jwks" }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// SetFault replaces the current fault; the zero Fault restores normal
// operation.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
}

// Requests counts requests to the token endpoint.
func (s *Server) Requests() int { return int(s.requests.Load()) }

// Exchanges counts tokens issued.
func (s *Server) Exchanges() int { return int(s.exchanges.Load()) }

// LastRequest returns a copy of the last token request's form with
// subject_token, actor_token, assertion, client_secret and client_assertion
// replaced by Redacted (nil before the first request).
func (s *Server) LastRequest() url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneValues(s.last)
}

// LastClientAuth is the client authentication method the last request
// used ("" before the first request or when none could be determined).
func (s *Server) LastClientAuth() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastAuth
}

// LastIssued returns the claims of the last issued JWT (nil before).
func (s *Server) LastIssued() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lastIssued == nil {
		return nil
	}
	b, _ := json.Marshal(s.lastIssued)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

func (s *Server) discovery(w http.ResponseWriter, _ *http.Request) {
	httpjson.Write(w, http.StatusOK, map[string]any{
		"issuer":                                s.URL(),
		"token_endpoint":                        s.TokenURL(),
		"jwks_uri":                              s.JWKSURL(),
		"grant_types_supported":                 []string{GrantTokenExchange, GrantJWTBearer},
		"token_endpoint_auth_methods_supported": []string{AuthBasic, AuthPost, AuthPrivateKeyJWT, AuthNone},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA"},
		"response_types_supported":                         []string{"token"},
		"subject_types_supported":                          []string{"public"},
		"id_token_signing_alg_values_supported":            []string{"ES256"},
	})
}

func (s *Server) jwks(w http.ResponseWriter, _ *http.Request) {
	httpjson.Write(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: s.key.Public(), KeyID: s.kid, Algorithm: string(jose.ES256), Use: "sig",
	}}})
}

// oauthError is an RFC 6749 5.2 error answer.
type oauthError struct {
	status int
	code   string
	desc   string
}

func (e *oauthError) Error() string { return e.code + ": " + e.desc }

func fail(status int, code, desc string) *oauthError {
	return &oauthError{status: status, code: code, desc: desc}
}

func invalidRequest(desc string) *oauthError {
	return fail(http.StatusBadRequest, "invalid_request", desc)
}

// single are parameters that must not repeat (RFC 6749 3.2).
var single = []string{"grant_type", "subject_token", "subject_token_type", "actor_token", "actor_token_type",
	"requested_token_type", "scope", "assertion", "requested_token_use", "client_id", "client_secret",
	"client_assertion", "client_assertion_type"}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httpjson.Write(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "POST required"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	req := s.readRequest(r)
	if req.fault.Delay > 0 {
		t := time.NewTimer(req.fault.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if writeFault(w, r, req.fault) {
		return
	}
	resp, err := s.grant(req)
	if err != nil {
		var oe *oauthError
		if !errors.As(err, &oe) {
			oe = fail(http.StatusInternalServerError, "server_error", "internal error")
		}
		if oe.code == "invalid_client" && s.lastAuthIs(AuthBasic) {
			w.Header().Set("WWW-Authenticate", `Basic realm="ststest"`)
		}
		httpjson.Write(w, oe.status, map[string]string{"error": oe.code, "error_description": oe.desc})
		return
	}
	s.exchanges.Add(1)
	httpjson.Write(w, http.StatusOK, resp)
}

// tokenRequest is a token request as read, before any check.
type tokenRequest struct {
	r        *http.Request
	form     url.Values // nil when the body did not parse
	ctype    string     // media type, without parameters
	parseErr error
	fault    Fault // the fault configured when the request arrived
}

// readRequest parses r's form and records it (redacted) and the client
// authentication method as the last request.
func (s *Server) readRequest(r *http.Request) tokenRequest {
	req := tokenRequest{r: r, ctype: r.Header.Get("Content-Type")}
	if i := strings.IndexByte(req.ctype, ';'); i >= 0 {
		req.ctype = req.ctype[:i]
	}
	req.parseErr = r.ParseForm()
	if req.parseErr == nil {
		req.form = r.PostForm
	}
	s.mu.Lock()
	s.last = redact(req.form)
	s.lastAuth = authMethod(r, req.form)
	req.fault = s.fault
	s.mu.Unlock()
	return req
}

// writeFault writes the response f forces, if any, and reports whether it
// did.
func writeFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	switch {
	case f.RedirectTo != "":
		http.Redirect(w, r, f.RedirectTo, http.StatusFound)
	case f.Error != "":
		st := f.Status
		if st == 0 {
			st = http.StatusBadRequest
		}
		httpjson.Write(w, st, map[string]string{"error": f.Error, "error_description": f.Description})
	case f.Status != 0:
		http.Error(w, http.StatusText(f.Status), f.Status)
	case f.Oversized:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		pad := strings.Repeat("x", 1<<20)
		_, _ = fmt.Fprintf(w, `{"access_token":"a","token_type":"Bearer","pad":"%s"}`, pad)
	case f.MalformedJSON:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`{"access_token": "abc", "token_type": `))
	default:
		return false
	}
	return true
}

// grant checks req, authenticates the client and runs the grant it asks
// for.
func (s *Server) grant(req tokenRequest) (map[string]any, error) {
	form := req.form
	if req.parseErr != nil {
		return nil, invalidRequest("malformed form body")
	}
	if req.ctype != "application/x-www-form-urlencoded" {
		return nil, invalidRequest("content type must be application/x-www-form-urlencoded")
	}
	if len(req.r.URL.Query()) > 0 {
		return nil, invalidRequest("parameters must be sent in the body")
	}
	for _, k := range single {
		if len(form[k]) > 1 {
			return nil, invalidRequest("parameter " + k + " repeated")
		}
	}
	clientID, err := s.authenticate(req.r, form)
	if err != nil {
		return nil, err
	}
	switch form.Get("grant_type") {
	case GrantTokenExchange:
		return s.exchange(form, clientID, req.fault)
	case GrantJWTBearer:
		return s.onBehalfOf(form, clientID, req.fault)
	case "":
		return nil, invalidRequest("grant_type missing")
	default:
		return nil, fail(http.StatusBadRequest, "unsupported_grant_type", "grant type not supported")
	}
}

func (s *Server) lastAuthIs(m string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastAuth == m
}

// authMethod names the client authentication method r uses.
func authMethod(r *http.Request, form url.Values) string {
	switch {
	case r.Header.Get("Authorization") != "":
		return AuthBasic
	case form.Has("client_assertion") || form.Has("client_assertion_type"):
		return AuthPrivateKeyJWT
	case form.Has("client_secret"):
		return AuthPost
	case form.Has("client_id"):
		return AuthNone
	}
	return ""
}

// authenticate checks client authentication and returns the client id.
func (s *Server) authenticate(r *http.Request, form url.Values) (string, error) {
	bad := func(desc string) error { return fail(http.StatusUnauthorized, "invalid_client", desc) }
	methods := 0
	if r.Header.Get("Authorization") != "" {
		methods++
	}
	if form.Has("client_secret") {
		methods++
	}
	if form.Has("client_assertion") || form.Has("client_assertion_type") {
		methods++
	}
	if methods > 1 {
		return "", invalidRequest("more than one client authentication method")
	}
	var id, secret string
	method := authMethod(r, form)
	switch method {
	case AuthBasic:
		u, p, ok := r.BasicAuth()
		if !ok {
			return "", bad("malformed basic credentials")
		}
		var err1, err2 error
		id, err1 = url.QueryUnescape(u)
		secret, err2 = url.QueryUnescape(p)
		if err1 != nil || err2 != nil {
			return "", bad("malformed basic credentials")
		}
		if form.Has("client_id") && form.Get("client_id") != id {
			return "", invalidRequest("client_id does not match the authenticated client")
		}
	case AuthPost:
		id, secret = form.Get("client_id"), form.Get("client_secret")
	case AuthPrivateKeyJWT:
		id = form.Get("client_id")
	case AuthNone:
		id = form.Get("client_id")
	}
	if len(s.clients) == 0 {
		return id, nil
	}
	if id == "" {
		return "", bad("client authentication required")
	}
	c, ok := s.clients[id]
	if !ok {
		return "", bad("unknown client")
	}
	if c.Auth != method {
		return "", bad("client must authenticate with " + c.Auth)
	}
	switch method {
	case AuthBasic, AuthPost:
		if subtle.ConstantTimeCompare([]byte(secret), []byte(c.Secret)) != 1 {
			return "", bad("client authentication failed")
		}
	case AuthPrivateKeyJWT:
		if err := s.checkAssertion(form, c); err != nil {
			return "", err
		}
	}
	return id, nil
}

// checkAssertion verifies an RFC 7523 client assertion.
func (s *Server) checkAssertion(form url.Values, c Client) error {
	bad := func(desc string) error { return fail(http.StatusUnauthorized, "invalid_client", desc) }
	if form.Get("client_assertion_type") != ClientAssertionJWT {
		return bad("client_assertion_type must be " + ClientAssertionJWT)
	}
	jws, err := jose.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA})
	if err != nil {
		return bad("malformed client assertion")
	}
	payload, err := jws.Verify(c.PublicKey)
	if err != nil {
		return bad("client assertion signature did not verify")
	}
	var cl struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Jti string          `json:"jti"`
		Exp *float64        `json:"exp"`
		Nbf *float64        `json:"nbf"`
	}
	if json.Unmarshal(payload, &cl) != nil {
		return bad("malformed client assertion claims")
	}
	now := s.opts.Now()
	switch {
	case cl.Iss != c.ID || cl.Sub != c.ID:
		return bad("client assertion iss and sub must be the client_id")
	case !audHas(cl.Aud, s.TokenURL()) && !audHas(cl.Aud, s.URL()):
		return bad("client assertion aud must be the token endpoint")
	case cl.Exp == nil || time.Unix(int64(*cl.Exp), 0).Before(now):
		return bad("client assertion expired or without exp")
	case time.Unix(int64(*cl.Exp), 0).After(now.Add(10 * time.Minute)):
		return bad("client assertion lifetime too long")
	case cl.Nbf != nil && time.Unix(int64(*cl.Nbf), 0).After(now.Add(time.Minute)):
		return bad("client assertion not yet valid")
	case cl.Jti == "":
		return bad("client assertion without jti")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for j, exp := range s.seenJTI {
		if exp.Before(now) {
			delete(s.seenJTI, j)
		}
	}
	key := c.ID + "|" + cl.Jti
	if _, seen := s.seenJTI[key]; seen {
		return bad("client assertion replayed (jti already used)")
	}
	s.seenJTI[key] = time.Unix(int64(*cl.Exp), 0)
	return nil
}

func audHas(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return slices.Contains(many, want)
	}
	return false
}

// verifyToken verifies a JWT from a trusted issuer (or decodes it with
// AcceptUnverified) and returns its claims.
func (s *Server) verifyToken(raw string) (map[string]any, error) {
	claims, ok := decode(raw)
	if !ok {
		return nil, errors.New("not a JWT")
	}
	if s.opts.AcceptUnverified {
		if exp, ok := claims["exp"].(float64); ok && time.Unix(int64(exp), 0).Before(s.opts.Now()) {
			return nil, errors.New("expired")
		}
	} else {
		iss, _ := claims["iss"].(string)
		v, ok := s.verifier[iss]
		if !ok {
			return nil, errors.New("issuer not trusted")
		}
		if _, err := v.Verify(context.Background(), raw); err != nil {
			return nil, errors.New("did not verify")
		}
	}
	if sub, _ := claims["sub"].(string); sub == "" {
		return nil, errors.New("no sub")
	}
	return claims, nil
}

// exchange handles the RFC 8693 grant.
func (s *Server) exchange(form url.Values, clientID string, f Fault) (map[string]any, error) {
	rt, err := checkExchangeForm(form)
	if err != nil {
		return nil, err
	}
	targets, err := s.targets(form)
	if err != nil {
		return nil, err
	}
	scopes, err := s.scopes(form)
	if err != nil {
		return nil, err
	}
	claims, err := s.exchangeClaims(form.Get("subject_token"), form.Get("actor_token"))
	if err != nil {
		return nil, err
	}
	switch len(targets) {
	case 0:
		if clientID != "" {
			claims["aud"] = clientID
		} else {
			claims["aud"] = s.URL()
		}
	case 1:
		claims["aud"] = targets[0]
	default:
		claims["aud"] = targets
	}
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
	if clientID != "" {
		claims["client_id"] = clientID
	}
	resp, err := s.issue(claims, scopes, f)
	if err != nil {
		return nil, err
	}
	if !f.OmitIssuedTokenType {
		resp["issued_token_type"] = rt
	}
	return resp, nil
}

// checkExchangeForm checks the token and token type parameters of an
// RFC 8693 request and returns the requested token type.
func checkExchangeForm(form url.Values) (string, error) {
	st := form.Get("subject_token_type")
	switch {
	case form.Get("subject_token") == "":
		return "", invalidRequest("subject_token missing")
	case st == "":
		return "", invalidRequest("subject_token_type missing")
	case !tokenTypes[st]:
		return "", invalidRequest("subject_token_type is not a token type identifier")
	case !jwtTokenTypes[st]:
		return "", invalidRequest("subject_token_type not supported")
	}
	at := form.Get("actor_token_type")
	switch {
	case form.Has("actor_token") != form.Has("actor_token_type"):
		return "", invalidRequest("actor_token_type must be present if and only if actor_token is")
	case form.Has("actor_token") && form.Get("actor_token") == "":
		return "", invalidRequest("actor_token empty")
	case at != "" && !tokenTypes[at]:
		return "", invalidRequest("actor_token_type is not a token type identifier")
	case at != "" && !jwtTokenTypes[at]:
		return "", invalidRequest("actor_token_type not supported")
	}
	switch rt := form.Get("requested_token_type"); {
	case rt == "":
		return TokenTypeAccess, nil
	case rt == TokenTypeAccess, rt == TokenTypeJWT:
		return rt, nil
	case tokenTypes[rt]:
		return "", invalidRequest("requested_token_type not supported")
	default:
		return "", invalidRequest("requested_token_type is not a token type identifier")
	}
}

// targets returns the audiences and resources of an RFC 8693 request,
// without repeats, checked against the audiences this server serves.
func (s *Server) targets(form url.Values) ([]string, error) {
	var targets []string
	for _, a := range form["audience"] {
		if a == "" {
			return nil, invalidRequest("empty audience")
		}
		targets = append(targets, a)
	}
	for _, res := range form["resource"] {
		u, err := url.Parse(res)
		if err != nil || !u.IsAbs() || strings.Contains(res, "#") {
			return nil, fail(http.StatusBadRequest, "invalid_target", "resource must be an absolute URI without fragment")
		}
		if !slices.Contains(targets, res) {
			targets = append(targets, res)
		}
	}
	for _, t := range targets {
		if len(s.opts.Audiences) > 0 && !slices.Contains(s.opts.Audiences, t) {
			return nil, fail(http.StatusBadRequest, "invalid_target", "audience or resource not served by this STS")
		}
	}
	return targets, nil
}

// exchangeClaims verifies the subject and actor tokens and returns the
// sub and act claims of the token to issue.
func (s *Server) exchangeClaims(subj, actor string) (map[string]any, error) {
	sc, err := s.verifyToken(subj)
	if err != nil {
		return nil, invalidRequest("subject_token invalid: " + err.Error())
	}
	if s.opts.SubjectAudience != "" && !audAny(sc["aud"], s.opts.SubjectAudience) {
		return nil, invalidRequest("subject_token not intended for this STS")
	}
	claims := map[string]any{"sub": sc["sub"]}
	prev, hasPrev := sc["act"].(map[string]any)
	if actor == "" {
		if hasPrev {
			claims["act"] = prev
		}
		return claims, nil
	}
	ac, err := s.verifyToken(actor)
	if err != nil {
		return nil, invalidRequest("actor_token invalid: " + err.Error())
	}
	if ma, ok := sc["may_act"].(map[string]any); ok {
		if sub, _ := ma["sub"].(string); sub != "" && sub != ac["sub"] {
			return nil, invalidRequest("actor is not authorized by the subject token's may_act")
		}
	}
	// RFC 8693 4.1: act names the current actor; earlier actors nest.
	act := map[string]any{"sub": ac["sub"]}
	if hasPrev {
		act["act"] = prev
	}
	claims["act"] = act
	return claims, nil
}

// onBehalfOf handles the Entra on-behalf-of grant.
func (s *Server) onBehalfOf(form url.Values, clientID string, f Fault) (map[string]any, error) {
	if form.Get("requested_token_use") != "on_behalf_of" {
		return nil, invalidRequest("requested_token_use must be on_behalf_of")
	}
	as := form.Get("assertion")
	if as == "" {
		return nil, invalidRequest("assertion missing")
	}
	if form.Has("subject_token") || form.Has("actor_token") {
		return nil, invalidRequest("token exchange parameters are not used with jwt-bearer")
	}
	scopes, err := s.scopes(form)
	if err != nil {
		return nil, err
	}
	if len(scopes) == 0 {
		return nil, invalidRequest("scope missing")
	}
	resource := ""
	var scp []string
	for _, sc := range scopes {
		i := strings.LastIndexByte(sc, '/')
		if i <= 0 {
			return nil, fail(http.StatusBadRequest, "invalid_scope", "scope must be resource-qualified (api://APP/name)")
		}
		if resource != "" && sc[:i] != resource {
			return nil, fail(http.StatusBadRequest, "invalid_scope", "scopes for more than one resource")
		}
		resource = sc[:i]
		if n := sc[i+1:]; n != ".default" {
			scp = append(scp, n)
		}
	}
	if len(s.opts.Audiences) > 0 && !slices.Contains(s.opts.Audiences, resource) {
		return nil, fail(http.StatusBadRequest, "invalid_target", "resource not served by this STS")
	}
	sc, err := s.verifyToken(as)
	if err != nil {
		return nil, fail(http.StatusBadRequest, "invalid_grant", "assertion invalid: "+err.Error())
	}
	if s.opts.SubjectAudience != "" && !audAny(sc["aud"], s.opts.SubjectAudience) {
		return nil, fail(http.StatusBadRequest, "invalid_grant", "assertion not intended for this client")
	}
	claims := map[string]any{"sub": sc["sub"], "aud": resource, "azp": clientID}
	if oid, ok := sc["oid"]; ok {
		claims["oid"] = oid
	}
	if len(scp) > 0 {
		claims["scp"] = strings.Join(scp, " ")
	}
	return s.issue(claims, scopes, f)
}

// scopes parses and allow-lists the scope parameter.
func (s *Server) scopes(form url.Values) ([]string, error) {
	if form.Has("scope") && strings.TrimSpace(form.Get("scope")) == "" {
		return nil, fail(http.StatusBadRequest, "invalid_scope", "empty scope")
	}
	scopes := strings.Fields(form.Get("scope"))
	for _, sc := range scopes {
		if len(s.opts.Scopes) > 0 && !slices.Contains(s.opts.Scopes, sc) {
			return nil, fail(http.StatusBadRequest, "invalid_scope", "scope not allowed")
		}
	}
	return scopes, nil
}

// issue signs claims (with iss, iat, exp, jti and the fault's overrides)
// and builds the success response.
func (s *Server) issue(claims map[string]any, scopes []string, f Fault) (map[string]any, error) {
	now := s.opts.Now()
	claims["iss"] = s.URL()
	claims["iat"] = now.Unix()
	claims["nbf"] = now.Unix()
	claims["exp"] = now.Add(s.opts.TokenTTL).Unix()
	claims["jti"] = randid.Hex(16)
	if f.IssueAudience != "" {
		claims["aud"] = f.IssueAudience
	}
	if f.IssueActor != "" {
		act, _ := claims["act"].(map[string]any)
		nact := map[string]any{"sub": f.IssueActor}
		if prev, ok := act["act"]; ok {
			nact["act"] = prev
		}
		claims["act"] = nact
	}
	var tok string
	if f.Opaque {
		tok = "opaque-" + randid.Hex(24)
	} else {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}},
			(&jose.SignerOptions{}).WithType("at+jwt"))
		if err != nil {
			return nil, err
		}
		payload, err := json.Marshal(claims)
		if err != nil {
			return nil, err
		}
		jws, err := signer.Sign(payload)
		if err != nil {
			return nil, err
		}
		if tok, err = jws.CompactSerialize(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.lastIssued = claims
		s.mu.Unlock()
	}
	resp := map[string]any{"token_type": "Bearer"}
	if !f.OmitAccessToken {
		resp["access_token"] = tok
	}
	if f.TokenType != "" {
		resp["token_type"] = f.TokenType
	}
	if !f.OmitExpiresIn {
		resp["expires_in"] = int64(s.opts.TokenTTL / time.Second)
	}
	scope := strings.Join(scopes, " ")
	if f.ExtraScope != "" {
		scope = strings.TrimSpace(scope + " " + f.ExtraScope)
	}
	if scope != "" {
		resp["scope"] = scope
	}
	return resp, nil
}

// Mint signs arbitrary claims with the STS key (iss, iat, exp and jti are
// filled in when absent), e.g. to build a subject token that carries an
// act chain when the STS itself is trusted.
func (s *Server) Mint(claims map[string]any) (string, error) {
	now := s.opts.Now()
	c := map[string]any{"iss": s.URL(), "iat": now.Unix(), "exp": now.Add(s.opts.TokenTTL).Unix(), "jti": randid.Hex(16)}
	for k, v := range claims {
		c[k] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: s.key, KeyID: s.kid}}, nil)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func audAny(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, v := range a {
			if v == want {
				return true
			}
		}
	}
	return false
}

func decode(raw string) (map[string]any, bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

var secretParams = []string{"subject_token", "actor_token", "assertion", "client_secret", "client_assertion"}

func redact(form url.Values) url.Values {
	if form == nil {
		return url.Values{}
	}
	out := cloneValues(form)
	for _, k := range secretParams {
		for i := range out[k] {
			out[k][i] = Redacted
		}
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}
