package mint

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hkdf"
	crand "crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"strconv"

	jose "github.com/go-jose/go-jose/v4"
)

// rsaBits is the modulus size of RS256 keys.
const rsaBits = 2048

// kidBytes is how much of the RFC 7638 SHA-256 thumbprint the kid keeps
// (base64url, 22 characters).
const kidBytes = 16

// signingKey is the key of one rotation epoch. It is immutable.
type signingKey struct {
	epoch  int64
	kid    string
	alg    jose.SignatureAlgorithm
	priv   crypto.Signer
	public jose.JSONWebKey
	// atSigner signs access tokens (typ at+jwt). jose signers do not mutate
	// state in Sign and are safe for concurrent use.
	atSigner jose.Signer
}

// keyRing is the set of keys of one epoch: prev (still verifying tokens
// minted before the rotation; nil when no live token can use it), cur
// (the signer) and nxt (published ahead).
// It is immutable; the Issuer swaps whole rings.
type keyRing struct {
	epoch          int64
	prev, cur, nxt *signingKey
	jwks           jose.JSONWebKeySet
	jwksJSON       []byte
}

func newKeyRing(epoch int64, prev, cur, nxt *signingKey) (*keyRing, error) {
	r := &keyRing{epoch: epoch, prev: prev, cur: cur, nxt: nxt}
	// The order is stable: the signer first, then the next, then the previous.
	for _, k := range []*signingKey{cur, nxt, prev} {
		if k != nil {
			r.jwks.Keys = append(r.jwks.Keys, k.public)
		}
	}
	b, err := json.Marshal(r.jwks)
	if err != nil {
		return nil, fmt.Errorf("mint: encode jwks: %w", err)
	}
	r.jwksJSON = append(b, '\n')
	return r, nil
}

// keySource makes the key of an epoch: derived from a seed, or random.
type keySource struct {
	alg  string
	seed []byte    // nil: random keys
	rand io.Reader // entropy for random keys
}

// key returns the signing key for epoch.
func (s keySource) key(epoch int64) (*signingKey, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch {
	case s.seed != nil:
		priv, err = deriveKey(s.alg, s.seed, epoch)
	case s.alg == RS256:
		// The standard library's generator (crypto/rsa ignores custom
		// readers since Go 1.26, so Options.Rand does not apply here).
		priv, err = rsa.GenerateKey(crand.Reader, rsaBits)
	default:
		ikm := make([]byte, 32)
		if _, err = io.ReadFull(s.rand, ikm); err == nil {
			priv, err = deriveKey(s.alg, ikm, epoch)
		}
		clear(ikm)
	}
	if err != nil {
		return nil, fmt.Errorf("mint: make %s key: %w", s.alg, err)
	}
	return newSigningKey(epoch, jose.SignatureAlgorithm(s.alg), priv)
}

func newSigningKey(epoch int64, alg jose.SignatureAlgorithm, priv crypto.Signer) (*signingKey, error) {
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(alg), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("mint: key thumbprint: %w", err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp[:kidBytes])
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: alg,
		Key:       jose.JSONWebKey{Key: priv, KeyID: pub.KeyID, Algorithm: string(alg)},
	}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, fmt.Errorf("mint: signer: %w", err)
	}
	return &signingKey{epoch: epoch, kid: pub.KeyID, alg: alg, priv: priv, public: pub, atSigner: signer}, nil
}

// deriveKey derives the private key of epoch deterministically from ikm:
// HKDF-SHA256(ikm, info "mcpauthz-mint/"+alg+"/"+epoch).
//
//   - EdDSA: the 32 derived bytes are the Ed25519 seed (RFC 8032).
//   - ES256: 48 derived bytes b give the scalar (b mod (n-1)) + 1
//     (FIPS 186-5 A.2.1, "extra random bits").
//   - RS256: 32 derived bytes seed a ChaCha8 stream from which two 1024-bit
//     primes are drawn (top two bits and the low bit set, gcd(e, p-1) = 1,
//     Miller-Rabin and Baillie-PSW via math/big), e = 65537.
//
// The result depends only on ikm, alg and epoch, so replicas sharing ikm
// agree on every key.
func deriveKey(alg string, ikm []byte, epoch int64) (crypto.Signer, error) {
	info := "mcpauthz-mint/" + alg + "/" + strconv.FormatInt(epoch, 10)
	switch alg {
	case EdDSA:
		b, err := hkdf.Key(sha256.New, ikm, nil, info, ed25519.SeedSize)
		if err != nil {
			return nil, fmt.Errorf("hkdf: %w", err)
		}
		defer clear(b)
		return ed25519.NewKeyFromSeed(b), nil
	case ES256:
		b, err := hkdf.Key(sha256.New, ikm, nil, info, 48)
		if err != nil {
			return nil, fmt.Errorf("hkdf: %w", err)
		}
		defer clear(b)
		n := elliptic.P256().Params().N
		nMinus1 := new(big.Int).Sub(n, big.NewInt(1))
		d := new(big.Int).SetBytes(b)
		d.Mod(d, nMinus1).Add(d, big.NewInt(1))
		raw := d.FillBytes(make([]byte, 32))
		defer clear(raw)
		return ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
	case RS256:
		b, err := hkdf.Key(sha256.New, ikm, nil, info, 32)
		if err != nil {
			return nil, fmt.Errorf("hkdf: %w", err)
		}
		var seed [32]byte
		copy(seed[:], b)
		clear(b)
		k, err := deriveRSA(mrand.NewChaCha8(seed))
		clear(seed[:])
		return k, err
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
}

// deriveRSA draws a 2048-bit RSA key from the deterministic stream rng.
func deriveRSA(rng io.Reader) (*rsa.PrivateKey, error) {
	const e = 65537
	one := big.NewInt(1)
	// FIPS 186-5 A.1.3: |p - q| > 2^(nlen/2 - 100).
	minDiff := new(big.Int).Lsh(one, rsaBits/2-100)
	for range 16 {
		p, err := derivePrime(rng, rsaBits/2, e)
		if err != nil {
			return nil, err
		}
		q, err := derivePrime(rng, rsaBits/2, e)
		if err != nil {
			return nil, err
		}
		if new(big.Int).Abs(new(big.Int).Sub(p, q)).Cmp(minDiff) <= 0 {
			continue
		}
		pm1 := new(big.Int).Sub(p, one)
		qm1 := new(big.Int).Sub(q, one)
		gcd := new(big.Int).GCD(nil, nil, pm1, qm1)
		lambda := new(big.Int).Div(new(big.Int).Mul(pm1, qm1), gcd)
		d := new(big.Int).ModInverse(big.NewInt(e), lambda)
		if d == nil || d.BitLen() <= rsaBits/2 {
			continue
		}
		if p.Cmp(q) < 0 {
			p, q = q, p
		}
		k := &rsa.PrivateKey{
			PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: e},
			D:         d,
			Primes:    []*big.Int{p, q},
		}
		if k.N.BitLen() != rsaBits {
			continue
		}
		k.Precompute()
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("derived rsa key invalid: %w", err)
		}
		return k, nil
	}
	return nil, errors.New("could not derive an rsa key")
}

// derivePrime draws odd candidates of exactly bits bits with the top two
// bits set from rng until one is (probably) prime and p-1 is coprime to e
// (a prime).
func derivePrime(rng io.Reader, bits int, e int64) (*big.Int, error) {
	buf := make([]byte, bits/8)
	defer clear(buf)
	p := new(big.Int)
	r := new(big.Int)
	be := big.NewInt(e)
	for range 1 << 16 {
		if _, err := io.ReadFull(rng, buf); err != nil {
			return nil, fmt.Errorf("read prime candidate: %w", err)
		}
		buf[0] |= 0xc0
		buf[len(buf)-1] |= 1
		p.SetBytes(buf)
		if r.Mod(p, be).Cmp(big.NewInt(1)) == 0 { // e divides p-1
			continue
		}
		if p.ProbablyPrime(20) {
			return p, nil
		}
	}
	return nil, errors.New("no prime found")
}
