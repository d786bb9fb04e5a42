// Package connect serves mcpauthz's connect pages: the browser side of
// per-user connections (INDIVIDUAL mode) and the organization's
// admin-authorized service-account connections.
//
// A person follows an "authorize at <link>" link from their MCP client, signs
// in to mcpauthz with OIDC (authorization code + PKCE + nonce against the
// configured login issuer), and is sent to the upstream provider's
// authorization page only when the signed-in user is the user the link was
// minted for (the phishing defence the MCP elicitation spec asks for). The
// provider redirects back to /connect/callback, where the flow completes for
// the signed-in user. /connect/ ("Tool authorizations") lists every MCP
// server the person may use with their status and the actions that fit it,
// and /connect/history downloads their authorization history.
//
// People the configuration names as administrators (connect.admins: ID
// token subjects, or values of a role or group claim) also get
// /connect/admin/: per server, counts by status and everyone's status in
// their organization, revocation of anyone's connection, the
// organization's service-account connection (authorize, revoke), and the
// recent authorization events. Administrators act only within the
// organization they signed in to; every action is audited with their user
// key as the actor.
//
// Pages are server-rendered with html/template and one embedded stylesheet;
// no JavaScript. Every response carries strict security headers (CSP without
// inline script or style, frame-ancestors 'none', no-store). The session is an
// AES-256-GCM sealed cookie (__Host- prefixed, Secure, HttpOnly,
// SameSite=Lax); every POST carries a CSRF token bound to the session and is
// refused unless its Origin (or Referer) is mcpauthz's own.
//
// A Handler is safe for concurrent use.
package connect

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

// Defaults and bounds of Config fields.
const (
	DefaultSessionTTL = 8 * time.Hour
	MinSessionTTL     = 5 * time.Minute
	MaxSessionTTL     = 7 * 24 * time.Hour
	// LoginTTL bounds how long a browser may take at the login issuer.
	LoginTTL = 10 * time.Minute
	// CookieKeySize is the size of Config.CookieKey once base64-decoded.
	CookieKeySize = 32
	// DefaultHTTPTimeout bounds every request to the login issuer.
	DefaultHTTPTimeout = 10 * time.Second
)

// DefaultScopes are the login scopes when Config.Login.Scopes is empty.
var DefaultScopes = []string{"openid", "profile"}

// LoginConfig is how people sign in to the connect pages.
type LoginConfig struct {
	// Issuer names the identity.issuers[] entry people log in with; its
	// `sub`/org claims give the same user key as on the Check path.
	Issuer string `yaml:"issuer"`
	// ClientID is mcpauthz's OAuth client at that issuer; ID tokens must
	// carry it as audience.
	ClientID string `yaml:"client_id"`
	// ClientSecret is optional: without it mcpauthz is a public client
	// (PKCE protects the code either way).
	ClientSecret *secret.Ref `yaml:"client_secret"`
	// Scopes default to [openid, profile]; must contain openid.
	Scopes []string `yaml:"scopes"`
}

// Config is the top-level `connect:` block.
type Config struct {
	Login LoginConfig `yaml:"login"`
	// CookieKey seals session and login cookies: 32 bytes, base64 (standard
	// or URL alphabet). Default: random per process, so sessions end on
	// restart and replicas must share a configured key.
	CookieKey *secret.Ref `yaml:"cookie_key"`
	// SessionTTL is how long a sign-in lasts. Default 8h, from 5m to 7d.
	SessionTTL time.Duration `yaml:"session_ttl"`
	// InsecureCookies drops the __Host- prefix and the Secure attribute, for
	// development over http on a loopback address only. Pages say so.
	InsecureCookies bool `yaml:"insecure_cookies"`
	// Admins names the people who get the administrators' page for the
	// organization they sign in to. Empty: nobody.
	Admins AdminsConfig `yaml:"admins"`
}

// Validate checks the configuration without I/O. Errors name the field path
// under `connect`.
func (c Config) Validate() error {
	var errs []error
	add := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("connect.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if strings.TrimSpace(c.Login.Issuer) == "" {
		add("login.issuer", "required: the name of an identity.issuers[] entry")
	}
	if strings.TrimSpace(c.Login.ClientID) == "" {
		add("login.client_id", "required")
	}
	if c.Login.ClientSecret != nil {
		if err := c.Login.ClientSecret.Validate(); err != nil {
			add("login.client_secret", "%v", err)
		}
	}
	if len(c.Login.Scopes) > 0 && !slices.Contains(c.Login.Scopes, "openid") {
		add("login.scopes", "must contain openid")
	}
	for i, s := range c.Login.Scopes {
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r > '~' }) {
			add(fmt.Sprintf("login.scopes[%d]", i), "not a valid scope token (RFC 6749 section 3.3)")
		}
	}
	if c.CookieKey != nil {
		if err := c.CookieKey.Validate(); err != nil {
			add("cookie_key", "%v", err)
		}
	}
	if c.SessionTTL != 0 && (c.SessionTTL < MinSessionTTL || c.SessionTTL > MaxSessionTTL) {
		add("session_ttl", "must be between %s and %s (default %s)", MinSessionTTL, MaxSessionTTL, DefaultSessionTTL)
	}
	errs = append(errs, c.Admins.validate()...)
	return errors.Join(errs...)
}

// User is the person signed in to the connect pages.
type User struct {
	// Org and UserKey are those of the Check path's Principal for the same
	// person (connections are keyed on them).
	Org, UserKey string
	// Subject is the ID token's sub; Name is shown on pages.
	Subject, Name string
	// Roles are the person's roles as the Check path reads them (the login
	// issuer's identity.issuers[].claims.roles path); connect.admins.roles
	// matches them. Optional.
	Roles []string
}

// Users turns a verified ID token into the user key mcpauthz uses on the
// Check path. The handler has already verified the token's signature,
// issuer, audience (clientID), expiry and nonce; implementations may verify
// again. The lead passes an adapter over the identity verifier.
type Users interface {
	FromIDToken(ctx context.Context, issuerName, rawIDToken, clientID, nonce string) (User, error)
}

// Manager is the part of *connections.Manager the connect pages use.
type Manager interface {
	// ResolveLink returns the key a link id was minted for (not consumed).
	ResolveLink(ctx context.Context, linkID string) (Key, error)
	// StartConnect creates a pending flow and returns the provider's
	// authorization URL.
	StartConnect(ctx context.Context, key Key, linkID, returnTo string) (authorizeURL string, err error)
	// CompleteConnect finishes the flow named by state for signedIn.
	CompleteConnect(ctx context.Context, state, code, iss, providerErr string, signedIn Key) (Connection, string, error)
	// List returns connections matching f.
	List(ctx context.Context, f Filter) ([]Connection, error)
	// Revoke deletes a connection's tokens.
	Revoke(ctx context.Context, key Key, by Actor, reason string) error
	// History returns the stored events of an organization and user
	// (userKey "" for the organization's connections), newest first.
	History(ctx context.Context, org, userKey string, limit int) ([]Event, error)
}

// ServerInfo describes one MCP server whose users connect their own account.
type ServerInfo struct {
	ID, Name string
	// Mode is "individual" (each person connects their own account) or
	// "service_account" (one connection per organization, authorized by an
	// administrator on /connect/admin/).
	Mode string
	// ProviderOrigin is the scheme://host[:port] of the provider's
	// authorization endpoint; it is added to the pages' CSP form-action so
	// the Connect buttons may redirect there. Optional: origins are also
	// learnt from the authorization URLs the Manager returns.
	ProviderOrigin string
}

// Options are the handler's collaborators.
type Options struct {
	// PublicURL is mcpauthz's HTTP listener as browsers reach it, without a
	// path (e.g. https://mcpauthz.example.com). Required; https unless
	// Config.InsecureCookies and a loopback host.
	PublicURL string
	// LoginIssuerURL is the `issuer` of the identity.issuers[] entry that
	// Config.Login.Issuer names (OIDC discovery happens at the first login).
	LoginIssuerURL string
	Servers        []ServerInfo
	Manager        Manager
	Users          Users
	Logger         *slog.Logger
	Now            func() time.Time
	// HTTPClient talks to the login issuer. Default: 10s timeout, no redirects.
	HTTPClient *http.Client
}

// reserved are /connect/<segment> names the handler uses itself.
var reserved = []string{"login", "logout", "start", "callback", "static", "signed-out", "admin", "history"}

// Handler serves /connect/... Create it with New.
type Handler struct {
	cfg        Config
	opts       Options
	public     *url.URL
	origin     string // scheme://host[:port] of PublicURL
	cookies    *sealer
	csrfKey    []byte
	login      *loginClient
	pages      *pages
	servers    map[string]ServerInfo
	order      []string
	mux        *http.ServeMux
	adminMux   *http.ServeMux
	log        *slog.Logger
	now        func() time.Time
	admins     adminRule
	usedStates *usedSet // login states already redeemed
	loggedOut  *usedSet // session ids signed out before their expiry

	mu      sync.RWMutex
	origins []string // provider origins allowed in form-action
}

// New builds the handler. It resolves secrets but does no network I/O: the
// login issuer is discovered at the first sign-in.
func New(ctx context.Context, cfg Config, opts Options) (*Handler, error) {
	pub, err := checkNew(cfg, opts)
	if err != nil {
		return nil, err
	}
	cfg.setDefaults()
	opts.setDefaults()
	key, err := cookieKey(cfg.CookieKey)
	if err != nil {
		return nil, err
	}
	if cfg.CookieKey == nil {
		opts.Logger.Warn("connect: no cookie_key configured; using a random key (sessions end on restart and are not shared between replicas)")
	}
	var clientSecret string
	if cfg.Login.ClientSecret != nil {
		v, err := cfg.Login.ClientSecret.Resolve()
		if err != nil {
			return nil, fmt.Errorf("connect.login.client_secret: %w", err)
		}
		clientSecret = v.Reveal()
	}
	h := &Handler{
		cfg:        cfg,
		opts:       opts,
		public:     pub,
		origin:     pub.Scheme + "://" + pub.Host,
		log:        opts.Logger,
		now:        opts.Now,
		servers:    map[string]ServerInfo{},
		admins:     newAdminRule(cfg.Admins),
		usedStates: newUsedSet(),
		loggedOut:  newUsedSet(),
	}
	h.cookies, h.csrfKey, err = newSealer(key)
	if err != nil {
		return nil, err
	}
	for i, s := range opts.Servers {
		if err := h.addServer(i, s); err != nil {
			return nil, err
		}
	}
	h.login = newLoginClient(cfg.Login, clientSecret, opts.LoginIssuerURL, pub.String()+"/connect/login/callback", opts.HTTPClient)
	if h.pages, err = loadPages(); err != nil {
		return nil, err
	}
	h.routes()
	_ = ctx
	return h, nil
}

// checkNew checks what New needs before it builds anything: a valid cfg,
// the required Options and the public URL, which it returns parsed.
func checkNew(cfg Config, opts Options) (*url.URL, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Manager == nil {
		return nil, errors.New("connect: Options.Manager is required")
	}
	if opts.Users == nil {
		return nil, errors.New("connect: Options.Users is required")
	}
	pub, err := checkPublicURL(opts.PublicURL, cfg.InsecureCookies)
	if err != nil {
		return nil, err
	}
	if opts.LoginIssuerURL == "" {
		return nil, fmt.Errorf("connect.login.issuer: issuer %q has no issuer URL (Options.LoginIssuerURL)", cfg.Login.Issuer)
	}
	return pub, nil
}

// setDefaults fills the zero session TTL and login scopes.
func (c *Config) setDefaults() {
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if len(c.Login.Scopes) == 0 {
		c.Login.Scopes = slices.Clone(DefaultScopes)
	}
}

// setDefaults fills the zero logger, clock and HTTP client (a timeout, no
// redirects).
func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{
			Timeout:       DefaultHTTPTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
}

// addServer checks Options.Servers[i] (its id becomes a /connect/ path
// segment), fills its defaults and registers it with its provider origin.
func (h *Handler) addServer(i int, s ServerInfo) error {
	switch {
	case s.ID == "" || strings.ContainsAny(s.ID, "/?#%\\") || strings.ContainsFunc(s.ID, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return fmt.Errorf("connect: Options.Servers[%d].ID %q is not a valid path segment", i, s.ID)
	case slices.Contains(reserved, s.ID):
		return fmt.Errorf("connect: server %q collides with the connect page /connect/%s; rename the server", s.ID, s.ID)
	case h.servers[s.ID].ID != "":
		return fmt.Errorf("connect: server %q listed twice", s.ID)
	}
	if s.Mode == "" {
		s.Mode = ModeIndividual
	}
	if s.Mode != ModeIndividual && s.Mode != ModeServiceAccount {
		return fmt.Errorf("connect: server %q: Mode %q is neither %q nor %q", s.ID, s.Mode, ModeIndividual, ModeServiceAccount)
	}
	if s.Name == "" {
		s.Name = s.ID
	}
	if s.ProviderOrigin != "" {
		o, err := originOf(s.ProviderOrigin)
		if err != nil {
			return fmt.Errorf("connect: server %q: ProviderOrigin: %w", s.ID, err)
		}
		h.addOrigin(o)
	}
	h.servers[s.ID] = s
	h.order = append(h.order, s.ID)
	return nil
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /connect/{$}", h.serveList)
	m.HandleFunc("GET /connect/history", h.serveHistory)
	m.HandleFunc("GET /connect/static/style.css", h.serveCSS)
	m.HandleFunc("GET /connect/login", h.serveLogin)
	m.HandleFunc("GET /connect/login/callback", h.serveLoginCallback)
	m.HandleFunc("GET /connect/logout", h.serveLogoutPage)
	m.HandleFunc("POST /connect/logout", h.serveLogout)
	m.HandleFunc("GET /connect/signed-out", h.serveSignedOut)
	m.HandleFunc("GET /connect/start", h.serveStart)
	m.HandleFunc("GET /connect/callback", h.serveCallback)
	m.HandleFunc("GET /connect/{server}", h.serveServer)
	m.HandleFunc("POST /connect/{server}", h.serveConnect)
	m.HandleFunc("POST /connect/{server}/revoke", h.serveRevoke)
	m.HandleFunc("/", h.serveNotFound)
	h.mux = m

	// The administrators' pages have their own mux, so that every other
	// path or method under /connect/admin/ answers a non-administrator 403.
	a := http.NewServeMux()
	a.HandleFunc("GET /connect/admin/{$}", h.serveAdmin)
	a.HandleFunc("GET /connect/admin/history", h.serveAdminHistory)
	a.HandleFunc("GET /connect/admin/{server}", h.serveAdminServer)
	a.HandleFunc("POST /connect/admin/{server}/revoke", h.serveAdminRevoke)
	a.HandleFunc("POST /connect/admin/{server}/org/connect", h.serveAdminOrgConnect)
	a.HandleFunc("POST /connect/admin/{server}/org/revoke", h.serveAdminOrgRevoke)
	a.HandleFunc("GET /connect/admin", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/connect/admin/", http.StatusSeeOther)
	})
	a.HandleFunc("/", h.serveAdminNotFound)
	h.adminMux = a
}

// ServeHTTP serves every /connect/ route; mount it at /connect/.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.securityHeaders(w)
	if p := r.URL.Path; p == "/connect/admin" || strings.HasPrefix(p, "/connect/admin/") {
		h.adminMux.ServeHTTP(w, r)
		return
	}
	// Method mismatches answer 405 through the mux, inside the headers above.
	h.mux.ServeHTTP(w, r)
}

// securityHeaders sets the headers every response carries.
func (h *Handler) securityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	formAction := "'self'"
	h.mu.RLock()
	for _, o := range h.origins {
		formAction += " " + o
	}
	h.mu.RUnlock()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer browsers send
	// "Origin: null" on form POSTs, which would defeat the Origin check. No
	// URL of these pages (link ids, state, code) leaks to another origin.
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Pragma", "no-cache")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
}

// addOrigin allows o in form-action (idempotent).
func (h *Handler) addOrigin(o string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Contains(h.origins, o) {
		h.origins = append(h.origins, o)
	}
}

func (h *Handler) knownOrigin(o string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return slices.Contains(h.origins, o)
}

// originOf returns scheme://host[:port] of an absolute http(s) URL.
func originOf(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return strings.ToLower(u.Scheme + "://" + u.Host), nil
}

// checkPublicURL validates Options.PublicURL.
func checkPublicURL(raw string, insecure bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("connect: Options.PublicURL %q must be an absolute URL like https://mcpauthz.example.com", raw)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("connect: Options.PublicURL %q must not have a path: the pages are served at /connect/", raw)
	}
	u.Path = ""
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	switch u.Scheme {
	case "https":
	case "http":
		if !insecure {
			return nil, fmt.Errorf("connect: Options.PublicURL %q is http: session cookies need https (set connect.insecure_cookies only for loopback development)", raw)
		}
		if !isLoopback(u.Hostname()) {
			return nil, fmt.Errorf("connect.insecure_cookies: only allowed with a loopback PublicURL, not %q", raw)
		}
	default:
		return nil, fmt.Errorf("connect: Options.PublicURL %q must be https", raw)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// cookieKey resolves Config.CookieKey or makes a random one.
func cookieKey(ref *secret.Ref) ([]byte, error) {
	if ref == nil {
		k := make([]byte, CookieKeySize)
		_, _ = rand.Read(k)
		return k, nil
	}
	v, err := ref.Resolve()
	if err != nil {
		return nil, fmt.Errorf("connect.cookie_key: %w", err)
	}
	s := strings.TrimSpace(v.Reveal())
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == CookieKeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("connect.cookie_key: must be %d bytes, base64-encoded (e.g. `openssl rand -base64 32`)", CookieKeySize)
}
