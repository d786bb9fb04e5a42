package mint

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/credentials/store"
)

// Test keys, generated once per test binary (RSA generation is slow).
var (
	keysOnce                 sync.Once
	rsaKey, rsaKey2          *rsa.PrivateKey
	ecKey, ecKey2, ec384Key  *ecdsa.PrivateKey
	edKey                    ed25519.PrivateKey
	rsaSmall                 *rsa.PrivateKey
	testKeysErr              error
	generatedForTests        = map[string]crypto.Signer{}
	generatedForTestsOrdered []string
)

func testKeys(t testing.TB) {
	t.Helper()
	keysOnce.Do(func() {
		var errs []error
		gen := func(name string, f func() (crypto.Signer, error)) crypto.Signer {
			k, err := f()
			errs = append(errs, err)
			generatedForTests[name] = k
			generatedForTestsOrdered = append(generatedForTestsOrdered, name)
			return k
		}
		rsaKey = gen("rsa", func() (crypto.Signer, error) { return rsa.GenerateKey(crand.Reader, 2048) }).(*rsa.PrivateKey)
		rsaKey2 = gen("rsa2", func() (crypto.Signer, error) { return rsa.GenerateKey(crand.Reader, 2048) }).(*rsa.PrivateKey)
		rsaSmall = gen("rsa1024", func() (crypto.Signer, error) {
			// The standard library refuses to generate keys under 1024
			// bits; 1024 is below our minimum of 2048.
			return rsa.GenerateKey(crand.Reader, 1024)
		}).(*rsa.PrivateKey)
		ecKey = gen("ec", func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), crand.Reader) }).(*ecdsa.PrivateKey)
		ecKey2 = gen("ec2", func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), crand.Reader) }).(*ecdsa.PrivateKey)
		ec384Key = gen("ec384", func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), crand.Reader) }).(*ecdsa.PrivateKey)
		edKey = gen("ed", func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(crand.Reader)
			return k, err
		}).(ed25519.PrivateKey)
		testKeysErr = errors.Join(errs...)
	})
	if testKeysErr != nil {
		t.Fatal(testKeysErr)
	}
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemPKCS8(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func pemPublic(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func jwkJSON(t testing.TB, key any, kid, alg string) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func thumbprint(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// TestKidIsRFC7638Thumbprint pins the default kid to RFC 7638 with the
// RFC's own example key (section 3.1).
func TestKidIsRFC7638Thumbprint(t *testing.T) {
	n, _ := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}
	if got := thumbprint(t, pub); got != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
		t.Fatalf("thumbprint = %s", got)
	}
	// And a loaded key without a kid gets exactly that thumbprint.
	testKeys(t)
	k, err := newSigningKey("", jose.RS256, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	if k.kid != thumbprint(t, rsaKey.Public()) || len(k.kid) != 43 {
		t.Fatalf("kid %q, want the full RFC 7638 thumbprint", k.kid)
	}
}

// TestKeyFilesLoad: PEM (PKCS#8, SEC 1, PKCS#1) and JWK files of every
// supported key type sign tokens that an upstream verifies through
// discovery and the JWKS (go-oidc), with the expected kid and alg.
func TestKeyFilesLoad(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	ecDER, _ := x509.MarshalECPrivateKey(ecKey)
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})
	// openssl ecparam -genkey writes EC PARAMETERS before the key.
	sec1WithParams := append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}), sec1...)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	// A certificate beside the key is ignored.
	withCert := append(pemPKCS8(t, edKey), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0}})...)
	set, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{jwkJSON(t, ecKey2, "set-1", ""), jwkJSON(t, rsaKey2, "set-2", "PS256")}})

	for _, tc := range []struct {
		name     string
		data     []byte
		kf       KeyFile
		key      crypto.Signer
		kid, alg string
	}{
		{"PKCS#8 EC", pemPKCS8(t, ecKey), KeyFile{}, ecKey, "", "ES256"},
		{"PKCS#8 RSA", pemPKCS8(t, rsaKey), KeyFile{KeyID: "rsa-2026"}, rsaKey, "rsa-2026", "RS256"},
		{"PKCS#8 RSA as PS384", pemPKCS8(t, rsaKey), KeyFile{Algorithm: "PS384"}, rsaKey, "", "PS384"},
		{"PKCS#8 Ed25519 with a certificate", withCert, KeyFile{}, edKey, "", "EdDSA"},
		{"PKCS#8 P-384", pemPKCS8(t, ec384Key), KeyFile{}, ec384Key, "", "ES384"},
		{"SEC 1 EC", sec1, KeyFile{}, ecKey, "", "ES256"},
		{"SEC 1 EC after EC PARAMETERS", sec1WithParams, KeyFile{Algorithm: "ES256"}, ecKey, "", "ES256"},
		{"PKCS#1 RSA", pkcs1, KeyFile{}, rsaKey, "", "RS256"},
		{"JWK EC with kid", jwkJSON(t, ecKey, "ec-from-jwk", "ES256"), KeyFile{}, ecKey, "ec-from-jwk", "ES256"},
		{"JWK RSA, config kid wins", jwkJSON(t, rsaKey, "jwk-kid", ""), KeyFile{KeyID: "cfg-kid"}, rsaKey, "cfg-kid", "RS256"},
		{"JWK Ed25519 without kid", jwkJSON(t, edKey, "", ""), KeyFile{}, edKey, "", "EdDSA"},
		{"JWK Set: first key signs", set, KeyFile{}, ecKey2, "set-1", "ES256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kf := tc.kf
			kf.File = writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "_"), tc.data)
			ti := serve(t, Config{Keys: []KeyFile{kf}}, "/mint")
			wantKid := tc.kid
			if wantKid == "" {
				wantKid = thumbprint(t, tc.key.Public())
			}
			ctx := context.Background()
			provider, err := oidc.NewProvider(ctx, ti.url)
			if err != nil {
				t.Fatal(err)
			}
			verifier := provider.Verifier(&oidc.Config{ClientID: basicClaims.Audience, SupportedSigningAlgs: []string{tc.alg}, Now: ti.clock.Now})
			tok := mustMint(t, ti.Issuer, basicClaims)
			if _, err := verifier.Verify(ctx, tok); err != nil {
				t.Fatalf("verify: %v", err)
			}
			jws, err := jose.ParseSigned(tok, allAlgs)
			if err != nil {
				t.Fatal(err)
			}
			h := jws.Signatures[0].Protected
			if h.KeyID != wantKid || h.Algorithm != tc.alg || ti.Algorithm() != tc.alg {
				t.Errorf("header kid %s alg %s (Algorithm() %s), want %s %s", h.KeyID, h.Algorithm, ti.Algorithm(), wantKid, tc.alg)
			}
			pub := jwksKey(ti.JWKS(), wantKid)
			if len(pub) != 1 || !reflect.DeepEqual(pub[0].Key, tc.key.Public()) || !pub[0].IsPublic() || pub[0].Algorithm != tc.alg || pub[0].Use != "sig" {
				t.Fatalf("published key %+v", pub)
			}
			if strings.HasPrefix(tc.name, "JWK Set") {
				if got := kids(ti.JWKS()); !reflect.DeepEqual(got, []string{"set-1", "set-2"}) {
					t.Errorf("JWKS kids %v", got)
				}
				if k := jwksKey(ti.JWKS(), "set-2"); len(k) != 1 || k[0].Algorithm != "PS256" {
					t.Errorf("set-2 = %+v", k)
				}
			}
			// Attribution JWTs sign with the same key.
			st, err := ti.Sign(ctx, "x+jwt", map[string]any{"sub": "a"})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, ok := verifyWith(t, ti.JWKS(), st); !ok || kidOf(t, st) != wantKid {
				t.Errorf("Sign: kid %s ok %t", kidOf(t, st), ok)
			}
		})
	}
}

// TestKeyFilesRotation: two files are both published; the first signs,
// unless another is marked primary.
func TestKeyFilesRotation(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	a := writeFile(t, dir, "a.pem", pemPKCS8(t, ecKey))
	b := writeFile(t, dir, "b.jwk", jwkJSON(t, rsaKey, "b", ""))
	ti := serve(t, Config{Keys: []KeyFile{{File: a, KeyID: "a"}, {File: b}}}, "")
	if got := kids(ti.JWKS()); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("kids %v, want [a b]", got)
	}
	tok := mustMint(t, ti.Issuer, basicClaims)
	if kidOf(t, tok) != "a" {
		t.Fatalf("signed with %s, want a (the first)", kidOf(t, tok))
	}
	_, body := get(t, ti.url+OpenIDConfigurationPath)
	var doc map[string]any
	_ = json.Unmarshal(body, &doc)
	if !reflect.DeepEqual(doc["id_token_signing_alg_values_supported"], []any{"ES256", "RS256"}) {
		t.Errorf("discovery algs %v", doc["id_token_signing_alg_values_supported"])
	}
	if resp, _ := get(t, ti.url+JWKSPath); resp.Header.Get("Cache-Control") != "public, max-age=60" {
		t.Errorf("Cache-Control %q, want the reload interval", resp.Header.Get("Cache-Control"))
	}

	other := build(t, Config{Keys: []KeyFile{{File: a, KeyID: "a"}, {File: b, Primary: true}}})
	tok2 := mustMint(t, other.Issuer, basicClaims)
	if kidOf(t, tok2) != "b" || other.Algorithm() != "RS256" {
		t.Fatalf("primary b: signed with %s (%s)", kidOf(t, tok2), other.Algorithm())
	}
	if got := kids(other.JWKS()); !reflect.DeepEqual(got, []string{"b", "a"}) {
		t.Fatalf("kids %v, want the signer first", got)
	}
	// Either issuer's JWKS verifies both tokens.
	for _, tk := range []string{tok, tok2} {
		if _, _, ok := verifyWith(t, ti.JWKS(), tk); !ok {
			t.Error("token does not verify")
		}
	}
	// Rotate with key files changes nothing but re-reads them.
	ti.Rotate()
	if kidOf(t, mustMint(t, ti.Issuer, basicClaims)) != "a" {
		t.Error("Rotate changed the signer")
	}
}

// TestKeyFilesReload: the operator rotates by rewriting the files (the new
// key in the primary file, the old one moved to the second); Reload
// switches the signer, and a token signed before the change still verifies
// while its key is published. Run notices the change by itself.
func TestKeyFilesReload(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	primary := writeFile(t, dir, "primary.pem", pemPKCS8(t, ecKey))
	previous := writeFile(t, dir, "previous.jwk", jwkJSON(t, edKey, "older", ""))
	ti := build(t, Config{Keys: []KeyFile{{File: primary}, {File: previous}}, ReloadInterval: time.Second})
	reloaded := make(chan struct{}, 4)
	ti.onRotate = func(int64) { reloaded <- struct{}{} }
	ctx := context.Background()
	kidA := thumbprint(t, ecKey.Public())
	old := mustMint(t, ti.Issuer, basicClaims)

	// Unchanged files: nothing happens.
	if err := ti.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if len(reloaded) != 0 {
		t.Fatal("reload without a change installed keys")
	}

	writeFile(t, dir, "primary.pem", pemPKCS8(t, ecKey2))
	writeFile(t, dir, "previous.jwk", jwkJSON(t, ecKey, "", ""))
	if err := ti.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	kidB := thumbprint(t, ecKey2.Public())
	fresh := mustMint(t, ti.Issuer, basicClaims)
	if kidOf(t, fresh) != kidB {
		t.Fatalf("after reload signed with %s, want %s", kidOf(t, fresh), kidB)
	}
	if got := kids(ti.JWKS()); !reflect.DeepEqual(got, []string{kidB, kidA}) {
		t.Fatalf("kids %v, want [new, old]", got)
	}
	if _, _, ok := verifyWith(t, ti.JWKS(), old); !ok {
		t.Fatal("token signed before the reload no longer verifies while its key is published")
	}
	if !strings.Contains(ti.logs.String(), "key files reloaded") {
		t.Error("reload not logged")
	}

	// Run polls: drop the old key and Run installs the change.
	<-reloaded
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { ti.Run(runCtx); close(done) }()
	writeFile(t, dir, "previous.jwk", jwkJSON(t, rsaKey, "", ""))
	select {
	case <-reloaded:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not reload the changed file")
	}
	cancel()
	<-done
	if _, _, ok := verifyWith(t, ti.JWKS(), old); ok {
		t.Error("a key removed from the files is still published")
	}
	if _, _, ok := verifyWith(t, ti.JWKS(), fresh); !ok {
		t.Error("the signer's token no longer verifies")
	}
}

// TestKeyFilesBadReload: a change that does not load keeps the previous
// keys (the issuer never signs with nothing), is reported once per
// distinct problem, and a fixed file loads.
func TestKeyFilesBadReload(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	f := writeFile(t, dir, "key.pem", pemPKCS8(t, ecKey))
	ti := build(t, Config{Keys: []KeyFile{{File: f}}})
	ctx := context.Background()
	kid := thumbprint(t, ecKey.Public())
	before := ti.JWKS()
	for _, tc := range []struct {
		name string
		do   func()
		want string
	}{
		{"public key only", func() { writeFile(t, dir, "key.pem", pemPublic(t, ecKey2)) }, "a public key only"},
		{"garbage", func() {
			writeFile(t, dir, "key.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
		}, "malformed PRIVATE KEY PEM block"},
		{"truncated JSON", func() { writeFile(t, dir, "key.pem", []byte(`{"kty":"EC",`)) }, "malformed JSON"},
		{"empty", func() { writeFile(t, dir, "key.pem", nil) }, "empty file"},
		{"removed", func() { _ = os.Remove(f) }, "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.do()
			err := ti.Reload(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "keys[0].file "+f) {
				t.Fatalf("Reload = %v, want %q naming keys[0].file", err, tc.want)
			}
			if err2 := ti.Reload(ctx); err2 == nil {
				t.Fatal("second Reload of a bad file succeeded")
			}
			if k := kidOf(t, mustMint(t, ti.Issuer, basicClaims)); k != kid {
				t.Fatalf("signing with %s after a bad reload, want the previous %s", k, kid)
			}
			if !reflect.DeepEqual(kids(ti.JWKS()), kids(before)) {
				t.Fatalf("JWKS changed: %v", kids(ti.JWKS()))
			}
			if n := strings.Count(ti.logs.String(), tc.want); n != 1 {
				t.Errorf("problem logged %d times, want once:\n%s", n, ti.logs.String())
			}
		})
	}
	writeFile(t, dir, "key.pem", pemPKCS8(t, edKey))
	if err := ti.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if k := kidOf(t, mustMint(t, ti.Issuer, basicClaims)); k != thumbprint(t, edKey.Public()) || ti.Algorithm() != "EdDSA" {
		t.Fatalf("fixed file: kid %s alg %s", k, ti.Algorithm())
	}
}

// TestKeyFileErrors: files New refuses, each error naming the field and
// the file and never quoting key material.
func TestKeyFileErrors(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte{1}})
	twoKeys := append(pemPKCS8(t, ecKey), pemPKCS8(t, ecKey2)...)
	pubJWK, _ := json.Marshal(jose.JSONWebKey{Key: ecKey.Public(), KeyID: "pub"})
	octJWK, _ := json.Marshal(jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct"})
	encJWK := bytes.Replace(jwkJSON(t, ecKey, "e", ""), []byte(`{`), []byte(`{"use":"enc",`), 1)
	set2, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{jwkJSON(t, ecKey, "", ""), jwkJSON(t, ecKey2, "", "")}})
	dupKid, _ := json.Marshal(map[string]any{"keys": []json.RawMessage{jwkJSON(t, ecKey, "same", ""), jwkJSON(t, ecKey2, "same", "")}})
	ecFile := writeFile(t, dir, "ec.pem", pemPKCS8(t, ecKey))
	ecJWKFile := writeFile(t, dir, "ec-a.jwk", jwkJSON(t, ecKey, "a", ""))

	for _, tc := range []struct {
		name string
		data []byte
		kf   KeyFile
		more []KeyFile
		want string
	}{
		{"public PEM", pemPublic(t, ecKey), KeyFile{}, nil, "a public key only; the issuer needs the private key to sign"},
		{"public JWK", pubJWK, KeyFile{}, nil, "a public key only"},
		{"symmetric JWK", octJWK, KeyFile{}, nil, "a symmetric key cannot sign"},
		{"encrypted PEM", encrypted, KeyFile{}, nil, "encrypted PEM keys are not supported"},
		{"two PEM keys", twoKeys, KeyFile{}, nil, "more than one private key in a PEM file"},
		{"RSA 1024", pemPKCS8(t, rsaSmall), KeyFile{}, nil, "RSA key of 1024 bits: at least 2048 are required"},
		{"ES256 on RSA", pemPKCS8(t, rsaKey), KeyFile{Algorithm: "ES256"}, nil, "algorithm ES256 does not fit this key (want one of RS256, RS384, RS512, PS256, PS384, PS512)"},
		{"ES256 on P-384", pemPKCS8(t, ec384Key), KeyFile{Algorithm: "ES256"}, nil, "algorithm ES256 does not fit this key (want one of ES384)"},
		{"RS256 on Ed25519", pemPKCS8(t, edKey), KeyFile{Algorithm: "RS256"}, nil, "does not fit this key (want one of EdDSA)"},
		{"JWK alg vs config", jwkJSON(t, rsaKey, "", "RS256"), KeyFile{Algorithm: "PS256"}, nil, "the JWK's alg RS256 differs from algorithm PS256"},
		{"JWK alg wrong for key", jwkJSON(t, ecKey, "", "ES384"), KeyFile{}, nil, "algorithm ES384 does not fit this key"},
		{"JWK use enc", encJWK, KeyFile{}, nil, `key use is "enc", want sig`},
		{"kid on a set", set2, KeyFile{KeyID: "x"}, nil, "keys[0].kid: set, but"},
		{"duplicate kid in a set", dupKid, KeyFile{}, nil, `duplicate kid "same"`},
		{"duplicate kid across files", jwkJSON(t, ecKey2, "a", ""), KeyFile{}, []KeyFile{{File: ecJWKFile}}, `keys[1].file ` + ecJWKFile + `: duplicate kid "a"`},
		{"same key twice", pemPKCS8(t, ecKey), KeyFile{}, []KeyFile{{File: ecFile}}, "keys[1].file " + ecFile + ": the same key is listed twice"},
		{"empty set", []byte(`{"keys":[]}`), KeyFile{}, nil, "the JWK Set has no keys"},
		{"not a key", []byte("hello"), KeyFile{}, nil, "neither PEM nor JSON (JWK)"},
		{"unknown PEM block", pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte{1}}), KeyFile{}, nil, `unsupported PEM block "OPENSSH PRIVATE KEY"`},
		{"missing file", nil, KeyFile{File: filepath.Join(dir, "absent.pem")}, nil, "absent.pem: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kf := tc.kf
			if kf.File == "" {
				kf.File = writeFile(t, dir, strings.ReplaceAll(tc.name, " ", "_"), tc.data)
			}
			_, err := New(context.Background(), Config{Issuer: "https://m.example", Keys: append([]KeyFile{kf}, tc.more...)}, Options{Logger: slog.New(slog.DiscardHandler)})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "mint: keys[") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), ".kid: ") && !strings.Contains(err.Error(), ".file "+filepath.Dir(kf.File)) {
				t.Errorf("error does not name the file: %v", err)
			}
			assertNoKeyMaterial(t, err.Error())
		})
	}
}

// assertNoKeyMaterial fails if out contains any test private key.
func assertNoKeyMaterial(t *testing.T, out string) {
	t.Helper()
	for _, name := range generatedForTestsOrdered {
		for _, s := range privateStrings(generatedForTests[name]) {
			if strings.Contains(out, s) {
				t.Fatalf("output contains private key material of %s", name)
			}
		}
	}
}

// privateStrings are encodings of k's private part as they could leak.
func privateStrings(k crypto.Signer) []string {
	var raw []byte
	switch p := k.(type) {
	case *ecdsa.PrivateKey:
		raw, _ = p.Bytes()
	case ed25519.PrivateKey:
		raw = p.Seed()
	case *rsa.PrivateKey:
		raw = p.D.Bytes()
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	b64 := base64.StdEncoding.EncodeToString(der)
	return []string{base64.RawURLEncoding.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw)[:20],
		hex.EncodeToString(raw), fmt.Sprint(raw)[1:20], b64[len(b64)-24:]}
}

// TestSharedStore: issuers sharing one SQLite store (as replicas do, each
// with its own handle) publish identical JWKS and verify each other's
// tokens; one replica rotating early still interoperates; a replica on
// another store shares nothing; a replica with the wrong store keys
// refuses to start rather than make keys of its own.
func TestSharedStore(t *testing.T) {
	for _, alg := range []string{ES256, RS256, EdDSA} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.db")
			stA, ringA := sqliteStore(t, path, "MINT_STORE_KEY_A", storeKey)
			stB, ringB := sqliteStore(t, path, "MINT_STORE_KEY_B", storeKey)
			a := buildWith(t, Config{Algorithm: alg}, Options{Store: stA, Cipher: ringA}, newClock(t0))
			b := buildWith(t, Config{Algorithm: alg}, Options{Store: stB, Cipher: ringB}, newClock(t0))

			ja, _ := json.Marshal(a.JWKS())
			jb, _ := json.Marshal(b.JWKS())
			if !bytes.Equal(ja, jb) {
				t.Fatalf("one store, different JWKS:\n%s\n%s", ja, jb)
			}
			if n := len(a.JWKS().Keys); n != 2 {
				t.Errorf("fresh store: %d keys published, want 2 (current, next)", n)
			}
			if a.JWKS().Keys[0].KeyID == a.JWKS().Keys[1].KeyID {
				t.Error("current and next epoch share a key")
			}
			ta, tb := mustMint(t, a.Issuer, basicClaims), mustMint(t, b.Issuer, basicClaims)
			if _, _, ok := verifyWith(t, b.JWKS(), ta); !ok {
				t.Error("b does not verify a's token")
			}
			if _, _, ok := verifyWith(t, a.JWKS(), tb); !ok {
				t.Error("a does not verify b's token")
			}
			if strings.Contains(a.logs.String(), "level=WARN") {
				t.Errorf("an issuer on a shared store warned:\n%s", a.logs.String())
			}

			// One replica rotating early still interoperates.
			a.Rotate()
			if _, _, ok := verifyWith(t, b.JWKS(), mustMint(t, a.Issuer, basicClaims)); !ok {
				t.Error("b does not verify a token of a after a's early rotation")
			}
			if _, _, ok := verifyWith(t, a.JWKS(), mustMint(t, b.Issuer, basicClaims)); !ok {
				t.Error("a does not verify b's token after a's early rotation")
			}

			// A replica started later (or restarted) in the next epoch
			// publishes the previous key, which the others signed with.
			later := newClock(t0.Add(DefaultRotationPeriod))
			stC, ringC := sqliteStore(t, path, "MINT_STORE_KEY_C", storeKey)
			c := buildWith(t, Config{Algorithm: alg}, Options{Store: stC, Cipher: ringC}, later)
			if n := len(c.JWKS().Keys); n != 3 {
				t.Errorf("restarted replica publishes %d keys, want 3", n)
			}
			if _, _, ok := verifyWith(t, c.JWKS(), tb); !ok {
				t.Error("a replica started in the next epoch does not verify a token of the previous one")
			}

			// Another store: nothing shared.
			stO, ringO := sqliteStore(t, filepath.Join(dir, "other.db"), "MINT_STORE_KEY_O", storeKey)
			o := buildWith(t, Config{Algorithm: alg}, Options{Store: stO, Cipher: ringO}, newClock(t0))
			for _, k := range kids(o.JWKS()) {
				if len(jwksKey(a.JWKS(), k)) > 0 {
					t.Errorf("different stores share kid %s", k)
				}
			}

			// The wrong store key: the replica refuses to start.
			wrong, _ := store.NewKeyRing("k1", map[string][]byte{"k1": []byte("ZYXWVUTSRQPONMLKJIHGFEDCBA987654")})
			_, err := New(context.Background(), Config{Issuer: "https://mcpauthz.internal", Algorithm: alg},
				Options{Store: stA, Cipher: wrong, Now: newClock(t0).Now, Logger: slog.New(slog.DiscardHandler)})
			if !errors.Is(err, store.ErrDecrypt) || !strings.Contains(err.Error(), "are the store's encryption keys the same on every replica?") {
				t.Fatalf("wrong store key: %v", err)
			}
		})
	}
}

// TestSharedStoreRace: replicas starting together on an empty store all
// end up with the same keys (each epoch's key is created exactly once).
func TestSharedStoreRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "race.db")
	const n = 4
	iss := make([]*testIssuer, n)
	opts := make([]Options, n)
	for g := range n {
		st, ring := sqliteStore(t, path, fmt.Sprintf("MINT_RACE_KEY_%d", g), storeKey)
		opts[g] = Options{Store: st, Cipher: ring}
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for g := range n {
		logs := &syncBuffer{}
		iss[g] = &testIssuer{logs: logs}
		opts[g].Now = newClock(t0).Now
		opts[g].Logger = slog.New(slog.NewTextHandler(logs, nil))
		wg.Go(func() {
			iss[g].Issuer, errs[g] = New(context.Background(), Config{Issuer: "https://mcpauthz.internal"}, opts[g])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	want := kids(iss[0].JWKS())
	for g := 1; g < n; g++ {
		if got := kids(iss[g].JWKS()); !reflect.DeepEqual(got, want) {
			t.Fatalf("replica %d publishes %v, replica 0 %v", g, got, want)
		}
	}
	generated := 0
	for _, ti := range iss {
		generated += strings.Count(ti.logs.String(), "generated signing key")
	}
	if generated != 2 {
		t.Fatalf("%d keys generated and stored, want 2 (current and next epoch, once each)", generated)
	}
}

// TestStoredKeysEncrypted: the store holds each generated key sealed under
// its key ring and bound to its record: no private key in the clear, and
// a record copied under another key does not open.
func TestStoredKeysEncrypted(t *testing.T) {
	ctx := context.Background()
	st, ring := sqliteStore(t, filepath.Join(t.TempDir(), "enc.db"), "MINT_ENC_KEY", storeKey)
	ti := buildWith(t, Config{Algorithm: EdDSA}, Options{Store: st, Cipher: ring}, newClock(t0))
	es, err := st.List(ctx, "mint/keys/", "", 0)
	if err != nil || len(es) != 2 {
		t.Fatalf("List = %d records %v", len(es), err)
	}
	r := ti.ring.Load()
	for _, e := range es {
		if id, err := store.KeyID(e.Value); err != nil || id != "k1" {
			t.Fatalf("%s is not sealed: %v", e.Key, err)
		}
		for _, k := range []*signingKey{r.cur, r.nxt} {
			for _, s := range privateStrings(k.priv) {
				if strings.Contains(string(e.Value), s) {
					t.Fatalf("%s holds key material in the clear", e.Key)
				}
			}
		}
		if e.ExpiresAt.IsZero() || e.ExpiresAt.Before(t0.Add(2*DefaultRotationPeriod)) {
			t.Errorf("%s expires at %v: too early or never", e.Key, e.ExpiresAt)
		}
	}
	// Copy the current epoch's record over the next one's: it must not
	// open there (bound to its record key), so a new issuer refuses.
	cur, next := es[0], es[1]
	if _, err := st.CompareAndSwap(ctx, next.Key, next.Version, cur.Value, 0); err != nil {
		t.Fatal(err)
	}
	_, err = New(ctx, Config{Issuer: "https://mcpauthz.internal", Algorithm: EdDSA},
		Options{Store: st, Cipher: ring, Now: newClock(t0).Now, Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, store.ErrDecrypt) {
		t.Fatalf("a record moved to another key opened: %v", err)
	}
}

// flakyStore fails every operation on keys whose name contains fail.
type flakyStore struct {
	KeyStore
	mu   sync.Mutex
	fail string
}

func (f *flakyStore) failing(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail != "" && strings.Contains(key, f.fail)
}

func (f *flakyStore) set(s string) { f.mu.Lock(); f.fail = s; f.mu.Unlock() }

func (f *flakyStore) Get(ctx context.Context, key string) ([]byte, store.Version, error) {
	if f.failing(key) {
		return nil, 0, errors.New("database is locked")
	}
	return f.KeyStore.Get(ctx, key)
}

func (f *flakyStore) PutIfAbsent(ctx context.Context, key string, v []byte, ttl time.Duration) (store.Version, bool, error) {
	if f.failing(key) {
		return 0, false, errors.New("database is locked")
	}
	return f.KeyStore.PutIfAbsent(ctx, key, v, ttl)
}

// TestStoreOutageAtRotation: when the store cannot provide the next key
// at an epoch boundary, the issuer still signs with the key it published
// ahead, and publishes the next one once the store answers (Run retries).
// When even the current key is unavailable, Mint fails rather than sign
// with a key other replicas do not publish.
func TestStoreOutageAtRotation(t *testing.T) {
	mem := store.NewMemory(store.Options{PurgeInterval: -1})
	ring, _ := store.NewRandomKeyRing()
	fs := &flakyStore{KeyStore: mem}
	ti := buildWith(t, Config{RotationPeriod: time.Hour, TokenTTL: 5 * time.Minute}, Options{Store: fs, Cipher: ring}, newClock(t0))
	e := ti.ring.Load().epoch
	nextKid := ti.JWKS().Keys[1].KeyID

	fs.set(fmt.Sprintf("/%d", e+2))
	ti.clock.Advance(time.Hour)
	tok, _, err := ti.Mint(context.Background(), basicClaims)
	if err != nil {
		t.Fatalf("Mint with the next key unavailable: %v", err)
	}
	if kidOf(t, tok) != nextKid {
		t.Fatalf("signed with %s, want the pre-published %s", kidOf(t, tok), nextKid)
	}
	if n := len(ti.JWKS().Keys); n != 2 || !strings.Contains(ti.logs.String(), "next signing key unavailable") {
		t.Fatalf("%d keys published (want current and previous), logs:\n%s", n, ti.logs.String())
	}

	fs.set("")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ti.Run(ctx); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for len(ti.JWKS().Keys) != 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if n := len(ti.JWKS().Keys); n != 3 {
		t.Fatalf("after the store recovered, %d keys published, want 3", n)
	}

	// Two epochs on with the store down for the new current key: refuse.
	fs.set(fmt.Sprintf("/%d", e+3))
	ti.clock.Advance(2 * time.Hour)
	if _, _, err := ti.Mint(context.Background(), basicClaims); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Fatalf("Mint without its epoch's key = %v, want the store error", err)
	}
}

// TestStorelessIssuer: without a store the issuer works on its own, warns
// that it must be the only replica, and shares keys with nobody.
func TestStorelessIssuer(t *testing.T) {
	ti := build(t, Config{})
	if !strings.Contains(ti.logs.String(), "level=WARN") || !strings.Contains(ti.logs.String(), "single replica") {
		t.Errorf("no single-replica warning in logs:\n%s", ti.logs.String())
	}
	if _, _, ok := verifyWith(t, ti.JWKS(), mustMint(t, ti.Issuer, basicClaims)); !ok {
		t.Fatal("token does not verify")
	}
	other := build(t, Config{})
	if ti.JWKS().Keys[0].KeyID == other.JWKS().Keys[0].KeyID {
		t.Error("two store-less issuers share a key")
	}
	if !strings.Contains(fmt.Sprint(ti.Issuer), "keys: memory") {
		t.Errorf("String() = %s", ti.Issuer)
	}
	// A store without a cipher is refused: keys are kept encrypted.
	mem := store.NewMemory(store.Options{PurgeInterval: -1})
	if _, err := New(context.Background(), Config{Issuer: "https://m.example"}, Options{Store: mem}); err == nil || !strings.Contains(err.Error(), "needs Options.Cipher") {
		t.Fatalf("store without cipher: %v", err)
	}
}

// TestNoKeyMaterialInOutput: logs, errors and printing the Issuer never
// show a private key.
func TestNoKeyMaterialInOutput(t *testing.T) {
	testKeys(t)
	dir := t.TempDir()
	f := writeFile(t, dir, "k.pem", pemPKCS8(t, ecKey))
	files := build(t, Config{Keys: []KeyFile{{File: f}}})
	for _, tc := range []struct {
		name string
		ti   *testIssuer
	}{
		{"generated ES256", build(t, Config{Algorithm: ES256})},
		{"generated EdDSA", build(t, Config{Algorithm: EdDSA})},
		{"key file", files},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ti := tc.ti
			ctx := context.Background()
			mustMint(t, ti.Issuer, basicClaims)
			ti.Rotate()
			ti.clock.Advance(48 * time.Hour)
			writeFile(t, dir, "k.pem", pemPublic(t, ecKey))
			reloadErr := ti.Reload(ctx)
			_, _, mintErr := ti.Mint(ctx, Claims{Subject: "x"})
			_, signErr := ti.Sign(ctx, "at+jwt", nil)
			out := strings.Join([]string{
				ti.logs.String(), mintErr.Error(), signErr.Error(), fmt.Sprint(reloadErr),
				fmt.Sprint(ti.Issuer), fmt.Sprintf("%v %+v %#v %s", ti.Issuer, ti.Issuer, ti.Issuer, ti.Issuer),
			}, "\n")
			slogOut := &bytes.Buffer{}
			slog.New(slog.NewJSONHandler(slogOut, nil)).Info("x", "issuer", ti.Issuer)
			out += slogOut.String()
			r := ti.ring.Load()
			for _, k := range append([]*signingKey{r.prev, r.cur, r.nxt}, r.files...) {
				if k == nil {
					continue
				}
				for _, s := range privateStrings(k.priv) {
					if strings.Contains(out, s) {
						t.Fatalf("output contains key material %q:\n%s", s, out)
					}
				}
			}
			assertNoKeyMaterial(t, out)
			if !strings.Contains(fmt.Sprint(ti.Issuer), "https://mcpauthz.internal") {
				t.Errorf("String() = %s", ti.Issuer)
			}
		})
	}
}

// TestKeyRecordNames: the store record of a key names the algorithm, the
// period and the epoch, so a change of either starts a new series.
func TestKeyRecordNames(t *testing.T) {
	i := &Issuer{alg: RS256, period: 24 * time.Hour}
	for e, want := range map[int64]string{20522: "mint/keys/RS256/86400/20522", -1: "mint/keys/RS256/86400/-1"} {
		if got := i.recordKey(e); got != want {
			t.Errorf("recordKey(%d) = %s, want %s", e, got, want)
		}
	}
}

func jwksKey(set jose.JSONWebKeySet, kid string) []jose.JSONWebKey { return set.Key(kid) }
