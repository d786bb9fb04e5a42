package connections

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
)

func TestLazyRefresh(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.connect(e.m, alice, "alice")
	tok1, err := e.m.Token(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	n0 := e.p.Requests("/token")
	e.expire(alice)
	tok2, err := e.m.Token(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if tok2.AccessToken == tok1.AccessToken {
		t.Fatal("same token after expiry")
	}
	if u, _, ok := e.p.VerifyAccessToken(tok2.AccessToken); !ok || u != "alice" {
		t.Fatalf("refreshed token verifies as %q %v", u, ok)
	}
	if n := e.p.Requests("/token") - n0; n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
	c := tok2.Connection
	if c.Generation != 2 || !c.LastRefreshedAt.Equal(e.clock.Now()) || c.Status != StatusAuthorized {
		t.Errorf("connection after refresh %+v", c)
	}
	if !strings.Contains(strings.Join(e.eventTypes(), ","), "refreshed:AUTHORIZED:refreshed") {
		t.Errorf("events %v", e.eventTypes())
	}
}

// TestConcurrentTokenOneRefresh: 1,000 concurrent Token calls on an expired
// token cause exactly one refresh request at the provider.
func TestConcurrentTokenOneRefresh(t *testing.T) {
	e := newEnv(t, envOpts{provider: oauthtest.Options{SlowDelay: 300 * time.Millisecond, RotateRefresh: true}})
	e.connect(e.m, alice, "alice")
	e.expire(alice)
	n0 := e.p.Requests("/token")
	e.p.SetFault(oauthtest.FaultSlow) // callers pile up while the provider thinks
	const n = 1000
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			tk, err := e.m.Token(ctx, alice)
			toks[i], errs[i] = tk.AccessToken, err
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil || toks[i] != toks[0] {
			t.Fatalf("call %d: %v (token equal to the first: %v)", i, errs[i], toks[i] == toks[0])
		}
	}
	if got := e.p.Requests("/token") - n0; got != 1 {
		t.Fatalf("%d refresh requests for %d concurrent calls, want exactly 1", got, n)
	}
	if _, _, ok := e.p.VerifyAccessToken(toks[0]); !ok {
		t.Fatal("the shared token is not valid at the provider")
	}
}

// TestReplicasRefreshOnce: two replicas on one store refresh a row once
// (lease + compare-and-swap); with a rotating provider both end up with the
// winner's valid token.
func TestReplicasRefreshOnce(t *testing.T) {
	e := newEnv(t, envOpts{provider: oauthtest.Options{SlowDelay: 200 * time.Millisecond, RotateRefresh: true}})
	other := e.managerWith(e.sqlite, Config{}, e.ring)
	e.connect(e.m, alice, "alice")
	e.expire(alice)
	n0 := e.p.Requests("/token")
	e.p.SetFault(oauthtest.FaultSlow)
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for i := range 40 {
		m := e.m
		if i%2 == 1 {
			m = other
		}
		wg.Go(func() {
			tk, err := m.Token(ctx, alice)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			seen[tk.AccessToken]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if got := e.p.Requests("/token") - n0; got != 1 {
		t.Fatalf("%d refresh requests from two replicas, want 1", got)
	}
	if len(seen) != 1 {
		t.Fatalf("replicas got %d different tokens", len(seen))
	}
	e.p.SetFault(oauthtest.FaultNone)
	if r := e.record(alice); r.meta.Lease != nil || r.meta.Status != StatusAuthorized || r.meta.Generation != 2 {
		t.Fatalf("record after refresh %+v", r.meta)
	}
}

// TestRotatingRefreshTokenKept: each rotated refresh token is stored before
// anything else and the next refresh uses it (reuse of an old one would
// revoke the whole grant at this provider).
func TestRotatingRefreshTokenKept(t *testing.T) {
	e := newEnv(t, envOpts{provider: oauthtest.Options{RotateRefresh: true}})
	e.connect(e.m, alice, "alice")
	seen := map[string]bool{e.tokens(alice).Refresh: true}
	for i := range 6 {
		e.expire(alice)
		if i%2 == 0 {
			if _, err := e.m.Token(ctx, alice); err != nil {
				t.Fatalf("refresh %d: %v", i, err)
			}
		} else if rep := e.m.sweep(ctx); rep.due != 1 {
			t.Fatalf("sweep %d: %+v", i, rep)
		}
		rt := e.tokens(alice).Refresh
		if seen[rt] {
			t.Fatalf("refresh %d: the stored refresh token was not replaced by the rotated one", i)
		}
		seen[rt] = true
		if c, _ := e.m.Get(ctx, alice); c.Status != StatusAuthorized {
			t.Fatalf("refresh %d: %+v", i, c)
		}
	}
}

func TestProviderOmitsRefreshToken(t *testing.T) {
	e := newEnv(t, envOpts{provider: oauthtest.Options{OmitRefreshOnRefresh: true}})
	e.connect(e.m, alice, "alice")
	rt := e.tokens(alice).Refresh
	for range 3 {
		e.expire(alice)
		if _, err := e.m.Token(ctx, alice); err != nil {
			t.Fatal(err)
		}
		if got := e.tokens(alice).Refresh; got != rt {
			t.Fatal("refresh token dropped or changed though the provider returned none")
		}
	}
}

func TestRefreshInvalidGrantRevoked(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.connect(e.m, alice, "alice")
	e.p.RevokeUser("alice") // the user removed the app at the provider
	e.expire(alice)
	_, err := e.m.Token(ctx, alice)
	na := wantNeedsAuth(t, err, StatusRevoked)
	if na.Connection.Reason != "refresh_invalid_grant" || !strings.Contains(na.Connection.LastError, "invalid_grant") {
		t.Fatalf("connection %+v", na.Connection)
	}
	if r := e.record(alice); len(r.sealed) != 0 || r.meta.HasRefresh || r.meta.Generation != 2 {
		t.Fatalf("tokens kept after invalid_grant: %+v", r.meta)
	}
	if !strings.Contains(strings.Join(e.eventTypes(), ","), "refresh_failed:REVOKED:refresh_invalid_grant") {
		t.Errorf("events %v", e.eventTypes())
	}
}

// TestRefreshInvalidGrantExpired: when the provider announced the refresh
// token's lifetime (refresh_token_expires_in) and it has run out,
// invalid_grant means EXPIRED, not REVOKED.
func TestRefreshInvalidGrantExpired(t *testing.T) {
	var target http.Handler
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		target.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if r.URL.Path == "/token" && rec.Code == 200 {
			var m map[string]any
			_ = json.Unmarshal(body, &m)
			m["refresh_token_expires_in"] = 3600
			body, _ = json.Marshal(m)
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
	}))
	t.Cleanup(proxy.Close)
	e := newEnv(t, envOpts{prov: func(issuer string, p *ProviderConfig) {
		p.AuthorizationURL, p.TokenURL = issuer+"/authorize", proxy.URL+"/token"
	}})
	target = e.p.Handler()
	e.connect(e.m, alice, "alice")
	if r := e.record(alice); r.meta.RefreshExpiresAt != t0.Add(time.Hour).UnixMilli() {
		t.Fatalf("refresh expiry %d", r.meta.RefreshExpiresAt)
	}
	e.clock.Advance(2 * time.Hour)
	e.p.RevokeUser("alice") // the provider now refuses it
	_, err := e.m.Token(ctx, alice)
	na := wantNeedsAuth(t, err, StatusExpired)
	if na.Connection.Reason != "refresh_token_expired" {
		t.Fatalf("reason %q", na.Connection.Reason)
	}
}

func TestTransientFailuresBackOffThenError(t *testing.T) {
	e := newEnv(t, envOpts{cfg: Config{MaxFailures: 3}})
	e.connect(e.m, alice, "alice")
	e.expire(alice)
	e.p.SetFault(oauthtest.Fault5xx)
	n0 := e.p.Requests("/token")
	_, err := e.m.Token(ctx, alice)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Token during a provider outage = %v, want ErrUnavailable", err)
	}
	// Backing off: no provider call until NextAttemptAt.
	e.clock.Advance(cacheTTL)
	if _, err := e.m.Token(ctx, alice); !errors.Is(err, ErrUnavailable) || e.p.Requests("/token")-n0 != 1 {
		t.Fatalf("Token while backing off = %v after %d requests", err, e.p.Requests("/token")-n0)
	}
	for i := 2; i <= 3; i++ {
		e.clock.Advance(time.Hour)
		e.m.sweep(ctx)
		c, _ := e.m.Get(ctx, alice)
		if c.FailCount != i {
			t.Fatalf("after failure %d: %+v", i, c)
		}
	}
	c, _ := e.m.Get(ctx, alice)
	if c.Status != StatusError || c.Reason != "refresh_failed" || !strings.Contains(c.LastError, "503") {
		t.Fatalf("after MaxFailures: %+v", c)
	}
	_, err = e.m.Token(ctx, alice)
	wantNeedsAuth(t, err, StatusError)
	// The provider recovers: the sweep heals the connection.
	e.p.SetFault(oauthtest.FaultNone)
	e.clock.Advance(2 * time.Hour)
	e.m.sweep(ctx)
	if tk, err := e.m.Token(ctx, alice); err != nil || tk.Connection.FailCount != 0 {
		t.Fatalf("after recovery: %v %v", tk, err)
	}
	got := strings.Join(e.eventTypes(), ",")
	for _, want := range []string{"refresh_failed:AUTHORIZED:refresh_unavailable", "status_changed:ERROR:refresh_unavailable", "status_changed:AUTHORIZED:refreshed"} {
		if !strings.Contains(got, want) {
			t.Errorf("events lack %s: %s", want, got)
		}
	}
}

func TestRefreshTimeoutIsTransient(t *testing.T) {
	e := newEnv(t, envOpts{provider: oauthtest.Options{SlowDelay: 2 * time.Second},
		prov: func(_ string, p *ProviderConfig) { p.Timeout = 200 * time.Millisecond }})
	e.connect(e.m, alice, "alice")
	e.expire(alice)
	e.p.SetFault(oauthtest.FaultSlow)
	start := time.Now()
	_, err := e.m.Token(ctx, alice)
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("Token = %v after %s", err, time.Since(start))
	}
	if c, _ := e.m.Get(ctx, alice); c.FailCount != 1 || !strings.Contains(c.LastError, "timed out") || c.Status != StatusAuthorized {
		t.Fatalf("%+v", c)
	}
}

func TestSweepRefreshesBeforeExpiry(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.connect(e.m, alice, "alice")
	tok1, _ := e.m.Token(ctx, alice)
	e.clock.Advance(45 * time.Minute) // 15 min left of 1h: not yet (refresh_before 10m)
	if rep := e.m.sweep(ctx); rep.due != 0 || rep.records != 1 {
		t.Fatalf("sweep at 45m: %+v", rep)
	}
	e.clock.Advance(6 * time.Minute)
	n0 := e.p.Requests("/token")
	if rep := e.m.sweep(ctx); rep.due != 1 {
		t.Fatalf("sweep at 51m: %+v", rep)
	}
	tok2, err := e.m.Token(ctx, alice)
	if err != nil || tok2.AccessToken == tok1.AccessToken || e.p.Requests("/token")-n0 != 1 {
		t.Fatalf("after sweep: %v %v (%d requests)", tok2, err, e.p.Requests("/token")-n0)
	}
	st := e.m.Stats()
	if st.Refreshes["success"] != 1 || st.ByServerStatus[testServer][StatusAuthorized] != 1 || st.Flows["started"] != 1 || st.Flows["completed"] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAccessTokenWithoutRefreshExpires(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.p.SetFault(oauthtest.FaultNoRefreshToken)
	e.connect(e.m, alice, "alice")
	if _, err := e.m.Token(ctx, alice); err != nil {
		t.Fatal(err)
	}
	e.expire(alice)
	_, err := e.m.Token(ctx, alice)
	if na := wantNeedsAuth(t, err, StatusExpired); na.Connection.Reason != "access_token_expired" {
		t.Fatalf("reason %q", na.Connection.Reason)
	}
}

// TestStoreFailsAfterProviderAnswered: the provider rotated the refresh
// token, then the store refused the write. The new tokens are served from
// memory and written by the next load; the stored refresh token ends up
// the new one, and it works after a restart.
func TestStoreFailsAfterProviderAnswered(t *testing.T) {
	e := newEnv(t, envOpts{provider: oauthtest.Options{RotateRefresh: true}})
	e.connect(e.m, alice, "alice")
	rt0 := e.tokens(alice).Refresh
	e.expire(alice)
	e.m.afterProvider = func(Key) { e.fs.failWrites.Store(true) }
	tok, err := e.m.Token(ctx, alice)
	e.m.afterProvider = nil
	if err != nil {
		t.Fatalf("Token with the store failing after the provider answered = %v", err)
	}
	if _, _, ok := e.p.VerifyAccessToken(tok.AccessToken); !ok {
		t.Fatal("token served from memory is not valid")
	}
	if e.tokens(alice).Refresh != rt0 {
		t.Fatal("the store accepted a write it was told to refuse")
	}
	if e.m.Stats().Refreshes["unsaved"] != 1 {
		t.Errorf("stats %+v", e.m.Stats())
	}
	// The store recovers; the next sweep (or load) writes the grant.
	e.fs.failWrites.Store(false)
	e.m.sweep(ctx)
	rt1 := e.tokens(alice).Refresh
	if rt1 == rt0 || rt1 == "" {
		t.Fatal("the rotated refresh token was not written once the store recovered")
	}
	if r := e.record(alice); r.meta.Lease != nil || r.meta.Generation != 2 {
		t.Fatalf("record %+v", r.meta)
	}
	// A restarted replica refreshes with it successfully.
	m2 := e.managerWith(e.sqlite, Config{}, e.ring)
	e.expire(alice)
	if _, err := m2.Token(ctx, alice); err != nil {
		t.Fatalf("refresh with the stored (rotated) refresh token: %v", err)
	}
}

// TestCrashMidRefresh: a replica dies after the provider answered and
// before anything was stored. The record keeps the old refresh token and
// a lease that lapses. Another replica then refreshes with the old token:
// a non-rotating provider accepts it; a rotating one refuses it (the new
// token died with the replica), and the connection says so
// (REVOKED, refresh_interrupted) instead of looping.
func TestCrashMidRefresh(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		t.Run(map[bool]string{false: "non-rotating provider", true: "rotating provider"}[rotate], func(t *testing.T) {
			e := newEnv(t, envOpts{provider: oauthtest.Options{RotateRefresh: rotate}})
			e.connect(e.m, alice, "alice")
			rt0 := e.tokens(alice).Refresh
			e.expire(alice)
			dead := e.m
			dead.afterProvider = func(Key) { e.fs.failWrites.Store(true); e.fs.failReads.Store(true) }
			_, _ = dead.Token(ctx, alice) // the "crash": nothing after the provider's answer is stored
			r := e.record(alice)
			if r.meta.Lease == nil || e.tokens(alice).Refresh != rt0 {
				t.Fatalf("after the crash: lease %+v", r.meta.Lease)
			}
			survivor := e.managerWith(e.sqlite, Config{}, e.ring)
			e.clock.Advance(e.pc.Timeout + leaseExtra + time.Second) // the lease lapses
			tok, err := survivor.Token(ctx, alice)
			if !rotate {
				if err != nil {
					t.Fatalf("survivor refresh = %v", err)
				}
				if _, _, ok := e.p.VerifyAccessToken(tok.AccessToken); !ok {
					t.Fatal("survivor token invalid")
				}
				return
			}
			na := wantNeedsAuth(t, err, StatusRevoked)
			if na.Connection.Reason != "refresh_interrupted" {
				t.Fatalf("reason %q", na.Connection.Reason)
			}
		})
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t, envOpts{})
	other := e.managerWith(e.sqlite, Config{}, e.ring)
	e.connect(e.m, alice, "alice")
	e.connect(e.m, bob, "bob")
	old, _ := other.Token(ctx, alice) // cached on the other replica
	if err := e.m.Revoke(ctx, alice, Actor{Kind: "user", ID: alice.UserKey}, ""); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.Token(ctx, alice)
	if na := wantNeedsAuth(t, err, StatusRevoked); na.Connection.Reason != "user_revoked" {
		t.Fatalf("reason %q", na.Connection.Reason)
	}
	if e.p.Requests("/revoke") != 1 {
		t.Errorf("RFC 7009 calls: %d", e.p.Requests("/revoke"))
	}
	if _, _, ok := e.p.VerifyAccessToken(old.AccessToken); ok {
		t.Error("the provider still accepts the revoked grant's access token")
	}
	// Another replica sees the revocation once its cache entry (<= 2 s) lapses.
	e.clock.Advance(cacheTTL)
	_, err = other.Token(ctx, alice)
	wantNeedsAuth(t, err, StatusRevoked)
	// Admin revokes bob; again is a no-op; unknown keys are not found.
	if err := other.Revoke(ctx, bob, Actor{Kind: "admin", ID: "root"}, ""); err != nil {
		t.Fatal(err)
	}
	n := len(e.eventTypes())
	if err := other.Revoke(ctx, bob, Actor{Kind: "admin", ID: "root"}, ""); err != nil || len(e.eventTypes()) != n {
		t.Fatalf("second revoke: %v, %d new events", err, len(e.eventTypes())-n)
	}
	if c, _ := e.m.Get(ctx, bob); c.Reason != "admin_revoked" || c.Generation != 2 {
		t.Fatalf("bob %+v", c)
	}
	if err := e.m.Revoke(ctx, Key{Org: "acme", UserKey: "nobody", Server: testServer}, Actor{Kind: "admin"}, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke of nothing = %v", err)
	}
	h, _ := e.m.History(ctx, "acme", bob.UserKey, 1)
	if len(h) != 1 || h[0].Type != EventStatusChanged || h[0].Actor != (Actor{Kind: "admin", ID: "root"}) {
		t.Fatalf("bob's last event %+v", h)
	}
}

// TestRevokeDuringRefresh: a refresh that answers after a revocation is
// discarded; the record stays REVOKED without tokens.
func TestRevokeDuringRefresh(t *testing.T) {
	e := newEnv(t, envOpts{provider: oauthtest.Options{SlowDelay: 500 * time.Millisecond}})
	e.connect(e.m, alice, "alice")
	e.expire(alice)
	e.p.SetFault(oauthtest.FaultSlow)
	n0 := e.p.Requests("/token")
	done := make(chan error, 1)
	go func() { _, err := e.m.Token(ctx, alice); done <- err }()
	for e.p.Requests("/token") == n0 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.m.Revoke(ctx, alice, Actor{Kind: "user", ID: alice.UserKey}, ""); err != nil {
		t.Fatal(err)
	}
	wantNeedsAuth(t, <-done, StatusRevoked)
	if r := e.record(alice); r.meta.Status != StatusRevoked || len(r.sealed) != 0 {
		t.Fatalf("record %+v", r.meta)
	}
	// The refresh in flight either answered after the revoke (its tokens
	// discarded) or, when the revoke's RFC 7009 call reached the provider
	// first, was refused there (invalid_grant): either way it never
	// resurrected the connection, which the record check above proves.
	if st := e.m.Stats().Refreshes; st["discarded"]+st["invalid_grant"] != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestUpstreamRejected(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.connect(e.m, alice, "alice")
	tok1, _ := e.m.Token(ctx, alice)
	if err := e.m.UpstreamRejected(ctx, alice); err != nil {
		t.Fatal(err)
	}
	tok2, err := e.m.Token(ctx, alice)
	if err != nil || tok2.AccessToken == tok1.AccessToken || tok2.Connection.Generation != 2 {
		t.Fatalf("after a 401: %v %v", tok2, err)
	}
	// More 401s right away are requests that still carried the old token.
	if err := e.m.UpstreamRejected(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if err := e.m.UpstreamRejectedGeneration(ctx, alice, 1); err != nil {
		t.Fatal(err)
	}
	if c, _ := e.m.Get(ctx, alice); c.Status != StatusAuthorized || c.Generation != 2 {
		t.Fatalf("%+v", c)
	}
	// The refreshed token is refused too: revoked.
	e.clock.Advance(upstreamGrace + time.Second)
	if err := e.m.UpstreamRejected(ctx, alice); err != nil {
		t.Fatal(err)
	}
	_, err = e.m.Token(ctx, alice)
	if na := wantNeedsAuth(t, err, StatusRevoked); na.Connection.Reason != "upstream_rejected" {
		t.Fatalf("reason %q", na.Connection.Reason)
	}
	// Exact generation variant and no refresh token: revoked at once.
	e.p.SetFault(oauthtest.FaultNoRefreshToken)
	e.connect(e.m, bob, "bob")
	tb, _ := e.m.Token(ctx, bob)
	if err := e.m.UpstreamRejectedGeneration(ctx, bob, tb.Connection.Generation); err != nil {
		t.Fatal(err)
	}
	_, err = e.m.Token(ctx, bob)
	wantNeedsAuth(t, err, StatusRevoked)
}

func TestReconcileModeSwitch(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.connect(e.m, alice, "alice")
	e.connect(e.m, bob, "bob")
	// Restart with the server switched to an admin-authorized service account.
	e.mode = ModeServiceAccount
	m := e.managerWith(e.sqlite, Config{}, e.ring)
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []Key{alice, bob} {
		if c, err := m.Get(ctx, k); err != nil || c.Status != StatusRevoked || c.Reason != "mode_switch" {
			t.Fatalf("%+v %v", c, err)
		}
		// A user key on a service-account server is refused outright.
		if _, err := m.Token(ctx, k); !errors.Is(err, ErrForbidden) {
			t.Fatalf("Token = %v, want ErrForbidden", err)
		}
	}
	if e.p.Requests("/revoke") != 2 {
		t.Errorf("RFC 7009 calls %d", e.p.Requests("/revoke"))
	}
	org := Key{Org: "acme", Server: testServer}
	if _, err := m.StartConnect(ctx, alice, "", ""); !errors.Is(err, ErrForbidden) {
		t.Fatalf("individual connect on a service-account server = %v", err)
	}
	e.connect(m, org, "alice") // the admin authorizes once
	tok, err := m.Token(ctx, org)
	if err != nil || tok.Connection.Mode != ModeServiceAccount {
		t.Fatalf("service account token: %v %v", tok, err)
	}
	if list, _ := m.List(ctx, Filter{Org: "acme", ServiceAccounts: true}); len(list) != 1 || list[0].Key != org {
		t.Fatalf("List service accounts = %+v", list)
	}
	if list, _ := m.List(ctx, Filter{Status: StatusRevoked}); len(list) != 2 {
		t.Fatalf("List revoked = %+v", list)
	}
	// Reconcile is idempotent; a server that disappears is reported as such.
	if err := m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	empty, err := New(ctx, Config{PublicURL: testPublicURL}, Options{Store: e.sqlite, Cipher: e.ring, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if c, _ := empty.Get(ctx, org); c.Status != StatusRevoked || c.Reason != "server_removed" {
		t.Fatalf("%+v", c)
	}
}

func TestHistoryBounded(t *testing.T) {
	e := newEnv(t, envOpts{})
	evs := make([]Event, 0, 1100)
	for i := range 1100 {
		evs = append(evs, Event{Type: EventRefreshed, Key: alice, Reason: strings.Repeat("x", i%3)})
	}
	e.m.emit(ctx, evs)
	h, err := e.m.History(ctx, alice.Org, alice.UserKey, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != MaxHistory {
		t.Fatalf("History kept %d events, want %d", len(h), MaxHistory)
	}
	all, _ := e.sqlite.List(ctx, eventPrefix(alice.Org, alice.UserKey), "", 0)
	if len(all) > MaxHistory+pruneEvery {
		t.Fatalf("%d events stored for one user", len(all))
	}
	if h5, _ := e.m.History(ctx, alice.Org, alice.UserKey, 5); len(h5) != 5 || h5[0].Reason != evs[1099].Reason {
		t.Fatalf("History(5) = %+v", h5)
	}
}
