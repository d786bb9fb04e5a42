package connect

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpauthz/mcpauthz/credentials/secret"
)

func secretEnv(name string) *secret.Ref { return &secret.Ref{Env: name} }

// checkHeaders asserts the security headers every response must carry.
func checkHeaders(t *testing.T, name string, r *resp, providerOrigin string) {
	t.Helper()
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "style-src 'self'", "img-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP %q lacks %q", name, csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "script-src") {
		t.Errorf("%s: CSP allows scripts or inline: %q", name, csp)
	}
	if providerOrigin != "" && !strings.Contains(csp, "form-action 'self' "+providerOrigin) {
		t.Errorf("%s: CSP form-action lacks provider origin %s: %q", name, providerOrigin, csp)
	}
	for h, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "same-origin",
		"Cache-Control":          "no-store",
		"X-Frame-Options":        "DENY",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s: %s = %q, want %q", name, h, got, want)
		}
	}
}

func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	e := newEnv(t, func(_ *Config, o *Options) { o.Servers[0].ProviderOrigin = "https://github.com" })
	anon := e.browser()
	signed := e.browser()
	signed.login(alice)
	csrf := csrfFrom(t, signed.get("/connect/").body)
	for _, tc := range []struct {
		name string
		do   func() *resp
	}{
		{"list anonymous", func() *resp { return anon.get("/connect/") }},
		{"list", func() *resp { return signed.get("/connect/") }},
		{"server", func() *resp { return signed.get("/connect/github") }},
		{"css", func() *resp { return anon.get("/connect/static/style.css") }},
		{"login", func() *resp { return anon.get("/connect/login") }},
		{"login callback bad", func() *resp { return anon.get("/connect/login/callback?state=x") }},
		{"not found", func() *resp { return signed.get("/connect/nope/deeper/path") }},
		{"method not allowed", func() *resp { return signed.get("/connect/github/revoke") }},
		{"start bad link", func() *resp { return signed.get("/connect/start?link=") }},
		{"callback unknown state", func() *resp { return signed.get("/connect/callback?state=zzz&code=c") }},
		{"post refused", func() *resp { return signed.post("/connect/github", url.Values{"csrf": {"bad"}}, "self") }},
		{"post ok", func() *resp { return signed.post("/connect/github", url.Values{"csrf": {csrf}}, "self") }},
		{"logout page", func() *resp { return signed.get("/connect/logout") }},
	} {
		r := tc.do()
		checkHeaders(t, tc.name, r, "https://github.com")
		if r.StatusCode == http.StatusOK && strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			if strings.Contains(r.body, "<script") || strings.Contains(r.body, " style=") || strings.Contains(r.body, "<style") {
				t.Errorf("%s: page has script or inline style", tc.name)
			}
		}
	}
	if ct := anon.get("/connect/static/style.css").Header.Get("Content-Type"); ct != "text/css; charset=utf-8" {
		t.Errorf("css content type %q", ct)
	}
}

func TestNoSessionRedirectsToLogin(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, tc := range []struct{ path, ret string }{
		{"/connect/", "/connect/"},
		{"/connect/github", "/connect/github"},
		{"/connect/start?link=abc", "/connect/start?link=abc"},
		{"/connect/callback?state=s1&code=c1", "/connect/callback?state=s1&code=c1"},
	} {
		r := b.get(tc.path)
		if r.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: status %d", tc.path, r.StatusCode)
		}
		want := "/connect/login?return=" + url.QueryEscape(tc.ret)
		if r.location() != want {
			t.Errorf("%s: Location %q, want %q", tc.path, r.location(), want)
		}
	}
	// A POST without a session is refused, not redirected (the form would be lost).
	for _, p := range []string{"/connect/github", "/connect/github/revoke", "/connect/logout"} {
		r := b.post(p, url.Values{"csrf": {"x"}}, "self")
		if p == "/connect/logout" {
			if r.StatusCode != http.StatusSeeOther || r.location() != "/connect/signed-out" {
				t.Errorf("logout without session: %d %q", r.StatusCode, r.location())
			}
			continue
		}
		if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "not signed in") {
			t.Errorf("POST %s without session: %d", p, r.StatusCode)
		}
	}
	if len(e.mgr.starts)+len(e.mgr.revokes) != 0 {
		t.Fatalf("manager called without a session: %v %v", e.mgr.starts, e.mgr.revokes)
	}
}

func TestLoginSetsSecureSessionCookie(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	e.iss.setUser(alice)
	r := b.get("/connect/login?return=" + url.QueryEscape("/connect/github?x=1"))
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", r.StatusCode)
	}
	authz, _ := url.Parse(r.location())
	q := authz.Query()
	if !strings.HasPrefix(r.location(), e.iss.URL()+"/authorize?") || q.Get("code_challenge_method") != "S256" ||
		q.Get("nonce") == "" || q.Get("client_id") != testClientID || q.Get("redirect_uri") != e.srv.URL+"/connect/login/callback" ||
		q.Get("scope") != "openid profile" || len(q.Get("state")) < 40 {
		t.Fatalf("authorization request: %s", r.location())
	}
	lc := findSetCookie(r, "__Host-mcpauthz-login-")
	if lc == nil || !lc.Secure || !lc.HttpOnly || lc.SameSite != http.SameSiteLaxMode || lc.Path != "/" || lc.Domain != "" || lc.MaxAge != int(LoginTTL/time.Second) {
		t.Fatalf("login cookie %+v", lc)
	}
	r = b.get(r.location()) // issuer -> callback
	cb := b.get(r.location())
	if cb.StatusCode != http.StatusSeeOther || cb.location() != "/connect/github?x=1" {
		t.Fatalf("callback: %d %q %s", cb.StatusCode, cb.location(), cb.body)
	}
	sc := findSetCookie(cb, "__Host-mcpauthz-session")
	if sc == nil || !sc.Secure || !sc.HttpOnly || sc.SameSite != http.SameSiteLaxMode || sc.Path != "/" || sc.Domain != "" || sc.MaxAge != int(DefaultSessionTTL/time.Second) {
		t.Fatalf("session cookie %+v", sc)
	}
	if strings.Contains(sc.Value, "alice") || strings.Contains(sc.Value, "acme") {
		t.Fatal("session cookie is not encrypted")
	}
	if lc2 := findSetCookie(cb, lc.Name); lc2 == nil || lc2.MaxAge >= 0 {
		t.Fatalf("login cookie not cleared: %+v", lc2)
	}
	if e.users.calls[0] != "people|"+testClientID+"|"+q.Get("nonce") {
		t.Fatalf("Users.FromIDToken called with %q", e.users.calls[0])
	}
	page := b.get("/connect/")
	if !strings.Contains(page.body, "Alice Example") || !strings.Contains(page.body, "GitHub") || !strings.Contains(page.body, "Google Drive") {
		t.Fatalf("list page: %s", page.body)
	}
	// The organization's server is listed read-only: no Connect for a
	// person who is not an administrator.
	if !strings.Contains(page.body, "Connected by your organization") || !strings.Contains(page.body, "Shared Box") ||
		strings.Contains(page.body, `action="/connect/shared`) || strings.Contains(page.body, "/connect/admin/") {
		t.Fatalf("service_account server on the users' page: %s", page.body)
	}
}

func findSetCookie(r *resp, prefix string) *http.Cookie {
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, prefix) {
			return c
		}
	}
	return nil
}

func TestLoginRefusals(t *testing.T) {
	for _, tc := range []struct {
		fault, user string
		status      int
		text        string
	}{
		{"wrong_aud", "alice", http.StatusForbidden, "could not be verified"},
		{"wrong_nonce", "alice", http.StatusForbidden, "not for this sign-in"},
		{"expired", "alice", http.StatusForbidden, "could not be verified"},
		{"bad_signature", "alice", http.StatusForbidden, "could not be verified"},
		{"wrong_iss", "alice", http.StatusForbidden, "could not be verified"},
		{"multi_aud", "alice", http.StatusForbidden, "not for mcpauthz"},
		{"no_id_token", "alice", http.StatusBadGateway, "no ID token"},
		{"deny", "alice", http.StatusForbidden, "Access was declined"},
		{"", "mallory", http.StatusForbidden, "does not recognise this account"},
	} {
		t.Run(tc.fault+tc.user, func(t *testing.T) {
			e := newEnv(t)
			e.iss.setFault(tc.fault)
			e.iss.setUser(idUser{Sub: tc.user, Org: "acme"})
			b := e.browser()
			r := b.follow(b.get("/connect/login"))
			if r.StatusCode != tc.status || !strings.Contains(r.body, tc.text) {
				t.Fatalf("got %d, want %d with %q: %s", r.StatusCode, tc.status, tc.text, r.body)
			}
			if strings.Contains(r.body, "call +1-555") {
				t.Fatal("provider error_description shown")
			}
			if findSetCookie(r, "__Host-mcpauthz-session") != nil || b.get("/connect/").StatusCode != http.StatusSeeOther {
				t.Fatal("a session was created")
			}
		})
	}
}

func TestLoginStateIsSingleUseAndBound(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.get("/connect/login")
	r = b.get(r.location()) // issuer redirect to our callback with code+state
	cbURL := r.location()
	// An attacker's browser with the same callback URL but no login cookie.
	if x := e.browser().get(cbURL); x.StatusCode != http.StatusBadRequest || !strings.Contains(x.body, "expired or was already used") {
		t.Fatalf("callback without login cookie: %d", x.StatusCode)
	}
	// Capture the login cookie to replay it after the first use.
	u, _ := url.Parse(e.srv.URL)
	saved := b.c.Jar.Cookies(u)
	if ok := b.get(cbURL); ok.StatusCode != http.StatusSeeOther {
		t.Fatalf("first callback: %d %s", ok.StatusCode, ok.body)
	}
	replay := e.browser()
	replay.c.Jar.SetCookies(u, saved)
	if x := replay.get(cbURL); x.StatusCode != http.StatusBadRequest || !strings.Contains(x.body, "already used") {
		t.Fatalf("replayed state: %d %s", x.StatusCode, x.body)
	}
	// A state that does not match the cookie named after its prefix.
	b2 := e.browser()
	r2 := b2.get(b2.get("/connect/login").location())
	cb, _ := url.Parse(r2.location())
	q := cb.Query()
	q.Set("state", q.Get("state")[:16]+strings.Repeat("A", 27))
	cb.RawQuery = q.Encode()
	if x := b2.get(cb.String()); x.StatusCode != http.StatusBadRequest || !strings.Contains(x.body, "not valid") {
		t.Fatalf("forged state: %d %s", x.StatusCode, x.body)
	}
	// An expired login cookie.
	b3 := e.browser()
	r3 := b3.get(b3.get("/connect/login").location())
	e.clock.Advance(LoginTTL + time.Second)
	if x := b3.get(r3.location()); x.StatusCode != http.StatusBadRequest || !strings.Contains(x.body, "expired") {
		t.Fatalf("expired login: %d %s", x.StatusCode, x.body)
	}
}

func TestOpenRedirectRefused(t *testing.T) {
	for _, bad := range []string{
		"//evil.example", "/\\evil.example", "\\\\evil.example", "https://evil.example/", "http:/evil", "javascript:alert(1)",
		"evil.example", "/%0d%0aSet-Cookie:x", "/ok\r\nx", "/a\\b", "/#frag", "//", "/\t/evil", "%2F%2Fevil",
	} {
		if _, ok := safeReturn(bad); ok {
			t.Errorf("safeReturn accepted %q", bad)
		}
	}
	for _, good := range []string{"/", "/connect/", "/connect/start?link=abc", "/connect/github?x=1&y=%2F"} {
		if v, ok := safeReturn(good); !ok || v != good {
			t.Errorf("safeReturn refused %q", good)
		}
	}
	e := newEnv(t)
	b := e.browser()
	for _, bad := range []string{"//evil.example", "/\\evil.example", "https://evil.example/x"} {
		r := b.get("/connect/login?return=" + url.QueryEscape(bad))
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("login return %q: %d %q", bad, r.StatusCode, r.location())
		}
	}
	// A manager returning a foreign returnTo after a flow: the page links home.
	b.login(alice)
	auth := b.get("/connect/start?link=" + e.mgr.link(keyFor(aliceKB, "github"))).location()
	au, _ := url.Parse(auth)
	e.mgr.mu.Lock()
	e.mgr.flows[au.Query().Get("state")].returnTo = "//evil.example"
	e.mgr.mu.Unlock()
	r := b.get(providerCallback(t, auth, url.Values{"code": {"c"}}))
	if r.StatusCode != http.StatusOK || strings.Contains(r.body, "evil.example") || !strings.Contains(r.body, `href="/connect/"`) {
		t.Fatalf("callback return: %d %s", r.StatusCode, r.body)
	}
}

func TestStartLinkChecksTheSignedInUser(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login(alice)
	otherOrg := Key{Org: "globex", UserKey: "people|globex|alice", Server: "github"}
	for _, tc := range []struct {
		name   string
		key    Key
		status int
		text   string
	}{
		{"another user", keyFor(bobKB, "github"), http.StatusForbidden, "This link was created for another account — sign in as that account or ask for a new link."},
		{"same user another org", otherOrg, http.StatusForbidden, "created for another account"},
		{"service account", Key{Org: "acme", Server: "shared"}, http.StatusForbidden, "Only an administrator can connect this"},
		{"server not configured", keyFor(aliceKB, "gone"), http.StatusNotFound, "no longer set up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := b.get("/connect/start?link=" + e.mgr.link(tc.key))
			if r.StatusCode != tc.status || !strings.Contains(r.body, tc.text) {
				t.Fatalf("got %d: %s", r.StatusCode, r.body)
			}
			for _, leak := range []string{"bob", "globex", "people|"} {
				if strings.Contains(r.body, leak) {
					t.Fatalf("refusal reveals %q", leak)
				}
			}
		})
	}
	if len(e.mgr.starts) != 0 {
		t.Fatalf("StartConnect called for a refused link: %v", e.mgr.starts)
	}
	if r := b.get("/connect/start?link=unknown"); r.StatusCode != http.StatusGone {
		t.Fatalf("unknown link: %d", r.StatusCode)
	}
	if r := b.get("/connect/start?link=" + url.QueryEscape("a b")); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed link: %d", r.StatusCode)
	}
	// The right user: StartConnect with the link, 303 to the provider.
	link := e.mgr.link(keyFor(aliceKB, "github"))
	r := b.get("/connect/start?link=" + link)
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.location(), e.provider.URL+"/authorize?") {
		t.Fatalf("start: %d %q", r.StatusCode, r.location())
	}
	if want := "acme/people|acme|alice/github|" + link + "|/connect/"; e.mgr.starts[0] != want {
		t.Fatalf("StartConnect %q, want %q", e.mgr.starts[0], want)
	}
	if fc := findSetCookie(r, "__Host-mcpauthz-flow-"); fc == nil || !fc.Secure || !fc.HttpOnly || fc.SameSite != http.SameSiteLaxMode {
		t.Fatalf("flow cookie %+v", fc)
	}
	// Single use (the manager consumed it).
	if r := b.get("/connect/start?link=" + link); r.StatusCode != http.StatusGone || !strings.Contains(r.body, "expired or was already used") {
		t.Fatalf("reused link: %d", r.StatusCode)
	}
}

// providerCallback extracts the state from a provider authorization URL and
// builds our callback URL as the provider would.
func providerCallback(t *testing.T, authURL string, extra url.Values) string {
	t.Helper()
	u, err := url.Parse(authURL)
	if err != nil {
		t.Fatal(err)
	}
	v := url.Values{"state": {u.Query().Get("state")}}
	for k, vs := range extra {
		v[k] = vs
	}
	return "/connect/callback?" + v.Encode()
}

func TestCallback(t *testing.T) {
	e := newEnv(t)
	alicePage := e.browser()
	alicePage.login(alice)
	start := func(b *browser) string {
		r := b.get("/connect/start?link=" + e.mgr.link(keyFor(aliceKB, "github")))
		if r.StatusCode != http.StatusSeeOther {
			t.Fatalf("start: %d %s", r.StatusCode, r.body)
		}
		return r.location()
	}

	t.Run("success then replay", func(t *testing.T) {
		cb := providerCallback(t, start(alicePage), url.Values{"code": {"good-code"}, "iss": {"https://provider"}})
		r := alicePage.get(cb)
		if r.StatusCode != http.StatusOK || !regexp.MustCompile(`Connected: GitHub</span>\s*<span aria-hidden="true">—</span>\s*<span class="badge badge-authorized"><span class="visually-hidden">Status: </span>AUTHORIZED</span>`).MatchString(r.body) {
			t.Fatalf("success page: %d %s", r.StatusCode, r.body)
		}
		if got := e.mgr.completes[len(e.mgr.completes)-1]; got != keyFor(aliceKB, "github") {
			t.Fatalf("CompleteConnect signedIn = %+v", got)
		}
		if strings.Contains(r.body, "good-code") {
			t.Fatal("code echoed")
		}
		if x := alicePage.get(cb); x.StatusCode != http.StatusForbidden || !strings.Contains(x.body, "refused") {
			t.Fatalf("replayed state: %d %s", x.StatusCode, x.body)
		}
	})
	t.Run("wrong user", func(t *testing.T) {
		auth := start(alicePage)
		bobPage := e.browser()
		bobPage.login(bob)
		r := bobPage.get(providerCallback(t, auth, url.Values{"code": {"c"}}))
		if r.StatusCode != http.StatusForbidden || strings.Contains(r.body, "alice") {
			t.Fatalf("bob completing alice's flow: %d %s", r.StatusCode, r.body)
		}
		if e.mgr.get(keyFor(bobKB, "github")).Status == StatusAuthorized {
			t.Fatal("bob got a connection")
		}
	})
	t.Run("wrong user in the same browser", func(t *testing.T) {
		// Alice starts, then the browser signs in as bob and comes back.
		b := e.browser()
		b.login(alice)
		auth := start(b)
		b.login(bob)
		r := b.get(providerCallback(t, auth, url.Values{"code": {"c"}}))
		if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "started by another account") {
			t.Fatalf("got %d %s", r.StatusCode, r.body)
		}
		if got := e.mgr.get(keyFor(aliceKB, "github")); got.Status == StatusAuthorized && got.Generation > 1 {
			t.Fatal("flow completed")
		}
	})
	t.Run("denied consent", func(t *testing.T) {
		r := alicePage.get(providerCallback(t, start(alicePage), url.Values{"error": {"access_denied"}, "error_description": {"<script>alert(1)</script> call us"}}))
		if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "You declined access") || strings.Contains(r.body, "call us") || strings.Contains(r.body, "<script") {
			t.Fatalf("denied: %d %s", r.StatusCode, r.body)
		}
	})
	t.Run("hostile provider error code", func(t *testing.T) {
		r := alicePage.get(providerCallback(t, start(alicePage), url.Values{"error": {`"><script>alert(1)</script>`}}))
		if r.StatusCode != http.StatusBadGateway || strings.Contains(r.body, "<script>alert") || !strings.Contains(r.body, "scriptalert1script") {
			t.Fatalf("hostile error: %d %s", r.StatusCode, r.body)
		}
	})
	t.Run("expired flow", func(t *testing.T) {
		auth := start(alicePage)
		e.clock.Advance(11 * time.Minute)
		r := alicePage.get(providerCallback(t, auth, url.Values{"code": {"c"}}))
		if r.StatusCode != http.StatusGone || !strings.Contains(r.body, "expired") {
			t.Fatalf("expired: %d %s", r.StatusCode, r.body)
		}
	})
	t.Run("unknown state", func(t *testing.T) {
		r := alicePage.get("/connect/callback?state=nope&code=c")
		if r.StatusCode != http.StatusGone {
			t.Fatalf("unknown: %d", r.StatusCode)
		}
		if r := alicePage.get("/connect/callback?code=c"); r.StatusCode != http.StatusBadRequest {
			t.Fatalf("no state: %d", r.StatusCode)
		}
	})
}

// signedIn returns a browser signed in as u with its CSRF token.
func signedIn(t *testing.T, e *env, u idUser) (*browser, string) {
	b := e.browser()
	b.login(u)
	return b, csrfFrom(t, b.get("/connect/").body)
}

func TestPOSTChecks(t *testing.T) {
	e := newEnv(t)
	b, token := signedIn(t, e, alice)
	_, bobToken := signedIn(t, e, bob)
	if token == bobToken {
		t.Fatal("two sessions share a CSRF token")
	}
	e.mgr.set(Connection{Key: keyFor(aliceKB, "github"), Status: StatusAuthorized})
	for _, tc := range []struct {
		name, path, csrf, origin, referer string
		status                            int
	}{
		{"connect csrf missing", "/connect/github", "", "self", "", http.StatusForbidden},
		{"connect csrf wrong", "/connect/github", "AAAA" + token[4:], "self", "", http.StatusForbidden},
		{"connect csrf of another session", "/connect/github", bobToken, "self", "", http.StatusForbidden},
		{"connect foreign origin", "/connect/github", token, "https://evil.example", "", http.StatusForbidden},
		{"connect null origin", "/connect/github", token, "null", "", http.StatusForbidden},
		{"connect no origin no referer", "/connect/github", token, "", "", http.StatusForbidden},
		{"connect foreign referer", "/connect/github", token, "", "https://evil.example/connect/", http.StatusForbidden},
		{"revoke csrf missing", "/connect/github/revoke", "", "self", "", http.StatusForbidden},
		{"revoke csrf wrong", "/connect/github/revoke", "x", "self", "", http.StatusForbidden},
		{"logout csrf missing", "/connect/logout", "", "self", "", http.StatusForbidden},
		{"connect unknown server", "/connect/nope", token, "self", "", http.StatusNotFound},
		{"connect service account", "/connect/shared", token, "self", "", http.StatusNotFound},
		{"connect ok (referer)", "/connect/drive", token, "", e.srv.URL + "/connect/", http.StatusOK},
		{"connect ok", "/connect/github", token, "self", "", http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := url.Values{}
			if tc.csrf != "" {
				form.Set("csrf", tc.csrf)
			}
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+tc.path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			switch tc.origin {
			case "":
			case "self":
				req.Header.Set("Origin", e.srv.URL)
			default:
				req.Header.Set("Origin", tc.origin)
			}
			if tc.referer != "" {
				req.Header.Set("Referer", tc.referer)
			}
			r := b.do(req)
			if r.StatusCode != tc.status {
				t.Fatalf("got %d, want %d: %s", r.StatusCode, tc.status, r.body)
			}
		})
	}
	if len(e.mgr.revokes) != 0 {
		t.Fatalf("revoked despite refused POSTs: %v", e.mgr.revokes)
	}
	if len(e.mgr.starts) != 2 || !strings.HasPrefix(e.mgr.starts[0], "acme/people|acme|alice/drive||/connect/") {
		t.Fatalf("starts %v", e.mgr.starts)
	}
	if b.get("/connect/").StatusCode != http.StatusOK {
		t.Fatal("refused logout POST signed the user out")
	}
}

func TestConnectRedirectsOrOffersALink(t *testing.T) {
	e := newEnv(t, func(_ *Config, o *Options) { o.Servers[0].ProviderOrigin = "http://" + "127.0.0.1:1" })
	b, token := signedIn(t, e, alice)
	// The provider origin was not known when the page was rendered: a
	// redirect would be blocked by form-action, so the page offers a link.
	r := b.post("/connect/drive", url.Values{"csrf": {token}}, "self")
	if r.StatusCode != http.StatusOK || !strings.Contains(r.body, `href="`+e.provider.URL+`/authorize?client_id=upstream&amp;state=`) {
		t.Fatalf("first connect: %d %s", r.StatusCode, r.body)
	}
	checkHeaders(t, "continue page", r, "http://127.0.0.1:1")
	if p := b.get("/connect/"); !strings.Contains(p.Header.Get("Content-Security-Policy"), "form-action 'self' http://127.0.0.1:1 "+e.provider.URL+";") {
		t.Fatalf("learnt origin not in form-action: %q", p.Header.Get("Content-Security-Policy"))
	}
	// Now it is known: a plain 303.
	r = b.post("/connect/drive", url.Values{"csrf": {token}}, "self")
	if r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.location(), e.provider.URL) {
		t.Fatalf("second connect: %d %q", r.StatusCode, r.location())
	}
	// The GET page of a server shows the Connect form.
	p := b.get("/connect/github")
	if p.StatusCode != http.StatusOK || !strings.Contains(p.body, `action="/connect/github"`) || !strings.Contains(p.body, "NEEDS_AUTHORIZATION") ||
		!strings.Contains(p.body, "http://127.0.0.1:1") {
		t.Fatalf("server page: %s", p.body)
	}
	if b.get("/connect/shared").StatusCode != http.StatusNotFound || b.get("/connect/unknown").StatusCode != http.StatusNotFound {
		t.Fatal("service account or unknown server page served")
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t)
	b, token := signedIn(t, e, alice)
	e.mgr.set(Connection{Key: keyFor(aliceKB, "github"), Status: StatusAuthorized, Reason: "connected"})
	r := b.post("/connect/github/revoke", url.Values{"csrf": {token}}, "self")
	if r.StatusCode != http.StatusSeeOther || r.location() != "/connect/" {
		t.Fatalf("revoke: %d %q", r.StatusCode, r.location())
	}
	if want := "acme/people|acme|alice/github|user:people|acme|alice|user_revoked"; len(e.mgr.revokes) != 1 || e.mgr.revokes[0] != want {
		t.Fatalf("revokes %v, want %q", e.mgr.revokes, want)
	}
	page := b.get("/connect/")
	if !strings.Contains(page.body, "REVOKED") || !strings.Contains(page.body, "You revoked this connection.") {
		t.Fatalf("list after revoke: %s", page.body)
	}
	// Nothing to revoke is not an error.
	if r := b.post("/connect/drive/revoke", url.Values{"csrf": {token}}, "self"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke without record: %d", r.StatusCode)
	}
}

func TestListShowsStatusesAndOnlyTheUsersRecords(t *testing.T) {
	e := newEnv(t, func(_ *Config, o *Options) {
		o.Servers = nil
		for _, s := range []string{"a", "b", "c", "d", "e", "f", "g"} {
			o.Servers = append(o.Servers, ServerInfo{ID: s, Name: "Server " + strings.ToUpper(s), Mode: "individual"})
		}
	})
	now := e.clock.Now()
	e.mgr.listIgnores = true
	e.mgr.set(Connection{Key: keyFor(aliceKB, "a"), Status: StatusAuthorized, Reason: "connected", Scopes: []string{"repo", "read:user"},
		ConnectedAt: now.Add(-2 * time.Hour), LastUsedAt: now.Add(-5 * time.Minute), LastRefreshedAt: now.Add(-30 * time.Minute)})
	e.mgr.set(Connection{Key: keyFor(aliceKB, "b"), Status: StatusPending, Reason: "connect_started"})
	e.mgr.set(Connection{Key: keyFor(aliceKB, "c"), Status: StatusExpired, Reason: "refresh_expired"})
	e.mgr.set(Connection{Key: keyFor(aliceKB, "d"), Status: StatusRevoked, Reason: "mode_switch"})
	e.mgr.set(Connection{Key: keyFor(aliceKB, "e"), Status: StatusError, Reason: "refresh_gave_up", LastError: "token endpoint answered 503 <b>"})
	e.mgr.set(Connection{Key: keyFor(bobKB, "f"), Status: StatusAuthorized, Reason: "connected", Scopes: []string{"bob-secret-scope"}})
	b, _ := signedIn(t, e, alice)
	page := b.get("/connect/").body
	for _, want := range []string{
		`badge-authorized"><span class="visually-hidden">Status: </span>AUTHORIZED`,
		`badge-pending"><span class="visually-hidden">Status: </span>PENDING`,
		`badge-expired"><span class="visually-hidden">Status: </span>EXPIRED`,
		`badge-revoked"><span class="visually-hidden">Status: </span>REVOKED`,
		`badge-error"><span class="visually-hidden">Status: </span>ERROR`,
		`badge-needs_authorization"><span class="visually-hidden">Status: </span>NEEDS_AUTHORIZATION`,
		"<code>repo</code>", "<code>read:user</code>", "(5 minutes ago)", "(2 hours ago)", "(30 minutes ago)",
		"The authorization ran out at the service.", "shared account set up by an administrator",
		"token endpoint answered 503 &lt;b&gt;", `action="/connect/a/revoke"`, `action="/connect/d"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	if strings.Contains(page, "bob-secret-scope") || strings.Count(page, "badge-authorized") != 1 {
		t.Fatal("another user's connection is shown")
	}
	if strings.Contains(page, `action="/connect/d/revoke"`) || strings.Contains(page, `action="/connect/g/revoke"`) {
		t.Fatal("Revoke offered for a revoked or absent connection")
	}
	e.mgr.listErr = context.DeadlineExceeded
	if r := b.get("/connect/"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("list error: %d", r.StatusCode)
	}
}

func TestSessionIntegrityAndLogout(t *testing.T) {
	e := newEnv(t)
	b, token := signedIn(t, e, alice)
	u, _ := url.Parse(e.srv.URL)
	var sess *http.Cookie
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "__Host-mcpauthz-session" {
			sess = c
		}
	}
	raw, _ := base64.RawURLEncoding.DecodeString(sess.Value)
	raw[len(raw)-1] ^= 1
	tampered := e.browser()
	tampered.c.Jar.SetCookies(u, []*http.Cookie{{Name: sess.Name, Value: base64.RawURLEncoding.EncodeToString(raw), Path: "/"}})
	if r := tampered.get("/connect/"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("tampered session accepted: %d", r.StatusCode)
	}
	// A sealed login cookie value is not a session (the name is the AAD).
	lv, _ := e.h.cookies.seal("__Host-mcpauthz-login-x", session{ID: "x", UserKey: "people|acme|alice", Expires: time.Now().Add(time.Hour).Unix()})
	swapped := e.browser()
	swapped.c.Jar.SetCookies(u, []*http.Cookie{{Name: sess.Name, Value: lv, Path: "/"}})
	if r := swapped.get("/connect/"); r.StatusCode != http.StatusSeeOther {
		t.Fatal("a value sealed for another cookie was accepted as a session")
	}
	// Another process's key (random by default) cannot read it.
	other := newEnv(t)
	stolen := other.browser()
	ou, _ := url.Parse(other.srv.URL)
	stolen.c.Jar.SetCookies(ou, []*http.Cookie{{Name: sess.Name, Value: sess.Value, Path: "/"}})
	if r := stolen.get("/connect/"); r.StatusCode != http.StatusSeeOther {
		t.Fatal("session accepted by a process with another key")
	}
	// Logout clears the cookie, and the old value is refused afterwards.
	r := b.post("/connect/logout", url.Values{"csrf": {token}}, "self")
	if r.StatusCode != http.StatusSeeOther || r.location() != "/connect/signed-out" {
		t.Fatalf("logout: %d %q", r.StatusCode, r.location())
	}
	if c := findSetCookie(r, "__Host-mcpauthz-session"); c == nil || c.MaxAge >= 0 {
		t.Fatalf("session cookie not cleared: %+v", c)
	}
	replay := e.browser()
	replay.c.Jar.SetCookies(u, []*http.Cookie{sess})
	if r := replay.get("/connect/"); r.StatusCode != http.StatusSeeOther {
		t.Fatal("signed-out session still accepted")
	}
	// Expiry.
	b2, _ := signedIn(t, e, bob)
	e.clock.Advance(DefaultSessionTTL)
	if r := b2.get("/connect/"); r.StatusCode != http.StatusSeeOther {
		t.Fatal("expired session accepted")
	}
}

func TestNoSecretInAnyResponseOrLog(t *testing.T) {
	e := newEnv(t)
	b, token := signedIn(t, e, alice)
	cb := providerCallback(t, b.get("/connect/start?link="+e.mgr.link(keyFor(aliceKB, "github"))).location(), url.Values{"code": {"provider-code-SECRET"}})
	b.get(cb)
	b.get(cb)
	b.post("/connect/github/revoke", url.Values{"csrf": {token}}, "self")
	b.post("/connect/logout", url.Values{"csrf": {token}}, "self")
	e.iss.setFault("wrong_nonce")
	e.browser().follow(e.browser().get("/connect/login"))

	u, _ := url.Parse(e.srv.URL)
	secrets := append(e.iss.secrets(), testClientSecret, "provider-code-SECRET")
	for _, c := range b.c.Jar.Cookies(u) {
		secrets = append(secrets, c.Value)
	}
	if len(e.iss.secrets()) < 2 {
		t.Fatal("the issuer handed out no tokens; the test checks nothing")
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "connect: signed in") {
		t.Fatalf("no logs captured: %s", logs)
	}
	e.mu.Lock()
	bodies := strings.Join(e.bodies, "\n")
	e.mu.Unlock()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(bodies, s) {
			t.Errorf("a response body contains a secret (%.12s…)", s)
		}
		if strings.Contains(logs, s) {
			t.Errorf("the log contains a secret (%.12s…)", s)
		}
	}
	// The CSRF token is in pages by design but never in logs.
	if strings.Contains(logs, token) {
		t.Error("the log contains a CSRF token")
	}
}

func TestInsecureCookiesForLoopbackDev(t *testing.T) {
	e := newEnv(t, func(c *Config, o *Options) { c.InsecureCookies = true })
	// PublicURL is https here; the flag still drops the prefix and Secure.
	b := e.browser()
	r := b.get("/connect/login")
	lc := findSetCookie(r, "mcpauthz-login-")
	if lc == nil || lc.Secure || strings.HasPrefix(lc.Name, "__Host-") {
		t.Fatalf("insecure login cookie %+v", lc)
	}
	b2 := e.browser()
	p := b2.login(alice)
	if !strings.Contains(p.body, "Development mode") {
		t.Fatal("footer does not say cookies are insecure")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Login: LoginConfig{Issuer: "people", ClientID: "web"}}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(*Config) {}, ""},
		{"no issuer", func(c *Config) { c.Login.Issuer = "" }, "connect.login.issuer: required"},
		{"no client", func(c *Config) { c.Login.ClientID = " " }, "connect.login.client_id: required"},
		{"no openid", func(c *Config) { c.Login.Scopes = []string{"profile"} }, "connect.login.scopes: must contain openid"},
		{"bad scope", func(c *Config) { c.Login.Scopes = []string{"openid", "a b"} }, "connect.login.scopes[1]"},
		{"ttl short", func(c *Config) { c.SessionTTL = time.Minute }, "connect.session_ttl"},
		{"ttl long", func(c *Config) { c.SessionTTL = 30 * 24 * time.Hour }, "connect.session_ttl"},
		{"bad key ref", func(c *Config) { c.CookieKey = &secret.Ref{Env: "1BAD"} }, "connect.cookie_key"},
		{"bad secret ref", func(c *Config) { c.Login.ClientSecret = &secret.Ref{} }, "connect.login.client_secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	cfg := Config{Login: LoginConfig{Issuer: "people", ClientID: "web"}}
	base := Options{PublicURL: "https://mcpauthz.example.com", LoginIssuerURL: "https://idp.example.com", Manager: newFakeManager(time.Now, "https://p"), Users: &fakeUsers{}}
	t.Setenv("CK_SHORT", base64.StdEncoding.EncodeToString([]byte("short")))
	t.Setenv("CK_OK", base64.StdEncoding.EncodeToString(make([]byte, 32)))
	for _, tc := range []struct {
		name string
		mod  func(*Config, *Options)
		want string
	}{
		{"ok", func(*Config, *Options) {}, ""},
		{"ok key", func(c *Config, _ *Options) { c.CookieKey = &secret.Ref{Env: "CK_OK"} }, ""},
		{"ok loopback http insecure", func(c *Config, o *Options) { c.InsecureCookies = true; o.PublicURL = "http://127.0.0.1:8080" }, ""},
		{"short key", func(c *Config, _ *Options) { c.CookieKey = &secret.Ref{Env: "CK_SHORT"} }, "connect.cookie_key: must be 32 bytes"},
		{"unset key", func(c *Config, _ *Options) { c.CookieKey = &secret.Ref{Env: "CK_UNSET_XYZ"} }, "connect.cookie_key"},
		{"http", func(_ *Config, o *Options) { o.PublicURL = "http://mcpauthz.example.com" }, "session cookies need https"},
		{"http insecure non-loopback", func(c *Config, o *Options) { c.InsecureCookies = true; o.PublicURL = "http://mcpauthz.example.com" }, "only allowed with a loopback"},
		{"path", func(_ *Config, o *Options) { o.PublicURL = "https://x.example/prefix" }, "must not have a path"},
		{"no public url", func(_ *Config, o *Options) { o.PublicURL = "" }, "PublicURL"},
		{"no issuer url", func(_ *Config, o *Options) { o.LoginIssuerURL = "" }, "LoginIssuerURL"},
		{"no manager", func(_ *Config, o *Options) { o.Manager = nil }, "Manager"},
		{"no users", func(_ *Config, o *Options) { o.Users = nil }, "Users"},
		{"reserved id", func(_ *Config, o *Options) { o.Servers = []ServerInfo{{ID: "login"}} }, "collides"},
		{"bad id", func(_ *Config, o *Options) { o.Servers = []ServerInfo{{ID: "a/b"}} }, "not a valid path segment"},
		{"dup id", func(_ *Config, o *Options) { o.Servers = []ServerInfo{{ID: "a"}, {ID: "a"}} }, "twice"},
		{"bad origin", func(_ *Config, o *Options) { o.Servers = []ServerInfo{{ID: "a", ProviderOrigin: "github.com"}} }, "ProviderOrigin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, o := cfg, base
			tc.mod(&c, &o)
			_, err := New(context.Background(), c, o)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("New() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPagesEscapeNames(t *testing.T) {
	e := newEnv(t, func(_ *Config, o *Options) {
		o.Servers = []ServerInfo{{ID: "x", Name: `<img src=x onerror=alert(1)>`, Mode: "individual"}}
	})
	b, _ := signedIn(t, e, idUser{Sub: "eve", Org: "acme", Name: `<script>alert("name")</script>`})
	page := b.get("/connect/").body
	if strings.Contains(page, "<img src=x") || strings.Contains(page, `<script>alert`) || !strings.Contains(page, "&lt;img src=x") {
		t.Fatalf("unescaped: %s", page)
	}
}

func TestAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Second: "just now", 90 * time.Second: "1 minute ago", 3 * time.Hour: "3 hours ago",
		72 * time.Hour: "3 days ago", -5 * time.Minute: "in 5 minutes", -10 * time.Second: "in under a minute",
	} {
		if got := ago(d); got != want {
			t.Errorf("ago(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestSwitchAccountFromAnotherUsersLink(t *testing.T) {
	e := newEnv(t)
	b, token := signedIn(t, e, alice)
	link := e.mgr.link(keyFor(bobKB, "github"))
	r := b.get("/connect/start?link=" + link)
	want := `href="/connect/logout?return=%2fconnect%2fstart%3flink%3d` + strings.ToLower(link)
	if r.StatusCode != http.StatusForbidden || !strings.Contains(strings.ToLower(r.body), strings.ToLower(want)) {
		t.Fatalf("wrong-account page: %d %s", r.StatusCode, r.body)
	}
	page := b.get("/connect/logout?return=" + url.QueryEscape("/connect/start?link="+link))
	if !strings.Contains(page.body, `name="return" value="/connect/start?link=`+link+`"`) {
		t.Fatalf("logout page lacks the return field: %s", page.body)
	}
	r = b.post("/connect/logout", url.Values{"csrf": {token}, "return": {"/connect/start?link=" + link}}, "self")
	if r.StatusCode != http.StatusSeeOther || r.location() != "/connect/signed-out?return="+url.QueryEscape("/connect/start?link="+link) {
		t.Fatalf("logout: %d %q", r.StatusCode, r.location())
	}
	out := b.get(r.location())
	loginPath := "/connect/login?switch=1&return=" + url.QueryEscape("/connect/start?link="+link)
	if !strings.Contains(out.body, `href="`+strings.ReplaceAll(loginPath, "&", "&amp;")+`"`) || !strings.Contains(out.body, "Sign in as another account") {
		t.Fatalf("signed-out page: %s", out.body)
	}
	e.iss.setUser(bob)
	r = b.get(loginPath)
	if u, _ := url.Parse(r.location()); u.Query().Get("prompt") != "login" {
		t.Fatalf("switching account does not ask the issuer to log in again: %s", r.location())
	}
	r = b.get(b.get(r.location()).location()) // issuer -> login callback
	if r.StatusCode != http.StatusSeeOther || r.location() != "/connect/start?link="+link {
		t.Fatalf("after signing in as bob: %d %q", r.StatusCode, r.location())
	}
	if r = b.get(r.location()); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.location(), e.provider.URL) {
		t.Fatalf("bob's link as bob: %d %q %s", r.StatusCode, r.location(), r.body)
	}

	b2, token2 := signedIn(t, e, alice)
	r = b2.post("/connect/logout", url.Values{"csrf": {token2}, "return": {"//evil.example"}}, "self")
	if r.location() != "/connect/signed-out" {
		t.Fatalf("hostile return kept: %q", r.location())
	}
}
