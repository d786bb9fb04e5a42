package devidp

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/httpjson"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// MaxIntrospectionForm bounds the body of an introspection request (8 KiB).
const MaxIntrospectionForm = 8 << 10

// IssueOpaque issues an opaque access token: OpaqueTokenPrefix followed by
// 32 random bytes in base64url. Its claims (with iss, iat, exp and jti
// filled in as by Mint, and WithExpiry honoured) are kept in memory and
// returned by the introspection endpoint until exp (a token minted without
// exp, by setting "exp": nil, stays active) or Revoke.
func (i *Issuer) IssueOpaque(claims map[string]any, opts ...MintOption) (string, error) {
	o := mintOpts{}
	for _, f := range opts {
		f(&o)
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("devidp: random token: %w", err)
	}
	tok := i.opts.OpaqueTokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	filled := i.fill(claims, o.expiry)
	i.mu.Lock()
	if i.opaque == nil {
		i.opaque = map[string]map[string]any{}
	}
	i.opaque[tok] = filled
	i.mu.Unlock()
	return tok, nil
}

// MustIssueOpaque is IssueOpaque that panics on error, for tests.
func (i *Issuer) MustIssueOpaque(claims map[string]any, opts ...MintOption) string {
	t, err := i.IssueOpaque(claims, opts...)
	if err != nil {
		panic(err)
	}
	return t
}

// Revoke makes an opaque token inactive. It reports whether the token was
// known.
func (i *Issuer) Revoke(token string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	_, ok := i.opaque[token]
	delete(i.opaque, token)
	return ok
}

// IntrospectionRequests counts requests served on /introspect (including
// refused ones).
func (i *Issuer) IntrospectionRequests() int { return int(i.introspections.Load()) }

// introspect serves POST /introspect (RFC 7662): the caller authenticates
// as one of Options.IntrospectionClients with client_secret_basic or
// client_secret_post (a client whose secret is "" sends only client_id);
// the answer is the token's claims with "active": true, or just
// {"active": false} for an unknown, revoked or expired token.
func (i *Issuer) introspect(w http.ResponseWriter, r *http.Request) {
	i.introspections.Add(1)
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/x-www-form-urlencoded" {
		writeDevError(w, http.StatusBadRequest, "invalid_request", "content type must be application/x-www-form-urlencoded")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxIntrospectionForm)
	if err := r.ParseForm(); err != nil {
		writeDevError(w, http.StatusBadRequest, "invalid_request", "malformed or oversized form body")
		return
	}
	for k, vs := range r.PostForm {
		if len(vs) > 1 {
			writeDevError(w, http.StatusBadRequest, "invalid_request", "parameter "+urlcheck.Truncate(k, 40)+" repeated")
			return
		}
	}
	if err := i.authenticateClient(r); err != nil {
		w.Header().Set("WWW-Authenticate", `Basic realm="devidp"`)
		writeDevError(w, http.StatusUnauthorized, "invalid_client", err.Error())
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeDevError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	i.mu.RLock()
	claims, ok := i.opaque[tok]
	i.mu.RUnlock()
	if !ok {
		httpjson.Write(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	if exp, isNum := unixOf(claims["exp"]); isNum && !i.opts.Now().Before(exp) {
		httpjson.Write(w, http.StatusOK, map[string]any{"active": false})
		return
	}
	resp := map[string]any{"token_type": "Bearer"}
	maps.Copy(resp, claims)
	resp["active"] = true
	httpjson.Write(w, http.StatusOK, resp)
}

// authenticateClient checks client_secret_basic or client_secret_post (not
// both) against Options.IntrospectionClients.
func (i *Issuer) authenticateClient(r *http.Request) error {
	user, pass, basic := r.BasicAuth()
	formID, formSecret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	var id, sec string
	switch {
	case basic && (formSecret != "" || formID != ""):
		return errors.New("more than one client authentication method")
	case basic:
		var err1, err2 error
		id, err1 = url.QueryUnescape(user)
		sec, err2 = url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return errors.New("malformed basic credentials")
		}
	default:
		id, sec = formID, formSecret
	}
	want, ok := i.opts.IntrospectionClients[id]
	if id == "" || !ok {
		return errors.New("unknown client")
	}
	if subtle.ConstantTimeCompare([]byte(sec), []byte(want)) != 1 {
		return errors.New("client authentication failed")
	}
	return nil
}

// unixOf reads a NumericDate given as any Go number.
func unixOf(v any) (time.Time, bool) {
	switch n := v.(type) {
	case int64:
		return time.Unix(n, 0), true
	case int:
		return time.Unix(int64(n), 0), true
	case float64:
		return time.Unix(int64(n), 0), true
	}
	return time.Time{}, false
}
