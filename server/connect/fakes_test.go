package connect

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeUsers maps verified ID tokens to user keys as the identity adapter
// does: namespace|org|sub.
type fakeUsers struct {
	mu    sync.Mutex
	calls []string // issuerName|clientID|nonce
}

func (f *fakeUsers) FromIDToken(_ context.Context, issuerName, raw, clientID, nonce string) (User, error) {
	f.mu.Lock()
	f.calls = append(f.calls, issuerName+"|"+clientID+"|"+nonce)
	f.mu.Unlock()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return User{}, errors.New("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return User{}, err
	}
	var c struct {
		Sub   string   `json:"sub"`
		Org   string   `json:"org_id"`
		Name  string   `json:"name"`
		Nonce string   `json:"nonce"`
		Roles []string `json:"roles"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return User{}, err
	}
	if c.Nonce != nonce {
		return User{}, errors.New("nonce differs")
	}
	if c.Sub == "mallory" {
		return User{}, errors.New("unknown user")
	}
	return User{Org: c.Org, UserKey: "people|" + c.Org + "|" + c.Sub, Subject: c.Sub, Name: c.Name, Roles: c.Roles}, nil
}

// fakeManager keeps links, flows and connections in memory and follows the
// connections contract (single-use links and states, signed-in user check).
type fakeManager struct {
	mu          sync.Mutex
	now         func() time.Time
	authURL     string // the provider's authorization endpoint
	links       map[string]Key
	flows       map[string]*fakeFlow
	conns       map[Key]Connection
	starts      []string // "<key>|<linkID>|<returnTo>"
	revokes     []string // "<key>|<actor>|<reason>"
	completes   []Key    // signedIn of each CompleteConnect
	listIgnores bool     // List returns every record (the handler must filter)
	listErr     error
	events      []Event // oldest first
	histIgnores bool    // History returns every event (the handler must filter)
	histErr     error
}

// event records an audit event as the real manager does.
func (m *fakeManager) event(typ string, key Key, by Actor, from, to Status, reason string) {
	m.events = append(m.events, Event{Time: m.now(), Type: typ, Key: key, Actor: by, From: from, To: to, Reason: reason})
}

func (m *fakeManager) History(_ context.Context, org, userKey string, limit int) ([]Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.histErr != nil {
		return nil, m.histErr
	}
	var out []Event
	for i := len(m.events) - 1; i >= 0; i-- {
		e := m.events[i]
		if m.histIgnores || (e.Key.Org == org && e.Key.UserKey == userKey) {
			out = append(out, e)
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

type fakeFlow struct {
	key      Key
	returnTo string
	created  time.Time
	used     bool
}

func newFakeManager(now func() time.Time, authURL string) *fakeManager {
	return &fakeManager{now: now, authURL: authURL, links: map[string]Key{}, flows: map[string]*fakeFlow{}, conns: map[Key]Connection{}}
}

func (m *fakeManager) link(k Key) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := "lnk" + rand.Text()
	m.links[id] = k
	return id
}

func (m *fakeManager) set(c Connection) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.conns[c.Key] = c
}

func (m *fakeManager) get(k Key) Connection {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.conns[k]
}

func (m *fakeManager) ResolveLink(_ context.Context, id string) (Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.links[id]
	if !ok {
		return Key{}, ErrFlowExpired
	}
	return k, nil
}

func (m *fakeManager) StartConnect(_ context.Context, key Key, linkID, returnTo string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.starts = append(m.starts, fmt.Sprintf("%s/%s/%s|%s|%s", key.Org, key.UserKey, key.Server, linkID, returnTo))
	if linkID != "" {
		k, ok := m.links[linkID]
		if !ok {
			return "", ErrFlowExpired
		}
		if k != key {
			return "", ErrForbidden
		}
		delete(m.links, linkID)
	}
	state := "st" + rand.Text()
	m.flows[state] = &fakeFlow{key: key, returnTo: returnTo, created: m.now()}
	c := m.conns[key]
	from := c.Status
	c.Key, c.Status, c.Reason = key, StatusPending, "connect_started"
	m.conns[key] = c
	m.event("connect_started", key, Actor{Kind: kindOf(key), ID: key.UserKey}, from, StatusPending, "connect_started")
	return m.authURL + "?client_id=upstream&state=" + url.QueryEscape(state), nil
}

func (m *fakeManager) CompleteConnect(_ context.Context, state, code, _, providerErr string, signedIn Key) (Connection, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.completes = append(m.completes, signedIn)
	f, ok := m.flows[state]
	switch {
	case !ok:
		return Connection{}, "", ErrFlowExpired
	case f.used:
		return Connection{}, f.returnTo, ErrForbidden
	}
	f.used = true
	if m.now().Sub(f.created) > 10*time.Minute {
		return Connection{}, f.returnTo, ErrFlowExpired
	}
	if signedIn != f.key {
		m.event("connect_failed", f.key, Actor{Kind: "user", ID: signedIn.UserKey}, StatusPending, StatusPending, "wrong_user")
		return Connection{}, f.returnTo, ErrForbidden
	}
	if providerErr != "" {
		c := m.conns[f.key]
		c.Status, c.Reason = StatusNeedsAuthorization, "provider_"+providerErr
		m.conns[f.key] = c
		return Connection{}, f.returnTo, errors.New("connections: the provider refused the authorization")
	}
	if code == "" {
		return Connection{}, f.returnTo, ErrForbidden
	}
	now := m.now()
	m.event("connected", f.key, Actor{Kind: kindOf(f.key), ID: f.key.UserKey}, StatusPending, StatusAuthorized, "connected")
	c := Connection{Key: f.key, Mode: "individual", Status: StatusAuthorized, Reason: "connected", Scopes: []string{"repo", "read:user"},
		ConnectedAt: now, UpdatedAt: now, AccessExpiresAt: now.Add(time.Hour), Generation: m.conns[f.key].Generation + 1}
	m.conns[f.key] = c
	return c, f.returnTo, nil
}

func (m *fakeManager) List(_ context.Context, f Filter) ([]Connection, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listErr != nil {
		return nil, m.listErr
	}
	var out []Connection
	for k, c := range m.conns {
		if m.listIgnores || ((f.Org == "" || f.Org == k.Org) && (!f.ServiceAccounts || k.UserKey == "") &&
			(f.ServiceAccounts || f.UserKey == "" || f.UserKey == k.UserKey) && (f.Server == "" || f.Server == k.Server)) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (m *fakeManager) Revoke(_ context.Context, key Key, by Actor, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.revokes = append(m.revokes, fmt.Sprintf("%s/%s/%s|%s:%s|%s", key.Org, key.UserKey, key.Server, by.Kind, by.ID, reason))
	c, ok := m.conns[key]
	if !ok {
		return ErrNotFound
	}
	m.event("revoked", key, by, c.Status, StatusRevoked, reason)
	c.Status, c.Reason = StatusRevoked, reason
	m.conns[key] = c
	return nil
}

func kindOf(k Key) string {
	if k.UserKey == "" {
		return "admin"
	}
	return "user"
}

var _ Manager = (*fakeManager)(nil)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// env is the connect handler on a real TLS listener with a real OIDC issuer
// and a fake connections manager.
type env struct {
	t        *testing.T
	iss      *testIssuer
	mgr      *fakeManager
	users    *fakeUsers
	clock    *clock
	logs     *syncBuffer
	h        *Handler
	srv      *httptest.Server
	provider *httptest.Server // the upstream provider's authorization endpoint (records hits)

	mu     sync.Mutex
	bodies []string // every response body any browser received
}

const (
	testClientID     = "mcpauthz-web"
	testClientSecret = "login-client-secret-xyz"
)

func newEnv(t *testing.T, mods ...func(*Config, *Options)) *env {
	t.Helper()
	e := &env{t: t, users: &fakeUsers{}, logs: &syncBuffer{}, clock: &clock{t: time.Now()}}
	e.iss = newTestIssuer(t, testClientID, testClientSecret)
	e.provider = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "provider consent page")
	}))
	t.Cleanup(e.provider.Close)
	e.mgr = newFakeManager(e.clock.Now, e.provider.URL+"/authorize")
	e.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.h.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	t.Setenv("CONNECT_TEST_CLIENT_SECRET", testClientSecret)
	cfg := Config{Login: LoginConfig{Issuer: "people", ClientID: testClientID, ClientSecret: secretEnv("CONNECT_TEST_CLIENT_SECRET")}}
	opts := Options{
		PublicURL:      e.srv.URL,
		LoginIssuerURL: e.iss.URL(),
		Servers: []ServerInfo{
			{ID: "github", Name: "GitHub", Mode: "individual"},
			{ID: "drive", Name: "Google Drive", Mode: "individual"},
			{ID: "shared", Name: "Shared Box", Mode: "service_account"},
		},
		Manager: e.mgr,
		Users:   e.users,
		Logger:  slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:     e.clock.Now,
	}
	for _, m := range mods {
		m(&cfg, &opts)
	}
	h, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.h = h
	return e
}

// browser is a cookie-keeping HTTP client that does not follow redirects
// by itself, so each hop can be checked.
type browser struct {
	e *env
	c *http.Client
}

type resp struct {
	*http.Response
	body string
}

func (r *resp) location() string { return r.Header.Get("Location") }

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	base := e.srv.Client().Transport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{RootCAs: e.srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	return &browser{e: e, c: &http.Client{
		Jar:           jar,
		Transport:     base,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(req *http.Request) *resp {
	b.e.t.Helper()
	res, err := b.c.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	b.e.mu.Lock()
	b.e.bodies = append(b.e.bodies, string(body))
	b.e.mu.Unlock()
	return &resp{Response: res, body: string(body)}
}

// get fetches a path on the connect server or an absolute URL.
func (b *browser) get(target string) *resp {
	b.e.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = b.e.srv.URL + target
	}
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return b.do(req)
}

// post sends a form with the given Origin ("" = none, "self" = ours).
func (b *browser) post(path string, form url.Values, origin string) *resp {
	b.e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	switch origin {
	case "":
	case "self":
		req.Header.Set("Origin", b.e.srv.URL)
	default:
		req.Header.Set("Origin", origin)
	}
	return b.do(req)
}

// follow follows redirects (across hosts) until a non-redirect answer.
func (b *browser) follow(r *resp) *resp {
	b.e.t.Helper()
	for i := 0; i < 10 && r.StatusCode >= 300 && r.StatusCode < 400; i++ {
		loc, err := r.Request.URL.Parse(r.location())
		if err != nil {
			b.e.t.Fatal(err)
		}
		r = b.get(loc.String())
	}
	return r
}

// login signs the browser in as u and returns the final page.
func (b *browser) login(u idUser) *resp {
	b.e.t.Helper()
	b.e.iss.setUser(u)
	r := b.follow(b.get("/connect/login?return=" + url.QueryEscape("/connect/")))
	if r.StatusCode != http.StatusOK || !strings.Contains(r.body, "Your tool authorizations") {
		b.e.t.Fatalf("login as %s: %d %s", u.Sub, r.StatusCode, r.body)
	}
	return r
}

// csrf extracts the CSRF token from a page.
func csrfFrom(t *testing.T, body string) string {
	t.Helper()
	const marker = `name="csrf" value="`
	i := strings.Index(body, marker)
	if i < 0 {
		t.Fatalf("no csrf field in page: %s", body)
	}
	rest := body[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

var (
	alice   = idUser{Sub: "alice", Org: "acme", Name: "Alice Example"}
	bob     = idUser{Sub: "bob", Org: "acme", Name: "Bob Example"}
	aliceKB = Key{Org: "acme", UserKey: "people|acme|alice"}
	bobKB   = Key{Org: "acme", UserKey: "people|acme|bob"}
)

func keyFor(base Key, server string) Key { base.Server = server; return base }
