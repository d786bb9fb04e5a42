package oauthtest

import (
	"context"
	"crypto/subtle"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// pending is an authorization request waiting for login (user == "") or
// consent. Its id is the only thing the browser carries between the steps;
// it changes after login so a login form cannot be replayed into consent.
type pending struct {
	clientID, redirectURI, state string
	scopes                       []string
	challenge, nonce, resource   string
	loginHint                    string
	user                         string
	authTime                     time.Time
	exp                          time.Time
}

// authParams are the parameters /authorize reads (each at most once).
var authParams = []string{
	"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
	"code_challenge_method", "nonce", "resource", "login_hint", "prompt", "response_mode",
}

// pkceChallenge is an RFC 7636 S256 challenge: base64url of 32 bytes.
var pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// authorize serves GET /authorize: it validates the request and shows the
// login form. Errors about the client or its redirect URI are shown to the
// user (never redirected, RFC 6749 section 4.1.2.1); the others go back to
// the client's redirect URI.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, k := range authParams {
		if len(q[k]) > 1 {
			p.errorPage(w, http.StatusBadRequest, "The parameter "+k+" is repeated.")
			return
		}
	}
	c, err := p.client(r.Context(), q.Get("client_id"))
	if err != nil {
		p.errorPage(w, http.StatusBadRequest, "Unknown client_id: "+err.Error()+".")
		return
	}
	redirect := q.Get("redirect_uri")
	if !c.allowsRedirect(redirect) {
		p.errorPage(w, http.StatusBadRequest, "The redirect_uri is not registered for this application.")
		return
	}
	state := q.Get("state")
	fail := func(code, desc string) { p.redirectError(w, r, redirect, state, code, desc) }
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		fail("invalid_request", "only response_mode=query is supported")
		return
	}
	switch m := q.Get("code_challenge_method"); {
	case q.Get("code_challenge") == "":
		fail("invalid_request", "code_challenge is required (PKCE S256)")
		return
	case m != "S256":
		fail("invalid_request", "code_challenge_method must be S256 (plain is not supported)")
		return
	case !pkceChallenge.MatchString(q.Get("code_challenge")):
		fail("invalid_request", "code_challenge must be 43 base64url characters")
		return
	}
	scopes, desc := p.checkScopes(q.Get("scope"), nil)
	if desc != "" {
		fail("invalid_scope", desc)
		return
	}
	res := q.Get("resource")
	if res != "" && !urlcheck.AbsoluteURI(res) {
		fail("invalid_target", "resource must be an absolute URI without a fragment")
		return
	}
	if q.Get("prompt") == "none" {
		fail("login_required", "this provider keeps no session; the user must log in")
		return
	}
	pr := &pending{
		clientID: c.id, redirectURI: redirect, state: state, scopes: scopes,
		challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), resource: res,
		loginHint: q.Get("login_hint"), exp: p.o.Now().Add(pendingTTL),
	}
	id := randToken("")
	p.mu.Lock()
	p.pending[id] = pr
	p.sweepLocked()
	p.mu.Unlock()
	p.render(w, http.StatusOK, loginPage, pageData{Request: id, Client: c.display(), Username: pr.loginHint})
}

// authorizeForm serves POST /authorize: the login form (step=login) and the
// consent form (step=consent).
func (p *Provider) authorizeForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		p.errorPage(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	id := r.PostForm.Get("request_id")
	p.mu.Lock()
	pr, ok := p.pending[id]
	if ok && !p.o.Now().Before(pr.exp) {
		delete(p.pending, id)
		ok = false
	}
	p.mu.Unlock()
	if id == "" || !ok {
		p.errorPage(w, http.StatusBadRequest, "This sign-in request is unknown or has expired. Start again from the application.")
		return
	}
	c, err := p.client(r.Context(), pr.clientID)
	if err != nil {
		p.errorPage(w, http.StatusBadRequest, "The application is no longer registered.")
		return
	}
	switch step := r.PostForm.Get("step"); {
	case step == "login" && pr.user == "":
		p.login(w, r, id, pr, c)
	case step == "consent" && pr.user != "":
		p.consent(w, r, id, pr)
	default:
		p.errorPage(w, http.StatusBadRequest, "This form does not belong to the current step. Start again from the application.")
	}
}

func (p *Provider) login(w http.ResponseWriter, r *http.Request, id string, pr *pending, c *client) {
	user, pass := r.PostForm.Get("username"), r.PostForm.Get("password")
	want, known := p.o.Users[user]
	if !known {
		want = "\x00never" // compare anyway so timing says little
	}
	if subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 || !known || user == "" {
		p.render(w, http.StatusUnauthorized, loginPage, pageData{
			Request: id, Client: c.display(), Username: user, Error: "Wrong username or password.",
		})
		return
	}
	next := &pending{}
	*next = *pr
	next.user, next.authTime = user, p.o.Now()
	p.mu.Lock()
	if p.pending[id] != pr { // used concurrently
		p.mu.Unlock()
		p.errorPage(w, http.StatusBadRequest, "This sign-in request was already used. Start again from the application.")
		return
	}
	delete(p.pending, id)
	consentID := ""
	if p.needsConsent(c) {
		consentID = randToken("")
		p.pending[consentID] = next
	}
	p.mu.Unlock()
	if consentID == "" {
		p.issueCode(w, r, next)
		return
	}
	p.render(w, http.StatusOK, consentPage, pageData{
		Request: consentID, Client: c.display(), Username: user, Scopes: next.scopes, Resource: next.resource,
	})
}

func (p *Provider) consent(w http.ResponseWriter, r *http.Request, id string, pr *pending) {
	p.mu.Lock()
	if p.pending[id] != pr {
		p.mu.Unlock()
		p.errorPage(w, http.StatusBadRequest, "This consent was already answered. Start again from the application.")
		return
	}
	delete(p.pending, id)
	p.mu.Unlock()
	switch r.PostForm.Get("decision") {
	case "approve":
		p.issueCode(w, r, pr)
	case "deny":
		p.redirectError(w, r, pr.redirectURI, pr.state, "access_denied", "the user denied the request")
	default:
		p.errorPage(w, http.StatusBadRequest, "Choose Allow or Deny.")
	}
}

func (p *Provider) needsConsent(c *client) bool {
	return c.registered || p.o.RequireConsent == nil || *p.o.RequireConsent
}

// issueCode records a single-use code and redirects to the client with
// code, state and iss (RFC 9207).
func (p *Provider) issueCode(w http.ResponseWriter, r *http.Request, pr *pending) {
	code := randToken("")
	g := &grant{user: pr.user, clientID: pr.clientID, scopes: pr.scopes, resource: pr.resource, authTime: pr.authTime}
	p.mu.Lock()
	p.codes[hashToken(code)] = &codeRec{
		g: g, redirectURI: pr.redirectURI, challenge: pr.challenge, nonce: pr.nonce,
		exp: p.o.Now().Add(p.o.CodeTTL),
	}
	p.sweepLocked()
	p.mu.Unlock()
	p.redirect(w, r, pr.redirectURI, url.Values{"code": {code}}, pr.state)
}

func (p *Provider) redirectError(w http.ResponseWriter, r *http.Request, redirect, state, code, desc string) {
	p.redirect(w, r, redirect, url.Values{"error": {code}, "error_description": {desc}}, state)
}

// redirect sends the browser to redirectURI with params, state and iss
// added to its query (303 so a POST becomes a GET).
func (p *Provider) redirect(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values, state string) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		p.errorPage(w, http.StatusBadRequest, "The redirect_uri is malformed.")
		return
	}
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", p.URL())
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// checkScopes parses a space-separated scope string; with allowed != nil
// every scope must be in it, else Options.Scopes decides (openid and
// offline_access are always allowed). It returns a description on error.
func (p *Provider) checkScopes(raw string, allowed []string) ([]string, string) {
	if raw == "" {
		return nil, ""
	}
	if strings.Trim(raw, " ") != raw || strings.Contains(raw, "  ") {
		return nil, "scope must be scope tokens separated by single spaces"
	}
	var out []string
	for s := range strings.SplitSeq(raw, " ") {
		if !urlcheck.ScopeToken(s) {
			return nil, "scope contains a malformed scope token"
		}
		if allowed != nil && !slices.Contains(allowed, s) {
			return nil, "scope " + urlcheck.Truncate(s, 40) + " was not granted"
		}
		if allowed == nil && p.o.Scopes != nil && s != "openid" && s != "offline_access" && !slices.Contains(p.o.Scopes, s) {
			return nil, "scope " + urlcheck.Truncate(s, 40) + " is not supported"
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, ""
}

// client returns a registered client, or the client a Client ID Metadata
// Document URL names. The error text is safe to show.
func (p *Provider) client(ctx context.Context, id string) (*client, error) {
	p.mu.Lock()
	c := p.clients[id]
	p.mu.Unlock()
	switch {
	case c != nil:
		return c, nil
	case p.o.ClientIDMetadataDocuments && isMetadataClientID(id):
		return p.metadataClient(ctx, id)
	}
	return nil, errors.New("the application is not registered here")
}

// allowsRedirect matches a redirect URI exactly against the registered
// ones; registered loopback URIs match on any port (RFC 8252 section 7.3)
// for dynamically registered clients; anyLoopback accepts any http loopback
// URI.
func (c *client) allowsRedirect(raw string) bool {
	if raw == "" || strings.ContainsFunc(raw, urlcheck.IsControl) {
		return false
	}
	if slices.Contains(c.redirects, raw) {
		return true
	}
	u, err := url.Parse(raw)
	if err != nil || u.Fragment != "" || strings.Contains(raw, "#") || u.User != nil {
		return false
	}
	loopback := u.Scheme == "http" && urlcheck.IsLoopback(u.Hostname())
	if c.anyLoopback && loopback {
		return true
	}
	if !c.loopbackPort || !loopback {
		return false
	}
	for _, reg := range c.redirects {
		ru, err := url.Parse(reg)
		if err == nil && ru.Scheme == u.Scheme && ru.Hostname() == u.Hostname() &&
			ru.EscapedPath() == u.EscapedPath() && ru.RawQuery == u.RawQuery {
			return true
		}
	}
	return false
}

func (c *client) display() string {
	if c.name != "" {
		return c.name + " (" + c.id + ")"
	}
	return c.id
}

// pageData feeds the page templates.
type pageData struct {
	Request, Client, Username, Error string
	Scopes                           []string
	Resource                         string
	Message                          string
}

func (p *Provider) render(w http.ResponseWriter, status int, t *template.Template, d pageData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = t.Execute(w, d)
}

func (p *Provider) errorPage(w http.ResponseWriter, status int, msg string) {
	p.render(w, status, errorPage, pageData{Message: msg})
}

const pageHead = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{block "title" .}}Sign in{{end}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:26rem;margin:2rem auto;padding:0 1rem}
label{display:block;margin-top:1rem}input{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}
button{margin-top:1rem;padding:.6rem 1.2rem;font-size:1rem}.error{color:#a00}</style>
</head><body>`

var loginPage = template.Must(template.New("login").Parse(pageHead + `
<main><h1>Sign in</h1>
<p><strong>{{.Client}}</strong> asks you to sign in.</p>
{{if .Error}}<p class="error" id="error" role="alert">{{.Error}}</p>{{end}}
<form id="oauthtest-login" method="post" action="authorize">
<input type="hidden" name="request_id" value="{{.Request}}">
<input type="hidden" name="step" value="login">
<label for="username">Username</label>
<input id="username" name="username" type="text" autocomplete="username" autocapitalize="none" required value="{{.Username}}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="login" type="submit">Sign in</button>
</form></main></body></html>`))

var consentPage = template.Must(template.New("consent").Parse(pageHead + `
<main><h1>Allow access?</h1>
<p>Signed in as <strong id="user">{{.Username}}</strong>.</p>
<p><strong id="client">{{.Client}}</strong> asks for:</p>
<ul id="scopes">{{range .Scopes}}<li>{{.}}</li>{{else}}<li>basic access to your account</li>{{end}}</ul>
{{if .Resource}}<p>for use at <code id="resource">{{.Resource}}</code></p>{{end}}
<form id="oauthtest-consent" method="post" action="authorize">
<input type="hidden" name="request_id" value="{{.Request}}">
<input type="hidden" name="step" value="consent">
<button id="approve" type="submit" name="decision" value="approve">Allow</button>
<button id="deny" type="submit" name="decision" value="deny">Deny</button>
</form></main></body></html>`))

var errorPage = template.Must(template.New("error").Parse(pageHead + `
<main><h1>Sign-in error</h1><p class="error" id="error" role="alert">{{.Message}}</p></main></body></html>`))
