package connections

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

// TestNoTokenInAnyOutput runs a full lifecycle (connect, lazy and
// background refresh with rotation, failures, a wrong-user callback,
// upstream 401, revocation, mode switch) and then looks for every token the
// provider issued, the PKCE verifiers and the client secret in everything
// the package produced: log lines, events (Audit and History), errors,
// String/GoString/JSON/slog output, List, Stats and the database files.
func TestNoTokenInAnyOutput(t *testing.T) {
	e := newEnv(t, envOpts{provider: oauthtest.Options{RotateRefresh: true}, cfg: Config{MaxFailures: 2}})
	secrets := map[string]bool{testClientSecret: true}
	var out strings.Builder
	note := func(vs ...any) {
		for _, v := range vs {
			fmt.Fprintf(&out, "%v\n%+v\n%#v\n%s\n", v, v, v, v)
			if b, err := json.Marshal(v); err == nil {
				out.Write(b)
			}
			slog.New(slog.NewTextHandler(&out, nil)).Info("x", "v", v)
			slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "v", v)
		}
	}
	collect := func(k Key) {
		tk := e.tokens(k)
		secrets[tk.Access], secrets[tk.Refresh] = true, true
	}
	errs := func(err error) {
		if err != nil {
			note(err, err.Error())
		}
	}

	e.connect(e.m, alice, "alice")
	collect(alice)
	tok, err := e.m.Token(ctx, alice)
	errs(err)
	note(tok, &tok, tok.Connection, e.m)
	for range 2 {
		e.expire(alice)
		tok, err = e.m.Token(ctx, alice)
		errs(err)
		note(tok)
		collect(alice)
		e.clock.Advance(55 * time.Minute)
		e.m.sweep(ctx)
		collect(alice)
	}
	// Provider outage, then invalid_grant.
	e.expire(alice)
	e.p.SetFault(oauthtest.Fault5xx)
	_, err = e.m.Token(ctx, alice)
	errs(err)
	e.clock.Advance(time.Hour)
	e.m.sweep(ctx)
	_, err = e.m.Token(ctx, alice)
	errs(err)
	e.p.SetFault(oauthtest.FaultNone)
	// Bob: wrong-user callback, then a real connect, a 401 and a revoke.
	q := e.authorize(e.m, bob, "bob").Query()
	_, _, err = e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", alice)
	errs(err)
	_, _, err = e.m.CompleteConnect(ctx, q.Get("state"), q.Get("code"), q.Get("iss"), "", bob)
	errs(err)
	e.connect(e.m, bob, "bob")
	collect(bob)
	errs(e.m.UpstreamRejected(ctx, bob))
	collect(bob)
	tb, err := e.m.Token(ctx, bob)
	errs(err)
	note(tb)
	errs(e.m.Revoke(ctx, bob, Actor{Kind: "user", ID: bob.UserKey}, ""))
	_, err = e.m.Token(ctx, bob)
	errs(err)
	// Mode switch.
	e.mode = ModeServiceAccount
	m2 := e.managerWith(e.sqlite, Config{}, e.ring)
	errs(m2.Reconcile(ctx))

	list, err := e.m.List(ctx, Filter{})
	errs(err)
	note(list, e.m.Stats())
	for _, k := range []Key{alice, bob} {
		h, err := e.m.History(ctx, k.Org, k.UserKey, 0)
		errs(err)
		note(h)
	}
	delete(secrets, "")
	if len(secrets) < 8 {
		t.Fatalf("only %d secrets collected: the flow did not run", len(secrets))
	}
	haystacks := map[string]string{"logs": e.logs.String(), "events": e.allEventsJSON(), "outputs": out.String()}
	for _, suffix := range []string{"", "-wal"} {
		if b, err := os.ReadFile(e.path + suffix); err == nil {
			haystacks["database"+suffix] = string(b)
		}
	}
	if !strings.Contains(haystacks["logs"], "token refresh failed") || !strings.Contains(haystacks["outputs"], "needs authorization") {
		t.Fatal("the flow produced less output than expected")
	}
	for name, h := range haystacks {
		for s := range secrets {
			if strings.Contains(h, s) {
				t.Errorf("%s contains a token or secret (%d bytes)", name, len(s))
			}
		}
	}
}

// tokenProxy stands between the Manager and the provider's token endpoint
// and can misbehave (oversized or redirecting answers).
type tokenProxy struct {
	srv    *httptest.Server
	target http.Handler
	mode   atomic.Value // "", "huge", "redirect"
}

func newTokenProxy(t *testing.T) *tokenProxy {
	p := &tokenProxy{}
	p.mode.Store("")
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p.mode.Load().(string) {
		case "huge":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"` + strings.Repeat("a", 2<<20) + `"}`))
			return
		case "redirect":
			http.Redirect(w, r, "https://evil.example/token", http.StatusTemporaryRedirect)
			return
		}
		p.target.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func TestProviderAnswersBounded(t *testing.T) {
	for _, tc := range []struct{ mode, want string }{
		{"huge", "exceeds 1 MiB"},
		{"redirect", "redirects are not followed"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			px := newTokenProxy(t)
			e := newEnv(t, envOpts{prov: func(issuer string, p *ProviderConfig) {
				p.AuthorizationURL, p.TokenURL = issuer+"/authorize", px.srv.URL+"/token"
			}})
			px.target = e.p.Handler()
			e.connect(e.m, alice, "alice")
			e.expire(alice)
			px.mode.Store(tc.mode)
			_, err := e.m.Token(ctx, alice)
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Token = %v, want %q", err, tc.want)
			}
			if c, _ := e.m.Get(ctx, alice); c.FailCount != 1 || c.Status != StatusAuthorized {
				t.Fatalf("%+v", c)
			}
		})
	}
}

// TestProviderChanged: a record's refresh token is never sent to a token
// endpoint other than the one that issued it.
func TestProviderChanged(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.connect(e.m, alice, "alice")
	other := oauthtest.New(oauthtest.Options{Clients: map[string]string{testClientID: testClientSecret}})
	issuer2, err := other.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	pc := e.pc
	pc.Issuer = issuer2
	if err := e.m.Register(testServer, ModeIndividual, pc); err != nil {
		t.Fatal(err)
	}
	e.expire(alice)
	_, err = e.m.Token(ctx, alice)
	if na := wantNeedsAuth(t, err, StatusRevoked); na.Connection.Reason != "provider_changed" {
		t.Fatalf("reason %q", na.Connection.Reason)
	}
	if n := other.Requests("/token"); n != 0 {
		t.Fatalf("the new provider received %d token requests", n)
	}
}
