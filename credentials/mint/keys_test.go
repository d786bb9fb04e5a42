package mint

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

// TestSeedReplicas: two issuers sharing a seed publish identical JWKS and
// verify each other's tokens; a different seed shares nothing.
func TestSeedReplicas(t *testing.T) {
	for _, alg := range []string{ES256, RS256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			a := build(t, Config{Algorithm: alg, Seed: seedRef(t, "MINT_SEED_A", testSeed)})
			b := build(t, Config{Algorithm: alg, Seed: seedRef(t, "MINT_SEED_B", testSeed)})
			c := build(t, Config{Algorithm: alg, Seed: seedRef(t, "MINT_SEED_C", strings.ToUpper(testSeed))})

			ja, _ := json.Marshal(a.JWKS())
			jb, _ := json.Marshal(b.JWKS())
			if !bytes.Equal(ja, jb) {
				t.Fatalf("same seed, different JWKS:\n%s\n%s", ja, jb)
			}
			if n := len(a.JWKS().Keys); n != 3 {
				t.Errorf("seeded JWKS has %d keys, want 3 (previous, current, next)", n)
			}
			ta, tb := mustMint(t, a.Issuer, basicClaims), mustMint(t, b.Issuer, basicClaims)
			if _, _, ok := verifyWith(t, b.JWKS(), ta); !ok {
				t.Error("b does not verify a's token")
			}
			if _, _, ok := verifyWith(t, a.JWKS(), tb); !ok {
				t.Error("a does not verify b's token")
			}
			for _, k := range kids(c.JWKS()) {
				for _, k2 := range kids(a.JWKS()) {
					if k == k2 {
						t.Errorf("different seeds share kid %s", k)
					}
				}
			}
			if _, _, ok := verifyWith(t, c.JWKS(), ta); ok {
				t.Error("a different seed verifies the token")
			}
			// Keys are per algorithm and per epoch.
			if a.JWKS().Keys[0].KeyID == a.JWKS().Keys[1].KeyID {
				t.Error("current and next epoch share a key")
			}

			// One replica rotating early still interoperates (its previous
			// key is the others' current one, its current their next).
			a.Rotate()
			if _, _, ok := verifyWith(t, b.JWKS(), mustMint(t, a.Issuer, basicClaims)); !ok {
				t.Error("b does not verify a token of a after a's early rotation")
			}
			if _, _, ok := verifyWith(t, a.JWKS(), mustMint(t, b.Issuer, basicClaims)); !ok {
				t.Error("a does not verify b's token after a's early rotation")
			}
		})
	}
}

// TestDerivedKidsAreStable pins derived kids: replicas running different
// builds must derive the same keys from the same seed.
func TestDerivedKidsAreStable(t *testing.T) {
	want := map[string]string{
		ES256: "q5-PnityiAglp9US__RM1A",
		RS256: "Mlq9GFOpGWNUEzfMZ9zV_Q",
		EdDSA: "imSq1s2pmADR8CUXOcuh5A",
	}
	for alg, kid := range want {
		priv, err := deriveKey(alg, []byte(testSeed), 20000)
		if err != nil {
			t.Fatal(err)
		}
		k, err := newSigningKey(20000, jose.SignatureAlgorithm(alg), priv)
		if err != nil {
			t.Fatal(err)
		}
		if k.kid != kid {
			t.Errorf("%s: derived kid %s, want %s", alg, k.kid, kid)
		}
		again, _ := deriveKey(alg, []byte(testSeed), 20000)
		if !reflect.DeepEqual(again.Public(), priv.Public()) {
			t.Errorf("%s: derivation is not deterministic", alg)
		}
	}
}

func TestDeriveKeyShapes(t *testing.T) {
	ikm := []byte(testSeed)
	es, err := deriveKey(ES256, ikm, 1)
	if err != nil {
		t.Fatal(err)
	}
	ek := es.(*ecdsa.PrivateKey)
	if ek.Curve != elliptic.P256() {
		t.Errorf("ES256 curve %v", ek.Curve.Params().Name)
	}
	ed, err := deriveKey(EdDSA, ikm, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ed.(ed25519.PrivateKey)) != ed25519.PrivateKeySize {
		t.Error("EdDSA key size")
	}
	rs, err := deriveKey(RS256, ikm, 1)
	if err != nil {
		t.Fatal(err)
	}
	rk := rs.(*rsa.PrivateKey)
	if rk.N.BitLen() != 2048 || rk.E != 65537 || len(rk.Primes) != 2 {
		t.Errorf("RS256 key: %d bits, e=%d, %d primes", rk.N.BitLen(), rk.E, len(rk.Primes))
	}
	if err := rk.Validate(); err != nil {
		t.Error(err)
	}
	diff := new(big.Int).Sub(rk.Primes[0], rk.Primes[1])
	if diff.BitLen() <= 1024-100 {
		t.Error("|p-q| too small")
	}
	if _, err := deriveKey("HS256", ikm, 1); err == nil {
		t.Error("HS256 accepted")
	}
	// Epoch and algorithm both change the key.
	es2, _ := deriveKey(ES256, ikm, 2)
	if es2.(*ecdsa.PrivateKey).Equal(ek) {
		t.Error("epochs 1 and 2 share a key")
	}
}

// TestSeedErrors: bad seeds fail New without echoing the seed.
func TestSeedErrors(t *testing.T) {
	for _, tc := range []struct {
		name, value, want string
		unset             bool
	}{
		{"short", "Zm9vYmFyYmF6cXV4", "at least 32 bytes, got 16", false},
		{"low entropy", strings.Repeat("ab", 20), "does not look random", false},
		{"unset", "", `env var "MINT_BAD_SEED" is not set`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := &secret.Ref{Env: "MINT_BAD_SEED"}
			if !tc.unset {
				t.Setenv("MINT_BAD_SEED", tc.value)
			}
			var logs bytes.Buffer
			_, err := New(context.Background(), Config{Issuer: "https://m.example", Seed: ref},
				Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mint: ") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if tc.value != "" && (strings.Contains(err.Error(), tc.value) || strings.Contains(logs.String(), tc.value)) {
				t.Errorf("seed echoed: %v / %s", err, logs.String())
			}
		})
	}
}

// TestNoKeyMaterialInOutput: logs, errors and printing the Issuer never
// show the seed or a private key.
func TestNoKeyMaterialInOutput(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			ti := build(t, Config{Algorithm: alg, Seed: seedRef(t, "MINT_PRIV_SEED", testSeed)})
			ctx := context.Background()
			mustMint(t, ti.Issuer, basicClaims)
			ti.Rotate()
			ti.clock.Advance(48 * time.Hour)
			_, _, mintErr := ti.Mint(ctx, Claims{Subject: "x"})
			_, signErr := ti.Sign(ctx, "at+jwt", nil)
			out := strings.Join([]string{
				ti.logs.String(), mintErr.Error(), signErr.Error(),
				fmt.Sprint(ti.Issuer), fmt.Sprintf("%v %+v %#v %s", ti.Issuer, ti.Issuer, ti.Issuer, ti.Issuer),
			}, "\n")
			slogOut := &bytes.Buffer{}
			slog.New(slog.NewJSONHandler(slogOut, nil)).Info("x", "issuer", ti.Issuer)
			out += slogOut.String()

			var secrets []string
			secrets = append(secrets, testSeed, hex.EncodeToString([]byte(testSeed)))
			r := ti.ring.Load()
			for _, k := range []*signingKey{r.prev, r.cur, r.nxt} {
				var raw []byte
				switch p := k.priv.(type) {
				case *ecdsa.PrivateKey:
					raw, _ = p.Bytes()
				case ed25519.PrivateKey:
					raw = p.Seed()
				}
				secrets = append(secrets, base64.RawURLEncoding.EncodeToString(raw), hex.EncodeToString(raw),
					fmt.Sprint(raw)[1:20])
			}
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("output contains key material %q:\n%s", s, out)
				}
			}
			if !strings.Contains(fmt.Sprint(ti.Issuer), "https://mcpauthz.internal") {
				t.Errorf("String() = %s", ti.Issuer)
			}
		})
	}
}

func TestUnseededWarns(t *testing.T) {
	ti := build(t, Config{})
	if !strings.Contains(ti.logs.String(), "level=WARN") || !strings.Contains(ti.logs.String(), "single replica") {
		t.Errorf("no single-replica warning in logs:\n%s", ti.logs.String())
	}
	seeded := build(t, Config{Seed: seedRef(t, "MINT_WARN_SEED", testSeed)})
	if strings.Contains(seeded.logs.String(), "level=WARN") {
		t.Errorf("seeded issuer warned:\n%s", seeded.logs.String())
	}
	// Unseeded issuers make distinct keys.
	other := build(t, Config{})
	if ti.JWKS().Keys[0].KeyID == other.JWKS().Keys[0].KeyID {
		t.Error("two unseeded issuers share a key")
	}
}
