package mint

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/credentials/store"
)

// rsaBits is the modulus size of generated RS256 keys.
const rsaBits = 2048

// KeyStore keeps generated signing keys where every replica finds them:
// the first replica to create an epoch's key wins and the others read it.
// store.Store (memory, SQLite) implements it. Values are sealed by the
// Issuer before they reach the store.
type KeyStore interface {
	Get(ctx context.Context, key string) ([]byte, store.Version, error)
	PutIfAbsent(ctx context.Context, key string, value []byte, ttl time.Duration) (store.Version, bool, error)
}

var _ KeyStore = store.Store(nil)

// signingKey is one key: a rotation epoch's generated key, or a key from
// a file. It is immutable.
type signingKey struct {
	epoch  int64  // generated keys only
	source string // key files: the file (for logs)
	kid    string
	alg    jose.SignatureAlgorithm
	priv   crypto.Signer
	public jose.JSONWebKey
	// atSigner signs access tokens (typ at+jwt). jose signers do not mutate
	// state in Sign and are safe for concurrent use.
	atSigner jose.Signer
}

// newSigningKey wraps priv. An empty kid becomes the RFC 7638 SHA-256
// thumbprint (base64url) of the public key.
func newSigningKey(kid string, alg jose.SignatureAlgorithm, priv crypto.Signer) (*signingKey, error) {
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(alg), Use: "sig", KeyID: kid}
	if kid == "" {
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("mint: key thumbprint: %w", err)
		}
		pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	}
	if !pub.Valid() {
		return nil, errors.New("mint: invalid public key")
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: alg,
		Key:       jose.JSONWebKey{Key: priv, KeyID: pub.KeyID, Algorithm: string(alg)},
	}, (&jose.SignerOptions{}).WithType(TypeAccessToken))
	if err != nil {
		return nil, fmt.Errorf("mint: signer: %w", err)
	}
	return &signingKey{kid: pub.KeyID, alg: alg, priv: priv, public: pub, atSigner: signer}, nil
}

// keyRing is the published key set and the signer. For generated keys it
// is one epoch's: prev (still verifying tokens minted before the rotation;
// nil when no live token can use it), cur (the signer) and nxt (published
// ahead; nil only while the store could not provide it). For key files,
// cur is the primary key and files the others.
// It is immutable; the Issuer swaps whole rings.
type keyRing struct {
	epoch          int64
	prev, cur, nxt *signingKey
	files          []*signingKey
	jwks           jose.JSONWebKeySet
	jwksJSON       []byte
	discovery      []byte
	algs           []string // the published algorithms, the signer's first
	retryAt        time.Time
}

// newKeyRing orders the published keys: the signer first, then the next
// (or the other file keys), then the previous.
func (i *Issuer) newKeyRing(r *keyRing) (*keyRing, error) {
	seen := map[string]bool{}
	order := make([]*signingKey, 0, 3+len(r.files))
	order = append(order, r.cur, r.nxt)
	order = append(order, r.files...)
	for _, k := range append(order, r.prev) {
		if k == nil {
			continue
		}
		r.jwks.Keys = append(r.jwks.Keys, k.public)
		if !seen[string(k.alg)] {
			seen[string(k.alg)] = true
			r.algs = append(r.algs, string(k.alg))
		}
	}
	b, err := json.Marshal(r.jwks)
	if err != nil {
		return nil, fmt.Errorf("mint: encode jwks: %w", err)
	}
	r.jwksJSON = append(b, '\n')
	disc, err := json.Marshal(map[string]any{
		"issuer":                                i.issuer,
		"jwks_uri":                              i.issuer + JWKSPath,
		"id_token_signing_alg_values_supported": r.algs,
		// No authorization or token endpoint: tokens are only minted for
		// upstream calls that mcpauthz authorized.
		"response_types_supported": []string{"none"},
		"subject_types_supported":  []string{"public"},
	})
	if err != nil {
		return nil, fmt.Errorf("mint: encode discovery document: %w", err)
	}
	r.discovery = append(disc, '\n')
	return r, nil
}

// generateKey makes a random private key for alg with the standard
// library's generators (crypto/rand).
func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	case RS256:
		return rsa.GenerateKey(crand.Reader, rsaBits)
	case EdDSA:
		_, k, err := ed25519.GenerateKey(crand.Reader)
		return k, err
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
}

// storedKey is the plaintext of a generated key's store record (sealed
// with the store's cipher, bound to the record key).
type storedKey struct {
	Version   int             `json:"v"`
	Algorithm string          `json:"alg"`
	Epoch     int64           `json:"epoch"`
	Created   int64           `json:"created"`
	JWK       json.RawMessage `json:"jwk"`
}

// recordKey names the store record of epoch e's key. The algorithm and
// period are part of it: changing either starts a new series of keys.
func (i *Issuer) recordKey(e int64) string {
	return "mint/keys/" + i.alg + "/" + strconv.FormatInt(int64(i.period/time.Second), 10) + "/" + strconv.FormatInt(e, 10)
}

// storeTimeout bounds one key fetch or creation.
const storeTimeout = 10 * time.Second

// epochKey returns epoch e's key from the store. When none is stored it
// creates one if create is set (the first replica to store it wins; the
// others read the winner's) and returns nil otherwise.
func (i *Issuer) epochKey(ctx context.Context, e int64, create bool) (*signingKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	rk := i.recordKey(e)
	for range 3 {
		sealed, _, err := i.keys.Get(ctx, rk)
		if err == nil {
			return i.openKey(e, rk, sealed)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("mint: read key of epoch %d: %w", e, err)
		}
		if !create {
			return nil, nil
		}
		k, sealed, err := i.newEpochKey(e, rk)
		if err != nil {
			return nil, err
		}
		// Kept until one period after it stops being published.
		ttl := max(i.epochStart(e+3).Sub(i.now()), i.period)
		_, created, err := i.keys.PutIfAbsent(ctx, rk, sealed, ttl)
		if err != nil {
			return nil, fmt.Errorf("mint: store key of epoch %d: %w", e, err)
		}
		if created {
			i.log.Info("mint: generated signing key", "epoch", e, "kid", k.kid, "alg", i.alg)
			return k, nil
		}
		// Another replica stored its key first: read that one.
	}
	return nil, fmt.Errorf("mint: key of epoch %d: gave up after repeated races", e)
}

// newEpochKey generates epoch e's key and seals its record.
func (i *Issuer) newEpochKey(e int64, rk string) (*signingKey, []byte, error) {
	priv, err := generateKey(i.alg)
	if err != nil {
		return nil, nil, fmt.Errorf("mint: generate %s key: %w", i.alg, err)
	}
	k, err := newSigningKey("", jose.SignatureAlgorithm(i.alg), priv)
	if err != nil {
		return nil, nil, err
	}
	jwk, err := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: k.kid, Algorithm: i.alg, Use: "sig"})
	if err != nil {
		return nil, nil, fmt.Errorf("mint: encode key: %w", err)
	}
	defer clear(jwk)
	pt, err := json.Marshal(storedKey{Version: 1, Algorithm: i.alg, Epoch: e, Created: i.now().Unix(), JWK: jwk})
	if err != nil {
		return nil, nil, fmt.Errorf("mint: encode key: %w", err)
	}
	defer clear(pt)
	sealed, err := i.cipher.Encrypt(pt, []byte(rk))
	if err != nil {
		return nil, nil, fmt.Errorf("mint: seal key: %w", err)
	}
	k.epoch = e
	return k, sealed, nil
}

// openKey decrypts and checks a stored key record.
func (i *Issuer) openKey(e int64, rk string, sealed []byte) (*signingKey, error) {
	pt, err := i.cipher.Decrypt(sealed, []byte(rk))
	if err != nil {
		return nil, fmt.Errorf("mint: key of epoch %d: %w (are the store's encryption keys the same on every replica?)", e, err)
	}
	defer clear(pt)
	var rec storedKey
	if err := json.Unmarshal(pt, &rec); err != nil {
		return nil, fmt.Errorf("mint: key of epoch %d: malformed record", e)
	}
	defer clear(rec.JWK)
	if rec.Version != 1 || rec.Algorithm != i.alg || rec.Epoch != e {
		return nil, fmt.Errorf("mint: key of epoch %d: record does not match (version %d, alg %q, epoch %d)", e, rec.Version, rec.Algorithm, rec.Epoch)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(rec.JWK); err != nil {
		return nil, fmt.Errorf("mint: key of epoch %d: malformed key", e)
	}
	priv, alg, err := checkPrivateKey(jwk.Key, i.alg)
	if err != nil || string(alg) != i.alg {
		return nil, fmt.Errorf("mint: key of epoch %d: not a %s private key", e, i.alg)
	}
	k, err := newSigningKey("", alg, priv)
	if err != nil {
		return nil, err
	}
	if jwk.KeyID != k.kid {
		return nil, fmt.Errorf("mint: key of epoch %d: kid does not match the key", e)
	}
	k.epoch = e
	return k, nil
}
