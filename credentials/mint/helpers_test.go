package mint

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
)

// t0 is a whole second in the middle of a 24h epoch.
var t0 = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock = fakeclock.Clock

func newClock(t time.Time) *fakeClock { return fakeclock.New(t) }

// syncBuffer collects log output from concurrent writers.
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

type testIssuer struct {
	*Issuer
	url     string
	clock   *fakeClock
	logs    *syncBuffer
	fetches *atomic.Int64 // JWKS requests served
}

// serve starts an HTTP server for an issuer whose URL is the server's
// address plus path, builds the issuer with cfg (Issuer is filled in) and
// serves its Handler at the root.
func serve(t *testing.T, cfg Config, path string) *testIssuer {
	t.Helper()
	return serveWith(t, cfg, path, Options{})
}

// serveWith is serve with opts for New.
func serveWith(t *testing.T, cfg Config, path string, opts Options) *testIssuer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = "http://" + ln.Addr().String() + path
	ti := buildWith(t, cfg, opts, newClock(t0))
	h := ti.Handler()
	fetches := &atomic.Int64{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, JWKSPath) {
			fetches.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	ti.url, ti.fetches = cfg.Issuer, fetches
	return ti
}

// build makes an issuer at t0 with logs captured.
func build(t testing.TB, cfg Config) *testIssuer {
	t.Helper()
	return buildWith(t, cfg, Options{}, newClock(t0))
}

// buildWith makes an issuer with opts (Now and Logger are set here) on clock.
func buildWith(t testing.TB, cfg Config, opts Options, clock *fakeClock) *testIssuer {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = "https://mcpauthz.internal"
	}
	logs := &syncBuffer{}
	opts.Now = clock.Now
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	iss, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &testIssuer{Issuer: iss, url: cfg.Issuer, clock: clock, logs: logs}
}

// sqliteStore opens the SQLite store at path with a key ring from the
// env var keyEnv (set to key, base64), as one replica would.
func sqliteStore(t testing.TB, path, keyEnv string, key []byte) (store.Store, *store.KeyRing) {
	t.Helper()
	t.Setenv(keyEnv, base64.StdEncoding.EncodeToString(key))
	st, ring, err := store.Open(context.Background(), store.Config{
		Driver: store.DriverSQLite, Path: path,
		Encryption: store.Encryption{Keys: []store.KeyConfig{{ID: "k1", Secret: secret.Ref{Env: keyEnv}}}},
	}, store.Options{Logger: slog.New(slog.DiscardHandler), PurgeInterval: -1})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, ring
}

// storeKey is a fixed 32-byte store encryption key.
var storeKey = []byte("0123456789abcdefghijklmnopqrstuv")

func mustMint(t *testing.T, i *Issuer, c Claims) string {
	t.Helper()
	tok, _, err := i.Mint(context.Background(), c)
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	return tok
}

var basicClaims = Claims{Audience: "https://docs.example/mcp", Subject: "alice", ClientID: "agent-1"}

var allAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512, jose.EdDSA}

// verifyWith checks tok's signature against set (by kid) and returns its
// header and claims; ok is false when no key in set verifies it.
func verifyWith(t *testing.T, set jose.JSONWebKeySet, tok string) (hdr jose.Header, claims map[string]any, ok bool) {
	t.Helper()
	jws, err := jose.ParseSigned(tok, allAlgs)
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	hdr = jws.Signatures[0].Header
	for _, k := range set.Key(hdr.KeyID) {
		payload, err := jws.Verify(k)
		if err != nil {
			continue
		}
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatalf("claims: %v", err)
		}
		return hdr, claims, true
	}
	return hdr, nil, false
}

func kids(set jose.JSONWebKeySet) []string {
	out := make([]string, len(set.Keys))
	for n, k := range set.Keys {
		out[n] = k.KeyID
	}
	return out
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Kid
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, b.Bytes()
}
