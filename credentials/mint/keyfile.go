package mint

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// fileKeys is the result of reading the configured key files.
type fileKeys struct {
	primary *signingKey
	others  []*signingKey
}

// readKeyFiles reads every configured file and returns their contents and
// a digest over all of them (to notice changes). Errors name the field and
// the file, never its content.
func readKeyFiles(cfgs []KeyFile) ([][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	datas := make([][]byte, len(cfgs))
	for n, kf := range cfgs {
		b, err := readLimited(kf.File)
		if err != nil {
			return nil, [sha256.Size]byte{}, fmt.Errorf("keys[%d].file %s: %w", n, kf.File, err)
		}
		datas[n] = b
		var l [8]byte
		binary.BigEndian.PutUint64(l[:], uint64(len(b)))
		h.Write(l[:])
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return datas, sum, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, pe.Err
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxKeyFileSize {
		clear(b)
		return nil, fmt.Errorf("larger than %d bytes", MaxKeyFileSize)
	}
	return b, nil
}

// parseKeyFiles turns the files' contents into signing keys: the primary
// (the first key of the file marked primary, else of the first file) and
// the others, in configuration order. Kids must be unique and no key may
// appear twice.
func parseKeyFiles(cfgs []KeyFile, datas [][]byte) (*fileKeys, error) {
	out := &fileKeys{}
	kids := map[string]bool{}
	thumbs := map[string]bool{}
	primaryFile := 0
	for n, kf := range cfgs {
		if kf.Primary {
			primaryFile = n
		}
	}
	for n, kf := range cfgs {
		field := fmt.Sprintf("keys[%d]", n)
		parsed, err := parseKeyFile(datas[n])
		if err != nil {
			return nil, fmt.Errorf("%s.file %s: %w", field, kf.File, err)
		}
		if kf.KeyID != "" && len(parsed) != 1 {
			return nil, fmt.Errorf("%s.kid: set, but %s holds %d keys (give kids inside the JWK Set)", field, kf.File, len(parsed))
		}
		for m, p := range parsed {
			where := fmt.Sprintf("%s.file %s", field, kf.File)
			if len(parsed) > 1 {
				where += fmt.Sprintf(" (key %d)", m)
			}
			if p.use != "" && p.use != "sig" {
				return nil, fmt.Errorf("%s: key use is %q, want sig", where, p.use)
			}
			want := kf.Algorithm
			if want == "" {
				want = p.alg
			} else if p.alg != "" && p.alg != want {
				return nil, fmt.Errorf("%s: the JWK's alg %s differs from algorithm %s", where, p.alg, want)
			}
			priv, alg, err := checkPrivateKey(p.key, want)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			kid := kf.KeyID
			if kid == "" {
				kid = p.kid
			}
			if kid != "" && !validKid(kid) {
				return nil, fmt.Errorf("%s: kid must be 1 to 128 visible ASCII characters", where)
			}
			k, err := newSigningKey(kid, alg, priv)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			k.source = kf.File
			tp, err := k.public.Thumbprint(crypto.SHA256)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			if thumbs[string(tp)] {
				return nil, fmt.Errorf("%s: the same key is listed twice", where)
			}
			thumbs[string(tp)] = true
			if kids[k.kid] {
				return nil, fmt.Errorf("%s: duplicate kid %q", where, k.kid)
			}
			kids[k.kid] = true
			if n == primaryFile && m == 0 {
				out.primary = k
			} else {
				out.others = append(out.others, k)
			}
		}
	}
	if out.primary == nil {
		return nil, errors.New("keys: no signing key")
	}
	return out, nil
}

// parsedKey is one key as found in a file, before its checks.
type parsedKey struct {
	key      any
	kid, alg string
	use      string
}

// parseKeyFile reads a JWK, a JWK Set or PEM. Errors never quote the file.
func parseKeyFile(data []byte) ([]parsedKey, error) {
	trimmed := bytes.TrimSpace(data)
	switch {
	case len(trimmed) == 0:
		return nil, errors.New("empty file")
	case trimmed[0] == '{':
		return parseJWKFile(trimmed)
	case bytes.Contains(trimmed, []byte("-----BEGIN ")):
		return parsePEMFile(trimmed)
	default:
		return nil, errors.New("neither PEM nor JSON (JWK)")
	}
}

func parseJWKFile(data []byte) ([]parsedKey, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, errors.New("malformed JSON")
	}
	var jwks []jose.JSONWebKey
	if _, isSet := probe["keys"]; isSet {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(data, &set); err != nil {
			return nil, fmt.Errorf("malformed JWK Set: %w", jwkErr(err))
		}
		if len(set.Keys) == 0 {
			return nil, errors.New("the JWK Set has no keys")
		}
		jwks = set.Keys
	} else {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("malformed JWK: %w", jwkErr(err))
		}
		jwks = []jose.JSONWebKey{k}
	}
	out := make([]parsedKey, len(jwks))
	for n, k := range jwks {
		if _, sym := k.Key.([]byte); sym {
			return nil, fmt.Errorf("key %d: a symmetric key cannot sign tokens that upstreams verify with a published key", n)
		}
		if !k.Valid() {
			return nil, fmt.Errorf("key %d: invalid JWK", n)
		}
		if k.IsPublic() {
			return nil, fmt.Errorf("key %d: a public key only; the issuer needs the private key to sign", n)
		}
		out[n] = parsedKey{key: k.Key, kid: k.KeyID, alg: k.Algorithm, use: k.Use}
	}
	return out, nil
}

// jwkErr keeps go-jose's message (it names the problem, not key values).
func jwkErr(err error) error { return errors.New(strings.TrimPrefix(err.Error(), "go-jose/go-jose: ")) }

func parsePEMFile(data []byte) ([]parsedKey, error) {
	var (
		keys   []parsedKey
		public bool
	)
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if _, enc := b.Headers["Proc-Type"]; enc || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("encrypted PEM keys are not supported: store the key unencrypted in a file only mcpauthz can read")
		}
		var (
			key any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			public = true
			continue
		case "EC PARAMETERS":
			continue // openssl ecparam -genkey writes it before the key
		default:
			return nil, fmt.Errorf("unsupported PEM block %q", urlcheck.Truncate(b.Type, 32))
		}
		clear(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("malformed %s PEM block", b.Type)
		}
		keys = append(keys, parsedKey{key: key})
	}
	switch {
	case len(keys) == 0 && public:
		return nil, errors.New("a public key only; the issuer needs the private key to sign")
	case len(keys) == 0:
		return nil, errors.New("no PEM private key found")
	case len(keys) > 1:
		return nil, errors.New("more than one private key in a PEM file: use one file per key (or a JWK Set)")
	}
	return keys, nil
}

// checkPrivateKey checks that key is a private key mcpauthz can sign with
// under alg, choosing the algorithm from the key's type when alg is empty.
func checkPrivateKey(key any, alg string) (crypto.Signer, jose.SignatureAlgorithm, error) {
	var def string
	var ok []string
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if err := k.Validate(); err != nil {
			return nil, "", errors.New("invalid RSA private key")
		}
		if k.N.BitLen() < MinRSABits {
			return nil, "", fmt.Errorf("RSA key of %d bits: at least %d are required", k.N.BitLen(), MinRSABits)
		}
		def, ok = "RS256", []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			def = "ES256"
		case elliptic.P384():
			def = "ES384"
		case elliptic.P521():
			def = "ES512"
		default:
			return nil, "", errors.New("unsupported EC curve (want P-256, P-384 or P-521)")
		}
		ok = []string{def}
	case ed25519.PrivateKey:
		if len(k) != ed25519.PrivateKeySize {
			return nil, "", errors.New("invalid Ed25519 private key")
		}
		def, ok = "EdDSA", []string{"EdDSA"}
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return nil, "", errors.New("a public key only; the issuer needs the private key to sign")
	case []byte:
		return nil, "", errors.New("a symmetric key cannot sign tokens that upstreams verify with a published key")
	default:
		return nil, "", fmt.Errorf("unsupported key type %T", key)
	}
	if alg == "" {
		alg = def
	}
	for _, a := range ok {
		if a == alg {
			return key.(crypto.Signer), jose.SignatureAlgorithm(alg), nil
		}
	}
	return nil, "", fmt.Errorf("algorithm %s does not fit this key (want one of %s)", urlcheck.Truncate(alg, 16), strings.Join(ok, ", "))
}
