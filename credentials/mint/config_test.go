package mint

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Issuer: "https://mcpauthz.internal"}
	with := func(f func(*Config)) Config {
		c := ok
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error; none: valid
	}{
		{"defaults", ok, nil},
		{"full", Config{Issuer: "https://mcpauthz.internal/tenant-1/mint", Algorithm: RS256, TokenTTL: time.Hour,
			RotationPeriod: 2 * time.Hour}, nil},
		{"key files", with(func(c *Config) {
			c.Keys = []KeyFile{{File: "/k/a.pem", KeyID: "a", Algorithm: "PS256"}, {File: "/k/b.jwk", Primary: true}}
			c.ReloadInterval = 10 * time.Second
		}), nil},
		{"EdDSA", with(func(c *Config) { c.Algorithm = EdDSA }), nil},
		{"http loopback", with(func(c *Config) { c.Issuer = "http://127.0.0.1:8080" }), nil},
		{"http localhost", with(func(c *Config) { c.Issuer = "http://localhost:8080/m" }), nil},
		{"http allowed", with(func(c *Config) { c.Issuer = "http://mcpauthz:8080"; c.AllowInsecureHTTP = true }), nil},
		{"min ttl and period", with(func(c *Config) { c.TokenTTL = 30 * time.Second; c.RotationPeriod = 10 * time.Minute }), nil},

		{"no issuer", Config{}, []string{"issuer: required"}},
		{"relative issuer", with(func(c *Config) { c.Issuer = "/mint" }), []string{"issuer: must be an absolute URL"}},
		{"http remote", with(func(c *Config) { c.Issuer = "http://mcpauthz.internal" }), []string{"issuer: must be https (or http on loopback, or set allow_insecure_http)"}},
		{"ftp", with(func(c *Config) { c.Issuer = "ftp://mcpauthz.internal" }), []string{"issuer: must be https"}},
		{"trailing slash", with(func(c *Config) { c.Issuer = "https://mcpauthz.internal/" }), []string{"issuer: must not end with a slash"}},
		{"query", with(func(c *Config) { c.Issuer = "https://mcpauthz.internal?a=b" }), []string{"issuer: must not contain a query"}},
		{"fragment", with(func(c *Config) { c.Issuer = "https://mcpauthz.internal#f" }), []string{"issuer: must not contain a fragment"}},
		{"userinfo", with(func(c *Config) { c.Issuer = "https://user:hunter2@mcpauthz.internal" }), []string{"issuer: must not contain credentials"}},
		{"space", with(func(c *Config) { c.Issuer = "https://mcpauthz.internal/a b" }), []string{"issuer: must not contain spaces"}},
		{"escaped path", with(func(c *Config) { c.Issuer = "https://mcpauthz.internal/a%2Fb" }), []string{"issuer: path must not contain percent-encoded"}},
		{"brace path", with(func(c *Config) { c.Issuer = "https://mcpauthz.internal/{x}" }), []string{"issuer: path "}},
		{"dot segment", with(func(c *Config) { c.Issuer = "https://mcpauthz.internal/a/../b" }), []string{"issuer: path segments"}},
		{"empty segment", with(func(c *Config) { c.Issuer = "https://mcpauthz.internal/a//b" }), []string{"issuer: path segments"}},
		{"bad alg", with(func(c *Config) { c.Algorithm = "HS256" }), []string{`algorithm: unknown algorithm "HS256"`}},
		{"lowercase alg", with(func(c *Config) { c.Algorithm = "es256" }), []string{"algorithm: unknown"}},
		{"short ttl", with(func(c *Config) { c.TokenTTL = 29 * time.Second }), []string{"token_ttl: must be between 30s and 1h0m0s"}},
		{"long ttl", with(func(c *Config) { c.TokenTTL = 61 * time.Minute }), []string{"token_ttl: must be between"}},
		{"negative ttl", with(func(c *Config) { c.TokenTTL = -time.Minute }), []string{"token_ttl: must be between"}},
		{"short period", with(func(c *Config) { c.RotationPeriod = 9 * time.Minute }), []string{"rotation_period: must be between 10m0s and 2160h0m0s"}},
		{"long period", with(func(c *Config) { c.RotationPeriod = 91 * 24 * time.Hour }), []string{"rotation_period: must be between"}},
		{"fractional period", with(func(c *Config) { c.RotationPeriod = time.Hour + time.Millisecond }), []string{"rotation_period: must be a whole number of seconds"}},
		{"period under 2x ttl", with(func(c *Config) { c.TokenTTL = time.Hour; c.RotationPeriod = 90 * time.Minute }), []string{"rotation_period: must be at least twice token_ttl (1h0m0s)"}},
		{"default period vs ttl ok", with(func(c *Config) { c.TokenTTL = time.Hour }), nil},
		{"seed removed", with(func(c *Config) { c.Seed = true }),
			[]string{"seed: removed: signing keys are no longer derived from a shared seed; list private key files under keys (PEM or JWK), or leave keys out to generate random keys kept encrypted in the configured store (store:)"}},
		{"algorithm with keys", with(func(c *Config) { c.Algorithm = ES256; c.Keys = []KeyFile{{File: "/k"}} }),
			[]string{"algorithm: applies to generated keys only"}},
		{"rotation_period with keys", with(func(c *Config) { c.RotationPeriod = time.Hour; c.Keys = []KeyFile{{File: "/k"}} }),
			[]string{"rotation_period: applies to generated keys only"}},
		{"reload_interval without keys", with(func(c *Config) { c.ReloadInterval = time.Minute }), []string{"reload_interval: applies to keys only"}},
		{"reload_interval too short", with(func(c *Config) { c.ReloadInterval = time.Millisecond; c.Keys = []KeyFile{{File: "/k"}} }),
			[]string{"reload_interval: must be between 1s and 24h0m0s (default 1m0s)"}},
		{"bad key entries", with(func(c *Config) {
			c.Keys = []KeyFile{{}, {File: "/a", KeyID: "x", Primary: true}, {File: "/a", KeyID: "x", Algorithm: "HS256", Primary: true},
				{File: "/b\n", KeyID: "has space"}}
			c.Keys[3].File = "/b\x00"
		}), []string{"keys[0].file: required", "keys[2].file: listed twice", `keys[2].kid: duplicate kid "x"`,
			`keys[2].algorithm: unknown algorithm "HS256"`, "keys[2].primary: only one key may be primary",
			"keys[3].file: too long or contains control characters", "keys[3].kid: must be 1 to 128 visible ASCII characters"}},
		{"several problems", Config{Issuer: "http://x.example", Algorithm: "none", TokenTTL: time.Second},
			[]string{"issuer: must be https", "algorithm: unknown", "token_ttl: must be between"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error echoes credentials: %v", err)
			}
			if len(strings.Split(err.Error(), "\n")) != len(tc.want) {
				t.Errorf("error has %d lines, want %d: %v", len(strings.Split(err.Error(), "\n")), len(tc.want), err)
			}
			if _, nerr := New(context.Background(), tc.cfg, Options{}); nerr == nil || !strings.HasPrefix(nerr.Error(), "mint: invalid config: ") {
				t.Errorf("New accepted an invalid config: %v", nerr)
			}
		})
	}
}

// TestSeedConfigRefused: an issuer block that still has the removed seed
// key decodes (strictly, as the server config does) and fails Validate
// with what to do instead, without echoing the value.
func TestSeedConfigRefused(t *testing.T) {
	for _, doc := range []string{
		"issuer: https://mcpauthz.internal\nseed: {file: /run/secrets/mcpauthz-issuer-seed}\n",
		"issuer: https://mcpauthz.internal\nseed: inline-s3cr3t-value\n",
	} {
		dec := yaml.NewDecoder(strings.NewReader(doc))
		dec.KnownFields(true)
		var c Config
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("decode: %v", err)
		}
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), "seed: removed: ") || !strings.Contains(err.Error(), "under keys") ||
			!strings.Contains(err.Error(), "store") {
			t.Fatalf("Validate = %v", err)
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "/run/secrets") {
			t.Fatalf("error echoes the seed: %v", err)
		}
		if _, err := New(context.Background(), c, Options{}); err == nil || !strings.Contains(err.Error(), "seed: removed") {
			t.Fatalf("New = %v", err)
		}
	}
}
