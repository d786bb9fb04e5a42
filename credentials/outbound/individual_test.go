package outbound

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/fakeclock"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

func TestValidateConnectionModes(t *testing.T) {
	prov := connections.ProviderConfig{Issuer: "https://accounts.example.com", ClientID: "c", ClientSecret: &secret.Ref{Env: "CS"}}
	ind := func(mod func(*IndividualConfig)) Config {
		c := &IndividualConfig{Provider: prov}
		if mod != nil {
			mod(c)
		}
		return Config{Mode: ModeIndividual, Individual: c}
	}
	sa := func(mod func(*ServiceAccountConfig)) Config {
		c := &ServiceAccountConfig{OAuth: &OAuthServiceAccount{Provider: prov}}
		if mod != nil {
			mod(c)
		}
		return Config{Mode: ModeServiceAccount, ServiceAccount: c}
	}
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"individual", ind(nil), nil},
		{"individual custom header", ind(func(c *IndividualConfig) { c.Header, c.Format = "X-Upstream-Token", "token {token}" }), nil},
		{"service_account.oauth", sa(nil), nil},
		{"individual without provider endpoints", ind(func(c *IndividualConfig) { c.Provider = connections.ProviderConfig{} }), []string{
			"individual.provider.authorization_url: required (or set issuer for RFC 8414 discovery)",
			"individual.provider.token_url: required (or set issuer for RFC 8414 discovery)",
			"individual.provider.client_id: required",
			"individual.provider.client_secret: required ({env: NAME} or {file: PATH}) unless auth_style is none"}},
		{"individual bad format", ind(func(c *IndividualConfig) { c.Format = "Bearer" }), []string{`individual.format: must contain {token} exactly once (e.g. "Bearer {token}")`}},
		{"individual twice token", ind(func(c *IndividualConfig) { c.Format = "{token}{token}" }), []string{`individual.format: must contain {token} exactly once (e.g. "Bearer {token}")`}},
		{"individual format control", ind(func(c *IndividualConfig) { c.Format = "Bearer\n{token}" }), []string{"individual.format: contains characters not allowed in a header value"}},
		{"individual bad header", ind(func(c *IndividualConfig) { c.Header = "Host" }), []string{`individual.header: header "Host" may not be set`}},
		{"individual with other blocks", Config{Mode: ModeIndividual, Individual: &IndividualConfig{Provider: prov}, ServiceAccount: &ServiceAccountConfig{}},
			[]string{"service_account: not allowed with mode individual"}},
		{"individual block on static", Config{Mode: ModeStatic, Static: &StaticConfig{Headers: []StaticHeader{{Name: "A", Value: secret.Ref{Env: "A"}}}}, Individual: &IndividualConfig{}},
			[]string{"individual: not allowed with mode static"}},
		{"oauth with client credentials fields", sa(func(c *ServiceAccountConfig) { c.TokenURL, c.Header = "https://x/t", "X-A" }), []string{
			"service_account.header: not allowed together with oauth (set it under oauth.provider or oauth)",
			"service_account.token_url: not allowed together with oauth (set it under oauth.provider or oauth)"}},
		{"oauth provider error", sa(func(c *ServiceAccountConfig) { c.OAuth.Provider.TokenURL = "http://x.example/t" }), []string{
			"service_account.oauth.provider.token_url: must be https (or http on loopback)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil")
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("Validate =\n%s\nwant\n%s", err, strings.Join(tc.want, "\n"))
			}
		})
	}
	if mode, p, ok := ind(nil).Connection(); !ok || mode != connections.ModeIndividual || p.Issuer != prov.Issuer {
		t.Errorf("Connection() = %s %+v %v", mode, p, ok)
	}
	if mode, _, ok := sa(nil).Connection(); !ok || mode != connections.ModeServiceAccount {
		t.Errorf("Connection() = %s %v", mode, ok)
	}
	if _, _, ok := (Config{Mode: ModePublic}).Connection(); ok {
		t.Error("public mode uses a connection")
	}
}

// connWorld is a real connections.Manager over SQLite with a real OAuth
// provider, and alice connected to server "docs".
type connWorld struct {
	m     *connections.Manager
	p     *oauthtest.Provider
	clock *fakeclock.Clock
	prov  connections.ProviderConfig
}

const (
	aliceKey = "https://idp.example.com|alice"
	bobKey   = "https://idp.example.com|bob"
)

func newConnWorld(t testing.TB) *connWorld { return newConnWorldClock(t, false) }

// newConnWorldClock with realClock uses time.Now (benchmarks: the fake
// clock's mutex would dominate).
func newConnWorldClock(t testing.TB, realClock bool) *connWorld {
	t.Helper()
	t.Setenv("OUTBOUND_CONN_CS", testClientSecret)
	p := oauthtest.New(oauthtest.Options{Clients: map[string]string{testClientID: testClientSecret}, AnyLoopbackRedirect: true})
	issuer, err := p.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	clock := fakeclock.New(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	s, err := store.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.Options{Now: clock.Now, PurgeInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	k := make([]byte, store.KeySize)
	_, _ = rand.Read(k)
	ring, err := store.NewKeyRing("k1", map[string][]byte{"k1": k})
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Now
	if realClock {
		now = time.Now
	}
	m, err := connections.New(context.Background(), connections.Config{PublicURL: "http://127.0.0.1:8443"}, connections.Options{Store: s, Cipher: ring, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Wait) // before the store closes: a lookup's LastUsedAt write may still run
	w := &connWorld{m: m, p: p, clock: clock, prov: connections.ProviderConfig{
		Issuer: issuer, ClientID: testClientID, ClientSecret: &secret.Ref{Env: "OUTBOUND_CONN_CS"}, Scopes: []string{"docs.read"}}}
	for id, mode := range map[string]string{"docs": connections.ModeIndividual, "docs-org": connections.ModeServiceAccount} {
		if err := m.Register(id, mode, w.prov); err != nil {
			t.Fatal(err)
		}
	}
	w.connect(t, connections.Key{Org: "acme", UserKey: aliceKey, Server: "docs"}, "alice")
	return w
}

func (w *connWorld) connect(t testing.TB, key connections.Key, user string) {
	t.Helper()
	ctx := context.Background()
	u, err := w.m.StartConnect(ctx, key, "", "")
	if err != nil {
		t.Fatal(err)
	}
	cb, err := oauthtest.Authorize(ctx, u, user, user)
	if err != nil {
		t.Fatal(err)
	}
	q := cb.Query()
	if _, _, err := w.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), q.Get("error"), key); err != nil {
		t.Fatal(err)
	}
}

func TestIndividualCredential(t *testing.T) {
	w := newConnWorld(t)
	ctx := context.Background()
	p, err := New(ctx, Config{Mode: ModeIndividual, Individual: &IndividualConfig{Provider: w.prov}}, Options{Connections: w.m})
	if err != nil {
		t.Fatal(err)
	}
	const callerToken = "caller-inbound-token-MUST-NOT-GO-UPSTREAM"
	base := Request{ServerID: "docs", Org: "acme", Audience: "https://docs.example/mcp", SubjectToken: callerToken,
		Headers: map[string]string{"authorization": "Bearer " + callerToken}}
	human := base
	human.Kind, human.Subject, human.QualifiedSubject, human.UserKey = "human", "alice", "idp.example.com/alice", aliceKey
	cred, err := p.Credential(ctx, &human)
	if err != nil {
		t.Fatal(err)
	}
	if len(cred.Headers) != 1 || cred.Headers[0].Name != "authorization" || !strings.HasPrefix(cred.Headers[0].Value, "Bearer ") {
		t.Fatalf("headers %v", cred.Headers)
	}
	tok := strings.TrimPrefix(cred.Headers[0].Value, "Bearer ")
	if u, _, ok := w.p.VerifyAccessToken(tok); !ok || u != "alice" {
		t.Fatalf("upstream token belongs to %q (%v), want alice's provider token", u, ok)
	}
	if strings.Contains(cred.Headers[0].Value, callerToken) {
		t.Fatal("the caller's token was sent upstream")
	}
	if cred.Mode != ModeIndividual || cred.Subject != "idp.example.com/alice" || strings.Join(cred.Scopes, " ") != "docs.read" || cred.ExpiresAt.IsZero() {
		t.Errorf("credential %v", cred)
	}
	for _, s := range []string{fmt.Sprint(cred), fmt.Sprintf("%+v %#v", cred, cred.Headers), cred.String(), fmt.Sprint(p)} {
		if strings.Contains(s, tok) {
			t.Fatalf("printed credential leaks the token: %s", s)
		}
	}
	if b, _ := json.Marshal(cred); strings.Contains(string(b), tok) {
		t.Fatal("JSON leaks the token")
	}

	// An agent acting for alice uses alice's connection.
	agentFor := human
	agentFor.Kind, agentFor.Actor = "agent_for_user", "agent-7"
	if c, err := p.Credential(ctx, &agentFor); err != nil || c.Headers[0].Value != cred.Headers[0].Value || c.Actor != "agent-7" {
		t.Fatalf("agent for alice: %v %v", c, err)
	}

	refusals := []struct {
		name   string
		mod    func(r *Request)
		reason string
	}{
		{"agent alone", func(r *Request) { r.Kind, r.Subject, r.UserKey = "agent", "agent-7", "" }, ReasonNoUser},
		{"agent alone with a user key", func(r *Request) { r.Kind = "agent" }, ReasonNoUser},
		{"anonymous", func(r *Request) { r.Kind, r.UserKey = "anonymous", "" }, ReasonNoUser},
		{"bob has no connection", func(r *Request) { r.UserKey = bobKey }, ReasonNeedsAuthorization},
		{"alice in another org", func(r *Request) { r.Org = "globex" }, ReasonNeedsAuthorization},
		{"unregistered server", func(r *Request) { r.ServerID = "nope" }, ReasonConnectionError},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			r := human
			tc.mod(&r)
			c, err := p.Credential(ctx, &r)
			var oe *Error
			if c != nil || !errors.As(err, &oe) || oe.Reason != tc.reason || oe.Transient {
				t.Fatalf("Credential = %v, %v; want reason %s", c, err, tc.reason)
			}
			var na *connections.NeedsAuthorizationError
			if got := errors.As(err, &na); got != (tc.reason == ReasonNeedsAuthorization) {
				t.Fatalf("errors.As NeedsAuthorizationError = %v for %v", got, err)
			}
			if na != nil && (na.Connection.Status != connections.StatusNeedsAuthorization || na.Connection.Key.Server != "docs") {
				t.Errorf("NeedsAuthorizationError %+v", na.Connection)
			}
		})
	}

	// A refreshed token replaces the reused credential; a revoked
	// connection is refused at once.
	w.clock.Advance(2 * time.Hour)
	fresh, err := p.Credential(ctx, &human)
	if err != nil || fresh.Headers[0].Value == cred.Headers[0].Value {
		t.Fatalf("after expiry: %v %v (same header: %v)", fresh, err, fresh != nil && fresh.Headers[0].Value == cred.Headers[0].Value)
	}
	if _, _, ok := w.p.VerifyAccessToken(strings.TrimPrefix(fresh.Headers[0].Value, "Bearer ")); !ok {
		t.Fatal("refreshed credential invalid")
	}
	aliceConn := connections.Key{Org: "acme", UserKey: aliceKey, Server: "docs"}
	if err := w.m.Revoke(ctx, aliceConn, connections.Actor{Kind: "user", ID: aliceKey}, ""); err != nil {
		t.Fatal(err)
	}
	var na *connections.NeedsAuthorizationError
	if _, err := p.Credential(ctx, &human); !errors.As(err, &na) || na.Connection.Status != connections.StatusRevoked {
		t.Fatalf("after revoke: %v", err)
	}
	w.connect(t, aliceConn, "alice")

	// A provider outage with an expired token: transient.
	w.clock.Advance(2 * time.Hour)
	w.p.SetFault(oauthtest.Fault5xx)
	_, err = p.Credential(ctx, &human)
	var oe *Error
	if !errors.As(err, &oe) || oe.Reason != ReasonConnectionUnavailable || !oe.Transient {
		t.Fatalf("during an outage: %v", err)
	}
}

func TestConnectionHeaderFormat(t *testing.T) {
	w := newConnWorld(t)
	ctx := context.Background()
	p, err := New(ctx, Config{Mode: ModeIndividual, Individual: &IndividualConfig{Provider: w.prov, Header: "X-Upstream-Token", Format: "token {token};v=1"}},
		Options{Connections: w.m})
	if err != nil {
		t.Fatal(err)
	}
	cred, err := p.Credential(ctx, &Request{ServerID: "docs", Org: "acme", Kind: "human", UserKey: aliceKey})
	if err != nil {
		t.Fatal(err)
	}
	h := cred.Headers[0]
	tok := strings.TrimSuffix(strings.TrimPrefix(h.Value, "token "), ";v=1")
	if h.Name != "x-upstream-token" || !strings.HasPrefix(h.Value, "token ") || !strings.HasSuffix(h.Value, ";v=1") {
		t.Fatalf("header %s", h.Name)
	}
	if _, _, ok := w.p.VerifyAccessToken(tok); !ok {
		t.Fatal("formatted token does not verify")
	}
}

func TestServiceAccountOAuthCredential(t *testing.T) {
	w := newConnWorld(t)
	ctx := context.Background()
	p, err := New(ctx, Config{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{OAuth: &OAuthServiceAccount{Provider: w.prov}}},
		Options{Connections: w.m})
	if err != nil {
		t.Fatal(err)
	}
	req := &Request{ServerID: "docs-org", Org: "acme", Kind: "human", UserKey: bobKey, Subject: "bob"}
	_, err = p.Credential(ctx, req)
	var na *connections.NeedsAuthorizationError
	if !errors.As(err, &na) || na.Connection.Key.UserKey != "" {
		t.Fatalf("before the admin connects: %v", err)
	}
	w.connect(t, connections.Key{Org: "acme", Server: "docs-org"}, "alice") // the admin (alice at the provider)
	for _, r := range []*Request{req, {ServerID: "docs-org", Org: "acme", Kind: "agent", Subject: "agent-7"}} {
		cred, err := p.Credential(ctx, r)
		if err != nil {
			t.Fatalf("%s: %v", r.Kind, err)
		}
		if u, _, ok := w.p.VerifyAccessToken(strings.TrimPrefix(cred.Headers[0].Value, "Bearer ")); !ok || u != "alice" || cred.Mode != ModeServiceAccount || cred.Subject != "" {
			t.Fatalf("%s: %v (token of %q)", r.Kind, cred, u)
		}
	}
	if _, err := p.Credential(ctx, &Request{ServerID: "docs-org", Org: "globex", Kind: "human", UserKey: bobKey}); !errors.As(err, &na) {
		t.Fatalf("another organization uses acme's service account: %v", err)
	}
}

func TestConnectionModesNeedASource(t *testing.T) {
	prov := connections.ProviderConfig{Issuer: "https://accounts.example.com", ClientID: "c", AuthStyle: "none"}
	for _, cfg := range []Config{
		{Mode: ModeIndividual, Individual: &IndividualConfig{Provider: prov}},
		{Mode: ModeServiceAccount, ServiceAccount: &ServiceAccountConfig{OAuth: &OAuthServiceAccount{Provider: prov}}},
	} {
		if _, err := New(context.Background(), cfg, Options{}); err == nil || !strings.Contains(err.Error(), "Options.Connections") {
			t.Errorf("New(%s) without Connections = %v", cfg.Mode, err)
		}
	}
}

// BenchmarkIndividualWarm is the warm `individual` credential (compare with
// BenchmarkServiceAccountWarm).
func BenchmarkIndividualWarm(b *testing.B) {
	w := newConnWorldClock(b, true)
	p, err := New(context.Background(), Config{Mode: ModeIndividual, Individual: &IndividualConfig{Provider: w.prov}}, Options{Connections: w.m})
	if err != nil {
		b.Fatal(err)
	}
	ctx, req := context.Background(), &Request{ServerID: "docs", Org: "acme", Kind: "human", UserKey: aliceKey}
	if _, err := p.Credential(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.Credential(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}
