// Package mint is mcpauthz's built-in token issuer for delegated
// credentials. It signs short-lived JWT access tokens (RFC 9068, typ
// at+jwt) naming the user (sub) and the chain of agents acting for them
// (RFC 8693 act), and generic signed JWTs such as attribution headers. It
// publishes a discovery document and a JWKS so upstream MCP servers can
// verify what it signs.
//
// # Keys
//
// Signing keys come from one of two places, and are never derived from a
// shared secret:
//
// Key files (Config.Keys): private keys the operator provides as PEM or
// JWK files. Every key is published; the primary one signs. Files are
// checked for changes every Config.ReloadInterval (by Run, or now with
// Reload); a change that does not load (a missing file, a public key
// alone, a bad algorithm) keeps the previous keys and is logged, so the
// issuer never signs with nothing. To rotate without a restart, keep the
// list of files fixed and change their contents: for example a JWK Set
// file whose first key signs: add the new key second, wait for upstreams
// to refetch the JWKS (its Cache-Control max-age is at most the reload
// interval), move it first, and drop the old key once tokens it signed
// have expired (TokenTTL).
//
// Generated keys (no Config.Keys): time is divided into epochs of
// Config.RotationPeriod P: epoch e starts at e·P after the Unix epoch. The
// key of epoch e signs only while epoch e is current. The JWKS publishes
// the keys of epochs e-1 (tokens minted just before the rotation stay
// verifiable; they live at most TokenTTL ≤ P/2), e (the signer) and e+1
// (published a whole period ahead), and is served with a Cache-Control
// max-age of at most P/8, so an upstream that refreshed its JWKS within the
// last period never meets an unknown kid. Each key is generated at random
// (crypto/rand) by the first replica that needs it and kept in the store
// (Options.Store) sealed with the store's cipher (Options.Cipher), bound to
// its record: replicas sharing the store race with PutIfAbsent, exactly one
// wins, and all sign with and publish the same keys. Without a store the
// keys live in this process only (single replica; New logs a warning).
//
// A kid is, unless configured or given in a JWK, the RFC 7638 SHA-256
// thumbprint of the public key (base64url). Key parsing, thumbprints and
// signatures use go-jose and the standard library.
//
// # Concurrency
//
// An Issuer is safe for concurrent use. Signing is lock-free: the keys live
// in an immutable ring behind an atomic pointer, swapped once per epoch
// (by Run, by Rotate, or by the first call that notices the new epoch) or
// when key files change. Private keys never appear in errors, logs or
// String output.
package mint

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
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

	"github.com/mcpauthz/mcpauthz/credentials/store"
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
	// use. It makes jti values (keys always come from crypto/rand).
	Rand io.Reader
	// Store is where generated keys are kept so replicas share them (the
	// store opened from the `store:` block). Nil: an in-memory store, so
	// this process must be the only replica (New logs a warning). Unused
	// with key files.
	Store KeyStore
	// Cipher seals generated keys in Store, bound to their record (the key
	// ring returned by store.Open). Required with Store.
	Cipher store.Cipher
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
	// NotAfter, when set, caps the token's expiry: exp is the earlier of
	// iat + TokenTTL and NotAfter, so a token never outlives its source
	// (the caller's token). Mint refuses a NotAfter that is not after now.
	NotAfter time.Time
	// Extra adds claims such as org or user_key. Registered and
	// Mint-owned names are refused: iss sub aud exp nbf iat jti client_id
	// scope scp act may_act azp cnf auth_time acr amr nonce sid typ.
	Extra map[string]any
}

// ErrSourceExpired is returned by Mint when Claims.NotAfter is not after
// now: the token the minted one would stand for has already expired.
var ErrSourceExpired = errors.New("mint: the source token has expired (NotAfter is not after now)")

// Issuer signs tokens and publishes its keys. Create it with New; it is
// safe for concurrent use.
type Issuer struct {
	issuer   string
	basePath string
	ttl      time.Duration
	maxAge   string // Cache-Control value
	now      func() time.Time
	log      *slog.Logger
	rand     io.Reader
	source   string // "files", "store" or "memory" (for String and logs)

	// Generated keys.
	alg    string
	period time.Duration
	keys   KeyStore
	cipher store.Cipher

	// Key files.
	files       []KeyFile
	reloadEvery time.Duration
	digest      [sha256.Size]byte // of the files in the ring; guarded by mu
	lastErr     string            // last reload failure logged; guarded by mu

	ring atomic.Pointer[keyRing]
	mu   sync.Mutex // serializes ring changes

	// onRotate, when set (tests), is called after a new ring is installed.
	onRotate func(epoch int64)
}

// retryEvery is how soon Run retries a key the store could not provide.
const retryEvery = 10 * time.Second

// New validates cfg and loads the signing keys: from cfg.Keys, or, without
// key files, the generated keys of the previous (when stored), current and
// next epochs from opts.Store, creating those that are missing.
//
// Without opts.Store, generated keys live in an in-memory store private to
// this process: tokens it mints only verify against its own JWKS, so it
// must be the only replica. New logs a warning saying so.
//
// Call Run to re-read key files and advance epochs off the request path.
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
	i := &Issuer{
		issuer:   cfg.Issuer,
		basePath: u.Path,
		ttl:      cfg.TokenTTL,
		now:      opts.Now,
		log:      opts.Logger,
		rand:     opts.Rand,
		alg:      cfg.Algorithm,
		period:   cfg.RotationPeriod,
	}
	if len(cfg.Keys) > 0 {
		return i.newFromFiles(cfg)
	}
	i.maxAge = cacheControl(min(cfg.RotationPeriod/8, time.Hour))
	switch {
	case opts.Store != nil && opts.Cipher == nil:
		return nil, errors.New("mint: Options.Store needs Options.Cipher: generated keys are kept encrypted")
	case opts.Store == nil:
		ring, err := store.NewRandomKeyRing()
		if err != nil {
			return nil, fmt.Errorf("mint: %w", err)
		}
		i.keys, i.cipher, i.source = store.NewMemory(store.Options{Now: i.now, PurgeInterval: -1}), ring, "memory"
	default:
		i.keys, i.cipher, i.source = opts.Store, opts.Cipher, "store"
		if _, ok := opts.Store.(*store.Memory); ok {
			i.source = "memory"
		}
	}
	e := i.epochOf(i.now())
	// Other replicas, or this one before a restart, may have signed with
	// the previous epoch's key: publish it when the store has it.
	prev, err := i.epochKey(ctx, e-1, false)
	if err != nil {
		return nil, err
	}
	cur, err := i.epochKey(ctx, e, true)
	if err != nil {
		return nil, err
	}
	nxt, err := i.epochKey(ctx, e+1, true)
	if err != nil {
		return nil, err
	}
	r, err := i.newKeyRing(&keyRing{epoch: e, prev: prev, cur: cur, nxt: nxt})
	if err != nil {
		return nil, err
	}
	i.ring.Store(r)
	if i.source == "memory" {
		i.log.Warn("mint: no shared store configured; generated signing keys are private to this process, so run a single replica or configure a store (store:) or key files (issuer.keys)",
			"issuer", i.issuer, "alg", i.alg)
	}
	i.log.Info("mint: token issuer ready", "issuer", i.issuer, "alg", i.alg, "kid", cur.kid,
		"epoch", e, "token_ttl", i.ttl, "rotation_period", i.period, "keys", i.source)
	return i, nil
}

func cacheControl(d time.Duration) string {
	return "public, max-age=" + strconv.Itoa(int(max(d, time.Second)/time.Second))
}

func (i *Issuer) newFromFiles(cfg Config) (*Issuer, error) {
	i.files, i.reloadEvery, i.source = cfg.Keys, cfg.ReloadInterval, "files"
	i.maxAge = cacheControl(min(cfg.ReloadInterval, time.Hour))
	i.alg, i.period = "", 0
	datas, sum, err := readKeyFiles(i.files)
	if err != nil {
		return nil, fmt.Errorf("mint: %w", err)
	}
	r, err := i.fileRing(datas)
	if err != nil {
		return nil, err
	}
	i.digest = sum
	i.ring.Store(r)
	i.log.Info("mint: token issuer ready", "issuer", i.issuer, "alg", string(r.cur.alg), "kid", r.cur.kid,
		"file", r.cur.source, "published", len(r.jwks.Keys), "token_ttl", i.ttl, "keys", i.source)
	return i, nil
}

// fileRing parses the files' contents (and clears them) into a ring.
func (i *Issuer) fileRing(datas [][]byte) (*keyRing, error) {
	defer func() {
		for _, d := range datas {
			clear(d)
		}
	}()
	fk, err := parseKeyFiles(i.files, datas)
	if err != nil {
		return nil, fmt.Errorf("mint: %w", err)
	}
	return i.newKeyRing(&keyRing{cur: fk.primary, files: fk.others})
}

// Reload re-reads the key files now and installs their keys if the files
// changed. When they do not load, the previous keys stay in use and the
// error (naming the field and file, never key material) is logged once
// and returned. Without key files it does nothing.
func (i *Issuer) Reload(ctx context.Context) error {
	if i.files == nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mint: %w", err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	datas, sum, err := readKeyFiles(i.files)
	if err == nil && sum == i.digest {
		i.lastErr = ""
		return nil
	}
	var r *keyRing
	if err == nil {
		r, err = i.fileRing(datas)
	} else {
		err = fmt.Errorf("mint: %w", err)
	}
	if err != nil {
		if msg := err.Error(); msg != i.lastErr {
			i.lastErr = msg
			i.log.Error("mint: key files changed but do not load; still signing with the previous keys",
				"err", err, "kid", i.ring.Load().cur.kid)
		}
		return err
	}
	old := i.ring.Load()
	i.ring.Store(r)
	i.digest, i.lastErr = sum, ""
	i.log.Info("mint: key files reloaded", "kid", r.cur.kid, "alg", string(r.cur.alg), "file", r.cur.source,
		"previous_kid", old.cur.kid, "published", ringKids(r))
	if i.onRotate != nil {
		i.onRotate(0)
	}
	return nil
}

func ringKids(r *keyRing) []string {
	out := make([]string, len(r.jwks.Keys))
	for n, k := range r.jwks.Keys {
		out[n] = k.KeyID
	}
	return out
}

// URL returns the issuer identifier (the iss of minted tokens).
func (i *Issuer) URL() string { return i.issuer }

// Algorithm returns the signing key's algorithm.
func (i *Issuer) Algorithm() string { return string(i.ring.Load().cur.alg) }

// TokenTTL returns the lifetime of minted tokens.
func (i *Issuer) TokenTTL() time.Duration { return i.ttl }

// String describes the issuer without key material.
func (i *Issuer) String() string {
	return fmt.Sprintf("mint.Issuer{issuer: %s, alg: %s, keys: %s}", i.issuer, i.Algorithm(), i.source)
}

// GoString is String: %#v must not dump keys either.
func (i *Issuer) GoString() string { return i.String() }

// Format prints String for every verb.
func (i *Issuer) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, i.String()) }

// LogValue logs the issuer without key material.
func (i *Issuer) LogValue() slog.Value {
	return slog.GroupValue(slog.String("issuer", i.issuer), slog.String("alg", i.Algorithm()), slog.String("keys", i.source))
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
// now is past the current ring's epoch (generated keys). The common path
// is one atomic load.
func (i *Issuer) ringAt(ctx context.Context, now time.Time) (*keyRing, error) {
	r := i.ring.Load()
	if i.files != nil {
		return r, nil
	}
	e := i.epochOf(now)
	if e <= r.epoch {
		return r, nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.advanceLocked(ctx, e)
}

// advanceLocked installs the ring of epoch e unless the ring is already
// there or later. i.mu must be held. The current key is required; a
// previous or next key the store cannot provide is left out, logged, and
// retried by Run.
func (i *Issuer) advanceLocked(ctx context.Context, e int64) (*keyRing, error) {
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
	keyFor := func(epoch int64, create bool) (*signingKey, error) {
		if k := have(epoch); k != nil {
			return k, nil
		}
		return i.epochKey(ctx, epoch, create)
	}
	cur, err := keyFor(e, true)
	if err != nil {
		return old, err
	}
	r := &keyRing{epoch: e, cur: cur}
	// Another replica may have signed with the previous key.
	if r.prev, err = keyFor(e-1, false); err != nil {
		i.log.Error("mint: previous signing key unavailable; not published until the store answers", "epoch", e-1, "err", err)
		r.retryAt = i.now().Add(retryEvery)
	}
	if r.nxt, err = keyFor(e+1, true); err != nil {
		i.log.Error("mint: next signing key unavailable; not published until the store answers", "epoch", e+1, "err", err)
		r.retryAt = i.now().Add(retryEvery)
	}
	if r, err = i.newKeyRing(r); err != nil {
		return old, err
	}
	i.ring.Store(r)
	nextKid := ""
	if r.nxt != nil {
		nextKid = r.nxt.kid
	}
	i.log.Info("mint: signing key rotated", "epoch", e, "kid", cur.kid, "next_kid", nextKid, "alg", i.alg)
	if i.onRotate != nil {
		i.onRotate(e)
	}
	return r, nil
}

// completeLocked retries the previous and next keys of an incomplete
// ring. i.mu must be held.
func (i *Issuer) completeLocked(ctx context.Context) {
	old := i.ring.Load()
	if old.retryAt.IsZero() {
		return
	}
	r := &keyRing{epoch: old.epoch, prev: old.prev, cur: old.cur, nxt: old.nxt}
	var errs []error
	if r.prev == nil {
		var err error
		r.prev, err = i.epochKey(ctx, old.epoch-1, false)
		errs = append(errs, err)
	}
	if r.nxt == nil {
		var err error
		r.nxt, err = i.epochKey(ctx, old.epoch+1, true)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		r.retryAt = i.now().Add(retryEvery)
		i.log.Error("mint: signing keys still unavailable from the store", "err", err)
	}
	if nr, err := i.newKeyRing(r); err == nil {
		i.ring.Store(nr)
	}
}

// Rotate advances generated keys by one epoch now (the next key, already
// published, starts signing; the current one stays published as the
// previous one). It is for tests and administrators: epochs normally
// advance with the clock (see Run). Replicas sharing a store keep
// verifying each other's tokens after one Rotate on one replica, but not
// after several. Failures are logged and leave the keys unchanged. With
// key files, Rotate re-reads them (see Reload).
func (i *Issuer) Rotate() {
	if i.files != nil {
		_ = i.Reload(context.Background())
		return
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	e := max(i.ring.Load().epoch+1, i.epochOf(i.now()))
	if _, err := i.advanceLocked(context.Background(), e); err != nil {
		i.log.Error("mint: rotate signing key", "err", err)
	}
}

// Run keeps the keys current until ctx is done: with key files it re-reads
// them every ReloadInterval; with generated keys it advances the ring at
// each epoch boundary (and retries keys the store could not provide).
// Without Run generated keys still advance, on the first Mint, Sign or
// JWKS request of a new epoch, but key files are only re-read by Reload.
func (i *Issuer) Run(ctx context.Context) {
	if i.files != nil {
		t := time.NewTicker(i.reloadEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = i.Reload(ctx) // logged by Reload
			}
		}
	}
	for {
		now := i.now()
		if _, err := i.ringAt(ctx, now); err != nil {
			i.log.Error("mint: rotate signing key", "err", err)
		}
		i.mu.Lock()
		i.completeLocked(ctx)
		retry := i.ring.Load().retryAt
		i.mu.Unlock()
		// Wake just after the next boundary; never spin on a stuck clock.
		d := i.epochStart(i.epochOf(now)+1).Sub(now) + 10*time.Millisecond
		if !retry.IsZero() {
			d = min(d, retryEvery)
		}
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
// (iat + TokenTTL, or c.NotAfter when earlier), jti (128 random bits),
// client_id, scope, act and Extra. It returns the token and its expiry.
// A c.NotAfter that is not after now fails with ErrSourceExpired.
func (i *Issuer) Mint(ctx context.Context, c Claims) (token string, expiresAt time.Time, err error) {
	if err := ctx.Err(); err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	scopes, err := c.validate()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("mint: %w", err)
	}
	now := i.now()
	exp := now.Add(i.ttl).Unix()
	if !c.NotAfter.IsZero() {
		// Whole seconds: exp must be after iat, and never after NotAfter.
		if !c.NotAfter.After(now) || c.NotAfter.Unix() <= now.Unix() {
			return "", time.Time{}, ErrSourceExpired
		}
		exp = min(exp, c.NotAfter.Unix())
	}
	r, err := i.ringAt(ctx, now)
	if err != nil {
		return "", time.Time{}, err
	}
	jti, err := i.jti()
	if err != nil {
		return "", time.Time{}, err
	}
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
// iat, exp (iat + TokenTTL) and jti are set unless claims has them (an
// explicit exp is kept as given); claims is not modified. typ is required
// and may not be at+jwt: access tokens come only from Mint, so a signed
// attribution header can never pass for one.
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
	r, err := i.ringAt(ctx, now)
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

// JWKS returns the published public keys: the signer's first, then (key
// files) the other files' keys, or (generated keys) the next epoch's and,
// when it may have signed live tokens, the previous epoch's.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	r, err := i.ringAt(context.Background(), i.now())
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
	routes := map[string]func(context.Context) []byte{
		i.basePath + OpenIDConfigurationPath: func(ctx context.Context) []byte { return i.current(ctx).discovery },
		i.basePath + OAuthMetadataPath:       func(ctx context.Context) []byte { return i.current(ctx).discovery },
		i.basePath + JWKSPath:                func(ctx context.Context) []byte { return i.current(ctx).jwksJSON },
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
		b := body(req.Context())
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

// current returns the ring for now, logging (not failing on) a rotation
// error: the previous ring stays served.
func (i *Issuer) current(ctx context.Context) *keyRing {
	r, err := i.ringAt(ctx, i.now())
	if err != nil {
		i.log.Error("mint: rotate signing key", "err", err)
	}
	return r
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
