package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// idp serves a discovery document and a JWKS over real HTTP.
type idp struct {
	srv       *httptest.Server
	mu        sync.Mutex
	jwks      string // the JWKS document served
	issuer    string // the discovery document's issuer; "" means srv.URL
	status    int    // JWKS answer status; 0 means 200
	delay     time.Duration
	fetches   atomic.Int64
	discovery atomic.Int64
}

func newIdP(t *testing.T, keys ...*jose.JSONWebKey) *idp {
	t.Helper()
	p := &idp{}
	p.setKeys(t, keys...)
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discovery.Add(1)
		p.mu.Lock()
		iss := p.issuer
		p.mu.Unlock()
		if iss == "" {
			iss = p.srv.URL
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": p.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		body, status, delay := p.jwks, p.status, p.delay
		p.mu.Unlock()
		time.Sleep(delay)
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		_, _ = io.WriteString(w, body)
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) setKeys(t *testing.T, keys ...*jose.JSONWebKey) {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, *k)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	p.setRaw(string(b))
}

func (p *idp) setRaw(s string) {
	p.mu.Lock()
	p.jwks = s
	p.mu.Unlock()
}

func (p *idp) setStatus(s int) {
	p.mu.Lock()
	p.status = s
	p.mu.Unlock()
}

func newKeySet(t *testing.T, clk *fakeclock.Clock, cfg Config) *KeySet {
	t.Helper()
	if clk != nil {
		cfg.Now = clk.Now
	}
	cfg.Logger = quiet
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newClock() *fakeclock.Clock { return fakeclock.New(time.Unix(1_800_000_000, 0)) }

func TestNewConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"jwks url", Config{JWKSURL: "https://i/jwks"}, true},
		{"discovery with issuer", Config{DiscoveryURL: "https://i/.well-known/openid-configuration", Issuer: "https://i"}, true},
		{"nothing to fetch", Config{Issuer: "https://i"}, false},
		{"discovery without issuer", Config{DiscoveryURL: "https://i/.well-known/openid-configuration"}, false},
		{"HS256", Config{JWKSURL: "https://i/jwks", Algorithms: []string{"HS256"}}, false},
		{"none", Config{JWKSURL: "https://i/jwks", Algorithms: []string{"none"}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestKeysDiscoveryAndCandidates(t *testing.T) {
	keys := newTestKeys(t)
	rs, es := keys.public("RS256"), keys.public("ES256")
	unpinned := &jose.JSONWebKey{Key: keys.p384.Public(), KeyID: "shared", Use: "sig"}
	pinned := &jose.JSONWebKey{Key: keys.rsa.Public(), KeyID: "shared", Algorithm: "PS256", Use: "sig"}
	p := newIdP(t, rs, es, unpinned, pinned)
	k := newKeySet(t, newClock(), Config{Issuer: p.srv.URL, DiscoveryURL: p.srv.URL + "/.well-known/openid-configuration", MinRefresh: time.Minute})
	ctx := context.Background()
	for _, tc := range []struct {
		kid, alg string
		want     []string // kid/alg of the candidates
		err      error
	}{
		{"RS256", "RS256", []string{"RS256/RS256"}, nil},
		{"ES256", "ES256", []string{"ES256/ES256"}, nil},
		{"RS256", "PS256", nil, ErrUnknownKid}, // the key is pinned to RS256
		{"shared", "ES384", []string{"shared/"}, nil},
		{"shared", "PS256", []string{"shared/", "shared/PS256"}, nil},
		{"", "ES256", []string{"ES256/ES256", "shared/"}, nil},
		{"nope", "RS256", nil, ErrUnknownKid},
	} {
		got, err := k.Keys(ctx, tc.kid, tc.alg)
		if !errors.Is(err, tc.err) {
			t.Fatalf("Keys(%q, %q) err = %v, want %v", tc.kid, tc.alg, err, tc.err)
		}
		var names []string
		for _, key := range got {
			names = append(names, key.KeyID+"/"+key.Algorithm)
		}
		if strings.Join(names, ",") != strings.Join(tc.want, ",") {
			t.Fatalf("Keys(%q, %q) = %v, want %v", tc.kid, tc.alg, names, tc.want)
		}
	}
	if p.discovery.Load() != 1 || p.fetches.Load() != 1 {
		t.Fatalf("discovery %d, fetches %d; want 1, 1 (the unknown kids were rate limited)", p.discovery.Load(), p.fetches.Load())
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	p := newIdP(t, newTestKeys(t).public("RS256"))
	p.issuer = "https://someone-else.example"
	k := newKeySet(t, newClock(), Config{Issuer: p.srv.URL, DiscoveryURL: p.srv.URL + "/.well-known/openid-configuration"})
	if _, err := k.Keys(context.Background(), "RS256", "RS256"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if p.fetches.Load() != 0 {
		t.Fatal("JWKS fetched from a discovery document of another issuer")
	}
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	keys := newTestKeys(t)
	p := newIdP(t, keys.public("RS256"))
	clk := newClock()
	k := newKeySet(t, clk, Config{JWKSURL: p.srv.URL + "/jwks", MinRefresh: 30 * time.Second})
	ctx := context.Background()
	if _, err := k.Keys(ctx, "RS256", "RS256"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance time.Duration
		fetches int64
	}{
		{0, 1},                // the initial fetch was just now
		{31 * time.Second, 2}, // one refresh
		{0, 2},
		{10 * time.Second, 2},
		{25 * time.Second, 3},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		if _, err := k.Keys(ctx, "rotated", "RS256"); !errors.Is(err, ErrUnknownKid) {
			t.Fatalf("step %d: err = %v", i, err)
		}
		if n := p.fetches.Load(); n != s.fetches {
			t.Fatalf("step %d: fetches = %d, want %d", i, n, s.fetches)
		}
	}
	// A rotation is picked up by the next allowed refresh.
	p.setKeys(t, keys.public("RS256"), keys.public("ES256"))
	clk.Advance(31 * time.Second)
	if got, err := k.Keys(ctx, "ES256", "ES256"); err != nil || len(got) != 1 {
		t.Fatalf("rotated key: %v %v", got, err)
	}
}

func TestConcurrentFetchesCollapse(t *testing.T) {
	keys := newTestKeys(t)
	p := newIdP(t, keys.public("RS256"))
	p.delay = 50 * time.Millisecond
	clk := newClock()
	k := newKeySet(t, clk, Config{JWKSURL: p.srv.URL + "/jwks", MinRefresh: 30 * time.Second})
	burst := func(kid string, want error) {
		var wg sync.WaitGroup
		for range 32 {
			wg.Go(func() {
				if _, err := k.Keys(context.Background(), kid, "RS256"); !errors.Is(err, want) {
					t.Errorf("kid %q: err = %v, want %v", kid, err, want)
				}
			})
		}
		wg.Wait()
	}
	burst("RS256", nil)
	if n := p.fetches.Load(); n != 1 {
		t.Fatalf("initial burst: %d fetches, want 1", n)
	}
	clk.Advance(time.Minute)
	burst("unknown", ErrUnknownKid)
	if n := p.fetches.Load(); n != 2 {
		t.Fatalf("unknown-kid burst: %d fetches, want 2", n)
	}
}

func TestFailedFetches(t *testing.T) {
	keys := newTestKeys(t)
	p := newIdP(t, keys.public("RS256"))
	clk := newClock()
	k := newKeySet(t, clk, Config{JWKSURL: p.srv.URL + "/jwks", MinRefresh: 30 * time.Second})
	ctx := context.Background()

	// Until the first fetch succeeds, every lookup retries it.
	p.setStatus(http.StatusServiceUnavailable)
	for range 2 {
		if _, err := k.Keys(ctx, "RS256", "RS256"); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v", err)
		}
	}
	p.setStatus(0)
	if _, err := k.Keys(ctx, "RS256", "RS256"); err != nil {
		t.Fatal(err)
	}
	if n := p.fetches.Load(); n != 3 {
		t.Fatalf("fetches = %d, want 3", n)
	}

	// A failed refresh keeps the keys it had.
	p.setStatus(http.StatusInternalServerError)
	clk.Advance(time.Minute)
	if _, err := k.Keys(ctx, "rotated", "RS256"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("failed refresh: err = %v", err)
	}
	if got, err := k.Keys(ctx, "RS256", "RS256"); err != nil || len(got) != 1 {
		t.Fatalf("after a failed refresh: %v %v", got, err)
	}
	p.setRaw(`{"keys":"not a list"}`)
	p.setStatus(0)
	clk.Advance(time.Minute)
	if _, err := k.Keys(ctx, "rotated", "RS256"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("undecodable refresh: err = %v", err)
	}
	if _, err := k.Keys(ctx, "RS256", "RS256"); err != nil {
		t.Fatalf("after an undecodable refresh: %v", err)
	}
}

func TestFetchLimits(t *testing.T) {
	good := newIdP(t, newTestKeys(t).public("RS256"))
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"keys":[`+strings.Repeat(" ", MaxResponseBytes)+`]}`)
	}))
	defer huge.Close()
	redirect := httptest.NewServer(http.RedirectHandler(good.srv.URL+"/jwks", http.StatusFound))
	defer redirect.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	for _, tc := range []struct{ name, url string }{
		{"oversized body", huge.URL},
		{"redirect not followed", redirect.URL},
		{"timeout", slow.URL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newKeySet(t, nil, Config{JWKSURL: tc.url, Timeout: 200 * time.Millisecond})
			if _, err := k.Keys(context.Background(), "RS256", "RS256"); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	if n := good.fetches.Load(); n != 0 {
		t.Fatalf("redirect followed: %d fetches", n)
	}
}

// TestUnusableKeysSkipped: symmetric keys, encryption keys, private keys
// and unknown key types never become verification keys.
func TestUnusableKeysSkipped(t *testing.T) {
	keys := newTestKeys(t)
	rs := keys.public("RS256")
	rsJSON, _ := json.Marshal(rs)
	privJSON, _ := json.Marshal(jose.JSONWebKey{Key: keys.p256, KeyID: "private", Algorithm: "ES256"})
	encJSON, _ := json.Marshal(jose.JSONWebKey{Key: keys.p384.Public(), KeyID: "enc", Use: "enc"})
	oct := `{"kty":"oct","kid":"hmac","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}`
	unknown := `{"kty":"XYZ","kid":"weird","x":"AQAB"}`
	p := newIdP(t)
	p.setRaw(`{"keys":[` + oct + `,` + unknown + `,` + string(privJSON) + `,` + string(encJSON) + `,` + string(rsJSON) + `]}`)
	k := newKeySet(t, newClock(), Config{JWKSURL: p.srv.URL + "/jwks"})
	ctx := context.Background()
	if got, err := k.Keys(ctx, "RS256", "RS256"); err != nil || len(got) != 1 {
		t.Fatalf("usable key: %v %v", got, err)
	}
	for _, kid := range []string{"hmac", "weird", "private", "enc"} {
		if _, err := k.Keys(ctx, kid, "ES256"); !errors.Is(err, ErrUnknownKid) {
			t.Fatalf("kid %q: err = %v, want unknown kid", kid, err)
		}
	}
	if got, err := k.Keys(ctx, "", "RS256"); err != nil || len(got) != 1 || got[0].KeyID != "RS256" {
		t.Fatalf("all keys: %v %v", got, err)
	}
	// A set with only unusable keys is unavailable.
	only := newIdP(t)
	only.setRaw(`{"keys":[` + oct + `]}`)
	k2 := newKeySet(t, newClock(), Config{JWKSURL: only.srv.URL + "/jwks"})
	if _, err := k2.Keys(ctx, "hmac", "HS256"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("only symmetric keys: err = %v", err)
	}
}

// TestVerifySignatureWithGoOIDC: the KeySet serves go-oidc's verifier (the
// token-exchange client keeps oidc.NewVerifier).
func TestVerifySignatureWithGoOIDC(t *testing.T) {
	keys := newTestKeys(t)
	p := newIdP(t, keys.public("ES256"), keys.public("EdDSA"))
	k := newKeySet(t, nil, Config{JWKSURL: p.srv.URL + "/jwks", Algorithms: []string{"ES256", "EdDSA"}})
	exp := time.Now().Add(time.Hour).Unix()
	claims := map[string]any{"iss": "https://sts.example", "sub": "a", "exp": exp}
	v := oidc.NewVerifier("https://sts.example", k, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: Algorithms()})
	ctx := context.Background()
	for _, alg := range []string{"ES256", "EdDSA"} {
		tok, err := v.Verify(ctx, sign(t, keys.private(alg), alg, alg, claims))
		if err != nil || tok.Subject != "a" {
			t.Fatalf("%s: %v", alg, err)
		}
	}
	for name, raw := range map[string]string{
		"alg outside the set's allow-list": sign(t, keys.rsa, "RS256", "RS256", claims),
		"unknown kid":                      sign(t, keys.p256, "ES256", "other", claims),
		"tampered signature":               tamper(sign(t, keys.p256, "ES256", "ES256", claims)),
	} {
		if _, err := v.Verify(ctx, raw); err == nil {
			t.Fatalf("%s: verified", name)
		}
		if _, err := k.VerifySignature(ctx, raw); err == nil {
			t.Fatalf("%s: VerifySignature accepted", name)
		}
	}
	payload, err := k.VerifySignature(ctx, sign(t, keys.p256, "ES256", "ES256", claims))
	if err != nil || !strings.Contains(string(payload), `"sub":"a"`) {
		t.Fatalf("payload %q, %v", payload, err)
	}
}

// tamper flips one bit in the middle of a compact JWS's signature.
func tamper(raw string) string {
	i := strings.LastIndexByte(raw, '.')
	sig, _ := b64.DecodeString(raw[i+1:])
	sig[len(sig)/2] ^= 1
	return raw[:i+1] + b64.EncodeToString(sig)
}
