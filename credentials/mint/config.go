package mint

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mcpauthz/mcpauthz/internal/fielderr"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Signature algorithms of generated keys (Config.Algorithm).
const (
	ES256 = "ES256" // ECDSA P-256 with SHA-256 (default)
	RS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys
	EdDSA = "EdDSA" // Ed25519
)

// fileAlgorithms are the algorithms a key file may sign with
// (KeyFile.Algorithm), each checked against the key's type.
var fileAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Defaults and limits for Config.
const (
	DefaultAlgorithm      = ES256
	DefaultTokenTTL       = 5 * time.Minute
	MinTokenTTL           = 30 * time.Second
	MaxTokenTTL           = time.Hour
	DefaultRotationPeriod = 24 * time.Hour
	MinRotationPeriod     = 10 * time.Minute
	MaxRotationPeriod     = 90 * 24 * time.Hour
	DefaultReloadInterval = time.Minute
	MinReloadInterval     = time.Second
	MaxReloadInterval     = 24 * time.Hour
	// MaxKeyFileSize bounds a key file (1 MiB).
	MaxKeyFileSize = 1 << 20
	// MinRSABits is the smallest RSA modulus accepted from a key file.
	MinRSABits = 2048
)

// Config configures the built-in token issuer. It is the top-level
// `issuer:` block of the server configuration. Signing keys come from one
// of two places:
//
// Operator-provided key files (keys), re-read when they change:
//
//	issuer:
//	  issuer: https://mcpauthz.internal
//	  token_ttl: 5m              # 30s..1h
//	  keys:                      # PEM (PKCS#8, SEC 1 EC, PKCS#1 RSA) or JWK / JWK Set files
//	    - file: /run/secrets/mcpauthz-issuer/2026-06.pem
//	      kid: 2026-06           # optional: else the JWK's kid, else the RFC 7638 thumbprint
//	      algorithm: ES256       # optional: else the JWK's alg, else from the key type
//	      primary: true          # optional: the signing key (default: the first key)
//	    - file: /run/secrets/mcpauthz-issuer/2026-03.jwk   # still published, not signing
//	  reload_interval: 1m        # 1s..24h: how often the files are checked for changes
//
// Or, without keys, keys generated at random per rotation epoch and kept in
// the store (the top-level `store:` block) encrypted under its key ring, so
// every replica using the store signs with and publishes the same keys:
//
//	issuer:
//	  issuer: https://mcpauthz.internal
//	  algorithm: ES256           # ES256 (default) | RS256 | EdDSA
//	  token_ttl: 5m              # 30s..1h
//	  rotation_period: 24h       # 10m..90d, at least 2 x token_ttl
//
// The former `seed` key is refused (keys are no longer derived from a
// shared secret).
type Config struct {
	// Issuer is the absolute URL upstreams use to reach mcpauthz's HTTP
	// listener (the "iss" of every token; discovery and JWKS are served
	// below it). It must be https, or http on a loopback host, unless
	// AllowInsecureHTTP is set. A path is allowed; a trailing slash, a
	// query, a fragment and credentials are not.
	Issuer string `yaml:"issuer"`
	// Algorithm of generated keys: ES256 (default), RS256 or EdDSA. Not
	// allowed with Keys (each key's algorithm comes from its file).
	Algorithm string `yaml:"algorithm"`
	// TokenTTL is the lifetime of minted tokens: default 5m, 30s..1h.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// RotationPeriod is the length of a generated key's epoch: default 24h,
	// 10m..90d and at least twice TokenTTL. Not allowed with Keys.
	RotationPeriod time.Duration `yaml:"rotation_period"`
	// Keys are operator-provided private key files. All are published in
	// the JWKS; the one marked primary (default: the first) signs. Without
	// keys, keys are generated and kept in the store.
	Keys []KeyFile `yaml:"keys"`
	// ReloadInterval is how often key files are checked for changes
	// (content hash): default 1m, 1s..24h. Only with Keys.
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// Seed is the removed shared-seed key derivation: a config that still
	// sets it fails Validate, saying what replaces it.
	Seed Removed `yaml:"seed"`
	// AllowInsecureHTTP permits an http issuer URL on a non-loopback host
	// (a private network or a demo). Upstreams then fetch the verification
	// keys without TLS; do not use it across untrusted networks.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
}

// KeyFile is one operator-provided key file.
type KeyFile struct {
	// File is a PEM file with one private key (PKCS#8 "PRIVATE KEY", SEC 1
	// "EC PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY"; unencrypted), or a JSON
	// file holding a private JWK or a JWK Set of private keys. RSA (at
	// least 2048 bits), EC P-256/P-384/P-521 and Ed25519 keys are accepted;
	// a public key alone is refused (it cannot sign).
	File string `yaml:"file"`
	// KeyID (kid) overrides the JWK's kid or the default, the RFC 7638
	// SHA-256 thumbprint (base64url). Only for files holding one key.
	KeyID string `yaml:"kid"`
	// Algorithm is RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384,
	// ES512 or EdDSA, checked against the key's type. Default: the JWK's
	// alg, else RS256 for RSA, ES256/ES384/ES512 for P-256/P-384/P-521,
	// EdDSA for Ed25519.
	Algorithm string `yaml:"algorithm"`
	// Primary marks the signing key (at most one file; in a JWK Set, its
	// first key). Default: the first key of the first file.
	Primary bool `yaml:"primary"`
}

// Removed is a configuration key that no longer exists. Decoding accepts
// any value without keeping it (it may be a secret) and records that the
// key was present, so Validate can say what replaces it.
type Removed bool

// UnmarshalYAML implements yaml.Unmarshaler.
func (r *Removed) UnmarshalYAML(*yaml.Node) error {
	*r = true
	return nil
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Algorithm == "" {
		c.Algorithm = DefaultAlgorithm
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.RotationPeriod == 0 {
		c.RotationPeriod = DefaultRotationPeriod
	}
	if c.ReloadInterval == 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	return c
}

// Validate checks c without I/O (key files are read by New). It returns
// the problems joined, each prefixed with its field name relative to this
// block (for example "token_ttl: must be between 30s and 1h0m0s"), so a
// caller can prefix its own path.
func (c Config) Validate() error {
	var errs fielderr.List

	if c.Seed {
		errs.Add("seed", "removed: signing keys are no longer derived from a shared seed; list private key files under keys "+
			"(PEM or JWK), or leave keys out to generate random keys kept encrypted in the configured store (store:)")
	}
	if msg := checkIssuerURL(c.Issuer, c.AllowInsecureHTTP); msg != "" {
		errs.Add("issuer", msg)
	}
	files := len(c.Keys) > 0
	switch c.Algorithm {
	case "":
	case ES256, RS256, EdDSA:
		if files {
			errs.Add("algorithm", "applies to generated keys only: with keys, set keys[].algorithm or let the key type decide")
		}
	default:
		errs.Add("algorithm", fmt.Sprintf("unknown algorithm %q (want ES256, RS256 or EdDSA)", urlcheck.Truncate(c.Algorithm, 16)))
	}
	d := c.withDefaults()
	ttlOK := d.TokenTTL >= MinTokenTTL && d.TokenTTL <= MaxTokenTTL
	if !ttlOK {
		errs.Add("token_ttl", fmt.Sprintf("must be between %s and %s (default %s)", MinTokenTTL, MaxTokenTTL, DefaultTokenTTL))
	}
	switch {
	case files && c.RotationPeriod != 0:
		errs.Add("rotation_period", "applies to generated keys only: with keys, rotate by changing the key files")
	case d.RotationPeriod < MinRotationPeriod || d.RotationPeriod > MaxRotationPeriod:
		errs.Add("rotation_period", fmt.Sprintf("must be between %s and %s (default %s)", MinRotationPeriod, MaxRotationPeriod, DefaultRotationPeriod))
	case d.RotationPeriod%time.Second != 0:
		errs.Add("rotation_period", "must be a whole number of seconds")
	case ttlOK && d.RotationPeriod < 2*d.TokenTTL:
		errs.Add("rotation_period", fmt.Sprintf("must be at least twice token_ttl (%s)", d.TokenTTL))
	}
	switch {
	case !files && c.ReloadInterval != 0:
		errs.Add("reload_interval", "applies to keys only")
	case d.ReloadInterval < MinReloadInterval || d.ReloadInterval > MaxReloadInterval:
		errs.Add("reload_interval", fmt.Sprintf("must be between %s and %s (default %s)", MinReloadInterval, MaxReloadInterval, DefaultReloadInterval))
	}
	primaries := 0
	paths := map[string]bool{}
	kids := map[string]bool{}
	for n, k := range c.Keys {
		p := fmt.Sprintf("keys[%d]", n)
		switch {
		case k.File == "":
			errs.Add(p+".file", "required: the path of a PEM or JWK private key file")
		case len(k.File) > 4096 || strings.ContainsFunc(k.File, urlcheck.IsControl):
			errs.Add(p+".file", "too long or contains control characters")
		case paths[k.File]:
			errs.Add(p+".file", "listed twice")
		}
		paths[k.File] = true
		if k.KeyID != "" {
			if !validKid(k.KeyID) {
				errs.Add(p+".kid", "must be 1 to 128 visible ASCII characters")
			} else if kids[k.KeyID] {
				errs.Add(p+".kid", fmt.Sprintf("duplicate kid %q", k.KeyID))
			}
			kids[k.KeyID] = true
		}
		if k.Algorithm != "" && !slices.Contains(fileAlgorithms, k.Algorithm) {
			errs.Add(p+".algorithm", fmt.Sprintf("unknown algorithm %q (want one of %s)", urlcheck.Truncate(k.Algorithm, 16), strings.Join(fileAlgorithms, ", ")))
		}
		if k.Primary {
			primaries++
			if primaries == 2 {
				errs.Add(p+".primary", "only one key may be primary")
			}
		}
	}
	return errs.Err()
}

// validKid: 1 to 128 visible ASCII characters.
func validKid(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// checkIssuerURL returns what is wrong with raw, or "". It echoes no part
// of raw beyond the scheme.
func checkIssuerURL(raw string, allowHTTP bool) string {
	if raw == "" {
		return "required (the absolute URL upstreams use to reach mcpauthz, e.g. https://mcpauthz.internal)"
	}
	if strings.ContainsFunc(raw, isControlOrSpace) {
		return "must not contain spaces or control characters"
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return "must be an absolute URL"
	}
	switch {
	case u.User != nil:
		return "must not contain credentials"
	case u.RawQuery != "" || u.ForceQuery:
		return "must not contain a query"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not contain a fragment"
	case strings.HasSuffix(u.Path, "/"):
		return "must not end with a slash"
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP && !urlcheck.IsLoopback(u.Hostname()) {
			return "must be https (or http on loopback, or set allow_insecure_http)"
		}
	default:
		return "must be https (or http on loopback)"
	}
	if u.RawPath != "" {
		return "path must not contain percent-encoded characters"
	}
	if u.Path != "" {
		for seg := range strings.SplitSeq(strings.TrimPrefix(u.Path, "/"), "/") {
			if seg == "" || seg == "." || seg == ".." || !unreserved(seg) {
				return "path segments must be non-empty and use only A-Z a-z 0-9 - . _ ~"
			}
		}
	}
	return ""
}

// unreserved reports whether s uses only RFC 3986 unreserved characters.
func unreserved(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

func isControlOrSpace(r rune) bool { return urlcheck.IsControl(r) || r == ' ' }
