package mint

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// TestMintVerifiesWithOIDC verifies minted tokens the way an upstream
// would: go-oidc discovery, remote JWKS, iss/aud/exp checks.
func TestMintVerifiesWithOIDC(t *testing.T) {
	for _, tc := range []struct {
		name, alg, path string
		shared          bool
	}{
		{"ES256 default", "", "", false},
		{"ES256 shared store, issuer path", ES256, "/mint", true},
		{"RS256", RS256, "", false},
		{"RS256 shared store", RS256, "/a/b", true},
		{"EdDSA", EdDSA, "", false},
		{"EdDSA shared store", EdDSA, "/mint", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Algorithm: tc.alg}
			var opts Options
			if tc.shared {
				opts.Store, opts.Cipher = sqliteStore(t, filepath.Join(t.TempDir(), "state.db"), "MINT_TEST_STORE_KEY", storeKey)
			}
			ti := serveWith(t, cfg, tc.path, opts)
			alg := ti.Algorithm()
			if tc.alg == "" && alg != ES256 {
				t.Fatalf("default algorithm = %s, want ES256", alg)
			}
			ctx := context.Background()
			provider, err := oidc.NewProvider(ctx, ti.url)
			if err != nil {
				t.Fatalf("discovery: %v", err)
			}
			aud := "https://docs.example/mcp"
			verifier := provider.Verifier(&oidc.Config{ClientID: aud, SupportedSigningAlgs: []string{alg}, Now: ti.clock.Now})

			chain := &Actor{Subject: "agent-2", ClientID: "client-2", Issuer: "https://idp.example",
				Act: &Actor{Subject: "agent-1", ClientID: "client-1"}}
			c := Claims{
				Audience: aud, Subject: "alice", ClientID: "client-2",
				Scopes: []string{"docs:read", "docs:write", "docs:read"},
				Actor:  chain, Extra: map[string]any{"org": "acme", "user_key": "u-42"},
			}
			tok, exp, err := ti.Mint(ctx, c)
			if err != nil {
				t.Fatalf("Mint: %v", err)
			}
			if want := t0.Add(DefaultTokenTTL); !exp.Equal(want) {
				t.Errorf("expiresAt = %v, want %v", exp, want)
			}
			idt, err := verifier.Verify(ctx, tok)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if idt.Issuer != ti.url || idt.Subject != "alice" || !reflect.DeepEqual(idt.Audience, []string{aud}) {
				t.Errorf("iss/sub/aud = %q %q %v", idt.Issuer, idt.Subject, idt.Audience)
			}
			if !idt.Expiry.Equal(t0.Add(5*time.Minute)) || !idt.IssuedAt.Equal(t0) {
				t.Errorf("exp/iat = %v %v, want %v %v", idt.Expiry, idt.IssuedAt, t0.Add(5*time.Minute), t0)
			}
			var got struct {
				ClientID string `json:"client_id"`
				Scope    string `json:"scope"`
				JTI      string `json:"jti"`
				Act      *Actor `json:"act"`
				Org      string `json:"org"`
				UserKey  string `json:"user_key"`
			}
			if err := idt.Claims(&got); err != nil {
				t.Fatal(err)
			}
			if got.ClientID != "client-2" || got.Scope != "docs:read docs:write" || got.Org != "acme" || got.UserKey != "u-42" {
				t.Errorf("claims = %+v", got)
			}
			if !reflect.DeepEqual(got.Act, chain) {
				t.Errorf("act = %+v, want %+v", got.Act, chain)
			}
			if len(got.JTI) != 22 {
				t.Errorf("jti %q: want 22 base64url characters (128 bits)", got.JTI)
			}
			// The act chain's JSON shape is exactly RFC 8693's.
			_, raw, ok := verifyWith(t, ti.JWKS(), tok)
			if !ok {
				t.Fatal("token does not verify against JWKS()")
			}
			wantAct := map[string]any{"sub": "agent-2", "client_id": "client-2", "iss": "https://idp.example",
				"act": map[string]any{"sub": "agent-1", "client_id": "client-1"}}
			if !reflect.DeepEqual(raw["act"], wantAct) {
				t.Errorf("act JSON = %v, want %v", raw["act"], wantAct)
			}
			if _, has := raw["nbf"]; has {
				t.Error("nbf is set")
			}

			// Header: alg, kid of the current key, typ at+jwt.
			jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Protected
			if h.ExtraHeaders[jose.HeaderType] != "at+jwt" || h.Algorithm != alg || h.KeyID != ti.JWKS().Keys[0].KeyID {
				t.Errorf("header = typ %v alg %s kid %s, want at+jwt %s %s", h.ExtraHeaders[jose.HeaderType], h.Algorithm, h.KeyID, alg, ti.JWKS().Keys[0].KeyID)
			}

			// jti is unique.
			_, raw2, _ := verifyWith(t, ti.JWKS(), mustMint(t, ti.Issuer, c))
			if raw2["jti"] == raw["jti"] {
				t.Errorf("jti repeated: %v", raw["jti"])
			}

			// Expired once the clock passes exp.
			ti.clock.Advance(5*time.Minute + time.Second)
			if _, err := verifier.Verify(ctx, tok); err == nil {
				t.Error("expired token verified")
			}
		})
	}
}

func TestMintNoScopeNoActor(t *testing.T) {
	ti := build(t, Config{})
	_, claims, ok := verifyWith(t, ti.JWKS(), mustMint(t, ti.Issuer, basicClaims))
	if !ok {
		t.Fatal("does not verify")
	}
	want := []string{"aud", "client_id", "exp", "iat", "iss", "jti", "sub"}
	var got []string
	for k := range claims {
		got = append(got, k)
	}
	if !sameSet(got, want) {
		t.Errorf("claims %v, want exactly %v", got, want)
	}
	if claims["aud"] != basicClaims.Audience || claims["iss"] != "https://mcpauthz.internal" {
		t.Errorf("aud/iss = %v %v", claims["aud"], claims["iss"])
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestMintRejects(t *testing.T) {
	ti := build(t, Config{})
	cyclic := &Actor{Subject: "a"}
	cyclic.Act = &Actor{Subject: "b", Act: cyclic}
	deep := &Actor{Subject: "a0"}
	for n := 1; n <= maxActorDepth; n++ {
		deep = &Actor{Subject: fmt.Sprintf("a%d", n), Act: deep}
	}
	with := func(f func(*Claims)) Claims {
		c := basicClaims
		f(&c)
		return c
	}
	tests := []struct {
		name string
		c    Claims
		want string
	}{
		{"no audience", with(func(c *Claims) { c.Audience = "" }), "aud is required"},
		{"no subject", with(func(c *Claims) { c.Subject = "" }), "sub is required"},
		{"no client_id", with(func(c *Claims) { c.ClientID = "" }), "client_id is required"},
		{"control char in sub", with(func(c *Claims) { c.Subject = "ali\nce-secretish" }), "sub contains control characters"},
		{"long aud", with(func(c *Claims) { c.Audience = strings.Repeat("a", maxClaimLen+1) }), "aud is longer"},
		{"bad scope", with(func(c *Claims) { c.Scopes = []string{"ok", "has space"} }), "scope 1 is not a valid scope token"},
		{"quote in scope", with(func(c *Claims) { c.Scopes = []string{`a"b`} }), "scope 0 is not a valid"},
		{"empty scope", with(func(c *Claims) { c.Scopes = []string{""} }), "scope 0 is not a valid"},
		{"actor without sub", with(func(c *Claims) { c.Actor = &Actor{ClientID: "x"} }), "act.sub is required"},
		{"nested actor without sub", with(func(c *Claims) { c.Actor = &Actor{Subject: "x", Act: &Actor{}} }), "act.sub is required"},
		{"actor control char", with(func(c *Claims) { c.Actor = &Actor{Subject: "x", Issuer: "a\x00"} }), "act.iss contains control"},
		{"deep act chain", with(func(c *Claims) { c.Actor = deep }), "act chain is deeper than 8"},
		{"cyclic act chain", with(func(c *Claims) { c.Actor = cyclic }), "act chain is deeper than 8"},
		{"empty extra name", with(func(c *Claims) { c.Extra = map[string]any{"": 1} }), "empty name"},
		{"unencodable extra", with(func(c *Claims) { c.Extra = map[string]any{"f": func() {}} }), "mint: encode claims"},
	}
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "scp",
		"act", "may_act", "azp", "cnf", "auth_time", "acr", "amr", "nonce", "sid", "typ"} {
		tests = append(tests, struct {
			name string
			c    Claims
			want string
		}{"reserved extra " + name, with(func(c *Claims) { c.Extra = map[string]any{"org": "acme", name: "x"} }),
			fmt.Sprintf("extra claim %q is reserved", name)})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, exp, err := ti.Mint(context.Background(), tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "mint: ") {
				t.Errorf("error %q lacks the mint: prefix", err)
			}
			if strings.Contains(err.Error(), "secretish") {
				t.Errorf("error %q echoes a claim value", err)
			}
			if tok != "" || !exp.IsZero() {
				t.Errorf("returned token %q / expiry %v with an error", tok, exp)
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, _, err := ti.Mint(ctx, basicClaims); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}

// TestMintNotAfter: a token never outlives its source. exp is the earlier
// of iat + TokenTTL and NotAfter; a source that has expired (or expires
// within the current second) is refused.
func TestMintNotAfter(t *testing.T) {
	ti := build(t, Config{})
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		notAfter time.Time
		wantExp  time.Time
	}{
		{"unset", time.Time{}, t0.Add(DefaultTokenTTL)},
		{"earlier than the ttl", t0.Add(90 * time.Second), t0.Add(90 * time.Second)},
		{"fraction of a second rounds down", t0.Add(90*time.Second + 900*time.Millisecond), t0.Add(90 * time.Second)},
		{"later than the ttl", t0.Add(time.Hour), t0.Add(DefaultTokenTTL)},
		{"one second left", t0.Add(time.Second), t0.Add(time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := basicClaims
			c.NotAfter = tc.notAfter
			tok, exp, err := ti.Mint(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			_, claims, ok := verifyWith(t, ti.JWKS(), tok)
			if !ok {
				t.Fatal("does not verify")
			}
			if !exp.Equal(tc.wantExp) || claims["exp"] != float64(tc.wantExp.Unix()) || claims["iat"] != float64(t0.Unix()) {
				t.Errorf("expiresAt %v, exp %v, iat %v; want exp %v", exp, claims["exp"], claims["iat"], tc.wantExp)
			}
			if !tc.notAfter.IsZero() && exp.After(tc.notAfter) {
				t.Errorf("token outlives its source: %v > %v", exp, tc.notAfter)
			}
		})
	}
	for _, na := range []time.Time{t0, t0.Add(-time.Minute), t0.Add(500 * time.Millisecond)} {
		c := basicClaims
		c.NotAfter = na
		tok, exp, err := ti.Mint(ctx, c)
		if !errors.Is(err, ErrSourceExpired) || tok != "" || !exp.IsZero() {
			t.Errorf("NotAfter %v: %q %v %v, want ErrSourceExpired", na, tok, exp, err)
		}
	}
}

func TestSign(t *testing.T) {
	ti := build(t, Config{})
	ctx := context.Background()
	in := map[string]any{"sub": "alice", "tool": "search", "aud": "https://docs.example/mcp"}
	tok, err := ti.Sign(ctx, "mcpauthz-attribution+jwt", in)
	if err != nil {
		t.Fatal(err)
	}
	hdr, claims, ok := verifyWith(t, ti.JWKS(), tok)
	if !ok {
		t.Fatal("signed JWT does not verify against the JWKS")
	}
	if hdr.ExtraHeaders[jose.HeaderType] != "mcpauthz-attribution+jwt" || hdr.KeyID != ti.JWKS().Keys[0].KeyID {
		t.Errorf("header typ %v kid %s", hdr.ExtraHeaders[jose.HeaderType], hdr.KeyID)
	}
	if claims["iss"] != "https://mcpauthz.internal" || claims["iat"] != float64(t0.Unix()) ||
		claims["exp"] != float64(t0.Add(5*time.Minute).Unix()) || claims["sub"] != "alice" || claims["tool"] != "search" {
		t.Errorf("claims = %v", claims)
	}
	if s, _ := claims["jti"].(string); len(s) != 22 {
		t.Errorf("jti = %v", claims["jti"])
	}
	if len(in) != 3 {
		t.Errorf("Sign modified its input: %v", in)
	}

	// Present claims are kept.
	tok, err = ti.Sign(ctx, "x+jwt", map[string]any{"iss": "other", "exp": 1, "iat": 2, "jti": "j"})
	if err != nil {
		t.Fatal(err)
	}
	_, claims, _ = verifyWith(t, ti.JWKS(), tok)
	if claims["iss"] != "other" || claims["exp"] != float64(1) || claims["iat"] != float64(2) || claims["jti"] != "j" {
		t.Errorf("present claims replaced: %v", claims)
	}

	for _, typ := range []string{"", "at+jwt", "AT+JWT", "application/at+jwt", "a b", "x\n", strings.Repeat("t", 65)} {
		if _, err := ti.Sign(ctx, typ, map[string]any{"sub": "a"}); err == nil || !strings.HasPrefix(err.Error(), "mint: ") {
			t.Errorf("typ %q: err = %v, want a mint: error", typ, err)
		}
	}
}

func TestDiscoveryAndJWKSEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name, path, alg string
		period          time.Duration
		wantCache       string
	}{
		{"root issuer", "", "", 0, "public, max-age=3600"},
		{"path issuer, short period", "/tenant/mint", EdDSA, 10 * time.Minute, "public, max-age=75"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := serve(t, Config{Algorithm: tc.alg, RotationPeriod: tc.period}, tc.path)
			alg := ti.Algorithm()
			host := strings.TrimSuffix(ti.url, tc.path)
			docURLs := []string{ti.url + OpenIDConfigurationPath, ti.url + OAuthMetadataPath}
			if tc.path != "" {
				docURLs = append(docURLs, host+OAuthMetadataPath+tc.path) // RFC 8414 section 3.1
			}
			for _, u := range docURLs {
				resp, body := get(t, u)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("%s: %d", u, resp.StatusCode)
				}
				var doc map[string]any
				if err := json.Unmarshal(body, &doc); err != nil {
					t.Fatal(err)
				}
				if doc["issuer"] != ti.url || doc["jwks_uri"] != ti.url+"/.well-known/jwks.json" {
					t.Errorf("%s: issuer %v jwks_uri %v", u, doc["issuer"], doc["jwks_uri"])
				}
				if !reflect.DeepEqual(doc["id_token_signing_alg_values_supported"], []any{alg}) {
					t.Errorf("%s: algs %v", u, doc["id_token_signing_alg_values_supported"])
				}
				if got := resp.Header.Get("Cache-Control"); got != tc.wantCache {
					t.Errorf("%s: Cache-Control %q, want %q", u, got, tc.wantCache)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("%s: Content-Type %q", u, ct)
				}
			}

			resp, body := get(t, ti.url+JWKSPath)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != tc.wantCache {
				t.Fatalf("jwks: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(body, &set); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(kids(set), kids(ti.JWKS())) || len(set.Keys) != 2 {
				t.Errorf("served kids %v, JWKS() kids %v (want 2: current, next)", kids(set), kids(ti.JWKS()))
			}
			for _, k := range set.Keys {
				if !k.IsPublic() || k.Use != "sig" || k.Algorithm != alg {
					t.Errorf("key %s: public %t use %q alg %q", k.KeyID, k.IsPublic(), k.Use, k.Algorithm)
				}
			}
			if strings.Contains(string(body), `"d"`) || strings.Contains(string(body), `"p"`) {
				t.Errorf("JWKS contains private parameters: %s", body)
			}

			// HEAD has headers and no body; other methods and paths fail.
			req, _ := http.NewRequest(http.MethodHead, ti.url+JWKSPath, nil)
			hresp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			hresp.Body.Close()
			if hresp.StatusCode != http.StatusOK || hresp.ContentLength != int64(len(body)) {
				t.Errorf("HEAD: %d, length %d", hresp.StatusCode, hresp.ContentLength)
			}
			presp, err := http.Post(ti.url+JWKSPath, "application/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			presp.Body.Close()
			if presp.StatusCode != http.StatusMethodNotAllowed || presp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("POST: %d Allow %q", presp.StatusCode, presp.Header.Get("Allow"))
			}
			for _, u := range []string{host + "/jwks", ti.url + "/.well-known/other", host + "/.well-known/jwks.json.x"} {
				if r, _ := get(t, u); r.StatusCode != http.StatusNotFound {
					t.Errorf("%s: %d, want 404", u, r.StatusCode)
				}
			}
		})
	}
}

// TestRotationOverlap: a verifier that cached the JWKS before a rotation
// verifies tokens minted after it (the next key was published ahead) and
// before it (the previous key stays published), without refetching.
func TestRotationOverlap(t *testing.T) {
	for _, rotate := range []struct {
		name string
		do   func(ti *testIssuer)
	}{
		{"Rotate", func(ti *testIssuer) { ti.Rotate() }},
		{"clock", func(ti *testIssuer) { ti.clock.Advance(24 * time.Hour) }},
	} {
		t.Run(rotate.name, func(t *testing.T) {
			ti := serve(t, Config{}, "")
			ctx := context.Background()
			keySet := oidc.NewRemoteKeySet(ctx, ti.url+JWKSPath)
			verifier := oidc.NewVerifier(ti.url, keySet, &oidc.Config{ClientID: basicClaims.Audience,
				SupportedSigningAlgs: []string{ES256}, Now: ti.clock.Now})

			before := ti.JWKS()
			old := mustMint(t, ti.Issuer, basicClaims)
			if _, err := verifier.Verify(ctx, old); err != nil {
				t.Fatal(err)
			}
			if ti.fetches.Load() != 1 {
				t.Fatalf("fetches = %d, want 1", ti.fetches.Load())
			}

			rotate.do(ti)
			after := ti.JWKS()
			if want := []string{before.Keys[1].KeyID, after.Keys[1].KeyID, before.Keys[0].KeyID}; !reflect.DeepEqual(kids(after), want) {
				t.Fatalf("kids after rotation %v, want [next-before, new-next, current-before] %v", kids(after), want)
			}
			fresh := mustMint(t, ti.Issuer, basicClaims)
			if kidOf(t, fresh) != before.Keys[1].KeyID {
				t.Fatalf("new token kid %s, want the pre-published %s", kidOf(t, fresh), before.Keys[1].KeyID)
			}
			if _, err := verifier.Verify(ctx, fresh); err != nil {
				t.Fatalf("token minted after rotation: %v", err)
			}
			if _, _, ok := verifyWith(t, before, fresh); !ok {
				t.Error("JWKS cached before rotation does not verify a token minted after it")
			}
			if n := ti.fetches.Load(); n != 1 {
				t.Errorf("verifier refetched the JWKS: %d fetches", n)
			}
			if _, _, ok := verifyWith(t, after, old); !ok {
				t.Error("token minted before rotation no longer verifies against the JWKS")
			}

			// One more epoch later the old key is gone; old tokens have
			// long expired by then.
			rotate.do(ti)
			if _, _, ok := verifyWith(t, ti.JWKS(), old); ok {
				t.Error("key two epochs old still published")
			}
			if !strings.Contains(ti.logs.String(), "signing key rotated") {
				t.Error("rotation not logged")
			}
		})
	}
}

func TestClockJumpAndEpochs(t *testing.T) {
	ti := build(t, Config{RotationPeriod: time.Hour, TokenTTL: 10 * time.Minute})
	startKid := ti.JWKS().Keys[0].KeyID
	// Within the epoch: same key.
	ti.clock.Advance(59 * time.Minute)
	if k := kidOf(t, mustMint(t, ti.Issuer, basicClaims)); k != startKid {
		t.Fatalf("kid changed within the epoch: %s != %s", k, startKid)
	}
	// Three epochs later (nobody called meanwhile): fresh keys, 2 published.
	ti.clock.Advance(3 * time.Hour)
	set := ti.JWKS()
	if len(set.Keys) != 2 || set.Keys[0].KeyID == startKid {
		t.Fatalf("after a jump: kids %v (start %s)", kids(set), startKid)
	}
	if _, _, ok := verifyWith(t, set, mustMint(t, ti.Issuer, basicClaims)); !ok {
		t.Fatal("token after a clock jump does not verify")
	}
	// Rotate then let the clock catch up: the epoch never goes backwards.
	e := ti.ring.Load().epoch
	ti.Rotate()
	if got := ti.ring.Load().epoch; got != e+1 {
		t.Fatalf("epoch after Rotate = %d, want %d", got, e+1)
	}
	ti.clock.Advance(30 * time.Minute)
	_ = ti.JWKS()
	if got := ti.ring.Load().epoch; got != e+1 {
		t.Fatalf("epoch = %d after the clock moved within the epoch, want %d", got, e+1)
	}
}

func TestEpochOf(t *testing.T) {
	i := &Issuer{period: time.Hour}
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(3599, 999999999), 0},
		{time.Unix(3600, 0), 1},
		{time.Unix(-1, 0), -1},
		{time.Unix(-3600, 0), -1},
		{time.Unix(-3601, 0), -2},
	} {
		if got := i.epochOf(tc.t); got != tc.want {
			t.Errorf("epochOf(%v) = %d, want %d", tc.t.Unix(), got, tc.want)
		}
		if e := i.epochOf(tc.t); i.epochStart(e).After(tc.t) || !i.epochStart(e+1).After(tc.t) {
			t.Errorf("%v not within epoch %d", tc.t.Unix(), e)
		}
	}
}

func TestRun(t *testing.T) {
	ti := build(t, Config{})
	rotated := make(chan int64, 4)
	ti.onRotate = func(e int64) { rotated <- e }
	e := ti.ring.Load().epoch
	ti.clock.Advance(24 * time.Hour) // a new epoch has begun
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ti.Run(ctx); close(done) }()
	if got := <-rotated; got != e+1 {
		t.Errorf("Run rotated to epoch %d, want %d", got, e+1)
	}
	cancel()
	<-done
}

func TestConcurrentMintAndRotate(t *testing.T) {
	ti := build(t, Config{Algorithm: EdDSA})
	var wg sync.WaitGroup
	toks := make([][]string, 4)
	for g := range toks {
		wg.Go(func() {
			for range 50 {
				tok, _, err := ti.Mint(context.Background(), basicClaims)
				if err != nil {
					t.Error(err)
					return
				}
				toks[g] = append(toks[g], tok)
			}
		})
	}
	wg.Go(ti.Rotate)
	wg.Wait()
	set := ti.JWKS() // after one rotation: previous and current are published
	for _, ts := range toks {
		for _, tok := range ts {
			if _, _, ok := verifyWith(t, set, tok); !ok {
				t.Fatalf("token with kid %s does not verify against %v", kidOf(t, tok), kids(set))
			}
		}
	}
}

func TestActorChain(t *testing.T) {
	if ActorChain(nil) != nil {
		t.Fatal("no actors must give no act claim")
	}
	in := []Actor{{Subject: "current", ClientID: "app"}, {Subject: "prior"}, {Subject: "first", Issuer: "https://idp"}}
	got := ActorChain(in)
	want := &Actor{Subject: "current", ClientID: "app", Act: &Actor{Subject: "prior", Act: &Actor{Subject: "first", Issuer: "https://idp"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ActorChain = %+v, want %+v", got, want)
	}
	if in[0].Act != nil {
		t.Fatal("ActorChain modified its input")
	}
}
