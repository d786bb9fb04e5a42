package exchange_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/exchange"
	"github.com/mcpauthz/mcpauthz/credentials/exchange/ststest"
)

func TestExchangeClientAuthMethods(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		auth     string
		wantAuth string
		wantForm map[string]string // extra form fields expected ("" = must be absent)
	}{
		{exchange.AuthClientSecretBasic, ststest.AuthBasic, map[string]string{"client_id": "", "client_secret": ""}},
		{exchange.AuthClientSecretPost, ststest.AuthPost, map[string]string{"client_id": "c-post", "client_secret": ststest.Redacted}},
		{exchange.AuthPrivateKeyJWT, ststest.AuthPrivateKeyJWT, map[string]string{
			"client_id": "c-jwt", "client_assertion": ststest.Redacted, "client_assertion_type": exchange.ClientAssertionJWT}},
		{exchange.AuthNone, ststest.AuthNone, map[string]string{"client_id": "c-public", "client_secret": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.auth, func(t *testing.T) {
			c, _ := f.client(t, f.config(tt.auth))
			tok, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user, Scopes: []string{"docs:read"}})
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if got := f.sts.LastClientAuth(); got != tt.wantAuth {
				t.Errorf("client auth = %q, want %q", got, tt.wantAuth)
			}
			form := f.sts.LastRequest()
			want := map[string]string{
				"grant_type":           exchange.GrantTokenExchange,
				"subject_token":        ststest.Redacted,
				"subject_token_type":   exchange.TokenTypeAccessToken,
				"audience":             testAudience,
				"scope":                "docs:read",
				"requested_token_type": exchange.TokenTypeAccessToken,
				"actor_token":          "",
				"actor_token_type":     "",
				"resource":             "",
			}
			for k, v := range tt.wantForm {
				want[k] = v
			}
			for k, v := range want {
				if got := form.Get(k); got != v {
					t.Errorf("form %s = %q, want %q", k, got, v)
				}
			}
			if tok.AccessToken == "" || tok.TokenType != "Bearer" || tok.IssuedTokenType != exchange.TokenTypeAccessToken {
				t.Errorf("token = %v", tok)
			}
			if got := tok.Claims["sub"]; got != "alice" {
				t.Errorf("sub = %v, want alice", got)
			}
			if got := tok.Claims["aud"]; got != testAudience {
				t.Errorf("aud = %v, want %s", got, testAudience)
			}
			if want := f.now.Add(5 * time.Minute); !tok.ExpiresAt.Equal(want) {
				t.Errorf("ExpiresAt = %v, want %v", tok.ExpiresAt, want)
			}
			if !slices.Equal(tok.Scopes, []string{"docs:read"}) {
				t.Errorf("Scopes = %q", tok.Scopes)
			}
			if tok.Actor() != "" {
				t.Errorf("act.sub = %q, want none", tok.Actor())
			}
		})
	}
}

func TestExchangeActor(t *testing.T) {
	f := newFixture(t, func(o *ststest.Options) {
		// The STS itself is trusted too, so a subject token with an act chain can be minted.
		o.AcceptUnverified = false
	})
	chained, err := f.sts.Mint(map[string]any{"sub": "alice", "act": map[string]any{"sub": "gateway-1"}})
	if err != nil {
		t.Fatal(err)
	}
	f2 := newFixture(t, func(o *ststest.Options) {
		o.Trusted = append(o.Trusted, ststest.Trust{Issuer: f.sts.URL(), JWKSURL: f.sts.JWKSURL()})
	})
	f2.user = f.user

	tests := []struct {
		name        string
		req         exchange.Request
		wantActor   string
		wantNested  string // act.act.sub
		wantActType string
	}{
		{name: "no actor", req: exchange.Request{SubjectToken: f.user}},
		{name: "actor token", req: exchange.Request{SubjectToken: f.user, ActorToken: f.agent},
			wantActor: "agent-7", wantActType: exchange.TokenTypeAccessToken},
		{name: "actor token jwt type and explicit expectation",
			req:       exchange.Request{SubjectToken: f.user, ActorToken: f.agent, ActorTokenType: exchange.TokenTypeJWT, ExpectedActor: "agent-7"},
			wantActor: "agent-7", wantActType: exchange.TokenTypeJWT},
		{name: "existing act chain nests under the new actor",
			req:       exchange.Request{SubjectToken: chained, ActorToken: f.agent},
			wantActor: "agent-7", wantNested: "gateway-1", wantActType: exchange.TokenTypeAccessToken},
		{name: "existing act chain kept without actor token",
			req:       exchange.Request{SubjectToken: chained, ExpectedActor: "gateway-1"},
			wantActor: "gateway-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := f2.client(t, f2.config(""))
			tok, err := c.Exchange(context.Background(), tt.req)
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if got := tok.Actor(); got != tt.wantActor {
				t.Errorf("act.sub = %q, want %q", got, tt.wantActor)
			}
			act, _ := tok.Claims["act"].(map[string]any)
			nested, _ := act["act"].(map[string]any)
			if got, _ := nested["sub"].(string); got != tt.wantNested {
				t.Errorf("act.act.sub = %q, want %q", got, tt.wantNested)
			}
			form := f2.sts.LastRequest()
			if got := form.Get("actor_token_type"); got != tt.wantActType {
				t.Errorf("actor_token_type = %q, want %q", got, tt.wantActType)
			}
			if wantTok := tt.wantActType != ""; form.Has("actor_token") != wantTok {
				t.Errorf("actor_token sent = %v, want %v", form.Has("actor_token"), wantTok)
			}
		})
	}
}

func TestExchangeAudienceResourceScopes(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name      string
		cfg       func(*exchange.Config)
		req       exchange.Request
		wantForm  map[string][]string
		wantAud   any
		wantScope []string
		wantErr   string // Reason
	}{
		{name: "config audience", req: exchange.Request{},
			wantForm: map[string][]string{"audience": {testAudience}, "resource": nil, "scope": nil},
			wantAud:  testAudience},
		{name: "config resource only",
			cfg:      func(c *exchange.Config) { c.Audience, c.Resource = "", []string{testResource} },
			wantForm: map[string][]string{"audience": nil, "resource": {testResource}},
			wantAud:  testResource},
		{name: "audience and two resources",
			req:      exchange.Request{Resource: []string{testResource, testAudience}},
			wantForm: map[string][]string{"audience": {testAudience}, "resource": {testResource, testAudience}},
			wantAud:  []any{testAudience, testResource}},
		{name: "request overrides audience",
			cfg:      func(c *exchange.Config) { c.Audience = "https://other.example/" },
			req:      exchange.Request{Audience: testResource},
			wantForm: map[string][]string{"audience": {testResource}},
			wantAud:  testResource},
		{name: "expected audience differs from requested",
			cfg:     func(c *exchange.Config) { c.ExpectedAudience = "https://something-else/" },
			wantErr: exchange.ReasonIssuedWrongAudience},
		{name: "two scopes",
			req:       exchange.Request{Scopes: []string{"docs:read", "docs:write"}},
			wantForm:  map[string][]string{"scope": {"docs:read docs:write"}},
			wantAud:   testAudience,
			wantScope: []string{"docs:read", "docs:write"}},
		{name: "scope not allowed by the STS",
			req: exchange.Request{Scopes: []string{"admin"}}, wantErr: "sts_rejected_invalid_scope"},
		{name: "audience not served by the STS",
			req: exchange.Request{Audience: "https://evil.example/"}, wantErr: "sts_rejected_invalid_target"},
		{name: "no target at all",
			cfg: func(c *exchange.Config) { c.Audience = "" }, wantErr: exchange.ReasonBadRequest},
		{name: "invalid scope token",
			req: exchange.Request{Scopes: []string{"has space"}}, wantErr: exchange.ReasonBadRequest},
		{name: "relative resource",
			req: exchange.Request{Resource: []string{"/api"}}, wantErr: exchange.ReasonBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config("")
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c, _ := f.client(t, cfg)
			tt.req.SubjectToken = f.user
			before := f.sts.Requests()
			tok, err := c.Exchange(context.Background(), tt.req)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Exchange succeeded, want %s", tt.wantErr)
				}
				if e := asError(t, err); e.Reason != tt.wantErr || e.Transient {
					t.Fatalf("error = %v (transient %v), want reason %s", err, e.Transient, tt.wantErr)
				}
				if tt.wantErr == exchange.ReasonBadRequest && f.sts.Requests() != before {
					t.Errorf("a request was sent for an invalid Request")
				}
				return
			}
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			form := f.sts.LastRequest()
			for k, v := range tt.wantForm {
				if got := form[k]; !slices.Equal(got, v) {
					t.Errorf("form %s = %q, want %q", k, got, v)
				}
			}
			if got, _ := json.Marshal(tok.Claims["aud"]); string(got) != mustJSON(tt.wantAud) {
				t.Errorf("aud = %s, want %s", got, mustJSON(tt.wantAud))
			}
			if !slices.Equal(tok.Scopes, tt.wantScope) {
				t.Errorf("Scopes = %q, want %q", tok.Scopes, tt.wantScope)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestExchangeEntraOBO(t *testing.T) {
	f := newFixture(t, nil)
	for _, auth := range []string{exchange.AuthClientSecretPost, exchange.AuthPrivateKeyJWT} {
		t.Run(auth, func(t *testing.T) {
			cfg := f.config(auth)
			cfg.Flavor, cfg.Audience, cfg.ExpectedAudience = exchange.FlavorEntraOBO, "", oboAudience
			c, _ := f.client(t, cfg)
			tok, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user, Scopes: []string{oboAudience + "/Docs.Read"},
				Audience: "https://ignored.example/"})
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			form := f.sts.LastRequest()
			for k, v := range map[string]string{
				"grant_type": exchange.GrantJWTBearer, "assertion": ststest.Redacted,
				"requested_token_use": "on_behalf_of", "scope": oboAudience + "/Docs.Read",
				"subject_token": "", "audience": "", "requested_token_type": "",
			} {
				if got := form.Get(k); got != v {
					t.Errorf("form %s = %q, want %q", k, got, v)
				}
			}
			if tok.IssuedTokenType != exchange.TokenTypeAccessToken || tok.Claims["aud"] != oboAudience || tok.Claims["sub"] != "alice" {
				t.Errorf("token = %v aud=%v", tok, tok.Claims["aud"])
			}
			if tok.Claims["scp"] != "Docs.Read" {
				t.Errorf("scp = %v", tok.Claims["scp"])
			}
		})
	}
	t.Run("actor token refused", func(t *testing.T) {
		cfg := f.config(exchange.AuthClientSecretPost)
		cfg.Flavor, cfg.Audience, cfg.ExpectedAudience = exchange.FlavorEntraOBO, "", oboAudience
		c, _ := f.client(t, cfg)
		_, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user, ActorToken: f.agent, Scopes: []string{oboAudience + "/.default"}})
		if e := asError(t, err); e.Reason != exchange.ReasonBadRequest {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("no scope", func(t *testing.T) {
		cfg := f.config(exchange.AuthClientSecretPost)
		cfg.Flavor, cfg.Audience, cfg.ExpectedAudience = exchange.FlavorEntraOBO, "", oboAudience
		c, _ := f.client(t, cfg)
		_, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user})
		if e := asError(t, err); e.Reason != exchange.ReasonBadRequest {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestExchangeFailures(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name      string
		fault     ststest.Fault
		cfg       func(*exchange.Config)
		req       func(*exchange.Request)
		reason    string
		transient bool
		status    int
		code      string
	}{
		{name: "invalid_target", fault: ststest.Fault{Error: "invalid_target", Description: "no such audience"},
			reason: "sts_rejected_invalid_target", status: 400, code: "invalid_target"},
		{name: "invalid_client 401", fault: ststest.Fault{Status: 401, Error: "invalid_client"},
			reason: "sts_rejected_invalid_client", status: 401, code: "invalid_client"},
		{name: "unregistered code", fault: ststest.Fault{Error: "x_custom"},
			reason: exchange.ReasonRejected, status: 400, code: "unrecognized"},
		{name: "400 without body", fault: ststest.Fault{Status: 400},
			reason: exchange.ReasonRejected, status: 400},
		{name: "interaction_required", fault: ststest.Fault{Error: "interaction_required"},
			reason: "sts_rejected_interaction_required", status: 400, code: "interaction_required"},
		{name: "temporarily_unavailable", fault: ststest.Fault{Error: "temporarily_unavailable"},
			reason: exchange.ReasonUnavailable, transient: true, status: 400, code: "temporarily_unavailable"},
		{name: "500", fault: ststest.Fault{Status: 500}, reason: exchange.ReasonUnavailable, transient: true, status: 500},
		{name: "503 with error", fault: ststest.Fault{Status: 503, Error: "server_error"},
			reason: exchange.ReasonUnavailable, transient: true, status: 503, code: "server_error"},
		{name: "429", fault: ststest.Fault{Status: 429}, reason: exchange.ReasonUnavailable, transient: true, status: 429},
		{name: "timeout", fault: ststest.Fault{Delay: 10 * time.Second},
			cfg:    func(c *exchange.Config) { c.Timeout = 50 * time.Millisecond },
			reason: exchange.ReasonTimeout, transient: true},
		{name: "redirect", fault: ststest.Fault{RedirectTo: "http://127.0.0.1:1/token"},
			reason: exchange.ReasonRedirect, status: 302},
		{name: "oversized", fault: ststest.Fault{Oversized: true}, reason: exchange.ReasonBadResponse, status: 200},
		{name: "malformed JSON", fault: ststest.Fault{MalformedJSON: true}, reason: exchange.ReasonBadResponse, status: 200},
		{name: "no issued_token_type", fault: ststest.Fault{OmitIssuedTokenType: true}, reason: exchange.ReasonBadResponse, status: 200},
		{name: "no access_token", fault: ststest.Fault{OmitAccessToken: true}, reason: exchange.ReasonBadResponse, status: 200},
		{name: "DPoP token_type", fault: ststest.Fault{TokenType: "DPoP"}, reason: exchange.ReasonBadResponse, status: 200},
		{name: "scope wider than requested", fault: ststest.Fault{ExtraScope: "docs:write"},
			req:    func(r *exchange.Request) { r.Scopes = []string{"docs:read"} },
			reason: exchange.ReasonBadResponse, status: 200},
		{name: "wrong audience", fault: ststest.Fault{IssueAudience: "https://elsewhere.example/"},
			reason: exchange.ReasonIssuedWrongAudience, status: 200},
		{name: "wrong actor", fault: ststest.Fault{IssueActor: "mallory"},
			req:    func(r *exchange.Request) { r.ActorToken = f.agent },
			reason: exchange.ReasonIssuedWrongActor, status: 200},
		{name: "actor expected but no act", fault: ststest.Fault{},
			req:    func(r *exchange.Request) { r.ExpectedActor = "agent-7" },
			reason: exchange.ReasonIssuedWrongActor, status: 200},
		{name: "opaque token", fault: ststest.Fault{Opaque: true}, reason: exchange.ReasonIssuedOpaque, status: 200},
		{name: "wrong issued issuer", cfg: func(c *exchange.Config) {
			c.IssuedIssuer, c.JWKSURL = "https://not-the-sts.example", f.sts.JWKSURL()
		}, reason: exchange.ReasonIssuedInvalid, status: 200},
		{name: "real STS: wrong client secret", cfg: func(c *exchange.Config) { c.ClientID = "c-post" },
			reason: "sts_rejected_invalid_client", status: 401, code: "invalid_client"},
		{name: "real STS: untrusted subject token",
			req:    func(r *exchange.Request) { r.SubjectToken = untrustedToken(t) },
			reason: "sts_rejected_invalid_request", status: 400, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.sts.SetFault(tt.fault)
			t.Cleanup(func() { f.sts.SetFault(ststest.Fault{}) })
			cfg := f.config("")
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c, _ := f.client(t, cfg)
			req := exchange.Request{SubjectToken: f.user}
			if tt.req != nil {
				tt.req(&req)
			}
			tok, err := c.Exchange(context.Background(), req)
			if err == nil {
				t.Fatalf("Exchange succeeded (%v), want %s", tok, tt.reason)
			}
			e := asError(t, err)
			if e.Reason != tt.reason || e.Transient != tt.transient || e.Status != tt.status || e.Code != tt.code {
				t.Errorf("got reason=%s transient=%v status=%d code=%q, want %s %v %d %q (%v)",
					e.Reason, e.Transient, e.Status, e.Code, tt.reason, tt.transient, tt.status, tt.code, err)
			}
		})
	}
}

func untrustedToken(t testing.TB) string {
	other := newFixture(t, nil)
	tok, err := other.sts.Mint(map[string]any{"sub": "alice"})
	must(t, err)
	return tok
}

func TestExchangeNoFollowRedirect(t *testing.T) {
	f := newFixture(t, nil)
	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"x.y.z","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}`)
	}))
	defer target.Close()
	f.sts.SetFault(ststest.Fault{RedirectTo: target.URL})
	c, _ := f.client(t, f.config(""))
	_, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user})
	if e := asError(t, err); e.Reason != exchange.ReasonRedirect {
		t.Fatalf("error = %v", err)
	}
	if hits.Load() != 0 {
		t.Fatalf("redirect target was called %d times", hits.Load())
	}
}

func TestExchangeTransportFailures(t *testing.T) {
	f := newFixture(t, nil)
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		u := srv.URL
		srv.Close()
		cfg := f.config("")
		cfg.TokenURL = u + "/token"
		c, _ := f.client(t, cfg)
		_, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user})
		if e := asError(t, err); e.Reason != exchange.ReasonUnreachable || !e.Transient {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		c, _ := f.client(t, f.config(""))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Exchange(ctx, exchange.Request{SubjectToken: f.user})
		if e := asError(t, err); e.Reason != exchange.ReasonCanceled || !e.Transient || !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("caller deadline", func(t *testing.T) {
		f.sts.SetFault(ststest.Fault{Delay: 10 * time.Second})
		defer f.sts.SetFault(ststest.Fault{})
		c, _ := f.client(t, f.config(""))
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		_, err := c.Exchange(ctx, exchange.Request{SubjectToken: f.user})
		if e := asError(t, err); e.Reason != exchange.ReasonTimeout || !e.Transient || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestExchangeExpiryAndOpaque(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name   string
		fault  ststest.Fault
		opaque bool
		want   time.Time
	}{
		{name: "expires_in", want: f.now.Add(5 * time.Minute)},
		{name: "jwt exp without expires_in", fault: ststest.Fault{OmitExpiresIn: true}, want: f.now.Add(5 * time.Minute)},
		{name: "opaque allowed", fault: ststest.Fault{Opaque: true}, opaque: true, want: f.now.Add(5 * time.Minute)},
		{name: "opaque without expires_in", fault: ststest.Fault{Opaque: true, OmitExpiresIn: true}, opaque: true,
			want: f.now.Add(exchange.DefaultLifetime)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.sts.SetFault(tt.fault)
			defer f.sts.SetFault(ststest.Fault{})
			cfg := f.config("")
			cfg.AllowOpaque = tt.opaque
			c, _ := f.client(t, cfg)
			tok, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user})
			if err != nil {
				t.Fatalf("Exchange: %v", err)
			}
			if !tok.ExpiresAt.Equal(tt.want) {
				t.Errorf("ExpiresAt = %v, want %v", tok.ExpiresAt, tt.want)
			}
			if (tok.Claims == nil) != tt.opaque {
				t.Errorf("Claims = %v, opaque %v", tok.Claims, tt.opaque)
			}
		})
	}
}

func TestExchangeVerifiesIssuedSignature(t *testing.T) {
	f := newFixture(t, nil)
	cfg := f.config(exchange.AuthPrivateKeyJWT)
	cfg.IssuedIssuer, cfg.JWKSURL = f.sts.URL(), f.sts.JWKSURL()
	c, _ := f.client(t, cfg)
	tok, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user, ActorToken: f.agent})
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if tok.Claims["iss"] != f.sts.URL() || tok.Actor() != "agent-7" {
		t.Fatalf("claims = %v", tok.Claims)
	}
	// A second client whose jwks is another STS's cannot verify.
	other := newFixture(t, nil)
	cfg.JWKSURL = other.sts.JWKSURL()
	c2, _ := f.client(t, cfg)
	_, err = c2.Exchange(context.Background(), exchange.Request{SubjectToken: f.user})
	if e := asError(t, err); e.Reason != exchange.ReasonIssuedInvalid {
		t.Fatalf("error = %v", err)
	}
}

// TestSecretsNeverLeak drives failures whose STS answers echo the secrets
// and checks error strings and log output.
func TestSecretsNeverLeak(t *testing.T) {
	f := newFixture(t, nil)
	secrets := map[string]string{"subject token": f.user, "actor token": f.agent, "client secret": testSecret}
	sigOf := func(tok string) string { return tok[strings.LastIndexByte(tok, '.')+1:] }
	tests := []struct {
		name  string
		auth  string
		fault ststest.Fault
	}{
		{name: "description echoes everything", auth: exchange.AuthClientSecretPost, fault: ststest.Fault{
			Error: "invalid_request", Description: "bad token " + f.user + " and secret " + testSecret + " actor " + f.agent}},
		{name: "description echoes the signature only", auth: exchange.AuthClientSecretBasic, fault: ststest.Fault{
			Error: "invalid_grant", Description: "sig=" + sigOf(f.user)}},
		{name: "server error echoes", auth: exchange.AuthPrivateKeyJWT, fault: ststest.Fault{
			Status: 500, Error: "server_error", Description: f.user}},
		{name: "success path logs", auth: exchange.AuthClientSecretPost},
		{name: "wrong actor", auth: exchange.AuthClientSecretBasic, fault: ststest.Fault{IssueActor: "mallory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.sts.SetFault(tt.fault)
			defer f.sts.SetFault(ststest.Fault{})
			c, logs := f.client(t, f.config(tt.auth))
			tok, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user, ActorToken: f.agent})
			var texts []string
			if err != nil {
				texts = append(texts, err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", asError(t, err)))
			} else {
				texts = append(texts, tok.String(), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, *tok))
				b, _ := json.Marshal(tok)
				texts = append(texts, string(b))
				secrets["issued token"] = tok.AccessToken
				defer delete(secrets, "issued token")
			}
			texts = append(texts, logs.String(), c.String(), fmt.Sprintf("%+v", c))
			if logs.Len() == 0 {
				t.Errorf("nothing was logged")
			}
			for _, text := range texts {
				for name, s := range secrets {
					if strings.Contains(text, s) || strings.Contains(text, sigOf(s)) {
						t.Errorf("%s leaked into %q", name, text)
					}
				}
			}
		})
	}
}

func TestTokenRedaction(t *testing.T) {
	const at = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.SECRETSIG"
	tok := &exchange.Token{AccessToken: at, TokenType: "Bearer", IssuedTokenType: exchange.TokenTypeAccessToken,
		ExpiresAt: time.Unix(1700000000, 0), Scopes: []string{"docs:read"}, Claims: map[string]any{"sub": "alice"}}
	b, err := json.Marshal(tok)
	must(t, err)
	outputs := map[string]string{
		"String": tok.String(), "%v": fmt.Sprintf("%v", tok), "%+v": fmt.Sprintf("%+v", *tok),
		"%#v": fmt.Sprintf("%#v", tok), "%s": fmt.Sprintf("%s", *tok), "%q": fmt.Sprintf("%q", tok),
		"json": string(b), "slog": tok.LogValue().String(),
	}
	for name, out := range outputs {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(out, "SECRETSIG") || strings.Contains(out, at) {
				t.Fatalf("access token leaked: %s", out)
			}
			if !strings.Contains(out, exchange.Redacted) {
				t.Fatalf("no %s marker: %s", exchange.Redacted, out)
			}
		})
	}
	if !strings.Contains(outputs["String"], `sub="alice"`) {
		t.Errorf("String lacks sub: %s", outputs["String"])
	}
}

func BenchmarkExchange(b *testing.B) {
	f := newFixture(b, nil)
	for _, auth := range []string{exchange.AuthClientSecretBasic, exchange.AuthPrivateKeyJWT} {
		b.Run(auth, func(b *testing.B) {
			c, _ := f.client(b, f.config(auth))
			req := exchange.Request{SubjectToken: f.user, ActorToken: f.agent, Scopes: []string{"docs:read"}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Exchange(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Keycloak adds the exchanging client's default scopes (profile, email) to
// what was requested: ignored_issued_scopes tolerates exactly those.
func TestIgnoredIssuedScopes(t *testing.T) {
	f := newFixture(t, nil)
	f.sts.SetFault(ststest.Fault{ExtraScope: "profile"})
	t.Cleanup(func() { f.sts.SetFault(ststest.Fault{}) })
	cfg := f.config("")
	cfg.IgnoredIssuedScopes = []string{"profile", "email"}
	c, _ := f.client(t, cfg)
	tok, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user, Scopes: []string{"docs:read"}})
	if err != nil {
		t.Fatalf("profile added by the STS refused: %v", err)
	}
	if strings.Join(tok.Scopes, " ") != "docs:read" {
		t.Fatalf("recorded scopes %v, want the requested docs:read only", tok.Scopes)
	}
	f.sts.SetFault(ststest.Fault{ExtraScope: "docs:write"})
	if _, err := c.Exchange(context.Background(), exchange.Request{SubjectToken: f.user, Scopes: []string{"docs:read"}}); err == nil {
		t.Fatal("an unrequested scope that is not ignored was accepted")
	}
}
