package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// testKeys holds one private key per algorithm family.
type testKeys struct {
	rsa  *rsa.PrivateKey
	p256 *ecdsa.PrivateKey
	p384 *ecdsa.PrivateKey
	p521 *ecdsa.PrivateKey
	ed   ed25519.PrivateKey
}

func newTestKeys(t testing.TB) testKeys {
	t.Helper()
	var k testKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dst   **ecdsa.PrivateKey
		curve elliptic.Curve
	}{{&k.p256, elliptic.P256()}, {&k.p384, elliptic.P384()}, {&k.p521, elliptic.P521()}} {
		if *c.dst, err = ecdsa.GenerateKey(c.curve, rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k testKeys) private(alg string) crypto.Signer {
	switch alg {
	case "ES256":
		return k.p256
	case "ES384":
		return k.p384
	case "ES512":
		return k.p521
	case "EdDSA":
		return k.ed
	}
	return k.rsa
}

func (k testKeys) public(alg string) *jose.JSONWebKey {
	return &jose.JSONWebKey{Key: k.private(alg).Public(), KeyID: alg, Algorithm: alg, Use: "sig"}
}

// sign makes a compact JWS with go-jose (an independent implementation).
func sign(t testing.TB, key crypto.Signer, alg, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParse(t *testing.T) {
	payload := enc(`{"sub":"a"}`)
	sig := enc("signature")
	tok := func(hdr string) string { return enc(hdr) + "." + payload + "." + sig }
	valid := tok(`{"alg":"RS256","kid":"k1","typ":"at+jwt"}`)
	// A last character with non-zero unused bits decodes leniently but is
	// not canonical: "eyJ9" is canonical for `{"}`; change its last char.
	nonCanonical := enc(`{"alg":"RS256"}`)
	nonCanonical = nonCanonical[:len(nonCanonical)-1] + string(nonCanonical[len(nonCanonical)-1]+1)

	tests := []struct {
		name string
		raw  string
		want Header // zero with wantErr
		err  bool
	}{
		{name: "valid", raw: valid, want: Header{Alg: "RS256", Kid: "k1", Typ: "at+jwt"}},
		{name: "escaped member name and value", raw: tok(`{"\u0061lg":"RS\u003256"}`), want: Header{Alg: "RS256"}},
		{name: "ignored members of every JSON type", raw: tok(`{"jwk":{"kty":"RSA","n":["x",{"y":"}"}]},"x5u":"https://evil.example/k","n":-1.5e3,"t":true,"z":null,"s":"a\"b","alg":"ES256"}`), want: Header{Alg: "ES256"}},
		{name: "member names are case sensitive", raw: tok(`{"ALG":"RS256","Kid":"x"}`), want: Header{}},
		{name: "b64 true", raw: tok(`{"alg":"RS256","b64":true}`), want: Header{Alg: "RS256"}},
		{name: "empty signature (alg none)", raw: enc(`{"alg":"none"}`) + "." + payload + ".", want: Header{Alg: "none"}},
		{name: "two segments", raw: enc(`{"alg":"RS256"}`) + "." + payload, err: true},
		{name: "trailing segment", raw: valid + "." + sig, err: true},
		{name: "trailing dot", raw: valid + ".", err: true},
		{name: "trailing newline", raw: valid + "\n", err: true},
		{name: "trailing space", raw: valid + " ", err: true},
		{name: "line break inside a segment", raw: valid[:5] + "\r\n" + valid[5:], err: true},
		{name: "padding", raw: enc(`{"alg":"RS256"}`) + "=." + payload + "." + sig, err: true},
		{name: "padding on the signature", raw: valid + "==", err: true},
		{name: "standard base64 alphabet", raw: strings.Replace(valid, valid[:1], "+", 1), err: true},
		{name: "non-canonical base64", raw: nonCanonical + "." + payload + "." + sig, err: true},
		{name: "empty header", raw: "." + payload + "." + sig, err: true},
		{name: "empty payload", raw: enc(`{"alg":"RS256"}`) + ".." + sig, err: true},
		{name: "JSON serialization", raw: `{"payload":"` + payload + `","signatures":[]}`, err: true},
		{name: "header not JSON", raw: tok(`alg=RS256`), err: true},
		{name: "header an array", raw: tok(`["alg","RS256"]`), err: true},
		{name: "header with trailing data", raw: tok(`{"alg":"RS256"}{}`), err: true},
		{name: "header with trailing garbage", raw: tok(`{"alg":"RS256"} x`), err: true},
		{name: "crit", raw: tok(`{"alg":"RS256","crit":["exp"],"exp":1}`), err: true},
		{name: "b64 false", raw: tok(`{"alg":"RS256","b64":false}`), err: true},
		{name: "b64 not a bool", raw: tok(`{"alg":"RS256","b64":"true"}`), err: true},
		{name: "duplicate alg", raw: tok(`{"alg":"none","alg":"RS256"}`), err: true},
		{name: "duplicate alg via escape", raw: tok(`{"alg":"RS256","\u0061lg":"none"}`), err: true},
		{name: "duplicate kid", raw: tok(`{"alg":"RS256","kid":"a","kid":"b"}`), err: true},
		{name: "alg not a string", raw: tok(`{"alg":["RS256"]}`), err: true},
		{name: "kid not a string", raw: tok(`{"alg":"RS256","kid":1}`), err: true},
		{name: "typ null", raw: tok(`{"alg":"RS256","typ":null}`), err: true},
		{name: "invalid UTF-8 in header", raw: tok("{\"alg\":\"RS256\",\"x\":\"\xff\"}"), want: Header{Alg: "RS256"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, err := Parse(tc.raw)
			if tc.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				if strings.Contains(err.Error(), payload) || strings.Contains(err.Error(), sig) {
					t.Fatalf("error quotes the token: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if j.Header != tc.want {
				t.Fatalf("header = %+v, want %+v", j.Header, tc.want)
			}
			h, _, _ := strings.Cut(tc.raw, ".")
			if j.SigningInput != h+"."+payload || j.Payload != payload {
				t.Fatalf("signing input %q payload %q", j.SigningInput, j.Payload)
			}
		})
	}
}

func TestVerifyWithKey(t *testing.T) {
	keys := newTestKeys(t)
	claims := map[string]any{"sub": "a"}
	for _, alg := range asymmetric {
		t.Run(alg, func(t *testing.T) {
			raw := sign(t, keys.private(alg), alg, alg, claims)
			j, err := Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if j.Header.Alg != alg || j.Header.Kid != alg {
				t.Fatalf("header %+v", j.Header)
			}
			pub := keys.public(alg)
			if err := VerifyWithKey(pub, alg, j.SigningInput, j.Signature); err != nil {
				t.Fatalf("go-jose signature refused: %v", err)
			}
			bad := func(name string, key *jose.JSONWebKey, a, input string, sig []byte) {
				t.Helper()
				if err := VerifyWithKey(key, a, input, sig); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrAlgNotAllowed) {
					t.Errorf("%s: err = %v, want a refusal", name, err)
				}
			}
			flipped := append([]byte(nil), j.Signature...)
			flipped[len(flipped)/2] ^= 1
			bad("flipped signature bit", pub, alg, j.SigningInput, flipped)
			bad("other payload", pub, alg, j.SigningInput[:len(j.SigningInput)-1]+"A", j.Signature)
			bad("signature with a trailing byte", pub, alg, j.SigningInput, append(append([]byte(nil), j.Signature...), 0))
			bad("truncated signature", pub, alg, j.SigningInput, j.Signature[:len(j.Signature)-1])
			bad("empty signature", pub, alg, j.SigningInput, nil)
			bad("HS256 with the public key", pub, "HS256", j.SigningInput, j.Signature)
			bad("none", pub, "none", j.SigningInput, nil)
			other := map[string]string{"RS": "ES256", "PS": "ES256", "ES": "RS256", "Ed": "RS256"}[alg[:2]]
			bad("key of another type", keys.public(other), alg, j.SigningInput, j.Signature)
		})
	}
}

// TestECDSASignatureShape: ES* signatures are r||s of exactly twice the
// curve size, on the curve alg names; DER or short forms are refused even
// when the numbers are right.
func TestECDSASignatureShape(t *testing.T) {
	keys := newTestKeys(t)
	raw := sign(t, keys.p256, "ES256", "k", map[string]any{"sub": "a"})
	j, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	r := new(big.Int).SetBytes(j.Signature[:32])
	s := new(big.Int).SetBytes(j.Signature[32:])
	der := func() []byte {
		// Minimal DER SEQUENCE of two INTEGERs.
		i := func(n *big.Int) []byte {
			b := n.Bytes()
			if b[0]&0x80 != 0 {
				b = append([]byte{0}, b...)
			}
			return append([]byte{2, byte(len(b))}, b...)
		}
		body := append(i(r), i(s)...)
		return append([]byte{0x30, byte(len(body))}, body...)
	}()
	pub := keys.public("ES256")
	p384 := keys.public("ES384")
	for _, tc := range []struct {
		name string
		key  *jose.JSONWebKey
		alg  string
		sig  []byte
		ok   bool
	}{
		{"r||s", pub, "ES256", j.Signature, true},
		{"DER", pub, "ES256", der, false},
		{"r||s left-padded to 66 bytes", pub, "ES256", append([]byte{0}, append(append([]byte{0}, j.Signature[:32]...), j.Signature[32:]...)...), false},
		{"ES384 alg with a P-256 key", pub, "ES384", j.Signature, false},
		{"ES256 alg with a P-384 key", p384, "ES256", j.Signature, false},
		{"r and s swapped", pub, "ES256", append(append([]byte(nil), j.Signature[32:]...), j.Signature[:32]...), false},
		{"zero signature", pub, "ES256", make([]byte, 64), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyWithKey(tc.key, tc.alg, j.SigningInput, tc.sig)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestNumericDate(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want time.Time
		ok   bool
	}{
		{json.Number("1800000000"), time.Unix(1800000000, 0), true},
		{json.Number("1800000000.5"), time.Unix(1800000000, 5e8), true},
		{float64(1800000000), time.Unix(1800000000, 0), true},
		{json.Number("0"), time.Unix(0, 0), true},
		{json.Number("-1"), time.Time{}, false},
		{json.Number("1e12"), time.Time{}, false},
		{json.Number("NaN"), time.Time{}, false},
		{"1800000000", time.Time{}, false},
		{nil, time.Time{}, false},
		{true, time.Time{}, false},
	} {
		got, ok := NumericDate(tc.in)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("NumericDate(%#v) = %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParse: Parse never panics and, when it accepts, its signing input
// is a prefix of the token and the header it read is what encoding/json
// reads from a header without duplicate or case-folded names.
func FuzzParse(f *testing.F) {
	f.Add(enc(`{"alg":"RS256","kid":"k"}`) + "." + enc(`{}`) + "." + enc("s"))
	f.Add(enc(`{"alg":"RS256","jwk":{"a":[1,{"b":"}"}]}}`) + "." + enc(`{}`) + ".")
	f.Add(enc(`{"\u0061lg":"x","b64":true}`) + ".e30.")
	f.Fuzz(func(t *testing.T, raw string) {
		j, err := Parse(raw)
		if err != nil {
			return
		}
		if !strings.HasPrefix(raw, j.SigningInput+".") {
			t.Fatalf("signing input %q not a prefix", j.SigningInput)
		}
		h, _, _ := strings.Cut(raw, ".")
		b, _ := base64.RawURLEncoding.DecodeString(h)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("accepted a header encoding/json refuses: %v", err)
		}
		for name, got := range map[string]string{"alg": j.Header.Alg, "kid": j.Header.Kid, "typ": j.Header.Typ} {
			if v, ok := m[name]; ok && v != got {
				t.Fatalf("%s = %q, encoding/json reads %v", name, got, v)
			}
		}
	})
}
