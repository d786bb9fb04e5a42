package exchange

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// assertionLifetime is the exp of RFC 7523 client assertions.
const assertionLifetime = time.Minute

// ParsePrivateKey decodes a PEM private key: PKCS#8 ("PRIVATE KEY"), SEC 1
// ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY"). Errors never include
// key material.
func ParsePrivateKey(pemData []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemData)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block type %q", urlcheck.Truncate(block.Type, 32))
	}
	if err != nil {
		return nil, errors.New("malformed private key")
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("RSA key shorter than 2048 bits")
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, errors.New("unsupported private key type")
	}
}

// keyAlg returns the JWS algorithm for key: want when set and compatible,
// else the key's natural algorithm.
func keyAlg(key crypto.Signer, want string) (jose.SignatureAlgorithm, error) {
	var natural jose.SignatureAlgorithm
	var ok func(string) bool
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			natural = jose.ES256
		case elliptic.P384():
			natural = jose.ES384
		case elliptic.P521():
			natural = jose.ES512
		default:
			return "", errors.New("unsupported EC curve")
		}
		ok = func(a string) bool { return a == string(natural) }
	case *rsa.PrivateKey:
		natural = jose.RS256
		ok = func(a string) bool { return len(a) == 5 && (a[:2] == "RS" || a[:2] == "PS") }
	case ed25519.PrivateKey:
		natural = jose.EdDSA
		ok = func(a string) bool { return a == "EdDSA" }
	default:
		return "", errors.New("unsupported private key type")
	}
	if want == "" {
		return natural, nil
	}
	if !ok(want) {
		return "", fmt.Errorf("signing_alg %s does not match the key", want)
	}
	return jose.SignatureAlgorithm(want), nil
}

// clientAssertion signs an RFC 7523 client authentication JWT:
// iss = sub = client_id, aud = token endpoint, a random jti, a one minute exp.
func clientAssertion(key crypto.Signer, alg jose.SignatureAlgorithm, kid, clientID, tokenURL string, now time.Time) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("exchange: client assertion signer: %w", err)
	}
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	payload, err := json.Marshal(map[string]any{
		"iss": clientID,
		"sub": clientID,
		"aud": tokenURL,
		"jti": hex.EncodeToString(jti[:]),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return "", fmt.Errorf("exchange: client assertion: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("exchange: sign client assertion: %w", err)
	}
	return jws.CompactSerialize()
}
