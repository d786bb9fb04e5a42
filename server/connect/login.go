package connect

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// loginClient signs browsers in at the login issuer (OIDC authorization
// code + PKCE S256 + nonce). Discovery happens at the first sign-in and is
// retried until it succeeds, so an issuer that is down at start-up does not
// stop mcpauthz.
type loginClient struct {
	cfg         LoginConfig
	secret      string
	issuerURL   string
	redirectURL string
	hc          *http.Client

	mu       sync.Mutex
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newLoginClient(cfg LoginConfig, clientSecret, issuerURL, redirectURL string, hc *http.Client) *loginClient {
	return &loginClient{cfg: cfg, secret: clientSecret, issuerURL: issuerURL, redirectURL: redirectURL, hc: hc}
}

// get discovers the issuer once and returns the OAuth client and the ID
// token verifier.
func (l *loginClient) get(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.oauth != nil {
		return l.oauth, l.verifier, nil
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultHTTPTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, l.hc), l.issuerURL)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: discover login issuer %s: %w", l.issuerURL, err)
	}
	var meta struct {
		Methods []string `json:"code_challenge_methods_supported"`
	}
	if err := p.Claims(&meta); err == nil && len(meta.Methods) > 0 && !slices.Contains(meta.Methods, "S256") {
		return nil, nil, fmt.Errorf("connect: login issuer %s does not support PKCE S256", l.issuerURL)
	}
	l.oauth = &oauth2.Config{
		ClientID:     l.cfg.ClientID,
		ClientSecret: l.secret,
		Endpoint:     p.Endpoint(),
		RedirectURL:  l.redirectURL,
		Scopes:       l.cfg.Scopes,
	}
	// The key set uses our HTTP client, never the request's cancellation.
	l.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), l.hc), &oidc.Config{ClientID: l.cfg.ClientID})
	return l.oauth, l.verifier, nil
}

// serveLogin starts a sign-in: a fresh state, nonce and PKCE verifier in a
// sealed cookie named after the state, then a redirect to the issuer.
func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) {
	ret := "/connect/"
	if q := r.URL.Query().Get("return"); q != "" {
		v, ok := safeReturn(q)
		if !ok {
			h.renderError(w, r, http.StatusBadRequest, "This sign-in link is not valid",
				"The page to return to after signing in is not a page of this site, so it was refused.", "")
			return
		}
		ret = v
	}
	oc, _, err := h.login.get(r.Context())
	if err != nil {
		h.log.Error("connect: login issuer unavailable", "err", err)
		h.renderError(w, r, http.StatusBadGateway, "Sign-in is unavailable",
			"mcpauthz could not reach the sign-in service. Try again in a minute.", "")
		return
	}
	st := loginState{
		State:    randomString(32),
		Nonce:    randomString(32),
		Verifier: oauth2.GenerateVerifier(),
		Return:   ret,
		Expires:  h.now().Add(LoginTTL).Unix(),
	}
	name := h.cookieName(loginCookie + st.State[:16])
	v, err := h.cookies.seal(name, st)
	if err != nil {
		h.renderError(w, r, http.StatusInternalServerError, "Sign-in failed", "Try again.", "")
		return
	}
	h.setCookie(w, name, v, LoginTTL)
	params := []oauth2.AuthCodeOption{oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)}
	if r.URL.Query().Get("switch") == "1" {
		// After "sign out to switch account": ask the issuer to show its
		// login form rather than reuse its own session (OIDC prompt=login).
		params = append(params, oauth2.SetAuthURLParam("prompt", "login"))
	}
	http.Redirect(w, r, oc.AuthCodeURL(st.State, params...), http.StatusSeeOther)
}

// loginError is a sign-in failure with the words shown to the person.
type loginError struct {
	status      int
	title, text string
	err         error
}

func (e *loginError) Error() string { return e.title + ": " + e.err.Error() }

// serveLoginCallback finishes a sign-in: the state must match a live login
// cookie and be unused; the code is exchanged with the PKCE verifier; the ID
// token is verified (signature, issuer, audience, expiry, nonce) and mapped
// to the Check path's user key; then the session cookie is set.
func (h *Handler) serveLoginCallback(w http.ResponseWriter, r *http.Request) {
	st, u, admin, err := h.finishLogin(r, w)
	if err != nil {
		var le *loginError
		if !errors.As(err, &le) {
			le = &loginError{status: http.StatusBadGateway, title: "Sign-in failed", text: "Try signing in again.", err: err}
		}
		h.log.Warn("connect: sign-in refused", "reason", le.title, "err", le.err)
		h.renderError(w, r, le.status, le.title, le.text, "/connect/login")
		return
	}
	if err := h.startSession(w, u, admin); err != nil {
		h.log.Error("connect: session cookie", "err", err)
		h.renderError(w, r, http.StatusInternalServerError, "Sign-in failed", "Your account details are too large for a session cookie.", "")
		return
	}
	h.log.Info("connect: signed in", "org", u.Org, "user_key", u.UserKey, "admin", admin)
	http.Redirect(w, r, st.Return, http.StatusSeeOther)
}

// finishLogin also says whether connect.admins names the person (from the
// verified ID token's sub and claims, and the adapter's roles).
func (h *Handler) finishLogin(r *http.Request, w http.ResponseWriter) (*loginState, User, bool, error) {
	q := r.URL.Query()
	st, err := h.redeemLoginState(r, w, q.Get("state"))
	if err != nil {
		return nil, User{}, false, err
	}
	if e := q.Get("error"); e != "" {
		return nil, User{}, false, &loginError{http.StatusForbidden, "Sign-in was not completed", describeOAuthError(e), fmt.Errorf("issuer error %q", errorCode(e))}
	}
	code := q.Get("code")
	if code == "" {
		return nil, User{}, false, &loginError{http.StatusBadRequest, "This sign-in link is not valid", "Start again.", errors.New("no code")}
	}
	idt, raw, err := h.redeemLoginCode(r.Context(), st, code)
	if err != nil {
		return nil, User{}, false, err
	}
	u, err := h.opts.Users.FromIDToken(r.Context(), h.cfg.Login.Issuer, raw, h.cfg.Login.ClientID, st.Nonce)
	if err != nil {
		return nil, User{}, false, &loginError{http.StatusForbidden, "Your account cannot use these pages", "mcpauthz does not recognise this account for MCP access.", fmt.Errorf("users: %w", err)}
	}
	if u.UserKey == "" {
		return nil, User{}, false, &loginError{http.StatusForbidden, "Your account cannot use these pages", "mcpauthz does not recognise this account for MCP access.", errors.New("users: empty user key")}
	}
	if u.Subject == "" {
		u.Subject = idt.Subject
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		claims = nil // no claim matches: fail closed
	}
	admin := h.admins.match(idt.Subject, u.Roles, claims)
	return st, u, admin, nil
}

// redeemLoginState returns the login state named by the callback's state:
// its cookie must be present (it is cleared), match, be live and unused.
func (h *Handler) redeemLoginState(r *http.Request, w http.ResponseWriter, state string) (*loginState, error) {
	if len(state) < 16 || len(state) > 128 {
		return nil, &loginError{http.StatusBadRequest, "This sign-in link is not valid", "Start again from the page you were on.", errors.New("missing or malformed state")}
	}
	name := h.cookieName(loginCookie + state[:16])
	c, err := r.Cookie(name)
	var st loginState
	if err != nil || h.cookies.open(name, c.Value, &st) != nil {
		return nil, &loginError{http.StatusBadRequest, "This sign-in has expired or was already used", "Start again from the page you were on.", errors.New("no login cookie for state")}
	}
	h.clearCookie(w, name)
	now := h.now()
	if subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) != 1 {
		return nil, &loginError{http.StatusBadRequest, "This sign-in link is not valid", "Start again from the page you were on.", errors.New("state mismatch")}
	}
	if now.Unix() >= st.Expires {
		return nil, &loginError{http.StatusBadRequest, "This sign-in has expired or was already used", "Sign-in must finish within 10 minutes. Start again.", errors.New("login state expired")}
	}
	if !h.usedStates.add(st.State, time.Unix(st.Expires, 0), now) {
		return nil, &loginError{http.StatusBadRequest, "This sign-in has expired or was already used", "Start again from the page you were on.", errors.New("login state replayed")}
	}
	return &st, nil
}

// redeemLoginCode exchanges code with the PKCE verifier of st and verifies
// the ID token (signature, issuer, audience, expiry, nonce, azp). It returns
// the token verified and as received.
func (h *Handler) redeemLoginCode(ctx context.Context, st *loginState, code string) (*oidc.IDToken, string, error) {
	oc, verifier, err := h.login.get(ctx)
	if err != nil {
		return nil, "", &loginError{http.StatusBadGateway, "Sign-in is unavailable", "mcpauthz could not reach the sign-in service. Try again in a minute.", err}
	}
	ctx = oidc.ClientContext(ctx, h.opts.HTTPClient)
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			err = fmt.Errorf("token endpoint answered %d %q", re.Response.StatusCode, errorCode(re.ErrorCode))
		} else {
			err = errors.New("token endpoint unreachable")
		}
		return nil, "", &loginError{http.StatusBadGateway, "Sign-in failed", "The sign-in service did not accept the sign-in. Try again.", err}
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, "", &loginError{http.StatusBadGateway, "Sign-in failed", "The sign-in service returned no ID token.", errors.New("no id_token")}
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		return nil, "", &loginError{http.StatusForbidden, "Sign-in failed", "The sign-in service's answer could not be verified.", fmt.Errorf("id token: %w", err)}
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return nil, "", &loginError{http.StatusForbidden, "Sign-in failed", "The sign-in service's answer was not for this sign-in.", errors.New("id token nonce mismatch")}
	}
	if len(idt.Audience) > 1 {
		var c struct {
			AZP string `json:"azp"`
		}
		if err := idt.Claims(&c); err != nil || c.AZP != h.cfg.Login.ClientID {
			return nil, "", &loginError{http.StatusForbidden, "Sign-in failed", "The sign-in service's answer was not for mcpauthz.", errors.New("id token azp is not our client_id")}
		}
	}
	return idt, raw, nil
}

// serveLogoutPage shows a sign-out button (sign-out is a POST).
func (h *Handler) serveLogoutPage(w http.ResponseWriter, r *http.Request) {
	s := h.session(r)
	if s == nil {
		http.Redirect(w, r, "/connect/signed-out", http.StatusSeeOther)
		return
	}
	ret, _ := safeReturn(r.URL.Query().Get("return"))
	h.render(w, r, http.StatusOK, "logout.html", s, pageData{Title: "Sign out", Return: ret})
}

// serveLogout ends the session: the cookie is cleared and the session id
// refused until it would have expired.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) {
	s := h.session(r)
	if s == nil {
		http.Redirect(w, r, "/connect/signed-out", http.StatusSeeOther)
		return
	}
	if reason := h.checkPOST(r, s); reason != "" {
		h.refusePOST(w, r, s, reason)
		return
	}
	h.loggedOut.add(s.ID, time.Unix(s.Expires, 0), h.now())
	h.clearCookie(w, h.cookieName(sessionCookie))
	h.log.Info("connect: signed out", "org", s.Org, "user_key", s.UserKey)
	next := "/connect/signed-out"
	if ret, ok := safeReturn(r.PostFormValue("return")); ok {
		next += "?return=" + url.QueryEscape(ret)
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) serveSignedOut(w http.ResponseWriter, r *http.Request) {
	d := pageData{
		Title: "Signed out", Heading: "You are signed out",
		Text: "You can close this tab.", Link: "/connect/login?switch=1", LinkText: "Sign in again",
	}
	if ret, ok := safeReturn(r.URL.Query().Get("return")); ok {
		d.Text = "Sign in as the account the link was created for to continue."
		d.Link += "&return=" + url.QueryEscape(ret)
		d.LinkText = "Sign in as another account"
	}
	h.render(w, r, http.StatusOK, "message.html", h.session(r), d)
}

// requireLogin redirects a browser without a session to the login page,
// returning it to the current URL afterwards.
func (h *Handler) requireLogin(w http.ResponseWriter, r *http.Request) *session {
	if s := h.session(r); s != nil {
		return s
	}
	ret := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		ret += "?" + r.URL.RawQuery
	}
	if _, ok := safeReturn(ret); !ok {
		ret = "/connect/"
	}
	http.Redirect(w, r, "/connect/login?return="+url.QueryEscape(ret), http.StatusSeeOther)
	return nil
}
