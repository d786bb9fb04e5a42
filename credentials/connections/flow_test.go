package connections

import (
	"errors"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

func TestConnectFlow(t *testing.T) {
	e := newEnv(t, envOpts{})
	u, err := e.m.StartConnect(ctx, alice, "", "/connect/?from=link")
	if err != nil {
		t.Fatal(err)
	}
	au, _ := url.Parse(u)
	q := au.Query()
	if got := au.Scheme + "://" + au.Host + au.Path; got != e.issuer+"/authorize" {
		t.Errorf("authorize endpoint %s (from discovery), want %s/authorize", got, e.issuer)
	}
	for k, want := range map[string]string{
		"response_type": "code", "client_id": testClientID, "redirect_uri": testPublicURL + "/connect/callback",
		"scope": "repo read:user", "code_challenge_method": "S256", "resource": "https://api.github.example/",
		"access_type": "offline", "prompt": "consent",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("authorize URL %s = %q, want %q", k, got, want)
		}
	}
	if s := q.Get("state"); len(s) != 22 {
		t.Errorf("state %q: want 128 bits base64url (22 chars)", s)
	}
	if c := q.Get("code_challenge"); len(c) != 43 {
		t.Errorf("code_challenge %q: want a S256 challenge", c)
	}
	if c, _ := e.m.Status(ctx, alice); c.Status != StatusPending {
		t.Errorf("status after start = %s, want PENDING", c.Status)
	}
	cb, err := oauthtest.Authorize(ctx, u, "alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	cq := cb.Query()
	if cq.Get("iss") != e.issuer {
		t.Fatalf("provider iss %q", cq.Get("iss"))
	}
	c, ret, err := e.m.CompleteConnect(ctx, cq.Get("state"), cq.Get("code"), cq.Get("iss"), "", alice)
	if err != nil {
		t.Fatal(err)
	}
	if ret != "/connect/?from=link" || c.Status != StatusAuthorized || c.Generation != 1 || c.Mode != ModeIndividual {
		t.Fatalf("CompleteConnect = %+v %q", c, ret)
	}
	if strings.Join(c.Scopes, " ") != "repo read:user" || c.AccessExpiresAt.IsZero() || !c.ConnectedAt.Equal(t0) {
		t.Errorf("connection fields %+v", c)
	}
	tok, err := e.m.Token(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	user, _, ok := e.p.VerifyAccessToken(tok.AccessToken)
	if !ok || user != "alice" {
		t.Fatalf("token verifies as %q %v, want alice's", user, ok)
	}
	if tok.TokenType != "Bearer" || tok.Connection.Key != alice {
		t.Errorf("token %v", tok)
	}
	// Bob has no connection; alice's is not his.
	_, err = e.m.Token(ctx, bob)
	na := wantNeedsAuth(t, err, StatusNeedsAuthorization)
	if na.Connection.Key != bob {
		t.Errorf("NeedsAuthorizationError key %+v", na.Connection.Key)
	}
	if got := strings.Join(e.eventTypes(), ","); got != "connect_started:PENDING:connect_started,status_changed:PENDING:connect_started,connected:AUTHORIZED:connected,status_changed:AUTHORIZED:connected" {
		t.Errorf("events %s", got)
	}
	h, err := e.m.History(ctx, alice.Org, alice.UserKey, 0)
	if err != nil || len(h) != 4 || h[0].Type != EventStatusChanged || h[3].Type != EventConnectStarted {
		t.Errorf("History = %+v, %v", h, err)
	}
}

func TestCompleteConnectRefusals(t *testing.T) {
	tests := []struct {
		name   string
		run    func(e *env) error
		want   error
		status Status // alice's status afterwards
		reason string // connect_failed reason
	}{
		{"replayed state", func(e *env) error {
			cb := e.authorize(e.m, alice, "alice")
			q := cb.Query()
			if _, _, err := e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", alice); err != nil {
				return err
			}
			_, _, err := e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", alice)
			return err
		}, ErrForbidden, StatusAuthorized, ""},
		{"another signed-in user", func(e *env) error {
			q := e.authorize(e.m, alice, "alice").Query()
			_, _, err := e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", bob)
			if !errors.Is(err, ErrForbidden) {
				return err
			}
			// The flow is dead: not even alice can finish it now.
			_, _, err2 := e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", alice)
			if !errors.Is(err2, ErrForbidden) {
				return errors.New("flow usable after a wrong-user attempt")
			}
			return err
		}, ErrForbidden, StatusNeedsAuthorization, "wrong_user"},
		{"iss mismatch (RFC 9207)", func(e *env) error {
			q := e.authorize(e.m, alice, "alice").Query()
			_, _, err := e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), "https://evil.example", "", alice)
			return err
		}, ErrForbidden, StatusNeedsAuthorization, "iss_mismatch"},
		{"iss missing though advertised", func(e *env) error {
			q := e.authorize(e.m, alice, "alice").Query()
			_, _, err := e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), "", "", alice)
			return err
		}, ErrForbidden, StatusNeedsAuthorization, "iss_missing"},
		{"provider error (user denied)", func(e *env) error {
			q := e.authorize(e.m, alice, "alice", oauthtest.Deny()).Query()
			if q.Get("error") != "access_denied" {
				return errors.New("provider did not answer access_denied")
			}
			_, _, err := e.m.CompleteConnect(ctx, q.Get("state"), "", q.Get("iss"), q.Get("error"), alice)
			return err
		}, ErrProviderDenied, StatusNeedsAuthorization, "provider_access_denied"},
		{"expired flow", func(e *env) error {
			q := e.authorize(e.m, alice, "alice").Query()
			e.clock.Advance(DefaultFlowTTL + time.Second)
			_, _, err := e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", alice)
			return err
		}, ErrFlowExpired, StatusNeedsAuthorization, "flow_expired"},
		{"unknown state", func(e *env) error {
			_, _, err := e.m.CompleteConnect(ctx, randomID(), "code", "", "", alice)
			return err
		}, ErrFlowExpired, StatusNeedsAuthorization, ""},
		{"code of another flow (wrong PKCE verifier)", func(e *env) error {
			q1 := e.authorize(e.m, alice, "alice").Query()
			q2 := e.authorize(e.m, alice, "alice").Query()
			_, _, err := e.m.CompleteConnect(ctx, q1.Get("state"), q2.Get("code"), q1.Get("iss"), "", alice)
			if err == nil || !strings.Contains(err.Error(), "invalid_grant") {
				return errors.New("exchange with the wrong verifier was not refused with invalid_grant: " + errString(err))
			}
			return ErrForbidden
		}, ErrForbidden, StatusPending, "exchange_failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			err := tc.run(e)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			c, _ := e.m.Status(ctx, alice)
			if c.Status != tc.status {
				t.Errorf("status afterwards %s (%s), want %s", c.Status, c.Reason, tc.status)
			}
			if tc.reason != "" && !strings.Contains(strings.Join(e.eventTypes(), ","), "connect_failed:") {
				t.Errorf("no connect_failed event: %v", e.eventTypes())
			}
			if tc.reason != "" && !strings.Contains(strings.Join(e.eventTypes(), ","), tc.reason) {
				t.Errorf("events %v lack reason %s", e.eventTypes(), tc.reason)
			}
			if _, err := e.m.Token(ctx, bob); !errors.As(err, new(*NeedsAuthorizationError)) {
				t.Errorf("bob got a token: %v", err)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func TestLinks(t *testing.T) {
	e := newEnv(t, envOpts{})
	l1, err := e.m.Link(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l1, testPublicURL+"/connect/start?link=") {
		t.Fatalf("link %s", l1)
	}
	id := strings.TrimPrefix(l1, testPublicURL+"/connect/start?link=")
	// A flood of denied calls: one link, also across replicas.
	other := e.manager(Config{}, e.ring)
	for range 20 {
		for _, m := range []*Manager{e.m, other} {
			if l, err := m.Link(ctx, alice); err != nil || l != l1 {
				t.Fatalf("Link again = %s %v, want %s", l, err, l1)
			}
		}
	}
	if k, err := e.m.ResolveLink(ctx, id); err != nil || k != alice {
		t.Fatalf("ResolveLink = %+v %v", k, err)
	}
	// Bob cannot use alice's link.
	if _, err := e.m.StartConnect(ctx, bob, id, ""); !errors.Is(err, ErrForbidden) {
		t.Fatalf("StartConnect with another user's link = %v, want ErrForbidden", err)
	}
	// Alice can, once.
	if _, err := e.m.StartConnect(ctx, alice, id, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.StartConnect(ctx, alice, id, ""); !errors.Is(err, ErrFlowExpired) {
		t.Fatalf("reused link = %v, want ErrFlowExpired", err)
	}
	if _, err := e.m.ResolveLink(ctx, id); !errors.Is(err, ErrFlowExpired) {
		t.Fatalf("ResolveLink of a used link = %v", err)
	}
	e.clock.Advance(cacheTTL)
	l2, err := e.m.Link(ctx, alice)
	if err != nil || l2 == l1 {
		t.Fatalf("Link after use = %s %v, want a new link", l2, err)
	}
	// Past half its life a link is replaced; past its TTL it is gone.
	e.clock.Advance(DefaultFlowTTL/2 + time.Second)
	l3, _ := e.m.Link(ctx, alice)
	if l3 == l2 {
		t.Fatal("link reused past half its life")
	}
	e.clock.Advance(DefaultFlowTTL)
	id3 := strings.TrimPrefix(l3, testPublicURL+"/connect/start?link=")
	if _, err := e.m.StartConnect(ctx, alice, id3, ""); !errors.Is(err, ErrFlowExpired) {
		t.Fatalf("expired link = %v, want ErrFlowExpired", err)
	}
	// Links are only for registered servers and the right kind of key.
	if _, err := e.m.Link(ctx, Key{Org: "acme", UserKey: "u", Server: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Link for an unknown server = %v", err)
	}
	if _, err := e.m.Link(ctx, Key{Org: "acme", Server: testServer}); !errors.Is(err, ErrForbidden) {
		t.Errorf("service-account link on an individual server = %v", err)
	}
}

func TestStartConnectReturnTo(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, bad := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "relative", "/a\nb"} {
		if _, err := e.m.StartConnect(ctx, alice, "", bad); !errors.Is(err, ErrForbidden) {
			t.Errorf("returnTo %q accepted: %v", bad, err)
		}
	}
}

func TestPendingFlowAbandoned(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.connect(e.m, alice, "alice")
	if err := e.m.Revoke(ctx, alice, Actor{Kind: "user", ID: alice.UserKey}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.StartConnect(ctx, alice, "", ""); err != nil {
		t.Fatal(err)
	}
	if c, _ := e.m.Get(ctx, alice); c.Status != StatusPending {
		t.Fatalf("status %s, want PENDING", c.Status)
	}
	e.clock.Advance(DefaultFlowTTL + time.Second)
	if c, _ := e.m.Get(ctx, alice); c.Status != StatusRevoked || c.Reason != "user_revoked" {
		t.Fatalf("abandoned flow shows %s/%s, want REVOKED/user_revoked", c.Status, c.Reason)
	}
	if rep := e.m.sweep(ctx); rep.abandoned != 1 {
		t.Fatalf("sweep %+v", rep)
	}
	if r := e.record(alice); r.meta.Status != StatusRevoked || r.meta.PendingUntil != 0 {
		t.Fatalf("stored %+v", r.meta)
	}
}

func TestDiscoveryWithIssuerPath(t *testing.T) {
	e := newEnv(t, envOpts{provider: oauthtest.Options{IssuerPathPrefix: "/tenant1"}})
	if !strings.HasSuffix(e.issuer, "/tenant1") {
		t.Fatalf("issuer %s", e.issuer)
	}
	e.connect(e.m, alice, "alice")
	if n := e.p.Requests("/.well-known/oauth-authorization-server"); n != 1 {
		t.Errorf("RFC 8414 metadata fetched %d times, want 1", n)
	}
}

func TestExplicitEndpointsWithoutIssuer(t *testing.T) {
	e := newEnv(t, envOpts{prov: func(issuer string, p *ProviderConfig) {
		p.Issuer, p.AuthorizationURL, p.TokenURL, p.RevocationURL = "", issuer+"/authorize", issuer+"/token", issuer+"/revoke"
	}})
	e.connect(e.m, alice, "alice") // iss is sent but cannot be compared: accepted, logged
	if n := e.p.Requests("/.well-known/oauth-authorization-server") + e.p.Requests("/.well-known/openid-configuration"); n != 0 {
		t.Errorf("metadata fetched %d times with explicit endpoints", n)
	}
	if !strings.Contains(e.logs.String(), "no issuer is configured") {
		t.Error("uncompared iss not logged")
	}
}

// TestConcurrentCallbackOneWinner: the same callback delivered many times
// at once (replay race) completes exactly once.
func TestConcurrentCallbackOneWinner(t *testing.T) {
	e := newEnv(t, envOpts{})
	q := e.authorize(e.m, alice, "alice").Query()
	other := e.managerWith(e.sqlite, Config{}, e.ring)
	var ok, forbidden atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		m := e.m
		if i%2 == 1 {
			m = other
		}
		wg.Go(func() {
			_, _, err := m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", alice)
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrForbidden):
				forbidden.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || forbidden.Load() != 15 {
		t.Fatalf("%d completed, %d refused; want 1 and 15", ok.Load(), forbidden.Load())
	}
	if n := e.p.Requests("/token"); n != 1 {
		t.Fatalf("the code was redeemed %d times", n)
	}
}
