// Package devidp is a small but real OIDC issuer served over HTTP: it
// publishes a discovery document and a JWKS, and mints signed JWT access
// tokens (RFC 9068, typ at+jwt) with RS256 or ES256 keys. It also issues
// opaque access tokens, kept in memory, and answers RFC 7662 introspection
// for them on POST /introspect (with client authentication). It exists for
// tests, end-to-end runs and a development mode and must never be used to
// protect production traffic.
//
// Browsers and stock MCP clients sign in at it (authorize.go): a login
// form at /authorize for the users of Options.Users (default alice, bob and
// carol, password = username, org_id "acme"), the authorization code grant
// with PKCE S256 and refresh tokens at /token, RFC 7591 dynamic client
// registration at /register and Client ID Metadata Documents (both with a
// consent page), RFC 7009 revocation at /revoke, OIDC ID tokens and
// userinfo, and complete RFC 8414 / OIDC metadata. The endpoints are an
// embedded internal/oauthtest Provider whose tokens this issuer signs.
//
// Close stops the server and Start serves again at the same address, so a
// test can take the IdP down mid-run and bring it back.
//
// It also mints deliberately broken tokens ("alg": "none", HS256 keyed with
// the RSA public key) so verifiers can be tested against those attacks.
//
// An Issuer is safe for concurrent use.
package devidp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/internal/httpjson"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
	"github.com/mcpauthz/mcpauthz/internal/randid"
)

// Options configures an Issuer. All fields are optional.
type Options struct {
	// IssuerURL fixes the issuer (and URL) instead of the address Start
	// listens on; use it when serving Handler from your own server.
	IssuerURL string
	// Now defaults to time.Now; it sets iat and exp of minted tokens.
	Now func() time.Time
	// RSABits defaults to 2048.
	RSABits int
	// TokenTTL is the default lifetime of minted tokens; default 5m.
	TokenTTL time.Duration
	// IntrospectionClients are the clients allowed to call /introspect:
	// client_id -> client_secret. A client whose secret is "" is a public
	// client that sends only its client_id. Empty refuses every caller.
	IntrospectionClients map[string]string
	// OpaqueTokenPrefix starts every opaque token (e.g. "devat_"); default none.
	OpaqueTokenPrefix string

	// Users sign in at /authorize; default DefaultUsers() (alice, bob,
	// carol). A user's org_id claim defaults to "acme".
	Users map[string]User
	// Clients are pre-registered sign-in clients: client_id -> secret ("" =
	// public client). They may redirect to any loopback URI and skip the
	// consent page. MCP clients may instead register at /register.
	Clients map[string]string
	// ClientRedirectURIs adds non-loopback redirect URIs per client_id,
	// matched exactly (e.g. https://mcpauthz.example.com/connect/login/callback).
	ClientRedirectURIs map[string][]string
	// Scopes, when set, are scopes_supported and the only scopes granted at
	// /authorize (openid and offline_access always are); otherwise any
	// well-formed scope is granted as requested.
	Scopes []string
	// ClientMetadataHTTPClient fetches Client ID Metadata Documents (a
	// client_id that is an https URL). The default refuses non-public
	// addresses; tests set one that trusts their TLS server.
	ClientMetadataHTTPClient *http.Client
}

type keyPair struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

// Issuer is a development OIDC issuer. Create it with New.
type Issuer struct {
	opts           Options
	fetches        atomic.Int64
	introspections atomic.Int64

	mu      sync.RWMutex
	url     string
	current map[jose.SignatureAlgorithm]keyPair
	// published holds every key in the JWKS: the current generation and the
	// previous one, so tokens minted before RotateKey stay verifiable.
	published []keyPair
	gen       int
	opaque    map[string]map[string]any // opaque token -> claims

	lis  oauthtest.Listener
	auth *oauthtest.Provider // the sign-in endpoints (authorize.go)
}

// New creates an Issuer with one RS256 and one ES256 key.
func New(opts Options) (*Issuer, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.RSABits == 0 {
		opts.RSABits = 2048
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 5 * time.Minute
	}
	opts.IntrospectionClients = maps.Clone(opts.IntrospectionClients)
	i := &Issuer{opts: opts, url: strings.TrimSuffix(opts.IssuerURL, "/")}
	if err := i.rotate(); err != nil {
		return nil, err
	}
	i.auth = i.newAuthServer()
	return i, nil
}

func (i *Issuer) rotate() error {
	rk, err := rsa.GenerateKey(rand.Reader, i.opts.RSABits)
	if err != nil {
		return fmt.Errorf("devidp: generate rsa key: %w", err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("devidp: generate ecdsa key: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.gen++
	prev := i.current
	i.current = map[jose.SignatureAlgorithm]keyPair{
		jose.RS256: {kid: fmt.Sprintf("rs256-%d-%s", i.gen, randid.Hex(4)), alg: jose.RS256, priv: rk},
		jose.ES256: {kid: fmt.Sprintf("es256-%d-%s", i.gen, randid.Hex(4)), alg: jose.ES256, priv: ek},
	}
	i.published = []keyPair{i.current[jose.RS256], i.current[jose.ES256]}
	if prev != nil {
		i.published = append(i.published, prev[jose.RS256], prev[jose.ES256])
	}
	return nil
}

// RotateKey generates new RS256 and ES256 keys with new kids. Minting uses
// the new keys; the JWKS publishes the new and the previous generation.
func (i *Issuer) RotateKey() {
	if err := i.rotate(); err != nil {
		panic(err) // crypto/rand failure
	}
}

// Kid returns the current key id for alg ("RS256" or "ES256").
func (i *Issuer) Kid(alg string) string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.current[jose.SignatureAlgorithm(alg)].kid
}

// URL returns the issuer URL ("" before Start unless Options.IssuerURL is set).
func (i *Issuer) URL() string {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.url
}

// JWKSFetches counts requests served on /jwks.
func (i *Issuer) JWKSFetches() int { return int(i.fetches.Load()) }

// Handler serves /.well-known/openid-configuration,
// /.well-known/oauth-authorization-server, /jwks, POST /introspect and the
// sign-in endpoints /authorize, /token, /revoke, /register and /userinfo.
func (i *Issuer) Handler() http.Handler {
	mux := http.NewServeMux()
	disc := func(w http.ResponseWriter, r *http.Request) { httpjson.Write(w, http.StatusOK, i.discovery()) }
	i.mountAuthServer(mux)
	mux.HandleFunc("GET /.well-known/openid-configuration", disc)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", disc)
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		i.fetches.Add(1)
		httpjson.Write(w, http.StatusOK, i.JWKS())
	})
	mux.HandleFunc("POST /introspect", i.introspect)
	return mux
}

// JWKS returns the published public keys.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	i.mu.RLock()
	defer i.mu.RUnlock()
	set := jose.JSONWebKeySet{}
	for _, kp := range i.published {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key: kp.priv.Public(), KeyID: kp.kid, Algorithm: string(kp.alg), Use: "sig",
		})
	}
	return set
}

// Start serves Handler on 127.0.0.1 at a free port and returns the issuer
// URL ("http://127.0.0.1:PORT"), unless Options.IssuerURL fixed it. After
// Close, Start serves again at the address of the first Start (keys, opaque
// tokens, clients, sign-in grants are kept), so the issuer URL stays valid.
func (i *Issuer) Start() (string, error) {
	base, err := i.lis.Start(i.Handler())
	if err != nil {
		return "", fmt.Errorf("devidp: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.url == "" {
		i.url = base
	}
	return i.url, nil
}

// Close stops the server started by Start: open connections are closed and
// new ones refused until Start is called again.
func (i *Issuer) Close() { i.lis.Close() }

// MintOption adjusts one minted token.
type MintOption func(*mintOpts)

type mintOpts struct {
	alg    jose.SignatureAlgorithm
	kid    string
	expiry *time.Duration
	header map[string]any
}

// WithAlg selects "RS256" (default) or "ES256".
func WithAlg(alg string) MintOption {
	return func(o *mintOpts) { o.alg = jose.SignatureAlgorithm(alg) }
}

// WithKid overrides the kid header (the token is still signed with the
// current key), e.g. to simulate an unknown key.
func WithKid(kid string) MintOption { return func(o *mintOpts) { o.kid = kid } }

// WithExpiry sets exp to now+d (d may be negative) unless the claims set exp.
func WithExpiry(d time.Duration) MintOption { return func(o *mintOpts) { o.expiry = &d } }

// WithHeader adds a protected header field (e.g. "jku", or "typ" to override at+jwt).
func WithHeader(k string, v any) MintOption {
	return func(o *mintOpts) {
		if o.header == nil {
			o.header = map[string]any{}
		}
		o.header[k] = v
	}
}

// Mint signs claims as an access token. Missing iss, iat, exp (now+TokenTTL)
// and jti are filled in; the header has typ at+jwt and the key's kid. A claim
// set to nil is removed (e.g. "exp": nil mints a token without exp).
func (i *Issuer) Mint(claims map[string]any, opts ...MintOption) (string, error) {
	o := mintOpts{alg: jose.RS256}
	for _, f := range opts {
		f(&o)
	}
	i.mu.RLock()
	kp, ok := i.current[o.alg]
	i.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("devidp: unsupported alg %q", o.alg)
	}
	kid := kp.kid
	if o.kid != "" {
		kid = o.kid
	}
	so := (&jose.SignerOptions{}).WithType("at+jwt")
	for k, v := range o.header {
		so = so.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: o.alg,
		Key:       jose.JSONWebKey{Key: kp.priv, KeyID: kid, Algorithm: string(o.alg)},
	}, so)
	if err != nil {
		return "", fmt.Errorf("devidp: signer: %w", err)
	}
	payload, err := json.Marshal(i.fill(claims, o.expiry))
	if err != nil {
		return "", fmt.Errorf("devidp: encode claims: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devidp: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// MustMint is Mint that panics on error, for tests.
func (i *Issuer) MustMint(claims map[string]any, opts ...MintOption) string {
	t, err := i.Mint(claims, opts...)
	if err != nil {
		panic(err)
	}
	return t
}

func (i *Issuer) fill(claims map[string]any, expiry *time.Duration) map[string]any {
	now := i.opts.Now()
	ttl := i.opts.TokenTTL
	if expiry != nil {
		ttl = *expiry
	}
	out := map[string]any{
		"iss": i.URL(),
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
		"jti": randid.Hex(16),
	}
	maps.Copy(out, claims)
	for k, v := range out {
		if v == nil {
			delete(out, k)
		}
	}
	return out
}

// MintNone returns an unsigned token with "alg": "none" (an attack token).
func (i *Issuer) MintNone(claims map[string]any) string {
	hdr := map[string]any{"alg": "none", "typ": "at+jwt"}
	return i.compact(hdr, claims) + "."
}

// MintHS256WithPublicKey returns a token HMAC-signed with the issuer's RSA
// public key (PEM) as the secret, naming the RSA kid: the classic algorithm
// confusion attack.
func (i *Issuer) MintHS256WithPublicKey(claims map[string]any) string {
	i.mu.RLock()
	kp := i.current[jose.RS256]
	i.mu.RUnlock()
	der, err := x509.MarshalPKIXPublicKey(kp.priv.Public())
	if err != nil {
		panic(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	signingInput := i.compact(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": kp.kid}, claims)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signingInput))
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func (i *Issuer) compact(hdr, claims map[string]any) string {
	h, _ := json.Marshal(hdr)
	p, _ := json.Marshal(i.fill(claims, nil))
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
}
