package connections

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

const (
	testClientID     = "mcpauthz-test"
	testClientSecret = "cs-SECRET-client-7f3a9"
	testSecretEnv    = "CONNECTIONS_TEST_CLIENT_SECRET"
	testPublicURL    = "http://127.0.0.1:8443"
	testServer       = "github"
)

var (
	ctx   = context.Background()
	alice = Key{Org: "acme", UserKey: "https://idp.example.com|alice", Server: testServer}
	bob   = Key{Org: "acme", UserKey: "https://idp.example.com|bob", Server: testServer}
	t0    = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
)

// syncBuffer collects log output from concurrent goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// faultStore is the real store with injectable write/read failures (a
// fault injector, not a mock: every call that is not failed reaches SQLite).
type faultStore struct {
	store.Store
	failWrites, failReads atomic.Bool
}

var errInjected = errors.New("injected store failure: disk I/O error")

func (f *faultStore) Get(ctx context.Context, key string) ([]byte, store.Version, error) {
	if f.failReads.Load() {
		return nil, 0, errInjected
	}
	return f.Store.Get(ctx, key)
}

func (f *faultStore) PutIfAbsent(ctx context.Context, key string, v []byte, ttl time.Duration) (store.Version, bool, error) {
	if f.failWrites.Load() {
		return 0, false, errInjected
	}
	return f.Store.PutIfAbsent(ctx, key, v, ttl)
}

func (f *faultStore) CompareAndSwap(ctx context.Context, key string, old store.Version, v []byte, ttl time.Duration) (store.Version, error) {
	if f.failWrites.Load() {
		return 0, errInjected
	}
	return f.Store.CompareAndSwap(ctx, key, old, v, ttl)
}

func (f *faultStore) Delete(ctx context.Context, key string, old store.Version) error {
	if f.failWrites.Load() {
		return errInjected
	}
	return f.Store.Delete(ctx, key, old)
}

type envOpts struct {
	provider   oauthtest.Options
	mode       string
	cfg        Config
	prov       func(issuer string, p *ProviderConfig)
	noRegister bool
}

// env is one test world: a real OAuth provider over HTTP, a SQLite store,
// a fake clock and a Manager.
type env struct {
	t      *testing.T
	p      *oauthtest.Provider
	issuer string
	path   string
	sqlite store.Store
	fs     *faultStore
	ring   *store.KeyRing
	keys   testKeys
	clock  *fakeclock.Clock
	logs   *syncBuffer
	m      *Manager
	pc     ProviderConfig
	mode   string

	evMu   sync.Mutex
	events []Event
}

// testKeys are raw ring keys by id, kept to build rings with several keys.
type testKeys map[string][]byte

// with returns a copy of k plus a random key for each id.
func (k testKeys) with(ids ...string) testKeys {
	out := testKeys{}
	for id, b := range k {
		out[id] = b
	}
	for _, id := range ids {
		b := make([]byte, store.KeySize)
		_, _ = rand.Read(b)
		out[id] = b
	}
	return out
}

func (k testKeys) ring(t testing.TB, primary string) *store.KeyRing {
	t.Helper()
	r, err := store.NewKeyRing(primary, k)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func newKeyRing(t testing.TB, primary string, ids ...string) *store.KeyRing {
	return testKeys{}.with(ids...).ring(t, primary)
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	t.Setenv(testSecretEnv, testClientSecret)
	po := o.provider
	if po.Clients == nil {
		po.Clients = map[string]string{testClientID: testClientSecret}
	}
	po.AnyLoopbackRedirect = true
	p := oauthtest.New(po)
	issuer, err := p.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	e := &env{t: t, p: p, issuer: issuer, clock: fakeclock.New(t0), logs: &syncBuffer{}, mode: o.mode}
	if e.mode == "" {
		e.mode = ModeIndividual
	}
	e.path = filepath.Join(t.TempDir(), "state.db")
	s, err := store.OpenSQLite(ctx, e.path, store.Options{Now: e.clock.Now, PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	e.sqlite = s
	e.fs = &faultStore{Store: s}
	e.keys = testKeys{}.with("k1")
	e.ring = e.keys.ring(t, "k1")
	e.pc = ProviderConfig{
		Issuer: issuer, ClientID: testClientID, ClientSecret: &secret.Ref{Env: testSecretEnv},
		Scopes: []string{"repo", "read:user"}, AuthorizeParams: map[string]string{"access_type": "offline", "prompt": "consent"},
		Resource: "https://api.github.example/", Timeout: 5 * time.Second,
	}
	if o.prov != nil {
		o.prov(issuer, &e.pc)
	}
	cfg := o.cfg
	if cfg.PublicURL == "" {
		cfg.PublicURL = testPublicURL
	}
	e.m = e.manager(cfg, e.ring)
	return e
}

// manager builds another Manager on the same store (a replica, or a restart).
func (e *env) manager(cfg Config, ring store.Cipher) *Manager {
	e.t.Helper()
	return e.managerWith(e.fs, cfg, ring)
}

// managerWith builds a Manager on st (e.g. the SQLite store without the
// fault injector: another process).
func (e *env) managerWith(st store.Store, cfg Config, ring store.Cipher) *Manager {
	e.t.Helper()
	if cfg.PublicURL == "" {
		cfg.PublicURL = testPublicURL
	}
	m, err := New(ctx, cfg, Options{
		Store: st, Cipher: ring, Now: e.clock.Now,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Audit: func(ev Event) {
			e.evMu.Lock()
			e.events = append(e.events, ev)
			e.evMu.Unlock()
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := m.Register(testServer, e.mode, e.pc); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(m.wg.Wait)
	return m
}

// connect runs the whole connect flow for key as provider user.
func (e *env) connect(m *Manager, key Key, user string) Connection {
	e.t.Helper()
	cb := e.authorize(m, key, user)
	q := cb.Query()
	c, ret, err := m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), q.Get("error"), key)
	if err != nil {
		e.t.Fatalf("CompleteConnect: %v", err)
	}
	if ret != "/connect/" || c.Status != StatusAuthorized {
		e.t.Fatalf("CompleteConnect = %+v, %q", c, ret)
	}
	return c
}

// authorize starts a flow and signs in at the provider; it returns the
// callback URL the provider redirected to.
func (e *env) authorize(m *Manager, key Key, user string, opts ...oauthtest.LoginOption) *url.URL {
	e.t.Helper()
	u, err := m.StartConnect(ctx, key, "", "/connect/")
	if err != nil {
		e.t.Fatalf("StartConnect: %v", err)
	}
	cb, err := oauthtest.Authorize(ctx, u, user, user, opts...)
	if err != nil {
		e.t.Fatalf("Authorize: %v", err)
	}
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != testPublicURL+"/connect/callback" {
		e.t.Fatalf("provider redirected to %s", got)
	}
	return cb
}

// tokens returns the tokens sealed in key's record (for leak checks and
// crash reasoning).
func (e *env) tokens(key Key) tokens {
	e.t.Helper()
	r := e.record(key)
	if len(r.sealed) == 0 {
		return tokens{}
	}
	tk, err := r.open(e.ring)
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	return tk
}

// record reads key's record straight from SQLite.
func (e *env) record(key Key) *record {
	e.t.Helper()
	v, ver, err := e.sqlite.Get(ctx, key.recKey())
	if err != nil {
		e.t.Fatalf("read: %v", err)
	}
	r, err := decodeRecord(key, v, ver)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *env) eventTypes() []string {
	e.evMu.Lock()
	defer e.evMu.Unlock()
	var out []string
	for _, ev := range e.events {
		out = append(out, ev.Type+":"+string(ev.To)+":"+ev.Reason)
	}
	return out
}

func (e *env) allEventsJSON() string {
	e.evMu.Lock()
	defer e.evMu.Unlock()
	b, _ := json.Marshal(e.events)
	return string(b)
}

// expire moves the clock past key's access token expiry.
func (e *env) expire(key Key) {
	e.t.Helper()
	c, err := e.m.Get(ctx, key)
	if err != nil {
		e.t.Fatal(err)
	}
	if d := c.AccessExpiresAt.Sub(e.clock.Now()); d > -time.Second {
		e.clock.Advance(d + time.Second)
	}
}

func wantNeedsAuth(t *testing.T, err error, st Status) *NeedsAuthorizationError {
	t.Helper()
	var na *NeedsAuthorizationError
	if !errors.As(err, &na) {
		t.Fatalf("err = %v, want *NeedsAuthorizationError", err)
	}
	if na.Connection.Status != st {
		t.Fatalf("NeedsAuthorizationError status %s (reason %q), want %s", na.Connection.Status, na.Connection.Reason, st)
	}
	return na
}
