package oauthtest

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/randid"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// pkceVerifier is an RFC 7636 code_verifier.
var pkceVerifier = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// tokenResponse is an RFC 6749 section 5.1 body (plus the OIDC id_token).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// errAuthClient is why client authentication failed (the text is safe to
// return: it never echoes a secret).
type errAuthClient struct{ msg string }

func (e errAuthClient) Error() string { return e.msg }

// readForm parses an application/x-www-form-urlencoded POST body of at
// most maxForm bytes and refuses repeated parameters. It writes the error.
func readForm(w http.ResponseWriter, r *http.Request) bool {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/x-www-form-urlencoded" {
		writeError(w, http.StatusBadRequest, "invalid_request", "content type must be application/x-www-form-urlencoded")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "malformed or oversized form body")
		return false
	}
	if len(r.URL.RawQuery) > 0 {
		writeError(w, http.StatusBadRequest, "invalid_request", "parameters belong in the body, not the query")
		return false
	}
	for k, vs := range r.PostForm {
		if len(vs) > 1 {
			writeError(w, http.StatusBadRequest, "invalid_request", "parameter "+urlcheck.Truncate(k, 40)+" is repeated")
			return false
		}
	}
	return true
}

// authenticate identifies the client: client_secret_basic,
// client_secret_post, or none (client_id alone, public clients only).
func (p *Provider) authenticate(r *http.Request) (*client, error) {
	user, pass, basic := r.BasicAuth()
	formID, formSecret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	var id, secret string
	switch {
	case basic && formSecret != "":
		return nil, errAuthClient{"more than one client authentication method"}
	case basic:
		var err1, err2 error
		id, err1 = url.QueryUnescape(user)
		secret, err2 = url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return nil, errAuthClient{"malformed basic credentials"}
		}
		if formID != "" && formID != id {
			return nil, errAuthClient{"client_id does not match the authenticated client"}
		}
	default:
		id, secret = formID, formSecret
	}
	c, err := p.client(r.Context(), id)
	if err != nil {
		return nil, errAuthClient{"unknown client: " + err.Error()}
	}
	if c.public {
		if secret != "" || basic && pass != "" {
			return nil, errAuthClient{"a public client has no secret"}
		}
		return c, nil
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
		return nil, errAuthClient{"client authentication failed"}
	}
	return c, nil
}

// authenticateOrFail authenticates the client or answers 401
// invalid_client (RFC 6749 section 5.2) and returns nil.
func (p *Provider) authenticateOrFail(w http.ResponseWriter, r *http.Request) *client {
	c, err := p.authenticate(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauthtest"`)
		writeError(w, http.StatusUnauthorized, "invalid_client", err.Error())
		return nil
	}
	return c
}

// faults applies Fault5xx and FaultSlow; it reports whether to go on. Call
// it after reading the body, so the server notices a caller that gives up:
// a request abandoned while slow is dropped, not processed.
func (p *Provider) faults(w http.ResponseWriter, r *http.Request) bool {
	switch p.currentFault() {
	case Fault5xx:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the provider is failing on purpose (Fault5xx)")
		return false
	case FaultSlow:
		t := time.NewTimer(p.o.SlowDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		return r.Context().Err() == nil
	}
	return true
}

// token serves POST /token: authorization_code (with PKCE) and
// refresh_token grants.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if !readForm(w, r) || !p.faults(w, r) {
		return
	}
	c := p.authenticateOrFail(w, r)
	if c == nil {
		return
	}
	gt := r.PostForm.Get("grant_type")
	if gt != "authorization_code" && gt != "refresh_token" {
		if gt == "" {
			writeError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
			return
		}
		writeError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
		return
	}
	if p.currentFault() == FaultInvalidGrant {
		writeError(w, http.StatusBadRequest, "invalid_grant", "the grant is invalid (FaultInvalidGrant)")
		return
	}
	if gt == "authorization_code" {
		p.codeGrant(w, r, c)
		return
	}
	p.refreshGrant(w, r, c)
}

func (p *Provider) codeGrant(w http.ResponseWriter, r *http.Request, c *client) {
	f := r.PostForm
	code, verifier := f.Get("code"), f.Get("code_verifier")
	if code == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "code is required")
		return
	}
	if verifier == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "code_verifier is required (PKCE)")
		return
	}
	if !pkceVerifier.MatchString(verifier) {
		writeError(w, http.StatusBadRequest, "invalid_request", "code_verifier must be 43-128 unreserved characters")
		return
	}
	now := p.o.Now()
	p.mu.Lock()
	rec, ok := p.codes[hashToken(code)]
	switch {
	case !ok || !now.Before(rec.exp):
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_grant", "the code is unknown or expired")
		return
	case rec.used:
		// RFC 6749 section 4.1.2: revoke what the code produced.
		rec.g.revoked = true
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_grant", "the code was already used; tokens issued from it are revoked")
		return
	case rec.g.clientID != c.id:
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_grant", "the code was issued to another client")
		return
	case f.Get("redirect_uri") != rec.redirectURI:
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri does not match the authorization request")
		return
	case !s256Matches(verifier, rec.challenge):
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
		return
	case f.Has("resource") && f.Get("resource") != rec.g.resource:
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_target", "resource differs from the one authorized")
		return
	case rec.g.revoked:
		p.mu.Unlock()
		writeError(w, http.StatusBadRequest, "invalid_grant", "the grant was revoked")
		return
	}
	rec.used = true
	p.mu.Unlock()
	withRefresh := p.currentFault() != FaultNoRefreshToken
	resp, err := p.issue(rec.g, rec.g.scopes, withRefresh, rec.nonce, true)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "could not sign a token")
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (p *Provider) refreshGrant(w http.ResponseWriter, r *http.Request, c *client) {
	f := r.PostForm
	rt := f.Get("refresh_token")
	if rt == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "refresh_token is required")
		return
	}
	noRefresh := p.currentFault() == FaultNoRefreshToken || p.o.OmitRefreshOnRefresh
	rotate := p.o.RotateRefresh && !noRefresh
	now := p.o.Now()
	p.mu.Lock()
	rec, ok := p.refresh[hashToken(rt)]
	code, msg := "invalid_grant", ""
	scopes := []string(nil)
	switch {
	case !ok || !now.Before(rec.exp):
		msg = "the refresh token is unknown or expired"
	case rec.g.clientID != c.id:
		msg = "the refresh token was issued to another client"
	case rec.rotated:
		rec.g.revoked = true // reuse of a rotated token: revoke the family
		msg = "the refresh token was already used; the grant is revoked"
	case rec.g.revoked:
		msg = "the grant was revoked"
	case f.Has("resource") && f.Get("resource") != rec.g.resource:
		code, msg = "invalid_target", "resource differs from the one authorized"
	default:
		scopes = rec.g.scopes
		if f.Has("scope") {
			var desc string
			if scopes, desc = p.checkScopes(f.Get("scope"), rec.g.scopes); desc != "" {
				code, msg = "invalid_scope", desc
			}
		}
		if msg == "" && rotate {
			rec.rotated = true // from now on, presenting rt again is reuse
		}
	}
	p.mu.Unlock()
	if msg != "" {
		writeError(w, http.StatusBadRequest, code, msg)
		return
	}
	resp, err := p.issue(rec.g, scopes, rotate, "", true)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "could not sign a token")
		return
	}
	if !rotate && !noRefresh {
		resp.RefreshToken = rt // not rotating: the same refresh token stays valid
	}
	writeJSON(w, http.StatusOK, resp)
}

// s256Matches checks an RFC 7636 S256 verifier against its challenge.
func s256Matches(verifier, challenge string) bool {
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// issue creates an access token (and a refresh token when withRefresh,
// and an ID token when idToken and scope has openid) for g.
func (p *Provider) issue(g *grant, scopes []string, withRefresh bool, nonce string, idToken bool) (*tokenResponse, error) {
	now := p.o.Now()
	ttl := time.Duration(p.accessTTL.Load())
	exp := now.Add(ttl)
	resp := &tokenResponse{TokenType: "Bearer", ExpiresIn: int64(ttl.Round(time.Second) / time.Second), Scope: strings.Join(scopes, " ")}
	if resp.ExpiresIn < 1 {
		resp.ExpiresIn = 1
	}
	if p.o.JWTAccessTokens {
		aud := g.resource
		if aud == "" {
			aud = g.clientID
		}
		claims := p.userClaims(g.user)
		if claims == nil {
			claims = map[string]any{}
		}
		maps.Copy(claims, map[string]any{
			"iss": p.URL(), "sub": g.user, "aud": aud, "iat": now.Unix(), "exp": exp.Unix(),
			"client_id": g.clientID, "jti": randid.Hex(16), "auth_time": g.authTime.Unix(),
		})
		if len(scopes) > 0 {
			claims["scope"] = strings.Join(scopes, " ")
		}
		tok, err := p.sign(claims, accessTokenJWTType)
		if err != nil {
			return nil, err
		}
		resp.AccessToken = tok
	} else {
		resp.AccessToken = randToken("oat_")
	}
	if idToken && slices.Contains(scopes, "openid") {
		claims := p.userClaims(g.user)
		if claims == nil {
			claims = map[string]any{}
		}
		maps.Copy(claims, map[string]any{
			"iss": p.URL(), "sub": g.user, "aud": g.clientID, "azp": g.clientID,
			"iat": now.Unix(), "exp": exp.Unix(), "auth_time": g.authTime.Unix(),
			"preferred_username": g.user,
		})
		if nonce != "" {
			claims["nonce"] = nonce
		}
		tok, err := p.sign(claims, idTokenTyp)
		if err != nil {
			return nil, err
		}
		resp.IDToken = tok
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.access[hashToken(resp.AccessToken)] = &accessRec{g: g, scopes: slices.Clone(scopes), exp: exp}
	if withRefresh {
		resp.RefreshToken = randToken("ort_")
		p.refresh[hashToken(resp.RefreshToken)] = &refreshRec{g: g, exp: now.Add(p.o.RefreshTTL)}
	}
	p.sweepLocked()
	return resp, nil
}

// revoke serves POST /revoke (RFC 7009): an access token is revoked alone;
// a refresh token revokes its whole grant. Unknown tokens answer 200.
func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	if !readForm(w, r) || !p.faults(w, r) {
		return
	}
	c := p.authenticateOrFail(w, r)
	if c == nil {
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	switch r.PostForm.Get("token_type_hint") {
	case "", "access_token", "refresh_token":
	default:
		writeError(w, http.StatusBadRequest, "unsupported_token_type", "token_type_hint must be access_token or refresh_token")
		return
	}
	h := hashToken(tok)
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.access[h]; ok {
		if a.g.clientID != c.id {
			writeError(w, http.StatusBadRequest, "invalid_request", "the token was not issued to this client")
			return
		}
		delete(p.access, h)
	}
	if rt, ok := p.refresh[h]; ok {
		if rt.g.clientID != c.id {
			writeError(w, http.StatusBadRequest, "invalid_request", "the token was not issued to this client")
			return
		}
		rt.g.revoked = true
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// userinfo serves the OIDC userinfo endpoint for a valid access token.
func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	tok, err := bearer(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_request"`)
		writeError(w, http.StatusUnauthorized, "invalid_request", err.Error())
		return
	}
	ti, ok := p.AccessTokenInfo(tok)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "invalid_token", "the access token is invalid, expired or revoked")
		return
	}
	claims := p.userClaims(ti.Username)
	if claims == nil {
		claims = map[string]any{}
	}
	claims["sub"] = ti.Username
	claims["preferred_username"] = ti.Username
	writeJSON(w, http.StatusOK, claims)
}

func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", errors.New("a bearer token in the Authorization header is required")
	}
	return tok, nil
}
