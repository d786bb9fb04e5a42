package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
	"github.com/mcpauthz/mcpauthz/server/connect"
)

// adminWorld is the connect pages with an administrator: devidp signs
// people in (carol has roles [admin], alice [viewer]); connect.admins names
// the administrators by the ID token's roles claim; the oauthtest provider
// serves one individual server (GitHub) and one service-account server
// (Tracker) whose connection the organization authorizes once, as
// acme-robot; a real connections.Manager on SQLite keeps the tokens.
type adminWorld struct {
	logs     *connectLogs
	srv      *httptest.Server
	idp      *devidp.Issuer
	provider *oauthtest.Provider
	mgr      *connections.Manager
}

func newAdminWorld(t *testing.T) *adminWorld {
	t.Helper()
	ctx := context.Background()
	w := &adminWorld{logs: &connectLogs{}}
	logger := slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var h *connect.Handler
	w.srv = httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { h.ServeHTTP(rw, r) }))
	t.Cleanup(w.srv.Close)
	public := w.srv.URL

	idp, err := devidp.New(devidp.Options{
		Clients:            map[string]string{"mcpauthz-connect": "connect-SECRET-1"},
		ClientRedirectURIs: map[string][]string{"mcpauthz-connect": {public + "/connect/login/callback"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	idpURL, err := idp.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	w.idp = idp

	var provURL string
	w.provider, provURL, w.mgr = startConnections(ctx, t, public, logger, oauthtest.Options{
		Clients:      map[string]string{"gh-client": "gh-SECRET-2", "tracker-client": "tracker-SECRET-3"},
		RedirectURIs: map[string][]string{"gh-client": {public + "/connect/callback"}, "tracker-client": {public + "/connect/callback"}},
		Users:        map[string]string{"alice": "alice", "carol": "carol", "acme-robot": "acme-robot"},
	})
	t.Setenv("E2E_ADMIN_GH_SECRET", "gh-SECRET-2")
	t.Setenv("E2E_ADMIN_TRACKER_SECRET", "tracker-SECRET-3")
	t.Setenv("E2E_ADMIN_LOGIN_SECRET", "connect-SECRET-1")
	if err := w.mgr.Register("github", connections.ModeIndividual, connections.ProviderConfig{
		Issuer: provURL, ClientID: "gh-client", ClientSecret: &secret.Ref{Env: "E2E_ADMIN_GH_SECRET"}, Scopes: []string{"repo", "read:user"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.mgr.Register("tracker", connections.ModeServiceAccount, connections.ProviderConfig{
		Issuer: provURL, ClientID: "tracker-client", ClientSecret: &secret.Ref{Env: "E2E_ADMIN_TRACKER_SECRET"}, Scopes: []string{"issues:read"},
	}); err != nil {
		t.Fatal(err)
	}
	h, err = connect.New(ctx, connect.Config{
		Login: connect.LoginConfig{Issuer: "devidp", ClientID: "mcpauthz-connect", ClientSecret: &secret.Ref{Env: "E2E_ADMIN_LOGIN_SECRET"}},
		// What a deployment writes: administrators by a role claim.
		Admins: connect.AdminsConfig{Claim: "roles", Values: []string{"admin"}},
	}, connect.Options{
		PublicURL:      public,
		LoginIssuerURL: idpURL,
		Servers: []connect.ServerInfo{
			{ID: "github", Name: "GitHub", Mode: connections.ModeIndividual, ProviderOrigin: provURL},
			{ID: "tracker", Name: "Tracker", Mode: connections.ModeServiceAccount, ProviderOrigin: provURL},
		},
		Manager: w.mgr,
		Users:   devUsers{namespace: "devidp"},
		Logger:  logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *adminWorld) userKey(user string) string {
	return identity.UserKey("devidp", devidp.DefaultOrg, user)
}

// screenshots go to t.TempDir(), or MCPAUTHZ_SCREENSHOT_DIR to keep them.
func screenshotDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("MCPAUTHZ_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// shootPage opens path at desktop and phone width and saves both.
func shootPage(t *testing.T, b context.Context, dir, url, wait, name string) {
	t.Helper()
	for _, v := range []struct {
		suffix string
		w, h   int64
		mobile bool
	}{{"desktop", 1100, 900, false}, {"phone", 390, 844, true}} {
		opts := []chromedp.EmulateViewportOption{}
		if v.mobile {
			opts = append(opts, chromedp.EmulateScale(2), chromedp.EmulateMobile)
		}
		if err := chromedp.Do(b, chromedp.EmulateViewport(v.w, v.h, opts...), chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(wait))); err != nil {
			t.Fatalf("screenshot %s: %v (%s)", name, err, where(b))
		}
		png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name+"-"+v.suffix+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", p, len(png))
	}
	if err := chromedp.Do(b, chromedp.EmulateViewport(1100, 900)); err != nil {
		t.Fatal(err)
	}
}

// TestConnectAdminInChromium: an administrator signs in, authorizes the
// organization's service-account connection at the provider, and revokes
// a user's connection; the user's page then shows REVOKED with the reason;
// a non-administrator gets 403; the user downloads their history (no
// token in it).
func TestConnectAdminInChromium(t *testing.T) {
	exe := chromium(t)
	w := newAdminWorld(t)
	ctx := context.Background()
	dir := screenshotDir(t)
	heading := chromedp.WaitVisible(chromedp.CSS(`#message-heading`))

	// 1. alice connects GitHub from her page.
	alice := newBrowser(t, exe)
	if err := chromedp.Do(alice,
		chromedp.Navigate(w.srv.URL+"/connect/"),
		signInAt(w.idp.URL(), "alice"),
		waitAt(w.srv.URL+"/connect/"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/connect/github"] button`)),
		chromedp.Click(chromedp.CSS(`form[action="/connect/github"] button`)),
		signInAt(w.provider.URL(), "alice"),
		consent(w.srv.URL),
		heading,
	); err != nil {
		t.Fatalf("alice connects: %v (%s)", err, where(alice))
	}
	aliceTok, err := w.mgr.Token(ctx, connections.Key{Org: devidp.DefaultOrg, UserKey: w.userKey("alice"), Server: "github"})
	if err != nil {
		t.Fatalf("alice's token: %v", err)
	}
	secrets := []string{aliceTok.AccessToken}

	// 2. alice is not an administrator: 403 on the admin page, and no link
	//    to it.
	if err := chromedp.Do(alice, chromedp.Navigate(w.srv.URL+"/connect/admin/"), heading); err != nil {
		t.Fatal(err)
	}
	if got := text(alice, t, "#message-heading"); got != "Only administrators can open this page" {
		t.Fatalf("alice on the admin page: %q", got)
	}
	if err := chromedp.Do(alice, chromedp.Navigate(w.srv.URL+"/connect/"), chromedp.WaitVisible(chromedp.CSS(`.cards`))); err != nil {
		t.Fatal(err)
	}
	if header := text(alice, t, "header.site"); strings.Contains(header, "Administration") {
		t.Fatalf("alice's page offers Administration: %q", header)
	}
	if shared := text(alice, t, ".card.shared"); !strings.Contains(shared, "Tracker Status: NEEDS_AUTHORIZATION No administrator has authorized this server yet.") {
		t.Fatalf("alice's view of the organization's server: %q", shared)
	}

	// 3. carol (roles [admin]) signs in to the admin page and authorizes
	//    the organization's Tracker connection as acme-robot.
	carol := newBrowser(t, exe)
	orgForm := `form[action="/connect/admin/tracker/org/connect"] button`
	if err := chromedp.Do(carol,
		chromedp.Navigate(w.srv.URL+"/connect/admin/"),
		signInAt(w.idp.URL(), "carol"),
		waitAt(w.srv.URL+"/connect/admin/"),
		chromedp.WaitVisible(chromedp.CSS(orgForm)),
	); err != nil {
		t.Fatalf("carol opens the admin page: %v (%s)", err, where(carol))
	}
	if got := text(carol, t, orgForm); got != "Authorize Tracker" {
		t.Fatalf("the organization's button reads %q", got)
	}
	shootPage(t, carol, dir, w.srv.URL+"/connect/admin/", orgForm, "admin-before")
	if err := chromedp.Do(carol,
		chromedp.Click(chromedp.CSS(orgForm)),
		signInAt(w.provider.URL(), "acme-robot"),
		consent(w.srv.URL),
		heading,
	); err != nil {
		t.Fatalf("carol authorizes the organization: %v (%s)", err, where(carol))
	}
	if got := text(carol, t, "#message-heading"); got != "Connected for your organization: Tracker — Status: AUTHORIZED" {
		t.Fatalf("callback heading %q", got)
	}
	orgKey := connections.Key{Org: devidp.DefaultOrg, Server: "tracker"}
	orgTok, err := w.mgr.Token(ctx, orgKey)
	if err != nil {
		t.Fatalf("the organization's token: %v", err)
	}
	if user, _, ok := w.provider.VerifyAccessToken(orgTok.AccessToken); !ok || user != "acme-robot" {
		t.Fatalf("the organization's token belongs to %q (ok=%v)", user, ok)
	}
	secrets = append(secrets, orgTok.AccessToken)

	// 4. carol revokes alice's GitHub connection from the server's page.
	revokeForm := `form[action="/connect/admin/github/revoke"] button`
	if err := chromedp.Do(carol,
		chromedp.Navigate(w.srv.URL+"/connect/admin/github"),
		chromedp.WaitVisible(chromedp.CSS(revokeForm)),
	); err != nil {
		t.Fatalf("carol opens GitHub's page: %v (%s)", err, where(carol))
	}
	if row := text(carol, t, "table.people tbody tr"); !strings.Contains(row, "alice") || !strings.Contains(row, "AUTHORIZED") || !strings.Contains(row, "repo") {
		t.Fatalf("alice's row: %q", row)
	}
	shootPage(t, carol, dir, w.srv.URL+"/connect/admin/github", revokeForm, "admin-server")
	if err := chromedp.Do(carol,
		chromedp.Click(chromedp.CSS(revokeForm)),
		chromedp.WaitVisible(chromedp.CSS(`.notice`)),
	); err != nil {
		t.Fatalf("carol revokes alice: %v (%s)", err, where(carol))
	}
	if got := text(carol, t, ".notice"); !strings.HasPrefix(got, "The connection was revoked.") {
		t.Fatalf("notice %q", got)
	}
	var nae *connections.NeedsAuthorizationError
	if _, err := w.mgr.Token(ctx, connections.Key{Org: devidp.DefaultOrg, UserKey: w.userKey("alice"), Server: "github"}); !errors.As(err, &nae) {
		t.Fatalf("alice's token after the admin revoked: %v", err)
	}
	hist, err := w.mgr.History(ctx, devidp.DefaultOrg, w.userKey("alice"), 10)
	if err != nil || len(hist) == 0 {
		t.Fatalf("alice's history: %v %v", hist, err)
	}
	var audited bool
	for _, e := range hist {
		if e.Type == "revoked" && e.Actor == (connections.Actor{Kind: "admin", ID: w.userKey("carol")}) && e.Reason == "admin_revoked" {
			audited = true
		}
	}
	if !audited {
		t.Fatalf("no revocation audited with carol's identity: %+v", hist)
	}

	// 5. The overview shows the counts and the events; screenshots.
	if err := chromedp.Do(carol, chromedp.Navigate(w.srv.URL+"/connect/admin/"), chromedp.WaitVisible(chromedp.CSS(`table.events`))); err != nil {
		t.Fatal(err)
	}
	events := text(carol, t, "table.events tbody")
	for _, want := range []string{"Revoked", "administrator carol", "Connected", "Organization"} {
		if !strings.Contains(events, want) {
			t.Errorf("recent events lack %q: %s", want, events)
		}
	}
	shootPage(t, carol, dir, w.srv.URL+"/connect/admin/", `table.events`, "admin-overview")

	// 6. alice's page says what happened, in words.
	if err := chromedp.Do(alice, chromedp.Navigate(w.srv.URL+"/connect/"), chromedp.WaitVisible(chromedp.CSS(`.cards`))); err != nil {
		t.Fatal(err)
	}
	if card := text(alice, t, ".card"); !strings.HasPrefix(card, "GitHub Status: REVOKED An administrator revoked this connection.") {
		t.Fatalf("alice's card: %q", card)
	}
	if shared := text(alice, t, ".card.shared"); !strings.Contains(shared, "Tracker Status: AUTHORIZED Connected for the whole organization.") {
		t.Fatalf("alice's view of the organization's server: %q", shared)
	}
	shootPage(t, alice, dir, w.srv.URL+"/connect/", `.cards`, "users-page")

	// 7. alice downloads her history (a real download in Chromium).
	downloads := t.TempDir()
	if _, err := chromedp.CallBrowser(alice, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads,
	}); err != nil {
		t.Fatalf("set download behaviour: %v", err)
	}
	if err := chromedp.Do(alice, chromedp.Click(chromedp.CSS(`a[href="/connect/history"]`))); err != nil {
		t.Fatal(err)
	}
	file := waitForDownload(t, downloads)
	if !strings.HasPrefix(filepath.Base(file), "mcpauthz-authorization-history-") {
		t.Errorf("downloaded file name %q", filepath.Base(file))
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Organization, User string
		Events             []struct {
			Type, Server, Reason string
			Actor                struct{ Kind, ID string }
		}
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("history is not JSON: %v", err)
	}
	types := map[string]bool{}
	for _, e := range f.Events {
		types[e.Type+"/"+e.Actor.Kind] = true
	}
	if f.Organization != devidp.DefaultOrg || f.User != w.userKey("alice") || !types["connected/user"] || !types["revoked/admin"] || !types["connect_started/user"] {
		t.Fatalf("alice's history: %s", raw)
	}
	if strings.Contains(string(raw), "tracker") || strings.Contains(string(raw), "acme-robot") {
		t.Fatal("alice's history holds the organization's events")
	}

	// Never a provider token in a page, the download or the logs.
	logs := w.logs.String()
	for _, b := range []context.Context{alice, carol} {
		html, err := chromedp.Run(b, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if s == "" || strings.Contains(html, s) || strings.Contains(string(raw), s) || strings.Contains(logs, s) {
				t.Fatal("a provider token is in a page, the history or the logs (or empty)")
			}
		}
	}
	if !strings.Contains(logs, "admin_user_key="+w.userKey("carol")) {
		t.Fatalf("the admin's actions are not logged with their identity: %s", logs)
	}
	fmt.Fprintf(os.Stderr, "connect admin browser test passed in %s; screenshots in %s\n", exe, dir)
}

// waitForDownload returns the first finished file in dir.
func waitForDownload(t *testing.T, dir string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".crdownload") && !e.IsDir() {
				return filepath.Join(dir, e.Name())
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no download arrived")
	return ""
}
