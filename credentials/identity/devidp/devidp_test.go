package devidp

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestIssuerServesDiscoveryAndVerifiableTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	idp, err := New(Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	u, err := idp.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	if !strings.HasPrefix(u, "http://127.0.0.1:") || idp.URL() != u {
		t.Fatalf("URL = %q / %q", u, idp.URL())
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, u+"/.well-known/openid-configuration", &disc)
	if disc.Issuer != u || disc.JWKSURI != u+"/jwks" {
		t.Fatalf("discovery = %+v", disc)
	}
	var set jose.JSONWebKeySet
	getJSON(t, disc.JWKSURI, &set)
	if idp.JWKSFetches() != 1 {
		t.Fatalf("JWKSFetches = %d, want 1", idp.JWKSFetches())
	}
	if len(set.Keys) != 2 {
		t.Fatalf("jwks has %d keys, want 2", len(set.Keys))
	}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("jwks publishes a private key %q", k.KeyID)
		}
	}

	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			tok, err := idp.Mint(map[string]any{"sub": "alice"}, WithAlg(alg))
			if err != nil {
				t.Fatal(err)
			}
			jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Header
			if h.KeyID != idp.Kid(alg) || h.ExtraHeaders["typ"] != "at+jwt" {
				t.Fatalf("header kid=%q typ=%v", h.KeyID, h.ExtraHeaders["typ"])
			}
			keys := set.Key(h.KeyID)
			if len(keys) != 1 {
				t.Fatalf("kid %q not in jwks", h.KeyID)
			}
			payload, err := jws.Verify(keys[0])
			if err != nil {
				t.Fatal(err)
			}
			var c map[string]any
			_ = json.Unmarshal(payload, &c)
			if c["iss"] != u || c["sub"] != "alice" || c["exp"] != float64(now.Add(5*time.Minute).Unix()) ||
				c["iat"] != float64(now.Unix()) || c["jti"] == "" {
				t.Fatalf("claims = %v", c)
			}
		})
	}
}

func TestRotateKeyPublishesNewAndPreviousKids(t *testing.T) {
	idp, err := New(Options{IssuerURL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	old := idp.Kid("RS256")
	idp.RotateKey()
	nw := idp.Kid("RS256")
	if nw == old || nw == "" {
		t.Fatalf("kid not rotated: %q -> %q", old, nw)
	}
	set := idp.JWKS()
	if len(set.Key(old)) != 1 || len(set.Key(nw)) != 1 || len(set.Keys) != 4 {
		t.Fatalf("jwks after rotation: %d keys", len(set.Keys))
	}
	idp.RotateKey()
	set = idp.JWKS()
	if len(set.Key(old)) != 0 {
		t.Fatal("two-generations-old key still published")
	}
}

func TestMintOptionsAndAttackTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	idp, err := New(Options{IssuerURL: "https://idp.test/", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	decode := func(seg string) map[string]any {
		b, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	tok := idp.MustMint(map[string]any{"sub": "x", "jti": nil},
		WithKid("other"), WithExpiry(-time.Minute), WithHeader("jku", "https://evil.test/jwks"))
	parts := strings.Split(tok, ".")
	h, c := decode(parts[0]), decode(parts[1])
	if h["kid"] != "other" || h["jku"] != "https://evil.test/jwks" || h["typ"] != "at+jwt" {
		t.Fatalf("header = %v", h)
	}
	if c["exp"] != float64(now.Add(-time.Minute).Unix()) || c["iss"] != "https://idp.test" {
		t.Fatalf("claims = %v", c)
	}
	if _, ok := c["jti"]; ok {
		t.Fatal("jti: nil did not remove the claim")
	}

	none := strings.Split(idp.MintNone(map[string]any{"sub": "x"}), ".")
	if len(none) != 3 || none[2] != "" || decode(none[0])["alg"] != "none" {
		t.Fatalf("MintNone = %v", none)
	}
	hs := strings.Split(idp.MintHS256WithPublicKey(map[string]any{"sub": "x"}), ".")
	if len(hs) != 3 || hs[2] == "" || decode(hs[0])["alg"] != "HS256" || decode(hs[0])["kid"] != idp.Kid("RS256") {
		t.Fatalf("MintHS256WithPublicKey = %v", hs)
	}
	if _, err := idp.Mint(nil, WithAlg("HS256")); err == nil {
		t.Fatal("Mint with HS256 succeeded")
	}
}
