package connect

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	sessionCookie = "mcpauthz-session"
	loginCookie   = "mcpauthz-login-" // + first 16 characters of the state
	flowCookie    = "mcpauthz-flow-"  // + 16 hex digits of SHA-256(provider state)
	// flowCookieTTL outlives the connections manager's flow TTL, which decides.
	flowCookieTTL = time.Hour
	// maxCookieValue keeps a sealed cookie within what browsers store.
	maxCookieValue = 3800
)

// sealer encrypts and authenticates cookie values with AES-256-GCM. The
// cookie's name is the associated data, so a value cannot move between
// cookies (a login cookie is never a session).
type sealer struct{ aead cipher.AEAD }

// newSealer derives the cookie and CSRF keys from the configured key.
func newSealer(key []byte) (*sealer, []byte, error) {
	ck, err := hkdf.Key(sha256.New, key, nil, "mcpauthz connect cookie v1", 32)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: derive cookie key: %w", err)
	}
	csrf, err := hkdf.Key(sha256.New, key, nil, "mcpauthz connect csrf v1", 32)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: derive csrf key: %w", err)
	}
	block, err := aes.NewCipher(ck)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: cookie cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: cookie cipher: %w", err)
	}
	return &sealer{aead: aead}, csrf, nil
}

func (s *sealer) seal(name string, v any) (string, error) {
	pt, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("connect: encode cookie: %w", err)
	}
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	out := base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, pt, []byte(name)))
	if len(out) > maxCookieValue {
		return "", errors.New("connect: cookie too large")
	}
	return out, nil
}

func (s *sealer) open(name, value string, v any) error {
	if len(value) > maxCookieValue {
		return errors.New("connect: cookie too large")
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return errors.New("connect: malformed cookie")
	}
	ns := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, raw[:ns], raw[ns:], []byte(name))
	if err != nil {
		return errors.New("connect: cookie does not authenticate")
	}
	if err := json.Unmarshal(pt, v); err != nil {
		return errors.New("connect: malformed cookie")
	}
	return nil
}

// session is the signed-in user, sealed in the session cookie.
type session struct {
	ID      string `json:"sid"` // random; binds CSRF tokens and sign-out
	Org     string `json:"org"`
	UserKey string `json:"uk"`
	Subject string `json:"sub"`
	Name    string `json:"name,omitempty"`
	Issued  int64  `json:"iat"`
	Expires int64  `json:"exp"`
	// Admin says connect.admins matched at sign-in; it counts only while
	// AdminRule is the fingerprint of the rule in force (a changed rule
	// takes administrators' rights away until they sign in again).
	Admin     bool   `json:"adm,omitempty"`
	AdminRule string `json:"ar,omitempty"`
}

// loginState is one pending sign-in at the login issuer, sealed in a
// short-lived cookie named after the state.
type loginState struct {
	State    string `json:"st"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Return   string `json:"r"`
	Expires  int64  `json:"exp"`
}

// flowState binds a provider connect flow to the browser that started it
// and remembers its server (the callback's state alone does not say which).
type flowState struct {
	State   string `json:"st"`
	Org     string `json:"org"`
	UserKey string `json:"uk"`
	Server  string `json:"srv"`
	// Shared: the flow is for the organization's service-account
	// connection (the key has no user), started by an administrator.
	Shared  bool  `json:"sa,omitempty"`
	Expires int64 `json:"exp"`
}

func flowCookieName(state string) string {
	sum := sha256.Sum256([]byte(state))
	return flowCookie + hex.EncodeToString(sum[:8])
}

// rememberFlow sets the flow cookie for the state in the provider's
// authorization URL (nothing when it has none).
func (h *Handler) rememberFlow(w http.ResponseWriter, s *session, key Key, authURL string) {
	u, err := url.Parse(authURL)
	if err != nil {
		return
	}
	state := u.Query().Get("state")
	if state == "" {
		return
	}
	name := h.cookieName(flowCookieName(state))
	v, err := h.cookies.seal(name, flowState{State: state, Org: s.Org, UserKey: s.UserKey, Server: key.Server, Shared: key.UserKey == "", Expires: h.now().Add(flowCookieTTL).Unix()})
	if err != nil {
		return
	}
	h.setCookie(w, name, v, flowCookieTTL)
}

// flowCookie returns (and clears) the flow cookie of state.
func (h *Handler) flowCookie(w http.ResponseWriter, r *http.Request, state string) (flowState, bool) {
	name := h.cookieName(flowCookieName(state))
	c, err := r.Cookie(name)
	if err != nil {
		return flowState{}, false
	}
	h.clearCookie(w, name)
	var f flowState
	if h.cookies.open(name, c.Value, &f) != nil || subtle.ConstantTimeCompare([]byte(f.State), []byte(state)) != 1 || h.now().Unix() >= f.Expires {
		return flowState{}, false
	}
	return f, true
}

// cookieName applies the __Host- prefix unless cookies are insecure.
func (h *Handler) cookieName(base string) string {
	if h.cfg.InsecureCookies {
		return base
	}
	return "__Host-" + base
}

func (h *Handler) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   !h.cfg.InsecureCookies,
		SameSite: http.SameSiteLaxMode,
	}
	if maxAge > 0 {
		c.MaxAge = int(maxAge / time.Second)
		c.Expires = h.now().Add(maxAge)
	} else {
		c.MaxAge = -1
		c.Expires = time.Unix(1, 0)
	}
	http.SetCookie(w, c)
}

func (h *Handler) clearCookie(w http.ResponseWriter, name string) { h.setCookie(w, name, "", 0) }

// session returns the request's valid session, or nil.
func (h *Handler) session(r *http.Request) *session {
	name := h.cookieName(sessionCookie)
	c, err := r.Cookie(name)
	if err != nil {
		return nil
	}
	var s session
	if err := h.cookies.open(name, c.Value, &s); err != nil {
		return nil
	}
	now := h.now()
	if s.ID == "" || s.UserKey == "" || now.Unix() >= s.Expires || s.Issued > now.Add(time.Minute).Unix() {
		return nil
	}
	if h.loggedOut.has(s.ID, now) {
		return nil
	}
	return &s
}

// startSession sets the session cookie for u; admin is what
// connect.admins said at sign-in.
func (h *Handler) startSession(w http.ResponseWriter, u User, admin bool) error {
	now := h.now()
	s := session{
		ID: randomString(16), Org: u.Org, UserKey: u.UserKey, Subject: u.Subject, Name: truncateRunes(u.Name, 128),
		Issued: now.Unix(), Expires: now.Add(h.cfg.SessionTTL).Unix(),
	}
	if admin {
		s.Admin, s.AdminRule = true, h.admins.fingerprint
	}
	name := h.cookieName(sessionCookie)
	v, err := h.cookies.seal(name, s)
	if err != nil {
		return err
	}
	h.setCookie(w, name, v, h.cfg.SessionTTL)
	return nil
}

// csrfToken is the CSRF token of a session: HMAC of its id.
func (h *Handler) csrfToken(s *session) string {
	m := hmac.New(sha256.New, h.csrfKey)
	m.Write([]byte("csrf\x00" + s.ID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkPOST refuses a state-changing request that is not from one of our
// own pages: a foreign (or missing) Origin/Referer or a wrong CSRF token.
// It returns a reason for the log, "" when the request passes.
func (h *Handler) checkPOST(r *http.Request, s *session) string {
	if o := r.Header.Get("Origin"); o != "" {
		if !strings.EqualFold(o, h.origin) {
			return "foreign_origin"
		}
	} else if ref := r.Header.Get("Referer"); ref != "" {
		o, err := originOf(ref)
		if err != nil || o != strings.ToLower(h.origin) {
			return "foreign_referer"
		}
	} else {
		return "no_origin"
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 16<<10)
	got := r.PostFormValue("csrf")
	want := h.csrfToken(s)
	if got == "" {
		return "csrf_missing"
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return "csrf_mismatch"
	}
	return ""
}

// usedSet remembers ids until their expiry (single-use login states,
// signed-out sessions). Bounded: it sweeps expired ids as it grows.
type usedSet struct {
	mu  sync.Mutex
	ids map[string]time.Time
}

const maxUsed = 100_000

func newUsedSet() *usedSet { return &usedSet{ids: map[string]time.Time{}} }

// add records id until exp; false when it was already there (a replay).
func (u *usedSet) add(id string, exp, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if t, ok := u.ids[id]; ok && now.Before(t) {
		return false
	}
	if len(u.ids) >= maxUsed {
		for k, t := range u.ids {
			if !now.Before(t) {
				delete(u.ids, k)
			}
		}
	}
	if len(u.ids) >= maxUsed {
		// Still full of live ids: refuse rather than forget one (fail closed).
		return false
	}
	u.ids[id] = exp
	return true
}

func (u *usedSet) has(id string, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	t, ok := u.ids[id]
	return ok && now.Before(t)
}

// randomString returns n random bytes, base64url.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func truncateRunes(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}

// safeReturn accepts a same-origin path (with optional query) and refuses
// everything else: absolute URLs, scheme-relative //host, /\host, control
// characters, backslashes anywhere, and paths that are not absolute.
func safeReturn(raw string) (string, bool) {
	if raw == "" || len(raw) > 2048 || raw[0] != '/' {
		return "", false
	}
	if len(raw) > 1 && (raw[1] == '/' || raw[1] == '\\') {
		return "", false
	}
	if strings.ContainsAny(raw, "\\#") || strings.ContainsFunc(raw, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", false
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") ||
		strings.HasPrefix(u.Path, "//") || strings.ContainsFunc(u.Path, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return "", false
	}
	return raw, true
}
