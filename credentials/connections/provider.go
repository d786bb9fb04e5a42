package connections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/oauth2"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/httpc"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// maxResponseBytes bounds every provider response body.
const maxResponseBytes = 1 << 20

// discoveryRetry spaces discovery attempts after a failure.
const discoveryRetry = 30 * time.Second

var (
	errResponseTooLarge = errors.New("provider response exceeds 1 MiB")
	errRedirect         = errors.New("provider redirects are not followed")
)

// newHTTPClient copies base (or a default client) with a timeout, no
// redirects and response bodies of at most 1 MiB.
func newHTTPClient(base *http.Client, timeout time.Duration) *http.Client {
	return httpc.New(base, httpc.Rules{Timeout: timeout, Redirect: errRedirect,
		MaxBody: maxResponseBytes, TooLarge: errResponseTooLarge})
}

// errKind sorts provider failures.
type errKind int

const (
	// kindTransient: 5xx, 429, timeouts, network: retry with back-off.
	kindTransient errKind = iota
	// kindGrant: invalid_grant: the grant (refresh token or code) is gone.
	kindGrant
	// kindRejected: any other refusal (invalid_client, malformed answer...).
	kindRejected
)

// providerError is a sanitized provider failure: HTTP status and RFC 6749
// error code only (error_description and bodies may echo request data).
type providerError struct {
	op     string // "token endpoint", "discovery", ...
	status int
	code   string
	kind   errKind
	msg    string
}

func (e *providerError) Error() string {
	switch {
	case e.msg != "":
		return e.op + ": " + e.msg
	case e.code != "":
		return fmt.Sprintf("%s answered HTTP %d (%s)", e.op, e.status, e.code)
	default:
		return fmt.Sprintf("%s answered HTTP %d", e.op, e.status)
	}
}

// Unwrap makes transient failures match ErrUnavailable.
func (e *providerError) Unwrap() error {
	if e.kind == kindTransient {
		return ErrUnavailable
	}
	return nil
}

// knownCodes are RFC 6749 (4.1.2.1, 5.2), RFC 8707 and OIDC error codes;
// anything else is reported as "unrecognized".
var knownCodes = map[string]bool{
	"invalid_request": true, "invalid_client": true, "invalid_grant": true,
	"unauthorized_client": true, "unsupported_grant_type": true, "unsupported_response_type": true,
	"invalid_scope": true, "invalid_target": true, "access_denied": true,
	"server_error": true, "temporarily_unavailable": true, "login_required": true,
	"consent_required": true, "interaction_required": true, "account_selection_required": true,
}

func sanitizeCode(code string) string {
	if code == "" || knownCodes[code] {
		return code
	}
	return "unrecognized"
}

// classify turns an oauth2/HTTP error into a *providerError.
func classify(op string, err error) *providerError {
	var pe *providerError
	if errors.As(err, &pe) {
		return pe
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		e := &providerError{op: op, status: status, code: sanitizeCode(re.ErrorCode), kind: kindRejected}
		switch {
		case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout,
			e.code == "temporarily_unavailable", e.code == "server_error":
			e.kind = kindTransient
		case e.code == "invalid_grant":
			e.kind = kindGrant
		}
		return e
	}
	var ne net.Error
	switch {
	case errors.Is(err, errResponseTooLarge):
		return &providerError{op: op, kind: kindRejected, msg: errResponseTooLarge.Error()}
	case errors.Is(err, errRedirect):
		return &providerError{op: op, kind: kindRejected, msg: errRedirect.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &providerError{op: op, kind: kindTransient, msg: "timed out"}
	case errors.Is(err, context.Canceled):
		return &providerError{op: op, kind: kindTransient, msg: "canceled"}
	}
	var ue *url.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		return &providerError{op: op, kind: kindTransient, msg: "unreachable"}
	}
	// oauth2 formats parse failures with the body: never pass its text on.
	return &providerError{op: op, kind: kindRejected, msg: "malformed response"}
}

// endpoints are a provider's resolved URLs.
type endpoints struct {
	auth, token, revoke string
	issuer              string
	issParam            bool // authorization_response_iss_parameter_supported
}

// server is one registered server and its provider. Safe for concurrent use.
type server struct {
	id, mode string
	cfg      ProviderConfig
	secret   secret.Value
	hc       *http.Client
	redirect string
	log      *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	ep       *endpoints
	retryAt  time.Time
	lastDisc error
}

func (s *server) authStyle() oauth2.AuthStyle {
	if s.cfg.AuthStyle == AuthStylePost || s.cfg.AuthStyle == AuthStyleNone {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}

// endpoints returns the provider's URLs, discovering them (RFC 8414, then
// OpenID Connect discovery) when the config leaves any out.
func (s *server) endpoints(ctx context.Context) (*endpoints, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ep != nil {
		return s.ep, nil
	}
	c := s.cfg
	ep := &endpoints{auth: c.AuthorizationURL, token: c.TokenURL, revoke: c.RevocationURL, issuer: c.Issuer}
	if ep.auth != "" && ep.token != "" {
		s.ep = ep
		return ep, nil
	}
	if s.now().Before(s.retryAt) {
		return nil, s.lastDisc
	}
	md, err := s.discover(ctx)
	if err != nil {
		s.retryAt, s.lastDisc = s.now().Add(discoveryRetry), err
		s.log.Warn("connections: provider discovery failed", "server", s.id, "issuer", c.Issuer, "error", err)
		return nil, err
	}
	if ep.auth == "" {
		ep.auth = md.Auth
	}
	if ep.token == "" {
		ep.token = md.Token
	}
	if ep.revoke == "" {
		ep.revoke = md.Revoke
	}
	ep.issParam = md.IssParam
	for name, u := range map[string]string{"authorization_endpoint": ep.auth, "token_endpoint": ep.token} {
		if u == "" {
			return nil, &providerError{op: "discovery", kind: kindRejected, msg: "metadata has no " + name}
		}
	}
	for name, u := range map[string]string{"authorization_endpoint": ep.auth, "token_endpoint": ep.token, "revocation_endpoint": ep.revoke} {
		if msg := urlcheck.Endpoint(u); u != "" && msg != "" {
			return nil, &providerError{op: "discovery", kind: kindRejected, msg: name + " " + msg}
		}
	}
	s.ep = ep
	return ep, nil
}

type metadata struct {
	Issuer   string `json:"issuer"`
	Auth     string `json:"authorization_endpoint"`
	Token    string `json:"token_endpoint"`
	Revoke   string `json:"revocation_endpoint"`
	IssParam bool   `json:"authorization_response_iss_parameter_supported"`
}

// wellKnown returns the RFC 8414 metadata URL (well-known segment inserted
// before the issuer's path) and the OIDC discovery URL (appended).
func wellKnown(issuer string) (string, string) {
	u, _ := url.Parse(issuer)
	path := strings.TrimSuffix(u.Path, "/")
	rfc := *u
	rfc.Path = "/.well-known/oauth-authorization-server" + path
	oidc := *u
	oidc.Path = path + "/.well-known/openid-configuration"
	return rfc.String(), oidc.String()
}

func (s *server) discover(ctx context.Context) (*metadata, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.timeout())
	defer cancel()
	rfc, oidc := wellKnown(s.cfg.Issuer)
	var last error
	for _, u := range []string{rfc, oidc} {
		md, err := s.fetchMetadata(ctx, u)
		if err == nil {
			return md, nil
		}
		last = err
		if pe := (*providerError)(nil); errors.As(err, &pe) && pe.kind == kindTransient {
			return nil, err
		}
	}
	return nil, last
}

func (s *server) fetchMetadata(ctx context.Context, u string) (*metadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &providerError{op: "discovery", kind: kindRejected, msg: "bad metadata URL"}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		return nil, classify("discovery", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, classify("discovery", err)
	}
	if resp.StatusCode != http.StatusOK {
		kind := kindRejected
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			kind = kindTransient
		}
		return nil, &providerError{op: "discovery", status: resp.StatusCode, kind: kind}
	}
	var md metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, &providerError{op: "discovery", kind: kindRejected, msg: "malformed metadata"}
	}
	if md.Issuer != s.cfg.Issuer {
		return nil, &providerError{op: "discovery", kind: kindRejected, msg: "metadata issuer does not match the configured issuer"}
	}
	return &md, nil
}

func (s *server) oauth(ep *endpoints) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     s.cfg.ClientID,
		ClientSecret: s.secret.Reveal(),
		Endpoint:     oauth2.Endpoint{AuthURL: ep.auth, TokenURL: ep.token, AuthStyle: s.authStyle()},
		RedirectURL:  s.redirect,
		Scopes:       s.cfg.Scopes,
	}
}

// grant is a parsed token response.
type grant struct {
	tok            tokens
	scopes         []string
	expiresAt      time.Time // zero: no expiry announced
	refreshExpires time.Time // zero: unknown
	rotated        bool      // a new refresh token was returned
	tokenURL       string
}

// exchange redeems an authorization code with its PKCE verifier.
func (s *server) exchange(ctx context.Context, ep *endpoints, code, verifier string) (*grant, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.timeout())
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.hc)
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if s.cfg.Resource != "" {
		opts = append(opts, oauth2.SetAuthURLParam("resource", s.cfg.Resource))
	}
	start := s.now()
	t, err := s.oauth(ep).Exchange(ctx, code, opts...)
	if err != nil {
		return nil, classify("token endpoint", err)
	}
	g, err := s.parse(t, start, "")
	if g != nil {
		g.tokenURL = ep.token
	}
	return g, err
}

// refresh redeems a refresh token.
func (s *server) refresh(ctx context.Context, ep *endpoints, refreshToken string) (*grant, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.timeout())
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.hc)
	start := s.now()
	t, err := s.oauth(ep).TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return nil, classify("token endpoint", err)
	}
	return s.parse(t, start, refreshToken)
}

// parse checks a token response; oldRefresh is kept when the provider
// returns no refresh token.
func (s *server) parse(t *oauth2.Token, start time.Time, oldRefresh string) (*grant, error) {
	bad := func(msg string) error { return &providerError{op: "token endpoint", kind: kindRejected, msg: msg} }
	if t.TokenType != "" && !strings.EqualFold(t.TokenType, "bearer") {
		return nil, bad("token_type is not Bearer")
	}
	if t.AccessToken == "" || !httpguts.ValidHeaderFieldValue(t.AccessToken) || strings.ContainsAny(t.AccessToken, " \t") {
		return nil, bad("access_token is missing or not a valid header value")
	}
	g := &grant{tok: tokens{Access: t.AccessToken, Refresh: t.RefreshToken, TokenType: "Bearer"}}
	if g.tok.Refresh == "" {
		g.tok.Refresh = oldRefresh
	}
	g.rotated = t.RefreshToken != "" && t.RefreshToken != oldRefresh
	if secs := seconds(t.ExpiresIn, t.Extra("expires_in")); secs > 0 {
		g.expiresAt = start.Add(time.Duration(secs) * time.Second)
	}
	if secs := seconds(0, t.Extra("refresh_token_expires_in")); secs > 0 {
		g.refreshExpires = start.Add(time.Duration(secs) * time.Second)
	}
	if sc, ok := t.Extra("scope").(string); ok && strings.TrimSpace(sc) != "" {
		g.scopes = strings.Fields(sc)
	} else {
		g.scopes = append([]string(nil), s.cfg.Scopes...)
	}
	return g, nil
}

func seconds(n int64, extra any) int64 {
	const maxSecs = 10 * 365 * 24 * 3600
	if n <= 0 {
		switch v := extra.(type) {
		case float64:
			n = int64(v)
		case string:
			n, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if n <= 0 || n > maxSecs {
		return 0
	}
	return n
}

// revoke calls the RFC 7009 endpoint, best effort: it logs failures (never
// the token) and returns whether the provider confirmed.
func (s *server) revoke(ctx context.Context, token, hint string) bool {
	ep, err := s.endpoints(ctx)
	if err != nil || ep.revoke == "" || token == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(s.cfg.timeout(), 5*time.Second))
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	if s.cfg.AuthStyle == AuthStylePost || s.cfg.AuthStyle == AuthStyleNone {
		form.Set("client_id", s.cfg.ClientID)
		if s.cfg.AuthStyle == AuthStylePost {
			form.Set("client_secret", s.secret.Reveal())
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.revoke, strings.NewReader(form.Encode()))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if s.cfg.AuthStyle == "" || s.cfg.AuthStyle == AuthStyleBasic {
		req.SetBasicAuth(url.QueryEscape(s.cfg.ClientID), url.QueryEscape(s.secret.Reveal()))
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		s.log.Warn("connections: revocation endpoint call failed", "server", s.id, "error", classify("revocation endpoint", err))
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.log.Warn("connections: revocation endpoint refused", "server", s.id, "status", resp.StatusCode)
		return false
	}
	return true
}
