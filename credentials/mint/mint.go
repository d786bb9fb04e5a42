// Package mint is mcpauthz's built-in token issuer for delegated
// credentials. It signs short-lived JWT access tokens (RFC 9068, typ
// at+jwt) naming the user (sub) and the chain of agents acting for them
// (RFC 8693 act), and generic signed JWTs such as attribution headers. It
// publishes a discovery document and a JWKS so upstream MCP servers can
// verify what it signs.
//
// # Keys and rotation
//
// Time is divided into epochs of Config.RotationPeriod P: epoch e starts at
// e·P after the Unix epoch. The key of epoch e signs only while epoch e is
// current. The JWKS publishes the keys of epochs e-1 (tokens minted just
// before the rotation stay verifiable; they live at most TokenTTL ≤ P/2),
// e (the signer) and e+1 (published a whole period ahead). The JWKS is
// served with a Cache-Control max-age of at most P/8, so an upstream that
// refreshed its JWKS within the last period never meets an unknown kid.
// A kid is the base64url form of the first 16 bytes of the key's RFC 7638
// SHA-256 thumbprint.
//
// With Config.Seed the key of each epoch is derived from the seed
// (HKDF-SHA256, info "mcpauthz-mint/"+alg+"/"+epoch), so every replica
// sharing the seed signs with and publishes the same keys without
// coordination, and a restarted replica still publishes the previous key.
// Without a seed keys are random per process: such an Issuer must be the
// only replica (New logs a warning).
//
// # Concurrency
//
// An Issuer is safe for concurrent use. Signing is lock-free: the keys live
// in an immutable ring behind an atomic pointer, swapped once per epoch
// (by Run, by Rotate, or by the first call that notices the new epoch).
// Private keys and the seed never appear in errors, logs or String output.
package mint

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Paths served by Handler, relative to the issuer URL's path.
const (
	OpenIDConfigurationPath = "/.well-known/openid-configuration"
	OAuthMetadataPath       = "/.well-known/oauth-authorization-server"
	JWKSPath                = "/.well-known/jwks.json"
)

// TypeAccessToken is the typ header of tokens made by Mint (RFC 9068).
const TypeAccessToken = "at+jwt"

// maxActorDepth bounds the act chain (it also stops pointer cycles).
const maxActorDepth = 8

// maxClaimLen bounds sub, aud, client_id, iss and scope values.
const maxClaimLen = 2048

// reserved reports whether Claims.Extra may not set name: it is set by
// Mint, or is a registered claim whose meaning an upstream relies on.
func reserved(name string) bool {
	switch name {
	case "iss", "sub", "aud", "exp", "nbf", "iat", "jti",
		"client_id", "scope", "scp", "act", "may_act",
		"azp", "cnf", "auth_time", "acr", "amr", "nonce", "sid", "typ":
		return true
	}
	return false
}

// Options are the optional collaborators of an Issuer.
type Options struct {
	// Now defaults to time.Now. It sets iat/exp and selects the key epoch.
	Now func() time.Time
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Rand defaults to crypto/rand.Reader and must be safe for concurrent
	// use. It makes jti values and, without a seed, ES256 and EdDSA keys
	// (RS256 keys without a seed always come from crypto/rand).
	Rand io.Reader
}

// Actor is one delegation hop (RFC 8693 section 4.1): the party acting for
// the subject. Act nests the prior actor of a chain: the outermost Actor is
// the current actor.
type Actor struct {
	Subject  string `json:"sub"`
	ClientID string `json:"client_id,omitempty"`
	Issuer   string `json:"iss,omitempty"`
	Act      *Actor `json:"act,omitempty"`
}

// ActorChain nests actors, outermost (the current actor) first, into an
// RFC 8693 act claim: each later actor is the Act of the one before. It
// returns nil for no actors.
func ActorChain(actors []Actor) *Actor {
	var out *Actor
	for i := len(actors) - 1; i >= 0; i-- {
		a := actors[i]
		a.Act = out
		out = &a
	}
	return out
}

// Claims describes one access token.
type Claims struct {
	// Audience is the upstream the token is for (aud); required.
	Audience string
	// Subject is the user (sub); required.
	Subject string
	// ClientID is the OAuth client the token was issued to (client_id,
	// required by RFC 9068): the agent's client, or the caller itself.
	ClientID string
	// Scopes become the space-separated scope claim (omitted when empty;
	// duplicates are dropped, order kept).
	Scopes []string
	// Actor is the act claim (nil: no delegation).
	Actor *Actor
	// Extra adds claims such as org or user_key. Registered and
	// Mint-owned names are refused: iss sub aud exp nbf iat jti client_id
	// scope scp act may_act azp cnf auth_time acr amr nonce sid typ.
	Extra map[string]any
}

// Issuer signs tokens and publishes its keys. Create it with New; it is
// safe for concurrent use.
type Issuer struct {
	issuer    string
	basePath  string
	alg       string
	ttl       time.Duration
	period    time.Duration
	maxAge    string // Cache-Control value
	seeded    bool
	src       keySource
	now       func() time.Time
	log       *slog.Logger
	rand      io.Reader
	discovery []byte

	ring atomic.Pointer[keyRing]
	mu   sync.Mutex // serializes ring changes

	// onRotate, when set (tests), is called after a new ring is installed.
	onRotate func(epoch int64)
}

// New validates cfg, resolves the seed and makes the keys of the current,
// previous and next epochs.
//
// Without cfg.Seed the keys are random and private to this process: tokens
// it mints only verify against its own JWKS, so it must be the only
// replica. New logs a warning saying so.
func New(ctx context.Context, cfg Config, opts Options) (*Issuer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mint: invalid config: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("mint: %w", err)
	}
	cfg = cfg.withDefaults()
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Rand == nil {
		opts.Rand = crand.Reader
	}
	u, _ := url.Parse(cfg.Issuer) // validated
	maxAge := min(cfg.RotationPeriod/8, time.Hour)
	i := &Issuer{
		issuer:   cfg.Issuer,
		basePath: u.Path,
		alg:      cfg.Algorithm,
		ttl:      cfg.TokenTTL,
		period:   cfg.RotationPeriod,
		maxAge:   "public, max-age=" + strconv.Itoa(int(maxAge/time.Second)),
		now:      opts.Now,
		log:      opts.Logger,
		rand:     opts.Rand,
		src:      keySource{alg: cfg.Algorithm, rand: opts.Rand},
	}
	if cfg.Seed != nil {
		v, err := cfg.Seed.Resolve()
		if err != nil {
			return nil, fmt.Errorf("mint: seed: %w", err)
		}
		seed := []byte(v.Reveal())
		if err := checkSeed(seed); err != nil {
			clear(seed)
			return nil, fmt.Errorf("mint: seed (%s): %w", cfg.Seed, err)
		}
		i.src.seed, i.seeded = seed, true
	}
	disc, err := json.Marshal(map[string]any{
		"issuer":                                i.issuer,
		"jwks_uri":                              i.issuer + JWKSPath,
		"id_token_signing_alg_values_supported": []string{i.alg},
		// No authorization or token endpoint: tokens are only minted for
		// upstream calls that mcpauthz authorized.
		"response_types_supported": []string{"none"},
		"subject_types_supported":  []string{"public"},
	})
	if err != nil {
		return nil, fmt.Errorf("mint: encode discovery document: %w", err)
	}
	i.discovery = append(disc, '\n')

	e := i.epochOf(i.now())
	var prev *signingKey
	if i.seeded {
		// Other replicas, or this one before a restart, may have signed
		// with the previous epoch's key.
		if prev, err = i.src.key(e - 1); err != nil {
			return nil, err
		}
	}
	cur, err := i.src.key(e)
	if err != nil {
		return nil, err
	}
	nxt, err := i.src.key(e + 1)
	if err != nil {
		return nil, err
	}
	r, err := newKeyRing(e, prev, cur, nxt)
	if err != nil {
		return nil, err
	}
	i.ring.Store(r)
	if !i.seeded {
		i.log.Warn("mint: no issuer seed configured; signing keys are random and private to this process, so run a single replica or set issuer.seed",
			"issuer", i.issuer, "alg", i.alg)
	}
	i.log.Info("mint: token issuer ready", "issuer", i.issuer, "alg", i.alg, "kid", cur.kid,
		"epoch", e, "token_ttl", i.ttl, "rotation_period", i.period, "seeded", i.seeded)
	return i, nil
}

// checkSeed refuses seeds that are short or obviously not random. The
// error never contains the seed.
func checkSeed(seed []byte) error {
	if len(seed) < MinSeedLen {
		return fmt.Errorf("must be at least %d bytes, got %d (use e.g. `openssl rand -base64 48`)", MinSeedLen, len(seed))
	}
	var seen [256]bool
	distinct := 0
	for _, b := range seed {
		if !seen[b] {
			seen[b] = true
			distinct++
		}
	}
	if distinct < 8 {
		return errors.New("does not look random (fewer than 8 distinct bytes)")
	}
	return nil
}

// URL returns the issuer identifier (the iss of minted tokens).
func (i *Issuer) URL() string { return i.issuer }

// Algorithm returns the signature algorithm.
func (i *Issuer) Algorithm() string { return i.alg }

// TokenTTL returns the lifetime of minted tokens.
func (i *Issuer) TokenTTL() time.Duration { return i.ttl }

// String describes the issuer without key material.
func (i *Issuer) String() string {
	return fmt.Sprintf("mint.Issuer{issuer: %s, alg: %s, seeded: %t}", i.issuer, i.alg, i.seeded)
}

// GoString is String: %#v must not dump keys either.
func (i *Issuer) GoString() string { return i.String() }

// Format prints String for every verb.
func (i *Issuer) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, i.String()) }

// LogValue logs the issuer without key material.
func (i *Issuer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", i.issuer), slog.String("alg", i.alg), slog.Bool("seeded", i.seeded))
}

// epochOf returns floor(t / period).
func (i *Issuer) epochOf(t time.Time) int64 {
	n, p := t.UnixNano(), int64(i.period)
	e := n / p
	if n%p < 0 {
		e--
	}
	return e
}

// epochStart returns the time epoch e begins.
func (i *Issuer) epochStart(e int64) time.Time { return time.Unix(0, e*int64(i.period)) }

// ringAt returns the key ring for now, installing a newer one first when
// now is past the current ring's epoch. The common path is one atomic load.
func (i *Issuer) ringAt(now time.Time) (*keyRing, error) {
	r := i.ring.Load()
	e := i.epochOf(now)
	if e <= r.epoch {
		return r, nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.advanceLocked(e)
}

// advanceLocked installs the ring of epoch e unless the ring is already
// there or later. i.mu must be held.
func (i *Issuer) advanceLocked(e int64) (*keyRing, error) {
	old := i.ring.Load()
	if e <= old.epoch {
		return old, nil
	}
	have := func(epoch int64) *signingKey {
		for _, k := range []*signingKey{old.prev, old.cur, old.nxt} {
			if k != nil && k.epoch == epoch {
				return k
			}
		}
		return nil
	}
	keyFor := func(epoch int64) (*signingKey, error) {
		if k := have(epoch); k != nil {
			return k, nil
		}
		return i.src.key(epoch)
	}
	prev := have(e - 1)
	if prev == nil && i.seeded {
		// Another replica may have signed with it. Random keys of a skipped
		// epoch were never used: the previous ring's tokens have expired.
		var err error
		if prev, err = i.src.key(e - 1); err != nil {
			return old, err
		}
	}
	cur, err := keyFor(e)
	if err != nil {
		return old, err
	}
	nxt, err := keyFor(e + 1)
	if err != nil {
		return old, err
	}
	r, err := newKeyRing(e, prev, cur, nxt)
	if err != nil {
		return old, err
	}
	i.ring.Store(r)
	i.log.Info("mint: signing key rotated", "epoch", e, "kid", cur.kid, "next_kid", nxt.kid, "alg", i.alg)
	if i.onRotate != nil {
		i.onRotate(e)
	}
	return r, nil
}

// Rotate advances the keys by one epoch now (the next key, already
// published, starts signing; the current one stays published as the
// previous one). It is for tests and administrators: epochs normally
// advance with the clock (see Run). Replicas sharing a seed keep verifying
// each other's tokens after one Rotate on one replica, but not after
// several. Failures (no entropy) are logged and leave the keys unchanged.
func (i *Issuer) Rotate() {
	i.mu.Lock()
	defer i.mu.Unlock()
	e := max(i.ring.Load().epoch+1, i.epochOf(i.now()))
	if _, err := i.advanceLocked(e); err != nil {
		i.log.Error("mint: rotate signing key", "err", err)
	}
}

// Run advances the keys at each epoch boundary until ctx is done. Without
// Run the keys still advance, on the first Mint, Sign or JWKS request of a
// new epoch; Run does that work off the request path.
func (i *Issuer) Run(ctx context.Context) {
	for {
		now := i.now()
		if _, err := i.ringAt(now); err != nil {
			i.log.Error("mint: rotate signing key", "err", err)
		}
		// Wake just after the next boundary; never spin on a stuck clock.
		d := i.epochStart(i.epochOf(now)+1).Sub(now) + 10*time.Millisecond
		d = min(max(d, time.Second), i.period)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Mint signs an access token for c with the current key. The header is
// {alg, kid, typ: at+jwt}; the claims are iss, sub, aud, iat, exp
// (iat + TokenTTL), jti (128 random bits), client_id, scope, act and Extra.
// It returns the token and its expiry.
func (i *Issuer) Mint(ctx context.Context, c Claims) (token string, expiresAt time.Time, err error) {
	if err := ctx.Err(); err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	scopes, err := c.validate()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	now := i.now()
	r, err := i.ringAt(now)
	if err != nil {
		return "", time.Time{}, err
	}
	jti, err := i.jti()
	if err != nil {
		return "", time.Time{}, err
	}
	exp := now.Add(i.ttl).Unix()
	claims := make(map[string]any, 10+len(c.Extra))
	maps.Copy(claims, c.Extra)
	claims["iss"] = i.issuer
	claims["sub"] = c.Subject
	claims["aud"] = c.Audience
	claims["iat"] = now.Unix()
	claims["exp"] = exp
	claims["jti"] = jti
	claims["client_id"] = c.ClientID
	if scopes != "" {
		claims["scope"] = scopes
	}
	if c.Actor != nil {
		claims["act"] = c.Actor
	}
	tok, err := sign(r.cur.atSigner, claims)
	if err != nil {
		return "", time.Time{}, err
	}
	return tok, time.Unix(exp, 0), nil
}

// Sign signs claims as a JWT with header typ and the current key. iss,
// iat, exp (iat + TokenTTL) and jti are set unless claims has them; claims
// is not modified. typ is required and may not be at+jwt: access tokens
// come only from Mint, so a signed attribution header can never pass for
// one.
func (i *Issuer) Sign(ctx context.Context, typ string, claims map[string]any) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	if !validTyp(typ) {
		return "", errors.New("mint: typ must be 1 to 64 visible ASCII characters")
	}
	if t := strings.ToLower(typ); t == TypeAccessToken || t == "application/"+TypeAccessToken {
		return "", errors.New("mint: Sign may not make access tokens (typ at+jwt); use Mint")
	}
	now := i.now()
	r, err := i.ringAt(now)
	if err != nil {
		return "", err
	}
	out := make(map[string]any, len(claims)+4)
	maps.Copy(out, claims)
	setDefault := func(k string, v any) {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	setDefault("iss", i.issuer)
	setDefault("iat", now.Unix())
	setDefault("exp", now.Add(i.ttl).Unix())
	if _, ok := out["jti"]; !ok {
		jti, err := i.jti()
		if err != nil {
			return "", err
		}
		out["jti"] = jti
	}
	k := r.cur
	signer, err := jose.NewSigner(jose.SigningKey{
		Algorithm: k.alg,
		Key:       jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: string(k.alg)},
	}, (&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		return "", fmt.Errorf("mint: signer: %w", err)
	}
	return sign(signer, out)
}

func sign(s jose.Signer, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("mint: encode claims: %w", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("mint: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("mint: serialize: %w", err)
	}
	return tok, nil
}

func (i *Issuer) jti() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(i.rand, b[:]); err != nil {
		return "", fmt.Errorf("mint: jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// JWKS returns the published public keys: the current signer's, the next
// epoch's and (when it may have signed live tokens) the previous epoch's.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	r, err := i.ringAt(i.now())
	if err != nil {
		i.log.Error("mint: rotate signing key", "err", err)
	}
	return jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), r.jwks.Keys...)}
}

// Handler serves, below the issuer URL's path P (so mount it at the
// listener's root, or at P+"/.well-known/"):
//
//	P/.well-known/openid-configuration      discovery document
//	P/.well-known/oauth-authorization-server  the same (also at
//	    /.well-known/oauth-authorization-server/P per RFC 8414 when P is set)
//	P/.well-known/jwks.json                 JWKS
//
// GET and HEAD only. Responses carry Cache-Control max-age of at most
// RotationPeriod/8 (and at most an hour).
func (i *Issuer) Handler() http.Handler {
	routes := map[string]func() []byte{
		i.basePath + OpenIDConfigurationPath: func() []byte { return i.discovery },
		i.basePath + OAuthMetadataPath:       func() []byte { return i.discovery },
		i.basePath + JWKSPath: func() []byte {
			r, err := i.ringAt(i.now())
			if err != nil {
				i.log.Error("mint: rotate signing key", "err", err)
			}
			return r.jwksJSON
		},
	}
	if i.basePath != "" {
		routes[OAuthMetadataPath+i.basePath] = routes[i.basePath+OAuthMetadataPath]
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, ok := routes[req.URL.Path]
		if !ok {
			http.NotFound(w, req)
			return
		}
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		b := body()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", i.maxAge)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Length", strconv.Itoa(len(b)))
		if req.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(b)
	})
}

// validate checks c and returns the scope claim value. Errors name the
// claim, never its value.
func (c Claims) validate() (string, error) {
	if err := checkValue("aud", c.Audience, true); err != nil {
		return "", err
	}
	if err := checkValue("sub", c.Subject, true); err != nil {
		return "", err
	}
	if err := checkValue("client_id", c.ClientID, true); err != nil {
		return "", err
	}
	var sb strings.Builder
	seen := make(map[string]bool, len(c.Scopes))
	for n, s := range c.Scopes {
		if !validScopeToken(s) {
			return "", fmt.Errorf("scope %d is not a valid scope token (RFC 6749 section 3.3)", n)
		}
		if seen[s] {
			continue
		}
		seen[s] = true
		if sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(s)
	}
	if sb.Len() > 16*maxClaimLen {
		return "", errors.New("scope is too long")
	}
	depth := 0
	for a := c.Actor; a != nil; a = a.Act {
		depth++
		if depth > maxActorDepth {
			return "", fmt.Errorf("act chain is deeper than %d", maxActorDepth)
		}
		if err := checkValue("act.sub", a.Subject, true); err != nil {
			return "", err
		}
		if err := checkValue("act.client_id", a.ClientID, false); err != nil {
			return "", err
		}
		if err := checkValue("act.iss", a.Issuer, false); err != nil {
			return "", err
		}
	}
	for k := range c.Extra {
		switch {
		case k == "":
			return "", errors.New("extra claim with an empty name")
		case reserved(k):
			return "", fmt.Errorf("extra claim %q is reserved", k)
		case len(k) > 256 || !utf8.ValidString(k) || strings.ContainsFunc(k, urlcheck.IsControl):
			return "", errors.New("extra claim name is too long, not valid UTF-8 or contains control characters")
		}
	}
	return sb.String(), nil
}

func checkValue(name, v string, required bool) error {
	switch {
	case v == "":
		if required {
			return fmt.Errorf("%s is required", name)
		}
	case len(v) > maxClaimLen:
		return fmt.Errorf("%s is longer than %d bytes", name, maxClaimLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("%s is not valid UTF-8", name)
	case strings.ContainsFunc(v, urlcheck.IsControl):
		return fmt.Errorf("%s contains control characters", name)
	}
	return nil
}

// validScopeToken: an RFC 6749 scope-token of at most maxClaimLen bytes.
func validScopeToken(s string) bool { return len(s) <= maxClaimLen && urlcheck.ScopeToken(s) }

func validTyp(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
