// Package oauthtest is a real OAuth 2.1 / OpenID Connect provider served
// over HTTP, for tests and the demo: a login form and a consent page
// (html/template, no JavaScript), the authorization code grant with PKCE
// S256 only (RFC 7636), exact redirect URI matching, single-use short-lived
// codes, refresh tokens (optionally rotating, with reuse detection that
// revokes the whole grant), token revocation (RFC 7009), authorization
// server metadata (RFC 8414) and OIDC discovery, a JWKS, ID tokens with
// nonce, the RFC 9207 iss authorization response parameter, RFC 8707
// resource indicators, optional RFC 7591 dynamic client registration and a
// userinfo endpoint. Errors are RFC 6749 JSON bodies.
//
// Tests steer it like a real provider going wrong: SetFault (invalid_grant,
// 5xx, slow answers, no refresh token), SetAccessTTL, RevokeUser
// (provider-side revocation) and per-endpoint request counters. A fake
// upstream checks the token it receives with VerifyAccessToken.
//
// LoginClient and Authorize drive the login and consent pages with
// net/http, for tests that run without a browser; the pages use stable ids
// (username, password, login, approve, deny) for tests that use one.
//
// The development IdP (credentials/identity/devidp) embeds a Provider for
// its sign-in endpoints through the Issuer, Sign and JWTAccessTokens options.
//
// Nothing here is for production traffic: users and passwords live in
// memory. A Provider is safe for concurrent use.
package oauthtest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/internal/httpjson"
	"github.com/mcpauthz/mcpauthz/internal/randid"
)

// Options configures a Provider. Every field is optional.
type Options struct {
	// Clients are the pre-registered clients: client_id -> client_secret.
	// A secret "" makes a public client (token_endpoint_auth_method none).
	// Every client must use PKCE S256.
	Clients map[string]string
	// Users may sign in at the login form: username -> password. Default
	// {"alice": "alice", "bob": "bob"}.
	Users map[string]string
	// AccessTTL and RefreshTTL default to 1h and 30 days. SetAccessTTL
	// changes the access token lifetime at run time.
	AccessTTL, RefreshTTL time.Duration
	// RotateRefresh issues a new refresh token on each refresh; the old one
	// becomes invalid and presenting it again revokes the whole grant.
	RotateRefresh bool
	// OmitRefreshOnRefresh leaves refresh_token out of refresh responses
	// (the client keeps using the one it has), as Google does.
	OmitRefreshOnRefresh bool
	// RequireConsent shows a consent page after login; nil means true.
	// Dynamically registered clients always get the consent page.
	RequireConsent *bool
	// IssuerPathPrefix puts the issuer and every endpoint under a path,
	// e.g. "/tenant1" (issuer http://127.0.0.1:PORT/tenant1).
	IssuerPathPrefix string

	// RedirectURIs registers each client's redirect URIs, matched exactly
	// (scheme, host, port, path and query).
	RedirectURIs map[string][]string
	// AnyLoopbackRedirect lets the clients in Clients use any http redirect
	// URI on a loopback host (127.0.0.1, [::1], localhost), any port and path.
	AnyLoopbackRedirect bool
	// Registration serves RFC 7591 dynamic client registration at /register.
	Registration bool
	// ClientIDMetadataDocuments accepts a client_id that is an https URL of
	// a Client ID Metadata Document (draft-ietf-oauth-client-id-metadata-
	// document, as MCP clients use it): fetched on first use, cached 5
	// minutes, at most 16 KiB, no redirects. Such clients are public and
	// always get the consent page.
	ClientIDMetadataDocuments bool
	// MetadataHTTPClient fetches those documents. The default refuses
	// connections to loopback, private, link-local and other non-public
	// addresses (SSRF) and times out after 5s; set one to reach a test server.
	MetadataHTTPClient *http.Client
	// Scopes, when set, are scopes_supported and the only scopes granted
	// (openid and offline_access are always accepted); otherwise any
	// well-formed scope is granted as requested.
	Scopes []string
	// UserClaims adds claims per username to ID tokens, userinfo and JWT
	// access tokens (e.g. org_id, roles, email).
	UserClaims map[string]map[string]any
	// CodeTTL bounds authorization codes; default 1m.
	CodeTTL time.Duration
	// SlowDelay is how long FaultSlow holds token and revocation answers;
	// default 3s (or until the caller gives up).
	SlowDelay time.Duration
	// Now defaults to time.Now.
	Now func() time.Time

	// Issuer, when set, returns the issuer URL (an embedding server's URL)
	// instead of the address Start listens on.
	Issuer func() string
	// Sign, when set, signs ID tokens and JWT access tokens (with the header
	// typ given) with the embedder's keys; the Provider then publishes no
	// keys of its own. Claims carry iss, sub, aud, iat and exp already.
	Sign func(claims map[string]any, typ string) (string, error)
	// JWTAccessTokens issues RFC 9068 JWT access tokens (typ at+jwt, aud =
	// the RFC 8707 resource, else the client_id; scope, client_id and the
	// user's claims) instead of opaque ones. Both kinds are recorded, so
	// VerifyAccessToken and revocation work for either.
	JWTAccessTokens bool
}

// Fault makes the token and revocation endpoints misbehave like a real
// provider having a bad day.
type Fault int

// The faults SetFault accepts.
const (
	FaultNone           Fault = iota
	FaultInvalidGrant         // every grant at /token answers 400 invalid_grant
	Fault5xx                  // /token and /revoke answer 503 temporarily_unavailable
	FaultSlow                 // /token and /revoke answer after Options.SlowDelay
	FaultNoRefreshToken       // token responses carry no refresh_token (and refreshes do not rotate)
)

func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultInvalidGrant:
		return "invalid_grant"
	case Fault5xx:
		return "5xx"
	case FaultSlow:
		return "slow"
	case FaultNoRefreshToken:
		return "no_refresh_token"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Limits on what the provider keeps and reads.
const (
	maxForm            = 64 << 10 // form and JSON bodies
	maxClients         = 1000     // dynamically registered clients
	pendingTTL         = 10 * time.Minute
	sweepEvery         = 128 // issuances between sweeps of expired records
	defaultCodeTTL     = time.Minute
	defaultAccessTTL   = time.Hour
	defaultRefreshTTL  = 30 * 24 * time.Hour
	defaultSlowDelay   = 3 * time.Second
	idTokenTyp         = "JWT"
	accessTokenJWTType = "at+jwt"
)

// client is a registered client.
type client struct {
	id, secret   string
	public       bool
	redirects    []string
	anyLoopback  bool // any loopback redirect (Options.AnyLoopbackRedirect)
	loopbackPort bool // registered loopback URIs match on any port (RFC 8252 section 7.3)
	registered   bool // registered itself (RFC 7591 or a metadata document): always asks for consent
	name         string
}

// grant is one authorization: every code, access and refresh token issued
// from it shares it, so revoking the grant revokes them all.
type grant struct {
	user, clientID string
	scopes         []string
	resource       string
	authTime       time.Time
	revoked        bool
}

type codeRec struct {
	g                      *grant
	redirectURI, challenge string
	nonce                  string
	exp                    time.Time
	used                   bool
}

type accessRec struct {
	g      *grant
	scopes []string
	exp    time.Time
}

type refreshRec struct {
	g       *grant
	exp     time.Time
	rotated bool
}

// Provider is a fake but real OAuth 2.1 / OIDC provider. Create it with New.
type Provider struct {
	o         Options
	key       *rsa.PrivateKey // nil when Options.Sign is set
	kid       string
	fault     atomic.Int32
	accessTTL atomic.Int64

	lis          Listener
	mu           sync.Mutex
	base         string // http://host:port of the listener
	counts       map[string]int
	clients      map[string]*client
	pending      map[string]*pending // authorization requests awaiting login or consent
	codes        map[string]*codeRec // by token hash
	access       map[string]*accessRec
	refresh      map[string]*refreshRec
	issued       int
	cimd         map[string]cimdEntry // fetched Client ID Metadata Documents
	metadataHTTP *http.Client
	nRegistered  int
}

// New creates a Provider. It panics only if crypto/rand fails.
func New(o Options) *Provider {
	if o.Users == nil {
		o.Users = map[string]string{"alice": "alice", "bob": "bob"}
	}
	if o.AccessTTL <= 0 {
		o.AccessTTL = defaultAccessTTL
	}
	if o.RefreshTTL <= 0 {
		o.RefreshTTL = defaultRefreshTTL
	}
	if o.CodeTTL <= 0 {
		o.CodeTTL = defaultCodeTTL
	}
	if o.SlowDelay <= 0 {
		o.SlowDelay = defaultSlowDelay
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.IssuerPathPrefix = "/" + strings.Trim(o.IssuerPathPrefix, "/")
	if o.IssuerPathPrefix == "/" {
		o.IssuerPathPrefix = ""
	}
	o.Users = maps.Clone(o.Users)
	p := &Provider{
		o:       o,
		counts:  map[string]int{},
		clients: map[string]*client{},
		pending: map[string]*pending{},
		codes:   map[string]*codeRec{},
		access:  map[string]*accessRec{},
		refresh: map[string]*refreshRec{},
		cimd:    map[string]cimdEntry{},
	}
	if o.ClientIDMetadataDocuments {
		p.metadataHTTP = metadataHTTPClient(o.MetadataHTTPClient)
	}
	p.accessTTL.Store(int64(o.AccessTTL))
	for id, secret := range o.Clients {
		p.clients[id] = &client{
			id: id, secret: secret, public: secret == "",
			redirects:   slices.Clone(o.RedirectURIs[id]),
			anyLoopback: o.AnyLoopbackRedirect,
		}
	}
	if o.Sign == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(fmt.Errorf("oauthtest: generate rsa key: %w", err))
		}
		p.key, p.kid = k, "oauthtest-"+randid.Hex(6)
	}
	return p
}

// Start serves Handler on 127.0.0.1 at a free port and returns the issuer
// URL. After Close, Start serves again at the same address with the same
// clients, grants and tokens.
func (p *Provider) Start() (string, error) {
	base, err := p.lis.Start(p.Handler())
	if err != nil {
		return "", fmt.Errorf("oauthtest: %w", err)
	}
	p.mu.Lock()
	p.base = base
	p.mu.Unlock()
	return p.URL(), nil
}

// Close stops the server started by Start.
func (p *Provider) Close() { p.lis.Close() }

// Listener serves a handler on 127.0.0.1. After Close, Start serves again
// at the address of the first Start, so URLs handed out stay valid across a
// simulated outage. The zero value is ready; it is safe for concurrent use.
type Listener struct {
	mu   sync.Mutex
	srv  *http.Server
	addr string
}

// Start serves h and returns the base URL "http://127.0.0.1:PORT".
func (l *Listener) Start(h http.Handler) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		return "", errors.New("already started")
	}
	addr := l.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	l.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	l.addr = ln.Addr().String()
	go func(srv *http.Server) { _ = srv.Serve(ln) }(l.srv)
	return "http://" + l.addr, nil
}

// Close stops serving: open connections are closed and new ones refused
// until Start is called again.
func (l *Listener) Close() {
	l.mu.Lock()
	srv := l.srv
	l.srv = nil
	l.mu.Unlock()
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

// URL returns the issuer URL ("" before Start unless Options.Issuer is set).
func (p *Provider) URL() string {
	if p.o.Issuer != nil {
		return strings.TrimSuffix(p.o.Issuer(), "/")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.base == "" {
		return ""
	}
	return p.base + p.o.IssuerPathPrefix
}

// SetFault switches a fault on (FaultNone switches it off).
func (p *Provider) SetFault(f Fault) { p.fault.Store(int32(f)) }

func (p *Provider) currentFault() Fault { return Fault(p.fault.Load()) }

// SetAccessTTL sets the lifetime of access tokens issued from now on.
func (p *Provider) SetAccessTTL(d time.Duration) {
	if d > 0 {
		p.accessTTL.Store(int64(d))
	}
}

// RevokeUser revokes, at the provider, every grant of username: its access
// tokens stop verifying and its refresh tokens answer invalid_grant, as when
// a user removes an application from their account. A later sign-in works.
func (p *Provider) RevokeUser(username string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.refresh {
		if r.g.user == username {
			r.g.revoked = true
		}
	}
	for _, a := range p.access {
		if a.g.user == username {
			a.g.revoked = true
		}
	}
	for _, c := range p.codes {
		if c.g.user == username {
			c.g.revoked = true
		}
	}
}

// Requests returns how many requests reached path, an endpoint path
// without IssuerPathPrefix ("/token", "/authorize", "/revoke", "/jwks",
// "/register", "/userinfo", "/.well-known/openid-configuration", ...).
func (p *Provider) Requests(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.o.IssuerPathPrefix != "" {
		path = strings.TrimPrefix(path, p.o.IssuerPathPrefix)
	}
	return p.counts[path]
}

// TokenInfo describes an access token the provider issued.
type TokenInfo struct {
	Username, ClientID string
	Scopes             []string
	Resource           string // RFC 8707 resource it was issued for ("" if none)
	ExpiresAt          time.Time
}

// AccessTokenInfo returns what the provider knows of an access token that
// is still valid (issued here, unexpired, not revoked).
func (p *Provider) AccessTokenInfo(tok string) (TokenInfo, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.access[hashToken(tok)]
	if !ok || a.g.revoked || !p.o.Now().Before(a.exp) {
		return TokenInfo{}, false
	}
	return TokenInfo{
		Username: a.g.user, ClientID: a.g.clientID, Scopes: slices.Clone(a.scopes),
		Resource: a.g.resource, ExpiresAt: a.exp,
	}, true
}

// VerifyAccessToken reports the user and scopes of a valid access token,
// for a fake upstream server checking the token it receives.
func (p *Provider) VerifyAccessToken(tok string) (username string, scopes []string, ok bool) {
	ti, ok := p.AccessTokenInfo(tok)
	return ti.Username, ti.Scopes, ok
}

// Handler serves every endpoint under IssuerPathPrefix, plus the RFC 8414
// and OIDC path-insertion metadata paths at the root.
func (p *Provider) Handler() http.Handler {
	pfx := p.o.IssuerPathPrefix
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pfx+"/.well-known/oauth-authorization-server", p.metadataHandler)
	mux.HandleFunc("GET "+pfx+"/.well-known/openid-configuration", p.metadataHandler)
	if pfx != "" {
		mux.HandleFunc("GET /.well-known/oauth-authorization-server"+pfx, p.metadataHandler)
		mux.HandleFunc("GET /.well-known/openid-configuration"+pfx, p.metadataHandler)
	}
	mux.HandleFunc("GET "+pfx+"/jwks", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, p.JWKS()) })
	mux.HandleFunc("GET "+pfx+"/authorize", p.authorize)
	mux.HandleFunc("POST "+pfx+"/authorize", p.authorizeForm)
	mux.HandleFunc("POST "+pfx+"/token", p.token)
	mux.HandleFunc("POST "+pfx+"/revoke", p.revoke)
	mux.HandleFunc("GET "+pfx+"/userinfo", p.userinfo)
	mux.HandleFunc("POST "+pfx+"/userinfo", p.userinfo)
	if p.o.Registration {
		mux.HandleFunc("POST "+pfx+"/register", p.register)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		if pfx != "" && strings.HasPrefix(path, pfx+"/") {
			path = strings.TrimPrefix(path, pfx)
		} else if pfx != "" && strings.HasPrefix(path, "/.well-known/") {
			path = strings.TrimSuffix(path, pfx)
		}
		p.mu.Lock()
		p.counts[path]++
		p.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
}

// Metadata returns the RFC 8414 / OIDC discovery document.
func (p *Provider) Metadata() map[string]any {
	u := p.URL()
	scopes := []string{"openid", "profile", "email", "offline_access"}
	if p.o.Scopes != nil {
		scopes = slices.Clone(p.o.Scopes)
	}
	auth := []string{"client_secret_basic", "client_secret_post", "none"}
	md := map[string]any{
		"issuer":                                         u,
		"authorization_endpoint":                         u + "/authorize",
		"token_endpoint":                                 u + "/token",
		"revocation_endpoint":                            u + "/revoke",
		"userinfo_endpoint":                              u + "/userinfo",
		"jwks_uri":                                       u + "/jwks",
		"scopes_supported":                               scopes,
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"code_challenge_methods_supported":               []string{"S256"},
		"token_endpoint_auth_methods_supported":          auth,
		"revocation_endpoint_auth_methods_supported":     auth,
		"authorization_response_iss_parameter_supported": true,
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"claims_supported":                               []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "preferred_username"},
	}
	if p.o.Registration {
		md["registration_endpoint"] = u + "/register"
	}
	if p.o.ClientIDMetadataDocuments {
		md["client_id_metadata_document_supported"] = true
	}
	return md
}

func (p *Provider) metadataHandler(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, p.Metadata())
}

// JWKS returns the provider's public signing key (none when Options.Sign
// signs with an embedder's keys).
func (p *Provider) JWKS() jose.JSONWebKeySet {
	if p.key == nil {
		return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	}
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: p.key.Public(), KeyID: p.kid, Algorithm: string(jose.RS256), Use: "sig",
	}}}
}

// sign signs claims as a JWT with header typ.
func (p *Provider) sign(claims map[string]any, typ string) (string, error) {
	if p.o.Sign != nil {
		return p.o.Sign(claims, typ)
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.RS256,
		Key:       jose.JSONWebKey{Key: p.key, KeyID: p.kid, Algorithm: string(jose.RS256)},
	}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", fmt.Errorf("oauthtest: signer: %w", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("oauthtest: encode claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("oauthtest: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// userClaims returns a copy of the configured claims of username.
func (p *Provider) userClaims(username string) map[string]any {
	return maps.Clone(p.o.UserClaims[username])
}

// oauthError is an RFC 6749 section 5.2 error body.
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, oauthError{Error: code, Description: desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Pragma", "no-cache") // the HTTP/1.0 cache rule RFC 6749 section 5.1 also asks for
	httpjson.Write(w, status, v)
}

// randToken returns a 256-bit random token with prefix.
func randToken(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// hashToken is the key under which a token is kept: the provider never
// stores a bearer secret as such.
func hashToken(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(s[:])
}

// sweepLocked drops expired records every sweepEvery issuances. p.mu held.
func (p *Provider) sweepLocked() {
	p.issued++
	if p.issued%sweepEvery != 0 {
		return
	}
	now := p.o.Now()
	sweep(p.pending, now, func(v *pending) time.Time { return v.exp })
	sweep(p.codes, now, func(v *codeRec) time.Time { return v.exp })
	sweep(p.access, now, func(v *accessRec) time.Time { return v.exp })
	sweep(p.refresh, now, func(v *refreshRec) time.Time { return v.exp })
}

// sweep deletes the entries of m that expired by now.
func sweep[V any](m map[string]V, now time.Time, exp func(V) time.Time) {
	maps.DeleteFunc(m, func(_ string, v V) bool { return !now.Before(exp(v)) })
}
