package connections

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

func TestProviderConfigValidate(t *testing.T) {
	ok := ProviderConfig{
		AuthorizationURL: "https://github.com/login/oauth/authorize", TokenURL: "https://github.com/login/oauth/access_token",
		ClientID: "id", ClientSecret: &secret.Ref{Env: "GH_SECRET"},
	}
	tests := []struct {
		name string
		mod  func(*ProviderConfig)
		want []string
	}{
		{"ok", func(*ProviderConfig) {}, nil},
		{"issuer only", func(p *ProviderConfig) {
			p.Issuer, p.AuthorizationURL, p.TokenURL = "https://accounts.google.com", "", ""
		}, nil},
		{"public client", func(p *ProviderConfig) { p.AuthStyle, p.ClientSecret = "none", nil }, nil},
		{"nothing", func(p *ProviderConfig) { *p = ProviderConfig{} }, []string{
			"authorization_url: required", "token_url: required", "client_id: required", "client_secret: required"}},
		{"http endpoint", func(p *ProviderConfig) { p.TokenURL = "http://idp.example.com/token" }, []string{"token_url: must be https (or http on loopback)"}},
		{"bad revocation", func(p *ProviderConfig) { p.RevocationURL = "https://u:p@x/" }, []string{"revocation_url: must not contain credentials"}},
		{"bad issuer", func(p *ProviderConfig) { p.Issuer = "https://x/?a=b" }, []string{"issuer: must not contain a query"}},
		{"secret with none", func(p *ProviderConfig) { p.AuthStyle = "none" }, []string{"client_secret: not allowed with auth_style none"}},
		{"auth style", func(p *ProviderConfig) { p.AuthStyle = "jwt" }, []string{`auth_style: unknown auth style "jwt"`}},
		{"scopes", func(p *ProviderConfig) { p.Scopes = []string{"a", "a", "b c"} }, []string{`scopes[1]: duplicate scope "a"`, "scopes[2]: not a valid scope token"}},
		{"reserved param", func(p *ProviderConfig) { p.AuthorizeParams = map[string]string{"state": "x", "access_type": "offline"} }, []string{"authorize_params.state: set by mcpauthz"}},
		{"param value", func(p *ProviderConfig) { p.AuthorizeParams = map[string]string{"prompt": "a\nb"} }, []string{"authorize_params.prompt: contains control characters"}},
		{"resource", func(p *ProviderConfig) { p.Resource = "not a uri#frag" }, []string{"resource: must be an absolute URI"}},
		{"durations", func(p *ProviderConfig) { p.RefreshBefore, p.Timeout = -1, 2*time.Minute }, []string{"refresh_before: must not be negative", "timeout: must be between"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.mod(&p)
			err := p.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to contain %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
				t.Errorf("%d problems reported, want %d: %v", n, len(tc.want), err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{PublicURL: "https://mcpauthz.example.com"}, ""},
		{Config{PublicURL: "http://127.0.0.1:8080/", FlowTTL: 5 * time.Minute, RefreshInterval: 30 * time.Second, MaxFailures: 3}, ""},
		{Config{}, "public_url: required"},
		{Config{PublicURL: "http://mcpauthz.example.com"}, "public_url: must be https"},
		{Config{PublicURL: "https://x/?q"}, "public_url: must not contain a query"},
		{Config{PublicURL: "https://x", FlowTTL: time.Second}, "flow_ttl: must be between"},
		{Config{PublicURL: "https://x", RefreshInterval: 2 * time.Hour}, "refresh_interval: must be between"},
		{Config{PublicURL: "https://x", MaxFailures: -1}, "max_failures: must be between"},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if d := (Config{PublicURL: "https://x/"}).withDefaults(); d.PublicURL != "https://x" || d.FlowTTL != DefaultFlowTTL || d.RefreshInterval != DefaultRefreshInterval || d.MaxFailures != DefaultMaxFailures {
		t.Errorf("defaults %+v", d)
	}
}

func TestRegisterRefusesBadInput(t *testing.T) {
	e := newEnv(t, envOpts{})
	if err := e.m.Register("x", "delegated", e.pc); err == nil || !strings.Contains(err.Error(), "unknown mode") {
		t.Errorf("Register with a bad mode = %v", err)
	}
	bad := e.pc
	bad.TokenURL = "ftp://x"
	if err := e.m.Register("x", ModeIndividual, bad); err == nil || !strings.Contains(err.Error(), `register "x": token_url:`) {
		t.Errorf("Register with a bad token_url = %v", err)
	}
	missing := e.pc
	missing.ClientSecret = &secret.Ref{Env: "CONNECTIONS_TEST_UNSET_VAR"}
	if err := e.m.Register("x", ModeIndividual, missing); err == nil || !strings.Contains(err.Error(), "client_secret") {
		t.Errorf("Register with an unset secret = %v", err)
	}
}
