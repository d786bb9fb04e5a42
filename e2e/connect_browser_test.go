package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mcpauthz/mcpauthz/credentials/connections"
	"github.com/mcpauthz/mcpauthz/credentials/identity"
	"github.com/mcpauthz/mcpauthz/credentials/identity/devidp"
	"github.com/mcpauthz/mcpauthz/credentials/secret"
	"github.com/mcpauthz/mcpauthz/credentials/store"
	"github.com/mcpauthz/mcpauthz/internal/oauthtest"
	"github.com/mcpauthz/mcpauthz/server/connect"
)

// chromium returns the path of a Chromium/Chrome binary or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium on PATH (looked for chromium, chromium-browser, google-chrome): " +
		"install it with `apt-get install -y chromium` to run the browser tests")
	return ""
}

// connectWorld is the connect flow as the lead wires it, minus the MCP
// path: the development IdP for sign-in, a real OAuth provider upstream
// (internal/oauthtest), a real connections.Manager on SQLite, and the
// connect pages on a TLS listener (so __Host- cookies are really used).
type connectWorld struct {
	logs     *connectLogs // the handler's and the manager's logs
	srv      *httptest.Server
	idp      *devidp.Issuer
	provider *oauthtest.Provider
	mgr      *connections.Manager
	h        *connect.Handler
}

// connectLogs collects log output from concurrent handlers.
type connectLogs struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *connectLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *connectLogs) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// devUsers is the adapter the lead will write over the identity verifier:
// the same namespace|org|user key as on the Check path for devidp tokens.
// The handler has verified the ID token (signature, iss, aud, exp, nonce)
// before it calls FromIDToken.
type devUsers struct{ namespace string }

func (d devUsers) FromIDToken(_ context.Context, _, raw, _, nonce string) (connect.User, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return connect.User{}, errors.New("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return connect.User{}, err
	}
	var c struct {
		Sub, Name, Nonce string
		Org              string `json:"org_id"`
	}
	if err := json.Unmarshal(b, &c); err != nil || c.Nonce != nonce || c.Sub == "" {
		return connect.User{}, errors.New("unusable id token")
	}
	return connect.User{Org: c.Org, UserKey: identity.UserKey(d.namespace, c.Org, c.Sub), Subject: c.Sub, Name: c.Name}, nil
}

func newConnectWorld(t *testing.T) *connectWorld {
	t.Helper()
	ctx := context.Background()
	w := &connectWorld{logs: &connectLogs{}}
	logger := slog.New(slog.NewTextHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.srv = httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { w.h.ServeHTTP(rw, r) }))
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
		Clients:      map[string]string{"gh-client": "gh-SECRET-2", "drive-client": "drive-SECRET-3"},
		RedirectURIs: map[string][]string{"gh-client": {public + "/connect/callback"}, "drive-client": {public + "/connect/callback"}},
	})
	t.Setenv("E2E_GH_SECRET", "gh-SECRET-2")
	t.Setenv("E2E_DRIVE_SECRET", "drive-SECRET-3")
	t.Setenv("E2E_LOGIN_SECRET", "connect-SECRET-1")
	for id, p := range map[string]connections.ProviderConfig{
		"github": {Issuer: provURL, ClientID: "gh-client", ClientSecret: &secret.Ref{Env: "E2E_GH_SECRET"}, Scopes: []string{"repo", "read:user"}},
		"drive":  {Issuer: provURL, ClientID: "drive-client", ClientSecret: &secret.Ref{Env: "E2E_DRIVE_SECRET"}, Scopes: []string{"drive.readonly"}},
		"jira":   {Issuer: provURL, ClientID: "gh-client", ClientSecret: &secret.Ref{Env: "E2E_GH_SECRET"}},
	} {
		if err := w.mgr.Register(id, connections.ModeIndividual, p); err != nil {
			t.Fatal(err)
		}
	}
	w.h, err = connect.New(ctx, connect.Config{Login: connect.LoginConfig{
		Issuer: "devidp", ClientID: "mcpauthz-connect", ClientSecret: &secret.Ref{Env: "E2E_LOGIN_SECRET"},
	}}, connect.Options{
		PublicURL:      public,
		LoginIssuerURL: idpURL,
		Servers: []connect.ServerInfo{
			{ID: "github", Name: "GitHub", Mode: "individual", ProviderOrigin: provURL},
			{ID: "drive", Name: "Google Drive", Mode: "individual", ProviderOrigin: provURL},
			{ID: "jira", Name: "Jira", Mode: "individual", ProviderOrigin: provURL},
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

func (w *connectWorld) key(user, server string) connections.Key {
	return connections.Key{Org: devidp.DefaultOrg, UserKey: identity.UserKey("devidp", devidp.DefaultOrg, user), Server: server}
}

// newBrowser starts headless Chromium; each browser has its own profile.
func newBrowser(t *testing.T, exe string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.Flag("ignore-certificate-errors", true), // the httptest certificate
		chromedp.WindowSize(1100, 900),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(cancel3)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// waitAt waits until the tab's URL starts with prefix (a page of another
// server may still show a field of the same id while the browser moves on).
func waitAt(prefix string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			if loc, err := chromedp.Location()(ctx, t); err == nil && strings.HasPrefix(loc, prefix) {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w", prefix, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

// signInAt fills the oauthtest/devidp login form served at origin.
func signInAt(origin, user string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		waitAt(origin),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
		chromedp.SetValue(chromedp.CSS(`#username`), user),
		chromedp.SetValue(chromedp.CSS(`#password`), user),
		chromedp.Click(chromedp.CSS(`#login`)),
	)
}

// consent approves at the provider's consent page, then waits for the
// browser to be back at mcpauthz.
func consent(back string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.WaitVisible(chromedp.CSS(`#approve`)), chromedp.Click(chromedp.CSS(`#approve`)), waitAt(back))
}

// where says where the browser is and what it shows, for failure messages.
func where(b context.Context) string {
	ctx, cancel := context.WithTimeout(b, 5*time.Second)
	defer cancel()
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return fmt.Sprintf("at %s showing %q", loc, strings.Join(strings.Fields(body), " "))
}

// text is the whitespace-normalized text of the first element sel matches.
func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.Join(strings.Fields(s), " ")
}

func TestConnectFlowInChromium(t *testing.T) {
	exe := chromium(t)
	w := newConnectWorld(t)
	ctx := context.Background()
	b := newBrowser(t, exe)
	heading := chromedp.WaitVisible(chromedp.CSS(`#message-heading`))
	// Screenshots go to t.TempDir(), or MCPAUTHZ_SCREENSHOT_DIR to keep them.
	dir := t.TempDir()
	if d := os.Getenv("MCPAUTHZ_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(b, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", p, len(png))
	}

	// 1. An "authorize at <link>" link minted for alice (what a denied tool
	//    call carries): sign in at the IdP, then consent at the provider.
	link, err := w.mgr.Link(ctx, w.key("alice", "github"))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b,
		chromedp.Navigate(link),
		signInAt(w.idp.URL(), "alice"),      // devidp: mcpauthz sign-in
		signInAt(w.provider.URL(), "alice"), // oauthtest: the provider's own login
		consent(w.srv.URL),
		heading,
	); err != nil {
		t.Fatalf("connect through the link: %v (%s)", err, where(b))
	}
	if got := text(b, t, "#message-heading"); got != "Connected: GitHub — Status: AUTHORIZED" {
		t.Fatalf("callback page heading %q", got)
	}
	shot("connect-callback.png")
	tok, err := w.mgr.Token(ctx, w.key("alice", "github"))
	if err != nil {
		t.Fatalf("Token after connect: %v", err)
	}
	if user, _, ok := w.provider.VerifyAccessToken(tok.AccessToken); !ok || user != "alice" {
		t.Fatalf("stored token belongs to %q (ok=%v)", user, ok)
	}

	secrets := []string{tok.AccessToken}

	// 2. A link minted for bob, opened in alice's browser: refused, and the
	//    page does not say whose it was.
	bobLink, err := w.mgr.Link(ctx, w.key("bob", "drive"))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b, chromedp.Navigate(bobLink), heading); err != nil {
		t.Fatal(err)
	}
	if body := text(b, t, "main"); !strings.Contains(body, "This link was created for another account — sign in as that account or ask for a new link.") || strings.Contains(body, "bob") {
		t.Fatalf("wrong-user page: %q", body)
	}
	shot("connect-wrong-user.png")

	// 3. Proactive connect from the list page: Connect (a POST with CSRF)
	//    redirects to the provider (allowed by the CSP form-action).
	if err := chromedp.Do(b,
		chromedp.Navigate(w.srv.URL+"/connect/"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/connect/drive"] button`)),
		chromedp.Click(chromedp.CSS(`form[action="/connect/drive"] button`)),
		signInAt(w.provider.URL(), "alice"),
		consent(w.srv.URL),
		heading,
	); err != nil {
		t.Fatalf("proactive connect: %v (%s)", err, where(b))
	}
	if got := text(b, t, "#message-heading"); got != "Connected: Google Drive — Status: AUTHORIZED" {
		t.Fatalf("proactive connect heading %q", got)
	}

	if dt, err := w.mgr.Token(ctx, w.key("alice", "drive")); err != nil {
		t.Fatalf("drive Token: %v", err)
	} else {
		secrets = append(secrets, dt.AccessToken)
	}

	// 4. Revoke GitHub from the list: the token is gone at once.
	if err := chromedp.Do(b,
		chromedp.Navigate(w.srv.URL+"/connect/"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/connect/github/revoke"] button`)),
		chromedp.Click(chromedp.CSS(`form[action="/connect/github/revoke"] button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`form[action="/connect/github/revoke"]`)),
	); err != nil {
		t.Fatalf("revoke: %v (%s)", err, where(b))
	}
	var nae *connections.NeedsAuthorizationError
	if _, err := w.mgr.Token(ctx, w.key("alice", "github")); !errors.As(err, &nae) {
		t.Fatalf("Token after revoke: %v", err)
	}
	cards := text(b, t, ".cards")
	for _, want := range []string{"GitHub Status: REVOKED You revoked this connection.", "Google Drive Status: AUTHORIZED", "Jira Status: NEEDS_AUTHORIZATION", "drive.readonly"} {
		if !strings.Contains(cards, want) {
			t.Errorf("list page lacks %q: %s", want, cards)
		}
	}

	html, err := chromedp.Run(b, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if strings.Contains(html, s) {
			t.Fatal("a provider access token is in the page")
		}
	}

	// 5. Keyboard: the first Tab lands on the skip link.
	if err := chromedp.Do(b, chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	focused, err := chromedp.Run(b, chromedp.Evaluate[string](`document.activeElement.textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if focused != "Skip to main content" {
		t.Errorf("first Tab focuses %q", focused)
	}

	// 6. Screenshots of the status page, desktop and phone width.
	for _, v := range []struct {
		name string
		w, h int64
	}{{"connections-desktop.png", 1100, 900}, {"connections-phone.png", 390, 844}} {
		if err := chromedp.Do(b,
			chromedp.EmulateViewport(v.w, v.h),
			chromedp.Navigate(w.srv.URL+"/connect/"),
			chromedp.WaitVisible(chromedp.CSS(`.cards`)),
		); err != nil {
			t.Fatal(err)
		}
		shot(v.name)
	}

	// 7. Sign out: the next visit asks to sign in again.
	if err := chromedp.Do(b,
		chromedp.Click(chromedp.CSS(`form[action="/connect/logout"] button`)),
		heading,
		chromedp.Navigate(w.srv.URL+"/connect/"),
		waitAt(w.idp.URL()),
		chromedp.WaitVisible(chromedp.CSS(`#username`)),
	); err != nil {
		t.Fatalf("sign out: %v (%s)", err, where(b))
	}
	loc, err := chromedp.Run(b, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(loc, w.idp.URL()) {
		t.Fatalf("after sign-out /connect/ went to %s, not the IdP", loc)
	}
	// No provider token in any log line or in the last pages' HTML.
	logs := w.logs.String()
	if !strings.Contains(logs, "connect: connected") {
		t.Fatalf("handler logs not captured: %s", logs)
	}
	for _, s := range secrets {
		if s == "" || strings.Contains(logs, s) {
			t.Fatalf("a provider access token is in the logs (or empty)")
		}
	}
	fmt.Fprintln(os.Stderr, "connect browser test: link, wrong-user refusal, proactive connect, revoke, sign-out passed in", exe)
}

// startConnections starts an OAuth provider with o and a connections
// manager for public on a fresh SQLite store with a random key ring; all
// are closed with t.
func startConnections(ctx context.Context, t *testing.T, public string, logger *slog.Logger, o oauthtest.Options) (*oauthtest.Provider, string, *connections.Manager) {
	t.Helper()
	provider := oauthtest.New(o)
	provURL, err := provider.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(provider.Close)
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ring, err := store.NewRandomKeyRing()
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := connections.New(ctx, connections.Config{PublicURL: public}, connections.Options{Store: st, Cipher: ring, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	return provider, provURL, mgr
}
