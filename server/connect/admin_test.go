package connect

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	// carol administers acme through the groups claim of her ID token.
	carol   = idUser{Sub: "carol", Org: "acme", Name: "Carol Admin", Extra: map[string]any{"groups": []string{"staff", "mcp-admins"}}}
	carolKB = Key{Org: "acme", UserKey: "people|acme|carol"}
	// eve administers globex the same way.
	eve = idUser{Sub: "eve", Org: "globex", Name: "Eve Globex", Extra: map[string]any{"groups": []string{"mcp-admins"}}}
	// dave is a globex user.
	daveKB = Key{Org: "globex", UserKey: "people|globex|dave"}
	orgKey = Key{Org: "acme", Server: "shared"}
)

// newAdminEnv is newEnv with administrators named by the groups claim.
func newAdminEnv(t *testing.T, mods ...func(*Config, *Options)) *env {
	t.Helper()
	return newEnv(t, append([]func(*Config, *Options){func(c *Config, _ *Options) {
		c.Admins = AdminsConfig{Claim: "groups", Values: []string{"mcp-admins"}}
	}}, mods...)...)
}

// seed stores connections of two organizations (the fake's List returns
// every record, so the handler's own filtering is what is tested).
func seed(e *env) {
	now := e.clock.Now()
	e.mgr.listIgnores = true
	e.mgr.set(Connection{Key: keyFor(aliceKB, "github"), Mode: "individual", Status: StatusAuthorized, Reason: "connected", Scopes: []string{"repo"},
		ConnectedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour), LastUsedAt: now.Add(-time.Minute)})
	e.mgr.set(Connection{Key: keyFor(bobKB, "github"), Mode: "individual", Status: StatusRevoked, Reason: "user_revoked", UpdatedAt: now.Add(-2 * time.Hour)})
	e.mgr.set(Connection{Key: keyFor(bobKB, "drive"), Mode: "individual", Status: StatusExpired, Reason: "refresh_expired", UpdatedAt: now.Add(-3 * time.Hour)})
	e.mgr.set(Connection{Key: keyFor(daveKB, "github"), Mode: "individual", Status: StatusAuthorized, Reason: "connected", Scopes: []string{"globex-secret-scope"}})
	e.mgr.set(Connection{Key: orgKey, Mode: "service_account", Status: StatusAuthorized, Reason: "connected", Scopes: []string{"org:read"}, ConnectedAt: now.Add(-24 * time.Hour)})
	e.mgr.set(Connection{Key: Key{Org: "globex", Server: "shared"}, Mode: "service_account", Status: StatusError, Reason: "refresh_gave_up"})
	e.mgr.event("connected", keyFor(aliceKB, "github"), Actor{Kind: "user", ID: aliceKB.UserKey}, StatusPending, StatusAuthorized, "connected")
	e.mgr.event("revoked", keyFor(bobKB, "github"), Actor{Kind: "user", ID: bobKB.UserKey}, StatusAuthorized, StatusRevoked, "user_revoked")
	e.mgr.event("refreshed", keyFor(aliceKB, "github"), Actor{Kind: "system", ID: "refresher"}, StatusAuthorized, StatusAuthorized, "refreshed")
	e.mgr.event("connected", orgKey, Actor{Kind: "admin"}, StatusPending, StatusAuthorized, "connected")
	e.mgr.event("connected", keyFor(daveKB, "github"), Actor{Kind: "user", ID: daveKB.UserKey}, StatusPending, StatusAuthorized, "globex_only_reason")
}

func TestAdminsConfigValidate(t *testing.T) {
	base := Config{Login: LoginConfig{Issuer: "people", ClientID: "web"}}
	for _, tc := range []struct {
		name string
		a    AdminsConfig
		want string
	}{
		{"none", AdminsConfig{}, ""},
		{"subjects", AdminsConfig{Subjects: []string{"carol"}}, ""},
		{"claim", AdminsConfig{Claim: "realm_access.roles", Values: []string{"admin"}}, ""},
		{"url claim", AdminsConfig{Claim: "https://example.com/groups", Values: []string{"admin"}}, ""},
		{"claim without values", AdminsConfig{Claim: "roles"}, "connect.admins.values: required with claim"},
		{"values without claim", AdminsConfig{Values: []string{"admin"}}, "connect.admins.claim: required with values"},
		{"bad path", AdminsConfig{Claim: "a..b", Values: []string{"x"}}, "connect.admins.claim"},
		{"space in claim", AdminsConfig{Claim: "my roles", Values: []string{"x"}}, "connect.admins.claim"},
		{"empty subject", AdminsConfig{Subjects: []string{" "}}, "connect.admins.subjects[0]"},
		{"empty role", AdminsConfig{Roles: []string{"admin", ""}}, "connect.admins.roles[1]"},
		{"control value", AdminsConfig{Claim: "roles", Values: []string{"a\nb"}}, "connect.admins.values[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.Admins = tc.a
			err := c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAdminRuleMatch(t *testing.T) {
	claims := map[string]any{
		"groups":                     []any{"staff", "mcp-admins"},
		"role":                       "owner",
		"realm_access":               map[string]any{"roles": []any{"offline", "admin"}},
		"https://example.com/groups": []any{"it"},
		"numbers":                    []any{1.0, "x"},
		"flag":                       true,
	}
	for _, tc := range []struct {
		name  string
		a     AdminsConfig
		sub   string
		roles []string
		want  bool
	}{
		{"nobody configured", AdminsConfig{}, "carol", []string{"admin"}, false},
		{"subject", AdminsConfig{Subjects: []string{"carol"}}, "carol", nil, true},
		{"other subject", AdminsConfig{Subjects: []string{"carol"}}, "carola", nil, false},
		{"role from the adapter", AdminsConfig{Roles: []string{"admin"}}, "x", []string{"viewer", "admin"}, true},
		{"role absent", AdminsConfig{Roles: []string{"admin"}}, "x", []string{"viewer"}, false},
		{"claim array", AdminsConfig{Claim: "groups", Values: []string{"mcp-admins"}}, "x", nil, true},
		{"claim string", AdminsConfig{Claim: "role", Values: []string{"owner"}}, "x", nil, true},
		{"dotted claim", AdminsConfig{Claim: "realm_access.roles", Values: []string{"admin"}}, "x", nil, true},
		{"url claim", AdminsConfig{Claim: "https://example.com/groups", Values: []string{"it"}}, "x", nil, true},
		{"case matters", AdminsConfig{Claim: "groups", Values: []string{"MCP-ADMINS"}}, "x", nil, false},
		{"missing claim", AdminsConfig{Claim: "teams", Values: []string{"x"}}, "x", nil, false},
		{"path through a non-object", AdminsConfig{Claim: "role.x", Values: []string{"owner"}}, "x", nil, false},
		{"non-string values ignored", AdminsConfig{Claim: "numbers", Values: []string{"1"}}, "x", nil, false},
		{"boolean claim", AdminsConfig{Claim: "flag", Values: []string{"true"}}, "x", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := newAdminRule(tc.a).match(tc.sub, tc.roles, claims); got != tc.want {
				t.Fatalf("match = %v, want %v", got, tc.want)
			}
		})
	}
	if newAdminRule(AdminsConfig{Subjects: []string{"a"}}).fingerprint == newAdminRule(AdminsConfig{Subjects: []string{"b"}}).fingerprint {
		t.Fatal("different rules share a fingerprint")
	}
}

// TestAdminPagesRefuseNonAdmins: every administrators' URL and action
// answers 403 to a signed-in person who is not one (with a valid CSRF
// token), and nothing reaches the manager.
func TestAdminPagesRefuseNonAdmins(t *testing.T) {
	e := newAdminEnv(t)
	seed(e)
	b, token := signedIn(t, e, alice)
	if page := b.get("/connect/").body; strings.Contains(page, `href="/connect/admin/"`) {
		t.Fatal("a non-administrator is shown the Administration link")
	}
	for _, p := range []string{"/connect/admin/", "/connect/admin/github", "/connect/admin/shared", "/connect/admin/history", "/connect/admin/nope/deeper", "/connect/admin/github?status=REVOKED"} {
		r := b.get(p)
		if r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "Only administrators can open this page") {
			t.Errorf("GET %s as a non-administrator: %d", p, r.StatusCode)
		}
		checkHeaders(t, p, r, "")
		if strings.Contains(r.body, "bob") || strings.Contains(r.body, "org:read") {
			t.Errorf("GET %s: the refusal shows the organization's data", p)
		}
	}
	for _, p := range []string{"/connect/admin/github/revoke", "/connect/admin/shared/org/connect", "/connect/admin/shared/org/revoke"} {
		r := b.post(p, url.Values{"csrf": {token}, "user": {bobKB.UserKey}}, "self")
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("POST %s as a non-administrator: %d", p, r.StatusCode)
		}
	}
	if len(e.mgr.revokes)+len(e.mgr.starts) != 0 {
		t.Fatalf("the manager was called: %v %v", e.mgr.revokes, e.mgr.starts)
	}
	// Without a session: GET pages ask to sign in, POSTs are refused.
	anon := e.browser()
	if r := anon.get("/connect/admin/"); r.StatusCode != http.StatusSeeOther || r.location() != "/connect/login?return="+url.QueryEscape("/connect/admin/") {
		t.Fatalf("anonymous admin page: %d %q", r.StatusCode, r.location())
	}
	if r := anon.post("/connect/admin/github/revoke", url.Values{"csrf": {token}, "user": {bobKB.UserKey}}, "self"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("anonymous admin POST: %d", r.StatusCode)
	}
	// No administrators configured at all: nobody, whatever their claims.
	e2 := newEnv(t)
	b2, _ := signedIn(t, e2, carol)
	if r := b2.get("/connect/admin/"); r.StatusCode != http.StatusForbidden || !strings.Contains(r.body, "No administrators are configured") {
		t.Fatalf("admin page without connect.admins: %d %s", r.StatusCode, r.body)
	}
}

func TestAdminOverviewAndServerPage(t *testing.T) {
	e := newAdminEnv(t)
	seed(e)
	b, _ := signedIn(t, e, carol)
	if page := b.get("/connect/").body; !strings.Contains(page, `href="/connect/admin/"`) || !strings.Contains(page, `href="/connect/admin/shared"`) {
		t.Fatal("the administrator's page lacks the Administration links")
	}
	r := b.get("/connect/admin/")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("overview: %d %s", r.StatusCode, r.body)
	}
	checkHeaders(t, "admin overview", r, "")
	page := r.body
	for _, want := range []string{
		"<h1>Administration</h1>", "<strong>acme</strong>",
		// github: alice AUTHORIZED, bob REVOKED.
		`href="/connect/admin/github?status=AUTHORIZED"`, `href="/connect/admin/github?status=REVOKED"`,
		// The organization's connection with its actions.
		`action="/connect/admin/shared/org/connect"`, `action="/connect/admin/shared/org/revoke"`, "Reauthorize", "<code>org:read</code>",
		"Connected for the whole organization.",
		// Recent events, in words, without routine renewals.
		"Recent authorization events", "Revoked", `<td data-label="By"><div class="cell">bob</div>`, "Organization", `href="/connect/admin/history"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if got := countsOf(page, "github"); got != "AUTHORIZED=1 REVOKED=1" {
		t.Errorf("github counts %q", got)
	}
	if got := countsOf(page, "drive"); got != "EXPIRED=1" {
		t.Errorf("drive counts %q", got)
	}
	for _, leak := range []string{"globex", "dave", "globex-secret-scope", "globex_only_reason", "Renewed"} {
		if strings.Contains(page, leak) {
			t.Errorf("overview shows %q", leak)
		}
	}
	// One server's page: everyone in acme with their status.
	sp := b.get("/connect/admin/github").body
	for _, want := range []string{
		`<span class="person">alice</span>`, `people|acme|alice`, `<span class="person">bob</span>`,
		"The person revoked this connection.", `action="/connect/admin/github/revoke"`, `name="user" value="people|acme|alice"`,
		`<label for="status-filter">Show</label>`,
	} {
		if !strings.Contains(sp, want) {
			t.Errorf("server page lacks %q", want)
		}
	}
	if strings.Contains(sp, `name="user" value="people|acme|bob"`) {
		t.Error("Revoke offered for a revoked connection")
	}
	if strings.Contains(sp, "dave") || strings.Contains(sp, "globex") || strings.Contains(sp, `action="/connect/github"`) {
		t.Error("server page shows another organization, or a Connect for someone else")
	}
	// Filter by status.
	fp := b.get("/connect/admin/github?status=REVOKED").body
	if !strings.Contains(fp, `<span class="person">bob</span>`) || strings.Contains(fp, `<span class="person">alice</span>`) ||
		!strings.Contains(fp, `<option value="REVOKED" selected>`) {
		t.Errorf("filtered page: %s", fp)
	}
	if r := b.get("/connect/admin/github?status=BOGUS"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown status filter: %d", r.StatusCode)
	}
	if r := b.get("/connect/admin/unknown"); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown server: %d", r.StatusCode)
	}
	// The organization's server page offers its actions.
	if op := b.get("/connect/admin/shared").body; !strings.Contains(op, "The organization's connection") || !strings.Contains(op, `action="/connect/admin/shared/org/revoke"`) {
		t.Errorf("shared server page: %s", op)
	}
	e.mgr.listErr = context.DeadlineExceeded
	if r := b.get("/connect/admin/"); r.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("overview with the store down: %d", r.StatusCode)
	}
}

// countsOf reads the status counts of a server's card on the overview.
func countsOf(page, server string) string {
	re := regexp.MustCompile(`href="/connect/admin/` + server + `\?status=([A-Z_]+)">.*?<span class="count">(\d+)`)
	var out []string
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		out = append(out, m[1]+"="+m[2])
	}
	return strings.Join(out, " ")
}

func TestAdminRevokesAUsersConnection(t *testing.T) {
	e := newAdminEnv(t)
	seed(e)
	b, token := signedIn(t, e, carol)
	form := url.Values{"csrf": {token}, "user": {aliceKB.UserKey}}
	// CSRF and Origin checks first.
	for _, tc := range []struct {
		name   string
		form   url.Values
		origin string
	}{
		{"no csrf", url.Values{"user": {aliceKB.UserKey}}, "self"},
		{"wrong csrf", url.Values{"csrf": {"x" + token}, "user": {aliceKB.UserKey}}, "self"},
		{"foreign origin", form, "https://evil.example"},
		{"no origin", form, ""},
	} {
		if r := b.post("/connect/admin/github/revoke", tc.form, tc.origin); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %d", tc.name, r.StatusCode)
		}
	}
	if len(e.mgr.revokes) != 0 {
		t.Fatalf("revoked despite refused POSTs: %v", e.mgr.revokes)
	}
	if r := b.post("/connect/admin/github/revoke", url.Values{"csrf": {token}}, "self"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("no user: %d", r.StatusCode)
	}
	r := b.post("/connect/admin/github/revoke", form, "self")
	if r.StatusCode != http.StatusSeeOther || r.location() != "/connect/admin/github?done=revoked" {
		t.Fatalf("admin revoke: %d %q %s", r.StatusCode, r.location(), r.body)
	}
	if want := "acme/people|acme|alice/github|admin:people|acme|carol|admin_revoked"; len(e.mgr.revokes) != 1 || e.mgr.revokes[0] != want {
		t.Fatalf("revokes %v, want %q", e.mgr.revokes, want)
	}
	if page := b.get(r.location()).body; !strings.Contains(page, `role="status">The connection was revoked.`) {
		t.Errorf("no confirmation: %s", page)
	}
	if !strings.Contains(e.logs.String(), "connect: revoked by admin") || !strings.Contains(e.logs.String(), "admin_user_key=people|acme|carol") {
		t.Errorf("the admin's action is not logged with their identity: %s", e.logs.String())
	}
	// Alice sees it on her page, in words.
	ab, _ := signedIn(t, e, alice)
	if page := ab.get("/connect/").body; !strings.Contains(page, "REVOKED") || !strings.Contains(page, "An administrator revoked this connection.") {
		t.Fatalf("alice's page after the admin revoked: %s", page)
	}
	// An unknown person: 404, nothing revoked.
	if r := b.post("/connect/admin/github/revoke", url.Values{"csrf": {token}, "user": {"people|acme|nobody"}}, "self"); r.StatusCode != http.StatusNotFound {
		t.Errorf("unknown person: %d", r.StatusCode)
	}
}

// TestAdminOfAnotherOrganization: eve administers globex; acme is out of
// her reach whatever she posts.
func TestAdminOfAnotherOrganization(t *testing.T) {
	e := newAdminEnv(t)
	seed(e)
	b, token := signedIn(t, e, eve)
	page := b.get("/connect/admin/github").body
	if strings.Contains(page, "alice") || strings.Contains(page, "people|acme") || !strings.Contains(page, `<span class="person">dave</span>`) {
		t.Fatalf("globex's admin page: %s", page)
	}
	if ov := b.get("/connect/admin/").body; strings.Contains(ov, "org:read") || strings.Contains(ov, "alice") || !strings.Contains(ov, "<strong>globex</strong>") {
		t.Fatalf("globex's overview shows acme: %s", ov)
	}
	r := b.post("/connect/admin/github/revoke", url.Values{"csrf": {token}, "user": {aliceKB.UserKey}}, "self")
	if r.StatusCode != http.StatusNotFound {
		t.Fatalf("revoking acme's alice from globex: %d", r.StatusCode)
	}
	if e.mgr.get(keyFor(aliceKB, "github")).Status != StatusAuthorized {
		t.Fatal("alice's connection changed")
	}
	if len(e.mgr.revokes) != 1 || !strings.HasPrefix(e.mgr.revokes[0], "globex/people|acme|alice/github|") {
		t.Fatalf("the revocation was not confined to globex: %v", e.mgr.revokes)
	}
	// The organization's revoke is always the admin's own organization.
	if r := b.post("/connect/admin/shared/org/revoke", url.Values{"csrf": {token}}, "self"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("globex org revoke: %d", r.StatusCode)
	}
	if e.mgr.get(orgKey).Status != StatusAuthorized || e.mgr.get(Key{Org: "globex", Server: "shared"}).Status != StatusRevoked {
		t.Fatal("the organization revoke touched another organization")
	}
	// acme's organization link, followed by globex's admin: refused.
	link := e.mgr.link(orgKey)
	if r := b.get("/connect/start?link=" + link); r.StatusCode != http.StatusForbidden || strings.Contains(r.body, "acme") {
		t.Fatalf("acme's org link as globex's admin: %d %s", r.StatusCode, r.body)
	}
	// The history download holds only globex's events.
	h := b.get("/connect/admin/history")
	if h.StatusCode != http.StatusOK || strings.Contains(h.body, "acme") || !strings.Contains(h.body, "globex_only_reason") {
		t.Fatalf("globex's history: %d %s", h.StatusCode, h.body)
	}
}

// TestAdminAuthorizesTheOrganizationsConnection: Authorize (a POST) starts
// a flow for the organization's key; the callback completes it for that
// key, not the admin's own.
func TestAdminAuthorizesTheOrganizationsConnection(t *testing.T) {
	e := newAdminEnv(t)
	b, token := signedIn(t, e, carol)
	ov := b.get("/connect/admin/").body
	if !strings.Contains(ov, "No administrator has authorized this server yet.") || !strings.Contains(ov, `>Authorize<span class="visually-hidden"> Shared Box</span>`) {
		t.Fatalf("overview before authorizing: %s", ov)
	}
	if r := b.post("/connect/admin/github/org/connect", url.Values{"csrf": {token}}, "self"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("org connect of an individual server: %d", r.StatusCode)
	}
	authURL := startAt(t, b.post("/connect/admin/shared/org/connect", url.Values{"csrf": {token}}, "self"))
	if want := "acme//shared||/connect/admin/"; len(e.mgr.starts) != 1 || e.mgr.starts[0] != want {
		t.Fatalf("starts %v, want %q", e.mgr.starts, want)
	}
	// Another person's browser cannot finish it (no flow cookie; the
	// manager refuses their key).
	ab, _ := signedIn(t, e, alice)
	if r := ab.get(providerCallback(t, authURL, url.Values{"code": {"c1"}})); r.StatusCode != http.StatusForbidden {
		t.Fatalf("alice finishing the organization's flow: %d", r.StatusCode)
	}
	// The administrator's browser finishes a new one.
	authURL = startAt(t, b.post("/connect/admin/shared/org/connect", url.Values{"csrf": {token}}, "self"))
	r := b.get(providerCallback(t, authURL, url.Values{"code": {"c2"}}))
	if r.StatusCode != http.StatusOK || !strings.Contains(r.body, "Connected for your organization: Shared Box") || !strings.Contains(r.body, `href="/connect/admin/shared"`) {
		t.Fatalf("org callback: %d %s", r.StatusCode, r.body)
	}
	if last := e.mgr.completes[len(e.mgr.completes)-1]; last != orgKey {
		t.Fatalf("CompleteConnect signed in as %+v, want the organization's key", last)
	}
	if e.mgr.get(orgKey).Status != StatusAuthorized {
		t.Fatal("the organization's connection is not authorized")
	}
	if !strings.Contains(e.logs.String(), "organization connection authorized by admin") {
		t.Error("the authorization is not logged with the admin's identity")
	}
	// Everyone's page shows it, read-only.
	if page := ab.get("/connect/").body; !strings.Contains(page, "Connected for the whole organization.") || strings.Contains(page, `action="/connect/admin/shared`) {
		t.Fatalf("alice's page: %s", page)
	}
	// Revoke it.
	r = b.post("/connect/admin/shared/org/revoke", url.Values{"csrf": {token}}, "self")
	if r.StatusCode != http.StatusSeeOther || r.location() != "/connect/admin/shared?done=org_revoked" {
		t.Fatalf("org revoke: %d %q", r.StatusCode, r.location())
	}
	if want := "acme//shared|admin:people|acme|carol|admin_revoked"; e.mgr.revokes[len(e.mgr.revokes)-1] != want {
		t.Fatalf("revokes %v, want %q", e.mgr.revokes, want)
	}
	if page := b.get("/connect/admin/shared?done=org_revoked").body; !strings.Contains(page, "An administrator revoked the organization&#39;s connection.") {
		t.Fatalf("after revoking: %s", page)
	}
	// The organization's "authorize at" link (what a denied call carries):
	// followed by the administrator, it starts the flow.
	link := e.mgr.link(orgKey)
	if r := b.get("/connect/start?link=" + link); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.location(), e.provider.URL) {
		t.Fatalf("org link as the administrator: %d %q %s", r.StatusCode, r.location(), r.body)
	}
	if want := "acme//shared|" + link + "|/connect/admin/"; e.mgr.starts[len(e.mgr.starts)-1] != want {
		t.Fatalf("starts %v, want %q", e.mgr.starts, want)
	}
}

// startAt returns the provider URL a Connect/Authorize POST leads to (a
// redirect, or the "continue" page when the origin was not yet known).
func startAt(t *testing.T, r *resp) string {
	t.Helper()
	if r.StatusCode == http.StatusSeeOther {
		return r.location()
	}
	m := regexp.MustCompile(`class="button primary" href="([^"]+)"`).FindStringSubmatch(r.body)
	if r.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("start: %d %s", r.StatusCode, r.body)
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

// TestAdminRightsEndWithTheRule: a session signed in under one admins rule
// has no rights under another (same cookie key, so the session is valid).
func TestAdminRightsEndWithTheRule(t *testing.T) {
	t.Setenv("CONNECT_TEST_COOKIE_KEY", base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")))
	withKey := func(c *Config, _ *Options) { c.CookieKey = secretEnv("CONNECT_TEST_COOKIE_KEY") }
	e := newAdminEnv(t, withKey)
	b, _ := signedIn(t, e, carol)
	if r := b.get("/connect/admin/"); r.StatusCode != http.StatusOK {
		t.Fatalf("admin page: %d", r.StatusCode)
	}
	cfg := e.h.cfg
	cfg.Admins = AdminsConfig{Subjects: []string{"someone-else"}}
	h2, err := New(context.Background(), cfg, e.h.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.h = h2
	if r := b.get("/connect/"); r.StatusCode != http.StatusOK {
		t.Fatalf("the session itself should still be valid: %d", r.StatusCode)
	}
	if r := b.get("/connect/admin/"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("admin page under a changed rule: %d", r.StatusCode)
	}
}

func TestAdminByRoleAndSubject(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    AdminsConfig
		u    idUser
		want int
	}{
		{"role from the Users adapter", AdminsConfig{Roles: []string{"admin"}}, idUser{Sub: "rita", Org: "acme", Extra: map[string]any{"roles": []string{"admin"}}}, http.StatusOK},
		{"subject", AdminsConfig{Subjects: []string{"sam"}}, idUser{Sub: "sam", Org: "acme"}, http.StatusOK},
		{"neither", AdminsConfig{Subjects: []string{"sam"}, Roles: []string{"admin"}}, idUser{Sub: "rita", Org: "acme", Extra: map[string]any{"roles": []string{"viewer"}}}, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config, _ *Options) { c.Admins = tc.a })
			b, _ := signedIn(t, e, tc.u)
			if r := b.get("/connect/admin/"); r.StatusCode != tc.want {
				t.Fatalf("admin page: %d, want %d", r.StatusCode, tc.want)
			}
		})
	}
}

func TestUsersHistoryDownload(t *testing.T) {
	e := newAdminEnv(t)
	seed(e)
	e.mgr.histIgnores = true // the handler must keep only alice's events
	b, token := signedIn(t, e, alice)
	if page := b.get("/connect/").body; !strings.Contains(page, `href="/connect/history" download>Download my authorization history`) {
		t.Fatalf("no download link: %s", page)
	}
	b.post("/connect/github/revoke", url.Values{"csrf": {token}}, "self")
	r := b.get("/connect/history")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("history: %d %s", r.StatusCode, r.body)
	}
	checkHeaders(t, "history", r, "")
	if cd := r.Header.Get("Content-Disposition"); !regexp.MustCompile(`^attachment; filename="mcpauthz-authorization-history-\d{4}-\d\d-\d\d\.json"$`).MatchString(cd) {
		t.Errorf("Content-Disposition %q", cd)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	var f historyFile
	if err := json.Unmarshal([]byte(r.body), &f); err != nil {
		t.Fatal(err)
	}
	if f.Organization != "acme" || f.User != aliceKB.UserKey || len(f.Events) != 3 {
		t.Fatalf("history file: %+v", f)
	}
	if f.Events[0].Type != "revoked" || f.Events[0].Reason != "user_revoked" || f.Events[0].Actor.Kind != "user" || f.Events[0].Summary == "" {
		t.Errorf("newest event %+v", f.Events[0])
	}
	for _, ev := range f.Events {
		if ev.User != nil || ev.Server != "github" {
			t.Errorf("event %+v", ev)
		}
	}
	for _, leak := range []string{"bob", "dave", "globex", "org:read"} {
		if strings.Contains(r.body, leak) {
			t.Errorf("history shows %q", leak)
		}
	}
	// No token of any kind (the login issuer's tokens, cookies).
	for _, s := range e.iss.secrets() {
		if strings.Contains(r.body, s) {
			t.Fatal("history contains a token")
		}
	}
	// Signed out: sign in first.
	if r := e.browser().get("/connect/history"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("anonymous history: %d", r.StatusCode)
	}
	e.mgr.histErr = context.DeadlineExceeded
	if r := b.get("/connect/history"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("history with the store down: %d", r.StatusCode)
	}
}

func TestAdminHistoryDownload(t *testing.T) {
	e := newAdminEnv(t)
	seed(e)
	b, _ := signedIn(t, e, carol)
	r := b.get("/connect/admin/history")
	if r.StatusCode != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Disposition"), `attachment; filename="mcpauthz-organization-history-`) {
		t.Fatalf("org history: %d %q", r.StatusCode, r.Header.Get("Content-Disposition"))
	}
	checkHeaders(t, "org history", r, "")
	var f historyFile
	if err := json.Unmarshal([]byte(r.body), &f); err != nil {
		t.Fatal(err)
	}
	users := map[string]int{}
	for _, ev := range f.Events {
		if ev.User == nil {
			t.Fatalf("event without user field: %+v", ev)
		}
		users[*ev.User]++
	}
	if f.Organization != "acme" || users[aliceKB.UserKey] != 2 || users[bobKB.UserKey] != 1 || users[""] != 1 || len(users) != 3 {
		t.Fatalf("org history: %+v (%v)", f, users)
	}
	if strings.Contains(r.body, "globex") || strings.Contains(r.body, "dave") {
		t.Fatal("another organization's events")
	}
}

// TestUsersPageKeepsRetiredConnections: after a mode switch the user's
// REVOKED connection stays listed with the reason in words (no Connect),
// and the server appears among the organization's.
func TestUsersPageKeepsRetiredConnections(t *testing.T) {
	e := newEnv(t)
	e.mgr.set(Connection{Key: keyFor(aliceKB, "shared"), Mode: "individual", Status: StatusRevoked, Reason: "mode_switch"})
	e.mgr.set(Connection{Key: keyFor(aliceKB, "gone"), Mode: "individual", Status: StatusRevoked, Reason: "server_removed"})
	e.mgr.set(Connection{Key: keyFor(aliceKB, "stale"), Mode: "individual", Status: StatusAuthorized, Reason: "connected"})
	b, token := signedIn(t, e, alice)
	page := b.get("/connect/").body
	for _, want := range []string{
		"This server now uses a shared account set up by an administrator, so your connection was removed.",
		"This server is no longer set up for personal connections, so your connection was removed.",
		"No longer a personal connection", `">Shared Box</h2>`,
		"Connected by your organization", "No administrator has authorized this server yet.",
		// A retired connection that still holds tokens can be revoked.
		`action="/connect/stale/revoke"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("users' page lacks %q", want)
		}
	}
	for _, unwanted := range []string{`action="/connect/shared"`, `action="/connect/gone"`, `action="/connect/shared/revoke"`, `action="/connect/stale"`} {
		if strings.Contains(page, unwanted) {
			t.Errorf("users' page offers %q", unwanted)
		}
	}
	if r := b.post("/connect/stale/revoke", url.Values{"csrf": {token}}, "self"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoking a retired connection: %d", r.StatusCode)
	}
	if e.mgr.get(keyFor(aliceKB, "stale")).Status != StatusRevoked {
		t.Fatal("not revoked")
	}
	if r := b.post("/connect/nothing-here/revoke", url.Values{"csrf": {token}}, "self"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("revoking an unknown server: %d", r.StatusCode)
	}
}
