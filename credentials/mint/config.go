package mint

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/urlcheck"
)

// Signature algorithms an Issuer signs with.
const (
	ES256 = "ES256" // ECDSA P-256 with SHA-256 (default)
	RS256 = "RS256" // RSASSA-PKCS1-v1_5 with SHA-256, 2048-bit keys
	EdDSA = "EdDSA" // Ed25519
)

// Defaults and limits for Config.
const (
	DefaultAlgorithm      = ES256
	DefaultTokenTTL       = 5 * time.Minute
	MinTokenTTL           = 30 * time.Second
	MaxTokenTTL           = time.Hour
	DefaultRotationPeriod = 24 * time.Hour
	MinRotationPeriod     = 10 * time.Minute
	MaxRotationPeriod     = 90 * 24 * time.Hour
	// MinSeedLen is the shortest accepted seed, in bytes.
	MinSeedLen = 32
)

// Config configures the built-in token issuer. It is the top-level
// `issuer:` block of the server configuration:
//
//	issuer:
//	  issuer: https://mcpauthz.internal
//	  algorithm: ES256          # ES256 (default) | RS256 | EdDSA
//	  token_ttl: 5m             # 30s..1h
//	  rotation_period: 24h      # 10m..90d, at least 2 x token_ttl
//	  seed: {file: /run/secrets/mcpauthz-mint-seed}   # shared by all replicas
type Config struct {
	// Issuer is the absolute URL upstreams use to reach mcpauthz's HTTP
	// listener (the "iss" of every token; discovery and JWKS are served
	// below it). It must be https, or http on a loopback host, unless
	// AllowInsecureHTTP is set. A path is allowed; a trailing slash, a
	// query, a fragment and credentials are not.
	Issuer string `yaml:"issuer"`
	// Algorithm is ES256 (default), RS256 or EdDSA.
	Algorithm string `yaml:"algorithm"`
	// TokenTTL is the lifetime of minted tokens: default 5m, 30s..1h.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// RotationPeriod is the length of a key epoch: default 24h, 10m..90d
	// and at least twice TokenTTL.
	RotationPeriod time.Duration `yaml:"rotation_period"`
	// Seed (optional) is a secret of at least 32 random bytes shared by all
	// replicas (for example `openssl rand -base64 48`). Keys are derived
	// from it per rotation epoch with HKDF-SHA256, so every replica signs
	// with and publishes the same keys without coordination. Without a seed
	// keys are random per process: run a single replica only.
	Seed *secret.Ref `yaml:"seed"`
	// AllowInsecureHTTP permits an http issuer URL on a non-loopback host
	// (a private network or a demo). Upstreams then fetch the verification
	// keys without TLS; do not use it across untrusted networks.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
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
	return c
}

// Validate checks c without I/O (the seed is resolved by New). It returns
// the problems joined, each prefixed with its field name relative to this
// block (for example "token_ttl: must be between 30s and 1h0m0s"), so a
// caller can prefix its own path.
func (c Config) Validate() error {
	var errs []error
	add := func(field, msg string) { errs = append(errs, errors.New(field+": "+msg)) }

	if msg := checkIssuerURL(c.Issuer, c.AllowInsecureHTTP); msg != "" {
		add("issuer", msg)
	}
	switch c.Algorithm {
	case "", ES256, RS256, EdDSA:
	default:
		add("algorithm", fmt.Sprintf("unknown algorithm %q (want ES256, RS256 or EdDSA)", urlcheck.Truncate(c.Algorithm, 16)))
	}
	d := c.withDefaults()
	ttlOK := d.TokenTTL >= MinTokenTTL && d.TokenTTL <= MaxTokenTTL
	if !ttlOK {
		add("token_ttl", fmt.Sprintf("must be between %s and %s (default %s)", MinTokenTTL, MaxTokenTTL, DefaultTokenTTL))
	}
	switch {
	case d.RotationPeriod < MinRotationPeriod || d.RotationPeriod > MaxRotationPeriod:
		add("rotation_period", fmt.Sprintf("must be between %s and %s (default %s)", MinRotationPeriod, MaxRotationPeriod, DefaultRotationPeriod))
	case d.RotationPeriod%time.Second != 0:
		add("rotation_period", "must be a whole number of seconds")
	case ttlOK && d.RotationPeriod < 2*d.TokenTTL:
		add("rotation_period", fmt.Sprintf("must be at least twice token_ttl (%s)", d.TokenTTL))
	}
	if c.Seed != nil {
		if c.Seed.IsZero() {
			add("seed", "empty secret reference: use {env: NAME} or {file: PATH}")
		} else if err := c.Seed.Validate(); err != nil {
			add("seed", strings.TrimPrefix(err.Error(), "secret: "))
		}
	}
	return errors.Join(errs...)
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
