package outbound

import (
	"github.com/mcpauthz/mcpauthz/credentials/exchange"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

func TestValidate(t *testing.T) {
	env := &secret.Ref{Env: "CS"}
	cc := func(mod func(*ServiceAccountConfig)) Config {
		sa := &ServiceAccountConfig{TokenURL: "https://idp.example.com/token", ClientID: "c", ClientSecret: env}
		if mod != nil {
			mod(sa)
		}
		return Config{Mode: ModeServiceAccount, ServiceAccount: sa}
	}
	static := func(h ...StaticHeader) Config {
		return Config{Mode: ModeStatic, Static: &StaticConfig{Headers: h}}
	}
	key := secret.Ref{Env: "KEY"}
	tests := []struct {
		name string
		cfg  Config
		want []string // each must be one line of the joined error; nil = valid
	}{
		{"public", Config{Mode: ModePublic}, nil},
		{"static", static(StaticHeader{Name: "X-API-Key", Value: key}), nil},
		{"sa secret", Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{Secret: env, Header: "X-Token"}}, nil},
		{"cc minimal", cc(nil), nil},
		{"cc loopback http", cc(func(s *ServiceAccountConfig) { s.TokenURL = "http://127.0.0.1:8080/token" }), nil},
		{"cc localhost http", cc(func(s *ServiceAccountConfig) { s.TokenURL = "http://localhost/token" }), nil},
		{"cc ipv6 loopback", cc(func(s *ServiceAccountConfig) { s.TokenURL = "http://[::1]:9/t" }), nil},
		{"cc full", cc(func(s *ServiceAccountConfig) {
			s.Scopes, s.Audience, s.AuthStyle = []string{"a", "b:c"}, "https://mcp/", "post"
			s.RefreshBefore, s.Timeout = time.Minute, 10*time.Second
		}), nil},

		{"empty mode", Config{}, []string{"mode: required (one of public, static, service_account, delegated, individual)"}},
		{"unknown mode", Config{Mode: "oauth"}, []string{`mode: unknown mode "oauth" (want public, static, service_account, delegated or individual)`}},
		{"delegated without block", Config{Mode: ModeDelegated}, []string{`delegated: required with mode delegated`}},
		{"delegated without issuer", Config{Mode: ModeDelegated, Delegated: &DelegatedConfig{}}, []string{`delegated.issuer: required (builtin or sts)`}},
		{"delegated sts without block", Config{Mode: ModeDelegated, Delegated: &DelegatedConfig{Issuer: IssuerSTS}}, []string{`delegated.sts: required with issuer sts`}},
		{"delegated defaults beyond max", Config{Mode: ModeDelegated, Delegated: &DelegatedConfig{Issuer: IssuerBuiltin,
			Scopes: []string{"a"}, DefaultScopes: []string{"b"}}}, []string{`delegated.default_scopes[0]: "b" is not within scopes (the maximum)`}},
		{"delegated builtin with actor token", Config{Mode: ModeDelegated, Delegated: &DelegatedConfig{Issuer: IssuerBuiltin,
			ActorToken: &ActorTokenConfig{Source: ActorFromCaller}}}, []string{`delegated.actor_token: only used with issuer sts (the built-in issuer writes act from the verified caller)`}},
		{"delegated entra without require_actor", Config{Mode: ModeDelegated, Delegated: &DelegatedConfig{Issuer: IssuerSTS,
			STS: &exchange.Config{Flavor: exchange.FlavorEntraOBO, TokenURL: "https://login.example.com/t/oauth2/v2.0/token", ClientID: "app",
				ClientAuth: exchange.AuthClientSecretPost, ClientSecret: &secret.Ref{Env: "X"}, ExpectedAudience: "api://docs"}}},
			[]string{`delegated.require_actor: Entra on-behalf-of tokens carry no act claim: set require_actor: false explicitly (and consider headers.sign)`}},
		{"delegated sts config error prefixed", Config{Mode: ModeDelegated, Delegated: &DelegatedConfig{Issuer: IssuerSTS,
			STS: &exchange.Config{TokenURL: "ftp://x"}}}, []string{
			"delegated.sts.token_url: must be https (or http on loopback)",
			"delegated.sts.client_id: required with client_auth client_secret_basic",
			"delegated.sts.client_secret: required with client_auth client_secret_basic"}},
		{"individual", Config{Mode: ModeIndividual}, []string{`individual: required with mode individual (individual.provider: the upstream's OAuth provider)`}},
		{"public with blocks", Config{Mode: ModePublic, Static: &StaticConfig{}, ServiceAccount: &ServiceAccountConfig{}},
			[]string{"static: not allowed with mode public", "service_account: not allowed with mode public"}},
		{"static missing block", Config{Mode: ModeStatic}, []string{"static: required with mode static"}},
		{"static with sa block", Config{Mode: ModeStatic, Static: &StaticConfig{Headers: []StaticHeader{{Name: "A", Value: key}}}, ServiceAccount: &ServiceAccountConfig{}},
			[]string{"service_account: not allowed with mode static"}},
		{"static no headers", static(), []string{"static.headers: at least one header is required"}},
		{"static header problems", static(
			StaticHeader{Name: "", Value: key},
			StaticHeader{Name: "Bad Name", Value: key},
			StaticHeader{Name: "Host", Value: key},
			StaticHeader{Name: "X-Envoy-Original-Path", Value: key},
			StaticHeader{Name: "X-A", Value: key},
			StaticHeader{Name: "x-a", Value: secret.Ref{}},
			StaticHeader{Name: "X-B", Value: secret.Ref{Env: "1BAD"}, Prefix: "Bearer\n"},
		), []string{
			"static.headers[0].name: required",
			"static.headers[1].name: not a valid HTTP header name",
			`static.headers[2].name: header "Host" may not be set`,
			`static.headers[3].name: header "X-Envoy-Original-Path" may not be set`,
			`static.headers[5].name: duplicate header "x-a"`,
			"static.headers[5].value: required ({env: NAME} or {file: PATH})",
			`static.headers[6].value: env "1BAD" is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*, at most 256 characters)`,
			"static.headers[6].prefix: contains characters not allowed in a header value",
		}},
		{"sa missing block", Config{Mode: ModeServiceAccount}, []string{"service_account: required with mode service_account"}},
		{"sa empty", Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{}},
			[]string{"service_account: one of secret, token_url (client credentials) or oauth (admin-authorized) is required"}},
		{"sa secret with cc fields", Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{
			Secret: env, TokenURL: "https://x/t", ClientID: "c", ClientSecret: env, Scopes: []string{"a"},
			Audience: "x", AuthStyle: "basic", RefreshBefore: time.Second, Timeout: time.Second}},
			[]string{
				"service_account.token_url: not allowed together with secret",
				"service_account.client_id: not allowed together with secret",
				"service_account.client_secret: not allowed together with secret",
				"service_account.scopes: not allowed together with secret",
				"service_account.audience: not allowed together with secret",
				"service_account.auth_style: not allowed together with secret",
				"service_account.refresh_before: not allowed together with secret",
				"service_account.timeout: not allowed together with secret",
			}},
		{"sa empty secret ref", Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{Secret: &secret.Ref{}}},
			[]string{"service_account.secret: required ({env: NAME} or {file: PATH})"}},
		{"sa bad header", Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{Secret: env, Header: "Content-Length"}},
			[]string{`service_account.header: header "Content-Length" may not be set`}},
		{"cc http remote", cc(func(s *ServiceAccountConfig) { s.TokenURL = "http://idp.example.com/token" }),
			[]string{"service_account.token_url: must be https (or http on loopback)"}},
		{"cc ftp", cc(func(s *ServiceAccountConfig) { s.TokenURL = "ftp://127.0.0.1/token" }),
			[]string{"service_account.token_url: must be https (or http on loopback)"}},
		{"cc relative", cc(func(s *ServiceAccountConfig) { s.TokenURL = "/token" }),
			[]string{"service_account.token_url: must be an absolute URL"}},
		{"cc userinfo not echoed", cc(func(s *ServiceAccountConfig) { s.TokenURL = "https://user:pw_SECRET@idp/token" }),
			[]string{"service_account.token_url: must not contain credentials"}},
		{"cc fragment", cc(func(s *ServiceAccountConfig) { s.TokenURL = "https://idp/token#x" }),
			[]string{"service_account.token_url: must not contain a fragment"}},
		{"cc missing fields", cc(func(s *ServiceAccountConfig) { s.TokenURL, s.ClientID, s.ClientSecret = "https://idp/t", "", nil }),
			[]string{"service_account.client_id: required for client credentials", "service_account.client_secret: required for client credentials"}},
		{"cc missing token url", cc(func(s *ServiceAccountConfig) { s.TokenURL = "" }),
			[]string{"service_account.token_url: required for client credentials"}},
		{"cc bad values", cc(func(s *ServiceAccountConfig) {
			s.Scopes = []string{"ok", "has space", "", "ok"}
			s.AuthStyle = "jwt"
			s.RefreshBefore, s.Timeout = -time.Second, 2*time.Minute
			s.ClientID = "c\n"
		}), []string{
			"service_account.refresh_before: must not be negative",
			"service_account.timeout: must be between 0 (default 5s) and 1m0s",
			"service_account.client_id: contains control characters",
			"service_account.scopes[1]: not a valid scope token (RFC 6749 section 3.3)",
			"service_account.scopes[2]: not a valid scope token (RFC 6749 section 3.3)",
			`service_account.scopes[3]: duplicate scope "ok"`,
			`service_account.auth_style: unknown auth style "jwt" (want basic or post)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate() lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if strings.Contains(err.Error(), "pw_SECRET") {
				t.Errorf("Validate() echoes credentials: %v", err)
			}
		})
	}
}
