package exchange_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpauthz/mcpauthz/credentials/exchange"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

func TestConfigValidate(t *testing.T) {
	ref := &secret.Ref{Env: "STS_SECRET"}
	base := func() exchange.Config {
		return exchange.Config{TokenURL: "https://sts.example/token", ClientID: "mcpauthz", ClientSecret: ref, Audience: "https://mcp.example/"}
	}
	tests := []struct {
		name string
		mod  func(*exchange.Config)
		want []string // substrings of the joined error; nil = valid
	}{
		{name: "valid basic", mod: func(*exchange.Config) {}},
		{name: "valid private_key_jwt", mod: func(c *exchange.Config) {
			c.ClientAuth, c.ClientSecret, c.PrivateKey, c.SigningAlg, c.KeyID = exchange.AuthPrivateKeyJWT, nil, &secret.Ref{File: "/k.pem"}, "PS256", "k1"
		}},
		{name: "valid none without client id", mod: func(c *exchange.Config) { c.ClientAuth, c.ClientSecret, c.ClientID = "none", nil, "" }},
		{name: "valid http loopback", mod: func(c *exchange.Config) { c.TokenURL = "http://127.0.0.1:8080/token" }},
		{name: "valid entra", mod: func(c *exchange.Config) {
			c.Flavor, c.Audience, c.ExpectedAudience = exchange.FlavorEntraOBO, "", "api://docs"
		}},
		{name: "valid verification", mod: func(c *exchange.Config) {
			c.IssuedIssuer, c.JWKSURL = "https://sts.example", "https://sts.example/jwks"
		}},
		{name: "empty", mod: func(c *exchange.Config) { *c = exchange.Config{} },
			want: []string{"token_url: required", "client_id: required with client_auth client_secret_basic",
				"client_secret: required with client_auth client_secret_basic"}},
		{name: "http remote", mod: func(c *exchange.Config) { c.TokenURL = "http://sts.example/token" },
			want: []string{"token_url: must be https (or http on loopback)"}},
		{name: "url credentials not echoed", mod: func(c *exchange.Config) { c.TokenURL = "https://u:hunter2@sts.example/token" },
			want: []string{"token_url: must not contain credentials"}},
		{name: "unknown auth", mod: func(c *exchange.Config) { c.ClientAuth = "mtls" },
			want: []string{`client_auth: unknown method "mtls"`, "client_secret: only used with"}},
		{name: "post without secret", mod: func(c *exchange.Config) { c.ClientAuth, c.ClientSecret = "client_secret_post", nil },
			want: []string{"client_secret: required with client_auth client_secret_post"}},
		{name: "secret with pkjwt", mod: func(c *exchange.Config) { c.ClientAuth = exchange.AuthPrivateKeyJWT },
			want: []string{"client_secret: only used with", "private_key: required with client_auth private_key_jwt"}},
		{name: "key fields without pkjwt", mod: func(c *exchange.Config) {
			c.PrivateKey, c.KeyID, c.SigningAlg = &secret.Ref{File: "/k"}, "k", "ES256"
		}, want: []string{"private_key: only used", "key_id: only used", "signing_alg: only used"}},
		{name: "bad alg", mod: func(c *exchange.Config) {
			c.ClientAuth, c.ClientSecret, c.PrivateKey, c.SigningAlg = exchange.AuthPrivateKeyJWT, nil, &secret.Ref{File: "/k"}, "HS256"
		}, want: []string{`signing_alg: unsupported algorithm "HS256"`}},
		{name: "invalid secret ref", mod: func(c *exchange.Config) { c.ClientSecret = &secret.Ref{Env: "1BAD"} },
			want: []string{"client_secret: env"}},
		{name: "unknown flavor", mod: func(c *exchange.Config) { c.Flavor = "saml" }, want: []string{`flavor: unknown flavor "saml"`}},
		{name: "entra misuse", mod: func(c *exchange.Config) {
			c.Flavor, c.Resource, c.RequestedTokenType = exchange.FlavorEntraOBO, []string{"https://x/"}, exchange.TokenTypeJWT
		}, want: []string{"audience: not used with flavor entra_obo", "resource: not used", "requested_token_type: not used",
			"expected_audience: required with flavor entra_obo"}},
		{name: "token types", mod: func(c *exchange.Config) {
			c.RequestedTokenType, c.SubjectTokenType = exchange.TokenTypeRefreshToken, "urn:x"
		}, want: []string{"requested_token_type: must be", "subject_token_type: not an RFC 8693 token type identifier"}},
		{name: "bad resource", mod: func(c *exchange.Config) { c.Resource = []string{"https://ok/", "relative", "https://x/#frag"} },
			want: []string{"resource[1]: must be an absolute URI", "resource[2]: must be an absolute URI"}},
		{name: "timeout", mod: func(c *exchange.Config) { c.Timeout = -1 }, want: []string{"timeout: must be between"}},
		{name: "issuer without jwks", mod: func(c *exchange.Config) { c.IssuedIssuer = "https://sts" },
			want: []string{"jwks_url: required with issued_issuer"}},
		{name: "jwks without issuer", mod: func(c *exchange.Config) { c.JWKSURL = "https://sts/jwks" },
			want: []string{"issued_issuer: required with jwks_url"}},
		{name: "control chars", mod: func(c *exchange.Config) { c.ClientID, c.Audience = "a\nb", "x\x00" },
			want: []string{"client_id: contains control characters", "audience: contains control characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.mod(&c)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate passed, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error echoes URL credentials: %v", err)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("got %d problems, want %d: %v", n, len(tt.want), err)
			}
		})
	}
}

func TestNewKeyErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, data, 0o600))
		return p
	}
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	must(t, err)
	ecDER, err := x509.MarshalECPrivateKey(ec)
	must(t, err)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	must(t, err)
	const junk = "NOT-A-KEY-SECRET-MATERIAL"
	tests := []struct {
		name, file, alg, want string
	}{
		{"not PEM", write("junk", []byte(junk)), "", "no PEM block found"},
		{"bad DER", write("bad", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte(junk)})), "", "malformed private key"},
		{"small RSA", write("rsa", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)})), "", "shorter than 2048"},
		{"alg mismatch", write("ec", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})), "ES256", "signing_alg ES256 does not match the key"},
		{"missing file", filepath.Join(dir, "nope"), "", "private_key: secret: file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := exchange.New(context.Background(), exchange.Config{
				TokenURL: "https://sts.example/token", ClientID: "c", ClientAuth: exchange.AuthPrivateKeyJWT,
				PrivateKey: &secret.Ref{File: tt.file}, SigningAlg: tt.alg, Audience: "https://a/",
			}, exchange.Options{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), junk) {
				t.Fatalf("key material in error: %v", err)
			}
		})
	}
	t.Run("ES384 key picks ES384", func(t *testing.T) {
		_, err := exchange.New(context.Background(), exchange.Config{
			TokenURL: "https://sts.example/token", ClientID: "c", ClientAuth: exchange.AuthPrivateKeyJWT,
			PrivateKey: &secret.Ref{File: filepath.Join(dir, "ec")}, Audience: "https://a/",
		}, exchange.Options{})
		if err != nil {
			t.Fatal(err)
		}
	})
}
