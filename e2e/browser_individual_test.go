package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/net/html"
)

// connectUI is how a user works mcpauthz's connect pages: in headless
// Chromium when it is installed, else as oauthtest.LoginClient (a person
// at a browser without JavaScript, over net/http).
type connectUI interface {
	// follow opens an "authorize at" link and goes through sign-in and
	// consent; it returns the heading of the page it ends on.
	follow(t *testing.T, link string) string
	// revoke clicks Revoke on the connections page and returns the
	// tracker's card afterwards.
	revoke(t *testing.T) string
	// card returns the tracker's card on the connections page.
	card(t *testing.T) string
}

// personUI is connectUI over oauthtest.LoginClient.
type personUI struct {
	e *indivEnv
	p *person
}

func (u personUI) follow(t *testing.T, link string) string {
	t.Helper()
	status, at, doc := u.p.get(t, link)
	if status != http.StatusOK || !strings.HasPrefix(at, u.e.public+"/connect/callback") {
		t.Fatalf("%s: the link ended at %s with %d: %s", u.p.name, at, status, nodeText(doc))
	}
	return byID(doc, "message-heading")
}

func (u personUI) revoke(t *testing.T) string {
	t.Helper()
	status, doc := u.p.post(t, u.e.public+"/connect/", "/connect/"+trackerID+"/revoke")
	if status != http.StatusOK {
		t.Fatalf("%s: revoke ended with %d: %s", u.p.name, status, nodeText(doc))
	}
	return cardOf(doc, trackerName)
}

func (u personUI) card(t *testing.T) string {
	t.Helper()
	_, _, doc := u.p.get(t, u.e.public+"/connect/")
	return cardOf(doc, trackerName)
}

// browserUI is connectUI in headless Chromium (chromedp).
type browserUI struct {
	e    *indivEnv
	user string
	b    context.Context
	dir  string // screenshots
}

// newBrowserUI starts Chromium for user until the test ends. Screenshots
// go to t.TempDir(), or MCPAUTHZ_SCREENSHOT_DIR to keep them.
func newBrowserUI(t *testing.T, e *indivEnv, exe, user string) *browserUI {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1100, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 10*time.Minute)
	t.Cleanup(cancel3)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	dir := t.TempDir()
	if d := os.Getenv("MCPAUTHZ_SCREENSHOT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	return &browserUI{e: e, user: user, b: ctx, dir: dir}
}

// step bounds one interaction.
func (u *browserUI) step(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(u.b, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("chromium: %s: %v (%s)", what, err, where(u.b))
	}
}

// page parses what the tab shows now.
func (u *browserUI) page(t *testing.T) *html.Node {
	t.Helper()
	s, err := chromedp.Run(u.b, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func (u *browserUI) shot(t *testing.T, name string) {
	t.Helper()
	png, err := chromedp.Run(u.b, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(u.dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", p, len(png))
}

// signInIfAsked signs in at the IdP when mcpauthz sends the browser there
// (no session yet), and goes on when it goes straight to the provider.
func signInIfAsked(idp, provider, user string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for {
			loc, err := chromedp.Location()(ctx, t)
			switch {
			case err == nil && strings.HasPrefix(loc, idp):
				_, err := signInAt(idp, user)(ctx, t)
				return err
			case err == nil && strings.HasPrefix(loc, provider):
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for a sign-in page: %w", ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
}

func (u *browserUI) follow(t *testing.T, link string) string {
	t.Helper()
	idp, prov := u.e.idpURL+"/", u.e.provURL+"/"
	u.step(t, "follow the link",
		chromedp.Navigate(link),
		signInIfAsked(idp, prov, u.user),
		signInAt(prov, u.user),
		consent(u.e.public+"/connect/callback"),
		chromedp.WaitVisible(chromedp.CSS(`#message-heading`)),
	)
	return byID(u.page(t), "message-heading")
}

func (u *browserUI) revoke(t *testing.T) string {
	t.Helper()
	form := `form[action="/connect/` + trackerID + `/revoke"]`
	u.step(t, "revoke",
		chromedp.Navigate(u.e.public+"/connect/"),
		chromedp.WaitVisible(chromedp.CSS(form+` button`)),
		chromedp.Click(chromedp.CSS(form+` button`)),
		chromedp.WaitNotPresent(chromedp.CSS(form)),
		chromedp.WaitVisible(chromedp.CSS(`.cards`)),
	)
	return cardOf(u.page(t), trackerName)
}

func (u *browserUI) card(t *testing.T) string {
	t.Helper()
	u.step(t, "connections page", chromedp.Navigate(u.e.public+"/connect/"), chromedp.WaitVisible(chromedp.CSS(`.cards`)))
	return cardOf(u.page(t), trackerName)
}
